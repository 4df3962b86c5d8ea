//! What one settlement operation costs in time: the same claims on the
//! devnet ledger (one fsync'd SQLite commit) and on the TON sandbox chain
//! (pre-flight get-methods, a signed wallet message, the emulator running
//! the real contracts, following the trace), side by side in one run.
//!
//! `cargo bench -p kokon-ton --bench settle` (env BENCH_CLAIMS, default 30).
//! Needs `npm ci` in contracts/.

use std::sync::Arc;
use std::time::Instant;

use kokon_money::{ChannelVoucher, Nanotons, SecretKey, Signed};
use kokon_pay::devnet::{Delays, Devnet};
use kokon_pay::{Settlement, SystemClock};
use kokon_ton::sandbox::{SandboxChain, contracts_dir};
use kokon_ton::{Network, TonConfig, TonSettlement};

const TON: Nanotons = 1_000_000_000;

/// Opens a channel and times `n` claims of rising vouchers; ms per claim.
async fn claims(ledger: &dyn Settlement, client: &SecretKey, proxy: &SecretKey, n: u64) -> f64 {
    ledger.vault_deposit(proxy, TON / 10).await.unwrap();
    let ch = ledger
        .open_channel(client, proxy.public(), TON)
        .await
        .unwrap();
    let start = Instant::now();
    for i in 1..=n {
        let v = Signed::sign(
            ChannelVoucher {
                channel: ch.id,
                amount: u128::from(i) * 1000,
            },
            client,
        )
        .unwrap();
        ledger.claim_channel(proxy, v).await.unwrap();
    }
    start.elapsed().as_secs_f64() * 1000.0 / n as f64
}

#[tokio::main]
async fn main() {
    let n: u64 = std::env::var("BENCH_CLAIMS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let (client, proxy) = (SecretKey::generate(), SecretKey::generate());

    let dir = tempfile::tempdir().unwrap();
    let delays = Delays {
        channel_close_secs: 3600,
        vault_withdraw_secs: 3600,
    };
    let devnet =
        Devnet::open(&dir.path().join("ledger.db"), Arc::new(SystemClock), delays).unwrap();
    devnet.fund(client.public(), 10 * TON).await.unwrap();
    devnet.fund(proxy.public(), 10 * TON).await.unwrap();
    let dev_ms = claims(&devnet, &client, &proxy, n).await;

    let chain = SandboxChain::start(&contracts_dir(), None).await.unwrap();
    let ton = TonSettlement::new(
        TonConfig::new(Network::Sandbox, chain.url()),
        Arc::new(SystemClock),
    )
    .unwrap();
    for k in [&client, &proxy] {
        ton.api()
            .sandbox_fund(&ton.wallet_of(&k.public()).unwrap(), 10 * TON)
            .await
            .unwrap();
    }
    let ton_ms = claims(&ton, &client, &proxy, n).await;
    chain.stop().await;

    println!("channel claims, {n} each, sequential:");
    println!("  devnet (SQLite, fsync):        {dev_ms:8.2} ms per claim");
    println!("  TON sandbox (contracts, HTTP): {ton_ms:8.2} ms per claim");
    println!("  ratio devnet/TON:              {:8.3}", dev_ms / ton_ms);
}
