//! What paying with blind credit tokens costs a job, against paying with a
//! channel, both on the VPN path (relay + chunked OHTTP, sealed to the
//! worker). Two paid networks in one process, the same echo engine, runs
//! alternating; each run is one whole (non-streamed) chat completion as an
//! application sees it, from request to the answer — which, paid by
//! tokens, includes taking them from the wallet (durably) and redeeming
//! them at the proxy; the change is claimed after the answer (two more
//! relayed calls and a blind signature per change token), measured apart
//! as the time until the wallet holds it again.
//! Medians, their ratio, and the paired difference.
//!
//! `cargo bench -p kokon-testnet --bench credits` (env BENCH_RUNS, default
//! 30; BENCH_TOKENS, default 16 words).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kokon_testnet::pay::PaySpec;
use kokon_testnet::{LocalNet, NetSpec, WorkerSpec};

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

async fn net(dir: &std::path::Path, credits: bool) -> LocalNet {
    let engine = std::sync::Arc::new(kokon_engine::echo::EchoEngine::new("bench"));
    let mut spec = NetSpec::new(vec![WorkerSpec::new(engine)]);
    spec.relay_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    spec.payments = Some(PaySpec::dev(dir.to_path_buf()));
    // Enough for every run (each job's change comes back).
    spec.credits = credits.then_some(2_000_000);
    LocalNet::start(spec).await.unwrap()
}

async fn run(http: &reqwest::Client, base: &str, words: u32, id: usize) -> Duration {
    let content = (0..words)
        .map(|i| format!("w{}", i as usize + id))
        .collect::<Vec<_>>()
        .join(" ");
    let body = serde_json::json!({
        "model": "bench", "max_tokens": words + 4,
        "messages": [{"role": "user", "content": content}],
    });
    let started = Instant::now();
    let resp = http
        .post(format!("{base}/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert!(
        v["usage"]["cost_nanoton"].as_u64().unwrap() > 0,
        "a paid job"
    );
    started.elapsed()
}

/// Milliseconds from `started` until the wallet holds no tokens in jobs
/// (polled every millisecond).
async fn change_back(http: &reqwest::Client, base: &str, started: Instant) -> f64 {
    loop {
        let b: serde_json::Value = http
            .get(format!("{base}/credits"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if b["in_jobs_nanoton"] == "0" {
            return started.elapsed().as_secs_f64() * 1e3;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn quartiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 4], v[v.len() / 2], v[v.len() * 3 / 4])
}

#[tokio::main]
async fn main() {
    let runs = env_u32("BENCH_RUNS", 30) as usize;
    let words = env_u32("BENCH_TOKENS", 16);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let channel = net(da.path(), false).await;
    let tokens = net(db.path(), true).await;
    let http = reqwest::Client::new();
    for n in [&channel, &tokens] {
        run(&http, &n.base_url(), 4, 0).await;
    }
    let (mut a, mut b, mut change) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        // Under the relay's per-address rate (20 requests/s): each job is
        // a candidate list, the job, and a voucher or two change calls.
        tokio::time::sleep(Duration::from_millis(250)).await;
        a.push(
            run(&http, &channel.base_url(), words, 2 * i + 1)
                .await
                .as_secs_f64()
                * 1e3,
        );
        let started = Instant::now();
        b.push(
            run(&http, &tokens.base_url(), words, 2 * i + 2)
                .await
                .as_secs_f64()
                * 1e3,
        );
        change.push(change_back(&http, &tokens.base_url(), started).await);
    }
    let diffs: Vec<f64> = a.iter().zip(&b).map(|(x, y)| y - x).collect();
    let (_, ma, _) = quartiles(a);
    let (_, mb, _) = quartiles(b);
    println!(
        "{words}-word echo chat, whole answer, relay+OHTTP+E2E, {runs} alternating runs, medians"
    );
    println!(
        "{:<24} {:>10} {:>10} {:>8}",
        "", "channel", "tokens", "ratio"
    );
    println!(
        "{:<24} {:>10.2} {:>10.2} {:>8.3}",
        "request → answer (ms)",
        ma,
        mb,
        mb / ma
    );
    let (q1, q2, q3) = quartiles(diffs);
    println!("tokens − channel, paired: median {q2:.2} ms (quartiles {q1:.2} .. {q3:.2})");
    let (c1, c2, c3) = quartiles(change);
    println!(
        "request → change back in the wallet: median {c2:.2} ms (quartiles {c1:.2} .. {c3:.2})"
    );
}
