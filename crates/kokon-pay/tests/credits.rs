//! Credit tokens at the proxy's books: a sale is billed to the buyer's
//! channel once, a token is spent once, a credit-paid job never costs more
//! than was prepaid and its change is given once — each also across a
//! crash at either side of every durable step. And the records of a sale
//! and of a redemption share no value.

use kokon_money::channel::ChannelTerms;
use kokon_money::{Address, Hash32, Nanotons, Receipt, SecretKey, Signed, TokenUsage};
use kokon_pay::books::proxy::{Bill, CREDITS, ProxyBooks};
use kokon_pay::{CreditRefused, PayError, fail};

/// Failpoints are process-global: the tests take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const MAX_CREDIT: Nanotons = 1_000_000;

fn buyer() -> Address {
    Address::new(0, [9; 32])
}

fn open(dir: &std::path::Path) -> ProxyBooks {
    let key = SecretKey::from_bytes([2; 32]);
    let vault = kokon_money::ledger::vault_address(&key.public());
    let mut b = ProxyBooks::open(&dir.join("proxy.db"), key, vault, 1000, MAX_CREDIT).unwrap();
    b.update_terms(ChannelTerms {
        id: buyer(),
        client: SecretKey::from_bytes([1; 32]).public(),
        deposit: 10_000_000,
        open: true,
    })
    .unwrap();
    b
}

fn refused<T>(r: Result<T, PayError>) -> CreditRefused {
    match r {
        Err(PayError::Credit(c)) => c,
        Err(e) => panic!("expected a credit refusal, got {e}"),
        Ok(_) => panic!("expected a credit refusal, got success"),
    }
}

fn spent(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

fn sell(b: &mut ProxyBooks, batch: &str, amount: Nanotons) -> Result<bool, PayError> {
    Ok(b.sell_credits(&buyer(), batch, amount)?
        .wait_blocking()?
        .fresh)
}

fn redeem(b: &mut ProxyBooks, req: &str, ids: &[&str], prepaid: Nanotons) -> Result<(), PayError> {
    b.redeem(req, &spent(ids), prepaid, "claim-hash")?
        .wait_blocking()
}

/// Runs and bills a credit-paid job of `cost` (one final receipt).
fn run(b: &mut ProxyBooks, req: &str, max_cost: Nanotons, cost: Nanotons) -> Result<(), PayError> {
    let r = b.admit_credit(req, max_cost)?;
    let worker = SecretKey::from_bytes([3; 32]);
    let receipt = Signed::sign(
        Receipt {
            request: Hash32::of(req.as_bytes()),
            model: Hash32([7; 32]),
            usage: TokenUsage {
                prompt: 10,
                completion: 10,
                ..Default::default()
            },
            price_milli: 1000,
            cost,
        },
        &worker,
    )?;
    let bill = Bill {
        request_id: req,
        worker: worker.public(),
        receipt: &receipt,
        cost,
        cert: "worker-cert",
        auth: "{}",
    };
    b.bill(r, bill)?.wait_blocking()?;
    Ok(())
}

#[test]
fn a_sale_is_billed_to_the_buyer_once_and_within_its_credit() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let mut b = open(tmp.path());
    assert!(sell(&mut b, "batch-1", 64_000).unwrap());
    assert_eq!(b.owed(&buyer()), 64_000);
    // A retry of the same batch (the buyer lost the answer) bills nothing.
    assert!(!sell(&mut b, "batch-1", 64_000).unwrap());
    assert_eq!(b.owed(&buyer()), 64_000);
    // Past the credit limit: refused, nothing billed.
    let over = sell(&mut b, "batch-2", MAX_CREDIT);
    assert!(matches!(over, Err(PayError::Money(_))), "{over:?}");
    assert_eq!(b.owed(&buyer()), 64_000);
    drop(b);
    let mut b = open(tmp.path());
    assert_eq!(b.owed(&buyer()), 64_000, "billed durably");
    assert!(!sell(&mut b, "batch-1", 64_000).unwrap(), "remembered");
    assert_eq!(b.credit_totals().unwrap().sold, 64_000);
}

#[test]
fn a_token_is_spent_once_and_a_refused_redemption_spends_nothing() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let mut b = open(tmp.path());
    redeem(&mut b, "job-1", &["t1", "t2"], 3_000).unwrap();
    // t2 again, with a fresh token: refused, and t3 stays unspent.
    assert_eq!(
        refused(redeem(&mut b, "job-2", &["t3", "t2"], 3_000)),
        CreditRefused::Spent
    );
    assert!(b.redemption("job-2").unwrap().is_none(), "no job recorded");
    redeem(&mut b, "job-2", &["t3"], 1_000).unwrap();
    // One token twice in one job.
    assert_eq!(
        refused(redeem(&mut b, "job-3", &["t4", "t4"], 2_000)),
        CreditRefused::Repeated
    );
    // A request id used before: refused, and the tokens stay unspent.
    assert!(matches!(
        redeem(&mut b, "job-1", &["t5"], 1_000),
        Err(PayError::DuplicateRequest(_))
    ));
    redeem(&mut b, "job-5", &["t5", "t4"], 3_000).unwrap();
    drop(b);
    let mut b = open(tmp.path());
    for t in ["t1", "t2", "t3", "t4", "t5"] {
        assert_eq!(
            refused(redeem(&mut b, "job-9", &[t], 1_000)),
            CreditRefused::Spent,
            "{t} is spent after a restart"
        );
    }
    assert_eq!(b.credit_totals().unwrap().spent_tokens, 5);
}

#[test]
fn a_credit_job_costs_at_most_its_prepaid_amount_and_gets_its_change_once() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let mut b = open(tmp.path());
    redeem(&mut b, "job-1", &["t1"], 8_000).unwrap();
    // More than was prepaid cannot even be reserved.
    assert!(matches!(
        refused(b.admit_credit("job-1", 8_001)),
        CreditRefused::Short { left: 8_000, .. }
    ));
    let r = b.admit_credit("job-1", 8_000).unwrap();
    // While it runs: no second attempt, no change.
    assert!(matches!(
        refused(b.admit_credit("job-1", 1)),
        CreditRefused::Running(_)
    ));
    assert!(matches!(
        refused(b.claim_change("job-1", "claim-hash", "reqs-a", (0, 5_000))),
        CreditRefused::Running(_)
    ));
    b.release(r);
    run(&mut b, "job-1", 8_000, 2_500).unwrap();
    let job = b.redemption("job-1").unwrap().unwrap();
    assert_eq!((job.prepaid, job.billed), (8_000, 2_500));
    // The change: the claim secret is checked, then it is given once.
    assert_eq!(
        refused(b.claim_change("job-1", "another", "reqs-a", (2_500, 5_000))),
        CreditRefused::WrongClaim
    );
    let given = b
        .claim_change("job-1", "claim-hash", "reqs-a", (2_500, 5_000))
        .unwrap();
    assert_eq!(given.wait_blocking().unwrap().returned, Some(5_000));
    // The same requests again (a lost answer): answered again.
    assert!(
        b.claim_change("job-1", "claim-hash", "reqs-a", (2_500, 5_000))
            .is_ok()
    );
    // Other requests: refused — change is given once.
    assert!(matches!(
        refused(b.claim_change("job-1", "claim-hash", "reqs-b", (2_500, 5_000))),
        CreditRefused::ChangeGiven(_)
    ));
    // A change computed from a stale bill, or more than is left: refused.
    let tmp2 = tempfile::tempdir().unwrap();
    let mut b2 = open(tmp2.path());
    redeem(&mut b2, "job-1", &["t1"], 8_000).unwrap();
    run(&mut b2, "job-1", 8_000, 2_500).unwrap();
    assert!(matches!(
        refused(b2.claim_change("job-1", "claim-hash", "reqs-a", (0, 8_000))),
        CreditRefused::Running(_)
    ));
    assert!(matches!(
        refused(b2.claim_change("job-1", "claim-hash", "reqs-a", (2_500, 6_000))),
        CreditRefused::Short { .. }
    ));
    // A job whose change was given runs no more.
    assert!(matches!(
        refused(b.admit_credit("job-1", 1)),
        CreditRefused::Ended(_)
    ));
    let t = b.credit_totals().unwrap();
    assert_eq!((t.prepaid, t.billed, t.returned), (8_000, 2_500, 5_000));
    // The bill is kept under no channel.
    let bills: i64 = rusqlite::Connection::open(tmp.path().join("proxy.db"))
        .unwrap()
        .query_row(
            "SELECT count(*) FROM bills WHERE channel = ?1",
            [CREDITS],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(bills, 1);
}

#[test]
fn a_job_that_reached_no_worker_gives_its_tokens_back_once() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let mut b = open(tmp.path());
    redeem(&mut b, "job-1", &["t1", "t2"], 4_000).unwrap();
    b.unredeem("job-1", &spent(&["t1", "t2"])).unwrap();
    assert!(b.redemption("job-1").unwrap().is_none());
    // Sent again with the same tokens: redeemed again.
    redeem(&mut b, "job-1", &["t1", "t2"], 4_000).unwrap();
    // Once it ran (billed), nothing is given back.
    run(&mut b, "job-1", 4_000, 1_000).unwrap();
    b.unredeem("job-1", &spent(&["t1", "t2"])).unwrap();
    assert_eq!(b.redemption("job-1").unwrap().unwrap().billed, 1_000);
    assert_eq!(
        refused(redeem(&mut b, "job-2", &["t1"], 1_000)),
        CreditRefused::Spent
    );
    // Nor while it runs, nor after its change.
    redeem(&mut b, "job-3", &["t3"], 4_000).unwrap();
    let r = b.admit_credit("job-3", 4_000).unwrap();
    b.unredeem("job-3", &spent(&["t3"])).unwrap();
    assert!(b.redemption("job-3").unwrap().is_some());
    b.release(r);
    b.claim_change("job-3", "claim-hash", "reqs", (0, 4_000))
        .unwrap()
        .wait_blocking()
        .unwrap();
    b.unredeem("job-3", &spent(&["t3"])).unwrap();
    assert_eq!(
        refused(redeem(&mut b, "job-4", &["t3"], 1_000)),
        CreditRefused::Spent
    );
}

/// Every text value of `table`.
fn values(db: &rusqlite::Connection, table: &str) -> Vec<String> {
    let mut st = db.prepare(&format!("SELECT * FROM {table}")).unwrap();
    let n = st.column_count();
    let rows = st
        .query_map([], |r| {
            Ok((0..n)
                .filter_map(|i| r.get::<_, Option<String>>(i).ok().flatten())
                .collect::<Vec<_>>())
        })
        .unwrap();
    rows.flat_map(|r| r.unwrap()).collect()
}

#[test]
fn sale_and_redemption_records_share_no_identifier() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let mut b = open(tmp.path());
    sell(&mut b, "5b1e…batch-of-blinded-requests", 4_000).unwrap();
    redeem(&mut b, "job-1", &["spent-id-of-token"], 4_000).unwrap();
    run(&mut b, "job-1", 4_000, 1_234).unwrap();
    b.claim_change("job-1", "claim-hash", "change-requests", (1_234, 2_000))
        .unwrap()
        .wait_blocking()
        .unwrap();
    drop(b);
    let db = rusqlite::Connection::open(tmp.path().join("proxy.db")).unwrap();
    let sale = values(&db, "credit_sales");
    let mut redemption = values(&db, "credit_spent");
    redemption.extend(values(&db, "credit_jobs"));
    let credit_bills: Vec<String> = {
        let mut st = db
            .prepare("SELECT request, channel, worker, receipt FROM bills WHERE channel = ?1")
            .unwrap();
        st.query_map([CREDITS], |r| {
            Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?])
        })
        .unwrap()
        .flat_map(|r: rusqlite::Result<[String; 4]>| r.unwrap())
        .collect()
    };
    redemption.extend(credit_bills);
    for s in &sale {
        // Amounts are not identifiers (a sale and a job may be worth the
        // same); every other value must not cross.
        if s.parse::<u128>().is_ok() {
            continue;
        }
        for r in &redemption {
            assert!(
                !r.contains(s.as_str()),
                "{s:?} appears in a redemption record {r:?}"
            );
        }
    }
    assert!(
        sale.contains(&buyer().to_string()),
        "the sale names its buyer"
    );
}

/// Crashes at `point` during `op`, restarts from the files, retries `op`
/// as the client would, and checks exactly-once: `check` sees the books.
fn crash_then_retry(
    point: &'static str,
    setup: impl Fn(&mut ProxyBooks),
    op: impl Fn(&mut ProxyBooks) -> Result<(), PayError>,
    check: impl Fn(&mut ProxyBooks),
) {
    let tmp = tempfile::tempdir().unwrap();
    let mut b = open(tmp.path());
    setup(&mut b);
    fail::arm(point);
    let first = op(&mut b);
    fail::reset();
    assert!(
        matches!(&first, Err(PayError::Crashed(c)) if c.0 == point),
        "{point}: {first:?}"
    );
    drop(b);
    let mut b = open(tmp.path());
    // The retry either does the work or finds it done.
    match op(&mut b) {
        Ok(()) | Err(PayError::DuplicateRequest(_)) => {}
        Err(e) => panic!("{point}: the retry failed: {e}"),
    }
    check(&mut b);
    drop(b);
    check(&mut open(tmp.path()));
}

#[test]
fn a_crash_at_either_side_of_a_sale_bills_it_exactly_once() {
    let _g = serial();
    for point in [
        "proxy.credit_sale.before_persist",
        "proxy.credit_sale.after_persist",
    ] {
        crash_then_retry(
            point,
            |_| {},
            |b| sell(b, "batch-1", 16_000).map(|_| ()),
            |b| {
                assert_eq!(b.owed(&buyer()), 16_000, "{point}");
                assert_eq!(b.credit_totals().unwrap().sold, 16_000, "{point}");
            },
        );
    }
}

#[test]
fn a_crash_at_either_side_of_a_redemption_loses_and_duplicates_nothing() {
    let _g = serial();
    for point in ["proxy.redeem.before_persist", "proxy.redeem.after_persist"] {
        crash_then_retry(
            point,
            |_| {},
            |b| redeem(b, "job-1", &["t1", "t2"], 3_000),
            |b| {
                // The job is recorded once, prepaid once: whether the retry
                // or the first try recorded it, its change gives back the
                // whole prepaid amount (nothing ran), and t1, t2 are spent.
                let job = b.redemption("job-1").unwrap().unwrap();
                assert_eq!((job.prepaid, job.billed), (3_000, 0), "{point}");
                assert_eq!(b.credit_totals().unwrap().spent_tokens, 2, "{point}");
                assert_eq!(
                    refused(redeem(b, "job-2", &["t1"], 1_000)),
                    CreditRefused::Spent
                );
            },
        );
    }
}

#[test]
fn a_crash_at_either_side_of_giving_change_gives_it_exactly_once() {
    let _g = serial();
    for point in ["proxy.change.before_persist", "proxy.change.after_persist"] {
        crash_then_retry(
            point,
            |b| {
                redeem(b, "job-1", &["t1"], 8_000).unwrap();
                run(b, "job-1", 8_000, 3_000).unwrap();
            },
            |b| {
                b.claim_change("job-1", "claim-hash", "reqs-a", (3_000, 5_000))?
                    .wait_blocking()
                    .map(|_| ())
            },
            |b| {
                let job = b.redemption("job-1").unwrap().unwrap();
                assert_eq!(job.returned, Some(5_000), "{point}");
                assert_eq!(job.change.as_deref(), Some("reqs-a"));
                assert!(matches!(
                    refused(b.claim_change("job-1", "claim-hash", "reqs-b", (3_000, 5_000))),
                    CreditRefused::ChangeGiven(_)
                ));
                let t = b.credit_totals().unwrap();
                assert!(t.billed + t.returned <= t.prepaid);
            },
        );
    }
}
