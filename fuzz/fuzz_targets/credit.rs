//! Credit tokens as the proxy and the client decode them: tokens, token
//! requests and responses (raw and base64url), token challenges, the
//! published key document and the wire calls (sale, change). Never panics;
//! whatever decodes re-encodes to the same bytes, and a decoded token
//! checked against a real issuer is refused unless genuine.
#![no_main]

use std::sync::OnceLock;

use kokon_credit::wire::TokenChallenge;
use kokon_credit::{Issuer, Schedule, Token, TokenRequest, TokenResponse};
use libfuzzer_sys::fuzz_target;

fn issuer() -> &'static Issuer {
    static I: OnceLock<Issuer> = OnceLock::new();
    I.get_or_init(|| {
        Issuer::generate(
            "fuzz",
            Schedule {
                unit: 1,
                levels: 2,
            },
        )
        .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = Token::decode(data) {
        assert_eq!(t.encode(), data);
        assert!(issuer().redeem(&t).is_err(), "a forged token redeemed");
    }
    if let Ok(r) = TokenRequest::decode(data) {
        assert_eq!(r.encode(), data);
        let _ = issuer().sign(&r);
    }
    if let Ok(r) = TokenResponse::decode(data) {
        assert_eq!(r.encode(), data);
    }
    if let Ok(c) = TokenChallenge::decode(data) {
        assert_eq!(c.encode(), data);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = Token::from_b64(s);
        let _ = TokenRequest::from_b64(s);
        let _ = TokenResponse::from_b64(s);
    }
    if let Ok(doc) = serde_json::from_slice::<kokon_credit::KeysDocument>(data) {
        let _ = kokon_credit::PublicKeys::from_document(&doc);
    }
    let _ = serde_json::from_slice::<kokon_proto::credit::SaleRequest>(data);
    let _ = serde_json::from_slice::<kokon_proto::credit::ChangeRequest>(data);
    let _ = serde_json::from_slice::<kokon_proto::credit::ChangeReply>(data);
});
