//! Key consistency: a client uses only keys the registry publishes. A
//! proxy's gateway key and its credit issuer's keys are handed out to
//! everyone alike; one handed to this client alone would let the proxy tell
//! its requests (OHTTP) or its tokens (credits) from everyone else's, which
//! neither the relay nor the blind signatures could then hide. So before a
//! key is used or pinned it is looked up in what the proxies published in
//! the registry (`kokon_proxy::KeyPublisher`).

use std::sync::Arc;

use kokon_ohttp::KeyConfig;
use kokon_proto::{ErrorCode, JobError};

/// Where a gateway reads what the proxies published: the chain its
/// registry lives on (the devnet ledger, or TON).
pub type Registry = Arc<dyn kokon_pay::Settlement>;

fn refused(msg: String) -> JobError {
    JobError::new(ErrorCode::Unavailable, msg)
}

async fn records(registry: &Registry) -> Result<Vec<kokon_pay::KeyRecord>, JobError> {
    let all = registry
        .published_keys()
        .await
        .map_err(|e| refused(format!("cannot read the keys the registry publishes: {e}")))?;
    Ok(all.into_iter().map(|(_, r)| r).collect())
}

/// The first of `offered` (the gateway's verified keys, its current one
/// first) that a proxy published.
pub async fn published_gateway_key(
    registry: &Registry,
    offered: &[KeyConfig],
) -> Result<KeyConfig, JobError> {
    let records = records(registry).await?;
    offered
        .iter()
        .find(|k| {
            records
                .iter()
                .any(|r| kokon_ohttp::keys::is_published(&r.ohttp, k))
        })
        .copied()
        .ok_or_else(|| {
            refused(
                "the gateway offered a key no proxy published in the registry \
                 (a key for this client alone would single out its requests); not using it"
                    .into(),
            )
        })
}

/// Checks that a proxy published the credit keys `fingerprint` names.
pub async fn check_credit_keys(registry: &Registry, fingerprint: [u8; 32]) -> Result<(), JobError> {
    if records(registry)
        .await?
        .iter()
        .any(|r| r.credits == Some(fingerprint))
    {
        Ok(())
    } else {
        Err(refused(
            "the proxy's credit keys are not the ones it published in the registry \
             (keys for this client alone would single out its tokens); not using them"
                .into(),
        ))
    }
}
