//! Ed25519 keys and signatures, with hex on the wire.

use ed25519_dalek::{Signer as _, Verifier as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::MoneyError;

/// An Ed25519 public key (32 bytes; on TON stored as `uint256`, big-endian).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);

/// An Ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

/// A signing key. Not `Debug`, not serializable: it leaves memory only
/// through [`SecretKey::to_hex`], which key files use.
pub struct SecretKey(ed25519_dalek::SigningKey);

impl SecretKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self::from_bytes(rand::random())
    }

    pub fn from_bytes(seed: [u8; 32]) -> Self {
        Self(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    pub fn from_hex(s: &str) -> Result<Self, MoneyError> {
        let seed: [u8; 32] = decode_hex(s.trim())?;
        Ok(Self::from_bytes(seed))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0.to_bytes())
    }

    /// The 32-byte seed (what TON wallets call the private key).
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// Signs a 32-byte cell hash.
    pub fn sign(&self, hash: &[u8; 32]) -> Signature {
        Signature(self.0.sign(hash).to_bytes())
    }
}

impl PublicKey {
    /// Checks `sig` over a 32-byte cell hash.
    pub fn verify(&self, hash: &[u8; 32], sig: &Signature) -> Result<(), MoneyError> {
        let key = ed25519_dalek::VerifyingKey::from_bytes(&self.0)
            .map_err(|_| MoneyError::BadPublicKey)?;
        key.verify(hash, &ed25519_dalek::Signature::from_bytes(&sig.0))
            .map_err(|_| MoneyError::BadSignature)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Result<Self, MoneyError> {
        decode_hex(s).map(Self)
    }

    /// The first 8 hex digits, for logs.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

fn decode_hex<const N: usize>(s: &str) -> Result<[u8; N], MoneyError> {
    if s.len() != 2 * N {
        return Err(MoneyError::BadHex { expected: N });
    }
    let v = hex::decode(s).map_err(|_| MoneyError::BadHex { expected: N })?;
    v.try_into().map_err(|_| MoneyError::BadHex { expected: N })
}

macro_rules! hex_serde {
    ($t:ty, $n:expr) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&hex::encode(self.0))
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                decode_hex::<$n>(&s)
                    .map(Self)
                    .map_err(serde::de::Error::custom)
            }
        }
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}", hex::encode(self.0))
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}", hex::encode(self.0))
            }
        }
    };
}

hex_serde!(PublicKey, 32);
hex_serde!(Signature, 64);

/// A 32-byte hash with hex on the wire (model hashes, request hashes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash32(pub [u8; 32]);
hex_serde!(Hash32, 32);

impl Hash32 {
    pub fn of(data: &[u8]) -> Self {
        use sha2::Digest;
        Self(sha2::Sha256::digest(data).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_reject() {
        let k = SecretKey::from_bytes([1; 32]);
        let h = [9u8; 32];
        let sig = k.sign(&h);
        k.public().verify(&h, &sig).unwrap();
        assert_eq!(
            k.public().verify(&[8; 32], &sig),
            Err(MoneyError::BadSignature)
        );
        let other = SecretKey::from_bytes([2; 32]).public();
        assert_eq!(other.verify(&h, &sig), Err(MoneyError::BadSignature));
    }

    #[test]
    fn hex_round_trip() {
        let k = SecretKey::generate();
        assert_eq!(
            SecretKey::from_hex(&k.to_hex()).unwrap().public(),
            k.public()
        );
        let json = serde_json::to_string(&k.public()).unwrap();
        assert_eq!(
            serde_json::from_str::<PublicKey>(&json).unwrap(),
            k.public()
        );
        assert!(serde_json::from_str::<PublicKey>("\"abcd\"").is_err());
    }
}
