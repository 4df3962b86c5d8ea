"""The proxy never holds a job's content, and no daemon logs it: separate
`kokon proxy`, `kokon worker` and `kokon client` processes on paid devnet
networks, one of them behind a worker whose engine forwards to an upstream.

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


class Network:
    """A paid devnet network of separate processes: `kokon proxy` (its own
    home, logging at debug), one `kokon worker` and a `kokon client`."""

    def __init__(self, worker_args):
        self.home, self.proxy_home = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
        env = dict(os.environ, KOKON_HOME=str(self.home), KOKON_LOG="info", KOKON_DEVNET=str(self.home / "devnet"))
        subprocess.run([str(BINARY), "registry", "init"], env=env, check=True, capture_output=True)
        proxy_env = dict(env, KOKON_HOME=str(self.proxy_home), KOKON_LOG="debug",
                         KOKON_REGISTRY=str(self.home / "registry.toml"))
        port, admin, api = free_port(), free_port(), free_port()
        self.proxy_log, self.log = self.proxy_home / "proxy.log", self.home / "daemons.log"
        self.metrics = f"http://127.0.0.1:{admin}/metrics"
        self.proxy = start(["proxy", "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}"],
                           proxy_env, self.proxy_log)
        self.procs = [self.proxy]
        wait_until("proxy up", lambda: self.proxy.poll() is None and self.proxy_log.exists()
                   and httpx_ok(self.metrics), timeout=60)
        self.worker = start(["worker", *worker_args, "--proxy", f"127.0.0.1:{port}", "--admin", "127.0.0.1:0",
                             "--wallet", "dev-worker-0"], env, self.log)
        self.gateway = start(["client", "--proxy", f"127.0.0.1:{port}", "--listen", f"127.0.0.1:{api}"], env, self.log)
        self.procs += [self.worker, self.gateway]
        self.base = f"http://127.0.0.1:{api}/v1"
        wait_until("worker linked", lambda: "kokon_proxy_workers 1" in get(self.metrics), timeout=60)
        wait_until("gateway up", lambda: httpx_ok(f"{self.base}/models"), timeout=60)

    def ask(self, model, canary):
        """A plain and a streamed job carrying `canary`; their request ids."""
        request_ids = []
        for stream in (False, True):
            body = {"model": model, "stream": stream,
                    "messages": [{"role": "user", "content": f"say {canary} back"}]}
            r = httpx.post(f"{self.base}/chat/completions", json=body, timeout=60)
            assert r.status_code == 200, r.text
            assert canary in r.text, "the worker got the prompt and the client its answer"
            if not stream:
                assert r.json()["usage"]["cost_nanoton"] > 0, "a paid job"
                request_ids.append(r.json()["id"].removeprefix("chatcmpl-"))
            else:
                first = next(line for line in r.text.splitlines() if line.startswith("data: {"))
                request_ids.append(json.loads(first[6:])["id"].removeprefix("chatcmpl-"))
        return request_ids

    def assert_blind_proxy(self, needle):
        assert "kokon_proxy_jobs_total" in get(self.metrics), "jobs ran here"
        assert memory_holds(self.proxy.pid, b"kokon_proxy_jobs_total"), "the scan reads the proxy's heap"
        assert not memory_holds(self.proxy.pid, needle), "the proxy's memory never held the content"
        assert files_holding(self.proxy_home, needle) == [], "nor its log (debug level) or files"
        assert self.proxy_log.stat().st_size > 0

    def assert_quiet_logs(self, needle, request_ids):
        """No daemon logs or stores content, and at the default level (info)
        the worker's and the gateway's logs carry no per-job line: nothing
        that links a request to its timing."""
        assert files_holding(self.home, needle) == [], "no daemon logs or stores content"
        text = self.log.read_text(errors="replace")
        assert "linked" in text, "the log was written"
        for rid in request_ids:
            assert len(rid) >= 16 and rid not in text, f"request id {rid} logged at info level"

    def stop(self):
        for p in self.procs:
            p.send_signal(signal.SIGKILL)
            p.wait()


def get(url):
    try:
        return httpx.get(url, timeout=1).text
    except httpx.HTTPError:
        return ""


def test_the_proxy_relays_a_job_it_cannot_read():
    net = Network(["--engine", "echo", "--echo-token-ms", "2"])
    try:
        canary = "canary" + secrets.token_hex(16)
        request_ids = net.ask("echo", canary)
        assert "kokon_proxy_jobs_total{model=\"echo\",outcome=\"ok\"} 2" in get(net.metrics)
        needle = canary.encode()
        assert memory_holds(net.gateway.pid, needle), "the scan finds the canary where the plaintext was"
        assert memory_holds(net.worker.pid, needle), "and in the worker, which ran the job"
        net.assert_blind_proxy(needle)
        net.assert_quiet_logs(needle, request_ids)
    finally:
        net.stop()


def test_through_an_upstream_engine_no_proxy_holds_and_no_daemon_logs_the_content():
    """Every daemon of a chain whose worker forwards to an upstream: the
    upstream is another Kokon network's OpenAI-compatible gateway, so the job
    crosses two proxies, two workers (one the upstream engine) and two
    gateways, six processes in all."""
    far = Network(["--engine", "echo"])
    near = None
    try:
        near = Network(["--engine", "upstream", "--upstream-url", far.base, "--model", "echo"])
        models = httpx.get(f"{near.base}/models", timeout=10).json()["data"]
        origin = far.base.removesuffix("/v1")
        assert models[0]["kokon"] == {"verified_workers": 1, "engines": [{"kind": "upstream", "upstream": origin}]}
        canary = "canary" + secrets.token_hex(16)
        request_ids = near.ask("echo", canary)
        needle = canary.encode()
        assert memory_holds(near.worker.pid, needle), "the upstream engine forwarded the plaintext"
        assert memory_holds(far.gateway.pid, needle), "which the upstream received"
        for net in (near, far):
            net.assert_blind_proxy(needle)
            net.assert_quiet_logs(needle, request_ids)
        assert "prompt and answer out of this TEE" in near.log.read_text(errors="replace")
    finally:
        for net in (near, far):
            if net:
                net.stop()


def httpx_ok(url):
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
