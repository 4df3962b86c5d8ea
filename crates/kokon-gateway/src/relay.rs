//! The client gateway's calls as Oblivious HTTP requests through a relay
//! (a [`kokon_link::CallTransport`]): each call is encapsulated (chunked OHTTP) to the proxy's gateway
//! key and posted to the relay, which learns the caller's address but not
//! the call; the proxy learns the call but not who made it.
//!
//! The keys come from the relay (`GET {relay}/keys`, the gateway's signed
//! key document) and are used only once `verify` accepted the document (the
//! gateway's certificate verified against the caller's registry, then its
//! signature) and the registry publishes the key (`crate::published`). They are fetched again after [`KEYS_FOR`] or when the
//! gateway says it no longer holds the key (422), or cannot open the
//! request (400: a restarted gateway's new key may reuse the old id).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use kokon_ohttp::document::{KeyDocument, MAX_DOCUMENT};
use kokon_ohttp::msg::{Part, StreamReader};
use kokon_ohttp::{KeyConfig, chunked, media, msg};
use kokon_proto::{ErrorCode, JobError};
use tokio::sync::{mpsc, oneshot};

use kokon_link::{BodyError, ReplyBody};

/// How long verified keys are used before they are fetched again.
pub const KEYS_FOR: Duration = Duration::from_secs(300);

/// Accepts a gateway's key document: the keys, if its certificate and
/// signature verify.
pub type VerifyKeys = Arc<dyn Fn(&KeyDocument) -> Result<Vec<KeyConfig>, String> + Send + Sync>;

/// Calls through one relay to one gateway.
pub struct Oblivious {
    /// The relay's resource for the gateway, e.g. `http://relay/gateways/main`.
    relay: String,
    http: reqwest::Client,
    verify: VerifyKeys,
    registry: crate::Registry,
    keys: tokio::sync::Mutex<Option<(KeyConfig, Instant)>>,
}

impl std::fmt::Debug for Oblivious {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oblivious")
            .field("relay", &self.relay)
            .finish_non_exhaustive()
    }
}

fn unavailable(msg: impl Into<String>) -> JobError {
    JobError::new(ErrorCode::Unavailable, msg)
}

impl Oblivious {
    pub fn new(
        relay: &str,
        verify: VerifyKeys,
        registry: crate::Registry,
    ) -> Result<Self, JobError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // Nothing that names this client: no user agent, no cookies.
            .user_agent("")
            .build()
            .map_err(|e| unavailable(format!("HTTP client: {e}")))?;
        Ok(Self {
            relay: relay.trim_end_matches('/').to_string(),
            http,
            verify,
            registry,
            keys: tokio::sync::Mutex::new(None),
        })
    }

    /// The gateway's current key, verified.
    async fn key(&self, refresh: bool) -> Result<KeyConfig, JobError> {
        let mut keys = self.keys.lock().await;
        if let Some((k, at)) = *keys
            && !refresh
            && at.elapsed() < KEYS_FOR
        {
            return Ok(k);
        }
        let url = format!("{}/keys", self.relay);
        let resp = self
            .http
            .get(&url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| unavailable(format!("the relay cannot be reached: {e}")))?;
        if !resp.status().is_success() {
            return Err(unavailable(format!(
                "the relay answered {} for the gateway's keys",
                resp.status()
            )));
        }
        let body = read_capped(resp, MAX_DOCUMENT).await?;
        let doc = KeyDocument::parse(&body).map_err(|e| unavailable(e.to_string()))?;
        let verified = (self.verify)(&doc)
            .map_err(|e| unavailable(format!("the gateway's keys are not trusted: {e}")))?;
        let k = crate::published::published_gateway_key(&self.registry, &verified).await?;
        *keys = Some((k, Instant::now()));
        Ok(k)
    }

    /// Sends `req` to the gateway; its answer, the body streamed as the
    /// gateway sends it.
    async fn call(&self, req: Request<Full<Bytes>>) -> Result<Response<ReplyBody>, JobError> {
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let inner = msg::encode_request(&Request::from_parts(parts, body));
        let mut refreshed = false;
        loop {
            let key = self.key(refreshed).await?;
            let (enc, response_key) = chunked::encapsulate_request(&key, &inner)
                .map_err(|e| unavailable(e.to_string()))?;
            let resp = self
                .http
                .post(&self.relay)
                .header(http::header::CONTENT_TYPE, media::CHUNKED_REQUEST)
                .body(enc)
                .send()
                .await
                .map_err(|e| unavailable(format!("the relay cannot be reached: {e}")))?;
            let status = resp.status();
            let stale_key = status == StatusCode::UNPROCESSABLE_ENTITY
                // A restarted gateway whose new key drew our key's id (1 in
                // 256) cannot open what we sealed: a 400, not a 422.
                || status == StatusCode::BAD_REQUEST;
            if stale_key && !refreshed {
                // The gateway rotated its key past ours: fetch and retry once.
                refreshed = true;
                continue;
            }
            if status != StatusCode::OK {
                return Err(unavailable(format!(
                    "the relay or gateway answered {status}"
                )));
            }
            let media_ok = resp
                .headers()
                .get(http::header::CONTENT_TYPE)
                .is_some_and(|t| t.as_bytes() == media::CHUNKED_RESPONSE.as_bytes());
            if !media_ok {
                return Err(unavailable(
                    "the gateway's answer is not message/ohttp-chunked-res",
                ));
            }
            return open_stream(resp, response_key).await;
        }
    }
}

impl kokon_link::CallTransport for Oblivious {
    fn send(
        &self,
        req: Request<Full<Bytes>>,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response<ReplyBody>, JobError>> + Send + '_>,
    > {
        Box::pin(self.call(req))
    }
}

async fn read_capped(resp: reqwest::Response, max: usize) -> Result<Bytes, JobError> {
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| unavailable(format!("the relay's answer broke: {e}")))?;
        if out.len() + chunk.len() > max {
            return Err(unavailable(format!(
                "the relay's answer is above {max} bytes"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.into())
}

type Sent = Result<Frame<Bytes>, BodyError>;

/// Opens the chunked answer as it arrives: the inner response's head, then
/// its content as a body. The body fails if the answer is cut or altered.
/// Dropping the body drops the connection to the relay.
async fn open_stream(
    resp: reqwest::Response,
    key: kokon_ohttp::ResponseKey,
) -> Result<Response<ReplyBody>, JobError> {
    let (head_tx, head_rx) = oneshot::channel();
    let (tx, rx) = mpsc::channel::<Sent>(16);
    tokio::spawn(pump(resp, key, head_tx, tx));
    let (status, headers) = head_rx
        .await
        .map_err(|_| unavailable("the gateway's answer ended before its head"))??;
    let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut r = Response::new(BodyExt::boxed(body));
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    Ok(r)
}

type Head = Result<(StatusCode, http::HeaderMap), JobError>;

async fn pump(
    resp: reqwest::Response,
    key: kokon_ohttp::ResponseKey,
    head_tx: oneshot::Sender<Head>,
    tx: mpsc::Sender<Sent>,
) {
    let mut opener = chunked::ResponseOpener::new(key);
    let mut reader = StreamReader::default();
    let mut head_tx = Some(head_tx);
    let mut stream = resp.bytes_stream();
    loop {
        let next = stream.next().await;
        let at_end = next.is_none();
        let opened = match next {
            Some(Ok(bytes)) => opener.push(&bytes),
            Some(Err(_)) => Err(kokon_ohttp::OhttpError::Unfinished),
            None => opener.finish().map(|last| vec![last]),
        };
        let parts = opened.and_then(|chunks| {
            let mut parts = Vec::new();
            for c in chunks {
                parts.extend(reader.push(&c)?);
            }
            Ok(parts)
        });
        let failed = match parts {
            Err(e) => Some(e.to_string()),
            Ok(_) if at_end && !reader.is_done() => Some("it ended early".to_string()),
            Ok(parts) => {
                if !deliver(parts, &mut head_tx, &tx).await {
                    return; // the caller dropped the body
                }
                None
            }
        };
        if let Some(why) = failed {
            let why = format!("the gateway's answer is cut or altered: {why}");
            match head_tx.take() {
                Some(h) => drop(h.send(Err(unavailable(why)))),
                None => drop(tx.send(Err(BodyError(why))).await),
            }
            return;
        }
        if at_end {
            return;
        }
    }
}

/// Hands the parts on; false once the caller is gone.
async fn deliver(
    parts: Vec<Part>,
    head_tx: &mut Option<oneshot::Sender<Head>>,
    tx: &mpsc::Sender<Sent>,
) -> bool {
    for p in parts {
        match p {
            Part::Head(status, headers) => {
                if let Some(h) = head_tx.take() {
                    let _ = h.send(Ok((status, headers)));
                }
            }
            Part::Data(d) => {
                if tx.send(Ok(Frame::data(d))).await.is_err() {
                    return false;
                }
            }
            Part::End => {}
        }
    }
    true
}
