//! The client gateway: an OpenAI-compatible HTTP API (axum) in front of a
//! Kokon proxy. It turns OpenAI requests into jobs, sends them over its RA-TLS
//! link to the proxy, and turns the response frames back into OpenAI JSON or
//! server-sent events.

mod api;
mod error;
mod link;
mod openai;
mod pay;
mod stream;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use kokon_tls::RaTls;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::ApiError;
pub use link::ProxyLink;
pub use pay::ClientPay;

/// Gateway settings (see `kokon client --help` for the documented defaults).
#[derive(Clone)]
pub struct GatewayConfig {
    /// Where the OpenAI-compatible API listens.
    pub listen: SocketAddr,
    /// The proxy to send jobs to.
    pub proxy: SocketAddr,
    /// When set, requests must carry `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// Largest request body accepted, in bytes.
    pub max_body: usize,
    /// Highest worker price coefficient accepted (thousandths); `None` = any.
    pub max_price_milli: Option<u32>,
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
            .finish()
    }
}

impl GatewayConfig {
    pub fn new(listen: SocketAddr, proxy: SocketAddr) -> Self {
        Self {
            listen,
            proxy,
            api_key: None,
            max_body: 1024 * 1024,
            max_price_milli: None,
        }
    }
}

pub(crate) struct AppState {
    pub(crate) cfg: GatewayConfig,
    pub(crate) link: Arc<ProxyLink>,
    pub(crate) metrics: api::Metrics,
    pub(crate) pay: Option<Arc<ClientPay>>,
}

/// The axum application (exposed so tests can drive it with `oneshot`).
pub fn app(cfg: GatewayConfig, tls: RaTls) -> Router {
    app_with(cfg, tls, None)
}

/// [`app`] on a paid network: every job is paid from the channel in `pay`.
pub fn app_with(cfg: GatewayConfig, tls: RaTls, pay: Option<ClientPay>) -> Router {
    let link = Arc::new(ProxyLink::new(cfg.proxy, tls));
    let pay = pay.map(Arc::new);
    if let Some(p) = &pay {
        // Resync: the proxy gets our latest voucher again (it may have missed it).
        tokio::spawn(pay::deliver_vouchers(link.clone(), p.clone()));
        p.wake.notify_one();
    }
    api::router(Arc::new(AppState {
        cfg,
        link,
        metrics: api::Metrics::new(),
        pay,
    }))
}

/// A running gateway.
#[derive(Clone, Debug)]
pub struct GatewayHandle {
    pub addr: SocketAddr,
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
    let listener = TcpListener::bind(cfg.listen).await?;
    let addr = listener.local_addr()?;
    let app = app_with(cfg, tls, pay);
    tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned());
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "gateway server failed");
        }
    });
    tracing::info!(%addr, "gateway listening");
    Ok(GatewayHandle { addr })
}
