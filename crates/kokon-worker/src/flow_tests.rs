//! The worker's job flow alone, on a virtual clock: every outcome, and a
//! property test that whatever happens, the flow finishes exactly once, a
//! paid job's `End` never goes out without its receipt, and nothing is sent
//! after the end.

use std::time::{Duration, Instant};

use kokon_proto::{ErrorCode, FinishReason, Frame, JobEnd, JobError, JobHeader, JobKind, Usage};
use proptest::prelude::*;

use super::{Action, FlowConfig, Outcome, WorkerFlow, accept};

const IDLE: Duration = Duration::from_secs(300);

fn cfg(paid: bool) -> FlowConfig {
    FlowConfig {
        paid,
        engine_idle_timeout: IDLE,
        receipt_every_tokens: 4,
        receipt_every: Duration::from_secs(1),
    }
}

/// The engine's usage after `n` generated tokens of a 3-token prompt.
fn used(n: u32) -> Usage {
    Usage {
        prompt_tokens: 3,
        completion_tokens: n,
    }
}

fn receipts(actions: &[Action]) -> Vec<u32> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SendReceipt(u) => Some(u.completion_tokens),
            _ => None,
        })
        .collect()
}

fn end() -> JobEnd {
    JobEnd {
        usage: Usage {
            prompt_tokens: 3,
            completion_tokens: 2,
        },
        finish_reason: FinishReason::Stop,
        receipt: None,
    }
}

/// Everything a flow asked for, in order.
fn drain(f: &mut WorkerFlow) -> Vec<Action> {
    std::iter::from_fn(|| f.poll_action()).collect()
}

fn finished(actions: &[Action]) -> Option<Outcome> {
    actions.iter().find_map(|a| match a {
        Action::Finish(o) => Some(*o),
        _ => None,
    })
}

#[test]
fn a_paid_job_sends_a_receipt_every_n_tokens_and_after_a_pause() {
    let t0 = Instant::now();
    let mut f = WorkerFlow::new(cfg(true), t0, None);
    for n in 1..=9 {
        f.text("w ".into(), used(n), t0);
    }
    assert_eq!(receipts(&drain(&mut f)), vec![4, 8], "every 4 tokens");
    // One more token, but a second later: the time bound sends it.
    f.text("w ".into(), used(10), t0 + Duration::from_secs(1));
    let a = drain(&mut f);
    assert_eq!(receipts(&a), vec![10]);
    assert!(
        matches!(&a[0], Action::Send(Frame::Data(_))) && matches!(&a[1], Action::SendReceipt(_)),
        "a receipt follows the data it covers: {a:?}"
    );
}

#[test]
fn an_unpaid_job_sends_no_receipts() {
    let t0 = Instant::now();
    let mut f = WorkerFlow::new(cfg(false), t0, None);
    for n in 1..=9 {
        f.text("w ".into(), used(n), t0 + Duration::from_secs(n.into()));
    }
    assert!(receipts(&drain(&mut f)).is_empty());
}

#[test]
fn a_job_that_fails_after_output_sends_a_last_receipt_first() {
    let t0 = Instant::now();
    let mut f = WorkerFlow::new(cfg(true), t0, None);
    for n in 1..=6 {
        f.text("w ".into(), used(n), t0);
    }
    drain(&mut f);
    f.engine_done(Err(JobError::new(ErrorCode::EngineFailed, "oom")));
    let a = drain(&mut f);
    assert_eq!(receipts(&a), vec![6], "tokens 5 and 6 are paid too");
    let receipt_at = a.iter().position(|a| matches!(a, Action::SendReceipt(_)));
    let error_at = a
        .iter()
        .position(|a| matches!(a, Action::Send(Frame::Error(_))));
    assert!(receipt_at < error_at, "{a:?}");
    // Silence fails the same way, with nothing new to receipt.
    let mut g = WorkerFlow::new(cfg(true), t0, None);
    g.text("w ".into(), used(4), t0);
    drain(&mut g);
    g.handle_timeout(t0 + IDLE);
    assert!(
        receipts(&drain(&mut g)).is_empty(),
        "4 tokens were covered already"
    );
}

#[test]
fn unpaid_job_streams_text_then_ends() {
    let t0 = Instant::now();
    let mut f = WorkerFlow::new(cfg(false), t0, None);
    f.text("Hel".into(), used(1), t0);
    f.text("lo".into(), used(1), t0);
    f.engine_done(Ok(end()));
    let a = drain(&mut f);
    assert!(matches!(&a[0], Action::Send(Frame::Data(b)) if b.as_ref() == br#"{"text":"Hel"}"#));
    assert!(matches!(&a[2], Action::Send(Frame::End(_))));
    assert_eq!(finished(&a), Some(Outcome::Completed));
    assert!(f.is_done());
}

#[test]
fn paid_job_signs_before_the_end_goes_out() {
    let t0 = Instant::now();
    let mut f = WorkerFlow::new(cfg(true), t0, None);
    f.text("x".into(), used(1), t0);
    f.engine_done(Ok(end()));
    let a = drain(&mut f);
    assert!(matches!(a.last(), Some(Action::Sign(_))), "{a:?}");
    assert!(!a.iter().any(|a| matches!(a, Action::Send(Frame::End(_)))));
    assert!(!f.is_done());
    f.signed(Ok(end()));
    let a = drain(&mut f);
    assert!(matches!(&a[0], Action::Send(Frame::End(_))));
    assert_eq!(finished(&a), Some(Outcome::Completed));
}

#[test]
fn a_receipt_that_cannot_be_signed_ends_the_job_with_an_error() {
    let t0 = Instant::now();
    let mut f = WorkerFlow::new(cfg(true), t0, None);
    f.engine_done(Ok(end()));
    drain(&mut f);
    f.signed(Err("disk full".into()));
    let a = drain(&mut f);
    assert!(matches!(&a[0], Action::Send(Frame::Error(e)) if e.code == ErrorCode::EngineFailed));
    assert_eq!(finished(&a), Some(Outcome::ReceiptFailed));
}

#[test]
fn engine_failure_goes_out_as_the_error() {
    let t0 = Instant::now();
    let mut f = WorkerFlow::new(cfg(true), t0, None);
    f.engine_done(Err(JobError::new(ErrorCode::BadRequest, "too long")));
    let a = drain(&mut f);
    assert!(matches!(&a[0], Action::Send(Frame::Error(e)) if e.code == ErrorCode::BadRequest));
    assert_eq!(finished(&a), Some(Outcome::Failed(ErrorCode::BadRequest)));
    assert!(
        !a.iter().any(|a| matches!(a, Action::Sign(_))),
        "no receipt for a failure"
    );
}

#[test]
fn requester_gone_cancels_the_engine() {
    let t0 = Instant::now();
    let mut f = WorkerFlow::new(cfg(true), t0, None);
    f.text("x".into(), used(1), t0);
    f.requester_gone();
    let a = drain(&mut f);
    assert!(a.iter().any(|a| matches!(a, Action::CancelEngine)));
    assert_eq!(finished(&a), Some(Outcome::Cancelled));
    f.engine_done(Ok(end()));
    assert!(drain(&mut f).is_empty(), "nothing after the end");
}

#[test]
fn a_cancel_during_prefill_ends_with_a_receipt_for_the_prompt_processed() {
    let t0 = Instant::now();
    let mut f = WorkerFlow::new(cfg(true), t0, None);
    let prefilled = Usage {
        prompt_tokens: 128,
        completion_tokens: 0,
    };
    f.text(String::new(), prefilled, t0);
    assert!(drain(&mut f).is_empty(), "progress alone sends nothing");
    f.cancel_requested();
    f.cancel_requested();
    let a = drain(&mut f);
    assert!(matches!(a[..], [Action::CancelEngine]), "once: {a:?}");
    assert!(!f.is_done(), "the job ends when the engine has stopped");
    f.engine_done(Err(JobError::new(ErrorCode::Cancelled, "stopped")));
    let a = drain(&mut f);
    assert!(
        matches!(&a[0], Action::SendReceipt(u) if *u == prefilled),
        "the prompt processed is receipted: {a:?}"
    );
    assert!(matches!(&a[1], Action::Send(Frame::Error(e)) if e.code == ErrorCode::Cancelled));
    assert_eq!(finished(&a), Some(Outcome::Cancelled));
}

#[test]
fn an_engine_that_finishes_despite_a_cancel_ends_as_usual() {
    let t0 = Instant::now();
    let mut f = WorkerFlow::new(cfg(true), t0, None);
    f.text("x".into(), used(1), t0);
    f.cancel_requested();
    drain(&mut f);
    f.engine_done(Ok(end()));
    assert!(matches!(drain(&mut f)[..], [Action::Sign(_)]));
}

#[test]
fn requester_gone_while_signing_still_records_the_receipt() {
    let t0 = Instant::now();
    let mut f = WorkerFlow::new(cfg(true), t0, None);
    f.engine_done(Ok(end()));
    drain(&mut f);
    f.requester_gone();
    assert!(drain(&mut f).is_empty());
    f.signed(Ok(end()));
    assert_eq!(finished(&drain(&mut f)), Some(Outcome::Completed));
}

#[test]
fn a_silent_engine_is_stopped_at_its_deadline_and_not_before() {
    let t0 = Instant::now();
    let mut f = WorkerFlow::new(cfg(false), t0, None);
    f.text("x".into(), used(1), t0 + Duration::from_secs(100));
    assert_eq!(f.poll_timeout(), Some(t0 + Duration::from_secs(100) + IDLE));
    f.handle_timeout(t0 + IDLE); // past the first deadline, not the moved one
    drain(&mut f);
    assert!(!f.is_done());
    f.handle_timeout(t0 + Duration::from_secs(100) + IDLE);
    let a = drain(&mut f);
    assert!(a.iter().any(|a| matches!(a, Action::CancelEngine)));
    assert_eq!(finished(&a), Some(Outcome::Failed(ErrorCode::EngineFailed)));
}

fn header(paid: bool) -> JobHeader {
    JobHeader {
        request_id: "r1".into(),
        model: "m".into(),
        kind: JobKind::Chat,
        max_price_milli: None,
        budget: paid.then_some(kokon_money::receipt::Budget {
            prompt: 100,
            completion: 7,
        }),
        payment: None,
        credit: None,
        sealed: false,
    }
}

const JOB: &[u8] =
    br#"{"model":"m","input":{"chat":[{"role":"user","content":"hi"}]},"params":{"max_tokens":100}}"#;

#[test]
fn accept_caps_the_engine_at_the_paid_budget() {
    let job = accept(&header(true), JOB, true).unwrap();
    assert_eq!(job.params.max_tokens, Some(7));
    assert_eq!(
        job.params.max_prompt_tokens,
        Some(100),
        "longer prompts are refused"
    );
    let greedy = br#"{"model":"m","input":{"prompt":"hi"},"params":{"max_tokens":9,"max_prompt_tokens":5000}}"#;
    let job = accept(&header(true), greedy, true).unwrap();
    assert_eq!(
        job.params.max_prompt_tokens,
        Some(100),
        "the payload cannot raise the budget"
    );
}

#[test]
fn accept_refuses_what_a_worker_must_not_run() {
    let no_pay = accept(&header(false), JOB, true).err().unwrap();
    assert_eq!(no_pay.code, ErrorCode::PaymentRequired);
    let garbage = accept(&header(false), b"{not json", false).err().unwrap();
    assert_eq!(garbage.code, ErrorCode::BadRequest);
    let mut other = header(false);
    other.model = "other".into();
    let mismatch = accept(&other, JOB, false).err().unwrap();
    assert!(mismatch.message.contains("differs"), "{}", mismatch.message);
}

#[derive(Clone, Debug)]
enum Ev {
    Text,
    Done(bool),
    Signed(bool),
    Gone,
    Cancel,
    Wait(u64),
}

fn ev() -> impl Strategy<Value = Ev> {
    prop_oneof![
        4 => Just(Ev::Text),
        1 => any::<bool>().prop_map(Ev::Done),
        1 => any::<bool>().prop_map(Ev::Signed),
        1 => Just(Ev::Gone),
        1 => Just(Ev::Cancel),
        1 => (0u64..400).prop_map(Ev::Wait),
    ]
}

proptest! {
    #[test]
    fn whatever_happens_the_flow_finishes_once_and_never_ends_unsigned(
        paid in any::<bool>(),
        events in proptest::collection::vec(ev(), 0..40),
    ) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut f = WorkerFlow::new(cfg(paid), now, None);
        let mut all = Vec::new();
        let mut signing = false;
        for e in events {
            match e {
                Ev::Text => f.text("t".into(), used(1), now),
                Ev::Done(ok) => f.engine_done(if ok { Ok(end()) } else { Err(JobError::new(ErrorCode::EngineFailed, "x")) }),
                Ev::Signed(ok) => f.signed(if ok { Ok(end()) } else { Err("x".into()) }),
                Ev::Gone => f.requester_gone(),
                Ev::Cancel => f.cancel_requested(),
                Ev::Wait(s) => { now += Duration::from_secs(s); f.handle_timeout(now); }
            }
            for a in drain(&mut f) {
                if let Action::Sign(_) = a { signing = true; }
                if let Action::Send(Frame::End(_)) = a {
                    prop_assert!(!paid || signing, "a paid End went out before its receipt was signed");
                }
                all.push(a);
            }
        }
        let finishes = all.iter().filter(|a| matches!(a, Action::Finish(_))).count();
        prop_assert!(finishes <= 1);
        if let Some(i) = all.iter().position(|a| matches!(a, Action::Finish(_))) {
            prop_assert_eq!(i, all.len() - 1, "nothing after Finish");
        }
        prop_assert_eq!(finishes == 1, f.is_done());
    }
}
