"""The daemons as separate processes: proxy, two workers, client gateway.

Configured through a registry file, a TOML config file, flags and env vars.
A worker is killed with SIGKILL under streaming load: its clients get a typed
error within 2 s, and everything else keeps working. SIGTERM drains instead:
on a worker or on the proxy, every stream in flight completes. A frozen proxy
(SIGSTOP) makes requests fail within seconds, not hang. The daemons follow
the registry file while they run: workers whose image it no longer lists are
dropped, streams in flight included.
"""

import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest

from conftest import BINARY, free_port


def start(args, env, log):
    out = open(log, "ab")
    return subprocess.Popen([str(BINARY), *args], stdout=out, stderr=subprocess.STDOUT, env=env)


@pytest.fixture
def network():
    home = Path(tempfile.mkdtemp())
    # Each daemon reads the registry file again every second.
    env = dict(os.environ, KOKON_HOME=str(home), KOKON_LOG="info", KOKON_REGISTRY_POLL_SECS="1")
    log = home / "daemons.log"
    subprocess.run([str(BINARY), "registry", "init"], env=env, check=True, capture_output=True)
    proxy_port, admin_port, api_port = free_port(), free_port(), free_port()
    (home / "proxy.toml").write_text(f'listen = "127.0.0.1:{proxy_port}"\nadmin = "127.0.0.1:{admin_port}"\n')
    proxy = start(["proxy", "--config", str(home / "proxy.toml")], env, log)
    procs = [proxy]
    worker_env = dict(env, KOKON_WORKER_PROXY=f"127.0.0.1:{proxy_port}")
    # Engine settings come from a file: a key the merge ignored would make streams instant.
    (home / "worker.toml").write_text('engine = "echo"\nmodel = "echo"\necho_token_ms = 20\nmax_jobs = 16\n')
    worker_args = ["worker", "--config", str(home / "worker.toml"), "--admin", "127.0.0.1:0"]
    workers = [start(worker_args, worker_env, log) for _ in range(2)]
    procs += workers
    procs.append(start(["client", "--proxy", f"127.0.0.1:{proxy_port}", "--listen", f"127.0.0.1:{api_port}"], env, log))
    base = f"http://127.0.0.1:{api_port}/v1"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            metrics = httpx.get(f"http://127.0.0.1:{admin_port}/metrics", timeout=1).text
            if "kokon_proxy_workers 2" in metrics and httpx.get(f"{base}/models", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    else:
        raise TimeoutError(f"daemons did not come up; log:\n{log.read_text(errors='replace')[-3000:]}")
    yield base, workers, f"http://127.0.0.1:{admin_port}/metrics", proxy, home
    for p in procs:
        p.send_signal(signal.SIGCONT)
        p.kill()
        p.wait()


def stream(base, text, results, i):
    body = {"model": "echo", "messages": [{"role": "user", "content": text}], "stream": True}
    last, chunks = None, 0
    with httpx.stream("POST", f"{base}/chat/completions", json=body, timeout=30) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                last = line[6:]
                chunks += 1
    results[i] = (last, chunks, time.monotonic())


def test_worker_killed_under_load(network):
    base, workers, metrics, _, _ = network
    words = " ".join(f"w{i}" for i in range(100))  # 100 words at 20 ms: ~2 s per stream
    results = {}
    threads = [threading.Thread(target=stream, args=(base, words, results, i)) for i in range(10)]
    for t in threads:
        t.start()
        time.sleep(0.02)
    time.sleep(0.5)
    workers[0].send_signal(signal.SIGKILL)
    killed = time.monotonic()

    after = httpx.post(f"{base}/chat/completions", timeout=10,
                       json={"model": "echo", "messages": [{"role": "user", "content": "still here"}]})
    assert after.status_code == 200
    assert after.json()["choices"][0]["message"]["content"] == "still here "

    for t in threads:
        t.join(timeout=30)
    done = [r for r in results.values() if r[0] == "[DONE]"]
    failed = [r for r in results.values() if r[0] != "[DONE]"]
    assert len(done) + len(failed) == 10
    assert done and failed, f"expected both outcomes, got {len(done)} done / {len(failed)} failed"
    for last, chunks, ended in failed:
        assert json.loads(last)["error"]["code"] == "worker_failed_mid_stream"
        assert chunks > 1, "the stream had started"
        assert ended - killed < 2.0, f"error arrived {ended - killed:.2f}s after the kill"
    assert "kokon_proxy_workers 1" in httpx.get(metrics).text


def start_streams(base, n, words=100):
    text = " ".join(f"w{i}" for i in range(words))  # 100 words at 20 ms: ~2 s per stream
    results = {}
    threads = [threading.Thread(target=stream, args=(base, text, results, i)) for i in range(n)]
    for t in threads:
        t.start()
        time.sleep(0.02)
    return threads, results


def assert_all_complete(threads, results, n, words=100):
    for t in threads:
        t.join(timeout=30)
    assert len(results) == n
    for last, chunks, _ in results.values():
        assert last == "[DONE]", f"a stream was cut: last event {last!r}"
        # role chunk, one per word, finish chunk, [DONE]
        assert chunks == words + 3, chunks


def test_sigterm_on_a_worker_lets_its_streams_complete(network):
    base, workers, metrics, _, _ = network
    threads, results = start_streams(base, 10)
    time.sleep(0.5)
    workers[0].send_signal(signal.SIGTERM)
    assert_all_complete(threads, results, 10)
    assert workers[0].wait(timeout=10) == 0, "the drained worker exits cleanly"
    after = httpx.post(f"{base}/chat/completions", timeout=10,
                       json={"model": "echo", "messages": [{"role": "user", "content": "still here"}]})
    assert after.status_code == 200
    assert "kokon_proxy_workers 1" in httpx.get(metrics).text


def test_sigterm_on_the_proxy_lets_the_streams_complete(network):
    base, _, _, proxy, _ = network
    threads, results = start_streams(base, 10)
    time.sleep(0.5)
    proxy.send_signal(signal.SIGTERM)
    assert_all_complete(threads, results, 10)
    assert proxy.wait(timeout=10) == 0, "the drained proxy exits cleanly"
    started = time.monotonic()
    r = httpx.post(f"{base}/chat/completions", timeout=30,
                   json={"model": "echo", "messages": [{"role": "user", "content": "anyone?"}]})
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert time.monotonic() - started < 5


def test_a_frozen_proxy_fails_requests_within_seconds(network):
    base, _, _, proxy, _ = network
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
    assert httpx.post(f"{base}/chat/completions", json=body, timeout=10).status_code == 200
    proxy.send_signal(signal.SIGSTOP)
    try:
        results = {}

        def one(i):
            t = time.monotonic()
            try:
                results[i] = (httpx.post(f"{base}/chat/completions", json=body, timeout=30).status_code,
                              time.monotonic() - t)
            except httpx.HTTPError as e:
                results[i] = (repr(e), time.monotonic() - t)
        threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=40)
        for status, took in results.values():
            assert status == 503, status
            assert took < 8, f"a request hung {took:.1f} s behind the frozen proxy"
    finally:
        proxy.send_signal(signal.SIGCONT)
    # Thawed, the network serves again.
    deadline = time.time() + 20
    while time.time() < deadline:
        if httpx.post(f"{base}/chat/completions", json=body, timeout=10).status_code == 200:
            break
        time.sleep(0.3)
    else:
        raise AssertionError("the thawed proxy never served again")


def test_workers_whose_image_is_revoked_are_dropped_while_running(network):
    base, workers, metrics, _, home = network
    threads, results = start_streams(base, 4, words=500)  # ~10 s each
    time.sleep(0.5)
    registry = home / "registry.toml"
    text = registry.read_text()
    image = text.split("worker_images = [")[1].split("]")[0]
    # The operator revokes the workers' image (a typo'd edit first: a
    # registry that does not parse changes nothing).
    registry.write_text(text.replace("worker_images", "worker_imagez"))
    time.sleep(2.5)
    assert "kokon_proxy_workers 2" in httpx.get(metrics).text, "a broken registry revokes nothing"
    registry.write_text(text.replace(image, '"' + "00" * 32 + '"'))
    revoked = time.monotonic()
    deadline = revoked + 10
    while time.monotonic() < deadline and "kokon_proxy_workers 0" not in httpx.get(metrics).text:
        time.sleep(0.1)
    dropped = time.monotonic() - revoked
    text_now = httpx.get(metrics).text
    assert "kokon_proxy_workers 0" in text_now, text_now
    assert dropped < 3.0, f"dropped {dropped:.1f}s after the registry changed (poll: 1 s)"
    assert 'kokon_proxy_links_revoked_total{reason="image_not_allowed"} 2' in text_now, text_now
    for t in threads:
        t.join(timeout=30)
    assert len(results) == 4
    for last, chunks, _ in results.values():
        # Cut mid-stream with a typed error, not left hanging nor completed.
        assert last != "[DONE]"
        assert json.loads(last)["error"]["code"] == "worker_failed_mid_stream", last
    after = httpx.post(f"{base}/chat/completions", timeout=10,
                       json={"model": "echo", "messages": [{"role": "user", "content": "anyone?"}]})
    assert after.status_code == 503, after.text
    log = (home / "daemons.log").read_text(errors="replace")
    assert "link dropped: the registry no longer allows this peer" in log
    assert "cannot read the registry; keeping the policy in force" in log
    for w in workers:
        assert w.poll() is None, "a revoked worker keeps running (it retries with a long backoff)"
