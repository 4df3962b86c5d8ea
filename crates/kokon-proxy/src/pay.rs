//! The proxy's side of payments: admitting jobs against channel credit,
//! billing verified receipts, signing workers' vault vouchers, taking
//! clients' vouchers, and claiming them on the ledger.
//!
//! The books are behind one mutex, which is never held across ledger or
//! chain I/O (a claim on TON waits seconds for its trace): reads of the
//! ledger happen before the lock is taken, claims run on a voucher taken
//! out of the books and are recorded afterwards.

use std::sync::Arc;
use std::time::Duration;

use kokon_attest::Policy;
use kokon_money::channel::ChannelTerms;
use kokon_money::receipt::{self, Budget, Expect};
use kokon_money::{
    Address, ChannelVoucher, Economics, Hash32, MoneyError, Nanotons, PublicKey, Signed,
    WorkerVoucher,
};
use kokon_pay::books::proxy::{Bill, ProxyBooks, Reservation};
use kokon_pay::{PayError, Settlement};
use kokon_proto::{
    CloseReply, CloseRequest, ErrorCode, JobError, JobHeader, OutputMeter, ReceiptEnvelope,
};
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
    /// Sells and redeems credit tokens, if this proxy does.
    pub(crate) credits: Option<Arc<kokon_credit::Issuer>>,
    /// Publishes the keys it hands out in the registry.
    pub(crate) publisher: Arc<crate::KeyPublisher>,
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
            publisher: Arc::new(crate::KeyPublisher::new(ledger.clone(), books.signer())),
            books: Mutex::new(books),
            economics,
            ledger,
            claim_threshold,
            claim_every,
            signers: Default::default(),
            credits: None,
        }
    }

    /// Sells credit tokens signed by `issuer` and takes them for jobs.
    pub fn with_credits(mut self, issuer: kokon_credit::Issuer) -> Self {
        self.credits = Some(Arc::new(issuer));
        self
    }

    pub async fn books(&self) -> tokio::sync::MutexGuard<'_, ProxyBooks> {
        self.books.lock().await
    }
}

/// Credit reserved for one attempt, and the budget it was priced at.
/// Neither `Copy` nor `Clone`: see [`Reservation`].
#[derive(Debug)]
pub(crate) struct Admitted {
    pub reservation: Reservation,
    pub budget: Budget,
}

fn payment_required(msg: String) -> JobError {
    JobError::new(ErrorCode::PaymentRequired, msg)
}

pub(crate) fn unavailable(e: PayError) -> JobError {
    JobError::new(ErrorCode::Unavailable, format!("ledger unavailable: {e}"))
}

/// Longest an authorisation may claim to stay valid, so no client makes
/// one that outlives the proxy's memory of what it saw.
const MAX_AUTH_LIFETIME_SECS: u64 = 3600;

/// Checks a job's authorisation (the channel pays this proxy, the channel's
/// client signed this header, payload and budget, and it has not expired)
/// and records its request id, durably, before anything is routed. A
/// request id already used on the channel is refused.
pub(crate) async fn register(
    pay: &ProxyPay,
    header: &JobHeader,
    auth: Option<&kokon_proto::JobAuth>,
    (max_context, max_price_milli): (u32, u32),
    now_unix: u64,
) -> Result<(), JobError> {
    if let (Some(credit), Some(budget)) = (&header.credit, header.budget) {
        within_context(budget, max_context)?;
        return crate::credit::redeem(pay, header, credit, budget, max_price_milli).await;
    }
    let (p, budget, auth) = match (header.payment, header.budget, auth) {
        (Some(p), Some(b), Some(a)) => (p, b, a),
        _ => {
            return Err(payment_required(
                "this proxy serves paid jobs only: the request names no channel and \
                 carries no credit tokens"
                    .into(),
            ));
        }
    };
    within_context(budget, max_context)?;
    if p.expires_unix < now_unix {
        return Err(payment_required(format!(
            "the job's authorisation expired {} s ago (is the client's clock right?)",
            now_unix - p.expires_unix
        )));
    }
    if p.expires_unix > now_unix + MAX_AUTH_LIFETIME_SECS {
        return Err(payment_required(format!(
            "the job's authorisation is valid for more than {MAX_AUTH_LIFETIME_SECS} s"
        )));
    }
    let known = pay.books().await.terms(&p.channel);
    let terms = match known {
        Some(t) => t,
        None => {
            let t = read_terms(pay, p.channel).await?;
            pay.books().await.update_terms(t).map_err(unavailable)?;
            t
        }
    };
    // The payload was hashed once, into `auth` (what bills keep too).
    if !auth.signed_by(&terms.client) {
        return Err(payment_required(
            "the job's payer signature does not match the channel's client key \
             for this request, payload and budget"
                .into(),
        ));
    }
    let registered = pay.books().await.register(&p.channel, &header.request_id);
    let refused = |e: PayError| match e {
        PayError::DuplicateRequest(id) => JobError::new(
            ErrorCode::DuplicateRequest,
            format!(
                "request id {id} was already used on channel {}; every job needs a new id",
                p.channel
            ),
        ),
        e => unavailable(e),
    };
    // Group commit: registrations arriving together share this fsync.
    registered.map_err(refused)?.wait().await.map_err(refused)
}

fn within_context(budget: Budget, max_context: u32) -> Result<(), JobError> {
    let most = u64::from(max_context);
    if budget.prompt > most || budget.completion > most {
        return Err(JobError::new(
            ErrorCode::BadRequest,
            format!(
                "the job's budget ({} prompt, {} completion tokens) is above the registry's \
                 {most}-token maximum context",
                budget.prompt, budget.completion
            ),
        ));
    }
    Ok(())
}

/// Reserves the job's maximum cost at the picked worker's price (the job
/// was registered: its authorisation checked, or its tokens redeemed).
pub(crate) async fn admit(
    pay: &ProxyPay,
    header: &JobHeader,
    price_milli: u32,
) -> Result<Admitted, JobError> {
    let Some(budget) = header.budget else {
        return Err(payment_required("the request has no budget".into()));
    };
    let max_cost = budget
        .max_cost(&pay.economics.prices, &header.model, price_milli)
        .map_err(|e| {
            JobError::new(
                ErrorCode::BadRequest,
                format!("job budget cannot be priced: {e}"),
            )
        })?;
    if header.credit.is_some() {
        let admitted = pay.books().await.admit_credit(&header.request_id, max_cost);
        return admitted
            .map(|reservation| Admitted {
                reservation,
                budget,
            })
            .map_err(|e| payment_required(format!("the job's credit cannot cover it: {e}")));
    }
    let Some(p) = header.payment else {
        return Err(payment_required("the request names no channel".into()));
    };
    let first = pay
        .books()
        .await
        .admit(&p.channel, &header.request_id, max_cost);
    let reservation = match first {
        Err(PayError::Money(MoneyError::OverCredit { .. } | MoneyError::ChannelNotOpen)) => {
            // The deposit may have grown (a top-up) or the close been
            // cancelled: look at the ledger, without holding the books.
            let terms = read_terms(pay, p.channel).await?;
            let mut books = pay.books().await;
            books.update_terms(terms).map_err(unavailable)?;
            books.admit(&p.channel, &header.request_id, max_cost)
        }
        other => other,
    };
    reservation
        .map(|reservation| Admitted {
            reservation,
            budget,
        })
        .map_err(|e| cannot_cover(p.channel, e))
}

fn cannot_cover(channel: Address, e: PayError) -> JobError {
    payment_required(format!("channel {channel} cannot cover this job: {e}"))
}

/// The ledger's terms of `channel`, read without holding the books.
pub(crate) async fn read_terms(pay: &ProxyPay, channel: Address) -> Result<ChannelTerms, JobError> {
    let row = pay.ledger.channel(channel).await.map_err(unavailable)?;
    let row = row.ok_or_else(|| {
        payment_required(format!(
            "no channel {channel} on the ledger; open one with `kokon channel open`"
        ))
    })?;
    if row.proxy != pay.books().await.owner().public() {
        return Err(payment_required(format!(
            "channel {channel} pays another proxy"
        )));
    }
    Ok(row.terms())
}

pub(crate) async fn release(pay: &ProxyPay, a: Admitted) {
    pay.books().await.release(a.reservation);
}

/// What the proxy knows about the worker that ran a job.
pub(crate) struct Served {
    pub price_milli: u32,
    pub payout: PublicKey,
    pub model_hash: Option<Hash32>,
}

/// A worker's receipt to bill, and the output relayed to the client, which
/// bounds it by the client's rule ([`OutputMeter::completion_bound`]).
#[derive(Clone, Copy)]
pub(crate) struct Claimed<'e> {
    pub receipt: Option<&'e ReceiptEnvelope>,
    pub delivered: OutputMeter,
    /// The client's authorisation of the job (JSON), kept with the bill.
    pub auth: &'e str,
}

/// Verifies the worker's receipt and bills it (on disk before the End frame
/// goes on). Consumes the reservation whatever happens. Returns the
/// worker's new vault voucher.
pub(crate) async fn bill(
    pay: &ProxyPay,
    policy: &std::sync::Arc<Policy>,
    header: &JobHeader,
    a: Admitted,
    served: &Served,
    claimed: Claimed<'_>,
    now: u64,
) -> Result<Signed<WorkerVoucher>, JobError> {
    let checked = check_receipt(pay, policy, header, &a, served, claimed, now);
    let mut books = pay.books().await;
    let (env, cost) = match checked {
        Ok(x) => x,
        Err(e) => {
            books.release(a.reservation);
            return Err(e);
        }
    };
    let bill = Bill {
        request_id: &header.request_id,
        worker: served.payout,
        receipt: &env.receipt,
        cost,
        cert: &env.cert,
        auth: claimed.auth,
    };
    let cannot_bill = |e| JobError::new(ErrorCode::Unavailable, format!("cannot bill: {e}"));
    let billed = books.bill(a.reservation, bill).map_err(cannot_bill)?;
    drop(books);
    // Group commit: bills finishing together share this fsync.
    billed.wait().await.map_err(cannot_bill)
}

/// Verifies a running job's cumulative receipt and bills its increase (on
/// disk before the receipt is relayed). Returns the worker's new vault
/// voucher, if the receipt raised the bill.
pub(crate) async fn bill_part(
    pay: &ProxyPay,
    policy: &std::sync::Arc<Policy>,
    header: &JobHeader,
    a: &Admitted,
    served: &Served,
    claimed: Claimed<'_>,
    now: u64,
) -> Result<Option<Signed<WorkerVoucher>>, JobError> {
    let (env, cost) = check_receipt(pay, policy, header, a, served, claimed, now)?;
    let bill = Bill {
        request_id: &header.request_id,
        worker: served.payout,
        receipt: &env.receipt,
        cost,
        cert: &env.cert,
        auth: claimed.auth,
    };
    let cannot_bill = |e| JobError::new(ErrorCode::ReceiptRejected, format!("cannot bill: {e}"));
    let billed = pay
        .books()
        .await
        .bill_part(&a.reservation, bill)
        .map_err(cannot_bill)?;
    // Group commit, as for final bills.
    billed.wait().await.map_err(cannot_bill)
}

fn check_receipt<'e>(
    pay: &ProxyPay,
    policy: &std::sync::Arc<Policy>,
    header: &JobHeader,
    a: &Admitted,
    served: &Served,
    Claimed {
        receipt, delivered, ..
    }: Claimed<'e>,
    now: u64,
) -> Result<(&'e ReceiptEnvelope, Nanotons), JobError> {
    let rejected = |m: String| JobError::new(ErrorCode::ReceiptRejected, m);
    let env = receipt.ok_or_else(|| rejected("the worker sent no receipt".into()))?;
    let key = pay
        .signers
        .signer(&env.cert, policy, now)
        .map_err(rejected)?;
    let announced = served.model_hash;
    let expect = Expect {
        request_id: &header.request_id,
        model: &header.model,
        model_hashes: announced.as_ref().map(std::slice::from_ref),
        prices: &pay.economics.prices,
        price_milli: Some(served.price_milli),
        max_price_milli: None,
        budget: a.budget,
        // The client's rule: no more tokens than the output relayed to it.
        completion_bound: Some(delivered.completion_bound()),
    };
    let cost = receipt::check(&env.receipt, &key, &expect).map_err(|e| rejected(e.to_string()))?;
    Ok((env, cost))
}

/// Handles a client's voucher.
pub(crate) async fn accept_voucher(
    pay: &ProxyPay,
    v: Signed<ChannelVoucher>,
) -> Result<Nanotons, JobError> {
    let accepted = pay.books().await.accept_voucher(v);
    let refused = |e| JobError::new(ErrorCode::BadRequest, format!("voucher refused: {e}"));
    let delta = accepted.map_err(refused)?.wait().await.map_err(refused)?;
    tracing::debug!(channel = %v.body.channel.short(), delta = %delta, "voucher accepted");
    Ok(delta)
}

/// Closes a channel at its client's signed request: claims the latest
/// voucher and has the ledger refund the rest.
pub(crate) async fn close(pay: &ProxyPay, req: CloseRequest) -> Result<CloseReply, JobError> {
    let bad = |m: String| JobError::new(ErrorCode::BadRequest, m);
    let known = pay.books().await.terms(&req.channel);
    let terms = match known {
        Some(t) => t,
        None => read_terms(pay, req.channel).await?,
    };
    let hash = CloseRequest::signing_hash(&req.channel);
    terms
        .client
        .verify(&hash, &req.signature)
        .map_err(|_| bad("the close request is not signed by the channel's client".into()))?;
    if let Some(v) = req.voucher {
        if v.body.channel != req.channel {
            return Err(bad(
                "the close request's voucher pays another channel".into()
            ));
        }
        let replayed = |e: &JobError| e.message.contains("replayed or lower");
        match accept_voucher(pay, v).await {
            Ok(_) => {}
            Err(e) if replayed(&e) => {} // the proxy holds it already
            Err(e) => return Err(e),
        }
    }
    let owed = pay.books().await.owed(&req.channel);
    if owed > 0 {
        return Err(payment_required(format!(
            "channel {} owes {owed} nanotons billed but not paid; a cooperative close \
             must bring the voucher that pays them (or close unilaterally and let \
             the proxy claim)",
            req.channel
        )));
    }
    let (key, latest) = {
        let mut books = pay.books().await;
        books.update_terms(terms).map_err(unavailable)?;
        (books.signer(), books.latest_voucher(&req.channel))
    };
    let (claimed, refunded) = pay
        .ledger
        .close_cooperative(&key, req.channel, latest)
        .await
        .map_err(|e| bad(format!("cannot close: {e}")))?;
    let terms = read_terms(pay, req.channel).await?;
    pay.books().await.update_terms(terms).map_err(unavailable)?;
    tracing::info!(channel = %req.channel.short(), claimed = %claimed, refunded = %refunded, "channel closed cooperatively");
    Ok(CloseReply { claimed, refunded })
}

/// Claims due channel vouchers every `claim_every` until `shutdown`, in its
/// own task; jobs keep being admitted and billed while a claim waits.
pub(crate) async fn claim_loop(pay: Arc<ProxyPay>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(pay.claim_every) => {}
            _ = shutdown.cancelled() => return,
        }
        follow_terms(&pay).await;
        claim_due(&pay).await;
    }
}

/// Notices top-ups and closes, so a closing channel stops being served and
/// its latest voucher is claimed before the deadline.
async fn follow_terms(pay: &ProxyPay) {
    let ids = pay.books().await.channel_ids();
    for id in ids {
        let Ok(Some(row)) = pay.ledger.channel(id).await else {
            continue;
        };
        let mut books = pay.books().await;
        if books.terms(&id) != Some(row.terms())
            && let Err(e) = books.update_terms(row.terms())
        {
            tracing::warn!(error = %e, "cannot record channel terms");
        }
    }
}

async fn claim_due(pay: &ProxyPay) {
    let pending: Vec<_> = {
        let books = pay.books().await;
        books
            .claims_due(pay.claim_threshold)
            .into_iter()
            .map(|v| books.pending_claim(v))
            .collect()
    };
    for claim in pending {
        let channel = claim.voucher().body.channel;
        let recorded = match claim.run(pay.ledger.as_ref()).await {
            Ok(done) => pay.books().await.record_claim(done).map(|()| done.delta),
            Err(e) => Err(e),
        };
        match recorded {
            Ok(d) => {
                tracing::info!(channel = %channel.short(), claimed = %d, "claimed channel voucher")
            }
            Err(e) => {
                tracing::warn!(channel = %channel.short(), error = %e, "claim failed; will retry")
            }
        }
    }
}

/// Distinct channels disputing a worker's receipts past which the proxy
/// routes it no more (one client alone cannot get a worker dropped).
pub(crate) const WORKER_DISPUTE_LIMIT: usize = 3;

/// Handles a client's dispute of a billed receipt: checks it is signed by
/// the channel's client, records it durably (the channel is no longer
/// billed for it; the worker's fee is withheld from its next earnings).
/// Returns the worker if it is now disputed by too many channels.
pub(crate) async fn dispute(
    pay: &ProxyPay,
    req: &kokon_proto::DisputeRequest,
) -> Result<Option<PublicKey>, JobError> {
    let bad = |m: String| JobError::new(ErrorCode::BadRequest, m);
    if req.reason.len() > kokon_proto::control::MAX_DISPUTE_REASON {
        return Err(bad("the dispute's reason is too long".into()));
    }
    let terms = pay
        .books()
        .await
        .terms(&req.channel)
        .ok_or_else(|| bad(format!("no channel {} here", req.channel)))?;
    let hash = kokon_proto::DisputeRequest::signing_hash(&req.channel, &req.request_id);
    terms
        .client
        .verify(&hash, &req.signature)
        .map_err(|_| bad("the dispute is not signed by the channel's client".into()))?;
    let refused = |e: PayError| bad(format!("dispute refused: {e}"));
    let recorded = pay.books().await.dispute(&req.channel, &req.request_id);
    let d = recorded.map_err(refused)?.wait().await.map_err(refused)?;
    tracing::debug!(channel = %req.channel.short(), request_id = %req.request_id, worker = %d.worker.to_hex(),
        cost = %d.cost, "receipt disputed; the worker's fee is withheld");
    Ok((d.channels_disputing >= WORKER_DISPUTE_LIMIT).then_some(d.worker))
}

/// Whether a worker's receipts are disputed by too many channels to route it.
pub(crate) async fn too_disputed(pay: &ProxyPay, worker: &PublicKey) -> bool {
    pay.books().await.channels_disputing(worker) >= WORKER_DISPUTE_LIMIT
}

/// Answers a client's reconcile: what its channel owes and the newest jobs
/// billed on it, each with the client's own authorisation and the worker's
/// signed receipt, so the client can pay what it verifies. Signed by the
/// channel's client (a channel's bills are its business), recently.
pub(crate) async fn reconcile(
    pay: &ProxyPay,
    req: &kokon_proto::ReconcileRequest,
    now_unix: u64,
) -> Result<kokon_proto::ReconcileReply, JobError> {
    use kokon_proto::control::{MAX_RECONCILE_JOBS, RECONCILE_SKEW_SECS};
    let bad = |m: String| JobError::new(ErrorCode::BadRequest, m);
    if req.unix.abs_diff(now_unix) > RECONCILE_SKEW_SECS {
        return Err(bad(format!(
            "the reconcile request was signed at {}, {} s from this proxy's clock \
             (is the client's clock right?)",
            req.unix,
            req.unix.abs_diff(now_unix)
        )));
    }
    let books = pay.books().await;
    let terms = books
        .terms(&req.channel)
        .ok_or_else(|| bad(format!("no channel {} here", req.channel)))?;
    let hash = kokon_proto::ReconcileRequest::signing_hash(&req.channel, req.unix);
    terms
        .client
        .verify(&hash, &req.signature)
        .map_err(|_| bad("the reconcile request is not signed by the channel's client".into()))?;
    let owed = books.owed(&req.channel);
    let rows = if owed == 0 {
        Vec::new()
    } else {
        books
            .billed_jobs(&req.channel, MAX_RECONCILE_JOBS)
            .map_err(unavailable)?
    };
    drop(books);
    let mut jobs = Vec::new();
    let mut size = 0;
    for row in rows {
        // Keep the reply under what a client reads.
        size += row.cert.len() + row.auth.len() + 1024;
        if size > kokon_link::MAX_RECONCILE_REPLY / 2 {
            break;
        }
        let Ok(auth) = serde_json::from_str(&row.auth) else {
            tracing::debug!(request_id = %row.request_id, "a kept authorisation does not parse");
            continue;
        };
        jobs.push(kokon_proto::BilledJob {
            auth,
            receipt: ReceiptEnvelope {
                receipt: row.receipt,
                cert: row.cert,
            },
        });
    }
    Ok(kokon_proto::ReconcileReply { owed, jobs })
}
