//! Positive and negative certificate cases; each refusal asserts its own variant.

use std::collections::HashMap;

mod common;

use kokon_attest::cert::{CertParts, build_certificate};
use kokon_attest::evidence::binding;
use kokon_attest::*;
use kokon_proto::{EngineDecl, EngineKind};
use rcgen::{KeyPair, PKCS_ED25519, PublicKeyData};

const NOW: u64 = 1_800_000_000;

fn dev_policy() -> Policy {
    let mut p = common::production_policy();
    p.dangerous().allow_simulated_evidence();
    p
}

fn params(role: Role) -> IdentityParams {
    IdentityParams {
        role,
        hpke_public: None,
        engine: (role == Role::Worker).then(|| EngineDecl::local(EngineKind::Echo)),
        config_sha256: [7; 32],
        models: vec![],
        lifetime_secs: 3600,
        now: NOW,
    }
}

/// Builds a certificate whose parts a test may tamper with.
struct Forge {
    key: KeyPair,
    claims: Claims,
    label: String,
}

impl Forge {
    fn new(role: Role, label: &str) -> Self {
        let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
        let claims = Claims {
            role,
            protocol_version: 1,
            tls_key_sha256: hex::encode(sha256(&key.subject_public_key_info())),
            issued_at: NOW,
            config_sha256: hex::encode([1u8; 32]),
            models: vec![],
            hpke_key: None,
            engine: (role == Role::Worker).then(|| EngineDecl::local(EngineKind::Llama)),
        };
        Self {
            key,
            claims,
            label: label.into(),
        }
    }

    fn parts(&self) -> CertParts {
        let claims = self.claims.to_bytes();
        let quote = SimulatedQuote {
            td: TdConfig::simulated(),
            measurements: SimulatedQuote::measurements_for(&self.label),
            report_data: binding(&self.key.subject_public_key_info(), &claims),
        };
        CertParts {
            evidence: Evidence {
                kind: EvidenceKind::Simulated,
                quote: quote.to_bytes(),
            }
            .to_bytes(),
            claims,
            not_before: NOW as i64 - 60,
            not_after: NOW as i64 + 3600,
            claims_critical: true,
            evidence_critical: true,
            extra: vec![],
        }
    }

    fn build(&self, parts: &CertParts) -> Vec<u8> {
        build_certificate(&self.key, parts, self.claims.role).unwrap()
    }

    fn verify(&self, parts: &CertParts) -> Result<VerifiedPeer, AttestError> {
        verify_certificate(&self.build(parts), &dev_policy(), &[self.claims.role], NOW)
    }
}

#[test]
fn accepts_a_fresh_simulated_worker_certificate() {
    let id = Identity::simulated(&params(Role::Worker), "worker").unwrap();
    let peer = verify_certificate(&id.cert_der, &dev_policy(), &[Role::Worker], NOW + 10).unwrap();
    assert_eq!(peer.role(), Role::Worker);
    assert_eq!(peer.evidence_kind(), EvidenceKind::Simulated);
    assert_eq!(
        peer.image_hash(),
        SimulatedQuote::measurements_for("worker").image_hash()
    );
}

#[test]
fn forge_baseline_is_accepted() {
    let f = Forge::new(Role::Worker, "worker");
    f.verify(&f.parts()).unwrap();
}

#[test]
fn refuses_simulated_evidence_under_a_production_policy() {
    let id = Identity::simulated(&params(Role::Worker), "worker").unwrap();
    let mut roles = HashMap::new();
    let image = SimulatedQuote::measurements_for("worker").image_hash();
    roles.insert(
        Role::Worker,
        RolePolicy {
            images: Some(vec![image]),
        },
    );
    let err =
        verify_certificate(&id.cert_der, &Policy::new(roles), &[Role::Worker], NOW).unwrap_err();
    assert_eq!(err, AttestError::SimulatedNotAllowed);
}

#[test]
fn refuses_unknown_image_and_wrong_role() {
    let id = Identity::simulated(&params(Role::Worker), "rogue-image").unwrap();
    let err = verify_certificate(&id.cert_der, &dev_policy(), &[Role::Worker], NOW).unwrap_err();
    assert!(
        matches!(
            err,
            AttestError::ImageNotAllowed {
                role: Role::Worker,
                ..
            }
        ),
        "{err:?}"
    );

    let id = Identity::simulated(&params(Role::Worker), "worker").unwrap();
    let err = verify_certificate(&id.cert_der, &dev_policy(), &[Role::Proxy], NOW).unwrap_err();
    assert!(
        matches!(
            err,
            AttestError::UnexpectedRole {
                got: Role::Worker,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn refuses_expired_and_future_certificates() {
    let id = Identity::simulated(&params(Role::Worker), "worker").unwrap();
    let err =
        verify_certificate(&id.cert_der, &dev_policy(), &[Role::Worker], NOW + 7200).unwrap_err();
    assert!(matches!(err, AttestError::CertExpired { .. }), "{err:?}");
    let err =
        verify_certificate(&id.cert_der, &dev_policy(), &[Role::Worker], NOW - 3600).unwrap_err();
    assert!(
        matches!(err, AttestError::CertNotYetValid { .. }),
        "{err:?}"
    );
}

#[test]
fn refuses_a_binding_to_other_claims() {
    let f = Forge::new(Role::Worker, "worker");
    let mut p = f.parts();
    let mut other = f.claims.clone();
    other.config_sha256 = hex::encode([2u8; 32]);
    p.claims = other.to_bytes(); // evidence still binds the original claims
    assert_eq!(f.verify(&p).unwrap_err(), AttestError::BindingMismatch);
}

#[test]
fn refuses_evidence_moved_from_another_certificate() {
    let a = Forge::new(Role::Worker, "worker");
    let b = Forge::new(Role::Worker, "worker");
    let mut p = b.parts();
    p.evidence = a.parts().evidence;
    assert_eq!(b.verify(&p).unwrap_err(), AttestError::BindingMismatch);
}

#[test]
fn refuses_claims_naming_another_key() {
    let mut f = Forge::new(Role::Worker, "worker");
    f.claims.tls_key_sha256 = hex::encode([9u8; 32]);
    assert!(matches!(
        f.verify(&f.parts()).unwrap_err(),
        AttestError::KeyMismatch { .. }
    ));
}

#[test]
fn refuses_stale_claims_and_other_protocol_versions() {
    let mut f = Forge::new(Role::Worker, "worker");
    f.claims.issued_at = NOW - 3 * 24 * 3600;
    assert!(matches!(
        f.verify(&f.parts()).unwrap_err(),
        AttestError::ClaimsStale { .. }
    ));
    let mut f = Forge::new(Role::Worker, "worker");
    f.claims.protocol_version = 2;
    assert_eq!(
        f.verify(&f.parts()).unwrap_err(),
        AttestError::ProtocolVersion(2)
    );
}

#[test]
fn refuses_non_critical_extensions() {
    let f = Forge::new(Role::Worker, "worker");
    let mut p = f.parts();
    p.claims_critical = false;
    assert_eq!(
        f.verify(&p).unwrap_err(),
        AttestError::ExtensionNotCritical("claims")
    );
    let mut p = f.parts();
    p.evidence_critical = false;
    assert_eq!(
        f.verify(&p).unwrap_err(),
        AttestError::ExtensionNotCritical("evidence")
    );
}

#[test]
fn refuses_duplicated_and_unknown_critical_extensions() {
    let f = Forge::new(Role::Worker, "worker");
    let mut p = f.parts();
    p.extra
        .push((oids::CLAIMS.to_vec(), p.claims.clone(), true));
    assert!(matches!(
        f.verify(&p).unwrap_err(),
        AttestError::DuplicateExtension(_)
    ));
    let mut p = f.parts();
    p.extra
        .push((vec![1, 3, 6, 1, 4, 1, 59999, 9, 9], vec![1], true));
    assert!(matches!(
        f.verify(&p).unwrap_err(),
        AttestError::UnknownCriticalExtension(_)
    ));
    // A non-critical unknown extension is fine.
    let mut p = f.parts();
    p.extra
        .push((vec![1, 3, 6, 1, 4, 1, 59999, 9, 9], vec![1], false));
    f.verify(&p).unwrap();
}

#[test]
fn refuses_truncated_oversized_and_unknown_evidence() {
    let f = Forge::new(Role::Worker, "worker");
    let mut p = f.parts();
    p.evidence.truncate(100);
    assert!(matches!(
        f.verify(&p).unwrap_err(),
        AttestError::EvidenceMalformed(_)
    ));
    let mut p = f.parts();
    p.evidence = vec![1; 20_000];
    assert_eq!(
        f.verify(&p).unwrap_err(),
        AttestError::EvidenceTooLarge(20_000)
    );
    let mut p = f.parts();
    p.evidence[0] = 7;
    assert_eq!(
        f.verify(&p).unwrap_err(),
        AttestError::UnknownEvidenceKind(7)
    );
    let mut p = f.parts();
    p.evidence[0] = 2;
    assert_eq!(f.verify(&p).unwrap_err(), AttestError::TdxNotConfigured);
    let mut p = f.parts();
    p.evidence.clear();
    assert!(matches!(
        f.verify(&p).unwrap_err(),
        AttestError::EvidenceMalformed(_)
    ));
}

#[test]
fn refuses_malformed_or_oversized_claims() {
    let f = Forge::new(Role::Worker, "worker");
    let mut p = f.parts();
    p.claims = b"{not json".to_vec();
    assert!(matches!(
        f.verify(&p).unwrap_err(),
        AttestError::ClaimsMalformed(_)
    ));
    let mut p = f.parts();
    p.claims = vec![b' '; 5000];
    assert_eq!(f.verify(&p).unwrap_err(), AttestError::ClaimsTooLarge(5000));
}

#[test]
fn refuses_undeclared_or_malformed_engines() {
    let mut f = Forge::new(Role::Worker, "worker");
    f.claims.engine = None;
    let err = f.verify(&f.parts()).unwrap_err();
    assert!(matches!(&err, AttestError::ClaimsMalformed(w) if w.contains("declare its engine")));
    f.claims.engine = Some(EngineDecl::upstream("https://api.example.com/v1".into()));
    let err = f.verify(&f.parts()).unwrap_err();
    assert!(matches!(&err, AttestError::ClaimsMalformed(w) if w.contains("not an origin")));
    let mut f = Forge::new(Role::Proxy, "proxy");
    f.claims.engine = Some(EngineDecl::local(EngineKind::Echo));
    let err = f.verify(&f.parts()).unwrap_err();
    assert!(
        matches!(&err, AttestError::ClaimsMalformed(w) if w.contains("proxy declares no engine"))
    );
}

#[test]
fn refuses_a_worker_forwarding_to_an_upstream_the_registry_does_not_list() {
    let api = "https://api.example.com";
    let mut p = params(Role::Worker);
    p.engine = Some(EngineDecl::upstream(api.into()));
    let id = Identity::simulated(&p, "worker").unwrap();
    let verify = |policy: &Policy| verify_certificate(&id.cert_der, policy, &[Role::Worker], NOW);
    let mut policy = dev_policy();
    assert_eq!(
        verify(&policy).unwrap_err(),
        AttestError::UpstreamNotAllowed(api.into())
    );
    policy.allow_upstream("https://other.example.com");
    assert_eq!(
        verify(&policy).unwrap_err().reason(),
        "upstream_not_allowed"
    );
    policy.allow_upstream(api);
    let peer = verify(&policy).unwrap();
    assert_eq!(peer.claims().engine, Some(EngineDecl::upstream(api.into())));
    let mut any = dev_policy();
    any.dangerous().allow_any_upstream();
    verify(&any).unwrap();
}

#[test]
fn refuses_missing_extensions_lifetimes_and_garbage() {
    let f = Forge::new(Role::Worker, "worker");
    let mut p = f.parts();
    p.not_after = NOW as i64 + 10 * 24 * 3600;
    assert!(matches!(
        f.verify(&p).unwrap_err(),
        AttestError::CertLifetimeTooLong(_)
    ));
    let err = verify_certificate(b"\x30\x03\x02\x01\x01", &dev_policy(), &[Role::Worker], NOW);
    assert!(matches!(err.unwrap_err(), AttestError::CertMalformed(_)));
    let err = verify_certificate(&vec![0u8; 40_000], &dev_policy(), &[Role::Worker], NOW);
    assert_eq!(err.unwrap_err(), AttestError::CertTooLarge(40_000));
    let mut der = f.build(&f.parts());
    let n = der.len();
    der[n - 5] ^= 0x55; // inside the signature
    let err = verify_certificate(&der, &dev_policy(), &[Role::Worker], NOW).unwrap_err();
    assert_eq!(err, AttestError::BadSelfSignature);
}

#[test]
fn receipt_signers_verify_once_and_not_past_expiry() {
    use kokon_attest::verify::ReceiptSigners;
    let id = Identity::simulated(&params(Role::Worker), "worker").unwrap();
    let cert = hex::encode(&id.cert_der);
    let signers = ReceiptSigners::default();
    let policy = std::sync::Arc::new(dev_policy());
    let key = signers.signer(&cert, &policy, NOW).unwrap();
    assert_eq!(signers.signer(&cert, &policy, NOW + 60), Ok(key));
    // A new policy (the registry changed) judges again: this one refuses…
    let strict = std::sync::Arc::new(common::production_policy());
    assert!(signers.signer(&cert, &strict, NOW + 60).is_err());
    // …while the old one still accepts (a job judged under it),
    // but not past the certificate's expiry, nor a refused certificate.
    assert_eq!(signers.signer(&cert, &policy, NOW + 61), Ok(key));
    assert!(signers.signer(&cert, &policy, NOW + 7200).is_err());
    let rogue = Identity::simulated(&params(Role::Worker), "rogue").unwrap();
    let rogue = hex::encode(&rogue.cert_der);
    assert!(signers.signer(&rogue, &policy, NOW).is_err());
    assert!(signers.signer(&rogue, &policy, NOW).is_err());
    assert!(signers.signer("zz", &policy, NOW).is_err());
}
