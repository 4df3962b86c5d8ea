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
use kokon_proto::{CloseReply, CloseRequest, ErrorCode, JobEnd, JobError, JobHeader};
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

fn unavailable(e: PayError) -> JobError {
    JobError::new(ErrorCode::Unavailable, format!("ledger unavailable: {e}"))
}

/// Checks the job's payment header and reserves its maximum cost at the
/// picked worker's price.
pub(crate) async fn admit(
    pay: &ProxyPay,
    header: &JobHeader,
    price_milli: u32,
) -> Result<Admitted, JobError> {
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
    let auth = header.auth_hash(&p.channel, p.max_prompt_tokens, p.max_completion_tokens);
    // `None`: look at the ledger first (unknown channel, or one that may
    // have been topped up or closed since we last looked).
    let try_admit =
        |books: &mut ProxyBooks, last_try: bool| {
            let terms = match books.terms(&p.channel) {
                Some(t) => t,
                None if last_try => {
                    return Some(Err(cannot_cover(p.channel, PayError::NoChannel(p.channel))));
                }
                None => return None,
            };
            if terms.client.verify(&auth, &p.signature).is_err() {
                return Some(Err(payment_required(
                    "the job's payer signature does not match the channel's client key".into(),
                )));
            }
            match books.admit(&p.channel, max_cost) {
                Ok(r) => Some(Ok(r)),
                Err(PayError::Money(
                    MoneyError::OverCredit { .. } | MoneyError::ChannelNotOpen,
                )) if !last_try => None,
                Err(e) => Some(Err(cannot_cover(p.channel, e))),
            }
        };
    // (The guard must not live into the match: the arm locks again.)
    let first = try_admit(&mut *pay.books().await, false);
    let admitted = match first {
        Some(r) => r,
        None => {
            let terms = read_terms(pay, p.channel).await?;
            let mut books = pay.books().await;
            books.update_terms(terms).map_err(unavailable)?;
            try_admit(&mut books, true)
                .unwrap_or_else(|| Err(cannot_cover(p.channel, PayError::NoChannel(p.channel))))
        }
    };
    admitted.map(|reservation| Admitted {
        reservation,
        budget,
    })
}

fn cannot_cover(channel: Address, e: PayError) -> JobError {
    payment_required(format!("channel {channel} cannot cover this job: {e}"))
}

/// The ledger's terms of `channel`, read without holding the books.
async fn read_terms(pay: &ProxyPay, channel: Address) -> Result<ChannelTerms, JobError> {
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

/// Verifies the worker's receipt and bills it (on disk before the End frame
/// goes on). Consumes the reservation whatever happens. Returns the
/// worker's new vault voucher.
pub(crate) async fn bill(
    pay: &ProxyPay,
    policy: &Policy,
    header: &JobHeader,
    a: Admitted,
    served: &Served,
    end: &JobEnd,
    now: u64,
) -> Result<Signed<WorkerVoucher>, JobError> {
    let checked = check_receipt(pay, policy, header, &a, served, end, now);
    let mut books = pay.books().await;
    let (receipt, cost) = match checked {
        Ok(x) => x,
        Err(e) => {
            books.release(a.reservation);
            return Err(e);
        }
    };
    let bill = Bill {
        request_id: &header.request_id,
        worker: served.payout,
        receipt,
        cost,
    };
    let cannot_bill = |e| JobError::new(ErrorCode::Unavailable, format!("cannot bill: {e}"));
    let billed = books.bill(a.reservation, bill).map_err(cannot_bill)?;
    drop(books);
    // Group commit: bills finishing together share this fsync.
    billed.wait().await.map_err(cannot_bill)
}

fn check_receipt<'e>(
    pay: &ProxyPay,
    policy: &Policy,
    header: &JobHeader,
    a: &Admitted,
    served: &Served,
    end: &'e JobEnd,
    now: u64,
) -> Result<(&'e Signed<kokon_money::Receipt>, Nanotons), JobError> {
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
    Ok((&env.receipt, cost))
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
