//! The proxy's side of payments: admitting jobs against channel credit,
//! billing verified receipts, signing workers' vault vouchers, taking
//! clients' vouchers, and claiming them on the ledger.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kokon_attest::Policy;
use kokon_money::receipt::{self, Budget, Expect};
use kokon_money::{
    Address, ChannelVoucher, Economics, Hash32, MoneyError, Nanotons, PublicKey, Signed,
    WorkerVoucher,
};
use kokon_pay::books::proxy::{Bill, ProxyBooks};
use kokon_pay::{PayError, Settlement};
use kokon_proto::{ErrorCode, JobEnd, JobError, JobHeader};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// Payment settings and state of a proxy.
pub struct ProxyPay {
    pub(crate) books: Mutex<ProxyBooks>,
    pub(crate) economics: Economics,
    pub(crate) ledger: Arc<dyn Settlement>,
    /// Claim a channel once this much of its latest voucher is unclaimed.
    pub(crate) claim_threshold: Nanotons,
    pub(crate) claim_every: Duration,
    pub(crate) signers: kokon_attest::verify::ReceiptSigners,
}

impl ProxyPay {
    pub fn new(
        books: ProxyBooks,
        economics: Economics,
        ledger: Arc<dyn Settlement>,
        claim_threshold: Nanotons,
        claim_every: Duration,
    ) -> Self {
        Self {
            books: Mutex::new(books),
            economics,
            ledger,
            claim_threshold,
            claim_every,
            signers: Default::default(),
        }
    }

    pub async fn books(&self) -> tokio::sync::MutexGuard<'_, ProxyBooks> {
        self.books.lock().await
    }
}

/// Credit reserved for one attempt.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Admission {
    pub channel: Address,
    pub max_cost: Nanotons,
    pub budget: Budget,
}

fn payment_required(msg: String) -> JobError {
    JobError::new(ErrorCode::PaymentRequired, msg)
}

/// Checks the job's payment header and reserves its maximum cost at the
/// picked worker's price.
pub(crate) async fn admit(
    pay: &ProxyPay,
    header: &JobHeader,
    price_milli: u32,
) -> Result<Admission, JobError> {
    let p = header.payment.ok_or_else(|| {
        payment_required("this proxy serves paid jobs only: the request names no channel".into())
    })?;
    let budget = Budget {
        prompt: p.max_prompt_tokens,
        completion: p.max_completion_tokens,
    };
    let max_cost = budget
        .max_cost(&pay.economics.prices, &header.model, price_milli)
        .map_err(|e| {
            JobError::new(
                ErrorCode::BadRequest,
                format!("job budget cannot be priced: {e}"),
            )
        })?;
    let mut books = pay.books().await;
    if !books.knows(&p.channel) {
        refresh(pay, &mut books, p.channel).await?;
    }
    let terms = books
        .terms(&p.channel)
        .ok_or_else(|| payment_required(format!("no channel {}", p.channel)))?;
    let auth = header.auth_hash(&p.channel, p.max_prompt_tokens, p.max_completion_tokens);
    if terms.client.verify(&auth, &p.signature).is_err() {
        return Err(payment_required(
            "the job's payer signature does not match the channel's client key".into(),
        ));
    }
    let admitted = match books.admit(&p.channel, max_cost) {
        Err(PayError::Money(MoneyError::OverCredit { .. } | MoneyError::ChannelNotOpen)) => {
            // The client may have topped up (or closed) since we last looked.
            refresh(pay, &mut books, p.channel).await?;
            books.admit(&p.channel, max_cost)
        }
        other => other,
    };
    admitted.map_err(|e| {
        payment_required(format!("channel {} cannot cover this job: {e}", p.channel))
    })?;
    Ok(Admission {
        channel: p.channel,
        max_cost,
        budget,
    })
}

async fn refresh(pay: &ProxyPay, books: &mut ProxyBooks, channel: Address) -> Result<(), JobError> {
    let unavailable =
        |e: PayError| JobError::new(ErrorCode::Unavailable, format!("ledger unavailable: {e}"));
    let row = pay.ledger.channel(channel).await.map_err(unavailable)?;
    let row = row.ok_or_else(|| {
        payment_required(format!(
            "no channel {channel} on the ledger; open one with `kokon channel open`"
        ))
    })?;
    if row.proxy != books.owner().public() {
        return Err(payment_required(format!(
            "channel {channel} pays another proxy"
        )));
    }
    books.update_terms(row.terms()).map_err(unavailable)
}

pub(crate) async fn release(pay: &ProxyPay, a: &Admission) {
    pay.books().await.release(&a.channel, a.max_cost);
}

/// What the proxy knows about the worker that ran a job.
pub(crate) struct Served {
    pub price_milli: u32,
    pub payout: PublicKey,
    pub model_hash: Option<Hash32>,
}

/// Verifies the worker's receipt and bills it (on disk before the End frame
/// goes on). Returns the worker's new vault voucher.
pub(crate) async fn bill(
    pay: &ProxyPay,
    policy: &Policy,
    header: &JobHeader,
    a: &Admission,
    served: &Served,
    end: &JobEnd,
    now: u64,
) -> Result<Signed<WorkerVoucher>, JobError> {
    let rejected = |m: String| JobError::new(ErrorCode::ReceiptRejected, m);
    let env = end
        .receipt
        .as_ref()
        .ok_or_else(|| rejected("the worker sent no receipt".into()))?;
    let key = pay
        .signers
        .signer(&env.cert, policy, now)
        .map_err(rejected)?;
    let expect = Expect {
        request_id: &header.request_id,
        model: &header.model,
        model_hash: served.model_hash,
        prices: &pay.economics.prices,
        price_milli: Some(served.price_milli),
        max_price_milli: None,
        budget: a.budget,
        completion_bound: None,
    };
    let cost = receipt::check(&env.receipt, &key, &expect).map_err(|e| rejected(e.to_string()))?;
    let mut books = pay.books().await;
    let bill = Bill {
        channel: a.channel,
        request_id: &header.request_id,
        worker: served.payout,
        receipt: &env.receipt,
        cost,
        max_cost: a.max_cost,
    };
    books
        .bill(bill)
        .map_err(|e| JobError::new(ErrorCode::Unavailable, format!("cannot bill: {e}")))
}

/// Handles a client's voucher.
pub(crate) async fn accept_voucher(pay: &ProxyPay, body: &[u8]) -> Result<Nanotons, JobError> {
    let v: Signed<ChannelVoucher> = serde_json::from_slice(body)
        .map_err(|e| JobError::new(ErrorCode::BadRequest, format!("not a channel voucher: {e}")))?;
    let delta = pay
        .books()
        .await
        .accept_voucher(v)
        .map_err(|e| JobError::new(ErrorCode::BadRequest, format!("voucher refused: {e}")))?;
    tracing::debug!(channel = %v.body.channel.short(), delta = %delta, "voucher accepted");
    Ok(delta)
}

/// Closes a channel at its client's signed request: claims the latest
/// voucher and has the ledger refund the rest.
pub(crate) async fn close(
    pay: &ProxyPay,
    body: &[u8],
) -> Result<kokon_proto::CloseReply, JobError> {
    let bad = |m: String| JobError::new(ErrorCode::BadRequest, m);
    let req: kokon_proto::CloseRequest =
        serde_json::from_slice(body).map_err(|e| bad(format!("not a close request: {e}")))?;
    let mut books = pay.books().await;
    if !books.knows(&req.channel) {
        refresh(pay, &mut books, req.channel).await?;
    }
    let terms = books
        .terms(&req.channel)
        .ok_or_else(|| bad(format!("no channel {}", req.channel)))?;
    let hash = kokon_proto::CloseRequest::signing_hash(&req.channel);
    terms
        .client
        .verify(&hash, &req.signature)
        .map_err(|_| bad("the close request is not signed by the channel's client".into()))?;
    let latest = books.latest_voucher(&req.channel);
    let (claimed, refunded) = pay
        .ledger
        .close_cooperative(books.owner(), req.channel, latest)
        .await
        .map_err(|e| bad(format!("cannot close: {e}")))?;
    refresh(pay, &mut books, req.channel).await?;
    tracing::info!(channel = %req.channel.short(), claimed = %claimed, refunded = %refunded, "channel closed cooperatively");
    Ok(kokon_proto::CloseReply { claimed, refunded })
}

/// Sends `v` to the worker over its link; a lost voucher is covered by the next.
pub(crate) async fn send_worker_voucher(
    mut sender: crate::workers::Sender,
    v: Signed<WorkerVoucher>,
) {
    let body = serde_json::to_vec(&v).unwrap_or_default();
    let req = http::Request::post(kokon_proto::paths::VAULT_VOUCHER)
        .body(http_body_util::Full::new(Bytes::from(body)))
        .expect("static request parts");
    match sender.send_request(req).await {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => tracing::warn!(status = %r.status(), "worker refused its vault voucher"),
        Err(e) => {
            tracing::debug!(error = %e, "vault voucher not delivered; the next one covers it")
        }
    }
}

/// Claims due channel vouchers every `claim_every` until `shutdown`.
pub(crate) async fn claim_loop(pay: Arc<ProxyPay>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(pay.claim_every) => {}
            _ = shutdown.cancelled() => return,
        }
        let mut books = pay.books().await;
        // Notice top-ups and closes, so a closing channel stops being served
        // and its latest voucher is claimed before the deadline.
        for id in books.channel_ids() {
            if let Ok(Some(row)) = pay.ledger.channel(id).await
                && books.terms(&id) != Some(row.terms())
                && let Err(e) = books.update_terms(row.terms())
            {
                tracing::warn!(error = %e, "cannot record channel terms");
            }
        }
        for v in books.claims_due(pay.claim_threshold) {
            match books.claim(pay.ledger.as_ref(), v).await {
                Ok(d) => {
                    tracing::info!(channel = %v.body.channel.short(), claimed = %d, "claimed channel voucher")
                }
                Err(e) => {
                    tracing::warn!(channel = %v.body.channel.short(), error = %e, "claim failed; will retry")
                }
            }
        }
    }
}
