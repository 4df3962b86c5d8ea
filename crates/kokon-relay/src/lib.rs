//! `kokon relay`: the Oblivious HTTP relay (RFC 9458 §5) a VPN provider
//! runs in front of Kokon's gateways.
//!
//! A client posts an encapsulated request to `/gateways/NAME`; the relay
//! sends it on to that gateway (a proxy's Oblivious HTTP port) over TLS to
//! the proxy's attested certificate, with nothing of the client's: no
//! address, no header but the media type. The answer comes back the same
//! way, streamed as it arrives. The relay cannot read either (they are
//! encapsulated to the gateway's key) and keeps neither.
//!
//! It is bounded everywhere: request and response sizes, requests in
//! flight in total and per client address, a request rate per address, a
//! deadline for the request body and for the gateway's answer. Its logs
//! hold counts only (per-request lines, with the client's address, are
//! `debug`).

mod limiter;
mod metrics;
mod upstream;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use kokon_attest::{Clock, Policy};
use kokon_link::{Body, PeerAddr, PublicLimits, frames_body, full_body};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

pub use limiter::{Limiter, MAX_TRACKED, Refusal};
pub use metrics::Metrics;
use upstream::Upstream;

/// The path prefix of the gateways a relay serves: `POST /gateways/NAME`
/// (encapsulated requests), `GET /gateways/NAME/keys` (the signed key
/// document) and `GET /gateways/NAME/ohttp-keys` (`application/ohttp-keys`).
pub const GATEWAYS: &str = "/gateways/";

/// The media types the relay forwards (RFC 9458 §9, chunked OHTTP). The
/// relay does not link the OHTTP crate: it has no code that could open what
/// it carries (`tests/blind.rs`).
pub const OHTTP_REQUEST: &str = "message/ohttp-req";
pub const OHTTP_CHUNKED_REQUEST: &str = "message/ohttp-chunked-req";

/// One gateway the relay forwards to.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GatewayTarget {
    /// The name clients use in the relay's URL.
    pub name: String,
    /// The proxy's Oblivious HTTP port.
    pub addr: SocketAddr,
}

/// Relay settings (see `kokon relay --help` for the documented defaults).
#[derive(Clone, Debug, serde::Serialize)]
pub struct RelayConfig {
    /// Where clients connect (plain HTTP: inside the VPN tunnel, or behind
    /// the provider's TLS front).
    pub listen: SocketAddr,
    /// `/metrics` and `/healthz`; `None` disables it.
    pub admin_listen: Option<SocketAddr>,
    pub gateways: Vec<GatewayTarget>,
    /// Largest encapsulated request, in bytes [default: 4 MiB + 64 KiB].
    pub max_request: usize,
    /// Largest answer passed back, in bytes; a longer one is cut [default:
    /// 64 MiB].
    pub max_response: usize,
    /// Requests forwarded at once, in total [default: 512].
    pub max_in_flight: usize,
    /// Requests in flight from one client address [default: 16].
    pub max_in_flight_per_client: usize,
    /// Requests per second from one client address (a burst of as many)
    /// [default: 20].
    pub requests_per_sec_per_client: u32,
    /// Longest time a request body may take to arrive [default: 30 s].
    pub body_deadline: Duration,
    /// Longest wait for the gateway's answer to begin [default: 30 s].
    pub answer_timeout: Duration,
    /// Limits of the client port.
    pub limits: PublicLimits,
}

impl RelayConfig {
    pub fn new(listen: SocketAddr, gateways: Vec<GatewayTarget>) -> Self {
        Self {
            listen,
            admin_listen: None,
            gateways,
            max_request: kokon_proto::MAX_JOB_PAYLOAD + 64 * 1024,
            max_response: 64 << 20,
            max_in_flight: 512,
            max_in_flight_per_client: 16,
            requests_per_sec_per_client: 20,
            body_deadline: Duration::from_secs(30),
            answer_timeout: Duration::from_secs(30),
            limits: PublicLimits::default(),
        }
    }
}

struct State {
    cfg: RelayConfig,
    upstreams: HashMap<String, Upstream>,
    limiter: Mutex<Limiter>,
    in_flight: Arc<Semaphore>,
    metrics: Metrics,
    events: kokon_link::JobEvents,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running relay.
#[derive(Clone)]
pub struct RelayHandle {
    pub addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    state: Arc<State>,
}

impl RelayHandle {
    pub fn metrics(&self) -> &Metrics {
        &self.state.metrics
    }
}

/// Binds the listeners and relays until `shutdown`. Gateways are accepted
/// only if their certificate verifies as a proxy under `policy`.
pub async fn start(
    cfg: RelayConfig,
    policy: Arc<Policy>,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> std::io::Result<RelayHandle> {
    let listener = TcpListener::bind(cfg.listen).await?;
    let addr = listener.local_addr()?;
    let admin = match cfg.admin_listen {
        Some(a) => Some(TcpListener::bind(a).await?),
        None => None,
    };
    let admin_addr = admin.as_ref().map(|l| l.local_addr()).transpose()?;
    let (_policy_tx, policy_rx) = tokio::sync::watch::channel(policy);
    let tls = Arc::new(kokon_tls::attested_server_config(
        policy_rx,
        clock,
        &[kokon_attest::Role::Proxy],
    ));
    let upstreams = cfg
        .gateways
        .iter()
        .map(|g| (g.name.clone(), Upstream::new(g.addr, tls.clone())))
        .collect();
    let state = Arc::new(State {
        upstreams,
        limiter: Mutex::new(Limiter::new(
            cfg.max_in_flight_per_client,
            cfg.requests_per_sec_per_client,
        )),
        in_flight: Arc::new(Semaphore::new(cfg.max_in_flight)),
        metrics: Metrics::new(),
        events: Default::default(),
        cfg,
    });
    if let Some(l) = admin {
        let m = state.clone();
        let svc = tower::service_fn(move |req: Request<Incoming>| {
            let m = m.clone();
            async move { Ok::<_, Infallible>(admin_reply(&m, &req)) }
        });
        tokio::spawn(kokon_link::serve_public(
            l,
            svc,
            PublicLimits::default(),
            shutdown.clone(),
        ));
    }
    let s = state.clone();
    let svc = tower::service_fn(move |req: Request<Incoming>| {
        let s = s.clone();
        async move { Ok::<_, Infallible>(handle(s, req).await) }
    });
    let limits = state.cfg.limits;
    tokio::spawn(kokon_link::serve_public(listener, svc, limits, shutdown));
    tracing::info!(%addr, gateways = state.upstreams.len(), "relay listening");
    Ok(RelayHandle {
        addr,
        admin_addr,
        state,
    })
}

fn admin_reply(state: &State, req: &Request<Incoming>) -> Response<Body> {
    match req.uri().path() {
        "/metrics" => Response::new(full_body(state.metrics.encode())),
        "/healthz" => Response::new(full_body("ok")),
        _ => plain(StatusCode::NOT_FOUND, "no such path"),
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(full_body(text));
    *r.status_mut() = status;
    r
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let from = req.extensions().get::<PeerAddr>().map(|p| p.0);
    let path = req.uri().path().to_string();
    let Some(rest) = path.strip_prefix(GATEWAYS) else {
        return plain(
            StatusCode::NOT_FOUND,
            "no such path: gateways are at /gateways/NAME",
        );
    };
    let (name, what) = rest.split_once('/').unwrap_or((rest, ""));
    let Some(upstream) = state.upstreams.get(name) else {
        state.metrics.request("unknown_gateway");
        return plain(
            StatusCode::NOT_FOUND,
            "this relay serves no gateway of that name",
        );
    };
    let Some(ip) = from.map(|a| a.ip()) else {
        return plain(StatusCode::INTERNAL_SERVER_ERROR, "no peer address");
    };
    tracing::debug!(from = %ip, gateway = name, "request");
    let (target, media_type) = match (req.method(), what) {
        (&Method::POST, "") => match ohttp_media(&req) {
            Some(t) => ("/ohttp", Some(t)),
            None => {
                state.metrics.request("unsupported_media_type");
                return plain(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "expected message/ohttp-req or message/ohttp-chunked-req",
                );
            }
        },
        (&Method::GET, "keys") => ("/.well-known/kokon-ohttp-keys", None),
        (&Method::GET, "ohttp-keys") => ("/.well-known/ohttp-gateway", None),
        _ => return plain(StatusCode::NOT_FOUND, "no such path"),
    };
    let admitted = match Admitted::new(&state, ip) {
        Ok(a) => a,
        Err(refusal) => {
            state.metrics.request(refusal);
            state.events.note(refusal);
            let mut r = plain(
                StatusCode::TOO_MANY_REQUESTS,
                "too many requests: slow down",
            );
            r.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            return r;
        }
    };
    let body = match read_bounded(req.into_body(), &state.cfg).await {
        Ok(b) => b,
        Err(status) => {
            state.metrics.request("request_body");
            return plain(
                status,
                "the request is too large, or its body did not arrive in time",
            );
        }
    };
    state.metrics.bytes_up(body.len());
    forward(&state, upstream, target, media_type, body, admitted).await
}

fn ohttp_media(req: &Request<Incoming>) -> Option<&'static str> {
    let t = req.headers().get(CONTENT_TYPE)?.as_bytes();
    [OHTTP_REQUEST, OHTTP_CHUNKED_REQUEST]
        .into_iter()
        .find(|m| m.as_bytes() == t)
}

async fn read_bounded(body: Incoming, cfg: &RelayConfig) -> Result<Bytes, StatusCode> {
    let collect = Limited::new(body, cfg.max_request).collect();
    match tokio::time::timeout(cfg.body_deadline, collect).await {
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(_)) => Err(StatusCode::PAYLOAD_TOO_LARGE),
        Err(_) => Err(StatusCode::REQUEST_TIMEOUT),
    }
}

/// One request admitted (per address and in total); both are given back
/// when this is dropped, which is when its answer has been passed on.
struct Admitted {
    state: Arc<State>,
    ip: IpAddr,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Admitted {
    fn new(state: &Arc<State>, ip: IpAddr) -> Result<Self, &'static str> {
        let slot = state
            .in_flight
            .clone()
            .try_acquire_owned()
            .map_err(|_| "relay_busy")?;
        lock(&state.limiter)
            .admit(ip, Instant::now())
            .map_err(Refusal::reason)?;
        state.metrics.in_flight(1);
        Ok(Self {
            state: state.clone(),
            ip,
            _slot: slot,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        lock(&self.state.limiter).done(self.ip);
        self.state.metrics.in_flight(-1);
    }
}

async fn forward(
    state: &Arc<State>,
    upstream: &Upstream,
    target: &'static str,
    media_type: Option<&'static str>,
    body: Bytes,
    admitted: Admitted,
) -> Response<Body> {
    // Only what the gateway needs: the method, its path, the media type
    // and the bytes. Nothing of the client's request is copied.
    let method = if media_type.is_some() {
        Method::POST
    } else {
        Method::GET
    };
    let mut req = Request::builder()
        .method(method)
        .uri(target)
        .body(Full::new(body))
        .expect("static request parts");
    if let Some(t) = media_type {
        req.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(t));
    }
    let answer = tokio::time::timeout(state.cfg.answer_timeout, upstream.send(req)).await;
    let answer = match answer {
        Ok(Ok(a)) => a,
        Ok(Err(why)) => {
            state.metrics.request("gateway_unreachable");
            state.events.note("gateway_unreachable");
            tracing::debug!(error = %why, "gateway unreachable");
            return plain(StatusCode::BAD_GATEWAY, "the gateway cannot be reached");
        }
        Err(_) => {
            state.metrics.request("gateway_timeout");
            state.events.note("gateway_timeout");
            return plain(
                StatusCode::GATEWAY_TIMEOUT,
                "the gateway did not answer in time",
            );
        }
    };
    state.metrics.request("forwarded");
    let (parts, body) = answer.into_parts();
    let mut r = Response::new(pass_through(state.clone(), body, admitted));
    *r.status_mut() = parts.status;
    for name in [CONTENT_TYPE, CACHE_CONTROL] {
        if let Some(v) = parts.headers.get(&name) {
            r.headers_mut().insert(name, v.clone());
        }
    }
    r
}

/// Streams the gateway's answer to the client as it arrives, at most
/// `max_response` bytes. If the client leaves, the gateway's stream is
/// dropped (which ends the job behind it).
fn pass_through(state: Arc<State>, mut body: Incoming, admitted: Admitted) -> Body {
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        let _admitted = admitted;
        let mut sent = 0usize;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                state.events.note("gateway_stream_broken");
                return;
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            sent += data.len();
            if sent > state.cfg.max_response {
                state.metrics.request("response_too_large");
                state.events.note("response_too_large");
                return;
            }
            state.metrics.bytes_down(data.len());
            if tx.send(data).await.is_err() {
                return;
            }
        }
    });
    frames_body(rx)
}
