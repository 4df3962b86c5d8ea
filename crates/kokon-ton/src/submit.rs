//! Sending a party's message and confirming it: one signed external
//! message from its wallet, then every transaction it caused, found by
//! message hash. Resending is idempotent (seqno + expiry).

use std::sync::Arc;
use std::time::Duration;

use kokon_money::{Address, SecretKey};

use crate::api::{Stack, Transaction};
use crate::settlement::TonSettlement;
use crate::wallet::{Outgoing, Wallet};
use crate::{TonError, exit_meaning};

/// The transactions one message caused, in the order they happened.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    pub transactions: Vec<Transaction>,
}

impl Trace {
    /// The first transaction that failed, with its account and exit code.
    pub fn failure(&self) -> Option<(&str, i32)> {
        self.transactions
            .iter()
            .find_map(|t| t.failure().map(|c| (t.account.as_str(), c)))
    }
}

fn refused(contract: &str, exit_code: i32) -> TonError {
    TonError::Refused {
        contract: contract.to_string(),
        exit_code,
        meaning: exit_meaning(exit_code),
    }
}
impl TonSettlement {
    fn lock(&self, wallet: Address) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(wallet).or_default().clone()
    }

    async fn seqno(&self, w: &Address) -> Result<u32, TonError> {
        if !self.active(w).await? {
            return Ok(0);
        }
        let n = Stack::new(self.api.get(w, "seqno", &[]).await?).u64()?;
        u32::try_from(n).map_err(|_| TonError::BadResponse("seqno out of range".into()))
    }

    /// Sends `out` from `key`'s wallet and follows what it caused. Fails if
    /// any transaction in the trace failed.
    pub async fn submit(&self, key: &SecretKey, out: Outgoing) -> Result<Trace, TonError> {
        let wallet = Wallet::new(self.cfg.wallet, key)?;
        let lock = self.lock(wallet.address());
        let _one_at_a_time = lock.lock().await;
        let deadline = tokio::time::Instant::now() + self.cfg.confirm_timeout;
        let mut last_hash = String::new();
        while tokio::time::Instant::now() < deadline {
            let seqno = self.seqno(&wallet.address()).await?;
            let expire_at = self.clock.now_unix() as u32 + 60;
            let msg = wallet.external(seqno, expire_at, &out)?;
            let hash = self.send_with_retries(&msg, expire_at).await?;
            last_hash.clone_from(&hash);
            if let Some(first) = self.wait_for(&hash, expire_at, deadline).await? {
                if first.out_msgs.is_empty() {
                    // The wallet accepted the message but could not send
                    // (its send mode ignores errors): nothing happened.
                    return Err(TonError::Invalid(format!(
                        "wallet {} sent nothing for message {hash} (balance too low?)",
                        wallet.address()
                    )));
                }
                let trace = self.follow(first).await?;
                if let Some((account, code)) = trace.failure() {
                    return Err(refused(account, code));
                }
                return Ok(trace);
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            // Expired without a transaction. Only if the wallet's seqno has
            // not moved is it sure the message was not applied (it never can
            // be now); otherwise resending could apply the operation twice.
            if self.seqno(&wallet.address()).await? != seqno {
                return Err(TonError::Invalid(format!(
                    "wallet {} moved past seqno {seqno} but message {hash} was not seen applied; not resending (check the wallet's transactions)",
                    wallet.address()
                )));
            }
            tracing::warn!(%hash, "message expired unapplied; sending it again with a new expiry");
        }
        Err(TonError::NotConfirmed {
            hash: last_hash,
            secs: self.cfg.confirm_timeout.as_secs(),
        })
    }

    async fn send_with_retries(
        &self,
        msg: &tonlib_core::cell::Cell,
        expire_at: u32,
    ) -> Result<String, TonError> {
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.api.send(msg).await {
                Ok(h) => return Ok(h),
                Err(e @ (TonError::Http(_) | TonError::Api { status: 500.., .. }))
                    if (self.clock.now_unix() as u32) < expire_at =>
                {
                    tracing::warn!(error = %e, "sending failed; retrying the same message");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The transaction of message `hash`, or `None` once it expired
    /// unapplied (or the whole operation's deadline passed).
    async fn wait_for(
        &self,
        hash: &str,
        expire_at: u32,
        deadline: tokio::time::Instant,
    ) -> Result<Option<Transaction>, TonError> {
        loop {
            if let Some(t) = self.api.transaction_by_message(hash).await? {
                return Ok(Some(t));
            }
            // A little past expiry, for the API to catch up.
            if self.clock.now_unix() as u32 > expire_at + 10
                || tokio::time::Instant::now() > deadline
            {
                return Ok(None);
            }
            tokio::time::sleep(self.cfg.poll).await;
        }
    }

    /// Follows internal messages from `first` until the trace ends.
    async fn follow(&self, first: Transaction) -> Result<Trace, TonError> {
        const MAX_TXS: usize = 32;
        let deadline = tokio::time::Instant::now() + self.cfg.confirm_timeout;
        let mut pending: std::collections::VecDeque<String> = first
            .out_msgs
            .iter()
            .filter(|m| m.destination.is_some())
            .map(|m| m.hash.clone())
            .collect();
        let mut trace = Trace {
            transactions: vec![first],
        };
        while let Some(hash) = pending.pop_front() {
            let tx = loop {
                if let Some(t) = self.api.transaction_by_message(&hash).await? {
                    break t;
                }
                if tokio::time::Instant::now() > deadline {
                    return Err(TonError::NotConfirmed {
                        hash,
                        secs: self.cfg.confirm_timeout.as_secs(),
                    });
                }
                tokio::time::sleep(self.cfg.poll).await;
            };
            pending.extend(
                tx.out_msgs
                    .iter()
                    .filter(|m| m.destination.is_some())
                    .map(|m| m.hash.clone()),
            );
            trace.transactions.push(tx);
            if trace.transactions.len() > MAX_TXS {
                return Err(TonError::BadResponse(
                    "trace of over 32 transactions".into(),
                ));
            }
        }
        Ok(trace)
    }
}
