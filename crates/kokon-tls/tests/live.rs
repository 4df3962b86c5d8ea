//! The policy in force can change while a node runs (its registry
//! changed): new handshakes are judged by the new one at once, and a live
//! link whose peer it refuses learns so from `until_refused`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{node, policy_for as policy};
use kokon_attest::*;
use kokon_tls::{LinkError, RaTls};
use tokio::net::TcpListener;

/// Accepts one link from a worker at `proxy`: where to dial, and the
/// proxy's side of the link (or why it refused).
async fn accept_one(
    proxy: &RaTls,
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<Result<kokon_tls::ServerLink, LinkError>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let p = proxy.clone();
    let accepted = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let acceptor = p.acceptor(&[Role::Worker]);
        p.accept(tcp, &acceptor, &[Role::Worker])
            .await
            .map(|(tls, _)| tls)
    });
    (addr, accepted)
}

/// The worker's certificate, as the proxy's side of a link from it saw it.
async fn link(proxy: &RaTls, worker: &RaTls) -> Vec<u8> {
    let (addr, accepted) = accept_one(proxy).await;
    worker.connect(addr, &[Role::Proxy]).await.unwrap();
    accepted.await.unwrap().unwrap().peer_certificate().to_vec()
}

#[tokio::test]
async fn a_link_whose_peer_the_new_policy_refuses_is_told() {
    let (proxy, worker) = (node(Role::Proxy, "proxy"), node(Role::Worker, "worker"));
    let cert = link(&proxy, &worker).await;
    assert!(!cert.is_empty());
    let mut revoked = Box::pin(proxy.until_refused(cert, vec![Role::Worker]));

    // A change that still allows the worker leaves the link alone…
    let mut looser = (*policy("worker")).clone();
    looser.max_skew_secs += 1;
    proxy.set_policy(Arc::new(looser));
    let quiet = tokio::time::timeout(Duration::from_millis(200), &mut revoked).await;
    assert!(
        quiet.is_err(),
        "a policy that allows the peer drops nothing"
    );

    // …one that removed its image refuses it, with the reason.
    proxy.set_policy(policy("worker-v2"));
    let why = tokio::time::timeout(Duration::from_secs(5), revoked)
        .await
        .expect("judged again at the change");
    assert_eq!(why.reason(), "image_not_allowed", "{why}");
}

#[tokio::test]
async fn new_handshakes_are_judged_by_the_policy_in_force() {
    let (proxy, worker) = (node(Role::Proxy, "proxy"), node(Role::Worker, "worker"));
    link(&proxy, &worker).await;
    proxy.set_policy(policy("worker-v2"));
    assert_eq!(proxy.policy(), policy("worker-v2"));

    let (addr, accepted) = accept_one(&proxy).await;
    let err = worker.connect(addr, &[Role::Proxy]).await.unwrap_err();
    assert!(matches!(err, LinkError::PeerRefusedUs { .. }), "{err}");
    match accepted.await.unwrap() {
        Err(LinkError::Refused { source, .. }) => {
            assert_eq!(source.reason(), "image_not_allowed", "{source}")
        }
        other => panic!("the proxy should refuse the worker's image: {other:?}"),
    }
}

#[tokio::test]
async fn a_revoked_link_fails_its_reads_and_writes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (proxy, worker) = (node(Role::Proxy, "proxy"), node(Role::Worker, "worker"));
    let (addr, accepted) = accept_one(&proxy).await;
    let (mut at_worker, _) = worker.connect(addr, &[Role::Proxy]).await.unwrap();
    let mut at_proxy = accepted.await.unwrap().unwrap();
    let revocation = at_proxy.revocation();
    at_worker.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    at_proxy.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");

    // The proxy blocks on a read; the revocation wakes it with an error.
    let reader = tokio::spawn(async move {
        let r = at_proxy.read(&mut buf).await;
        (r, at_proxy)
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    proxy.set_policy(policy("worker-v2"));
    let (r, mut at_proxy) = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("woken by the revocation")
        .unwrap();
    let err = r.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
    assert_eq!(
        kokon_tls::revoked_by(&err).map(|e| e.reason()),
        Some("image_not_allowed")
    );
    assert_eq!(
        revocation.get().map(|e| e.reason()),
        Some("image_not_allowed")
    );
    // Writes fail too, and nothing more is delivered.
    assert!(at_proxy.write_all(b"data").await.is_err());
    at_worker.write_all(b"more").await.ok();
    assert!(at_proxy.read(&mut [0u8; 4]).await.is_err());
}
