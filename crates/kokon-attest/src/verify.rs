//! The pure certificate verifier: bytes, policy and `now` in, a verdict out.

use x509_parser::certificate::X509Certificate;
use x509_parser::oid_registry::{
    OID_SIG_ED25519, OID_X509_EXT_BASIC_CONSTRAINTS, OID_X509_EXT_EXTENDED_KEY_USAGE,
    OID_X509_EXT_KEY_USAGE,
};
use x509_parser::prelude::FromDer;

use crate::evidence::binding;
use crate::td::TdConfig;
use crate::{
    AttestError, Claims, Evidence, EvidenceKind, Measurements, Policy, Role, SimulatedQuote, oids,
    sha256, tdx,
};

/// Proof that a peer's certificate passed [`verify_certificate`]. Only the
/// verifier can construct it; code paths that need an attested peer take one.
#[derive(Clone, Debug)]
pub struct VerifiedPeer {
    claims: Claims,
    evidence_kind: EvidenceKind,
    measurements: Measurements,
    image_hash: [u8; 32],
    key: [u8; 32],
    td: TdFacts,
    valid_until: u64,
}

/// What the evidence says about the TD beyond its measurements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TdFacts {
    pub config: TdConfig,
    /// Intel's TCB status (`None` for simulated evidence, which has no TCB).
    pub tcb_status: Option<String>,
    pub advisory_ids: Vec<String>,
}

impl TdFacts {
    pub fn is_debug(&self) -> bool {
        self.config.is_debug()
    }
}

impl VerifiedPeer {
    pub fn role(&self) -> Role {
        self.claims.role
    }
    pub fn claims(&self) -> &Claims {
        &self.claims
    }
    pub fn evidence_kind(&self) -> EvidenceKind {
        self.evidence_kind
    }
    pub fn measurements(&self) -> &Measurements {
        &self.measurements
    }
    pub fn image_hash(&self) -> [u8; 32] {
        self.image_hash
    }
    pub fn td(&self) -> &TdFacts {
        &self.td
    }
    /// Unix seconds until which this verdict holds as far as the certificate
    /// and its claims go (its expiry, or its claims' maximum age).
    pub fn valid_until(&self) -> u64 {
        self.valid_until
    }
    /// The peer's Ed25519 public key (the attested key it signs receipts with).
    pub fn ed25519_key(&self) -> [u8; 32] {
        self.key
    }
    /// Short identifier of the peer: the first 8 hex bytes of its TLS key hash.
    pub fn short_id(&self) -> &str {
        &self.claims.tls_key_sha256[..16]
    }
}

/// Verifies a peer's certificate against `policy` at unix time `now`, and
/// that the peer plays one of the `expected` roles.
pub fn verify_certificate(
    der: &[u8],
    policy: &Policy,
    expected: &[Role],
    now: u64,
) -> Result<VerifiedPeer, AttestError> {
    if der.len() > crate::MAX_CERT_DER {
        return Err(AttestError::CertTooLarge(der.len()));
    }
    let (rest, cert) =
        X509Certificate::from_der(der).map_err(|e| AttestError::CertMalformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(AttestError::CertMalformed(format!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    check_self_signed(&cert)?;
    check_validity(&cert, policy, now)?;
    let (claims_bytes, evidence_bytes) = kokon_extensions(&cert)?;
    let claims = Claims::parse(claims_bytes)?;
    let evidence = Evidence::parse(evidence_bytes)?;

    let spki = cert.public_key().raw;
    let key: [u8; 32] = cert
        .public_key()
        .subject_public_key
        .data
        .as_ref()
        .try_into()
        .map_err(|_| AttestError::WrongKeyType)?;
    let (measurements, report_data, td) = open_evidence(&evidence, &claims, policy, now)?;
    check_td(&td, policy)?;
    if report_data != binding(spki, claims_bytes) {
        return Err(AttestError::BindingMismatch);
    }
    check_claims(&claims, spki, policy, expected, now)?;
    let image_hash = measurements.image_hash();
    check_image(&claims, image_hash, policy)?;
    check_models(&claims, policy)?;
    check_upstream(&claims, policy)?;
    let not_after = cert.validity().not_after.timestamp().max(0) as u64;
    let valid_until = not_after.min(claims.issued_at.saturating_add(policy.max_age_secs));
    Ok(VerifiedPeer {
        valid_until,
        claims,
        evidence_kind: evidence.kind,
        measurements,
        image_hash,
        key,
        td,
    })
}

/// Workers' receipt certificates already verified, so that a certificate
/// (and, with TDX, its quote: about a millisecond) is verified once rather
/// than on every paid job. A verdict is reused until the certificate or its
/// claims expire, for at most [`ReceiptSigners::REVERIFY_SECS`] (time moves
/// on for collateral too), and only under the very policy that reached it
/// (a policy from a changed registry judges afresh). Refusals are not kept.
#[derive(Debug, Default)]
pub struct ReceiptSigners {
    seen: std::sync::Mutex<std::collections::HashMap<[u8; 32], Verdict>>,
}

#[derive(Debug)]
struct Verdict {
    key: kokon_money::PublicKey,
    until: u64,
    /// Kept alive, so that another policy can never be taken for it.
    under: std::sync::Arc<Policy>,
}

impl ReceiptSigners {
    pub const REVERIFY_SECS: u64 = 600;
    const MAX: usize = 1024;

    /// The attested key of the worker certificate (DER, hex) a receipt came
    /// with, if the certificate passes `policy` as a worker at `now`.
    pub fn signer(
        &self,
        cert_hex: &str,
        policy: &std::sync::Arc<Policy>,
        now: u64,
    ) -> Result<kokon_money::PublicKey, String> {
        let id = sha256(cert_hex.as_bytes());
        let lock = || self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = lock().get(&id)
            && now <= v.until
            && std::sync::Arc::ptr_eq(&v.under, policy)
        {
            return Ok(v.key);
        }
        // Verified without the lock: other jobs' cached lookups go on.
        let peer = verify_receipt_certificate(cert_hex, policy, now)?;
        let key = kokon_money::PublicKey(peer.ed25519_key());
        let mut seen = lock();
        if seen.len() >= Self::MAX {
            seen.retain(|_, v| now <= v.until);
        }
        if seen.len() < Self::MAX {
            let until = peer.valid_until().min(now + Self::REVERIFY_SECS);
            let under = policy.clone();
            seen.insert(id, Verdict { key, until, under });
        }
        Ok(key)
    }
}

/// The worker certificate (DER, hex) a receipt came with, verified as a
/// worker's at `now`.
fn verify_receipt_certificate(
    cert_hex: &str,
    policy: &Policy,
    now: u64,
) -> Result<VerifiedPeer, String> {
    if cert_hex.len() > 2 * crate::MAX_CERT_DER {
        return Err("receipt certificate too large".into());
    }
    let der = hex::decode(cert_hex).map_err(|_| "receipt certificate is not hex".to_string())?;
    verify_certificate(&der, policy, &[Role::Worker], now)
        .map_err(|e| format!("receipt certificate rejected: {e}"))
}

fn check_self_signed(cert: &X509Certificate<'_>) -> Result<(), AttestError> {
    if cert.public_key().algorithm.algorithm != OID_SIG_ED25519 {
        return Err(AttestError::WrongKeyType);
    }
    if cert.issuer().as_raw() != cert.subject().as_raw() {
        return Err(AttestError::NotSelfSigned);
    }
    cert.verify_signature(None)
        .map_err(|_| AttestError::BadSelfSignature)
}

fn check_validity(
    cert: &X509Certificate<'_>,
    policy: &Policy,
    now: u64,
) -> Result<(), AttestError> {
    let now = now as i64;
    let not_before = cert.validity().not_before.timestamp();
    let not_after = cert.validity().not_after.timestamp();
    if now + (policy.max_skew_secs as i64) < not_before {
        return Err(AttestError::CertNotYetValid { not_before, now });
    }
    if now > not_after {
        return Err(AttestError::CertExpired { not_after, now });
    }
    if not_after - not_before > policy.max_lifetime_secs {
        return Err(AttestError::CertLifetimeTooLong(not_after - not_before));
    }
    Ok(())
}

/// Finds the two Kokon extensions; refuses duplicates, non-critical ones and
/// any critical extension this verifier does not understand.
pub(crate) fn kokon_extensions<'a>(
    cert: &'a X509Certificate<'_>,
) -> Result<(&'a [u8], &'a [u8]), AttestError> {
    let (mut claims, mut evidence) = (None, None);
    let mut seen = std::collections::HashSet::new();
    for ext in cert.extensions() {
        let oid = ext.oid.to_id_string();
        if !seen.insert(oid.clone()) {
            return Err(AttestError::DuplicateExtension(oid));
        }
        match oid.as_str() {
            oids::CLAIMS_DOTTED => claims = Some((ext.value, ext.critical)),
            oids::EVIDENCE_DOTTED => evidence = Some((ext.value, ext.critical)),
            _ if ext.critical && !is_known_critical(&ext.oid) => {
                return Err(AttestError::UnknownCriticalExtension(oid));
            }
            _ => {}
        }
    }
    let (claims, c_crit) = claims.ok_or(AttestError::MissingExtension("claims"))?;
    let (evidence, e_crit) = evidence.ok_or(AttestError::MissingExtension("evidence"))?;
    if !c_crit {
        return Err(AttestError::ExtensionNotCritical("claims"));
    }
    if !e_crit {
        return Err(AttestError::ExtensionNotCritical("evidence"));
    }
    Ok((claims, evidence))
}

fn is_known_critical(oid: &x509_parser::der_parser::oid::Oid<'_>) -> bool {
    *oid == OID_X509_EXT_BASIC_CONSTRAINTS
        || *oid == OID_X509_EXT_KEY_USAGE
        || *oid == OID_X509_EXT_EXTENDED_KEY_USAGE
}

type Opened = (Measurements, [u8; 64], TdFacts);

/// Clients run outside TEEs (their key is their identity), so for a role
/// whose policy names no images, simulated evidence is accepted everywhere:
/// it proves only the binding, which is all a client can offer.
pub(crate) fn open_evidence(
    ev: &Evidence,
    claims: &Claims,
    policy: &Policy,
    now: u64,
) -> Result<Opened, AttestError> {
    let keyed_only = policy.role(claims.role).is_some_and(|r| r.images.is_none());
    match ev.kind {
        EvidenceKind::Simulated => {
            if !policy.allow_simulated && !keyed_only {
                return Err(AttestError::SimulatedNotAllowed);
            }
            let q = SimulatedQuote::parse(&ev.quote)?;
            let td = TdFacts {
                config: q.td,
                tcb_status: None,
                advisory_ids: Vec::new(),
            };
            Ok((q.measurements, q.report_data, td))
        }
        EvidenceKind::Tdx => {
            let trust = policy.tdx.as_ref().ok_or(AttestError::TdxNotConfigured)?;
            let r = tdx::verify_quote(&ev.quote, trust, now)?;
            let td = TdFacts {
                config: r.body.td,
                tcb_status: Some(r.tcb_status),
                advisory_ids: r.advisory_ids,
            };
            Ok((r.body.measurements, r.body.report_data, td))
        }
    }
}

/// The registry's judgement of the TD itself: its configuration
/// ([`crate::td::TdPolicy`]) and its platform's TCB status.
pub fn check_td(td: &TdFacts, policy: &Policy) -> Result<(), AttestError> {
    policy.td.check(&td.config, policy.allow_debug)?;
    match &td.tcb_status {
        Some(status) if !policy.tcb_statuses.contains(status) => {
            Err(AttestError::TcbStatusNotAllowed {
                status: status.clone(),
                allowed: policy.tcb_statuses.clone(),
            })
        }
        _ => Ok(()),
    }
}

/// A worker must name at least one model the registry allows.
fn check_models(claims: &Claims, policy: &Policy) -> Result<(), AttestError> {
    if claims.role != Role::Worker || policy.models.is_none() {
        return Ok(());
    }
    if claims.model_hashes().iter().any(|m| policy.allows_model(m)) {
        return Ok(());
    }
    Err(AttestError::ModelNotAllowed {
        models: claims.models.clone(),
    })
}

/// A worker whose engine forwards jobs elsewhere must forward to an
/// upstream the registry allows.
fn check_upstream(claims: &Claims, policy: &Policy) -> Result<(), AttestError> {
    match claims.engine.as_ref().and_then(|e| e.upstream.as_deref()) {
        Some(origin) if !policy.allows_upstream(origin) => {
            Err(AttestError::UpstreamNotAllowed(origin.to_string()))
        }
        _ => Ok(()),
    }
}

fn check_claims(
    claims: &Claims,
    spki: &[u8],
    policy: &Policy,
    expected: &[Role],
    now: u64,
) -> Result<(), AttestError> {
    let actual = hex::encode(sha256(spki));
    if claims.tls_key_sha256 != actual {
        return Err(AttestError::KeyMismatch {
            claimed: claims.tls_key_sha256.clone(),
            actual,
        });
    }
    if claims.protocol_version != kokon_proto::PROTOCOL_VERSION {
        return Err(AttestError::ProtocolVersion(claims.protocol_version));
    }
    let too_old = claims.issued_at + policy.max_age_secs < now;
    let in_future = claims.issued_at > now + policy.max_skew_secs;
    if too_old || in_future {
        return Err(AttestError::ClaimsStale {
            issued_at: claims.issued_at,
            now,
        });
    }
    if !expected.contains(&claims.role) {
        return Err(AttestError::UnexpectedRole {
            got: claims.role,
            expected: expected.to_vec(),
        });
    }
    Ok(())
}

fn check_image(claims: &Claims, image: [u8; 32], policy: &Policy) -> Result<(), AttestError> {
    let refused = || AttestError::ImageNotAllowed {
        role: claims.role,
        image: hex::encode(image),
    };
    let role_policy = policy.role(claims.role).ok_or_else(refused)?;
    match &role_policy.images {
        None => Ok(()),
        Some(list) if list.contains(&image) => Ok(()),
        Some(_) => Err(refused()),
    }
}
