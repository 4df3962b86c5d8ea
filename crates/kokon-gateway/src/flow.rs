//! One API request at the gateway, as a state machine: no I/O, no clock,
//! no locks. The shell (`api.rs`) feeds it what happened (the job
//! authorised on the channel, submitted to the proxy, an event from the
//! proxy's stream, the payment made, the HTTP client gone) and carries out
//! the [`Action`]s it asks for.
//!
//! The flow: authorise on the channel (paid networks) → submit → pass text
//! on while counting what was delivered → at the `End`, verify the receipt
//! against what was delivered and pay, durably, before the final answer
//! goes out. Nothing is paid for a job that fails or is cut off before its
//! `End` (the proxy and the worker bill nothing then either).

use std::collections::VecDeque;

use kokon_money::Nanotons;
use kokon_proto::{ErrorCode, JobEnd, JobError};

/// One event of a job's output, from the proxy's frame stream.
#[derive(Debug)]
pub enum Event {
    Text(String),
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
    /// Verify the receipt in `end` against the `delivered` bytes and pay for
    /// it, durably; answer with [`GatewayFlow::settled`].
    Settle { end: JobEnd, delivered: u64 },
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
    Settling,
    Done,
}

/// One request's flow at the gateway.
pub struct GatewayFlow {
    paid: bool,
    /// Text bytes passed on to the client (bounds what a receipt may claim).
    delivered: u64,
    phase: Phase,
    actions: VecDeque<Action>,
}

impl GatewayFlow {
    /// A new flow; its first action is [`Action::Authorise`] on a paid
    /// network, [`Action::Submit`] otherwise.
    pub fn new(paid: bool) -> Self {
        let (phase, first) = if paid {
            (Phase::Authorising, Action::Authorise)
        } else {
            (Phase::Submitting, Action::Submit)
        };
        Self {
            paid,
            delivered: 0,
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
        matches!(self.phase, Phase::Streaming) && self.actions.is_empty()
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
        if !matches!(self.phase, Phase::Streaming) {
            return;
        }
        match ev {
            Some(Ok(Event::Text(t))) => {
                self.delivered += t.len() as u64;
                self.actions.push_back(Action::Emit(t));
            }
            Some(Ok(Event::End(end))) if self.paid => {
                self.phase = Phase::Settling;
                let delivered = self.delivered;
                self.actions.push_back(Action::Settle { end, delivered });
            }
            Some(Ok(Event::End(end))) => {
                self.actions.push_back(Action::Answer { end, cost: None });
                self.finish(Outcome::Ok);
            }
            Some(Err(e)) => self.fail(e),
            None => self.fail(JobError::new(
                ErrorCode::Unavailable,
                "response ended early",
            )),
        }
    }

    /// The answer to [`Action::Settle`]: the cost paid, or why the receipt
    /// was refused (then nothing was paid, and the client hears why).
    pub fn settled(&mut self, end: JobEnd, r: Result<Nanotons, JobError>) {
        if !matches!(self.phase, Phase::Settling) {
            return;
        }
        match r {
            Ok(cost) => {
                self.actions.push_back(Action::Answer {
                    end,
                    cost: Some(cost),
                });
                self.finish(Outcome::Ok);
            }
            Err(e) => self.fail(e),
        }
    }

    /// The HTTP client went away. A payment under way runs to its end: the
    /// work was delivered up to the `End` and the receipt covers it.
    pub fn client_gone(&mut self) {
        match self.phase {
            Phase::Settling | Phase::Done => {}
            _ => self.finish(Outcome::Cancelled),
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
