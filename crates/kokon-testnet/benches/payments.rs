//! What payments cost.
//!
//! 1. Vouchers: sign + verify of a channel voucher (cell layout + hash +
//!    Ed25519) against a bare Ed25519 sign + verify of 32 bytes; a full
//!    receipt check; and the durable step (the gateway's `pay`, one fsync'd
//!    SQLite commit) — side by side in this process.
//! 2. Requests through the chain with payments off and on (devnet), same
//!    process, same client: the ratio is the cost of paying per job.
//!
//! `cargo bench -p kokon-testnet --bench payments` (env BENCH_REQUESTS).

mod common;

use std::time::Instant;

use common::{load, ms};

use kokon_money::receipt::{Budget, Expect, check};
use kokon_money::{
    Address, ChannelVoucher, Hash32, PriceTable, Receipt, SecretKey, Signed, TokenUsage,
};
use kokon_testnet::pay::PaySpec;
use kokon_testnet::{LocalNet, NetSpec, WorkerSpec};

fn per_sec(n: usize, f: impl FnMut(usize)) -> f64 {
    let mut f = f;
    let start = Instant::now();
    for i in 0..n {
        f(i);
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn vouchers() {
    let key = SecretKey::from_bytes([7; 32]);
    let pk = key.public();
    let channel = Address::new(0, [1; 32]);
    let n = 20_000;
    let bare = per_sec(n, |i| {
        let mut msg = [0u8; 32];
        msg[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let sig = key.sign(&msg);
        pk.verify(&msg, &sig).unwrap();
    });
    let voucher = per_sec(n, |i| {
        let v = Signed::sign(
            ChannelVoucher {
                channel,
                amount: i as u128 + 1,
            },
            &key,
        )
        .unwrap();
        v.verify(&pk).unwrap();
    });
    let prices = PriceTable::default();
    let usage = TokenUsage {
        prompt: 100,
        completion: 50,
        ..Default::default()
    };
    let r = Receipt {
        request: Hash32::of(b"req"),
        model: Hash32([2; 32]),
        usage,
        price_milli: 1000,
        cost: 2500,
    };
    let r = Signed::sign(r, &key).unwrap();
    let expect = Expect {
        request_id: "req",
        model: "m",
        model_hashes: None,
        prices: &prices,
        price_milli: Some(1000),
        max_price_milli: None,
        budget: Budget {
            prompt: 1000,
            completion: 1000,
        },
        completion_bound: None,
    };
    let receipts = per_sec(n, |_| {
        check(&r, &pk, &expect).unwrap();
    });
    let tmp = tempfile::tempdir().unwrap();
    let mut books = kokon_pay::books::client::ClientBooks::open(
        &tmp.path().join("c.db"),
        SecretKey::from_bytes([7; 32]),
        channel,
        u128::MAX >> 10,
    )
    .unwrap();
    let durable_n = 300;
    let durable = per_sec(durable_n, |i| {
        let paid = books.pay(&format!("req-{i}"), &pk, &r, 2500).unwrap();
        paid.wait_blocking().unwrap();
    });
    // Group commit: 16 payments written, then one fsync for all of them.
    let mut waiting = Vec::new();
    let grouped = per_sec(durable_n, |i| {
        waiting.push(books.pay(&format!("grp-{i}"), &pk, &r, 2500).unwrap());
        if waiting.len() == 16 {
            waiting.drain(..).for_each(|d| {
                d.wait_blocking().unwrap();
            });
        }
    });
    println!("vouchers and receipts ({n} each; durable pay {durable_n})");
    println!("{:<44} {:>12} {:>8}", "operation", "per second", "ratio");
    println!(
        "{:<44} {:>12.0} {:>8.2}",
        "bare Ed25519 sign+verify (baseline)", bare, 1.0
    );
    println!(
        "{:<44} {:>12.0} {:>8.2}",
        "channel voucher sign+verify",
        voucher,
        voucher / bare
    );
    println!(
        "{:<44} {:>12.0} {:>8.2}",
        "receipt check (verify + price + bounds)",
        receipts,
        receipts / bare
    );
    println!(
        "{:<44} {:>12.0} {:>8.4}",
        "gateway pay: sign + commit + own fsync",
        durable,
        durable / bare
    );
    println!(
        "{:<44} {:>12.0} {:>8.4}",
        "gateway pay: 16 commits per fsync (group)",
        grouped,
        grouped / bare
    );
}

async fn chain(requests: usize) {
    let engine = std::sync::Arc::new(kokon_engine::echo::EchoEngine::new("bench"));
    let worker = || WorkerSpec {
        max_jobs: 64,
        ..WorkerSpec::new(engine.clone())
    };
    let off = LocalNet::start(NetSpec::new(vec![worker()])).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = NetSpec::new(vec![worker()]);
    spec.payments = Some(PaySpec::dev(tmp.path().to_path_buf()));
    let on = LocalNet::start(spec).await.unwrap();
    println!();
    println!("tiny echo chat request through the chain, {requests} requests per row");
    println!(
        "{:<6} {:<14} {:>10} {:>12} {:>12}",
        "conc", "payments", "req/s", "p50", "p99"
    );
    for conc in [1usize, 16] {
        let off_stats = load(&off.base_url(), "bench", requests, conc).await;
        let on_stats = load(&on.base_url(), "bench", requests, conc).await;
        for (name, st) in [("off", &off_stats), ("on (devnet)", &on_stats)] {
            println!(
                "{conc:<6} {name:<14} {:>10.0} {:>12} {:>12}",
                st.rps,
                ms(st.p50),
                ms(st.p99)
            );
        }
        let ratio =
            |a: std::time::Duration, b: std::time::Duration| a.as_secs_f64() / b.as_secs_f64();
        println!(
            "{conc:<6} {:<14} {:>10.2} {:>12.2} {:>12.2}",
            "ratio on/off",
            on_stats.rps / off_stats.rps,
            ratio(on_stats.p50, off_stats.p50),
            ratio(on_stats.p99, off_stats.p99)
        );
    }
}

#[tokio::main]
async fn main() {
    let requests: usize = std::env::var("BENCH_REQUESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    vouchers();
    chain(requests).await;
}
