//! Interoperability with the `ohttp` crate (Martin Thomson's, which
//! Firefox's and others' OHTTP builds on): each side's requests and
//! responses, whole and chunked, open on the other side.

use futures::executor::block_on;
use futures::io::{AsyncReadExt, AsyncWriteExt, Cursor};
use kokon_ohttp::{GatewayKeys, KeyConfig, chunked, encap};
use ohttp::hpke::{Aead, Kdf, Kem};

fn their_gateway() -> ohttp::Server {
    let config = ohttp::KeyConfig::new(
        7,
        Kem::X25519Sha256,
        vec![ohttp::SymmetricSuite::new(Kdf::HkdfSha256, Aead::Aes128Gcm)],
    )
    .unwrap();
    ohttp::Server::new(config).unwrap()
}

fn their_config(server: &ohttp::Server) -> KeyConfig {
    let encoded = server.config().encode().unwrap();
    KeyConfig::decode(&encoded)
        .unwrap()
        .expect("a suite we speak")
}

#[test]
fn whole_our_client_their_gateway() {
    let server = their_gateway();
    let (enc, key) = encap::encapsulate_request(&their_config(&server), b"ask").unwrap();
    let (plain, response) = server.decapsulate(&enc).unwrap();
    assert_eq!(plain, b"ask");
    let sealed = response.encapsulate(b"answer").unwrap();
    assert_eq!(encap::open_response(&key, &sealed).unwrap(), b"answer");
}

#[test]
fn whole_their_client_our_gateway() {
    let keys = GatewayKeys::generate();
    let client = ohttp::ClientRequest::from_encoded_config_list(&keys.encoded()).unwrap();
    let (enc, response) = client.encapsulate(b"ask").unwrap();
    let (plain, key) = encap::decapsulate_request(&keys, &enc).unwrap();
    assert_eq!(plain, b"ask");
    let sealed = encap::encapsulate_response(&key, b"answer");
    assert_eq!(response.decapsulate(&sealed).unwrap(), b"answer");
}

#[test]
fn chunked_our_client_their_gateway() {
    let server = their_gateway();
    let (enc, key) = chunked::encapsulate_request(&their_config(&server), b"ask").unwrap();
    block_on(async {
        let mut req = server.clone().decapsulate_stream(Cursor::new(enc));
        let mut plain = Vec::new();
        req.read_to_end(&mut plain).await.unwrap();
        assert_eq!(plain, b"ask");
        let mut sink = Cursor::new(Vec::new());
        {
            let mut resp = req.response(&mut sink).unwrap();
            resp.write_all(b"tok1 ").await.unwrap();
            resp.flush().await.unwrap();
            resp.write_all(b"tok2").await.unwrap();
            resp.close().await.unwrap();
        }
        let bytes = sink.into_inner();
        // Fed one byte at a time, as a slow network would.
        let mut opener = chunked::ResponseOpener::new(key);
        let mut got = Vec::new();
        for b in &bytes {
            for chunk in opener.push(std::slice::from_ref(b)).unwrap() {
                got.extend_from_slice(&chunk);
            }
        }
        got.extend_from_slice(&opener.finish().unwrap());
        assert_eq!(got, b"tok1 tok2");
    });
}

#[test]
fn chunked_their_client_our_gateway() {
    let keys = GatewayKeys::generate();
    let client = ohttp::ClientRequest::from_encoded_config_list(&keys.encoded()).unwrap();
    block_on(async {
        let body = Shared::default();
        let mut req = client.encapsulate_stream(body.clone()).unwrap();
        req.write_all(b"a").await.unwrap();
        req.flush().await.unwrap();
        req.write_all(b"sk").await.unwrap();
        req.close().await.unwrap();
        let enc = body.0.lock().unwrap().clone();
        let (plain, key) = chunked::decapsulate_request(&keys, &enc).unwrap();
        assert_eq!(plain, b"ask", "non-final chunks and the final one");
        let (mut sealer, mut out) = chunked::ResponseSealer::new(&key);
        out.extend(sealer.chunk(b"tok1 "));
        out.extend(sealer.chunk(b"tok2"));
        out.extend(sealer.finish());
        let mut resp = req.response(Cursor::new(out)).unwrap();
        let mut got = Vec::new();
        resp.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"tok1 tok2");
    });
}

/// A sink the test reads while the writer (which the response needs) lives.
#[derive(Clone, Default)]
struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl futures::io::AsyncWrite for Shared {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0.lock().unwrap().extend_from_slice(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
