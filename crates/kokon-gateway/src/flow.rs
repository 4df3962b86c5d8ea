//! One API request at the gateway, as a state machine: no I/O, no clock,
//! no locks. The shell (`api.rs`) feeds it what happened (the job
//! authorised on the channel, submitted to the proxy, an event from the
//! proxy's stream, the payment made, the HTTP client gone) and carries out
//! the [`Action`]s it asks for.
//!
//! The flow: authorise on the channel (paid networks) → submit → pass text
//! on while counting what was delivered → at the `End`, verify the receipt
//! against what was delivered and pay, durably, before the final answer
//! goes out. The worker's cumulative receipts that arrive while the job
//! runs are kept: a job that fails or breaks off after output pays the
//! latest one (what was received, and verified against what was
//! delivered), as the proxy bills it.
//!
//! An HTTP client that leaves cancels the job by name ([`Action::Cancel`])
//! and the flow reads the proxy's stream on to its end, passing nothing
//! on: the worker stops within one batch and sends its last receipt, which
//! is paid. Gateway and proxy so count the same output ([`OutputMeter`])
//! and apply the same rule to it.

use std::collections::VecDeque;

use kokon_money::Nanotons;
use kokon_proto::{ErrorCode, JobEnd, JobError, OutputMeter, ReceiptEnvelope};

/// One event of a job's output, from the proxy's frame stream.
#[derive(Debug)]
pub enum Event {
    /// A `Data` frame's text, and the frame's payload length.
    Text(String, usize),
    /// A cumulative receipt for the output so far.
    Receipt(Box<ReceiptEnvelope>),
    End(JobEnd),
}

/// How a request ended, for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// The HTTP client went away before the end.
    Cancelled,
    Failed(ErrorCode),
}

/// What the shell must do next.
#[derive(Debug)]
pub enum Action {
    /// Sign the job onto the channel; answer with [`GatewayFlow::authorised`].
    Authorise,
    /// Send the job to the proxy; answer with [`GatewayFlow::submitted`],
    /// then feed its stream's events.
    Submit,
    /// Pass this text on to the HTTP client.
    Emit(String),
    /// Verify `receipt` (the `End`'s, or the latest received) against the
    /// output `delivered` and pay for it, durably; answer with
    /// [`GatewayFlow::settled`]. `None`: the `End` carried no receipt.
    Settle {
        receipt: Option<Box<ReceiptEnvelope>>,
        delivered: OutputMeter,
    },
    /// Ask the proxy to cancel the job, and go on reading its stream.
    Cancel,
    /// The final answer: the job's end, and its cost on paid networks.
    Answer { end: JobEnd, cost: Option<Nanotons> },
    /// The job failed with this error (as the answer, or as the last event
    /// of a stream already under way).
    Fail(JobError),
    /// The request is over; nothing follows.
    Finish(Outcome),
}

enum Phase {
    Authorising,
    Submitting,
    Streaming,
    /// The HTTP client left; the stream is read to its end.
    Leaving,
    Settling(AfterSettle),
    Done,
}

/// What follows a payment.
enum AfterSettle {
    /// The job completed: answer with its end (or the payment's error).
    Answer(JobEnd),
    /// The job failed after output: this error goes out either way.
    Fail(JobError),
    /// The HTTP client left.
    Cancelled,
}

/// One request's flow at the gateway.
pub struct GatewayFlow {
    paid: bool,
    /// The output received (bounds what a receipt may claim).
    delivered: OutputMeter,
    /// The latest receipt received while the job runs.
    latest: Option<Box<ReceiptEnvelope>>,
    phase: Phase,
    actions: VecDeque<Action>,
}

impl GatewayFlow {
    /// A new flow; its first action is [`Action::Authorise`] on a paid
    /// network, [`Action::Submit`] otherwise. `sealed`: the job's output
    /// comes as sealed chunks (metered as such).
    pub fn new(paid: bool, sealed: bool) -> Self {
        let (phase, first) = if paid {
            (Phase::Authorising, Action::Authorise)
        } else {
            (Phase::Submitting, Action::Submit)
        };
        Self {
            paid,
            delivered: OutputMeter::for_job(sealed),
            latest: None,
            phase,
            actions: VecDeque::from([first]),
        }
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done) && self.actions.is_empty()
    }

    /// Whether the flow waits for the next event of the proxy's stream.
    pub fn wants_event(&self) -> bool {
        matches!(self.phase, Phase::Streaming | Phase::Leaving) && self.actions.is_empty()
    }

    pub fn authorised(&mut self, r: Result<(), JobError>) {
        if !matches!(self.phase, Phase::Authorising) {
            return;
        }
        match r {
            Ok(()) => {
                self.phase = Phase::Submitting;
                self.actions.push_back(Action::Submit);
            }
            Err(e) => self.fail(e),
        }
    }

    pub fn submitted(&mut self, r: Result<(), JobError>) {
        if !matches!(self.phase, Phase::Submitting) {
            return;
        }
        match r {
            Ok(()) => self.phase = Phase::Streaming,
            Err(e) => self.fail(e),
        }
    }

    /// The next event of the proxy's stream; `None` when it ended without
    /// a final frame.
    pub fn event(&mut self, ev: Option<Result<Event, JobError>>) {
        let leaving = match self.phase {
            Phase::Streaming => false,
            Phase::Leaving => true,
            _ => return,
        };
        let then_fail = |e| {
            if leaving {
                AfterSettle::Cancelled
            } else {
                AfterSettle::Fail(e)
            }
        };
        match ev {
            Some(Ok(Event::Text(t, len))) => {
                self.delivered.add(len);
                // A sealed stream's final chunk carries no text.
                if !leaving && !t.is_empty() {
                    self.actions.push_back(Action::Emit(t));
                }
            }
            Some(Ok(Event::Receipt(r))) => self.latest = Some(r),
            Some(Ok(Event::End(end))) if self.paid => {
                let receipt = end.receipt.clone();
                let then = if leaving {
                    AfterSettle::Cancelled
                } else {
                    AfterSettle::Answer(end)
                };
                self.settle(receipt, then);
            }
            Some(Ok(Event::End(_))) if leaving => self.finish(Outcome::Cancelled),
            Some(Ok(Event::End(end))) => {
                self.actions.push_back(Action::Answer { end, cost: None });
                self.finish(Outcome::Ok);
            }
            Some(Err(e)) => self.stop_after_output(then_fail(e)),
            None => self.stop_after_output(then_fail(JobError::new(
                ErrorCode::Unavailable,
                "response ended early",
            ))),
        }
    }

    /// The job ends without its `End`: pay the latest receipt if one came.
    fn stop_after_output(&mut self, then: AfterSettle) {
        match self.latest.take() {
            Some(r) if self.paid => self.settle(Some(r), then),
            _ => self.after(then, None),
        }
    }

    fn settle(&mut self, receipt: Option<Box<ReceiptEnvelope>>, then: AfterSettle) {
        self.phase = Phase::Settling(then);
        let delivered = self.delivered;
        self.actions
            .push_back(Action::Settle { receipt, delivered });
    }

    /// The answer to [`Action::Settle`]: the cost paid, or why the receipt
    /// was refused (then nothing was paid, and the client hears why).
    pub fn settled(&mut self, r: Result<Nanotons, JobError>) {
        if !matches!(self.phase, Phase::Settling(_)) {
            return;
        }
        let Phase::Settling(then) = std::mem::replace(&mut self.phase, Phase::Done) else {
            return;
        };
        self.after(then, Some(r));
    }

    fn after(&mut self, then: AfterSettle, r: Option<Result<Nanotons, JobError>>) {
        match (then, r) {
            (AfterSettle::Answer(end), Some(Ok(cost))) => {
                self.actions.push_back(Action::Answer {
                    end,
                    cost: Some(cost),
                });
                self.finish(Outcome::Ok);
            }
            (AfterSettle::Answer(end), None) => {
                self.actions.push_back(Action::Answer { end, cost: None });
                self.finish(Outcome::Ok);
            }
            (AfterSettle::Answer(_), Some(Err(e))) | (AfterSettle::Fail(e), _) => self.fail(e),
            (AfterSettle::Cancelled, _) => self.finish(Outcome::Cancelled),
        }
    }

    /// The HTTP client went away. A payment under way runs to its end; a
    /// job under way is cancelled at the proxy and read to its end, and
    /// its last receipt paid: the worker did the work.
    pub fn client_gone(&mut self) {
        match self.phase {
            Phase::Settling(_) | Phase::Done | Phase::Leaving => {}
            Phase::Streaming => {
                self.phase = Phase::Leaving;
                self.actions.push_back(Action::Cancel);
            }
            _ => self.finish(Outcome::Cancelled),
        }
    }

    /// The proxy could not take the cancel, or its stream did not end in
    /// time: pay the latest receipt received, and stop.
    pub fn stop_reading(&mut self) {
        if matches!(self.phase, Phase::Streaming | Phase::Leaving) {
            self.stop_after_output(AfterSettle::Cancelled);
        }
    }

    fn fail(&mut self, e: JobError) {
        let code = e.code;
        self.actions.push_back(Action::Fail(e));
        self.finish(Outcome::Failed(code));
    }

    fn finish(&mut self, outcome: Outcome) {
        self.phase = Phase::Done;
        self.actions.push_back(Action::Finish(outcome));
    }
}

#[cfg(test)]
#[path = "flow_tests.rs"]
mod tests;
