//! Certificate rotation: a node re-issues its certificate before expiry;
//! links made on the old one keep working past its expiry, and new links get
//! the new one.

use std::sync::Arc;
use std::time::Duration;

use kokon_attest::{Registry, Role};
use kokon_tls::node::{NodeParams, start_node};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

async fn ping(tls: &mut kokon_tls::ClientLink) -> std::io::Result<u8> {
    tls.write_all(b"p").await?;
    let mut b = [0u8; 1];
    tls.read_exact(&mut b).await?;
    Ok(b[0])
}

#[tokio::test]
async fn rotation_keeps_old_links_and_serves_the_new_certificate() {
    let policy = Arc::new(Registry::local_test_network().policy().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    let mut params = NodeParams::simulated(Role::Proxy, None, [0; 32]);
    params.lifetime = Duration::from_secs(3); // rotated after 2 s
    let proxy = start_node(params, policy.clone(), &stop).unwrap();
    let client =
        kokon_tls::node::simulated_node(Role::Client, None, policy, [0; 32], &stop).unwrap();

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = proxy.clone();
    tokio::spawn(async move {
        let acceptor = server.acceptor(&[Role::Client]);
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (server, acceptor) = (server.clone(), acceptor.clone());
            tokio::spawn(async move {
                let (mut tls, _) = server
                    .accept(tcp, &acceptor, &[Role::Client])
                    .await
                    .unwrap();
                let mut b = [0u8; 1];
                while tls.read_exact(&mut b).await.is_ok() {
                    tls.write_all(&b).await.unwrap();
                }
            });
        }
    });
    let (mut old_link, old_peer) = client.connect(addr, &[Role::Proxy]).await.unwrap();
    let old_expiry = proxy.identity().not_after();
    assert_eq!(ping(&mut old_link).await.unwrap(), b'p');

    // Past the rotation point and past the first certificate's expiry.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(proxy.identity().not_after() > old_expiry, "rotated");
    assert_eq!(
        ping(&mut old_link).await.unwrap(),
        b'p',
        "the old link still works"
    );

    let (mut new_link, new_peer) = client.connect(addr, &[Role::Proxy]).await.unwrap();
    assert_ne!(
        new_peer.ed25519_key(),
        old_peer.ed25519_key(),
        "a fresh key"
    );
    assert_eq!(ping(&mut new_link).await.unwrap(), b'p');
    stop.cancel();
}
