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

/// A job's authorisation as its client signed it (everything
/// [`crate::JobHeader::auth_hash`] covers, and the signature). The proxy
/// keeps it with the job's bill and offers it back in a [`ReconcileReply`]:
/// the client checks its own signature, so it pays only for jobs it sent,
/// within the budget and price cap it signed, even after losing every
/// record of them (a crash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobAuth {
    pub request_id: String,
    pub model: String,
    pub kind: crate::JobKind,
    pub max_price_milli: Option<u32>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub payload_sha256: kokon_money::Hash32,
    pub channel: kokon_money::Address,
    pub expires_unix: u64,
    pub signature: kokon_money::Signature,
}

impl JobAuth {
    /// The authorisation of a paid job (`None` if the header carries none).
    pub fn of(header: &crate::JobHeader, payload: &[u8]) -> Option<Self> {
        let (p, b) = (header.payment?, header.budget?);
        let scope = crate::AuthScope::new(p.channel, payload, p.expires_unix);
        Some(Self {
            request_id: header.request_id.clone(),
            model: header.model.clone(),
            kind: header.kind,
            max_price_milli: header.max_price_milli,
            prompt_tokens: b.prompt,
            completion_tokens: b.completion,
            payload_sha256: kokon_money::Hash32(scope.payload_sha256),
            channel: p.channel,
            expires_unix: p.expires_unix,
            signature: p.signature,
        })
    }

    pub fn budget(&self) -> kokon_money::receipt::Budget {
        kokon_money::receipt::Budget {
            prompt: self.prompt_tokens,
            completion: self.completion_tokens,
        }
    }

    /// What the client signed (the same hash as the header's).
    pub fn signed_hash(&self) -> [u8; 32] {
        let header = crate::JobHeader {
            request_id: self.request_id.clone(),
            model: self.model.clone(),
            kind: self.kind,
            max_price_milli: self.max_price_milli,
            budget: None,
            payment: None,
            credit: None,
            sealed: false,
        };
        let scope = crate::AuthScope {
            channel: self.channel,
            payload_sha256: self.payload_sha256.0,
            expires_unix: self.expires_unix,
        };
        header.auth_hash(self.budget(), &scope)
    }

    /// Whether `client` signed this authorisation.
    pub fn signed_by(&self, client: &kokon_money::PublicKey) -> bool {
        client.verify(&self.signed_hash(), &self.signature).is_ok()
    }
}

/// Most billed jobs one [`ReconcileReply`] offers (the newest).
pub const MAX_RECONCILE_JOBS: usize = 16;

/// How far a [`ReconcileRequest`]'s time may be from the proxy's clock.
pub const RECONCILE_SKEW_SECS: u64 = 300;

/// Client → proxy: "show me what you billed my channel that I may not have
/// paid" (after a lost `End`, a broken link or a crash). Signed by the
/// channel's client key: a channel's bills are its client's business.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileRequest {
    pub channel: kokon_money::Address,
    /// When it was signed (unix seconds); the proxy refuses one further
    /// than [`RECONCILE_SKEW_SECS`] from its clock.
    pub unix: u64,
    pub signature: kokon_money::Signature,
}

impl ReconcileRequest {
    pub fn signing_hash(channel: &kokon_money::Address, unix: u64) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"kokon/reconcile/v1\0");
        h.update([channel.workchain as u8]);
        h.update(channel.hash);
        h.update(unix.to_be_bytes());
        h.finalize().into()
    }
}

/// One billed job: the client's own authorisation, the latest receipt the
/// proxy billed for it, and the certificate of the worker that signed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BilledJob {
    pub auth: JobAuth,
    pub receipt: crate::ReceiptEnvelope,
}

/// The proxy's answer to a [`ReconcileRequest`]: what the channel owes, and
/// its newest billed jobs (at most [`MAX_RECONCILE_JOBS`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileReply {
    #[serde(with = "kokon_money::message::u128_string")]
    pub owed: u128,
    pub jobs: Vec<BilledJob>,
}

/// A client asking its proxy which workers it may seal a job for `model`
/// to (see [`crate::sealed`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CandidatesRequest {
    pub model: String,
    /// The client's price cap: workers above it are not offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_price_milli: Option<u32>,
}

/// The proxy's current candidate workers for a model: their RA-TLS
/// certificates (DER, hex), at most [`crate::sealed::MAX_CANDIDATES`]. The
/// client verifies each one itself before it seals a job to it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CandidatesReply {
    pub certs: Vec<String>,
}

impl CandidatesReply {
    /// The certificates, decoded; a reply with more than
    /// [`crate::sealed::MAX_CANDIDATES`] or with one that is not hex is
    /// refused whole.
    pub fn decode(&self) -> Result<Vec<Vec<u8>>, String> {
        if self.certs.len() > crate::sealed::MAX_CANDIDATES {
            return Err(format!(
                "{} candidates, at most {}",
                self.certs.len(),
                crate::sealed::MAX_CANDIDATES
            ));
        }
        self.certs
            .iter()
            .map(|c| hex::decode(c).map_err(|e| format!("a candidate is not hex: {e}")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuthScope, JobHeader, JobKind, Payment};
    use kokon_money::receipt::Budget;
    use kokon_money::{Address, SecretKey};

    fn signed_header(key: &SecretKey, payload: &[u8]) -> JobHeader {
        let budget = Budget {
            prompt: 300,
            completion: 40,
        };
        let channel = Address::new(0, [7; 32]);
        let mut h = JobHeader {
            request_id: "r-1".into(),
            model: "echo".into(),
            kind: JobKind::Chat,
            max_price_milli: Some(1500),
            budget: Some(budget),
            payment: None,
            credit: None,
            sealed: false,
        };
        let scope = AuthScope::new(channel, payload, 1_000);
        h.payment = Some(Payment {
            channel,
            expires_unix: 1_000,
            signature: key.sign(&h.auth_hash(budget, &scope)),
        });
        h
    }

    #[test]
    fn a_kept_authorisation_verifies_as_its_client_signed_it_and_not_once_changed() {
        let key = SecretKey::generate();
        let h = signed_header(&key, b"{\"prompt\":1}");
        let auth = JobAuth::of(&h, b"{\"prompt\":1}").unwrap();
        assert!(auth.signed_by(&key.public()));
        assert!(
            !auth.signed_by(&SecretKey::generate().public()),
            "another key"
        );
        let json = serde_json::to_string(&auth).unwrap();
        let back: JobAuth = serde_json::from_str(&json).unwrap();
        assert!(back.signed_by(&key.public()), "survives the wire");
        type Change = fn(&mut JobAuth);
        let changed: [(&str, Change); 6] = [
            ("budget", |a| a.completion_tokens += 1),
            ("price cap", |a| a.max_price_milli = None),
            ("model", |a| a.model = "other".into()),
            ("request id", |a| a.request_id = "r-2".into()),
            ("payload", |a| a.payload_sha256.0[0] ^= 1),
            ("expiry", |a| a.expires_unix += 1),
        ];
        for (what, change) in changed {
            let mut a = auth.clone();
            change(&mut a);
            assert!(
                !a.signed_by(&key.public()),
                "a changed {what} must not verify"
            );
        }
        let mut unpaid = h.clone();
        unpaid.payment = None;
        assert!(
            JobAuth::of(&unpaid, b"").is_none(),
            "an unpaid job has none"
        );
    }

    #[test]
    fn a_proxys_candidates_reply_beyond_its_bounds_is_refused_whole() {
        let reply = |certs: Vec<String>| CandidatesReply { certs };
        let eight = vec!["ab".to_string(); crate::sealed::MAX_CANDIDATES];
        assert_eq!(reply(eight.clone()).decode().unwrap().len(), 8);
        let mut nine = eight.clone();
        nine.push("ab".into());
        assert!(reply(nine).decode().unwrap_err().contains("at most 8"));
        let mut bad = eight;
        bad[3] = "not hex".into();
        assert!(reply(bad).decode().unwrap_err().contains("not hex"));
    }
}
