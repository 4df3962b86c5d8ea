//! Why a certificate or its evidence was refused. One variant per reason, so
//! tests (and people) can tell them apart.

use crate::Role;

#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum AttestError {
    #[error("certificate of {0} bytes exceeds the {max}-byte limit", max = crate::MAX_CERT_DER)]
    CertTooLarge(usize),
    #[error("certificate is not valid DER X.509: {0}")]
    CertMalformed(String),
    #[error(
        "certificate chains are not accepted; a Kokon peer presents one self-signed certificate"
    )]
    ChainNotAllowed,
    #[error("certificate is not self-signed (issuer differs from subject)")]
    NotSelfSigned,
    #[error("certificate self-signature does not verify")]
    BadSelfSignature,
    #[error("certificate key is not Ed25519")]
    WrongKeyType,
    #[error("certificate is not valid yet (valid from {not_before}, now {now})")]
    CertNotYetValid { not_before: i64, now: i64 },
    #[error("certificate has expired (valid until {not_after}, now {now})")]
    CertExpired { not_after: i64, now: i64 },
    #[error("certificate validity of {0} s is longer than the policy allows")]
    CertLifetimeTooLong(i64),
    #[error("extension {0} is missing")]
    MissingExtension(&'static str),
    #[error("extension {0} appears more than once")]
    DuplicateExtension(String),
    #[error("extension {0} must be critical")]
    ExtensionNotCritical(&'static str),
    #[error("unknown critical extension {0}")]
    UnknownCriticalExtension(String),
    #[error("claims are malformed: {0}")]
    ClaimsMalformed(String),
    #[error("claims of {0} bytes exceed the limit")]
    ClaimsTooLarge(usize),
    #[error("evidence is malformed: {0}")]
    EvidenceMalformed(String),
    #[error("evidence of {0} bytes exceeds the limit")]
    EvidenceTooLarge(usize),
    #[error("evidence kind {0} is unknown")]
    UnknownEvidenceKind(u8),
    #[error(
        "simulated evidence is refused: the registry policy does not allow it (it is for test networks only)"
    )]
    SimulatedNotAllowed,
    #[error("report data does not bind this certificate's key and claims")]
    BindingMismatch,
    #[error("claims name TLS key {claimed} but the certificate key hashes to {actual}")]
    KeyMismatch { claimed: String, actual: String },
    #[error("claims were issued at {issued_at}, outside the allowed window around now ({now})")]
    ClaimsStale { issued_at: u64, now: u64 },
    #[error("claims speak protocol version {0}, this node speaks {want}", want = kokon_proto::PROTOCOL_VERSION)]
    ProtocolVersion(u16),
    #[error("peer role is {got}, expected one of {expected:?}")]
    UnexpectedRole { got: Role, expected: Vec<Role> },
    #[error("image hash {image} is not allowed for role {role} by the registry")]
    ImageNotAllowed { role: Role, image: String },
    #[error("none of the worker's models {models:?} is allowed by the registry")]
    ModelNotAllowed { models: Vec<String> },
    #[error("claims name model hash {0}, which is not 32 hex bytes")]
    ModelHashMalformed(String),
    #[error(
        "the worker's engine forwards jobs to {0}, an upstream the registry does not allow (prompts would leave the TEE)"
    )]
    UpstreamNotAllowed(String),
    #[error(
        "TDX evidence cannot be checked: no Intel collateral is loaded (run `kokon attest collateral fetch` or copy collateral into the cache directory)"
    )]
    TdxNotConfigured,
    #[error("TDX quote is malformed: {0}")]
    QuoteMalformed(String),
    #[error("quote is not a TDX quote (TEE type {0:#x})")]
    QuoteNotTdx(u32),
    #[error("quote's PCK certificate chain does not verify to Intel's root: {0}")]
    PckCertInvalid(String),
    #[error(
        "no collateral cached for platform FMSPC {0}; fetch it with `kokon attest collateral fetch`"
    )]
    CollateralMissing(String),
    #[error("collateral is outside its validity window (refresh it): {0}")]
    CollateralExpired(String),
    #[error("collateral does not verify: {0}")]
    CollateralInvalid(String),
    #[error("collateral is for another platform: {0}")]
    CollateralMismatch(String),
    #[error("quote signature does not verify: {0}")]
    QuoteSignatureInvalid(String),
    #[error("platform TCB matches no level in Intel's TCB info")]
    TcbLevelNotFound,
    #[error("platform TCB is revoked: {0}")]
    TcbRevoked(String),
    #[error("TCB status {status} is not accepted by the registry (accepted: {allowed:?})")]
    TcbStatusNotAllowed {
        status: String,
        allowed: Vec<String>,
    },
    #[error("debug TD refused: its memory is readable by the host; only test networks accept it")]
    DebugTdRefused,
    #[error("TD attributes refused: {0}")]
    TdAttributesRefused(String),
    #[error("quote rejected by the DCAP verifier: {0}")]
    QuoteRejected(String),
    #[error("XFAM {xfam} refused: {why}")]
    XfamRefused { xfam: String, why: String },
    #[error("TD attributes {0} are not among those the registry pins")]
    TdAttributesNotAllowed(String),
    #[error("TDX module MRSEAM {0} is not one the registry allows")]
    MrSeamNotAllowed(String),
    #[error("MRCONFIGID {0} differs from the registry's (all zero unless it says otherwise)")]
    MrConfigIdMismatch(String),
    #[error("MROWNER {0} differs from the registry's (all zero unless it says otherwise)")]
    MrOwnerMismatch(String),
    #[error("MROWNERCONFIG {0} differs from the registry's (all zero unless it says otherwise)")]
    MrOwnerConfigMismatch(String),
    #[error("TEE_TCB_SVN {svn} is below the registry's minimum {min} (update the TDX module)")]
    TeeTcbSvnTooLow { svn: String, min: String },
    #[error(
        "session evidence is not bound to this TLS session (a certificate used outside the TD it names, or relayed)"
    )]
    SessionBindingMismatch,
    #[error("session evidence comes from another TD than the certificate: {0}")]
    SessionEvidenceOtherTd(String),
}

impl AttestError {
    /// A stable snake_case name of the reason, for metrics labels.
    pub fn reason(&self) -> &'static str {
        use AttestError::*;
        match self {
            CertTooLarge(_) => "cert_too_large",
            CertMalformed(_) => "cert_malformed",
            ChainNotAllowed => "chain_not_allowed",
            NotSelfSigned => "not_self_signed",
            BadSelfSignature => "bad_self_signature",
            WrongKeyType => "wrong_key_type",
            CertNotYetValid { .. } => "cert_not_yet_valid",
            CertExpired { .. } => "cert_expired",
            CertLifetimeTooLong(_) => "cert_lifetime_too_long",
            MissingExtension(_) => "missing_extension",
            DuplicateExtension(_) => "duplicate_extension",
            ExtensionNotCritical(_) => "extension_not_critical",
            UnknownCriticalExtension(_) => "unknown_critical_extension",
            ClaimsMalformed(_) => "claims_malformed",
            ClaimsTooLarge(_) => "claims_too_large",
            EvidenceMalformed(_) => "evidence_malformed",
            EvidenceTooLarge(_) => "evidence_too_large",
            UnknownEvidenceKind(_) => "unknown_evidence_kind",
            SimulatedNotAllowed => "simulated_not_allowed",
            BindingMismatch => "binding_mismatch",
            KeyMismatch { .. } => "key_mismatch",
            ClaimsStale { .. } => "claims_stale",
            ProtocolVersion(_) => "protocol_version",
            UnexpectedRole { .. } => "unexpected_role",
            ImageNotAllowed { .. } => "image_not_allowed",
            ModelNotAllowed { .. } => "model_not_allowed",
            ModelHashMalformed(_) => "model_hash_malformed",
            UpstreamNotAllowed(_) => "upstream_not_allowed",
            TdxNotConfigured => "tdx_not_configured",
            QuoteMalformed(_) => "quote_malformed",
            QuoteNotTdx(_) => "quote_not_tdx",
            PckCertInvalid(_) => "pck_cert_invalid",
            CollateralMissing(_) => "collateral_missing",
            CollateralExpired(_) => "collateral_expired",
            CollateralInvalid(_) => "collateral_invalid",
            CollateralMismatch(_) => "collateral_mismatch",
            QuoteSignatureInvalid(_) => "quote_signature_invalid",
            TcbLevelNotFound => "tcb_level_not_found",
            TcbRevoked(_) => "tcb_revoked",
            TcbStatusNotAllowed { .. } => "tcb_status_not_allowed",
            DebugTdRefused => "debug_td_refused",
            TdAttributesRefused(_) => "td_attributes_refused",
            QuoteRejected(_) => "quote_rejected",
            XfamRefused { .. } => "xfam_refused",
            TdAttributesNotAllowed(_) => "td_attributes_not_allowed",
            MrSeamNotAllowed(_) => "mr_seam_not_allowed",
            MrConfigIdMismatch(_) => "mr_config_id_mismatch",
            MrOwnerMismatch(_) => "mr_owner_mismatch",
            MrOwnerConfigMismatch(_) => "mr_owner_config_mismatch",
            TeeTcbSvnTooLow { .. } => "tee_tcb_svn_too_low",
            SessionBindingMismatch => "session_binding_mismatch",
            SessionEvidenceOtherTd(_) => "session_evidence_other_td",
        }
    }
}
