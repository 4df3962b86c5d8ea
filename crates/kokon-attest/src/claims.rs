//! Claims: what a certificate says about its holder, bound into the evidence.

use kokon_proto::EngineDecl;
use serde::{Deserialize, Serialize};

use crate::AttestError;

/// Largest claims extension accepted, in bytes.
pub const MAX_CLAIMS: usize = 4096;

/// The role a node plays in the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Proxy,
    Worker,
    Client,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Proxy => "proxy",
            Role::Worker => "worker",
            Role::Client => "client",
        })
    }
}

/// What a certificate holder claims. Hashed into the quote's report data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    pub role: Role,
    /// Link protocol version (see `kokon-proto`).
    pub protocol_version: u16,
    /// Hex SHA-256 of the certificate's SubjectPublicKeyInfo DER.
    pub tls_key_sha256: String,
    /// Unix seconds when the claims (and certificate) were made.
    pub issued_at: u64,
    /// Hex SHA-256 of the node's effective configuration.
    pub config_sha256: String,
    /// Hex SHA-256 of each model file a worker serves (empty for others).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// Hex X25519 public key of the worker's HPKE key pair (RFC 9180
    /// DHKEM(X25519, HKDF-SHA256)), generated inside its TEE with this
    /// certificate: clients seal jobs to it end to end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hpke_key: Option<String>,
    /// What runs a worker's models (workers must say; others must not):
    /// an upstream engine names where it forwards jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineDecl>,
}

/// Most models a certificate may name.
pub const MAX_MODELS: usize = 32;

impl Claims {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses claims, bounding the input.
    pub fn parse(bytes: &[u8]) -> Result<Self, AttestError> {
        if bytes.len() > MAX_CLAIMS {
            return Err(AttestError::ClaimsTooLarge(bytes.len()));
        }
        let c: Claims = serde_json::from_slice(bytes)
            .map_err(|e| AttestError::ClaimsMalformed(e.to_string()))?;
        let is_hex32 = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !is_hex32(&c.tls_key_sha256) {
            return Err(AttestError::ClaimsMalformed(
                "tls_key_sha256 is not 32 hex bytes".into(),
            ));
        }
        if !is_hex32(&c.config_sha256) {
            return Err(AttestError::ClaimsMalformed(
                "config_sha256 is not 32 hex bytes".into(),
            ));
        }
        if c.models.len() > MAX_MODELS {
            return Err(AttestError::ClaimsMalformed(format!(
                "{} models, at most {MAX_MODELS}",
                c.models.len()
            )));
        }
        if let Some(bad) = c.models.iter().find(|m| !is_hex32(m)) {
            return Err(AttestError::ModelHashMalformed(bad.clone()));
        }
        if c.hpke_key.as_deref().is_some_and(|k| !is_hex32(k)) {
            return Err(AttestError::ClaimsMalformed(
                "hpke_key is not 32 hex bytes".into(),
            ));
        }
        check_engine(&c)?;
        Ok(c)
    }

    /// The worker's HPKE public key (validated by [`Claims::parse`]).
    pub fn hpke_public(&self) -> Option<[u8; 32]> {
        hex::decode(self.hpke_key.as_deref()?).ok()?.try_into().ok()
    }

    /// The model hashes the claims name (validated by [`Claims::parse`]).
    pub fn model_hashes(&self) -> Vec<[u8; 32]> {
        self.models
            .iter()
            .filter_map(|m| hex::decode(m).ok()?.try_into().ok())
            .collect()
    }
}

/// A worker declares a well-formed engine; no other role declares one.
fn check_engine(c: &Claims) -> Result<(), AttestError> {
    match (&c.engine, c.role) {
        (None, Role::Worker) => Err(AttestError::ClaimsMalformed(
            "a worker's claims must declare its engine".into(),
        )),
        (Some(_), role) if role != Role::Worker => Err(AttestError::ClaimsMalformed(format!(
            "a {role} declares no engine"
        ))),
        (Some(e), _) => e
            .check()
            .map_err(|why| AttestError::ClaimsMalformed(format!("engine: {why}"))),
        (None, _) => Ok(()),
    }
}
