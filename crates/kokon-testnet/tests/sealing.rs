//! End-to-end sealing against a lying proxy. The gateway seals every job to
//! candidate workers it verified itself; a proxy that offers a certificate
//! carrying its own HPKE key (a worker's quote moved into its own
//! certificate, its own proxy certificate, a worker certificate from an
//! image the registry does not list, one with no sealing key) gets no job
//! sealed to that key: with no honest candidate the job is never sent, and
//! with one the job names that candidate only.
//!
//! Under simulated evidence anyone can mint a worker quote for the test
//! image (the dev-mode limit, see docs/ATTESTATION.md); what is tested here
//! is everything short of that: what a proxy can do with the certificates
//! and keys it has.

mod common;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::*;
use kokon_attest::{EvidenceKind, EvidenceSource, Identity, IdentityParams, Role, SimulatedSource};
use kokon_gateway::GatewayConfig;
use kokon_gateway::candidates::{CandidateError, verify};
use kokon_link::{Call, LinkLimits, error_reply, json_reply, read_call, serve_link};
use kokon_proto::{CandidatesReply, ErrorCode, JobError, ModelOffer, ModelsReply, SealedJob};
use kokon_testnet::pay::PaySpec;
use kokon_testnet::{LocalNet, NetSpec, WorkerSpec};
use tokio_util::sync::CancellationToken;

const MODEL: &str = "m";

fn policy() -> Arc<kokon_attest::Policy> {
    Arc::new(
        kokon_attest::Registry::local_test_network()
            .policy()
            .unwrap(),
    )
}

fn now() -> u64 {
    kokon_attest::Clock::now_unix(&kokon_attest::SystemClock)
}

fn params(role: Role, hpke: Option<[u8; 32]>) -> IdentityParams {
    IdentityParams {
        role,
        hpke_public: hpke,
        engine: (role == Role::Worker)
            .then(|| kokon_engine::Engine::declaration(echo(MODEL, 0).as_ref())),
        config_sha256: [0; 32],
        models: kokon_worker::model_hashes(echo(MODEL, 0).as_ref()),
        lifetime_secs: 3600,
        now: now(),
    }
}

/// Evidence that keeps the first quote it makes and hands the same one out
/// again: what a proxy holding a worker's certificate can put in its own.
#[derive(Debug)]
struct Replayed {
    real: SimulatedSource,
    kept: Mutex<Option<Vec<u8>>>,
}

impl EvidenceSource for Replayed {
    fn kind(&self) -> EvidenceKind {
        self.real.kind()
    }
    fn quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, String> {
        let mut kept = self.kept.lock().unwrap();
        if let Some(q) = kept.as_ref() {
            return Ok(q.clone());
        }
        let q = self.real.quote(report_data)?;
        *kept = Some(q.clone());
        Ok(q)
    }
}

/// The certificates a lying proxy can offer, each with the reason the
/// gateway must refuse it for. `proxy_key`: the HPKE public key whose
/// secret the proxy holds.
fn forgeries(proxy_key: [u8; 32]) -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let replayed = Replayed {
        real: SimulatedSource::new(&worker_image()),
        kept: Mutex::new(None),
    };
    // The honest worker's certificate, then the proxy's copy of its quote
    // in a certificate carrying the proxy's key.
    Identity::issue(&params(Role::Worker, Some([7; 32])), &replayed).unwrap();
    let moved = Identity::issue(&params(Role::Worker, Some(proxy_key)), &replayed).unwrap();
    let proxy_image = kokon_attest::registry::simulated_label(Role::Proxy);
    let own = Identity::simulated(&params(Role::Proxy, Some(proxy_key)), &proxy_image).unwrap();
    let unlisted = Identity::simulated(
        &params(Role::Worker, Some(proxy_key)),
        "not-in-the-registry",
    )
    .unwrap();
    let keyless = Identity::simulated(&params(Role::Worker, None), &worker_image()).unwrap();
    vec![
        (
            "a worker's quote in the proxy's certificate",
            moved.cert_der,
            "binding_mismatch",
        ),
        (
            "the proxy's own certificate",
            own.cert_der,
            "unexpected_role",
        ),
        (
            "an image the registry does not list",
            unlisted.cert_der,
            "image_not_allowed",
        ),
        (
            "a worker with no sealing key",
            keyless.cert_der,
            "no_sealing_key",
        ),
    ]
}

fn worker_image() -> String {
    kokon_attest::registry::simulated_label(Role::Worker)
}

/// An honest worker's certificate, sealing to `key`.
fn honest(key: [u8; 32]) -> Vec<u8> {
    Identity::simulated(&params(Role::Worker, Some(key)), &worker_image())
        .unwrap()
        .cert_der
}

#[test]
fn every_certificate_a_proxy_can_make_is_refused_with_its_reason() {
    let policy = policy();
    for (what, der, reason) in forgeries([9; 32]) {
        let got = verify(&der, MODEL, &policy, now()).expect_err(what);
        assert_eq!(got.reason(), reason, "{what}: {got}");
    }
    // Under a registry that lists models, an honest worker's certificate
    // is no candidate for a model it does not attest.
    let der = honest([7; 32]);
    let mut listing = kokon_attest::Registry::local_test_network();
    let other = kokon_worker::model_hashes(echo("another-model", 0).as_ref());
    listing.models = Some(
        [
            (MODEL, params(Role::Worker, None).models),
            ("another-model", other),
        ]
        .into_iter()
        .map(|(name, hashes)| (name.to_string(), hashes.iter().map(hex::encode).collect()))
        .collect(),
    );
    let listing = listing.policy().unwrap();
    assert_eq!(
        verify(&der, "another-model", &listing, now()).unwrap_err(),
        CandidateError::ModelNotAttested("another-model".into())
    );
    assert!(verify(&der, MODEL, &listing, now()).is_ok());
    let (v, _) = verify(&der, MODEL, &policy, now()).unwrap();
    assert_eq!(v.candidate.public, [7; 32], "the key is the attested one");
    assert_eq!(v.candidate.id, kokon_attest::sha256(&der));
    assert_eq!(
        v.engine,
        kokon_proto::EngineDecl::local(kokon_proto::EngineKind::Echo)
    );
}

/// What the lying proxy was sent.
#[derive(Default)]
struct Seen {
    jobs: Vec<Bytes>,
    other_calls: usize,
}

/// A proxy (attested as one) that offers `certs` as the candidates for
/// [`MODEL`] and keeps every job it is sent, answering it with an error.
async fn lying_proxy(certs: Vec<Vec<u8>>) -> (std::net::SocketAddr, Arc<Mutex<Seen>>) {
    let stop = CancellationToken::new();
    let tls = kokon_tls::node::simulated_node(Role::Proxy, None, policy(), [0; 32], &stop).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let reply = CandidatesReply {
        certs: certs.iter().map(hex::encode).collect(),
    };
    let s = seen.clone();
    tokio::spawn(async move {
        let _stop = stop;
        let acceptor = tls.acceptor(&[Role::Client]);
        while let Ok((tcp, _)) = listener.accept().await {
            let Ok((stream, _)) = tls.accept(tcp, &acceptor, &[Role::Client]).await else {
                continue;
            };
            let (seen, reply) = (s.clone(), reply.clone());
            tokio::spawn(async move {
                let handle = move |req| {
                    let (seen, reply) = (seen.clone(), reply.clone());
                    async move { answer(req, &seen, &reply).await }
                };
                let _ = serve_link(
                    stream,
                    LinkLimits::CLIENT,
                    &CancellationToken::new(),
                    handle,
                )
                .await;
            });
        }
    });
    (addr, seen)
}

async fn answer(
    req: http::Request<hyper::body::Incoming>,
    seen: &Mutex<Seen>,
    reply: &CandidatesReply,
) -> http::Response<kokon_link::Body> {
    let refuse = || {
        error_reply(
            http::StatusCode::SERVICE_UNAVAILABLE,
            JobError::new(ErrorCode::WorkerUnavailable, "no"),
        )
    };
    match read_call(req, &LinkLimits::CLIENT).await {
        Ok(Call::Models) => json_reply(&ModelsReply {
            models: vec![ModelOffer {
                name: MODEL.into(),
                context_len: 2048,
                hash: None,
            }],
        }),
        Ok(Call::Candidates(_)) => json_reply(reply),
        Ok(Call::Job(_, payload)) => {
            seen.lock().unwrap().jobs.push(payload);
            refuse()
        }
        _ => {
            seen.lock().unwrap().other_calls += 1;
            refuse()
        }
    }
}

async fn gateway_to(proxy: std::net::SocketAddr) -> String {
    let cfg = GatewayConfig::new("127.0.0.1:0".parse().unwrap(), proxy);
    let node =
        kokon_tls::node::simulated_node(Role::Client, None, policy(), [0; 32], &Default::default())
            .unwrap();
    let h = kokon_gateway::start(cfg, node, Default::default())
        .await
        .unwrap();
    format!("http://{}/v1", h.addr)
}

#[tokio::test]
async fn a_proxy_offering_only_its_own_keys_is_sent_no_job() {
    let certs = forgeries([9; 32])
        .into_iter()
        .map(|(_, der, _)| der)
        .collect();
    let (addr, seen) = lying_proxy(certs).await;
    let base = gateway_to(addr).await;
    for stream in [false, true] {
        let r = chat(&base, MODEL, "canary-7f3a", stream).await;
        assert_eq!(r.status(), 503);
        let body: serde_json::Value = r.json().await.unwrap();
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(msg.contains("passed this gateway's verification"), "{msg}");
        assert!(msg.contains("the job was not sent"), "{msg}");
    }
    let seen = seen.lock().unwrap();
    assert!(
        seen.jobs.is_empty(),
        "not one byte of the job reached the proxy"
    );
    assert_eq!(seen.other_calls, 0, "nor an authorisation or a voucher");
}

#[tokio::test]
async fn a_job_is_sealed_only_to_the_honest_candidate_among_forgeries() {
    let honest = honest([7; 32]);
    let mut certs: Vec<Vec<u8>> = forgeries([9; 32]).into_iter().map(|(_, d, _)| d).collect();
    certs.insert(2, honest.clone());
    let (addr, seen) = lying_proxy(certs).await;
    let base = gateway_to(addr).await;
    let r = chat(&base, MODEL, "canary-7f3a", false).await;
    assert_eq!(
        r.status(),
        503,
        "the lying proxy answers every job with an error"
    );
    let seen = seen.lock().unwrap();
    assert!(!seen.jobs.is_empty());
    for job in &seen.jobs {
        let named = SealedJob::candidates_of(job).unwrap();
        assert_eq!(
            named,
            vec![kokon_attest::sha256(&honest)],
            "sealed to the honest worker only"
        );
        assert!(
            !job.windows(11).any(|w| w == b"canary-7f3a"),
            "ciphertext only"
        );
    }
}

#[tokio::test]
async fn a_worker_restarted_with_a_new_key_gets_the_job_sealed_again_and_paid_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = NetSpec::new(vec![WorkerSpec::new(echo(MODEL, 0))]);
    spec.payments = Some(PaySpec::dev(dir.path().to_path_buf()));
    let mut net = LocalNet::start(spec).await.unwrap();
    let cost = |v: &serde_json::Value| v["usage"]["cost_nanoton"].as_u64().unwrap();
    let first: serde_json::Value = chat(&net.base_url(), MODEL, "first", false)
        .await
        .json()
        .await
        .unwrap();
    let lists = || net.proxy.metrics().candidate_lists(MODEL, "ok");
    assert_eq!(lists(), 1);

    // The gateway still holds the list naming the old certificate (its
    // TTL has not run out); the restarted worker has a new one, new keys.
    net.restart_worker(0, WorkerSpec::new(echo(MODEL, 0)))
        .unwrap();
    let stats = net.workers[0].stats.clone();
    eventually("the new worker alone is linked", || {
        kokon_worker::WorkerStats::get(&stats.links_established) >= 1
            && net.proxy.worker_count() == 1
    })
    .await;
    let second: serde_json::Value = chat(&net.base_url(), MODEL, "second", false)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(second["choices"][0]["message"]["content"], "second ");
    let lists = net.proxy.metrics().candidate_lists(MODEL, "ok");
    assert_eq!(lists, 2, "sealed again to a fresh list");
    assert_eq!(
        net.proxy.metrics().jobs(MODEL, "stale_candidates"),
        1,
        "the stale job reached no worker"
    );
    let totals = proxy_totals(&net).await;
    assert_eq!(totals.receipts, 2, "one receipt per answered job");
    assert_eq!(totals.billed, u128::from(cost(&first) + cost(&second)));
}
