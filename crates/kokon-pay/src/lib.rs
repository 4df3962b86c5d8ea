//! Kokon's money I/O (DESIGN §3, docs/ECONOMICS.md).
//!
//! * [`Settlement`]: the ledger interface; [`devnet::Devnet`] implements it
//!   on an embedded SQLite file, the `ton` backend on TON.
//! * [`books`]: each daemon's durable money state (client gateway, proxy,
//!   worker), driving the pure state machines of `kokon-money` and writing
//!   every signed message to disk before it leaves the process.
//! * [`fail`]: failpoints for crash-injection tests.

pub mod books;
pub mod delayed;
pub mod devnet;
pub mod fail;
pub mod journal;
pub mod keys;
mod settlement;
pub mod sqlite;

pub use kokon_attest::{Clock, SystemClock};
pub use settlement::{BoxFuture, ManualClock, Settlement};

use kokon_money::MoneyError;

/// Why a payment operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PayError {
    #[error(transparent)]
    Money(#[from] MoneyError),
    #[error("no channel {0} on the ledger")]
    NoChannel(kokon_money::Address),
    #[error("no vault {0} on the ledger")]
    NoVault(kokon_money::Address),
    #[error("storage: {0}")]
    Storage(String),
    #[error("request {0} was already billed")]
    AlreadyBilled(String),
    #[error("request id {0} was already used on this channel")]
    DuplicateRequest(String),
    #[error("dispute refused: {0}")]
    Disputed(String),
    #[error(transparent)]
    Crashed(#[from] fail::Crashed),
    #[error("settlement backend: {0}")]
    Backend(String),
}

impl From<rusqlite::Error> for PayError {
    fn from(e: rusqlite::Error) -> Self {
        PayError::Storage(e.to_string())
    }
}
