#!/usr/bin/env bash
# Kokon's chain against nginx as a one-hop reverse proxy, in the same run,
# in front of the same fake engine (crates/kokon-testnet/examples/fake_engine.rs),
# driven by the same load generator (wrk, streaming chat requests):
#   1. unpaid chain vs nginx: requests/s, p50, p99 at concurrency 1, 16, 64
#   2. paid vs unpaid chain (devnet ledger) at concurrency 16
#   3. 1,000 concurrent SSE streams through the chain (echo engine, 40 words
#      at 25 ms): errors, time to first token, resident memory of `kokon up`
# Installs nginx and wrk (Debian) when missing. Prints ratios.
#   bench/chain-vs-nginx.sh            (DURATION=10 seconds per point)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
need=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v wrk >/dev/null || need+=(wrk)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
python3 -c "import httpx" 2>/dev/null || python3 -m pip install -q httpx
cargo build -q --release -p kokon
cargo build -q --release -p kokon-testnet --example fake_engine
K=target/release/kokon
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; "$NGINX" -p "$tmp" -c nginx.conf -s stop 2>/dev/null || true; }
trap cleanup EXIT

wait_http() { for _ in $(seq 1 600); do curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done; echo "not up: $1" >&2; exit 1; }

target/release/examples/fake_engine 127.0.0.1:19100 2>/dev/null & pids+=($!)
wait_http http://127.0.0.1:19100/v1/models
cat > "$tmp/nginx.conf" <<CONF
worker_processes auto;
pid $tmp/nginx.pid;
error_log $tmp/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $tmp; proxy_temp_path $tmp; fastcgi_temp_path $tmp; uwsgi_temp_path $tmp; scgi_temp_path $tmp;
  upstream engine { server 127.0.0.1:19100; keepalive 128; }
  server {
    listen 127.0.0.1:19101;
    location / { proxy_pass http://engine; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; }
  }
}
CONF
"$NGINX" -p "$tmp" -c nginx.conf
wait_http http://127.0.0.1:19101/v1/models

up() { # name port settlement [extra args]
  local name=$1 port=$2 settle=$3; shift 3
  KOKON_HOME="$tmp/$name" KOKON_LOG=warn "$K" up --listen "127.0.0.1:$port" --settlement "$settle" "$@" >"$tmp/$name.log" 2>&1 &
  pids+=($!)
  wait_http "http://127.0.0.1:$port/v1/models"
}
up unpaid 19102 none --engine upstream --upstream-url http://127.0.0.1:19100/v1 --model bench --max-jobs 256
up paid 19103 devnet --engine upstream --upstream-url http://127.0.0.1:19100/v1 --model bench --max-jobs 256

cat > "$tmp/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"model":"bench","stream":true,"messages":[{"role":"user","content":"hi"}]}'
wrk.headers["Content-Type"] = "application/json"
LUA
# requests/s, p50 ms, p99 ms, errors
load() {
  wrk -t"$(( $2 < 2 ? 1 : 2 ))" -c"$2" -d"${DURATION}s" --latency -s "$tmp/post.lua" "$1/v1/chat/completions" > "$tmp/wrk.out"
  python3 - "$tmp/wrk.out" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
def ms(label):
    m = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", t, re.M)
    v = float(m.group(1)); return {"us": v / 1000, "ms": v, "s": v * 1000}[m.group(2)]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
errs = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", t))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
print(f"{rps:.0f} {ms('50%'):.3f} {ms('99%'):.3f} {errs + (int(non2xx.group(1)) if non2xx else 0)}")
PY
}
row() { printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$@"; }
echo "## unpaid chain vs nginx (one hop), same fake engine, wrk, ${DURATION} s per point"
row concurrency "nginx req/s" "kokon req/s" ratio "nginx p50" "kokon p50" ratio "nginx p99" "kokon p99" "errors (nginx/kokon)"
row --- --- --- --- --- --- --- --- --- ---
for c in 1 16 64; do
  read -r nr n50 n99 ne <<<"$(load http://127.0.0.1:19101 "$c")"
  read -r kr k50 k99 ke <<<"$(load http://127.0.0.1:19102 "$c")"
  row "$c" "$nr" "$kr" "$(python3 -c "print(f'{$kr/$nr:.2f}')")" "${n50} ms" "${k50} ms" "$(python3 -c "print(f'{$k50/$n50:.1f}')")" "${n99} ms" "${k99} ms" "$ne/$ke"
done
echo
echo "## paid vs unpaid chain, concurrency 16"
read -r ur u50 u99 ue <<<"$(load http://127.0.0.1:19102 16)"
read -r pr p50 p99 pe <<<"$(load http://127.0.0.1:19103 16)"
row "unpaid req/s" "paid req/s" ratio "unpaid p50" "paid p50" "unpaid p99" "paid p99" "errors (unpaid/paid)" "" ""
row --- --- --- --- --- --- --- --- "" ""
row "$ur" "$pr" "$(python3 -c "print(f'{$pr/$ur:.2f}')")" "${u50} ms" "${p50} ms" "${u99} ms" "${p99} ms" "$ue/$pe" "" ""
echo
echo "## 1,000 concurrent SSE streams through the chain (echo engine, 40 words at 25 ms)"
up streams 19104 none --engine echo --echo-token-ms 25 --max-jobs 1100
pid=${pids[-1]}
rss_max=0
( while kill -0 "$pid" 2>/dev/null; do ps -o rss= -p "$pid"; sleep 0.2; done ) > "$tmp/rss" &
sampler=$!
python3 bench/sse_load.py http://127.0.0.1:19104/v1 1000 40 echo
kill "$sampler" 2>/dev/null || true
echo "peak resident memory of kokon up (gateway + proxy + worker): $(sort -n "$tmp/rss" | tail -1) KiB"
