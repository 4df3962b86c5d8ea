//! Nodes with simulated evidence for the TLS tests.
#![allow(dead_code)] // each test file uses its own part

use std::collections::HashMap;
use std::sync::Arc;

use kokon_attest::*;
use kokon_tls::{IdentityStore, RaTls};

/// A simulated-evidence policy allowing the worker image `worker` and the
/// proxy image `proxy`.
pub fn policy_for(worker: &str) -> Arc<Policy> {
    let img = |l: &str| Some(vec![SimulatedQuote::measurements_for(l).image_hash()]);
    let mut roles = HashMap::new();
    roles.insert(
        Role::Worker,
        RolePolicy {
            images: img(worker),
        },
    );
    roles.insert(
        Role::Proxy,
        RolePolicy {
            images: img("proxy"),
        },
    );
    let mut p = Policy::new(roles);
    p.dangerous().allow_simulated_evidence();
    Arc::new(p)
}

/// [`policy_for`] the image `worker`.
pub fn policy() -> Arc<Policy> {
    policy_for("worker")
}

/// A node whose certificate is genuine for the image `label` and whose
/// session evidence comes from `session`.
pub fn node_with(role: Role, label: &str, session: Arc<dyn EvidenceSource>) -> RaTls {
    let params = IdentityParams {
        role,
        hpke_public: None,
        engine: (role == Role::Worker)
            .then(|| kokon_proto::EngineDecl::local(kokon_proto::EngineKind::Echo)),
        config_sha256: [0; 32],
        models: vec![],
        lifetime_secs: 3600,
        now: SystemClock.now_unix(),
    };
    let id = Identity::simulated(&params, label).unwrap();
    RaTls::new(
        IdentityStore::new(&id).unwrap(),
        session,
        policy(),
        Arc::new(SystemClock),
    )
}

/// An honest node of the image `label`.
pub fn node(role: Role, label: &str) -> RaTls {
    node_with(role, label, Arc::new(SimulatedSource::new(label)))
}
