//! Setting up a node's RA-TLS identity, and rotating it before it expires.

use std::sync::Arc;
use std::time::Duration;

use kokon_attest::{Clock, Identity, IdentityParams, Policy, Role};
use tokio_util::sync::CancellationToken;

use crate::{IdentityStore, RaTls};

/// Default certificate lifetime: short, and rotated at two thirds of it.
pub const CERT_LIFETIME: Duration = Duration::from_secs(6 * 3600);

/// How a node proves itself.
#[derive(Clone, Debug)]
pub struct NodeParams {
    pub role: Role,
    /// Simulated image label (see `kokon_attest::registry::simulated_label`).
    pub image_label: String,
    pub config_sha256: [u8; 32],
    pub lifetime: Duration,
}

/// Why a node identity could not be made.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot issue certificate: {0}")]
    Cert(String),
}

fn issue(p: &NodeParams, now: u64) -> Result<Identity, NodeError> {
    Identity::simulated(&IdentityParams {
        role: p.role,
        config_sha256: p.config_sha256,
        image_label: p.image_label.clone(),
        lifetime_secs: p.lifetime.as_secs(),
        now,
    })
    .map_err(|e| NodeError::Cert(e.to_string()))
}

/// SHA-256 of a node's effective configuration (its `Debug` rendering),
/// bound into its certificate claims. That `Debug` must redact secrets.
pub fn config_sha256(config: &impl std::fmt::Debug) -> [u8; 32] {
    kokon_attest::sha256(format!("{config:?}").as_bytes())
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
    let params = NodeParams {
        role,
        image_label: label.unwrap_or_else(|| kokon_attest::registry::simulated_label(role)),
        config_sha256,
        lifetime: CERT_LIFETIME,
    };
    let tls = RaTls::simulated(&params, policy, Arc::new(kokon_attest::SystemClock))?;
    tls.spawn_rotation(params, shutdown.clone());
    Ok(tls)
}

impl RaTls {
    /// A node with simulated evidence (test networks; see DESIGN §4).
    pub fn simulated(
        p: &NodeParams,
        policy: Arc<Policy>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, NodeError> {
        let id = issue(p, clock.now_unix())?;
        let store = IdentityStore::new(&id).map_err(|e| NodeError::Cert(e.to_string()))?;
        Ok(RaTls::new(store, policy, clock))
    }

    /// Re-issues the certificate at two thirds of its lifetime, until
    /// `shutdown`. Existing links keep running on the old one.
    pub fn spawn_rotation(&self, p: NodeParams, shutdown: CancellationToken) {
        let (store, clock) = (self.identity.clone(), self.clock.clone());
        tokio::spawn(async move {
            loop {
                let pause = p.lifetime.mul_f64(2.0 / 3.0);
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shutdown.cancelled() => return,
                }
                match issue(&p, clock.now_unix()).map(|id| store.replace(&id)) {
                    Ok(Ok(())) => tracing::info!(role = %p.role, "certificate rotated"),
                    Ok(Err(e)) => tracing::error!(error = %e, "certificate rotation failed"),
                    Err(e) => tracing::error!(error = %e, "certificate rotation failed"),
                }
            }
        });
    }
}
