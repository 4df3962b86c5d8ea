//! The proxy's real books (SQLite in a temporary directory) under random
//! interleavings of jobs: duplicate request ids, admissions past the credit
//! limit, cumulative receipts, final bills, releases (cancels and
//! disconnects), client vouchers (replayed too) and crashes (the books
//! dropped with jobs in flight and reopened from disk). After every step:
//! conservation to the nanoton (what was billed is what the workers are owed
//! plus the commission), the credit limit holds, and a restart changes
//! nothing that was durable; a replayed voucher settles nothing twice.

use std::collections::HashSet;

use kokon_money::channel::ChannelTerms;
use kokon_money::{
    Address, ChannelVoucher, Hash32, Nanotons, Receipt, SecretKey, Signed, TokenUsage,
};
use kokon_pay::books::proxy::{Bill, ProxyBooks, Reservation};
use proptest::prelude::*;

const BPS: u16 = 1000;
const CREDIT: Nanotons = 1_000;
const MAX_COST: Nanotons = 300;

fn proxy_key() -> SecretKey {
    SecretKey::from_bytes([2; 32])
}

fn client_key() -> SecretKey {
    SecretKey::from_bytes([1; 32])
}

fn worker_key() -> SecretKey {
    SecretKey::from_bytes([3; 32])
}

fn channel() -> Address {
    Address::new(0, [9; 32])
}

fn open(dir: &std::path::Path) -> ProxyBooks {
    let key = proxy_key();
    let vault = kokon_money::ledger::vault_address(&key.public());
    let mut b = ProxyBooks::open(&dir.join("proxy.db"), key, vault, BPS, CREDIT).unwrap();
    b.update_terms(ChannelTerms {
        id: channel(),
        client: client_key().public(),
        deposit: 1_000_000,
        open: true,
    })
    .unwrap();
    b
}

fn receipt(id: &str, cost: Nanotons) -> Signed<Receipt> {
    let r = Receipt {
        request: Hash32::of(id.as_bytes()),
        model: Hash32([7; 32]),
        usage: TokenUsage {
            completion: cost as u64,
            ..Default::default()
        },
        price_milli: 1000,
        cost,
    };
    Signed::sign(r, &worker_key()).unwrap()
}

/// The bill of `receipt` for job `id`, from the one worker.
fn bill_of<'a>(id: &'a str, receipt: &'a Signed<Receipt>) -> Bill<'a> {
    Bill {
        request_id: id,
        worker: worker_key().public(),
        receipt,
        cost: receipt.body.cost,
        cert: "worker-cert",
        auth: "{}",
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// Register and admit a job with this id (ids repeat: duplicates).
    Start(u8),
    /// Bill the running job `i` (by position) a cumulative receipt raised by `step`.
    Part(usize, u8),
    /// End job `i` with a final receipt raised by `step` (0: as billed).
    End(usize, u8),
    /// The job ended without a final receipt (cancel, disconnect).
    Release(usize),
    /// The client pays `percent` of what it owes (and sends it twice).
    Pay(u8),
    /// The client disputes the `i`-th finished job's receipt.
    Dispute(usize),
    /// The proxy crashes: running jobs are lost, the books reopened.
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..12).prop_map(Op::Start),
        4 => (0usize..4, 0u8..80).prop_map(|(i, s)| Op::Part(i, s)),
        2 => (0usize..4, 0u8..80).prop_map(|(i, s)| Op::End(i, s)),
        1 => (0usize..4).prop_map(Op::Release),
        2 => (0u8..=100).prop_map(Op::Pay),
        1 => (0usize..8).prop_map(Op::Dispute),
        1 => Just(Op::Crash),
    ]
}

/// A running job: its reservation and what its receipts billed so far.
struct Running {
    id: String,
    reservation: Reservation,
    billed: Nanotons,
}

/// What the books must say, computed independently.
#[derive(Default)]
struct Model {
    registered: HashSet<String>,
    billed: Nanotons,
    paid: Nanotons,
    /// Jobs over with something billed: (id, cost), in order.
    finished: Vec<(String, Nanotons)>,
    disputed: HashSet<String>,
    /// Fees of disputed receipts, less what later bills took back.
    withheld: Nanotons,
}

impl Model {
    /// A bill raising the cost by `delta` takes back withheld fees first.
    fn take_back(&mut self, delta: Nanotons) {
        let fee = delta - delta * Nanotons::from(BPS) / 10_000;
        self.withheld -= self.withheld.min(fee);
    }

    fn reserved(&self, running: &[Running]) -> Nanotons {
        running.iter().map(|r| MAX_COST - r.billed).sum()
    }
}

fn check(books: &ProxyBooks, m: &Model, running: &[Running]) -> Result<(), TestCaseError> {
    let t = books.totals().unwrap();
    prop_assert_eq!(t.billed, m.billed, "billed");
    prop_assert_eq!(t.paid, m.paid, "paid");
    prop_assert_eq!(t.withheld, m.withheld, "withheld");
    prop_assert_eq!(
        t.owed_to_workers + t.commission,
        t.billed + t.withheld,
        "conservation"
    );
    prop_assert_eq!(books.owed(&channel()), m.billed - m.paid);
    let exposure = m.billed - m.paid + m.reserved(running);
    prop_assert!(exposure <= CREDIT, "exposure {} above the credit", exposure);
    Ok(())
}

fn pay(books: &mut ProxyBooks, m: &mut Model, percent: u8) -> Result<(), TestCaseError> {
    let amount = m.paid + (m.billed - m.paid) * Nanotons::from(percent) / 100;
    if amount == m.paid {
        return Ok(());
    }
    let v = Signed::sign(
        ChannelVoucher {
            channel: channel(),
            amount,
        },
        &client_key(),
    )
    .unwrap();
    books.accept_voucher(v).unwrap().wait_blocking().unwrap();
    m.paid = amount;
    // Settlement is idempotent: the same voucher again changes nothing.
    prop_assert!(
        books.accept_voucher(v).is_err(),
        "a replayed voucher is refused"
    );
    Ok(())
}

fn step(
    books: &mut ProxyBooks,
    dir: &std::path::Path,
    m: &mut Model,
    running: &mut Vec<Running>,
    op: Op,
) -> Result<(), TestCaseError> {
    match op {
        Op::Start(n) => {
            let id = format!("req-{n}");
            let registered = books.register(&channel(), &id);
            if m.registered.contains(&id) {
                prop_assert!(registered.is_err(), "{id} registered twice");
                return Ok(());
            }
            registered.unwrap().wait_blocking().unwrap();
            m.registered.insert(id.clone());
            let fits = m.billed - m.paid + m.reserved(running) + MAX_COST <= CREDIT;
            match books.admit(&channel(), &id, MAX_COST) {
                Ok(reservation) => {
                    prop_assert!(fits, "admitted past the credit limit");
                    running.push(Running {
                        id,
                        reservation,
                        billed: 0,
                    });
                }
                Err(_) => prop_assert!(!fits, "refused within the credit limit"),
            }
        }
        Op::Part(i, s) if i < running.len() => {
            let job = &mut running[i];
            let cost = (job.billed + Nanotons::from(s)).min(MAX_COST);
            let r = receipt(&job.id, cost);
            let bill = bill_of(&job.id, &r);
            books
                .bill_part(&job.reservation, bill)
                .unwrap()
                .wait_blocking()
                .unwrap();
            m.billed += cost - job.billed;
            m.take_back(cost - job.billed);
            job.billed = cost;
        }
        Op::End(i, s) if i < running.len() => {
            let job = running.remove(i);
            let cost = (job.billed + Nanotons::from(s)).min(MAX_COST);
            let r = receipt(&job.id, cost);
            let bill = bill_of(&job.id, &r);
            books
                .bill(job.reservation, bill)
                .unwrap()
                .wait_blocking()
                .unwrap();
            m.billed += cost - job.billed;
            m.take_back(cost - job.billed);
            if cost > 0 {
                m.finished.push((job.id, cost));
            }
        }
        Op::Release(i) if i < running.len() => {
            let job = running.remove(i);
            books.release(job.reservation);
            if job.billed > 0 {
                m.finished.push((job.id, job.billed));
            }
        }
        Op::Dispute(i) if i < m.finished.len() => {
            let (id, cost) = m.finished[i].clone();
            let allowed = m.disputed.len()
                < kokon_pay::books::proxy::MAX_DISPUTES_PER_CHANNEL as usize
                && !m.disputed.contains(&id)
                && m.billed - m.paid >= cost;
            match books.dispute(&channel(), &id) {
                Ok(d) => {
                    let d = d.wait_blocking().unwrap();
                    prop_assert!(allowed, "dispute of {id} taken");
                    prop_assert_eq!(d.cost, cost);
                    m.billed -= cost;
                    m.withheld += d.fee;
                    m.disputed.insert(id);
                }
                Err(_) => prop_assert!(!allowed, "dispute of {id} refused"),
            }
        }
        Op::Part(..) | Op::End(..) | Op::Release(_) | Op::Dispute(_) => {}
        Op::Pay(p) => pay(books, m, p)?,
        Op::Crash => {
            let before = books.totals().unwrap();
            // Jobs in flight die with the process; their reservations too.
            running.clear();
            let reopened = open(dir);
            let _ = std::mem::replace(books, reopened);
            let after = books.totals().unwrap();
            prop_assert_eq!(before, after, "a restart changes nothing durable");
            for id in &m.registered {
                prop_assert!(books.register(&channel(), id).is_err(), "{id} forgotten");
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn the_books_stay_straight_whatever_the_interleaving(ops in prop::collection::vec(op(), 1..60)) {
        let tmp = tempfile::tempdir().unwrap();
        let mut books = open(tmp.path());
        let (mut m, mut running) = (Model::default(), Vec::new());
        for op in ops {
            step(&mut books, tmp.path(), &mut m, &mut running, op)?;
            check(&books, &m, &running)?;
        }
    }
}
