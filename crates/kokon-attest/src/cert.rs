//! Issuing RA-TLS certificates.

use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PKCS_ED25519, PublicKeyData,
};
use time::OffsetDateTime;

use crate::evidence::{EvidenceSource, SimulatedSource, binding};
use crate::{Claims, Evidence, Role, oids};

/// What a node needs to make its certificate.
#[derive(Clone, Debug)]
pub struct IdentityParams {
    pub role: Role,
    /// SHA-256 of the node's effective configuration.
    pub config_sha256: [u8; 32],
    /// SHA-256 of each model file the node serves (workers).
    pub models: Vec<[u8; 32]>,
    /// The HPKE public key clients seal jobs to (workers).
    pub hpke_public: Option<[u8; 32]>,
    /// What runs the models (workers; see [`Claims::engine`]).
    pub engine: Option<kokon_proto::EngineDecl>,
    /// Certificate lifetime in seconds.
    pub lifetime_secs: u64,
    /// Unix seconds now (the caller's clock).
    pub now: u64,
}

/// A certificate with its private key.
pub struct Identity {
    pub cert_der: Vec<u8>,
    /// PKCS#8 DER of the Ed25519 key. Never leaves the process.
    pub key_pkcs8: Vec<u8>,
    pub claims: Claims,
    /// Unix seconds after which the certificate is invalid.
    pub not_after: u64,
}

// The private key must never be printed.
impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("claims", &self.claims)
            .finish_non_exhaustive()
    }
}

/// The raw parts of a certificate, exposed so tests can build malformed ones.
pub struct CertParts {
    pub claims: Vec<u8>,
    pub evidence: Vec<u8>,
    pub not_before: i64,
    pub not_after: i64,
    pub claims_critical: bool,
    pub evidence_critical: bool,
    /// Extra extensions: (OID, content, critical).
    pub extra: Vec<(Vec<u64>, Vec<u8>, bool)>,
}

/// Why a certificate could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("cannot build the certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("cannot get {kind} evidence: {why}")]
    Evidence {
        kind: crate::EvidenceKind,
        why: String,
    },
}

impl Identity {
    /// Makes a fresh key and a certificate carrying `simulated` evidence for
    /// the image `label` (see [`crate::SimulatedQuote::measurements_for`]).
    pub fn simulated(p: &IdentityParams, label: &str) -> Result<Self, IssueError> {
        Self::issue(p, &SimulatedSource::new(label))
    }

    /// Makes a fresh key and a certificate whose evidence (from `source`)
    /// binds the key and the claims.
    pub fn issue(p: &IdentityParams, source: &dyn EvidenceSource) -> Result<Self, IssueError> {
        let key = KeyPair::generate_for(&PKCS_ED25519)?;
        let spki = key.subject_public_key_info();
        let claims = Claims {
            role: p.role,
            protocol_version: kokon_proto::PROTOCOL_VERSION,
            tls_key_sha256: hex::encode(crate::sha256(&spki)),
            issued_at: p.now,
            config_sha256: hex::encode(p.config_sha256),
            models: p.models.iter().map(hex::encode).collect(),
            hpke_key: p.hpke_public.map(hex::encode),
            engine: p.engine.clone(),
        };
        let claims_bytes = claims.to_bytes();
        let quote = source
            .quote(&binding(&spki, &claims_bytes))
            .map_err(|why| IssueError::Evidence {
                kind: source.kind(),
                why,
            })?;
        let evidence = Evidence {
            kind: source.kind(),
            quote,
        };
        let now = p.now as i64;
        let parts = CertParts {
            claims: claims_bytes,
            evidence: evidence.to_bytes(),
            not_before: now - 60,
            not_after: now + p.lifetime_secs as i64,
            claims_critical: true,
            evidence_critical: true,
            extra: Vec::new(),
        };
        let cert_der = build_certificate(&key, &parts, p.role)?;
        Ok(Self {
            cert_der,
            key_pkcs8: key.serialize_der(),
            claims,
            not_after: parts.not_after as u64,
        })
    }
}

/// Builds a self-signed certificate from raw parts, signed by `key`.
pub fn build_certificate(
    key: &KeyPair,
    parts: &CertParts,
    role: Role,
) -> Result<Vec<u8>, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("kokon-{role}"));
    params.distinguished_name = dn;
    params.not_before = timestamp(parts.not_before)?;
    params.not_after = timestamp(parts.not_after)?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let mut push = |oid: &[u64], content: Vec<u8>, critical: bool| {
        let mut ext = CustomExtension::from_oid_content(oid, content);
        ext.set_criticality(critical);
        params.custom_extensions.push(ext);
    };
    push(oids::CLAIMS, parts.claims.clone(), parts.claims_critical);
    push(
        oids::EVIDENCE,
        parts.evidence.clone(),
        parts.evidence_critical,
    );
    for (oid, content, critical) in &parts.extra {
        push(oid, content.clone(), *critical);
    }
    Ok(params.self_signed(key)?.der().to_vec())
}

fn timestamp(secs: i64) -> Result<OffsetDateTime, rcgen::Error> {
    OffsetDateTime::from_unix_timestamp(secs).map_err(|_| {
        rcgen::Error::InvalidAsn1String(rcgen::InvalidAsn1String::PrintableString(
            "timestamp out of range".into(),
        ))
    })
}
