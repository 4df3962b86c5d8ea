//! Public HTTP servers (the gateway's OpenAI API, the admin ports): every
//! connection bounded in number and in time, and a drain on shutdown.
//!
//! `axum::serve` sets no timer, so hyper enforces no header timeout: a
//! stranger could hold connections open with half-sent requests forever.
//! Here a connection must send its first byte and then each request's
//! headers within `header_read_timeout` (HTTP/1: this also closes idle
//! keep-alive connections), at most `max_connections` are held at once, and
//! on shutdown the listener closes at once while requests in flight get
//! `drain_grace` to finish.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::limits::PublicLimits;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The address a request on a public port came from (a request extension).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// Serves `service` on `listener` until `shutdown`, then drains: returns
/// when every connection has finished or the grace period is over.
pub async fn serve_public<S, B>(
    listener: TcpListener,
    service: S,
    limits: PublicLimits,
    shutdown: CancellationToken,
) where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    serve(listener, None, service, limits, shutdown).await
}

/// [`serve_public`] over TLS: the handshake, too, must finish within the
/// header-read timeout.
pub async fn serve_public_tls<S, B>(
    listener: TcpListener,
    tls: tokio_rustls::TlsAcceptor,
    service: S,
    limits: PublicLimits,
    shutdown: CancellationToken,
) where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    serve(listener, Some(tls), service, limits, shutdown).await
}

async fn serve<S, B>(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    service: S,
    limits: PublicLimits,
    shutdown: CancellationToken,
) where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let builder = Arc::new(builder(&limits));
    loop {
        let (tcp, from) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    // Out of descriptors, say: do not spin.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%from, "connection refused: at the connection cap");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (builder, service, tls) = (builder.clone(), service.clone(), tls.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            if !first_byte_within(&tcp, limits.header_read_timeout).await {
                return;
            }
            let service = TowerToHyperService::new(tower::ServiceExt::map_request(
                service,
                move |mut r: Request<Incoming>| {
                    r.extensions_mut().insert(PeerAddr(from));
                    r
                },
            ));
            let ended = match tls {
                None => {
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
                    watcher.watch(conn.into_owned()).await
                }
                Some(tls) => {
                    let hs = tokio::time::timeout(limits.header_read_timeout, tls.accept(tcp));
                    let Ok(Ok(stream)) = hs.await else {
                        return tracing::debug!(%from, "TLS handshake failed or timed out");
                    };
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    watcher.watch(conn.into_owned()).await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(limits.drain_grace) => {
            tracing::warn!(grace_secs = limits.drain_grace.as_secs(), "requests still running after the drain grace; closing them");
        }
    }
}

fn builder(limits: &PublicLimits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    b.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(limits.idle_timeout / 2))
        .keep_alive_timeout(limits.idle_timeout / 2)
        .max_concurrent_streams(limits.max_streams);
    b
}

/// Whether the peer sends anything within `d` (hyper's protocol detection
/// would otherwise wait for it forever).
async fn first_byte_within(tcp: &TcpStream, d: std::time::Duration) -> bool {
    let mut b = [0u8; 1];
    matches!(tokio::time::timeout(d, tcp.peek(&mut b)).await, Ok(Ok(n)) if n > 0)
}
