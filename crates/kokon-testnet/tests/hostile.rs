//! A hostile client against a paid network: it speaks the link protocol to
//! the proxy with its own RA-TLS certificate and crafts job headers by hand.
//! Each test asserts what happened to the money (the proxy's books, to the
//! nanoton) and that honest traffic through the gateway kept working.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::*;
use kokon_attest::{Registry, Role};
use kokon_gateway::ProxyLink;
use kokon_money::receipt::Budget;
use kokon_money::{Address, SecretKey};
use kokon_pay::Settlement;
use kokon_pay::books::proxy::ProxyTotals;
use kokon_proto::{AuthScope, ErrorCode, Frame, JobHeader, JobKind, Payment};
use kokon_testnet::pay::PaySpec;
use kokon_testnet::{LocalNet, NetSpec, WorkerSpec};
use kokon_worker::WorkerStats;

struct Attack {
    net: LocalNet,
    link: ProxyLink,
    /// The channel's own client key (a client cheating its proxy).
    client: SecretKey,
    channel: Address,
    _dir: tempfile::TempDir,
}

async fn attack() -> Attack {
    attack_with(0, None).await
}

/// A paid network whose worker takes `per_token_ms` per token, and whose
/// proxy gives each client `max_credit` (the default if `None`).
async fn attack_with(per_token_ms: u64, max_credit: Option<u128>) -> Attack {
    let dir = tempfile::tempdir().unwrap();
    let mut worker = WorkerSpec::new(echo("echo", per_token_ms));
    worker.receipt_every_tokens = 16;
    let mut spec = NetSpec::new(vec![worker]);
    let mut pay = PaySpec::dev(dir.path().to_path_buf());
    pay.max_credit = max_credit.or(pay.max_credit);
    spec.payments = Some(pay);
    let net = LocalNet::start(spec).await.unwrap();
    // One honest job opens the books.
    assert_eq!(
        chat(&net.base_url(), "echo", "hello", false).await.status(),
        200
    );
    let client = PaySpec::dev(dir.path().to_path_buf())
        .key("dev-client")
        .unwrap();
    let ledger = devnet(&net);
    let channel = ledger.channels_of(client.public()).await.unwrap()[0].id;
    let link = client_link(&net);
    Attack {
        net,
        link,
        client,
        channel,
        _dir: dir,
    }
}

/// A new client link to the proxy, with its own RA-TLS certificate.
fn client_link(net: &LocalNet) -> ProxyLink {
    let policy = std::sync::Arc::new(Registry::local_test_network().policy().unwrap());
    let tls =
        kokon_tls::node::simulated_node(Role::Client, None, policy, [0; 32], &Default::default())
            .unwrap();
    ProxyLink::new(net.proxy.addr, tls)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn payload(text: &str) -> Bytes {
    payload_max(text, 50)
}

fn payload_max(text: &str, max_tokens: u32) -> Bytes {
    let job = serde_json::json!({
        "model": "echo",
        "input": {"chat": [{"role": "user", "content": text}]},
        "params": {"max_tokens": max_tokens},
    });
    Bytes::from(serde_json::to_vec(&job).unwrap())
}

const BUDGET: Budget = Budget {
    prompt: 1000,
    completion: 50,
};

/// A job header signed by `key` for `payload` on `channel`.
fn signed(
    key: &SecretKey,
    channel: Address,
    id: &str,
    payload: &[u8],
    budget: Budget,
    expires_unix: u64,
) -> JobHeader {
    let mut h = JobHeader {
        request_id: id.into(),
        model: "echo".into(),
        kind: JobKind::Chat,
        max_price_milli: None,
        budget: Some(budget),
        payment: None,
        credit: None,
        sealed: false,
    };
    let sig = key.sign(&h.auth_hash(budget, &AuthScope::new(channel, payload, expires_unix)));
    h.payment = Some(Payment {
        channel,
        expires_unix,
        signature: sig,
    });
    h
}

/// What the proxy streamed back: text frames, then the final frame.
async fn run(
    a: &Attack,
    h: &JobHeader,
    payload: Bytes,
) -> (usize, Result<(), (ErrorCode, String)>) {
    frames_of(&a.link, h, payload).await
}

impl Attack {
    async fn totals(&self) -> ProxyTotals {
        proxy_totals(&self.net).await
    }

    /// Honest traffic through the gateway still works.
    async fn honest_job_works(&self) {
        let r = chat(&self.net.base_url(), "echo", "still here", false).await;
        assert_eq!(r.status(), 200, "honest traffic kept working");
    }
}

#[tokio::test]
async fn a_job_signed_by_a_stranger_is_refused_and_charges_nothing() {
    let a = attack().await;
    let before = a.totals().await;
    let stranger = SecretKey::generate();
    let p = payload("run this on someone else's channel");
    let h = signed(&stranger, a.channel, "intruder", &p, BUDGET, now() + 60);
    let (data, end) = run(&a, &h, p).await;
    let (code, msg) = end.expect_err("refused");
    assert_eq!((code, data), (ErrorCode::PaymentRequired, 0));
    assert!(msg.contains("payer signature"), "{msg}");
    assert_eq!(a.totals().await, before, "nothing billed");
    a.honest_job_works().await;
}

#[tokio::test]
async fn a_reused_request_id_is_refused_before_any_work() {
    let a = attack().await;
    let p = payload("one two three");
    let h = signed(&a.client, a.channel, "once", &p, BUDGET, now() + 60);
    let (data, end) = run(&a, &h, p.clone()).await;
    assert!(end.is_ok() && data == 3, "the first use runs: {end:?}");
    let after_first = a.totals().await;

    // The same request again (a replay), and the same id on a new prompt.
    let other = payload("four five six seven");
    let h2 = signed(&a.client, a.channel, "once", &other, BUDGET, now() + 60);
    for (h, p) in [(&h, p), (&h2, other)] {
        let (data, end) = run(&a, h, p).await;
        assert_eq!(data, 0, "no output for a reused id");
        assert_eq!(end.map_err(|e| e.0), Err(ErrorCode::DuplicateRequest));
    }
    assert_eq!(a.totals().await, after_first, "a reused id bills nothing");
    a.honest_job_works().await;
}

#[tokio::test]
async fn a_captured_authorisation_cannot_carry_another_prompt() {
    let a = attack().await;
    let before = a.totals().await;
    let victims = payload("the victim's prompt");
    let h = signed(
        &a.client,
        a.channel,
        "victim-1",
        &victims,
        BUDGET,
        now() + 60,
    );
    // Whoever captured the header sends their own prompt under it.
    let (data, end) = run(&a, &h, payload("the thief's much longer prompt")).await;
    let (code, msg) = end.expect_err("refused");
    assert_eq!((code, data), (ErrorCode::PaymentRequired, 0));
    assert!(msg.contains("payload"), "{msg}");
    assert_eq!(a.totals().await, before, "nothing billed");
    // The refusal did not burn the victim's request id.
    let (_, end) = run(&a, &h, victims).await;
    assert!(end.is_ok(), "the victim's own job still runs: {end:?}");
    a.honest_job_works().await;
}

#[tokio::test]
async fn an_expired_authorisation_is_refused() {
    let a = attack().await;
    let before = a.totals().await;
    let p = payload("yesterday's job");
    let stale = signed(&a.client, a.channel, "stale", &p, BUDGET, now() - 5);
    let (_, end) = run(&a, &stale, p.clone()).await;
    let (code, msg) = end.expect_err("refused");
    assert_eq!(code, ErrorCode::PaymentRequired);
    assert!(msg.contains("expired"), "{msg}");
    let forever = signed(
        &a.client,
        a.channel,
        "forever",
        &p,
        BUDGET,
        now() + 86_400 * 365,
    );
    let (_, end) = run(&a, &forever, p).await;
    assert!(end.expect_err("refused").1.contains("valid for more than"));
    assert_eq!(a.totals().await, before, "nothing billed");
    a.honest_job_works().await;
}

#[tokio::test]
async fn an_understated_prompt_budget_gets_no_free_prefill() {
    let a = attack().await;
    let before = a.totals().await;
    let p = payload(&words(300));
    let tight = Budget {
        prompt: 1,
        completion: 50,
    };
    let h = signed(&a.client, a.channel, "tiny-budget", &p, tight, now() + 60);
    let (data, end) = run(&a, &h, p).await;
    let (code, msg) = end.expect_err("refused");
    assert_eq!((code, data), (ErrorCode::OverBudget, 0), "{msg}");
    assert!(msg.contains("300"), "names the prompt's size: {msg}");
    assert_eq!(a.totals().await, before, "nothing billed, nothing owed");
    let worker = a.net.workers[0].pay.clone().unwrap();
    let (receipts, _) = worker.books().await.receipts_total().unwrap();
    assert_eq!(receipts, 1, "only the honest job was receipted");
    a.honest_job_works().await;
}

#[tokio::test]
async fn a_slow_client_is_not_refused_for_a_fresh_authorisation() {
    // The lifetime the gateway gives an authorisation passes the proxy's check.
    let a = attack().await;
    let p = payload("on time");
    let h = signed(&a.client, a.channel, "on-time", &p, BUDGET, now() + 120);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(run(&a, &h, p).await.1.is_ok());
}

#[tokio::test]
async fn leaving_mid_stream_does_not_make_output_free() {
    // Credit for a few left streams: prompt 300 tokens, up to 300 more.
    let prices = kokon_money::PriceTable::default();
    let price = |prompt, completion| {
        Budget { prompt, completion }
            .max_cost(&prices, "echo", 1000)
            .unwrap()
    };
    let max_credit = price(1000, 300) + 4 * price(300, 40);
    let a = attack_with(2, Some(max_credit)).await;
    let before = a.totals().await;
    let budget = Budget {
        prompt: 1000,
        completion: 300,
    };
    let mut billed_per_leave = vec![];
    let mut refused = None;
    for i in 0..50 {
        let p = payload_max(&words(300), 300);
        let h = signed(
            &a.client,
            a.channel,
            &format!("leave-{i}"),
            &p,
            budget,
            now() + 60,
        );
        let billed_before = a.totals().await.billed;
        let mut frames = match a.link.submit(&h, p).await {
            Ok((f, _)) => f,
            Err(e) => {
                refused = Some(e.code);
                break;
            }
        };
        let (mut data, mut receipts) = (0, 0);
        while data < 40 {
            let next = frames.next().await;
            let Some(next) = next else {
                panic!("leave-{i}: the stream ended after {data} data, {receipts} receipts")
            };
            match next.expect("frames parse") {
                Frame::Data(_) => data += 1,
                Frame::Receipt(_) => receipts += 1,
                Frame::Error(e) => {
                    refused = Some(e.code);
                    break;
                }
                Frame::End(_) => panic!("300 tokens do not end after 40"),
            }
        }
        if refused.is_some() {
            break;
        }
        // A receipt every 16 tokens; each is relayed once billed durably, so
        // the second may still trail the data here (it is billed all the
        // same: see below).
        assert!(receipts >= 1, "a receipt every 16 tokens: {receipts} in 40");
        drop(frames); // the client leaves, paying nothing
        eventually("the proxy bills the job it left", || {
            a.net.proxy.active_jobs() == 0
        })
        .await;
        billed_per_leave.push(a.totals().await.billed - billed_before);
    }
    // Each stream left after 40 tokens was billed its receipts (each billed
    // before it was relayed): the prompt (1 token per word, 300) and at
    // least 32 tokens.
    let at_least = price(300, 32);
    assert!(!billed_per_leave.is_empty());
    for b in &billed_per_leave {
        assert!(
            *b >= at_least,
            "billed {b} for a left stream, expected ≥ {at_least}"
        );
    }
    // A client that never pays is cut off once its unpaid bills reach the
    // credit limit; the proxy's exposure stays within it.
    assert_eq!(
        refused,
        Some(ErrorCode::PaymentRequired),
        "the leaver is cut off"
    );
    let t = a.totals().await;
    let unpaid = t.billed - t.paid;
    assert!(
        unpaid <= max_credit + (before.billed - before.paid),
        "unpaid {unpaid} > credit {max_credit}"
    );
    assert!(
        unpaid > max_credit / 2,
        "the leaver's output was billed: {unpaid}"
    );
}

#[tokio::test]
async fn a_cooperative_close_while_owing_needs_the_voucher_that_pays() {
    use kokon_money::{ChannelVoucher, Signed};
    let a = attack().await;
    let pay = a.net.proxy.pay().unwrap();
    // The honest job's voucher lands; then a job the client never pays for.
    eventually_async("the honest job's voucher lands", || async {
        let t = a.totals().await;
        t.paid == t.billed
    })
    .await;
    let p = payload("run and close");
    let h = signed(&a.client, a.channel, "unpaid", &p, BUDGET, now() + 60);
    assert!(run(&a, &h, p).await.1.is_ok());
    let t = a.totals().await;
    assert!(t.billed > t.paid, "one job billed, unpaid");
    let close = |voucher| kokon_proto::CloseRequest {
        channel: a.channel,
        signature: a
            .client
            .sign(&kokon_proto::CloseRequest::signing_hash(&a.channel)),
        voucher,
    };
    let refused = a.link.close_channel(&close(None)).await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::PaymentRequired);
    assert!(refused.message.contains("owes"), "{}", refused.message);
    let ledger = devnet(&a.net);
    let row = ledger.channel(a.channel).await.unwrap().unwrap();
    assert_eq!(
        row.state,
        kokon_money::ledger::ChannelState::Open,
        "nothing closed"
    );
    // A voucher for another channel does not pay this one.
    let elsewhere = Signed::sign(
        ChannelVoucher {
            channel: Address::new(0, [9; 32]),
            amount: t.billed,
        },
        &a.client,
    )
    .unwrap();
    let refused = a
        .link
        .close_channel(&close(Some(elsewhere)))
        .await
        .unwrap_err();
    assert!(
        refused.message.contains("another channel"),
        "{}",
        refused.message
    );
    assert_eq!(
        a.totals().await.paid,
        t.paid,
        "the foreign voucher paid nothing"
    );
    // A voucher short of the bill is not enough either.
    let short = Signed::sign(
        ChannelVoucher {
            channel: a.channel,
            amount: t.billed - 1,
        },
        &a.client,
    )
    .unwrap();
    assert!(a.link.close_channel(&close(Some(short))).await.is_err());
    // It is a good payment, and taken as one, but 1 nanoton is still owed.
    assert_eq!(a.totals().await.paid, t.billed - 1);
    let row = ledger.channel(a.channel).await.unwrap().unwrap();
    assert_eq!(row.state, kokon_money::ledger::ChannelState::Open);
    let pays = Signed::sign(
        ChannelVoucher {
            channel: a.channel,
            amount: t.billed,
        },
        &a.client,
    )
    .unwrap();
    let claimed_before = row.claimed;
    let reply = a.link.close_channel(&close(Some(pays))).await.unwrap();
    let row = ledger.channel(a.channel).await.unwrap().unwrap();
    assert_eq!(row.state, kokon_money::ledger::ChannelState::Closed);
    assert_eq!(row.claimed, t.billed, "the proxy got every job it billed");
    assert_eq!(reply.claimed + reply.refunded, row.deposit - claimed_before);
    assert_eq!(pay.books().await.owed(&a.channel), 0);
    assert!(ledger.audit().await.unwrap().conserved());
}

/// Reads `frames` until `n` `Data` frames came; returns how many receipts did.
async fn read_data(frames: &mut kokon_link::FrameStream, n: usize) -> usize {
    let (mut data, mut receipts) = (0, 0);
    while data < n {
        match frames.next().await.expect("the stream goes on").unwrap() {
            Frame::Data(_) => data += 1,
            Frame::Receipt(_) => receipts += 1,
            other => panic!("ended after {data} data: {other:?}"),
        }
    }
    receipts
}

/// Submits a 300-token job `id` on the client's channel; returns its
/// stream and the link it runs on.
async fn long_job(a: &Attack, id: &str) -> (kokon_link::FrameStream, kokon_link::LinkClient) {
    let p = payload_max(&words(300), 300);
    let budget = Budget {
        prompt: 1000,
        completion: 300,
    };
    let h = signed(&a.client, a.channel, id, &p, budget, now() + 60);
    a.link.submit(&h, p).await.unwrap()
}

#[tokio::test]
async fn a_cancelled_job_stops_at_the_worker_and_bills_exactly_the_receipt_the_client_got() {
    let a = attack_with(10, None).await;
    let before = a.totals().await;
    let worker = a.net.workers[0].stats.clone();
    let (mut frames, on) = long_job(&a, "cancel-me").await;
    read_data(&mut frames, 20).await;
    let cancel = kokon_proto::CancelRequest {
        request_id: "cancel-me".into(),
    };
    // Another client, on its own link, cannot cancel this one's job: it
    // names the request id, but the job does not run on its link.
    let other = client_link(&a.net);
    let p = payload("a job on another link");
    let h = signed(&a.client, a.channel, "other-link", &p, BUDGET, now() + 60);
    let (mut other_frames, other_on) = other.submit(&h, p).await.unwrap();
    let refused = other.cancel(&other_on, &cancel).await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::BadRequest);
    read_data(&mut frames, 5).await; // the job streams on
    a.link
        .cancel(&on, &cancel)
        .await
        .expect("the proxy takes the cancel");
    // The stream goes on to its end: the worker's last receipt, then why.
    let (mut data, mut last) = (25, None);
    let code = loop {
        match frames.next().await.expect("a final frame").unwrap() {
            Frame::Data(_) => data += 1,
            Frame::Receipt(r) => last = Some(r),
            Frame::Error(e) => break e.code,
            Frame::End(_) => panic!("a cancelled job of 300 tokens ended after {data}"),
        }
    };
    assert_eq!(code, ErrorCode::Cancelled);
    assert!(data < 300, "the engine stopped: {data} tokens");
    let last = last.expect("a receipt for the work done").receipt.body;
    assert_eq!(
        last.usage.completion, data as u64,
        "it covers every token sent"
    );
    // The other link's job runs to its end, billed its own receipt.
    let other_cost = loop {
        match other_frames.next().await.expect("a final frame").unwrap() {
            Frame::End(end) => break end.receipt.expect("a paid job's receipt").receipt.body.cost,
            Frame::Error(e) => panic!("the other link's job failed: {e:?}"),
            _ => {}
        }
    };
    // The proxy billed exactly what the client holds a receipt for: the
    // client can pay it all, and nobody worked for free.
    let billed = a.totals().await.billed - before.billed - other_cost;
    assert_eq!(billed, last.cost);
    // The worker's slot was held until its engine had stopped.
    assert_eq!(WorkerStats::get(&worker.jobs_cancelled), 1);
    eventually("the proxy's job is over", || a.net.proxy.active_jobs() == 0).await;
    // A cancel for a job that is not on this link is refused.
    let stale = a.link.cancel(&on, &cancel).await.unwrap_err();
    assert_eq!(stale.code, ErrorCode::BadRequest);
    a.honest_job_works().await;
}

#[tokio::test]
async fn a_reset_stream_is_billed_only_for_output_relayed_before_it() {
    let a = attack_with(10, None).await;
    let before = a.totals().await;
    let worker = a.net.workers[0].stats.clone();
    let (mut frames, _on) = long_job(&a, "reset-me").await;
    assert!(
        read_data(&mut frames, 40).await >= 2,
        "receipts every 16 tokens"
    );
    drop(frames); // a reset, not a cancel: the client reads nothing more
    eventually("the worker stops the job", || {
        WorkerStats::get(&worker.jobs_cancelled) == 1
    })
    .await;
    eventually("the proxy's job is over", || a.net.proxy.active_jobs() == 0).await;
    let prices = kokon_money::PriceTable::default();
    let price = |completion| {
        Budget {
            prompt: 300,
            completion,
        }
        .max_cost(&prices, "echo", 1000)
        .unwrap()
    };
    let billed = a.totals().await.billed - before.billed;
    // At least the receipt after 32 tokens (relayed before the reset).
    // The worker was told to stop at the reset and did within a token or
    // two, so its last receipt is far below the 300 it would have made.
    assert!(billed >= price(32), "billed {billed}");
    assert!(
        billed <= price(100),
        "billed {billed}: the worker was not stopped"
    );
    a.honest_job_works().await;
}

#[tokio::test]
async fn a_budget_above_the_registrys_context_is_refused_before_any_work() {
    let a = attack().await;
    let before = a.totals().await;
    let p = payload("a small prompt with a huge budget");
    let huge = Budget {
        prompt: 1000,
        completion: 1 << 40,
    };
    let h = signed(&a.client, a.channel, "huge", &p, huge, now() + 60);
    let (data, end) = run(&a, &h, p).await;
    let (code, msg) = end.expect_err("refused");
    assert_eq!((code, data), (ErrorCode::BadRequest, 0));
    assert!(msg.contains("maximum context"), "{msg}");
    assert_eq!(a.totals().await, before, "nothing billed or reserved");
    a.honest_job_works().await;
}

#[tokio::test]
async fn a_dispute_must_be_the_clients_and_unbills_only_its_own_unpaid_job() {
    let a = attack().await;
    let before = a.totals().await;
    let p = payload("a job the client will dispute");
    let h = signed(&a.client, a.channel, "disputed", &p, BUDGET, now() + 60);
    let (_, end) = run(&a, &h, p).await;
    end.expect("the job runs");
    let billed = a.totals().await.billed - before.billed;
    assert!(billed > 0);
    let dispute = |key: &SecretKey, id: &str| {
        let hash = kokon_proto::DisputeRequest::signing_hash(&a.channel, id);
        kokon_proto::DisputeRequest {
            channel: a.channel,
            request_id: id.into(),
            reason: "the receipt does not match what I received".into(),
            signature: key.sign(&hash),
        }
    };
    // Someone else cannot dispute the client's jobs.
    let e = a
        .link
        .dispute(&dispute(&SecretKey::generate(), "disputed"))
        .await
        .unwrap_err();
    assert!(
        e.message.contains("not signed by the channel's client"),
        "{}",
        e.message
    );
    assert_eq!(
        a.totals().await.billed - before.billed,
        billed,
        "nothing changed"
    );
    // A job never billed cannot be disputed.
    assert!(
        a.link
            .dispute(&dispute(&a.client, "no-such-job"))
            .await
            .is_err()
    );
    // The client's own, unpaid: unbilled, and the worker's fee withheld.
    a.link
        .dispute(&dispute(&a.client, "disputed"))
        .await
        .unwrap();
    let t = a.totals().await;
    assert_eq!(t.billed, before.billed, "the disputed job is not billed");
    assert!(
        t.withheld > 0 && t.withheld < billed,
        "the worker's fee is withheld"
    );
    assert_eq!(t.owed_to_workers + t.commission, t.billed + t.withheld);
    // Once only.
    assert!(
        a.link
            .dispute(&dispute(&a.client, "disputed"))
            .await
            .is_err()
    );
    a.honest_job_works().await;
}

#[tokio::test]
async fn a_worker_disputed_by_three_channels_is_routed_no_more() {
    let mut a = attack().await;
    let pay = a.net.proxy.pay().unwrap();
    let proxy_key = pay.books().await.owner().public();
    let ledger = devnet(&a.net);
    let mut clients = vec![(SecretKey::from_bytes(a.client.to_bytes()), a.channel)];
    for _ in 0..2 {
        let key = SecretKey::generate();
        ledger.fund(key.public(), 10_000_000_000).await.unwrap();
        let ch = ledger
            .open_channel(&key, proxy_key, 1_000_000_000)
            .await
            .unwrap();
        clients.push((key, ch.id));
    }
    for (i, (key, channel)) in clients.iter().enumerate() {
        a.honest_job_works().await;
        let id = format!("disputed-{i}");
        let p = payload("a job its client will dispute");
        let h = signed(key, *channel, &id, &p, BUDGET, now() + 60);
        let (_, end) = run(&a, &h, p).await;
        end.expect("the job runs");
        let hash = kokon_proto::DisputeRequest::signing_hash(channel, &id);
        let d = kokon_proto::DisputeRequest {
            channel: *channel,
            request_id: id,
            reason: "does not match".into(),
            signature: key.sign(&hash),
        };
        a.link.dispute(&d).await.unwrap();
    }
    let t = a.totals().await;
    assert!(t.withheld > 0, "the disputed fees are withheld");
    assert_eq!(t.owed_to_workers + t.commission, t.billed + t.withheld);
    let worker = a.net.workers[0].stats.clone();
    let served = WorkerStats::get(&worker.jobs_completed);
    let r = chat(&a.net.base_url(), "echo", "anyone there?", false).await;
    assert_ne!(r.status(), 200, "the disputed worker is not routed");
    assert_eq!(
        WorkerStats::get(&worker.jobs_completed),
        served,
        "it ran nothing"
    );
    // Restarted (same payout key, new certificate), it links again and is
    // refused, and told why.
    let refused = a.net.proxy.metrics().links_refused("disputed");
    let mut again = WorkerSpec::new(echo("echo", 0));
    again.receipt_every_tokens = 16;
    a.net.restart_worker(0, again).unwrap();
    eventually("the restarted worker is refused", || {
        a.net.proxy.metrics().links_refused("disputed") > refused
    })
    .await;
    assert_eq!(a.net.proxy.worker_count(), 0, "not linked");
    let r = chat(&a.net.base_url(), "echo", "anyone now?", false).await;
    assert_ne!(r.status(), 200, "still not routed");
}

#[tokio::test]
async fn a_client_that_missed_its_ends_pays_them_when_it_reconciles() {
    // Credit for one gateway job (a short prompt, up to 1024 tokens at the
    // gateway's price cap of twice the base), which is more than one of the
    // raw client's jobs may cost.
    let prices = kokon_money::PriceTable::default();
    let gateway_job = Budget {
        prompt: 2000,
        completion: 1024,
    };
    let credit = gateway_job.max_cost(&prices, "echo", 2000).unwrap();
    let a = attack_with(0, Some(credit)).await;
    let before = a.totals().await;
    assert_eq!(before.billed, before.paid, "the honest job is paid");
    // The client's jobs run to their End, which it never pays (as if each
    // End was lost, or the gateway crashed before paying), until the proxy
    // stops admitting it.
    let mut ran = 0;
    loop {
        let p = payload(&words(900));
        let h = signed(
            &a.client,
            a.channel,
            &format!("lost-{ran}"),
            &p,
            BUDGET,
            now() + 60,
        );
        match run(&a, &h, p).await.1 {
            Ok(()) => ran += 1,
            Err((code, _)) => {
                assert_eq!(code, ErrorCode::PaymentRequired);
                break;
            }
        }
        assert!(ran < 40, "the credit limit must stop an unpaying client");
    }
    assert!(ran >= 2, "{ran} jobs ran within the credit");
    let owed = a.totals().await.billed - a.totals().await.paid;
    assert!(owed > 0);
    // The gateway on the same channel is refused too; the refusal makes it
    // reconcile: it pays what it verifies of the bills, and is served again.
    let r = chat(&a.net.base_url(), "echo", "let me in", false).await;
    assert_eq!(r.status(), 402, "locked out until it pays");
    eventually_async("the gateway pays the missed ends", || async {
        let t = a.totals().await;
        t.paid == t.billed
    })
    .await;
    let t = a.totals().await;
    assert_eq!(
        t.paid - before.paid,
        owed,
        "paid exactly what was owed, to the nanoton"
    );
    assert_eq!(
        t.billed,
        before.billed + owed,
        "and nothing was billed twice"
    );
    a.honest_job_works().await;
    let t = a.totals().await;
    assert_eq!(t.paid, t.billed, "and goes on paying");
}

#[tokio::test]
async fn a_channels_bills_are_shown_only_to_its_client_and_only_recently_signed() {
    use kokon_proto::ReconcileRequest;
    let a = attack().await;
    // One unpaid job, so there is something to show.
    let p = payload("private bill");
    let h = signed(&a.client, a.channel, "private", &p, BUDGET, now() + 60);
    assert!(run(&a, &h, p).await.1.is_ok());
    let ask = |key: &SecretKey, unix: u64| ReconcileRequest {
        channel: a.channel,
        unix,
        signature: key.sign(&ReconcileRequest::signing_hash(&a.channel, unix)),
    };
    let stranger = SecretKey::generate();
    let e = a.link.reconcile(&ask(&stranger, now())).await.unwrap_err();
    assert!(
        e.message.contains("not signed by the channel's client"),
        "{}",
        e.message
    );
    let e = a
        .link
        .reconcile(&ask(&a.client, now() - 3600))
        .await
        .unwrap_err();
    assert!(
        e.message.contains("clock"),
        "a replayed old request: {}",
        e.message
    );
    let reply = a.link.reconcile(&ask(&a.client, now())).await.unwrap();
    // The newest bills first (the client skips those it paid).
    assert_eq!(
        reply.jobs.len(),
        2,
        "the unpaid job and the paid one before"
    );
    let job = &reply.jobs[0];
    assert_eq!(job.auth.request_id, "private");
    assert!(
        job.auth.signed_by(&a.client.public()),
        "its own authorisation"
    );
    assert_eq!(reply.owed, a.totals().await.billed - a.totals().await.paid);
}
