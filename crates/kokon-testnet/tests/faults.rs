//! The shells under faults, on real loopback links: a frozen proxy, a
//! restarted proxy, drains of a worker, of the proxy and of the whole
//! network during streams, a slow ledger, and the proxy's per-peer bounds.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use kokon_attest::Role;
use kokon_gateway::GatewayConfig;
use kokon_proxy::ProxyConfig;
use kokon_testnet::pay::PaySpec;
use kokon_testnet::{LocalNet, NetSpec, WorkerSpec};
use kokon_worker::{Worker, WorkerConfig};
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

fn policy() -> Arc<kokon_attest::Policy> {
    Arc::new(
        kokon_attest::Registry::local_test_network()
            .policy()
            .unwrap(),
    )
}

fn node(role: Role) -> kokon_tls::RaTls {
    kokon_tls::node::simulated_node(role, None, policy(), [0; 32], &Default::default()).unwrap()
}

async fn gateway_to(proxy: std::net::SocketAddr) -> String {
    let cfg = GatewayConfig::new("127.0.0.1:0".parse().unwrap(), proxy);
    let h = kokon_gateway::start(cfg, node(Role::Client), Default::default())
        .await
        .unwrap();
    format!("http://{}/v1", h.addr)
}

fn worker_to(proxy: std::net::SocketAddr, model: &str, ms: u64) -> CancellationToken {
    let engine = echo(model, ms);
    let mut params = kokon_tls::node::NodeParams::simulated(Role::Worker, None, [0; 32]);
    kokon_worker::declare(&mut params, engine.as_ref());
    let keys = kokon_worker::seal_to(&mut params);
    let tls = kokon_tls::node::start_node(params, policy(), &Default::default()).unwrap();
    let mut cfg = WorkerConfig::new(proxy);
    cfg.backoff_max = Duration::from_millis(300);
    let stop = CancellationToken::new();
    tokio::spawn(
        Worker::new(cfg, engine, tls)
            .with_keys(keys)
            .serve(stop.clone()),
    );
    stop
}

/// Reads an SSE response to its end: (text, ended with [DONE]).
async fn read_stream(resp: reqwest::Response) -> (String, bool) {
    let mut sse = Sse::new(resp);
    let (mut text, mut done) = (String::new(), false);
    while let Some(ev) = sse.next().await {
        done |= ev == "[DONE]";
        text.push_str(&content_of(&ev).unwrap_or_default());
    }
    (text, done)
}

fn expected(n: usize) -> String {
    words(n).split(' ').map(|w| format!("{w} ")).collect()
}

#[tokio::test]
async fn a_frozen_proxy_fails_requests_within_seconds_without_queueing() {
    // A process stopped with SIGSTOP: the kernel still accepts its
    // connections, nothing ever answers.
    let frozen = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = frozen.local_addr().unwrap();
    let _held = tokio::spawn(async move {
        let mut conns = vec![];
        while let Ok((c, _)) = frozen.accept().await {
            conns.push(c);
        }
    });
    let base = gateway_to(addr).await;
    let started = Instant::now();
    let calls = (0..8).map(|_| chat(&base, "m", "hi", false));
    let answers = futures::future::join_all(calls).await;
    for r in &answers {
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "1");
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "8 concurrent requests took {took:?}"
    );
    // Later requests do not wait longer than the first ones.
    let again = Instant::now();
    assert_eq!(chat(&base, "m", "hi", false).await.status(), 503);
    assert!(
        again.elapsed() < Duration::from_secs(4),
        "{:?}",
        again.elapsed()
    );
}

#[tokio::test]
async fn a_restarted_proxy_answers_503_not_404_while_workers_relink() {
    let model = kokon_models::DEFAULT_MODEL;
    let first_stop = CancellationToken::new();
    let any = "127.0.0.1:0".parse().unwrap();
    let first = kokon_proxy::start(ProxyConfig::new(any), node(Role::Proxy), first_stop.clone())
        .await
        .unwrap();
    let addr = first.addr;
    let _worker = worker_to(addr, model, 0);
    let base = gateway_to(addr).await;
    eventually("worker linked", || first.worker_count() == 1).await;
    assert_eq!(chat(&base, model, "one", false).await.status(), 200);

    first_stop.cancel();
    first.drained().await;
    let second = kokon_proxy::start(
        ProxyConfig::new(addr),
        node(Role::Proxy),
        Default::default(),
    )
    .await
    .unwrap();
    let mut statuses = vec![];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = chat(&base, model, "again", false).await.status().as_u16();
        statuses.push(s);
        if s == 200 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(statuses.last(), Some(&200), "{statuses:?}");
    assert!(
        !statuses.contains(&404),
        "a listed model was called unknown: {statuses:?}"
    );
    assert!(second.worker_count() == 1);
    // A name nobody serves or lists is still unknown.
    assert_eq!(
        chat(&base, "never-heard-of-it", "x", false).await.status(),
        404
    );
}

#[tokio::test]
async fn streams_complete_when_their_worker_drains() {
    let workers = (0..2).map(|_| WorkerSpec::new(echo("m", 20))).collect();
    let net = LocalNet::start(NetSpec::new(workers)).await.unwrap();
    let streams: Vec<_> = (0..4)
        .map(|_| {
            let base = net.base_url();
            tokio::spawn(async move { read_stream(chat(&base, "m", &words(40), true).await).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    net.workers[0].drain();
    for s in streams {
        let (text, done) = s.await.unwrap();
        assert!(done, "a stream was cut");
        assert_eq!(text, expected(40));
    }
    // The drained worker stops once its jobs are done; the other one serves.
    eventually("worker 0 stopped", || net.workers[0].is_finished()).await;
    let r: Value = chat(&net.base_url(), "m", "still here", false)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["choices"][0]["message"]["content"], "still here ");
}

#[tokio::test]
async fn streams_complete_when_the_proxy_drains() {
    let stop = CancellationToken::new();
    let any = "127.0.0.1:0".parse().unwrap();
    let proxy = kokon_proxy::start(ProxyConfig::new(any), node(Role::Proxy), stop.clone())
        .await
        .unwrap();
    let _worker = worker_to(proxy.addr, "m", 20);
    let base = gateway_to(proxy.addr).await;
    eventually("worker linked", || proxy.worker_count() == 1).await;
    let streams: Vec<_> = (0..3)
        .map(|_| {
            let base = base.clone();
            tokio::spawn(async move { read_stream(chat(&base, "m", &words(40), true).await).await })
        })
        .collect();
    eventually("jobs running", || proxy.active_jobs() == 3).await;
    stop.cancel();
    for s in streams {
        let (text, done) = s.await.unwrap();
        assert!(done, "a stream was cut by the proxy's drain");
        assert_eq!(text, expected(40));
    }
    tokio::time::timeout(Duration::from_secs(5), proxy.drained())
        .await
        .expect("the proxy did not finish draining");
    let after = Instant::now();
    assert_eq!(chat(&base, "m", "late", false).await.status(), 503);
    assert!(after.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn streams_complete_when_the_whole_network_shuts_down() {
    let net = LocalNet::start(NetSpec::new(vec![WorkerSpec::new(echo("m", 20))]))
        .await
        .unwrap();
    let base = net.base_url();
    let stream =
        tokio::spawn(async move { read_stream(chat(&base, "m", &words(30), true).await).await });
    eventually("job running", || net.proxy.active_jobs() == 1).await;
    net.shutdown();
    let (text, done) = stream.await.unwrap();
    assert!(done);
    assert_eq!(text, expected(30));
}

#[tokio::test]
async fn a_drained_network_finishes_its_streams_before_it_stops() {
    // What `kokon up` does on Ctrl-C.
    let net = LocalNet::start(NetSpec::new(vec![WorkerSpec::new(echo("m", 20))]))
        .await
        .unwrap();
    let base = net.base_url();
    let stream =
        tokio::spawn(async move { read_stream(chat(&base, "m", &words(30), true).await).await });
    eventually("job running", || net.proxy.active_jobs() == 1).await;
    assert!(
        net.drain(Duration::from_secs(10)).await,
        "drained within the grace"
    );
    // The drain returned after the last byte left the gateway; the client task may still
    // be reading it. A cut stream would show as a missing `[DONE]` or missing words.
    let (text, done) = tokio::time::timeout(Duration::from_secs(2), stream)
        .await
        .expect("the stream ends once the drain has returned")
        .unwrap();
    assert!(done, "the drain cut the stream before [DONE]");
    assert_eq!(text, expected(30));
    assert!(
        net.workers.iter().all(|w| w.is_finished()),
        "every worker stopped"
    );
}

#[tokio::test]
async fn links_beyond_the_per_address_cap_are_refused_before_tls() {
    let mut cfg = ProxyConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.max_links_per_address = 3;
    let proxy = kokon_proxy::start(cfg, node(Role::Proxy), Default::default())
        .await
        .unwrap();
    let mut conns = vec![];
    for _ in 0..5 {
        conns.push(tokio::net::TcpStream::connect(proxy.addr).await.unwrap());
    }
    let mut closed = 0;
    for c in conns.iter_mut() {
        let mut b = [0u8; 16];
        match tokio::time::timeout(Duration::from_millis(500), c.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => closed += 1,
            _ => {}
        }
    }
    assert_eq!(closed, 2, "exactly the links beyond the cap are closed");
    assert_eq!(proxy.metrics().links_refused("per_address_limit"), 2);
}

#[tokio::test]
async fn model_names_clients_make_up_never_become_metric_labels() {
    let net = LocalNet::start(NetSpec::new(vec![WorkerSpec::new(echo("m", 0))]))
        .await
        .unwrap();
    let made_up: Vec<String> = (0..20)
        .map(|i| format!("made-up-{i}-{}", i * 7919))
        .collect();
    for name in &made_up {
        assert_eq!(chat(&net.base_url(), name, "x", false).await.status(), 404);
    }
    assert_eq!(chat(&net.base_url(), "m", "x", false).await.status(), 200);
    let text = net.proxy.metrics().encode();
    for name in &made_up {
        assert!(
            !text.contains(name.as_str()),
            "{name} became a label:\n{text}"
        );
    }
    assert!(text.contains(r#"model="other""#), "{text}");
    assert_eq!(
        net.proxy
            .metrics()
            .candidate_lists("made-up-0-0", "model_not_found"),
        20,
        "each refusal counted, under `other`"
    );
    assert!(text.contains(r#"model="m""#), "{text}");
}

#[tokio::test]
async fn a_slow_ledger_does_not_slow_admission_or_billing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = NetSpec::new(vec![WorkerSpec::new(echo("m", 0))]);
    let mut pay = PaySpec::dev(tmp.path().to_path_buf());
    pay.claim_every = Duration::from_millis(100);
    pay.ledger_delay = Some(Duration::from_secs(5));
    spec.payments = Some(pay);
    let net = LocalNet::start(spec).await.unwrap();
    // The first job may read the channel from the ledger (once).
    assert_eq!(
        chat(&net.base_url(), "m", "warm up", false).await.status(),
        200
    );
    // From here on claims run all the time, each taking seconds.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut slowest = Duration::ZERO;
    for i in 0..6 {
        let t = Instant::now();
        let r: Value = chat(&net.base_url(), "m", &format!("job {i}"), false)
            .await
            .json()
            .await
            .unwrap();
        assert!(r["usage"]["cost_nanoton"].as_u64().unwrap() > 0, "{r}");
        slowest = slowest.max(t.elapsed());
    }
    assert!(
        slowest < Duration::from_secs(2),
        "a paid job took {slowest:?} behind the ledger"
    );
    let billed = proxy_totals(&net).await.receipts;
    assert_eq!(billed, 7, "every job billed");
}

/// A client that sends the proxy calls only a proxy sends (to a worker):
/// each is refused with 404, and nothing about the workers or the routing
/// changes (the worker stays linked, jobs still run).
#[tokio::test]
async fn a_client_sending_worker_calls_to_the_proxy_is_refused_and_changes_nothing() {
    let net = LocalNet::start(NetSpec::new(vec![WorkerSpec::new(echo("m", 0))]))
        .await
        .unwrap();
    let (tls, _) = node(Role::Client)
        .connect(net.proxy.addr, &[Role::Proxy])
        .await
        .unwrap();
    let (client, conn) = kokon_link::dial(tls, kokon_link::LinkLimits::CLIENT)
        .await
        .unwrap();
    tokio::spawn(conn);
    let why = kokon_proto::JobError::new(kokon_proto::ErrorCode::BadRequest, "go away");
    let refused = client.refused(&why).await.unwrap_err();
    assert!(refused.message.contains("refused"), "{}", refused.message);
    let announce = client.announce().await.unwrap_err();
    assert!(
        announce.message.contains("announce"),
        "{}",
        announce.message
    );
    assert_eq!(net.proxy.worker_count(), 1, "the worker is still linked");
    assert_eq!(net.proxy.metrics().links_refused("model_not_allowed"), 0);
    let r: Value = chat(&net.base_url(), "m", "still served", false)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["choices"][0]["message"]["content"], "still served ");
}
