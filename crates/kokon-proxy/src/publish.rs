//! What this proxy publishes in the registry of the keys it hands out to
//! everyone: its Oblivious HTTP gateway's key configurations and its credit
//! issuer's fingerprint (docs/VPN.md, "Key consistency"). A client uses a
//! gateway key, or pins credit keys, only if the registry lists them, so
//! the proxy cannot give one client keys of its own to tell its requests or
//! its tokens apart. One record per proxy: each publication replaces the
//! last, so the two halves are kept here and sent together.

use std::sync::Arc;

use kokon_money::SecretKey;
use kokon_pay::{KeyRecord, PayError, Settlement};

/// Publishes this proxy's keys under its key `key`.
pub struct KeyPublisher {
    chain: Arc<dyn Settlement>,
    key: Arc<SecretKey>,
    record: tokio::sync::Mutex<KeyRecord>,
}

impl std::fmt::Debug for KeyPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPublisher")
            .field("proxy", &self.key.public())
            .finish_non_exhaustive()
    }
}

impl KeyPublisher {
    /// Publishes to `chain` (the devnet ledger, or the TON registry
    /// contract) as the proxy whose key is `key`.
    pub fn new(chain: Arc<dyn Settlement>, key: Arc<SecretKey>) -> Self {
        Self {
            chain,
            key,
            record: Default::default(),
        }
    }

    /// Publishes `ohttp` (an `application/ohttp-keys` body) as what the
    /// gateway hands out from now on; returns once the registry holds it.
    pub async fn ohttp(&self, ohttp: Vec<u8>) -> Result<(), PayError> {
        self.publish(|r| r.ohttp = ohttp).await
    }

    /// Publishes the credit issuer's fingerprint.
    pub async fn credits(&self, fingerprint: [u8; 32]) -> Result<(), PayError> {
        self.publish(|r| r.credits = Some(fingerprint)).await
    }

    /// Publishes the record as `change` leaves it; it is kept only once
    /// the registry took it (one publication at a time).
    async fn publish(&self, change: impl FnOnce(&mut KeyRecord)) -> Result<(), PayError> {
        let mut record = self.record.lock().await;
        let mut next = record.clone();
        change(&mut next);
        self.chain.publish_keys(&self.key, &next).await?;
        *record = next;
        Ok(())
    }
}
