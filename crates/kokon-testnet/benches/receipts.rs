//! Streaming through a paid chain with cumulative receipts every N tokens
//! vs a receipt only at the end, side by side in one run.
//!
//! Two paid in-process networks on the devnet ledger, identical but for the
//! worker's `receipt_every_tokens` (64, the default, and 0 = only at the
//! end). The engine is the echo engine with no delay, so the chain itself
//! is the bottleneck and the receipts' cost (signing, the certificate in
//! each envelope, relaying) shows as fully as it can; with a real model it
//! hides behind the model's time per token. Runs alternate so drift on a
//! shared machine hits both; medians are printed with their ratio.
//!
//! `cargo bench -p kokon-testnet --bench receipts` (`BENCH_RUNS`, default 7;
//! `BENCH_TOKENS`, default 2000; `BENCH_EVERY`, default 64).

use std::time::{Duration, Instant};

use kokon_engine::echo::EchoEngine;
use kokon_testnet::pay::PaySpec;
use kokon_testnet::{LocalNet, NetSpec, WorkerSpec};
use serde_json::json;

fn env(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

async fn net(dir: &std::path::Path, every: u32) -> LocalNet {
    let mut w = WorkerSpec::new(std::sync::Arc::new(EchoEngine::new("echo")));
    w.receipt_every_tokens = every;
    if every == 0 {
        w.receipt_every = Duration::from_secs(3600);
    }
    let mut spec = NetSpec::new(vec![w]);
    let mut pay = PaySpec::dev(dir.to_path_buf());
    pay.max_credit = Some(pay.deposit);
    spec.payments = Some(pay);
    LocalNet::start(spec).await.expect("a local network")
}

/// Streams one job of `tokens` words; returns tokens per second and the
/// receipt frames' effect on the billed cost (must be the same).
async fn stream(http: &reqwest::Client, url: &str, tokens: u32) -> (f64, u64) {
    let words: Vec<String> = (0..tokens).map(|i| format!("w{i}")).collect();
    let body = json!({
        "model": "echo",
        "stream": true,
        "stream_options": {"include_usage": true},
        "max_tokens": tokens,
        "messages": [{"role": "user", "content": words.join(" ")}],
    });
    let start = Instant::now();
    let mut resp = http
        .post(format!("{url}/chat/completions"))
        .json(&body)
        .send()
        .await
        .expect("the gateway answers");
    assert!(resp.status().is_success(), "{}", resp.status());
    let (mut buf, mut cost) = (String::new(), 0);
    while let Some(bytes) = resp.chunk().await.expect("the stream reads") {
        buf.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(i) = buf.find("\n\n") {
            let event: String = buf.drain(..i + 2).collect();
            let data = event.trim_start_matches("data: ").trim();
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(data)
                && let Some(c) = v["usage"]["cost_nanoton"].as_u64()
            {
                cost = c;
            }
        }
    }
    (f64::from(tokens) / start.elapsed().as_secs_f64(), cost)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let runs = env("BENCH_RUNS", 7);
    let tokens = env("BENCH_TOKENS", 2000);
    let every = env("BENCH_EVERY", 64);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let metered = net(a.path(), every).await;
    let at_end = net(b.path(), 0).await;
    let http = reqwest::Client::new();
    // Warm both (channels opened, links up).
    stream(&http, &metered.base_url(), 64).await;
    stream(&http, &at_end.base_url(), 64).await;
    let (mut m, mut e) = (vec![], vec![]);
    for _ in 0..runs {
        let (tps, cost_m) = stream(&http, &metered.base_url(), tokens).await;
        m.push(tps);
        let (tps, cost_e) = stream(&http, &at_end.base_url(), tokens).await;
        e.push(tps);
        assert_eq!(cost_m, cost_e, "the same job costs the same either way");
    }
    // The runs are paired (metered, then at the end): the median of the
    // pairs' ratios, with its quartiles, is steadier on a noisy machine
    // than the ratio of the medians.
    let mut ratios: Vec<f64> = m.iter().zip(&e).map(|(m, e)| m / e).collect();
    ratios.sort_by(f64::total_cmp);
    let q = |f: f64| ratios[((ratios.len() - 1) as f64 * f).round() as usize];
    let (m, e) = (median(m), median(e));
    println!(
        "streaming {tokens} tokens through the paid chain, echo engine, {runs} runs each (median):"
    );
    println!("  receipt every {every} tokens: {m:>9.0} tokens/s");
    println!("  receipt only at the end:  {e:>9.0} tokens/s");
    println!("  ratio: {:.3}×", m / e);
    println!(
        "  paired ratio: median {:.3}× (quartiles {:.3} .. {:.3})",
        q(0.5),
        q(0.25),
        q(0.75)
    );
}
