//! One job at the worker, as a state machine: no I/O, no clock reads, no
//! locks. The shell (`job.rs`) feeds it what happened (a piece of text from
//! the engine, the engine's end, the receipt signed, the requester gone,
//! the time) and carries out the [`Action`]s it asks for.
//!
//! The flow: [`accept`] checks the job (pure) → the engine runs, each piece
//! of text goes out as a `Data` frame; on a paid job a signed cumulative
//! `Receipt` follows every `receipt_every_tokens` tokens or `receipt_every`
//! → at the engine's end a paid worker signs and records its receipt,
//! durably, before the `End` goes out; a job that fails after output
//! sends a last receipt before its `Error`. The requester going away
//! cancels the engine; an engine silent past `engine_idle_timeout` is
//! cancelled and the job fails.
//!
//! A cancel from the proxy ([`WorkerFlow::cancel_requested`]) stops the
//! engine but keeps the stream: once the engine has stopped (within one
//! prefill chunk or one token), the job ends with a last receipt for the
//! work done — the prompt processed included, even before any output — and
//! a `cancelled` error. So the proxy frees the worker's slot when the
//! compute has stopped, and bills what it cost.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kokon_proto::job::Chunk;
use kokon_proto::{ErrorCode, Frame, JobEnd, JobError, JobHeader, JobRequest, Usage};
use kokon_seal::ResponseSealer;

/// How a job ended, for stats and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    /// The requester went away before the end.
    Cancelled,
    /// The engine failed (or went silent); the error went out.
    Failed(ErrorCode),
    /// The engine finished but the receipt could not be signed or recorded.
    ReceiptFailed,
}

/// What the shell must do next.
#[derive(Debug)]
pub enum Action {
    /// Send this frame to the proxy. If it cannot be sent, call
    /// [`WorkerFlow::requester_gone`].
    Send(Frame),
    /// Sign the receipt for `end` and record it durably; answer with
    /// [`WorkerFlow::signed`].
    Sign(JobEnd),
    /// Sign a cumulative receipt for `usage` so far and send it as a
    /// `Receipt` frame (nothing to answer; a failure only loses that one).
    SendReceipt(Usage),
    /// Stop the engine.
    CancelEngine,
    /// The job is over; nothing follows.
    Finish(Outcome),
}

/// Limits of a job at the worker.
#[derive(Clone, Copy, Debug)]
pub struct FlowConfig {
    /// Whether jobs are paid (a receipt before the `End`).
    pub paid: bool,
    /// Longest silence of the engine before its first piece or between two.
    pub engine_idle_timeout: Duration,
    /// A receipt goes out after this many new tokens (0: only at the end)…
    pub receipt_every_tokens: u32,
    /// …or once this much time has passed since the last one.
    pub receipt_every: Duration,
}

/// Checks a job before it takes a slot: the payload parses, names the
/// header's model, and (on a paid worker) carries a budget. The budget caps
/// the engine: a prompt above it is refused before any prefill, and
/// generation stops at its completion bound.
pub fn accept(header: &JobHeader, payload: &[u8], paid: bool) -> Result<JobRequest, JobError> {
    let mut job: JobRequest = serde_json::from_slice(payload).map_err(|e| {
        JobError::new(
            ErrorCode::BadRequest,
            format!(
                "job payload is not a valid job ({:?} error at line {}, column {})",
                e.classify(),
                e.line(),
                e.column()
            ),
        )
    })?;
    if job.model != header.model {
        return Err(JobError::new(
            ErrorCode::BadRequest,
            "payload model differs from header model",
        ));
    }
    match &header.budget {
        Some(b) => {
            // The engine never works past what the client authorised.
            let cap = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
            let (prompt, completion) = (cap(b.prompt), cap(b.completion));
            let min = |m: Option<u32>, c: u32| Some(m.map_or(c, |m| m.min(c)));
            job.params.max_tokens = min(job.params.max_tokens, completion);
            job.params.max_prompt_tokens = min(job.params.max_prompt_tokens, prompt);
        }
        None if paid => {
            return Err(JobError::new(
                ErrorCode::PaymentRequired,
                "this worker serves paid jobs only",
            ));
        }
        None => {}
    }
    Ok(job)
}

enum Phase {
    Running {
        deadline: Instant,
        /// The proxy cancelled the job; the engine was told to stop.
        cancelling: bool,
    },
    /// The receipt is being signed and recorded.
    Signing,
    Done,
}

/// One job's flow at the worker.
pub struct WorkerFlow {
    cfg: FlowConfig,
    phase: Phase,
    actions: VecDeque<Action>,
    /// The engine's usage as of the last piece sent.
    usage: Usage,
    /// What the last receipt sent covered, and when it went.
    receipted: Usage,
    receipted_at: Instant,
    /// A sealed job's response sealer: each piece of text goes out as a
    /// sealed chunk, and a final, empty one before the `End`.
    sealer: Option<ResponseSealer>,
}

impl WorkerFlow {
    /// A job whose engine was started at `now`; `sealer` for a sealed job.
    pub fn new(cfg: FlowConfig, now: Instant, sealer: Option<ResponseSealer>) -> Self {
        Self {
            cfg,
            phase: Phase::Running {
                deadline: now + cfg.engine_idle_timeout,
                cancelling: false,
            },
            actions: VecDeque::new(),
            usage: Usage::default(),
            receipted: Usage::default(),
            receipted_at: now,
            sealer,
        }
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Self::handle_timeout`] must be called, if anything waits on time.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Running { deadline, .. } => Some(deadline),
            _ => None,
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done) && self.actions.is_empty()
    }

    /// A piece of text from the engine, and the job's usage with it.
    /// A piece without text reports progress only (prompt tokens processed).
    pub fn text(&mut self, text: String, usage: Usage, now: Instant) {
        let Phase::Running { deadline, .. } = &mut self.phase else {
            return;
        };
        *deadline = now + self.cfg.engine_idle_timeout;
        if text.is_empty() {
            self.usage = usage;
            return;
        }
        let Some(chunk) = self.chunk(text) else {
            return self.sealing_failed();
        };
        self.actions.push_back(Action::Send(Frame::Data(chunk)));
        self.usage = usage;
        let every = self.cfg.receipt_every_tokens;
        let new_tokens = usage
            .completion_tokens
            .saturating_sub(self.receipted.completion_tokens);
        let due = (every > 0 && new_tokens >= every)
            || (new_tokens > 0 && now >= self.receipted_at + self.cfg.receipt_every);
        if self.cfg.paid && due {
            self.send_receipt(now);
        }
    }

    /// A piece of text as a `Data` frame's payload: a JSON chunk, or for a
    /// sealed job the text sealed as the stream's next chunk.
    fn chunk(&mut self, text: String) -> Option<Bytes> {
        match &mut self.sealer {
            None => Some(Bytes::from(
                serde_json::to_vec(&Chunk { text }).expect("a chunk serializes"),
            )),
            Some(s) => s.seal(text.as_bytes(), false).ok().map(Bytes::from),
        }
    }

    /// The `End` goes out: for a sealed job, after the stream's final chunk
    /// (so a client sees a response cut before it as cut).
    fn send_end(&mut self, end: JobEnd) -> bool {
        if let Some(s) = &mut self.sealer {
            let Ok(last) = s.seal(b"", true) else {
                return false;
            };
            self.actions
                .push_back(Action::Send(Frame::Data(Bytes::from(last))));
        }
        self.actions.push_back(Action::Send(Frame::End(end)));
        true
    }

    /// The response stream cannot be sealed further (its sequence numbers
    /// are used up): the job fails, paid for what was sent.
    fn sealing_failed(&mut self) {
        self.actions.push_back(Action::CancelEngine);
        self.fail(JobError::new(
            ErrorCode::EngineFailed,
            "the response cannot be sealed further",
        ));
    }

    /// A receipt for everything sent so far, if anything is not covered.
    fn send_receipt(&mut self, now: Instant) {
        if self.usage != self.receipted {
            self.receipted = self.usage;
            self.receipted_at = now;
            self.actions.push_back(Action::SendReceipt(self.usage));
        }
    }

    /// The engine finished (after its last piece of text).
    pub fn engine_done(&mut self, r: Result<JobEnd, JobError>) {
        if !matches!(self.phase, Phase::Running { .. }) {
            return;
        }
        match r {
            Ok(end) if self.cfg.paid => {
                self.phase = Phase::Signing;
                self.actions.push_back(Action::Sign(end));
            }
            Ok(end) => {
                if self.send_end(end) {
                    self.finish(Outcome::Completed);
                } else {
                    self.sealing_failed();
                }
            }
            Err(_) if self.cancelling() => self.fail(JobError::new(
                ErrorCode::Cancelled,
                "the job was cancelled by the proxy",
            )),
            Err(e) => self.fail(e),
        }
    }

    fn cancelling(&self) -> bool {
        matches!(
            self.phase,
            Phase::Running {
                cancelling: true,
                ..
            }
        )
    }

    /// The proxy cancelled the job: the engine is stopped, and the job ends
    /// when it has (see the module docs). An engine that finishes anyway
    /// ends the job as usual.
    pub fn cancel_requested(&mut self) {
        if let Phase::Running { cancelling, .. } = &mut self.phase
            && !*cancelling
        {
            *cancelling = true;
            self.actions.push_back(Action::CancelEngine);
        }
    }

    /// The answer to [`Action::Sign`]: the end with its receipt attached.
    pub fn signed(&mut self, r: Result<JobEnd, String>) {
        if !matches!(self.phase, Phase::Signing) {
            return;
        }
        match r {
            Ok(end) => {
                if self.send_end(end) {
                    self.finish(Outcome::Completed);
                } else {
                    let e = JobError::new(ErrorCode::EngineFailed, "the response cannot be sealed");
                    self.actions.push_back(Action::Send(Frame::Error(e)));
                    self.finish(Outcome::Failed(ErrorCode::EngineFailed));
                }
            }
            Err(_) => {
                let e = JobError::new(ErrorCode::EngineFailed, "worker could not sign its receipt");
                self.actions.push_back(Action::Send(Frame::Error(e)));
                self.finish(Outcome::ReceiptFailed);
            }
        }
    }

    /// The requester went away (its stream was reset or a send failed).
    pub fn requester_gone(&mut self) {
        match self.phase {
            Phase::Running { .. } => {
                self.actions.push_back(Action::CancelEngine);
                self.finish(Outcome::Cancelled);
            }
            // The work is done and its receipt is being recorded: that runs
            // to its end, and the `End` that cannot be delivered is dropped.
            Phase::Signing | Phase::Done => {}
        }
    }

    /// Time passed: an engine silent past its deadline has failed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_some_and(|d| now >= d) {
            self.actions.push_back(Action::CancelEngine);
            self.fail(JobError::new(
                ErrorCode::EngineFailed,
                "the engine went silent; the job was stopped",
            ));
        }
    }

    fn fail(&mut self, e: JobError) {
        let code = e.code;
        if self.cfg.paid {
            // The output sent so far is paid for, whatever ended the job.
            self.send_receipt(self.receipted_at);
        }
        self.actions.push_back(Action::Send(Frame::Error(e)));
        self.finish(match code {
            ErrorCode::Cancelled => Outcome::Cancelled,
            code => Outcome::Failed(code),
        });
    }

    fn finish(&mut self, outcome: Outcome) {
        self.phase = Phase::Done;
        self.actions.push_back(Action::Finish(outcome));
    }
}

#[cfg(test)]
#[path = "flow_tests.rs"]
mod tests;
