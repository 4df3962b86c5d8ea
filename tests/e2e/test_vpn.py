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

Then the same path paid by blind credit tokens: the client's channel buys
tokens for its wallet through its own API (request, buy, accept), every job
redeems tokens and gets its change back, and the proxy's books bill no job
to the channel that bought them.
"""

import os
import secrets
import signal
import sqlite3
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
    def __init__(self, client_args=()):
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
        self.gateway = start(["client", "--relay", self.relay_url, "--listen", f"127.0.0.1:{api}", *client_args],
                             env, self.log)
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

        # Key consistency: the proxy published in the registry (the devnet
        # ledger) exactly the keys its gateway hands out through the relay.
        served = httpx.get(f"{net.relay_url}/ohttp-keys", timeout=30).content
        ledger = sqlite3.connect(net.home / "devnet" / "ledger.db")
        try:
            published = [bytes(r[0]) for r in ledger.execute("SELECT ohttp FROM published_keys")]
        finally:
            ledger.close()
        assert published == [served], "one proxy, and what it published is what it serves"
    finally:
        net.stop()


def credits(base):
    b = httpx.get(f"{base}/credits", timeout=30).json()
    return int(b["ready_nanoton"]), int(b["in_jobs_nanoton"])


def test_jobs_through_the_relay_paid_by_blind_tokens():
    import time
    home = Path(tempfile.mkdtemp())
    net = VpnNetwork(["--credits", str(home / "credits.db")])
    try:
        post = lambda path, body: httpx.post(f"{net.base}/credits/{path}", json=body, timeout=60)
        asked = post("request", {"amount_nanoton": "1000000"})
        assert asked.status_code == 200, asked.text
        requests = asked.json()["requests"]
        sold = post("buy", {"requests": requests})
        assert sold.status_code == 200, sold.text
        kept = post("accept", {"requests": requests, "responses": sold.json()["responses"]})
        assert kept.json() == {"added_nanoton": "1000000"}, kept.text
        assert credits(net.base) == (1_000_000, 0)

        spent = 0
        for words in ["one two three", "four five six seven eight"]:
            r = httpx.post(f"{net.base}/chat/completions", timeout=60,
                           json={"model": "echo", "messages": [{"role": "user", "content": words}]})
            assert r.status_code == 200, r.text
            assert r.json()["choices"][0]["message"]["content"].strip() == words
            spent += r.json()["usage"]["cost_nanoton"]
        wait_until("every job's change is back", lambda: credits(net.base)[1] == 0, timeout=30)
        ready, _ = credits(net.base)
        assert ready == 1_000_000 - spent, (ready, spent)

        # The proxy's books: one sale, two jobs billed under `credits`, and
        # no job billed to the channel that bought the tokens.
        db = sqlite3.connect(net.home / "devnet" / "dev-proxy.db")
        try:
            assert db.execute("SELECT count(*) FROM credit_sales").fetchone()[0] == 1
            assert db.execute("SELECT count(*) FROM bills WHERE channel != 'credits'").fetchone()[0] == 0
            assert db.execute("SELECT count(*) FROM bills WHERE channel = 'credits'").fetchone()[0] == 2
        finally:
            db.close()
    finally:
        net.stop()


def test_without_a_registry_to_publish_in_or_check_against_nothing_starts():
    """The gateway's keys are published in the registry and checked there:
    a proxy with --ohttp-listen and a relayed client need one (the devnet
    ledger or TON); without, each refuses to start and says what to give."""
    home = Path(tempfile.mkdtemp())
    env = {k: v for k, v in os.environ.items() if k != "KOKON_DEVNET"}
    env.update(KOKON_HOME=str(home))
    subprocess.run([str(BINARY), "registry", "init"], env=env, check=True, capture_output=True)
    for args in (["proxy", "--listen", f"127.0.0.1:{free_port()}", "--admin", f"127.0.0.1:{free_port()}",
                  "--ohttp-listen", f"127.0.0.1:{free_port()}"],
                 ["client", "--relay", "http://127.0.0.1:9/gateways/main", "--listen", f"127.0.0.1:{free_port()}"]):
        r = subprocess.run([str(BINARY), *args], env=env, capture_output=True, timeout=60)
        assert r.returncode != 0, args
        assert b"--devnet" in r.stderr and b"registry" in r.stderr, r.stderr[-2000:]


def test_a_user_with_tokens_alone_holds_no_channel():
    """The VPN case proper: the provider's gateway (with the channel) buys
    for a user whose own `kokon client --relay --credits` has no channel at
    all — it reads the registry's published keys with --registry-chain — and
    the user's job through the relay is paid by its tokens."""
    home = Path(tempfile.mkdtemp())
    net = VpnNetwork(["--credits", str(home / "provider-credits.db")])
    user_env = {k: v for k, v in os.environ.items() if k != "KOKON_DEVNET"}
    user_env.update(KOKON_HOME=str(home), KOKON_REGISTRY=str(net.home / "registry.toml"))
    api = free_port()
    user = start(["client", "--relay", net.relay_url, "--listen", f"127.0.0.1:{api}",
                  "--credits", str(home / "user-credits.db"),
                  "--registry-chain", str(net.home / "devnet")], user_env, home / "user.log")
    net.procs.append(user)
    try:
        base = f"http://127.0.0.1:{api}/v1"
        wait_until("user's gateway up", lambda: httpx_ok(f"{base}/models"), timeout=60)
        asked = httpx.post(f"{base}/credits/request", json={"amount_nanoton": "100000"}, timeout=60)
        assert asked.status_code == 200, asked.text
        requests = asked.json()["requests"]
        sold = httpx.post(f"{net.base}/credits/buy", json={"requests": requests}, timeout=60)
        assert sold.status_code == 200, sold.text
        kept = httpx.post(f"{base}/credits/accept", timeout=60,
                          json={"requests": requests, "responses": sold.json()["responses"]})
        assert kept.json() == {"added_nanoton": "100000"}, kept.text
        r = httpx.post(f"{base}/chat/completions", timeout=60,
                       json={"model": "echo", "messages": [{"role": "user", "content": "only tokens"}]})
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"].strip() == "only tokens"
        ledger = sqlite3.connect(net.home / "devnet" / "ledger.db")
        try:
            channels = ledger.execute("SELECT count(*) FROM channels").fetchone()[0]
        finally:
            ledger.close()
        assert channels == 1, "only the provider's channel: the user holds none"
    finally:
        net.stop()
