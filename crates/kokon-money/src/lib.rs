//! Kokon's money rules, in one pure crate (DESIGN §3, docs/ECONOMICS.md).
//!
//! * [`price`]: prices and exact job costs.
//! * [`message`]: vouchers and receipts, signed over TON cell hashes ([`cell`]).
//! * [`channel`]: the client → proxy channel, as the proxy and the client see it.
//! * [`vault`]: the proxy → worker vault, as the proxy and the worker see it.
//! * [`ledger`]: the settlement rules (deposits, claims, closes, withdrawals)
//!   that the devnet ledger and the TON contracts both enforce.
//!
//! Nothing here does I/O or reads the clock; time is an argument.

pub mod cell;
pub mod channel;
mod error;
pub mod keys;
pub mod ledger;
pub mod message;
pub mod price;
pub mod receipt;
pub mod vault;

pub use error::{MoneyError, ReceiptError};
pub use keys::{Hash32, PublicKey, SecretKey, Signature};
pub use message::{Address, ChannelVoucher, Receipt, Signable, Signed, WorkerVoucher};
pub use price::{Nanotons, PriceTable, TokenUsage};

/// Parameters of the economy, set by the registry.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Economics {
    #[serde(default)]
    pub prices: PriceTable,
    /// The proxy's share of each job's cost, in basis points.
    pub commission_bps: u16,
    /// Seconds a unilateral channel close waits, during which the proxy can
    /// still claim the latest voucher.
    pub channel_close_delay_secs: u64,
    /// Seconds a vault withdrawal by the proxy owner waits, during which
    /// workers can claim first.
    pub vault_withdraw_delay_secs: u64,
}

/// Longest close or withdrawal delay (30 days), the contracts' bound too
/// (`MAX_DELAY`, exit 115): a longer one would lock a deposit for longer
/// than anyone agreed to.
pub const MAX_DELAY_SECS: u64 = 30 * 24 * 3600;

impl Economics {
    /// Refuses terms no ledger accepts: a delay of 0 (the other side gets
    /// no time to claim) or above [`MAX_DELAY_SECS`], a commission above
    /// the whole cost.
    pub fn check(&self) -> Result<(), MoneyError> {
        for (what, secs) in [
            ("channel_close_delay_secs", self.channel_close_delay_secs),
            ("vault_withdraw_delay_secs", self.vault_withdraw_delay_secs),
        ] {
            if secs == 0 || secs > MAX_DELAY_SECS {
                return Err(MoneyError::BadDelay { what, secs });
            }
        }
        if self.commission_bps > 10_000 {
            return Err(MoneyError::BadCommission(self.commission_bps));
        }
        Ok(())
    }
}

impl Default for Economics {
    fn default() -> Self {
        Self {
            prices: PriceTable::default(),
            commission_bps: 1000,
            channel_close_delay_secs: 3600,
            vault_withdraw_delay_secs: 3600,
        }
    }
}
