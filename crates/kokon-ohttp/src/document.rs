//! The gateway's key configurations signed by its attested key.
//!
//! A client must encapsulate only to a key generated inside an attested
//! proxy, and every client must see the same key (a key per user would
//! name the user). The proxy signs its `application/ohttp-keys` body with
//! the Ed25519 key its RA-TLS certificate attests; the client verifies the
//! certificate against its own registry and then this signature. Keys
//! rotate without a new certificate.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256};

use crate::{KeyConfig, OhttpError};

/// Longest document a client reads.
pub const MAX_DOCUMENT: usize = 32 * 1024;
/// What the signature covers, before the keys' SHA-256.
pub const CONTEXT: &[u8] = b"kokon ohttp-keys v1\0";

/// `GET /.well-known/kokon-ohttp-keys`: the keys, the certificate whose
/// attested key signed them, and the signature.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyDocument {
    /// Base64 of the `application/ohttp-keys` body.
    pub keys: String,
    /// Base64 of the proxy's RA-TLS certificate (DER).
    pub certificate: String,
    /// Base64 of the Ed25519 signature over [`signed_message`].
    pub signature: String,
}

/// `CONTEXT ‖ SHA-256(keys)`.
pub fn signed_message(keys: &[u8]) -> Vec<u8> {
    [CONTEXT, &Sha256::digest(keys)].concat()
}

impl KeyDocument {
    pub fn new(keys: &[u8], certificate: &[u8], signature: &[u8; 64]) -> Self {
        Self {
            keys: B64.encode(keys),
            certificate: B64.encode(certificate),
            signature: B64.encode(signature),
        }
    }

    /// Parses a document (at most [`MAX_DOCUMENT`] bytes).
    pub fn parse(bytes: &[u8]) -> Result<Self, OhttpError> {
        if bytes.len() > MAX_DOCUMENT {
            return Err(OhttpError::TooLarge(MAX_DOCUMENT));
        }
        serde_json::from_slice(bytes).map_err(|_| OhttpError::BadKeyConfig("not a key document"))
    }

    /// The certificate's DER.
    pub fn certificate_der(&self) -> Result<Vec<u8>, OhttpError> {
        B64.decode(&self.certificate)
            .map_err(|_| OhttpError::BadKeyConfig("certificate is not base64"))
    }

    /// The keys, once the signature verifies under `attested_key` (the
    /// Ed25519 key of the certificate, after the client verified it).
    pub fn verified_keys(&self, attested_key: &[u8; 32]) -> Result<Vec<KeyConfig>, OhttpError> {
        let keys = B64
            .decode(&self.keys)
            .map_err(|_| OhttpError::BadKeyConfig("keys are not base64"))?;
        let sig = B64
            .decode(&self.signature)
            .map_err(|_| OhttpError::BadKeyConfig("signature is not base64"))?;
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, attested_key)
            .verify(&signed_message(&keys), &sig)
            .map_err(|_| OhttpError::BadKeyConfig("the signature does not verify"))?;
        KeyConfig::decode_list(&keys)
    }
}
