//! The routing header of a job: all the proxy reads to route it.
//!
//! Carried as HTTP headers on the job request, so the body stays opaque.

use http_names::*;

/// Header names, lower-case as HTTP/2 requires.
pub mod http_names {
    pub const REQUEST_ID: &str = "kokon-request-id";
    pub const MODEL: &str = "kokon-model";
    pub const KIND: &str = "kokon-kind";
    pub const MAX_PRICE: &str = "kokon-max-price";
    pub const CHANNEL: &str = "kokon-channel";
    pub const BUDGET: &str = "kokon-budget";
    pub const PAYER_SIG: &str = "kokon-payer-sig";
    pub const AUTH_EXPIRES: &str = "kokon-auth-expires";
    pub const SEALED: &str = "kokon-sealed";
    pub const CREDIT: &str = "kokon-credit";
    pub const CREDIT_CLAIM: &str = "kokon-credit-claim";
}

use kokon_money::receipt::Budget;
use kokon_money::{Address, Signature};

/// How a job is paid: the client's channel and the channel key's signature
/// over [`JobHeader::auth_hash`]. Only the proxy sees it: it is never
/// forwarded to workers, so a worker cannot replay it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Payment {
    pub channel: Address,
    /// The proxy refuses the authorisation after this time (unix seconds).
    pub expires_unix: u64,
    /// Ed25519 by the channel's client key over [`JobHeader::auth_hash`].
    pub signature: Signature,
}

/// How a job is paid without a channel: Privacy Pass tokens (base64url,
/// checked by the proxy) worth at least its most possible cost, and the
/// SHA-256 of a secret with which the client claims its change. Only the
/// proxy sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreditPayment {
    pub tokens: Vec<String>,
    pub claim: [u8; 32],
}

/// Most tokens one job redeems (they travel in one header).
pub const MAX_CREDIT_TOKENS: usize = 16;
/// Longest token, base64url: 354 bytes.
const MAX_TOKEN_LEN: usize = 472;

const MAX_ID_LEN: usize = 64;
const MAX_MODEL_LEN: usize = 128;

/// What kind of work a job is. The proxy may route and bill by kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// OpenAI chat completion.
    Chat,
    /// OpenAI legacy text completion.
    Completion,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Chat => "chat",
            JobKind::Completion => "completion",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "chat" => Some(JobKind::Chat),
            "completion" => Some(JobKind::Completion),
            _ => None,
        }
    }
}

/// The routing header of a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobHeader {
    /// Unique per job, chosen by the client (`[A-Za-z0-9_-]`, at most 64 bytes).
    pub request_id: String,
    /// Model name as announced by workers.
    pub model: String,
    pub kind: JobKind,
    /// Highest worker price coefficient the client accepts, in thousandths
    /// (1000 = the registry's base price). `None` accepts any price.
    pub max_price_milli: Option<u32>,
    /// Tokens the client pays for at most (paid jobs): the proxy reserves
    /// credit for it, the worker refuses a longer prompt and stops at the
    /// completion bound.
    pub budget: Option<Budget>,
    /// `None` on networks without payments, and on the proxy → worker hop.
    pub payment: Option<Payment>,
    /// Paid by credit tokens instead of a channel (never both); `None` on
    /// the proxy → worker hop.
    pub credit: Option<CreditPayment>,
    /// The payload is a [`crate::sealed::SealedJob`] (end-to-end encrypted
    /// to its candidate workers), not a plaintext [`crate::JobRequest`].
    pub sealed: bool,
}

/// A header that is missing or malformed. Names the header at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("header `{0}` is missing")]
    Missing(&'static str),
    #[error("header `{0}` is malformed")]
    Malformed(&'static str),
}

impl JobHeader {
    /// Writes the header onto a request's header map.
    pub fn write(&self, headers: &mut http_headers::HeaderMap) {
        let mut put = |name: &'static str, value: &str| {
            if let Ok(v) = http_headers::HeaderValue::from_str(value) {
                headers.insert(name, v);
            }
        };
        put(REQUEST_ID, &self.request_id);
        put(MODEL, &self.model);
        put(KIND, self.kind.as_str());
        if let Some(p) = self.max_price_milli {
            put(MAX_PRICE, &p.to_string());
        }
        if let Some(b) = &self.budget {
            put(BUDGET, &format!("{},{}", b.prompt, b.completion));
        }
        if self.sealed {
            put(SEALED, "1");
        }
        if let Some(p) = &self.payment {
            put(CHANNEL, &p.channel.to_string());
            put(AUTH_EXPIRES, &p.expires_unix.to_string());
            put(PAYER_SIG, &p.signature.to_string());
        }
        if let Some(c) = &self.credit {
            put(CREDIT, &c.tokens.join(","));
            put(CREDIT_CLAIM, &hex::encode(c.claim));
        }
    }

    /// Reads and validates the header from a request's header map.
    pub fn read(headers: &http_headers::HeaderMap) -> Result<Self, HeaderError> {
        let get = |name: &'static str| -> Result<Option<&str>, HeaderError> {
            headers
                .get(name)
                .map(|v| v.to_str().map_err(|_| HeaderError::Malformed(name)))
                .transpose()
        };
        let need = |name: &'static str| get(name)?.ok_or(HeaderError::Missing(name));

        let request_id = need(REQUEST_ID)?;
        if !valid_id(request_id) {
            return Err(HeaderError::Malformed(REQUEST_ID));
        }
        let model = need(MODEL)?;
        if !valid_model(model) {
            return Err(HeaderError::Malformed(MODEL));
        }
        let kind = JobKind::parse(need(KIND)?).ok_or(HeaderError::Malformed(KIND))?;
        let max_price_milli = get(MAX_PRICE)?
            .map(|s| {
                s.parse::<u32>()
                    .map_err(|_| HeaderError::Malformed(MAX_PRICE))
            })
            .transpose()?;
        let budget = get(BUDGET)?.map(read_budget).transpose()?;
        let sealed = match get(SEALED)? {
            None => false,
            Some("1") => true,
            Some(_) => return Err(HeaderError::Malformed(SEALED)),
        };
        let payment = match get(CHANNEL)? {
            None => None,
            Some(ch) => {
                // A payment without a budget would authorise nothing.
                budget.ok_or(HeaderError::Missing(BUDGET))?;
                Some(read_payment(ch, need(AUTH_EXPIRES)?, need(PAYER_SIG)?)?)
            }
        };
        let credit = match get(CREDIT)? {
            None => None,
            Some(tokens) => {
                budget.ok_or(HeaderError::Missing(BUDGET))?;
                if payment.is_some() {
                    return Err(HeaderError::Malformed(CREDIT));
                }
                Some(read_credit(tokens, need(CREDIT_CLAIM)?)?)
            }
        };
        Ok(Self {
            request_id: request_id.into(),
            model: model.into(),
            kind,
            max_price_milli,
            budget,
            payment,
            credit,
            sealed,
        })
    }

    /// What the payer signs to authorise this job on its channel: the
    /// request id, model, kind, price cap and budget of this header, the
    /// SHA-256 of the payload, the channel (whose address commits to the
    /// proxy's key, so the authorisation is good at that proxy only) and an
    /// expiry. A captured signature cannot carry another prompt, another
    /// budget or price, or outlive its expiry.
    pub fn auth_hash(&self, budget: Budget, scope: &AuthScope) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"kokon/job-auth/v2\0");
        for part in [self.request_id.as_str(), &self.model, self.kind.as_str()] {
            h.update((part.len() as u32).to_be_bytes());
            h.update(part.as_bytes());
        }
        match self.max_price_milli {
            None => h.update([0]),
            Some(p) => {
                h.update([1]);
                h.update(p.to_be_bytes());
            }
        }
        h.update(budget.prompt.to_be_bytes());
        h.update(budget.completion.to_be_bytes());
        h.update(scope.payload_sha256);
        h.update([scope.channel.workchain as u8]);
        h.update(scope.channel.hash);
        h.update(scope.expires_unix.to_be_bytes());
        h.finalize().into()
    }

    /// What a sealed job and every chunk of its response are bound to: the
    /// header as the worker gets it (request id, model, kind, price cap,
    /// budget). A proxy that alters any of it on the way to the worker, or
    /// moves a sealed payload under another job's header, gets a job that
    /// does not open.
    pub fn binding(&self) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"kokon/job-binding/v1\0");
        for part in [self.request_id.as_str(), &self.model, self.kind.as_str()] {
            h.update((part.len() as u32).to_be_bytes());
            h.update(part.as_bytes());
        }
        match self.max_price_milli {
            None => h.update([0]),
            Some(p) => {
                h.update([1]);
                h.update(p.to_be_bytes());
            }
        }
        match self.budget {
            None => h.update([0]),
            Some(b) => {
                h.update([1]);
                h.update(b.prompt.to_be_bytes());
                h.update(b.completion.to_be_bytes());
            }
        }
        h.finalize().into()
    }

    /// The header as the proxy forwards it to a worker: the budget stays,
    /// the payment (channel, signature) does not leave the proxy.
    pub fn for_worker(&self) -> Self {
        Self {
            payment: None,
            credit: None,
            ..self.clone()
        }
    }
}

/// What a job authorisation is bound to beyond the header itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthScope {
    pub channel: Address,
    /// SHA-256 of the job payload as sent.
    pub payload_sha256: [u8; 32],
    pub expires_unix: u64,
}

impl AuthScope {
    pub fn new(channel: Address, payload: &[u8], expires_unix: u64) -> Self {
        use sha2::Digest;
        Self {
            channel,
            payload_sha256: sha2::Sha256::digest(payload).into(),
            expires_unix,
        }
    }
}

fn read_budget(budget: &str) -> Result<Budget, HeaderError> {
    let bad_budget = || HeaderError::Malformed(BUDGET);
    let (p, c) = budget.split_once(',').ok_or_else(bad_budget)?;
    Ok(Budget {
        prompt: p.parse::<u64>().map_err(|_| bad_budget())?,
        completion: c.parse::<u64>().map_err(|_| bad_budget())?,
    })
}

fn read_payment(channel: &str, expires: &str, sig: &str) -> Result<Payment, HeaderError> {
    let channel = Address::parse(channel).map_err(|_| HeaderError::Malformed(CHANNEL))?;
    let expires_unix = expires
        .parse::<u64>()
        .map_err(|_| HeaderError::Malformed(AUTH_EXPIRES))?;
    let signature = serde_json::from_value::<Signature>(serde_json::Value::String(sig.into()))
        .map_err(|_| HeaderError::Malformed(PAYER_SIG))?;
    Ok(Payment {
        channel,
        expires_unix,
        signature,
    })
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Model names: 1–128 bytes of `[A-Za-z0-9._:/-]`.
pub fn valid_model(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_MODEL_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:/-".contains(&b))
}

fn read_credit(tokens: &str, claim: &str) -> Result<CreditPayment, HeaderError> {
    let bad = HeaderError::Malformed(CREDIT);
    let tokens: Vec<String> = tokens.split(',').map(str::to_string).collect();
    let token_ok = |t: &String| {
        !t.is_empty()
            && t.len() <= MAX_TOKEN_LEN
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if tokens.len() > MAX_CREDIT_TOKENS || !tokens.iter().all(token_ok) {
        return Err(bad);
    }
    let mut c = [0u8; 32];
    hex::decode_to_slice(claim, &mut c).map_err(|_| HeaderError::Malformed(CREDIT_CLAIM))?;
    Ok(CreditPayment { tokens, claim: c })
}

/// Re-export of the `http` header types used here, so callers need not name the crate.
pub mod http_headers {
    pub use http::header::{HeaderMap, HeaderValue};
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> JobHeader {
        JobHeader {
            request_id: "req-1".into(),
            model: "smollm2-135m-instruct".into(),
            kind: JobKind::Chat,
            max_price_milli: Some(1500),
            budget: Some(Budget {
                prompt: 300,
                completion: 64,
            }),
            payment: Some(Payment {
                channel: Address::new(0, [7; 32]),
                expires_unix: 1_900_000_000,
                signature: Signature([9; 64]),
            }),
            credit: None,
            sealed: true,
        }
    }

    fn credit_paid() -> JobHeader {
        JobHeader {
            payment: None,
            credit: Some(CreditPayment {
                tokens: vec!["AAIx".into(), "AAIy_-".into()],
                claim: [5; 32],
            }),
            ..sample()
        }
    }

    #[test]
    fn credit_tokens_round_trip_and_never_reach_a_worker() {
        let mut h = http_headers::HeaderMap::new();
        credit_paid().write(&mut h);
        assert_eq!(JobHeader::read(&h).unwrap(), credit_paid());
        let w = credit_paid().for_worker();
        assert!(w.credit.is_none() && w.payment.is_none());
        let mut h = http_headers::HeaderMap::new();
        w.write(&mut h);
        assert!(h.get(CREDIT).is_none() && h.get(CREDIT_CLAIM).is_none());
    }

    #[test]
    fn hostile_credit_headers_are_refused() {
        let with = |tokens: &str, claim: &str| {
            let mut h = http_headers::HeaderMap::new();
            credit_paid().write(&mut h);
            h.insert(CREDIT, tokens.parse().unwrap());
            h.insert(CREDIT_CLAIM, claim.parse().unwrap());
            JobHeader::read(&h)
        };
        let claim = hex::encode([5u8; 32]);
        assert!(with("AAIx", &claim).is_ok());
        let many = vec!["AAIx"; MAX_CREDIT_TOKENS + 1].join(",");
        assert_eq!(with(&many, &claim), Err(HeaderError::Malformed(CREDIT)));
        assert_eq!(with("AA+x", &claim), Err(HeaderError::Malformed(CREDIT)));
        assert_eq!(with("AAIx,,", &claim), Err(HeaderError::Malformed(CREDIT)));
        assert_eq!(
            with(&"A".repeat(473), &claim),
            Err(HeaderError::Malformed(CREDIT))
        );
        assert_eq!(
            with("AAIx", "beef"),
            Err(HeaderError::Malformed(CREDIT_CLAIM))
        );
        // Tokens and a channel at once: refused, not paid twice or chosen.
        let mut h = http_headers::HeaderMap::new();
        sample().write(&mut h);
        h.insert(CREDIT, "AAIx".parse().unwrap());
        h.insert(CREDIT_CLAIM, claim.parse().unwrap());
        assert_eq!(JobHeader::read(&h), Err(HeaderError::Malformed(CREDIT)));
        // Tokens without a budget authorise nothing.
        let mut h = http_headers::HeaderMap::new();
        JobHeader {
            budget: None,
            ..credit_paid()
        }
        .write(&mut h);
        assert_eq!(JobHeader::read(&h), Err(HeaderError::Missing(BUDGET)));
    }

    #[test]
    fn the_sealed_flag_round_trips_and_is_strict() {
        let mut h = http_headers::HeaderMap::new();
        let plain = JobHeader {
            sealed: false,
            ..sample()
        };
        plain.write(&mut h);
        assert!(h.get(SEALED).is_none());
        assert!(!JobHeader::read(&h).unwrap().sealed);
        h.insert(SEALED, "yes".parse().unwrap());
        assert_eq!(JobHeader::read(&h), Err(HeaderError::Malformed(SEALED)));
    }

    #[test]
    fn the_binding_covers_what_the_worker_gets_and_not_the_payment() {
        let h = sample();
        let base = h.binding();
        assert_eq!(h.for_worker().binding(), base, "the payment is not bound");
        let changed = [
            JobHeader {
                request_id: "req-2".into(),
                ..h.clone()
            },
            JobHeader {
                model: "other".into(),
                ..h.clone()
            },
            JobHeader {
                kind: JobKind::Completion,
                ..h.clone()
            },
            JobHeader {
                max_price_milli: None,
                ..h.clone()
            },
            JobHeader {
                budget: Some(Budget {
                    prompt: 300,
                    completion: 65,
                }),
                ..h.clone()
            },
            JobHeader {
                budget: None,
                ..h.clone()
            },
        ];
        for (i, c) in changed.iter().enumerate() {
            assert_ne!(c.binding(), base, "change {i} must change the binding");
        }
    }

    #[test]
    fn round_trips() {
        let mut h = http_headers::HeaderMap::new();
        sample().write(&mut h);
        assert_eq!(JobHeader::read(&h).unwrap(), sample());
    }

    #[test]
    fn names_the_bad_header() {
        let mut h = http_headers::HeaderMap::new();
        sample().write(&mut h);
        h.insert(MODEL, "bad model!".parse().unwrap());
        assert_eq!(JobHeader::read(&h), Err(HeaderError::Malformed(MODEL)));
        h.remove(MODEL);
        assert_eq!(JobHeader::read(&h), Err(HeaderError::Missing(MODEL)));
        let mut h2 = http_headers::HeaderMap::new();
        sample().write(&mut h2);
        h2.insert(MAX_PRICE, "-1".parse().unwrap());
        assert_eq!(JobHeader::read(&h2), Err(HeaderError::Malformed(MAX_PRICE)));
        let mut h3 = http_headers::HeaderMap::new();
        sample().write(&mut h3);
        h3.insert(BUDGET, "12".parse().unwrap());
        assert_eq!(JobHeader::read(&h3), Err(HeaderError::Malformed(BUDGET)));
        h3.insert(BUDGET, "1,1".parse().unwrap());
        h3.insert(CHANNEL, "0:abc".parse().unwrap());
        assert_eq!(JobHeader::read(&h3), Err(HeaderError::Malformed(CHANNEL)));
        h3.remove(CHANNEL);
        h3.remove(BUDGET);
        let unpaid = JobHeader::read(&h3).unwrap();
        assert_eq!(unpaid.payment, None, "no channel: unpaid");
        assert_eq!(unpaid.budget, None);
        sample().write(&mut h3);
        h3.remove(BUDGET);
        assert_eq!(JobHeader::read(&h3), Err(HeaderError::Missing(BUDGET)));
        h2.insert(REQUEST_ID, "x".repeat(65).parse().unwrap());
        assert_eq!(
            JobHeader::read(&h2),
            Err(HeaderError::Malformed(REQUEST_ID))
        );
    }

    #[test]
    fn the_worker_gets_the_budget_but_never_the_payment() {
        let mut h = http_headers::HeaderMap::new();
        sample().for_worker().write(&mut h);
        for name in [CHANNEL, PAYER_SIG, AUTH_EXPIRES] {
            assert!(h.get(name).is_none(), "{name} must not reach a worker");
        }
        let read = JobHeader::read(&h).unwrap();
        assert_eq!(read.budget, sample().budget);
        assert_eq!(read.payment, None);
    }

    #[test]
    fn a_payment_without_expiry_is_refused() {
        let mut h = http_headers::HeaderMap::new();
        sample().write(&mut h);
        h.remove(AUTH_EXPIRES);
        assert_eq!(JobHeader::read(&h), Err(HeaderError::Missing(AUTH_EXPIRES)));
        h.insert(AUTH_EXPIRES, "soon".parse().unwrap());
        assert_eq!(
            JobHeader::read(&h),
            Err(HeaderError::Malformed(AUTH_EXPIRES))
        );
    }

    #[test]
    fn the_authorisation_binds_payload_price_budget_and_expiry() {
        let h = sample();
        let budget = h.budget.unwrap();
        let scope = AuthScope::new(Address::new(0, [7; 32]), b"{\"prompt\":1}", 100);
        let base = h.auth_hash(budget, &scope);
        let other_payload = AuthScope::new(scope.channel, b"{\"prompt\":2}", 100);
        let later = AuthScope {
            expires_unix: 101,
            ..scope
        };
        let other_channel = AuthScope {
            channel: Address::new(0, [8; 32]),
            ..scope
        };
        let mut pricier = h.clone();
        pricier.max_price_milli = None;
        let mut completion = h.clone();
        completion.kind = JobKind::Completion;
        let bigger = Budget {
            prompt: budget.prompt + 1,
            ..budget
        };
        for (what, hash) in [
            ("payload", h.auth_hash(budget, &other_payload)),
            ("expiry", h.auth_hash(budget, &later)),
            ("channel", h.auth_hash(budget, &other_channel)),
            ("price cap", pricier.auth_hash(budget, &scope)),
            ("kind", completion.auth_hash(budget, &scope)),
            ("budget", h.auth_hash(bigger, &scope)),
        ] {
            assert_ne!(hash, base, "the {what} must change the authorisation");
        }
        assert_eq!(h.auth_hash(budget, &scope), base, "deterministic");
    }
}
