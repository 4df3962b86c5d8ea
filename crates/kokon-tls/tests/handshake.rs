//! Real mutual TLS 1.3 handshakes over loopback TCP.

mod common;

use std::sync::Arc;

use common::node;
use kokon_attest::*;
use kokon_tls::{LinkError, RaTls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

async fn serve_once(
    proxy: RaTls,
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<Result<Role, LinkError>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let acceptor = proxy.acceptor(&[Role::Worker]);
        let (mut tls, peer) = proxy.accept(tcp, &acceptor, &[Role::Worker]).await?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.unwrap();
        tls.write_all(b"pong").await.unwrap();
        tls.shutdown().await.ok();
        Ok(peer.role())
    });
    (addr, task)
}

#[tokio::test]
async fn mutual_handshake_between_attested_peers() {
    let (addr, task) = serve_once(node(Role::Proxy, "proxy")).await;
    let worker = node(Role::Worker, "worker");
    let (mut tls, peer) = worker.connect(addr, &[Role::Proxy]).await.unwrap();
    assert_eq!(peer.role(), Role::Proxy);
    tls.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    tls.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"pong");
    assert_eq!(task.await.unwrap().unwrap(), Role::Worker);
}

#[tokio::test]
async fn client_refuses_a_proxy_with_an_unlisted_image() {
    let (addr, _task) = serve_once(node(Role::Proxy, "rogue")).await;
    let err = node(Role::Worker, "worker")
        .connect(addr, &[Role::Proxy])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            LinkError::Refused {
                source: AttestError::ImageNotAllowed { .. },
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn server_refuses_a_worker_with_an_unlisted_image() {
    let (addr, task) = serve_once(node(Role::Proxy, "proxy")).await;
    let worker = node(Role::Worker, "rogue");
    // TLS 1.3: the client learns of the refusal on its first read, which is
    // the session evidence exchange.
    let ours = worker.connect(addr, &[Role::Proxy]).await.unwrap_err();
    assert!(matches!(ours, LinkError::PeerRefusedUs { .. }), "{ours}");
    assert!(!ours.is_transient());
    let err = task.await.unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            LinkError::Refused {
                source: AttestError::ImageNotAllowed { .. },
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_peer_speaking_another_protocol_version_is_refused_clearly() {
    let (addr, task) = serve_once(node(Role::Proxy, "proxy")).await;
    let worker = node(Role::Worker, "worker");
    let cfg = worker.client_config_with_alpn(&[Role::Proxy], b"kokon/2");
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("kokon.peer").unwrap();
    let client = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await;
    assert!(client.is_err());
    let err = task.await.unwrap().unwrap_err();
    assert!(matches!(err, LinkError::Incompatible { .. }), "{err}");
    assert!(
        err.to_string().contains("incompatible Kokon protocol"),
        "{err}"
    );
}
