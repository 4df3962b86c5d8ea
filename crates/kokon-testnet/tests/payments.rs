//! Paid jobs through the in-process network on the devnet ledger: costs in
//! usage, receipts, vouchers and claims that reconcile to the nanoton, and
//! 402 when the channel cannot cover a job.

mod common;

use std::time::Duration;

use common::*;
use kokon_money::Nanotons;
use kokon_pay::Settlement;
use kokon_testnet::pay::PaySpec;
use kokon_testnet::{LocalNet, NetSpec, WorkerSpec};
use serde_json::Value;

fn paid(dir: &std::path::Path, workers: Vec<WorkerSpec>) -> NetSpec {
    let mut spec = NetSpec::new(workers);
    let mut pay = PaySpec::dev(dir.to_path_buf());
    pay.claim_every = Duration::from_millis(200);
    spec.payments = Some(pay);
    spec
}

fn priced(model: &str, price_milli: u32) -> WorkerSpec {
    let mut w = WorkerSpec::new(echo(model, 0));
    w.price_milli = price_milli;
    w
}

#[tokio::test]
async fn paid_jobs_reconcile_to_the_nanoton() {
    let tmp = tempfile::tempdir().unwrap();
    let net = LocalNet::start(paid(
        tmp.path(),
        vec![
            priced("echo", 800),
            priced("echo", 800),
            priced("echo", 1200),
        ],
    ))
    .await
    .unwrap();
    let mut spent: Nanotons = 0;
    for i in 0..30 {
        let text = words(3 + i % 7);
        let cost = if i % 2 == 0 {
            let r: Value = chat(&net.base_url(), "echo", &text, false)
                .await
                .json()
                .await
                .unwrap();
            assert_eq!(r["choices"][0]["message"]["content"], format!("{text} "));
            r["usage"]["cost_nanoton"].as_u64().expect("cost in usage")
        } else {
            let mut sse = Sse::new(chat(&net.base_url(), "echo", &text, true).await);
            let mut cost = None;
            while let Some(ev) = sse.next().await {
                let Ok(ev) = serde_json::from_str::<Value>(&ev) else {
                    continue;
                };
                if let Some(c) = ev["usage"]["cost_nanoton"].as_u64() {
                    cost = Some(c);
                }
            }
            cost.expect("cost in the usage chunk")
        };
        assert!(cost > 0);
        spent += u128::from(cost);
    }
    let proxy = net.proxy.pay().unwrap();
    eventually_async("the proxy holds the client's latest voucher", || async {
        proxy.books().await.totals().unwrap().paid == spent
    })
    .await;
    let t = proxy.books().await.totals().unwrap();
    assert_eq!(t.receipts, 30);
    assert_eq!(t.billed, spent, "billed = what the client paid");
    assert_eq!(t.owed_to_workers + t.commission, t.billed);

    // Workers hold vouchers for exactly their fees, and claim them.
    let ledger = devnet(&net);
    let mut fees = 0;
    for w in &net.workers {
        let pay = w.pay.as_ref().unwrap();
        let (n, receipts) = pay.books().await.receipts_total().unwrap();
        if n == 0 {
            continue; // the router prefers the cheapest idle worker
        }
        let payout = pay.books().await.payout();
        eventually_async("the worker's voucher and claim land", || async {
            let earned: Nanotons = pay
                .books()
                .await
                .earnings()
                .iter()
                .map(|e| e.earned())
                .sum();
            // Fee = cost − 10 % commission (rounded down), per receipt.
            earned > receipts * 8 / 10
                && earned <= receipts
                && ledger.balance(payout).await.unwrap() == earned
        })
        .await;
        fees += ledger.balance(payout).await.unwrap();
    }
    assert_eq!(fees, t.owed_to_workers, "Σ worker claims = Σ fees");
    eventually_async("the proxy claims the channel", || async {
        let client = PaySpec::dev(tmp.path().to_path_buf())
            .key("dev-client")
            .unwrap()
            .public();
        let ch = ledger.channels_of(client).await.unwrap();
        ch[0].claimed == spent
    })
    .await;
    let audit = ledger.audit().await.unwrap();
    assert!(audit.conserved(), "{audit:?}");
}

#[tokio::test]
async fn a_channel_that_cannot_cover_the_job_gets_402() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = paid(tmp.path(), vec![WorkerSpec::new(echo("echo", 0))]);
    spec.payments.as_mut().unwrap().deposit = 1000;
    let net = LocalNet::start(spec).await.unwrap();
    let r = chat(&net.base_url(), "echo", "hello", false).await;
    assert_eq!(r.status(), 402);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payment_required");
    assert_eq!(body["error"]["type"], "insufficient_quota");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("top up"),
        "{body}"
    );
}

/// The proxy's voucher endpoint, spoken to directly over an RA-TLS link:
/// a forged voucher, a replayed one and one above what was billed are each
/// refused with their own error (hostile jobs are in `hostile.rs`).
#[tokio::test]
async fn proxy_refuses_forged_replayed_and_unbilled_vouchers() {
    use kokon_attest::{Registry, Role};
    use kokon_money::{ChannelVoucher, Signed};
    let tmp = tempfile::tempdir().unwrap();
    let net = LocalNet::start(paid(tmp.path(), vec![WorkerSpec::new(echo("echo", 0))]))
        .await
        .unwrap();
    let r: Value = chat(&net.base_url(), "echo", "pay me", false)
        .await
        .json()
        .await
        .unwrap();
    let cost = u128::from(r["usage"]["cost_nanoton"].as_u64().unwrap());
    let spec = PaySpec::dev(tmp.path().to_path_buf());
    let client = spec.key("dev-client").unwrap();
    let ledger = devnet(&net);
    let channel = ledger.channels_of(client.public()).await.unwrap()[0].id;
    let proxy = net.proxy.pay().unwrap();
    eventually_async("the first voucher lands", || async {
        proxy.books().await.totals().unwrap().paid == cost
    })
    .await;

    let policy = std::sync::Arc::new(Registry::local_test_network().policy().unwrap());
    let tls =
        kokon_tls::node::simulated_node(Role::Client, None, policy, [0; 32], &Default::default())
            .unwrap();
    let link = kokon_gateway::ProxyLink::new(net.proxy.addr, tls);
    let refused = |v: Signed<ChannelVoucher>| {
        let link = &link;
        async move {
            link.send_voucher(&v)
                .await
                .expect_err("must be refused")
                .message
        }
    };
    let replayed = Signed::sign(
        ChannelVoucher {
            channel,
            amount: cost,
        },
        &client,
    )
    .unwrap();
    assert!(refused(replayed).await.contains("replayed or lower"));
    let mut forged = Signed::sign(
        ChannelVoucher {
            channel,
            amount: cost + 1,
        },
        &client,
    )
    .unwrap();
    forged.body.amount = cost * 100;
    assert!(refused(forged).await.contains("signature does not verify"));
    let stranger = kokon_money::SecretKey::generate();
    let foreign = Signed::sign(
        ChannelVoucher {
            channel,
            amount: cost * 2,
        },
        &stranger,
    )
    .unwrap();
    assert!(refused(foreign).await.contains("signature does not verify"));
    let unbilled = Signed::sign(
        ChannelVoucher {
            channel,
            amount: cost * 2,
        },
        &client,
    )
    .unwrap();
    assert!(refused(unbilled).await.contains("exceeds what was billed"));
    assert_eq!(
        proxy.books().await.totals().unwrap().paid,
        cost,
        "nothing moved"
    );
}

/// Cooperative close: only the channel's client can ask; the proxy claims
/// the latest voucher, the ledger refunds the rest, and the channel then
/// serves nothing more.
#[tokio::test]
async fn cooperative_close_claims_refunds_and_stops_service() {
    use kokon_attest::{Registry, Role};
    let tmp = tempfile::tempdir().unwrap();
    let net = LocalNet::start(paid(tmp.path(), vec![WorkerSpec::new(echo("echo", 0))]))
        .await
        .unwrap();
    let r: Value = chat(&net.base_url(), "echo", "one job", false)
        .await
        .json()
        .await
        .unwrap();
    let cost = u128::from(r["usage"]["cost_nanoton"].as_u64().unwrap());
    let proxy = net.proxy.pay().unwrap();
    eventually_async("the voucher lands", || async {
        proxy.books().await.totals().unwrap().paid == cost
    })
    .await;
    let spec = PaySpec::dev(tmp.path().to_path_buf());
    let client = spec.key("dev-client").unwrap();
    let ledger = devnet(&net);
    let ch = ledger.channels_of(client.public()).await.unwrap()[0];
    let before = ledger.balance(client.public()).await.unwrap();

    let policy = std::sync::Arc::new(Registry::local_test_network().policy().unwrap());
    let tls =
        kokon_tls::node::simulated_node(Role::Client, None, policy, [0; 32], &Default::default())
            .unwrap();
    let link = kokon_gateway::ProxyLink::new(net.proxy.addr, tls);
    let hash = kokon_proto::CloseRequest::signing_hash(&ch.id);
    let stranger = kokon_money::SecretKey::generate();
    let forged = kokon_proto::CloseRequest {
        channel: ch.id,
        signature: stranger.sign(&hash),
        voucher: None,
    };
    assert!(
        link.close_channel(&forged)
            .await
            .unwrap_err()
            .message
            .contains("not signed by the channel's client")
    );
    let req = kokon_proto::CloseRequest {
        channel: ch.id,
        signature: client.sign(&hash),
        voucher: None,
    };
    let reply = link.close_channel(&req).await.unwrap();
    let row = ledger.channel(ch.id).await.unwrap().unwrap();
    assert_eq!(row.state, kokon_money::ledger::ChannelState::Closed);
    assert_eq!(row.claimed, cost, "the proxy got exactly what was signed");
    assert_eq!(reply.claimed + reply.refunded, ch.deposit - ch.claimed);
    assert_eq!(
        ledger.balance(client.public()).await.unwrap(),
        before + reply.refunded
    );
    assert!(ledger.audit().await.unwrap().conserved());
    let r = chat(&net.base_url(), "echo", "after close", false).await;
    assert_eq!(r.status(), 402);
}

#[tokio::test]
async fn a_retry_with_the_same_idempotency_key_is_never_paid_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let net = LocalNet::start(paid(tmp.path(), vec![priced("echo", 1000)]))
        .await
        .unwrap();
    let send = |key: &'static str| {
        reqwest::Client::new()
            .post(format!("{}/chat/completions", net.base_url()))
            .header("Idempotency-Key", key)
            .json(&serde_json::json!({
                "model": "echo",
                "messages": [{"role": "user", "content": "charge me once"}],
            }))
            .send()
    };
    let first = send("order-42").await.unwrap();
    assert_eq!(first.status(), 200);
    let totals = || proxy_totals(&net);
    let after_first = totals().await;
    // The application did not see the answer (a timeout, or the gateway
    // crashed after paying) and retries with the same key.
    let retry = send("order-42").await.unwrap();
    assert_eq!(retry.status(), 409);
    let body: Value = retry.json().await.unwrap();
    assert_eq!(body["error"]["code"], "duplicate_request", "{body}");
    assert_eq!(totals().await, after_first, "nothing billed or paid again");
    // Another key is another job.
    assert_eq!(send("order-43").await.unwrap().status(), 200);
    assert_eq!(totals().await.receipts, after_first.receipts + 1);
    eventually_async("every job paid, once", || async {
        let t = totals().await;
        t.billed == t.paid
    })
    .await;
    // A request refused before it reached any worker ran nothing: its
    // retry with the same key is served.
    let nowhere = reqwest::Client::new()
        .post(format!("{}/chat/completions", net.base_url()))
        .header("Idempotency-Key", "order-44")
        .json(
            &serde_json::json!({"model": "nosuch", "messages": [{"role": "user", "content": "x"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(nowhere.status(), 404, "no worker serves it");
    assert_eq!(
        send("order-44").await.unwrap().status(),
        200,
        "the retry runs"
    );
    let bad = reqwest::Client::new()
        .post(format!("{}/chat/completions", net.base_url()))
        .header("Idempotency-Key", "")
        .json(&serde_json::json!({"model": "echo", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400, "an empty key is refused, not ignored");
}

#[tokio::test]
async fn a_worker_revoked_mid_stream_is_paid_for_what_it_delivered_and_no_more() {
    let tmp = tempfile::tempdir().unwrap();
    let mut worker = WorkerSpec::new(echo("echo", 20));
    worker.receipt_every_tokens = 16;
    let mut spec = paid(tmp.path(), vec![worker]);
    spec.registry = kokon_attest::registry::Registry::local_test_network();
    let mut net = LocalNet::start(spec).await.unwrap();
    let mut sse = Sse::new(chat(&net.base_url(), "echo", &words(300), true).await);
    let mut delivered = 0;
    while delivered < 40 {
        let ev = sse.next().await.expect("the stream runs");
        delivered += usize::from(content_of(&ev).is_some());
    }
    // The registry no longer lists the worker's image.
    let mut revoked = kokon_attest::registry::Registry::local_test_network();
    revoked.worker_images = vec!["00".repeat(32)];
    net.set_registry(&revoked).unwrap();
    let mut last = String::new();
    while let Some(ev) = sse.next().await {
        delivered += usize::from(content_of(&ev).is_some());
        last = ev;
    }
    let last: Value = serde_json::from_str(&last).expect("the stream ends with an error event");
    assert_eq!(last["error"]["code"], "worker_failed_mid_stream", "{last}");
    assert!(delivered < 300, "cut, not completed: {delivered} words");
    assert_eq!(net.proxy.worker_count(), 0);
    assert_eq!(net.proxy.metrics().links_revoked("image_not_allowed"), 1);

    // Money: the client paid exactly what the proxy billed, which is what
    // the receipts before the cut cover; the books and the ledger balance.
    let proxy = net.proxy.pay().unwrap();
    let prices = kokon_money::PriceTable::default();
    let full = kokon_money::receipt::Budget {
        prompt: 300,
        completion: 300,
    }
    .max_cost(&prices, "echo", 1000)
    .unwrap();
    eventually_async("the client pays what was billed", || async {
        let t = proxy.books().await.totals().unwrap();
        t.billed > 0 && t.paid == t.billed
    })
    .await;
    let t = proxy.books().await.totals().unwrap();
    assert!(
        t.billed < full,
        "billed {} of a full job's {full}",
        t.billed
    );
    assert_eq!(t.owed_to_workers + t.commission, t.billed);
    let audit = devnet(&net).audit().await.unwrap();
    assert!(audit.conserved(), "{audit:?}");
    // A new job finds no worker the registry allows.
    let r = chat(&net.base_url(), "echo", "anyone?", false).await;
    assert_eq!(r.status(), 503);
}
