//! Session evidence over real TLS: a certificate is good only with fresh
//! evidence from its own TD, bound to the session it is used in.

mod common;

use std::sync::{Arc, Mutex};

use common::node_with as node;
use kokon_attest::*;
use kokon_tls::{LinkError, RaTls};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

fn honest(label: &str) -> Arc<dyn EvidenceSource> {
    Arc::new(SimulatedSource::new(label))
}

/// Evidence of a genuine TD, but after its first quote it hands out that
/// quote again: a host replaying evidence it saw in an earlier session.
#[derive(Debug)]
struct Replaying {
    inner: SimulatedSource,
    first: Mutex<Option<Vec<u8>>>,
}

impl Replaying {
    fn new(label: &str) -> Arc<Self> {
        Arc::new(Self {
            inner: SimulatedSource::new(label),
            first: Mutex::new(None),
        })
    }
}

impl EvidenceSource for Replaying {
    fn kind(&self) -> EvidenceKind {
        EvidenceKind::Simulated
    }
    fn quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, String> {
        let mut first = self.first.lock().unwrap();
        let quote = first.get_or_insert_with(|| self.inner.quote(report_data).unwrap());
        Ok(quote.clone())
    }
}

/// Accepts `n` links as a proxy expecting workers; the verdict of each.
async fn proxy(
    tls: RaTls,
    n: usize,
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<Vec<Result<Role, LinkError>>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let acceptor = tls.acceptor(&[Role::Worker]);
        let mut out = Vec::new();
        for _ in 0..n {
            let (tcp, _) = listener.accept().await.unwrap();
            let r = tls.accept(tcp, &acceptor, &[Role::Worker]).await;
            out.push(r.map(|(_, peer)| peer.role()));
        }
        out
    });
    (addr, task)
}

fn refused_for(r: &Result<Role, LinkError>) -> Option<&AttestError> {
    match r {
        Err(LinkError::Refused { source, .. }) => Some(source),
        _ => None,
    }
}

#[tokio::test]
async fn honest_peers_trade_session_evidence_and_link() {
    let (addr, task) = proxy(node(Role::Proxy, "proxy", honest("proxy")), 1).await;
    let worker = node(Role::Worker, "worker", honest("worker"));
    let (_, peer) = worker.connect(addr, &[Role::Proxy]).await.unwrap();
    assert_eq!(peer.role(), Role::Proxy);
    assert_eq!(task.await.unwrap()[0].as_ref().unwrap(), &Role::Worker);
}

#[tokio::test]
async fn evidence_replayed_from_an_earlier_session_is_refused() {
    let (addr, task) = proxy(node(Role::Proxy, "proxy", honest("proxy")), 2).await;
    let worker = node(Role::Worker, "worker", Replaying::new("worker"));
    // The first session gets a fresh quote; the second gets the first's.
    worker.connect(addr, &[Role::Proxy]).await.unwrap();
    let err = worker.connect(addr, &[Role::Proxy]).await.unwrap_err();
    assert!(matches!(err, LinkError::PeerRefusedUs { .. }), "{err}");
    let verdicts = task.await.unwrap();
    assert!(verdicts[0].is_ok());
    assert_eq!(
        refused_for(&verdicts[1]),
        Some(&AttestError::SessionBindingMismatch),
        "{:?}",
        verdicts[1]
    );
}

#[tokio::test]
async fn a_proxy_replaying_its_evidence_is_refused_by_the_worker() {
    let (addr, _task) = proxy(node(Role::Proxy, "proxy", Replaying::new("proxy")), 2).await;
    let worker = node(Role::Worker, "worker", honest("worker"));
    worker.connect(addr, &[Role::Proxy]).await.unwrap();
    let err = worker.connect(addr, &[Role::Proxy]).await.unwrap_err();
    assert!(
        matches!(
            err,
            LinkError::Refused {
                source: AttestError::SessionBindingMismatch,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_certificate_used_outside_its_image_is_refused() {
    // A genuine worker certificate (and key), its session evidence made by
    // a TD of another image: the key left the TD it was made in.
    refused_as_another_td(honest("rogue"), "measurements").await;
}

/// A genuine worker certificate whose session evidence comes from `source`
/// is refused by the proxy as evidence of another TD (naming `what`
/// differs), and the worker learns it was refused.
async fn refused_as_another_td(source: Arc<dyn EvidenceSource>, what: &str) {
    let (addr, task) = proxy(node(Role::Proxy, "proxy", honest("proxy")), 1).await;
    let thief = node(Role::Worker, "worker", source);
    let err = thief.connect(addr, &[Role::Proxy]).await.unwrap_err();
    assert!(matches!(err, LinkError::PeerRefusedUs { .. }), "{err}");
    let verdicts = task.await.unwrap();
    assert!(
        matches!(
            refused_for(&verdicts[0]),
            Some(AttestError::SessionEvidenceOtherTd(why)) if why.contains(what)
        ),
        "{:?}",
        verdicts[0]
    );
}

#[tokio::test]
async fn a_certificate_used_in_a_td_configured_otherwise_is_refused() {
    // Same image, but a TD whose configuration (here its TEE_TCB_SVN, one
    // the policy accepts) differs from the one the certificate's quote named.
    let mut other = SimulatedSource::new("worker");
    other.td.tee_tcb_svn[0] = other.td.tee_tcb_svn[0].wrapping_add(1);
    refused_as_another_td(Arc::new(other), "TD configuration").await;
}

#[tokio::test]
async fn an_oversized_session_frame_is_refused_unread() {
    let (addr, task) = proxy(node(Role::Proxy, "proxy", honest("proxy")), 1).await;
    let worker = node(Role::Worker, "worker", honest("worker"));
    let cfg = worker.client_config(&[Role::Proxy]);
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("kokon.peer").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap();
    tls.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    let verdicts = task.await.unwrap();
    assert_eq!(
        refused_for(&verdicts[0]),
        Some(&AttestError::EvidenceTooLarge(u32::MAX as usize))
    );
}
