//! Credit tokens at the proxy: selling them on a channel, redeeming them
//! for a job, and giving a job's change. The rules of tokens are
//! `kokon-credit`'s, the records the books'; this is the glue, and what a
//! hostile client gets told.

use std::sync::Arc;

use kokon_credit::{Issuer, Schedule, Token, TokenRequest};
use kokon_money::Nanotons;
use kokon_money::receipt::Budget;
use kokon_pay::{CreditRefused, PayError};
use kokon_proto::credit::{
    ChangeReply, ChangeRequest, MAX_REQUESTS, SaleReply, SaleRequest, batch_hash,
};
use kokon_proto::{CreditPayment, ErrorCode, JobError, JobHeader};
use sha2::{Digest, Sha256};

use crate::pay::{ProxyPay, read_terms, unavailable};

fn bad(m: impl Into<String>) -> JobError {
    JobError::new(ErrorCode::BadRequest, m)
}

fn payment_required(m: impl Into<String>) -> JobError {
    JobError::new(ErrorCode::PaymentRequired, m)
}

fn issuer(pay: &ProxyPay) -> Result<&Arc<Issuer>, JobError> {
    pay.credits
        .as_ref()
        .ok_or_else(|| payment_required("this proxy sells no credit tokens; pay on a channel"))
}

/// What a refused credit operation tells the client (nothing was spent).
fn refused(e: PayError) -> JobError {
    match e {
        PayError::Credit(c @ (CreditRefused::Spent | CreditRefused::Repeated)) => payment_required(
            format!("credit refused: {c}; none of this job's tokens was taken"),
        ),
        PayError::Credit(c @ CreditRefused::Running(_)) => {
            JobError::new(ErrorCode::Unavailable, c.to_string())
        }
        PayError::Credit(c) => bad(c.to_string()),
        PayError::DuplicateRequest(id) => JobError::new(
            ErrorCode::DuplicateRequest,
            format!(
                "request id {id} was already used for a credit-paid job; its tokens were \
                 redeemed then, claim its change (`credits/change`)"
            ),
        ),
        PayError::Money(m) => payment_required(format!("cannot sell: {m}")),
        e => unavailable(e),
    }
}

/// The proxy's published keys.
pub(crate) fn keys(pay: &ProxyPay) -> Result<kokon_credit::KeysDocument, JobError> {
    Ok(issuer(pay)?.public().document())
}

/// Redeems a job's tokens: each verifies, none was spent, together they
/// cover the job's most possible cost at its price cap (the registry's
/// highest price when it names none). Spent and recorded in one durable
/// step before anything is routed.
pub(crate) async fn redeem(
    pay: &ProxyPay,
    header: &JobHeader,
    credit: &CreditPayment,
    budget: Budget,
    max_price_milli: u32,
) -> Result<(), JobError> {
    let issuer = issuer(pay)?;
    let mut prepaid: Nanotons = 0;
    let mut spent = Vec::with_capacity(credit.tokens.len());
    for t in &credit.tokens {
        let token =
            Token::from_b64(t).map_err(|e| payment_required(format!("credit token: {e}")))?;
        let r = issuer
            .redeem(&token)
            .map_err(|e| payment_required(format!("credit token: {e}")))?;
        prepaid += r.value;
        spent.push(hex::encode(r.spent_id));
    }
    let cap = header.max_price_milli.unwrap_or(max_price_milli);
    let max_cost = budget
        .max_cost(&pay.economics.prices, &header.model, cap)
        .map_err(|e| bad(format!("job budget cannot be priced: {e}")))?;
    if prepaid < max_cost {
        return Err(payment_required(format!(
            "the job's tokens are worth {prepaid} nanotons; it may cost up to {max_cost} \
             (its budget at price {cap}‰); nothing was spent"
        )));
    }
    let claim = hex::encode(credit.claim);
    let recorded = pay
        .books()
        .await
        .redeem(&header.request_id, &spent, prepaid, &claim);
    recorded.map_err(refused)?.wait().await.map_err(refused)?;
    tracing::debug!(tokens = spent.len(), "credit tokens redeemed");
    Ok(())
}

/// Gives a job that reached no worker its tokens back (it may be sent
/// again with them: a client sealing it again to fresh candidates).
pub(crate) async fn unredeem(pay: &ProxyPay, header: &JobHeader) {
    let Some(credit) = &header.credit else {
        return;
    };
    let spent: Vec<String> = credit
        .tokens
        .iter()
        .filter_map(|t| Token::from_b64(t).ok())
        .map(|t| hex::encode(kokon_credit::spent_id(&t)))
        .collect();
    if let Err(e) = pay.books().await.unredeem(&header.request_id, &spent) {
        tracing::warn!(error = %e, "cannot give an unsent job its tokens back");
    }
}

/// Signs a channel holder's token requests once the sale is billed to its
/// channel (durably). A retried batch is answered again, billed once.
pub(crate) async fn sell(pay: &ProxyPay, req: &SaleRequest) -> Result<SaleReply, JobError> {
    let issuer = issuer(pay)?;
    if req.requests.is_empty() || req.requests.len() > MAX_REQUESTS {
        return Err(bad(format!(
            "a sale takes 1 to {MAX_REQUESTS} token requests"
        )));
    }
    let mut amount: Nanotons = 0;
    let mut responses = Vec::with_capacity(req.requests.len());
    let schedule = issuer.public().schedule();
    for r in &req.requests {
        let r = TokenRequest::from_b64(r).map_err(|e| bad(e.to_string()))?;
        let level = issuer.level_of(&r).map_err(|e| bad(e.to_string()))?;
        amount += schedule.value(level).map_err(|e| bad(e.to_string()))?;
        responses.push(issuer.sign(&r).map_err(|e| bad(e.to_string()))?.to_b64());
    }
    if amount != req.amount {
        return Err(bad(format!(
            "the requests' denominations add up to {amount} nanotons, the sale says {}",
            req.amount
        )));
    }
    let known = pay.books().await.terms(&req.channel);
    let terms = match known {
        Some(t) => t,
        None => {
            let t = read_terms(pay, req.channel).await?;
            pay.books().await.update_terms(t).map_err(unavailable)?;
            t
        }
    };
    let batch = batch_hash(&req.requests);
    let hash = SaleRequest::signing_hash(&req.channel, &batch, amount);
    terms
        .client
        .verify(&hash, &req.signature)
        .map_err(|_| bad("the sale is not signed by the channel's client"))?;
    let batch = hex::encode(batch);
    let first = pay.books().await.sell_credits(&req.channel, &batch, amount);
    let sold = match first {
        Err(PayError::Money(_)) => {
            // A top-up may have raised the credit: look at the ledger.
            let terms = read_terms(pay, req.channel).await?;
            let mut books = pay.books().await;
            books.update_terms(terms).map_err(unavailable)?;
            books.sell_credits(&req.channel, &batch, amount)
        }
        other => other,
    };
    let sale = sold.map_err(refused)?.wait().await.map_err(refused)?;
    tracing::info!(channel = %req.channel.short(), tokens = responses.len(), amount = %amount, fresh = sale.fresh, "credit tokens sold");
    Ok(SaleReply { responses, amount })
}

/// Gives a credit-paid job's change, once it has ended: signed into the
/// client's requests when they make up the change exactly; otherwise only
/// the change and its denominations are told (nothing recorded).
pub(crate) async fn change(pay: &ProxyPay, req: &ChangeRequest) -> Result<ChangeReply, JobError> {
    let issuer = issuer(pay)?;
    if req.requests.len() > MAX_REQUESTS {
        return Err(bad(format!(
            "a change claim takes at most {MAX_REQUESTS} requests"
        )));
    }
    let mut secret = [0u8; 32];
    hex::decode_to_slice(&req.secret, &mut secret)
        .map_err(|_| bad("the claim secret is not 64 hex digits"))?;
    let claim = hex::encode(Sha256::digest(secret));
    let job = pay
        .books()
        .await
        .redemption(&req.request_id)
        .map_err(unavailable)?
        .filter(|j| j.claim == claim)
        .ok_or_else(|| bad("no credit-paid job with this id and claim secret"))?;
    if pay.books().await.credit_running(&req.request_id) {
        return Err(refused(
            CreditRefused::Running(req.request_id.clone()).into(),
        ));
    }
    let schedule: Schedule = issuer.public().schedule();
    let (returned, levels) = schedule
        .change(job.prepaid, job.billed)
        .map_err(|e| bad(e.to_string()))?;
    let mut asked = Vec::with_capacity(req.requests.len());
    for r in &req.requests {
        let r = TokenRequest::from_b64(r).map_err(|e| bad(e.to_string()))?;
        asked.push((issuer.level_of(&r).map_err(|e| bad(e.to_string()))?, r));
    }
    if asked.iter().map(|(l, _)| *l).ne(levels.iter().copied()) {
        return Ok(ChangeReply {
            returned,
            levels,
            responses: Vec::new(),
        });
    }
    let responses = asked
        .iter()
        .map(|(_, r)| issuer.sign(r).map(|s| s.to_b64()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    let requests = hex::encode(batch_hash(&req.requests));
    let given =
        pay.books()
            .await
            .claim_change(&req.request_id, &claim, &requests, (job.billed, returned));
    given.map_err(refused)?.wait().await.map_err(refused)?;
    tracing::debug!(tokens = responses.len(), "credit change given");
    Ok(ChangeReply {
        returned,
        levels,
        responses,
    })
}
