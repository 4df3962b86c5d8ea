//! Latency and throughput of a tiny echo-engine chat request, served
//! (a) directly by a plain HTTP server calling the engine, and
//! (b) through the full Kokon chain: gateway → proxy → worker over RA-TLS.
//! Both run side by side in this process; the ratio is the cost of Kokon.
//!
//! `cargo bench -p kokon-testnet --bench chain` (env BENCH_REQUESTS to change N).

mod common;

use std::sync::Arc;

use common::{load, ms};

use axum::Json;
use axum::routing::post;
use kokon_engine::Engine;
use kokon_engine::echo::EchoEngine;
use kokon_proto::job::{JobInput, SamplingParams};
use kokon_proto::{ChatMessage, JobRequest};
use kokon_testnet::{LocalNet, NetSpec, WorkerSpec};
use serde_json::{Value, json};

const MODEL: &str = "bench";

async fn direct_server(engine: Arc<EchoEngine>) -> String {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(move |Json(body): Json<Value>| {
            let engine = engine.clone();
            async move {
                let text = body["messages"][0]["content"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                let job = JobRequest {
                    model: MODEL.into(),
                    input: JobInput::Chat(vec![ChatMessage {
                        role: "user".into(),
                        content: text,
                    }]),
                    params: SamplingParams::default(),
                };
                let (tx, mut rx) = tokio::sync::mpsc::channel(16);
                let run = tokio::spawn(engine.run(job, tx, Default::default()));
                let mut out = String::new();
                while let Some(p) = rx.recv().await {
                    out.push_str(&p);
                }
                let end = run.await.unwrap().unwrap();
                Json(
                    json!({"choices": [{"message": {"role": "assistant", "content": out}}],
                    "usage": {"completion_tokens": end.usage.completion_tokens}}),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/v1")
}

#[tokio::main]
async fn main() {
    let requests: usize = std::env::var("BENCH_REQUESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let engine = Arc::new(EchoEngine::new(MODEL));
    let direct = direct_server(engine.clone()).await;
    let net = LocalNet::start(NetSpec::new(vec![WorkerSpec {
        max_jobs: 64,
        ..WorkerSpec::new(engine)
    }]))
    .await
    .unwrap();
    let chain = net.base_url();

    println!("tiny echo chat request, {requests} requests per row, same process, same client");
    println!(
        "{:<6} {:<8} {:>10} {:>12} {:>12}",
        "conc", "path", "req/s", "p50", "p99"
    );
    for conc in [1usize, 16] {
        let d = load(&direct, MODEL, requests, conc).await;
        let c = load(&chain, MODEL, requests, conc).await;
        println!(
            "{conc:<6} {:<8} {:>10.0} {:>12} {:>12}",
            "direct",
            d.rps,
            ms(d.p50),
            ms(d.p99)
        );
        println!(
            "{conc:<6} {:<8} {:>10.0} {:>12} {:>12}",
            "kokon",
            c.rps,
            ms(c.p50),
            ms(c.p99)
        );
        println!(
            "{conc:<6} {:<8} {:>10.2} {:>12.2} {:>12.2}",
            "ratio",
            c.rps / d.rps,
            c.p50.as_secs_f64() / d.p50.as_secs_f64(),
            c.p99.as_secs_f64() / d.p99.as_secs_f64()
        );
    }
}
