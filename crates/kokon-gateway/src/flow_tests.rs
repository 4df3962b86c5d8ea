//! The gateway's request flow alone: every outcome, and a property test
//! that it finishes once, pays only after an `End`, and never answers
//! after the end.

use kokon_proto::{ErrorCode, FinishReason, JobEnd, JobError, Usage};
use proptest::prelude::*;

use super::{Action, Event, GatewayFlow, Outcome};

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

fn drain(f: &mut GatewayFlow) -> Vec<Action> {
    std::iter::from_fn(|| f.poll_action()).collect()
}

fn finished(a: &[Action]) -> Option<Outcome> {
    a.iter().find_map(|a| match a {
        Action::Finish(o) => Some(*o),
        _ => None,
    })
}

fn text(t: &str) -> Option<Result<Event, JobError>> {
    // As a `Data` frame's JSON chunk carries it.
    let len = t.len() + kokon_proto::meter::CHUNK_OVERHEAD as usize;
    Some(Ok(Event::Text(t.into(), len)))
}

#[test]
fn paid_request_authorises_submits_settles_then_answers() {
    let mut f = GatewayFlow::new(true, false);
    assert!(matches!(drain(&mut f)[..], [Action::Authorise]));
    f.authorised(Ok(()));
    assert!(matches!(drain(&mut f)[..], [Action::Submit]));
    f.submitted(Ok(()));
    assert!(f.wants_event());
    f.event(text("Hello"));
    f.event(text(", you"));
    f.event(Some(Ok(Event::End(end()))));
    let a = drain(&mut f);
    assert!(
        matches!(&a[2], Action::Settle { delivered, .. }
            if delivered.completion_bound() == 10 + 1 + kokon_proto::meter::MAX_STOP_BYTES),
        "{a:?}"
    );
    assert!(
        !a.iter().any(|a| matches!(a, Action::Answer { .. })),
        "no answer before paying"
    );
    f.settled(Ok(42));
    let a = drain(&mut f);
    assert!(matches!(&a[0], Action::Answer { cost: Some(42), .. }));
    assert_eq!(finished(&a), Some(Outcome::Ok));
    assert!(f.is_done());
}

#[test]
fn unpaid_request_skips_authorise_and_settle() {
    let mut f = GatewayFlow::new(false, false);
    assert!(matches!(drain(&mut f)[..], [Action::Submit]));
    f.submitted(Ok(()));
    f.event(Some(Ok(Event::End(end()))));
    let a = drain(&mut f);
    assert!(matches!(&a[0], Action::Answer { cost: None, .. }));
    assert_eq!(finished(&a), Some(Outcome::Ok));
}

#[test]
fn a_refused_authorisation_never_reaches_the_proxy() {
    let mut f = GatewayFlow::new(true, false);
    drain(&mut f);
    f.authorised(Err(JobError::new(ErrorCode::PaymentRequired, "top up")));
    let a = drain(&mut f);
    assert!(!a.iter().any(|a| matches!(a, Action::Submit)));
    assert_eq!(
        finished(&a),
        Some(Outcome::Failed(ErrorCode::PaymentRequired))
    );
}

#[test]
fn a_stream_cut_before_its_end_pays_nothing_and_says_so() {
    let mut f = GatewayFlow::new(true, false);
    drain(&mut f);
    f.authorised(Ok(()));
    f.submitted(Ok(()));
    f.event(text("partial"));
    f.event(None);
    let a = drain(&mut f);
    assert!(!a.iter().any(|a| matches!(a, Action::Settle { .. })));
    assert!(matches!(&a[2], Action::Fail(e) if e.code == ErrorCode::Unavailable));
}

fn receipt(completion: u64) -> Box<kokon_proto::ReceiptEnvelope> {
    use kokon_money::{Hash32, Receipt, Signature, Signed, TokenUsage};
    Box::new(kokon_proto::ReceiptEnvelope {
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
    })
}

fn settled_receipt(actions: &[Action]) -> Option<u64> {
    actions.iter().find_map(|a| match a {
        Action::Settle {
            receipt: Some(r), ..
        } => Some(r.receipt.body.usage.completion),
        _ => None,
    })
}

#[test]
fn a_stream_cut_after_a_receipt_pays_the_latest_then_fails() {
    let mut f = GatewayFlow::new(true, false);
    drain(&mut f);
    f.authorised(Ok(()));
    f.submitted(Ok(()));
    f.event(text("one "));
    f.event(Some(Ok(Event::Receipt(receipt(1)))));
    f.event(text("two "));
    f.event(Some(Ok(Event::Receipt(receipt(2)))));
    f.event(text("three"));
    f.event(None);
    let a = drain(&mut f);
    assert_eq!(settled_receipt(&a), Some(2), "the latest receipt: {a:?}");
    assert!(
        !a.iter().any(|a| matches!(a, Action::Fail(_))),
        "not before it is paid"
    );
    f.settled(Ok(5));
    let a = drain(&mut f);
    assert!(matches!(&a[0], Action::Fail(e) if e.code == ErrorCode::Unavailable));
    assert_eq!(finished(&a), Some(Outcome::Failed(ErrorCode::Unavailable)));
}

#[test]
fn a_client_that_leaves_after_a_receipt_pays_it() {
    let mut f = GatewayFlow::new(true, false);
    drain(&mut f);
    f.authorised(Ok(()));
    f.submitted(Ok(()));
    f.event(text("one "));
    f.event(Some(Ok(Event::Receipt(receipt(1)))));
    drain(&mut f);
    f.client_gone();
    assert!(
        matches!(drain(&mut f)[..], [Action::Cancel]),
        "the job is cancelled, its stream read on"
    );
    assert!(f.wants_event());
    f.event(text("two "));
    f.event(Some(Ok(Event::Receipt(receipt(2)))));
    assert!(
        drain(&mut f).is_empty(),
        "nothing goes to a client that left"
    );
    f.event(Some(Err(JobError::new(ErrorCode::Cancelled, "stopped"))));
    let a = drain(&mut f);
    assert_eq!(settled_receipt(&a), Some(2), "the worker's last receipt");
    assert!(
        matches!(&a[0], Action::Settle { delivered, .. } if delivered.frames == 2),
        "bounded by all the output received: {a:?}"
    );
    f.settled(Err(JobError::new(ErrorCode::ReceiptRejected, "bad")));
    assert_eq!(finished(&drain(&mut f)), Some(Outcome::Cancelled));
    // Unpaid networks carry no receipts to pay.
    let mut g = GatewayFlow::new(false, false);
    drain(&mut g);
    g.submitted(Ok(()));
    g.event(text("one "));
    g.client_gone();
    drain(&mut g);
    g.event(Some(Ok(Event::End(end()))));
    assert_eq!(finished(&drain(&mut g)), Some(Outcome::Cancelled));
}

#[test]
fn a_refused_receipt_is_the_answer() {
    let mut f = GatewayFlow::new(true, false);
    drain(&mut f);
    f.authorised(Ok(()));
    f.submitted(Ok(()));
    f.event(Some(Ok(Event::End(end()))));
    drain(&mut f);
    f.settled(Err(JobError::new(
        ErrorCode::ReceiptRejected,
        "over budget",
    )));
    let a = drain(&mut f);
    assert!(matches!(&a[0], Action::Fail(e) if e.code == ErrorCode::ReceiptRejected));
}

#[test]
fn client_gone_mid_stream_cancels_but_a_payment_under_way_completes() {
    let mut f = GatewayFlow::new(true, false);
    drain(&mut f);
    f.authorised(Ok(()));
    f.submitted(Ok(()));
    f.event(text("x"));
    f.event(Some(Ok(Event::Receipt(receipt(1)))));
    drain(&mut f);
    f.client_gone();
    assert!(matches!(drain(&mut f)[..], [Action::Cancel]));
    // The proxy did not take the cancel (or the drain ran out).
    f.stop_reading();
    let a = drain(&mut f);
    assert_eq!(settled_receipt(&a), Some(1), "the latest receipt is paid");
    f.settled(Ok(1));
    assert_eq!(finished(&drain(&mut f)), Some(Outcome::Cancelled));

    let mut g = GatewayFlow::new(true, false);
    drain(&mut g);
    g.authorised(Ok(()));
    g.submitted(Ok(()));
    g.event(Some(Ok(Event::End(end()))));
    drain(&mut g);
    g.client_gone();
    assert!(drain(&mut g).is_empty());
    g.settled(Ok(1));
    assert_eq!(finished(&drain(&mut g)), Some(Outcome::Ok));
}

#[derive(Clone, Debug)]
enum Ev {
    Auth(bool),
    Sub(bool),
    Text,
    End,
    Err,
    Cut,
    Settled(bool),
    Gone,
    StopReading,
}

fn ev() -> impl Strategy<Value = Ev> {
    prop_oneof![
        1 => any::<bool>().prop_map(Ev::Auth),
        1 => any::<bool>().prop_map(Ev::Sub),
        3 => Just(Ev::Text),
        1 => Just(Ev::End),
        1 => Just(Ev::Err),
        1 => Just(Ev::Cut),
        1 => any::<bool>().prop_map(Ev::Settled),
        1 => Just(Ev::Gone),
        1 => Just(Ev::StopReading),
    ]
}

proptest! {
    #[test]
    fn whatever_happens_it_finishes_once_and_pays_only_after_an_end(
        paid in any::<bool>(),
        events in proptest::collection::vec(ev(), 0..30),
    ) {
        let mut f = GatewayFlow::new(paid, false);
        let mut all = drain(&mut f);
        let mut saw_end = false;
        for e in events {
            match e {
                Ev::Auth(ok) => f.authorised(if ok { Ok(()) } else { Err(JobError::new(ErrorCode::PaymentRequired, "x")) }),
                Ev::Sub(ok) => f.submitted(if ok { Ok(()) } else { Err(JobError::new(ErrorCode::Unavailable, "x")) }),
                Ev::Text => f.event(text("t")),
                Ev::End => { if f.wants_event() { saw_end = true; } f.event(Some(Ok(Event::End(end())))) }
                Ev::Err => f.event(Some(Err(JobError::new(ErrorCode::EngineFailed, "x")))),
                Ev::Cut => f.event(None),
                Ev::Settled(ok) => f.settled(if ok { Ok(1) } else { Err(JobError::new(ErrorCode::ReceiptRejected, "x")) }),
                Ev::Gone => f.client_gone(),
                Ev::StopReading => f.stop_reading(),
            }
            for a in drain(&mut f) {
                if let Action::Settle { .. } = a {
                    prop_assert!(paid && saw_end, "settled without an End");
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
