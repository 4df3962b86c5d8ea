//! Credit calls between a client and its proxy: buying tokens on a channel,
//! and claiming a credit-paid job's change. Tokens, requests and answers
//! are base64url Privacy Pass messages (RFC 9578); the proxy decodes them.

use kokon_money::message::u128_string;
use kokon_money::{Address, Nanotons, Signature};
use serde::{Deserialize, Serialize};

/// Most token requests in one purchase or change claim (a call body is at
/// most 64 KiB; a request is 348 base64url characters).
pub const MAX_REQUESTS: usize = 128;

/// `GET credits/keys`: the proxy's denominations and their public keys
/// (`kokon_credit::KeysDocument`, JSON as is).
pub type KeysReply = serde_json::Value;

/// `POST credits/buy`: token requests the channel's client pays for. The
/// amount is what the requests' denominations add up to; the signature,
/// by the channel's client key, covers the channel, the batch and it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaleRequest {
    pub channel: Address,
    pub requests: Vec<String>,
    #[serde(with = "u128_string")]
    pub amount: Nanotons,
    pub signature: Signature,
}

/// SHA-256 of a batch of token requests, each length-prefixed: how a sale
/// is recorded and retried.
pub fn batch_hash(requests: &[String]) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"kokon/credit-batch/v1\0");
    for r in requests {
        h.update((r.len() as u32).to_be_bytes());
        h.update(r.as_bytes());
    }
    h.finalize().into()
}

impl SaleRequest {
    pub fn signing_hash(channel: &Address, batch: &[u8; 32], amount: Nanotons) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"kokon/credit-buy/v1\0");
        h.update([channel.workchain as u8]);
        h.update(channel.hash);
        h.update(batch);
        h.update(amount.to_be_bytes());
        h.finalize().into()
    }
}

/// The proxy's blind signatures, in the order of the requests, and what
/// they were billed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaleReply {
    pub responses: Vec<String>,
    #[serde(with = "u128_string")]
    pub amount: Nanotons,
}

/// `POST credits/change`: token requests for what a credit-paid job did
/// not use, with the secret whose SHA-256 the job's header carried. A
/// claim whose requests do not make up the change exactly is answered
/// with the change and its denominations only (nothing recorded), so a
/// client may first send no requests to learn them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeRequest {
    pub request_id: String,
    /// The claim secret, hex (32 bytes).
    pub secret: String,
    pub requests: Vec<String>,
}

/// The change: its amount, its denominations (largest first) and, when the
/// requests matched them, their blind signatures in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeReply {
    #[serde(with = "u128_string")]
    pub returned: Nanotons,
    pub levels: Vec<u8>,
    pub responses: Vec<String>,
}
