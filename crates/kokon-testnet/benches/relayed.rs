//! A streamed chat completion as an application sees it (the gateway's
//! OpenAI API, SSE), through the plain chain (gateway → proxy over an
//! RA-TLS link, sealed to the worker) and through the VPN path (every call
//! as chunked Oblivious HTTP through a relay to the proxy's gateway port,
//! sealed to the worker inside). Two networks in one process, the same
//! engine, runs alternating; medians of time to first token and tokens/s,
//! as ratios, and the paired TTFT difference.
//!
//! Echo engine by default (`BENCH_TOKENS`, default 500 words); with
//! `BENCH_ENGINE=llama` the built-in engine on the real model (`kokon model
//! pull` first; `BENCH_TOKENS` default 64, greedy, `BENCH_THREADS` default 2).
//!
//! `cargo bench -p kokon-testnet --bench relayed` (env BENCH_RUNS, default 15).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kokon_engine::Engine;
use kokon_engine::echo::EchoEngine;
use kokon_engine::llama::{LlamaConfig, LlamaEngine};
use kokon_testnet::{LocalNet, NetSpec, WorkerSpec};

const PROMPT: &str =
    "Write a short story about a lighthouse keeper who finds a message in a bottle.";

struct Run {
    first_token: Duration,
    tokens_per_s: f64,
}

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn engine() -> (String, u32, bool, Arc<dyn Engine>) {
    if std::env::var("BENCH_ENGINE").as_deref() != Ok("llama") {
        let tokens = env_u32("BENCH_TOKENS", 500);
        return (
            "bench".into(),
            tokens,
            false,
            Arc::new(EchoEngine::new("bench")),
        );
    }
    let model = kokon_models::DEFAULT_MODEL;
    let (path, entry) = kokon_models::locate(&kokon_models::kokon_home(), model)
        .unwrap_or_else(|e| panic!("{e} (run `kokon model pull` first)"));
    let cfg = LlamaConfig {
        name: model.into(),
        context_len: 2048,
        threads: env_u32("BENCH_THREADS", 2),
        model_sha256: hex::decode(entry.sha256)
            .ok()
            .and_then(|h| h.try_into().ok()),
    };
    let engine = Arc::new(LlamaEngine::load(&path, cfg).expect("the model loads"));
    (model.into(), env_u32("BENCH_TOKENS", 64), true, engine)
}

async fn run(
    http: &reqwest::Client,
    base: &str,
    model: &str,
    tokens: u32,
    llama: bool,
    id: usize,
) -> Run {
    let content = if llama {
        PROMPT.to_string()
    } else {
        (0..tokens)
            .map(|i| format!("w{}", i as usize + id))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let body = serde_json::json!({
        "model": model, "stream": true, "max_tokens": tokens, "temperature": 0,
        "messages": [{"role": "user", "content": content}],
    });
    let started = Instant::now();
    let resp = http
        .post(format!("{base}/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let (mut first, mut pieces, mut buf) = (None, 0u32, String::new());
    while let Some(chunk) = stream.next().await {
        buf.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        while let Some(i) = buf.find("\n\n") {
            let event: String = buf.drain(..i + 2).collect();
            if event.contains("\"content\":\"") && !event.contains("\"content\":\"\"") {
                first.get_or_insert_with(|| started.elapsed());
                pieces += 1;
            }
        }
    }
    let first = first.expect("some output");
    assert!(pieces >= tokens / 2, "{pieces} pieces for {tokens} tokens");
    let rest = started
        .elapsed()
        .saturating_sub(first)
        .as_secs_f64()
        .max(1e-9);
    Run {
        first_token: first,
        tokens_per_s: f64::from(pieces.saturating_sub(1)) / rest,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn quartiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 4], v[v.len() / 2], v[v.len() * 3 / 4])
}

#[tokio::main]
async fn main() {
    let runs = env_u32("BENCH_RUNS", 15) as usize;
    let (model, tokens, llama, engine) = engine();
    let plain = LocalNet::start(NetSpec::new(vec![WorkerSpec::new(engine.clone())]))
        .await
        .unwrap();
    let mut spec = NetSpec::new(vec![WorkerSpec::new(engine)]);
    spec.relay_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    let relayed = LocalNet::start(spec).await.unwrap();
    let http = reqwest::Client::new();
    // Warm-up: candidate lists verified, links and relay connection up.
    for net in [&plain, &relayed] {
        run(&http, &net.base_url(), &model, tokens.min(8), llama, 0).await;
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for i in 0..runs {
        a.push(run(&http, &plain.base_url(), &model, tokens, llama, 2 * i + 1).await);
        b.push(run(&http, &relayed.base_url(), &model, tokens, llama, 2 * i + 2).await);
    }
    let ttft = |v: &[Run]| {
        median(
            v.iter()
                .map(|r| r.first_token.as_secs_f64() * 1e3)
                .collect(),
        )
    };
    let tps = |v: &[Run]| median(v.iter().map(|r| r.tokens_per_s).collect());
    let what = if llama { "built-in model" } else { "echo" };
    println!(
        "{tokens}-token {what} stream through the gateway's API, {runs} alternating runs, medians"
    );
    println!(
        "{:<28} {:>12} {:>12} {:>8}",
        "", "plain chain", "relay+OHTTP", "ratio"
    );
    println!(
        "{:<28} {:>12.2} {:>12.2} {:>8.3}",
        "time to first token (ms)",
        ttft(&a),
        ttft(&b),
        ttft(&a) / ttft(&b)
    );
    println!(
        "{:<28} {:>12.0} {:>12.0} {:>8.3}",
        "tokens/s after the first",
        tps(&a),
        tps(&b),
        tps(&b) / tps(&a)
    );
    let diffs: Vec<f64> = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (y.first_token.as_secs_f64() - x.first_token.as_secs_f64()) * 1e3)
        .collect();
    let (q1, q2, q3) = quartiles(diffs);
    println!("TTFT relayed − plain, paired: median {q2:.3} ms (quartiles {q1:.3} .. {q3:.3})");
    let ratios: Vec<f64> = a
        .iter()
        .zip(&b)
        .map(|(x, y)| y.tokens_per_s / x.tokens_per_s)
        .collect();
    let (r1, r2, r3) = quartiles(ratios);
    println!("tokens/s relayed / plain, paired: median {r2:.3} (quartiles {r1:.3} .. {r3:.3})");
}
