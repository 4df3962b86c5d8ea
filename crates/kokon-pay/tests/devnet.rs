//! The devnet ledger: the same rules as the contracts, durable across reopen.

use std::sync::Arc;

use kokon_money::{ChannelVoucher, MoneyError, SecretKey, Signed, WorkerVoucher};
use kokon_pay::devnet::{Delays, Devnet};
use kokon_pay::{ManualClock, PayError, Settlement};

fn open(dir: &std::path::Path, clock: Arc<ManualClock>) -> Devnet {
    let delays = Delays {
        channel_close_secs: 100,
        vault_withdraw_secs: 200,
    };
    Devnet::open(&dir.join("ledger.db"), clock, delays).unwrap()
}

fn money(e: PayError) -> MoneyError {
    match e {
        PayError::Money(m) => m,
        other => panic!("expected a money error, got {other}"),
    }
}

#[tokio::test]
async fn channel_lifecycle_and_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000));
    let l = open(tmp.path(), clock.clone());
    let (client, proxy, worker) = (
        SecretKey::generate(),
        SecretKey::generate(),
        SecretKey::generate(),
    );
    l.fund(client.public(), 1_000).await.unwrap();
    l.fund(proxy.public(), 100).await.unwrap();
    l.vault_deposit(&proxy, 100).await.unwrap();
    let ch = l.open_channel(&client, proxy.public(), 500).await.unwrap();
    assert_eq!(l.balance(client.public()).await.unwrap(), 500);
    assert_eq!(
        money(
            l.open_channel(&client, proxy.public(), 501)
                .await
                .unwrap_err()
        ),
        MoneyError::InsufficientFunds {
            balance: 500,
            needed: 501
        }
    );

    let v = Signed::sign(
        ChannelVoucher {
            channel: ch.id,
            amount: 300,
        },
        &client,
    )
    .unwrap();
    assert_eq!(l.claim_channel(&proxy, v).await.unwrap(), 300);
    // The same claim again credits nothing.
    assert!(matches!(
        money(l.claim_channel(&proxy, v).await.unwrap_err()),
        MoneyError::NotAboveLatest { .. }
    ));
    let forged = Signed {
        body: ChannelVoucher {
            channel: ch.id,
            amount: 400,
        },
        signature: v.signature,
    };
    assert_eq!(
        money(l.claim_channel(&proxy, forged).await.unwrap_err()),
        MoneyError::BadSignature
    );
    let too_much = Signed::sign(
        ChannelVoucher {
            channel: ch.id,
            amount: 501,
        },
        &client,
    )
    .unwrap();
    assert!(matches!(
        money(l.claim_channel(&proxy, too_much).await.unwrap_err()),
        MoneyError::AboveDeposit { .. }
    ));

    // Reopen from disk: everything is still there.
    drop(l);
    let l = open(tmp.path(), clock.clone());
    assert_eq!(l.channel(ch.id).await.unwrap().unwrap().claimed, 300);
    assert_eq!(
        l.vault(kokon_money::ledger::vault_address(&proxy.public()))
            .await
            .unwrap()
            .unwrap()
            .balance,
        400
    );

    // Unilateral close: the proxy can still claim during the delay.
    l.start_close(&client, ch.id).await.unwrap();
    assert!(matches!(
        money(l.finish_close(&client, ch.id).await.unwrap_err()),
        MoneyError::DelayNotOver { remaining: 100 }
    ));
    let v2 = Signed::sign(
        ChannelVoucher {
            channel: ch.id,
            amount: 350,
        },
        &client,
    )
    .unwrap();
    clock.advance(99);
    assert_eq!(l.claim_channel(&proxy, v2).await.unwrap(), 50);
    clock.advance(1);
    let v3 = Signed::sign(
        ChannelVoucher {
            channel: ch.id,
            amount: 360,
        },
        &client,
    )
    .unwrap();
    assert_eq!(
        money(l.claim_channel(&proxy, v3).await.unwrap_err()),
        MoneyError::DelayOver
    );
    assert_eq!(l.finish_close(&client, ch.id).await.unwrap(), 150);
    assert_eq!(l.balance(client.public()).await.unwrap(), 650);

    // Vault: workers claim proxy-signed vouchers; withdrawal waits.
    let vault = kokon_money::ledger::vault_address(&proxy.public());
    let wv = Signed::sign(
        WorkerVoucher {
            vault,
            worker: worker.public(),
            amount: 120,
        },
        &proxy,
    )
    .unwrap();
    l.request_withdrawal(&proxy, 400).await.unwrap();
    assert_eq!(l.vault_claim(&worker, wv).await.unwrap(), 120);
    assert!(matches!(
        money(l.vault_claim(&worker, wv).await.unwrap_err()),
        MoneyError::NotAboveLatest { .. }
    ));
    assert!(matches!(
        money(l.withdraw(&proxy).await.unwrap_err()),
        MoneyError::DelayNotOver { .. }
    ));
    clock.advance(200);
    // The worker claimed first, so the owner cannot take 400 any more.
    assert!(matches!(
        money(l.withdraw(&proxy).await.unwrap_err()),
        MoneyError::VaultShort { .. }
    ));
    l.request_withdrawal(&proxy, 280).await.unwrap();
    clock.advance(200);
    assert_eq!(l.withdraw(&proxy).await.unwrap(), 280);
    let audit = l.audit().await.unwrap();
    assert!(audit.conserved(), "{audit:?}");
    assert_eq!(audit.minted, 1_100);
}

#[tokio::test]
async fn only_the_right_party_acts() {
    let tmp = tempfile::tempdir().unwrap();
    let l = open(tmp.path(), Arc::new(ManualClock::new(0)));
    let (client, proxy, other) = (
        SecretKey::generate(),
        SecretKey::generate(),
        SecretKey::generate(),
    );
    l.fund(client.public(), 100).await.unwrap();
    l.fund(other.public(), 100).await.unwrap();
    l.fund(proxy.public(), 10).await.unwrap();
    l.vault_deposit(&proxy, 10).await.unwrap();
    let ch = l.open_channel(&client, proxy.public(), 50).await.unwrap();
    assert!(matches!(
        money(l.topup(&other, ch.id, 1).await.unwrap_err()),
        MoneyError::NotAuthorized(_)
    ));
    assert!(matches!(
        money(l.start_close(&other, ch.id).await.unwrap_err()),
        MoneyError::NotAuthorized(_)
    ));
    assert!(matches!(
        money(l.close_cooperative(&other, ch.id, None).await.unwrap_err()),
        MoneyError::NotAuthorized(_)
    ));
    // A voucher signed by someone else than the channel's client.
    let v = Signed::sign(
        ChannelVoucher {
            channel: ch.id,
            amount: 10,
        },
        &other,
    )
    .unwrap();
    assert_eq!(
        money(l.claim_channel(&proxy, v).await.unwrap_err()),
        MoneyError::BadSignature
    );
    // Cooperative close by the proxy refunds the rest at once.
    let v = Signed::sign(
        ChannelVoucher {
            channel: ch.id,
            amount: 10,
        },
        &client,
    )
    .unwrap();
    assert_eq!(
        l.close_cooperative(&proxy, ch.id, Some(v)).await.unwrap(),
        (10, 40)
    );
    assert_eq!(l.balance(client.public()).await.unwrap(), 90);
    assert!(l.audit().await.unwrap().conserved());
}

#[test]
fn delays_the_contracts_refuse_are_refused_here_too() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000));
    for (close, withdraw) in [(0, 60), (60, kokon_money::MAX_DELAY_SECS + 1)] {
        let delays = Delays {
            channel_close_secs: close,
            vault_withdraw_secs: withdraw,
        };
        let e = Devnet::open(&tmp.path().join("ledger.db"), clock.clone(), delays).unwrap_err();
        assert!(matches!(money(e), MoneyError::BadDelay { .. }));
    }
}

#[tokio::test]
async fn published_keys_replace_each_other_survive_a_restart_and_are_bounded() {
    use kokon_pay::{KeyRecord, MAX_PUBLISHED_OHTTP};
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000));
    let d = open(dir.path(), clock.clone());
    let (a, b) = (SecretKey::generate(), SecretKey::generate());
    assert!(d.published_keys().await.unwrap().is_empty());
    let first = KeyRecord {
        ohttp: vec![1; 41],
        credits: None,
    };
    d.publish_keys(&a, &first).await.unwrap();
    let second = KeyRecord {
        ohttp: vec![2; 82],
        credits: Some([9; 32]),
    };
    d.publish_keys(&a, &second).await.unwrap();
    d.publish_keys(&b, &first).await.unwrap();
    // Too large for the registry: refused, and what was published stays.
    let huge = KeyRecord {
        ohttp: vec![3; MAX_PUBLISHED_OHTTP + 1],
        credits: None,
    };
    let err = d.publish_keys(&a, &huge).await.unwrap_err();
    assert!(
        matches!(err, PayError::KeysTooLarge(n) if n == MAX_PUBLISHED_OHTTP + 1),
        "{err}"
    );
    drop(d);
    let d = open(dir.path(), clock);
    let mut want = vec![(a.public(), second), (b.public(), first)];
    want.sort_by_key(|(k, _)| k.to_hex());
    assert_eq!(
        d.published_keys().await.unwrap(),
        want,
        "one record per proxy, the latest"
    );
    assert_eq!(d.count("publish_keys").await.unwrap(), 3);
}
