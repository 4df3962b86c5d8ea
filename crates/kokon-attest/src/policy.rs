//! Verification policy: which peers a node accepts. It comes from the registry.

use std::collections::HashMap;

use crate::Role;
use crate::tdx::TdxTrust;

/// TCB statuses accepted when the registry names none.
pub const DEFAULT_TCB_STATUSES: &[&str] = &["UpToDate"];

/// What the policy requires of one role.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RolePolicy {
    /// Allowed image hashes. `None` accepts any image (used for clients, which
    /// do not run in a TEE and are identified by their key alone).
    pub images: Option<Vec<[u8; 32]>>,
}

/// A verifier policy. Build a production policy with [`Policy::new`]; the
/// looser test-network settings sit behind [`Policy::dangerous`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub(crate) roles: HashMap<Role, RolePolicy>,
    pub(crate) allow_simulated: bool,
    pub(crate) allow_debug: bool,
    /// Intel's root and collateral; `None` refuses TDX evidence as unverifiable.
    pub tdx: Option<TdxTrust>,
    /// Accepted Intel TCB statuses ("UpToDate", "SWHardeningNeeded", …).
    pub tcb_statuses: Vec<String>,
    /// Allowed model hashes for workers; `None` accepts any model.
    pub models: Option<Vec<[u8; 32]>>,
    /// Oldest accepted claims, in seconds.
    pub max_age_secs: u64,
    /// Accepted clock skew into the future, in seconds.
    pub max_skew_secs: u64,
    /// Longest accepted certificate lifetime, in seconds.
    pub max_lifetime_secs: i64,
}

impl Policy {
    /// A production policy: hardware evidence only, the given images per role.
    /// Roles not listed are refused.
    pub fn new(roles: HashMap<Role, RolePolicy>) -> Self {
        Self {
            roles,
            allow_simulated: false,
            allow_debug: false,
            tdx: None,
            tcb_statuses: DEFAULT_TCB_STATUSES.iter().map(|s| s.to_string()).collect(),
            models: None,
            max_age_secs: 48 * 3600,
            max_skew_secs: 300,
            max_lifetime_secs: 48 * 3600,
        }
    }

    /// Settings that weaken security, for test networks only.
    pub fn dangerous(&mut self) -> DangerousPolicy<'_> {
        DangerousPolicy(self)
    }

    /// True when simulated evidence is accepted (callers log a loud warning).
    pub fn allows_simulated(&self) -> bool {
        self.allow_simulated
    }

    /// True when debug TDs are accepted (callers log a loud warning).
    pub fn allows_debug(&self) -> bool {
        self.allow_debug
    }

    /// Whether the registry allows serving the model with this hash.
    pub fn allows_model(&self, hash: &[u8; 32]) -> bool {
        self.models.as_ref().is_none_or(|list| list.contains(hash))
    }

    pub fn role(&self, role: Role) -> Option<&RolePolicy> {
        self.roles.get(&role)
    }
}

/// The door to insecure settings. See [`Policy::dangerous`].
pub struct DangerousPolicy<'a>(&'a mut Policy);

impl DangerousPolicy<'_> {
    /// Accept `simulated` evidence. Only for test networks: anyone can make it.
    pub fn allow_simulated_evidence(self) {
        self.0.allow_simulated = true;
    }

    /// Accept debug TDs, whose memory the host can read. Test networks only.
    pub fn allow_debug_tds(self) {
        self.0.allow_debug = true;
    }
}
