//! The proxy daemon: accepts RA-TLS links from workers and clients on one
//! port, tells them apart by their attested role, and routes each client job
//! to a worker, relaying the response stream frame by frame.
//!
//! The proxy reads only the job header (model, kind, max price, request id);
//! job payloads and output chunks pass through unread.

mod admin;
mod client;
mod credit;
pub mod flow;
mod job;
mod metrics;
mod pay;
mod peers;
mod publish;
mod workers;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kokon_attest::Role;
use kokon_link::{LinkLimits, PublicLimits};
use kokon_route::{Router, WorkerId};
use kokon_tls::RaTls;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use metrics::Metrics;
pub use pay::ProxyPay;
pub use publish::KeyPublisher;
use workers::WorkerLink;

/// Proxy settings (see `kokon proxy --help` for the documented defaults).
#[derive(Clone, Debug, serde::Serialize)]
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
    /// After a job is cancelled, how long its worker may take to stop (its
    /// stream is read to the end meanwhile, and its router slot stays
    /// taken) before the stream is reset [default: 10 s].
    pub drain_timeout: Duration,
    /// Links held at once from one IP address (workers and clients).
    pub max_links_per_address: usize,
    /// Links held at once by one client key.
    pub max_links_per_client: usize,
    /// Handshakes started per second from one IP address (a burst of this
    /// many is allowed); more are closed before TLS.
    pub handshakes_per_sec_per_address: u32,
    /// Limits of links to workers (pings, streams, body deadline).
    pub worker_link: LinkLimits,
    /// Limits of links from clients (streams per link, job body deadline).
    pub client_link: LinkLimits,
    /// Limits of the admin port.
    pub admin: PublicLimits,
    /// At shutdown, how long jobs in flight may take to finish before the
    /// links are closed.
    pub drain_grace: Duration,
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
            drain_timeout: Duration::from_secs(10),
            max_links_per_address: 64,
            max_links_per_client: 8,
            handshakes_per_sec_per_address: 20,
            worker_link: LinkLimits::WORKER,
            client_link: LinkLimits::CLIENT,
            admin: PublicLimits::default(),
            drain_grace: Duration::from_secs(30),
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
    pub(crate) peers: peers::Peers,
    /// Jobs being relayed now (a drain waits for them).
    pub(crate) active_jobs: std::sync::atomic::AtomicUsize,
    /// Cancelled when the drain is over: every link closes.
    pub(crate) hard_stop: CancellationToken,
    /// Per-job troubles, logged as aggregates (per job: debug only).
    pub(crate) events: kokon_link::JobEvents,
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
    /// Resolves when the proxy has stopped after its shutdown: the jobs in
    /// flight finished (or the drain grace ran out) and every link closed.
    pub async fn drained(&self) {
        self.state.hard_stop.cancelled().await
    }

    /// Publishes the keys this proxy hands out, on paid networks (under
    /// the key its books and vault belong to).
    pub fn publisher(&self) -> Option<Arc<KeyPublisher>> {
        self.state.pay.as_ref().map(|p| p.publisher.clone())
    }

    /// Jobs being relayed right now.
    pub fn active_jobs(&self) -> usize {
        self.state
            .active_jobs
            .load(std::sync::atomic::Ordering::Relaxed)
    }

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

    /// The proxy's RA-TLS state: its attested identity and the policy.
    pub fn tls(&self) -> &RaTls {
        &self.state.tls
    }

    /// Answers one client request as a client link would (an Oblivious
    /// HTTP gateway in front of the proxy calls this with the request it
    /// decapsulated). The job it starts, if any, can be cancelled only by
    /// dropping the answer's body, never by name.
    pub async fn answer<B: kokon_link::CallBody>(
        &self,
        req: http::Request<B>,
    ) -> http::Response<kokon_link::Body> {
        let cancels = Arc::new(kokon_link::Cancels::default());
        client::route(self.state.clone(), cancels, req).await
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
        peers: peers::Peers::new(&cfg),
        active_jobs: Default::default(),
        hard_stop: CancellationToken::new(),
        events: Default::default(),
        cfg,
    });
    if let Some(pay) = &state.pay
        && let Some(issuer) = &pay.credits
    {
        // Before anyone can ask for the keys: clients pin only published ones.
        pay.publisher
            .credits(issuer.public().fingerprint())
            .await
            .map_err(|e| {
                std::io::Error::other(format!(
                    "cannot publish the credit keys in the registry: {e}"
                ))
            })?;
    }
    tokio::spawn(drain(state.clone(), shutdown.clone()));
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

/// After `shutdown`: no new links (the accept loop stops) and no new jobs
/// (client links get GOAWAY); jobs in flight run until done or the grace
/// is over; then every link closes.
async fn drain(state: Arc<State>, shutdown: CancellationToken) {
    shutdown.cancelled().await;
    let deadline = Instant::now() + state.cfg.drain_grace;
    let active = || state.active_jobs.load(std::sync::atomic::Ordering::Relaxed);
    tracing::info!(jobs = active(), "draining: finishing the jobs in flight");
    while active() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if active() > 0 {
        tracing::warn!(
            jobs = active(),
            "drain grace over; closing links with jobs still running"
        );
    }
    state.hard_stop.cancel();
}

/// Who may link to a proxy.
const ROLES: [Role; 2] = [Role::Worker, Role::Client];

async fn accept_loop(listener: TcpListener, state: Arc<State>, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(state.cfg.max_links));
    let acceptor = state.tls.acceptor(&ROLES);
    loop {
        let (tcp, from) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            state.metrics.link_refused("too_many_links");
            tracing::warn!(%from, "link refused: too many links");
            continue;
        };
        let Some(address_slot) = state.peers.admit_address(from.ip(), Instant::now()) else {
            state.metrics.link_refused("per_address_limit");
            tracing::debug!(%from, "link refused: too many links or handshakes from this address");
            continue;
        };
        let (state, shutdown, acceptor) = (state.clone(), shutdown.clone(), acceptor.clone());
        tokio::spawn(async move {
            serve_link(state, tcp, from, &acceptor, shutdown).await;
            drop((permit, address_slot));
        });
    }
}

/// Handshakes, then serves one link until it ends or the proxy stops.
async fn serve_link(
    state: Arc<State>,
    tcp: tokio::net::TcpStream,
    from: SocketAddr,
    acceptor: &tokio_rustls::TlsAcceptor,
    shutdown: CancellationToken,
) {
    let hs = state.tls.accept(tcp, acceptor, &ROLES);
    let (tls, peer) = match tokio::time::timeout(state.cfg.handshake_timeout, hs).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            state.metrics.link_refused(refusal_reason(&e));
            return tracing::warn!(%from, error = %e, "link refused");
        }
        Err(_) => return tracing::warn!(%from, "handshake timed out"),
    };
    let revocation = tls.revocation();
    let short_id = peer.short_id().to_string();
    let work = async {
        match peer.role() {
            Role::Worker => workers::attach(state.clone(), tls, peer).await,
            _ => {
                let Some(_slot) = state.peers.admit_client(peer.ed25519_key()) else {
                    state.metrics.link_refused("per_client_limit");
                    return tracing::warn!(%from, peer = peer.short_id(), "link refused: this client key holds too many links");
                };
                client::serve_client(state.clone(), tls, peer, &shutdown).await
            }
        }
    };
    tokio::select! { _ = work => {}, _ = state.hard_stop.cancelled() => {} }
    if let Some(why) = revocation.get() {
        state.metrics.link_revoked(why.reason());
        tracing::warn!(%from, peer = short_id, reason = why.reason(), "link dropped: the registry no longer allows this peer");
    }
}

fn refusal_reason(e: &kokon_tls::LinkError) -> &'static str {
    match e {
        kokon_tls::LinkError::Refused { source, .. } => source.reason(),
        kokon_tls::LinkError::Incompatible { .. } => "incompatible",
        _ => "handshake",
    }
}
