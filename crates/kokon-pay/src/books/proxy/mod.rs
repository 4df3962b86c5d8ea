//! The proxy's books: client channels (billed, paid), what it owes each
//! worker, and every receipt it billed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use kokon_money::channel::{ChannelTerms, ProxyChannel};
use kokon_money::price::split;
use kokon_money::vault::next_worker_voucher;
use kokon_money::{
    Address, ChannelVoucher, MoneyError, Nanotons, PublicKey, Receipt, SecretKey, Signed,
    WorkerVoucher,
};
use rusqlite::params;

use super::{from_json, rows4, to_json};

mod credits;
use crate::journal::{Durable, Journal};
use crate::sqlite::amount;
use crate::{PayError, Settlement, fail};
pub use credits::{CreditSale, CreditTotals, Redemption};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS channels (id TEXT PRIMARY KEY, terms TEXT NOT NULL, billed TEXT NOT NULL, voucher TEXT, claimed TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS workers (worker TEXT PRIMARY KEY, owed TEXT NOT NULL, voucher TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS admissions (channel TEXT NOT NULL, request TEXT NOT NULL, PRIMARY KEY (channel, request)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bills (channel TEXT NOT NULL, request TEXT NOT NULL, worker TEXT NOT NULL, cost TEXT NOT NULL, fee TEXT NOT NULL, receipt TEXT NOT NULL, cert TEXT, auth TEXT, PRIMARY KEY (channel, request));
CREATE INDEX IF NOT EXISTS bills_by_channel ON bills (channel);
CREATE TABLE IF NOT EXISTS certs (id TEXT PRIMARY KEY, cert TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS disputes (channel TEXT NOT NULL, request TEXT NOT NULL, worker TEXT NOT NULL, cost TEXT NOT NULL, fee TEXT NOT NULL, PRIMARY KEY (channel, request)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS withheld (worker TEXT PRIMARY KEY, amount TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS credit_sales (batch TEXT PRIMARY KEY, channel TEXT NOT NULL, amount TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS credit_spent (token TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS credit_jobs (request TEXT PRIMARY KEY, prepaid TEXT NOT NULL, billed TEXT NOT NULL, claim TEXT NOT NULL, change TEXT, returned TEXT) WITHOUT ROWID;
";

/// Receipts one channel may dispute; past it, its disputes are refused (a
/// client cannot make every job free by disputing it).
pub const MAX_DISPUTES_PER_CHANNEL: u32 = 3;

/// A dispute recorded by [`ProxyBooks::dispute`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Disputed {
    /// The worker whose receipt it was (its fee is withheld from its next ones).
    pub worker: PublicKey,
    pub cost: Nanotons,
    pub fee: Nanotons,
    /// Distinct channels that have disputed this worker's receipts.
    pub channels_disputing: usize,
}

/// Credit held on a channel for one running job: made only by
/// [`ProxyBooks::admit`], neither `Copy` nor `Clone`, and consumed by exactly
/// one of [`ProxyBooks::bill`] or [`ProxyBooks::release`]. So a reservation
/// cannot be released twice (which would free another job's credit) or
/// billed after it was released:
///
/// ```compile_fail
/// # fn twice(books: &mut kokon_pay::books::proxy::ProxyBooks, r: kokon_pay::books::proxy::Reservation) {
/// books.release(r);
/// books.release(r); // error[E0382]: use of moved value
/// # }
/// ```
///
/// A reservation dropped without either (a task that panicked) keeps its
/// credit held: the channel is under-used, never over-exposed.
#[must_use = "a reservation must be billed or released"]
#[derive(Debug, PartialEq, Eq)]
pub struct Reservation {
    payer: Payer,
    request: String,
    max_cost: Nanotons,
}

/// Who pays a job: a channel, or credit tokens redeemed for it
/// ([`ProxyBooks::redeem`]), which name nobody.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Payer {
    Channel(Address),
    Credits,
}

impl Payer {
    /// How bills name the payer (`channel` column): the channel's address,
    /// or `credits`.
    fn column(self) -> String {
        match self {
            Payer::Channel(a) => a.to_string(),
            Payer::Credits => CREDITS.to_string(),
        }
    }
}

/// The `channel` of a bill paid by credit tokens.
pub const CREDITS: &str = "credits";

impl Reservation {
    /// The channel paying, `None` for a job paid by credit tokens.
    pub fn channel(&self) -> Option<Address> {
        match self.payer {
            Payer::Channel(a) => Some(a),
            Payer::Credits => None,
        }
    }

    /// The most this job may cost (what admission held).
    pub fn max_cost(&self) -> Nanotons {
        self.max_cost
    }
}

/// What a running job has been billed so far by cumulative receipts.
#[derive(Clone, Copy, Debug, Default)]
struct Progress {
    cost: Nanotons,
    fee: Nanotons,
}

/// A job the proxy bills (against the [`Reservation`] made at admission).
#[derive(Clone, Copy, Debug)]
pub struct Bill<'a> {
    pub request_id: &'a str,
    /// The worker's payout key (its vault voucher goes there).
    pub worker: PublicKey,
    pub receipt: &'a Signed<Receipt>,
    pub cost: Nanotons,
    /// The certificate (DER, hex) of the attested key that signed the
    /// receipt, and the client's authorisation of the job (JSON): kept so
    /// the client can verify and pay the bill later ([`ProxyBooks::billed_jobs`]).
    pub cert: &'a str,
    pub auth: &'a str,
}

/// A job billed on a channel, as [`ProxyBooks::billed_jobs`] returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BilledRow {
    pub request_id: String,
    pub receipt: Signed<Receipt>,
    /// The worker's certificate (DER, hex).
    pub cert: String,
    /// The client's authorisation (JSON, as given to the bill).
    pub auth: String,
}

/// A claim to make on the ledger, taken from the books so that the ledger
/// call (seconds on a real chain) runs without holding them.
pub struct PendingClaim {
    key: Arc<SecretKey>,
    voucher: Signed<ChannelVoucher>,
}

/// What a [`PendingClaim`] achieved, to record with [`ProxyBooks::record_claim`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClaimDone {
    pub channel: Address,
    /// Newly credited by this claim (0 when the ledger had it already).
    pub delta: Nanotons,
    /// Claimed on the ledger in all, as the ledger reports it.
    pub on_ledger: Nanotons,
}

impl PendingClaim {
    pub fn voucher(&self) -> &Signed<ChannelVoucher> {
        &self.voucher
    }

    /// Claims on the ledger. A voucher the ledger already settled (a retry
    /// after a crash) is not credited again.
    pub async fn run(self, ledger: &dyn Settlement) -> Result<ClaimDone, PayError> {
        let v = self.voucher;
        fail::hit("proxy.claim.before_settle")?;
        let delta = super::credited(ledger.claim_channel(&self.key, v).await)?;
        fail::hit("proxy.claim.after_settle")?;
        let on_ledger = ledger
            .channel(v.body.channel)
            .await?
            .map_or(0, |c| c.claimed);
        Ok(ClaimDone {
            channel: v.body.channel,
            delta,
            on_ledger,
        })
    }
}

/// Totals of the proxy's books.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyTotals {
    pub receipts: u64,
    pub billed: Nanotons,
    pub paid: Nanotons,
    pub claimed: Nanotons,
    /// What the vault's vouchers promise the workers. With disputes, it
    /// includes fees still to be taken back (`withheld`): `owed_to_workers +
    /// commission = billed + withheld`.
    pub owed_to_workers: Nanotons,
    pub commission: Nanotons,
    /// Fees of disputed receipts not yet taken back from their workers.
    pub withheld: Nanotons,
}

/// The proxy's money state, durable.
pub struct ProxyBooks {
    db: Journal,
    key: Arc<SecretKey>,
    vault: Address,
    commission_bps: u16,
    max_credit: Nanotons,
    channels: HashMap<Address, (ProxyChannel, Nanotons)>,
    workers: HashMap<PublicKey, Signed<WorkerVoucher>>,
    /// Running jobs billed in part, by (payer, request id).
    progress: HashMap<(Payer, String), Progress>,
    /// Credit-paid jobs admitted and not yet ended: what was prepaid and
    /// billed so far. Their change cannot be claimed while they run.
    credit_running: HashMap<String, credits::Running>,
    /// Fees of disputed receipts to take back from each worker's next ones.
    withheld: HashMap<PublicKey, Nanotons>,
    /// Disputes made by each channel.
    disputes: HashMap<Address, u32>,
    /// The channels that disputed each worker's receipts.
    disputed_by: HashMap<PublicKey, std::collections::HashSet<Address>>,
    /// Certificates stored (by [`cert_id`]): each is written once.
    certs: std::collections::HashSet<String>,
    /// Each client key's channels: one client's exposure is bounded across
    /// all of them, not per channel.
    by_client: HashMap<PublicKey, Vec<Address>>,
}

impl std::fmt::Debug for ProxyBooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyBooks")
            .field("channels", &self.channels.len())
            .finish_non_exhaustive()
    }
}

impl ProxyBooks {
    /// Opens the books at `path`; `key` owns the vault.
    /// `vault` is where this proxy's vault lives on its ledger
    /// (`Settlement::vault_address`); worker vouchers name it.
    pub fn open(
        path: &Path,
        key: SecretKey,
        vault: Address,
        commission_bps: u16,
        max_credit: Nanotons,
    ) -> Result<Self, PayError> {
        let mut db = Journal::open(path, SCHEMA)?;
        migrate(&mut db)?;
        let conn = db.conn();
        let mut channels = HashMap::new();
        {
            for row in rows4(conn, "SELECT terms, billed, voucher, claimed FROM channels")? {
                let (terms, billed, voucher, claimed) = row;
                let terms: ChannelTerms = from_json(&terms)?;
                let latest = voucher.map(|v| from_json(&v)).transpose()?;
                channels.insert(
                    terms.id,
                    (
                        ProxyChannel::restore(terms, amount(billed)?, latest),
                        amount(claimed)?,
                    ),
                );
            }
        }
        let mut workers = HashMap::new();
        {
            let mut st = conn.prepare("SELECT voucher FROM workers")?;
            for v in st.query_map([], |r| r.get::<_, String>(0))? {
                let v: Signed<WorkerVoucher> = from_json(&v?)?;
                workers.insert(v.body.worker, v);
            }
        }
        let mut books = Self {
            db,
            key: Arc::new(key),
            vault,
            commission_bps,
            max_credit,
            channels,
            workers,
            progress: HashMap::new(),
            credit_running: HashMap::new(),
            withheld: HashMap::new(),
            disputes: HashMap::new(),
            disputed_by: HashMap::new(),
            certs: Default::default(),
            by_client: HashMap::new(),
        };
        for (id, (c, _)) in &books.channels {
            books.by_client.entry(c.terms.client).or_default().push(*id);
        }
        books.load_disputes()?;
        Ok(books)
    }

    fn load_disputes(&mut self) -> Result<(), PayError> {
        let conn = self.db.conn();
        let mut st = conn.prepare("SELECT worker, amount FROM withheld")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        for row in rows {
            let (w, a) = row?;
            self.withheld.insert(worker_key(&w)?, amount(a)?);
        }
        let mut st = conn.prepare("SELECT channel, worker FROM disputes")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        for row in rows {
            let (c, w) = row?;
            let c = Address::parse(&c)
                .map_err(|e| PayError::Storage(format!("disputed channel: {e}")))?;
            *self.disputes.entry(c).or_default() += 1;
            self.disputed_by
                .entry(worker_key(&w)?)
                .or_default()
                .insert(c);
        }
        Ok(())
    }

    /// The client of `channel` refuses the receipt billed for `request_id`
    /// (its gateway could not verify it). Recorded durably: the channel is
    /// no longer billed for it, and the worker's fee for it is withheld
    /// from its next earnings (taken back from the fees of its next
    /// receipts). Only an unpaid receipt can be disputed, and a channel
    /// disputes at most [`MAX_DISPUTES_PER_CHANNEL`].
    pub fn dispute(
        &mut self,
        channel: &Address,
        request_id: &str,
    ) -> Result<Durable<Disputed>, PayError> {
        let refused = |m: String| PayError::Disputed(m);
        let made = self.disputes.get(channel).copied().unwrap_or(0);
        if made >= MAX_DISPUTES_PER_CHANNEL {
            return Err(refused(format!(
                "channel {channel} has disputed {made} receipts, the most it may"
            )));
        }
        if self
            .progress
            .contains_key(&(Payer::Channel(*channel), request_id.to_string()))
        {
            return Err(refused(format!("request {request_id} is still running")));
        }
        let (worker, cost, fee) = self.billed_receipt(channel, request_id)?;
        let (c, _) = self
            .channels
            .get(channel)
            .ok_or(PayError::NoChannel(*channel))?;
        if c.billed.saturating_sub(c.paid) < cost {
            return Err(refused(format!(
                "request {request_id} is paid for already; a paid receipt is not disputed"
            )));
        }
        let billed = c.billed - cost;
        let withheld = self.withheld.get(&worker).copied().unwrap_or(0) + fee;
        fail::hit("proxy.dispute.before_persist")?;
        self.db.commit(|tx| {
            let inserted = super::exec(
                tx,
                "INSERT OR IGNORE INTO disputes (channel, request, worker, cost, fee) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![channel.to_string(), request_id, worker.to_hex(), cost.to_string(), fee.to_string()],
            )?;
            if inserted == 0 {
                return Err(PayError::Disputed(format!("request {request_id} is disputed already")));
            }
            super::exec(
                tx,
                "UPDATE channels SET billed = ?2 WHERE id = ?1",
                params![channel.to_string(), billed.to_string()],
            )?;
            set_withheld(tx, &worker, withheld)?;
            Ok(())
        })?;
        fail::hit("proxy.dispute.after_persist")?;
        if let Some((c, _)) = self.channels.get_mut(channel) {
            c.billed = billed;
        }
        self.withheld.insert(worker, withheld);
        *self.disputes.entry(*channel).or_default() += 1;
        let by = self.disputed_by.entry(worker).or_default();
        by.insert(*channel);
        let channels_disputing = by.len();
        Ok(self.db.durable(Disputed {
            worker,
            cost,
            fee,
            channels_disputing,
        }))
    }

    /// The newest jobs billed on `channel` (at most `limit`), neither
    /// running nor disputed, with what the client needs to verify each:
    /// the receipt, its signer's certificate and its own authorisation.
    /// Bills made before authorisations were kept are not offered.
    pub fn billed_jobs(&self, channel: &Address, limit: usize) -> Result<Vec<BilledRow>, PayError> {
        let mut st = self.db.conn().prepare_cached(
            "SELECT b.request, b.receipt, c.cert, b.auth FROM bills b JOIN certs c ON c.id = b.cert \
             WHERE b.channel = ?1 AND b.auth IS NOT NULL AND NOT EXISTS \
             (SELECT 1 FROM disputes d WHERE d.channel = b.channel AND d.request = b.request) \
             ORDER BY b.rowid DESC LIMIT ?2",
        )?;
        let running = self.progress.len() as i64;
        let rows = st.query_map(params![channel.to_string(), limit as i64 + running], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get(2)?,
                r.get(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (request_id, receipt, cert, auth) = row?;
            if self
                .progress
                .contains_key(&(Payer::Channel(*channel), request_id.clone()))
            {
                continue;
            }
            out.push(BilledRow {
                request_id,
                receipt: from_json(&receipt)?,
                cert,
                auth,
            });
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    /// Distinct channels that disputed `worker`'s receipts.
    pub fn channels_disputing(&self, worker: &PublicKey) -> usize {
        self.disputed_by.get(worker).map_or(0, |s| s.len())
    }

    /// The worker, cost and fee of what was billed for `request_id` on `channel`.
    fn billed_receipt(
        &self,
        channel: &Address,
        request_id: &str,
    ) -> Result<(PublicKey, Nanotons, Nanotons), PayError> {
        let row: Option<(String, String, String)> = self
            .db
            .conn()
            .query_row(
                "SELECT worker, cost, fee FROM bills WHERE request = ?1 AND channel = ?2",
                params![request_id, channel.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })?;
        let (w, cost, fee) = row.ok_or_else(|| {
            PayError::Disputed(format!(
                "nothing was billed for request {request_id} on {channel}"
            ))
        })?;
        Ok((worker_key(&w)?, amount(cost)?, amount(fee)?))
    }

    pub fn vault(&self) -> Address {
        self.vault
    }

    pub fn owner(&self) -> &SecretKey {
        &self.key
    }

    /// The owner key, to sign ledger operations without holding the books.
    pub fn signer(&self) -> Arc<SecretKey> {
        self.key.clone()
    }

    pub fn knows(&self, channel: &Address) -> bool {
        self.channels.contains_key(channel)
    }

    pub fn channel_ids(&self) -> Vec<Address> {
        self.channels.keys().copied().collect()
    }

    /// What `channel` was billed and has not paid by a voucher.
    pub fn owed(&self, channel: &Address) -> Nanotons {
        self.channels
            .get(channel)
            .map_or(0, |(c, _)| c.billed.saturating_sub(c.paid))
    }

    /// The client's latest voucher on `channel`.
    pub fn latest_voucher(&self, channel: &Address) -> Option<Signed<ChannelVoucher>> {
        self.channels.get(channel).and_then(|(c, _)| c.latest)
    }

    pub fn terms(&self, channel: &Address) -> Option<ChannelTerms> {
        self.channels.get(channel).map(|(c, _)| c.terms)
    }

    /// The books' journal (fsync counts for `/metrics`).
    pub fn journal(&self) -> &Journal {
        &self.db
    }

    /// Records the ledger's current terms of a channel (new, topped up,
    /// closing). Not flushed on its own: the terms can be read from the
    /// ledger again, and the next flush covers them.
    pub fn update_terms(&mut self, terms: ChannelTerms) -> Result<(), PayError> {
        self.db.commit(|tx| {
            super::exec(
                tx,
                "INSERT INTO channels (id, terms, billed, claimed) VALUES (?1, ?2, '0', '0') ON CONFLICT(id) DO UPDATE SET terms = ?2",
                params![terms.id.to_string(), to_json(&terms)],
            )?;
            Ok(())
        })?;
        if !self.channels.contains_key(&terms.id) {
            self.by_client
                .entry(terms.client)
                .or_default()
                .push(terms.id);
        }
        let entry = self
            .channels
            .entry(terms.id)
            .or_insert_with(|| (ProxyChannel::new(terms), 0));
        entry.0.terms = terms;
        Ok(())
    }

    /// Records that `request_id` was admitted on `channel`, once: a request
    /// id is good for one job per channel, whatever becomes of that job.
    /// The job may be forwarded once the [`Durable`] is waited for, so a
    /// crash cannot forget an id that already ran.
    pub fn register(
        &mut self,
        channel: &Address,
        request_id: &str,
    ) -> Result<Durable<()>, PayError> {
        fail::hit("proxy.register.before_persist")?;
        self.db.commit(|tx| {
            let inserted = super::exec(
                tx,
                "INSERT OR IGNORE INTO admissions (channel, request) VALUES (?1, ?2)",
                params![channel.to_string(), request_id],
            )?;
            if inserted == 0 {
                return Err(PayError::DuplicateRequest(request_id.to_string()));
            }
            Ok(())
        })?;
        fail::hit("proxy.register.after_persist")?;
        Ok(self.db.durable(()))
    }

    /// Frees a registered request id whose job was never sent to any worker
    /// (refused before routing: no worker, all busy, no credit), so that the
    /// client may send it again (a retry with the same `Idempotency-Key`).
    /// An id with a bill or a running job stays spent. Not flushed on its
    /// own: if the deletion is lost in a crash the id stays spent, the safe
    /// side.
    pub fn unregister(&mut self, channel: &Address, request_id: &str) -> Result<(), PayError> {
        if self
            .progress
            .contains_key(&(Payer::Channel(*channel), request_id.to_string()))
        {
            return Ok(());
        }
        self.db.commit(|tx| {
            super::exec(
                tx,
                "DELETE FROM admissions WHERE channel = ?1 AND request = ?2 AND NOT EXISTS \
                 (SELECT 1 FROM bills b WHERE b.channel = ?1 AND b.request = ?2)",
                params![channel.to_string(), request_id],
            )?;
            Ok(())
        })
    }

    /// Reserves `max_cost` on `channel` for the job `request_id`, or refuses
    /// it. The credit limit bounds the client, not the channel: what its
    /// other channels owe and hold reserved counts against it, so opening
    /// more channels buys no more credit.
    pub fn admit(
        &mut self,
        channel: &Address,
        request_id: &str,
        max_cost: Nanotons,
    ) -> Result<Reservation, PayError> {
        let elsewhere = self.exposure_elsewhere(channel);
        let (c, _) = self
            .channels
            .get_mut(channel)
            .ok_or(PayError::NoChannel(*channel))?;
        c.admit(max_cost, self.max_credit.saturating_sub(elsewhere))?;
        Ok(Reservation {
            payer: Payer::Channel(*channel),
            request: request_id.to_string(),
            max_cost,
        })
    }

    /// What the client of `channel` owes and holds reserved on its other
    /// channels.
    fn exposure_elsewhere(&self, channel: &Address) -> Nanotons {
        let Some((c, _)) = self.channels.get(channel) else {
            return 0;
        };
        self.by_client
            .get(&c.terms.client)
            .into_iter()
            .flatten()
            .filter(|id| *id != channel)
            .filter_map(|id| self.channels.get(id))
            .map(|(c, _)| c.exposure())
            .sum()
    }

    /// Ends a reservation without a final bill (the job failed or was
    /// cancelled): what cumulative receipts billed stays billed, the rest
    /// of the credit is given back.
    pub fn release(&mut self, r: Reservation) {
        let done = self
            .progress
            .remove(&(r.payer, r.request.clone()))
            .unwrap_or_default();
        match r.payer {
            Payer::Channel(id) => {
                if let Some((c, _)) = self.channels.get_mut(&id) {
                    c.release(r.max_cost.saturating_sub(done.cost));
                }
            }
            Payer::Credits => {
                self.credit_running.remove(&r.request);
            }
        }
    }

    /// Bills a running job's cumulative receipt: the increase over what its
    /// earlier receipts billed, durably, with the worker's next vault
    /// voucher. The receipt may be forwarded to the client once the
    /// [`Durable`] is waited for, so a client never pays what was not
    /// billed. A receipt not above the last is a no-op (`None`).
    pub fn bill_part(
        &mut self,
        r: &Reservation,
        b: Bill<'_>,
    ) -> Result<Durable<Option<Signed<WorkerVoucher>>>, PayError> {
        if b.cost > r.max_cost {
            return Err(MoneyError::AboveReservation {
                cost: b.cost,
                reserved: r.max_cost,
            }
            .into());
        }
        let key = (r.payer, r.request.clone());
        let prior = self.progress.get(&key).copied().unwrap_or_default();
        if b.cost <= prior.cost {
            return Ok(self.db.durable(None));
        }
        let points = (
            "proxy.bill_part.before_persist",
            "proxy.bill_part.after_persist",
        );
        let (voucher, now) = self.persist_bill(r, b, prior, points)?;
        self.billed_more(r, b.cost - prior.cost);
        self.workers.insert(b.worker, voucher);
        self.progress.insert(key, now);
        Ok(self.db.durable(Some(voucher)))
    }

    /// Bills a verified receipt against its reservation and signs the
    /// worker's next voucher. Once the [`Durable`] is waited for, both are
    /// on disk and the caller forwards the receipt to the client and the
    /// voucher to the worker. When billing fails the reservation is
    /// released: either way it is consumed exactly once.
    pub fn bill(
        &mut self,
        r: Reservation,
        b: Bill<'_>,
    ) -> Result<Durable<Signed<WorkerVoucher>>, PayError> {
        if b.cost > r.max_cost {
            let refused = MoneyError::AboveReservation {
                cost: b.cost,
                reserved: r.max_cost,
            };
            self.release(r);
            return Err(refused.into());
        }
        let prior = self
            .progress
            .get(&(r.payer, r.request.clone()))
            .copied()
            .unwrap_or_default();
        if prior.cost > 0 && b.cost <= prior.cost {
            // Billed already by its cumulative receipts.
            let voucher = self.workers.get(&b.worker).copied();
            self.release(r);
            return voucher
                .map(|v| self.db.durable(v))
                .ok_or_else(|| PayError::Storage("a billed worker has no voucher".into()));
        }
        let points = ("proxy.bill.before_persist", "proxy.bill.after_persist");
        match self.persist_bill(&r, b, prior, points) {
            Ok((voucher, now)) => {
                self.billed_more(&r, b.cost - prior.cost);
                self.workers.insert(b.worker, voucher);
                self.progress.insert((r.payer, r.request.clone()), now);
                self.release(r);
                Ok(self.db.durable(voucher))
            }
            Err(e) => {
                self.release(r);
                Err(e)
            }
        }
    }

    /// Writes a bill raising the job's billed cost from `prior` to
    /// `b.cost`; returns the worker's next voucher and the job's progress.
    fn persist_bill(
        &mut self,
        r: &Reservation,
        b: Bill<'_>,
        prior: Progress,
        (before, after): (&'static str, &'static str),
    ) -> Result<(Signed<WorkerVoucher>, Progress), PayError> {
        let delta = b.cost - prior.cost;
        let billed = self.payer_billed(r)? + delta;
        let (fee_delta, _) = split(delta, self.commission_bps);
        let now = Progress {
            cost: b.cost,
            fee: prior.fee + fee_delta,
        };
        let owed = self.workers.get(&b.worker).map_or(0, |v| v.body.amount);
        // Fees of the worker's disputed receipts are taken back first.
        let held = self.withheld.get(&b.worker).copied().unwrap_or(0);
        let taken = held.min(fee_delta);
        let voucher =
            next_worker_voucher(self.vault(), b.worker, owed, fee_delta - taken, &self.key)?;
        fail::hit(before)?;
        let cert = cert_id(b.cert);
        let new_cert = !self.certs.contains(&cert);
        self.db.commit(|tx| {
            if new_cert {
                super::exec(
                    tx,
                    "INSERT OR IGNORE INTO certs (id, cert) VALUES (?1, ?2)",
                    params![cert, b.cert],
                )?;
            }
            let payer = r.payer.column();
            let row = params![b.request_id, payer, b.worker.to_hex(), now.cost.to_string(), now.fee.to_string(), to_json(b.receipt), cert];
            let written = if prior.cost == 0 {
                super::exec(
                    tx,
                    "INSERT OR IGNORE INTO bills (request, channel, worker, cost, fee, receipt, cert, auth) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![b.request_id, payer, b.worker.to_hex(), now.cost.to_string(), now.fee.to_string(), to_json(b.receipt), cert, b.auth],
                )?
            } else {
                super::exec(
                    tx,
                    "UPDATE bills SET cost = ?4, fee = ?5, receipt = ?6, cert = ?7 WHERE request = ?1 AND channel = ?2 AND worker = ?3",
                    row,
                )?
            };
            if written == 0 {
                return Err(PayError::AlreadyBilled(b.request_id.to_string()));
            }
            match r.payer {
                Payer::Channel(id) => super::exec(
                    tx,
                    "UPDATE channels SET billed = ?2 WHERE id = ?1",
                    params![id.to_string(), billed.to_string()],
                )?,
                Payer::Credits => super::exec(
                    tx,
                    "UPDATE credit_jobs SET billed = ?2 WHERE request = ?1",
                    params![r.request, billed.to_string()],
                )?,
            };
            super::exec(
                tx,
                "INSERT INTO workers (worker, owed, voucher) VALUES (?1, ?2, ?3) ON CONFLICT(worker) DO UPDATE SET owed = ?2, voucher = ?3",
                params![b.worker.to_hex(), voucher.body.amount.to_string(), to_json(&voucher)],
            )?;
            if taken > 0 {
                set_withheld(tx, &b.worker, held - taken)?;
            }
            Ok(())
        })?;
        fail::hit(after)?;
        if new_cert {
            self.certs.insert(cert);
        }
        if taken > 0 {
            self.withheld.insert(b.worker, held - taken);
        }
        Ok((voucher, now))
    }

    /// Accepts a client's voucher; the client hears "ok" once it is durable.
    pub fn accept_voucher(
        &mut self,
        v: Signed<ChannelVoucher>,
    ) -> Result<Durable<Nanotons>, PayError> {
        let (c, _) = self
            .channels
            .get(&v.body.channel)
            .ok_or(PayError::NoChannel(v.body.channel))?;
        let mut next = c.clone();
        let delta = next.accept(v)?;
        fail::hit("proxy.voucher.before_persist")?;
        self.db.commit(|tx| {
            super::exec(
                tx,
                "UPDATE channels SET voucher = ?2 WHERE id = ?1",
                params![v.body.channel.to_string(), to_json(&v)],
            )?;
            Ok(())
        })?;
        fail::hit("proxy.voucher.after_persist")?;
        if let Some((c, _)) = self.channels.get_mut(&v.body.channel) {
            *c = next;
        }
        Ok(self.db.durable(delta))
    }

    /// The latest voucher for `worker`, to re-send (once durable) when it
    /// links again.
    pub fn worker_voucher(&self, worker: &PublicKey) -> Durable<Option<Signed<WorkerVoucher>>> {
        self.db.durable(self.workers.get(worker).copied())
    }

    /// Latest vouchers worth a claim: their unclaimed part is at least
    /// `threshold` (claims cost fees, so small amounts wait), or, whatever
    /// the amount, the channel is closing (after its deadline the voucher
    /// can no longer be claimed).
    pub fn claims_due(&self, threshold: Nanotons) -> Vec<Signed<ChannelVoucher>> {
        self.channels
            .values()
            .filter_map(|(c, claimed)| {
                c.latest.filter(|v| {
                    let unclaimed = v.body.amount.saturating_sub(*claimed);
                    unclaimed > 0 && (unclaimed >= threshold || !c.terms.open)
                })
            })
            .collect()
    }

    /// A claim of `v` to run on the ledger without holding the books.
    pub fn pending_claim(&self, v: Signed<ChannelVoucher>) -> PendingClaim {
        PendingClaim {
            key: self.key.clone(),
            voucher: v,
        }
    }

    /// Records what a claim achieved (the ledger's total for the channel).
    /// Not flushed on its own: the ledger is the record of claims.
    pub fn record_claim(&mut self, done: ClaimDone) -> Result<(), PayError> {
        self.db.commit(|tx| {
            super::exec(
                tx,
                "UPDATE channels SET claimed = ?2 WHERE id = ?1",
                params![done.channel.to_string(), done.on_ledger.to_string()],
            )?;
            Ok(())
        })?;
        if let Some((_, claimed)) = self.channels.get_mut(&done.channel) {
            *claimed = done.on_ledger;
        }
        Ok(())
    }

    /// Claims `v` on the ledger and records it, holding the books throughout
    /// (for tools and tests; daemons use [`Self::pending_claim`]).
    pub async fn claim(
        &mut self,
        ledger: &dyn Settlement,
        v: Signed<ChannelVoucher>,
    ) -> Result<Nanotons, PayError> {
        let done = self.pending_claim(v).run(ledger).await?;
        self.record_claim(done)?;
        Ok(done.delta)
    }

    /// Totals over the books (from disk).
    pub fn totals(&self) -> Result<ProxyTotals, PayError> {
        let mut t = ProxyTotals::default();
        // Disputed receipts are not billed (the client does not pay them).
        let mut st = self.db.conn().prepare(
            "SELECT cost, fee FROM bills r WHERE NOT EXISTS \
             (SELECT 1 FROM disputes d WHERE d.channel = r.channel AND d.request = r.request)",
        )?;
        for row in st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
            let (cost, fee) = row?;
            let (cost, fee) = (amount(cost)?, amount(fee)?);
            t.receipts += 1;
            t.billed += cost;
            t.commission += cost - fee;
        }
        for (c, claimed) in self.channels.values() {
            t.paid += c.paid;
            t.claimed += claimed;
        }
        t.owed_to_workers = self.workers.values().map(|v| v.body.amount).sum();
        t.withheld = self.withheld.values().sum();
        Ok(t)
    }
}

/// Books written before bills were keyed by channel and request kept them
/// in `receipts`, keyed by request alone (two channels choosing one id
/// collided): moved into `bills`, once, durably.
fn migrate(db: &mut Journal) -> Result<(), PayError> {
    let old: i64 = db.conn().query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'receipts'",
        [],
        |r| r.get(0),
    )?;
    if old == 0 {
        return Ok(());
    }
    db.commit(|tx| {
        tx.execute_batch(
            "INSERT OR IGNORE INTO bills (channel, request, worker, cost, fee, receipt) \
             SELECT channel, request, worker, cost, fee, receipt FROM receipts; \
             DROP TABLE receipts;",
        )?;
        Ok(())
    })?;
    db.flush().durable_blocking()
}

/// How the books name a certificate: SHA-256 of its hex, in hex.
fn cert_id(cert_hex: &str) -> String {
    hex::encode(kokon_money::Hash32::of(cert_hex.as_bytes()).0)
}

fn worker_key(hex: &str) -> Result<PublicKey, PayError> {
    PublicKey::from_hex(hex).map_err(|e| PayError::Storage(format!("worker key: {e}")))
}

fn set_withheld(
    tx: &rusqlite::Transaction<'_>,
    worker: &PublicKey,
    amount: Nanotons,
) -> Result<(), PayError> {
    super::exec(
        tx,
        "INSERT INTO withheld (worker, amount) VALUES (?1, ?2) ON CONFLICT(worker) DO UPDATE SET amount = ?2",
        params![worker.to_hex(), amount.to_string()],
    )?;
    Ok(())
}
