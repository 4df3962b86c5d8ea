//! Client links: list models, and relay jobs to workers.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use kokon_attest::VerifiedPeer;
use kokon_link::{Body, error_body, frames_body, full_body, read_job};
use kokon_proto::{ErrorCode, Frame, FrameDecoder, JobError, JobHeader, ModelsReply, paths};
use kokon_route::{RouteError, WorkerId};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::pay::Admission;
use crate::{State, lock, workers};
use kokon_attest::Clock as _;

/// Serves one client link until it closes.
pub(crate) async fn serve_client(
    state: Arc<State>,
    tls: kokon_tls::ServerStream<TcpStream>,
    peer: VerifiedPeer,
) {
    tracing::info!(peer = peer.short_id(), "client linked");
    let service = hyper::service::service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(route(state, req).await) }
    });
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(5)))
        .keep_alive_timeout(Duration::from_secs(10))
        .max_concurrent_streams(1024)
        .serve_connection(TokioIo::new(tls), service);
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "client link ended with an error");
    }
}

async fn route(state: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, paths::MODELS) => {
            let body = serde_json::to_vec(&ModelsReply {
                models: workers::offers(&state),
            })
            .unwrap_or_default();
            Response::new(full_body(body))
        }
        (&Method::POST, paths::JOB) => job(state, req).await,
        (&Method::POST, paths::VOUCHER) => voucher(state, req).await,
        (&Method::POST, paths::CLOSE) => close(state, req).await,
        _ => {
            let mut r = Response::new(full_body(&b"no such path"[..]));
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    }
}

async fn voucher(state: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let (pay, body) = match paid_body(&state, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match crate::pay::accept_voucher(&pay, &body).await {
        Ok(_) => Response::new(full_body(&b"ok"[..])),
        Err(e) => {
            tracing::warn!(error = %e.message, "voucher refused");
            status(StatusCode::BAD_REQUEST, e)
        }
    }
}

async fn close(state: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let (pay, body) = match paid_body(&state, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match crate::pay::close(&pay, &body).await {
        Ok(reply) => Response::new(full_body(serde_json::to_vec(&reply).unwrap_or_default())),
        Err(e) => status(StatusCode::BAD_REQUEST, e),
    }
}

/// The payment state and a small request body, or the response refusing it.
async fn paid_body(
    state: &State,
    req: Request<Incoming>,
) -> Result<(Arc<crate::ProxyPay>, Bytes), Response<Body>> {
    let refuse = |code, msg| status(code, JobError::new(ErrorCode::BadRequest, msg));
    let Some(pay) = state.pay.clone() else {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            "this proxy takes no payments",
        ));
    };
    match http_body_util::Limited::new(req.into_body(), 16 * 1024)
        .collect()
        .await
    {
        Ok(b) => Ok((pay, b.to_bytes())),
        Err(_) => Err(refuse(StatusCode::PAYLOAD_TOO_LARGE, "request too large")),
    }
}

fn status(code: StatusCode, e: JobError) -> Response<Body> {
    let mut r = Response::new(full_body(serde_json::to_vec(&e).unwrap_or_default()));
    *r.status_mut() = code;
    r
}

async fn job(state: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let (header, payload) = match read_job(req).await {
        Ok(x) => x,
        Err(e) => return Response::new(error_body(e)),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(relay(state, header, payload, tx));
    Response::new(frames_body(rx))
}

/// How one attempt on one worker ended.
enum Attempt {
    /// The job ended (successfully or with a final error sent to the client).
    Finished(&'static str),
    /// The worker failed before the first byte; safe to try another.
    Retry(JobError),
    /// The client went away.
    ClientGone,
}

async fn relay(state: Arc<State>, header: JobHeader, payload: Bytes, tx: mpsc::Sender<Bytes>) {
    let mut tried: Vec<WorkerId> = Vec::new();
    let mut last: Option<JobError> = None;
    let outcome = loop {
        if tried.len() as u32 >= state.cfg.max_attempts {
            break send_final(&tx, last.take().unwrap_or_else(unavailable)).await;
        }
        let picked = lock(&state.router).pick(&header.model, header.max_price_milli, &tried);
        let id = match picked {
            Ok(id) => id,
            Err(e) => break send_final(&tx, last.take().unwrap_or_else(|| route_error(e))).await,
        };
        if !tried.is_empty() {
            state.metrics.retry();
        }
        tried.push(id);
        let admission = match admit(&state, id, &header).await {
            Ok(a) => a,
            Err(e) => {
                lock(&state.router).release(id);
                break send_final(&tx, e).await;
            }
        };
        let attempt = attempt(
            &state,
            id,
            &header,
            payload.clone(),
            &tx,
            admission.as_ref(),
        )
        .await;
        lock(&state.router).release(id);
        if let (Some(pay), Some(a)) = (&state.pay, &admission)
            && !matches!(attempt, Attempt::Finished("ok" | "receipt_rejected"))
        {
            crate::pay::release(pay, a).await;
        }
        match attempt {
            Attempt::Finished(outcome) => break outcome,
            Attempt::ClientGone => break "cancelled",
            Attempt::Retry(e) => {
                tracing::info!(request_id = %header.request_id, worker = id, code = e.code.as_str(), "worker failed before first byte; retrying");
                last = Some(e);
            }
        }
    };
    state.metrics.job(&header.model, outcome);
}

/// Reserves the job's credit at worker `id`'s price (paid networks only).
async fn admit(
    state: &State,
    id: WorkerId,
    header: &JobHeader,
) -> Result<Option<Admission>, JobError> {
    let Some(pay) = &state.pay else {
        return Ok(None);
    };
    let price = workers::served(state, id, &header.model).map_or(u32::MAX, |s| s.price_milli);
    crate::pay::admit(pay, header, price).await.map(Some)
}

fn unavailable() -> JobError {
    JobError::new(ErrorCode::WorkerUnavailable, "no worker could take the job")
}

fn route_error(e: RouteError) -> JobError {
    let code = match e {
        RouteError::NoWorkerForModel => ErrorCode::ModelNotFound,
        RouteError::AllBusy => ErrorCode::Busy,
        RouteError::OverPrice => ErrorCode::OverPrice,
    };
    JobError::new(code, e.to_string())
}

async fn send_final(tx: &mpsc::Sender<Bytes>, err: JobError) -> &'static str {
    let code = err.code.as_str();
    let _ = tx.send(Frame::Error(err).encode()).await;
    code
}

async fn attempt(
    state: &State,
    id: WorkerId,
    header: &JobHeader,
    payload: Bytes,
    tx: &mpsc::Sender<Bytes>,
    admission: Option<&Admission>,
) -> Attempt {
    let retry = |msg: String| Attempt::Retry(JobError::new(ErrorCode::WorkerUnavailable, msg));
    let Some(mut sender) = workers::sender(state, id) else {
        return retry("worker left".into());
    };
    let mut req = Request::post(paths::JOB)
        .body(Full::new(payload))
        .expect("static request parts");
    header.write(req.headers_mut());
    let resp = tokio::select! {
        r = sender.send_request(req) => r,
        _ = tx.closed() => return Attempt::ClientGone,
    };
    let mut body = match resp {
        Ok(r) => r.into_body(),
        Err(e) => return retry(format!("worker link failed: {e}")),
    };
    let mut dec = FrameDecoder::new();
    let mut delivered = false;
    loop {
        // Dropping `body` on return resets the worker's stream: that is how a
        // client's cancellation reaches the worker.
        let next = tokio::select! {
            f = tokio::time::timeout(state.cfg.job_idle_timeout, body.frame()) => match f {
                Ok(f) => f,
                Err(_) => return failed(tx, delivered, "worker went silent".into()).await,
            },
            _ = tx.closed() => return Attempt::ClientGone,
        };
        let data = match next {
            Some(Ok(f)) => match f.into_data() {
                Ok(d) => d,
                Err(_) => continue, // trailers: none expected
            },
            Some(Err(e)) => {
                return failed(tx, delivered, format!("worker stream broke: {e}")).await;
            }
            None => {
                return failed(
                    tx,
                    delivered,
                    "worker ended the stream without a final frame".into(),
                )
                .await;
            }
        };
        dec.push(&data);
        loop {
            let frame = match dec.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    return failed(tx, delivered, format!("worker sent a malformed frame: {e}"))
                        .await;
                }
            };
            if let Frame::Error(e) = &frame
                && !delivered
                && e.code.retry_elsewhere()
            {
                return Attempt::Retry(e.clone());
            }
            if let (Frame::End(end), Some(a)) = (&frame, admission) {
                return finish_paid(state, id, header, a, end, tx).await;
            }
            let outcome = match &frame {
                Frame::Data(_) => None,
                Frame::End(_) => Some("ok"),
                Frame::Error(e) => Some(e.code.as_str()),
            };
            delivered |= matches!(frame, Frame::Data(_));
            if tx.send(frame.encode()).await.is_err() {
                return Attempt::ClientGone;
            }
            if let Some(o) = outcome {
                return Attempt::Finished(o);
            }
        }
    }
}

/// Bills the receipt (durably), then forwards the End frame and sends the
/// worker its vault voucher. A receipt that fails the checks is not billed
/// and the client gets `receipt_rejected` instead of the End frame.
async fn finish_paid(
    state: &State,
    id: WorkerId,
    header: &JobHeader,
    a: &Admission,
    end: &kokon_proto::JobEnd,
    tx: &mpsc::Sender<Bytes>,
) -> Attempt {
    let pay = state.pay.as_ref().expect("admission implies payments");
    let billed = match workers::served(state, id, &header.model) {
        Some(served) => {
            let now = kokon_attest::SystemClock.now_unix();
            crate::pay::bill(pay, state.tls.policy(), header, a, &served, end, now).await
        }
        None => Err(JobError::new(
            ErrorCode::ReceiptRejected,
            "the worker left before its receipt could be billed",
        )),
    };
    match billed {
        Ok(voucher) => {
            if let Some(sender) = workers::sender(state, id) {
                tokio::spawn(crate::pay::send_worker_voucher(sender, voucher));
            }
            if tx.send(Frame::End(end.clone()).encode()).await.is_err() {
                tracing::info!(request_id = %header.request_id, "client left after the job was billed");
            }
            Attempt::Finished("ok")
        }
        Err(e) => {
            tracing::warn!(request_id = %header.request_id, worker = id, error = %e.message, "receipt rejected");
            crate::pay::release(pay, a).await;
            Attempt::Finished(send_final(tx, e).await)
        }
    }
}

/// A worker failure: retry if nothing was delivered, else end the client's
/// stream with a typed mid-stream error.
async fn failed(tx: &mpsc::Sender<Bytes>, delivered: bool, msg: String) -> Attempt {
    if !delivered {
        return Attempt::Retry(JobError::new(ErrorCode::WorkerUnavailable, msg));
    }
    Attempt::Finished(send_final(tx, JobError::new(ErrorCode::WorkerFailedMidStream, msg)).await)
}
