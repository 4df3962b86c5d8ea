//! Client links: list models, relay jobs, take vouchers and close requests.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use kokon_attest::Clock as _;
use kokon_attest::VerifiedPeer;
use kokon_link::{Body, Call, Cancels, error_reply, json_reply, read_call, serve_link};
use kokon_proto::{ErrorCode, JobError, ModelsReply};
use tokio_util::sync::CancellationToken;

use crate::{State, job, workers};

/// Serves one client link until it closes.
pub(crate) async fn serve_client(
    state: Arc<State>,
    tls: kokon_tls::ServerLink,
    peer: VerifiedPeer,
    drain: &CancellationToken,
) {
    tracing::info!(peer = peer.short_id(), "client linked");
    let limits = state.cfg.client_link;
    // Jobs on this link, which this link (only) may cancel.
    let cancels = Arc::new(Cancels::default());
    let handle = move |req: Request<Incoming>| route(state.clone(), cancels.clone(), req);
    if let Err(e) = serve_link(tls, limits, drain, handle).await {
        tracing::debug!(error = %e, "client link ended with an error");
    }
}

/// Answers one request from a client: on its link, or decapsulated from
/// Oblivious HTTP (then `cancels` holds that request's job only).
pub(crate) async fn route<B: kokon_link::CallBody>(
    state: Arc<State>,
    cancels: Arc<Cancels>,
    req: Request<B>,
) -> Response<Body> {
    let call = match read_call(req, &state.cfg.client_link).await {
        Ok(c) => c,
        Err(e) => return e.reply(),
    };
    match call {
        Call::Models => json_reply(&ModelsReply {
            models: workers::offers(&state),
        }),
        Call::Job(header, payload) => job::start(state, header, payload, &cancels),
        Call::Candidates(req) => {
            let listed = workers::candidates(&state, &req);
            let outcome = listed.as_ref().map_or_else(|e| e.code.as_str(), |_| "ok");
            state.metrics.candidate_list(&req.model, outcome);
            match listed {
                Ok(reply) => json_reply(&reply),
                Err(e) => error_reply(StatusCode::SERVICE_UNAVAILABLE, e),
            }
        }
        Call::Cancel(c) if cancels.cancel(&c.request_id) => json_reply(&"ok"),
        Call::Cancel(_) => error_reply(
            StatusCode::NOT_FOUND,
            JobError::new(ErrorCode::BadRequest, "no such job runs on this link"),
        ),
        Call::Voucher(v) => match state.pay.as_deref() {
            Some(pay) => match crate::pay::accept_voucher(pay, v).await {
                Ok(_) => json_reply(&"ok"),
                Err(e) => {
                    state.events.note("voucher_refused");
                    tracing::debug!(error = %e.message, "voucher refused");
                    error_reply(StatusCode::BAD_REQUEST, e)
                }
            },
            None => unpaid(),
        },
        Call::Close(req) => match state.pay.as_deref() {
            Some(pay) => match crate::pay::close(pay, req).await {
                Ok(reply) => json_reply(&reply),
                Err(e) => error_reply(StatusCode::BAD_REQUEST, e),
            },
            None => unpaid(),
        },
        Call::Dispute(req) => match state.pay.as_deref() {
            Some(pay) => match crate::pay::dispute(pay, &req).await {
                Ok(banned) => {
                    state.events.note("receipt_disputed");
                    if let Some(worker) = banned {
                        workers::stop_routing(&state, &worker);
                    }
                    json_reply(&"ok")
                }
                Err(e) => error_reply(StatusCode::BAD_REQUEST, e),
            },
            None => unpaid(),
        },
        Call::Reconcile(req) => match state.pay.as_deref() {
            Some(pay) => {
                let now = kokon_attest::SystemClock.now_unix();
                match crate::pay::reconcile(pay, &req, now).await {
                    Ok(reply) => json_reply(&reply),
                    Err(e) => error_reply(StatusCode::BAD_REQUEST, e),
                }
            }
            None => unpaid(),
        },
        Call::CreditKeys => match state.pay.as_deref().map(crate::credit::keys) {
            Some(Ok(doc)) => json_reply(&doc),
            Some(Err(e)) => error_reply(StatusCode::NOT_FOUND, e),
            None => unpaid(),
        },
        Call::CreditBuy(req) => match state.pay.as_deref() {
            Some(pay) => match crate::credit::sell(pay, &req).await {
                Ok(reply) => json_reply(&reply),
                Err(e) => {
                    state.events.note("credit_sale_refused");
                    error_reply(status_of(&e), e)
                }
            },
            None => unpaid(),
        },
        Call::CreditChange(req) => match state.pay.as_deref() {
            Some(pay) => match crate::credit::change(pay, &req).await {
                Ok(reply) => json_reply(&reply),
                Err(e) => {
                    state.events.note("credit_change_refused");
                    error_reply(status_of(&e), e)
                }
            },
            None => unpaid(),
        },
        other @ (Call::Announce | Call::VaultVoucher(_) | Call::Refused(_)) => error_reply(
            StatusCode::NOT_FOUND,
            JobError::new(
                ErrorCode::BadRequest,
                format!("a proxy does not serve `{}` to clients", other.name()),
            ),
        ),
    }
}

fn status_of(e: &JobError) -> StatusCode {
    match e.code {
        ErrorCode::PaymentRequired => StatusCode::PAYMENT_REQUIRED,
        ErrorCode::Unavailable => StatusCode::CONFLICT,
        _ => StatusCode::BAD_REQUEST,
    }
}

fn unpaid() -> Response<Body> {
    error_reply(
        StatusCode::NOT_FOUND,
        JobError::new(ErrorCode::BadRequest, "this proxy takes no payments"),
    )
}
