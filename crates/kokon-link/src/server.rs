//! The serving side of a link: the HTTP/2 server setup, and each request
//! read into a typed [`Call`] within the link's bounds.

use std::convert::Infallible;
use std::future::Future;

use tokio_util::sync::CancellationToken;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use kokon_money::{ChannelVoucher, Signed, WorkerVoucher};
use kokon_proto::{
    CancelRequest, CandidatesRequest, CloseRequest, DisputeRequest, ErrorCode, JobError, JobHeader,
    ReconcileRequest, paths,
};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::body::{Body, error_reply};
use crate::limits::{LinkLimits, MAX_CALL_BODY};

/// Serves HTTP/2 on `io` (a link's RA-TLS stream) until it closes: each
/// request goes to `handle`. When `drain` is cancelled the peer is told to
/// open no new streams (GOAWAY) and the streams in flight run to their end.
/// Returns hyper's error if the link ended in one.
pub async fn serve_link<IO, F, Fut>(
    io: IO,
    limits: LinkLimits,
    drain: &CancellationToken,
    handle: F,
) -> Result<(), hyper::Error>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let fut = handle(req);
        async move { Ok::<_, Infallible>(fut.await) }
    });
    let conn = server_builder(limits).serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => return r,
        _ = drain.cancelled() => {}
    }
    conn.as_mut().graceful_shutdown();
    conn.await
}

fn server_builder(limits: LinkLimits) -> hyper::server::conn::http2::Builder<TokioExecutor> {
    let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    b.timer(TokioTimer::new())
        .keep_alive_interval(Some(limits.keep_alive_interval))
        .keep_alive_timeout(limits.keep_alive_timeout)
        .max_concurrent_streams(limits.max_streams);
    b
}

/// A request body [`read_call`] reads: a link's (`Incoming`), or one
/// decapsulated from Oblivious HTTP (`Full<Bytes>`).
pub trait CallBody:
    http_body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send
{
}

impl<B> CallBody for B where
    B: http_body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send
{
}

/// One request on a link, read and decoded.
pub enum Call {
    /// `GET announce` (proxy → worker).
    Announce,
    /// `POST job`: the routing header and the payload (unread by proxies).
    Job(JobHeader, Bytes),
    /// `GET models` (client → proxy).
    Models,
    /// `POST voucher` (client → proxy).
    Voucher(Signed<ChannelVoucher>),
    /// `POST close` (client → proxy).
    Close(CloseRequest),
    /// `POST vault voucher` (proxy → worker).
    VaultVoucher(Signed<WorkerVoucher>),
    /// `POST refused` (proxy → worker): why the proxy will not route to it.
    Refused(JobError),
    /// `POST cancel` (client → proxy, proxy → worker): stop a running job.
    Cancel(CancelRequest),
    /// `POST dispute` (client → proxy): the client refuses a billed receipt.
    Dispute(DisputeRequest),
    /// `POST reconcile` (client → proxy): the channel's billed jobs, to pay
    /// any whose `End` the client missed.
    Reconcile(ReconcileRequest),
    /// `POST candidates` (client → proxy): the workers a sealed job for a
    /// model may go to.
    Candidates(CandidatesRequest),
    /// `GET credits/keys` (client → proxy): the proxy's credit keys.
    CreditKeys,
    /// `POST credits/buy` (client → proxy): token requests paid on a channel.
    CreditBuy(kokon_proto::credit::SaleRequest),
    /// `POST credits/change` (client → proxy): a credit-paid job's change.
    CreditChange(kokon_proto::credit::ChangeRequest),
}

impl Call {
    /// The call's name, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Call::Announce => "announce",
            Call::Job(..) => "job",
            Call::Models => "models",
            Call::Voucher(_) => "voucher",
            Call::Close(_) => "close",
            Call::VaultVoucher(_) => "vault_voucher",
            Call::Refused(_) => "refused",
            Call::Cancel(_) => "cancel",
            Call::Dispute(_) => "dispute",
            Call::Reconcile(_) => "reconcile",
            Call::Candidates(_) => "candidates",
            Call::CreditKeys => "credit_keys",
            Call::CreditBuy(_) => "credit_buy",
            Call::CreditChange(_) => "credit_change",
        }
    }
}

/// Why a request is not a call; [`CallError::reply`] is what the peer gets.
#[derive(Debug)]
pub struct CallError {
    pub status: StatusCode,
    pub error: JobError,
}

impl CallError {
    fn new(status: StatusCode, code: ErrorCode, msg: impl Into<String>) -> Self {
        Self {
            status,
            error: JobError::new(code, msg),
        }
    }

    pub fn reply(self) -> Response<Body> {
        error_reply(self.status, self.error)
    }
}

/// Reads `req` into a [`Call`]: bodies bounded in size and in time (a body
/// still arriving after `limits.body_deadline` is refused).
pub async fn read_call<B: CallBody>(
    req: Request<B>,
    limits: &LinkLimits,
) -> Result<Call, CallError> {
    let path = req.uri().path();
    let call = match (req.method(), path) {
        (&Method::GET, paths::ANNOUNCE) => return Ok(Call::Announce),
        (&Method::GET, paths::MODELS) => return Ok(Call::Models),
        (&Method::GET, paths::CREDIT_KEYS) => return Ok(Call::CreditKeys),
        (&Method::POST, paths::JOB) => return read_job(req, limits).await,
        (&Method::POST, paths::VOUCHER) => "voucher",
        (&Method::POST, paths::CLOSE) => "close",
        (&Method::POST, paths::VAULT_VOUCHER) => "vault_voucher",
        (&Method::POST, paths::REFUSED) => "refused",
        (&Method::POST, paths::CANCEL) => "cancel",
        (&Method::POST, paths::DISPUTE) => "dispute",
        (&Method::POST, paths::RECONCILE) => "reconcile",
        (&Method::POST, paths::CANDIDATES) => "candidates",
        (&Method::POST, paths::CREDIT_BUY) => "credit_buy",
        (&Method::POST, paths::CREDIT_CHANGE) => "credit_change",
        _ => {
            return Err(CallError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::BadRequest,
                "no such path",
            ));
        }
    };
    let body = read_body(req.into_body(), MAX_CALL_BODY, limits).await?;
    let bad = |e: serde_json::Error| {
        CallError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            format!("not a {call} body: {e}"),
        )
    };
    Ok(match call {
        "voucher" => Call::Voucher(serde_json::from_slice(&body).map_err(bad)?),
        "close" => Call::Close(serde_json::from_slice(&body).map_err(bad)?),
        "refused" => Call::Refused(serde_json::from_slice(&body).map_err(bad)?),
        "cancel" => Call::Cancel(serde_json::from_slice(&body).map_err(bad)?),
        "dispute" => Call::Dispute(serde_json::from_slice(&body).map_err(bad)?),
        "reconcile" => Call::Reconcile(serde_json::from_slice(&body).map_err(bad)?),
        "candidates" => Call::Candidates(serde_json::from_slice(&body).map_err(bad)?),
        "credit_buy" => Call::CreditBuy(serde_json::from_slice(&body).map_err(bad)?),
        "credit_change" => Call::CreditChange(serde_json::from_slice(&body).map_err(bad)?),
        _ => Call::VaultVoucher(serde_json::from_slice(&body).map_err(bad)?),
    })
}

async fn read_job<B: CallBody>(req: Request<B>, limits: &LinkLimits) -> Result<Call, CallError> {
    let (parts, body) = req.into_parts();
    let header = JobHeader::read(&parts.headers).map_err(|e| {
        CallError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            e.to_string(),
        )
    })?;
    let payload = read_body(body, limits.max_payload, limits).await?;
    Ok(Call::Job(header, payload))
}

/// Collects a body of at most `max` bytes within the body deadline.
pub async fn read_body<B: CallBody>(
    body: B,
    max: usize,
    limits: &LinkLimits,
) -> Result<Bytes, CallError> {
    let collect = Limited::new(body, max).collect();
    match tokio::time::timeout(limits.body_deadline, collect).await {
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(_)) => Err(CallError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::BadRequest,
            format!("body larger than {max} bytes or cut short"),
        )),
        Err(_) => Err(CallError::new(
            StatusCode::REQUEST_TIMEOUT,
            ErrorCode::BadRequest,
            format!(
                "body not received within {} s",
                limits.body_deadline.as_secs_f32()
            ),
        )),
    }
}
