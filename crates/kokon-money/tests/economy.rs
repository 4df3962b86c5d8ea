//! Property tests over random job sequences: clients, one proxy, workers and
//! a ledger, driven through the pure state machines only.
//!
//! Invariants checked after every step:
//! * conservation to the nanoton on the ledger: Σ accounts + Σ channel
//!   balances + vault balance = Σ minted;
//! * conservation of the business: every billed nanoton is a worker fee or
//!   commission; every deposited nanoton is in a channel, claimed or refunded;
//! * vouchers strictly monotonic; no bad signature or lower amount accepted;
//! * a claim settled twice credits once;
//! * the proxy's exposure never exceeds its credit limit.

use kokon_money::channel::{ClientChannel, ProxyChannel};
use kokon_money::ledger::{self, ChannelRow, VaultRow};
use kokon_money::price::split;
use kokon_money::receipt::Budget;
use kokon_money::vault::{Earnings, next_worker_voucher};
use kokon_money::{MoneyError, Nanotons, PriceTable, SecretKey, Signed, TokenUsage};
use proptest::prelude::*;

const CLIENTS: usize = 3;
const WORKERS: usize = 3;
const BPS: u16 = 1000;
const MAX_CREDIT: Nanotons = 20_000;
const DELAY: u64 = 100;
/// Base price: a job's maximum cost is then 2 000 nanotons (budget 400 prompt +
/// 200 completion tokens), so the credit limit (20 000) binds after about ten
/// unpaid jobs and a deposit (30 000) after about fifteen.
const PRICE_BASE: u64 = 2_000_000;

#[derive(Clone, Debug)]
enum Op {
    Job {
        client: usize,
        worker: usize,
        prompt: u64,
        completion: u64,
    },
    Pay {
        client: usize,
    },
    Replay {
        client: usize,
    },
    Forge {
        client: usize,
        extra: u64,
    },
    Claim {
        client: usize,
    },
    WorkerClaim {
        worker: usize,
    },
    TopUp {
        client: usize,
        amount: u64,
    },
    StartClose {
        client: usize,
    },
    FinishClose {
        client: usize,
    },
    CoopClose {
        client: usize,
    },
    Withdraw {
        amount: u64,
    },
    Tick {
        secs: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let c = 0..CLIENTS;
    let w = 0..WORKERS;
    prop_oneof![
        6 => (c.clone(), w.clone(), 0u64..400, 0u64..200).prop_map(|(client, worker, prompt, completion)| Op::Job { client, worker, prompt, completion }),
        4 => c.clone().prop_map(|client| Op::Pay { client }),
        1 => c.clone().prop_map(|client| Op::Replay { client }),
        1 => (c.clone(), 1u64..1000).prop_map(|(client, extra)| Op::Forge { client, extra }),
        2 => c.clone().prop_map(|client| Op::Claim { client }),
        2 => w.prop_map(|worker| Op::WorkerClaim { worker }),
        1 => (c.clone(), 1u64..50_000).prop_map(|(client, amount)| Op::TopUp { client, amount }),
        1 => c.clone().prop_map(|client| Op::StartClose { client }),
        1 => c.clone().prop_map(|client| Op::FinishClose { client }),
        1 => c.prop_map(|client| Op::CoopClose { client }),
        1 => (1u64..30_000).prop_map(|amount| Op::Withdraw { amount }),
        1 => (0u64..150).prop_map(|secs| Op::Tick { secs }),
    ]
}

struct Client {
    key: SecretKey,
    account: Nanotons,
    row: ChannelRow,
    view: ClientChannel,
    proxy_view: ProxyChannel,
    deposited: Nanotons,
    refunded: Nanotons,
}

struct Worker {
    key: SecretKey,
    account: Nanotons,
    claimed: Nanotons,
    earnings: Earnings,
    owed: Nanotons,
}

struct World {
    now: u64,
    minted: Nanotons,
    prices: PriceTable,
    proxy: SecretKey,
    proxy_account: Nanotons,
    vault: VaultRow,
    clients: Vec<Client>,
    workers: Vec<Worker>,
    billed: Nanotons,
    fees: Nanotons,
    commission: Nanotons,
    stake: Nanotons,
    withdrawn: Nanotons,
    jobs_tried: u64,
    jobs_billed: u64,
}

impl World {
    fn new() -> Self {
        let proxy = SecretKey::from_bytes([200; 32]);
        let mut proxy_account: Nanotons = 100_000;
        let mut vault = VaultRow {
            id: ledger::vault_address(&proxy.public()),
            owner: proxy.public(),
            balance: 0,
            withdrawal: None,
        };
        ledger::vault_deposit(&mut proxy_account, &mut vault, 50_000).unwrap();
        let clients = (0..CLIENTS)
            .map(|i| {
                let key = SecretKey::from_bytes([i as u8 + 1; 32]);
                let mut account: Nanotons = 200_000;
                let row =
                    ledger::open_channel(&mut account, key.public(), &vault, 0, 30_000).unwrap();
                let view = ClientChannel {
                    id: row.id,
                    deposit: row.deposit,
                    spent: 0,
                };
                let proxy_view = ProxyChannel::new(row.terms());
                Client {
                    key,
                    account,
                    row,
                    view,
                    proxy_view,
                    deposited: 30_000,
                    refunded: 0,
                }
            })
            .collect();
        let workers = (0..WORKERS)
            .map(|i| {
                let key = SecretKey::from_bytes([i as u8 + 100; 32]);
                let earnings = Earnings {
                    vault: vault.id,
                    owner: proxy.public(),
                    worker: key.public(),
                    latest: None,
                    claimed: 0,
                };
                Worker {
                    key,
                    account: 0,
                    claimed: 0,
                    earnings,
                    owed: 0,
                }
            })
            .collect();
        Self {
            now: 1_000,
            minted: 100_000 + 200_000 * CLIENTS as u128,
            prices: PriceTable {
                base_per_million: PRICE_BASE,
                ..Default::default()
            },
            proxy,
            proxy_account,
            vault,
            clients,
            workers,
            billed: 0,
            fees: 0,
            commission: 0,
            stake: 50_000,
            withdrawn: 0,
            jobs_tried: 0,
            jobs_billed: 0,
        }
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::Job {
                client,
                worker,
                prompt,
                completion,
            } => self.job(client, worker, prompt, completion)?,
            Op::Pay { client } => {
                let c = &mut self.clients[client];
                let due = c.proxy_view.billed - c.view.spent;
                if due > 0 {
                    let v = c.view.next_voucher(due, &c.key).unwrap();
                    c.view.commit(&v);
                    let before = c.proxy_view.paid;
                    prop_assert_eq!(c.proxy_view.accept(v), Ok(due));
                    prop_assert!(c.proxy_view.paid > before, "vouchers strictly increase");
                }
            }
            Op::Replay { client } => {
                let c = &mut self.clients[client];
                if let Some(v) = c.proxy_view.latest {
                    let r = c.proxy_view.accept(v);
                    prop_assert!(
                        matches!(r, Err(MoneyError::NotAboveLatest { .. })),
                        "{:?}",
                        r
                    );
                }
            }
            Op::Forge { client, extra } => {
                let c = &mut self.clients[client];
                if let Some(mut v) = c.proxy_view.latest {
                    v.body.amount += u128::from(extra);
                    prop_assert_eq!(c.proxy_view.accept(v), Err(MoneyError::BadSignature));
                    let mut row = c.row;
                    let claimed =
                        ledger::claim_channel(&mut row, &mut self.vault.clone(), &v, self.now);
                    // A closed (or past-deadline) channel refuses before looking at signatures.
                    let refused = matches!(
                        claimed,
                        Err(MoneyError::BadSignature
                            | MoneyError::ChannelNotOpen
                            | MoneyError::DelayOver)
                    );
                    prop_assert!(refused, "forged voucher: {:?}", claimed);
                    prop_assert_eq!(row, c.row, "nothing changed");
                }
            }
            Op::Claim { client } => {
                let c = &mut self.clients[client];
                if let Some(v) = c.proxy_view.latest {
                    let first = ledger::claim_channel(&mut c.row, &mut self.vault, &v, self.now);
                    if first.is_ok() {
                        // Settling the same voucher again credits nothing.
                        let again =
                            ledger::claim_channel(&mut c.row, &mut self.vault, &v, self.now);
                        prop_assert!(
                            matches!(again, Err(MoneyError::NotAboveLatest { .. })),
                            "{:?}",
                            again
                        );
                    }
                }
            }
            Op::WorkerClaim { worker } => {
                let w = &mut self.workers[worker];
                if let Some(v) = w.earnings.latest {
                    let pk = w.key.public();
                    if ledger::vault_claim(&mut self.vault, &mut w.claimed, &mut w.account, &v, &pk)
                        .is_ok()
                    {
                        let again = ledger::vault_claim(
                            &mut self.vault,
                            &mut w.claimed,
                            &mut w.account,
                            &v,
                            &pk,
                        );
                        prop_assert!(
                            matches!(again, Err(MoneyError::NotAboveLatest { .. })),
                            "{:?}",
                            again
                        );
                        w.earnings.claimed = w.claimed;
                    }
                }
            }
            Op::TopUp { client, amount } => {
                let c = &mut self.clients[client];
                if ledger::topup(&mut c.account, &mut c.row, amount.into()).is_ok() {
                    c.deposited += u128::from(amount);
                    c.view.deposit = c.row.deposit;
                    c.proxy_view.terms = c.row.terms();
                }
            }
            Op::StartClose { client } => {
                let c = &mut self.clients[client];
                if ledger::start_close(&mut c.row, self.now, DELAY).is_ok() {
                    c.proxy_view.terms = c.row.terms();
                }
            }
            Op::FinishClose { client } => {
                let c = &mut self.clients[client];
                if let Ok(refund) = ledger::finish_close(&mut c.row, &mut c.account, self.now) {
                    c.refunded += refund;
                }
            }
            Op::CoopClose { client } => {
                let c = &mut self.clients[client];
                let last = c.proxy_view.latest;
                if let Ok((_, refund)) = ledger::close_cooperative(
                    &mut c.row,
                    &mut self.vault,
                    &mut c.account,
                    last.as_ref(),
                    self.now,
                ) {
                    c.refunded += refund;
                    c.proxy_view.terms = c.row.terms();
                }
            }
            Op::Withdraw { amount } => match self.vault.withdrawal {
                None => {
                    ledger::request_withdrawal(&mut self.vault, amount.into(), self.now, DELAY)
                        .unwrap();
                }
                Some(w) => {
                    match ledger::withdraw(&mut self.vault, &mut self.proxy_account, self.now) {
                        Ok(got) => self.withdrawn += got,
                        Err(MoneyError::DelayNotOver { .. }) => {
                            prop_assert!(self.now < w.not_before)
                        }
                        Err(_) => {}
                    }
                }
            },
            Op::Tick { secs } => self.now += secs,
        }
        self.check()
    }

    fn job(
        &mut self,
        client: usize,
        worker: usize,
        prompt: u64,
        completion: u64,
    ) -> Result<(), TestCaseError> {
        self.jobs_tried += 1;
        let budget = Budget {
            prompt: 400,
            completion: 200,
        };
        let max = budget.max_cost(&self.prices, "m", 1000).unwrap();
        let c = &mut self.clients[client];
        if let Err(e) = c.proxy_view.admit(max, MAX_CREDIT) {
            // Refused only when it really would pass the limit (or the channel is closing).
            let over = c.proxy_view.exposure() + max > c.proxy_view.credit_limit(MAX_CREDIT);
            prop_assert!(
                over || !c.proxy_view.terms.open,
                "refused within the limit: {}",
                e
            );
            return Ok(());
        }
        self.jobs_billed += 1;
        prop_assert!(c.proxy_view.exposure() <= c.proxy_view.credit_limit(MAX_CREDIT));
        let usage = TokenUsage {
            prompt,
            completion,
            ..Default::default()
        };
        let cost = self.prices.cost("m", &usage, 1000).unwrap();
        c.proxy_view.bill(max, cost);
        self.billed += cost;
        let (fee, commission) = split(cost, BPS);
        self.fees += fee;
        self.commission += commission;
        if fee > 0 {
            let w = &mut self.workers[worker];
            let v = next_worker_voucher(self.vault.id, w.key.public(), w.owed, fee, &self.proxy)
                .unwrap();
            w.owed += fee;
            prop_assert_eq!(w.earnings.accept(v), Ok(fee));
        }
        Ok(())
    }

    fn check(&self) -> Result<(), TestCaseError> {
        let accounts: Nanotons = self.proxy_account
            + self.clients.iter().map(|c| c.account).sum::<Nanotons>()
            + self.workers.iter().map(|w| w.account).sum::<Nanotons>();
        let channels: Nanotons = self.clients.iter().map(|c| c.row.balance()).sum();
        prop_assert_eq!(
            accounts + channels + self.vault.balance,
            self.minted,
            "ledger conservation"
        );
        prop_assert_eq!(
            self.fees + self.commission,
            self.billed,
            "billing conservation"
        );
        let owed: Nanotons = self.workers.iter().map(|w| w.earnings.earned()).sum();
        prop_assert_eq!(owed, self.fees, "worker earnings = fees");
        let claimed: Nanotons = self.clients.iter().map(|c| c.row.claimed).sum();
        for c in &self.clients {
            prop_assert_eq!(
                c.deposited,
                c.row.balance() + c.row.claimed + c.refunded,
                "deposit conservation"
            );
            prop_assert_eq!(
                c.view.spent,
                c.proxy_view.paid,
                "client spend = proxy's paid"
            );
            prop_assert!(c.row.claimed <= c.proxy_view.paid);
            prop_assert!(
                c.proxy_view.exposure()
                    <= c.proxy_view
                        .credit_limit(MAX_CREDIT)
                        .max(c.proxy_view.billed - c.proxy_view.paid)
            );
        }
        let paid_out: Nanotons = self.workers.iter().map(|w| w.claimed).sum();
        prop_assert_eq!(
            self.vault.balance,
            self.stake + claimed - paid_out - self.withdrawn,
            "vault conservation"
        );
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn money_is_conserved(ops in proptest::collection::vec(op(), 1..120)) {
        let mut world = World::new();
        for op in &ops {
            world.apply(op)?;
        }
    }
}

/// The model is not vacuous: jobs are billed, paid and claimed, and a
/// client that stops paying runs into the credit limit.
#[test]
fn a_plain_run_bills_pays_and_cuts_off() {
    let mut w = World::new();
    for i in 0..8 {
        let job = Op::Job {
            client: 0,
            worker: i % WORKERS,
            prompt: 300,
            completion: 150,
        };
        w.apply(&job).unwrap();
        w.apply(&Op::Pay { client: 0 }).unwrap();
    }
    assert_eq!(w.jobs_billed, 8);
    w.apply(&Op::Claim { client: 0 }).unwrap();
    w.apply(&Op::WorkerClaim { worker: 0 }).unwrap();
    assert!(w.clients[0].row.claimed > 0 && w.workers[0].claimed > 0);
    // Client 1 never pays: after about ten jobs the proxy stops serving it.
    for _ in 0..30 {
        let job = Op::Job {
            client: 1,
            worker: 0,
            prompt: 399,
            completion: 199,
        };
        w.apply(&job).unwrap();
    }
    assert!(w.jobs_tried > w.jobs_billed, "the non-payer was cut off");
    let c = &w.clients[1].proxy_view;
    assert!(c.billed - c.paid <= MAX_CREDIT);
    assert!(
        c.billed - c.paid > MAX_CREDIT / 2,
        "it was served up to the limit"
    );
}

#[test]
fn signed_is_copy_and_serializable() {
    let k = SecretKey::from_bytes([1; 32]);
    let v = Signed::sign(
        kokon_money::ChannelVoucher {
            channel: ledger::channel_address(&k.public(), &k.public(), 0),
            amount: 5,
        },
        &k,
    )
    .unwrap();
    let _copy = v;
    assert!(v.verify(&k.public()).is_ok());
}
