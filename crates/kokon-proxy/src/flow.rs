//! One client job at the proxy, as a state machine: no I/O, no clock, no
//! locks. The shell (`job.rs`) feeds it what happened (a worker picked, the
//! credit reserved, a frame from the worker, the client gone, the bill
//! written, the time) and carries out the [`Action`]s it asks for.
//!
//! The flow: (paid networks) check the authorisation and record the request
//! id → pick a worker → reserve credit (paid networks) → send → relay
//! frames → bill the receipt at `End`, or release the credit. A request id
//! seen before on the channel is refused before any routing.
//!
//! Metering: each cumulative `Receipt` frame from the worker is billed
//! (its increase, durably: [`Action::BillPart`]) before it is relayed, so a
//! client never holds a receipt the proxy has not billed. A job that ends
//! any other way after output (the client gone, the worker failed or went
//! silent) bills that latest receipt, so leaving mid-stream does not make
//! output free. A worker that
//! fails before the first `Data` frame is replaced (up to `max_attempts`);
//! after that the client's stream ends with `worker_failed_mid_stream`.
//!
//! Cancelling: a client that cancels ([`JobFlow::cancel_requested`]) or
//! goes away ([`JobFlow::client_gone`]) while a worker runs the job has the
//! worker told to stop ([`Action::Cancel`]); the proxy keeps reading the
//! worker's stream until it ends (its last receipt, then `cancelled`), or
//! for at most `drain_timeout`, and frees the worker's router slot only
//! then — the compute is not free before. A client that cancelled still
//! gets every frame, so its count of the output matches the proxy's; one
//! that went away gets nothing more. Receipts are billed by one rule, the
//! client's: within the budget, and no more generated tokens than the
//! `Data` frames relayed to the client allow ([`OutputMeter`]).
//!
//! The credit reservation `R` is held by the flow from `admitted` until it is
//! handed back in exactly one [`Action::Bill`] or [`Action::Release`]; `R`
//! need not be `Clone`, so the flow cannot release it twice. Every picked
//! worker is handed back in exactly one [`Action::Unroute`].

use std::time::{Duration, Instant};

use kokon_proto::{ErrorCode, Frame, JobEnd, JobError, OutputMeter, ReceiptEnvelope};
use kokon_route::{RouteError, WorkerId};

/// How a job ended, for metrics (`as_str` is the label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// The client went away before the end.
    Cancelled,
    /// The client got this error as the final frame.
    Failed(ErrorCode),
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Cancelled => "cancelled",
            Outcome::Failed(code) => code.as_str(),
        }
    }
}

/// What the shell must do next.
#[derive(Debug)]
pub enum Action<R> {
    /// Check the job's authorisation and record its request id durably;
    /// answer with [`JobFlow::registered`].
    Register,
    /// Ask the router for a worker other than `exclude`; answer with
    /// [`JobFlow::picked`].
    Pick { exclude: Vec<WorkerId> },
    /// Reserve the job's credit at `worker`'s price; answer with
    /// [`JobFlow::admitted`].
    Admit { worker: WorkerId },
    /// Send the job to `worker`; then feed its frames or its failure.
    Send { worker: WorkerId },
    /// Stop reading from `worker` (dropping its stream resets it, which
    /// cancels the job there).
    Abandon { worker: WorkerId },
    /// Tell `worker` to stop the job, and keep reading its stream: it ends
    /// with the last receipt for the work done.
    Cancel { worker: WorkerId },
    /// Forward this frame to the client.
    Forward(Frame),
    /// Bill a running job's cumulative `receipt` (its increase) against
    /// `reservation`, durably, before the receipt is relayed; answer with
    /// [`JobFlow::part_billed`], which hands the reservation back.
    BillPart {
        worker: WorkerId,
        reservation: R,
        receipt: Box<ReceiptEnvelope>,
        /// The output relayed to the client, which bounds the receipt.
        delivered: OutputMeter,
    },
    /// Bill `receipt` (the `End`'s, or the latest relayed) against
    /// `reservation`, durably, before the job's last frame goes on; answer
    /// with [`JobFlow::billed`]. `None`: the worker sent no receipt.
    Bill {
        worker: WorkerId,
        reservation: R,
        receipt: Option<Box<ReceiptEnvelope>>,
        delivered: OutputMeter,
    },
    /// Give the reservation's credit back.
    Release(R),
    /// Free `worker`'s router slot.
    Unroute { worker: WorkerId },
    /// The job is over; nothing follows.
    Finish(Outcome),
}

impl<R> Action<R> {
    /// The action's name, for traces.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Register => "register",
            Action::Pick { .. } => "pick",
            Action::Admit { .. } => "admit",
            Action::Send { .. } => "send",
            Action::Abandon { .. } => "abandon",
            Action::Cancel { .. } => "cancel",
            Action::Forward(_) => "forward",
            Action::BillPart { .. } => "bill_part",
            Action::Bill { .. } => "bill",
            Action::Release(_) => "release",
            Action::Unroute { .. } => "unroute",
            Action::Finish(_) => "finish",
        }
    }
}

/// Limits of a job flow.
#[derive(Clone, Copy, Debug)]
pub struct FlowConfig {
    /// Workers tried when they fail before the first byte.
    pub max_attempts: u32,
    /// Longest silence from a worker before its first frame or between frames.
    pub idle_timeout: Duration,
    /// Whether jobs are paid (admit before sending, bill at the end).
    pub paid: bool,
    /// Longest wait, after a cancel, for the worker's stream to end.
    pub drain_timeout: Duration,
}

enum Phase<R> {
    /// Waiting for the authorisation check and the request id's record.
    Registering,
    /// Waiting for the router's answer.
    Picking,
    /// Waiting for the credit reservation at `worker`.
    Admitting {
        worker: WorkerId,
    },
    /// The job runs at `worker`.
    Running {
        worker: WorkerId,
        reservation: Option<R>,
        delivered: bool,
        deadline: Instant,
        /// The latest receipt billed and relayed.
        latest: Option<Box<ReceiptEnvelope>>,
        /// A receipt being billed (the reservation is out with it).
        part: Option<Part>,
        /// The worker was told to stop: its stream is read to its end.
        cancelled: bool,
    },
    /// The reservation went out in `Bill`; waiting for the result.
    Billing {
        worker: WorkerId,
        then: AfterBill,
    },
    Done,
}

/// A cumulative receipt out for billing, and what arrived meanwhile.
struct Part {
    receipt: Box<ReceiptEnvelope>,
    /// A newer receipt, billed once this one is back.
    next: Option<Box<ReceiptEnvelope>>,
    /// The attempt's end, carried out once this one is back.
    then: Option<Pending>,
}

enum Pending {
    End(JobEnd),
    Stop(AfterBill),
}

/// What follows a bill.
enum AfterBill {
    /// The job completed: its `End` goes on (or the bill's error).
    End(JobEnd),
    /// The job failed after output: this error goes on either way.
    Fail(JobError),
    /// The client left: nothing goes on.
    Cancelled,
}

/// Output a worker may send for a job whose completion budget is known:
/// a piece of text is one or more tokens, so `Data` frames are at most the
/// budget plus three (a held-back tail, the stop-string remainder and a
/// sealed stream's final chunk), and a
/// frame carries at most [`MAX_BYTES_PER_FRAME`] on average. A worker that
/// sends more is ended: it cannot flood a client with output nobody pays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputBound {
    pub frames: u64,
    pub bytes: u64,
}

/// Generous for one token's text as a JSON chunk (escapes included).
pub const MAX_BYTES_PER_FRAME: u64 = 1024;

impl OutputBound {
    pub fn for_completion_budget(tokens: u64) -> Self {
        // A sealed stream adds its final, empty chunk.
        let frames = tokens.saturating_add(3);
        Self {
            frames,
            bytes: frames.saturating_mul(MAX_BYTES_PER_FRAME),
        }
    }
}

/// One job's flow at the proxy.
pub struct JobFlow<R> {
    cfg: FlowConfig,
    bound: Option<OutputBound>,
    /// The output is sealed end to end (metered as sealed chunks).
    sealed: bool,
    /// `Data` frames and bytes received from the current attempt's worker.
    received: OutputMeter,
    /// …and relayed to the client (fewer once it has gone).
    relayed: OutputMeter,
    /// The client went away: nothing more is forwarded.
    client_left: bool,
    tried: Vec<WorkerId>,
    last_error: Option<JobError>,
    phase: Phase<R>,
    actions: std::collections::VecDeque<Action<R>>,
}

impl<R> JobFlow<R> {
    /// A new flow; its first action is [`Action::Register`] on paid
    /// networks, [`Action::Pick`] otherwise.
    pub fn new(cfg: FlowConfig) -> Self {
        let mut flow = Self {
            cfg,
            bound: None,
            sealed: false,
            received: OutputMeter::default(),
            relayed: OutputMeter::default(),
            client_left: false,
            tried: Vec::new(),
            last_error: None,
            phase: Phase::Done,
            actions: Default::default(),
        };
        if cfg.paid {
            flow.phase = Phase::Registering;
            flow.actions.push_back(Action::Register);
        } else {
            flow.next_worker();
        }
        flow
    }

    /// Bounds what a worker may send for this job (paid jobs, from the
    /// signed completion budget).
    pub fn bound_output(&mut self, bound: OutputBound) {
        self.bound = Some(bound);
    }

    /// The job is sealed end to end: its `Data` frames are sealed chunks,
    /// metered as such (see [`OutputMeter::for_job`]).
    pub fn sealed_output(&mut self) {
        self.sealed = true;
    }

    /// The result of [`Action::Register`]: routing starts only after it.
    pub fn registered(&mut self, r: Result<(), JobError>) {
        if !matches!(self.phase, Phase::Registering) {
            return;
        }
        match r {
            Ok(()) => self.next_worker(),
            Err(e) => self.fail(e),
        }
    }

    /// The next thing to do, in order.
    pub fn poll_action(&mut self) -> Option<Action<R>> {
        self.actions.pop_front()
    }

    /// When [`Self::handle_timeout`] must be called, if anything waits on time.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Running { deadline, .. } => Some(*deadline),
            _ => None,
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done) && self.actions.is_empty()
    }

    /// Whether the client has gone (nothing more is forwarded).
    pub fn client_left(&self) -> bool {
        self.client_left
    }

    /// Workers tried so far (the first one included).
    pub fn attempts(&self) -> usize {
        self.tried.len()
    }

    /// The router's answer to [`Action::Pick`].
    pub fn picked(&mut self, r: Result<WorkerId, RouteError>, now: Instant) {
        if !matches!(self.phase, Phase::Picking) {
            return;
        }
        let worker = match r {
            Ok(w) => w,
            Err(e) => {
                let err = self.last_error.take().unwrap_or_else(|| route_error(e));
                return self.fail(err);
            }
        };
        self.tried.push(worker);
        if self.cfg.paid {
            self.phase = Phase::Admitting { worker };
            self.actions.push_back(Action::Admit { worker });
        } else {
            self.start(worker, None, now);
        }
    }

    /// The result of [`Action::Admit`]. A refusal is final (payment errors
    /// do not get better at another worker).
    pub fn admitted(&mut self, r: Result<R, JobError>, now: Instant) {
        let Phase::Admitting { worker } = self.phase else {
            // Not waiting for one: hand a reservation straight back.
            if let Ok(reservation) = r {
                self.actions.push_back(Action::Release(reservation));
            }
            return;
        };
        match r {
            Ok(reservation) => self.start(worker, Some(reservation), now),
            Err(e) => {
                self.actions.push_back(Action::Unroute { worker });
                self.fail(e);
            }
        }
    }

    /// A frame from the running worker.
    pub fn frame(&mut self, frame: Frame, now: Instant) {
        let Phase::Running {
            delivered,
            deadline,
            part,
            cancelled,
            ..
        } = &mut self.phase
        else {
            return;
        };
        if !*cancelled {
            *deadline = now + self.cfg.idle_timeout;
        }
        if let Some(p) = part {
            // Hold the receipt's and the end's turn until the bill is back.
            let pending = match frame {
                Frame::Receipt(r) => return p.next = Some(r),
                Frame::End(end) => Pending::End(end),
                Frame::Error(e) => Pending::Stop(AfterBill::Fail(e)),
                Frame::Data(b) => return self.relay(b),
            };
            let pending = match pending {
                Pending::Stop(_) if self.client_left => Pending::Stop(AfterBill::Cancelled),
                other => other,
            };
            p.then.get_or_insert(pending);
            return;
        }
        let cancelled = *cancelled;
        match frame {
            Frame::Data(b) => self.relay(b),
            // A receipt covers output: none is billed before any, unless
            // the job was cancelled (then it covers the prompt processed).
            Frame::Receipt(_) if !*delivered && !cancelled => {}
            Frame::Receipt(r) => self.bill_part(r),
            Frame::Error(e) if !*delivered && !cancelled && e.code.retry_elsewhere() => {
                self.retry(e)
            }
            Frame::Error(e) => {
                let then = self.after_stop(AfterBill::Fail(e));
                self.stop_after_output(then)
            }
            Frame::End(end) => self.ended(end),
        }
    }

    /// Relays a `Data` frame, unless it takes the output past its bound
    /// (or the client has gone).
    fn relay(&mut self, b: bytes::Bytes) {
        if let Phase::Running { delivered, .. } = &mut self.phase {
            *delivered = true;
        }
        self.received.add(b.len());
        let r = self.received;
        if self
            .bound
            .is_some_and(|o| r.frames > o.frames || r.bytes > o.bytes)
        {
            let e = JobError::new(
                ErrorCode::WorkerFailedMidStream,
                "the worker sent more output than the job's completion budget allows; \
                 the stream was ended",
            );
            let then = self.after_stop(AfterBill::Fail(e));
            return self.stop_after_output(then);
        }
        if !self.client_left {
            self.relayed.add(b.len());
        }
        self.forward(Frame::Data(b));
    }

    /// Forwards a frame to the client, unless it has gone.
    fn forward(&mut self, frame: Frame) {
        if !self.client_left {
            self.actions.push_back(Action::Forward(frame));
        }
    }

    /// What follows an attempt's stop: `then`, or nothing once the client
    /// has gone.
    fn after_stop(&self, then: AfterBill) -> AfterBill {
        if self.client_left {
            AfterBill::Cancelled
        } else {
            then
        }
    }

    fn is_cancelled(&self) -> bool {
        matches!(
            self.phase,
            Phase::Running {
                cancelled: true,
                ..
            }
        )
    }

    /// The running worker's link or stream broke, or it sent bytes that are
    /// not frames, or it ended the stream without a final frame.
    pub fn worker_failed(&mut self, why: String) {
        let Phase::Running { delivered, .. } = &self.phase else {
            return;
        };
        if self.is_cancelled() {
            let e = JobError::new(ErrorCode::Cancelled, "the job was cancelled");
            let then = self.after_stop(AfterBill::Fail(e));
            return self.stop_after_output(then);
        }
        if !*delivered {
            return self.retry(JobError::new(ErrorCode::WorkerUnavailable, why));
        }
        let err = JobError::new(ErrorCode::WorkerFailedMidStream, why);
        self.stop_after_output(AfterBill::Fail(err));
    }

    /// The result of [`Action::BillPart`], with the reservation back. A
    /// billed receipt is relayed; a refused one ends the attempt (a worker
    /// whose receipts do not check out is not relayed further).
    pub fn part_billed(&mut self, reservation: R, r: Result<(), JobError>) {
        let Phase::Running {
            reservation: held,
            part,
            latest,
            ..
        } = &mut self.phase
        else {
            return self.actions.push_back(Action::Release(reservation));
        };
        let Some(mut p) = part.take() else {
            return self.actions.push_back(Action::Release(reservation));
        };
        *held = Some(reservation);
        match r {
            Ok(()) => {
                *latest = Some(p.receipt.clone());
                self.forward(Frame::Receipt(p.receipt));
            }
            Err(e) => p.then = Some(Pending::Stop(self.after_stop(AfterBill::Fail(e)))),
        }
        match (p.then, p.next) {
            (Some(Pending::End(end)), _) => self.ended(end),
            (Some(Pending::Stop(then)), _) => self.stop_after_output(then),
            (None, Some(next)) => self.bill_part(next),
            (None, None) => {}
        }
    }

    /// The bill of [`Action::BillPart`] never answered (its task died): the
    /// reservation is gone with it (its credit stays held: under-used,
    /// never over-exposed) and the attempt ends with `why`.
    pub fn part_lost(&mut self, why: String) {
        if let Phase::Running { part, .. } = &mut self.phase
            && part.take().is_some()
        {
            let e = JobError::new(ErrorCode::Unavailable, why);
            let then = self.after_stop(AfterBill::Fail(e));
            self.stop_after_output(then);
        }
    }

    /// Sends a cumulative receipt to be billed (paid jobs); relays it
    /// unbilled on unpaid networks.
    fn bill_part(&mut self, receipt: Box<ReceiptEnvelope>) {
        let Phase::Running {
            worker,
            reservation,
            part,
            ..
        } = &mut self.phase
        else {
            return;
        };
        match reservation.take() {
            Some(reservation) => {
                *part = Some(Part {
                    receipt: receipt.clone(),
                    next: None,
                    then: None,
                });
                self.actions.push_back(Action::BillPart {
                    worker: *worker,
                    reservation,
                    receipt,
                    delivered: self.relayed,
                });
            }
            None => self.forward(Frame::Receipt(receipt)),
        }
    }

    /// Ends a running attempt other than by its `End`: stops reading the
    /// worker, bills the latest receipt relayed (or releases the credit
    /// when there is none), then `then`.
    fn stop_after_output(&mut self, then: AfterBill) {
        if let Phase::Running { part: Some(p), .. } = &mut self.phase {
            p.then.get_or_insert(Pending::Stop(then));
            return;
        }
        let Phase::Running {
            worker,
            reservation,
            latest,
            ..
        } = std::mem::replace(&mut self.phase, Phase::Done)
        else {
            return;
        };
        self.actions.push_back(Action::Abandon { worker });
        match (reservation, latest) {
            (Some(reservation), Some(receipt)) => {
                self.phase = Phase::Billing { worker, then };
                self.actions.push_back(Action::Bill {
                    worker,
                    reservation,
                    receipt: Some(receipt),
                    delivered: self.relayed,
                });
            }
            (reservation, _) => {
                if let Some(r) = reservation {
                    self.actions.push_back(Action::Release(r));
                }
                self.actions.push_back(Action::Unroute { worker });
                self.after(then, None);
            }
        }
    }

    /// Time passed: a worker silent past its deadline has failed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_some_and(|d| now >= d) {
            self.worker_failed("the worker went silent".into());
        }
    }

    /// The client went away (its stream was reset or its link closed):
    /// nothing more is forwarded; a running worker is told to stop and its
    /// stream read to its end (see the module docs).
    pub fn client_gone(&mut self, now: Instant) {
        self.client_left = true;
        match self.phase {
            Phase::Registering | Phase::Picking => self.finish(Outcome::Cancelled),
            Phase::Admitting { worker } => {
                // The reservation, if one still comes, `admitted` releases.
                self.actions.push_back(Action::Unroute { worker });
                self.finish(Outcome::Cancelled);
            }
            Phase::Running { .. } => self.cancel_worker(now),
            // Billing runs to its end: the work was done and is paid for.
            Phase::Billing { .. } | Phase::Done => {}
        }
    }

    /// The client asked to cancel the job, and still reads its stream: it
    /// gets what the worker sends until it stops, then `cancelled`.
    pub fn cancel_requested(&mut self, now: Instant) {
        match self.phase {
            Phase::Registering | Phase::Picking => self.fail(cancelled()),
            Phase::Admitting { worker } => {
                self.actions.push_back(Action::Unroute { worker });
                self.fail(cancelled());
            }
            Phase::Running { .. } => self.cancel_worker(now),
            Phase::Billing { .. } | Phase::Done => {}
        }
    }

    /// Tells the running worker to stop (once); waits at most
    /// `drain_timeout` for its stream to end.
    fn cancel_worker(&mut self, now: Instant) {
        let drain = self.cfg.drain_timeout;
        let Phase::Running {
            worker,
            deadline,
            cancelled,
            ..
        } = &mut self.phase
        else {
            return;
        };
        if !*cancelled {
            *cancelled = true;
            *deadline = (*deadline).min(now + drain);
            self.actions.push_back(Action::Cancel { worker: *worker });
        }
    }

    /// The result of [`Action::Bill`]. Either way the reservation is gone
    /// (billing consumes it); a refused final receipt reaches the client as
    /// its error instead of the `End`.
    pub fn billed(&mut self, r: Result<(), JobError>) {
        if !matches!(self.phase, Phase::Billing { .. }) {
            return;
        }
        let Phase::Billing { worker, then } = std::mem::replace(&mut self.phase, Phase::Done)
        else {
            return;
        };
        self.actions.push_back(Action::Unroute { worker });
        self.after(then, Some(r));
    }

    /// The job's last frame (if any) and its end, after the bill `r`.
    fn after(&mut self, then: AfterBill, r: Option<Result<(), JobError>>) {
        let outcome = match (then, r) {
            (AfterBill::End(end), None | Some(Ok(()))) => {
                self.forward(Frame::End(end));
                Outcome::Ok
            }
            (AfterBill::End(_), Some(Err(e))) | (AfterBill::Fail(e), _) => {
                let code = e.code;
                self.forward(Frame::Error(e));
                Outcome::Failed(code)
            }
            (AfterBill::Cancelled, _) => Outcome::Cancelled,
        };
        let outcome = if self.client_left {
            Outcome::Cancelled
        } else {
            outcome
        };
        self.finish(outcome);
    }

    fn start(&mut self, worker: WorkerId, reservation: Option<R>, now: Instant) {
        self.received = OutputMeter::for_job(self.sealed);
        self.relayed = OutputMeter::for_job(self.sealed);
        self.phase = Phase::Running {
            worker,
            reservation,
            delivered: false,
            deadline: now + self.cfg.idle_timeout,
            latest: None,
            part: None,
            cancelled: false,
        };
        self.actions.push_back(Action::Send { worker });
    }

    fn ended(&mut self, end: JobEnd) {
        let Phase::Running {
            worker,
            reservation,
            ..
        } = std::mem::replace(&mut self.phase, Phase::Done)
        else {
            return;
        };
        let outcome = if self.client_left {
            Outcome::Cancelled
        } else {
            Outcome::Ok
        };
        match reservation {
            Some(reservation) => {
                let receipt = end.receipt.clone();
                self.phase = Phase::Billing {
                    worker,
                    then: self.after_stop(AfterBill::End(end)),
                };
                self.actions.push_back(Action::Bill {
                    worker,
                    reservation,
                    receipt,
                    delivered: self.relayed,
                });
            }
            None => {
                self.forward(Frame::End(end));
                self.actions.push_back(Action::Unroute { worker });
                self.finish(outcome);
            }
        }
    }

    /// Ends the current attempt: stop reading, give back credit and slot.
    fn end_attempt(&mut self, worker: WorkerId) {
        if let Phase::Running { reservation, .. } = std::mem::replace(&mut self.phase, Phase::Done)
            && let Some(r) = reservation
        {
            self.actions.push_back(Action::Release(r));
        }
        self.actions.push_back(Action::Abandon { worker });
        self.actions.push_back(Action::Unroute { worker });
    }

    fn retry(&mut self, e: JobError) {
        if let Phase::Running { worker, .. } = self.phase {
            self.end_attempt(worker);
        }
        self.last_error = Some(e);
        self.next_worker();
    }

    fn next_worker(&mut self) {
        if self.tried.len() as u32 >= self.cfg.max_attempts {
            let err = self.last_error.take().unwrap_or_else(unavailable);
            return self.fail(err);
        }
        self.phase = Phase::Picking;
        self.actions.push_back(Action::Pick {
            exclude: self.tried.clone(),
        });
    }

    fn fail(&mut self, err: JobError) {
        let code = err.code;
        self.forward(Frame::Error(err));
        self.finish(Outcome::Failed(code));
    }

    fn finish(&mut self, outcome: Outcome) {
        let outcome = match outcome {
            Outcome::Failed(ErrorCode::Cancelled) => Outcome::Cancelled,
            other => other,
        };
        self.phase = Phase::Done;
        self.actions.push_back(Action::Finish(outcome));
    }
}

fn cancelled() -> JobError {
    JobError::new(ErrorCode::Cancelled, "the job was cancelled")
}

fn unavailable() -> JobError {
    JobError::new(ErrorCode::WorkerUnavailable, "no worker could take the job")
}

pub(crate) fn route_error(e: RouteError) -> JobError {
    let code = match e {
        RouteError::NoWorkerForModel => ErrorCode::ModelNotFound,
        RouteError::NoWorkerNow => ErrorCode::WorkerUnavailable,
        RouteError::AllBusy => ErrorCode::Busy,
        RouteError::OverPrice => ErrorCode::OverPrice,
        RouteError::NoCandidate => ErrorCode::StaleCandidates,
    };
    JobError::new(code, e.to_string())
}

#[cfg(test)]
#[path = "flow_tests.rs"]
mod tests;
