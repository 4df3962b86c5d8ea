//! Key configurations (RFC 9458 §3) and the `application/ohttp-keys` list.
//!
//! Kokon's gateways offer one suite: DHKEM(X25519, HKDF-SHA256),
//! HKDF-SHA256, AES-128-GCM (the suite of RFC 9458's example). A client
//! reads a list from anyone, and keeps only configurations of that suite.

use crate::OhttpError;

pub const KEM_X25519_SHA256: u16 = 0x0020;
pub const KDF_HKDF_SHA256: u16 = 0x0001;
pub const AEAD_AES_128_GCM: u16 = 0x0001;
/// Bytes of an X25519 public key, and of an encapsulated key.
pub const NPK: usize = 32;
/// AES-128-GCM key and nonce lengths.
pub const NK: usize = 16;
pub const NN: usize = 12;
/// Longest `application/ohttp-keys` body a client reads.
pub const MAX_KEY_LIST: usize = 4096;

/// One gateway key configuration (public): its identifier and key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyConfig {
    pub key_id: u8,
    pub public: [u8; NPK],
}

impl KeyConfig {
    /// The RFC 9458 §3.1 encoding, offering Kokon's one suite.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(3 + NPK + 6);
        out.push(self.key_id);
        out.extend_from_slice(&KEM_X25519_SHA256.to_be_bytes());
        out.extend_from_slice(&self.public);
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&KDF_HKDF_SHA256.to_be_bytes());
        out.extend_from_slice(&AEAD_AES_128_GCM.to_be_bytes());
        out
    }

    /// A list as `application/ohttp-keys` carries it (RFC 9458 §3.2): each
    /// configuration after its 2-byte length.
    pub fn encode_list(configs: &[KeyConfig]) -> Vec<u8> {
        let mut out = Vec::new();
        for c in configs {
            let one = c.encode();
            out.extend_from_slice(&(one.len() as u16).to_be_bytes());
            out.extend_from_slice(&one);
        }
        out
    }

    /// Parses one configuration: `Ok(None)` if it is well formed but offers
    /// nothing this crate speaks.
    pub fn decode(b: &[u8]) -> Result<Option<KeyConfig>, OhttpError> {
        let bad = OhttpError::BadKeyConfig;
        let (&key_id, rest) = b.split_first().ok_or(bad("empty"))?;
        let kem = u16_at(rest, 0).ok_or(bad("no KEM"))?;
        if kem != KEM_X25519_SHA256 {
            // The key's length depends on the KEM: nothing more to read.
            return Ok(None);
        }
        let public: [u8; NPK] = rest
            .get(2..2 + NPK)
            .and_then(|k| k.try_into().ok())
            .ok_or(bad("key cut short"))?;
        let rest = &rest[2 + NPK..];
        let len = usize::from(u16_at(rest, 0).ok_or(bad("no suites"))?);
        let suites = rest.get(2..2 + len).ok_or(bad("suites cut short"))?;
        if len < 4 || len % 4 != 0 || rest.len() != 2 + len {
            return Err(bad("suites of a bad length"));
        }
        let ours = suites.chunks_exact(4).any(|s| {
            u16_at(s, 0) == Some(KDF_HKDF_SHA256) && u16_at(s, 2) == Some(AEAD_AES_128_GCM)
        });
        Ok(ours.then_some(KeyConfig { key_id, public }))
    }

    /// Parses an `application/ohttp-keys` list (at most [`MAX_KEY_LIST`]
    /// bytes); the configurations this crate can use, in their order.
    pub fn decode_list(b: &[u8]) -> Result<Vec<KeyConfig>, OhttpError> {
        if b.len() > MAX_KEY_LIST {
            return Err(OhttpError::TooLarge(MAX_KEY_LIST));
        }
        let mut out = Vec::new();
        let mut rest = b;
        while !rest.is_empty() {
            let len =
                usize::from(u16_at(rest, 0).ok_or(OhttpError::BadKeyConfig("length cut short"))?);
            let one = rest
                .get(2..2 + len)
                .ok_or(OhttpError::BadKeyConfig("configuration cut short"))?;
            out.extend(Self::decode(one)?);
            rest = &rest[2 + len..];
        }
        if out.is_empty() {
            return Err(OhttpError::NoUsableKey);
        }
        Ok(out)
    }
}

pub(crate) fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
