//! The built-in engine on the real model, alone and through the whole chain.
//!
//! Alone: Kokon's `Engine` API called in this process. Chain: the same
//! engine (the same loaded weights) behind a worker, reached through the
//! gateway → proxy → worker chain over RA-TLS with a streaming OpenAI
//! request, the way an application sees it. Runs alternate (alone, chain,
//! alone, …) so drift on a shared machine hits both. Greedy, fixed threads,
//! so both generate the same tokens.
//!
//! `cargo bench -p kokon-testnet --bench model` (needs `kokon model pull`;
//! `BENCH_RUNS`, default 5; `BENCH_TOKENS`, default 128; `BENCH_PAID=1` for
//! a paid network on the devnet ledger).

use std::sync::Arc;
use std::time::{Duration, Instant};

use kokon_engine::Engine;
use kokon_engine::llama::{LlamaConfig, LlamaEngine};
use kokon_models::DEFAULT_MODEL;
use kokon_proto::job::{JobInput, SamplingParams};
use kokon_proto::{ChatMessage, JobRequest};
use kokon_testnet::{LocalNet, NetSpec, WorkerSpec};
use serde_json::json;

const PROMPT: &str =
    "Write a short story about a lighthouse keeper who finds a message in a bottle.";

/// One streamed generation: time to the first piece, decode speed after it.
struct Run {
    ttft: Duration,
    tokens: u32,
    decode: Duration,
}

impl Run {
    fn tps(&self) -> f64 {
        f64::from(self.tokens.saturating_sub(1)) / self.decode.as_secs_f64()
    }
}

fn env(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

async fn alone(engine: &LlamaEngine, tokens: u32) -> Run {
    let job = JobRequest {
        model: DEFAULT_MODEL.into(),
        input: JobInput::Chat(vec![ChatMessage {
            role: "user".into(),
            content: PROMPT.into(),
        }]),
        params: SamplingParams {
            temperature: Some(0.0),
            max_tokens: Some(tokens),
            ..Default::default()
        },
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(256);
    let start = Instant::now();
    let run = engine.run(job, tx, Default::default());
    let read = async {
        rx.recv().await;
        let first = start.elapsed();
        while rx.recv().await.is_some() {}
        first
    };
    let (end, first) = tokio::join!(run, read);
    let end = end.expect("the engine runs the job");
    Run {
        ttft: first,
        tokens: end.usage.completion_tokens,
        decode: start.elapsed() - first,
    }
}

async fn chain(http: &reqwest::Client, url: &str, tokens: u32) -> Run {
    let body = json!({
        "model": DEFAULT_MODEL,
        "stream": true,
        "stream_options": {"include_usage": true},
        "temperature": 0,
        "max_tokens": tokens,
        "messages": [{"role": "user", "content": PROMPT}],
    });
    let start = Instant::now();
    let mut resp = http
        .post(format!("{url}/chat/completions"))
        .json(&body)
        .send()
        .await
        .expect("the gateway answers");
    assert!(resp.status().is_success(), "{}", resp.status());
    let mut first = None;
    let mut buf = String::new();
    let mut completion = 0;
    while let Some(bytes) = resp.chunk().await.expect("the stream reads") {
        buf.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(i) = buf.find("\n\n") {
            let event: String = buf.drain(..i + 2).collect();
            let Some(data) = event.strip_prefix("data: ") else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(data.trim()) else {
                continue;
            };
            let text = v["choices"][0]["delta"]["content"].as_str().unwrap_or("");
            if first.is_none() && !text.is_empty() {
                first = Some(start.elapsed());
            }
            if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
                completion = n as u32;
            }
        }
    }
    let first = first.expect("some text came");
    Run {
        ttft: first,
        tokens: completion,
        decode: start.elapsed() - first,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let runs = env("BENCH_RUNS", 5);
    let tokens = env("BENCH_TOKENS", 128);
    let home = kokon_models::kokon_home();
    let (path, entry) = match kokon_models::locate(&home, DEFAULT_MODEL) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let cfg = LlamaConfig {
        name: DEFAULT_MODEL.into(),
        context_len: 2048,
        threads: 2,
        model_sha256: hex::decode(entry.sha256)
            .ok()
            .and_then(|h| h.try_into().ok()),
    };
    let engine = Arc::new(LlamaEngine::load(&path, cfg).expect("the model loads"));
    let mut spec = NetSpec::new(vec![WorkerSpec::new(engine.clone())]);
    let books = tempfile::tempdir().expect("a temporary directory");
    if std::env::var("BENCH_PAID").is_ok_and(|v| v == "1") {
        spec.payments = Some(kokon_testnet::pay::PaySpec::dev(books.path().to_path_buf()));
    }
    let net = LocalNet::start(spec).await.expect("the network starts");
    let url = net.base_url();
    let http = reqwest::Client::new();
    // Warm-up: page the weights in, open the links.
    alone(&engine, 8).await;
    chain(&http, &url, 8).await;

    let (mut a, mut c) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        a.push(alone(&engine, tokens).await);
        c.push(chain(&http, &url, tokens).await);
    }
    for (x, y) in a.iter().zip(&c) {
        assert_eq!(x.tokens, y.tokens, "greedy: the same tokens both ways");
    }
    let ttft = |v: &[Run]| median(v.iter().map(|r| r.ttft.as_secs_f64() * 1e3).collect());
    let tps = |v: &[Run]| median(v.iter().map(Run::tps).collect());
    println!("{DEFAULT_MODEL}, {tokens} new tokens, greedy, 2 threads, {runs} runs each (medians)");
    println!("{:<8} {:>12} {:>14}", "path", "TTFT ms", "decode tok/s");
    println!("{:<8} {:>12.1} {:>14.1}", "alone", ttft(&a), tps(&a));
    println!("{:<8} {:>12.1} {:>14.1}", "chain", ttft(&c), tps(&c));
    println!(
        "{:<8} {:>12.2} {:>14.2}",
        "ratio",
        ttft(&c) / ttft(&a),
        tps(&c) / tps(&a)
    );
}
