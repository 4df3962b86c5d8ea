//! Paying jobs with credit tokens instead of a channel (the VPN path: the
//! end user's gateway holds tokens its provider bought), and buying tokens
//! on a channel for someone else's wallet.
//!
//! A job takes tokens worth its most possible cost from the wallet
//! (durably, before it is sent); once it has ended, its change is claimed
//! from the proxy in fresh blind tokens. A restart claims the change of
//! every job sent and not yet settled.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kokon_credit::PublicKeys;
use kokon_money::price::PriceTable;
use kokon_money::{Nanotons, receipt::Budget};
use kokon_pay::books::wallet::{Balance, Wallet};
use kokon_proto::credit::{ChangeRequest, SaleRequest, batch_hash};
use kokon_proto::{CreditPayment, ErrorCode, JobError, JobHeader};
use sha2::{Digest, Sha256};

use crate::ClientPay;
use crate::link::ProxyLink;

fn storage(e: impl std::fmt::Display) -> JobError {
    JobError::new(ErrorCode::Unavailable, format!("credit wallet: {e}"))
}

/// A gateway's credit wallet, opened on first use (its keys come from the
/// proxy, through the link).
pub struct CreditPay {
    path: PathBuf,
    prices: PriceTable,
    wallet: tokio::sync::Mutex<Option<Wallet>>,
    /// Where the proxy's published credit keys are checked before the
    /// wallet pins or uses them (set by the app).
    pub(crate) registry: Option<crate::Registry>,
    /// Jobs sent and not yet ended here: their change is not claimed by
    /// the recovery pass.
    running: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for CreditPay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreditPay")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// A job paid by tokens: what to settle it with.
#[derive(Clone, Debug)]
pub(crate) struct CreditJob {
    pub request_id: String,
    pub secret: [u8; 32],
    pub prepaid: Nanotons,
}

impl CreditPay {
    /// A wallet at `path`, for jobs priced by `prices`.
    pub fn new(path: PathBuf, prices: PriceTable) -> Self {
        Self {
            path,
            prices,
            wallet: tokio::sync::Mutex::new(None),
            registry: None,
            running: Mutex::new(HashSet::new()),
        }
    }

    /// The wallet, opened with the proxy's keys (fetched once).
    async fn wallet(
        &self,
        link: &ProxyLink,
    ) -> Result<tokio::sync::MutexGuard<'_, Option<Wallet>>, JobError> {
        let mut w = self.wallet.lock().await;
        if w.is_none() {
            let doc = link.credit_keys().await?;
            let doc: kokon_credit::KeysDocument = serde_json::from_value(doc).map_err(|e| {
                JobError::new(
                    ErrorCode::BadRequest,
                    format!("the proxy's credit keys: {e}"),
                )
            })?;
            let keys = PublicKeys::from_document(&doc).map_err(|e| {
                JobError::new(
                    ErrorCode::BadRequest,
                    format!("the proxy's credit keys: {e}"),
                )
            })?;
            let registry = self
                .registry
                .as_ref()
                .ok_or_else(|| storage("no registry to check the proxy's credit keys against"))?;
            crate::published::check_credit_keys(registry, keys.fingerprint()).await?;
            *w = Some(Wallet::open(&self.path, keys).map_err(storage)?);
        }
        Ok(w)
    }

    /// The proxy refused job `request_id`'s tokens as spent before: they
    /// are dropped from the wallet (never offered again).
    pub(crate) async fn drop_spent(&self, link: &ProxyLink, request_id: &str) {
        self.done(request_id);
        if let Ok(mut w) = self.wallet(link).await
            && let Err(e) = w.as_mut().expect("opened").drop_spent(request_id)
        {
            tracing::warn!(error = %e, "cannot drop spent tokens");
        }
        tracing::warn!(
            "the proxy says tokens of this wallet were spent before (was the wallet copied?); they are dropped"
        );
    }

    /// Job `request_id` is no longer settled by its request here (it
    /// ended, or was dropped): the recovery pass may claim its change.
    pub(crate) fn done(&self, request_id: &str) {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(request_id);
    }

    pub async fn balance(&self, link: &ProxyLink) -> Result<Balance, JobError> {
        let w = self.wallet(link).await?;
        w.as_ref().expect("opened").balance().map_err(storage)
    }

    /// Token requests worth `amount`, for a channel holder to buy.
    pub async fn request(
        &self,
        link: &ProxyLink,
        amount: Nanotons,
    ) -> Result<Vec<String>, JobError> {
        let mut w = self.wallet(link).await?;
        let reqs = w
            .as_mut()
            .expect("opened")
            .request(amount)
            .map_err(storage)?;
        reqs.wait().await.map_err(storage)
    }

    /// Keeps the tokens a purchase of `requests` was answered with.
    pub async fn accept(
        &self,
        link: &ProxyLink,
        requests: &[String],
        responses: &[String],
    ) -> Result<Nanotons, JobError> {
        let mut w = self.wallet(link).await?;
        let added = w
            .as_mut()
            .expect("opened")
            .accept(requests, responses, None)
            .map_err(|e| JobError::new(ErrorCode::BadRequest, e.to_string()))?;
        added.wait().await.map_err(storage)
    }
}

/// Whether a job's refusal says its tokens were spent before.
pub(crate) fn spent_refusal(e: &JobError) -> bool {
    e.code == ErrorCode::PaymentRequired && e.message.contains("was spent before")
}

/// Takes tokens for the job and puts them on its header: worth its
/// budget's cost at its price cap (the registry's highest without one).
pub(crate) async fn authorise(
    cp: &CreditPay,
    link: &ProxyLink,
    header: &mut JobHeader,
    budget: Budget,
    max_price_milli: u32,
) -> Result<CreditJob, JobError> {
    let cap = header.max_price_milli.unwrap_or(max_price_milli);
    let max_cost = budget
        .max_cost(&cp.prices, &header.model, cap)
        .map_err(|e| JobError::new(ErrorCode::BadRequest, format!("cannot price this job: {e}")))?;
    let taken = {
        let mut w = cp.wallet(link).await?;
        let taken = w
            .as_mut()
            .expect("opened")
            .take(&header.request_id, max_cost);
        taken
            .map_err(|e| JobError::new(ErrorCode::PaymentRequired, e.to_string()))?
            .wait()
            .await
            .map_err(storage)?
    };
    cp.running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(header.request_id.clone());
    header.budget = Some(budget);
    header.credit = Some(CreditPayment {
        tokens: taken.tokens,
        claim: Sha256::digest(taken.secret).into(),
    });
    Ok(CreditJob {
        request_id: header.request_id.clone(),
        secret: taken.secret,
        prepaid: taken.prepaid,
    })
}

/// The job has ended: its change is claimed and kept, in the background
/// (two more calls and a blind signature per change token would otherwise
/// hold the answer back; the wallet is the truth, and a change not
/// claimed now is claimed by the recovery pass). Returns the cost the
/// worker's receipt states, which is what the proxy bills (within the
/// prepaid amount).
pub(crate) fn settle(
    cp: Arc<CreditPay>,
    link: Arc<ProxyLink>,
    job: CreditJob,
    receipt: Option<&kokon_proto::ReceiptEnvelope>,
) -> Nanotons {
    let cost = receipt.map_or(0, |r| r.receipt.body.cost.min(job.prepaid));
    tokio::spawn(async move {
        match claim_change(&cp, &link, &job.request_id, &job.secret).await {
            Ok(Some(returned)) => {
                tracing::debug!(charged = %job.prepaid.saturating_sub(returned), "credit job settled")
            }
            Ok(None) => tracing::debug!("credit job never recorded; tokens kept"),
            Err(e) => {
                tracing::debug!(error = %e.message, "change not claimed yet; the recovery pass will")
            }
        }
        cp.done(&job.request_id);
    });
    cost
}

/// Tries at a change the proxy says is not final yet (the job's release
/// racing its last frame).
const CHANGE_TRIES: u32 = 5;

/// Claims job `id`'s change: `Some(returned)`, or `None` when the proxy
/// never recorded the job (its tokens are the wallet's again).
async fn claim_change(
    cp: &CreditPay,
    link: &ProxyLink,
    id: &str,
    secret: &[u8; 32],
) -> Result<Option<Nanotons>, JobError> {
    let ask = |requests: Vec<String>| ChangeRequest {
        request_id: id.to_string(),
        secret: hex::encode(secret),
        requests,
    };
    let mut tries = 0;
    let first = loop {
        match link.credit_change(&ask(Vec::new())).await {
            Err(e) if e.code == ErrorCode::Unavailable && tries + 1 < CHANGE_TRIES => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100 << tries)).await;
            }
            Err(e)
                if e.code == ErrorCode::BadRequest
                    && e.message.starts_with("no credit-paid job") =>
            {
                let mut w = cp.wallet(link).await?;
                w.as_mut().expect("opened").give_back(id).map_err(storage)?;
                return Ok(None);
            }
            other => break other?,
        }
    };
    let requests = {
        let mut w = cp.wallet(link).await?;
        w.as_mut()
            .expect("opened")
            .change_requests(id, &first.levels)
            .map_err(storage)?
    };
    let answer = if requests.is_empty() {
        first.clone()
    } else {
        link.credit_change(&ask(requests.clone())).await?
    };
    if answer.responses.len() != requests.len() {
        return Err(JobError::new(
            ErrorCode::Unavailable,
            "the proxy's change did not answer every request; it will be claimed again",
        ));
    }
    let mut w = cp.wallet(link).await?;
    let kept = w
        .as_mut()
        .expect("opened")
        .accept(&requests, &answer.responses, Some(id))
        .map_err(storage)?;
    kept.wait().await.map_err(storage)?;
    tracing::debug!(tokens = requests.len(), "credit change kept");
    Ok(Some(answer.returned))
}

/// Claims the change of every job sent and not running here, now and every
/// `every` (after a restart: the jobs the previous run sent).
pub(crate) async fn recover_loop(cp: Arc<CreditPay>, link: Arc<ProxyLink>, every: Duration) {
    loop {
        let awaiting = match cp.wallet(&link).await {
            Ok(w) => w
                .as_ref()
                .expect("opened")
                .awaiting_change()
                .unwrap_or_default(),
            Err(e) => {
                tracing::debug!(error = %e.message, "credit wallet not open yet");
                Vec::new()
            }
        };
        for (id, secret) in awaiting {
            if cp
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&id)
            {
                continue;
            }
            if let Err(e) = claim_change(&cp, &link, &id, &secret).await {
                tracing::debug!(error = %e.message, "credit change not claimed yet");
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// Buys tokens for `requests` (another party's, blinded) on this gateway's
/// channel: the sale is signed, the proxy's answer paid by the next
/// channel voucher (on disk first), and the blind signatures returned.
pub async fn buy(
    pay: &ClientPay,
    link: &ProxyLink,
    requests: Vec<String>,
) -> Result<kokon_proto::credit::SaleReply, JobError> {
    let bad = |m: String| JobError::new(ErrorCode::BadRequest, m);
    let doc = link.credit_keys().await?;
    let doc: kokon_credit::KeysDocument =
        serde_json::from_value(doc).map_err(|e| bad(format!("the proxy's credit keys: {e}")))?;
    let keys = PublicKeys::from_document(&doc)
        .map_err(|e| bad(format!("the proxy's credit keys: {e}")))?;
    let mut amount: Nanotons = 0;
    for r in &requests {
        let req = kokon_credit::TokenRequest::from_b64(r).map_err(|e| bad(e.to_string()))?;
        let level = keys
            .level_of(req.truncated_token_key_id)
            .ok_or_else(|| bad("a token request names no key of the proxy".into()))?;
        amount += keys
            .schedule()
            .value(level)
            .map_err(|e| bad(e.to_string()))?;
    }
    let batch = batch_hash(&requests);
    let sale = {
        let books = pay.books().await;
        let ch = books.channel();
        if ch.remaining() < amount {
            return Err(JobError::new(
                ErrorCode::PaymentRequired,
                format!(
                    "channel {} has {} nanotons left; the tokens cost {amount}",
                    ch.id,
                    ch.remaining()
                ),
            ));
        }
        let hash = SaleRequest::signing_hash(&ch.id, &batch, amount);
        SaleRequest {
            channel: ch.id,
            requests,
            amount,
            signature: books.key().sign(&hash),
        }
    };
    let reply = link.credit_buy(&sale).await?;
    if reply.amount != amount || reply.responses.len() != sale.requests.len() {
        return Err(JobError::new(
            ErrorCode::ReceiptRejected,
            "the proxy's sale does not match what was asked; not paid",
        ));
    }
    let paid = pay.books().await.pay_credits(&hex::encode(batch), amount);
    let voucher = paid.map_err(storage)?.wait().await.map_err(storage)?;
    if let Some(v) = voucher {
        link.send_voucher(&v).await?;
    }
    tracing::info!(tokens = sale.requests.len(), amount = %amount, "credit tokens bought");
    Ok(reply)
}
