//! Unlinkable credits: Privacy Pass tokens (RFC 9576–9578) that pay for
//! jobs without naming who bought them.
//!
//! Whoever holds a channel (a VPN provider) buys tokens from a proxy and
//! pays on its channel; the tokens are blind-signed (issuance protocol 2,
//! RSABSSA-SHA384-PSS-Deterministic, RFC 9474), so the proxy cannot link a
//! token it is shown to the request it signed. Each denomination
//! (`unit · 2^k`) has its own key ([`Schedule`]); a job redeems tokens
//! covering its most possible cost, and what it did not use comes back as
//! change in new blind tokens.
//!
//! This crate is the pure part: messages ([`wire`]), keys and the client's
//! blinding ([`keys`]), denominations and change ([`denom`]). The spent
//! set and the bookkeeping are the proxy's books'; the wallet is the
//! client's.

pub mod denom;
mod error;
pub mod keys;
pub mod wire;

pub use denom::{MAX_LEVELS, Nanotons, Schedule};
pub use error::CreditError;
pub use keys::{Blinded, Issuer, IssuerSecrets, KeysDocument, PublicKeys, Redeemed, spent_id};
pub use wire::{Token, TokenRequest, TokenResponse};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;

/// Most tokens one job may redeem (they travel in a header: ≤ 16 KiB).
pub const MAX_TOKENS_PER_JOB: usize = 32;
/// Most token requests one purchase or change claim may carry.
pub const MAX_REQUESTS_PER_CALL: usize = 256;

/// Base64url (no padding) of a message, as tokens travel in headers.
pub fn to_b64(bytes: &[u8]) -> String {
    B64URL.encode(bytes)
}

/// The bytes of a base64url (no padding) string, at most `max` of them.
pub fn from_b64(s: &str, max: usize, what: &'static str) -> Result<Vec<u8>, CreditError> {
    if s.len() > max.div_ceil(3) * 4 {
        return Err(CreditError::Malformed {
            what,
            why: "too long",
        });
    }
    B64URL.decode(s).map_err(|_| CreditError::Malformed {
        what,
        why: "not base64url",
    })
}

impl Token {
    pub fn to_b64(&self) -> String {
        to_b64(&self.encode())
    }

    pub fn from_b64(s: &str) -> Result<Self, CreditError> {
        Self::decode(&from_b64(s, wire::TOKEN_LEN, "token")?)
    }
}

impl TokenRequest {
    pub fn to_b64(&self) -> String {
        to_b64(&self.encode())
    }

    pub fn from_b64(s: &str) -> Result<Self, CreditError> {
        Self::decode(&from_b64(s, wire::REQUEST_LEN, "token request")?)
    }
}

impl TokenResponse {
    pub fn to_b64(&self) -> String {
        to_b64(&self.encode())
    }

    pub fn from_b64(s: &str) -> Result<Self, CreditError> {
        Self::decode(&from_b64(s, wire::NK, "token response")?)
    }
}
