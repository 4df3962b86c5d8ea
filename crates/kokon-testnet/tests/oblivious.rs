//! The VPN path in one process: the client gateway sends every call as
//! Oblivious HTTP through a relay to the proxy's gateway port; jobs are
//! still sealed to their workers inside. Streaming, paid jobs reconcile to
//! the nanoton, and the hostile inputs a relay or gateway can get.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use kokon_money::Nanotons;
use kokon_ohttp::{GatewayKeys, KeyConfig, chunked, encap, media, msg};
use kokon_testnet::pay::PaySpec;
use kokon_testnet::{LocalNet, NetSpec, RELAYED_GATEWAY, WorkerSpec};
use serde_json::Value;

fn relayed(workers: Vec<WorkerSpec>) -> NetSpec {
    let mut spec = NetSpec::new(workers);
    spec.relay_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    spec
}

fn relay_url(net: &LocalNet) -> String {
    let relay = net.relay.as_ref().expect("a relayed network");
    format!("http://{}/gateways/{RELAYED_GATEWAY}", relay.addr)
}

#[tokio::test]
async fn streamed_and_whole_chat_through_the_relay() {
    let net = LocalNet::start(relayed(vec![WorkerSpec::new(echo("m", 2))]))
        .await
        .unwrap();
    let r: Value = chat(&net.base_url(), "m", "through the relay", false)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["choices"][0]["message"]["content"], "through the relay ");
    let mut sse = Sse::new(chat(&net.base_url(), "m", &words(20), true).await);
    let mut text = String::new();
    while let Some(ev) = sse.next().await {
        text.push_str(&content_of(&ev).unwrap_or_default());
    }
    assert_eq!(text, format!("{} ", words(20)));
    let relay = net.relay.as_ref().unwrap();
    // A candidate list and two jobs, each an encapsulated request.
    assert!(net.proxy.metrics().ohttp_requests("chunked") >= 3);
    assert!(relay.metrics().requests("forwarded") >= 3);
    assert_eq!(relay.metrics().requests("gateway_unreachable"), 0);
}

#[tokio::test]
async fn paid_jobs_through_the_relay_reconcile_to_the_nanoton() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = relayed(vec![WorkerSpec::new(echo("m", 0))]);
    let mut pay = PaySpec::dev(tmp.path().to_path_buf());
    pay.claim_every = Duration::from_millis(200);
    spec.payments = Some(pay);
    let net = LocalNet::start(spec).await.unwrap();
    let mut spent: Nanotons = 0;
    for i in 0..6 {
        let r: Value = chat(&net.base_url(), "m", &words(3 + i), false)
            .await
            .json()
            .await
            .unwrap();
        spent += u128::from(r["usage"]["cost_nanoton"].as_u64().expect("a cost"));
    }
    let proxy = net.proxy.pay().unwrap();
    eventually_async(
        "the client's vouchers reach the proxy through the relay",
        || async { proxy.books().await.totals().unwrap().paid == spent },
    )
    .await;
    let t = proxy.books().await.totals().unwrap();
    assert_eq!((t.receipts, t.billed), (6, spent));
}

/// A raw OHTTP client of the relay: the gateway's keys from the relay.
async fn keys(net: &LocalNet) -> KeyConfig {
    let r = reqwest::get(format!("{}/ohttp-keys", relay_url(net)))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.bytes().await.unwrap();
    KeyConfig::decode_list(&body).unwrap()[0]
}

async fn post(net: &LocalNet, media_type: &str, body: Vec<u8>) -> reqwest::Response {
    reqwest::Client::new()
        .post(relay_url(net))
        .header("content-type", media_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_whole_request_from_another_client_gets_a_whole_answer() {
    let net = LocalNet::start(relayed(vec![WorkerSpec::new(echo("m", 0))]))
        .await
        .unwrap();
    let key = keys(&net).await;
    let inner = http::Request::get("/kokon/v1/models")
        .body(bytes::Bytes::new())
        .unwrap();
    let (enc, rkey) = encap::encapsulate_request(&key, &msg::encode_request(&inner)).unwrap();
    let r = post(&net, media::REQUEST, enc).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], media::RESPONSE);
    let (status, _, body) =
        msg::decode_response(&encap::open_response(&rkey, &r.bytes().await.unwrap()).unwrap())
            .unwrap();
    assert_eq!(status, 200);
    let models: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(models["models"][0]["name"], "m", "{models}");
}

#[tokio::test]
async fn bad_input_gets_the_rfcs_errors_and_the_daemons_stay_healthy() {
    let net = LocalNet::start(relayed(vec![WorkerSpec::new(echo("m", 0))]))
        .await
        .unwrap();
    let key = keys(&net).await;
    let inner = msg::encode_request(
        &http::Request::get("/kokon/v1/models")
            .body(bytes::Bytes::new())
            .unwrap(),
    );
    let (good, _) = chunked::encapsulate_request(&key, &inner).unwrap();

    // A key the gateway does not hold: 422 with the ohttp-key problem.
    let other = GatewayKeys::generate().current();
    let foreign = KeyConfig {
        key_id: key.key_id.wrapping_add(7),
        ..other
    };
    let (enc, _) = chunked::encapsulate_request(&foreign, &inner).unwrap();
    let r = post(&net, media::CHUNKED_REQUEST, enc).await;
    assert_eq!(r.status(), 422);
    assert_eq!(r.headers()["content-type"], media::PROBLEM);
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["type"], kokon_ohttp::PROBLEM_OHTTP_KEY);
    // The right key id, another key: it does not decrypt (400).
    let (enc, _) = chunked::encapsulate_request(
        &KeyConfig {
            key_id: key.key_id,
            ..other
        },
        &inner,
    )
    .unwrap();
    assert_eq!(post(&net, media::CHUNKED_REQUEST, enc).await.status(), 400);
    // Truncated encapsulations: 400.
    for cut in [0, 3, 7, 20, 39, good.len() - 1] {
        let r = post(&net, media::CHUNKED_REQUEST, good[..cut].to_vec()).await;
        assert_eq!(r.status(), 400, "cut at {cut}");
    }
    // A chunked encapsulation sent as a whole one: 400.
    assert_eq!(post(&net, media::REQUEST, good.clone()).await.status(), 400);
    // Unknown media type: 415 at the relay, before the gateway.
    assert_eq!(
        post(&net, "application/json", good.clone()).await.status(),
        415
    );
    // Oversize: 413 at the relay.
    let huge = vec![0u8; kokon_proto::MAX_JOB_PAYLOAD + 128 * 1024];
    assert_eq!(post(&net, media::CHUNKED_REQUEST, huge).await.status(), 413);
    // Not binary HTTP inside a valid encapsulation: 400.
    let (enc, _) = chunked::encapsulate_request(&key, b"\x05not bhttp").unwrap();
    assert_eq!(post(&net, media::CHUNKED_REQUEST, enc).await.status(), 400);
    // An unknown gateway name at the relay: 404.
    let r = reqwest::Client::new()
        .post(format!(
            "http://{}/gateways/elsewhere",
            net.relay.as_ref().unwrap().addr
        ))
        .header("content-type", media::CHUNKED_REQUEST)
        .body(good.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Both daemons still serve, and the refusals were counted.
    let r = post(&net, media::CHUNKED_REQUEST, good).await;
    assert_eq!(r.status(), 200);
    let m = net.proxy.metrics();
    assert!(m.ohttp_requests("unknown_key") >= 1);
    assert!(
        m.ohttp_requests("truncated")
            + m.ohttp_requests("decrypt")
            + m.ohttp_requests("unfinished")
            >= 6
    );
    let relay = net.relay.as_ref().unwrap().metrics();
    assert!(relay.requests("unsupported_media_type") >= 1);
    assert!(relay.requests("request_body") >= 1);
    let r: Value = chat(&net.base_url(), "m", "still here", false)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["choices"][0]["message"]["content"], "still here ");
}

#[tokio::test]
async fn the_relay_limits_each_client_address() {
    let mut spec = relayed(vec![WorkerSpec::new(echo("m", 0))]);
    spec.relay_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    let net = LocalNet::start(spec).await.unwrap();
    // The default rate is 20 requests a second per address: a burst of 60
    // key fetches from one address sees 429s, with Retry-After.
    let url = format!("{}/ohttp-keys", relay_url(&net));
    let client = reqwest::Client::new();
    let mut limited = 0;
    for _ in 0..60 {
        let r = client.get(&url).send().await.unwrap();
        if r.status() == 429 {
            assert_eq!(r.headers()["retry-after"], "1");
            limited += 1;
        }
    }
    assert!(limited >= 30, "{limited} of 60 refused");
    assert!(
        net.relay
            .as_ref()
            .unwrap()
            .metrics()
            .requests("client_rate")
            >= 30
    );
}

fn client_tls() -> kokon_tls::RaTls {
    let policy = std::sync::Arc::new(
        kokon_attest::Registry::local_test_network()
            .policy()
            .unwrap(),
    );
    kokon_tls::node::simulated_node(
        kokon_attest::Role::Client,
        None,
        policy,
        [0; 32],
        &Default::default(),
    )
    .unwrap()
}

#[tokio::test]
async fn the_client_uses_only_keys_an_attested_proxy_signed() {
    use base64::Engine as _;
    use kokon_gateway::candidates::verify_gateway_keys;
    use kokon_ohttp::document::{KeyDocument, signed_message};
    let net = LocalNet::start(relayed(vec![WorkerSpec::new(echo("m", 0))]))
        .await
        .unwrap();
    let body = reqwest::get(format!("{}/keys", relay_url(&net)))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let doc = KeyDocument::parse(&body).unwrap();
    let policy = net.proxy.tls().policy();
    assert_eq!(
        verify_gateway_keys(&doc, &policy).unwrap(),
        vec![keys(&net).await]
    );

    // A relay that swaps in its own keys: the signature no longer covers them.
    let own = GatewayKeys::generate();
    let b64 = base64::engine::general_purpose::STANDARD;
    let swapped = KeyDocument {
        keys: b64.encode(own.encoded()),
        ..doc.clone()
    };
    let err = verify_gateway_keys(&swapped, &policy).unwrap_err();
    assert!(err.contains("signature"), "{err}");
    // Its keys signed by an attested key that is not a proxy's (a client's).
    let client = client_tls();
    let (sig, cert) = client
        .identity()
        .sign(&signed_message(&own.encoded()))
        .unwrap();
    let err =
        verify_gateway_keys(&KeyDocument::new(&own.encoded(), &cert, &sig), &policy).unwrap_err();
    assert!(err.contains("refused"), "{err}");
    // The proxy's own document under a registry that no longer lists its image.
    let mut registry = kokon_attest::Registry::local_test_network();
    registry.proxy_images = vec!["00".repeat(32)];
    let strict = registry.policy().unwrap();
    assert!(verify_gateway_keys(&doc, &strict).is_err());
}

/// A relay that serves its own keys as the gateway's: the client's job is
/// never encapsulated to them, so nothing reaches the relay's POST.
#[tokio::test]
async fn a_relay_that_swaps_the_keys_gets_no_request() {
    use base64::Engine as _;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let net = LocalNet::start(relayed(vec![WorkerSpec::new(echo("m", 0))]))
        .await
        .unwrap();
    let real = reqwest::get(format!("{}/keys", relay_url(&net)))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let mut doc = kokon_ohttp::document::KeyDocument::parse(&real).unwrap();
    doc.keys = base64::engine::general_purpose::STANDARD.encode(GatewayKeys::generate().encoded());
    let posts = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = posts.clone();
    let app = axum::Router::new()
        .route(
            "/gateways/x/keys",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc) }
            }),
        )
        .route(
            "/gateways/x",
            axum::routing::post(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                async { "" }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hostile = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut cfg =
        kokon_gateway::GatewayConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), net.proxy.addr);
    cfg.relay = Some(format!("http://{hostile}/gateways/x"));
    let gw = kokon_gateway::start_paying(
        cfg,
        client_tls(),
        None,
        None,
        net.registry(),
        Default::default(),
    )
    .await
    .unwrap();
    let r = chat(
        &format!("http://{}/v1", gw.addr),
        "m",
        "secret words",
        false,
    )
    .await;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not trusted"),
        "{body}"
    );
    assert_eq!(
        posts.load(Ordering::SeqCst),
        0,
        "nothing was sent to the swapped keys"
    );
}

/// A hostile client that reaches the paid proxy only through the relay and
/// sends a job with no payment authorisation: it gets `payment_required`
/// inside the encapsulated answer; nothing is billed, no worker runs it.
#[tokio::test]
async fn an_unpaid_job_through_the_relay_is_refused_and_costs_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = relayed(vec![WorkerSpec::new(echo("m", 0))]);
    spec.payments = Some(PaySpec::dev(tmp.path().to_path_buf()));
    let net = LocalNet::start(spec).await.unwrap();
    let header = kokon_proto::JobHeader {
        request_id: "hostile-unpaid-1".into(),
        model: "m".into(),
        kind: kokon_proto::JobKind::Chat,
        max_price_milli: None,
        budget: None,
        payment: None,
        credit: None,
        sealed: false,
    };
    let payload = serde_json::json!({
        "model": "m",
        "input": {"chat": [{"role": "user", "content": "free words please"}]},
        "params": {"max_tokens": 8},
    });
    let mut inner = http::Request::post("/kokon/v1/job")
        .body(bytes::Bytes::from(serde_json::to_vec(&payload).unwrap()))
        .unwrap();
    header.write(inner.headers_mut());
    let (enc, key) =
        chunked::encapsulate_request(&keys(&net).await, &msg::encode_request(&inner)).unwrap();
    let r = post(&net, media::CHUNKED_REQUEST, enc).await;
    assert_eq!(r.status(), 200);
    let mut opener = chunked::ResponseOpener::new(key);
    let mut reader = msg::StreamReader::default();
    let mut frames = kokon_proto::FrameDecoder::new();
    let mut plain = opener.push(&r.bytes().await.unwrap()).unwrap();
    plain.push(opener.finish().unwrap());
    for p in plain.iter().flat_map(|c| reader.push(c).unwrap()) {
        if let msg::Part::Data(d) = p {
            frames.push(&d);
        }
    }
    match frames.next_frame().unwrap() {
        Some(kokon_proto::Frame::Error(e)) => {
            assert_eq!(e.code, kokon_proto::ErrorCode::PaymentRequired, "{e:?}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let t = proxy_totals(&net).await;
    assert_eq!((t.receipts, t.billed, t.paid), (0, 0, 0), "nothing billed");
    assert_eq!(
        kokon_worker::WorkerStats::get(&net.workers[0].stats.jobs_completed),
        0,
        "no worker ran it"
    );
}

/// A proxy that hands its relayed clients a key other than the one it
/// published in the registry (a key for some clients alone would tell their
/// requests apart): the client never encapsulates to it — nothing is
/// forwarded or run — and uses the key once it is the published one.
#[tokio::test]
async fn a_key_the_proxy_did_not_publish_is_never_used() {
    // Unpaid: the client gateway calls the proxy only for jobs, so it has
    // fetched no key yet when the registry changes.
    let net = LocalNet::start(relayed(vec![WorkerSpec::new(echo("m", 0))]))
        .await
        .unwrap();
    let served = reqwest::get(format!("{}/ohttp-keys", relay_url(&net)))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let publisher = net.publisher().expect("a relayed network publishes");
    // The registry lists other keys than the ones the gateway signs and serves.
    publisher
        .ohttp(GatewayKeys::generate().encoded())
        .await
        .unwrap();
    let relay = net.relay.as_ref().unwrap();
    let r = chat(&net.base_url(), "m", "tell nobody this", false).await;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("no proxy published"), "{msg}");
    assert_eq!(
        relay.metrics().bytes("up"),
        0,
        "no encapsulated request left the client (only key fetches, bodiless)"
    );
    assert_eq!(
        kokon_worker::WorkerStats::get(&net.workers[0].stats.jobs_completed),
        0,
        "no worker ran anything"
    );
    // Once the registry lists the served keys, the client uses them.
    publisher.ohttp(served).await.unwrap();
    let r = chat(&net.base_url(), "m", "now it may go", false).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    assert!(relay.metrics().bytes("up") > 0);
}

/// Rotations publish before they hand out: sampled throughout several
/// rotations, the key the gateway serves first is always in the record the
/// registry holds (read after it), the record lists the new key with the
/// previous one, and a client keeps working across them.
#[tokio::test]
async fn each_rotation_is_published_before_its_key_is_handed_out() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = relayed(vec![WorkerSpec::new(echo("m", 0))]);
    spec.ohttp_key_rotation = Some(Duration::from_millis(400));
    // Each publication takes 150 ms, as a chain's would take longer: a key
    // handed out before it is published would be seen.
    let mut pay = PaySpec::dev(tmp.path().to_path_buf());
    pay.ledger_delay = Some(Duration::from_millis(150));
    spec.payments = Some(pay);
    let net = LocalNet::start(spec).await.unwrap();
    // Read without the delay: what the registry holds at that instant.
    let registry = net.ledger().unwrap().settlement();
    let first = keys(&net).await;
    let mut seen = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    while tokio::time::Instant::now() < deadline {
        let served = keys(&net).await;
        let records = registry.published_keys().await.unwrap();
        assert_eq!(records.len(), 1, "one proxy, one record");
        assert!(
            kokon_ohttp::keys::is_published(&records[0].1.ohttp, &served),
            "served key {} before the registry held it",
            served.key_id
        );
        seen.insert(served.key_id);
        // Within the relay's 20 requests a second per address.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen.len() >= 4, "rotated several times: {seen:?}");
    let record = &registry.published_keys().await.unwrap()[0].1;
    let listed = KeyConfig::decode_list(&record.ohttp).unwrap();
    assert_eq!(listed.len(), 2, "the new key and the previous one");
    assert!(!listed.contains(&first), "the first key is long withdrawn");
    let r = chat(&net.base_url(), "m", "across rotations", false).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
}
