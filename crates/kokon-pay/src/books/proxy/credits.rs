//! The proxy's books for credit tokens: what it sold (and billed to the
//! buyer's channel), the spent set, and each credit-paid job's prepaid
//! amount, bill and change.
//!
//! The records of a sale (`credit_sales`: the hash of the blinded
//! requests, the channel, the amount) and of a redemption (`credit_spent`:
//! a hash of each token; `credit_jobs`: the job's request id, amounts and
//! the hash of its claim secret) share no value: a blinded request and the
//! token made from it are unlinkable, and nothing else crosses.

use rusqlite::{OptionalExtension, params};

use super::{Payer, ProxyBooks, Reservation};
use crate::journal::Durable;
use crate::sqlite::amount;
use crate::{CreditRefused, PayError, fail};
use kokon_money::{Address, Nanotons};

/// A credit-paid job that runs: its prepaid amount and bill so far.
#[derive(Clone, Copy, Debug)]
pub(super) struct Running {
    prepaid: Nanotons,
    billed: Nanotons,
}

/// A sale [`ProxyBooks::sell_credits`] recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreditSale {
    /// False when the batch was sold before (a retry): nothing billed again.
    pub fresh: bool,
}

/// `credit_jobs` as read: prepaid, billed, claim, change, returned.
type RedemptionRow = (String, String, String, Option<String>, Option<String>);

/// A credit-paid job as the books keep it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redemption {
    pub prepaid: Nanotons,
    pub billed: Nanotons,
    /// SHA-256 of the claim secret, hex.
    pub claim: String,
    /// SHA-256 of the token requests its change was given for, hex.
    pub change: Option<String>,
    pub returned: Option<Nanotons>,
}

impl ProxyBooks {
    /// Sells a batch of tokens (`batch`: SHA-256 of its blinded requests)
    /// for `amount`, billed to `channel` within its credit limit, durably,
    /// before the tokens are signed. The same batch again is not billed
    /// again (the signatures are the same: a retry after a crash).
    pub fn sell_credits(
        &mut self,
        channel: &Address,
        batch: &str,
        amount: Nanotons,
    ) -> Result<Durable<CreditSale>, PayError> {
        let sold: Option<String> = self
            .db
            .conn()
            .prepare_cached("SELECT channel FROM credit_sales WHERE batch = ?1")?
            .query_row([batch], |r| r.get(0))
            .optional()?;
        match sold {
            Some(c) if c == channel.to_string() => {
                return Ok(self.db.durable(CreditSale { fresh: false }));
            }
            Some(_) => return Err(CreditRefused::OtherBuyer(batch.to_string()).into()),
            None => {}
        }
        let elsewhere = self.exposure_elsewhere(channel);
        let (c, _) = self
            .channels
            .get_mut(channel)
            .ok_or(PayError::NoChannel(*channel))?;
        c.admit(amount, self.max_credit.saturating_sub(elsewhere))?;
        let billed = c.billed + amount;
        let persisted = fail::hit("proxy.credit_sale.before_persist")
            .map_err(PayError::from)
            .and_then(|()| {
                self.db.commit(|tx| {
                    super::super::exec(
                        tx,
                        "INSERT INTO credit_sales (batch, channel, amount) VALUES (?1, ?2, ?3)",
                        params![batch, channel.to_string(), amount.to_string()],
                    )?;
                    super::super::exec(
                        tx,
                        "UPDATE channels SET billed = ?2 WHERE id = ?1",
                        params![channel.to_string(), billed.to_string()],
                    )?;
                    Ok(())
                })
            });
        let (c, _) = self
            .channels
            .get_mut(channel)
            .ok_or(PayError::NoChannel(*channel))?;
        match persisted {
            Ok(()) => c.bill(amount, amount),
            Err(e) => {
                c.release(amount);
                return Err(e);
            }
        }
        fail::hit("proxy.credit_sale.after_persist")?;
        Ok(self.db.durable(CreditSale { fresh: true }))
    }

    /// Redeems tokens (their spent-set ids) for job `request_id`, prepaid
    /// `prepaid`, in one transaction: either every token is newly spent and
    /// the job recorded, or nothing is. `claim`: SHA-256 (hex) of the
    /// secret that claims the job's change. The job may be routed once the
    /// [`Durable`] is waited for.
    pub fn redeem(
        &mut self,
        request_id: &str,
        spent: &[String],
        prepaid: Nanotons,
        claim: &str,
    ) -> Result<Durable<()>, PayError> {
        let mut seen = std::collections::HashSet::new();
        if !spent.iter().all(|s| seen.insert(s)) {
            return Err(CreditRefused::Repeated.into());
        }
        fail::hit("proxy.redeem.before_persist")?;
        self.db.commit(|tx| {
            let job = super::super::exec(
                tx,
                "INSERT OR IGNORE INTO credit_jobs (request, prepaid, billed, claim) VALUES (?1, ?2, '0', ?3)",
                params![request_id, prepaid.to_string(), claim],
            )?;
            if job == 0 {
                return Err(PayError::DuplicateRequest(request_id.to_string()));
            }
            for id in spent {
                let fresh = super::super::exec(
                    tx,
                    "INSERT OR IGNORE INTO credit_spent (token) VALUES (?1)",
                    [id],
                )?;
                if fresh == 0 {
                    return Err(CreditRefused::Spent.into());
                }
            }
            Ok(())
        })?;
        fail::hit("proxy.redeem.after_persist")?;
        Ok(self.db.durable(()))
    }

    /// Undoes the redemption of a job that reached no worker (refused
    /// before routing: no worker, stale candidates): its record goes and its
    /// tokens (`spent`, the ids its redemption recorded) may be redeemed
    /// again — by the same job sent again, typically. A job admitted, billed
    /// or given change keeps everything. Not flushed on its own: a lost
    /// deletion leaves the job recorded, whose change gives all back.
    pub fn unredeem(&mut self, request_id: &str, spent: &[String]) -> Result<(), PayError> {
        if self.credit_running.contains_key(request_id) {
            return Ok(());
        }
        self.db.commit(|tx| {
            let gone = super::super::exec(
                tx,
                "DELETE FROM credit_jobs WHERE request = ?1 AND billed = '0' AND change IS NULL \
                 AND NOT EXISTS (SELECT 1 FROM bills b WHERE b.channel = 'credits' AND b.request = ?1)",
                [request_id],
            )?;
            if gone == 1 {
                for id in spent {
                    super::super::exec(tx, "DELETE FROM credit_spent WHERE token = ?1", [id])?;
                }
            }
            Ok(())
        })
    }

    /// Whether a credit-paid job is running (its bill may still grow).
    pub fn credit_running(&self, request_id: &str) -> bool {
        self.credit_running.contains_key(request_id)
    }

    /// A credit-paid job's record.
    pub fn redemption(&self, request_id: &str) -> Result<Option<Redemption>, PayError> {
        let row: Option<RedemptionRow> = self
            .db
            .conn()
            .prepare_cached(
                "SELECT prepaid, billed, claim, change, returned FROM credit_jobs WHERE request = ?1",
            )?
            .query_row([request_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .optional()?;
        row.map(|(prepaid, billed, claim, change, returned)| {
            Ok(Redemption {
                prepaid: amount(prepaid)?,
                billed: amount(billed)?,
                claim,
                change,
                returned: returned.map(amount).transpose()?,
            })
        })
        .transpose()
    }

    /// Reserves `max_cost` of a credit-paid job's prepaid amount for one
    /// attempt: refused if it is not left, or the change was given.
    pub fn admit_credit(
        &mut self,
        request_id: &str,
        max_cost: Nanotons,
    ) -> Result<Reservation, PayError> {
        let r = self
            .redemption(request_id)?
            .ok_or_else(|| CreditRefused::NoJob(request_id.to_string()))?;
        if r.change.is_some() {
            return Err(CreditRefused::Ended(request_id.to_string()).into());
        }
        if self.credit_running.contains_key(request_id) {
            return Err(CreditRefused::Running(request_id.to_string()).into());
        }
        let left = r.prepaid.saturating_sub(r.billed);
        if max_cost > left {
            return Err(CreditRefused::Short {
                request: request_id.to_string(),
                left,
                max_cost,
            }
            .into());
        }
        self.credit_running.insert(
            request_id.to_string(),
            Running {
                prepaid: r.prepaid,
                billed: r.billed,
            },
        );
        Ok(Reservation {
            payer: Payer::Credits,
            request: request_id.to_string(),
            max_cost,
        })
    }

    /// Gives a credit-paid job's change, once: `claim` must hash to the
    /// job's claim, the job must have ended, and `requests` (SHA-256, hex,
    /// of the token requests the change is signed into) is recorded so that
    /// only the same requests are answered again. Returns the job (its
    /// bill is final); the caller signs the change it computes from it.
    ///
    /// `billed`: the bill the change was computed from. A job admitted
    /// again since (its bill may grow) is refused as running, so change
    /// and bill never add up to more than was prepaid.
    pub fn claim_change(
        &mut self,
        request_id: &str,
        claim: &str,
        requests: &str,
        (billed, returned): (Nanotons, Nanotons),
    ) -> Result<Durable<Redemption>, PayError> {
        let mut r = self
            .redemption(request_id)?
            .ok_or_else(|| CreditRefused::NoJob(request_id.to_string()))?;
        if r.claim != claim {
            return Err(CreditRefused::WrongClaim.into());
        }
        if self.credit_running.contains_key(request_id) || r.billed != billed {
            return Err(CreditRefused::Running(request_id.to_string()).into());
        }
        if billed + returned > r.prepaid {
            return Err(CreditRefused::Short {
                request: request_id.to_string(),
                left: r.prepaid - billed.min(r.prepaid),
                max_cost: returned,
            }
            .into());
        }
        match &r.change {
            Some(c) if c == requests => return Ok(self.db.durable(r)),
            Some(_) => return Err(CreditRefused::ChangeGiven(request_id.to_string()).into()),
            None => {}
        }
        fail::hit("proxy.change.before_persist")?;
        self.db.commit(|tx| {
            super::super::exec(
                tx,
                "UPDATE credit_jobs SET change = ?2, returned = ?3 WHERE request = ?1 AND change IS NULL",
                params![request_id, requests, returned.to_string()],
            )?;
            Ok(())
        })?;
        fail::hit("proxy.change.after_persist")?;
        r.change = Some(requests.to_string());
        r.returned = Some(returned);
        Ok(self.db.durable(r))
    }

    /// What the payer of `r` was billed so far.
    pub(super) fn payer_billed(&self, r: &Reservation) -> Result<Nanotons, PayError> {
        match r.payer {
            Payer::Channel(id) => self
                .channels
                .get(&id)
                .map(|(c, _)| c.billed)
                .ok_or(PayError::NoChannel(id)),
            Payer::Credits => self
                .credit_running
                .get(&r.request)
                .map(|j| j.billed)
                .ok_or_else(|| CreditRefused::NoJob(r.request.clone()).into()),
        }
    }

    /// Raises what the payer of `r` was billed, in memory (after the commit).
    pub(super) fn billed_more(&mut self, r: &Reservation, delta: Nanotons) {
        match r.payer {
            Payer::Channel(id) => {
                if let Some((c, _)) = self.channels.get_mut(&id) {
                    c.bill_part(delta);
                }
            }
            Payer::Credits => {
                if let Some(j) = self.credit_running.get_mut(&r.request) {
                    j.billed += delta;
                    debug_assert!(j.billed <= j.prepaid);
                }
            }
        }
    }

    /// Totals of the credit tables: sold, prepaid by redemptions, billed to
    /// credit-paid jobs, and given back as change.
    pub fn credit_totals(&self) -> Result<CreditTotals, PayError> {
        let conn = self.db.conn();
        let sum = |sql: &str| -> Result<Nanotons, PayError> {
            let mut st = conn.prepare(sql)?;
            let rows = st.query_map([], |r| r.get::<_, Option<String>>(0))?;
            let mut total = 0;
            for v in rows {
                if let Some(v) = v? {
                    total += amount(v)?;
                }
            }
            Ok(total)
        };
        Ok(CreditTotals {
            sold: sum("SELECT amount FROM credit_sales")?,
            prepaid: sum("SELECT prepaid FROM credit_jobs")?,
            billed: sum("SELECT billed FROM credit_jobs")?,
            returned: sum("SELECT returned FROM credit_jobs")?,
            spent_tokens: conn.query_row("SELECT count(*) FROM credit_spent", [], |r| {
                r.get::<_, i64>(0)
            })? as u64,
        })
    }
}

/// [`ProxyBooks::credit_totals`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CreditTotals {
    pub sold: Nanotons,
    pub prepaid: Nanotons,
    pub billed: Nanotons,
    pub returned: Nanotons,
    pub spent_tokens: u64,
}
