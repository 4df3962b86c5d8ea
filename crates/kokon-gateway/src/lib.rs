//! The client gateway: an OpenAI-compatible HTTP API (axum) in front of a
//! Kokon proxy. It turns OpenAI requests into jobs, sends them over its RA-TLS
//! link to the proxy, and turns the response frames back into OpenAI JSON or
//! server-sent events.

mod api;
pub mod candidates;
pub mod credit;
mod credit_api;
mod error;
pub mod flow;
mod guard;
mod link;
mod openai;
mod pay;
pub mod published;
pub mod relay;
mod seal;
mod stream;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use kokon_link::PublicLimits;
use kokon_tls::RaTls;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use credit::CreditPay;
pub use error::ApiError;
pub use guard::Guard;
pub use link::{LinkTiming, ProxyLink};
pub use openai::check_request;
pub use pay::ClientPay;
pub use published::Registry;

/// The price cap a gateway applies unless told otherwise: twice the
/// registry's base price. Without one, a worker could charge any price the
/// registry allows, and the client would pay it.
pub const DEFAULT_MAX_PRICE_MILLI: u32 = 2000;

/// Gateway settings (see `kokon client --help` for the documented defaults).
#[derive(Clone, serde::Serialize)]
pub struct GatewayConfig {
    /// Where the OpenAI-compatible API listens.
    pub listen: SocketAddr,
    /// The proxy to send jobs to.
    pub proxy: SocketAddr,
    /// When set, requests must carry `Authorization: Bearer <key>`. Only
    /// whether one is set is part of the attested config hash.
    #[serde(serialize_with = "key_is_set")]
    pub api_key: Option<String>,
    /// Largest request body accepted, in bytes.
    pub max_body: usize,
    /// Highest worker price coefficient accepted (thousandths); `None` = any
    /// [default: [`DEFAULT_MAX_PRICE_MILLI`]].
    pub max_price_milli: Option<u32>,
    /// Jobs run at once; more get 503 with `Retry-After`.
    pub max_concurrent_jobs: usize,
    /// Host names served besides loopback names and the listen address.
    pub allow_hosts: Vec<String>,
    /// Web origins (`scheme://host[:port]`) allowed to call the API from a
    /// browser; any other `Origin` is refused.
    pub cors_origins: Vec<String>,
    /// Connection bounds of the public port.
    pub public: PublicLimits,
    /// Timing of the link to the proxy.
    pub link: LinkTiming,
    /// Send every call through this Oblivious HTTP relay (its URL for the
    /// proxy's gateway, `…/gateways/NAME`) instead of over a link to
    /// `proxy`: the relay learns this gateway's address, the proxy does not.
    pub relay: Option<String>,
}

// The API key never appears in Debug output (which is also what the
// certificate's config hash covers).
impl std::fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("listen", &self.listen)
            .field("proxy", &self.proxy)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("max_body", &self.max_body)
            .field("max_price_milli", &self.max_price_milli)
            .field("max_concurrent_jobs", &self.max_concurrent_jobs)
            .field("allow_hosts", &self.allow_hosts)
            .field("cors_origins", &self.cors_origins)
            .field("public", &self.public)
            .field("link", &self.link)
            .field("relay", &self.relay)
            .finish()
    }
}

fn key_is_set<S: serde::Serializer>(key: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bool(key.is_some())
}

impl GatewayConfig {
    pub fn new(listen: SocketAddr, proxy: SocketAddr) -> Self {
        Self {
            listen,
            proxy,
            api_key: None,
            max_body: 1024 * 1024,
            max_price_milli: Some(DEFAULT_MAX_PRICE_MILLI),
            max_concurrent_jobs: 1024,
            allow_hosts: Vec::new(),
            cors_origins: Vec::new(),
            public: PublicLimits::default(),
            link: LinkTiming::default(),
            relay: None,
        }
    }
}

pub(crate) struct AppState {
    pub(crate) cfg: GatewayConfig,
    pub(crate) link: Arc<ProxyLink>,
    pub(crate) metrics: api::Metrics,
    pub(crate) pay: Option<Arc<ClientPay>>,
    /// Pays jobs with credit tokens (then `pay`, if any, only buys them).
    pub(crate) credits: Option<Arc<CreditPay>>,
    pub(crate) guard: Guard,
    pub(crate) jobs: Arc<Semaphore>,
    /// Verified candidate workers, per model.
    pub(crate) candidates: candidates::Candidates,
}

/// The axum application (exposed so tests can drive it with `oneshot`).
pub fn app(cfg: GatewayConfig, tls: RaTls) -> Router {
    app_with(cfg, tls, None)
}

/// [`app`] on a paid network: every job is paid from the channel in `pay`.
pub fn app_with(cfg: GatewayConfig, tls: RaTls, pay: Option<ClientPay>) -> Router {
    app_paying(cfg, tls, pay, None, None)
}

/// How often a credit-paying gateway claims the change of jobs it sent
/// and did not settle (the first pass runs at start).
const CHANGE_RECOVERY_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// [`app_with`], and jobs paid with the credit tokens of `credits`;
/// `registry` is where the keys a relayed or credit-paying gateway uses are
/// checked against what the proxies published (it needs one:
/// [`start_paying`] refuses to start without).
pub fn app_paying(
    cfg: GatewayConfig,
    tls: RaTls,
    pay: Option<ClientPay>,
    credits: Option<CreditPay>,
    registry: Option<Registry>,
) -> Router {
    if let Err(e) = needs_registry(&cfg, credits.is_some(), registry.is_some()) {
        panic!("{e}");
    }
    let policy = tls.policy_watch();
    let link = Arc::new(match (&cfg.relay, &registry) {
        (Some(relay), Some(r)) => ProxyLink::relayed(relay, tls, cfg.link, r.clone())
            .unwrap_or_else(|e| panic!("cannot set up the relay's client: {}", e.message)),
        _ => ProxyLink::with_timing(cfg.proxy, tls, cfg.link),
    });
    let credits = credits.map(|mut c| {
        c.registry = registry.clone();
        c
    });
    let pay = pay.map(|mut p| {
        p.follow(policy);
        Arc::new(p)
    });
    if let Some(p) = &pay {
        // Resync: the proxy gets our latest voucher again (it may have missed it).
        tokio::spawn(pay::deliver_vouchers(link.clone(), p.clone()));
        p.wake.notify_one();
        // Pays what the proxy billed while this gateway was away.
        tokio::spawn(pay::reconcile_loop(link.clone(), p.clone()));
    }
    let credits = credits.map(Arc::new);
    if let Some(c) = &credits {
        tokio::spawn(credit::recover_loop(
            c.clone(),
            link.clone(),
            CHANGE_RECOVERY_EVERY,
        ));
    }
    api::router(Arc::new(AppState {
        guard: Guard::new(cfg.listen, &cfg.allow_hosts, &cfg.cors_origins),
        jobs: Arc::new(Semaphore::new(cfg.max_concurrent_jobs.max(1))),
        cfg,
        link,
        metrics: api::Metrics::new(),
        pay,
        credits,
        candidates: Default::default(),
    }))
}

/// A relayed or credit-paying gateway uses keys a proxy hands out to all its
/// clients alike, and must be able to check so in the registry.
fn needs_registry(cfg: &GatewayConfig, credits: bool, registry: bool) -> Result<(), String> {
    match (cfg.relay.is_some(), credits, registry) {
        (true, _, false) => Err(
            "a relayed gateway needs the registry to check the gateway's \
             keys are the ones published to everyone"
                .into(),
        ),
        (_, true, false) => Err("a credit-paying gateway needs the registry to check the \
             proxy's credit keys are the ones published to everyone"
            .into()),
        _ => Ok(()),
    }
}

/// A running gateway.
#[derive(Clone, Debug)]
pub struct GatewayHandle {
    pub addr: SocketAddr,
    drained: CancellationToken,
}

impl GatewayHandle {
    /// Resolves once the gateway stopped after its shutdown: in-flight
    /// requests finished or the drain grace ran out.
    pub async fn drained(&self) {
        self.drained.cancelled().await
    }
}

/// Binds and serves until `shutdown` is cancelled.
pub async fn start(
    cfg: GatewayConfig,
    tls: RaTls,
    shutdown: CancellationToken,
) -> std::io::Result<GatewayHandle> {
    start_with(cfg, tls, None, shutdown).await
}

/// [`start`] on a paid network.
pub async fn start_with(
    cfg: GatewayConfig,
    tls: RaTls,
    pay: Option<ClientPay>,
    shutdown: CancellationToken,
) -> std::io::Result<GatewayHandle> {
    start_paying(cfg, tls, pay, None, None, shutdown).await
}

/// [`start_with`], and jobs paid with credit tokens.
pub async fn start_paying(
    cfg: GatewayConfig,
    tls: RaTls,
    pay: Option<ClientPay>,
    credits: Option<CreditPay>,
    registry: Option<Registry>,
    shutdown: CancellationToken,
) -> std::io::Result<GatewayHandle> {
    needs_registry(&cfg, credits.is_some(), registry.is_some())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let listener = TcpListener::bind(cfg.listen).await?;
    let addr = listener.local_addr()?;
    let limits = cfg.public;
    let app = app_paying(cfg, tls, pay, credits, registry);
    let drained = CancellationToken::new();
    let done = drained.clone();
    tokio::spawn(async move {
        kokon_link::serve_public(listener, app, limits, shutdown).await;
        done.cancel();
    });
    tracing::info!(%addr, "gateway listening");
    Ok(GatewayHandle { addr, drained })
}
