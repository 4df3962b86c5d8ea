//! Routes and handlers of the OpenAI-compatible API.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
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

use crate::flow::{Action, GatewayFlow};
use crate::openai::{Shape, parse_request};
use crate::pay::Paid;
use crate::stream::{Frames, Meta, chunk, full_response, sse, usage_chunk};

use crate::{ApiError, AppState};

pub(crate) fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/credits", get(crate::credit_api::balance))
        .route("/v1/credits/request", post(crate::credit_api::request))
        .route("/v1/credits/buy", post(crate::credit_api::buy))
        .route("/v1/credits/accept", post(crate::credit_api::accept))
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

/// Models whose workers `/v1/models` verifies and describes; the rest are
/// listed on the proxy's word alone.
const MODELS_DESCRIBED: usize = 32;

async fn models(State(s): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let reply = s.link.models().await.map_err(ApiError::from)?;
    let described = reply.models.iter().take(MODELS_DESCRIBED);
    let workers = futures::future::join_all(described.map(|m| verified_workers(&s, &m.name))).await;
    let data: Vec<_> = reply
        .models
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut entry = json!({ "id": m.name, "object": "model", "created": 0, "owned_by": "kokon", "context_length": m.context_len });
            if let Some(w) = workers.get(i) {
                entry["kokon"] = w.clone();
            }
            entry
        })
        .collect();
    Ok(axum::Json(json!({ "object": "list", "data": data })).into_response())
}

/// What this gateway verified itself of the workers the proxy offers for
/// `model`: how many passed, and their engines (an upstream engine names
/// the origin jobs are forwarded to, outside its TEE).
async fn verified_workers(s: &AppState, model: &str) -> serde_json::Value {
    let req = kokon_proto::CandidatesRequest {
        model: model.to_string(),
        max_price_milli: s.cfg.max_price_milli,
    };
    let list = crate::seal::verified(s, &req, false)
        .await
        .unwrap_or_default();
    let mut engines: Vec<_> = list.iter().map(|v| v.engine.clone()).collect();
    engines.sort_by_key(|e| e.to_string());
    engines.dedup();
    json!({ "verified_workers": list.len(), "engines": engines })
}

async fn read_body(s: &AppState, body: Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, s.cfg.max_body)
        .await
        .map_err(|_| ApiError::too_large(s.cfg.max_body))
}

async fn chat(State(s): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let req = parse_request(&read_body(&s, body).await?)?;
        let (mut header, job, shape) = req.into_job(JobKind::Chat, s.cfg.max_price_milli)?;
        if let Some(id) = idempotent_request_id(&headers)? {
            header.request_id = id;
        }
        run_job(&s, header, job, shape, "chatcmpl").await
    };
    finish(&s, "chat_completions", result.await)
}

async fn completions(State(s): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let req = parse_request(&read_body(&s, body).await?)?;
        let (mut header, job, shape) = req.into_job(JobKind::Completion, s.cfg.max_price_milli)?;
        if let Some(id) = idempotent_request_id(&headers)? {
            header.request_id = id;
        }
        run_job(&s, header, job, shape, "cmpl").await
    };
    finish(&s, "completions", result.await)
}

/// The header an application sets so that a retried request is never a
/// second paid job (after a timeout, or a gateway that crashed once it had
/// paid): the same key gives the same request id, which the proxy admits
/// once per channel, so a retry of a job that ran is refused with 409
/// `duplicate_request` before any work, and nothing is charged twice.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Longest `Idempotency-Key` accepted.
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// The request id an `Idempotency-Key` names: a hash of it, so the proxy
/// never sees the application's key (it may carry the application's ids).
fn idempotent_request_id(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = v
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY)
        .ok_or_else(|| {
            ApiError::bad_request(
                None,
                format!(
                    "the Idempotency-Key header must be 1-{MAX_IDEMPOTENCY_KEY} visible ASCII characters"
                ),
            )
        })?;
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"kokon/idempotency-key/v1\0");
    h.update(key.as_bytes());
    let hash = hex::encode(h.finalize());
    Ok(Some(format!("idem-{}", &hash[..40])))
}

fn finish(s: &AppState, endpoint: &'static str, r: Result<Response, ApiError>) -> Response {
    let resp = r.unwrap_or_else(|e| e.into_response());
    s.metrics.count(endpoint, resp.status());
    resp
}

async fn run_job(
    s: &Arc<AppState>,
    header: kokon_proto::JobHeader,
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
    let plain = Bytes::from(
        serde_json::to_vec(&job).map_err(|_| ApiError::bad_request(None, "cannot encode job"))?,
    );
    let mut header = header;
    if s.credits.is_some() {
        // The seal binds the budget: it is fixed first.
        let most = s.link.policy().routing.max_context;
        header.budget = Some(crate::pay::budget_within(most, &job, plain.len()));
    } else if let Some(pay) = &s.pay {
        header.budget = Some(crate::pay::budget(pay, &job, plain.len()));
    }
    header.sealed = true;
    let sealed = crate::seal::seal(s, &header, &plain, false).await?;
    let meta = Meta {
        id: format!("{prefix}-{}", header.request_id),
        created: SystemClock.now_unix(),
        shape,
    };
    let mut run = Run {
        flow: GatewayFlow::new(s.pay.is_some() || s.credits.is_some(), true),
        state: s.clone(),
        header,
        job,
        payload: sealed.payload,
        sealed: sealed.client,
        plain,
        resealed: 0,
        paid: None,
        credit: None,
        frames: None,
        submitted_on: None,
        answered: false,
    };
    if meta.shape.stream {
        // Wait for the first output so an early failure gets a proper status.
        return match run.next().await {
            Some(Out::Fail(e)) => Err(e.into()),
            first => Ok(stream_response(meta, first, run, permit)),
        };
    }
    // The job runs in its own task: if the HTTP client goes away (this
    // handler is dropped), the task still pays for the output received.
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _permit = permit;
        let mut tx = tx;
        tokio::select! {
            whole = collect(&mut run) => { let _ = tx.send(whole); }
            _ = tx.closed() => run.leave().await,
        }
    });
    let ended_early = || {
        ApiError::from(kokon_proto::JobError::new(
            kokon_proto::ErrorCode::Unavailable,
            "response ended early",
        ))
    };
    let (text, end, cost) = rx
        .await
        .map_err(|_| ended_early())?
        .map_err(ApiError::from)?;
    Ok(axum::Json(full_response(&meta, text, &end, cost)).into_response())
}

/// A whole answer: its text, end and cost, or why it failed.
type Whole =
    Result<(String, kokon_proto::JobEnd, Option<kokon_money::Nanotons>), kokon_proto::JobError>;

async fn collect(run: &mut Run) -> Whole {
    let mut text = String::new();
    while let Some(out) = run.next().await {
        match out {
            Out::Text(t) => text.push_str(&t),
            Out::Answer(end, cost) => return Ok((text, end, cost)),
            Out::Fail(e) => return Err(e),
        }
    }
    Err(kokon_proto::JobError::new(
        kokon_proto::ErrorCode::Unavailable,
        "response ended early",
    ))
}

/// Times a job is sealed again to fresh candidates before its stale
/// candidates are reported to the client.
const MAX_RESEALS: u8 = 2;

/// Longest wait, once the HTTP client has left, for the cancelled job's
/// stream to end (the proxy waits 10 s for its worker).
const LEAVE_DRAIN: std::time::Duration = std::time::Duration::from_secs(15);

/// What a request produces for its HTTP client.
enum Out {
    Text(String),
    Answer(kokon_proto::JobEnd, Option<kokon_money::Nanotons>),
    Fail(kokon_proto::JobError),
}

/// The shell of one request's [`GatewayFlow`]: carries out its actions
/// (authorise, submit, read, settle) and hands out what the client gets.
struct Run {
    flow: GatewayFlow,
    /// The gateway's link to the proxy, its payments and candidates.
    state: Arc<AppState>,
    header: kokon_proto::JobHeader,
    job: kokon_proto::JobRequest,
    /// The job as sent: sealed to its candidates.
    payload: Bytes,
    /// What reads the candidates' answer.
    sealed: kokon_seal::ClientJob,
    /// The job in plaintext, to seal again to fresh candidates.
    plain: Bytes,
    /// Times the job was sealed again because its candidates went stale.
    resealed: u8,
    paid: Option<Paid>,
    /// The tokens paying the job, when credits pay it.
    credit: Option<crate::credit::CreditJob>,
    frames: Option<Frames>,
    /// The link the job was sent on.
    submitted_on: Option<kokon_link::LinkClient>,
    /// The job ended by its `End` (and was paid, on a paid network).
    answered: bool,
}

impl Drop for Run {
    /// A paid job that ended otherwise than by its `End` (a failure, a
    /// refusal, a broken link, a client gone) may have been billed more
    /// than was paid here: the proxy's bills are looked at soon.
    fn drop(&mut self) {
        if let Some(p) = &self.paid
            && !self.answered
        {
            p.pay.reconcile.notify_one();
        }
        if let (Some(c), Some(job)) = (&self.state.credits, self.credit.take()) {
            // Not settled here: the recovery pass claims its change.
            c.done(&job.request_id);
        }
    }
}

impl Run {
    /// The next output, `None` once the request is over.
    async fn next(&mut self) -> Option<Out> {
        loop {
            while let Some(action) = self.flow.poll_action() {
                if let Some(out) = self.act(action).await {
                    return Some(out);
                }
            }
            if self.flow.is_done() {
                return None;
            }
            if self.flow.wants_event() {
                let ev = match &mut self.frames {
                    Some(f) => f.next().await,
                    None => None,
                };
                if let Some(Err(e)) = &ev
                    && e.code == kokon_proto::ErrorCode::StaleCandidates
                    && self.resealed < MAX_RESEALS
                {
                    self.reseal().await;
                    continue;
                }
                self.flow.event(ev);
            }
        }
    }

    async fn act(&mut self, action: Action) -> Option<Out> {
        match action {
            Action::Authorise => {
                let r = self.authorise().await;
                self.flow.authorised(r);
            }
            Action::Submit => {
                let r = self.submit().await;
                self.flow.submitted(r);
            }
            Action::Settle { receipt, delivered } => {
                if let (Some(cp), Some(job)) = (self.state.credits.clone(), self.credit.take()) {
                    let link = self.state.link.clone();
                    let cost = crate::credit::settle(cp, link, job, receipt.as_deref());
                    self.flow.settled(Ok(cost));
                    return None;
                }
                let r = match &self.paid {
                    Some(p) => {
                        let answered = self.frames.as_ref().and_then(|f| f.reader());
                        p.settle(receipt.as_deref(), delivered, answered).await
                    }
                    None => Err(kokon_proto::JobError::new(
                        kokon_proto::ErrorCode::PaymentRequired,
                        "job was not authorised",
                    )),
                };
                if let (Err(e), Some(p), Some(_)) = (&r, &self.paid, &receipt)
                    && e.code == kokon_proto::ErrorCode::ReceiptRejected
                {
                    self.dispute(p.pay.clone(), &e.message);
                }
                self.flow.settled(r);
            }
            Action::Cancel => self.cancel().await,
            Action::Emit(t) => return Some(Out::Text(t)),
            Action::Answer { end, cost } => {
                self.answered = true;
                return Some(Out::Answer(end, cost));
            }
            Action::Fail(e) => {
                if let (Some(cp), Some(job)) = (&self.state.credits, &self.credit)
                    && crate::credit::spent_refusal(&e)
                {
                    cp.drop_spent(&self.state.link, &job.request_id).await;
                    self.credit = None;
                }
                return Some(Out::Fail(e));
            }
            Action::Finish(outcome) => {
                tracing::debug!(request_id = %self.header.request_id, ?outcome, "request over");
            }
        }
        None
    }

    async fn submit(&mut self) -> Result<(), kokon_proto::JobError> {
        let (body, on) = self
            .state
            .link
            .submit(&self.header, self.payload.clone())
            .await?;
        self.frames = Some(Frames::new(body, Some(self.sealed.reader())));
        self.submitted_on = Some(on);
        Ok(())
    }

    /// The proxy could route the job to none of its candidates (they left
    /// or rotated their keys), before any work: it is sealed again to
    /// fresh, verified candidates, authorised again for the new payload,
    /// and sent again — never in plaintext. A failure here ends the job as
    /// a failed submission.
    async fn reseal(&mut self) {
        self.resealed += 1;
        self.frames = None;
        if let Err(e) = self.seal_again_and_submit().await {
            self.flow.event(Some(Err(e)));
        }
    }

    async fn seal_again_and_submit(&mut self) -> Result<(), kokon_proto::JobError> {
        let sealed = crate::seal::seal(&self.state, &self.header, &self.plain, true).await?;
        self.payload = sealed.payload;
        self.sealed = sealed.client;
        self.authorise().await?;
        self.submit().await
    }

    async fn authorise(&mut self) -> Result<(), kokon_proto::JobError> {
        if let Some(cp) = self.state.credits.clone() {
            if self.credit.is_some() {
                // Sealed again after the proxy refused it before any work:
                // the proxy gave its tokens back; they pay the new attempt.
                return Ok(());
            }
            let budget = self.header.budget.unwrap_or_else(|| {
                let most = self.state.link.policy().routing.max_context;
                crate::pay::budget_within(most, &self.job, self.payload.len())
            });
            let max_price = self.state.link.policy().routing.max_price_milli;
            let job = crate::credit::authorise(
                &cp,
                &self.state.link,
                &mut self.header,
                budget,
                max_price,
            )
            .await?;
            self.credit = Some(job);
            return Ok(());
        }
        let Some(pay) = self.state.pay.clone() else {
            return Ok(());
        };
        let auth = crate::pay::authorise(&pay, &mut self.header, &self.job, &self.payload).await?;
        tracing::trace!(request_id = %self.header.request_id, "job authorised");
        self.paid = Some(Paid {
            pay,
            header: self.header.clone(),
            auth,
        });
        Ok(())
    }

    /// The HTTP client went away: the job is cancelled at the proxy and its
    /// stream read to the end (within [`LEAVE_DRAIN`]), so the worker's
    /// last receipt is paid before the request is over.
    async fn leave(&mut self) {
        self.flow.client_gone();
        let drained =
            tokio::time::timeout(LEAVE_DRAIN, async { while self.next().await.is_some() {} });
        if drained.await.is_err() {
            // Dropping the stream resets the job upstream.
            self.frames = None;
            self.flow.stop_reading();
            while self.next().await.is_some() {}
        }
    }

    /// Disputes the job's receipt at the proxy, in the background.
    fn dispute(&self, pay: Arc<crate::ClientPay>, why: &str) {
        let (link, id, why) = (
            self.state.link.clone(),
            self.header.request_id.clone(),
            why.to_string(),
        );
        tokio::spawn(async move { crate::pay::dispute(&pay, &link, &id, &why).await });
    }

    /// Asks the proxy to cancel the job; if it cannot be asked, the stream
    /// is dropped (a reset cancels the job upstream too).
    async fn cancel(&mut self) {
        let req = kokon_proto::CancelRequest {
            request_id: self.header.request_id.clone(),
        };
        let cancelled = match &self.submitted_on {
            Some(on) => self.state.link.cancel(on, &req).await,
            None => Err(kokon_proto::JobError::new(
                kokon_proto::ErrorCode::Unavailable,
                "not submitted",
            )),
        };
        if let Err(e) = cancelled {
            tracing::debug!(request_id = %req.request_id, error = %e.message, "cancel not taken; resetting");
            self.frames = None;
            self.flow.stop_reading();
        }
    }
}

/// Streams SSE from the outputs of `run`, after the `first`.
fn stream_response(
    meta: Meta,
    first: Option<Out>,
    mut run: Run,
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
            return run.leave().await;
        }
        let mut next = first;
        while let Some(out) = next {
            for b in sse_of(&meta, out) {
                if send(b).await.is_err() {
                    return run.leave().await;
                }
            }
            next = run.next().await;
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

fn sse_of(meta: &Meta, out: Out) -> Vec<Bytes> {
    match out {
        Out::Text(t) => vec![sse(&chunk(meta, Some(&t), None, false))],
        Out::Answer(end, cost) => {
            let mut v = vec![sse(&chunk(meta, None, Some(end.finish_reason), false))];
            if meta.shape.include_usage {
                v.push(sse(&usage_chunk(meta, &end.usage, cost)));
            }
            v.push(Bytes::from_static(b"data: [DONE]\n\n"));
            v
        }
        Out::Fail(e) => vec![sse(&ApiError::from(e).body())],
    }
}
