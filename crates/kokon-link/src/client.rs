//! The calling side of a link: the HTTP/2 client setup, and one typed call
//! per link path, so no daemon encodes a path, a header or a body by hand.

use std::future::Future;

use bytes::Bytes;
use http::{Request, StatusCode};
use std::sync::Arc;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use kokon_money::{ChannelVoucher, Signed, WorkerVoucher};
use kokon_proto::announce::MAX_ANNOUNCE;
use kokon_proto::{
    Announce, CancelRequest, CandidatesReply, CandidatesRequest, CloseReply, CloseRequest,
    DisputeRequest, ErrorCode, JobError, JobHeader, ModelsReply, PROTOCOL_VERSION, ReconcileReply,
    ReconcileRequest, paths,
};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::frames::FrameStream;
use crate::limits::{
    LinkLimits, MAX_CALL_BODY, MAX_CANDIDATES_REPLY, MAX_MODELS_REPLY, MAX_RECONCILE_REPLY,
};

/// The calling end of a link (cheap to clone: calls multiplex over it):
/// an HTTP/2 connection, or Oblivious HTTP requests through a relay.
#[derive(Clone, Debug)]
pub struct LinkClient {
    transport: Transport,
}

#[derive(Clone, Debug)]
enum Transport {
    Http2(SendRequest<Full<Bytes>>),
    Other(Arc<dyn CallTransport>),
}

/// Another way to make a link's calls than an HTTP/2 connection (the
/// client gateway's Oblivious HTTP relay, in `kokon-gateway`): one request,
/// its answer with the body streamed.
pub trait CallTransport: std::fmt::Debug + Send + Sync {
    fn send(
        &self,
        req: Request<Full<Bytes>>,
    ) -> std::pin::Pin<
        Box<dyn Future<Output = Result<http::Response<ReplyBody>, JobError>> + Send + '_>,
    >;
}

/// A response body on the calling side.
pub type ReplyBody = BoxBody<Bytes, BodyError>;

/// Why a response body broke on the calling side.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BodyError(pub String);

/// Opens HTTP/2 as the client on `io`. The returned future drives the
/// connection and must be polled (spawned, or raced against the calls)
/// until the link is no longer used; dropping it closes the link.
pub async fn dial<IO>(
    io: IO,
    limits: LinkLimits,
) -> Result<(LinkClient, impl Future<Output = Result<(), hyper::Error>>), hyper::Error>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(limits.keep_alive_interval))
        .keep_alive_timeout(limits.keep_alive_timeout)
        .keep_alive_while_idle(limits.keep_alive_while_idle)
        .handshake(TokioIo::new(io))
        .await?;
    Ok((
        LinkClient {
            transport: Transport::Http2(sender),
        },
        conn,
    ))
}

fn link_failed(e: impl std::fmt::Display) -> JobError {
    JobError::new(ErrorCode::Unavailable, format!("link failed: {e}"))
}

impl LinkClient {
    /// Calls made through `transport` instead of a connection.
    pub fn with_transport(transport: Arc<dyn CallTransport>) -> Self {
        Self {
            transport: Transport::Other(transport),
        }
    }

    /// False once the link has closed (relayed calls have no link to close).
    pub fn is_open(&self) -> bool {
        match &self.transport {
            Transport::Http2(s) => !s.is_closed(),
            Transport::Other(_) => true,
        }
    }

    /// Sends a job; the response is the worker's (or proxy's) frame stream.
    /// Dropping the stream resets it, which cancels the job at the peer.
    pub async fn job(&self, header: &JobHeader, payload: Bytes) -> Result<FrameStream, JobError> {
        let mut req = Request::post(paths::JOB)
            .body(Full::new(payload))
            .expect("static request parts");
        header.write(req.headers_mut());
        Ok(FrameStream::new(self.send(req).await?))
    }

    /// What a worker offers (checked against our protocol version).
    pub async fn announce(&self) -> Result<Announce, JobError> {
        let body = self.get(paths::ANNOUNCE, MAX_ANNOUNCE).await?;
        let a = Announce::parse(&body)
            .map_err(|e| JobError::new(ErrorCode::BadRequest, format!("bad announce: {e}")))?;
        if a.protocol_version != PROTOCOL_VERSION {
            return Err(JobError::new(
                ErrorCode::Incompatible,
                format!(
                    "the peer speaks protocol {}, this node {PROTOCOL_VERSION}",
                    a.protocol_version
                ),
            ));
        }
        Ok(a)
    }

    /// Models served behind a proxy right now.
    pub async fn models(&self) -> Result<ModelsReply, JobError> {
        let body = self.get(paths::MODELS, MAX_MODELS_REPLY).await?;
        serde_json::from_slice(&body).map_err(|e| link_failed(format!("bad models reply: {e}")))
    }

    /// The proxy's credit keys (its denominations' public keys).
    pub async fn credit_keys(&self) -> Result<kokon_proto::credit::KeysReply, JobError> {
        let body = self.get(paths::CREDIT_KEYS, MAX_CALL_BODY).await?;
        serde_json::from_slice(&body).map_err(|e| link_failed(format!("bad credit keys: {e}")))
    }

    /// Buys credit tokens on the channel.
    pub async fn credit_buy(
        &self,
        req: &kokon_proto::credit::SaleRequest,
    ) -> Result<kokon_proto::credit::SaleReply, JobError> {
        let body = self.post(paths::CREDIT_BUY, req).await?;
        serde_json::from_slice(&body).map_err(|e| link_failed(format!("bad sale reply: {e}")))
    }

    /// Claims a credit-paid job's change.
    pub async fn credit_change(
        &self,
        req: &kokon_proto::credit::ChangeRequest,
    ) -> Result<kokon_proto::credit::ChangeReply, JobError> {
        let body = self.post(paths::CREDIT_CHANGE, req).await?;
        serde_json::from_slice(&body).map_err(|e| link_failed(format!("bad change reply: {e}")))
    }

    /// A client's channel voucher, to its proxy.
    pub async fn voucher(&self, v: &Signed<ChannelVoucher>) -> Result<(), JobError> {
        self.post(paths::VOUCHER, v).await.map(|_| ())
    }

    /// A worker's vault voucher, from its proxy.
    pub async fn vault_voucher(&self, v: &Signed<WorkerVoucher>) -> Result<(), JobError> {
        self.post(paths::VAULT_VOUCHER, v).await.map(|_| ())
    }

    /// Tells a worker why it will not be routed to (before closing its link).
    pub async fn refused(&self, why: &JobError) -> Result<(), JobError> {
        self.post(paths::REFUSED, why).await.map(|_| ())
    }

    /// Asks the proxy to close the channel cooperatively.
    pub async fn close(&self, req: &CloseRequest) -> Result<CloseReply, JobError> {
        let body = self.post(paths::CLOSE, req).await?;
        serde_json::from_slice(&body).map_err(|e| link_failed(format!("bad close reply: {e}")))
    }

    /// Asks the peer to stop a job sent on this link (its stream ends).
    pub async fn cancel(&self, req: &CancelRequest) -> Result<(), JobError> {
        self.post(paths::CANCEL, req).await.map(|_| ())
    }

    /// Tells the proxy the client refuses a billed receipt.
    pub async fn dispute(&self, req: &DisputeRequest) -> Result<(), JobError> {
        self.post(paths::DISPUTE, req).await.map(|_| ())
    }

    /// Asks the proxy for its candidate workers for a model.
    pub async fn candidates(&self, req: &CandidatesRequest) -> Result<CandidatesReply, JobError> {
        let body = serde_json::to_vec(req).unwrap_or_default();
        let req = Request::post(paths::CANDIDATES)
            .body(Full::new(Bytes::from(body)))
            .expect("static request parts");
        let body = self.exchange(req, MAX_CANDIDATES_REPLY).await?;
        serde_json::from_slice(&body).map_err(|e| link_failed(format!("bad candidates reply: {e}")))
    }

    /// Asks the proxy for the channel's billed jobs (to pay any whose `End`
    /// was missed).
    pub async fn reconcile(&self, req: &ReconcileRequest) -> Result<ReconcileReply, JobError> {
        let body = serde_json::to_vec(req).unwrap_or_default();
        let req = Request::post(paths::RECONCILE)
            .body(Full::new(Bytes::from(body)))
            .expect("static request parts");
        let body = self.exchange(req, MAX_RECONCILE_REPLY).await?;
        serde_json::from_slice(&body).map_err(|e| link_failed(format!("bad reconcile reply: {e}")))
    }

    /// Sends `req` as it is and returns the answer as it comes, whatever its
    /// status (a relay passes requests and answers through unread).
    pub async fn forward(
        &self,
        req: Request<Full<Bytes>>,
    ) -> Result<http::Response<hyper::body::Incoming>, JobError> {
        match &self.transport {
            Transport::Http2(s) => s.clone().send_request(req).await.map_err(link_failed),
            Transport::Other(_) => Err(link_failed("this link forwards nothing")),
        }
    }

    async fn get(&self, path: &'static str, limit: usize) -> Result<Bytes, JobError> {
        let req = Request::get(path)
            .body(Full::new(Bytes::new()))
            .expect("static request parts");
        self.exchange(req, limit).await
    }

    async fn post(
        &self,
        path: &'static str,
        body: &impl serde::Serialize,
    ) -> Result<Bytes, JobError> {
        let body = serde_json::to_vec(body).unwrap_or_default();
        let req = Request::post(path)
            .body(Full::new(Bytes::from(body)))
            .expect("static request parts");
        self.exchange(req, MAX_CALL_BODY).await
    }

    /// Sends a small request and reads the whole answer (at most `limit`
    /// bytes); a non-2xx answer becomes the peer's [`JobError`].
    async fn exchange(&self, req: Request<Full<Bytes>>, limit: usize) -> Result<Bytes, JobError> {
        read_limited(self.send(req).await?, limit).await
    }

    /// Sends `req`; the body of a 2xx answer, or the peer's refusal.
    async fn send(&self, req: Request<Full<Bytes>>) -> Result<ReplyBody, JobError> {
        let resp = match &self.transport {
            Transport::Http2(s) => s
                .clone()
                .send_request(req)
                .await
                .map_err(link_failed)?
                .map(boxed_incoming),
            Transport::Other(t) => t.send(req).await?,
        };
        if !resp.status().is_success() {
            return Err(read_refusal(resp).await);
        }
        Ok(resp.into_body())
    }
}

fn boxed_incoming(body: hyper::body::Incoming) -> ReplyBody {
    body.map_err(hyper_error).boxed()
}

fn hyper_error(e: hyper::Error) -> BodyError {
    BodyError(e.to_string())
}

async fn read_limited(body: ReplyBody, limit: usize) -> Result<Bytes, JobError> {
    Ok(Limited::new(body, limit)
        .collect()
        .await
        .map_err(link_failed)?
        .to_bytes())
}

/// The peer's [`JobError`] from a non-2xx answer.
async fn read_refusal(resp: http::Response<ReplyBody>) -> JobError {
    let status = resp.status();
    match read_limited(resp.into_body(), MAX_CALL_BODY).await {
        Ok(body) => refusal(status, &body),
        Err(e) => e,
    }
}

fn refusal(status: StatusCode, body: &[u8]) -> JobError {
    serde_json::from_slice::<JobError>(body).unwrap_or_else(|_| {
        JobError::new(ErrorCode::BadRequest, format!("the peer answered {status}"))
    })
}
