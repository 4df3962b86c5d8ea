//! The HPKE suite and the response key schedule shared by whole and
//! chunked messages (RFC 9458 §4.4, draft-ietf-ohai-chunked-ohttp §6).

use ring::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;

use crate::OhttpError;
use crate::config::{AEAD_AES_128_GCM, KDF_HKDF_SHA256, KEM_X25519_SHA256, NK, NN, NPK};

pub type Kem = hpke::kem::X25519HkdfSha256;
pub type Kdf = hpke::kdf::HkdfSha256;
pub type Aead = hpke::aead::AesGcm128;

/// Bytes of a request header: key id, KEM, KDF and AEAD identifiers.
pub const HEADER_LEN: usize = 7;
/// Bytes of the response nonce: max(Nn, Nk).
pub const RESPONSE_NONCE_LEN: usize = 16;
/// Bytes of an AEAD tag.
pub const TAG_LEN: usize = 16;

/// The header of a request to key `key_id` in Kokon's suite.
pub fn header(key_id: u8) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0] = key_id;
    h[1..3].copy_from_slice(&KEM_X25519_SHA256.to_be_bytes());
    h[3..5].copy_from_slice(&KDF_HKDF_SHA256.to_be_bytes());
    h[5..7].copy_from_slice(&AEAD_AES_128_GCM.to_be_bytes());
    h
}

/// Reads a request header: the key id, if the algorithms are Kokon's.
pub fn parse_header(b: &[u8]) -> Result<u8, OhttpError> {
    let h = b.get(..HEADER_LEN).ok_or(OhttpError::Truncated)?;
    let id = |at: usize| u16::from_be_bytes([h[at], h[at + 1]]);
    let (kem, kdf, aead) = (id(1), id(3), id(5));
    if (kem, kdf, aead) != (KEM_X25519_SHA256, KDF_HKDF_SHA256, AEAD_AES_128_GCM) {
        return Err(OhttpError::Unsupported { kem, kdf, aead });
    }
    Ok(h[0])
}

/// `label ‖ 0x00 ‖ header`, the HPKE info of a request.
pub fn info(label: &[u8], header: &[u8; HEADER_LEN]) -> Vec<u8> {
    [label, &[0], header].concat()
}

/// What seals (gateway) or opens (client) the response to one request: the
/// secret exported from the request's HPKE context, and the request's
/// encapsulated key. It holds nothing else of that context.
pub struct ResponseKey {
    pub(crate) secret: [u8; RESPONSE_NONCE_LEN],
    pub(crate) enc: [u8; NPK],
}

impl std::fmt::Debug for ResponseKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResponseKey(..)")
    }
}

impl ResponseKey {
    /// Exports the secret under `label` from an HPKE context.
    pub(crate) fn export(
        enc: [u8; NPK],
        label: &[u8],
        export: impl FnOnce(&[u8], &mut [u8]) -> Result<(), hpke::HpkeError>,
    ) -> Result<Self, OhttpError> {
        let mut secret = [0u8; RESPONSE_NONCE_LEN];
        export(label, &mut secret).map_err(|_| OhttpError::Decrypt)?;
        Ok(Self { secret, enc })
    }

    /// The response AEAD key and nonce for `response_nonce`:
    /// `prk = Extract(enc ‖ response_nonce, secret)`, then `Expand(prk,
    /// "key", Nk)` and `Expand(prk, "nonce", Nn)`.
    pub(crate) fn aead(&self, response_nonce: &[u8; RESPONSE_NONCE_LEN]) -> ResponseAead {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, &[&self.enc[..], response_nonce].concat());
        let prk = salt.extract(&self.secret);
        let mut key = [0u8; NK];
        let mut nonce = [0u8; NN];
        expand(&prk, b"key", &mut key);
        expand(&prk, b"nonce", &mut nonce);
        let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &key).expect("16-byte key"));
        ResponseAead { key, nonce }
    }
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn expand(prk: &hkdf::Prk, info: &[u8], out: &mut [u8]) {
    let infos = [info];
    prk.expand(&infos, Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .expect("HKDF-SHA256 expands up to 8160 bytes");
}

/// The response's AEAD: its key and base nonce. Chunk `i` of a chunked
/// response uses the nonce XOR `i`; a whole response is chunk 0.
pub(crate) struct ResponseAead {
    key: LessSafeKey,
    nonce: [u8; NN],
}

impl ResponseAead {
    fn nonce(&self, counter: u64) -> Nonce {
        let mut n = self.nonce;
        for (b, c) in n[NN - 8..].iter_mut().zip(counter.to_be_bytes()) {
            *b ^= c;
        }
        Nonce::assume_unique_for_key(n)
    }

    pub(crate) fn seal(&self, counter: u64, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        let mut out = plain.to_vec();
        self.key
            .seal_in_place_append_tag(self.nonce(counter), Aad::from(aad), &mut out)
            .expect("AES-GCM seals any length we send");
        out
    }

    pub(crate) fn open(&self, counter: u64, aad: &[u8], ct: &[u8]) -> Result<Vec<u8>, OhttpError> {
        let mut buf = ct.to_vec();
        let len = self
            .key
            .open_in_place(self.nonce(counter), Aad::from(aad), &mut buf)
            .map_err(|_| OhttpError::Decrypt)?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}
