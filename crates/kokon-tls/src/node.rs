//! Setting up a node's RA-TLS identity, and rotating it before it expires.

use std::sync::Arc;
use std::time::Duration;

use kokon_attest::{
    Clock, EvidenceSource, Identity, IdentityParams, Policy, Role, SimulatedSource,
};
use tokio_util::sync::CancellationToken;

use crate::{IdentityStore, RaTls};

/// Default certificate lifetime: short, and rotated at two thirds of it.
pub const CERT_LIFETIME: Duration = Duration::from_secs(6 * 3600);

/// How a node proves itself.
#[derive(Clone, Debug)]
pub struct NodeParams {
    pub role: Role,
    /// Where quotes come from (the TD, or software on test networks).
    pub evidence: Arc<dyn EvidenceSource>,
    /// SHA-256 of each model file the node serves (workers).
    pub models: Vec<[u8; 32]>,
    /// What runs the models: a worker must declare it (an upstream engine
    /// names where it forwards jobs); other roles leave it out.
    pub engine: Option<kokon_proto::EngineDecl>,
    pub config_sha256: [u8; 32],
    pub lifetime: Duration,
    /// A worker's HPKE keys: each certificate carries a fresh public key.
    pub sealing: Option<Arc<dyn SealingKeys>>,
}

/// Where a worker keeps the HPKE keys its certificates carry (one fresh
/// key pair per certificate, rotated with it). The secret halves stay with
/// the implementor: this crate sees public keys only.
pub trait SealingKeys: Send + Sync + std::fmt::Debug {
    /// Makes the key pair of the next certificate; its public key.
    fn next_public(&self) -> [u8; 32];
    /// The certificate carrying `public` was issued (`cert_sha256`: the
    /// SHA-256 of its DER, how clients name the worker they seal to).
    fn issued(&self, public: [u8; 32], cert_sha256: [u8; 32]);
}

impl NodeParams {
    /// Simulated evidence for this build's image of `role` (or the image
    /// `label`), no models, the default lifetime.
    pub fn simulated(role: Role, label: Option<String>, config_sha256: [u8; 32]) -> Self {
        let label = label.unwrap_or_else(|| kokon_attest::registry::simulated_label(role));
        Self {
            role,
            evidence: Arc::new(SimulatedSource::new(&label)),
            models: Vec::new(),
            engine: None,
            config_sha256,
            lifetime: CERT_LIFETIME,
            sealing: None,
        }
    }
}

/// Why a node identity could not be made.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot issue certificate: {0}")]
    Cert(String),
}

fn issue(p: &NodeParams, now: u64) -> Result<Identity, NodeError> {
    let hpke_public = p.sealing.as_ref().map(|s| s.next_public());
    let params = IdentityParams {
        role: p.role,
        hpke_public,
        config_sha256: p.config_sha256,
        models: p.models.clone(),
        engine: p.engine.clone(),
        lifetime_secs: p.lifetime.as_secs(),
        now,
    };
    let id = Identity::issue(&params, p.evidence.as_ref())
        .map_err(|e| NodeError::Cert(e.to_string()))?;
    if let (Some(s), Some(public)) = (&p.sealing, hpke_public) {
        s.issued(public, kokon_attest::sha256(&id.cert_der));
    }
    Ok(id)
}

/// SHA-256 of a node's effective configuration, bound into its certificate
/// claims: of its canonical JSON (object keys sorted at every level, no
/// whitespace; durations as `{"nanos","secs"}`, addresses as strings), so
/// the hash depends on the values only, not on field order or on how a
/// type prints itself. A config's `Serialize` must leave secrets out.
pub fn config_sha256(config: &impl serde::Serialize) -> [u8; 32] {
    let value = serde_json::to_value(config).expect("a config serializes to JSON");
    kokon_attest::sha256(canonical_json(&value).as_bytes())
}

/// `v` as JSON with every object's keys sorted.
fn canonical_json(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical_json(&m[k])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(canonical_json).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}

/// A node whose certificate is issued now and rotated until `shutdown`.
pub fn start_node(
    params: NodeParams,
    policy: Arc<Policy>,
    shutdown: &CancellationToken,
) -> Result<RaTls, NodeError> {
    let tls = RaTls::issue(&params, policy, Arc::new(kokon_attest::SystemClock))?;
    tls.spawn_rotation(params, shutdown.clone());
    Ok(tls)
}

/// A node of `role` with simulated evidence for this build's image (or the
/// image `label`), whose certificate is rotated until `shutdown`.
pub fn simulated_node(
    role: Role,
    label: Option<String>,
    policy: Arc<Policy>,
    config_sha256: [u8; 32],
    shutdown: &CancellationToken,
) -> Result<RaTls, NodeError> {
    start_node(
        NodeParams::simulated(role, label, config_sha256),
        policy,
        shutdown,
    )
}

impl RaTls {
    /// A node whose first certificate is issued now from `p`'s evidence.
    pub fn issue(
        p: &NodeParams,
        policy: Arc<Policy>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, NodeError> {
        let id = issue(p, clock.now_unix())?;
        let store = IdentityStore::new(&id).map_err(|e| NodeError::Cert(e.to_string()))?;
        Ok(RaTls::new(store, p.evidence.clone(), policy, clock))
    }

    /// Re-issues the certificate (a fresh key, fresh claims and evidence) at
    /// two thirds of its lifetime, until `shutdown`. Links made before keep
    /// running on the certificate they handshook with; new ones get the new.
    /// A failed rotation is retried every minute while the old certificate
    /// is still valid.
    pub fn spawn_rotation(&self, p: NodeParams, shutdown: CancellationToken) {
        let (store, clock) = (self.identity.clone(), self.clock.clone());
        tokio::spawn(async move {
            let mut pause = p.lifetime.mul_f64(2.0 / 3.0);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shutdown.cancelled() => return,
                }
                let p2 = p.clone();
                let now = clock.now_unix();
                // Quote generation blocks (the kernel asks the host).
                let issued = tokio::task::spawn_blocking(move || issue(&p2, now)).await;
                let result = match issued {
                    Ok(Ok(id)) => store.replace(&id).map_err(|e| e.to_string()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                pause = match result {
                    Ok(()) => {
                        tracing::info!(role = %p.role, "certificate rotated");
                        p.lifetime.mul_f64(2.0 / 3.0)
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "certificate rotation failed; retrying in 60 s");
                        Duration::from_secs(60)
                    }
                };
            }
        });
    }
}

#[cfg(test)]
mod config_hash_tests {
    use super::*;

    #[derive(serde::Serialize)]
    struct Ab {
        a: u32,
        b: std::time::Duration,
    }

    #[derive(serde::Serialize)]
    struct Ba {
        b: std::time::Duration,
        a: u32,
    }

    #[test]
    fn the_hash_depends_on_values_not_field_order() {
        let d = std::time::Duration::from_millis(1500);
        assert_eq!(
            config_sha256(&Ab { a: 1, b: d }),
            config_sha256(&Ba { b: d, a: 1 })
        );
        assert_ne!(
            config_sha256(&Ab { a: 1, b: d }),
            config_sha256(&Ab { a: 2, b: d })
        );
        let v = serde_json::json!({"z": [{"y": 1, "x": true}], "a": "s"});
        assert_eq!(canonical_json(&v), r#"{"a":"s","z":[{"x":true,"y":1}]}"#);
    }
}
