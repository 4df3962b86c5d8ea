//! Streaming through the chain with and without end-to-end sealing: the
//! same 2,000-token echo job over a client link to the real proxy and
//! worker (RA-TLS, HTTP/2), once in plaintext and once sealed as the
//! gateway seals it (candidates asked and verified once, as the gateway's
//! cache does; the job sealed per run; every chunk opened). Runs alternate
//! in one process; medians of tokens/s and time to first token, as ratios.
//! The gateway's HTTP/SSE side, the same in both, is left out, so the
//! ratio is the sealing's share of the link path, not diluted by it.
//!
//! `cargo bench -p kokon-testnet --bench sealed` (env BENCH_RUNS, default 15).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kokon_attest::{Clock, Registry, Role, SystemClock};
use kokon_engine::echo::EchoEngine;
use kokon_gateway::ProxyLink;
use kokon_gateway::candidates::Candidates;
use kokon_proto::{CandidatesRequest, Frame, JobHeader, JobKind};
use kokon_testnet::{LocalNet, NetSpec, WorkerSpec};

const MODEL: &str = "bench";
const TOKENS: u32 = 2000;

fn payload(id: usize) -> Bytes {
    let words: Vec<String> = (0..TOKENS).map(|i| format!("w{}", i + id as u32)).collect();
    let job = serde_json::json!({
        "model": MODEL,
        "input": {"chat": [{"role": "user", "content": words.join(" ")}]},
        "params": {"max_tokens": TOKENS},
    });
    Bytes::from(serde_json::to_vec(&job).unwrap())
}

fn header(id: usize, sealed: bool) -> JobHeader {
    JobHeader {
        request_id: format!("bench-{id}-{sealed}"),
        model: MODEL.into(),
        kind: JobKind::Chat,
        max_price_milli: None,
        budget: None,
        payment: None,
        sealed,
    }
}

struct Run {
    tokens_per_s: f64,
    first_token: Duration,
    /// Of which sealing the job at the client.
    sealing: Duration,
}

async fn run(link: &ProxyLink, list: Option<&[kokon_seal::Candidate]>, id: usize) -> Run {
    let started = Instant::now();
    let (h, plain) = (header(id, list.is_some()), payload(id));
    let (body, mut reader) = match list {
        None => (plain, None),
        Some(list) => {
            let (job, client) = kokon_seal::seal_job(list, &h.binding(), &plain).unwrap();
            (Bytes::from(job.encode()), Some(client.reader()))
        }
    };
    let sealing = started.elapsed();
    let (mut frames, _) = link.submit(&h, body).await.unwrap();
    let (mut text, mut first) = (0usize, None);
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
                }
                text += n;
            }
            Frame::End(_) => break,
            other => panic!("{other:?}"),
        }
    }
    if let Some(r) = &reader {
        r.finish().unwrap();
    }
    assert!(text > TOKENS as usize, "the whole answer came");
    Run {
        tokens_per_s: f64::from(TOKENS) / started.elapsed().as_secs_f64(),
        first_token: first.unwrap(),
        sealing,
    }
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
    let engine = Arc::new(EchoEngine::new(MODEL));
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
        model: MODEL.into(),
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
    run(&link, None, 0).await; // warm-up
    run(&link, Some(&list), 0).await;
    for i in 1..=runs {
        plain.push(run(&link, None, i).await);
        sealed.push(run(&link, Some(&list), i).await);
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
    println!("{TOKENS}-token echo stream over a client link, {runs} alternating runs, medians");
    println!(
        "{:<10} {:>12} {:>12} {:>18}",
        "path", "tokens/s", "TTFT ms", "of which seal ms"
    );
    for (name, runs) in [("plaintext", &plain), ("sealed", &sealed)] {
        let (t, f, s) = (tps(runs), ttft(runs), seal(runs));
        println!("{name:<10} {t:>12.0} {f:>12.3} {s:>18.3}");
    }
    println!(
        "{:<10} {:>12.3} {:>12.3}",
        "ratio",
        tps(&sealed) / tps(&plain),
        ttft(&sealed) / ttft(&plain)
    );
}
