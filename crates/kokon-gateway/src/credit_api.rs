//! The gateway's credit endpoints: a wallet's balance, requests and
//! purchases answered (a credit-paying gateway), and buying tokens for
//! another wallet (a gateway with a channel).
//!
//! ```text
//! GET  /v1/credits          → {"tokens", "ready_nanoton", "in_jobs_nanoton", "pending"}
//! POST /v1/credits/request  {"amount_nanoton"}            → {"requests"}
//! POST /v1/credits/buy      {"requests"}                  → {"responses", "amount_nanoton"}
//! POST /v1/credits/accept   {"requests", "responses"}     → {"added_nanoton"}
//! ```

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use kokon_money::Nanotons;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{ApiError, AppState};

fn no_wallet() -> ApiError {
    ApiError::bad_request(
        None,
        "this gateway holds no credit wallet (start it with `--credits PATH`)",
    )
}

pub(crate) async fn balance(State(s): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let cp = s.credits.as_ref().ok_or_else(no_wallet)?;
    let b = cp.balance(&s.link).await?;
    Ok(Json(json!({
        "tokens": b.tokens,
        "ready_nanoton": b.ready.to_string(),
        "in_jobs_nanoton": b.in_jobs.to_string(),
        "pending": b.pending,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RequestBody {
    amount_nanoton: String,
}

pub(crate) async fn request(
    State(s): State<Arc<AppState>>,
    Json(body): Json<RequestBody>,
) -> Result<Json<Value>, ApiError> {
    let cp = s.credits.as_ref().ok_or_else(no_wallet)?;
    let amount: Nanotons = body.amount_nanoton.parse().map_err(|_| {
        ApiError::bad_request(
            Some("amount_nanoton".into()),
            "not a whole number of nanotons",
        )
    })?;
    let requests = cp.request(&s.link, amount).await?;
    Ok(Json(json!({ "requests": requests })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BuyBody {
    requests: Vec<String>,
}

pub(crate) async fn buy(
    State(s): State<Arc<AppState>>,
    Json(body): Json<BuyBody>,
) -> Result<Json<Value>, ApiError> {
    let pay = s.pay.as_ref().ok_or_else(|| {
        ApiError::bad_request(None, "this gateway has no channel to buy credit tokens on")
    })?;
    let reply = crate::credit::buy(pay, &s.link, body.requests).await?;
    Ok(Json(json!({
        "responses": reply.responses,
        "amount_nanoton": reply.amount.to_string(),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AcceptBody {
    requests: Vec<String>,
    responses: Vec<String>,
}

pub(crate) async fn accept(
    State(s): State<Arc<AppState>>,
    Json(body): Json<AcceptBody>,
) -> Result<Json<Value>, ApiError> {
    let cp = s.credits.as_ref().ok_or_else(no_wallet)?;
    let added = cp.accept(&s.link, &body.requests, &body.responses).await?;
    Ok(Json(json!({ "added_nanoton": added.to_string() })))
}
