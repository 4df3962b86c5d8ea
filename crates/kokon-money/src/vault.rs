//! The proxy → worker vault: the proxy signs each worker a cumulative
//! voucher for its fees; the worker keeps the latest and claims from the
//! vault when the claimable amount is worth a claim.

use crate::MoneyError;
use crate::keys::{PublicKey, SecretKey};
use crate::message::{Address, Signed, WorkerVoucher};
use crate::price::Nanotons;

/// The proxy's next voucher for `worker`, owed `owed` so far, paying `fee` more.
pub fn next_worker_voucher(
    vault: Address,
    worker: PublicKey,
    owed: Nanotons,
    fee: Nanotons,
    key: &SecretKey,
) -> Result<Signed<WorkerVoucher>, MoneyError> {
    let amount = owed.checked_add(fee).ok_or(MoneyError::Overflow)?;
    Signed::sign(
        WorkerVoucher {
            vault,
            worker,
            amount,
        },
        key,
    )
}

/// The checks every holder of a worker voucher applies (worker and ledger).
pub fn check_worker_voucher<'a>(
    v: &'a Signed<WorkerVoucher>,
    vault: Address,
    owner: &PublicKey,
    worker: &PublicKey,
    latest: Nanotons,
) -> Result<&'a WorkerVoucher, MoneyError> {
    if v.body.vault != vault {
        return Err(MoneyError::WrongChannel {
            expected: vault,
            got: v.body.vault,
        });
    }
    if &v.body.worker != worker {
        return Err(MoneyError::WrongWorker);
    }
    let body = v.verify(owner)?;
    if body.amount <= latest {
        return Err(MoneyError::NotAboveLatest {
            amount: body.amount,
            latest,
        });
    }
    Ok(body)
}

/// A worker's earnings from one proxy's vault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Earnings {
    pub vault: Address,
    /// The vault owner's key, read from the ledger (not from the proxy).
    pub owner: PublicKey,
    pub worker: PublicKey,
    pub latest: Option<Signed<WorkerVoucher>>,
    /// What the ledger has paid out on this vault to this worker.
    pub claimed: Nanotons,
}

impl Earnings {
    pub fn earned(&self) -> Nanotons {
        self.latest.map_or(0, |v| v.body.amount)
    }

    /// Checks a voucher from the proxy; it becomes the latest. Returns the increase.
    pub fn accept(&mut self, v: Signed<WorkerVoucher>) -> Result<Nanotons, MoneyError> {
        let before = self.earned();
        check_worker_voucher(&v, self.vault, &self.owner, &self.worker, before)?;
        self.latest = Some(v);
        Ok(v.body.amount - before)
    }

    pub fn claimable(&self) -> Nanotons {
        self.earned().saturating_sub(self.claimed)
    }

    /// The voucher to claim with, when the claimable amount reaches `threshold`.
    pub fn due(&self, threshold: Nanotons) -> Option<Signed<WorkerVoucher>> {
        let c = self.claimable();
        (c > 0 && c >= threshold).then_some(self.latest).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cumulative_vouchers_and_claims() {
        let proxy = SecretKey::from_bytes([1; 32]);
        let worker = SecretKey::from_bytes([2; 32]).public();
        let vault = Address::new(0, [3; 32]);
        let mut e = Earnings {
            vault,
            owner: proxy.public(),
            worker,
            latest: None,
            claimed: 0,
        };
        let v1 = next_worker_voucher(vault, worker, 0, 90, &proxy).unwrap();
        assert_eq!(e.accept(v1), Ok(90));
        assert_eq!(e.due(100), None);
        let v2 = next_worker_voucher(vault, worker, 90, 45, &proxy).unwrap();
        assert_eq!(e.accept(v2), Ok(45));
        assert_eq!(e.due(100), Some(v2));
        assert!(matches!(
            e.accept(v1),
            Err(MoneyError::NotAboveLatest { .. })
        ));
        let stranger = SecretKey::from_bytes([9; 32]);
        let forged = next_worker_voucher(vault, worker, 135, 1, &stranger).unwrap();
        assert_eq!(e.accept(forged), Err(MoneyError::BadSignature));
        let other = next_worker_voucher(vault, proxy.public(), 135, 1, &proxy).unwrap();
        assert_eq!(e.accept(other), Err(MoneyError::WrongWorker));
        e.claimed = 135;
        assert_eq!(e.claimable(), 0);
        assert_eq!(e.due(0), None);
    }
}
