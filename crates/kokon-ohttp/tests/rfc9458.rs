//! RFC 9458 Appendix A, "Complete Example of a Request and Response",
//! reproduced byte for byte: the key configuration from the gateway's
//! private key, the decapsulated request, the response sealed under the
//! example's nonce, and the client opening it.
//!
//! The client's half of the request cannot be reproduced byte for byte:
//! the example gives the ephemeral private key, and HPKE implementations
//! (ours uses the `hpke` crate) derive ephemeral keys from random input
//! instead. Its header and HPKE info are checked, and `interop.rs` checks
//! that another implementation opens what our client sends.

use kokon_ohttp::{GatewayKey, GatewayKeys, KeyConfig, encap};

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

const SK_R: &str = "3c168975674b2fa8e465970b79c8dcf09f1c741626480bd4c6162fc5b6a98e1a";
const KEY_CONFIG: &str =
    "01002031e1f05a740102115220e9af918f738674aec95f54db6e04eb705aae8e79815500080001000100010003";
const REQUEST: &str = "00034745540568747470730b6578616d706c652e636f6d012f";
const ENC_REQUEST: &str = "010020000100014b28f881333e7c164ffc499ad9796f877f4e1051ee6d31bad19dec96c208b4726374e469135906992e1268c594d2a10c695d858c40a026e7965e7d86b83dd440b2c0185204b4d63525";
const RESPONSE: &str = "0140c8";
const RESPONSE_NONCE: &str = "c789e7151fcba46158ca84b04464910d";
const ENC_RESPONSE: &str = "c789e7151fcba46158ca84b04464910d86f9013e404feea014e7be4a441f234f857fbd";

fn gateway() -> GatewayKeys {
    let sk: [u8; 32] = h(SK_R).try_into().unwrap();
    GatewayKeys::new(GatewayKey::from_secret(1, &sk).unwrap())
}

#[test]
fn the_key_configuration_is_the_rfcs() {
    // The example's configuration offers two suites (AES-128-GCM and
    // ChaCha20-Poly1305); ours offers AES-128-GCM. The key id, KEM and key
    // are the same bytes, and our parser reads the RFC's configuration.
    let ours = gateway().current().encode();
    let rfc = h(KEY_CONFIG);
    assert_eq!(ours[..35], rfc[..35], "key id, KEM id and public key");
    assert_eq!(
        ours[35..],
        h("000400010001"),
        "one suite: HKDF-SHA256, AES-128-GCM"
    );
    let parsed = KeyConfig::decode(&rfc).unwrap().unwrap();
    assert_eq!(parsed, gateway().current());
}

#[test]
fn the_gateway_opens_the_rfcs_request_and_seals_its_response() {
    let (request, key) = encap::decapsulate_request(&gateway(), &h(ENC_REQUEST)).unwrap();
    assert_eq!(request, h(REQUEST));
    let nonce: [u8; 16] = h(RESPONSE_NONCE).try_into().unwrap();
    let sealed = encap::seal_response(&key, &nonce, &h(RESPONSE));
    assert_eq!(hex::encode(sealed), ENC_RESPONSE);
}

#[test]
fn the_client_opens_the_rfcs_response() {
    // The response key is the one the example's request carries (the
    // client's own is made from its ephemeral key, which it does not give
    // in a form HPKE can take; the gateway's is the same secret).
    let (_, key) = encap::decapsulate_request(&gateway(), &h(ENC_REQUEST)).unwrap();
    assert_eq!(
        encap::open_response(&key, &h(ENC_RESPONSE)).unwrap(),
        h(RESPONSE)
    );
}

#[test]
fn the_clients_header_is_the_rfcs() {
    let config = KeyConfig::decode(&h(KEY_CONFIG)).unwrap().unwrap();
    let (enc_request, _) = encap::encapsulate_request(&config, &h(REQUEST)).unwrap();
    assert_eq!(
        enc_request[..7],
        h(ENC_REQUEST)[..7],
        "key id and algorithm ids"
    );
    assert_eq!(
        enc_request.len(),
        h(ENC_REQUEST).len(),
        "header, enc, ciphertext and tag"
    );
    let (request, _) = encap::decapsulate_request(&gateway(), &enc_request).unwrap();
    assert_eq!(request, h(REQUEST));
}

#[test]
fn a_changed_byte_anywhere_is_refused() {
    let good = h(ENC_REQUEST);
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x01;
        assert!(
            encap::decapsulate_request(&gateway(), &bad).is_err(),
            "byte {i} changed and the request still opened"
        );
    }
    let (_, key) = encap::decapsulate_request(&gateway(), &good).unwrap();
    let resp = h(ENC_RESPONSE);
    for i in 0..resp.len() {
        let mut bad = resp.clone();
        bad[i] ^= 0x80;
        assert!(
            encap::open_response(&key, &bad).is_err(),
            "response byte {i}"
        );
    }
}
