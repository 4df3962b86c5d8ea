"""The VPN path with four separate processes: `kokon client --relay` (the
end user's gateway), `kokon relay` (what the VPN provider runs), `kokon
proxy --ohttp-listen` and `kokon worker`, on a paid devnet network.

The client reaches the relay over IPv6 loopback (::1) and the relay reaches
the proxy over IPv4 (127.0.0.1), so the client's address is a string we can
look for. A streamed chat completion carrying a random canary is answered
through chunked OHTTP. Afterwards: the relay logged the client's address (at
debug it names who asked) but never the canary, and its memory never held
it (it saw ciphertext only); the proxy's log (at debug), files and memory
hold neither the canary nor the client's address.
"""

import os
import secrets
import signal
import subprocess
import tempfile
from pathlib import Path

import httpx

from conftest import BINARY, free_port, wait_until
from test_blind_proxy import files_holding, get, httpx_ok, memory_holds, start


def free_port6():
    import socket
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        return s.getsockname()[1]


class VpnNetwork:
    def __init__(self):
        self.home, self.proxy_home, self.relay_home = (Path(tempfile.mkdtemp()) for _ in range(3))
        env = dict(os.environ, KOKON_HOME=str(self.home), KOKON_LOG="info", KOKON_DEVNET=str(self.home / "devnet"))
        subprocess.run([str(BINARY), "registry", "init"], env=env, check=True, capture_output=True)
        registry = str(self.home / "registry.toml")
        proxy_env = dict(env, KOKON_HOME=str(self.proxy_home), KOKON_LOG="debug", KOKON_REGISTRY=registry)
        relay_env = {k: v for k, v in env.items() if k != "KOKON_DEVNET"}
        relay_env.update(KOKON_HOME=str(self.relay_home), KOKON_LOG="debug", KOKON_REGISTRY=registry)
        port, admin, ohttp, api = free_port(), free_port(), free_port(), free_port()
        relay_port, relay_admin = free_port6(), free_port()
        self.proxy_log, self.relay_log = self.proxy_home / "proxy.log", self.relay_home / "relay.log"
        self.log = self.home / "daemons.log"
        self.metrics = f"http://127.0.0.1:{admin}/metrics"
        self.relay_metrics = f"http://127.0.0.1:{relay_admin}/metrics"
        self.proxy = start(["proxy", "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}",
                            "--ohttp-listen", f"127.0.0.1:{ohttp}"], proxy_env, self.proxy_log)
        self.procs = [self.proxy]
        wait_until("proxy up", lambda: httpx_ok(self.metrics), timeout=60)
        self.relay = start(["relay", "--listen", f"[::1]:{relay_port}", "--admin", f"127.0.0.1:{relay_admin}",
                            "--gateway", f"main=127.0.0.1:{ohttp}"], relay_env, self.relay_log)
        self.worker = start(["worker", "--engine", "echo", "--echo-token-ms", "2", "--proxy", f"127.0.0.1:{port}",
                             "--admin", "127.0.0.1:0", "--wallet", "dev-worker-0"], env, self.log)
        self.relay_url = f"http://[::1]:{relay_port}/gateways/main"
        self.gateway = start(["client", "--relay", self.relay_url, "--listen", f"127.0.0.1:{api}"], env, self.log)
        self.procs += [self.relay, self.worker, self.gateway]
        self.base = f"http://127.0.0.1:{api}/v1"
        wait_until("relay up", lambda: httpx_ok(self.relay_metrics), timeout=60)
        wait_until("worker linked", lambda: "kokon_proxy_workers 1" in get(self.metrics), timeout=60)
        wait_until("gateway up", lambda: httpx_ok(f"{self.base}/models"), timeout=60)

    def stop(self):
        for p in self.procs:
            p.send_signal(signal.SIGKILL)
            p.wait()


def test_a_streamed_job_through_relay_and_chunked_ohttp():
    net = VpnNetwork()
    try:
        canary = "canary" + secrets.token_hex(16)
        body = {"model": "echo", "stream": True, "stream_options": {"include_usage": True},
                "messages": [{"role": "user", "content": f"say {canary} back"}]}
        with httpx.stream("POST", f"{net.base}/chat/completions", json=body, timeout=60) as r:
            assert r.status_code == 200
            text = "".join(r.iter_text())
        assert canary in text, "the worker got the prompt and the client its answer"
        assert '"cost_nanoton"' in text, "a paid job, paid through the relay"
        assert 'kokon_proxy_ohttp_requests_total{reason="chunked"}' in get(net.metrics)
        assert 'kokon_relay_requests_total{outcome="forwarded"}' in get(net.relay_metrics)
        needle, address = canary.encode(), b"::1"

        relay_log = net.relay_log.read_bytes()
        assert address in relay_log, "the relay knows who asked (its debug log names the address)"
        assert needle not in relay_log, "but not what"
        assert memory_holds(net.relay.pid, b"kokon_relay_requests"), "the scan reads the relay's heap"
        assert not memory_holds(net.relay.pid, needle), "the relay only ever held ciphertext"

        proxy_log = net.proxy_log.read_bytes()
        assert b"Oblivious HTTP gateway listening" in proxy_log, "the proxy's debug log was written"
        assert needle not in proxy_log and address not in proxy_log
        assert files_holding(net.proxy_home, needle) == [] and files_holding(net.proxy_home, address) == []
        assert not memory_holds(net.proxy.pid, needle), "the proxy's memory never held the content"
        assert files_holding(net.home, needle) == [], "no daemon logs or stores content"
    finally:
        net.stop()
