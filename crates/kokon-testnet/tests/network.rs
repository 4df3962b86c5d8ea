//! The in-process network: gateway, proxy and several workers over real
//! loopback RA-TLS links, driven through the gateway's HTTP API.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use kokon_attest::cert::{CertParts, build_certificate};
use kokon_attest::registry::simulated_label;
use kokon_attest::{
    Claims, Clock, Evidence, EvidenceKind, Identity, Role, SimulatedQuote, SystemClock, sha256,
};
use kokon_testnet::{LocalNet, NetSpec, WorkerSpec};
use kokon_tls::{IdentityStore, RaTls};
use kokon_worker::{Worker, WorkerConfig, WorkerStats};
use serde_json::Value;

fn spec(workers: Vec<WorkerSpec>) -> NetSpec {
    NetSpec::new(workers)
}

/// Holds `n` streaming jobs open; then one more is refused `busy` (503).
/// Returns the held streams.
async fn assert_busy_after(net: &LocalNet, n: usize) -> Vec<Sse> {
    let mut holders = Vec::new();
    for _ in 0..n {
        let mut sse = Sse::new(chat(&net.base_url(), "m", &words(50), true).await);
        sse.next().await.unwrap();
        holders.push(sse);
    }
    let r = chat(&net.base_url(), "m", "one more", false).await;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "busy");
    holders
}

fn completed(s: &WorkerStats) -> u64 {
    WorkerStats::get(&s.jobs_completed)
}

#[tokio::test]
async fn routes_by_model_and_lists_models() {
    let net = LocalNet::start(spec(vec![
        WorkerSpec::new(echo("alpha", 0)),
        WorkerSpec::new(echo("beta", 0)),
        WorkerSpec::new(echo("beta", 0)),
    ]))
    .await
    .unwrap();
    let models: Value = reqwest::get(format!("{}/models", net.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["alpha", "beta"]);

    for _ in 0..4 {
        let r: Value = chat(&net.base_url(), "beta", "hello there", false)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(r["choices"][0]["message"]["content"], "hello there ");
        assert_eq!(r["usage"]["completion_tokens"], 2);
    }
    let done: Vec<u64> = net.workers.iter().map(|w| completed(&w.stats)).collect();
    assert_eq!(
        done,
        vec![0, 2, 2],
        "only beta workers, spread between them"
    );

    let r = chat(&net.base_url(), "gamma", "hi", false).await;
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "model_not_found");
}

#[tokio::test]
async fn spreads_load_across_equal_workers() {
    let workers = (0..3)
        .map(|_| WorkerSpec {
            max_jobs: 10,
            ..WorkerSpec::new(echo("m", 5))
        })
        .collect();
    let net = LocalNet::start(spec(workers)).await.unwrap();
    let base = net.base_url();
    let reqs = (0..30).map(|_| chat(&base, "m", "a b c d", false));
    for r in futures::future::join_all(reqs).await {
        assert_eq!(r.status(), 200);
    }
    let counts: Vec<u64> = net.workers.iter().map(|w| completed(&w.stats)).collect();
    assert_eq!(counts.iter().sum::<u64>(), 30);
    assert!(counts.iter().all(|&c| c >= 6), "uneven spread: {counts:?}");
}

#[tokio::test]
async fn retries_on_another_worker_when_one_dies_before_the_first_byte() {
    // The cheaper worker is picked first; it stalls before its first token.
    let mut slow = WorkerSpec::new(echo("m", 10_000));
    slow.price_milli = 500;
    let net = LocalNet::start(spec(vec![
        slow,
        WorkerSpec::new(echo("m", 0)),
        WorkerSpec::new(echo("m", 0)),
    ]))
    .await
    .unwrap();
    let base = net.base_url();
    let req = tokio::spawn(async move { chat(&base, "m", "saved by retry", false).await });
    eventually("job reaches the slow worker", || {
        WorkerStats::get(&net.workers[0].stats.jobs_started) == 1
    })
    .await;
    net.workers[0].kill();
    let r: Value = req.await.unwrap().json().await.unwrap();
    assert_eq!(r["choices"][0]["message"]["content"], "saved by retry ");
    let survivors = completed(&net.workers[1].stats) + completed(&net.workers[2].stats);
    assert_eq!(survivors, 1);
    assert_eq!(net.proxy.metrics().retries(), 1);
}

#[tokio::test]
async fn a_worker_failing_mid_stream_ends_the_stream_with_a_typed_error() {
    let net = LocalNet::start(spec(
        (0..3).map(|_| WorkerSpec::new(echo("m", 50))).collect(),
    ))
    .await
    .unwrap();
    let mut sse = Sse::new(chat(&net.base_url(), "m", &words(200), true).await);
    let mut got = 0;
    while got < 3 {
        if content_of(&sse.next().await.unwrap()).is_some_and(|c| !c.is_empty()) {
            got += 1;
        }
    }
    let busy = running(&net);
    net.workers[busy].kill();
    let killed = Instant::now();
    let mut last = String::new();
    while let Some(ev) = sse.next().await {
        last = ev;
    }
    assert!(
        killed.elapsed() < Duration::from_secs(2),
        "error took {:?}",
        killed.elapsed()
    );
    let err: Value = serde_json::from_str(&last).unwrap();
    assert_eq!(err["error"]["code"], "worker_failed_mid_stream", "{last}");
    let started: u64 = net
        .workers
        .iter()
        .map(|w| WorkerStats::get(&w.stats.jobs_started))
        .sum();
    assert_eq!(started, 1, "no retry after output started");
}

/// Index of the one worker that has started a job.
fn running(net: &LocalNet) -> usize {
    let started: Vec<u64> = net
        .workers
        .iter()
        .map(|w| WorkerStats::get(&w.stats.jobs_started))
        .collect();
    assert_eq!(
        started.iter().sum::<u64>(),
        1,
        "exactly one job running: {started:?}"
    );
    started.iter().position(|&n| n == 1).unwrap()
}

#[tokio::test]
async fn a_client_going_away_cancels_the_job_on_the_worker() {
    let net = LocalNet::start(spec(
        (0..3).map(|_| WorkerSpec::new(echo("m", 30))).collect(),
    ))
    .await
    .unwrap();
    let mut sse = Sse::new(chat(&net.base_url(), "m", &words(500), true).await);
    loop {
        let ev = sse.next().await.expect("stream ended before any content");
        if content_of(&ev).is_some_and(|c| !c.is_empty()) {
            break;
        }
    }
    drop(sse);
    let stats = net.workers[running(&net)].stats.clone();
    eventually("worker sees the cancellation", || {
        WorkerStats::get(&stats.jobs_cancelled) == 1
    })
    .await;
    assert_eq!(completed(&stats), 0);
}

#[tokio::test]
async fn says_busy_when_every_worker_is_full() {
    let one_slot = || WorkerSpec {
        max_jobs: 1,
        ..WorkerSpec::new(echo("m", 200))
    };
    let net = LocalNet::start(spec(vec![one_slot(), one_slot(), one_slot()]))
        .await
        .unwrap();
    let _holders = assert_busy_after(&net, 3).await;
}

/// A worker whose evidence binds other claims than its certificate carries.
fn worker_with_bad_binding(policy: Arc<kokon_attest::Policy>) -> RaTls {
    let key = rcgen_key();
    let spki = key.1.clone();
    let now = SystemClock.now_unix();
    let claims = Claims {
        role: Role::Worker,
        protocol_version: 1,
        tls_key_sha256: hex(&sha256(&spki)),
        issued_at: now,
        config_sha256: hex(&[0; 32]),
        models: vec![],
        hpke_key: None,
        engine: Some(kokon_proto::EngineDecl::local(
            kokon_proto::EngineKind::Echo,
        )),
    };
    let mut other = claims.clone();
    other.config_sha256 = hex(&[1; 32]);
    let quote = SimulatedQuote {
        td: kokon_attest::TdConfig::simulated(),
        measurements: SimulatedQuote::measurements_for(&simulated_label(Role::Worker)),
        report_data: kokon_attest::evidence::binding(&spki, &other.to_bytes()),
    };
    let parts = CertParts {
        claims: claims.to_bytes(),
        evidence: Evidence {
            kind: EvidenceKind::Simulated,
            quote: quote.to_bytes(),
        }
        .to_bytes(),
        not_before: now as i64 - 60,
        not_after: now as i64 + 3600,
        claims_critical: true,
        evidence_critical: true,
        extra: vec![],
    };
    let cert_der = build_certificate(&key.0, &parts, Role::Worker).unwrap();
    let id = Identity {
        cert_der,
        key_pkcs8: key.0.serialize_der(),
        claims,
        not_after: now + 3600,
    };
    RaTls::new(
        IdentityStore::new(&id).unwrap(),
        Arc::new(kokon_attest::SimulatedSource::new(&simulated_label(
            Role::Worker,
        ))),
        policy,
        Arc::new(SystemClock),
    )
}

fn rcgen_key() -> (rcgen::KeyPair, Vec<u8>) {
    use rcgen::PublicKeyData;
    let k = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let spki = k.subject_public_key_info();
    (k, spki)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test]
async fn refuses_workers_with_a_bad_binding_or_an_unlisted_image() {
    let mut rogue = WorkerSpec::new(echo("m", 0));
    rogue.image_label = Some("kokon-worker/rogue".into());
    let net = LocalNet::start(spec(vec![rogue, WorkerSpec::new(echo("honest", 0))]))
        .await
        .unwrap();
    let policy = Arc::new(net_policy());
    let bad = Worker::new(
        WorkerConfig::new(net.proxy.addr),
        echo("m", 0),
        worker_with_bad_binding(policy),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(bad.serve(stop.clone()));
    let m = net.proxy.metrics();
    eventually("both refused, each for its own reason", || {
        m.links_refused("image_not_allowed") >= 1 && m.links_refused("binding_mismatch") >= 1
    })
    .await;
    assert_eq!(net.proxy.worker_count(), 1, "only the honest worker joined");
    // The rogue worker learns why, and says so (see its log line).
    let rogue = &net.workers[0].stats;
    eventually("the rogue worker saw the refusal", || {
        WorkerStats::get(&rogue.links_refused_by_proxy) >= 1
    })
    .await;
    let ok = chat(&net.base_url(), "honest", "fine", false).await;
    assert_eq!(ok.status(), 200);
    let r = chat(&net.base_url(), "m", "anyone?", false).await;
    assert_eq!(r.status(), 404);
    stop.cancel();
}

fn net_policy() -> kokon_attest::Policy {
    kokon_attest::Registry::local_test_network()
        .policy()
        .unwrap()
}

#[tokio::test]
async fn killing_a_worker_under_load_fails_only_its_own_streams_quickly() {
    let workers = (0..3)
        .map(|_| WorkerSpec {
            max_jobs: 16,
            ..WorkerSpec::new(echo("m", 20))
        })
        .collect();
    let net = Arc::new(LocalNet::start(spec(workers)).await.unwrap());
    let base = net.base_url();
    let mut clients = Vec::new();
    for i in 0..12 {
        let base = base.clone();
        clients.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(i * 10)).await;
            let mut sse = Sse::new(chat(&base, "m", &words(60), true).await);
            let mut last = String::new();
            while let Some(ev) = sse.next().await {
                last = ev;
            }
            (last, Instant::now())
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    net.workers[1].kill();
    let killed = Instant::now();
    // Requests started after the kill all succeed on the survivors.
    for _ in 0..6 {
        let r: Value = chat(&base, "m", "after the kill", false)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(r["choices"][0]["message"]["content"], "after the kill ");
    }
    let (mut ok, mut failed) = (0, 0);
    for c in clients {
        let (last, at) = c.await.unwrap();
        if last == "[DONE]" {
            ok += 1;
        } else {
            let err: Value = serde_json::from_str(&last).unwrap();
            assert_eq!(err["error"]["code"], "worker_failed_mid_stream");
            assert!(at.duration_since(killed) < Duration::from_secs(2));
            failed += 1;
        }
    }
    assert_eq!(ok + failed, 12);
    assert!(failed >= 1 && ok >= 6, "ok={ok} failed={failed}");
}

#[tokio::test]
async fn a_worker_can_forward_to_an_openai_compatible_upstream() {
    use kokon_engine::upstream::{UpstreamConfig, UpstreamEngine};
    // The upstream is a real OpenAI-compatible server: another Kokon gateway.
    let upstream = LocalNet::start(spec(vec![WorkerSpec::new(echo("up-model", 0))]))
        .await
        .unwrap();
    let cfg = UpstreamConfig {
        base_url: upstream.base_url(),
        api_key: None,
        models: vec![],
        context_len: 4096,
    };
    let discovered = UpstreamEngine::new(cfg.clone())
        .unwrap()
        .discover_models()
        .await
        .unwrap();
    assert_eq!(discovered, vec!["up-model"]);
    let engine = Arc::new(
        UpstreamEngine::new(UpstreamConfig {
            models: discovered,
            ..cfg
        })
        .unwrap(),
    );
    let net = LocalNet::start(spec(vec![WorkerSpec::new(engine)]))
        .await
        .unwrap();

    let r: Value = chat(&net.base_url(), "up-model", "through two networks", false)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        r["choices"][0]["message"]["content"],
        "through two networks "
    );
    assert_eq!(
        r["usage"]["completion_tokens"], 3,
        "usage comes from the upstream"
    );
    let mut sse = Sse::new(chat(&net.base_url(), "up-model", "streamed too", true).await);
    let (mut text, mut events) = (String::new(), vec![]);
    while let Some(ev) = sse.next().await {
        text.push_str(&content_of(&ev).unwrap_or_default());
        events.push(ev);
    }
    assert_eq!(text, "streamed too ");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(completed(&upstream.workers[0].stats), 2);

    // Both gateways say, from the certificates they verified themselves,
    // what runs each model and where an upstream engine sends the jobs.
    let origin = kokon_proto::engine::origin_of(&upstream.base_url()).unwrap();
    let described = |base: String| async move {
        let r: Value = reqwest::get(format!("{base}/models"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["data"][0]["kokon"].clone()
    };
    assert_eq!(
        described(net.base_url()).await,
        serde_json::json!({"verified_workers": 1, "engines": [{"kind": "upstream", "upstream": origin}]})
    );
    assert_eq!(
        described(upstream.base_url()).await,
        serde_json::json!({"verified_workers": 1, "engines": [{"kind": "echo"}]})
    );
}

#[tokio::test]
async fn a_worker_forwarding_to_an_upstream_the_registry_does_not_list_is_refused() {
    use kokon_engine::upstream::{UpstreamConfig, UpstreamEngine};
    let upstream = LocalNet::start(spec(vec![WorkerSpec::new(echo("up-model", 0))]))
        .await
        .unwrap();
    let origin = kokon_proto::engine::origin_of(&upstream.base_url()).unwrap();
    let engine = || {
        Arc::new(
            UpstreamEngine::new(UpstreamConfig {
                base_url: upstream.base_url(),
                api_key: None,
                models: vec!["up-model".into()],
                context_len: 4096,
            })
            .unwrap(),
        )
    };
    // The registry lists another upstream only: the worker is refused at
    // the handshake and no job reaches the upstream.
    let mut s = spec(vec![]);
    s.registry.upstreams = Some(vec!["https://elsewhere.example".into()]);
    let mut net = LocalNet::start(s).await.unwrap();
    net.add_worker(WorkerSpec::new(engine())).unwrap();
    let m = net.proxy.metrics();
    eventually("refused as upstream_not_allowed", || {
        m.links_refused("upstream_not_allowed") >= 1
    })
    .await;
    assert_eq!(net.proxy.worker_count(), 0);
    let r = chat(&net.base_url(), "up-model", "leave the TEE", false).await;
    assert_eq!(r.status(), 404, "no attested worker serves it");
    assert_eq!(
        completed(&upstream.workers[0].stats),
        0,
        "nothing was forwarded"
    );

    // Listing its origin admits it.
    let mut s = spec(vec![WorkerSpec::new(engine())]);
    s.registry.upstreams = Some(vec![origin]);
    let net = LocalNet::start(s).await.unwrap();
    let r = chat(&net.base_url(), "up-model", "allowed now", false).await;
    assert_eq!(r.status(), 200);
    assert_eq!(completed(&upstream.workers[0].stats), 1);
}

#[tokio::test]
async fn workers_redial_a_restarted_proxy() {
    use kokon_proxy::ProxyConfig;
    let policy = Arc::new(net_policy());
    let proxy_node = || {
        kokon_tls::node::simulated_node(
            Role::Proxy,
            None,
            policy.clone(),
            [0; 32],
            &Default::default(),
        )
        .unwrap()
    };
    let first_stop = tokio_util::sync::CancellationToken::new();
    let any = "127.0.0.1:0".parse().unwrap();
    let first = kokon_proxy::start(ProxyConfig::new(any), proxy_node(), first_stop.clone())
        .await
        .unwrap();
    let addr = first.addr;
    let engine = echo("m", 0);
    let mut node = kokon_tls::node::NodeParams::simulated(Role::Worker, None, [0; 32]);
    kokon_worker::declare(&mut node, engine.as_ref());
    let keys = kokon_worker::seal_to(&mut node);
    let worker_tls =
        kokon_tls::node::start_node(node, policy.clone(), &Default::default()).unwrap();
    let worker = Worker::new(WorkerConfig::new(addr), engine, worker_tls).with_keys(keys);
    let stats = worker.stats();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(worker.serve(stop.clone()));
    eventually("first link", || first.worker_count() == 1).await;

    first_stop.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = kokon_proxy::start(ProxyConfig::new(addr), proxy_node(), Default::default())
        .await
        .unwrap();
    eventually("worker re-linked", || second.worker_count() == 1).await;
    assert_eq!(WorkerStats::get(&stats.links_established), 2);
    stop.cancel();
}

#[tokio::test]
async fn a_silent_worker_is_timed_out_and_the_job_retried() {
    let mut silent = WorkerSpec::new(echo("m", 60_000));
    silent.price_milli = 500; // picked first
    let mut s = spec(vec![silent, WorkerSpec::new(echo("m", 0))]);
    s.job_idle_timeout = Duration::from_millis(300);
    let net = LocalNet::start(s).await.unwrap();
    let started = Instant::now();
    let r: Value = chat(&net.base_url(), "m", "not stuck", false)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["choices"][0]["message"]["content"], "not stuck ");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(net.proxy.metrics().retries(), 1);
    let stats = net.workers[0].stats.clone();
    eventually("the silent worker's job is cancelled", || {
        WorkerStats::get(&stats.jobs_cancelled) == 1
    })
    .await;
}

#[tokio::test]
async fn routes_only_models_the_registry_allows_and_the_certificate_attests() {
    let allowed = kokon_worker::model_hashes(echo("allowed", 0).as_ref());
    let other = kokon_worker::model_hashes(echo("other", 0).as_ref());
    let mut s = spec(vec![WorkerSpec::new(echo("allowed", 0))]);
    s.registry.models = Some(
        [("allowed", &allowed), ("other", &other)]
            .into_iter()
            .map(|(name, hashes)| (name.to_string(), hashes.iter().map(|h| hex(h)).collect()))
            .collect(),
    );
    let mut net = LocalNet::start(s).await.unwrap();
    // Claims a model the registry does not list: refused at the handshake.
    net.add_worker(WorkerSpec::new(echo("banned", 0))).unwrap();
    // Claims the allowed hash but announces another model: its offer is not
    // attested, so it is dropped and the worker, left with none, refused.
    let mut sneaky = WorkerSpec::new(echo("sneaky", 0));
    sneaky.claimed_models = Some(allowed.clone());
    net.add_worker(sneaky).unwrap();
    // Attests another allowed model, and announces it under the name
    // "allowed": a name is routed only to the hashes allowed for it.
    let mut imposter = WorkerSpec::new(Arc::new(Renamed {
        inner: echo("allowed", 0),
        hash: other[0],
    }));
    imposter.claimed_models = Some(other.clone());
    net.add_worker(imposter).unwrap();
    let m = net.proxy.metrics();
    eventually("all three refused as model_not_allowed", || {
        m.links_refused("model_not_allowed") >= 3
    })
    .await;
    assert_eq!(net.proxy.worker_count(), 1);
    // The sneaky worker linked, was told why it is refused, and backs off
    // instead of re-dialing (before: ~6.5 dials a second, only the proxy knew).
    let sneaky = net.workers[2].stats.clone();
    eventually("the sneaky worker was told", || {
        WorkerStats::get(&sneaky.links_refused_by_proxy) == 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        WorkerStats::get(&sneaky.links_established),
        1,
        "it re-dialed"
    );
    assert_eq!(
        chat(&net.base_url(), "allowed", "yes", false)
            .await
            .status(),
        200
    );
    for model in ["banned", "sneaky"] {
        assert_eq!(
            chat(&net.base_url(), model, "no", false).await.status(),
            404
        );
    }
}

/// An engine that offers its models under another model's hash.
struct Renamed {
    inner: Arc<dyn kokon_engine::Engine>,
    hash: [u8; 32],
}

impl kokon_engine::Engine for Renamed {
    fn declaration(&self) -> kokon_proto::EngineDecl {
        self.inner.declaration()
    }

    fn models(&self) -> Vec<kokon_proto::ModelOffer> {
        let mut m = self.inner.models();
        for o in &mut m {
            o.hash = Some(kokon_money::Hash32(self.hash));
        }
        m
    }

    fn run(
        &self,
        job: kokon_proto::JobRequest,
        out: kokon_engine::Output,
        cancel: tokio_util::sync::CancellationToken,
    ) -> kokon_engine::BoxFuture<'static, Result<kokon_proto::JobEnd, kokon_engine::EngineError>>
    {
        self.inner.run(job, out, cancel)
    }
}

#[tokio::test]
async fn a_gateway_refuses_a_proxy_whose_image_the_registry_does_not_allow() {
    let net = LocalNet::start(spec(vec![WorkerSpec::new(echo("m", 0))]))
        .await
        .unwrap();
    let mut registry = kokon_attest::Registry::local_test_network();
    registry.proxy_images = vec![hex(&[0xaa; 32])];
    let policy = Arc::new(registry.policy().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    let tls = kokon_tls::node::simulated_node(Role::Client, None, policy, [0; 32], &stop).unwrap();
    let cfg = kokon_gateway::GatewayConfig::new("127.0.0.1:0".parse().unwrap(), net.proxy.addr);
    let gw = kokon_gateway::start_with(cfg, tls, None, stop.clone())
        .await
        .unwrap();
    let r = chat(&format!("http://{}/v1", gw.addr), "m", "hello", false).await;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("refused by attestation policy") && msg.contains("not allowed for role proxy"),
        "{msg}"
    );
    stop.cancel();
}

#[tokio::test]
async fn the_registry_bounds_what_a_worker_may_announce() {
    let greedy = WorkerSpec {
        max_jobs: 1_000_000,
        ..WorkerSpec::new(echo("m", 200))
    };
    let mut s = spec(vec![greedy]);
    s.registry.routing = Some(kokon_attest::RoutingRules {
        max_jobs: Some(2),
        max_price_milli: Some(3000),
        max_context: None,
    });
    let mut net = LocalNet::start(s).await.unwrap();
    // A price above the registry's maximum is refused at the link.
    let mut dear = WorkerSpec::new(echo("m", 0));
    dear.price_milli = 5000;
    net.add_worker(dear).unwrap();
    let m = net.proxy.metrics();
    eventually("the dear worker is refused", || {
        m.links_refused("price_above_registry") >= 1
    })
    .await;
    assert_eq!(net.proxy.worker_count(), 1);
    // A million slots announced, two routed: the third job is `busy`.
    assert_busy_after(&net, 2).await;
}

#[tokio::test]
async fn a_gateway_caps_the_price_by_default() {
    let mut dear = WorkerSpec::new(echo("m", 0));
    dear.price_milli = kokon_gateway::DEFAULT_MAX_PRICE_MILLI + 1;
    let net = LocalNet::start(spec(vec![dear])).await.unwrap();
    let r = chat(&net.base_url(), "m", "how much?", false).await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "over_price", "{body}");
}
