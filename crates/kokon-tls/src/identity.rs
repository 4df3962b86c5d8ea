//! The node's own certificate, served to peers and replaceable at run time.

use std::sync::{Arc, RwLock};

use kokon_attest::Identity;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

/// Holds the current certificate; [`IdentityStore::replace`] rotates it
/// without touching existing links (they keep the key they handshook with).
pub struct IdentityStore {
    current: RwLock<Arc<CertifiedKey>>,
    not_after: RwLock<u64>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl std::fmt::Debug for IdentityStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityStore").finish_non_exhaustive()
    }
}

impl IdentityStore {
    pub fn new(identity: &Identity) -> Result<Arc<Self>, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = certified_key(&provider, identity)?;
        Ok(Arc::new(Self {
            current: RwLock::new(key),
            not_after: RwLock::new(identity.not_after),
            provider,
        }))
    }

    /// Installs a new certificate for future handshakes.
    pub fn replace(&self, identity: &Identity) -> Result<(), rustls::Error> {
        let key = certified_key(&self.provider, identity)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = key;
        *self.not_after.write().unwrap_or_else(|e| e.into_inner()) = identity.not_after;
        Ok(())
    }

    /// Unix seconds at which the current certificate expires.
    pub fn not_after(&self) -> u64 {
        *self.not_after.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The current certificate, PEM-encoded (public: served on admin ports
    /// for `kokon attest show`).
    pub fn certificate_pem(&self) -> String {
        let der = self.current().cert[0].to_vec();
        pem::encode(&pem::Pem::new("CERTIFICATE", der))
    }

    /// Signs `msg` with the current attested key (Ed25519). Returns the
    /// signature and the certificate that vouches for the key.
    pub fn sign(&self, msg: &[u8]) -> Result<([u8; 64], Vec<u8>), rustls::Error> {
        let ck = self.current();
        let signer = ck
            .key
            .choose_scheme(&[rustls::SignatureScheme::ED25519])
            .ok_or_else(|| rustls::Error::General("attested key is not Ed25519".into()))?;
        let sig: [u8; 64] = signer
            .sign(msg)?
            .try_into()
            .map_err(|_| rustls::Error::General("Ed25519 signature of wrong length".into()))?;
        Ok((sig, ck.cert[0].to_vec()))
    }

    fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

// Built by hand: `CertifiedKey::from_der` parses with webpki, which refuses
// our critical extensions.
fn certified_key(
    provider: &rustls::crypto::CryptoProvider,
    identity: &Identity,
) -> Result<Arc<CertifiedKey>, rustls::Error> {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.key_pkcs8.clone()));
    let signing = provider.key_provider.load_private_key(key)?;
    Ok(Arc::new(CertifiedKey::new(
        vec![CertificateDer::from(identity.cert_der.clone())],
        signing,
    )))
}

impl rustls::server::ResolvesServerCert for IdentityStore {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl rustls::client::ResolvesClientCert for IdentityStore {
    fn resolve(
        &self,
        _hints: &[&[u8]],
        _schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
