//! RA-TLS over rustls and tokio: mutual TLS 1.3 where both sides present a
//! Kokon certificate and verify the other's with `kokon-attest`.
//!
//! rustls's stock helpers parse certificates with webpki, which refuses
//! Kokon's critical extensions; this crate therefore serves certificates
//! through its own resolvers and checks handshake signatures against the raw
//! SubjectPublicKeyInfo. After each handshake both sides send session
//! evidence, a fresh quote over the session's exporter value
//! ([`kokon_attest::session`]), so a certificate is good only inside the TD
//! it names.

mod identity;
pub mod node;
mod public;
mod session;
mod verifier;
mod watched;

use std::net::SocketAddr;
use std::sync::Arc;

use kokon_attest::session::{Side, session_evidence, verify_session_evidence};
use kokon_attest::{
    AttestError, Clock, EvidenceSource, Policy, Role, VerifiedPeer, verify_certificate,
};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

pub use identity::IdentityStore;
pub use public::{HTTP_ALPN, attested_server_config};
pub use tokio_rustls::{client::TlsStream as ClientStream, server::TlsStream as ServerStream};
pub use verifier::RaTlsVerifier;
pub use watched::{PeerRevoked, Revocation, Watched, revoked_by};

/// A link this node dialed.
pub type ClientLink = Watched<ClientStream<TcpStream>>;
/// A link this node accepted.
pub type ServerLink = Watched<ServerStream<TcpStream>>;

/// Longest wait for a TCP connection, and again for the TLS handshake.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Why a link could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot reach {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("TLS handshake with {addr} failed: {source}")]
    Handshake {
        addr: String,
        source: std::io::Error,
    },
    #[error("peer {addr} speaks an incompatible Kokon protocol (we speak kokon/{version})", version = kokon_proto::PROTOCOL_VERSION)]
    Incompatible { addr: String },
    #[error("peer {addr} refused by attestation policy: {source}")]
    Refused { addr: String, source: AttestError },
    #[error("peer {addr} presented no certificate")]
    NoCertificate { addr: String },
    #[error(
        "peer {addr} refused this node's certificate (its registry does not allow this node's image, evidence, TCB or models; its log names the check)"
    )]
    PeerRefusedUs { addr: String },
    #[error("this node cannot produce session evidence: {why}")]
    OwnEvidence { why: String },
}

impl LinkError {
    /// True when trying again later may succeed (network trouble), false when
    /// the peer or our policy must change first.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            LinkError::Connect { .. } | LinkError::Handshake { .. } | LinkError::OwnEvidence { .. }
        )
    }
}

/// Everything a node needs to open and accept RA-TLS links.
#[derive(Clone)]
pub struct RaTls {
    identity: Arc<IdentityStore>,
    evidence: Arc<dyn EvidenceSource>,
    /// The registry's current policy: every handshake and session check
    /// reads it, and [`RaTls::until_refused`] watches it.
    policy: Arc<tokio::sync::watch::Sender<Arc<Policy>>>,
    clock: Arc<dyn Clock>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    recent: Arc<verifier::Recent>,
}

impl RaTls {
    /// A node presenting `identity`, whose session evidence comes from
    /// `evidence` (the source its certificates' evidence comes from).
    pub fn new(
        identity: Arc<IdentityStore>,
        evidence: Arc<dyn EvidenceSource>,
        policy: Arc<Policy>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        warn_dev_policy(&policy);
        Self {
            identity,
            evidence,
            policy: Arc::new(tokio::sync::watch::Sender::new(policy)),
            clock,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            recent: Arc::default(),
        }
    }

    pub fn identity(&self) -> &Arc<IdentityStore> {
        &self.identity
    }

    /// The policy in force now.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.borrow().clone()
    }

    /// The policy in force, to follow as it changes.
    pub fn policy_watch(&self) -> tokio::sync::watch::Receiver<Arc<Policy>> {
        self.policy.subscribe()
    }

    /// Puts `policy` in force: new handshakes are judged by it at once, and
    /// links watching [`RaTls::until_refused`] are judged again.
    pub fn set_policy(&self, policy: Arc<Policy>) {
        warn_dev_policy(&policy);
        self.policy.send_replace(policy);
    }

    /// Resolves, with the reason, once the policy in force refuses the
    /// certificate `cert` (DER) of a peer of the `expected` roles: at a
    /// policy change that revokes its image, models or TCB, or at the first
    /// change after it expired. A link selects on this to drop a revoked
    /// peer while it runs.
    pub fn until_refused(
        &self,
        cert: Vec<u8>,
        expected: Vec<Role>,
    ) -> impl std::future::Future<Output = AttestError> + Send + 'static {
        let mut changes = self.policy.subscribe();
        let clock = self.clock.clone();
        async move {
            loop {
                if changes.changed().await.is_err() {
                    // The node is gone; nothing will judge this link again.
                    return std::future::pending().await;
                }
                let policy = changes.borrow_and_update().clone();
                if let Err(e) = verify_certificate(&cert, &policy, &expected, clock.now_unix()) {
                    return e;
                }
            }
        }
    }

    fn verifier(&self, expected: &[Role]) -> RaTlsVerifier {
        RaTlsVerifier::new(
            self.policy.subscribe(),
            expected.to_vec(),
            self.clock.clone(),
            self.provider.clone(),
        )
        .remembering(self.recent.clone())
    }

    /// Client-side configuration that accepts only peers of the `expected` roles.
    pub fn client_config(&self, expected: &[Role]) -> rustls::ClientConfig {
        self.client_config_with_alpn(expected, kokon_proto::ALPN)
    }

    /// [`RaTls::client_config`] offering another protocol name (for
    /// compatibility tests; nodes always speak [`kokon_proto::ALPN`]).
    pub fn client_config_with_alpn(&self, expected: &[Role], alpn: &[u8]) -> rustls::ClientConfig {
        self.client_config_for(Arc::new(self.verifier(expected)), alpn)
    }

    fn client_config_for(&self, verifier: Arc<RaTlsVerifier>, alpn: &[u8]) -> rustls::ClientConfig {
        let mut cfg = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("ring supports TLS 1.3")
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_cert_resolver(self.identity.clone());
        cfg.alpn_protocols = vec![alpn.to_vec()];
        cfg
    }

    /// Server-side configuration that accepts only peers of the `expected` roles.
    pub fn server_config(&self, expected: &[Role]) -> rustls::ServerConfig {
        let mut cfg = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("ring supports TLS 1.3")
            .with_client_cert_verifier(Arc::new(self.verifier(expected)))
            .with_cert_resolver(self.identity.clone());
        cfg.alpn_protocols = vec![kokon_proto::ALPN.to_vec()];
        cfg
    }

    /// Dials `addr` and completes a mutual RA-TLS handshake with a peer of one
    /// of the `expected` roles.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        expected: &[Role],
    ) -> Result<(ClientLink, VerifiedPeer), LinkError> {
        self.connect_with(addr, self.client_config(expected), expected)
            .await
    }

    /// Dials `addr` as [`RaTls::connect`] does and returns the certificate
    /// the peer presented whatever the policy made of it (if it got that
    /// far), with the verdict. For inspection (`kokon attest show`).
    pub async fn inspect(
        &self,
        addr: SocketAddr,
        expected: &[Role],
    ) -> (Option<Vec<u8>>, Result<VerifiedPeer, LinkError>) {
        let slot = Arc::new(std::sync::Mutex::new(None));
        let verifier = Arc::new(self.verifier(expected).recording(slot.clone()));
        let cfg = self.client_config_for(verifier, kokon_proto::ALPN);
        let verdict = self.connect_with(addr, cfg, expected).await.map(|(_, p)| p);
        let cert = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        (cert, verdict)
    }

    async fn connect_with(
        &self,
        addr: SocketAddr,
        config: rustls::ClientConfig,
        expected: &[Role],
    ) -> Result<(ClientLink, VerifiedPeer), LinkError> {
        let a = addr.to_string();
        let timed_out = |what: &str| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{what} timed out"))
        };
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| Err(timed_out("TCP connect")))
            .map_err(|source| LinkError::Connect {
                addr: a.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let name = ServerName::try_from("kokon.peer").expect("static name is valid");
        let tls = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp))
            .await
            .unwrap_or_else(|_| Err(timed_out("TLS handshake")))
            .map_err(|e| handshake_error(&a, e))?;
        self.establish(&a, tls, Side::Client, expected).await
    }

    /// Completes the server side of a mutual RA-TLS handshake on `tcp`.
    pub async fn accept(
        &self,
        tcp: TcpStream,
        acceptor: &tokio_rustls::TlsAcceptor,
        expected: &[Role],
    ) -> Result<(ServerLink, VerifiedPeer), LinkError> {
        let a = tcp.peer_addr().map(|a| a.to_string()).unwrap_or_default();
        let _ = tcp.set_nodelay(true);
        let tls = acceptor
            .accept(tcp)
            .await
            .map_err(|e| handshake_error(&a, e))?;
        self.establish(&a, tls, Side::Server, expected).await
    }

    /// After the handshake, as `side`: checks the peer's certificate,
    /// trades session evidence, and hands out the link judged again at each
    /// policy change (see [`Watched`]).
    async fn establish<S: Handshaken>(
        &self,
        addr: &str,
        mut tls: S,
        side: Side,
        expected: &[Role],
    ) -> Result<(Watched<S>, VerifiedPeer), LinkError> {
        let conn = tls.conn();
        let peer = self.check_peer(
            addr,
            conn.alpn_protocol(),
            conn.peer_certificates(),
            expected,
        )?;
        let peer_side = match side {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        };
        let (ours, theirs) = (
            session::binding(conn, side),
            session::binding(conn, peer_side),
        );
        let cert = peer_certificate(conn);
        self.bind_session(addr, &mut tls, &peer, ours, theirs)
            .await?;
        let judge = self.until_refused(cert.clone(), expected.to_vec());
        Ok((Watched::new(tls, cert, Box::pin(judge)), peer))
    }

    /// Sends this node's session evidence (over `ours`), checks the peer's
    /// (over `theirs`) and trades verdicts, all within [`CONNECT_TIMEOUT`].
    async fn bind_session<S>(
        &self,
        addr: &str,
        stream: &mut S,
        peer: &VerifiedPeer,
        ours: [u8; 64],
        theirs: [u8; 64],
    ) -> Result<(), LinkError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let source = self.evidence.clone();
        // Quote generation blocks (the kernel asks the host).
        let evidence =
            tokio::task::spawn_blocking(move || session_evidence(source.as_ref(), &ours))
                .await
                .unwrap_or_else(|e| Err(e.to_string()))
                .map_err(|why| LinkError::OwnEvidence { why })?;
        let trade = async {
            let got = match session::exchange(stream, &evidence).await {
                Ok(got) => got,
                Err(session::ExchangeError::TooLarge(n)) => {
                    let _ = session::send_verdict(stream, false).await;
                    return Err(refused(addr, AttestError::EvidenceTooLarge(n)));
                }
                Err(session::ExchangeError::Io(e)) => return Err(handshake_error(addr, e)),
            };
            let now = self.clock.now_unix();
            if let Err(source) = verify_session_evidence(peer, &got, &theirs, &self.policy(), now) {
                let _ = session::send_verdict(stream, false).await;
                return Err(refused(addr, source));
            }
            let accepted = async {
                session::send_verdict(stream, true).await?;
                session::read_verdict(stream).await
            };
            match accepted.await {
                Ok(true) => Ok(()),
                Ok(false) => Err(LinkError::PeerRefusedUs { addr: addr.into() }),
                Err(e) => Err(handshake_error(addr, e)),
            }
        };
        tokio::time::timeout(CONNECT_TIMEOUT, trade)
            .await
            .unwrap_or_else(|_| {
                Err(LinkError::Handshake {
                    addr: addr.into(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "session evidence timed out",
                    ),
                })
            })
    }

    /// An acceptor for [`RaTls::accept`].
    pub fn acceptor(&self, expected: &[Role]) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(Arc::new(self.server_config(expected)))
    }

    /// The [`VerifiedPeer`] of the handshake's peer certificate: the
    /// verifier's own verdict (rustls does not hand it back, so the verifier
    /// kept it), or a fresh verification when it is not there.
    fn check_peer(
        &self,
        addr: &str,
        alpn: Option<&[u8]>,
        certs: Option<&[rustls::pki_types::CertificateDer<'static>]>,
        expected: &[Role],
    ) -> Result<VerifiedPeer, LinkError> {
        if alpn != Some(kokon_proto::ALPN) {
            return Err(LinkError::Incompatible { addr: addr.into() });
        }
        let cert = certs
            .and_then(|c| c.first())
            .ok_or_else(|| LinkError::NoCertificate { addr: addr.into() })?;
        if let Some(peer) = self
            .recent
            .take(cert)
            .filter(|p| expected.contains(&p.role()))
        {
            return Ok(peer);
        }
        verify_certificate(cert, &self.policy(), expected, self.clock.now_unix()).map_err(
            |source| LinkError::Refused {
                addr: addr.into(),
                source,
            },
        )
    }
}

/// A TLS stream after its handshake, either side.
trait Handshaken: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin {
    type Data;
    fn conn(&self) -> &rustls::ConnectionCommon<Self::Data>;
}

impl Handshaken for ClientStream<TcpStream> {
    type Data = rustls::client::ClientConnectionData;
    fn conn(&self) -> &rustls::ConnectionCommon<Self::Data> {
        self.get_ref().1
    }
}

impl Handshaken for ServerStream<TcpStream> {
    type Data = rustls::server::ServerConnectionData;
    fn conn(&self) -> &rustls::ConnectionCommon<Self::Data> {
        self.get_ref().1
    }
}

/// The certificate (DER) the peer of a completed handshake presented
/// (empty if none: links are never set up without one).
fn peer_certificate(conn: &rustls::CommonState) -> Vec<u8> {
    conn.peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default()
}

/// Warns loudly about a policy that only a test network may use.
fn warn_dev_policy(policy: &Policy) {
    if policy.allows_simulated() {
        tracing::warn!(
            "ATTESTATION IS SIMULATED: this node accepts software evidence that anyone can forge; \
             use it only on a test network"
        );
    }
    if policy.allows_debug() {
        tracing::warn!(
            "DEBUG TDS ARE ACCEPTED: their hosts can read their memory; \
             use it only on a test network"
        );
    }
}

/// True when `err` (or any error it wraps) is the peer refusing our
/// certificate with a TLS alert. In TLS 1.3 a client learns that only on its
/// first read after the handshake, so links report it when they end.
pub fn refused_our_certificate(err: &(dyn std::error::Error + 'static)) -> bool {
    causes(err).any(|e| {
        e.downcast_ref::<rustls::Error>()
            .is_some_and(is_certificate_refusal)
    })
}

/// `err` and the errors it wraps, outermost first (through `io::Error`s'
/// inner errors too, which `source` skips).
pub(crate) fn causes<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |e| {
        let inner = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|i| i as &(dyn std::error::Error + 'static));
        inner.or_else(|| e.source())
    })
}

/// The alerts a peer sends when its verifier refused our certificate.
fn is_certificate_refusal(e: &rustls::Error) -> bool {
    use rustls::AlertDescription as A;
    matches!(
        e,
        rustls::Error::AlertReceived(
            A::BadCertificate | A::CertificateUnknown | A::UnsupportedCertificate | A::AccessDenied
        )
    )
}

fn refused(addr: &str, source: AttestError) -> LinkError {
    LinkError::Refused {
        addr: addr.into(),
        source,
    }
}

fn handshake_error(addr: &str, e: std::io::Error) -> LinkError {
    use rustls::{AlertDescription, Error as TlsError};
    let tls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<TlsError>());
    if matches!(
        tls,
        Some(
            TlsError::NoApplicationProtocol
                | TlsError::AlertReceived(AlertDescription::NoApplicationProtocol)
        )
    ) {
        return LinkError::Incompatible { addr: addr.into() };
    }
    if tls.is_some_and(is_certificate_refusal) {
        return LinkError::PeerRefusedUs { addr: addr.into() };
    }
    if let Some(source) = tls.and_then(verifier::attest_error_of) {
        return LinkError::Refused {
            addr: addr.into(),
            source,
        };
    }
    LinkError::Handshake {
        addr: addr.into(),
        source: e,
    }
}
