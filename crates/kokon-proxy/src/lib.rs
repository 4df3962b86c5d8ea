//! The proxy daemon: accepts RA-TLS links from workers and clients on one
//! port, tells them apart by their attested role, and routes each client job
//! to a worker, relaying the response stream frame by frame.
//!
//! The proxy reads only the job header (model, kind, max price, request id);
//! job payloads and output chunks pass through unread.

mod admin;
mod metrics;
mod pay;
mod relay;
mod workers;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kokon_attest::Role;
use kokon_route::{Router, WorkerId};
use kokon_tls::RaTls;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use metrics::Metrics;
pub use pay::ProxyPay;
use workers::WorkerLink;

/// Proxy settings (see `kokon proxy --help` for the documented defaults).
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Where workers and clients connect (RA-TLS).
    pub listen: SocketAddr,
    /// Plain HTTP for `/metrics` and `/healthz`; `None` disables it.
    pub admin_listen: Option<SocketAddr>,
    /// Workers tried per job when they fail before the first byte.
    pub max_attempts: u32,
    /// Time allowed for a TLS handshake.
    pub handshake_timeout: Duration,
    /// Links (workers + clients) held at once; more are refused.
    pub max_links: usize,
    /// Longest silence from a worker during a job (before its first frame or
    /// between frames). Then the job is retried elsewhere if nothing was
    /// delivered yet, or ended with `worker_failed_mid_stream`.
    pub job_idle_timeout: Duration,
}

impl ProxyConfig {
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            admin_listen: None,
            max_attempts: 3,
            handshake_timeout: Duration::from_secs(10),
            max_links: 4096,
            job_idle_timeout: Duration::from_secs(120),
        }
    }
}

pub(crate) struct State {
    pub(crate) cfg: ProxyConfig,
    pub(crate) tls: RaTls,
    pub(crate) router: Mutex<Router>,
    pub(crate) links: Mutex<HashMap<WorkerId, WorkerLink>>,
    pub(crate) next_id: AtomicU64,
    pub(crate) metrics: Metrics,
    pub(crate) pay: Option<Arc<ProxyPay>>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running proxy.
#[derive(Clone)]
pub struct ProxyHandle {
    pub addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    state: Arc<State>,
}

impl ProxyHandle {
    /// Workers linked right now.
    pub fn worker_count(&self) -> usize {
        lock(&self.state.links).len()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.state.metrics
    }

    /// The proxy's payment state, on paid networks.
    pub fn pay(&self) -> Option<Arc<ProxyPay>> {
        self.state.pay.clone()
    }
}

/// Binds the listeners and starts serving until `shutdown` is cancelled.
pub async fn start(
    cfg: ProxyConfig,
    tls: RaTls,
    shutdown: CancellationToken,
) -> std::io::Result<ProxyHandle> {
    start_with(cfg, tls, None, shutdown).await
}

/// [`start`] on a paid network: every job needs a channel with credit.
pub async fn start_with(
    cfg: ProxyConfig,
    tls: RaTls,
    pay: Option<ProxyPay>,
    shutdown: CancellationToken,
) -> std::io::Result<ProxyHandle> {
    let listener = TcpListener::bind(cfg.listen).await?;
    let addr = listener.local_addr()?;
    let admin = match cfg.admin_listen {
        Some(a) => Some(TcpListener::bind(a).await?),
        None => None,
    };
    let admin_addr = admin.as_ref().map(|l| l.local_addr()).transpose()?;
    let state = Arc::new(State {
        tls,
        router: Mutex::new(Router::new()),
        links: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(1),
        metrics: Metrics::new(),
        pay: pay.map(Arc::new),
        cfg,
    });
    if let Some(pay) = state.pay.clone() {
        tokio::spawn(pay::claim_loop(pay, shutdown.clone()));
    }
    if let Some(l) = admin {
        tokio::spawn(admin::serve(l, state.clone(), shutdown.clone()));
    }
    tokio::spawn(accept_loop(listener, state.clone(), shutdown));
    tracing::info!(%addr, "proxy listening");
    Ok(ProxyHandle {
        addr,
        admin_addr,
        state,
    })
}

async fn accept_loop(listener: TcpListener, state: Arc<State>, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(state.cfg.max_links));
    let acceptor = state.tls.acceptor(&[Role::Worker, Role::Client]);
    loop {
        let (tcp, from) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => { tracing::warn!(error = %e, "accept failed"); continue; }
            },
            _ = shutdown.cancelled() => return,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%from, "link refused: too many links");
            continue;
        };
        let (state, acceptor, shutdown) = (state.clone(), acceptor.clone(), shutdown.clone());
        tokio::spawn(async move {
            let hs = state
                .tls
                .accept(tcp, &acceptor, &[Role::Worker, Role::Client]);
            let (tls, peer) = match tokio::time::timeout(state.cfg.handshake_timeout, hs).await {
                Ok(Ok(x)) => x,
                Ok(Err(e)) => {
                    state.metrics.link_refused(refusal_reason(&e));
                    return tracing::warn!(%from, error = %e, "link refused");
                }
                Err(_) => return tracing::warn!(%from, "handshake timed out"),
            };
            let work = async {
                match peer.role() {
                    Role::Worker => workers::attach(state.clone(), tls, peer).await,
                    _ => relay::serve_client(state.clone(), tls, peer).await,
                }
            };
            tokio::select! { _ = work => {}, _ = shutdown.cancelled() => {} }
            drop(permit);
        });
    }
}

fn refusal_reason(e: &kokon_tls::LinkError) -> &'static str {
    match e {
        kokon_tls::LinkError::Refused { source, .. } => source.reason(),
        kokon_tls::LinkError::Incompatible { .. } => "incompatible",
        _ => "handshake",
    }
}
