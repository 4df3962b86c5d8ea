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
pub use settlement::{BoxFuture, KeyRecord, MAX_PUBLISHED_OHTTP, ManualClock, Settlement};

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
    #[error("credit: {0}")]
    Credit(#[from] CreditRefused),
    #[error("settlement backend: {0}")]
    Backend(String),
    #[error("gateway keys of {0} bytes, above the {MAX_PUBLISHED_OHTTP} the registry holds")]
    KeysTooLarge(usize),
}

/// Why the proxy's books refused a credit operation (nothing was spent,
/// sold or given back).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreditRefused {
    #[error("a token was spent before")]
    Spent,
    #[error("a token appears twice")]
    Repeated,
    #[error("no credit-paid job {0}")]
    NoJob(String),
    #[error("job {0} is still running; ask for its change once it has ended")]
    Running(String),
    #[error("the claim secret does not match the job's")]
    WrongClaim,
    #[error("the change of job {0} was given for other token requests")]
    ChangeGiven(String),
    #[error("job {0} had its change; it cannot run again")]
    Ended(String),
    #[error("job {request} has {left} nanotons of credit left, it may cost up to {max_cost}")]
    Short {
        request: String,
        left: Nanotons,
        max_cost: Nanotons,
    },
    #[error("batch {0} was sold to another channel")]
    OtherBuyer(String),
}

use kokon_money::Nanotons;

impl From<rusqlite::Error> for PayError {
    fn from(e: rusqlite::Error) -> Self {
        PayError::Storage(e.to_string())
    }
}
