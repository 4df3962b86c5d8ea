//! Kokon's settlement on TON (DESIGN §3, docs/ECONOMICS.md "On TON").
//!
//! * [`cells`]: the compiled Tolk contracts (`contracts/build`), their
//!   initial data, addresses and message bodies.
//! * [`wallet`]: standard v4r2/v5r1 wallets for Kokon keys; 24-word mnemonics.
//! * [`api`]: a toncenter v3 HTTP client (public providers, or the local
//!   sandbox chain in `contracts/sandbox`).
//! * [`TonSettlement`]: the `Settlement` trait on the real contracts.
//! * [`registry`]: reading and changing the root contract.

pub mod api;
pub mod bits;
pub mod boc;
pub mod cells;
pub mod registry;
pub mod sandbox;
mod settlement;
mod submit;
pub mod td_policy;
pub mod wallet;

pub use settlement::{GAS, TonConfig, TonSettlement};
pub use submit::Trace;

/// Which TON network a backend talks to. Only `Sandbox` has a faucet and a
/// movable clock; the daemons refuse simulated attestation unless the
/// registry says it is a test network, whatever this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    Mainnet,
    Testnet,
    Sandbox,
}

impl Network {
    /// The network's id in the initial data of every channel and vault
    /// (contracts/src/common.tolk), so of their addresses: the chains'
    /// global ids, and 1 for the local sandbox. A voucher names a channel's
    /// or vault's address, so one signed on a network is refused on another.
    pub fn id(self) -> i32 {
        match self {
            Network::Mainnet => -239,
            Network::Testnet => -3,
            Network::Sandbox => 1,
        }
    }
}

impl std::str::FromStr for Network {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "mainnet" => Ok(Self::Mainnet),
            "testnet" => Ok(Self::Testnet),
            "sandbox" => Ok(Self::Sandbox),
            _ => Err(format!(
                "unknown network `{s}` (mainnet, testnet or sandbox)"
            )),
        }
    }
}

/// Why a TON operation failed (below the money rules).
#[derive(Debug, thiserror::Error)]
pub enum TonError {
    #[error("HTTP: {0}")]
    Http(String),
    #[error("TON API answered {status}: {message}")]
    Api { status: u16, message: String },
    #[error("TON API answer not understood: {0}")]
    BadResponse(String),
    #[error("get-method `{method}` failed with exit code {exit_code}")]
    GetMethod { method: String, exit_code: i32 },
    #[error("cell: {0}")]
    Cell(#[from] tonlib_core::cell::TonCellError),
    #[error("message: {0}")]
    Message(#[from] tonlib_core::message::TonMessageError),
    #[error("mnemonic: {0}")]
    Mnemonic(String),
    #[error("message {hash} was not confirmed within {secs} s")]
    NotConfirmed { hash: String, secs: u64 },
    #[error("{contract} refused the message: exit code {exit_code} ({meaning})")]
    Refused {
        contract: String,
        exit_code: i32,
        meaning: &'static str,
    },
    #[error("{0}")]
    Invalid(String),
}

impl From<TonError> for kokon_pay::PayError {
    fn from(e: TonError) -> Self {
        kokon_pay::PayError::Backend(e.to_string())
    }
}

/// What an exit code of Kokon's contracts means (contracts/src/common.tolk).
pub fn exit_meaning(code: i32) -> &'static str {
    match code {
        100 => "wrong sender",
        101 => "bad signature",
        102 => "wrong cell tag",
        103 => "voucher for another channel or vault",
        104 => "voucher not above the latest (replayed or lower)",
        105 => "amount above the deposit",
        106 => "channel not open",
        107 => "close delay over",
        108 => "channel not closing",
        109 => "delay not over",
        110 => "attached value below amount plus gas",
        111 => "vault balance too low",
        112 => "zero amount",
        113 => "already open",
        114 => "no withdrawal requested",
        115 => "delay of 0 or above 30 days",
        0xffff => "unknown operation",
        -1 => "no code to run (account not deployed)",
        _ => "TVM error",
    }
}
