//! The Oblivious HTTP gateway in front of a proxy (RFC 9458, chunked
//! OHTTP): a relay forwards encapsulated requests from clients it does not
//! name; the gateway removes the encapsulation, hands the request inside to
//! the proxy, which answers it as it would on a client link (a job inside
//! is still sealed to its worker), and encapsulates the answer, streamed
//! chunk by chunk when asked. It runs in the proxy's process (its keys are
//! the proxy TEE's) but is a crate of its own: `kokon-proxy` itself is built
//! from no HPKE or AEAD crate (its `tests/blind.rs`), and what this crate
//! opens is the outer layer only.
//!
//! The keys are generated in this process (inside the proxy's TEE), never
//! written out, rotated every `ohttp_key_rotation` with the previous key
//! still accepted until the next rotation, and served two ways:
//! `application/ohttp-keys` for any client, and signed by the attested key
//! for Kokon clients, which verify the certificate before they use a key.
//! Every key is also published in the registry before any client is given
//! it (at start, and at each rotation before the new key is handed out),
//! so that a client can check it holds the key everyone holds.
//!
//! Nothing here logs or counts a client: the proxy sees the relay's
//! address only, and keeps no record of it.

use std::convert::Infallible;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use kokon_link::{Body, frames_body, full_body, read_body};
use kokon_ohttp::document::KeyDocument;
use kokon_ohttp::{GatewayKeys, OhttpError, ResponseKey, chunked, encap, media, msg};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use kokon_proxy::{KeyPublisher, ProxyHandle};

/// Where the gateway takes encapsulated requests.
pub const GATEWAY_PATH: &str = "/ohttp";
/// The key configurations (RFC 9540's well-known name).
pub const KEYS_PATH: &str = "/.well-known/ohttp-gateway";
/// The key configurations signed by the attested key.
pub const DOCUMENT_PATH: &str = "/.well-known/kokon-ohttp-keys";
/// Largest encapsulated request: a job payload and its header fields.
pub const MAX_REQUEST: usize = kokon_proto::MAX_JOB_PAYLOAD + 64 * 1024;
/// Largest answer sent whole (`message/ohttp-res`); streamed answers have
/// no total bound here (the job's own bounds apply).
pub const MAX_WHOLE_RESPONSE: usize = 4 << 20;

/// Gateway settings.
#[derive(Clone, Copy, Debug)]
pub struct GatewayConfig {
    /// Where relays connect (TLS).
    pub listen: std::net::SocketAddr,
    /// How often a new key is made; the previous one is accepted until the
    /// next rotation [default: 24 h].
    pub key_rotation: std::time::Duration,
    /// Limits of the port.
    pub limits: kokon_link::PublicLimits,
    /// Longest time an encapsulated request's body may take to arrive
    /// [default: 30 s].
    pub body_deadline: std::time::Duration,
}

impl GatewayConfig {
    pub fn new(listen: std::net::SocketAddr) -> Self {
        Self {
            listen,
            key_rotation: std::time::Duration::from_secs(24 * 3600),
            limits: kokon_link::PublicLimits::default(),
            body_deadline: std::time::Duration::from_secs(30),
        }
    }
}

/// A running gateway.
#[derive(Clone, Debug)]
pub struct GatewayHandle {
    pub addr: std::net::SocketAddr,
}

/// The gateway's keys, and the proxy it answers with.
struct Gateway {
    keys: RwLock<GatewayKeys>,
    proxy: ProxyHandle,
    cfg: GatewayConfig,
}

impl Gateway {
    fn keys(&self) -> std::sync::RwLockReadGuard<'_, GatewayKeys> {
        self.keys.read().unwrap_or_else(|e| e.into_inner())
    }

    fn keys_mut(&self) -> std::sync::RwLockWriteGuard<'_, GatewayKeys> {
        self.keys.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// How long a failed publication waits before it is tried again.
const REPUBLISH_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

/// Rotates the keys every `key_rotation`: the next key is staged, published
/// (tried again until the registry takes it; meanwhile the current keys
/// stay), and only then handed out.
async fn rotate_loop(g: Arc<Gateway>, publisher: Arc<KeyPublisher>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(g.cfg.key_rotation) => {}
            _ = stop.cancelled() => return,
        }
        let body = g.keys_mut().stage();
        while let Err(e) = publisher.ohttp(body.clone()).await {
            tracing::warn!(error = %e, "cannot publish the next gateway key in the registry; the current key stays, trying again in 30 s");
            tokio::select! {
                _ = tokio::time::sleep(REPUBLISH_AFTER) => {}
                _ = stop.cancelled() => return,
            }
        }
        g.keys_mut().promote();
        tracing::info!(key_id = g.keys().current().key_id, "gateway key rotated");
    }
}

/// Binds `cfg.listen` and serves the gateway over TLS (the proxy's RA-TLS
/// certificate, no client certificate) until `shutdown`, with fresh keys
/// that rotate meanwhile, each published by `publisher` before it is
/// handed out (the first before this returns).
pub async fn start(
    cfg: GatewayConfig,
    proxy: ProxyHandle,
    publisher: Arc<KeyPublisher>,
    shutdown: CancellationToken,
) -> std::io::Result<GatewayHandle> {
    let listener = TcpListener::bind(cfg.listen).await?;
    let addr = listener.local_addr()?;
    let keys = GatewayKeys::generate();
    publisher.ohttp(keys.encoded()).await.map_err(|e| {
        std::io::Error::other(format!(
            "cannot publish the gateway's keys in the registry: {e}"
        ))
    })?;
    let gateway = Arc::new(Gateway {
        keys: RwLock::new(keys),
        proxy,
        cfg,
    });
    tokio::spawn(rotate_loop(gateway.clone(), publisher, shutdown.clone()));
    let tls = Arc::new(gateway.proxy.tls().public_server_config());
    let tls = tokio_rustls::TlsAcceptor::from(tls);
    let limits = cfg.limits;
    let service = tower::service_fn(move |req: Request<Incoming>| {
        let gateway = gateway.clone();
        async move { Ok::<_, Infallible>(handle(gateway, req).await) }
    });
    tokio::spawn(kokon_link::serve_public_tls(
        listener, tls, service, limits, shutdown,
    ));
    tracing::info!(%addr, "Oblivious HTTP gateway listening");
    Ok(GatewayHandle { addr })
}

async fn handle(gateway: Arc<Gateway>, req: Request<Incoming>) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, KEYS_PATH) => keys_reply(gateway.keys().encoded()),
        (&Method::GET, DOCUMENT_PATH) => document_reply(&gateway),
        (&Method::POST, GATEWAY_PATH) => encapsulated(&gateway, req).await,
        _ => plain(StatusCode::NOT_FOUND, "no such resource at this gateway"),
    }
}

fn keys_reply(keys: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(full_body(keys));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(media::KEYS));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("max-age=60"));
    r
}

fn document_reply(gateway: &Gateway) -> Response<Body> {
    let keys = gateway.keys().encoded();
    let message = kokon_ohttp::document::signed_message(&keys);
    match gateway.proxy.tls().identity().sign(&message) {
        Ok((sig, cert)) => {
            let doc = KeyDocument::new(&keys, &cert, &sig);
            let mut r = kokon_link::json_reply(&doc);
            r.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("max-age=60"));
            r
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot sign the OHTTP keys");
            plain(StatusCode::SERVICE_UNAVAILABLE, "keys cannot be signed now")
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Whole,
    Chunked,
}

async fn encapsulated(gateway: &Gateway, req: Request<Incoming>) -> Response<Body> {
    let metrics = gateway.proxy.metrics();
    let kind = match req.headers().get(CONTENT_TYPE).map(HeaderValue::as_bytes) {
        Some(t) if t == media::REQUEST.as_bytes() => Kind::Whole,
        Some(t) if t == media::CHUNKED_REQUEST.as_bytes() => Kind::Chunked,
        _ => {
            metrics.ohttp_request("unsupported_media_type");
            return plain(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected message/ohttp-req or message/ohttp-chunked-req",
            );
        }
    };
    let within = kokon_link::LinkLimits {
        body_deadline: gateway.cfg.body_deadline,
        ..kokon_link::LinkLimits::CLIENT
    };
    let body = match read_body(req.into_body(), MAX_REQUEST, &within).await {
        Ok(b) => b,
        Err(e) => {
            metrics.ohttp_request("body");
            return plain(
                e.status,
                "the encapsulated request is too large or was cut short",
            );
        }
    };
    let opened = {
        let keys = gateway.keys();
        match kind {
            Kind::Whole => encap::decapsulate_request(&keys, &body),
            Kind::Chunked => chunked::decapsulate_request(&keys, &body),
        }
    };
    let (plain_req, key) = match opened.and_then(|(p, k)| Ok((msg::decode_request(&p)?, k))) {
        Ok(x) => x,
        Err(e) => {
            metrics.ohttp_request(e.kind());
            return refusal(&e);
        }
    };
    metrics.ohttp_request(match kind {
        Kind::Whole => "whole",
        Kind::Chunked => "chunked",
    });
    // A job sent this way is cancelled by its stream ending (the relay's
    // request closing), never by name.
    let answer = gateway.proxy.answer(plain_req.map(Full::new)).await;
    match kind {
        Kind::Whole => whole(key, answer).await,
        Kind::Chunked => streamed(key, answer),
    }
}

/// RFC 9458 §5.2/§5.3: 422 with the `ohttp-key` problem for a key the
/// gateway does not hold (the client refetches the keys), else 400/413.
fn refusal(e: &OhttpError) -> Response<Body> {
    match e.problem() {
        Some(problem) => {
            let mut r = Response::new(full_body(problem.to_string()));
            *r.status_mut() = e.status();
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(media::PROBLEM));
            r
        }
        None => plain(e.status(), &e.to_string()),
    }
}

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    let mut r = Response::new(full_body(text.to_string()));
    *r.status_mut() = status;
    r
}

async fn whole(key: ResponseKey, answer: Response<Body>) -> Response<Body> {
    let (parts, body) = answer.into_parts();
    let Ok(body) = Limited::new(body, MAX_WHOLE_RESPONSE).collect().await else {
        return plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the answer is too large to send whole: use message/ohttp-chunked-req",
        );
    };
    let inner = msg::encode_response(parts.status, &parts.headers, &body.to_bytes());
    let mut r = Response::new(full_body(encap::encapsulate_response(&key, &inner)));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(media::RESPONSE));
    r
}

/// Streams the answer as a chunked response: each body frame becomes one
/// content chunk, sealed and sent as it comes. When the relay goes away the
/// answer's body is dropped, which ends (cancels) the job behind it.
fn streamed(key: ResponseKey, answer: Response<Body>) -> Response<Body> {
    let (parts, mut body) = answer.into_parts();
    let (mut sealer, mut head) = chunked::ResponseSealer::new(&key);
    head.extend(sealer.chunk(&msg::stream_head(parts.status, &parts.headers)));
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        if tx.send(head.into()).await.is_err() {
            return;
        }
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if data.is_empty() {
                continue;
            }
            if tx
                .send(sealer.chunk(&msg::stream_chunk(&data)).into())
                .await
                .is_err()
            {
                return;
            }
        }
        let mut end = sealer.chunk(&msg::stream_end());
        end.extend(sealer.finish());
        let _ = tx.send(end.into()).await;
    });
    let mut r = Response::new(frames_body(rx));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(media::CHUNKED_RESPONSE),
    );
    r
}
