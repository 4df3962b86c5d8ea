"""N concurrent SSE chat streams against an OpenAI-compatible base URL.

Prints one JSON line: streams, errors, time to first content chunk (p50, p99)
and the wall time. Used by bench/chain-vs-nginx.sh.
"""
import asyncio
import json
import sys
import time

import httpx


async def one(client, base, body, out):
    t = time.monotonic()
    first = None
    try:
        async with client.stream("POST", f"{base}/chat/completions", json=body) as r:
            if r.status_code != 200:
                out.append(("error", f"status {r.status_code}"))
                return
            last = None
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    last = line[6:]
                    if first is None and '"content"' in last:
                        first = time.monotonic() - t
        out.append(("ok", first) if last == "[DONE]" else ("error", f"ended with {last!r}"))
    except Exception as e:  # noqa: BLE001 - every failure counts as an error
        out.append(("error", repr(e)))


async def main(base, n, words):
    body = {"model": sys.argv[4] if len(sys.argv) > 4 else "echo", "stream": True,
            "messages": [{"role": "user", "content": " ".join(f"w{i}" for i in range(words))}]}
    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        out = []
        t = time.monotonic()
        await asyncio.gather(*(one(client, base, body, out) for _ in range(n)))
        wall = time.monotonic() - t
    ttft = sorted(x for k, x in out if k == "ok" and x is not None)
    errors = [x for k, x in out if k == "error"]
    pct = lambda p: round(ttft[min(len(ttft) - 1, int(p * len(ttft)))] * 1000, 1) if ttft else None
    print(json.dumps({"streams": n, "errors": len(errors), "first_errors": errors[:3],
                      "ttft_p50_ms": pct(0.5), "ttft_p99_ms": pct(0.99), "wall_s": round(wall, 2)}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
