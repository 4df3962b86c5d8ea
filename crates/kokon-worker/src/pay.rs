//! The worker's side of payments: signing receipts with the attested key,
//! keeping the proxy's vault vouchers, and claiming from the vault.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kokon_money::{
    Address, Hash32, Nanotons, PriceTable, PublicKey, Receipt, Signable, Signature, Signed,
    TokenUsage, WorkerVoucher,
};
use kokon_pay::Settlement;
use kokon_pay::books::worker::WorkerBooks;
use kokon_proto::{JobEnd, JobHeader, ReceiptEnvelope};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// Payment settings and state of a worker.
pub struct WorkerPay {
    pub(crate) books: Mutex<WorkerBooks>,
    pub(crate) prices: PriceTable,
    pub(crate) ledger: Arc<dyn Settlement>,
    /// Claim from a vault once this much is claimable.
    pub(crate) claim_threshold: Nanotons,
    pub(crate) claim_every: Duration,
    pub(crate) payout: kokon_money::PublicKey,
    /// Vault owners read from the ledger. A vault's address is derived from
    /// its owner, so the answer never changes; asking once per vault keeps a
    /// ledger round trip off every voucher.
    vault_owners: std::sync::Mutex<HashMap<Address, PublicKey>>,
}

/// Vaults whose owner is remembered (a worker links to a few proxies).
const MAX_VAULT_OWNERS: usize = 64;

impl WorkerPay {
    pub fn new(
        books: WorkerBooks,
        prices: PriceTable,
        ledger: Arc<dyn Settlement>,
        claim_threshold: Nanotons,
        claim_every: Duration,
    ) -> Self {
        let payout = books.payout();
        Self {
            books: Mutex::new(books),
            prices,
            ledger,
            claim_threshold,
            claim_every,
            payout,
            vault_owners: Default::default(),
        }
    }

    pub async fn books(&self) -> tokio::sync::MutexGuard<'_, WorkerBooks> {
        self.books.lock().await
    }
}

/// The model hash named in receipts and announces. Until model files are
/// bound into attestation (issue 4), it is the SHA-256 of the served name.
pub(crate) fn model_hash(offered: Option<Hash32>, name: &str) -> Hash32 {
    offered.unwrap_or_else(|| Hash32::of(format!("kokon-model:{name}").as_bytes()))
}

/// Signs the receipt for a finished job, records it, and attaches it.
pub(crate) async fn attach_receipt(
    worker: &crate::Worker,
    pay: &WorkerPay,
    header: &JobHeader,
    end: &mut JobEnd,
) -> Result<(), String> {
    let envelope = sign_receipt(worker, pay, header, end.usage)?;
    let recorded = pay
        .books()
        .await
        .record_receipt(&header.request_id, &envelope.receipt);
    // Group commit: receipts of jobs ending together share this fsync.
    recorded
        .map_err(|e| e.to_string())?
        .wait()
        .await
        .map_err(|e| e.to_string())?;
    end.receipt = Some(Box::new(envelope));
    Ok(())
}

/// Signs a cumulative receipt for `usage` (sent while a job runs, or at its
/// end) with the attested key.
pub(crate) fn sign_receipt(
    worker: &crate::Worker,
    pay: &WorkerPay,
    header: &JobHeader,
    usage: kokon_proto::Usage,
) -> Result<ReceiptEnvelope, String> {
    let mut usage = TokenUsage {
        prompt: usage.prompt_tokens.into(),
        completion: usage.completion_tokens.into(),
        ..Default::default()
    };
    // Never bill above the budget the client authorised. The engine
    // refused a longer prompt and stopped at the completion bound, so this
    // only bites for an upstream engine's template tokens (ours to absorb).
    if let Some(b) = &header.budget {
        usage.prompt = usage.prompt.min(b.prompt);
        usage.completion = usage.completion.min(b.completion);
    }
    let offered = worker
        .engine
        .models()
        .into_iter()
        .find(|m| m.name == header.model)
        .and_then(|m| m.hash);
    let cost = pay
        .prices
        .cost(&header.model, &usage, worker.cfg.price_milli)
        .map_err(|e| e.to_string())?;
    let body = Receipt {
        request: Hash32::of(header.request_id.as_bytes()),
        model: model_hash(offered, &header.model),
        usage,
        price_milli: worker.cfg.price_milli,
        cost,
    };
    let hash = body.signing_hash().map_err(|e| e.to_string())?;
    let (sig, cert) = worker
        .tls
        .identity()
        .sign(&hash)
        .map_err(|e| e.to_string())?;
    Ok(ReceiptEnvelope {
        receipt: Signed {
            body,
            signature: Signature(sig),
        },
        cert: hex::encode(&cert),
    })
}

/// Handles a vault voucher from the proxy: checks it against the vault
/// owner the *ledger* names, and keeps it.
pub(crate) async fn accept_voucher(
    pay: &WorkerPay,
    v: Signed<WorkerVoucher>,
) -> Result<Nanotons, String> {
    let owner = vault_owner(pay, v.body.vault).await?;
    let accepted = pay.books().await.accept_voucher(v, owner);
    let delta = accepted
        .map_err(|e| e.to_string())?
        .wait()
        .await
        .map_err(|e| e.to_string())?;
    tracing::debug!(vault = %v.body.vault.short(), delta = %delta, "vault voucher accepted");
    Ok(delta)
}

fn owners(pay: &WorkerPay) -> std::sync::MutexGuard<'_, HashMap<Address, PublicKey>> {
    pay.vault_owners.lock().unwrap_or_else(|e| e.into_inner())
}

/// The owner of `vault` as the ledger names it (remembered per vault).
async fn vault_owner(pay: &WorkerPay, vault: Address) -> Result<PublicKey, String> {
    let known = owners(pay).get(&vault).copied();
    if let Some(owner) = known {
        return Ok(owner);
    }
    let row = pay.ledger.vault(vault).await.map_err(|e| e.to_string())?;
    let owner = row
        .ok_or_else(|| format!("vault {vault} is not on the ledger"))?
        .owner;
    let mut owners = owners(pay);
    if owners.len() < MAX_VAULT_OWNERS {
        owners.insert(vault, owner);
    }
    Ok(owner)
}

/// The vaults this worker has earnings in whose owner asked to withdraw.
async fn withdrawing_vaults(pay: &WorkerPay) -> Vec<Address> {
    let vaults: Vec<Address> = pay
        .books()
        .await
        .earnings()
        .iter()
        .map(|e| e.vault)
        .collect();
    let mut urgent = vec![];
    for id in vaults {
        if let Ok(Some(row)) = pay.ledger.vault(id).await
            && row.withdrawal.is_some()
        {
            urgent.push(id);
        }
    }
    urgent
}

/// Claims due earnings every `claim_every` until `shutdown`.
pub(crate) async fn claim_loop(pay: Arc<WorkerPay>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(pay.claim_every) => {}
            _ = shutdown.cancelled() => return,
        }
        // The books are not held while the ledger works (seconds on a
        // chain): receipts keep being signed meanwhile. Small amounts wait
        // (a claim costs fees), except from a vault being withdrawn.
        let urgent = withdrawing_vaults(&pay).await;
        let claims = pay
            .books()
            .await
            .claims_due_unless(pay.claim_threshold, &urgent);
        for claim in claims {
            let recorded = match claim.run(pay.ledger.as_ref()).await {
                Ok(done) => pay.books().await.record_claim(done).map(|()| done.delta),
                Err(e) => Err(e),
            };
            match recorded {
                Ok(0) => {}
                Ok(n) => tracing::info!(claimed = %n, "claimed earnings from the vault"),
                Err(e) => tracing::warn!(error = %e, "claiming earnings failed; will retry"),
            }
        }
    }
}
