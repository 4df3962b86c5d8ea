//! The Rust backend against the real compiled contracts, on the local
//! sandbox chain (the TON emulator behind the toncenter v3 API).
//!
//! Needs Node.js and `npm ci` in contracts/ (scripts/setup does both).

use std::sync::Arc;

use kokon_money::ledger::ChannelState;
use kokon_money::{
    ChannelVoucher, Economics, MoneyError, Nanotons, SecretKey, Signed, WorkerVoucher,
};
use kokon_pay::{Clock, ManualClock, PayError, Settlement};
use kokon_ton::api::Status;
use kokon_ton::cells::Stakes;
use kokon_ton::registry::{self, Change};
use kokon_ton::sandbox::{SandboxChain, contracts_dir};
use kokon_ton::wallet::Wallet;
use kokon_ton::{Network, TonConfig, TonSettlement};

const TON: Nanotons = 1_000_000_000;

struct Chain {
    sandbox: SandboxChain,
    ton: TonSettlement,
    clock: Arc<ManualClock>,
}

/// The sandbox's clock: the wall clock plus what the test advanced it by.
struct OffsetClock(Arc<ManualClock>);

impl Clock for OffsetClock {
    fn now_unix(&self) -> u64 {
        kokon_pay::SystemClock.now_unix() + self.0.now_unix()
    }
}

async fn chain() -> Chain {
    let sandbox = SandboxChain::start(&contracts_dir(), None).await.unwrap();
    let clock = Arc::new(ManualClock::new(0));
    let mut cfg = TonConfig::new(Network::Sandbox, sandbox.url());
    cfg.channel_close_secs = 600;
    cfg.vault_withdraw_secs = 900;
    let ton = TonSettlement::new(cfg, Arc::new(OffsetClock(clock.clone()))).unwrap();
    Chain {
        sandbox,
        ton,
        clock,
    }
}

impl Chain {
    /// A funded client and a proxy whose vault holds 1 TON.
    async fn client_and_proxy(&self) -> (SecretKey, SecretKey) {
        let (client, proxy) = (SecretKey::generate(), SecretKey::generate());
        self.fund(&client, 20 * TON).await;
        self.fund(&proxy, 20 * TON).await;
        self.ton.vault_deposit(&proxy, TON).await.unwrap();
        (client, proxy)
    }

    async fn fund(&self, k: &SecretKey, amount: Nanotons) {
        let w = self.ton.wallet_of(&k.public()).unwrap();
        self.ton.api().sandbox_fund(&w, amount).await.unwrap();
    }

    /// Moves the chain's clock and the backend's together.
    async fn advance(&self, secs: u64) {
        self.ton.api().sandbox_advance(secs).await.unwrap();
        self.clock.advance(secs);
    }
}

fn money(e: PayError) -> MoneyError {
    match e {
        PayError::Money(m) => m,
        other => panic!("expected a money error, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_and_vault_lifecycle_on_the_real_contracts() {
    let c = chain().await;
    let (client, proxy, worker) = (
        SecretKey::generate(),
        SecretKey::generate(),
        SecretKey::generate(),
    );
    for k in [&client, &proxy, &worker] {
        c.fund(k, 20 * TON).await;
    }

    // The proxy's vault, deployed by its first deposit.
    let vault = c.ton.vault_deposit(&proxy, 3 * TON).await.unwrap();
    assert_eq!(vault.id, c.ton.vault_address(&proxy.public()).unwrap());
    assert_eq!(vault.balance, 3 * TON);
    assert_eq!(
        c.ton.vault_deposit(&proxy, TON).await.unwrap().balance,
        4 * TON
    );

    // A channel; its row comes back from the chain as written.
    let ch = c
        .ton
        .open_channel(&client, proxy.public(), 5 * TON)
        .await
        .unwrap();
    assert_eq!(
        (ch.deposit, ch.claimed, ch.state),
        (5 * TON, 0, ChannelState::Open)
    );
    assert_eq!(c.ton.channel(ch.id).await.unwrap(), Some(ch));
    let ch = c.ton.topup(&client, ch.id, TON).await.unwrap();
    assert_eq!(ch.deposit, 6 * TON);

    // Claims: cumulative, idempotent, checked.
    let v1 = Signed::sign(
        ChannelVoucher {
            channel: ch.id,
            amount: TON,
        },
        &client,
    )
    .unwrap();
    assert_eq!(c.ton.claim_channel(&proxy, v1).await.unwrap(), TON);
    assert!(matches!(
        money(c.ton.claim_channel(&proxy, v1).await.unwrap_err()),
        MoneyError::NotAboveLatest { .. }
    ));
    let forged = Signed {
        body: ChannelVoucher {
            amount: 2 * TON,
            ..v1.body
        },
        ..v1
    };
    assert_eq!(
        money(c.ton.claim_channel(&proxy, forged).await.unwrap_err()),
        MoneyError::BadSignature
    );
    let v2 = Signed::sign(
        ChannelVoucher {
            channel: ch.id,
            amount: 2 * TON + 7,
        },
        &client,
    )
    .unwrap();
    assert_eq!(c.ton.claim_channel(&proxy, v2).await.unwrap(), TON + 7);
    let vault = c.ton.vault(vault.id).await.unwrap().unwrap();
    assert_eq!(vault.balance, 6 * TON + 7);

    // The worker's claim pays its own wallet.
    let before = c.ton.balance(worker.public()).await.unwrap();
    let wv = Signed::sign(
        WorkerVoucher {
            vault: vault.id,
            worker: worker.public(),
            amount: TON + 5,
        },
        &proxy,
    )
    .unwrap();
    assert_eq!(c.ton.vault_claim(&worker, wv).await.unwrap(), TON + 5);
    assert_eq!(
        c.ton
            .worker_claimed(vault.id, worker.public())
            .await
            .unwrap(),
        TON + 5
    );
    let gained = c.ton.balance(worker.public()).await.unwrap() as i128 - before as i128;
    // Less only the gas of the claim (and of deploying the worker's wallet).
    assert!(
        gained > (TON - TON / 50) as i128 && gained < (TON + 5) as i128,
        "gained {gained}"
    );
    assert!(matches!(
        money(c.ton.vault_claim(&worker, wv).await.unwrap_err()),
        MoneyError::NotAboveLatest { .. }
    ));

    // Unilateral close: the proxy may still claim during the delay.
    let closing = c.ton.start_close(&client, ch.id).await.unwrap();
    assert!(matches!(closing.state, ChannelState::Closing { .. }));
    assert!(matches!(
        money(c.ton.finish_close(&client, ch.id).await.unwrap_err()),
        MoneyError::DelayNotOver { .. }
    ));
    let v3 = Signed::sign(
        ChannelVoucher {
            channel: ch.id,
            amount: 3 * TON,
        },
        &client,
    )
    .unwrap();
    assert_eq!(c.ton.claim_channel(&proxy, v3).await.unwrap(), TON - 7);
    c.advance(601).await;
    let client_before = c.ton.balance(client.public()).await.unwrap();
    assert_eq!(c.ton.finish_close(&client, ch.id).await.unwrap(), 3 * TON);
    let refunded = c.ton.balance(client.public()).await.unwrap() - client_before;
    assert!(
        refunded > 3 * TON,
        "refund {refunded} includes the unspent gas reserve"
    );
    assert_eq!(
        c.ton.channel(ch.id).await.unwrap().unwrap().state,
        ChannelState::Closed
    );

    // Withdrawal after its delay.
    let w = c.ton.request_withdrawal(&proxy, 2 * TON).await.unwrap();
    assert_eq!(w.amount, 2 * TON);
    assert!(matches!(
        money(c.ton.withdraw(&proxy).await.unwrap_err()),
        MoneyError::DelayNotOver { .. }
    ));
    c.advance(901).await;
    assert_eq!(c.ton.withdraw(&proxy).await.unwrap(), 2 * TON);
    let vault = c.ton.vault(vault.id).await.unwrap().unwrap();
    // stake 4, claims 3 in, worker 1 + 5 out, 2 withdrawn.
    assert_eq!(vault.balance, 4 * TON - 5);
    c.sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_close_and_a_second_channel() {
    let c = chain().await;
    let (client, proxy) = c.client_and_proxy().await;
    let a = c
        .ton
        .open_channel(&client, proxy.public(), 2 * TON)
        .await
        .unwrap();
    let b = c
        .ton
        .open_channel(&client, proxy.public(), TON)
        .await
        .unwrap();
    assert_ne!(
        a.id, b.id,
        "the second channel has the next sequence number"
    );
    let last = Signed::sign(
        ChannelVoucher {
            channel: a.id,
            amount: TON / 2,
        },
        &client,
    )
    .unwrap();
    let (claimed, refunded) = c
        .ton
        .close_cooperative(&proxy, a.id, Some(last))
        .await
        .unwrap();
    assert_eq!((claimed, refunded), (TON / 2, 2 * TON - TON / 2));
    assert_eq!(
        c.ton.channel(a.id).await.unwrap().unwrap().state,
        ChannelState::Closed
    );
    // Not the proxy: refused before anything is sent.
    assert_eq!(
        money(
            c.ton
                .close_cooperative(&client, b.id, None)
                .await
                .unwrap_err()
        ),
        MoneyError::NotAuthorized("channel's proxy")
    );
    // Not enough money in the wallet: refused before sending.
    assert!(matches!(
        money(
            c.ton
                .open_channel(&client, proxy.public(), 1000 * TON)
                .await
                .unwrap_err()
        ),
        MoneyError::InsufficientFunds { .. }
    ));
    // A network that asks for longer delays does not accept these contracts
    // (the channel's 600 s, the vault's 900 s) as Kokon's.
    let mut stricter = TonConfig::new(Network::Sandbox, c.sandbox.url());
    stricter.channel_close_secs = 601;
    stricter.vault_withdraw_secs = 901;
    let stricter = TonSettlement::new(stricter, Arc::new(kokon_pay::SystemClock)).unwrap();
    let err = stricter.channel(b.id).await.unwrap_err().to_string();
    assert!(err.contains("close delay of 600 s"), "{err}");
    let vault = c.ton.vault_address(&proxy.public()).unwrap();
    let err = stricter.vault(vault).await.unwrap_err().to_string();
    assert!(err.contains("withdrawal delay of 900 s"), "{err}");
    c.sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_contract_refuses_what_the_backend_would_not_send() {
    // Bypassing the pre-flight checks: the contract itself refuses, and the
    // backend reports its exit code.
    let c = chain().await;
    let (client, proxy) = c.client_and_proxy().await;
    let ch = c
        .ton
        .open_channel(&client, proxy.public(), TON)
        .await
        .unwrap();
    let v = Signed::sign(
        ChannelVoucher {
            channel: ch.id,
            amount: TON / 3,
        },
        &client,
    )
    .unwrap();
    let voucher =
        kokon_ton::cells::from_bits(&kokon_money::message::Signable::cell(&v.body).unwrap())
            .unwrap();
    let out = kokon_ton::wallet::Outgoing {
        to: ch.id,
        value: kokon_ton::GAS,
        body: kokon_ton::cells::body::claim(&v.signature, &voucher).unwrap(),
        init: None,
        bounce: true,
    };
    // From the client's wallet, not the proxy's.
    let err = c.ton.submit(&client, out.clone()).await.unwrap_err();
    assert!(err.to_string().contains("exit code 100"), "{err}");
    c.ton.submit(&proxy, out.clone()).await.unwrap();
    let err = c.ton.submit(&proxy, out).await.unwrap_err();
    assert!(err.to_string().contains("exit code 104"), "{err}");
    c.sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_message_applies_once() {
    let c = chain().await;
    let key = SecretKey::generate();
    c.fund(&key, 5 * TON).await;
    let wallet = Wallet::new(kokon_ton::wallet::WalletKind::V4r2, &key).unwrap();
    let out = kokon_ton::wallet::Outgoing {
        to: c.ton.wallet_of(&SecretKey::generate().public()).unwrap(),
        value: TON,
        body: Arc::new(tonlib_core::cell::Cell::default()),
        init: None,
        bounce: false,
    };
    let msg = wallet
        .external(0, kokon_pay::SystemClock.now_unix() as u32 + 60, &out)
        .unwrap();
    let h1 = c.ton.api().send(&msg).await.unwrap();
    let h2 = c.ton.api().send(&msg).await.unwrap();
    assert_eq!(h1, h2);
    let txs = c
        .ton
        .api()
        .transactions(&wallet.address(), 10)
        .await
        .unwrap();
    let external = txs
        .iter()
        .filter(|t| t.in_msg.as_ref().is_some_and(|m| m.source.is_none()))
        .count();
    assert_eq!(external, 1, "the wallet's seqno stops the second copy");
    assert_eq!(c.ton.api().account(&out.to).await.unwrap().balance, TON);
    c.sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_round_trip_and_a_durable_chain() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("chain.json");
    let sandbox = SandboxChain::start(&contracts_dir(), Some(&state))
        .await
        .unwrap();
    let clock = Arc::new(kokon_pay::SystemClock);
    let ton = TonSettlement::new(
        TonConfig::new(Network::Sandbox, sandbox.url()),
        clock.clone(),
    )
    .unwrap();
    let owner = SecretKey::generate();
    ton.api()
        .sandbox_fund(&ton.wallet_of(&owner.public()).unwrap(), 10 * TON)
        .await
        .unwrap();
    let econ = Economics {
        commission_bps: 700,
        ..Economics::default()
    };
    let stakes = Stakes {
        min_proxy: 5 * TON,
        min_worker: 0,
    };
    let reg = registry::deploy(&ton, &owner, &econ, stakes, TON)
        .await
        .unwrap();
    let proxy = SecretKey::generate();
    let td = kokon_attest::TdPolicy {
        xfam: Some(vec![kokon_attest::td::COMMON_XFAM]),
        mr_seam: Some(vec![[0x5b; 48], [0x47; 48]]),
        mr_owner_config: [9; 48],
        min_tee_tcb_svn: Some([3, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        ..Default::default()
    };
    let changes = [
        Change::Image {
            hash: [1; 32],
            roles: registry::ROLE_PROXY | registry::ROLE_WORKER,
        },
        Change::Image {
            hash: [2; 32],
            roles: registry::ROLE_WORKER,
        },
        Change::Model {
            hash: [3; 32],
            name: Some("tiny".into()),
        },
        Change::Proxy {
            key: proxy.public(),
            entry: Some((
                ton.wallet_of(&proxy.public()).unwrap(),
                "proxy.example:7400".into(),
            )),
        },
        Change::TdPolicy(td.clone()),
        Change::Upstream {
            origin: "https://api.example.com".into(),
            remove: false,
        },
        Change::Upstream {
            origin: "http://10.0.0.2:8000".into(),
            remove: false,
        },
        Change::Upstream {
            origin: "https://api.example.com".into(),
            remove: true,
        },
    ];
    for ch in &changes {
        registry::apply(&ton, &owner, &reg, ch).await.unwrap();
    }
    // Someone else cannot change it.
    let stranger = SecretKey::generate();
    ton.api()
        .sandbox_fund(&ton.wallet_of(&stranger.public()).unwrap(), TON)
        .await
        .unwrap();
    let err = registry::apply(&ton, &stranger, &reg, &changes[2])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("exit code 100"), "{err}");

    sandbox.stop().await;
    let sandbox = SandboxChain::start(&contracts_dir(), Some(&state))
        .await
        .unwrap();
    let ton = TonSettlement::new(TonConfig::new(Network::Sandbox, sandbox.url()), clock).unwrap();
    let r = registry::read(ton.api(), &reg).await.unwrap();
    assert_eq!(r.version, 8);
    assert_eq!(
        r.upstreams,
        ["http://10.0.0.2:8000"],
        "an upstream delisted is gone, the other stays"
    );
    assert_eq!(
        r.td, td,
        "the TD policy comes back from the contract as set"
    );
    assert_eq!(r.owner, ton.wallet_of(&owner.public()).unwrap());
    assert_eq!(r.commission_bps, 700);
    assert_eq!(r.stakes, stakes);
    assert_eq!(r.images, vec![([1; 32], 3), ([2; 32], 2)]);
    assert_eq!(
        r.images_for(registry::ROLE_PROXY),
        vec![hex::encode([1u8; 32])]
    );
    assert_eq!(r.models, vec![([3; 32], "tiny".to_string())]);
    assert_eq!(r.proxies.len(), 1);
    assert_eq!(r.proxies[0].key, proxy.public());
    assert_eq!(r.proxies[0].endpoint, "proxy.example:7400");
    assert_eq!(
        ton.api().account(&reg).await.unwrap().status,
        Status::Active
    );
    sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v5r1_wallet_settles_too() {
    let sandbox = SandboxChain::start(&contracts_dir(), None).await.unwrap();
    let mut cfg = TonConfig::new(Network::Sandbox, sandbox.url());
    cfg.wallet = kokon_ton::wallet::WalletKind::V5r1;
    let ton = TonSettlement::new(cfg, Arc::new(kokon_pay::SystemClock)).unwrap();
    let (client, proxy) = (SecretKey::generate(), SecretKey::generate());
    for k in [&client, &proxy] {
        let w = ton.wallet_of(&k.public()).unwrap();
        assert_ne!(
            w,
            kokon_ton::wallet::address(kokon_ton::wallet::WalletKind::V4r2, &k.public()).unwrap()
        );
        ton.api().sandbox_fund(&w, 5 * TON).await.unwrap();
    }
    ton.vault_deposit(&proxy, TON).await.unwrap();
    let ch = ton
        .open_channel(&client, proxy.public(), TON)
        .await
        .unwrap();
    let v = Signed::sign(
        ChannelVoucher {
            channel: ch.id,
            amount: 1234,
        },
        &client,
    )
    .unwrap();
    assert_eq!(ton.claim_channel(&proxy, v).await.unwrap(), 1234);
    sandbox.stop().await;
}

/// A listed proxy publishes its gateway's keys from its own wallet and
/// every reader gets them back; a proxy the registry does not list cannot,
/// and neither can another listed proxy for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_proxy_publishes_its_keys_and_nobody_else_can() {
    let sandbox = SandboxChain::start(&contracts_dir(), None).await.unwrap();
    let clock = Arc::new(kokon_pay::SystemClock);
    let plain = TonSettlement::new(
        TonConfig::new(Network::Sandbox, sandbox.url()),
        clock.clone(),
    )
    .unwrap();
    let (owner, proxy, other) = (
        SecretKey::generate(),
        SecretKey::generate(),
        SecretKey::generate(),
    );
    for k in [&owner, &proxy, &other] {
        plain
            .api()
            .sandbox_fund(&plain.wallet_of(&k.public()).unwrap(), 5 * TON)
            .await
            .unwrap();
    }
    let stakes = Stakes {
        min_proxy: 0,
        min_worker: 0,
    };
    let reg = registry::deploy(&plain, &owner, &Economics::default(), stakes, TON)
        .await
        .unwrap();
    let mut cfg = TonConfig::new(Network::Sandbox, sandbox.url());
    cfg.registry = Some(reg);
    let ton = TonSettlement::new(cfg, clock).unwrap();
    let record = kokon_pay::KeyRecord {
        // Two key configurations' worth: a snake of several cells.
        ohttp: (0..300).map(|i| (i % 251) as u8).collect(),
        credits: Some([7; 32]),
    };
    // Not listed: refused.
    let err = ton.publish_keys(&proxy, &record).await.unwrap_err();
    assert!(err.to_string().contains("exit code 100"), "{err}");
    for k in [&proxy, &other] {
        let change = Change::Proxy {
            key: k.public(),
            entry: Some((ton.wallet_of(&k.public()).unwrap(), "p:7400".into())),
        };
        registry::apply(&ton, &owner, &reg, &change).await.unwrap();
    }
    ton.publish_keys(&proxy, &record).await.unwrap();
    let without_credits = kokon_pay::KeyRecord {
        ohttp: vec![1, 2, 3],
        credits: None,
    };
    ton.publish_keys(&other, &without_credits).await.unwrap();
    let mut want = vec![
        (proxy.public(), record.clone()),
        (other.public(), without_credits),
    ];
    want.sort_by_key(|(k, _)| k.0);
    assert_eq!(ton.published_keys().await.unwrap(), want);
    assert_eq!(
        registry::read(ton.api(), &reg).await.unwrap().gateways,
        want
    );
    // The body names the proxy: another listed proxy's wallet cannot set it.
    let forged = kokon_ton::cells::body::set_gateway_keys(&proxy.public(), None).unwrap();
    let err = kokon_ton::registry::send_as(&ton, &other, &reg, forged)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("exit code 100"), "{err}");
    // Delisting withdraws the keys.
    let change = Change::Proxy {
        key: proxy.public(),
        entry: None,
    };
    registry::apply(&ton, &owner, &reg, &change).await.unwrap();
    let left = ton.published_keys().await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].0, other.public());
    sandbox.stop().await;
}
