//! A small client for the toncenter v3 HTTP API (the subset Kokon uses):
//! account states, get-methods, sending messages, and finding the
//! transaction a message caused. Public providers serve it; so does
//! `contracts/sandbox/server.js` over the TON emulator.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use kokon_money::{Address, Nanotons};
use serde::Deserialize;
use tonlib_core::cell::{ArcCell, BagOfCells, Cell};

use crate::TonError;

/// Largest response body accepted.
const MAX_RESPONSE: usize = 4 << 20;

#[derive(Clone, Debug)]
pub struct TonApi {
    base: String,
    key: Option<String>,
    http: reqwest::Client,
}

/// Whether an account exists and runs code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Active,
    Uninit,
    Frozen,
    Nonexist,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Account {
    #[serde(deserialize_with = "amount")]
    pub balance: Nanotons,
    pub status: Status,
}

/// A get-method's result stack entry.
#[derive(Clone, Debug)]
pub enum Entry {
    Num(num_bigint::BigInt),
    Cell(ArcCell),
    Null,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Transaction {
    pub account: String,
    pub hash: String,
    #[serde(deserialize_with = "amount")]
    pub total_fees: Nanotons,
    pub description: Description,
    pub in_msg: Option<Msg>,
    #[serde(default)]
    pub out_msgs: Vec<Msg>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Description {
    #[serde(default)]
    pub aborted: bool,
    pub compute_ph: Compute,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Compute {
    #[serde(default)]
    pub skipped: bool,
    pub exit_code: Option<i32>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Msg {
    pub hash: String,
    pub source: Option<String>,
    pub destination: Option<String>,
    #[serde(default, deserialize_with = "opt_amount")]
    pub value: Option<Nanotons>,
    #[serde(default, deserialize_with = "opt_amount")]
    pub fwd_fee: Option<Nanotons>,
    #[serde(default)]
    pub bounce: Option<bool>,
    #[serde(default)]
    pub bounced: Option<bool>,
}

impl Transaction {
    /// The exit code, when the transaction failed. A plain payment to an
    /// account without code (a wallet not deployed yet) runs nothing and is
    /// credited all the same: that is not a failure; a bounceable message
    /// there bounces, and is one (-1).
    pub fn failure(&self) -> Option<i32> {
        let c = &self.description.compute_ph;
        if !self.description.aborted {
            return None;
        }
        if c.skipped {
            let bounces = self.in_msg.as_ref().and_then(|m| m.bounce).unwrap_or(true);
            return bounces.then_some(-1);
        }
        Some(c.exit_code.unwrap_or(0))
    }
}

fn amount<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Nanotons, D::Error> {
    let s = String::deserialize(d)?;
    if s.is_empty() || s.len() > 39 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(serde::de::Error::custom("amount must be a decimal string"));
    }
    s.parse().map_err(serde::de::Error::custom)
}

fn opt_amount<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Nanotons>, D::Error> {
    #[derive(Deserialize)]
    struct W(#[serde(deserialize_with = "amount")] Nanotons);
    Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
}

#[derive(Deserialize)]
struct GetResult {
    exit_code: i32,
    #[serde(default)]
    stack: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct Sent {
    message_hash: String,
}

#[derive(Deserialize)]
struct Txs {
    transactions: Vec<Transaction>,
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, TonError> {
    serde_json::from_slice(body).map_err(|e| TonError::BadResponse(e.to_string()))
}

/// A `runGetMethod` answer: its stack, or the method's failure.
pub fn parse_get_result(method: &str, body: &[u8]) -> Result<Vec<Entry>, TonError> {
    let r: GetResult = parse_json(body)?;
    if r.exit_code != 0 {
        return Err(TonError::GetMethod {
            method: method.to_string(),
            exit_code: r.exit_code,
        });
    }
    r.stack.iter().map(entry).collect()
}

/// A `transactions` or `transactionsByMessage` answer.
pub fn parse_transactions(body: &[u8]) -> Result<Vec<Transaction>, TonError> {
    Ok(parse_json::<Txs>(body)?.transactions)
}

pub fn boc_b64(cell: &Cell) -> Result<String, TonError> {
    Ok(B64.encode(BagOfCells::from_root(cell.clone()).serialize(true)?))
}

fn parse_boc(b64: &str) -> Result<ArcCell, TonError> {
    let bytes = B64
        .decode(b64)
        .map_err(|e| TonError::BadResponse(format!("bad base64: {e}")))?;
    crate::boc::parse(&bytes)
}

fn entry(v: &serde_json::Value) -> Result<Entry, TonError> {
    let bad = || TonError::BadResponse(format!("unexpected stack entry {v}"));
    let ty = v.get("type").and_then(|t| t.as_str()).ok_or_else(bad)?;
    let value = v.get("value").and_then(|t| t.as_str());
    match ty {
        "num" => {
            let s = value.ok_or_else(bad)?;
            let (neg, digits) = match s.strip_prefix('-') {
                Some(d) => (true, d),
                None => (false, s),
            };
            let hex = digits.strip_prefix("0x").ok_or_else(bad)?;
            let n = num_bigint::BigInt::parse_bytes(hex.as_bytes(), 16).ok_or_else(bad)?;
            Ok(Entry::Num(if neg { -n } else { n }))
        }
        "cell" | "slice" => Ok(Entry::Cell(parse_boc(value.ok_or_else(bad)?)?)),
        "null" => Ok(Entry::Null),
        _ => Err(bad()),
    }
}

impl TonApi {
    /// `base` is the API root (for example `https://toncenter.com` or the
    /// sandbox's `http://127.0.0.1:PORT`); `key` is sent as `X-API-Key`.
    pub fn new(base: &str, key: Option<String>) -> Result<Self, TonError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| TonError::Http(e.to_string()))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            key,
            http,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, TonError> {
        parse_json(&self.call_raw(req).await?)
    }

    /// The response body (at most 4 MiB) of a successful call.
    async fn call_raw(&self, req: reqwest::RequestBuilder) -> Result<Vec<u8>, TonError> {
        let req = match &self.key {
            Some(k) => req.header("X-API-Key", k),
            None => req,
        };
        let mut resp = req
            .send()
            .await
            .map_err(|e| TonError::Http(e.to_string()))?;
        let status = resp.status();
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| TonError::Http(e.to_string()))?
        {
            if body.len() + chunk.len() > MAX_RESPONSE {
                return Err(TonError::BadResponse("response over 4 MiB".into()));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
            return Err(TonError::Api {
                status: status.as_u16(),
                message: text,
            });
        }
        Ok(body)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn account(&self, a: &Address) -> Result<Account, TonError> {
        let req = self
            .http
            .get(self.url("/api/v3/account"))
            .query(&[("address", a.to_string())]);
        self.call(req).await
    }

    /// Runs a get-method; a non-zero exit code is an error.
    pub async fn get(
        &self,
        a: &Address,
        method: &str,
        args: &[num_bigint::BigUint],
    ) -> Result<Vec<Entry>, TonError> {
        let stack: Vec<_> = args
            .iter()
            .map(|n| serde_json::json!({"type": "num", "value": format!("0x{}", n.to_str_radix(16))}))
            .collect();
        let body = serde_json::json!({"address": a.to_string(), "method": method, "stack": stack});
        let body = self
            .call_raw(self.http.post(self.url("/api/v3/runGetMethod")).json(&body))
            .await?;
        parse_get_result(method, &body)
    }

    /// Sends an external message; returns its hash (base64), under which
    /// [`TonApi::transaction_by_message`] finds what it did.
    pub async fn send(&self, message: &Cell) -> Result<String, TonError> {
        let body = serde_json::json!({"boc": boc_b64(message)?});
        let r: Sent = self
            .call(self.http.post(self.url("/api/v3/message")).json(&body))
            .await?;
        Ok(r.message_hash)
    }

    /// The transaction that consumed message `hash`, once there is one.
    pub async fn transaction_by_message(
        &self,
        hash: &str,
    ) -> Result<Option<Transaction>, TonError> {
        let req = self
            .http
            .get(self.url("/api/v3/transactionsByMessage"))
            .query(&[("msg_hash", hash), ("direction", "in")]);
        Ok(parse_transactions(&self.call_raw(req).await?)?
            .into_iter()
            .next())
    }

    /// The latest transactions of an account, newest first.
    pub async fn transactions(
        &self,
        a: &Address,
        limit: u32,
    ) -> Result<Vec<Transaction>, TonError> {
        let req = self.http.get(self.url("/api/v3/transactions")).query(&[
            ("account", a.to_string()),
            ("limit", limit.to_string()),
            ("sort", "desc".to_string()),
        ]);
        parse_transactions(&self.call_raw(req).await?)
    }

    /// The local sandbox's faucet (not part of toncenter's API).
    pub async fn sandbox_fund(&self, to: &Address, amount: Nanotons) -> Result<(), TonError> {
        let body = serde_json::json!({"address": to.to_string(), "amount": amount.to_string()});
        let _: serde_json::Value = self
            .call(self.http.post(self.url("/sandbox/fund")).json(&body))
            .await?;
        Ok(())
    }

    /// Moves the local sandbox's clock forward (not part of toncenter's API).
    pub async fn sandbox_advance(&self, secs: u64) -> Result<u64, TonError> {
        let body = serde_json::json!({"advance": secs});
        let r: serde_json::Value = self
            .call(self.http.post(self.url("/sandbox/time")).json(&body))
            .await?;
        r.get("now")
            .and_then(|n| n.as_u64())
            .ok_or_else(|| TonError::BadResponse("no `now`".into()))
    }
}

/// Reads get-method results in order.
pub struct Stack(std::vec::IntoIter<Entry>);

impl Stack {
    pub fn new(entries: Vec<Entry>) -> Self {
        Self(entries.into_iter())
    }

    fn next(&mut self) -> Result<Entry, TonError> {
        self.0
            .next()
            .ok_or_else(|| TonError::BadResponse("get-method returned too few values".into()))
    }

    pub fn num(&mut self) -> Result<num_bigint::BigInt, TonError> {
        match self.next()? {
            Entry::Num(n) => Ok(n),
            other => Err(TonError::BadResponse(format!(
                "expected a number, got {other:?}"
            ))),
        }
    }

    pub fn u128(&mut self) -> Result<u128, TonError> {
        let n = self.num()?;
        u128::try_from(&n).map_err(|_| TonError::BadResponse(format!("{n} out of range")))
    }

    pub fn u64(&mut self) -> Result<u64, TonError> {
        u64::try_from(self.u128()?).map_err(|_| TonError::BadResponse("out of range".into()))
    }

    pub fn key(&mut self) -> Result<kokon_money::PublicKey, TonError> {
        let n = self.num()?;
        let (sign, bytes) = n.to_bytes_be();
        if sign == num_bigint::Sign::Minus || bytes.len() > 32 {
            return Err(TonError::BadResponse("key out of range".into()));
        }
        let mut k = [0u8; 32];
        k[32 - bytes.len()..].copy_from_slice(&bytes);
        Ok(kokon_money::PublicKey(k))
    }

    pub fn bool(&mut self) -> Result<bool, TonError> {
        Ok(self.num()? != num_bigint::BigInt::ZERO)
    }

    pub fn cell(&mut self) -> Result<Option<ArcCell>, TonError> {
        match self.next()? {
            Entry::Cell(c) => Ok(Some(c)),
            Entry::Null => Ok(None),
            other => Err(TonError::BadResponse(format!(
                "expected a cell, got {other:?}"
            ))),
        }
    }

    pub fn address(&mut self) -> Result<Address, TonError> {
        let c = self
            .cell()?
            .ok_or_else(|| TonError::BadResponse("expected an address".into()))?;
        crate::bits::BitReader::new(&c).address()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(aborted: bool, skipped: bool, exit: Option<i32>, bounce: bool) -> Transaction {
        let j = serde_json::json!({
            "account": "0:AB", "hash": "h", "total_fees": "7",
            "description": {"aborted": aborted, "compute_ph": {"skipped": skipped, "exit_code": exit}},
            "in_msg": {"hash": "m", "source": "0:CD", "destination": "0:AB", "value": "5", "bounce": bounce},
            "out_msgs": [],
        });
        serde_json::from_value(j).unwrap()
    }

    #[test]
    fn failures_are_told_apart_from_plain_payments() {
        assert_eq!(tx(false, false, Some(0), true).failure(), None);
        assert_eq!(tx(true, false, Some(104), true).failure(), Some(104));
        // A payment to a wallet that is not deployed yet is credited.
        assert_eq!(tx(true, true, None, false).failure(), None);
        // A bounceable message to an account without code bounces.
        assert_eq!(tx(true, true, None, true).failure(), Some(-1));
    }

    #[test]
    fn get_results_parse_and_refuse() {
        let ok = br#"{"exit_code":0,"stack":[{"type":"num","value":"0x2a"},{"type":"num","value":"-0x1"},{"type":"null"}]}"#;
        let mut s = Stack::new(parse_get_result("m", ok).unwrap());
        assert_eq!(s.u64().unwrap(), 42);
        assert!(s.u128().is_err(), "negative is out of range");
        assert!(s.cell().unwrap().is_none());
        assert!(s.num().is_err(), "too few values");
        let failed = br#"{"exit_code":11,"stack":[]}"#;
        assert!(matches!(
            parse_get_result("m", failed),
            Err(TonError::GetMethod { exit_code: 11, .. })
        ));
        for bad in [
            &br#"{"exit_code":0,"stack":[{"type":"num","value":"42"}]}"#[..],
            br#"{"exit_code":0,"stack":[{"type":"cell","value":"not base64"}]}"#,
            br#"{"exit_code":0,"stack":[{"type":"tuple","value":[]}]}"#,
            b"[]",
        ] {
            assert!(
                parse_get_result("m", bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn amounts_are_decimal_strings() {
        assert!(parse_transactions(br#"{"transactions":[{"account":"a","hash":"h","total_fees":"1e3","description":{"compute_ph":{}}}]}"#).is_err());
        assert!(parse_transactions(br#"{"transactions":[{"account":"a","hash":"h","total_fees":"-1","description":{"compute_ph":{}}}]}"#).is_err());
        assert_eq!(
            parse_transactions(br#"{"transactions":[]}"#).unwrap().len(),
            0
        );
    }
}
