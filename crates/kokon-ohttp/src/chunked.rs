//! Chunked OHTTP (draft-ietf-ohai-chunked-ohttp): `message/ohttp-chunked-req`
//! and `message/ohttp-chunked-res`, so a streamed answer reaches the client
//! chunk by chunk.
//!
//! Each chunk is `length ‖ AEAD(chunk)` (QUIC varint length); the last is
//! `0 ‖ AEAD(final chunk)` running to the end of the message, sealed with
//! the associated data `"final"`, so a truncated message never opens as a
//! whole one. Response chunk `i` uses the response nonce XOR `i`.

use crate::config::KeyConfig;
use crate::encap::{setup_receiver, setup_sender};
use crate::keys::GatewayKeys;
use crate::suite::{RESPONSE_NONCE_LEN, ResponseAead, ResponseKey, TAG_LEN};
use crate::{OhttpError, varint};

pub const REQUEST_LABEL: &[u8] = b"message/bhttp chunked request";
pub const RESPONSE_LABEL: &[u8] = b"message/bhttp chunked response";
const FINAL_AAD: &[u8] = b"final";
/// Largest sealed chunk a reader accepts (and the most plaintext a writer
/// puts in one chunk, less the tag).
pub const MAX_CHUNK: usize = 64 * 1024;

/// Encapsulates a whole request as one final chunk.
pub fn encapsulate_request(
    config: &KeyConfig,
    request: &[u8],
) -> Result<(Vec<u8>, ResponseKey), OhttpError> {
    let (mut out, enc, mut ctx) = setup_sender(config, REQUEST_LABEL)?;
    varint::put(&mut out, 0);
    let ct = ctx
        .seal(request, FINAL_AAD)
        .map_err(|_| OhttpError::Decrypt)?;
    out.extend_from_slice(&ct);
    let key = ResponseKey::export(enc, RESPONSE_LABEL, |l, o| ctx.export(l, o))?;
    Ok((out, key))
}

/// Removes the encapsulation of a whole chunked request (every chunk and
/// the final one): the request's bytes, and the key of its response.
pub fn decapsulate_request(
    keys: &GatewayKeys,
    body: &[u8],
) -> Result<(Vec<u8>, ResponseKey), OhttpError> {
    let (mut ctx, enc, mut rest) = setup_receiver(keys, body, REQUEST_LABEL)?;
    let mut request = Vec::new();
    loop {
        let (len, n) = varint::get(rest).ok_or(OhttpError::Unfinished)?;
        rest = &rest[n..];
        if len == 0 {
            if rest.len() < TAG_LEN {
                return Err(OhttpError::Truncated);
            }
            let last = ctx.open(rest, FINAL_AAD).map_err(|_| OhttpError::Decrypt)?;
            request.extend_from_slice(&last);
            break;
        }
        let len = usize::try_from(len).map_err(|_| OhttpError::Truncated)?;
        let ct = rest.get(..len).ok_or(OhttpError::Truncated)?;
        request.extend_from_slice(&ctx.open(ct, b"").map_err(|_| OhttpError::Decrypt)?);
        rest = &rest[len..];
    }
    let key = ResponseKey::export(enc, RESPONSE_LABEL, |l, o| ctx.export(l, o))?;
    Ok((request, key))
}

/// The gateway's side of a chunked response.
pub struct ResponseSealer {
    aead: ResponseAead,
    counter: u64,
}

impl ResponseSealer {
    /// The sealer, and the bytes the response starts with (its nonce).
    pub fn new(key: &ResponseKey) -> (Self, Vec<u8>) {
        let nonce: [u8; RESPONSE_NONCE_LEN] = rand::random();
        let aead = key.aead(&nonce);
        (Self { aead, counter: 0 }, nonce.to_vec())
    }

    /// Seals `data` as one or more non-final chunks (empty data: nothing).
    pub fn chunk(&mut self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + 24);
        for piece in data.chunks(MAX_CHUNK - TAG_LEN) {
            let ct = self.aead.seal(self.counter, b"", piece);
            self.counter += 1;
            varint::put(&mut out, ct.len() as u64);
            out.extend_from_slice(&ct);
        }
        out
    }

    /// The final (empty) chunk: the response is complete.
    pub fn finish(self) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&self.aead.seal(self.counter, FINAL_AAD, b""));
        out
    }
}

/// The client's side of a chunked response: bytes go in as they arrive,
/// opened chunks come out. Bounded: a chunk above [`MAX_CHUNK`] is refused
/// before it is buffered.
pub struct ResponseOpener {
    key: ResponseKey,
    aead: Option<ResponseAead>,
    counter: u64,
    buf: Vec<u8>,
    finished: bool,
}

impl ResponseOpener {
    pub fn new(key: ResponseKey) -> Self {
        Self {
            key,
            aead: None,
            counter: 0,
            buf: Vec::new(),
            finished: false,
        }
    }

    /// Adds bytes received; returns the chunks they complete, opened, and
    /// whether the final chunk was among them.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, OhttpError> {
        if self.finished {
            return Err(OhttpError::AfterFinal);
        }
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        if self.aead.is_none() {
            let Some(nonce) = self.buf.get(..RESPONSE_NONCE_LEN) else {
                return Ok(out);
            };
            let nonce: [u8; RESPONSE_NONCE_LEN] = nonce.try_into().expect("sliced to its length");
            self.aead = Some(self.key.aead(&nonce));
            self.buf.drain(..RESPONSE_NONCE_LEN);
        }
        while let Some((len, n)) = varint::get(&self.buf) {
            if len == 0 {
                // The final chunk runs to the end: wait for `finish`.
                if self.buf.len() > n + MAX_CHUNK {
                    return Err(OhttpError::TooLarge(MAX_CHUNK));
                }
                break;
            }
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            if len > MAX_CHUNK {
                return Err(OhttpError::TooLarge(MAX_CHUNK));
            }
            if self.buf.len() < n + len {
                break;
            }
            let aead = self.aead.as_ref().expect("set above");
            let plain = aead.open(self.counter, b"", &self.buf[n..n + len])?;
            self.counter += 1;
            self.buf.drain(..n + len);
            out.push(plain);
        }
        Ok(out)
    }

    /// The response ended: opens the final chunk (its content, usually
    /// empty). A response cut before its final chunk is an error.
    pub fn finish(&mut self) -> Result<Vec<u8>, OhttpError> {
        if self.finished {
            return Err(OhttpError::AfterFinal);
        }
        let aead = self.aead.as_ref().ok_or(OhttpError::Unfinished)?;
        match varint::get(&self.buf) {
            Some((0, n)) if self.buf.len() >= n + TAG_LEN => {
                let plain = aead.open(self.counter, FINAL_AAD, &self.buf[n..])?;
                self.finished = true;
                self.buf.clear();
                Ok(plain)
            }
            _ => Err(OhttpError::Unfinished),
        }
    }
}
