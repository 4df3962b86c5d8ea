"""`kokon attest`: inspecting a live proxy, measuring a real TDX quote, and
fetching collateral from a PCCS (a local one serving Intel's signed sample
collateral in the PCCS wire format) so quotes verify offline."""

import json
import os
import subprocess
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import BINARY, ROOT, free_port

SAMPLES = ROOT / "crates" / "kokon-attest" / "testdata" / "tdx"
SAMPLE_TIME = "1751328000"  # inside the v4 sample collateral's window
MRTD = "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"


def kokon(*args, env=None):
    return subprocess.run([str(BINARY), *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def home():
    h = Path(tempfile.mkdtemp())
    env = dict(os.environ, KOKON_HOME=str(h), KOKON_LOG="warn")
    assert kokon("registry", "init", env=env).returncode == 0
    return h, env


@pytest.fixture
def proxy(home):
    h, env = home
    port, admin = free_port(), free_port()
    log = open(h / "proxy.log", "ab")
    p = subprocess.Popen([str(BINARY), "proxy", "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}",
                          "--evidence", "simulated"], env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 20
    while time.time() < deadline and b"proxy listening" not in (h / "proxy.log").read_bytes():
        time.sleep(0.1)
    yield f"127.0.0.1:{port}", f"http://127.0.0.1:{admin}"
    p.kill()
    p.wait()


def test_show_accepts_a_proxy_the_registry_allows(home, proxy):
    h, env = home
    proxy, admin = proxy
    r = kokon("attest", "show", proxy, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ACCEPTED" in r.stdout and "role          proxy" in r.stdout
    assert "evidence      simulated" in r.stdout
    view = json.loads(kokon("attest", "show", proxy, "--json", env=env).stdout)
    assert view["role"] == "proxy" and view["refused"] is None and len(view["rtmr"]) == 4
    # The same certificate as a PEM file from the admin port.
    import httpx
    pem = httpx.get(f"{admin}/certificate", timeout=5).text
    assert pem.startswith("-----BEGIN CERTIFICATE-----")
    (h / "proxy.pem").write_text(pem)
    r = kokon("attest", "show", str(h / "proxy.pem"), "--role", "proxy", "--json", env=env)
    assert r.returncode == 0 and json.loads(r.stdout)["image_hash"] == view["image_hash"], r.stdout
    r = kokon("attest", "show", str(h / "proxy.pem"), "--role", "worker", "--json", env=env)
    assert r.returncode == 1 and json.loads(r.stdout)["reason"] == "unexpected_role"


def test_show_refuses_a_proxy_whose_image_is_not_listed(home, proxy):
    h, env = home
    proxy, _ = proxy
    reg = (h / "registry.toml").read_text()
    strict = h / "strict.toml"
    # Same test network, but the proxy image list names another image.
    lines = [l if not l.startswith("proxy_images") else f'proxy_images = ["{"ab" * 32}"]' for l in reg.splitlines()]
    strict.write_text("\n".join(lines) + "\n")
    r = kokon("attest", "show", proxy, "--registry", str(strict), env=env)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "REFUSED" in r.stdout and "not allowed for role proxy" in r.stdout
    # A production registry refuses simulated evidence outright.
    prod = h / "prod.toml"
    prod.write_text(reg.replace('network = "test"', 'network = "production"'))
    r = kokon("attest", "show", proxy, "--registry", str(prod), "--json", env=env)
    assert r.returncode == 1 and json.loads(r.stdout)["reason"] == "simulated_not_allowed"


def test_show_names_a_workers_upstream_and_a_registry_that_does_not_list_it_refuses(home, proxy):
    """A worker whose engine forwards jobs says where, in its certificate."""
    h, env = home
    proxy, _ = proxy
    admin = free_port()
    upstream = f"http://127.0.0.1:{free_port()}"
    log = open(h / "worker.log", "ab")
    w = subprocess.Popen([str(BINARY), "worker", "--proxy", proxy, "--admin", f"127.0.0.1:{admin}",
                          "--engine", "upstream", "--upstream-url", f"{upstream}/v1", "--model", "up"],
                         env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        import httpx
        pem = None
        deadline = time.time() + 30
        while pem is None and time.time() < deadline:
            try:
                pem = httpx.get(f"http://127.0.0.1:{admin}/certificate", timeout=2).text
            except httpx.HTTPError:
                time.sleep(0.2)
        assert pem and pem.startswith("-----BEGIN CERTIFICATE-----")
        (h / "worker.pem").write_text(pem)
        r = kokon("attest", "show", str(h / "worker.pem"), "--role", "worker", env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"engine        upstream \u2192 {upstream} (jobs leave the TEE" in r.stdout, r.stdout
        view = json.loads(kokon("attest", "show", str(h / "worker.pem"), "--json", env=env).stdout)
        assert view["engine"] == {"kind": "upstream", "upstream": upstream}
        # A registry listing other upstreams only refuses it.
        listing = h / "listing.toml"
        listing.write_text('upstreams = ["https://api.example.com"]\n' + (h / "registry.toml").read_text())
        r = kokon("attest", "show", str(h / "worker.pem"), "--registry", str(listing), "--json", env=env)
        assert r.returncode == 1 and json.loads(r.stdout)["reason"] == "upstream_not_allowed", r.stdout
        text = (h / "worker.log").read_text(errors="replace")
        assert "prompt and answer out of this TEE" in text, text
    finally:
        w.kill()
        w.wait()


class Pccs(BaseHTTPRequestHandler):
    """Serves the v4 sample's collateral as a PCCS does (API v4)."""

    coll = json.loads((SAMPLES / "tdx_quote_collateral.json").read_text())
    seen = []

    def log_message(self, *args):
        pass

    def reply(self, body: bytes, headers=()):
        self.send_response(200)
        for k, v in headers:
            self.send_header(k, urllib.parse.quote(v))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        c, path = self.coll, self.path
        Pccs.seen.append(path)
        if path.startswith("/sgx/certification/v4/pckcrl?ca=platform&encoding=der"):
            self.reply(bytes.fromhex(c["pck_crl"]), [("SGX-PCK-CRL-Issuer-Chain", c["pck_crl_issuer_chain"])])
        elif path == "/tdx/certification/v4/tcb?fmspc=b0c06f000000":
            body = '{"tcbInfo":%s,"signature":"%s"}' % (c["tcb_info"], c["tcb_info_signature"])
            self.reply(body.encode(), [("TCB-Info-Issuer-Chain", c["tcb_info_issuer_chain"])])
        elif path == "/tdx/certification/v4/qe/identity":
            body = '{"enclaveIdentity":%s,"signature":"%s"}' % (c["qe_identity"], c["qe_identity_signature"])
            self.reply(body.encode(), [("SGX-Enclave-Identity-Issuer-Chain", c["qe_identity_issuer_chain"])])
        elif path == "/sgx/certification/v4/rootcacrl":
            self.reply(c["root_ca_crl"].encode())  # a PCCS answers in hex
        else:
            self.send_response(404)
            self.end_headers()


def test_measure_fetch_collateral_and_verify_offline(home):
    h, env = home
    quote = str(SAMPLES / "tdx_quote")
    r = json.loads(kokon("attest", "measure", quote, "--json", env=env).stdout)
    assert r["mrtd"] == MRTD and r["verified"] is False and "no collateral cached" in r["error"]

    server = ThreadingHTTPServer(("127.0.0.1", 0), Pccs)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    r = kokon("attest", "collateral", "fetch", "--quote", quote, "--pccs", url, env=env)
    server.shutdown()
    assert r.returncode == 0, r.stderr
    assert (h / "collateral" / "tdx-b0c06f000000.json").exists()
    assert "b0c06f000000" in kokon("attest", "collateral", "list", env=env).stdout

    # Offline from here: the cached collateral verifies the real quote.
    r = json.loads(kokon("attest", "measure", quote, "--json", "--at", SAMPLE_TIME, env=env).stdout)
    assert r["verified"] is True and r["tcb_status"] == "UpToDate", r
    # Today the sample collateral has long expired: refused, with the reason.
    r = json.loads(kokon("attest", "measure", quote, "--json", env=env).stdout)
    assert r["verified"] is False and "validity window" in r["error"]
    assert r["accepted"] is False and r["reason"] == "collateral_expired"

    # Judged by a registry: the verdict is the registry's, and so is the exit code.
    image, td = r["image_hash"], r["td"]
    assert td["xfam"] == "e702060000000000" and td["td_attributes"] == "0000001000000000"

    def measure(registry_text):
        path = h / "judge.toml"
        path.write_text(registry_text)
        m = kokon("attest", "measure", quote, "--json", "--at", SAMPLE_TIME, "--registry", str(path), env=env)
        return m.returncode, json.loads(m.stdout)

    listed = f'network = "production"\nproxy_images = []\nworker_images = ["{image}"]\n'
    pins = (f'[attestation.td]\nxfam = ["{td["xfam"]}"]\ntd_attributes = ["{td["td_attributes"]}"]\n'
            f'mr_seam = ["{td["mr_seam"]}"]\nmin_tee_tcb_svn = "{td["tee_tcb_svn"]}"\n')
    code, r = measure(listed + pins)
    assert code == 0 and r["accepted"] is True and r["roles"] == ["worker"], r
    code, r = measure(listed)
    assert code == 0 and r["accepted"] is True, "the default TD rules accept this TD"
    # `verified: true` no longer stands for the registry's word.
    for text, reason in [
        (listed.replace(image, "cd" * 32), "image_not_allowed"),
        (listed + pins.replace(td["mr_seam"], "00" * 48), "mr_seam_not_allowed"),
        (listed + pins.replace(td["xfam"], "0300000000000000"), "xfam_refused"),
        (listed + pins + f'mr_owner = "{"11" * 48}"\n', "mr_owner_mismatch"),
        (listed + pins.replace(td["tee_tcb_svn"], "ff" + "00" * 15), "tee_tcb_svn_too_low"),
        (listed + '[attestation]\ntcb_statuses = ["SWHardeningNeeded"]\n', "tcb_status_not_allowed"),
    ]:
        code, r = measure(text)
        assert code == 1 and r["verified"] is True and r["accepted"] is False, (reason, r)
        assert r["reason"] == reason, r
    human = kokon("attest", "measure", quote, "--at", SAMPLE_TIME, "--registry", str(h / "judge.toml"), env=env)
    assert human.returncode == 1 and "registry      REFUSED" in human.stdout and "XFAM          e702" in human.stdout


def test_measure_on_a_machine_that_is_not_a_td(home):
    _, env = home
    r = kokon("attest", "measure", env=env)
    assert r.returncode != 0 and "not inside a TDX guest" in r.stderr


def wait_for(what, check, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise TimeoutError(what)


def test_unlisted_worker_cannot_join_and_a_gateway_refuses_an_unlisted_proxy(home):
    """Separate processes: each refusal is explained where the operator looks."""
    h, env = home
    reg = (h / "registry.toml").read_text()
    other = '["%s"]' % ("cd" * 32)
    no_worker = h / "no-worker.toml"
    no_worker.write_text("\n".join(f"worker_images = {other}" if l.startswith("worker_images") else l
                                   for l in reg.splitlines()) + "\n")
    no_proxy = h / "no-proxy.toml"
    no_proxy.write_text("\n".join(f"proxy_images = {other}" if l.startswith("proxy_images") else l
                                  for l in reg.splitlines()) + "\n")
    port, admin, api = free_port(), free_port(), free_port()
    log = h / "procs.log"
    run = lambda *a: subprocess.Popen([str(BINARY), *a], env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    procs = [
        run("proxy", "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}", "--registry", str(no_worker)),
        run("worker", "--proxy", f"127.0.0.1:{port}", "--engine", "echo"),
        run("client", "--proxy", f"127.0.0.1:{port}", "--listen", f"127.0.0.1:{api}", "--registry", str(no_proxy)),
    ]
    try:
        import httpx
        metrics = lambda: httpx.get(f"http://127.0.0.1:{admin}/metrics", timeout=2).text
        wait_for("proxy up", lambda: "kokon_proxy_workers" in (metrics() if port_open(admin) else ""))
        wait_for("worker refused", lambda: 'reason="image_not_allowed"' in metrics())
        assert "kokon_proxy_workers 0" in metrics()
        wait_for("worker explains", lambda: "refused this worker's certificate" in log.read_text(errors="replace"))
        assert "not allowed for role worker" in log.read_text(errors="replace")

        wait_for("gateway up", lambda: port_open(api))
        r = httpx.post(f"http://127.0.0.1:{api}/v1/chat/completions", timeout=20,
                       json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 503, r.text
        msg = r.json()["error"]["message"]
        assert "refused by attestation policy" in msg and "not allowed for role proxy" in msg, msg
    finally:
        for p in procs:
            p.kill()
            p.wait()


def port_open(port):
    import socket
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0
