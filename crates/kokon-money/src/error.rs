//! Everything that can go wrong with money, typed.

use crate::price::Nanotons;

/// Why a money operation was refused. Each refusal has its own variant so
/// callers (and tests) can tell a forged voucher from a replayed one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("arithmetic overflow in a money computation")]
    Overflow,
    #[error("`{what}` = {secs} s: a delay must be 1 s to 30 days (2592000 s)")]
    BadDelay { what: &'static str, secs: u64 },
    #[error("commission of {0} basis points is above the whole cost (10000)")]
    BadCommission(u16),
    #[error("not a valid Ed25519 public key")]
    BadPublicKey,
    #[error("signature does not verify")]
    BadSignature,
    #[error("expected {expected} bytes of hex")]
    BadHex { expected: usize },
    #[error("not an address of the form `workchain:hex64`")]
    BadAddress,
    #[error("voucher is for channel or vault {got}, not {expected}")]
    WrongChannel {
        expected: crate::Address,
        got: crate::Address,
    },
    #[error("voucher is for another worker")]
    WrongWorker,
    #[error("voucher amount {amount} is not above the latest {latest}: replayed or lower")]
    NotAboveLatest { amount: Nanotons, latest: Nanotons },
    #[error("voucher amount {amount} exceeds what was billed ({billed})")]
    AboveBilled { amount: Nanotons, billed: Nanotons },
    #[error("amount {amount} exceeds the deposit {deposit}")]
    AboveDeposit { amount: Nanotons, deposit: Nanotons },
    #[error(
        "out of credit: exposure {exposure} + this job's maximum {max_cost} exceeds the limit {limit}"
    )]
    OverCredit {
        exposure: Nanotons,
        max_cost: Nanotons,
        limit: Nanotons,
    },
    #[error("cost {cost} exceeds the {reserved} reserved for the job")]
    AboveReservation { cost: Nanotons, reserved: Nanotons },
    #[error("channel is closing or closed")]
    ChannelNotOpen,
    #[error("channel is not closing")]
    NotClosing,
    #[error("the close delay has not passed yet ({remaining} s left)")]
    DelayNotOver { remaining: u64 },
    #[error("the close delay is over; claims are no longer accepted")]
    DelayOver,
    #[error("the vault holds {balance}, less than the {needed} needed")]
    VaultShort { balance: Nanotons, needed: Nanotons },
    #[error("no withdrawal was requested")]
    NoWithdrawal,
    #[error("account holds {balance}, less than the {needed} needed")]
    InsufficientFunds { balance: Nanotons, needed: Nanotons },
    #[error("amount must be positive")]
    ZeroAmount,
    #[error("only the {0} may do this")]
    NotAuthorized(&'static str),
    #[error("receipt: {0}")]
    Receipt(#[from] ReceiptError),
}

/// Why a worker's receipt was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    #[error("receipt signature does not verify against the worker's attested key")]
    BadSignature,
    #[error("receipt is for another request")]
    WrongRequest,
    #[error("receipt names model hash {got}, but only {expected} may be served")]
    WrongModel { expected: String, got: String },
    #[error("receipt uses price coefficient {got}, but {expected} was agreed")]
    WrongPrice { expected: u32, got: u32 },
    #[error("receipt charges {claimed}, but its usage costs {computed} per the price table")]
    WrongCost {
        claimed: Nanotons,
        computed: Nanotons,
    },
    #[error("receipt overstates usage: {what} {got} above the bound {bound}")]
    OverstatesUsage {
        what: &'static str,
        got: u64,
        bound: u64,
    },
    #[error("receipt cannot be priced: {0}")]
    Unpriceable(String),
}
