//! The worker's books: every receipt it signed, and per proxy vault the
//! latest voucher and what the ledger has paid out.

use std::collections::HashMap;
use std::path::Path;

use kokon_money::vault::Earnings;
use kokon_money::{
    Address, MoneyError, Nanotons, PublicKey, Receipt, SecretKey, Signed, WorkerVoucher,
};
use rusqlite::params;

use super::{from_json, rows4, to_json};
use crate::journal::{Durable, Journal};
use crate::sqlite::amount;
use crate::{PayError, Settlement, fail};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS receipts (request TEXT PRIMARY KEY, receipt TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS vaults (vault TEXT PRIMARY KEY, owner TEXT NOT NULL, voucher TEXT, claimed TEXT NOT NULL);
";

/// The worker's money state, durable.
pub struct WorkerBooks {
    db: Journal,
    key: std::sync::Arc<SecretKey>,
    vaults: HashMap<Address, Earnings>,
}

impl std::fmt::Debug for WorkerBooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerBooks")
            .field("vaults", &self.vaults.len())
            .finish_non_exhaustive()
    }
}

impl WorkerBooks {
    /// Opens the books at `path`; `key` is the payout key vouchers name.
    pub fn open(path: &Path, key: SecretKey) -> Result<Self, PayError> {
        let db = Journal::open(path, SCHEMA)?;
        let worker = key.public();
        let mut vaults = HashMap::new();
        {
            for row in rows4(
                db.conn(),
                "SELECT vault, owner, voucher, claimed FROM vaults",
            )? {
                let (vault, owner, voucher, claimed) = row;
                let vault = Address::parse(&vault)?;
                let e = Earnings {
                    vault,
                    owner: PublicKey::from_hex(&owner)?,
                    worker,
                    latest: voucher.map(|v| from_json(&v)).transpose()?,
                    claimed: amount(claimed)?,
                };
                vaults.insert(vault, e);
            }
        }
        Ok(Self {
            db,
            key: std::sync::Arc::new(key),
            vaults,
        })
    }

    pub fn payout(&self) -> PublicKey {
        self.key.public()
    }

    /// The books' journal (fsync counts for `/metrics`).
    pub fn journal(&self) -> &Journal {
        &self.db
    }

    /// Records a receipt; it is sent once the [`Durable`] is waited for.
    pub fn record_receipt(
        &mut self,
        request_id: &str,
        r: &Signed<Receipt>,
    ) -> Result<Durable<()>, PayError> {
        fail::hit("worker.receipt.before_persist")?;
        self.db.commit(|tx| {
            super::exec(
                tx,
                "INSERT OR REPLACE INTO receipts (request, receipt) VALUES (?1, ?2)",
                params![request_id, to_json(r)],
            )?;
            Ok(())
        })?;
        fail::hit("worker.receipt.after_persist")?;
        Ok(self.db.durable(()))
    }

    /// Σ costs of receipts signed.
    pub fn receipts_total(&self) -> Result<(u64, Nanotons), PayError> {
        let mut st = self.db.conn().prepare("SELECT receipt FROM receipts")?;
        let mut n = 0;
        let mut total = 0;
        for r in st.query_map([], |r| r.get::<_, String>(0))? {
            let r: Signed<Receipt> = from_json(&r?)?;
            total += r.body.cost;
            n += 1;
        }
        Ok((n, total))
    }

    /// Checks a voucher from a proxy whose vault `owner` the ledger names,
    /// and keeps it; the proxy hears "ok" once it is durable. Returns the
    /// increase.
    pub fn accept_voucher(
        &mut self,
        v: Signed<WorkerVoucher>,
        owner: PublicKey,
    ) -> Result<Durable<Nanotons>, PayError> {
        let mut e = self.vaults.get(&v.body.vault).cloned().unwrap_or(Earnings {
            vault: v.body.vault,
            owner,
            worker: self.key.public(),
            latest: None,
            claimed: 0,
        });
        if e.owner != owner {
            return Err(MoneyError::NotAuthorized("vault owner").into());
        }
        let delta = e.accept(v)?;
        self.db.commit(|tx| {
            super::exec(
                tx,
                "INSERT INTO vaults (vault, owner, voucher, claimed) VALUES (?1, ?2, ?3, '0') ON CONFLICT(vault) DO UPDATE SET voucher = ?3",
                params![v.body.vault.to_string(), owner.to_hex(), to_json(&v)],
            )?;
            Ok(())
        })?;
        fail::hit("worker.voucher.after_persist")?;
        self.vaults.insert(v.body.vault, e);
        Ok(self.db.durable(delta))
    }

    pub fn earnings(&self) -> Vec<Earnings> {
        let mut v: Vec<_> = self.vaults.values().cloned().collect();
        v.sort_by_key(|e| e.vault);
        v
    }

    /// Claims every vault whose claimable amount is at least `threshold`,
    /// holding the books throughout (tools and tests; the daemon uses
    /// [`Self::claims_due`]). Returns the total credited now. Safe to retry
    /// after any crash.
    pub async fn claim_due(
        &mut self,
        ledger: &dyn Settlement,
        threshold: Nanotons,
    ) -> Result<Nanotons, PayError> {
        let mut total = 0;
        for claim in self.claims_due(threshold) {
            let done = claim.run(ledger).await?;
            self.record_claim(done)?;
            total += done.delta;
        }
        Ok(total)
    }

    /// Claims to run on the ledger without holding the books: vaults whose
    /// claimable amount is at least `threshold`.
    pub fn claims_due(&self, threshold: Nanotons) -> Vec<WorkerClaim> {
        self.claims_due_unless(threshold, &[])
    }

    /// As [`Self::claims_due`], but the vaults in `urgent` (their owner
    /// asked to withdraw: after the delay, what is left unclaimed may be
    /// gone) are claimed whatever the amount.
    pub fn claims_due_unless(&self, threshold: Nanotons, urgent: &[Address]) -> Vec<WorkerClaim> {
        self.vaults
            .values()
            .filter_map(|e| {
                e.due(if urgent.contains(&e.vault) {
                    1
                } else {
                    threshold
                })
            })
            .map(|voucher| WorkerClaim {
                key: self.key.clone(),
                voucher,
            })
            .collect()
    }

    /// Records what a [`WorkerClaim`] achieved.
    /// Not flushed on its own: the ledger is the record of claims.
    pub fn record_claim(&mut self, done: WorkerClaimDone) -> Result<(), PayError> {
        self.set_claimed(done.vault, done.claimed)
    }

    /// Reads what the ledger has paid this worker from `vault` and records it.
    pub async fn sync_claimed(
        &mut self,
        ledger: &dyn Settlement,
        vault: Address,
    ) -> Result<(), PayError> {
        let claimed = ledger.worker_claimed(vault, self.key.public()).await?;
        self.set_claimed(vault, claimed)
    }

    fn set_claimed(&mut self, vault: Address, claimed: Nanotons) -> Result<(), PayError> {
        self.db.commit(|tx| {
            super::exec(
                tx,
                "UPDATE vaults SET claimed = ?2 WHERE vault = ?1",
                params![vault.to_string(), claimed.to_string()],
            )?;
            Ok(())
        })?;
        if let Some(e) = self.vaults.get_mut(&vault) {
            e.claimed = claimed;
        }
        Ok(())
    }
}

/// A claim of earnings from one vault, taken out of the books.
pub struct WorkerClaim {
    key: std::sync::Arc<SecretKey>,
    voucher: Signed<WorkerVoucher>,
}

/// What a [`WorkerClaim`] achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkerClaimDone {
    pub vault: Address,
    /// Credited by this claim (0 when the ledger had it already).
    pub delta: Nanotons,
    /// Paid to this worker from the vault in all, per the ledger.
    pub claimed: Nanotons,
}

impl WorkerClaim {
    /// Claims on the ledger; a voucher already settled is not credited again.
    pub async fn run(self, ledger: &dyn Settlement) -> Result<WorkerClaimDone, PayError> {
        let v = self.voucher;
        fail::hit("worker.claim.before_settle")?;
        let delta = super::credited(ledger.vault_claim(&self.key, v).await)?;
        fail::hit("worker.claim.after_settle")?;
        let claimed = ledger
            .worker_claimed(v.body.vault, self.key.public())
            .await?;
        Ok(WorkerClaimDone {
            vault: v.body.vault,
            delta,
            claimed,
        })
    }
}
