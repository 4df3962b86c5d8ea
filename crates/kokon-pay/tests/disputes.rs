//! Disputes at the proxy's books: a client refusing a billed receipt is no
//! longer billed for it, the worker's fee for it is taken back from its next
//! earnings, and each rule that bounds disputes holds — also across a crash
//! at either side of the dispute's record.

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

fn open(dir: &std::path::Path) -> ProxyBooks {
    let key = SecretKey::from_bytes([2; 32]);
    let vault = kokon_money::ledger::vault_address(&key.public());
    let mut b = ProxyBooks::open(&dir.join("proxy.db"), key, vault, BPS, 1_000_000).unwrap();
    b.update_terms(ChannelTerms {
        id: channel(),
        client: client().public(),
        deposit: 1_000_000,
        open: true,
    })
    .unwrap();
    b
}

/// Runs and bills a whole job of `cost`.
fn job(books: &mut ProxyBooks, id: &str, cost: Nanotons) {
    books
        .register(&channel(), id)
        .unwrap()
        .wait_blocking()
        .unwrap();
    let r = books.admit(&channel(), id, cost).unwrap();
    let receipt = Signed::sign(
        Receipt {
            request: Hash32::of(id.as_bytes()),
            model: Hash32([7; 32]),
            usage: TokenUsage::default(),
            price_milli: 1000,
            cost,
        },
        &worker(),
    )
    .unwrap();
    let bill = Bill {
        request_id: id,
        worker: worker().public(),
        receipt: &receipt,
        cost,
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
