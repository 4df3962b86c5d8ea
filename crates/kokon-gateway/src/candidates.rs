//! The workers a job is sealed to: the proxy says which workers it would
//! route to (their RA-TLS certificates), and the gateway verifies each one
//! itself against its own registry policy — the image, the model, the TCB,
//! freshness — and takes the HPKE key from the verified evidence. The
//! proxy's word is never taken: a certificate it altered, or one of its
//! own, fails here, and a job is never sent in plaintext instead.
//!
//! Verdicts are kept per certificate (a TDX quote costs about a
//! millisecond to verify) until the certificate or its claims expire, and
//! only under the policy that reached them: when the registry changes,
//! every verdict and list is forgotten. Each
//! model's candidate list is asked again after [`LIST_TTL_SECS`], or at
//! once when the proxy says the list went stale.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kokon_attest::{AttestError, Policy, Role, verify_certificate};
use kokon_proto::{CandidatesRequest, EngineDecl, ErrorCode, JobError};
use kokon_seal::Candidate;

/// A model's candidate list is reused for this long.
pub const LIST_TTL_SECS: u64 = 5;

/// Verdicts kept (certificates seen); the oldest go first.
const MAX_VERDICTS: usize = 256;

/// Candidate lists kept (models × price caps).
const MAX_LISTS: usize = 64;

/// Why a certificate the proxy offered is not a candidate.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum CandidateError {
    #[error("its attestation is refused: {0}")]
    Attestation(#[from] AttestError),
    #[error("its certificate carries no HPKE key to seal jobs to")]
    NoSealingKey,
    #[error("it attests no model the registry allows as `{0}`")]
    ModelNotAttested(String),
}

impl CandidateError {
    /// A stable code for the refusal (the attestation check that failed,
    /// `no_sealing_key`, `model_not_attested`): for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Attestation(e) => e.reason(),
            Self::NoSealingKey => "no_sealing_key",
            Self::ModelNotAttested(_) => "model_not_attested",
        }
    }
}

/// A worker that passed this gateway's verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// What a job is sealed to: its certificate hash and attested HPKE key.
    pub candidate: Candidate,
    /// The engine its claims declare (an upstream engine names where it
    /// forwards jobs, and passed the registry's list of upstreams).
    pub engine: EngineDecl,
}

/// Verifies `der` as a worker that may run `model`: what was verified and
/// until when it holds.
pub fn verify(
    der: &[u8],
    model: &str,
    policy: &Policy,
    now: u64,
) -> Result<(Verified, u64), CandidateError> {
    let peer = verify_certificate(der, policy, &[Role::Worker], now)?;
    let claims = peer.claims();
    let public = claims.hpke_public().ok_or(CandidateError::NoSealingKey)?;
    if !claims
        .model_hashes()
        .iter()
        .any(|h| policy.allows_model_named(model, h))
    {
        return Err(CandidateError::ModelNotAttested(model.into()));
    }
    let engine =
        claims
            .engine
            .clone()
            .ok_or(CandidateError::Attestation(AttestError::ClaimsMalformed(
                "a worker's claims must declare its engine".into(),
            )))?;
    let candidate = Candidate {
        id: kokon_attest::sha256(der),
        public,
    };
    Ok((Verified { candidate, engine }, peer.valid_until()))
}

/// What the gateway knows of candidates: verdicts per certificate and
/// model, and each model's latest list.
#[derive(Default)]
pub struct Candidates {
    /// The policy the verdicts and lists were reached under (kept alive, so
    /// that a new policy is never taken for it).
    under: Mutex<Option<Arc<Policy>>>,
    verdicts: Mutex<HashMap<VerdictKey, (Verified, u64)>>,
    lists: Mutex<HashMap<ListKey, (Vec<Verified>, u64)>>,
}

/// A certificate's hash and the model it was judged for.
type VerdictKey = ([u8; 32], String);
/// A model and the price cap its list was asked with.
type ListKey = (String, Option<u32>);

impl std::fmt::Debug for Candidates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Candidates").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Candidates {
    /// Forgets every verdict and list when `policy` is not the one they
    /// were reached under.
    fn follow(&self, policy: &Arc<Policy>) {
        let mut under = lock(&self.under);
        if under.as_ref().is_some_and(|p| Arc::ptr_eq(p, policy)) {
            return;
        }
        lock(&self.verdicts).clear();
        lock(&self.lists).clear();
        *under = Some(policy.clone());
    }

    /// The list for `req` asked at most [`LIST_TTL_SECS`] ago under
    /// `policy`, if any.
    pub fn cached(
        &self,
        req: &CandidatesRequest,
        policy: &Arc<Policy>,
        now: u64,
    ) -> Option<Vec<Verified>> {
        self.follow(policy);
        let lists = lock(&self.lists);
        let (list, at) = lists.get(&(req.model.clone(), req.max_price_milli))?;
        (now < at.saturating_add(LIST_TTL_SECS)).then(|| list.clone())
    }

    /// Forgets the list for `req` (the proxy said it went stale).
    pub fn forget(&self, req: &CandidatesRequest) {
        lock(&self.lists).remove(&(req.model.clone(), req.max_price_milli));
    }

    /// Verifies the certificates the proxy offered for `req` (each once
    /// while its verdict holds) and keeps the list of those that pass.
    /// Refusals are logged with their reason and are never cached.
    pub fn judge(
        &self,
        req: &CandidatesRequest,
        certs: &[Vec<u8>],
        policy: &Arc<Policy>,
        now: u64,
    ) -> Result<Vec<Verified>, JobError> {
        self.follow(policy);
        let mut list = Vec::new();
        let mut refused = Vec::new();
        for der in certs.iter().take(kokon_seal::MAX_CANDIDATES) {
            match self.verdict(der, &req.model, policy, now) {
                Ok(v) if !list.contains(&v) => list.push(v),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(
                        model = %req.model, reason = e.reason(), error = %e,
                        "candidate worker refused"
                    );
                    refused.push(e);
                }
            }
        }
        if list.is_empty() {
            return Err(none_verified(&req.model, certs.len(), refused.first()));
        }
        let mut lists = lock(&self.lists);
        if lists.len() >= MAX_LISTS {
            lists.clear();
        }
        lists.insert(
            (req.model.clone(), req.max_price_milli),
            (list.clone(), now),
        );
        Ok(list)
    }

    fn verdict(
        &self,
        der: &[u8],
        model: &str,
        policy: &Policy,
        now: u64,
    ) -> Result<Verified, CandidateError> {
        let key = (kokon_attest::sha256(der), model.to_string());
        if let Some((v, until)) = lock(&self.verdicts).get(&key)
            && now < *until
        {
            return Ok(v.clone());
        }
        let (c, until) = verify(der, model, policy, now)?;
        let mut verdicts = lock(&self.verdicts);
        if verdicts.len() >= MAX_VERDICTS {
            verdicts.retain(|_, (_, u)| now < *u);
            if verdicts.len() >= MAX_VERDICTS {
                verdicts.clear();
            }
        }
        verdicts.insert(key, (c.clone(), until));
        Ok(c)
    }
}

fn none_verified(model: &str, offered: usize, first: Option<&CandidateError>) -> JobError {
    match first {
        None => JobError::new(
            ErrorCode::WorkerUnavailable,
            format!("the proxy offers no worker for `{model}` that jobs can be sealed to"),
        ),
        Some(e) => JobError::new(
            ErrorCode::WorkerUnavailable,
            format!(
                "none of the {offered} workers the proxy offers for `{model}` passed this \
                 gateway's verification (the first: {e}); the job was not sent"
            ),
        ),
    }
}

/// The keys of an Oblivious HTTP gateway, from its signed key document:
/// only if its certificate verifies as a proxy under `policy` now (image,
/// TCB, freshness) and its attested key signed the keys.
pub fn verify_gateway_keys(
    doc: &kokon_ohttp::document::KeyDocument,
    policy: &Policy,
) -> Result<Vec<kokon_ohttp::KeyConfig>, String> {
    use kokon_attest::Clock as _;
    let der = doc.certificate_der().map_err(|e| e.to_string())?;
    let now = kokon_attest::SystemClock.now_unix();
    let peer = verify_certificate(&der, policy, &[Role::Proxy], now)
        .map_err(|e| format!("the gateway's certificate is refused: {e}"))?;
    doc.verified_keys(&peer.ed25519_key())
        .map_err(|e| e.to_string())
}
