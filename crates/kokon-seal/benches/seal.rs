//! What end-to-end sealing costs, side by side with its baseline in one run.
//!
//! 1. Response chunks: sealing and opening a streamed token's chunk (a
//!    24-byte `{"text":…}` piece) against copying the same bytes (what the
//!    chain does with a chunk today), per chunk.
//! 2. A job: sealing a 4 KiB body to 1 and to 3 candidates and opening it at
//!    one worker (HPKE setup is one X25519 per candidate each side).
//!
//! `cargo bench -p kokon-seal --bench seal` (env `BENCH_N`, default 200000).

use std::hint::black_box;
use std::time::Instant;

use kokon_seal::{Candidate, WorkerKey, open_job, seal_job};

fn per_op(n: usize, mut f: impl FnMut(usize)) -> f64 {
    let start = Instant::now();
    for i in 0..n {
        f(i);
    }
    start.elapsed().as_secs_f64() * 1e9 / n as f64
}

fn main() {
    let n: usize = std::env::var("BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000);
    let binding = [7u8; 32];
    let workers: Vec<(WorkerKey, [u8; 32])> =
        (0..3u8).map(|i| (WorkerKey::generate(), [i; 32])).collect();
    let candidates: Vec<Candidate> = workers
        .iter()
        .map(|(k, id)| Candidate {
            id: *id,
            public: k.public(),
        })
        .collect();
    let chunk = br#"{"text":" Paris is the"}"#;

    let copy = per_op(n, |_| {
        black_box(black_box(chunk).to_vec());
    });
    let (sealed, client) = seal_job(&candidates[..1], &binding, b"{}").unwrap();
    let (_, mut sealer) = open_job(&workers[0].0, &workers[0].1, &sealed, &binding).unwrap();
    let mut opener = client.response_opener(&workers[0].1).unwrap();
    let sealed_chunk = per_op(n, |_| {
        let c = sealer.seal(black_box(chunk), false).unwrap();
        black_box(opener.open(&c).unwrap());
    });
    println!("response chunk of {} bytes, {n} each:", chunk.len());
    println!("  copy (no encryption):  {copy:8.0} ns");
    println!("  seal + open:           {sealed_chunk:8.0} ns");
    println!("  ratio:                 {:8.1}×", sealed_chunk / copy);
    println!(
        "  at 60,000 tokens/s (the chain's rate in BENCHMARKS §8) sealing and opening take {:.1}% of one core",
        sealed_chunk * 60_000.0 / 1e9 * 100.0
    );

    let body = vec![b'x'; 4096];
    let jobs = (n / 100).max(100);
    for k in [1, 3] {
        let seal = per_op(jobs, |_| {
            black_box(seal_job(&candidates[..k], &binding, &body).unwrap());
        });
        let (sealed, _) = seal_job(&candidates[..k], &binding, &body).unwrap();
        let open = per_op(jobs, |_| {
            black_box(open_job(&workers[0].0, &workers[0].1, &sealed, &binding).unwrap());
        });
        println!(
            "job of 4 KiB to {k} candidate(s), {jobs} each: seal {:.1} µs, open {:.1} µs",
            seal / 1e3,
            open / 1e3
        );
    }
}
