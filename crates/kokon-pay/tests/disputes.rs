//! Disputes at the proxy's books: a client refusing a billed receipt is no
//! longer billed for it, the worker's fee for it is taken back from its next
//! earnings, and each rule that bounds disputes holds — also across a crash
//! at either side of the dispute's record. And what the books offer a
//! client that reconciles: its channel's billed jobs, not its disputed or
//! running ones, each bill kept per (channel, request).

use kokon_money::channel::ChannelTerms;
use kokon_money::{
    Address, ChannelVoucher, Hash32, Nanotons, Receipt, SecretKey, Signed, TokenUsage,
};
use kokon_pay::books::proxy::{Bill, MAX_DISPUTES_PER_CHANNEL, ProxyBooks};
use kokon_pay::{PayError, fail};

const BPS: u16 = 1000;

/// Failpoints are process-global: the tests take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn client() -> SecretKey {
    SecretKey::from_bytes([1; 32])
}

fn worker() -> SecretKey {
    SecretKey::from_bytes([3; 32])
}

fn channel() -> Address {
    Address::new(0, [9; 32])
}

/// A second client's channel.
fn other_channel() -> Address {
    Address::new(0, [8; 32])
}

fn open(dir: &std::path::Path) -> ProxyBooks {
    let key = SecretKey::from_bytes([2; 32]);
    let vault = kokon_money::ledger::vault_address(&key.public());
    let mut b = ProxyBooks::open(&dir.join("proxy.db"), key, vault, BPS, 1_000_000).unwrap();
    for (id, client) in [(channel(), client()), (other_channel(), worker())] {
        b.update_terms(ChannelTerms {
            id,
            client: client.public(),
            deposit: 1_000_000,
            open: true,
        })
        .unwrap();
    }
    b
}

/// Runs and bills a whole job of `cost`.
fn job(books: &mut ProxyBooks, id: &str, cost: Nanotons) {
    job_on(books, channel(), id, cost)
}

fn receipt_of(id: &str, cost: Nanotons) -> Signed<Receipt> {
    Signed::sign(
        Receipt {
            request: Hash32::of(id.as_bytes()),
            model: Hash32([7; 32]),
            usage: TokenUsage::default(),
            price_milli: 1000,
            cost,
        },
        &worker(),
    )
    .unwrap()
}

fn job_on(books: &mut ProxyBooks, channel: Address, id: &str, cost: Nanotons) {
    books
        .register(&channel, id)
        .unwrap()
        .wait_blocking()
        .unwrap();
    let r = books.admit(&channel, id, cost).unwrap();
    let receipt = receipt_of(id, cost);
    let bill = Bill {
        request_id: id,
        worker: worker().public(),
        receipt: &receipt,
        cost,
        cert: "worker-cert",
        auth: &format!("auth of {id}"),
    };
    books.bill(r, bill).unwrap().wait_blocking().unwrap();
}

fn voucher_amount(books: &ProxyBooks) -> Nanotons {
    let v = books
        .worker_voucher(&worker().public())
        .wait_blocking()
        .unwrap();
    v.map_or(0, |v| v.body.amount)
}

#[test]
fn a_disputed_receipt_is_not_billed_and_its_fee_is_taken_back_from_the_next() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let mut books = open(tmp.path());
    job(&mut books, "a", 1_000);
    assert_eq!(voucher_amount(&books), 900, "the worker was paid its fee");
    let d = books
        .dispute(&channel(), "a")
        .unwrap()
        .wait_blocking()
        .unwrap();
    assert_eq!((d.cost, d.fee, d.channels_disputing), (1_000, 900, 1));
    let t = books.totals().unwrap();
    assert_eq!((t.billed, t.withheld), (0, 900));
    assert_eq!(books.owed(&channel()), 0, "the client owes nothing for it");
    // The next job's fee (1 800) first pays back the 900.
    job(&mut books, "b", 2_000);
    assert_eq!(voucher_amount(&books), 900 + 900);
    let t = books.totals().unwrap();
    assert_eq!((t.billed, t.withheld), (2_000, 0));
    assert_eq!(t.owed_to_workers + t.commission, t.billed + t.withheld);
    // All of it survives a restart.
    drop(books);
    let books = open(tmp.path());
    assert_eq!(books.totals().unwrap(), t);
    assert_eq!(books.channels_disputing(&worker().public()), 1);
}

#[test]
fn disputes_are_bounded() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let mut books = open(tmp.path());
    let refused = |r: Result<_, PayError>| matches!(r, Err(PayError::Disputed(_)));
    assert!(refused(books.dispute(&channel(), "never-billed")));
    job(&mut books, "paid", 1_000);
    let v = Signed::sign(
        ChannelVoucher {
            channel: channel(),
            amount: 1_000,
        },
        &client(),
    )
    .unwrap();
    books.accept_voucher(v).unwrap().wait_blocking().unwrap();
    assert!(
        refused(books.dispute(&channel(), "paid")),
        "a paid receipt stands"
    );
    for i in 0..MAX_DISPUTES_PER_CHANNEL {
        let id = format!("job-{i}");
        job(&mut books, &id, 100);
        books
            .dispute(&channel(), &id)
            .unwrap()
            .wait_blocking()
            .unwrap();
        assert!(refused(books.dispute(&channel(), &id)), "twice");
    }
    job(&mut books, "one-more", 100);
    assert!(
        refused(books.dispute(&channel(), "one-more")),
        "past {MAX_DISPUTES_PER_CHANNEL} a channel's disputes are refused"
    );
    assert_eq!(books.owed(&channel()), 100, "so it owes that job");
}

#[test]
fn a_crash_on_either_side_of_the_record_keeps_the_books_whole() {
    let _turn = serial();
    for point in [
        "proxy.dispute.before_persist",
        "proxy.dispute.after_persist",
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let mut books = open(tmp.path());
        job(&mut books, "a", 1_000);
        fail::arm(point);
        let crashed = books.dispute(&channel(), "a");
        fail::reset();
        assert!(matches!(crashed, Err(PayError::Crashed(_))), "{point}");
        drop(books);
        let mut books = open(tmp.path());
        let t = books.totals().unwrap();
        let recorded = point.ends_with("after_persist");
        assert_eq!(t.billed, if recorded { 0 } else { 1_000 }, "{point}");
        assert_eq!(t.withheld, if recorded { 900 } else { 0 }, "{point}");
        assert_eq!(t.owed_to_workers + t.commission, t.billed + t.withheld);
        // Retried after the restart: recorded once, whatever the crash.
        let again = books.dispute(&channel(), "a");
        assert_eq!(again.is_ok(), !recorded, "{point}");
        assert_eq!(books.totals().unwrap().billed, 0);
    }
}

#[test]
fn two_channels_may_use_one_request_id_and_each_is_billed() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let mut books = open(tmp.path());
    job_on(&mut books, channel(), "same-id", 1_000);
    // Bills were once keyed by request alone: this one was refused as
    // "already billed", so its output went unpaid.
    job_on(&mut books, other_channel(), "same-id", 2_000);
    let t = books.totals().unwrap();
    assert_eq!((t.receipts, t.billed), (2, 3_000));
    assert_eq!(books.owed(&channel()), 1_000);
    assert_eq!(books.owed(&other_channel()), 2_000);
}

#[test]
fn a_reconcile_is_offered_the_newest_billed_jobs_neither_running_nor_disputed() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let mut books = open(tmp.path());
    for id in ["a", "b", "c"] {
        job(&mut books, id, 100);
    }
    job_on(&mut books, other_channel(), "x", 100);
    books
        .dispute(&channel(), "b")
        .unwrap()
        .wait_blocking()
        .unwrap();
    // "d" runs, billed in part.
    books
        .register(&channel(), "d")
        .unwrap()
        .wait_blocking()
        .unwrap();
    let r = books.admit(&channel(), "d", 500).unwrap();
    let half = receipt_of("d", 200);
    let part = Bill {
        request_id: "d",
        worker: worker().public(),
        receipt: &half,
        cost: 200,
        cert: "worker-cert",
        auth: "auth of d",
    };
    books.bill_part(&r, part).unwrap().wait_blocking().unwrap();
    let ids = |rows: Vec<kokon_pay::books::proxy::BilledRow>| {
        rows.into_iter().map(|r| r.request_id).collect::<Vec<_>>()
    };
    assert_eq!(ids(books.billed_jobs(&channel(), 16).unwrap()), ["c", "a"]);
    assert_eq!(ids(books.billed_jobs(&channel(), 1).unwrap()), ["c"]);
    let c = &books.billed_jobs(&channel(), 1).unwrap()[0];
    assert_eq!(
        (c.cert.as_str(), c.auth.as_str()),
        ("worker-cert", "auth of c")
    );
    assert_eq!(c.receipt.body.cost, 100);
    // Once "d" ends it is offered too, with its latest receipt.
    books.release(r);
    let rows = books.billed_jobs(&channel(), 16).unwrap();
    assert_eq!(rows[0].request_id, "d");
    assert_eq!(rows[0].receipt.body.cost, 200);
    drop(books);
    let books = open(tmp.path());
    assert_eq!(
        ids(books.billed_jobs(&channel(), 16).unwrap()),
        ["d", "c", "a"]
    );
}

#[test]
fn books_from_before_bills_were_per_channel_are_moved_over_once() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("proxy.db");
    {
        let old = rusqlite::Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE receipts (request TEXT PRIMARY KEY, channel TEXT NOT NULL, \
             worker TEXT NOT NULL, cost TEXT NOT NULL, fee TEXT NOT NULL, receipt TEXT NOT NULL);",
        )
        .unwrap();
        old.execute_batch(
            "CREATE TABLE channels (id TEXT PRIMARY KEY, terms TEXT NOT NULL, billed TEXT NOT NULL, \
             voucher TEXT, claimed TEXT NOT NULL);",
        )
        .unwrap();
        let terms = ChannelTerms {
            id: channel(),
            client: client().public(),
            deposit: 1_000_000,
            open: true,
        };
        old.execute(
            "INSERT INTO channels VALUES (?1, ?2, '700', NULL, '0')",
            rusqlite::params![
                channel().to_string(),
                serde_json::to_string(&terms).unwrap()
            ],
        )
        .unwrap();
        let receipt = serde_json::to_string(&receipt_of("old", 700)).unwrap();
        old.execute(
            "INSERT INTO receipts VALUES ('old', ?1, ?2, '700', '630', ?3)",
            rusqlite::params![channel().to_string(), worker().public().to_hex(), receipt],
        )
        .unwrap();
    }
    let mut books = open(tmp.path());
    let t = books.totals().unwrap();
    assert_eq!((t.receipts, t.billed), (1, 700), "the old bill is kept");
    assert!(
        books.billed_jobs(&channel(), 16).unwrap().is_empty(),
        "a bill without its authorisation cannot be verified by the client: not offered"
    );
    // It still counts as billed on its channel: a second use of its id is
    // refused at billing, and it can be disputed.
    job(&mut books, "new", 100);
    books
        .dispute(&channel(), "old")
        .unwrap()
        .wait_blocking()
        .unwrap();
    drop(books);
    let books = open(tmp.path());
    let t = books.totals().unwrap();
    assert_eq!((t.receipts, t.billed), (1, 100));
}

#[test]
fn one_clients_credit_is_bounded_across_all_its_channels() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let mut books = open(tmp.path()); // credit 1 000 000 per client
    let second = Address::new(0, [7; 32]);
    books
        .update_terms(ChannelTerms {
            id: second,
            client: client().public(),
            deposit: 1_000_000,
            open: true,
        })
        .unwrap();
    let held = books.admit(&channel(), "big", 600_000).unwrap();
    let over = books.admit(&second, "more", 500_000);
    assert!(
        matches!(
            over,
            Err(PayError::Money(kokon_money::MoneyError::OverCredit { .. }))
        ),
        "a second channel of the same client buys no more credit: {over:?}"
    );
    // Another client's channel is not affected.
    let theirs = books.admit(&other_channel(), "theirs", 500_000).unwrap();
    books.release(theirs);
    // Once the first job is released, the second channel has the credit.
    books.release(held);
    let r = books.admit(&second, "more", 500_000).unwrap();
    books.release(r);
    // And after a restart the channels are still tied to their client.
    job(&mut books, "owed", 600_000);
    drop(books);
    let mut books = open(tmp.path());
    assert!(
        books.admit(&second, "after", 500_000).is_err(),
        "600 000 owed elsewhere"
    );
}
