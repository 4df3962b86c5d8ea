//! Routes and handlers of the OpenAI-compatible API.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kokon_attest::{Clock, SystemClock};
use kokon_proto::JobKind;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::openai::{Shape, parse_request};
use crate::pay::Paid;
use crate::stream::{Event, Frames, Meta, chunk, full_response, sse, usage_chunk};

/// A streamed event after settlement.
enum Settled {
    Text(String),
    Ended((kokon_proto::JobEnd, Option<kokon_money::Nanotons>)),
}
use crate::{ApiError, AppState};
use Settled::{Ended, Text};

pub(crate) fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .merge(api)
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(|| async {
            ApiError {
                status: StatusCode::NOT_FOUND,
                kind: "invalid_request_error",
                code: "not_found",
                param: None,
                message: "no such endpoint; see /v1/chat/completions, /v1/completions, /v1/models"
                    .into(),
            }
        })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::guard::check,
        ))
        .with_state(state)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReqLabels {
    endpoint: &'static str,
    status: u16,
}

/// Gateway metrics: requests by endpoint and status.
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<ReqLabels, Counter>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<ReqLabels, Counter>::default();
        registry.register(
            "kokon_gateway_requests",
            "API requests by endpoint and HTTP status",
            requests.clone(),
        );
        Self { registry, requests }
    }

    fn count(&self, endpoint: &'static str, status: StatusCode) {
        self.requests
            .get_or_create(&ReqLabels {
                endpoint,
                status: status.as_u16(),
            })
            .inc();
    }
}

async fn metrics(State(s): State<Arc<AppState>>) -> String {
    let mut out = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut out, &s.metrics.registry);
    out
}

async fn auth(State(s): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if let Some(key) = &s.cfg.api_key {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), key.as_bytes())) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn models(State(s): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let reply = s.link.models().await.map_err(ApiError::from)?;
    let data: Vec<_> = reply
        .models
        .iter()
        .map(|m| json!({ "id": m.name, "object": "model", "created": 0, "owned_by": "kokon", "context_length": m.context_len }))
        .collect();
    Ok(axum::Json(json!({ "object": "list", "data": data })).into_response())
}

async fn read_body(s: &AppState, body: Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, s.cfg.max_body)
        .await
        .map_err(|_| ApiError::too_large(s.cfg.max_body))
}

async fn chat(State(s): State<Arc<AppState>>, body: Body) -> Response {
    let result = async {
        let req = parse_request(&read_body(&s, body).await?)?;
        let (header, job, shape) = req.into_job(JobKind::Chat, s.cfg.max_price_milli)?;
        run_job(&s, header, job, shape, "chatcmpl").await
    };
    finish(&s, "chat_completions", result.await)
}

async fn completions(State(s): State<Arc<AppState>>, body: Body) -> Response {
    let result = async {
        let req = parse_request(&read_body(&s, body).await?)?;
        let (header, job, shape) = req.into_job(JobKind::Completion, s.cfg.max_price_milli)?;
        run_job(&s, header, job, shape, "cmpl").await
    };
    finish(&s, "completions", result.await)
}

fn finish(s: &AppState, endpoint: &'static str, r: Result<Response, ApiError>) -> Response {
    let resp = r.unwrap_or_else(|e| e.into_response());
    s.metrics.count(endpoint, resp.status());
    resp
}

async fn run_job(
    s: &AppState,
    mut header: kokon_proto::JobHeader,
    job: kokon_proto::JobRequest,
    shape: Shape,
    prefix: &str,
) -> Result<Response, ApiError> {
    let permit = s.jobs.clone().try_acquire_owned().map_err(|_| {
        ApiError::unavailable(format!(
            "the gateway runs {} jobs already (its limit); retry shortly",
            s.cfg.max_concurrent_jobs
        ))
    })?;
    let payload =
        serde_json::to_vec(&job).map_err(|_| ApiError::bad_request(None, "cannot encode job"))?;
    let paid = match &s.pay {
        Some(pay) => {
            let auth = crate::pay::authorise(pay, &mut header, &job, payload.len()).await?;
            tracing::trace!(request_id = %header.request_id, "job authorised");
            Some(Paid {
                pay: pay.clone(),
                header: header.clone(),
                auth,
            })
        }
        None => None,
    };
    let meta = Meta {
        id: format!("{prefix}-{}", header.request_id),
        created: SystemClock.now_unix(),
        shape,
    };
    let body = s.link.submit(&header, payload.into()).await?;
    let mut frames = Frames::new(body);
    if meta.shape.stream {
        // Wait for the first event so an early failure gets a proper status.
        let first = frames.next().await.unwrap_or_else(|| Err(closed()))?;
        return Ok(stream_response(meta, first, frames, paid, permit));
    }
    let mut text = String::new();
    while let Some(ev) = frames.next().await {
        match ev? {
            Event::Text(t) => text.push_str(&t),
            Event::End(end) => {
                let cost = match &paid {
                    Some(p) => Some(p.settle(&end, text.len() as u64).await?),
                    None => None,
                };
                return Ok(axum::Json(full_response(&meta, text, &end, cost)).into_response());
            }
        }
    }
    Err(closed().into())
}

fn closed() -> kokon_proto::JobError {
    kokon_proto::JobError::new(kokon_proto::ErrorCode::Unavailable, "response ended early")
}

/// Streams SSE. When the HTTP client disconnects, the body (and with it the
/// frame stream from the proxy) is dropped, which cancels the job upstream.
fn stream_response(
    meta: Meta,
    first: Event,
    mut frames: Frames,
    paid: Option<Paid>,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(16);
    tokio::spawn(async move {
        let _permit = permit;
        let send = |b: Bytes| tx.send(Ok(b));
        if send(sse(&chunk(&meta, Some(""), None, true)))
            .await
            .is_err()
        {
            return;
        }
        let mut next = Some(Ok(first));
        let mut delivered = 0u64;
        while let Some(ev) = next {
            let ev = match ev {
                Ok(Event::End(end)) => match &paid {
                    Some(p) => p
                        .settle(&end, delivered)
                        .await
                        .map(|c| (end, Some(c)))
                        .map(Ended),
                    None => Ok(Ended((end, None))),
                },
                Ok(Event::Text(t)) => Ok(Text(t)),
                Err(e) => Err(e),
            };
            let out = match ev {
                Ok(Text(t)) => {
                    delivered += t.len() as u64;
                    vec![sse(&chunk(&meta, Some(&t), None, false))]
                }
                Ok(Ended((end, cost))) => {
                    let mut v = vec![sse(&chunk(&meta, None, Some(end.finish_reason), false))];
                    if meta.shape.include_usage {
                        v.push(sse(&usage_chunk(&meta, &end.usage, cost)));
                    }
                    v.push(Bytes::from_static(b"data: [DONE]\n\n"));
                    v
                }
                Err(e) => vec![sse(&ApiError::from(e).body())],
            };
            for b in out {
                if send(b).await.is_err() {
                    return;
                }
            }
            next = frames.next().await;
        }
    });
    let mut resp = Response::new(Body::from_stream(ReceiverStream::new(rx)));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}
