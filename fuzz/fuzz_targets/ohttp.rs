//! Oblivious HTTP as the gateway and the client read it from a hostile
//! relay or peer: whole and chunked encapsulated requests (decapsulation
//! under RFC 9458's example key), a chunked response fed in pieces, key
//! configuration lists and the signed key document. Never panics; nothing
//! decrypts that was not sealed to the key.
#![no_main]

use kokon_ohttp::document::KeyDocument;
use kokon_ohttp::{GatewayKey, GatewayKeys, KeyConfig, chunked, encap};
use libfuzzer_sys::fuzz_target;

const SK: [u8; 32] = [
    0x3c, 0x16, 0x89, 0x75, 0x67, 0x4b, 0x2f, 0xa8, 0xe4, 0x65, 0x97, 0x0b, 0x79, 0xc8, 0xdc, 0xf0,
    0x9f, 0x1c, 0x74, 0x16, 0x26, 0x48, 0x0b, 0xd4, 0xc6, 0x16, 0x2f, 0xc5, 0xb6, 0xa9, 0x8e, 0x1a,
];

fuzz_target!(|data: &[u8]| {
    let keys = GatewayKeys::new(GatewayKey::from_secret(1, &SK).unwrap());
    let _ = encap::decapsulate_request(&keys, data);
    let _ = chunked::decapsulate_request(&keys, data);
    let _ = KeyConfig::decode_list(data);
    if let Ok(doc) = KeyDocument::parse(data) {
        let _ = doc.certificate_der();
        let _ = doc.verified_keys(&[7; 32]);
    }
    // A response to a real request, with hostile bytes where the answer goes.
    let (req, _) = chunked::encapsulate_request(&keys.current(), b"q").unwrap();
    let (_, key) = chunked::decapsulate_request(&keys, &req).unwrap();
    let mut opener = chunked::ResponseOpener::new(key);
    for piece in data.chunks(13) {
        if opener.push(piece).is_err() {
            return;
        }
    }
    let _ = opener.finish();
});
