//! The job flow alone, on a virtual clock: every outcome, every fault, and a
//! property test that whatever happens, each reservation is consumed once,
//! each picked worker is unrouted once, and the flow finishes once.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kokon_proto::{ErrorCode, FinishReason, Frame, JobEnd, JobError, OutputMeter, Usage};
use kokon_route::{RouteError, WorkerId};
use proptest::prelude::*;

use super::{Action, FlowConfig, JobFlow, Outcome};

/// A credit reservation in tests: not `Clone`, like the real one.
#[derive(Debug, PartialEq, Eq)]
struct Res(u32);

/// Executes a flow's actions against a scripted world and records them.
struct Sim {
    flow: JobFlow<Res>,
    now: Instant,
    next_res: u32,
    held: BTreeSet<u32>,
    released: Vec<u32>,
    billed: Vec<u32>,
    /// The completion tokens of each receipt billed (`None`: no receipt).
    billed_receipts: Vec<Option<u64>>,
    routed: BTreeSet<WorkerId>,
    sent: Vec<WorkerId>,
    abandoned: Vec<WorkerId>,
    forwarded: Vec<Frame>,
    outcome: Option<Outcome>,
    /// What the flow waits for.
    wants: Option<Want>,
    /// The reservation out with a cumulative receipt being billed.
    part_out: Option<Res>,
    /// The completion tokens of each cumulative receipt sent for billing.
    parts: Vec<u64>,
    /// The output relayed to the client as each receipt went for billing.
    part_delivered: Vec<OutputMeter>,
    /// Workers told to stop the job.
    cancelled: Vec<WorkerId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Register,
    BillPart,
    Pick,
    Admit,
    Bill,
}

const IDLE: Duration = Duration::from_secs(120);
const DRAIN: Duration = Duration::from_secs(10);

fn cfg(paid: bool) -> FlowConfig {
    FlowConfig {
        max_attempts: 3,
        idle_timeout: IDLE,
        paid,
        drain_timeout: DRAIN,
    }
}

impl Sim {
    /// A flow whose job (on paid networks) was registered.
    fn new(paid: bool) -> Self {
        let mut s = Self::unregistered(paid);
        if paid {
            s.register(Ok(()));
        }
        s
    }

    fn unregistered(paid: bool) -> Self {
        let mut s = Self {
            flow: JobFlow::new(cfg(paid)),
            now: Instant::now(),
            next_res: 0,
            held: BTreeSet::new(),
            released: vec![],
            billed: vec![],
            billed_receipts: vec![],
            routed: BTreeSet::new(),
            sent: vec![],
            abandoned: vec![],
            forwarded: vec![],
            outcome: None,
            wants: None,
            part_out: None,
            parts: vec![],
            part_delivered: vec![],
            cancelled: vec![],
        };
        s.drain();
        s
    }

    fn drain(&mut self) {
        while let Some(a) = self.flow.poll_action() {
            match a {
                Action::Register => {
                    assert!(self.routed.is_empty(), "registered after routing");
                    self.wants = Some(Want::Register);
                }
                Action::Pick { exclude } => {
                    assert_eq!(exclude, self.sent_or_picked());
                    self.wants = Some(Want::Pick);
                }
                Action::Admit { worker } => {
                    assert!(self.routed.contains(&worker));
                    self.wants = Some(Want::Admit);
                }
                Action::Send { worker } => {
                    assert!(self.routed.contains(&worker));
                    self.sent.push(worker);
                }
                Action::Abandon { worker } => self.abandoned.push(worker),
                Action::Cancel { worker } => {
                    assert!(
                        self.routed.contains(&worker),
                        "cancel at an unrouted worker"
                    );
                    self.cancelled.push(worker);
                }
                Action::Forward(f) => {
                    assert!(self.outcome.is_none(), "forward after finish");
                    self.forwarded.push(f);
                }
                Action::Bill {
                    reservation,
                    receipt,
                    ..
                } => {
                    assert!(
                        self.held.remove(&reservation.0),
                        "bill of a dead reservation"
                    );
                    self.billed.push(reservation.0);
                    self.billed_receipts
                        .push(receipt.map(|r| r.receipt.body.usage.completion));
                    self.wants = Some(Want::Bill);
                }
                Action::BillPart {
                    reservation,
                    receipt,
                    delivered,
                    ..
                } => {
                    self.part_delivered.push(delivered);
                    assert!(
                        self.held.contains(&reservation.0),
                        "a dead reservation billed"
                    );
                    assert!(self.part_out.is_none(), "two parts out at once");
                    self.parts.push(receipt.receipt.body.usage.completion);
                    self.part_out = Some(reservation);
                    self.wants = Some(Want::BillPart);
                }
                Action::Release(r) => {
                    assert!(self.held.remove(&r.0), "reservation released twice");
                    self.released.push(r.0);
                }
                Action::Unroute { worker } => {
                    assert!(self.routed.remove(&worker), "worker unrouted twice");
                }
                Action::Finish(o) => {
                    assert!(self.outcome.is_none(), "finished twice");
                    self.outcome = Some(o);
                }
            }
        }
    }

    fn sent_or_picked(&self) -> Vec<WorkerId> {
        (1..=self.flow.attempts() as u64).collect()
    }

    fn part(&mut self, ok: bool) {
        assert_eq!(self.wants.take(), Some(Want::BillPart));
        let r = self.part_out.take().expect("a part out");
        let result = if ok {
            Ok(())
        } else {
            Err(JobError::new(ErrorCode::ReceiptRejected, "bad receipt"))
        };
        self.flow.part_billed(r, result);
        self.drain();
    }

    fn register(&mut self, r: Result<(), JobError>) {
        assert_eq!(self.wants.take(), Some(Want::Register));
        self.flow.registered(r);
        self.drain();
    }

    fn pick(&mut self, r: Result<WorkerId, RouteError>) {
        assert_eq!(self.wants.take(), Some(Want::Pick));
        if let Ok(w) = r {
            self.routed.insert(w);
        }
        self.flow.picked(r, self.now);
        self.drain();
    }

    fn pick_next(&mut self) {
        let w = self.flow.attempts() as u64 + 1;
        self.pick(Ok(w));
    }

    fn admit(&mut self, ok: bool) {
        assert_eq!(self.wants.take(), Some(Want::Admit));
        let r = if ok {
            self.next_res += 1;
            self.held.insert(self.next_res);
            Ok(Res(self.next_res))
        } else {
            Err(JobError::new(ErrorCode::PaymentRequired, "no credit"))
        };
        self.flow.admitted(r, self.now);
        self.drain();
    }

    fn frame(&mut self, f: Frame) {
        self.flow.frame(f, self.now);
        self.drain();
    }

    fn bill(&mut self, r: Result<(), JobError>) {
        assert_eq!(self.wants.take(), Some(Want::Bill));
        self.flow.billed(r);
        self.drain();
    }

    fn fail(&mut self, why: &str) {
        self.flow.worker_failed(why.into());
        self.drain();
    }

    fn client_gone(&mut self) {
        self.flow.client_gone(self.now);
        self.drain();
    }

    fn cancel(&mut self) {
        self.flow.cancel_requested(self.now);
        self.drain();
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.flow.handle_timeout(self.now);
        self.drain();
    }

    /// The invariants that hold once a flow is over.
    fn assert_clean(&self) {
        assert!(self.flow.is_done());
        assert!(self.outcome.is_some(), "never finished");
        assert!(self.held.is_empty(), "reservations leaked: {:?}", self.held);
        assert!(
            self.routed.is_empty(),
            "router slots leaked: {:?}",
            self.routed
        );
        let last = self.forwarded.last();
        match self.outcome {
            Some(Outcome::Ok) => assert!(matches!(last, Some(Frame::End(_)))),
            Some(Outcome::Failed(c)) => {
                assert!(matches!(last, Some(Frame::Error(e)) if e.code == c))
            }
            _ => {}
        }
    }

    fn final_code(&self) -> Option<ErrorCode> {
        match self.forwarded.last() {
            Some(Frame::Error(e)) => Some(e.code),
            _ => None,
        }
    }
}

fn data() -> Frame {
    Frame::Data(Bytes::from_static(b"{\"text\":\"hi\"}"))
}

fn end() -> Frame {
    Frame::End(JobEnd {
        usage: Usage {
            prompt_tokens: 3,
            completion_tokens: 2,
        },
        finish_reason: FinishReason::Stop,
        receipt: None,
    })
}

fn receipt(completion: u64) -> Frame {
    use kokon_money::{Hash32, Receipt, Signature, Signed, TokenUsage};
    Frame::Receipt(Box::new(kokon_proto::ReceiptEnvelope {
        receipt: Signed {
            body: Receipt {
                request: Hash32([1; 32]),
                model: Hash32([2; 32]),
                usage: TokenUsage {
                    prompt: 3,
                    completion,
                    ..Default::default()
                },
                price_milli: 1000,
                cost: u128::from(3 + completion),
            },
            signature: Signature([0; 64]),
        },
        cert: String::new(),
    }))
}

#[test]
fn receipts_are_relayed_and_a_client_that_leaves_is_billed_the_latest() {
    let mut s = Sim::new(true);
    s.pick(Ok(1));
    s.admit(true);
    s.frame(data());
    s.frame(receipt(1));
    assert_eq!(s.forwarded.len(), 1, "a receipt goes on only once billed");
    s.part(true);
    s.frame(data());
    s.frame(receipt(2));
    s.part(true);
    assert_eq!(s.parts, vec![1, 2]);
    assert_eq!(s.forwarded.len(), 4, "receipts go on to the client");
    s.client_gone();
    assert_eq!(s.cancelled, vec![1], "the worker is told to stop");
    assert!(
        s.abandoned.is_empty() && s.routed.contains(&1),
        "and read to its end"
    );
    let forwarded = s.forwarded.len();
    s.frame(data());
    s.frame(receipt(3));
    s.part(true);
    s.frame(err(ErrorCode::Cancelled));
    assert_eq!(
        s.forwarded.len(),
        forwarded,
        "nothing goes to a client that left"
    );
    assert_eq!(
        s.billed_receipts,
        vec![Some(3)],
        "the worker's last receipt"
    );
    assert!(s.outcome.is_none(), "the bill runs to its end");
    s.bill(Ok(()));
    assert_eq!(s.outcome, Some(Outcome::Cancelled));
    assert!(s.released.is_empty());
    s.assert_clean();
}

#[test]
fn a_worker_that_fails_after_a_receipt_is_billed_it_and_the_client_hears_why() {
    for fail in [
        |s: &mut Sim| s.fail("link broke"),
        |s: &mut Sim| s.frame(err(ErrorCode::EngineFailed)),
        |s: &mut Sim| s.advance(IDLE),
    ] {
        let mut s = Sim::new(true);
        s.pick(Ok(1));
        s.admit(true);
        s.frame(data());
        s.frame(receipt(1));
        s.part(true);
        s.frame(data());
        fail(&mut s);
        assert_eq!(s.billed_receipts, vec![Some(1)]);
        assert!(
            s.forwarded.iter().all(|f| !matches!(f, Frame::Error(_))),
            "after the bill"
        );
        // A refused bill changes nothing for the client: the error stands.
        s.bill(Err(JobError::new(ErrorCode::ReceiptRejected, "bad")));
        assert!(matches!(s.outcome, Some(Outcome::Failed(c)) if c != ErrorCode::ReceiptRejected));
        s.assert_clean();
    }
}

#[test]
fn a_worker_that_floods_past_the_budget_is_ended_and_billed_its_receipt_only() {
    use super::OutputBound;
    let mut s = Sim::new(true);
    s.flow.bound_output(OutputBound::for_completion_budget(4));
    s.pick(Ok(1));
    s.admit(true);
    // Four tokens, a chat role chunk, a finish chunk and a sealed
    // stream's final chunk.
    for _ in 0..7 {
        s.frame(data());
    }
    s.frame(receipt(4));
    s.part(true);
    assert!(s.billed.is_empty(), "seven frames fit a 4-token budget");
    s.frame(data());
    assert_eq!(s.abandoned, vec![1], "the eighth ends the stream");
    assert_eq!(s.billed_receipts, vec![Some(4)]);
    s.bill(Ok(()));
    assert_eq!(s.final_code(), Some(ErrorCode::WorkerFailedMidStream));
    let relayed = s
        .forwarded
        .iter()
        .filter(|f| matches!(f, Frame::Data(_)))
        .count();
    assert_eq!(relayed, 7, "the frame past the bound is not relayed");
    s.assert_clean();

    // Bytes count too: one huge frame is as bad as many.
    let mut s = Sim::new(true);
    s.flow.bound_output(OutputBound::for_completion_budget(4));
    s.pick(Ok(1));
    s.admit(true);
    s.frame(Frame::Data(Bytes::from(vec![b'x'; 8 << 20])));
    assert!(
        s.forwarded.iter().all(|f| !matches!(f, Frame::Data(_))),
        "8 MiB for max_tokens = 4 never reaches the client"
    );
    assert_eq!(s.released.len(), 1, "no receipt yet: nothing billed");
    s.assert_clean();
}

#[test]
fn what_arrives_while_a_receipt_is_billed_waits_its_turn() {
    let mut s = Sim::new(true);
    s.pick(Ok(1));
    s.admit(true);
    s.frame(data());
    s.frame(receipt(1));
    s.frame(receipt(2));
    s.frame(end());
    s.client_gone();
    assert_eq!(s.parts, vec![1], "one part out at a time");
    assert!(s.outcome.is_none() && s.billed.is_empty());
    s.part(true);
    // The End came before the client left: it is billed, though it can no
    // longer be delivered.
    assert_eq!(s.billed.len(), 1, "the End is billed once the part is back");
    s.bill(Ok(()));
    assert_eq!(s.outcome, Some(Outcome::Cancelled));
    s.assert_clean();
}

#[test]
fn a_receipt_that_does_not_bill_ends_the_attempt_without_relaying_it() {
    let mut s = Sim::new(true);
    s.pick(Ok(1));
    s.admit(true);
    s.frame(data());
    s.frame(receipt(1));
    s.part(true);
    s.frame(data());
    s.frame(receipt(99));
    s.part(false);
    assert_eq!(s.abandoned, vec![1]);
    assert_eq!(
        s.billed_receipts,
        vec![Some(1)],
        "the last good receipt is the bill"
    );
    s.bill(Ok(()));
    let receipts = s
        .forwarded
        .iter()
        .filter(|f| matches!(f, Frame::Receipt(_)))
        .count();
    assert_eq!(receipts, 1, "the refused receipt never reaches the client");
    assert_eq!(s.final_code(), Some(ErrorCode::ReceiptRejected));
    s.assert_clean();
}

#[test]
fn a_bill_that_never_answers_ends_the_job_without_a_second_release() {
    let mut s = Sim::new(true);
    s.pick(Ok(1));
    s.admit(true);
    s.frame(data());
    s.frame(receipt(1));
    let lost = s.part_out.take().expect("out");
    s.wants = None;
    s.flow.part_lost("the task died".into());
    s.drain();
    assert_eq!(s.final_code(), Some(ErrorCode::Unavailable));
    assert!(
        s.released.is_empty() && s.billed.is_empty(),
        "nothing else consumed it"
    );
    assert!(s.flow.is_done());
    s.held.remove(&lost.0);
    s.assert_clean();
}

#[test]
fn a_receipt_before_any_output_is_ignored() {
    let mut s = Sim::new(true);
    s.pick(Ok(1));
    s.admit(true);
    s.frame(receipt(5));
    assert!(s.parts.is_empty() && s.forwarded.is_empty());
    s.frame(err(ErrorCode::WorkerUnavailable));
    assert_eq!(
        s.wants,
        Some(Want::Pick),
        "still retried elsewhere: nothing was delivered"
    );
}

#[test]
fn a_client_that_leaves_before_any_receipt_releases_the_credit() {
    let mut s = Sim::new(true);
    s.pick(Ok(1));
    s.admit(true);
    s.frame(data());
    s.client_gone();
    assert!(s.released.is_empty(), "held until the worker has stopped");
    s.frame(err(ErrorCode::Cancelled));
    assert!(s.billed.is_empty());
    assert_eq!(s.released, vec![1]);
    s.assert_clean();
}

fn err(code: ErrorCode) -> Frame {
    Frame::Error(JobError::new(code, "x"))
}

#[test]
fn unpaid_job_relays_and_ends() {
    let mut s = Sim::new(false);
    s.pick(Ok(1));
    assert_eq!(s.sent, vec![1]);
    s.frame(data());
    s.frame(data());
    s.frame(end());
    assert_eq!(s.outcome, Some(Outcome::Ok));
    assert_eq!(s.forwarded.len(), 3);
    s.assert_clean();
}

#[test]
fn paid_job_bills_before_the_end_goes_on() {
    let mut s = Sim::new(true);
    s.pick(Ok(1));
    assert!(s.sent.is_empty(), "sent before admission");
    s.admit(true);
    assert_eq!(s.sent, vec![1]);
    s.frame(data());
    s.frame(end());
    assert_eq!(s.forwarded.len(), 1, "End forwarded before it was billed");
    assert_eq!(s.billed, vec![1]);
    s.bill(Ok(()));
    assert_eq!(s.outcome, Some(Outcome::Ok));
    assert!(s.released.is_empty());
    s.assert_clean();
}

#[test]
fn a_refused_receipt_ends_with_its_error_and_releases_nothing_twice() {
    let mut s = Sim::new(true);
    s.pick(Ok(1));
    s.admit(true);
    s.frame(data());
    s.frame(end());
    // The books released the reservation as part of the failed bill.
    s.bill(Err(JobError::new(ErrorCode::ReceiptRejected, "bad")));
    assert_eq!(s.outcome, Some(Outcome::Failed(ErrorCode::ReceiptRejected)));
    assert!(s.released.is_empty(), "released after billing consumed it");
    s.assert_clean();
}

#[test]
fn a_bill_that_cannot_be_written_is_not_released_again() {
    // The bug this flow replaced: "cannot bill" released the credit twice.
    let mut s = Sim::new(true);
    s.pick(Ok(1));
    s.admit(true);
    s.frame(end());
    s.bill(Err(JobError::new(ErrorCode::Unavailable, "cannot bill")));
    assert_eq!(s.outcome, Some(Outcome::Failed(ErrorCode::Unavailable)));
    assert_eq!((s.billed.len(), s.released.len()), (1, 0));
    s.assert_clean();
}

#[test]
fn a_worker_failing_before_the_first_byte_is_replaced() {
    let mut s = Sim::new(true);
    s.pick(Ok(1));
    s.admit(true);
    s.fail("link broke");
    assert_eq!(s.released, vec![1]);
    s.pick_next();
    s.admit(true);
    s.frame(data());
    s.frame(end());
    s.bill(Ok(()));
    assert_eq!(s.sent, vec![1, 2]);
    assert_eq!(s.outcome, Some(Outcome::Ok));
    s.assert_clean();
}

#[test]
fn busy_before_the_first_byte_is_retried_elsewhere() {
    let mut s = Sim::new(false);
    s.pick(Ok(1));
    s.frame(err(ErrorCode::Busy));
    s.pick_next();
    s.frame(end());
    assert_eq!(s.outcome, Some(Outcome::Ok));
    assert_eq!(s.forwarded.len(), 1, "the busy error reached the client");
    s.assert_clean();
}

#[test]
fn after_max_attempts_the_last_error_is_final() {
    let mut s = Sim::new(false);
    for _ in 0..3 {
        s.pick_next();
        s.fail("gone");
    }
    assert_eq!(s.sent.len(), 3);
    assert_eq!(s.final_code(), Some(ErrorCode::WorkerUnavailable));
    s.assert_clean();
}

#[test]
fn no_worker_left_gives_the_last_error_not_a_routing_one() {
    let mut s = Sim::new(false);
    s.pick(Ok(1));
    s.fail("gone");
    s.pick(Err(RouteError::NoWorkerForModel));
    assert_eq!(s.final_code(), Some(ErrorCode::WorkerUnavailable));
    s.assert_clean();
}

#[test]
fn unknown_model_is_model_not_found() {
    let mut s = Sim::new(false);
    s.pick(Err(RouteError::NoWorkerForModel));
    assert_eq!(s.final_code(), Some(ErrorCode::ModelNotFound));
    s.assert_clean();
}

#[test]
fn all_busy_is_busy() {
    let mut s = Sim::new(true);
    s.pick(Err(RouteError::AllBusy));
    assert_eq!(s.final_code(), Some(ErrorCode::Busy));
    s.assert_clean();
}

#[test]
fn failing_mid_stream_ends_with_a_typed_error_and_releases_the_credit() {
    let mut s = Sim::new(true);
    s.pick(Ok(1));
    s.admit(true);
    s.frame(data());
    s.fail("stream broke");
    assert_eq!(s.final_code(), Some(ErrorCode::WorkerFailedMidStream));
    assert_eq!(s.sent, vec![1], "retried after output was delivered");
    assert_eq!(s.released, vec![1]);
    s.assert_clean();
}

#[test]
fn a_worker_error_after_output_is_final() {
    let mut s = Sim::new(false);
    s.pick(Ok(1));
    s.frame(data());
    s.frame(err(ErrorCode::Busy));
    assert_eq!(s.final_code(), Some(ErrorCode::Busy));
    assert_eq!(s.sent, vec![1]);
    s.assert_clean();
}

#[test]
fn a_non_retryable_error_before_output_is_final() {
    let mut s = Sim::new(true);
    s.pick(Ok(1));
    s.admit(true);
    s.frame(err(ErrorCode::BadRequest));
    assert_eq!(s.final_code(), Some(ErrorCode::BadRequest));
    assert_eq!(s.released, vec![1]);
    s.assert_clean();
}

#[test]
fn a_silent_worker_is_replaced_at_its_deadline_not_before() {
    let mut s = Sim::new(false);
    s.pick(Ok(1));
    s.advance(IDLE - Duration::from_millis(1));
    assert_eq!(s.sent, vec![1]);
    s.advance(Duration::from_millis(1));
    s.pick_next();
    s.frame(end());
    assert_eq!(s.outcome, Some(Outcome::Ok));
    s.assert_clean();
}

#[test]
fn each_frame_moves_the_silence_deadline() {
    let mut s = Sim::new(false);
    s.pick(Ok(1));
    for _ in 0..5 {
        s.advance(IDLE - Duration::from_secs(1));
        s.frame(data());
    }
    assert!(s.outcome.is_none());
    s.advance(IDLE);
    assert_eq!(s.final_code(), Some(ErrorCode::WorkerFailedMidStream));
    s.assert_clean();
}

#[test]
fn client_gone_while_running_cancels_and_releases() {
    let mut s = Sim::new(true);
    s.pick(Ok(1));
    s.admit(true);
    s.frame(data());
    s.client_gone();
    assert_eq!(s.cancelled, vec![1]);
    assert!(
        s.outcome.is_none() && s.routed.contains(&1),
        "the slot is held"
    );
    s.fail("the worker's stream ended");
    assert_eq!(s.outcome, Some(Outcome::Cancelled));
    assert_eq!(s.abandoned, vec![1]);
    assert_eq!(s.released, vec![1]);
    s.assert_clean();
}

#[test]
fn a_cancelled_job_streams_to_its_end_and_bills_the_prompt_processed() {
    let mut s = Sim::new(true);
    s.pick(Ok(1));
    s.admit(true);
    s.cancel();
    s.cancel();
    assert_eq!(s.cancelled, vec![1], "the worker is told once");
    // Cancelled during prefill: the worker's receipt covers the prompt.
    s.frame(receipt(0));
    s.part(true);
    assert_eq!(s.parts, vec![0]);
    assert!(
        matches!(s.forwarded[..], [Frame::Receipt(_)]),
        "the client gets it"
    );
    assert!(
        s.routed.contains(&1),
        "the slot is held until the stream ends"
    );
    s.frame(err(ErrorCode::Cancelled));
    assert_eq!(s.billed_receipts, vec![Some(0)]);
    s.bill(Ok(()));
    assert_eq!(s.final_code(), Some(ErrorCode::Cancelled));
    assert_eq!(s.flow.attempts(), 1, "a cancelled job is not retried");
    s.assert_clean();
}

#[test]
fn a_worker_that_ignores_a_cancel_is_cut_off_at_the_drain_deadline() {
    let mut s = Sim::new(true);
    s.pick(Ok(1));
    s.admit(true);
    s.frame(data());
    s.frame(receipt(1));
    s.part(true);
    s.client_gone();
    let relayed = s.part_delivered[0];
    for _ in 0..5 {
        s.advance(DRAIN / 10);
        s.frame(data());
    }
    s.frame(receipt(6));
    assert_eq!(
        s.part_delivered[1], relayed,
        "output after the client left does not raise the receipt's bound"
    );
    s.part(false);
    s.advance(DRAIN);
    assert_eq!(s.abandoned, vec![1], "reset at the deadline, not later");
    assert_eq!(
        s.billed_receipts,
        vec![Some(1)],
        "the last billable receipt"
    );
    s.bill(Ok(()));
    s.assert_clean();
}

#[test]
fn a_cancel_before_a_worker_runs_the_job_ends_it_at_once() {
    let mut s = Sim::new(true);
    s.cancel();
    assert_eq!(s.final_code(), Some(ErrorCode::Cancelled));
    assert!(s.sent.is_empty());
    s.assert_clean();
}

#[test]
fn client_gone_during_admission_releases_the_late_reservation() {
    let mut s = Sim::new(true);
    s.pick(Ok(1));
    s.client_gone();
    s.admit(true);
    assert_eq!(s.released, vec![1]);
    assert!(s.sent.is_empty());
    s.assert_clean();
}

#[test]
fn client_gone_during_billing_does_not_undo_the_bill() {
    let mut s = Sim::new(true);
    s.pick(Ok(1));
    s.admit(true);
    s.frame(end());
    s.client_gone();
    s.bill(Ok(()));
    assert_eq!(
        s.outcome,
        Some(Outcome::Cancelled),
        "its End was not delivered"
    );
    assert_eq!(s.billed.len(), 1);
    assert!(s.released.is_empty());
    s.assert_clean();
}

#[test]
fn refused_admission_is_final_and_frees_the_slot() {
    let mut s = Sim::new(true);
    s.pick(Ok(1));
    s.admit(false);
    assert_eq!(s.final_code(), Some(ErrorCode::PaymentRequired));
    assert!(s.sent.is_empty());
    s.assert_clean();
}

#[test]
fn a_paid_job_is_registered_before_it_is_routed() {
    let mut s = Sim::unregistered(true);
    assert_eq!(s.wants, Some(Want::Register), "nothing before the register");
    s.register(Ok(()));
    assert_eq!(s.wants, Some(Want::Pick));
    let unpaid = Sim::unregistered(false);
    assert_eq!(
        unpaid.wants,
        Some(Want::Pick),
        "unpaid jobs are not registered"
    );
}

#[test]
fn a_duplicate_request_id_is_refused_before_routing() {
    let mut s = Sim::unregistered(true);
    s.register(Err(JobError::new(ErrorCode::DuplicateRequest, "seen")));
    assert_eq!(s.final_code(), Some(ErrorCode::DuplicateRequest));
    assert_eq!(s.flow.attempts(), 0, "no worker was picked");
    assert_eq!(s.next_res, 0, "no credit was reserved");
    s.assert_clean();
}

#[test]
fn a_client_gone_while_registering_is_cancelled() {
    let mut s = Sim::unregistered(true);
    s.client_gone();
    assert_eq!(s.outcome, Some(Outcome::Cancelled));
    s.register(Ok(()));
    assert_eq!(s.flow.attempts(), 0, "a late register routes nothing");
    s.assert_clean();
}

#[test]
fn events_after_the_end_change_nothing() {
    let mut s = Sim::new(false);
    s.pick(Ok(1));
    s.frame(end());
    let before = s.forwarded.len();
    s.frame(data());
    s.fail("late");
    s.client_gone();
    s.advance(IDLE * 2);
    assert_eq!(s.forwarded.len(), before);
    s.assert_clean();
}

/// Something that can happen to a running flow.
#[derive(Debug, Clone)]
enum Ev {
    Data,
    Receipt,
    End,
    Retryable,
    Final,
    WorkerFailed,
    Silence,
    ClientGone,
    Cancel,
}

fn ev() -> impl Strategy<Value = Ev> {
    prop_oneof![
        3 => Just(Ev::Data),
        1 => Just(Ev::Receipt),
        1 => Just(Ev::End),
        1 => Just(Ev::Retryable),
        1 => Just(Ev::Final),
        1 => Just(Ev::WorkerFailed),
        1 => Just(Ev::Silence),
        1 => Just(Ev::ClientGone),
        1 => Just(Ev::Cancel),
    ]
}

proptest! {
    #[test]
    fn money_and_slots_are_accounted_for_whatever_happens(
        paid in any::<bool>(),
        evs in prop::collection::vec(ev(), 0..40),
        admits in prop::collection::vec(any::<bool>(), 8),
        picks in prop::collection::vec(0u8..4, 8),
        bills in prop::collection::vec(any::<bool>(), 8),
        registers in any::<bool>(),
    ) {
        let mut s = Sim::unregistered(paid);
        let (mut a, mut p, mut b) = (admits.iter(), picks.iter(), bills.iter());
        let mut evs = evs.into_iter();
        while s.outcome.is_none() {
            match s.wants {
                Some(Want::Register) => s.register(if registers { Ok(()) } else {
                    Err(JobError::new(ErrorCode::DuplicateRequest, "seen"))
                }),
                Some(Want::Pick) => match p.next().copied().unwrap_or(0) {
                    1 => s.pick(Err(RouteError::AllBusy)),
                    _ => s.pick_next(),
                },
                Some(Want::Admit) => s.admit(*a.next().unwrap_or(&true)),
                Some(Want::BillPart) => s.part(*b.next().unwrap_or(&true)),
                Some(Want::Bill) => {
                    let ok = *b.next().unwrap_or(&true);
                    s.bill(if ok { Ok(()) } else { Err(JobError::new(ErrorCode::ReceiptRejected, "x")) });
                }
                None => match evs.next() {
                    Some(Ev::Data) => s.frame(data()),
                    Some(Ev::Receipt) => s.frame(receipt(1)),
                    Some(Ev::End) | None => s.frame(end()),
                    Some(Ev::Retryable) => s.frame(err(ErrorCode::WorkerUnavailable)),
                    Some(Ev::Final) => s.frame(err(ErrorCode::EngineFailed)),
                    Some(Ev::WorkerFailed) => s.fail("x"),
                    Some(Ev::Silence) => s.advance(IDLE),
                    Some(Ev::ClientGone) => s.client_gone(),
                    Some(Ev::Cancel) => s.cancel(),
                },
            }
        }
        // A bill still in flight when the client left completes.
        if s.wants == Some(Want::Bill) {
            s.bill(Ok(()));
        }
        s.assert_clean();
        prop_assert!(s.sent.len() <= 3);
        prop_assert_eq!(s.billed.len() + s.released.len(), s.next_res as usize);
        prop_assert!(s.billed.len() <= 1);
    }
}
