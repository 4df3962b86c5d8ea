//! A gateway's private keys: generated inside its TEE, never written out,
//! rotated with an overlap so clients holding the previous configuration
//! keep working until they refetch.

use hpke::{Deserializable, Kem as _, Serializable};

use crate::OhttpError;
use crate::config::{KeyConfig, NPK};
use crate::suite::Kem;

/// One key pair and its identifier. The secret half never leaves this type:
/// no `Clone`, no serialization, and `Debug` shows the configuration only.
pub struct GatewayKey {
    config: KeyConfig,
    secret: <Kem as hpke::Kem>::PrivateKey,
}

impl GatewayKey {
    /// A fresh key pair from the system RNG.
    pub fn generate(key_id: u8) -> Self {
        let (secret, public) = Kem::gen_keypair();
        Self::from_parts(key_id, secret, &public)
    }

    /// The key pair whose X25519 private key is `secret` (for the RFC's
    /// published example; a gateway generates its keys).
    pub fn from_secret(key_id: u8, secret: &[u8; 32]) -> Result<Self, OhttpError> {
        let secret = <Kem as hpke::Kem>::PrivateKey::from_bytes(secret)
            .map_err(|_| OhttpError::BadKeyConfig("not an X25519 private key"))?;
        let public = Kem::sk_to_pk(&secret);
        Ok(Self::from_parts(key_id, secret, &public))
    }

    fn from_parts(
        key_id: u8,
        secret: <Kem as hpke::Kem>::PrivateKey,
        public: &<Kem as hpke::Kem>::PublicKey,
    ) -> Self {
        let mut bytes = [0u8; NPK];
        bytes.copy_from_slice(&public.to_bytes());
        Self {
            config: KeyConfig {
                key_id,
                public: bytes,
            },
            secret,
        }
    }

    pub fn config(&self) -> KeyConfig {
        self.config
    }

    pub(crate) fn secret(&self) -> &<Kem as hpke::Kem>::PrivateKey {
        &self.secret
    }
}

impl std::fmt::Debug for GatewayKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayKey")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The keys a gateway accepts requests for: the current one, and after a
/// rotation the previous one too (until the next rotation).
#[derive(Debug)]
pub struct GatewayKeys {
    current: GatewayKey,
    previous: Option<GatewayKey>,
    /// The next key, made but not yet handed out: a rotation is published
    /// in the registry before clients are given the new key.
    staged: Option<GatewayKey>,
}

impl GatewayKeys {
    pub fn new(current: GatewayKey) -> Self {
        Self {
            current,
            previous: None,
            staged: None,
        }
    }

    /// A gateway's first keys: a fresh pair with a random identifier (so a
    /// restarted gateway does not reuse the identifier of a key clients
    /// may still hold).
    pub fn generate() -> Self {
        Self::new(GatewayKey::generate(rand::random()))
    }

    /// Makes a new current key (the next identifier); the current one
    /// becomes the previous, and the previous is forgotten.
    pub fn rotate(&mut self) {
        self.stage();
        self.promote();
    }

    /// The first half of a rotation: makes the next key (once; again the
    /// same until [`Self::promote`]) without handing it out, and returns the
    /// `application/ohttp-keys` body the gateway will serve once it is
    /// promoted — what to publish first.
    pub fn stage(&mut self) -> Vec<u8> {
        let id = self.current.config.key_id.wrapping_add(1);
        let next = self.staged.get_or_insert_with(|| GatewayKey::generate(id));
        KeyConfig::encode_list(&[next.config, self.current.config])
    }

    /// The second half: the staged key becomes the current one, the current
    /// one the previous, and the previous is forgotten. Without a staged
    /// key nothing changes.
    pub fn promote(&mut self) {
        if let Some(next) = self.staged.take() {
            self.previous = Some(std::mem::replace(&mut self.current, next));
        }
    }

    pub fn current(&self) -> KeyConfig {
        self.current.config
    }

    /// The key with identifier `key_id`, if it is held.
    pub fn find(&self, key_id: u8) -> Option<&GatewayKey> {
        std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .find(|k| k.config.key_id == key_id)
    }

    /// The `application/ohttp-keys` body: the current configuration first,
    /// then the previous one.
    pub fn encoded(&self) -> Vec<u8> {
        let list: Vec<KeyConfig> = std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .map(GatewayKey::config)
            .collect();
        KeyConfig::encode_list(&list)
    }
}

/// Whether `config` is among the configurations of `published` (an
/// `application/ohttp-keys` body a proxy published): byte for byte, its
/// identifier and key both. A body that does not parse lists nothing.
pub fn is_published(published: &[u8], config: &KeyConfig) -> bool {
    KeyConfig::decode_list(published).is_ok_and(|list| list.contains(config))
}
