//! Crash injection: every failpoint on a durability or external-effect
//! boundary, crashed there, every component restarted from its files only,
//! then the books must still reconcile to the nanoton.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kokon_money::receipt::Budget;
use kokon_money::{
    Address, Hash32, MoneyError, Nanotons, PriceTable, Receipt, SecretKey, Signed, TokenUsage,
};
use kokon_pay::books::client::ClientBooks;
use kokon_pay::books::proxy::{Bill, ProxyBooks};
use kokon_pay::books::worker::WorkerBooks;
use kokon_pay::devnet::{Delays, Devnet};
use kokon_pay::{ManualClock, PayError, Settlement, fail};

const BPS: u16 = 1000;
const JOBS: usize = 12;

struct Keys {
    client: [u8; 32],
    proxy: [u8; 32],
    workers: [[u8; 32]; 2],
}

const KEYS: Keys = Keys {
    client: [1; 32],
    proxy: [2; 32],
    workers: [[3; 32], [4; 32]],
};

struct Net {
    dir: PathBuf,
    ledger: Devnet,
    client: ClientBooks,
    proxy: ProxyBooks,
    workers: Vec<WorkerBooks>,
    channel: Address,
}

fn sk(b: [u8; 32]) -> SecretKey {
    SecretKey::from_bytes(b)
}

async fn setup(dir: &Path) -> Address {
    let ledger = devnet(dir);
    ledger
        .fund(sk(KEYS.client).public(), 10_000_000)
        .await
        .unwrap();
    ledger
        .fund(sk(KEYS.proxy).public(), 1_000_000)
        .await
        .unwrap();
    ledger
        .vault_deposit(&sk(KEYS.proxy), 500_000)
        .await
        .unwrap();
    ledger
        .open_channel(&sk(KEYS.client), sk(KEYS.proxy).public(), 5_000_000)
        .await
        .unwrap()
        .id
}

fn devnet(dir: &Path) -> Devnet {
    let delays = Delays {
        channel_close_secs: 60,
        vault_withdraw_secs: 60,
    };
    Devnet::open(
        &dir.join("ledger.db"),
        Arc::new(ManualClock::new(1_000)),
        delays,
    )
    .unwrap()
}

/// Starts (or restarts) every component from the files in `dir`, then
/// resyncs the way the daemons do when links come back.
async fn start(dir: &Path, channel: Address) -> Net {
    let ledger = devnet(dir);
    let terms = ledger.channel(channel).await.unwrap().unwrap().terms();
    let client = ClientBooks::open(
        &dir.join("client.db"),
        sk(KEYS.client),
        channel,
        terms.deposit,
    )
    .unwrap();
    let mut proxy = ProxyBooks::open(
        &dir.join("proxy.db"),
        sk(KEYS.proxy),
        kokon_money::ledger::vault_address(&sk(KEYS.proxy).public()),
        BPS,
        1_000_000,
    )
    .unwrap();
    proxy.update_terms(terms).unwrap();
    let mut workers: Vec<_> = KEYS
        .workers
        .iter()
        .enumerate()
        .map(|(i, k)| WorkerBooks::open(&dir.join(format!("worker{i}.db")), sk(*k)).unwrap())
        .collect();
    // Resync: the client re-sends its latest voucher, the proxy each worker's.
    if let Some(v) = client.latest().wait_blocking().unwrap() {
        ignore_replay(proxy.accept_voucher(v).and_then(|d| d.wait_blocking())).unwrap();
    }
    for w in &mut workers {
        if let Some(v) = proxy.worker_voucher(&w.payout()).wait_blocking().unwrap() {
            let accepted = w.accept_voucher(v, sk(KEYS.proxy).public());
            ignore_replay(accepted.and_then(|d| d.wait_blocking())).unwrap();
        }
    }
    Net {
        dir: dir.to_path_buf(),
        ledger,
        client,
        proxy,
        workers,
        channel,
    }
}

fn ignore_replay(r: Result<Nanotons, PayError>) -> Result<Nanotons, PayError> {
    match r {
        Err(PayError::Money(MoneyError::NotAboveLatest { .. })) => Ok(0),
        other => other,
    }
}

fn usage(i: usize) -> TokenUsage {
    TokenUsage {
        prompt: 20 + i as u64 * 7,
        completion: 5 + i as u64 * 3,
        ..Default::default()
    }
}

/// One job through the whole money path. Returns Err(Crashed) at an armed point.
async fn job(net: &mut Net, i: usize) -> Result<(), PayError> {
    let prices = PriceTable::default();
    let request_id = format!("req-{i}");
    let budget = Budget {
        prompt: 1000,
        completion: 1000,
    };
    let max_cost = budget.max_cost(&prices, "m", 1000)?;
    net.proxy
        .register(&net.channel, &request_id)?
        .wait()
        .await?;
    let reservation = net.proxy.admit(&net.channel, &request_id, max_cost)?;
    let w = i % net.workers.len();
    let attested = sk([100 + w as u8; 32]);
    let u = usage(i);
    let receipt = Receipt {
        request: Hash32::of(request_id.as_bytes()),
        model: Hash32([7; 32]),
        usage: u,
        price_milli: 1000,
        cost: prices.cost("m", &u, 1000)?,
    };
    let receipt = Signed::sign(receipt, &attested)?;
    net.workers[w]
        .record_receipt(&request_id, &receipt)?
        .wait()
        .await?;
    let payout = net.workers[w].payout();
    // While the job runs: a cumulative receipt for half the output, billed
    // (and its voucher sent) before it would be relayed.
    let half = half_receipt(&request_id, i, &attested)?;
    let part = net.proxy.bill_part(
        &reservation,
        Bill {
            request_id: &request_id,
            worker: payout,
            receipt: &half,
            cost: half.body.cost,
            cert: "worker-cert",
            auth: "{}",
        },
    )?;
    if let Some(wv) = part.wait().await? {
        net.workers[w]
            .accept_voucher(wv, sk(KEYS.proxy).public())?
            .wait()
            .await?;
    }
    let cost = receipt.body.cost;
    let wv = net
        .proxy
        .bill(
            reservation,
            Bill {
                request_id: &request_id,
                worker: payout,
                receipt: &receipt,
                cost,
                cert: "worker-cert",
                auth: "{}",
            },
        )?
        .wait()
        .await?;
    let v = net
        .client
        .pay(&request_id, &attested.public(), &receipt, cost)?
        .wait()
        .await?;
    net.workers[w]
        .accept_voucher(wv, sk(KEYS.proxy).public())?
        .wait()
        .await?;
    if let Some(v) = v {
        fail::hit("client.pay.after_send")?;
        net.proxy.accept_voucher(v)?.wait().await?;
    }
    if i % 4 == 3 {
        settle(net).await?;
    }
    Ok(())
}

fn half_usage(i: usize) -> TokenUsage {
    let u = usage(i);
    TokenUsage {
        completion: u.completion / 2,
        ..u
    }
}

fn half_receipt(request_id: &str, i: usize, key: &SecretKey) -> Result<Signed<Receipt>, PayError> {
    let prices = PriceTable::default();
    let u = half_usage(i);
    let body = Receipt {
        request: Hash32::of(request_id.as_bytes()),
        model: Hash32([7; 32]),
        usage: u,
        price_milli: 1000,
        cost: prices.cost("m", &u, 1000)?,
    };
    Ok(Signed::sign(body, key)?)
}

async fn settle(net: &mut Net) -> Result<(), PayError> {
    for v in net.proxy.claims_due(0) {
        net.proxy.claim(&net.ledger, v).await?;
    }
    for w in &mut net.workers {
        w.claim_due(&net.ledger, 0).await?;
    }
    Ok(())
}

/// `lost`: what each job billed but never paid was billed for.
async fn check(net: &Net, lost: &[Nanotons]) {
    let audit = net.ledger.audit().await.unwrap();
    assert!(audit.conserved(), "ledger conservation: {audit:?}");
    let t = net.proxy.totals().unwrap();
    let (n_paid, client_total) = net.client.receipts_total().unwrap();
    assert_eq!(
        net.client.channel().spent,
        client_total,
        "client voucher = Σ receipts it paid"
    );
    assert_eq!(
        t.paid, client_total,
        "proxy holds the client's latest voucher"
    );
    assert_eq!(
        t.owed_to_workers + t.commission,
        t.billed,
        "billed = worker fees + commission"
    );
    let earned: Nanotons = net
        .workers
        .iter()
        .flat_map(|w| w.earnings())
        .map(|e| e.earned())
        .sum();
    assert_eq!(
        earned, t.owed_to_workers,
        "workers hold the proxy's latest vouchers"
    );
    // Unpaid = exactly the jobs that were billed but whose receipt never reached the client.
    let unpaid: Nanotons = lost.iter().sum();
    assert_eq!(
        t.billed - t.paid,
        unpaid,
        "proxy's unpaid exposure = receipts the client never saw"
    );
    assert_eq!(t.receipts, n_paid + lost.len() as u64);
    // The ledger paid out exactly what the vouchers say, never more.
    let ch = net.ledger.channel(net.channel).await.unwrap().unwrap();
    assert_eq!(
        ch.claimed, t.paid,
        "channel claimed = latest client voucher"
    );
    for w in &net.workers {
        for e in w.earnings() {
            assert_eq!(
                net.ledger
                    .worker_claimed(e.vault, w.payout())
                    .await
                    .unwrap(),
                e.earned()
            );
            assert_eq!(net.ledger.balance(w.payout()).await.unwrap(), e.earned());
        }
    }
    let vault = net.ledger.vault(net.proxy.vault()).await.unwrap().unwrap();
    assert_eq!(
        vault.balance,
        500_000 + ch.claimed - t.owed_to_workers,
        "vault = stake + claimed − paid to workers"
    );
}

/// What the interrupted job `i` leaves billed but never paid at `point`:
/// the proxy persisted a bill (the whole job, or its first cumulative
/// receipt) and the client either never saw the receipt or crashed before
/// its voucher reached disk. That is the proxy's exposure (bounded by the
/// credit limit); nothing else may differ.
fn lost_at(point: &str, i: usize) -> Option<Nanotons> {
    let prices = PriceTable::default();
    let cost = |u| prices.cost("m", &u, 1000).unwrap();
    match point {
        "proxy.bill.after_persist" | "client.pay.before_persist" => Some(cost(usage(i))),
        // The first cumulative receipt is billed, the rest of the job is not.
        "proxy.bill_part.after_persist"
        | "worker.voucher.after_persist"
        | "proxy.bill.before_persist" => Some(cost(half_usage(i))),
        _ => None,
    }
}

async fn run_with_crash(point: &'static str) {
    let tmp = tempfile::tempdir().unwrap();
    let channel = setup(tmp.path()).await;
    let mut net = start(tmp.path(), channel).await;
    fail::arm(point);
    let mut crashed_at = None;
    for i in 0..JOBS {
        match job(&mut net, i).await {
            Ok(()) => {}
            Err(PayError::Crashed(c)) => {
                assert_eq!(c.0, point);
                crashed_at = Some(i);
                let dir = net.dir.clone();
                drop(net);
                net = start(&dir, channel).await;
            }
            Err(e) => panic!("job {i} failed at {point}: {e}"),
        }
    }
    fail::reset();
    let crashed_at = crashed_at.unwrap_or_else(|| panic!("failpoint {point} never fired"));
    settle(&mut net).await.unwrap();
    // A crash on the settle path leaves the job itself paid.
    let lost: Vec<Nanotons> = lost_at(point, crashed_at).into_iter().collect();
    check(&net, &lost).await;
    // And once more from disk only, with nothing in flight.
    let dir = net.dir.clone();
    drop(net);
    let mut net = start(&dir, channel).await;
    settle(&mut net).await.unwrap();
    check(&net, &lost).await;
}

macro_rules! crash_tests {
    ($($name:ident => $point:literal,)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                let _g = SERIAL.lock().await;
                run_with_crash($point).await;
            }
        )*
        #[test]
        fn every_failpoint_has_a_test() {
            // Disputes and credits have their own crash tests
            // (tests/disputes.rs, tests/credits.rs).
            let tested = [
                $($point,)*
                "proxy.dispute.before_persist", "proxy.dispute.after_persist",
                "proxy.credit_sale.before_persist", "proxy.credit_sale.after_persist",
                "proxy.redeem.before_persist", "proxy.redeem.after_persist",
                "proxy.change.before_persist", "proxy.change.after_persist",
                "client.credit_blind.after_persist",
                "client.credit_accept.before_persist", "client.credit_accept.after_persist",
                "client.credit_take.before_persist", "client.credit_take.after_persist",
            ];
            for p in fail::ALL {
                assert!(tested.contains(p), "failpoint {p} has no crash test");
            }
        }
    };
}

// Failpoints are process-global; the tests take turns.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

crash_tests! {
    client_pay_before_persist => "client.pay.before_persist",
    client_pay_after_persist => "client.pay.after_persist",
    client_pay_after_send => "client.pay.after_send",
    proxy_register_before_persist => "proxy.register.before_persist",
    proxy_register_after_persist => "proxy.register.after_persist",
    proxy_bill_part_before_persist => "proxy.bill_part.before_persist",
    proxy_bill_part_after_persist => "proxy.bill_part.after_persist",
    proxy_bill_before_persist => "proxy.bill.before_persist",
    proxy_bill_after_persist => "proxy.bill.after_persist",
    proxy_voucher_before_persist => "proxy.voucher.before_persist",
    proxy_voucher_after_persist => "proxy.voucher.after_persist",
    proxy_claim_before_settle => "proxy.claim.before_settle",
    proxy_claim_after_settle => "proxy.claim.after_settle",
    worker_receipt_before_persist => "worker.receipt.before_persist",
    worker_receipt_after_persist => "worker.receipt.after_persist",
    worker_voucher_after_persist => "worker.voucher.after_persist",
    worker_claim_before_settle => "worker.claim.before_settle",
    worker_claim_after_settle => "worker.claim.after_settle",
}
