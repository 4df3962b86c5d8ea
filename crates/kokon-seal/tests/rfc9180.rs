//! RFC 9180's test vectors for Kokon's suite (DHKEM(X25519, HKDF-SHA256),
//! HKDF-SHA256, AES-256-GCM; kem 0x20, kdf 0x01, aead 0x02), in all four
//! modes, as the CFRG published them (the JSON the `hpke` crate ships,
//! restricted to this suite and to the first ten encryptions of each).
//! The receiver side is checked end to end: the key pair derived from
//! `ikmR`, the context set up from `enc`, each ciphertext opened in
//! sequence, and every export.

use hpke::{Deserializable, Kem as _, OpModeR, PskBundle, Serializable};
use kokon_seal::WorkerKey;
use kokon_seal::suite::{Aead, Kdf, Kem};

#[derive(serde::Deserialize)]
struct Vector {
    mode: u8,
    kem_id: u16,
    kdf_id: u16,
    aead_id: u16,
    info: String,
    #[serde(rename = "ikmR")]
    ikm_r: String,
    #[serde(rename = "pkRm")]
    pk_r: String,
    #[serde(rename = "pkSm")]
    pk_s: Option<String>,
    enc: String,
    psk: Option<String>,
    psk_id: Option<String>,
    encryptions: Vec<Encryption>,
    exports: Vec<Export>,
}

#[derive(serde::Deserialize)]
struct Encryption {
    aad: String,
    #[serde(rename = "ct")]
    ciphertext: String,
    #[serde(rename = "pt")]
    plaintext: String,
}

#[derive(serde::Deserialize)]
struct Export {
    exporter_context: String,
    #[serde(rename = "L")]
    len: usize,
    exported_value: String,
}

fn bytes(h: &str) -> Vec<u8> {
    hex::decode(h).expect("hex in the vectors")
}

#[test]
fn the_suite_passes_the_rfc_9180_vectors_in_every_mode() {
    let text = include_str!("vectors/rfc9180-x25519-sha256-aes256gcm.json");
    let vectors: Vec<Vector> = serde_json::from_str(text).unwrap();
    let mut modes = vec![];
    for v in &vectors {
        assert_eq!(
            (v.kem_id, v.kdf_id, v.aead_id),
            (0x20, 1, 2),
            "Kokon's suite only"
        );
        // DeriveKeyPair gives the vector's key pair.
        assert_eq!(
            WorkerKey::derive(&bytes(&v.ikm_r)).public().to_vec(),
            bytes(&v.pk_r)
        );
        let (sk_r, pk_r) = Kem::derive_keypair(&bytes(&v.ikm_r));
        assert_eq!(pk_r.to_bytes().to_vec(), bytes(&v.pk_r));
        let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&bytes(&v.enc)).unwrap();
        let (psk, psk_id) = (
            v.psk.as_deref().map(bytes).unwrap_or_default(),
            v.psk_id.as_deref().map(bytes).unwrap_or_default(),
        );
        let pk_s = v
            .pk_s
            .as_deref()
            .map(|p| <Kem as hpke::Kem>::PublicKey::from_bytes(&bytes(p)).unwrap());
        let bundle = || PskBundle::new(&psk, &psk_id).unwrap();
        let mode = match v.mode {
            0 => OpModeR::Base,
            1 => OpModeR::Psk(bundle()),
            2 => OpModeR::Auth(pk_s.clone().unwrap()),
            3 => OpModeR::AuthPsk(pk_s.clone().unwrap(), bundle()),
            m => panic!("mode {m}"),
        };
        let mut ctx =
            hpke::setup_receiver::<Aead, Kdf, Kem>(&mode, &sk_r, &enc, &bytes(&v.info)).unwrap();
        for (i, e) in v.encryptions.iter().enumerate() {
            let opened = ctx.open(&bytes(&e.ciphertext), &bytes(&e.aad));
            assert_eq!(
                opened.unwrap(),
                bytes(&e.plaintext),
                "mode {} encryption {i}",
                v.mode
            );
        }
        for x in &v.exports {
            let mut out = vec![0u8; x.len];
            ctx.export(&bytes(&x.exporter_context), &mut out).unwrap();
            assert_eq!(out, bytes(&x.exported_value), "mode {} export", v.mode);
        }
        // A ciphertext changed by one bit does not open.
        let mut bad = bytes(&v.encryptions[0].ciphertext);
        bad[0] ^= 1;
        let mut fresh =
            hpke::setup_receiver::<Aead, Kdf, Kem>(&mode, &sk_r, &enc, &bytes(&v.info)).unwrap();
        assert!(fresh.open(&bad, &bytes(&v.encryptions[0].aad)).is_err());
        modes.push(v.mode);
    }
    modes.sort();
    assert_eq!(modes, [0, 1, 2, 3], "every mode is covered");
}
