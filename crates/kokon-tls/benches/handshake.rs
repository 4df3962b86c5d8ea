//! Handshake cost of RA-TLS against plain TLS with the same key type, side
//! by side in one run, and DCAP quote verification with warm collateral.
//!
//! * **plain**: mutual TLS 1.3, Ed25519 leaf certificates issued by an
//!   Ed25519 CA, verified by rustls's stock webpki verifiers.
//! * **ra-tls**: mutual TLS 1.3 between a Kokon proxy and client: Ed25519
//!   self-signed certificates with claims and (simulated) evidence, verified
//!   by `kokon-attest` on both sides.
//! * **quote**: `verify_quote` on a real TDX v4 quote with its collateral in
//!   memory: the extra cost each side pays per handshake with TDX evidence.
//!
//! `cargo bench -p kokon-tls --bench handshake` (BENCH_HANDSHAKES to change N).

use std::sync::Arc;
use std::time::Instant;

use kokon_attest::tdx::{Collateral, TdxTrust, verify_quote};
use kokon_attest::{Registry, Role};
use kokon_tls::RaTls;
use kokon_tls::node::simulated_node;
use rcgen::{CertificateParams, IsCa, Issuer, KeyPair, PKCS_ED25519};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn n() -> usize {
    std::env::var("BENCH_HANDSHAKES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

/// Runs `n` sequential handshakes (with a one-byte round trip) and returns
/// handshakes per second.
async fn run(
    n: usize,
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let mut b = [0u8; 1];
                    if tls.read_exact(&mut b).await.is_ok() {
                        let _ = tls.write_all(&b).await;
                    }
                }
            });
        }
    });
    let connector = tokio_rustls::TlsConnector::from(client);
    let start = Instant::now();
    for _ in 0..n {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("kokon.peer").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        tls.write_all(b"x").await.unwrap();
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).await.unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn plain_configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ca_key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = || {
        let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
        let cert = CertificateParams::new(vec!["kokon.peer".to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (vec![CertificateDer::from(cert.der().to_vec())], der)
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.der().to_vec())).unwrap();
    let roots = Arc::new(roots);
    let (scert, skey) = leaf();
    let client_verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots.clone(),
        provider.clone(),
    )
    .build()
    .unwrap();
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(scert, skey)
        .unwrap();
    let (ccert, ckey) = leaf();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(ccert, ckey)
        .unwrap();
    (Arc::new(server), Arc::new(client))
}

/// The same loop through Kokon's own `connect`/`accept` (which also hand
/// back the verified peer), between a proxy and a client node.
async fn run_ratls(n: usize, proxy: RaTls, client: RaTls) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = proxy.acceptor(&[Role::Client]);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (proxy, acceptor) = (proxy.clone(), acceptor.clone());
            tokio::spawn(async move {
                if let Ok((mut tls, _peer)) = proxy.accept(tcp, &acceptor, &[Role::Client]).await {
                    let mut b = [0u8; 1];
                    if tls.read_exact(&mut b).await.is_ok() {
                        let _ = tls.write_all(&b).await;
                    }
                }
            });
        }
    });
    let start = Instant::now();
    for _ in 0..n {
        let (mut tls, _peer) = client.connect(addr, &[Role::Proxy]).await.unwrap();
        tls.write_all(b"x").await.unwrap();
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).await.unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn ratls_nodes() -> (RaTls, RaTls) {
    let policy = Arc::new(Registry::local_test_network().policy().unwrap());
    let stop = Default::default();
    let proxy = simulated_node(Role::Proxy, None, policy.clone(), [0; 32], &stop).unwrap();
    let client = simulated_node(Role::Client, None, policy, [0; 32], &stop).unwrap();
    (proxy, client)
}

fn quote_verify_ms(iters: usize) -> f64 {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../kokon-attest/testdata/tdx");
    let quote = std::fs::read(format!("{dir}/tdx_quote")).unwrap();
    let json = std::fs::read(format!("{dir}/tdx_quote_collateral.json")).unwrap();
    let (fmspc, coll) = Collateral::parse(&json).unwrap();
    let mut c = Collateral::default();
    c.insert(fmspc, coll);
    let trust = TdxTrust::intel(c);
    let now = 1_751_328_000;
    verify_quote(&quote, &trust, now).unwrap(); // warm
    let start = Instant::now();
    for _ in 0..iters {
        verify_quote(&quote, &trust, now).unwrap();
    }
    start.elapsed().as_secs_f64() * 1000.0 / iters as f64
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n = n();
    let (ps, pc) = plain_configs();
    let (proxy, client) = ratls_nodes();
    // Warm up both, then alternate to spread machine noise evenly.
    run(50, ps.clone(), pc.clone()).await;
    run_ratls(50, proxy.clone(), client.clone()).await;
    let (mut plain, mut ratls) = (0.0, 0.0);
    for _ in 0..3 {
        plain += run(n / 3, ps.clone(), pc.clone()).await / 3.0;
        ratls += run_ratls(n / 3, proxy.clone(), client.clone()).await / 3.0;
    }
    println!("mutual TLS 1.3 handshakes, Ed25519, sequential, {n} each, loopback");
    println!("| plain hs/s | RA-TLS hs/s | ratio |");
    println!("|---|---|---|");
    println!("| {plain:.0} | {ratls:.0} | {:.2} |", ratls / plain);
    let q = quote_verify_ms(200);
    println!("TDX v4 quote verification, warm collateral: {q:.3} ms per quote");
    let per_hs = 1000.0 / ratls;
    println!(
        "RA-TLS handshake {per_hs:.3} ms; with TDX evidence each side adds one verification per peer check"
    );
}
