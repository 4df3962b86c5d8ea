//! The worker's link to its proxy: dial, serve, re-dial.

use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use kokon_attest::Role;
use kokon_link::{Body, Call, error_reply, json_reply, read_call};
use kokon_money::{Signed, WorkerVoucher};
use kokon_proto::{Announce, ErrorCode, JobError, PROTOCOL_VERSION};
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
        let dial = tokio::select! {
            r = worker.tls.connect(worker.cfg.proxy, &[Role::Proxy]) => r,
            _ = shutdown.cancelled() => return,
        };
        // A live link is not dropped at shutdown: it drains (see serve_link).
        let round = match dial {
            Ok((tls, peer)) => {
                tracing::info!(proxy = %worker.cfg.proxy, peer = peer.short_id(), "linked to proxy");
                WorkerStats::bump(&worker.stats.links_established);
                let since = std::time::Instant::now();
                let ended = serve_link(&worker, tls, &shutdown).await;
                linked_round(&worker, ended, since.elapsed())
            }
            Err(kokon_tls::LinkError::PeerRefusedUs { .. }) => {
                linked_round(&worker, LinkEnd::CertificateRefused, Duration::ZERO)
            }
            Err(e) => {
                tracing::warn!(proxy = %worker.cfg.proxy, error = %e, "cannot link to proxy");
                if e.is_transient() {
                    Round::Transient
                } else {
                    Round::Refused
                }
            }
        };
        if shutdown.is_cancelled() {
            return;
        }
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

/// A link shorter than this that served nothing counts as a failure (the
/// proxy closed it at once), so the worker backs off instead of re-dialing
/// at full speed.
const SHORT_LINK: Duration = Duration::from_secs(5);

fn linked_round(worker: &Worker, ended: LinkEnd, lasted: Duration) -> Round {
    match ended {
        LinkEnd::CertificateRefused => {
            WorkerStats::bump(&worker.stats.links_refused_by_proxy);
            tracing::error!(proxy = %worker.cfg.proxy,
                "the proxy refused this worker's certificate: its registry does not allow this worker's \
                 image (or evidence kind, TCB status or models); the proxy's log names the check. \
                 Compare `kokon attest show` of a certificate with the registry's lists");
            Round::Refused
        }
        LinkEnd::Told(why) => {
            WorkerStats::bump(&worker.stats.links_refused_by_proxy);
            tracing::error!(proxy = %worker.cfg.proxy, reason = %why, "the proxy refused this worker");
            Round::Refused
        }
        LinkEnd::Revoked(why) => {
            tracing::error!(proxy = %worker.cfg.proxy, reason = why.reason(), error = %why,
                "link to proxy dropped: the registry no longer allows it");
            Round::Refused
        }
        LinkEnd::Closed if lasted < SHORT_LINK => {
            tracing::warn!(proxy = %worker.cfg.proxy, "the proxy closed the link at once; backing off");
            Round::Transient
        }
        LinkEnd::Closed => {
            tracing::warn!(proxy = %worker.cfg.proxy, "link to proxy closed");
            Round::Linked
        }
    }
}

/// How a served link ended.
enum LinkEnd {
    Closed,
    CertificateRefused,
    /// The proxy said why it will not route to this worker.
    Told(String),
    /// The registry changed and no longer allows the proxy.
    Revoked(kokon_attest::AttestError),
}

fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::random_range(0.5..1.0))
}

/// Serves jobs on the link until it ends. At `shutdown` the link drains:
/// the proxy is told to send no new jobs, the running ones finish.
async fn serve_link(
    worker: &Worker,
    tls: kokon_tls::ClientLink,
    shutdown: &CancellationToken,
) -> LinkEnd {
    let w = worker.clone();
    let limits = worker.link_limits();
    let told = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let t = told.clone();
    let handle = move |req| route(w.clone(), t.clone(), req);
    let revocation = tls.revocation();
    let ended = kokon_link::serve_link(tls, limits, shutdown, handle).await;
    if let Some(why) = revocation.get() {
        return LinkEnd::Revoked(why.clone());
    }
    if let Some(why) = told.lock().unwrap_or_else(|e| e.into_inner()).take() {
        return LinkEnd::Told(why);
    }
    match ended {
        Err(e) if kokon_tls::refused_our_certificate(&e) => LinkEnd::CertificateRefused,
        Err(e) => {
            tracing::debug!(error = %e, "link ended with an error");
            LinkEnd::Closed
        }
        Ok(()) => LinkEnd::Closed,
    }
}

async fn route(
    worker: Worker,
    told: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    req: Request<Incoming>,
) -> Response<Body> {
    let call = match read_call(req, &worker.link_limits()).await {
        Ok(c) => c,
        Err(e) => return e.reply(),
    };
    match call {
        Call::Announce => announce(&worker),
        Call::Job(header, payload) => crate::job::accept(worker, header, payload).await,
        Call::VaultVoucher(v) => vault_voucher(&worker, v).await,
        Call::Refused(e) => {
            *told.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.message);
            json_reply(&"ok")
        }
        Call::Cancel(c) if worker.running.cancel(&c.request_id) => json_reply(&"ok"),
        Call::Cancel(_) => error_reply(
            StatusCode::NOT_FOUND,
            JobError::new(ErrorCode::BadRequest, "no such job runs here"),
        ),
        other @ (Call::Models
        | Call::Voucher(_)
        | Call::Close(_)
        | Call::Dispute(_)
        | Call::Reconcile(_)
        | Call::Candidates(_)
        | Call::CreditKeys
        | Call::CreditBuy(_)
        | Call::CreditChange(_)) => error_reply(
            StatusCode::NOT_FOUND,
            JobError::new(
                ErrorCode::BadRequest,
                format!("a worker does not serve `{}`", other.name()),
            ),
        ),
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
    json_reply(&a)
}

async fn vault_voucher(worker: &Worker, v: Signed<WorkerVoucher>) -> Response<Body> {
    let Some(pay) = &worker.pay else {
        return error_reply(
            StatusCode::NOT_FOUND,
            JobError::new(ErrorCode::BadRequest, "this worker takes no payments"),
        );
    };
    match crate::pay::accept_voucher(pay, v).await {
        Ok(_) => json_reply(&"ok"),
        Err(e) => {
            tracing::warn!(error = %e, "vault voucher refused");
            error_reply(
                StatusCode::BAD_REQUEST,
                JobError::new(ErrorCode::BadRequest, e),
            )
        }
    }
}
