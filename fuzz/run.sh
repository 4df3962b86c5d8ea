#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) each; seeds come from
# `cargo run -p kokon-attest --example fuzz_seeds -- fuzz/seeds`.
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP=1 enables them on stable.
set -euo pipefail
cd "$(dirname "$0")"
secs=${SECONDS_PER_TARGET:-60}
for t in ${TARGETS:-frame_decoder job_header announce certificate evidence money tdx_quote qgs_response ton_api openai_request control ohttp bhttp credit}; do
  mkdir -p corpus/$t
  [ -d seeds/$t ] && cp -n seeds/$t/* corpus/$t/ 2>/dev/null || true
  echo "== $t ($secs s)"
  RUSTC_BOOTSTRAP=1 cargo fuzz run -O $t corpus/$t -- -max_total_time=$secs -max_len=20000 2>&1 | grep -E "Done|ERROR|panicked|SUMMARY|stat::number_of_executed_units" || true
done
