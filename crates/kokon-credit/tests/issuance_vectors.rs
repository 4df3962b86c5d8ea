//! Issuance protocol 2 (blind RSA) against published test vectors: the
//! five vectors of `vectors/issuance-protocol-2.json` (the set the
//! `privacypass` crate checks against; RFC 9578 Appendix A.2 gives vectors
//! of this form). The issuer's side is deterministic, so it is reproduced
//! byte for byte: the key id, the request and challenge encodings, the
//! blind signature, and the final token verifying under the key. The
//! client's side draws its nonce, salt and blind at random, so it is not
//! reproducible here; the round-trip tests cover it.

use kokon_credit::keys::key_id;
use kokon_credit::wire::{Token, TokenChallenge, TokenRequest, TokenResponse};
use kokon_credit::{CreditError, Issuer, IssuerSecrets};

#[derive(serde::Deserialize)]
#[allow(non_snake_case)]
struct Vector {
    skS: String,
    pkS: String,
    token_challenge: String,
    nonce: String,
    token_request: String,
    token_response: String,
    token: String,
}

fn vectors() -> Vec<Vector> {
    serde_json::from_str(include_str!("vectors/issuance-protocol-2.json")).unwrap()
}

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

/// An issuer holding only the vector's key (one denomination).
fn issuer_of(v: &Vector) -> Issuer {
    use base64::Engine as _;
    let pem = String::from_utf8(h(&v.skS)).unwrap();
    let der = pem_to_der(&pem);
    Issuer::from_secrets(&IssuerSecrets {
        issuer: "issuer.example".into(),
        unit: "1".into(),
        keys: vec![base64::engine::general_purpose::STANDARD.encode(der)],
    })
    .unwrap()
}

/// PKCS#8 PEM → PKCS#1 DER, through the key type itself.
fn pem_to_der(pem: &str) -> Vec<u8> {
    blind_rsa_signatures::SecretKeySha384PSSDeterministic::from_pem(pem)
        .unwrap()
        .to_der()
        .unwrap()
}

#[test]
fn the_issuers_side_matches_every_vector_byte_for_byte() {
    for (i, v) in vectors().iter().enumerate() {
        let issuer = issuer_of(v);
        let published = issuer.public().document();
        use base64::Engine as _;
        let spki = base64::engine::general_purpose::STANDARD
            .decode(&published.keys[0])
            .unwrap();
        assert_eq!(spki, h(&v.pkS), "vector {i}: the public key's SPKI");

        let challenge = TokenChallenge::decode(&h(&v.token_challenge)).unwrap();
        assert_eq!(
            challenge.encode(),
            h(&v.token_challenge),
            "vector {i}: challenge"
        );

        let req = TokenRequest::decode(&h(&v.token_request)).unwrap();
        assert_eq!(req.encode(), h(&v.token_request), "vector {i}: request");
        assert_eq!(req.truncated_token_key_id, key_id(&h(&v.pkS))[31]);

        let resp = issuer.sign(&req).unwrap();
        assert_eq!(
            resp.encode(),
            h(&v.token_response),
            "vector {i}: blind signature"
        );

        let token = Token::decode(&h(&v.token)).unwrap();
        assert_eq!(token.encode(), h(&v.token), "vector {i}: token");
        assert_eq!(token.nonce.to_vec(), h(&v.nonce));
        assert_eq!(token.challenge_digest, challenge.digest());
        assert_eq!(token.token_key_id, key_id(&h(&v.pkS)));
        assert_eq!(
            issuer.verify(&token).unwrap(),
            0,
            "vector {i}: token verifies"
        );
    }
}

#[test]
fn a_changed_byte_anywhere_in_a_vector_token_is_refused() {
    let v = &vectors()[0];
    let issuer = issuer_of(v);
    let token = h(&v.token);
    for i in 2..token.len() {
        let mut bad = token.clone();
        bad[i] ^= 0x01;
        let t = Token::decode(&bad).unwrap();
        assert!(
            matches!(
                issuer.verify(&t),
                Err(CreditError::BadSignature | CreditError::UnknownKey(_))
            ),
            "byte {i} changed"
        );
    }
}

#[test]
fn a_response_is_256_bytes_exactly() {
    let v = &vectors()[0];
    let resp = h(&v.token_response);
    assert!(TokenResponse::decode(&resp).is_ok());
    assert!(TokenResponse::decode(&resp[1..]).is_err());
    assert!(TokenResponse::decode(&[resp.clone(), vec![0]].concat()).is_err());
}
