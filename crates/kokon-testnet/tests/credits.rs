//! Unlinkable credits in one process: the client gateway pays its jobs —
//! through the relay — with blind-signed tokens its channel bought, and
//! gets its change back in fresh tokens; the channel is billed for the
//! purchase only. And what a hostile holder of tokens can try: spending a
//! token twice, forging one, paying a large job with a small token,
//! claiming someone's change — each refused, with the money and the spent
//! set checked.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use kokon_attest::{Registry, Role};
use kokon_credit::{PublicKeys, Token};
use kokon_gateway::ProxyLink;
use kokon_money::receipt::Budget;
use kokon_money::{Address, Nanotons, SecretKey};
use kokon_pay::Settlement;
use kokon_proto::credit::{ChangeRequest, SaleRequest, batch_hash};
use kokon_proto::{CreditPayment, ErrorCode, JobHeader, JobKind};
use kokon_testnet::pay::PaySpec;
use kokon_testnet::{LocalNet, NetSpec, WorkerSpec};
use serde_json::Value;
use sha2::{Digest, Sha256};

const BOUGHT: Nanotons = 1_000_000;

async fn credit_net(tmp: &std::path::Path) -> LocalNet {
    let mut spec = NetSpec::new(vec![WorkerSpec::new(echo("m", 0))]);
    spec.relay_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    let mut pay = PaySpec::dev(tmp.to_path_buf());
    pay.claim_every = Duration::from_millis(200);
    spec.payments = Some(pay);
    spec.credits = Some(BOUGHT);
    LocalNet::start(spec).await.unwrap()
}

async fn balance(net: &LocalNet) -> (Nanotons, Nanotons) {
    let b: Value = reqwest::get(format!("{}/credits", net.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let n = |k: &str| {
        b[k].as_str()
            .unwrap_or_else(|| panic!("no {k} in {b}"))
            .parse::<Nanotons>()
            .unwrap()
    };
    (n("ready_nanoton"), n("in_jobs_nanoton"))
}

async fn channel(net: &LocalNet, tmp: &std::path::Path) -> (SecretKey, Address) {
    let client = PaySpec::dev(tmp.to_path_buf()).key("dev-client").unwrap();
    let ch = devnet(net).channels_of(client.public()).await.unwrap()[0].id;
    (client, ch)
}

/// Every text value of the proxy's credit tables, split into the sale
/// records and the redemption records (with the bills of credit jobs).
fn credit_records(tmp: &std::path::Path) -> (Vec<String>, Vec<String>) {
    let db = rusqlite::Connection::open(tmp.join("dev-proxy.db")).unwrap();
    let values = |sql: &str| -> Vec<String> {
        let mut st = db.prepare(sql).unwrap();
        let n = st.column_count();
        st.query_map([], |r| {
            Ok((0..n)
                .filter_map(|i| r.get::<_, Option<String>>(i).ok().flatten())
                .collect::<Vec<_>>())
        })
        .unwrap()
        .flat_map(|r| r.unwrap())
        .collect()
    };
    let sales = values("SELECT * FROM credit_sales");
    let mut redemptions = values("SELECT * FROM credit_spent");
    redemptions.extend(values("SELECT * FROM credit_jobs"));
    redemptions.extend(values(
        "SELECT request, channel, worker, receipt FROM bills WHERE channel = 'credits'",
    ));
    (sales, redemptions)
}

#[tokio::test]
async fn relayed_jobs_are_paid_by_tokens_and_the_change_comes_back() {
    let tmp = tempfile::tempdir().unwrap();
    let net = credit_net(tmp.path()).await;
    let (_, ch) = channel(&net, tmp.path()).await;
    assert_eq!(
        balance(&net).await,
        (BOUGHT, 0),
        "the purchase is in the wallet"
    );
    let mut spent = 0;
    for text in ["paid in tokens", "and once more, with more words"] {
        let r: Value = chat(&net.base_url(), "m", text, false)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(r["choices"][0]["message"]["content"], format!("{text} "));
        let cost = Nanotons::from(r["usage"]["cost_nanoton"].as_u64().unwrap());
        assert!(cost > 0);
        spent += cost;
    }
    // A streamed job too.
    let mut sse = Sse::new(chat(&net.base_url(), "m", &words(12), true).await);
    let mut text = String::new();
    while let Some(ev) = sse.next().await {
        text.push_str(&content_of(&ev).unwrap_or_default());
    }
    assert_eq!(text, format!("{} ", words(12)));
    eventually_async("the streamed job's change is back", || async {
        balance(&net).await.1 == 0
    })
    .await;
    let (ready, _) = balance(&net).await;
    let pay = net.proxy.pay().unwrap();
    let books = pay.books().await;
    let t = books.credit_totals().unwrap();
    assert_eq!(t.sold, BOUGHT);
    assert_eq!(
        ready + (t.prepaid - t.returned),
        BOUGHT,
        "the wallet plus what the proxy kept"
    );
    assert!(
        t.prepaid - t.returned >= t.billed,
        "the proxy keeps its bills and sub-unit remainders"
    );
    assert!(spent <= t.prepaid - t.returned);
    // The channel paid for the purchase (its voucher) and for no job.
    assert_eq!(books.owed(&ch), 0);
    let db = rusqlite::Connection::open(tmp.path().join("dev-proxy.db")).unwrap();
    let on_channel: i64 = db
        .query_row(
            "SELECT count(*) FROM bills WHERE channel = ?1",
            [ch.to_string()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        on_channel, 0,
        "no job is billed to the channel that bought the tokens"
    );
    drop(books);
    // What the proxy recorded of the sale shares nothing with what it
    // recorded of the jobs.
    let (sales, redemptions) = credit_records(tmp.path());
    assert!(sales.contains(&ch.to_string()));
    for s in sales.iter().filter(|s| s.parse::<u128>().is_err()) {
        for r in &redemptions {
            assert!(!r.contains(s.as_str()), "{s} is in a redemption record");
        }
    }
}

/// A holder of the dev channel, acting as a provider by hand: it buys
/// tokens at the proxy and spends them on jobs it writes itself.
struct Holder {
    link: ProxyLink,
    keys: PublicKeys,
    key: SecretKey,
    channel: Address,
}

impl Holder {
    fn tls() -> kokon_tls::RaTls {
        let policy = std::sync::Arc::new(Registry::local_test_network().policy().unwrap());
        kokon_tls::node::simulated_node(Role::Client, None, policy, [0; 32], &Default::default())
            .unwrap()
    }

    async fn new(net: &LocalNet, tmp: &std::path::Path) -> Self {
        let link = ProxyLink::new(net.proxy.addr, Self::tls());
        let doc = serde_json::from_value(link.credit_keys().await.unwrap()).unwrap();
        let keys = PublicKeys::from_document(&doc).unwrap();
        let (key, channel) = channel(net, tmp).await;
        Self {
            link,
            keys,
            key,
            channel,
        }
    }

    fn sale(&self, requests: Vec<String>, amount: Nanotons, key: &SecretKey) -> SaleRequest {
        let hash = SaleRequest::signing_hash(&self.channel, &batch_hash(&requests), amount);
        SaleRequest {
            channel: self.channel,
            requests,
            amount,
            signature: key.sign(&hash),
        }
    }

    /// Tokens of `levels`, bought and unblinded.
    async fn buy(&self, levels: &[u8]) -> Vec<Token> {
        let blinded: Vec<_> = levels
            .iter()
            .map(|l| self.keys.blind(*l).unwrap())
            .collect();
        let requests: Vec<String> = blinded.iter().map(|b| b.request.to_b64()).collect();
        let amount = self.keys.schedule().total(levels).unwrap();
        let reply = self
            .link
            .credit_buy(&self.sale(requests, amount, &self.key))
            .await
            .unwrap();
        blinded
            .iter()
            .zip(&reply.responses)
            .map(|(b, r)| {
                b.finish(
                    &self.keys,
                    &kokon_credit::TokenResponse::from_b64(r).unwrap(),
                )
                .unwrap()
            })
            .collect()
    }
}

fn payload(text: &str) -> Bytes {
    let job = serde_json::json!({
        "model": "m",
        "input": {"chat": [{"role": "user", "content": text}]},
        "params": {"max_tokens": 20},
    });
    Bytes::from(serde_json::to_vec(&job).unwrap())
}

fn header(id: &str, tokens: &[Token], secret: &[u8; 32]) -> JobHeader {
    JobHeader {
        request_id: id.into(),
        model: "m".into(),
        kind: JobKind::Chat,
        max_price_milli: Some(1000),
        budget: Some(Budget {
            prompt: 300,
            completion: 20,
        }),
        payment: None,
        credit: Some(CreditPayment {
            tokens: tokens.iter().map(Token::to_b64).collect(),
            claim: Sha256::digest(secret).into(),
        }),
        sealed: false,
    }
}

async fn run(
    link: &ProxyLink,
    h: &JobHeader,
    text: &str,
) -> (usize, Result<(), (ErrorCode, String)>) {
    frames_of(link, h, payload(text)).await
}

async fn credit_totals(net: &LocalNet) -> kokon_pay::books::proxy::CreditTotals {
    let pay = net.proxy.pay().unwrap();
    pay.books().await.credit_totals().unwrap()
}

async fn spent_tokens(net: &LocalNet) -> u64 {
    credit_totals(net).await.spent_tokens
}

#[tokio::test]
async fn a_token_spent_twice_or_forged_or_too_small_is_refused_and_nothing_is_taken() {
    let tmp = tempfile::tempdir().unwrap();
    let net = credit_net(tmp.path()).await;
    let h = Holder::new(&net, tmp.path()).await;
    // 2^17 nanotons (131 072): enough for a 320-token job at base price; 2^4 is not.
    let tokens = h.buy(&[17, 17, 4]).await;
    let before = spent_tokens(&net).await;

    let (data, end) = run(
        &h.link,
        &header("first", &tokens[..1], &[1; 32]),
        "one two three",
    )
    .await;
    assert!(end.is_ok() && data == 3, "{end:?}");
    assert_eq!(spent_tokens(&net).await, before + 1);

    // The same token on another job: refused before any work.
    let (data, end) = run(&h.link, &header("second", &tokens[..1], &[2; 32]), "again").await;
    let (code, msg) = end.unwrap_err();
    assert_eq!((code, data), (ErrorCode::PaymentRequired, 0));
    assert!(msg.contains("spent before"), "{msg}");
    // With a fresh token beside it: still refused, and the fresh one is
    // not taken (it pays the next job).
    let (_, end) = run(&h.link, &header("third", &tokens[..2], &[3; 32]), "again").await;
    assert_eq!(end.unwrap_err().0, ErrorCode::PaymentRequired);
    assert_eq!(spent_tokens(&net).await, before + 1, "nothing more spent");

    // A forged token (a real one with its nonce changed), and a token too
    // small for the job's budget: refused, nothing spent.
    let mut forged = tokens[1].clone();
    forged.nonce[0] ^= 1;
    let (_, end) = run(&h.link, &header("forged", &[forged], &[4; 32]), "x").await;
    let (code, msg) = end.unwrap_err();
    assert_eq!(code, ErrorCode::PaymentRequired);
    assert!(msg.contains("signature"), "{msg}");
    let (_, end) = run(&h.link, &header("small", &tokens[2..3], &[5; 32]), "x").await;
    let (code, msg) = end.unwrap_err();
    assert_eq!(code, ErrorCode::PaymentRequired);
    assert!(msg.contains("may cost up to"), "{msg}");
    assert_eq!(spent_tokens(&net).await, before + 1, "nothing more spent");

    // The fresh token still pays.
    let (data, end) = run(
        &h.link,
        &header("fourth", &tokens[1..2], &[6; 32]),
        "four five",
    )
    .await;
    assert!(end.is_ok() && data == 2, "{end:?}");
    assert_eq!(spent_tokens(&net).await, before + 2);
}

#[tokio::test]
async fn a_sale_must_be_signed_by_the_channel_and_is_billed_once() {
    let tmp = tempfile::tempdir().unwrap();
    let net = credit_net(tmp.path()).await;
    let h = Holder::new(&net, tmp.path()).await;
    let books_owed = |net: &LocalNet, ch: Address| {
        let pay = net.proxy.pay().unwrap();
        async move { pay.books().await.owed(&ch) }
    };
    let owed = books_owed(&net, h.channel).await;
    let b = h.keys.blind(3).unwrap();
    let requests = vec![b.request.to_b64()];
    let value = h.keys.schedule().value(3).unwrap();
    // Signed by a stranger, or claiming another amount: refused, unbilled.
    let stranger = SecretKey::generate();
    let e = h
        .link
        .credit_buy(&h.sale(requests.clone(), value, &stranger))
        .await
        .unwrap_err();
    assert!(
        e.message.contains("not signed by the channel"),
        "{}",
        e.message
    );
    let e = h
        .link
        .credit_buy(&h.sale(requests.clone(), value / 2, &h.key))
        .await
        .unwrap_err();
    assert!(e.message.contains("add up to"), "{}", e.message);
    assert_eq!(books_owed(&net, h.channel).await, owed);
    // The real sale, twice (a retry): the same signatures, billed once.
    let first = h
        .link
        .credit_buy(&h.sale(requests.clone(), value, &h.key))
        .await
        .unwrap();
    let again = h
        .link
        .credit_buy(&h.sale(requests, value, &h.key))
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(books_owed(&net, h.channel).await, owed + value);
}

#[tokio::test]
async fn a_jobs_change_goes_to_its_claim_secret_once() {
    let tmp = tempfile::tempdir().unwrap();
    let net = credit_net(tmp.path()).await;
    let h = Holder::new(&net, tmp.path()).await;
    let tokens = h.buy(&[17]).await;
    let secret = [9u8; 32];
    let (_, end) = run(&h.link, &header("job", &tokens, &secret), "some words here").await;
    assert!(end.is_ok());
    let ask = |secret: [u8; 32], requests: Vec<String>| ChangeRequest {
        request_id: "job".into(),
        secret: hex::encode(secret),
        requests,
    };
    // Someone without the secret (a worker saw the request id): refused.
    let e = h
        .link
        .credit_change(&ask([8; 32], vec![]))
        .await
        .unwrap_err();
    assert!(e.message.contains("no credit-paid job"), "{}", e.message);
    // The owner learns the change, then claims it in exactly its levels.
    let told = h.link.credit_change(&ask(secret, vec![])).await.unwrap();
    assert!(told.responses.is_empty() && told.returned > 0);
    let blinded: Vec<_> = told
        .levels
        .iter()
        .map(|l| h.keys.blind(*l).unwrap())
        .collect();
    let requests: Vec<String> = blinded.iter().map(|b| b.request.to_b64()).collect();
    let given = h
        .link
        .credit_change(&ask(secret, requests.clone()))
        .await
        .unwrap();
    assert_eq!(given.responses.len(), requests.len());
    let change: Nanotons = blinded
        .iter()
        .zip(&given.responses)
        .map(|(b, r)| {
            b.finish(&h.keys, &kokon_credit::TokenResponse::from_b64(r).unwrap())
                .unwrap();
            h.keys.schedule().value(b.level).unwrap()
        })
        .sum();
    assert_eq!(change, given.returned);
    // The same requests again: the same answer. Others: refused.
    let again = h.link.credit_change(&ask(secret, requests)).await.unwrap();
    assert_eq!(again.responses, given.responses);
    let other: Vec<String> = told
        .levels
        .iter()
        .map(|l| h.keys.blind(*l).unwrap().request.to_b64())
        .collect();
    let e = h.link.credit_change(&ask(secret, other)).await.unwrap_err();
    assert!(e.message.contains("was given"), "{}", e.message);
    let job = net
        .proxy
        .pay()
        .unwrap()
        .books()
        .await
        .redemption("job")
        .unwrap()
        .unwrap();
    assert!(job.billed + given.returned <= job.prepaid);
    assert!(job.prepaid - job.billed - given.returned < h.keys.schedule().unit);
}

#[tokio::test]
async fn a_job_sealed_again_to_fresh_candidates_is_paid_by_the_same_tokens_once() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = NetSpec::new(vec![WorkerSpec::new(echo("m", 0))]);
    let mut pay = PaySpec::dev(tmp.path().to_path_buf());
    pay.claim_every = Duration::from_millis(200);
    spec.payments = Some(pay);
    spec.credits = Some(BOUGHT);
    let mut net = LocalNet::start(spec).await.unwrap();
    let first = chat(&net.base_url(), "m", "first", false).await;
    assert_eq!(first.status(), 200);
    // The gateway still holds the list naming the old certificate; the
    // restarted worker has new keys: the proxy refuses the job before any
    // work, gives its tokens back, and the gateway seals it again.
    net.restart_worker(0, WorkerSpec::new(echo("m", 0)))
        .unwrap();
    let stats = net.workers[0].stats.clone();
    eventually("the new worker alone is linked", || {
        kokon_worker::WorkerStats::get(&stats.links_established) >= 1
            && net.proxy.worker_count() == 1
    })
    .await;
    let second: Value = chat(&net.base_url(), "m", "second", false)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(second["choices"][0]["message"]["content"], "second ");
    assert_eq!(net.proxy.metrics().jobs("m", "stale_candidates"), 1);
    eventually_async("both jobs' change is back", || async {
        balance(&net).await.1 == 0
    })
    .await;
    let (ready, _) = balance(&net).await;
    let pay = net.proxy.pay().unwrap();
    let t = pay.books().await.credit_totals().unwrap();
    assert_eq!(ready + (t.prepaid - t.returned), BOUGHT, "{t:?}");
    assert_eq!(
        t.prepaid - t.returned,
        t.billed,
        "nothing kept beyond the two bills"
    );
    assert_eq!(proxy_totals(&net).await.receipts, 2);
}

/// A proxy whose credit keys are not the ones it published in the registry
/// (keys for some clients alone would tell their tokens apart): a client
/// neither pins them nor asks for tokens under them — its wallet stays
/// empty, nothing is sold, no channel billed — and does once the registry
/// lists the keys it is handed.
#[tokio::test]
async fn credit_keys_the_proxy_did_not_publish_are_never_pinned() {
    let tmp = tempfile::tempdir().unwrap();
    let net = credit_net(tmp.path()).await;
    let handed_out = Holder::new(&net, tmp.path()).await.keys;
    let publisher = net.proxy.publisher().unwrap();
    publisher.credits([7; 32]).await.unwrap();
    // A new client of the proxy (the network's own gateway pinned the keys
    // while they were published).
    let wallet = tmp.path().join("newcomer.db");
    let prices = Registry::local_test_network().economics().prices;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let gw = kokon_gateway::start_paying(
        kokon_gateway::GatewayConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), net.proxy.addr),
        Holder::tls(),
        None,
        Some(kokon_gateway::CreditPay::new(wallet.clone(), prices)),
        net.registry(),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let ask = || async {
        reqwest::Client::new()
            .post(format!("http://{}/v1/credits/request", gw.addr))
            .json(&serde_json::json!({"amount_nanoton": "1000"}))
            .send()
            .await
            .unwrap()
    };
    let r = ask().await;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("not the ones it published"), "{msg}");
    assert!(
        !wallet.exists(),
        "no wallet was made with the unpublished keys"
    );
    let sold = credit_totals(&net).await.sold;
    assert_eq!(
        sold, BOUGHT,
        "only the network's own purchase was ever sold"
    );
    // The registry lists the keys the proxy hands out: the newcomer asks.
    publisher.credits(handed_out.fingerprint()).await.unwrap();
    let r = ask().await;
    assert!(r.status().is_success(), "{:?}", r.text().await);
    assert!(wallet.exists());
    shutdown.cancel();
}
