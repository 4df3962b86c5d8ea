//! The gateway's RA-TLS link to its proxy, re-dialed on demand.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use kokon_attest::Role;
use kokon_proto::{ErrorCode, JobError, JobHeader, ModelsReply, paths};
use kokon_tls::{LinkError, RaTls};
use tokio::sync::Mutex;

/// A shared HTTP/2 connection to the proxy. Requests multiplex over it; when
/// it breaks, the next request dials again.
pub struct ProxyLink {
    addr: SocketAddr,
    tls: RaTls,
    sender: Mutex<Option<SendRequest<Full<Bytes>>>>,
}

impl std::fmt::Debug for ProxyLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyLink")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl ProxyLink {
    pub fn new(addr: SocketAddr, tls: RaTls) -> Self {
        Self {
            addr,
            tls,
            sender: Mutex::new(None),
        }
    }

    async fn sender(&self) -> Result<SendRequest<Full<Bytes>>, JobError> {
        let mut guard = self.sender.lock().await;
        if let Some(s) = guard.as_ref().filter(|s| !s.is_closed()) {
            return Ok(s.clone());
        }
        let s = self.dial().await.map_err(|e| {
            tracing::warn!(proxy = %self.addr, error = %e, "cannot link to proxy");
            let code = match e {
                LinkError::Incompatible { .. } => ErrorCode::Incompatible,
                _ => ErrorCode::Unavailable,
            };
            JobError::new(code, format!("no link to the Kokon proxy: {e}"))
        })?;
        *guard = Some(s.clone());
        Ok(s)
    }

    async fn dial(&self) -> Result<SendRequest<Full<Bytes>>, LinkError> {
        let (tls, peer) = self.tls.connect(self.addr, &[Role::Proxy]).await?;
        tracing::info!(proxy = %self.addr, peer = peer.short_id(), "linked to proxy");
        let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(Duration::from_secs(5)))
            .keep_alive_timeout(Duration::from_secs(10))
            .handshake(TokioIo::new(tls))
            .await
            .map_err(|e| LinkError::Handshake {
                addr: self.addr.to_string(),
                source: std::io::Error::other(e),
            })?;
        tokio::spawn(conn);
        Ok(sender)
    }

    /// Sends a job; returns the response body (a frame stream).
    pub async fn submit(&self, header: &JobHeader, payload: Bytes) -> Result<Incoming, JobError> {
        let mut req = Request::post(paths::JOB)
            .body(Full::new(payload))
            .expect("static request parts");
        header.write(req.headers_mut());
        let mut sender = self.sender().await?;
        let resp = sender.send_request(req).await.map_err(|e| {
            JobError::new(ErrorCode::Unavailable, format!("proxy link failed: {e}"))
        })?;
        Ok(resp.into_body())
    }

    /// Sends a channel voucher to the proxy.
    pub async fn send_voucher(
        &self,
        v: &kokon_money::Signed<kokon_money::ChannelVoucher>,
    ) -> Result<(), JobError> {
        self.post_json(paths::VOUCHER, v).await.map(|_| ())
    }

    /// Asks the proxy to close the channel cooperatively.
    pub async fn close_channel(
        &self,
        req: &kokon_proto::CloseRequest,
    ) -> Result<kokon_proto::CloseReply, JobError> {
        let body = self.post_json(paths::CLOSE, req).await?;
        serde_json::from_slice(&body)
            .map_err(|e| JobError::new(ErrorCode::Unavailable, format!("bad proxy reply: {e}")))
    }

    /// POSTs `body` as JSON; a non-2xx answer becomes the proxy's job error.
    async fn post_json(&self, path: &str, body: &impl serde::Serialize) -> Result<Bytes, JobError> {
        let body = serde_json::to_vec(body).unwrap_or_default();
        let req = Request::post(path)
            .body(Full::new(Bytes::from(body)))
            .expect("static request parts");
        let (status, body) = self.exchange(req, 64 * 1024).await?;
        if status.is_success() {
            return Ok(body);
        }
        Err(
            serde_json::from_slice::<JobError>(&body).unwrap_or_else(|_| {
                JobError::new(ErrorCode::BadRequest, format!("proxy answered {status}"))
            }),
        )
    }

    /// Sends a small request and reads the whole answer (at most `limit` bytes).
    async fn exchange(
        &self,
        req: Request<Full<Bytes>>,
        limit: usize,
    ) -> Result<(http::StatusCode, Bytes), JobError> {
        let mut sender = self.sender().await?;
        let fail =
            |e: String| JobError::new(ErrorCode::Unavailable, format!("proxy link failed: {e}"));
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), limit)
            .collect()
            .await
            .map_err(|e| fail(e.to_string()))?
            .to_bytes();
        Ok((status, body))
    }

    /// Models served by attested workers behind the proxy.
    pub async fn models(&self) -> Result<ModelsReply, JobError> {
        let req = Request::get(paths::MODELS)
            .body(Full::new(Bytes::new()))
            .expect("static request parts");
        let (_, body) = self.exchange(req, 1 << 20).await?;
        serde_json::from_slice(&body)
            .map_err(|e| JobError::new(ErrorCode::Unavailable, format!("proxy link failed: {e}")))
    }
}
