//! Tokens end to end within the crate: a client blinds, the issuer signs,
//! the client unblinds, the issuer redeems — and every way a hostile
//! client or issuer could bend that is refused.

use std::sync::OnceLock;

use kokon_credit::wire::{NK, TokenResponse};
use kokon_credit::{CreditError, Issuer, PublicKeys, Schedule, Token, TokenRequest};

const SCHEDULE: Schedule = Schedule {
    unit: 1_000,
    levels: 4,
};

fn issuer() -> &'static Issuer {
    static I: OnceLock<Issuer> = OnceLock::new();
    I.get_or_init(|| Issuer::generate("kokon proxy test", SCHEDULE).unwrap())
}

fn other_issuer() -> &'static Issuer {
    static I: OnceLock<Issuer> = OnceLock::new();
    I.get_or_init(|| Issuer::generate("kokon proxy other", SCHEDULE).unwrap())
}

/// What a client sees: the published document, read back.
fn published(i: &Issuer) -> PublicKeys {
    PublicKeys::from_document(&i.public().document()).unwrap()
}

fn token(i: &Issuer, level: u8) -> Token {
    let keys = published(i);
    let b = keys.blind(level).unwrap();
    let resp = i.sign(&b.request).unwrap();
    b.finish(&keys, &resp).unwrap()
}

#[test]
fn a_token_is_worth_its_denomination_and_verifies() {
    for level in 0..SCHEDULE.levels {
        let t = token(issuer(), level);
        let r = issuer()
            .redeem(&Token::from_b64(&t.to_b64()).unwrap())
            .unwrap();
        assert_eq!(r.level, level);
        assert_eq!(r.value, 1_000 << level);
        assert_eq!(r.spent_id, kokon_credit::spent_id(&t));
    }
}

#[test]
fn the_same_request_is_answered_the_same_so_a_retry_issues_nothing_new() {
    let keys = published(issuer());
    let b = keys.blind(2).unwrap();
    let first = issuer().sign(&b.request).unwrap();
    let again = issuer().sign(&b.request).unwrap();
    assert_eq!(first, again);
    let (t1, t2) = (
        b.finish(&keys, &first).unwrap(),
        b.finish(&keys, &again).unwrap(),
    );
    assert_eq!(kokon_credit::spent_id(&t1), kokon_credit::spent_id(&t2));
}

#[test]
fn two_tokens_share_nothing_the_issuer_saw() {
    let keys = published(issuer());
    let b = keys.blind(1).unwrap();
    let resp = issuer().sign(&b.request).unwrap();
    let t = b.finish(&keys, &resp).unwrap();
    let shown = t.encode();
    // Neither the blinded message nor the blind signature appears in the
    // token; no 16-byte window of them does.
    for seen in [&b.request.blinded_msg, &resp.blind_sig] {
        for w in seen.windows(16) {
            assert!(!shown.windows(16).any(|x| x == w));
        }
    }
}

#[test]
fn another_issuers_token_is_refused() {
    let t = token(other_issuer(), 0);
    assert_eq!(issuer().redeem(&t), Err(CreditError::WrongChallenge));
    // Even claiming this issuer's challenge: its key is not one of ours.
    let mut t = t;
    t.challenge_digest = token(issuer(), 0).challenge_digest;
    assert!(matches!(
        issuer().redeem(&t),
        Err(CreditError::UnknownKey(_))
    ));
}

#[test]
fn a_small_token_relabelled_as_a_large_one_is_refused() {
    let small = token(issuer(), 0);
    let large = token(issuer(), 3);
    let mut forged = small.clone();
    forged.token_key_id = large.token_key_id;
    assert_eq!(issuer().redeem(&forged), Err(CreditError::BadSignature));
    let mut forged = small;
    forged.nonce[0] ^= 1;
    assert_eq!(issuer().redeem(&forged), Err(CreditError::BadSignature));
}

#[test]
fn a_wrong_answer_from_the_issuer_is_caught_by_the_client() {
    let keys = published(issuer());
    let b = keys.blind(1).unwrap();
    // An answer for another request, or by another denomination's key.
    let other = keys.blind(1).unwrap();
    let wrong = issuer().sign(&other.request).unwrap();
    assert_eq!(b.finish(&keys, &wrong), Err(CreditError::BadIssuance));
    // Signed by the smallest denomination's key instead: that key refuses
    // a blinded message not below its modulus (half of them), so try until
    // one is signed, and the client must refuse that answer.
    let small = keys.blind(0).unwrap().request.truncated_token_key_id;
    let signed_by_small_key = (0..64).find_map(|_| {
        let b = keys.blind(1).unwrap();
        let mut cheaper = b.request.clone();
        cheaper.truncated_token_key_id = small;
        match issuer().sign(&cheaper) {
            Ok(resp) => Some((b, resp)),
            Err(e) => {
                assert!(matches!(e, CreditError::Malformed { .. }), "{e}");
                None
            }
        }
    });
    let (b2, by_small_key) = signed_by_small_key.expect("one of 64 is below the modulus");
    assert_eq!(
        b2.finish(&keys, &by_small_key),
        Err(CreditError::BadIssuance)
    );
    let garbage = TokenResponse {
        blind_sig: vec![7; NK],
    };
    assert_eq!(b.finish(&keys, &garbage), Err(CreditError::BadIssuance));
}

#[test]
fn hostile_requests_are_refused_without_signing() {
    let keys = published(issuer());
    let b = keys.blind(0).unwrap();
    let unknown = (0..=255u8).find(|t| keys.level_of(*t).is_none()).unwrap();
    let req = TokenRequest {
        truncated_token_key_id: unknown,
        blinded_msg: b.request.blinded_msg.clone(),
    };
    assert!(matches!(
        issuer().sign(&req),
        Err(CreditError::UnknownKey(_))
    ));
    let above_modulus = TokenRequest {
        truncated_token_key_id: b.request.truncated_token_key_id,
        blinded_msg: vec![0xff; NK],
    };
    assert!(matches!(
        issuer().sign(&above_modulus),
        Err(CreditError::Malformed { .. })
    ));
    assert!(TokenRequest::from_b64("not base64!").is_err());
    assert!(TokenRequest::from_b64(&"A".repeat(4000)).is_err());
}

#[test]
fn the_keys_survive_a_restart_and_a_bad_document_is_refused() {
    let secrets = issuer().secrets().unwrap();
    let again = Issuer::from_secrets(&secrets).unwrap();
    assert_eq!(again.public().document(), issuer().public().document());
    // A token issued before the restart is redeemed after it.
    let t = token(issuer(), 1);
    assert_eq!(again.redeem(&t).unwrap().level, 1);

    let mut doc = issuer().public().document();
    doc.keys[1] = doc.keys[0].clone();
    assert!(PublicKeys::from_document(&doc).is_err(), "duplicated key");
    let mut doc = issuer().public().document();
    doc.keys[0] = "%%%".into();
    assert!(PublicKeys::from_document(&doc).is_err(), "not base64");
    let mut doc = issuer().public().document();
    doc.unit = "0".into();
    assert!(PublicKeys::from_document(&doc).is_err(), "zero unit");
}

#[test]
fn the_fingerprint_names_exactly_the_keys_every_client_is_given() {
    let (a, b) = (issuer(), other_issuer());
    assert_eq!(
        published(a).fingerprint(),
        a.public().fingerprint(),
        "what a client reads is what the issuer published"
    );
    assert_ne!(published(a).fingerprint(), published(b).fingerprint());
    // The same keys under another name or unit are other keys to a client.
    let mut doc = a.public().document();
    doc.issuer = "kokon proxy renamed".into();
    assert_ne!(
        PublicKeys::from_document(&doc).unwrap().fingerprint(),
        a.public().fingerprint()
    );
    let mut doc = a.public().document();
    doc.unit = "2000".into();
    assert_ne!(
        PublicKeys::from_document(&doc).unwrap().fingerprint(),
        a.public().fingerprint()
    );
    // One key swapped for another issuer's (a key handed to one client).
    let mut doc = a.public().document();
    doc.keys[2] = b.public().document().keys[2].clone();
    if let Ok(k) = PublicKeys::from_document(&doc) {
        assert_ne!(k.fingerprint(), a.public().fingerprint());
    }
}
