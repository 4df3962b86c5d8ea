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
