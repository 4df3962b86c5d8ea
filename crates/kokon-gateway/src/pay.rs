//! The client gateway's side of payments: authorising jobs on its channel,
//! verifying each worker's receipt, and paying with the next voucher.

use std::sync::Arc;
use std::time::Duration;

use kokon_attest::{Clock, Policy, SystemClock};
use kokon_money::receipt::{self, Budget, Expect};
use kokon_money::{Hash32, Nanotons, PriceTable};
use kokon_pay::Settlement;
use kokon_pay::books::client::ClientBooks;
use kokon_proto::{
    AuthScope, ErrorCode, JobError, JobHeader, JobRequest, OutputMeter, Payment, ReceiptEnvelope,
};
use kokon_seal::ResponseReader;
use tokio::sync::Mutex;

use crate::ProxyLink;

/// Prompt tokens allowed beyond the payload's size, for the chat template.
const TEMPLATE_TOKENS: u64 = 256;

/// How long a job authorisation stays good: long enough for the proxy to
/// take it after a slow link, short enough that a captured one is soon
/// worthless (the proxy also refuses a request id it has seen).
const AUTH_LIFETIME_SECS: u64 = 120;

/// Payment settings and state of a gateway.
pub struct ClientPay {
    pub(crate) books: Mutex<ClientBooks>,
    pub(crate) prices: PriceTable,
    /// The registry policy in force (the gateway's link makes it follow its
    /// own, see [`ClientPay::follow`]).
    policy: tokio::sync::watch::Receiver<Arc<Policy>>,
    pub(crate) signers: kokon_attest::verify::ReceiptSigners,
    /// The policy each recent job was signed under (see [`Authorised`]).
    signed_under: std::sync::Mutex<JobPolicies>,
    /// Read to notice top-ups when the channel runs low.
    pub(crate) ledger: Option<Arc<dyn Settlement>>,
    /// Wakes the voucher delivery task.
    pub(crate) wake: tokio::sync::Notify,
    /// Wakes the reconcile task (a job ended without its `End`).
    pub(crate) reconcile: tokio::sync::Notify,
    /// Per-job troubles, logged as aggregates (per job: debug only).
    pub(crate) events: kokon_link::JobEvents,
}

impl ClientPay {
    pub fn new(
        books: ClientBooks,
        prices: PriceTable,
        policy: Arc<Policy>,
        ledger: Option<Arc<dyn Settlement>>,
    ) -> Self {
        Self {
            books: Mutex::new(books),
            prices,
            policy: tokio::sync::watch::channel(policy).1,
            ledger,
            signers: Default::default(),
            signed_under: Default::default(),
            wake: tokio::sync::Notify::new(),
            reconcile: tokio::sync::Notify::new(),
            events: Default::default(),
        }
    }

    /// Judges receipts by `policy` from now on, as it changes.
    pub(crate) fn follow(&mut self, policy: tokio::sync::watch::Receiver<Arc<Policy>>) {
        self.policy = policy;
    }

    /// The registry policy in force now.
    pub(crate) fn policy(&self) -> Arc<Policy> {
        self.policy.borrow().clone()
    }

    fn judged_under(&self, request_id: &str, policy: &Arc<Policy>) {
        let mut jobs = self.signed_under.lock().unwrap_or_else(|e| e.into_inner());
        jobs.put(request_id, policy);
    }

    /// The policy the job `request_id` was signed under, if this process
    /// signed it recently; else the policy in force now.
    pub(crate) fn policy_of(&self, request_id: &str) -> Arc<Policy> {
        let jobs = self.signed_under.lock().unwrap_or_else(|e| e.into_inner());
        jobs.get(request_id).unwrap_or_else(|| self.policy())
    }

    pub async fn books(&self) -> tokio::sync::MutexGuard<'_, ClientBooks> {
        self.books.lock().await
    }
}

/// The policies recent jobs were signed under, the oldest forgotten first.
/// Nearly every job shares the one policy, so entries are cheap.
#[derive(Default)]
struct JobPolicies {
    by_id: std::collections::HashMap<String, Arc<Policy>>,
    order: std::collections::VecDeque<String>,
}

impl JobPolicies {
    /// Jobs remembered: far more than run at once or await a reconcile.
    const MAX: usize = 4096;

    fn put(&mut self, request_id: &str, policy: &Arc<Policy>) {
        if self.by_id.len() >= Self::MAX
            && let Some(oldest) = self.order.pop_front()
        {
            self.by_id.remove(&oldest);
        }
        if self
            .by_id
            .insert(request_id.to_string(), policy.clone())
            .is_none()
        {
            self.order.push_back(request_id.to_string());
        }
    }

    fn get(&self, request_id: &str) -> Option<Arc<Policy>> {
        self.by_id.get(request_id).cloned()
    }
}

/// What a paid job was admitted with, to check its receipt against.
pub(crate) struct Authorised {
    budget: Budget,
    /// The registry policy in force when the job was signed: its receipts
    /// are judged by it, so work done before a revocation is still paid.
    policy: Arc<Policy>,
}

/// What a job may use at most: its prompt (the plaintext job's size bounds
/// its tokens, the chat template added) and its completion (`max_tokens`),
/// each within the registry's maximum context.
pub(crate) fn budget(pay: &ClientPay, job: &JobRequest, plain_len: usize) -> Budget {
    budget_within(pay.policy().routing.max_context, job, plain_len)
}

/// [`budget`] under a registry's maximum context.
pub(crate) fn budget_within(max_context: u32, job: &JobRequest, plain_len: usize) -> Budget {
    let completion = job
        .params
        .max_tokens
        .unwrap_or(kokon_proto::job::DEFAULT_MAX_TOKENS);
    // No job is larger than the registry's maximum context (the proxy
    // refuses a budget above it; a longer prompt is refused as over budget).
    let most = u64::from(max_context);
    Budget {
        prompt: (plain_len as u64 + TEMPLATE_TOKENS).min(most),
        completion: u64::from(completion).min(most),
    }
}

/// Signs the job onto the channel: its budget (set on `header` before the
/// job was sealed, since the seal binds it; else from the payload) priced
/// within the price cap, against what the channel has left.
pub(crate) async fn authorise(
    pay: &ClientPay,
    header: &mut JobHeader,
    job: &JobRequest,
    payload: &[u8],
) -> Result<Authorised, JobError> {
    let budget = header
        .budget
        .unwrap_or_else(|| self::budget(pay, job, payload.len()));
    let coef = header.max_price_milli.unwrap_or(1000);
    let max_cost = budget
        .max_cost(&pay.prices, &header.model, coef)
        .map_err(|e| JobError::new(ErrorCode::BadRequest, format!("cannot price this job: {e}")))?;
    // Short of credit: the deposit may have grown (a top-up). The ledger is
    // read without holding the books, so other jobs are not held up.
    let ch = *pay.books().await.channel();
    if ch.remaining() < max_cost
        && let Some(ledger) = &pay.ledger
        && let Ok(Some(row)) = ledger.channel(ch.id).await
    {
        pay.books().await.set_deposit(row.deposit);
    }
    let books = pay.books().await;
    let ch = *books.channel();
    if ch.remaining() < max_cost {
        return Err(JobError::new(
            ErrorCode::PaymentRequired,
            format!(
                "channel {} has {} nanotons left, this job may cost up to {max_cost}; \
                 top up with `kokon channel topup --amount <TON>`",
                ch.id,
                ch.remaining()
            ),
        ));
    }
    let scope = AuthScope::new(ch.id, payload, SystemClock.now_unix() + AUTH_LIFETIME_SECS);
    header.budget = Some(budget);
    let signature = books.key().sign(&header.auth_hash(budget, &scope));
    header.payment = Some(Payment {
        channel: ch.id,
        expires_unix: scope.expires_unix,
        signature,
    });
    let policy = pay.policy();
    pay.judged_under(&header.request_id, &policy);
    Ok(Authorised { budget, policy })
}

/// A paid job in flight: everything needed to settle it at its End frame.
pub(crate) struct Paid {
    pub pay: Arc<ClientPay>,
    pub header: JobHeader,
    pub auth: Authorised,
}

impl Paid {
    pub async fn settle(
        &self,
        receipt: Option<&ReceiptEnvelope>,
        delivered: OutputMeter,
        answered: Option<&ResponseReader>,
    ) -> Result<Nanotons, JobError> {
        let job = (&self.header, &self.auth, answered);
        settle(&self.pay, job, receipt, delivered).await
    }
}

/// Verifies a receipt (the `End`'s, or the latest of a job cut short)
/// against what this gateway saw, pays for it (voucher on disk first), and
/// sends the voucher to the proxy. Returns the cost. `answered`: a sealed
/// job's reader — the receipt must be signed by the candidate whose keys
/// answered (or, before any chunk, by one of its candidates).
pub(crate) async fn settle(
    pay: &Arc<ClientPay>,
    (header, auth, answered): (&JobHeader, &Authorised, Option<&ResponseReader>),
    receipt: Option<&ReceiptEnvelope>,
    delivered: OutputMeter,
) -> Result<Nanotons, JobError> {
    let rejected = |m: String| {
        pay.events.note("receipt_rejected");
        tracing::debug!(request_id = %header.request_id, reason = %m, "receipt rejected; not paying");
        JobError::new(
            ErrorCode::ReceiptRejected,
            format!("the worker's receipt was rejected, nothing was paid: {m}"),
        )
    };
    let env = receipt.ok_or_else(|| rejected("no receipt".into()))?;
    if let Some(r) = answered {
        let cert = hex::decode(&env.cert).unwrap_or_default();
        if !r.may_have_run(&kokon_attest::sha256(&cert)) {
            return Err(rejected(
                "it is signed by a worker that did not answer this sealed job".into(),
            ));
        }
    }
    let now = SystemClock.now_unix();
    let worker = pay
        .signers
        .signer(&env.cert, &auth.policy, now)
        .map_err(rejected)?;
    let allowed = allowed_models(&auth.policy, &header.model);
    let expect = Expect {
        request_id: &header.request_id,
        model: &header.model,
        model_hashes: allowed.as_deref(),
        prices: &pay.prices,
        price_milli: None,
        max_price_milli: header.max_price_milli,
        budget: auth.budget,
        // The rule the proxy bills by (see `kokon_proto::meter`).
        completion_bound: Some(delivered.completion_bound()),
    };
    let cost =
        receipt::check(&env.receipt, &worker, &expect).map_err(|e| rejected(e.to_string()))?;
    let cannot_pay = |e| {
        JobError::new(
            ErrorCode::PaymentRequired,
            format!("cannot pay for this job: {e}"),
        )
    };
    let paid = pay
        .books()
        .await
        .pay(&header.request_id, &worker, &env.receipt, cost);
    // Group commit: payments finishing together share this fsync.
    let voucher = paid.map_err(cannot_pay)?.wait().await.map_err(cannot_pay)?;
    if voucher.is_some() {
        pay.wake.notify_one();
    }
    Ok(cost)
}

/// The registry's files for the model name `model`: a worker serving
/// another model under the name is not paid. `None`: the registry lists none.
fn allowed_models(policy: &Policy, model: &str) -> Option<Vec<Hash32>> {
    policy
        .model_hashes(model)
        .map(|l| l.iter().copied().map(Hash32).collect())
}

/// Delivers vouchers to the proxy, one at a time, until the gateway stops:
/// each wake-up sends the *latest* voucher (vouchers are cumulative, so it
/// covers every earlier one), retrying while the proxy is unreachable.
pub(crate) async fn deliver_vouchers(link: Arc<ProxyLink>, pay: Arc<ClientPay>) {
    let mut sent: Nanotons = 0;
    loop {
        pay.wake.notified().await;
        let mut attempt = 0u32;
        loop {
            let latest = pay.books().await.latest();
            let Ok(Some(v)) = latest.wait().await else {
                break;
            };
            if v.body.amount <= sent {
                break;
            }
            match link.send_voucher(&v).await {
                Ok(()) => {
                    sent = v.body.amount;
                    break;
                }
                Err(e) if e.code == ErrorCode::BadRequest => {
                    // Refused outright (e.g. the proxy already holds it).
                    tracing::debug!(error = %e.message, "voucher not taken");
                    sent = v.body.amount;
                    break;
                }
                Err(e) => {
                    if attempt == 0 {
                        tracing::warn!(error = %e.message, "voucher not delivered; retrying");
                    }
                    attempt += 1;
                    tokio::time::sleep(
                        Duration::from_millis(500).min(Duration::from_millis(50) * attempt),
                    )
                    .await;
                }
            }
        }
    }
}

/// Tells the proxy this client refuses the receipt it billed for
/// `request_id` (signed with the channel's key), so the proxy does not hold
/// it against the channel and withholds the worker's fee. Best effort: a
/// dispute that does not arrive leaves the receipt billed and unpaid.
pub(crate) async fn dispute(pay: &ClientPay, link: &ProxyLink, request_id: &str, reason: &str) {
    let req = {
        let mut books = pay.books().await;
        if let Err(e) = books.refuse(request_id) {
            pay.events.note("refusal_unrecorded");
            tracing::debug!(request_id, error = %e, "cannot record a refused receipt");
        }
        let channel = books.channel().id;
        let hash = kokon_proto::DisputeRequest::signing_hash(&channel, request_id);
        let mut reason = reason.to_string();
        if reason.len() > kokon_proto::control::MAX_DISPUTE_REASON {
            let mut end = kokon_proto::control::MAX_DISPUTE_REASON;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
        }
        kokon_proto::DisputeRequest {
            channel,
            request_id: request_id.to_string(),
            reason,
            signature: books.key().sign(&hash),
        }
    };
    match link.dispute(&req).await {
        Ok(()) => {
            pay.events.note("receipt_disputed");
            tracing::debug!(request_id, "receipt disputed at the proxy");
        }
        Err(e) => {
            pay.events.note("dispute_not_taken");
            tracing::debug!(request_id, error = %e.message, "dispute not taken");
        }
    }
}

/// Why a billed job the proxy offered is not paid.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NotPaid {
    /// Paid already, up to this receipt.
    Paid,
    /// This client did not sign the job's authorisation: nothing of it is
    /// this client's to pay (a proxy offering it is lying).
    NotOurs,
    /// The receipt does not hold against the authorisation (its signer,
    /// budget, price, model or request): refused and disputed.
    Refused(String),
}

/// Checks a billed job the proxy offered: the authorisation is this
/// client's own (its signature, its channel), the receipt is signed by an
/// attested worker for that request, within the budget and price cap the
/// client signed, and it is above what was paid. Returns the receipt's
/// signer and cost. The output bound is the proxy's (the bytes it relayed):
/// the client cannot count output it never received.
pub(crate) fn check_billed(
    books: &ClientBooks,
    pay: &ClientPay,
    job: &kokon_proto::BilledJob,
    now: u64,
) -> Result<(kokon_money::PublicKey, Nanotons), NotPaid> {
    let auth = &job.auth;
    if auth.channel != books.channel().id || !auth.signed_by(&books.payer()) {
        return Err(NotPaid::NotOurs);
    }
    let refused = |m: String| NotPaid::Refused(m);
    if books.refused(&auth.request_id).unwrap_or(false) {
        return Err(refused("refused when it was received".into()));
    }
    let policy = pay.policy_of(&auth.request_id);
    let worker = pay
        .signers
        .signer(&job.receipt.cert, &policy, now)
        .map_err(refused)?;
    let allowed = allowed_models(&policy, &auth.model);
    let expect = Expect {
        request_id: &auth.request_id,
        model: &auth.model,
        model_hashes: allowed.as_deref(),
        prices: &pay.prices,
        price_milli: None,
        max_price_milli: auth.max_price_milli,
        budget: auth.budget(),
        completion_bound: None,
    };
    let cost = receipt::check(&job.receipt.receipt, &worker, &expect)
        .map_err(|e| refused(e.to_string()))?;
    let paid = books
        .paid_for(&auth.request_id)
        .map_err(|e| refused(e.to_string()))?;
    if paid.is_some_and(|p| p >= cost) {
        return Err(NotPaid::Paid);
    }
    Ok((worker, cost))
}

/// What one reconcile did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Reconciled {
    /// What the proxy said the channel owed before.
    pub owed: Nanotons,
    pub offered: usize,
    /// Jobs paid (their increase), and how much in all.
    pub paid: usize,
    pub amount: Nanotons,
    pub refused: usize,
}

/// Asks the proxy for the channel's billed jobs and pays those it
/// verifies ([`check_billed`]) that were not paid (an `End` lost with a
/// broken link, a gateway crash); disputes the ones whose receipts do not
/// hold. Each payment is durable before its voucher is sent.
pub(crate) async fn reconcile(
    pay: &Arc<ClientPay>,
    link: &ProxyLink,
) -> Result<Reconciled, JobError> {
    let now = SystemClock.now_unix();
    let req = {
        let books = pay.books().await;
        let channel = books.channel().id;
        let hash = kokon_proto::ReconcileRequest::signing_hash(&channel, now);
        kokon_proto::ReconcileRequest {
            channel,
            unix: now,
            signature: books.key().sign(&hash),
        }
    };
    let reply = link.reconcile(&req).await?;
    let mut done = Reconciled {
        owed: reply.owed,
        offered: reply.jobs.len(),
        ..Default::default()
    };
    let cannot_pay = |e| JobError::new(ErrorCode::PaymentRequired, format!("cannot pay: {e}"));
    for job in &reply.jobs {
        let id = &job.auth.request_id;
        let paid = {
            let mut books = pay.books().await;
            match check_billed(&books, pay, job, now) {
                Ok((worker, cost)) => {
                    let before = books.paid_for(id).ok().flatten().unwrap_or(0);
                    let paid = books.pay(id, &worker, &job.receipt.receipt, cost);
                    Some((paid.map_err(cannot_pay)?, cost - before))
                }
                Err(NotPaid::Paid) => None,
                Err(NotPaid::NotOurs) => {
                    pay.events.note("billed_job_not_ours");
                    tracing::debug!(request_id = %id, "the proxy offered a job this client did not authorise; not paying");
                    None
                }
                Err(NotPaid::Refused(why)) => {
                    drop(books);
                    done.refused += 1;
                    dispute(pay, link, id, &why).await;
                    None
                }
            }
        };
        if let Some((durable, amount)) = paid {
            durable.wait().await.map_err(cannot_pay)?;
            done.paid += 1;
            done.amount += amount;
        }
    }
    if done.paid > 0 {
        tracing::info!(jobs = done.paid, amount = %done.amount, "paid billed jobs whose end was missed");
        pay.wake.notify_one();
    }
    Ok(done)
}

/// When a reconcile runs after a job ended without its `End`: the proxy
/// bills such a job once its worker's stream is over (it drains it for up
/// to 10 s), so a first pass comes soon and a second after the drain.
const RECONCILE_PASSES: [Duration; 2] = [Duration::from_secs(2), Duration::from_secs(12)];

/// Reconciles once at start (a restart after a crash may have missed
/// `End`s) and after each wake-up of `pay.reconcile`, until the gateway
/// stops.
pub(crate) async fn reconcile_loop(link: Arc<ProxyLink>, pay: Arc<ClientPay>) {
    reconcile_pass(&pay, &link).await;
    loop {
        pay.reconcile.notified().await;
        for wait in RECONCILE_PASSES {
            tokio::time::sleep(wait).await;
            if reconcile_pass(&pay, &link).await {
                break;
            }
        }
    }
}

/// One reconcile; whether it left nothing owed that it could not pay.
async fn reconcile_pass(pay: &Arc<ClientPay>, link: &ProxyLink) -> bool {
    match reconcile(pay, link).await {
        Ok(r) => r.owed <= r.amount,
        Err(e) => {
            tracing::debug!(error = %e.message, "reconcile failed");
            false
        }
    }
}

#[cfg(test)]
#[path = "pay_tests.rs"]
mod tests;
