//! The shell around [`JobFlow`]: carries out its actions (router, books,
//! worker link, client stream) and feeds back what happened.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use http::Response;
use kokon_link::Cancels;
use kokon_link::{Body, FrameStream, frames_body};
use kokon_proto::{CancelRequest, ErrorCode, JobError, JobHeader, OutputMeter};
use kokon_route::{RouteError, WorkerId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::flow::{Action, FlowConfig, JobFlow, Outcome};
use crate::pay::Admitted;
use crate::{State, lock, workers};
use kokon_attest::Clock as _;

/// Starts relaying a job; the response streams its frames. The job can be
/// cancelled by its request id through `cancels` (its client link's).
pub(crate) fn start(
    state: Arc<State>,
    header: JobHeader,
    payload: Bytes,
    cancels: &Arc<Cancels>,
) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let candidates = match header.sealed {
        false => None,
        true => match kokon_proto::SealedJob::candidates_of(&payload) {
            Ok(c) => Some(c),
            Err(e) => {
                let e = JobError::new(ErrorCode::BadRequest, format!("not a sealed job: {e}"));
                let _ = tx.try_send(kokon_proto::Frame::Error(e).encode());
                return Response::new(frames_body(rx));
            }
        },
    };
    let Some(cancel) = cancels.start(&header.request_id) else {
        let e = JobError::new(
            ErrorCode::DuplicateRequest,
            "a job with this request id runs on this link already",
        );
        let _ = tx.try_send(kokon_proto::Frame::Error(e).encode());
        return Response::new(frames_body(rx));
    };
    tokio::spawn(async move {
        drive(state, (header, candidates), payload, tx, cancel.token()).await;
        drop(cancel);
    });
    Response::new(frames_body(rx))
}

/// One job's I/O: the worker's frame stream, and the client's.
struct Job {
    state: Arc<State>,
    header: JobHeader,
    /// What workers get: the header without the client's payment.
    to_worker: JobHeader,
    payload: Bytes,
    tx: mpsc::Sender<Bytes>,
    worker: Option<FrameStream>,
    /// The worker's stream gave its last frame (or broke).
    worker_over: bool,
    /// A cumulative receipt being billed: frames keep flowing meanwhile
    /// (the flow holds the receipt back until its bill is durable).
    part: Option<PartBill>,
    /// Cancelled when the client cancels the job by its id.
    cancel: CancellationToken,
    cancel_seen: bool,
    /// The client's authorisation (`None` when the job carries none), and
    /// as JSON, kept with each bill so the client can verify and pay it
    /// later (empty on unpaid networks).
    signed: Option<kokon_proto::JobAuth>,
    auth: Arc<str>,
    /// The job's request id is registered (spent) at the proxy.
    registered: bool,
    /// The job was sent to a worker at least once.
    sent: bool,
    /// A sealed job's candidates (certificate hashes): it goes to one of
    /// them or nowhere.
    candidates: Option<Vec<[u8; 32]>>,
    /// The registry policy in force when the job came: its receipts are
    /// judged by it, so work done before a revocation is still billed.
    policy: Arc<kokon_attest::Policy>,
}

type PartBill = tokio::task::JoinHandle<(Admitted, Result<(), JobError>)>;

async fn drive(
    state: Arc<State>,
    (header, candidates): (JobHeader, Option<Vec<[u8; 32]>>),
    payload: Bytes,
    tx: mpsc::Sender<Bytes>,
    cancel: CancellationToken,
) {
    let _active = Active::new(&state);
    let cfg = FlowConfig {
        max_attempts: state.cfg.max_attempts,
        idle_timeout: state.cfg.job_idle_timeout,
        paid: state.pay.is_some(),
        drain_timeout: state.cfg.drain_timeout,
    };
    let mut flow = JobFlow::<Admitted>::new(cfg);
    if let Some(b) = header.budget {
        flow.bound_output(crate::flow::OutputBound::for_completion_budget(
            b.completion,
        ));
    }
    if candidates.is_some() {
        flow.sealed_output();
    }
    let signed = kokon_proto::JobAuth::of(&header, &payload);
    let auth = signed
        .as_ref()
        .map(|a| serde_json::to_string(a).expect("an authorisation serializes"))
        .unwrap_or_default();
    let mut job = Job {
        policy: state.tls.policy(),
        signed,
        auth: auth.into(),
        registered: false,
        sent: false,
        candidates,
        state,
        to_worker: header.for_worker(),
        header,
        payload,
        tx,
        worker: None,
        worker_over: false,
        part: None,
        cancel,
        cancel_seen: false,
    };
    loop {
        while let Some(action) = flow.poll_action() {
            job.act(&mut flow, action).await;
        }
        if flow.is_done() {
            return;
        }
        job.wait(&mut flow).await;
    }
}

impl Job {
    async fn act(&mut self, flow: &mut JobFlow<Admitted>, action: Action<Admitted>) {
        let state = self.state.clone();
        tracing::trace!(request_id = %self.header.request_id, action = action.name(), "job step");
        match action {
            Action::Register => {
                let registered = self.register().await;
                self.registered = registered.is_ok();
                flow.registered(registered);
            }
            Action::Pick { exclude } => {
                if !exclude.is_empty() {
                    state.metrics.retry();
                }
                let picked = self.pick(&exclude);
                flow.picked(picked, Instant::now());
            }
            Action::Admit { worker } => {
                let admitted = self.admit(worker).await;
                flow.admitted(admitted, Instant::now());
            }
            Action::Send { worker } => {
                self.sent = true;
                match self.send(worker).await {
                    Ok(stream) => {
                        self.worker = Some(stream);
                        self.worker_over = false;
                    }
                    Err(Gone::Client) => flow.client_gone(Instant::now()),
                    Err(Gone::Worker(why)) => flow.worker_failed(why),
                }
            }
            Action::Abandon { .. } => self.worker = None,
            Action::Cancel { worker } => self.cancel_at(worker),
            Action::Forward(frame) => {
                if self.tx.send(frame.encode()).await.is_err() {
                    flow.client_gone(Instant::now());
                }
            }
            Action::BillPart {
                worker,
                reservation,
                receipt,
                delivered,
            } => {
                let (state, header) = (self.state.clone(), self.header.clone());
                let (auth, policy) = (self.auth.clone(), self.policy.clone());
                self.part = Some(tokio::spawn(async move {
                    let part = Part {
                        policy: &policy,
                        worker,
                        a: &reservation,
                        receipt: &receipt,
                        delivered,
                        auth: &auth,
                    };
                    let billed = bill_part(&state, &header, part).await;
                    (reservation, billed)
                }));
            }
            Action::Bill {
                worker,
                reservation,
                receipt,
                delivered,
            } => {
                let billed = self
                    .bill(worker, reservation, receipt.as_deref(), delivered)
                    .await;
                flow.billed(billed);
            }
            Action::Release(a) => {
                if let Some(pay) = &state.pay {
                    crate::pay::release(pay, a).await;
                }
            }
            Action::Unroute { worker } => lock(&state.router).release(worker),
            Action::Finish(outcome) => {
                self.finished(outcome);
                self.free_unsent_id().await;
            }
        }
    }

    /// Waits for the worker's next frame, its silence deadline, or the
    /// client leaving.
    async fn wait(&mut self, flow: &mut JobFlow<Admitted>) {
        if self.worker.is_none() && self.part.is_none() {
            return flow.worker_failed("no worker stream".into());
        }
        let deadline = flow
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + self.state.cfg.job_idle_timeout);
        let read = !self.worker_over && self.worker.is_some();
        let (worker, part) = (&mut self.worker, &mut self.part);
        tokio::select! {
            next = async { worker.as_mut().expect("read only with a stream").next().await }, if read => {
                match next {
                    Some(Ok(frame)) => flow.frame(frame, Instant::now()),
                    Some(Err(e)) => {
                        self.worker_over = true;
                        flow.worker_failed(e.to_string());
                    }
                    None => {
                        self.worker_over = true;
                        flow.worker_failed("the worker's stream ended".into());
                    }
                }
            }
            done = async { part.as_mut().expect("polled only when out").await }, if part.is_some() => {
                self.part = None;
                match done {
                    Ok((reservation, billed)) => flow.part_billed(reservation, billed),
                    // The bill's task panicked: its reservation stays held
                    // (under-used credit, never over-exposed); end the job.
                    Err(e) => flow.part_lost(format!("billing a receipt failed: {e}")),
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => flow.handle_timeout(Instant::now()),
            _ = self.cancel.cancelled(), if !self.cancel_seen => {
                self.cancel_seen = true;
                flow.cancel_requested(Instant::now());
            }
            _ = self.tx.closed(), if !flow.client_left() => {
                flow.client_gone(Instant::now())
            }
        }
    }

    /// Tells `worker` to stop this job (in the background: the job goes on
    /// reading the worker's stream, which ends once it has stopped).
    fn cancel_at(&self, worker: WorkerId) {
        let Some(client) = workers::client(&self.state, worker) else {
            return;
        };
        let req = CancelRequest {
            request_id: self.header.request_id.clone(),
        };
        tokio::spawn(async move {
            if let Err(e) = client.cancel(&req).await {
                tracing::debug!(request_id = %req.request_id, error = %e.message, "cancel not taken");
            }
        });
    }

    fn pick(&self, exclude: &[WorkerId]) -> Result<WorkerId, RouteError> {
        let s = &self.state;
        let (model, cap) = (&self.header.model, self.header.max_price_milli);
        let picked = match &self.candidates {
            None => lock(&s.router).pick(model, cap, exclude),
            Some(certs) => {
                let among = workers::by_cert(s, certs);
                lock(&s.router).pick_among(model, cap, exclude, &among)
            }
        };
        picked.map_err(|e| as_the_registry_sees(s, model, e))
    }

    async fn register(&self) -> Result<(), JobError> {
        let Some(pay) = &self.state.pay else {
            return Err(no_payments());
        };
        let now = kokon_attest::SystemClock.now_unix();
        let routing = &self.policy.routing;
        let limits = (routing.max_context, routing.max_price_milli);
        crate::pay::register(pay, &self.header, self.signed.as_ref(), limits, now).await
    }

    /// Reserves the job's credit at the worker's price.
    async fn admit(&self, worker: WorkerId) -> Result<Admitted, JobError> {
        let Some(pay) = &self.state.pay else {
            return Err(no_payments());
        };
        let price = workers::served(&self.state, worker, &self.header.model)
            .map_or(u32::MAX, |s| s.price_milli);
        crate::pay::admit(pay, &self.header, price).await
    }

    async fn send(&self, worker: WorkerId) -> Result<FrameStream, Gone> {
        let Some(client) = workers::client(&self.state, worker) else {
            return Err(Gone::Worker("the worker left".into()));
        };
        let sent = tokio::time::timeout(
            self.state.cfg.job_idle_timeout,
            client.job(&self.to_worker, self.payload.clone()),
        );
        tokio::select! {
            r = sent => match r {
                Ok(Ok(stream)) => Ok(stream),
                Ok(Err(e)) => Err(Gone::Worker(e.message)),
                Err(_) => Err(Gone::Worker("the worker did not answer".into())),
            },
            _ = self.tx.closed() => Err(Gone::Client),
        }
    }

    /// Bills the receipt (durably) and sends the worker its vault voucher.
    async fn bill(
        &self,
        worker: WorkerId,
        a: Admitted,
        receipt: Option<&kokon_proto::ReceiptEnvelope>,
        delivered: OutputMeter,
    ) -> Result<(), JobError> {
        let state = &self.state;
        let Some(pay) = &state.pay else {
            return Err(no_payments());
        };
        let Some(served) = workers::served(state, worker, &self.header.model) else {
            crate::pay::release(pay, a).await;
            return Err(JobError::new(
                ErrorCode::ReceiptRejected,
                "the worker left before its receipt could be billed",
            ));
        };
        let now = kokon_attest::SystemClock.now_unix();
        let billed = crate::pay::bill(
            pay,
            &self.policy,
            &self.header,
            a,
            &served,
            crate::pay::Claimed {
                receipt,
                delivered,
                auth: &self.auth,
            },
            now,
        )
        .await;
        match billed {
            Ok(voucher) => {
                workers::post_voucher(state, worker, voucher);
                Ok(())
            }
            Err(e) => {
                state.events.note("receipt_not_billed");
                tracing::debug!(request_id = %self.header.request_id, worker, error = %e.message, "receipt not billed");
                Err(e)
            }
        }
    }

    /// A paid job refused before it reached any worker leaves its request
    /// id free for a retry (nothing ran, nothing was billed); a credit-paid
    /// one also its tokens.
    async fn free_unsent_id(&self) {
        if let Some(pay) = &self.state.pay
            && self.header.credit.is_some()
            && self.registered
            && !self.sent
        {
            crate::credit::unredeem(pay, &self.header).await;
            return;
        }
        let (Some(pay), Some(p)) = (&self.state.pay, self.header.payment) else {
            return;
        };
        if self.registered
            && !self.sent
            && let Err(e) = pay
                .books()
                .await
                .unregister(&p.channel, &self.header.request_id)
        {
            tracing::warn!(error = %e, "cannot free an unsent request id");
        }
    }

    fn finished(&self, outcome: Outcome) {
        if let Outcome::Failed(code) = outcome
            && code.retry_elsewhere()
        {
            tracing::debug!(request_id = %self.header.request_id, code = code.as_str(), "job failed");
        }
        self.state.metrics.job(&self.header.model, outcome.as_str());
    }
}

/// A cumulative receipt to bill, and what bounds it.
struct Part<'a> {
    policy: &'a Arc<kokon_attest::Policy>,
    worker: WorkerId,
    a: &'a Admitted,
    receipt: &'a kokon_proto::ReceiptEnvelope,
    delivered: OutputMeter,
    auth: &'a str,
}

/// Bills a cumulative receipt's increase (durably) and sends the worker its
/// vault voucher.
async fn bill_part(state: &State, header: &JobHeader, part: Part<'_>) -> Result<(), JobError> {
    let Part {
        policy,
        worker,
        a,
        receipt,
        delivered,
        auth,
    } = part;
    let (Some(pay), Some(served)) = (&state.pay, workers::served(state, worker, &header.model))
    else {
        return Err(JobError::new(
            ErrorCode::ReceiptRejected,
            "the worker left before its receipt could be billed",
        ));
    };
    let now = kokon_attest::SystemClock.now_unix();
    let claimed = crate::pay::Claimed {
        receipt: Some(receipt),
        delivered,
        auth,
    };
    let billed = crate::pay::bill_part(pay, policy, header, a, &served, claimed, now);
    match billed.await {
        Ok(voucher) => {
            if let Some(v) = voucher {
                workers::post_voucher(state, worker, v);
            }
            Ok(())
        }
        Err(e) => {
            state.events.note("receipt_not_billed");
            tracing::debug!(request_id = %header.request_id, worker, error = %e.message, "receipt not billed");
            Err(e)
        }
    }
}

fn no_payments() -> JobError {
    JobError::new(ErrorCode::Unavailable, "this proxy takes no payments")
}

/// Whether `model` names a catalog model whose hash the registry allows.
/// A model the registry lists is not "unknown" while no worker serves it
/// (after a restart, workers are still re-linking): no worker *now*.
pub(crate) fn as_the_registry_sees(state: &State, model: &str, e: RouteError) -> RouteError {
    match e {
        RouteError::NoWorkerForModel if registry_lists(state, model) => RouteError::NoWorkerNow,
        other => other,
    }
}

fn registry_lists(state: &State, model: &str) -> bool {
    kokon_models::find(model)
        .and_then(|e| hex::decode(e.sha256).ok())
        .and_then(|h| <[u8; 32]>::try_from(h).ok())
        .is_some_and(|h| state.tls.policy().allows_model_named(model, &h))
}

/// Who went away while a job was being sent.
enum Gone {
    Client,
    Worker(String),
}

/// Counts a job in [`State::active_jobs`] while it lives.
struct Active(Arc<State>);

impl Active {
    fn new(state: &Arc<State>) -> Self {
        state.active_jobs.fetch_add(1, Ordering::Relaxed);
        Self(state.clone())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active_jobs.fetch_sub(1, Ordering::Relaxed);
    }
}
