"""Paid jobs settling on TON, end to end with the real binary.

`kokon up --settlement ton-sandbox` runs the local network on Kokon's Tolk
contracts in the TON emulator (contracts/sandbox/server.js, a toncenter v3
API). 20 paid chat completions with the built-in model; then, read from the
chain by get-methods and from its transactions:

- the client's channel has paid exactly the costs the client was told;
- each worker has claimed exactly what its vouchers promise, on chain;
- the proxy's vault holds its stake + what the channel paid − what the
  workers took, to the nanoton;
- for every claim, the vault paid out exactly the claimed increase plus what
  was left of the attached gas (from the vault's transactions);
- each worker's wallet grew by exactly what it claimed minus the gas its
  claims cost (its own transactions' fees and the vault's), and that gas is
  within the documented bound.
"""

import json
import os
import subprocess
import tempfile
from pathlib import Path

import httpx

from conftest import BINARY, cli, free_port, wait_ready, wait_until

WORKERS = 2
STAKE = 100_000_000  # PaySpec::dev's stake (0.1 TON)
GAS_BOUND_PER_CLAIM = 20_000_000  # docs/ECONOMICS.md: at most 0.02 TON per claim


class Chain:
    """Reads the sandbox chain through its toncenter v3 API."""

    def __init__(self, endpoint):
        self.c = httpx.Client(base_url=endpoint, timeout=10)

    def get(self, address, method, *args):
        stack = [{"type": "num", "value": hex(a)} for a in args]
        r = self.c.post("/api/v3/runGetMethod", json={"address": address, "method": method, "stack": stack}).json()
        assert r["exit_code"] == 0, r
        return [int(e["value"], 16) if e["type"] == "num" else e["value"] for e in r["stack"]]

    def balance(self, address):
        return int(self.c.get("/api/v3/account", params={"address": address}).json()["balance"])

    def account_raw(self, address):
        return self.c.get("/api/v3/account", params={"address": address}).json()["address"]

    def by_message(self, msg_hash):
        txs = self.c.get("/api/v3/transactionsByMessage", params={"msg_hash": msg_hash}).json()["transactions"]
        assert len(txs) == 1, txs
        return txs[0]

    def transactions(self, address):
        return self.c.get("/api/v3/transactions", params={"account": address, "limit": 1000}).json()["transactions"]


def test_twenty_paid_completions_reconcile_on_chain():
    home = Path(tempfile.mkdtemp())
    money = home / "ton"
    port = free_port()
    env = dict(os.environ, KOKON_LOG="info", KOKON_DEVNET=str(money))
    log = home / "kokon.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(BINARY), "up", "--settlement", "ton-sandbox", "--workers", str(WORKERS),
             "--listen", f"127.0.0.1:{port}"],
            stdout=out, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        wait_ready(base, proc)
        ton = json.loads((money / "ton.json").read_text())
        chain = Chain(ton["endpoint"])

        reg = cli(money, "registry", "show", "--dir", str(money))
        assert reg["address"] == ton["registry"]
        assert len(reg["proxies"]) == 1 and reg["proxy_images"] and reg["worker_images"]

        workers = [cli(money, "worker", "earnings", "--name", f"dev-worker-{i}") for i in range(WORKERS)]
        wallets = [cli(money, "wallet", "show", "--name", f"dev-worker-{i}") for i in range(WORKERS)]
        start_balance = [int(w["balance_nanoton"]) for w in wallets]
        seen = [{t["hash"] for t in chain.transactions(w["wallet"])} for w in wallets]

        costs = []
        with httpx.Client(timeout=120) as c:
            for i in range(20):
                r = c.post(f"{base}/chat/completions", json={
                    "model": "smollm2-135m-instruct", "max_tokens": 4, "temperature": 0,
                    "messages": [{"role": "user", "content": f"Say a number: {i}"}]})
                assert r.status_code == 200, r.text
                costs.append(r.json()["usage"]["cost_nanoton"])
        assert all(c > 0 for c in costs)

        channel = cli(money, "channel", "status")["channels"][-1]
        channel_id = channel["channel"]

        def channel_claimed():
            deposit, claimed = chain.get(channel_id, "channel")[2:4]
            return claimed == sum(costs)
        wait_until("the proxy claims the client's vouchers on chain", channel_claimed, timeout=90, every=0.5)

        vault = cli(money, "proxy", "vault")
        owed = int(vault["owed_to_workers_nanoton"])
        assert int(vault["billed_nanoton"]) == sum(costs)
        assert int(vault["commission_nanoton"]) + owed == sum(costs)

        def workers_claimed():
            got = [cli(money, "worker", "earnings", "--name", f"dev-worker-{i}") for i in range(WORKERS)]
            return sum(int(w["earned_nanoton"]) for w in got) == owed and all(
                int(w["claimed_nanoton"]) == int(w["earned_nanoton"]) for w in got)
        wait_until("the workers claim their earnings on chain", workers_claimed, timeout=90, every=0.5)

        # On chain, by get-methods.
        earned = [cli(money, "worker", "earnings", "--name", f"dev-worker-{i}") for i in range(WORKERS)]
        assert chain.get(channel_id, "channel")[3] == sum(costs)
        vault_balance = chain.get(vault["vault"], "vault")[3]
        claims = [chain.get(vault["vault"], "workerClaimed", int(w["payout"], 16))[0] for w in earned]
        assert claims == [int(w["earned_nanoton"]) for w in earned]
        assert sum(claims) == owed
        assert vault_balance == STAKE + sum(costs) - sum(claims), "vault = stake + paid in − paid out"

        # Each worker's wallet and each claim, from the chain's own transactions since the start.
        vault_raw = chain.account_raw(vault["vault"])
        for w, before, old, claimed in zip(wallets, start_balance, seen, claims):
            txs = [t for t in chain.transactions(w["wallet"]) if t["hash"] not in old]
            wallet_gas = sum(int(t["total_fees"]) + sum(int(m["fwd_fee"] or 0) for m in t["out_msgs"]) for t in txs)
            to_vault = [m for t in txs for m in t["out_msgs"] if m["destination"] == vault_raw]
            assert to_vault, "the worker claimed"
            paid_in = paid_out = vault_gas = 0
            for m in to_vault:
                vt = chain.by_message(m["hash"])
                assert not vt["description"]["aborted"], vt
                payout, = vt["out_msgs"]
                storage = int((vt["description"]["storage_ph"] or {}).get("storage_fees_collected", 0))
                paid_in += int(m["value"])
                paid_out += int(payout["value"])
                # The vault's compute and action fees, and the payout's forwarding fee.
                vault_gas += int(vt["total_fees"]) - storage + int(payout["fwd_fee"])
            # The vault paid exactly the claimed increase plus what was left of the attached gas.
            assert paid_out - paid_in == claimed - vault_gas, "vault payouts = claims + unspent gas"
            gas = wallet_gas + vault_gas
            after = chain.balance(w["wallet"])
            assert after - before == claimed - gas, "wallet = before + claimed − gas of the claims"
            assert 0 < gas <= len(to_vault) * GAS_BOUND_PER_CLAIM, (gas, len(to_vault))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    # The chain is durable: the same money directory comes back with the registry and the channel.
    port = free_port()
    again = subprocess.Popen(
        [str(BINARY), "up", "--settlement", "ton-sandbox", "--workers", "1", "--listen", f"127.0.0.1:{port}"],
        stdout=open(log, "ab"), stderr=subprocess.STDOUT, env=env)
    try:
        wait_ready(f"http://127.0.0.1:{port}/v1", again)
        assert json.loads((money / "ton.json").read_text())["registry"] == ton["registry"]
        status = cli(money, "channel", "status")["channels"][-1]
        assert status["channel"] == channel_id
        assert int(status["claimed_nanoton"]) == sum(costs)
    finally:
        again.terminate()
        again.wait(timeout=30)
