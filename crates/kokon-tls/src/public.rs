//! TLS for public HTTP ports that carry nothing a peer must be attested
//! for: the proxy's Oblivious HTTP gateway, which anyone (a relay) may
//! reach. The proxy still presents its RA-TLS certificate, so a relay can
//! check it talks to an attested proxy; no client certificate is asked.

use std::sync::Arc;

use kokon_attest::{Clock, Policy, Role};

use crate::{RaTls, RaTlsVerifier};

/// What public TLS ports speak.
pub const HTTP_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

impl RaTls {
    /// A server configuration with this node's RA-TLS certificate and no
    /// client authentication.
    pub fn public_server_config(&self) -> rustls::ServerConfig {
        let mut cfg = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("ring supports TLS 1.3")
            .with_no_client_auth()
            .with_cert_resolver(self.identity.clone());
        cfg.alpn_protocols = HTTP_ALPN.iter().map(|p| p.to_vec()).collect();
        cfg
    }
}

/// A client configuration for a node without an identity of its own (a
/// relay): it accepts only a server whose RA-TLS certificate verifies as
/// one of the `expected` roles under the policy in force, and speaks
/// HTTP/2.
pub fn attested_server_config(
    policy: tokio::sync::watch::Receiver<Arc<Policy>>,
    clock: Arc<dyn Clock>,
    expected: &[Role],
) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = RaTlsVerifier::new(policy, expected.to_vec(), clock, provider.clone());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("ring supports TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    cfg
}
