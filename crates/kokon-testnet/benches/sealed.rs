//! Streaming through the chain with and without end-to-end sealing: the
//! same 2,000-token echo job over a client link to the real proxy and
//! worker (RA-TLS, HTTP/2), once in plaintext and once sealed as the
//! gateway seals it (candidates asked and verified once, as the gateway's
//! cache does; the job sealed per run; every chunk opened). Runs alternate
//! in one process; medians of tokens/s and time to first token, as ratios.
//! The gateway's HTTP/SSE side, the same in both, is left out, so the
//! ratio is the sealing's share of the link path, not diluted by it.
//!
//! With `BENCH_ENGINE=llama` the worker runs the built-in engine on the real
//! model (`kokon model pull` first) for `BENCH_TOKENS` (default 64) greedy
//! tokens of one short prompt: the time to first token an application sees,
//! where the model's prefill stands beside the sealing (`BENCH_THREADS`,
//! default 2, the engine's threads; `BENCH_VERBOSE=1` prints every run).
//!
//! `cargo bench -p kokon-testnet --bench sealed` (env BENCH_RUNS, default 15).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kokon_attest::{Clock, Registry, Role, SystemClock};
use kokon_engine::Engine;
use kokon_engine::echo::EchoEngine;
use kokon_engine::llama::{LlamaConfig, LlamaEngine};
use kokon_gateway::ProxyLink;
use kokon_gateway::candidates::Candidates;
use kokon_proto::{CandidatesRequest, Frame, JobHeader, JobKind};
use kokon_testnet::{LocalNet, NetSpec, WorkerSpec};

/// What the runs ask for.
struct Job {
    model: String,
    /// Tokens to generate (echo: the prompt's words).
    tokens: u32,
    /// The built-in engine: a fixed prompt, greedy.
    llama: bool,
}

const PROMPT: &str =
    "Write a short story about a lighthouse keeper who finds a message in a bottle.";

fn payload(job: &Job, id: usize) -> Bytes {
    let (content, temperature) = if job.llama {
        (PROMPT.to_string(), Some(0.0))
    } else {
        let words: Vec<String> = (0..job.tokens)
            .map(|i| format!("w{}", i + id as u32))
            .collect();
        (words.join(" "), None)
    };
    let body = serde_json::json!({
        "model": job.model,
        "input": {"chat": [{"role": "user", "content": content}]},
        "params": {"max_tokens": job.tokens, "temperature": temperature},
    });
    Bytes::from(serde_json::to_vec(&body).unwrap())
}

fn header(job: &Job, id: usize, sealed: bool) -> JobHeader {
    JobHeader {
        request_id: format!("bench-{id}-{sealed}"),
        model: job.model.clone(),
        kind: JobKind::Chat,
        max_price_milli: None,
        budget: None,
        payment: None,
        credit: None,
        sealed,
    }
}

struct Run {
    tokens_per_s: f64,
    first_token: Duration,
    /// Of which sealing the job at the client.
    sealing: Duration,
}

async fn run(
    link: &ProxyLink,
    job: &Job,
    list: Option<&[kokon_seal::Candidate]>,
    id: usize,
) -> Run {
    let started = Instant::now();
    let (h, plain) = (header(job, id, list.is_some()), payload(job, id));
    let (body, mut reader) = match list {
        None => (plain, None),
        Some(list) => {
            let (job, client) = kokon_seal::seal_job(list, &h.binding(), &plain).unwrap();
            (Bytes::from(job.encode()), Some(client.reader()))
        }
    };
    let sealing = started.elapsed();
    let (mut frames, _) = link.submit(&h, body).await.unwrap();
    let (mut pieces, mut first) = (0u32, None);
    while let Some(f) = frames.next().await {
        match f.unwrap() {
            Frame::Data(d) => {
                let n = match reader.as_mut() {
                    Some(r) => r.open(&d).unwrap().plaintext.len(),
                    None => {
                        let v: serde_json::Value = serde_json::from_slice(&d).unwrap();
                        v["text"].as_str().unwrap().len()
                    }
                };
                if n > 0 {
                    first.get_or_insert_with(|| started.elapsed());
                    pieces += 1;
                }
            }
            Frame::End(_) => break,
            other => panic!("{other:?}"),
        }
    }
    if let Some(r) = &reader {
        r.finish().unwrap();
    }
    assert!(
        pieces >= job.tokens / 2,
        "the answer came ({pieces} pieces)"
    );
    Run {
        tokens_per_s: f64::from(pieces) / started.elapsed().as_secs_f64(),
        first_token: first.unwrap(),
        sealing,
    }
}

/// The engine `BENCH_ENGINE` names (echo unless `llama`) and its job.
fn engine() -> (Job, Arc<dyn Engine>) {
    let tokens = |default: u32| {
        std::env::var("BENCH_TOKENS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    if std::env::var("BENCH_ENGINE").as_deref() != Ok("llama") {
        let job = Job {
            model: "bench".into(),
            tokens: tokens(2000),
            llama: false,
        };
        let engine = Arc::new(EchoEngine::new(&job.model));
        return (job, engine);
    }
    let model = kokon_models::DEFAULT_MODEL;
    let (path, entry) = kokon_models::locate(&kokon_models::kokon_home(), model)
        .unwrap_or_else(|e| panic!("{e} (run `kokon model pull` first)"));
    let cfg = LlamaConfig {
        name: model.into(),
        context_len: 2048,
        threads: std::env::var("BENCH_THREADS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2),
        model_sha256: hex::decode(entry.sha256)
            .ok()
            .and_then(|h| h.try_into().ok()),
    };
    let job = Job {
        model: model.into(),
        tokens: tokens(64),
        llama: true,
    };
    (
        job,
        Arc::new(LlamaEngine::load(&path, cfg).expect("the model loads")),
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let (job, engine) = engine();
    let net = LocalNet::start(NetSpec::new(vec![WorkerSpec::new(engine)]))
        .await
        .unwrap();
    let policy = Arc::new(Registry::local_test_network().policy().unwrap());
    let tls = kokon_tls::node::simulated_node(
        Role::Client,
        None,
        policy.clone(),
        [0; 32],
        &Default::default(),
    )
    .unwrap();
    let link = ProxyLink::new(net.proxy.addr, tls);
    let req = CandidatesRequest {
        model: job.model.clone(),
        max_price_milli: None,
    };
    let certs = link.candidates(&req).await.unwrap().decode().unwrap();
    let list: Vec<_> = Candidates::default()
        .judge(&req, &certs, &policy, SystemClock.now_unix())
        .unwrap()
        .into_iter()
        .map(|v| v.candidate)
        .collect();

    let (mut plain, mut sealed) = (vec![], vec![]);
    run(&link, &job, None, 0).await; // warm-up
    run(&link, &job, Some(&list), 0).await;
    for i in 1..=runs {
        plain.push(run(&link, &job, None, i).await);
        sealed.push(run(&link, &job, Some(&list), i).await);
    }
    if std::env::var("BENCH_VERBOSE").is_ok() {
        for (a, b) in plain.iter().zip(&sealed) {
            eprintln!(
                "ttft plain {:.3} ms sealed {:.3} ms",
                a.first_token.as_secs_f64() * 1e3,
                b.first_token.as_secs_f64() * 1e3
            );
        }
    }
    let tps = |v: &[Run]| median(v.iter().map(|r| r.tokens_per_s).collect());
    let ttft = |v: &[Run]| {
        median(
            v.iter()
                .map(|r| r.first_token.as_secs_f64() * 1e3)
                .collect(),
        )
    };
    let seal = |v: &[Run]| median(v.iter().map(|r| r.sealing.as_secs_f64() * 1e3).collect());
    let what = if job.llama { "built-in model" } else { "echo" };
    println!(
        "{}-token {what} stream over a client link, {runs} alternating runs, medians",
        job.tokens
    );
    println!(
        "{:<10} {:>12} {:>12} {:>18}",
        "path", "tokens/s", "TTFT ms", "of which seal ms"
    );
    for (name, runs) in [("plaintext", &plain), ("sealed", &sealed)] {
        let (t, f, s) = (tps(runs), ttft(runs), seal(runs));
        println!("{name:<10} {t:>12.0} {f:>12.3} {s:>18.3}");
    }
    // Ratios as speed, sealed over plaintext (≥ 1: sealing costs nothing):
    // tokens/s, and the inverse of the time to first token.
    println!(
        "{:<10} {:>12.3} {:>12.3}   (speed, sealed / plaintext)",
        "ratio",
        tps(&sealed) / tps(&plain),
        ttft(&plain) / ttft(&sealed)
    );
    // The runs are paired (plaintext, then sealed): the median of the
    // pairs' differences, with its quartiles, is steadier than the
    // difference of the medians on a noisy machine.
    let mut diffs: Vec<f64> = plain
        .iter()
        .zip(&sealed)
        .map(|(p, s)| (s.first_token.as_secs_f64() - p.first_token.as_secs_f64()) * 1e3)
        .collect();
    diffs.sort_by(f64::total_cmp);
    let q = |f: f64| diffs[((diffs.len() - 1) as f64 * f).round() as usize];
    println!(
        "TTFT sealed − plaintext, paired: median {:.3} ms (quartiles {:.3} .. {:.3})",
        q(0.5),
        q(0.25),
        q(0.75)
    );
}
