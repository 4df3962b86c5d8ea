//! Claims by value against claims by clock: on-chain transactions and the
//! share of earnings they cost, side by side in one run.
//!
//! Two paid in-process networks on the devnet ledger with the registry's
//! default prices, identical but for the claim rule of the proxy and the
//! worker: **by clock** (claim whatever is claimable at every tick, the rule
//! before claims by value) and **by value** (claim once 10 TON is claimable,
//! the default on testnet and mainnet). Both tick every second and serve
//! the same steady load (chat requests through the gateway, concurrency 8)
//! at the same time. The devnet counts the claims that went through; each
//! is priced at the fees of its whole trace on TON as measured in the
//! sandbox (docs/BENCHMARKS.md §6), and set against what was earned.
//!
//! `cargo bench -p kokon-testnet --bench claims` (`BENCH_REQUESTS`, default
//! 2000 per network).

mod common;

use std::time::{Duration, Instant};

use kokon_engine::echo::EchoEngine;
use kokon_money::Nanotons;
use kokon_testnet::pay::{Ledger, MIN_CLAIM_ON_CHAIN, PaySpec};
use kokon_testnet::{LocalNet, NetSpec, WorkerSpec};

/// Fees of one channel claim's and one worker claim's whole trace on TON,
/// in nanotons (`node --test contracts/test/gas.test.js`, BENCHMARKS §6).
const CHANNEL_CLAIM_FEE: Nanotons = 5_325_859;
const WORKER_CLAIM_FEE: Nanotons = 5_441_190;
const TON: f64 = 1e9;

struct Rule {
    name: &'static str,
    min_claim: Nanotons,
}

async fn net(dir: &std::path::Path, rule: &Rule) -> LocalNet {
    let mut w = WorkerSpec::new(std::sync::Arc::new(EchoEngine::new("echo")));
    w.max_jobs = 16;
    let mut spec = NetSpec::new(vec![w]);
    let mut pay = PaySpec::dev(dir.to_path_buf());
    pay.claim_every = Duration::from_secs(1);
    pay.min_claim = Some(rule.min_claim);
    // Eight jobs at once each reserve their largest cost.
    pay.max_credit = Some(pay.deposit);
    spec.payments = Some(pay);
    LocalNet::start(spec).await.expect("a local network")
}

struct Counted {
    earned: Nanotons,
    channel_claims: u64,
    worker_claims: u64,
}

async fn counted(net: &LocalNet) -> Counted {
    let Some(Ledger::Devnet(d)) = net.ledger() else {
        panic!("a devnet network")
    };
    let billed = net
        .proxy
        .pay()
        .unwrap()
        .books()
        .await
        .totals()
        .unwrap()
        .billed;
    Counted {
        earned: billed,
        channel_claims: d.count("claim_channel").await.unwrap(),
        worker_claims: d.count("vault_claim").await.unwrap(),
    }
}

fn main() {
    let requests: usize = std::env::var("BENCH_REQUESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let rules = [
            Rule {
                name: "by clock (every tick)",
                min_claim: 1,
            },
            Rule {
                name: "by value (10 TON)",
                min_claim: MIN_CLAIM_ON_CHAIN,
            },
        ];
        let dirs: Vec<_> = rules.iter().map(|_| tempfile::tempdir().unwrap()).collect();
        let mut nets = Vec::new();
        for (rule, dir) in rules.iter().zip(&dirs) {
            nets.push(net(dir.path(), rule).await);
        }
        let before: Vec<Counted> = futures::future::join_all(nets.iter().map(counted)).await;
        let start = Instant::now();
        let urls: Vec<String> = nets.iter().map(|n| n.base_url()).collect();
        let loads = urls.iter().map(|u| common::load(u, "echo", requests, 8));
        let stats = futures::future::join_all(loads).await;
        let secs = start.elapsed().as_secs_f64();
        // Let the last tick of each claim loop run.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        println!(
            "{requests} requests per network in {secs:.1} s; claims tick every 1 s; fees per claim \
             on TON: channel {CHANNEL_CLAIM_FEE}, worker {WORKER_CLAIM_FEE} nanotons\n"
        );
        println!(
            "| rule | req/s | p50 | p99 | earned (TON) | channel claims | worker claims | fees (TON) | fees / earned | claims per 10 TON earned |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|");
        for ((rule, net), (b, s)) in rules.iter().zip(&nets).zip(before.iter().zip(&stats)) {
            let a = counted(net).await;
            let earned = a.earned - b.earned;
            let (cc, wc) = (
                a.channel_claims - b.channel_claims,
                a.worker_claims - b.worker_claims,
            );
            let fees = u128::from(cc) * CHANNEL_CLAIM_FEE + u128::from(wc) * WORKER_CLAIM_FEE;
            let per_10 = (cc + wc) as f64 / (earned as f64 / (10.0 * TON));
            println!(
                "| {} | {:.0} | {} | {} | {:.6} | {cc} | {wc} | {:.6} | {:.1}× | {per_10:.0} |",
                rule.name,
                s.rps,
                common::ms(s.p50),
                common::ms(s.p99),
                earned as f64 / TON,
                fees as f64 / TON,
                fees as f64 / earned as f64,
            );
        }
        let bound = (CHANNEL_CLAIM_FEE.max(WORKER_CLAIM_FEE)) as f64 / MIN_CLAIM_ON_CHAIN as f64;
        println!(
            "\nBy value, every claim moves at least 10 TON: at most one transaction per 10 TON \
             earned for each party, fees at most {:.3}% of what is claimed.",
            bound * 100.0
        );
    });
}
