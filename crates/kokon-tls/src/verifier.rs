//! rustls verifiers (server and client side) backed by `kokon-attest`.

use std::sync::Arc;

use kokon_attest::{AttestError, Clock, Policy, Role, VerifiedPeer, verify_certificate};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};
use x509_parser::prelude::FromDer;

/// Verifies a peer's Kokon certificate on either side of the handshake.
pub struct RaTlsVerifier {
    /// The node's policy in force (it may change while the node runs).
    policy: tokio::sync::watch::Receiver<Arc<Policy>>,
    expected: Vec<Role>,
    clock: Arc<dyn Clock>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    /// Where to keep the peer's certificate, whatever the verdict (inspection).
    record: Option<Arc<std::sync::Mutex<Option<Vec<u8>>>>>,
    /// Peers this node verified during handshakes still in progress.
    recent: Option<Arc<Recent>>,
}

/// Verdicts of the verifier, kept so that the link can take its
/// [`VerifiedPeer`] after the handshake instead of verifying again (a TDX
/// quote costs about a millisecond). Keyed by the certificate's SHA-256;
/// taken once; bounded.
#[derive(Default)]
pub struct Recent(std::sync::Mutex<std::collections::HashMap<[u8; 32], VerifiedPeer>>);

impl Recent {
    const MAX: usize = 256;

    fn put(&self, cert: &[u8], peer: VerifiedPeer) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= Self::MAX {
            map.clear(); // handshakes that failed after verification
        }
        map.insert(kokon_attest::sha256(cert), peer);
    }

    /// The verdict on `cert`, if the verifier reached one (and not before).
    pub fn take(&self, cert: &[u8]) -> Option<VerifiedPeer> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&kokon_attest::sha256(cert))
    }
}

impl std::fmt::Debug for RaTlsVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaTlsVerifier")
            .field("expected", &self.expected)
            .finish_non_exhaustive()
    }
}

impl RaTlsVerifier {
    pub fn new(
        policy: tokio::sync::watch::Receiver<Arc<Policy>>,
        expected: Vec<Role>,
        clock: Arc<dyn Clock>,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Self {
        Self {
            policy,
            expected,
            clock,
            provider,
            record: None,
            recent: None,
        }
    }

    /// Keeps each successful verdict in `recent` for the link to take.
    pub fn remembering(mut self, recent: Arc<Recent>) -> Self {
        self.recent = Some(recent);
        self
    }

    /// Also keeps the end-entity certificate in `slot` before judging it.
    pub fn recording(mut self, slot: Arc<std::sync::Mutex<Option<Vec<u8>>>>) -> Self {
        self.record = Some(slot);
        self
    }

    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<(), rustls::Error> {
        if let Some(slot) = &self.record {
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(end_entity.to_vec());
        }
        if !intermediates.is_empty() {
            return Err(to_rustls(AttestError::ChainNotAllowed));
        }
        let policy = self.policy.borrow().clone();
        let peer = verify_certificate(end_entity, &policy, &self.expected, self.clock.now_unix())
            .map_err(to_rustls)?;
        if let Some(recent) = &self.recent {
            recent.put(end_entity, peer);
        }
        Ok(())
    }

    fn check_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let (_, parsed) = x509_parser::certificate::X509Certificate::from_der(cert)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let spki = SubjectPublicKeyInfoDer::from(parsed.public_key().raw);
        rustls::crypto::verify_tls13_signature_with_raw_key(
            message,
            &spki,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
}

fn to_rustls(e: AttestError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

/// Recovers the attestation error inside a rustls error, if there is one.
pub(crate) fn attest_error_of(e: &rustls::Error) -> Option<AttestError> {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
            inner.downcast_ref::<AttestError>().cloned()
        }
        _ => None,
    }
}

const SCHEMES: &[SignatureScheme] = &[SignatureScheme::ED25519];

impl ServerCertVerifier for RaTlsVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity, intermediates)
            .map(|_| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _m: &[u8],
        _c: &CertificateDer<'_>,
        _d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.check_signature(m, c, d)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        SCHEMES.to_vec()
    }
}

impl ClientCertVerifier for RaTlsVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity, intermediates)
            .map(|_| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _m: &[u8],
        _c: &CertificateDer<'_>,
        _d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.check_signature(m, c, d)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        SCHEMES.to_vec()
    }
}
