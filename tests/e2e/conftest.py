"""Starts the real `kokon up` binary once for the end-to-end tests."""

import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("KOKON_BIN", ROOT / "target" / "release" / "kokon"))


def cli(money, *args):
    """Runs a `kokon` money command on the money directory `money`; its --json output."""
    env = dict(os.environ, KOKON_DEVNET=str(money))
    out = subprocess.run([str(BINARY), *args, "--json"], env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def wait_until(what, check, timeout=30, every=0.25):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(every)
    raise TimeoutError(what)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(base: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"kokon up exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/models", timeout=2) as r:
                if b"smollm2" in r.read():
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError("kokon up did not become ready")


@pytest.fixture(scope="session")
def kokon():
    """A running `kokon up`: yields (base_url, log_path, devnet_dir)."""
    assert BINARY.exists(), f"{BINARY} missing: run `cargo build --release` first"
    port = free_port()
    tmp = Path(tempfile.mkdtemp())
    log = tmp / "kokon.log"
    # A fresh devnet per run; the model cache stays in the usual Kokon home.
    env = dict(os.environ, KOKON_LOG="info", KOKON_DEVNET=str(tmp / "devnet"))
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(BINARY), "up", "--workers", "2", "--listen", f"127.0.0.1:{port}"],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        wait_ready(base, proc)
        yield base, log, tmp / "devnet"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
