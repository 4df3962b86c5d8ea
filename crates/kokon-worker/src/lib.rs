//! The worker daemon: dials its proxy over RA-TLS (NAT-friendly), then serves
//! jobs over HTTP/2 on that same connection, running them on its engine.
//!
//! The link is kept alive with HTTP/2 pings and re-dialed with exponential
//! backoff and jitter when it drops.

pub mod flow;
mod job;
pub mod keys;
mod link;
mod pay;

pub use keys::JobKeys;
pub use pay::WorkerPay;

/// Gives `node` (a worker's certificate parameters) a fresh HPKE key pair
/// per certificate; the worker built with the returned keys opens the jobs
/// clients seal to them ([`Worker::with_keys`]).
pub fn seal_to(node: &mut kokon_tls::node::NodeParams) -> Arc<JobKeys> {
    let keys = Arc::new(JobKeys::new());
    node.sealing = Some(keys.clone());
    keys
}

/// Makes `node`'s certificates declare `engine`: what it is (and where an
/// upstream engine forwards jobs) and the models it serves.
pub fn declare(node: &mut kokon_tls::node::NodeParams, engine: &dyn kokon_engine::Engine) {
    node.models = model_hashes(engine);
    node.engine = Some(engine.declaration());
}

/// The hashes a worker's certificate claims for the models `engine` serves:
/// the model file's SHA-256 where the engine knows it, else a hash of the
/// model's name (echo and upstream engines, which hold no weights here).
pub fn model_hashes(engine: &dyn kokon_engine::Engine) -> Vec<[u8; 32]> {
    engine
        .models()
        .into_iter()
        .map(|m| pay::model_hash(m.hash, &m.name).0)
        .collect()
}

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kokon_engine::Engine;
use kokon_tls::RaTls;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use link::run;

/// Worker settings (see `kokon worker --help` for the documented defaults).
#[derive(Clone, Debug, serde::Serialize)]
pub struct WorkerConfig {
    /// The proxy to dial.
    pub proxy: SocketAddr,
    /// Jobs run at once; more are refused with `busy`.
    pub max_jobs: u32,
    /// Price coefficient in thousandths of the registry's base price.
    pub price_milli: u32,
    /// First and longest pause between reconnection attempts.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Longest silence of the engine (before its first token or between two)
    /// before the job is stopped and fails; frees the slot of a hung engine.
    pub engine_idle_timeout: Duration,
    /// A paid job's worker signs a cumulative receipt after this many
    /// generated tokens, or once `receipt_every` has passed since the last,
    /// whichever comes first, so output cut off mid-stream is still paid.
    pub receipt_every_tokens: u32,
    pub receipt_every: Duration,
}

impl WorkerConfig {
    pub fn new(proxy: SocketAddr) -> Self {
        Self {
            proxy,
            max_jobs: 4,
            price_milli: 1000,
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            engine_idle_timeout: Duration::from_secs(300),
            receipt_every_tokens: 64,
            receipt_every: Duration::from_secs(1),
        }
    }
}

/// Counters a worker keeps, served at `/metrics` and read by tests.
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub jobs_started: Counter,
    pub jobs_completed: Counter,
    pub jobs_failed: Counter,
    pub jobs_cancelled: Counter,
    pub jobs_refused_busy: Counter,
    pub links_established: Counter,
    /// Links the proxy ended by refusing this worker's certificate.
    pub links_refused_by_proxy: Counter,
}

impl WorkerStats {
    pub fn get(counter: &Counter) -> u64 {
        counter.get()
    }

    pub(crate) fn bump(counter: &Counter) {
        counter.inc();
    }

    /// The Prometheus text exposition of these counters.
    pub fn encode(&self) -> String {
        let mut r = Registry::default();
        let jobs = Family::<Outcome, Counter>::default();
        for (outcome, c) in [
            ("started", &self.jobs_started),
            ("completed", &self.jobs_completed),
            ("failed", &self.jobs_failed),
            ("cancelled", &self.jobs_cancelled),
            ("refused_busy", &self.jobs_refused_busy),
        ] {
            jobs.get_or_create(&Outcome { outcome }).inc_by(c.get());
        }
        r.register("kokon_worker_jobs", "Jobs by outcome", jobs);
        r.register(
            "kokon_worker_links",
            "Links established to the proxy",
            self.links_established.clone(),
        );
        r.register(
            "kokon_worker_links_refused_by_proxy",
            "Links the proxy ended by refusing this worker's certificate (registry policy)",
            self.links_refused_by_proxy.clone(),
        );
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        out
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

/// Everything a worker needs; cheap to clone.
#[derive(Clone)]
pub struct Worker {
    pub(crate) cfg: Arc<WorkerConfig>,
    pub(crate) engine: Arc<dyn Engine>,
    pub(crate) tls: RaTls,
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) stats: Arc<WorkerStats>,
    pub(crate) pay: Option<Arc<WorkerPay>>,
    /// Running jobs by request id, for the proxy's cancels (at most one per slot).
    pub(crate) running: Arc<kokon_link::Cancels>,
    /// The HPKE keys of this worker's certificates (none: sealed jobs are
    /// refused as sealed to someone else).
    pub(crate) keys: Arc<JobKeys>,
    /// Per-job troubles, logged as aggregates (per job: debug only).
    pub(crate) events: Arc<kokon_link::JobEvents>,
}

impl Worker {
    pub fn new(cfg: WorkerConfig, engine: Arc<dyn Engine>, tls: RaTls) -> Self {
        let slots = Arc::new(Semaphore::new(cfg.max_jobs as usize));
        Self {
            cfg: Arc::new(cfg),
            engine,
            tls,
            slots,
            stats: Arc::default(),
            pay: None,
            running: Arc::default(),
            keys: Arc::default(),
            events: Arc::default(),
        }
    }

    /// Opens the sealed jobs addressed to the certificates these keys were
    /// made for (see [`seal_to`]).
    pub fn with_keys(mut self, keys: Arc<JobKeys>) -> Self {
        self.keys = keys;
        self
    }

    /// Makes this a paid worker: it signs receipts and keeps vault vouchers.
    pub fn with_pay(mut self, pay: WorkerPay) -> Self {
        self.pay = Some(Arc::new(pay));
        self
    }

    pub fn pay(&self) -> Option<Arc<WorkerPay>> {
        self.pay.clone()
    }

    pub fn stats(&self) -> Arc<WorkerStats> {
        self.stats.clone()
    }

    /// The link's limits: streams near this worker's capacity (refusals of
    /// a job beyond it still need a stream, hence twice).
    pub(crate) fn link_limits(&self) -> kokon_link::LinkLimits {
        kokon_link::LinkLimits::CLIENT.with_max_streams(self.cfg.max_jobs.saturating_mul(2).max(8))
    }

    /// Runs until `shutdown` is cancelled.
    pub async fn serve(self, shutdown: CancellationToken) {
        if let Some(pay) = self.pay.clone() {
            tokio::spawn(pay::claim_loop(pay, shutdown.clone()));
        }
        run(self, shutdown).await
    }

    /// Serves `/metrics`, `/healthz` and `/certificate` (the current RA-TLS
    /// certificate, PEM, for `kokon attest show`) over plain HTTP on
    /// `listener` until `shutdown`.
    pub async fn serve_admin(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: CancellationToken,
    ) {
        use axum::routing::get;
        let stats = self.stats.clone();
        let identity = self.tls.identity().clone();
        let app = axum::Router::new()
            .route("/metrics", get(move || std::future::ready(stats.encode())))
            .route("/healthz", get(|| async { "ok\n" }))
            .route(
                "/certificate",
                get(move || std::future::ready(identity.certificate_pem())),
            );
        kokon_link::serve_public(listener, app, kokon_link::PublicLimits::default(), shutdown)
            .await;
    }
}
