//! The worker's link to its proxy: dial, serve, re-dial.

use std::convert::Infallible;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use kokon_attest::Role;
use kokon_link::{Body, full_body};
use kokon_proto::{Announce, PROTOCOL_VERSION, paths};
use tokio_util::sync::CancellationToken;

use crate::{Worker, WorkerStats};

/// How a dial-and-serve round ended, for the backoff.
enum Round {
    /// A link was up (and has now closed): start the backoff afresh.
    Linked,
    /// Network trouble: back off exponentially.
    Transient,
    /// Refused (policy, version): only a change on one side helps, so wait long.
    Refused,
}

/// Dials the proxy and serves jobs until `shutdown`; re-dials on failure.
pub async fn run(worker: Worker, shutdown: CancellationToken) {
    let mut backoff = worker.cfg.backoff_min;
    loop {
        let attempt = async {
            match worker.tls.connect(worker.cfg.proxy, &[Role::Proxy]).await {
                Ok((tls, peer)) => {
                    tracing::info!(proxy = %worker.cfg.proxy, peer = peer.short_id(), "linked to proxy");
                    WorkerStats::bump(&worker.stats.links_established);
                    if serve_link(&worker, tls).await {
                        WorkerStats::bump(&worker.stats.links_refused_by_proxy);
                        tracing::error!(proxy = %worker.cfg.proxy,
                            "the proxy refused this worker's certificate: its registry does not allow this worker's \
                             image (or evidence kind, TCB status or models); the proxy's log names the check. \
                             Compare `kokon attest show` of a certificate with the registry's lists");
                        return Round::Refused;
                    }
                    tracing::warn!(proxy = %worker.cfg.proxy, "link to proxy closed");
                    Round::Linked
                }
                Err(e) => {
                    tracing::warn!(proxy = %worker.cfg.proxy, error = %e, "cannot link to proxy");
                    if e.is_transient() {
                        Round::Transient
                    } else {
                        Round::Refused
                    }
                }
            }
        };
        let round = tokio::select! {
            round = attempt => round,
            _ = shutdown.cancelled() => return,
        };
        backoff = match round {
            Round::Linked => worker.cfg.backoff_min,
            Round::Transient => (backoff * 2).min(worker.cfg.backoff_max),
            Round::Refused => worker.cfg.backoff_max,
        };
        let pause = jitter(backoff);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::random_range(0.5..1.0))
}

/// Serves jobs on the link until it ends; true when it ended because the
/// proxy refused our certificate.
async fn serve_link(worker: &Worker, tls: kokon_tls::ClientStream<tokio::net::TcpStream>) -> bool {
    let w = worker.clone();
    let service = hyper::service::service_fn(move |req| {
        let w = w.clone();
        async move { Ok::<_, Infallible>(route(w, req).await) }
    });
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(5)))
        .keep_alive_timeout(Duration::from_secs(10))
        .max_concurrent_streams(worker.cfg.max_jobs.saturating_mul(2).max(8))
        .serve_connection(TokioIo::new(tls), service);
    match conn.await {
        Err(e) if kokon_tls::refused_our_certificate(&e) => true,
        Err(e) => {
            tracing::debug!(error = %e, "link ended with an error");
            false
        }
        Ok(()) => false,
    }
}

async fn route(worker: Worker, req: Request<Incoming>) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, paths::ANNOUNCE) => announce(&worker),
        (&Method::POST, paths::JOB) => crate::job::accept(worker, req).await,
        (&Method::POST, paths::VAULT_VOUCHER) => vault_voucher(&worker, req).await,
        _ => plain(StatusCode::NOT_FOUND, "no such path"),
    }
}

fn announce(worker: &Worker) -> Response<Body> {
    let a = Announce {
        protocol_version: PROTOCOL_VERSION,
        models: worker
            .engine
            .models()
            .into_iter()
            .map(|mut m| {
                m.hash = Some(crate::pay::model_hash(m.hash, &m.name));
                m
            })
            .collect(),
        max_jobs: worker.cfg.max_jobs,
        price_milli: worker.cfg.price_milli,
        payout: worker.pay.as_ref().map(|p| p.payout),
    };
    Response::new(full_body(serde_json::to_vec(&a).unwrap_or_default()))
}

async fn vault_voucher(worker: &Worker, req: Request<Incoming>) -> Response<Body> {
    use http_body_util::BodyExt;
    let Some(pay) = &worker.pay else {
        return plain(StatusCode::NOT_FOUND, "this worker takes no payments");
    };
    let body = match http_body_util::Limited::new(req.into_body(), 16 * 1024)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => return plain(StatusCode::PAYLOAD_TOO_LARGE, "voucher too large"),
    };
    match crate::pay::accept_voucher(pay, body).await {
        Ok(_) => plain(StatusCode::OK, "ok"),
        Err(e) => {
            tracing::warn!(error = %e, "vault voucher refused");
            let mut r = Response::new(full_body(e.into_bytes()));
            *r.status_mut() = StatusCode::BAD_REQUEST;
            r
        }
    }
}

pub(crate) fn plain(status: StatusCode, msg: &'static str) -> Response<Body> {
    let mut r = Response::new(full_body(msg));
    *r.status_mut() = status;
    r
}
