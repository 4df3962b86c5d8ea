//! Whole encapsulated requests and responses (RFC 9458 §4.3, §4.4):
//! `message/ohttp-req` and `message/ohttp-res`.

use hpke::{Deserializable, OpModeR, OpModeS, Serializable};

use crate::OhttpError;
use crate::config::{KeyConfig, NPK};
use crate::keys::GatewayKeys;
use crate::suite::{self, Aead, HEADER_LEN, Kdf, Kem, RESPONSE_NONCE_LEN, ResponseKey};

pub const REQUEST_LABEL: &[u8] = b"message/bhttp request";
pub const RESPONSE_LABEL: &[u8] = b"message/bhttp response";

/// Encapsulates `request` (a binary HTTP message) to the gateway key
/// `config`: `header ‖ enc ‖ ct`, and the key its response opens with.
pub fn encapsulate_request(
    config: &KeyConfig,
    request: &[u8],
) -> Result<(Vec<u8>, ResponseKey), OhttpError> {
    let (mut out, enc, mut ctx) = setup_sender(config, REQUEST_LABEL)?;
    let ct = ctx.seal(request, b"").map_err(|_| OhttpError::Decrypt)?;
    out.extend_from_slice(&ct);
    let key = ResponseKey::export(enc, RESPONSE_LABEL, |l, o| ctx.export(l, o))?;
    Ok((out, key))
}

pub(crate) type SenderCtx = hpke::aead::AeadCtxS<Aead, Kdf, Kem>;
pub(crate) type ReceiverCtx = hpke::aead::AeadCtxR<Aead, Kdf, Kem>;

/// `header ‖ enc`, the encapsulated key, and the HPKE sender context.
pub(crate) fn setup_sender(
    config: &KeyConfig,
    label: &[u8],
) -> Result<(Vec<u8>, [u8; NPK], SenderCtx), OhttpError> {
    let pk = <Kem as hpke::Kem>::PublicKey::from_bytes(&config.public)
        .map_err(|_| OhttpError::BadKeyConfig("not an X25519 public key"))?;
    let header = suite::header(config.key_id);
    let info = suite::info(label, &header);
    let (enc, ctx) = hpke::setup_sender::<Aead, Kdf, Kem>(&OpModeS::Base, &pk, &info)
        .map_err(|_| OhttpError::BadKeyConfig("the key refuses encapsulation"))?;
    let mut enc_bytes = [0u8; NPK];
    enc_bytes.copy_from_slice(&enc.to_bytes());
    Ok(([&header[..], &enc_bytes].concat(), enc_bytes, ctx))
}

/// Reads `header ‖ enc` at the front of `msg`, finds the key and sets up
/// the receiver: the context, the encapsulated key and the bytes after.
pub(crate) fn setup_receiver<'m>(
    keys: &GatewayKeys,
    msg: &'m [u8],
    label: &[u8],
) -> Result<(ReceiverCtx, [u8; NPK], &'m [u8]), OhttpError> {
    let key_id = suite::parse_header(msg)?;
    let key = keys.find(key_id).ok_or(OhttpError::UnknownKey(key_id))?;
    let enc_bytes: [u8; NPK] = msg
        .get(HEADER_LEN..HEADER_LEN + NPK)
        .and_then(|e| e.try_into().ok())
        .ok_or(OhttpError::Truncated)?;
    let enc =
        <Kem as hpke::Kem>::EncappedKey::from_bytes(&enc_bytes).map_err(|_| OhttpError::Decrypt)?;
    let info = suite::info(label, &suite::header(key_id));
    let ctx = hpke::setup_receiver::<Aead, Kdf, Kem>(&OpModeR::Base, key.secret(), &enc, &info)
        .map_err(|_| OhttpError::Decrypt)?;
    Ok((ctx, enc_bytes, &msg[HEADER_LEN + NPK..]))
}

/// Removes the encapsulation of a whole request: the binary HTTP request,
/// and the key its response is sealed with.
pub fn decapsulate_request(
    keys: &GatewayKeys,
    enc_request: &[u8],
) -> Result<(Vec<u8>, ResponseKey), OhttpError> {
    let (mut ctx, enc, ct) = setup_receiver(keys, enc_request, REQUEST_LABEL)?;
    if ct.len() < suite::TAG_LEN {
        return Err(OhttpError::Truncated);
    }
    let request = ctx.open(ct, b"").map_err(|_| OhttpError::Decrypt)?;
    let key = ResponseKey::export(enc, RESPONSE_LABEL, |l, o| ctx.export(l, o))?;
    Ok((request, key))
}

/// Seals a whole response with a fresh random nonce.
pub fn encapsulate_response(key: &ResponseKey, response: &[u8]) -> Vec<u8> {
    seal_response(key, &rand::random(), response)
}

/// Seals a whole response under `nonce`: `nonce ‖ ct`. (Use
/// [`encapsulate_response`]; a fixed nonce is for the RFC's example.)
pub fn seal_response(
    key: &ResponseKey,
    nonce: &[u8; RESPONSE_NONCE_LEN],
    response: &[u8],
) -> Vec<u8> {
    let ct = key.aead(nonce).seal(0, b"", response);
    [&nonce[..], &ct].concat()
}

/// Opens a whole response.
pub fn open_response(key: &ResponseKey, enc_response: &[u8]) -> Result<Vec<u8>, OhttpError> {
    if enc_response.len() < RESPONSE_NONCE_LEN + suite::TAG_LEN {
        return Err(OhttpError::Truncated);
    }
    let (nonce, ct) = enc_response.split_at(RESPONSE_NONCE_LEN);
    let nonce: [u8; RESPONSE_NONCE_LEN] = nonce.try_into().expect("split at its length");
    key.aead(&nonce).open(0, b"", ct)
}
