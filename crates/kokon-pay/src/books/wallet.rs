//! The client's credit wallet: the tokens it holds, the token requests
//! awaiting an answer (with what unblinds them), and its credit-paid jobs
//! awaiting their change. Durable like every money record: a request is
//! on disk before it is sent, a token before the request is forgotten, a
//! token marked for a job before the job is sent.

use std::path::Path;

use kokon_credit::{Blinded, PublicKeys, Token, TokenRequest, TokenResponse};
use kokon_money::Nanotons;
use rusqlite::{OptionalExtension, params};

use super::{get_meta, set_meta};
use crate::journal::{Durable, Journal};
use crate::sqlite::amount;
use crate::{PayError, fail};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (token TEXT PRIMARY KEY, value TEXT NOT NULL, job TEXT, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS pending (request TEXT PRIMARY KEY, purpose TEXT NOT NULL, seq INTEGER NOT NULL, level INTEGER NOT NULL, nonce TEXT NOT NULL, secret TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (request TEXT PRIMARY KEY, secret TEXT NOT NULL, prepaid TEXT NOT NULL);
";

/// Most tokens one job takes (the header's bound).
const MAX_JOB_TOKENS: usize = kokon_credit::MAX_TOKENS_PER_JOB;

fn wallet_err(m: impl Into<String>) -> PayError {
    PayError::Storage(m.into())
}

/// What the wallet holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Balance {
    /// Tokens ready to pay jobs: their count and value.
    pub tokens: u64,
    pub ready: Nanotons,
    /// Value of tokens sent with jobs whose change is not back yet.
    pub in_jobs: Nanotons,
    /// Token requests not answered yet.
    pub pending: u64,
}

/// Tokens taken for a job ([`Wallet::take`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taken {
    pub tokens: Vec<String>,
    /// The claim secret; the job's header carries its SHA-256.
    pub secret: [u8; 32],
    pub prepaid: Nanotons,
}

/// The wallet, for one issuer (a proxy's credit keys, pinned on first use).
pub struct Wallet {
    db: Journal,
    keys: PublicKeys,
}

impl std::fmt::Debug for Wallet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wallet")
            .field("issuer", &self.keys.issuer())
            .finish_non_exhaustive()
    }
}

impl Wallet {
    /// Opens the wallet at `path` for `keys`. A wallet holds one issuer's
    /// tokens: keys other than those it was first opened with are refused
    /// (a proxy showing this client keys of its own would mark it).
    pub fn open(path: &Path, keys: PublicKeys) -> Result<Self, PayError> {
        let mut db = Journal::open(path, SCHEMA)?;
        let doc = serde_json::to_string(&keys.document()).unwrap_or_default();
        match get_meta(db.conn(), "keys")? {
            Some(pinned) if pinned == doc => {}
            Some(_) => {
                return Err(wallet_err(format!(
                    "{}: the proxy's credit keys are not the ones this wallet's tokens \
                     were issued under; refusing them (a wallet holds one issuer's tokens)",
                    path.display()
                )));
            }
            None => db.commit(|tx| set_meta(tx, "keys", &doc))?,
        }
        Ok(Self { db, keys })
    }

    pub fn keys(&self) -> &PublicKeys {
        &self.keys
    }

    fn next_seq(&self) -> Result<i64, PayError> {
        Ok(self.db.conn().query_row(
            "SELECT max(s) FROM (SELECT max(seq) AS s FROM tokens UNION ALL SELECT max(seq) FROM pending)",
            [],
            |r| r.get::<_, Option<i64>>(0),
        )?
        .map_or(0, |s| s + 1))
    }

    /// New token requests of `levels` for `purpose` (replacing any kept
    /// for it), on disk before they are returned (to send).
    fn blind(&mut self, purpose: &str, levels: &[u8]) -> Result<Vec<String>, PayError> {
        let mut blinded = Vec::with_capacity(levels.len());
        for l in levels {
            blinded.push(self.keys.blind(*l).map_err(|e| wallet_err(e.to_string()))?);
        }
        let seq = self.next_seq()?;
        self.db.commit(|tx| {
            super::exec(tx, "DELETE FROM pending WHERE purpose = ?1", [purpose])?;
            for (i, b) in blinded.iter().enumerate() {
                super::exec(
                    tx,
                    "INSERT INTO pending (request, purpose, seq, level, nonce, secret) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        b.request.to_b64(),
                        purpose,
                        seq + i as i64,
                        b.level,
                        hex::encode(b.nonce),
                        hex::encode(&b.secret)
                    ],
                )?;
            }
            Ok(())
        })?;
        fail::hit("client.credit_blind.after_persist")?;
        Ok(blinded.iter().map(|b| b.request.to_b64()).collect())
    }

    /// Token requests worth `amount`, to buy (`purpose` `buy`); the same
    /// ones again while they are not answered ([`Self::pending`]).
    pub fn request(&mut self, amount: Nanotons) -> Result<Durable<Vec<String>>, PayError> {
        let levels = self
            .keys
            .schedule()
            .decompose(amount)
            .map_err(|e| wallet_err(e.to_string()))?;
        let purpose = format!("buy {}", self.next_seq()?);
        let requests = self.blind(&purpose, &levels)?;
        Ok(self.db.durable(requests))
    }

    /// Requests awaiting an answer, by purpose, in order.
    pub fn pending(&self) -> Result<Vec<(String, Vec<String>)>, PayError> {
        let mut st = self
            .db
            .conn()
            .prepare("SELECT purpose, request FROM pending ORDER BY purpose, seq")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for row in rows {
            let (purpose, req) = row?;
            match out.last_mut() {
                Some((p, reqs)) if *p == purpose => reqs.push(req),
                _ => out.push((purpose, vec![req])),
            }
        }
        Ok(out)
    }

    fn blinded(&self, request: &str) -> Result<Option<(String, Blinded)>, PayError> {
        let row: Option<(String, u8, String, String)> = self
            .db
            .conn()
            .prepare_cached("SELECT purpose, level, nonce, secret FROM pending WHERE request = ?1")?
            .query_row([request], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?;
        let Some((purpose, level, nonce, secret)) = row else {
            return Ok(None);
        };
        let bad = |_| wallet_err("a pending request is corrupt");
        let mut n = [0u8; 32];
        hex::decode_to_slice(&nonce, &mut n).map_err(bad)?;
        Ok(Some((
            purpose,
            Blinded {
                level,
                nonce: n,
                secret: hex::decode(&secret).map_err(bad)?,
                request: TokenRequest::from_b64(request).map_err(|e| wallet_err(e.to_string()))?,
            },
        )))
    }

    /// Unblinds the issuer's answers to `requests` into tokens (each must
    /// verify) and keeps them, in one step; a request answered before is
    /// skipped. With `job`, the job's change: its tokens sent are dropped
    /// (spent) and the job forgotten in the same step. Returns the value
    /// added.
    pub fn accept(
        &mut self,
        requests: &[String],
        responses: &[String],
        job: Option<&str>,
    ) -> Result<Durable<Nanotons>, PayError> {
        if requests.len() != responses.len() {
            return Err(wallet_err("as many answers as requests are needed"));
        }
        let mut tokens = Vec::new();
        for (req, resp) in requests.iter().zip(responses) {
            let Some((_, b)) = self.blinded(req)? else {
                continue;
            };
            let resp = TokenResponse::from_b64(resp).map_err(|e| wallet_err(e.to_string()))?;
            let token: Token = b
                .finish(&self.keys, &resp)
                .map_err(|e| wallet_err(e.to_string()))?;
            let value = self
                .keys
                .schedule()
                .value(b.level)
                .map_err(|e| wallet_err(e.to_string()))?;
            tokens.push((req.clone(), token.to_b64(), value));
        }
        let added: Nanotons = tokens.iter().map(|t| t.2).sum();
        let seq = self.next_seq()?;
        fail::hit("client.credit_accept.before_persist")?;
        self.db.commit(|tx| {
            for (i, (req, token, value)) in tokens.iter().enumerate() {
                super::exec(
                    tx,
                    "INSERT OR IGNORE INTO tokens (token, value, job, seq) VALUES (?1, ?2, NULL, ?3)",
                    params![token, value.to_string(), seq + i as i64],
                )?;
                super::exec(tx, "DELETE FROM pending WHERE request = ?1", [req])?;
            }
            if let Some(job) = job {
                super::exec(tx, "DELETE FROM tokens WHERE job = ?1", [job])?;
                super::exec(tx, "DELETE FROM jobs WHERE request = ?1", [job])?;
                super::exec(tx, "DELETE FROM pending WHERE purpose = ?1", [change_purpose(job)])?;
            }
            Ok(())
        })?;
        fail::hit("client.credit_accept.after_persist")?;
        Ok(self.db.durable(added))
    }

    /// Takes ready tokens worth at least `max_cost` for job `request_id`
    /// (the oldest first; the largest first if that needs too many), with
    /// a fresh claim secret, on disk before the job is sent.
    pub fn take(
        &mut self,
        request_id: &str,
        max_cost: Nanotons,
    ) -> Result<Durable<Taken>, PayError> {
        let ready = self.ready()?;
        let pick = |order: &[(String, Nanotons)]| {
            let mut sum = 0;
            let mut out = Vec::new();
            for (t, v) in order {
                if sum >= max_cost {
                    break;
                }
                sum += v;
                out.push(t.clone());
            }
            (sum >= max_cost && out.len() <= MAX_JOB_TOKENS).then_some((out, sum))
        };
        let mut largest = ready.clone();
        largest.sort_by_key(|t| std::cmp::Reverse(t.1));
        let total: Nanotons = ready.iter().map(|t| t.1).sum();
        let (tokens, prepaid) = pick(&ready).or_else(|| pick(&largest)).ok_or_else(|| {
            wallet_err(format!(
                "the wallet holds {total} nanotons in {} tokens; this job may cost up to \
                 {max_cost}; buy credits (`kokon credits buy`)",
                ready.len()
            ))
        })?;
        let mut secret = [0u8; 32];
        rand::fill(&mut secret);
        fail::hit("client.credit_take.before_persist")?;
        self.db.commit(|tx| {
            for t in &tokens {
                super::exec(
                    tx,
                    "UPDATE tokens SET job = ?2 WHERE token = ?1",
                    params![t, request_id],
                )?;
            }
            super::exec(
                tx,
                "INSERT INTO jobs (request, secret, prepaid) VALUES (?1, ?2, ?3)",
                params![request_id, hex::encode(secret), prepaid.to_string()],
            )?;
            Ok(())
        })?;
        fail::hit("client.credit_take.after_persist")?;
        Ok(self.db.durable(Taken {
            tokens,
            secret,
            prepaid,
        }))
    }

    fn ready(&self) -> Result<Vec<(String, Nanotons)>, PayError> {
        let mut st = self
            .db
            .conn()
            .prepare("SELECT token, value FROM tokens WHERE job IS NULL ORDER BY seq")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        rows.map(|r| {
            let (t, v) = r?;
            Ok((t, amount(v)?))
        })
        .collect()
    }

    /// Jobs whose change is still to claim, with their claim secrets.
    pub fn awaiting_change(&self) -> Result<Vec<(String, [u8; 32])>, PayError> {
        let mut st = self.db.conn().prepare("SELECT request, secret FROM jobs")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        rows.map(|r| {
            let (id, s) = r?;
            let mut secret = [0u8; 32];
            hex::decode_to_slice(&s, &mut secret)
                .map_err(|_| wallet_err("a job's secret is corrupt"))?;
            Ok((id, secret))
        })
        .collect()
    }

    /// Requests for a job's change in `levels` (the proxy's): the ones
    /// kept for it if they match, else new ones, on disk first.
    pub fn change_requests(
        &mut self,
        request_id: &str,
        levels: &[u8],
    ) -> Result<Vec<String>, PayError> {
        let purpose = change_purpose(request_id);
        if let Some((_, reqs)) = self.pending()?.into_iter().find(|(p, _)| *p == purpose) {
            let kept: Vec<u8> = reqs
                .iter()
                .filter_map(|r| self.blinded(r).ok().flatten().map(|(_, b)| b.level))
                .collect();
            if kept == levels {
                return Ok(reqs);
            }
        }
        self.blind(&purpose, levels)
    }

    /// The proxy never recorded job `request_id` (it refused it before
    /// redeeming): its tokens are ready again.
    pub fn give_back(&mut self, request_id: &str) -> Result<(), PayError> {
        self.db.commit(|tx| {
            super::exec(
                tx,
                "UPDATE tokens SET job = NULL WHERE job = ?1",
                [request_id],
            )?;
            super::exec(tx, "DELETE FROM jobs WHERE request = ?1", [request_id])?;
            Ok(())
        })?;
        self.db.flush().durable_blocking()
    }

    /// The proxy refused job `request_id`'s tokens as spent: they are
    /// dropped (this wallet's file was copied, or a token's job was
    /// recorded without this wallet learning it).
    pub fn drop_spent(&mut self, request_id: &str) -> Result<(), PayError> {
        self.db.commit(|tx| {
            super::exec(tx, "DELETE FROM tokens WHERE job = ?1", [request_id])?;
            super::exec(tx, "DELETE FROM jobs WHERE request = ?1", [request_id])?;
            Ok(())
        })?;
        self.db.flush().durable_blocking()
    }

    pub fn balance(&self) -> Result<Balance, PayError> {
        let mut b = Balance::default();
        for (_, v) in self.ready()? {
            b.tokens += 1;
            b.ready += v;
        }
        let mut st = self
            .db
            .conn()
            .prepare("SELECT value FROM tokens WHERE job IS NOT NULL")?;
        for v in st.query_map([], |r| r.get::<_, String>(0))? {
            b.in_jobs += amount(v?)?;
        }
        b.pending = self
            .db
            .conn()
            .query_row("SELECT count(*) FROM pending", [], |r| r.get::<_, i64>(0))?
            as u64;
        Ok(b)
    }
}

fn change_purpose(request_id: &str) -> String {
    format!("change {request_id}")
}
