//! The whole life of credit tokens across a client's wallet and a proxy's
//! books — buy, pay jobs, take change — with a crash at each durable step
//! of either side, three times over. After each crash both restart from
//! their files and the client recovers as its gateway does on start (it
//! finishes pending purchases and claims the change of every job it sent).
//! Then: no credit lost or made, to the nanoton (the proxy keeps what it
//! billed and less than a unit per job), no token spent twice, the buyer's
//! channel billed once per purchase.

use std::sync::OnceLock;

use kokon_credit::{Issuer, Schedule, Token, TokenRequest};
use kokon_money::channel::ChannelTerms;
use kokon_money::{Address, Hash32, Nanotons, Receipt, SecretKey, Signed, TokenUsage};
use kokon_pay::books::proxy::{Bill, ProxyBooks};
use kokon_pay::books::wallet::Wallet;
use kokon_pay::{CreditRefused, PayError, fail};

/// A batch's id in the books, as the proxy names it.
fn batch_hash(requests: &[String]) -> String {
    hex::encode(kokon_proto::credit::batch_hash(requests))
}

const SCHEDULE: Schedule = Schedule {
    unit: 1_000,
    levels: 8,
};

fn issuer() -> &'static Issuer {
    static I: OnceLock<Issuer> = OnceLock::new();
    I.get_or_init(|| Issuer::generate("kokon proxy cycle", SCHEDULE).unwrap())
}

fn buyer() -> Address {
    Address::new(0, [9; 32])
}

struct World {
    proxy: ProxyBooks,
    wallet: Wallet,
}

fn open(dir: &std::path::Path) -> World {
    let key = SecretKey::from_bytes([2; 32]);
    let vault = kokon_money::ledger::vault_address(&key.public());
    let mut proxy = ProxyBooks::open(&dir.join("proxy.db"), key, vault, 1000, 10_000_000).unwrap();
    proxy
        .update_terms(ChannelTerms {
            id: buyer(),
            client: SecretKey::from_bytes([1; 32]).public(),
            deposit: 10_000_000,
            open: true,
        })
        .unwrap();
    let keys = kokon_credit::PublicKeys::from_document(&issuer().public().document()).unwrap();
    let wallet = Wallet::open(&dir.join("wallet.db"), keys).unwrap();
    World { proxy, wallet }
}

fn sign_all(requests: &[String]) -> (Vec<String>, Nanotons) {
    let mut sum = 0;
    let responses = requests
        .iter()
        .map(|r| {
            let r = TokenRequest::from_b64(r).unwrap();
            sum += SCHEDULE.value(issuer().level_of(&r).unwrap()).unwrap();
            issuer().sign(&r).unwrap().to_b64()
        })
        .collect();
    (responses, sum)
}

/// The proxy's side of a sale, then the wallet keeps the tokens.
fn complete_purchase(w: &mut World, requests: &[String]) -> Result<(), PayError> {
    let (responses, amount) = sign_all(requests);
    w.proxy
        .sell_credits(&buyer(), &batch_hash(requests), amount)?
        .wait_blocking()?;
    w.wallet
        .accept(requests, &responses, None)?
        .wait_blocking()?;
    Ok(())
}

fn buy(w: &mut World, amount: Nanotons) -> Result<(), PayError> {
    let requests = w.wallet.request(amount)?.wait_blocking()?;
    complete_purchase(w, &requests)
}

fn receipt(id: &str, cost: Nanotons) -> Signed<Receipt> {
    let r = Receipt {
        request: Hash32::of(id.as_bytes()),
        model: Hash32([7; 32]),
        usage: TokenUsage {
            prompt: 1,
            completion: 1,
            ..Default::default()
        },
        price_milli: 1000,
        cost,
    };
    Signed::sign(r, &SecretKey::from_bytes([3; 32])).unwrap()
}

/// A credit-paid job: tokens taken, redeemed, the job billed `cost`, the
/// change claimed and kept.
fn job(w: &mut World, id: &str, max_cost: Nanotons, cost: Nanotons) -> Result<(), PayError> {
    use sha2::Digest;
    let taken = w.wallet.take(id, max_cost)?.wait_blocking()?;
    let spent: Vec<String> = taken
        .tokens
        .iter()
        .map(|t| {
            let t = Token::from_b64(t).unwrap();
            hex::encode(issuer().redeem(&t).unwrap().spent_id)
        })
        .collect();
    let claim = hex::encode(sha2::Sha256::digest(taken.secret));
    w.proxy
        .redeem(id, &spent, taken.prepaid, &claim)?
        .wait_blocking()?;
    let r = w.proxy.admit_credit(id, max_cost)?;
    let rc = receipt(id, cost);
    let bill = Bill {
        request_id: id,
        worker: SecretKey::from_bytes([3; 32]).public(),
        receipt: &rc,
        cost,
        cert: "c",
        auth: "{}",
    };
    w.proxy.bill(r, bill)?.wait_blocking()?;
    claim_change(w, id, &taken.secret)
}

fn claim_change(w: &mut World, id: &str, secret: &[u8; 32]) -> Result<(), PayError> {
    use sha2::Digest;
    let Some(job) = w.proxy.redemption(id)? else {
        // The proxy never recorded the job: the tokens are the client's.
        return w.wallet.give_back(id);
    };
    let (returned, levels) = SCHEDULE.change(job.prepaid, job.billed).unwrap();
    let requests = w.wallet.change_requests(id, &levels)?;
    let (responses, _) = sign_all(&requests);
    let claim = hex::encode(sha2::Sha256::digest(secret));
    w.proxy
        .claim_change(id, &claim, &batch_hash(&requests), (job.billed, returned))?
        .wait_blocking()?;
    w.wallet
        .accept(&requests, &responses, Some(id))?
        .wait_blocking()?;
    Ok(())
}

/// What the gateway does on start.
fn recover(w: &mut World) -> Result<(), PayError> {
    for (purpose, requests) in w.wallet.pending()? {
        if purpose.starts_with("buy ") {
            complete_purchase(w, &requests)?;
        }
    }
    for (id, secret) in w.wallet.awaiting_change()? {
        claim_change(w, &id, &secret)?;
    }
    Ok(())
}

type Op = Box<dyn Fn(&mut World) -> Result<(), PayError>>;

fn ops() -> Vec<Op> {
    vec![
        Box::new(|w| buy(w, 64_000)),
        Box::new(|w| job(w, "job-1", 20_000, 3_333)),
        Box::new(|w| job(w, "job-2", 30_000, 12_345)),
        Box::new(|w| buy(w, 8_000)),
        Box::new(|w| job(w, "job-3", 5_000, 4_999)),
        Box::new(|w| job(w, "job-4", 40_000, 0)),
    ]
}

const BOUGHT: Nanotons = 72_000;

fn check(w: &World, point: &str) {
    let t = w.proxy.credit_totals().unwrap();
    let b = w.wallet.balance().unwrap();
    assert_eq!(t.sold, BOUGHT, "{point}: every purchase sold once");
    assert_eq!(
        w.proxy.owed(&buyer()),
        BOUGHT,
        "{point}: the buyer billed once each"
    );
    assert_eq!(
        (b.in_jobs, b.pending),
        (0, 0),
        "{point}: nothing left in flight"
    );
    let kept = t.prepaid - t.returned; // billed, and the sub-unit remainders
    assert!(
        kept >= t.billed && kept - t.billed < 4 * SCHEDULE.unit,
        "{point}: {t:?}"
    );
    assert_eq!(
        b.ready + kept,
        BOUGHT,
        "{point}: no credit lost or made: {b:?} {t:?}"
    );
}

fn run(point: &'static str) {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = open(tmp.path());
    let mut crashes = 0;
    fail::arm(point);
    for (i, op) in ops().iter().enumerate() {
        match op(&mut w) {
            Ok(()) => {}
            Err(PayError::Crashed(c)) => {
                assert_eq!(c.0, point);
                crashes += 1;
                // Restart both from their files, until recovery completes
                // (it may crash at the same point once more).
                loop {
                    drop(w);
                    w = open(tmp.path());
                    if crashes < 3 {
                        fail::arm(point);
                    }
                    match recover(&mut w) {
                        Ok(()) => break,
                        Err(PayError::Crashed(_)) => crashes += 1,
                        Err(e) => panic!("{point}: recovery failed: {e}"),
                    }
                }
                // A purchase that crashed before it was recorded anywhere
                // is made again (the operator runs it again).
                if i == 0 || i == 3 {
                    let sold = w.proxy.credit_totals().unwrap().sold;
                    let expect = if i == 0 { 64_000 } else { BOUGHT };
                    if sold < expect {
                        op(&mut w).unwrap();
                    }
                }
            }
            Err(e) => panic!("{point}: op {i} failed: {e}"),
        }
    }
    fail::reset();
    assert!(crashes > 0, "{point} never fired");
    check(&w, point);
    drop(w);
    let mut w = open(tmp.path());
    recover(&mut w).unwrap();
    check(&w, point);
    // And no token the wallet holds was spent: each one still redeems.
    let spent_ids: Vec<String> = w.wallet.take("probe", 1).map_or(vec![], |t| {
        t.wait_blocking()
            .unwrap()
            .tokens
            .iter()
            .map(|t| {
                hex::encode(
                    issuer()
                        .redeem(&Token::from_b64(t).unwrap())
                        .unwrap()
                        .spent_id,
                )
            })
            .collect()
    });
    let again = w.proxy.redeem("probe", &spent_ids, 1, "c");
    assert!(
        !matches!(again, Err(PayError::Credit(CreditRefused::Spent))),
        "{point}"
    );
}

// Failpoints are process-global: the tests take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

macro_rules! cycle_tests {
    ($($name:ident => $point:literal,)*) => {$(
        #[test]
        fn $name() {
            let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
            run($point);
        }
    )*};
}

cycle_tests! {
    wallet_blind_after_persist => "client.credit_blind.after_persist",
    wallet_accept_before_persist => "client.credit_accept.before_persist",
    wallet_accept_after_persist => "client.credit_accept.after_persist",
    wallet_take_before_persist => "client.credit_take.before_persist",
    wallet_take_after_persist => "client.credit_take.after_persist",
    proxy_sale_before_persist => "proxy.credit_sale.before_persist",
    proxy_sale_after_persist => "proxy.credit_sale.after_persist",
    proxy_redeem_before_persist => "proxy.redeem.before_persist",
    proxy_redeem_after_persist => "proxy.redeem.after_persist",
    proxy_bill_before_persist => "proxy.bill.before_persist",
    proxy_bill_after_persist => "proxy.bill.after_persist",
    proxy_change_before_persist => "proxy.change.before_persist",
    proxy_change_after_persist => "proxy.change.after_persist",
}

/// A proxy that shows this wallet keys other than those its tokens came
/// from (a key set per user would mark the user) is refused, and the
/// wallet's tokens stay as they were.
#[test]
fn a_wallet_refuses_keys_other_than_its_first() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let mut w = open(tmp.path());
    buy(&mut w, 5_000).unwrap();
    drop(w);
    let other = Issuer::generate("kokon proxy cycle", SCHEDULE).unwrap();
    let keys = kokon_credit::PublicKeys::from_document(&other.public().document()).unwrap();
    let refused = Wallet::open(&tmp.path().join("wallet.db"), keys);
    assert!(
        matches!(&refused, Err(PayError::Storage(m)) if m.contains("not the ones")),
        "{refused:?}"
    );
    let w = open(tmp.path());
    assert_eq!(w.wallet.balance().unwrap().ready, 5_000);
}
