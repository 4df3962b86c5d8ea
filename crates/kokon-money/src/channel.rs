//! The client → proxy payment channel, as each side tracks it.
//!
//! The proxy serves a channel while its *exposure* — billed but unpaid, plus
//! the maximum cost of jobs running now — stays within the *credit limit*:
//! what the deposit still backs (deposit − paid), capped by the proxy's own
//! maximum credit. The client pays by signing cumulative vouchers; each must
//! be strictly above the last, at most what was billed, at most the deposit.

use serde::{Deserialize, Serialize};

use crate::MoneyError;
use crate::keys::{PublicKey, SecretKey};
use crate::message::{Address, ChannelVoucher, Signed};
use crate::price::Nanotons;

/// What the ledger says about a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelTerms {
    pub id: Address,
    pub client: PublicKey,
    #[serde(with = "crate::message::u128_string")]
    pub deposit: Nanotons,
    /// False once a close has started: the proxy stops serving.
    pub open: bool,
}

/// The proxy's view of one channel. `billed`, `paid` and `latest` are
/// persisted; `reserved` lives only as long as the jobs it covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyChannel {
    pub terms: ChannelTerms,
    /// Σ costs of receipts billed on this channel.
    pub billed: Nanotons,
    /// The latest voucher's amount (0 before the first).
    pub paid: Nanotons,
    pub latest: Option<Signed<ChannelVoucher>>,
    reserved: Nanotons,
}

impl ProxyChannel {
    pub fn new(terms: ChannelTerms) -> Self {
        Self {
            terms,
            billed: 0,
            paid: 0,
            latest: None,
            reserved: 0,
        }
    }

    /// Restores persisted state.
    pub fn restore(
        terms: ChannelTerms,
        billed: Nanotons,
        latest: Option<Signed<ChannelVoucher>>,
    ) -> Self {
        let paid = latest.map_or(0, |v| v.body.amount);
        Self {
            terms,
            billed,
            paid,
            latest,
            reserved: 0,
        }
    }

    /// Billed but not yet paid, plus reservations of running jobs.
    pub fn exposure(&self) -> Nanotons {
        self.billed.saturating_sub(self.paid) + self.reserved
    }

    /// The most the proxy may be exposed to on this channel.
    pub fn credit_limit(&self, max_credit: Nanotons) -> Nanotons {
        self.terms.deposit.saturating_sub(self.paid).min(max_credit)
    }

    /// Reserves `max_cost` for a job, or refuses it.
    pub fn admit(&mut self, max_cost: Nanotons, max_credit: Nanotons) -> Result<(), MoneyError> {
        if !self.terms.open {
            return Err(MoneyError::ChannelNotOpen);
        }
        let (exposure, limit) = (self.exposure(), self.credit_limit(max_credit));
        if exposure.saturating_add(max_cost) > limit {
            return Err(MoneyError::OverCredit {
                exposure,
                max_cost,
                limit,
            });
        }
        self.reserved += max_cost;
        Ok(())
    }

    /// Drops a job's reservation without billing (the job failed).
    pub fn release(&mut self, max_cost: Nanotons) {
        self.reserved = self.reserved.saturating_sub(max_cost);
    }

    /// Bills a finished job whose receipt checked out; `cost ≤ max_cost`
    /// because receipts above the budget are refused before this.
    pub fn bill(&mut self, max_cost: Nanotons, cost: Nanotons) {
        debug_assert!(cost <= max_cost);
        self.release(max_cost);
        self.billed += cost;
    }

    /// Bills part of a running job (a cumulative receipt's increase): the
    /// credit moves from reserved to billed, so exposure does not change.
    pub fn bill_part(&mut self, delta: Nanotons) {
        self.reserved = self.reserved.saturating_sub(delta);
        self.billed += delta;
    }

    /// Checks a voucher from the client; on success it becomes the latest.
    /// Returns the newly paid amount.
    pub fn accept(&mut self, v: Signed<ChannelVoucher>) -> Result<Nanotons, MoneyError> {
        let body = check_voucher(&v, &self.terms, self.paid)?;
        if body.amount > self.billed {
            return Err(MoneyError::AboveBilled {
                amount: body.amount,
                billed: self.billed,
            });
        }
        let delta = body.amount - self.paid;
        self.paid = body.amount;
        self.latest = Some(v);
        Ok(delta)
    }
}

/// The checks every holder of a channel voucher applies (proxy and ledger):
/// right channel, signed by the client, above `latest`, within the deposit.
pub fn check_voucher<'a>(
    v: &'a Signed<ChannelVoucher>,
    terms: &ChannelTerms,
    latest: Nanotons,
) -> Result<&'a ChannelVoucher, MoneyError> {
    if v.body.channel != terms.id {
        return Err(MoneyError::WrongChannel {
            expected: terms.id,
            got: v.body.channel,
        });
    }
    let body = v.verify(&terms.client)?;
    if body.amount <= latest {
        return Err(MoneyError::NotAboveLatest {
            amount: body.amount,
            latest,
        });
    }
    if body.amount > terms.deposit {
        return Err(MoneyError::AboveDeposit {
            amount: body.amount,
            deposit: terms.deposit,
        });
    }
    Ok(body)
}

/// The client's view of its channel: what it has signed so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientChannel {
    pub id: Address,
    pub deposit: Nanotons,
    /// The latest voucher's amount: everything the client has agreed to pay.
    pub spent: Nanotons,
}

impl ClientChannel {
    /// Signs the next cumulative voucher, paying `cost` more. The caller
    /// persists the voucher before sending it, then calls [`Self::commit`].
    pub fn next_voucher(
        &self,
        cost: Nanotons,
        key: &SecretKey,
    ) -> Result<Signed<ChannelVoucher>, MoneyError> {
        if cost == 0 {
            return Err(MoneyError::ZeroAmount);
        }
        let amount = self.spent.checked_add(cost).ok_or(MoneyError::Overflow)?;
        if amount > self.deposit {
            return Err(MoneyError::AboveDeposit {
                amount,
                deposit: self.deposit,
            });
        }
        Signed::sign(
            ChannelVoucher {
                channel: self.id,
                amount,
            },
            key,
        )
    }

    pub fn commit(&mut self, v: &Signed<ChannelVoucher>) {
        self.spent = self.spent.max(v.body.amount);
    }

    pub fn remaining(&self) -> Nanotons {
        self.deposit.saturating_sub(self.spent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(deposit: Nanotons) -> (SecretKey, ProxyChannel, ClientChannel) {
        let k = SecretKey::from_bytes([4; 32]);
        let id = Address::new(0, [1; 32]);
        let terms = ChannelTerms {
            id,
            client: k.public(),
            deposit,
            open: true,
        };
        (
            k,
            ProxyChannel::new(terms),
            ClientChannel {
                id,
                deposit,
                spent: 0,
            },
        )
    }

    #[test]
    fn pay_as_you_go() {
        let (k, mut p, mut c) = setup(1000);
        p.admit(300, u128::MAX).unwrap();
        p.bill(300, 120);
        let v = c.next_voucher(120, &k).unwrap();
        c.commit(&v);
        assert_eq!(p.accept(v), Ok(120));
        assert_eq!(p.exposure(), 0);
        assert_eq!(p.credit_limit(u128::MAX), 880);
    }

    #[test]
    fn replayed_lower_forged_and_over_billed_vouchers_fail() {
        let (k, mut p, c) = setup(1000);
        p.admit(500, u128::MAX).unwrap();
        p.bill(500, 200);
        let v = c.next_voucher(100, &k).unwrap();
        p.accept(v).unwrap();
        assert_eq!(
            p.accept(v),
            Err(MoneyError::NotAboveLatest {
                amount: 100,
                latest: 100
            })
        );
        let mut forged = c.next_voucher(150, &k).unwrap();
        forged.body.amount = 190;
        assert_eq!(p.accept(forged), Err(MoneyError::BadSignature));
        let over = ClientChannel { spent: 0, ..c }
            .next_voucher(300, &k)
            .unwrap();
        assert_eq!(
            p.accept(over),
            Err(MoneyError::AboveBilled {
                amount: 300,
                billed: 200
            })
        );
        let stranger = SecretKey::from_bytes([5; 32]);
        let v = ClientChannel { spent: 150, ..c }
            .next_voucher(10, &stranger)
            .unwrap();
        assert_eq!(p.accept(v), Err(MoneyError::BadSignature));
        let other = ClientChannel {
            id: Address::new(0, [2; 32]),
            ..c
        }
        .next_voucher(160, &k)
        .unwrap();
        assert!(matches!(
            p.accept(other),
            Err(MoneyError::WrongChannel { .. })
        ));
    }

    #[test]
    fn non_payer_is_cut_off() {
        let (_, mut p, _) = setup(1000);
        let max_credit = 250;
        p.admit(100, max_credit).unwrap();
        p.bill(100, 100);
        p.admit(100, max_credit).unwrap();
        p.bill(100, 100);
        assert!(matches!(
            p.admit(100, max_credit),
            Err(MoneyError::OverCredit { exposure: 200, .. })
        ));
        p.admit(50, max_credit).unwrap();
    }

    #[test]
    fn client_cannot_sign_past_deposit() {
        let (k, _, c) = setup(100);
        assert!(matches!(
            c.next_voucher(101, &k),
            Err(MoneyError::AboveDeposit { .. })
        ));
        assert_eq!(c.next_voucher(0, &k), Err(MoneyError::ZeroAmount));
    }

    #[test]
    fn closing_channel_admits_nothing() {
        let (_, mut p, _) = setup(100);
        p.terms.open = false;
        assert_eq!(p.admit(1, u128::MAX), Err(MoneyError::ChannelNotOpen));
    }
}
