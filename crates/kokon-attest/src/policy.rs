//! Verification policy: which peers a node accepts. It comes from the registry.

use std::collections::HashMap;

use crate::Role;
use crate::td::TdPolicy;
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

/// Which model files may be served under which names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelRules {
    by_name: HashMap<String, Vec<[u8; 32]>>,
}

impl ModelRules {
    /// Allows serving the files with `hashes` under `name`.
    pub fn allow(&mut self, name: &str, hashes: Vec<[u8; 32]>) {
        self.by_name
            .entry(name.to_string())
            .or_default()
            .extend(hashes);
    }

    pub fn allows(&self, name: &str, hash: &[u8; 32]) -> bool {
        self.hashes(name).contains(hash)
    }

    pub fn allows_hash(&self, hash: &[u8; 32]) -> bool {
        self.by_name.values().any(|l| l.contains(hash))
    }

    pub fn hashes(&self, name: &str) -> &[[u8; 32]] {
        self.by_name.get(name).map_or(&[], |l| l.as_slice())
    }
}

/// Bounds on what a worker may announce (the registry's `[routing]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoutingBounds {
    /// Most jobs one worker is routed at once.
    pub max_jobs: u32,
    /// Highest price coefficient a worker may ask, in thousandths.
    pub max_price_milli: u32,
    /// Largest prompt (and completion) budget of one job, in tokens.
    pub max_context: u32,
}

impl Default for RoutingBounds {
    fn default() -> Self {
        Self {
            max_jobs: 64,
            max_price_milli: 10_000,
            max_context: 32_768,
        }
    }
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
    /// Rules for the TD's configuration (XFAM, attributes, MRSEAM, …).
    pub td: TdPolicy,
    /// Allowed model hashes for workers, by served name; `None` accepts
    /// any model under any name.
    pub models: Option<ModelRules>,
    /// Bounds on a worker's offer.
    pub routing: RoutingBounds,
    /// Origins a worker's upstream engine may forward jobs to; `None`
    /// accepts any (test networks, see [`DangerousPolicy`]).
    pub(crate) upstreams: Option<Vec<String>>,
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
            td: TdPolicy::default(),
            models: None,
            routing: RoutingBounds::default(),
            upstreams: Some(Vec::new()),
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

    /// Whether the registry allows serving the model with this hash (under
    /// some name).
    pub fn allows_model(&self, hash: &[u8; 32]) -> bool {
        self.models.as_ref().is_none_or(|m| m.allows_hash(hash))
    }

    /// Whether the registry allows serving the model with this hash under
    /// the name `name`.
    pub fn allows_model_named(&self, name: &str, hash: &[u8; 32]) -> bool {
        self.models.as_ref().is_none_or(|m| m.allows(name, hash))
    }

    /// The hashes allowed under `name`; `None`: any (no model rules).
    pub fn model_hashes(&self, name: &str) -> Option<&[[u8; 32]]> {
        self.models.as_ref().map(|m| m.hashes(name))
    }

    /// Allows upstream engines that forward to `origin` (an
    /// [`kokon_proto::engine::origin_of`] origin).
    pub fn allow_upstream(&mut self, origin: &str) {
        if let Some(list) = &mut self.upstreams
            && !list.iter().any(|o| o == origin)
        {
            list.push(origin.to_string());
        }
    }

    /// Whether a worker may forward jobs to `origin`.
    pub fn allows_upstream(&self, origin: &str) -> bool {
        self.upstreams
            .as_ref()
            .is_none_or(|l| l.iter().any(|o| o == origin))
    }

    /// The allowed upstream origins; `None`: any (a test network).
    pub fn upstreams(&self) -> Option<&[String]> {
        self.upstreams.as_deref()
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

    /// Accept workers whose engine forwards jobs to any upstream server (the
    /// prompts leave their TEE). Test networks only.
    pub fn allow_any_upstream(self) {
        self.0.upstreams = None;
    }

    /// Accept debug TDs, whose memory the host can read. Test networks only.
    pub fn allow_debug_tds(self) {
        self.0.allow_debug = true;
    }
}
