//! The one HPKE suite Kokon uses, and a worker's key pair.

use hpke::{Deserializable, Kem as _, Serializable};

/// DHKEM(X25519, HKDF-SHA256).
pub type Kem = hpke::kem::X25519HkdfSha256;
/// HKDF-SHA256.
pub type Kdf = hpke::kdf::HkdfSha256;
/// AES-256-GCM.
pub type Aead = hpke::aead::AesGcm256;

/// Bytes of a public key (and of an encapsulated key).
pub const PUBLIC_KEY_LEN: usize = 32;

/// A worker's HPKE key pair, generated inside its TEE; the public half is
/// bound into its attestation. The secret half never leaves this type: no
/// `Clone`, no serialization, and `Debug` shows the public key only.
pub struct WorkerKey {
    secret: <Kem as hpke::Kem>::PrivateKey,
    public: [u8; PUBLIC_KEY_LEN],
}

impl WorkerKey {
    /// A fresh key pair from the system RNG.
    pub fn generate() -> Self {
        let (secret, public) = Kem::gen_keypair();
        Self::from_parts(secret, &public)
    }

    /// The key pair RFC 9180's `DeriveKeyPair` makes from `ikm` (for test
    /// vectors and reproducible tests).
    pub fn derive(ikm: &[u8]) -> Self {
        let (secret, public) = Kem::derive_keypair(ikm);
        Self::from_parts(secret, &public)
    }

    fn from_parts(
        secret: <Kem as hpke::Kem>::PrivateKey,
        public: &<Kem as hpke::Kem>::PublicKey,
    ) -> Self {
        let mut bytes = [0u8; PUBLIC_KEY_LEN];
        bytes.copy_from_slice(&public.to_bytes());
        Self {
            secret,
            public: bytes,
        }
    }

    /// The public key, as it goes into the worker's claims.
    pub fn public(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.public
    }

    pub(crate) fn secret(&self) -> &<Kem as hpke::Kem>::PrivateKey {
        &self.secret
    }
}

impl std::fmt::Debug for WorkerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// A public key from its bytes, if they are one.
pub(crate) fn public_key(bytes: &[u8]) -> Option<<Kem as hpke::Kem>::PublicKey> {
    <Kem as hpke::Kem>::PublicKey::from_bytes(bytes).ok()
}

/// An encapsulated key from its bytes, if they are one.
pub(crate) fn encapped(bytes: &[u8]) -> Option<<Kem as hpke::Kem>::EncappedKey> {
    <Kem as hpke::Kem>::EncappedKey::from_bytes(bytes).ok()
}
