//! The registry file: the allow-lists a node verifies its peers against.
//!
//! On a real network this comes from the registry contract on TON; a local
//! network (`kokon up`) writes one to `$KOKON_HOME/registry.toml`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::{Policy, Role, RolePolicy, SimulatedQuote};

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
    /// Prices, commission and delays (docs/ECONOMICS.md); defaults when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub economics: Option<kokon_money::Economics>,
}

/// A registry file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry is not valid TOML: {0}")]
    Parse(String),
    #[error("registry field `{field}` holds `{value}`, which is not a 32-byte hex hash")]
    BadHash { field: &'static str, value: String },
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
            economics: Some(kokon_money::Economics::default()),
        }
    }

    /// The economy this registry sets (the defaults if it says nothing).
    pub fn economics(&self) -> kokon_money::Economics {
        self.economics.clone().unwrap_or_default()
    }

    pub fn parse(text: &str) -> Result<Self, RegistryError> {
        toml::from_str(text).map_err(|e| RegistryError::Parse(e.to_string()))
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// The verifier policy this registry implies. Clients are identified by
    /// their key and accepted with any image (they do not run in a TEE).
    pub fn policy(&self) -> Result<Policy, RegistryError> {
        let hashes =
            |field: &'static str, list: &[String]| -> Result<Vec<[u8; 32]>, RegistryError> {
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
            };
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
        if self.network == Network::Test {
            policy.dangerous().allow_simulated_evidence();
        }
        Ok(policy)
    }
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
