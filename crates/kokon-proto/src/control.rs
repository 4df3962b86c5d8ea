//! Calls about a job already sent.

use serde::{Deserialize, Serialize};

/// Stop the job `request_id` sent on this link (client → proxy, proxy →
/// worker), without resetting its stream. The worker stops its engine
/// within one batch and ends the stream with its last receipt and a
/// `cancelled` error; the proxy relays all of it. So every hop counts the
/// same output, the work done is billed and paid, and the worker's slot is
/// freed only once its compute has stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    pub request_id: String,
}

/// Longest reason a dispute may give, in bytes.
pub const MAX_DISPUTE_REASON: usize = 512;

/// Client → proxy: the client refuses the receipt billed for `request_id`
/// (its gateway could not verify it against what it received). Signed by
/// the channel's client key over [`DisputeRequest::signing_hash`], so only
/// the client disputes its own jobs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisputeRequest {
    pub channel: kokon_money::Address,
    pub request_id: String,
    /// Why, for the proxy's log (at most [`MAX_DISPUTE_REASON`] bytes).
    pub reason: String,
    pub signature: kokon_money::Signature,
}

impl DisputeRequest {
    pub fn signing_hash(channel: &kokon_money::Address, request_id: &str) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"kokon/dispute/v1\0");
        h.update([channel.workchain as u8]);
        h.update(channel.hash);
        h.update(request_id.as_bytes());
        h.finalize().into()
    }
}
