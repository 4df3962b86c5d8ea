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
