//! The registry file: the allow-lists a node verifies its peers against.
//!
//! On a real network this comes from the registry contract on TON; a local
//! network (`kokon up`) writes one to `$KOKON_HOME/registry.toml`.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::policy::{ModelRules, RoutingBounds};
use crate::{Policy, Role, RolePolicy, SimulatedQuote, TdPolicy};

/// Which kind of network the registry describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    /// Hardware evidence only.
    Production,
    /// Simulated evidence accepted: for local and test networks only.
    Test,
}

/// The registry's contents that verification needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    pub network: Network,
    /// Hex image hashes allowed to act as proxies.
    pub proxy_images: Vec<String>,
    /// Hex image hashes allowed to act as workers.
    pub worker_images: Vec<String>,
    /// Each served model name and the hex SHA-256 of the model files that
    /// may be served under it; absent: any model under any name (test
    /// networks). A worker is routed a name only for a hash listed here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<BTreeMap<String, Vec<String>>>,
    /// Bounds on what a worker may announce; defaults when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<RoutingRules>,
    /// Origins (`https://host[:port]`) a worker's upstream engine may
    /// forward jobs to: its prompts leave its TEE for them. A production
    /// network allows none it does not list; a test network without the
    /// list allows any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstreams: Option<Vec<String>>,
    /// TCB, debug and certificate-age rules; defaults when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<AttestationRules>,
    /// Prices, commission and delays (docs/ECONOMICS.md); defaults when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub economics: Option<kokon_money::Economics>,
}

/// Bounds on a worker's offer (the registry's `[routing]` table).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingRules {
    /// Most jobs one worker is routed at once; larger offers are cut to it
    /// [default: 64].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_jobs: Option<u32>,
    /// Highest price coefficient, in thousandths of the base price; a
    /// worker asking more is refused [default: 10000].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_price_milli: Option<u32>,
    /// Largest prompt (and completion) budget of one job, in tokens
    /// [default: 32768].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_context: Option<u32>,
}

/// How strictly evidence is judged (the registry's `[attestation]` table).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationRules {
    /// Accepted Intel TCB statuses [default: ["UpToDate"]].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcb_statuses: Option<Vec<String>>,
    /// Oldest accepted certificate claims, in seconds [default: 172800].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cert_age_secs: Option<u64>,
    /// Accepted clock difference between peers, in seconds [default: 300].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_clock_skew_secs: Option<u64>,
    /// Accept debug TDs (the host can read their memory). Only a test
    /// network may say so [default: false].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_debug_tds: bool,
    /// Rules for the TD's own configuration; defaults when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub td: Option<TdRules>,
}

/// What the registry pins of a TD beyond its image (the `[attestation.td]`
/// table), in hex as `kokon attest show` and `measure` print it. A list
/// left out pins nothing; the three host-chosen IDs default to all zero.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TdRules {
    /// Accepted XFAM values (8 bytes each) [default: any the TDX module allows].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xfam: Option<Vec<String>>,
    /// Accepted TD attributes (8 bytes each) [default: any without debug bits].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub td_attributes: Option<Vec<String>>,
    /// Accepted TDX modules, by MRSEAM (48 bytes each) [default: any].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mr_seam: Option<Vec<String>>,
    /// MRCONFIGID (48 bytes) [default: all zero].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mr_config_id: Option<String>,
    /// MROWNER (48 bytes) [default: all zero].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mr_owner: Option<String>,
    /// MROWNERCONFIG (48 bytes) [default: all zero].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mr_owner_config: Option<String>,
    /// Lowest TEE_TCB_SVN (16 bytes), compared byte by byte [default: none].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tee_tcb_svn: Option<String>,
}

impl TdRules {
    /// The verifier's form of these rules; a bad value names its field.
    pub fn policy(&self) -> Result<TdPolicy, RegistryError> {
        let one = |field: &'static str, v: &Option<String>| -> Result<[u8; 48], RegistryError> {
            v.as_ref().map_or(Ok([0; 48]), |h| fixed(field, h))
        };
        Ok(TdPolicy {
            xfam: list("attestation.td.xfam", &self.xfam)?,
            td_attributes: list("attestation.td.td_attributes", &self.td_attributes)?,
            mr_seam: list("attestation.td.mr_seam", &self.mr_seam)?,
            mr_config_id: one("attestation.td.mr_config_id", &self.mr_config_id)?,
            mr_owner: one("attestation.td.mr_owner", &self.mr_owner)?,
            mr_owner_config: one("attestation.td.mr_owner_config", &self.mr_owner_config)?,
            min_tee_tcb_svn: self
                .min_tee_tcb_svn
                .as_ref()
                .map(|h| fixed("attestation.td.min_tee_tcb_svn", h))
                .transpose()?,
        })
    }
}

impl From<&TdPolicy> for TdRules {
    /// The table that states `p` (zero host IDs and absent lists left out).
    fn from(p: &TdPolicy) -> Self {
        let hexes = |l: &[[u8; 8]]| l.iter().map(hex::encode).collect();
        let id = |v: &[u8; 48]| (v.iter().any(|b| *b != 0)).then(|| hex::encode(v));
        Self {
            xfam: p.xfam.as_deref().map(hexes),
            td_attributes: p.td_attributes.as_deref().map(hexes),
            mr_seam: p
                .mr_seam
                .as_ref()
                .map(|l| l.iter().map(hex::encode).collect()),
            mr_config_id: id(&p.mr_config_id),
            mr_owner: id(&p.mr_owner),
            mr_owner_config: id(&p.mr_owner_config),
            min_tee_tcb_svn: p.min_tee_tcb_svn.map(hex::encode),
        }
    }
}

impl Registry {
    /// The TD policy this registry sets (the default if it says nothing).
    pub fn td_policy(&self) -> Result<TdPolicy, RegistryError> {
        let rules = self.attestation.as_ref().and_then(|a| a.td.as_ref());
        rules.map_or_else(|| Ok(TdPolicy::default()), TdRules::policy)
    }

    /// This registry with its `[attestation.td]` table replaced by `p`.
    pub fn with_td_policy(mut self, p: &TdPolicy) -> Self {
        let rules = (*p != TdPolicy::default()).then(|| TdRules::from(p));
        if rules.is_some() || self.attestation.is_some() {
            self.attestation.get_or_insert_with(Default::default).td = rules;
        }
        self
    }
}

fn list<const N: usize>(
    field: &'static str,
    values: &Option<Vec<String>>,
) -> Result<Option<Vec<[u8; N]>>, RegistryError> {
    values
        .as_ref()
        .map(|l| l.iter().map(|h| fixed(field, h)).collect())
        .transpose()
}

fn fixed<const N: usize>(field: &'static str, h: &str) -> Result<[u8; N], RegistryError> {
    let bad = || RegistryError::BadHex {
        field,
        value: h.to_string(),
        bytes: N,
    };
    hex::decode(h)
        .map_err(|_| bad())?
        .try_into()
        .map_err(|_| bad())
}

/// The TCB statuses Intel's TCB info can give a platform.
pub const TCB_STATUSES: &[&str] = &[
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "TDRelaunchAdvised",
    "TDRelaunchAdvisedConfigurationNeeded",
];

/// A registry file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry is not valid TOML: {0}")]
    Parse(String),
    #[error("registry field `{field}` holds `{value}`, which is not a 32-byte hex hash")]
    BadHash { field: &'static str, value: String },
    #[error("registry field `{field}` holds `{value}`, which is not {bytes} bytes of hex")]
    BadHex {
        field: &'static str,
        value: String,
        bytes: usize,
    },
    #[error("`{0}` is not a TCB status (known: {TCB_STATUSES:?})")]
    BadTcbStatus(String),
    #[error("`{0}` weakens security and is only accepted when network = \"test\"")]
    TestOnly(&'static str),
    #[error("registry `upstreams` holds `{0}`, which is not an origin: {1}")]
    BadUpstream(String, String),
    #[error("registry [economics]: {0}")]
    BadEconomics(kokon_money::MoneyError),
}

/// The simulated image label of a role in this build.
pub fn simulated_label(role: Role) -> String {
    format!("kokon-{role}/{}", env!("CARGO_PKG_VERSION"))
}

impl Registry {
    /// A test network that admits this build's simulated proxy and worker images.
    pub fn local_test_network() -> Self {
        let img =
            |r| hex::encode(SimulatedQuote::measurements_for(&simulated_label(r)).image_hash());
        Self {
            network: Network::Test,
            proxy_images: vec![img(Role::Proxy)],
            worker_images: vec![img(Role::Worker)],
            models: None,
            routing: None,
            upstreams: None,
            attestation: None,
            economics: Some(kokon_money::Economics::default()),
        }
    }

    /// The economy this registry sets (the defaults if it says nothing).
    pub fn economics(&self) -> kokon_money::Economics {
        self.economics.clone().unwrap_or_default()
    }

    pub fn parse(text: &str) -> Result<Self, RegistryError> {
        let r: Self = toml::from_str(text).map_err(|e| RegistryError::Parse(e.to_string()))?;
        if let Some(e) = &r.economics {
            e.check().map_err(RegistryError::BadEconomics)?;
        }
        Ok(r)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// The verifier policy this registry implies. Clients are identified by
    /// their key and accepted with any image (they do not run in a TEE).
    pub fn policy(&self) -> Result<Policy, RegistryError> {
        let mut roles = HashMap::new();
        roles.insert(
            Role::Proxy,
            RolePolicy {
                images: Some(hashes("proxy_images", &self.proxy_images)?),
            },
        );
        roles.insert(
            Role::Worker,
            RolePolicy {
                images: Some(hashes("worker_images", &self.worker_images)?),
            },
        );
        roles.insert(Role::Client, RolePolicy { images: None });
        let mut policy = Policy::new(roles);
        if let Some(models) = &self.models {
            let mut rules = ModelRules::default();
            for (name, list) in models {
                rules.allow(name, hashes("models", list)?);
            }
            policy.models = Some(rules);
        }
        let r = self.routing.clone().unwrap_or_default();
        let d = RoutingBounds::default();
        policy.routing = RoutingBounds {
            max_jobs: r.max_jobs.unwrap_or(d.max_jobs).max(1),
            max_price_milli: r.max_price_milli.unwrap_or(d.max_price_milli),
            max_context: r.max_context.unwrap_or(d.max_context),
        };
        let rules = self.attestation.clone().unwrap_or_default();
        self.apply(&rules, &mut policy)?;
        self.apply_upstreams(&mut policy)?;
        Ok(policy)
    }

    fn apply_upstreams(&self, policy: &mut Policy) -> Result<(), RegistryError> {
        let Some(list) = &self.upstreams else {
            if self.network == Network::Test {
                policy.dangerous().allow_any_upstream();
            }
            return Ok(());
        };
        for origin in list {
            match kokon_proto::engine::origin_of(origin) {
                Ok(o) if o == *origin => policy.allow_upstream(origin),
                Ok(o) => {
                    let fix = format!("write it as `{o}`");
                    return Err(RegistryError::BadUpstream(origin.clone(), fix));
                }
                Err(why) => return Err(RegistryError::BadUpstream(origin.clone(), why)),
            }
        }
        Ok(())
    }

    fn apply(&self, rules: &AttestationRules, policy: &mut Policy) -> Result<(), RegistryError> {
        if let Some(list) = &rules.tcb_statuses {
            if let Some(bad) = list.iter().find(|s| !TCB_STATUSES.contains(&s.as_str())) {
                return Err(RegistryError::BadTcbStatus(bad.clone()));
            }
            policy.tcb_statuses = list.clone();
        }
        if let Some(age) = rules.max_cert_age_secs {
            policy.max_age_secs = age;
            policy.max_lifetime_secs = age as i64;
        }
        if let Some(skew) = rules.max_clock_skew_secs {
            policy.max_skew_secs = skew;
        }
        if let Some(td) = &rules.td {
            policy.td = td.policy()?;
        }
        let test = self.network == Network::Test;
        if rules.allow_debug_tds && !test {
            return Err(RegistryError::TestOnly("attestation.allow_debug_tds"));
        }
        if rules.allow_debug_tds {
            policy.dangerous().allow_debug_tds();
        }
        if test {
            policy.dangerous().allow_simulated_evidence();
        }
        Ok(())
    }
}

fn hashes(field: &'static str, list: &[String]) -> Result<Vec<[u8; 32]>, RegistryError> {
    list.iter()
        .map(|h| {
            let bad = || RegistryError::BadHash {
                field,
                value: h.clone(),
            };
            hex::decode(h)
                .map_err(|_| bad())?
                .try_into()
                .map_err(|_| bad())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_builds_a_policy() {
        let r = Registry::local_test_network();
        let back = Registry::parse(&r.to_toml()).unwrap();
        assert_eq!(back, r);
        assert!(back.policy().unwrap().allows_simulated());
        let prod = Registry {
            network: Network::Production,
            ..r
        };
        assert!(!prod.policy().unwrap().allows_simulated());
    }

    #[test]
    fn economics_no_ledger_would_accept_are_refused_with_the_field_named() {
        let with = |close: u64, withdraw: u64, bps: u16| {
            let mut r = Registry::local_test_network();
            r.economics = Some(kokon_money::Economics {
                channel_close_delay_secs: close,
                vault_withdraw_delay_secs: withdraw,
                commission_bps: bps,
                ..Default::default()
            });
            Registry::parse(&r.to_toml())
        };
        let max = kokon_money::MAX_DELAY_SECS;
        assert!(
            with(1, max, 10_000).is_ok(),
            "the bounds themselves are fine"
        );
        for (close, withdraw, bps, field) in [
            (0, 3600, 1000, "channel_close_delay_secs"),
            (3600, max + 1, 1000, "vault_withdraw_delay_secs"),
            (3600, 3600, 10_001, "commission"),
        ] {
            let e = with(close, withdraw, bps).unwrap_err();
            assert!(matches!(e, RegistryError::BadEconomics(_)), "{e}");
            assert!(e.to_string().contains(field), "{e}");
        }
    }

    #[test]
    fn attestation_rules_reach_the_policy_and_weakenings_need_a_test_network() {
        let text = r#"
            network = "test"
            proxy_images = []
            worker_images = []
            [models]
            tiny = ["1111111111111111111111111111111111111111111111111111111111111111"]
            [routing]
            max_jobs = 8
            max_price_milli = 3000
            [attestation]
            tcb_statuses = ["UpToDate", "SWHardeningNeeded"]
            max_cert_age_secs = 3600
            max_clock_skew_secs = 30
            allow_debug_tds = true
        "#;
        let r = Registry::parse(text).unwrap();
        let p = r.policy().unwrap();
        assert_eq!(p.tcb_statuses, ["UpToDate", "SWHardeningNeeded"]);
        assert_eq!((p.max_age_secs, p.max_skew_secs), (3600, 30));
        assert!(p.allows_debug() && p.allows_simulated());
        assert!(p.allows_model(&[0x11; 32]) && !p.allows_model(&[0x22; 32]));
        assert!(p.allows_model_named("tiny", &[0x11; 32]));
        assert!(
            !p.allows_model_named("big", &[0x11; 32]),
            "a hash allowed under one name is not allowed under another"
        );
        assert_eq!((p.routing.max_jobs, p.routing.max_price_milli), (8, 3000));
        assert_eq!(p.routing.max_context, RoutingBounds::default().max_context);

        let prod = Registry::parse(&text.replace("\"test\"", "\"production\"")).unwrap();
        let err = prod.policy().unwrap_err();
        assert!(matches!(err, RegistryError::TestOnly(_)), "{err}");
        let bad = Registry::parse(&text.replace("SWHardeningNeeded", "Fine")).unwrap();
        assert!(matches!(bad.policy(), Err(RegistryError::BadTcbStatus(s)) if s == "Fine"));
        assert!(Registry::parse(&text.replace("allow_debug_tds", "allow_everything")).is_err());
        // Defaults: UpToDate only, no debug TDs, any model.
        let d = Registry::local_test_network().policy().unwrap();
        assert_eq!(d.tcb_statuses, ["UpToDate"]);
        assert!(!d.allows_debug() && d.allows_model(&[0x22; 32]));
        assert!(d.allows_model_named("any", &[0x22; 32]));
        assert_eq!(d.routing, RoutingBounds::default());
    }

    #[test]
    fn td_rules_reach_the_policy_and_bad_values_name_their_field() {
        let text = r#"
            network = "production"
            proxy_images = []
            worker_images = []
            [attestation.td]
            xfam = ["e702060000000000"]
            td_attributes = ["0000001000000000"]
            mr_seam = ["%seam%"]
            mr_owner = "%owner%"
            min_tee_tcb_svn = "03010200000000000000000000000000"
        "#
        .replace("%seam%", &"ab".repeat(48))
        .replace("%owner%", &"01".repeat(48));
        let p = Registry::parse(&text).unwrap().policy().unwrap().td;
        assert_eq!(p.xfam, Some(vec![crate::td::COMMON_XFAM]));
        assert_eq!(p.td_attributes, Some(vec![[0, 0, 0, 0x10, 0, 0, 0, 0]]));
        assert_eq!(p.mr_seam, Some(vec![[0xab; 48]]));
        assert_eq!((p.mr_owner, p.mr_config_id), ([1; 48], [0; 48]));
        assert_eq!(p.min_tee_tcb_svn.unwrap()[..3], [3, 1, 2]);
        let d = Registry::local_test_network().policy().unwrap().td;
        assert_eq!(d, TdPolicy::default());
        for (from, to, field) in [
            ("e702060000000000", "e70206", "attestation.td.xfam"),
            ("0000001000000000", "zz", "attestation.td.td_attributes"),
            (
                "03010200000000000000000000000000",
                "0301",
                "min_tee_tcb_svn",
            ),
        ] {
            let err = Registry::parse(&text.replace(from, to))
                .unwrap()
                .policy()
                .unwrap_err()
                .to_string();
            assert!(err.contains(field) && err.contains(to), "{err}");
        }
        assert!(Registry::parse(&text.replace("xfam", "xfm")).is_err());
        // The table back from a policy states the same policy.
        let r = Registry::local_test_network().with_td_policy(&p);
        assert_eq!(
            Registry::parse(&r.to_toml()).unwrap().td_policy().unwrap(),
            p
        );
    }

    #[test]
    fn upstreams_are_refused_unless_listed_and_only_a_test_network_allows_any() {
        let api = "https://api.example.com";
        let mut prod = Registry {
            network: Network::Production,
            ..Registry::local_test_network()
        };
        let p = prod.policy().unwrap();
        assert!(!p.allows_upstream(api), "production: none unless listed");
        assert_eq!(p.upstreams(), Some(&[][..]));
        prod.upstreams = Some(vec![api.into()]);
        let p = Registry::parse(&prod.to_toml()).unwrap().policy().unwrap();
        assert!(p.allows_upstream(api) && !p.allows_upstream("https://evil.example"));
        let test = Registry::local_test_network().policy().unwrap();
        assert!(test.allows_upstream("http://127.0.0.1:9"), "test: any");
        let listed = Registry {
            upstreams: Some(vec![api.into()]),
            ..Registry::local_test_network()
        };
        assert!(
            !listed
                .policy()
                .unwrap()
                .allows_upstream("http://127.0.0.1:9")
        );
        for (bad, says) in [
            (
                "https://api.example.com/v1",
                "write it as `https://api.example.com`",
            ),
            ("ftp://api.example.com", "http or https"),
        ] {
            prod.upstreams = Some(vec![bad.into()]);
            let e = prod.policy().unwrap_err();
            assert!(matches!(e, RegistryError::BadUpstream(..)), "{e}");
            assert!(e.to_string().contains(says), "{e}");
        }
    }

    #[test]
    fn names_the_bad_field() {
        let mut r = Registry::local_test_network();
        r.worker_images.push("abcd".into());
        let err = r.policy().unwrap_err().to_string();
        assert!(
            err.contains("worker_images") && err.contains("abcd"),
            "{err}"
        );
        assert!(Registry::parse("network = \"moon\"").is_err());
    }
}
