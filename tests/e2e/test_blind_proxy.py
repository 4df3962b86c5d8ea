"""The proxy never holds a job's content: separate `kokon proxy`, `kokon worker`
and `kokon client` processes on a paid devnet network.

A prompt carrying a random canary is answered (the echo engine repeats it, so
the answer carries it too), and afterwards the canary is nowhere in the proxy:
not in its memory (every readable mapping of the live process, read through
/proc/PID/mem), not in its log at debug level, not in any file under its
home. The same memory scan finds the canary in the client gateway and the
worker, which did hold the plaintext, and finds the proxy's own strings in
the proxy: the scan can see what it looks for.
"""

import json
import os
import secrets
import signal
import subprocess
import tempfile
from pathlib import Path

import httpx

from conftest import BINARY, free_port, wait_until


def start(args, env, log):
    return subprocess.Popen([str(BINARY), *args], stdout=open(log, "ab"), stderr=subprocess.STDOUT, env=env)


def memory_holds(pid, needle):
    """Whether any readable mapping of process `pid` contains `needle`."""
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for line in maps:
            fields = line.split()
            if "r" not in fields[1]:
                continue
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            try:
                mem.seek(lo)
                if needle in mem.read(hi - lo):
                    return True
            except (OSError, ValueError, OverflowError):
                continue  # [vvar] and the like cannot be read
    return False


def files_holding(root, needle):
    found = []
    for path in Path(root).rglob("*"):
        if path.is_file() and needle in path.read_bytes():
            found.append(str(path))
    return found


def test_the_proxy_relays_a_job_it_cannot_read():
    home, proxy_home = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
    devnet = home / "devnet"
    env = dict(os.environ, KOKON_HOME=str(home), KOKON_LOG="info", KOKON_DEVNET=str(devnet))
    subprocess.run([str(BINARY), "registry", "init"], env=env, check=True, capture_output=True)
    proxy_env = dict(env, KOKON_HOME=str(proxy_home), KOKON_LOG="debug", KOKON_REGISTRY=str(home / "registry.toml"))
    proxy_port, admin_port, api_port = free_port(), free_port(), free_port()
    proxy_log, log = proxy_home / "proxy.log", home / "daemons.log"
    procs = [start(["proxy", "--listen", f"127.0.0.1:{proxy_port}", "--admin", f"127.0.0.1:{admin_port}"],
                   proxy_env, proxy_log)]
    metrics = f"http://127.0.0.1:{admin_port}/metrics"

    def linked():
        try:
            return "kokon_proxy_workers 1" in httpx.get(metrics, timeout=1).text
        except httpx.HTTPError:
            return False
    try:
        wait_until("proxy up", lambda: procs[0].poll() is None and proxy_log.exists()
                   and httpx_ok(metrics), timeout=60)
        procs.append(start(["worker", "--engine", "echo", "--echo-token-ms", "2", "--proxy", f"127.0.0.1:{proxy_port}",
                            "--admin", "127.0.0.1:0", "--wallet", "dev-worker-0"], env, log))
        gateway = start(["client", "--proxy", f"127.0.0.1:{proxy_port}", "--listen", f"127.0.0.1:{api_port}"], env, log)
        procs.append(gateway)
        wait_until("worker linked", linked, timeout=60)
        base = f"http://127.0.0.1:{api_port}/v1"
        wait_until("gateway up", lambda: httpx_ok(f"{base}/models"), timeout=60)

        canary = "canary" + secrets.token_hex(16)
        request_ids = []
        for stream in (False, True):
            body = {"model": "echo", "stream": stream,
                    "messages": [{"role": "user", "content": f"say {canary} back"}]}
            r = httpx.post(f"{base}/chat/completions", json=body, timeout=60)
            assert r.status_code == 200, r.text
            assert canary in r.text, "the worker got the prompt and the client its answer"
            if not stream:
                assert r.json()["usage"]["cost_nanoton"] > 0, "a paid job"
                request_ids.append(r.json()["id"].removeprefix("chatcmpl-"))
            else:
                first = next(line for line in r.text.splitlines() if line.startswith("data: {"))
                request_ids.append(json.loads(first[6:])["id"].removeprefix("chatcmpl-"))
        assert "kokon_proxy_jobs_total{model=\"echo\",outcome=\"ok\"} 2" in httpx.get(metrics).text

        needle = canary.encode()
        assert memory_holds(gateway.pid, needle), "the scan finds the canary where the plaintext was"
        assert memory_holds(procs[1].pid, needle), "and in the worker, which ran the job"
        assert memory_holds(procs[0].pid, b"kokon_proxy_jobs_total"), "the scan reads the proxy's heap"
        assert not memory_holds(procs[0].pid, needle), "the proxy's memory never held the content"
        assert files_holding(proxy_home, needle) == [], "nor its log (debug level) or files"
        assert proxy_log.stat().st_size > 0
        assert files_holding(home, needle) == [], "no daemon logs or stores content"
        # At the default level (info) the worker's and the gateway's logs carry
        # no per-job line: nothing that links a request to its timing.
        text = log.read_text(errors="replace")
        assert "linked" in text, "the log was written"
        for rid in request_ids:
            assert len(rid) >= 16 and rid not in text, f"request id {rid} logged at info level"
    finally:
        for p in procs:
            p.send_signal(signal.SIGKILL)
            p.wait()


def httpx_ok(url):
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
