//! The response stream: chunks sealed under keys exported from the job's
//! HPKE context, in order, the last one marked.
//!
//! Chunk `i` is AES-256-GCM with nonce `base_nonce XOR i` (as RFC 9180's
//! own sequence) and associated data `"kokon/chunk/v1\0" ‖ binding ‖ i ‖
//! final`, so the opener, which expects chunk `i`, refuses a chunk from
//! another position (replayed or reordered), from another job (its keys
//! and binding differ), altered, or after the final one; and a stream
//! that ends before its final chunk is reported as cut, never as complete.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

/// Bytes a chunk adds to its plaintext (the GCM tag).
pub const TAG_LEN: usize = 16;

/// How far before or after the expected position a refused chunk is
/// looked for, to say whether it was replayed or reordered.
const DIAGNOSE_WINDOW: u64 = 64;

const CHUNK_AAD: &[u8] = b"kokon/chunk/v1\0";
const EXPORT_KEY: &[u8] = b"kokon/response-key/v1";
const EXPORT_NONCE: &[u8] = b"kokon/response-nonce/v1";

/// A refused chunk or stream.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    #[error("chunk of {0} bytes is shorter than its tag: truncated")]
    Truncated(usize),
    #[error("chunk {got} was sent again (expected chunk {expected}): replayed")]
    Replayed { got: u64, expected: u64 },
    #[error("chunk {got} came where chunk {expected} belongs: reordered or dropped")]
    OutOfOrder { got: u64, expected: u64 },
    #[error("chunk {expected} does not open: altered, or from another job's stream")]
    Forged { expected: u64 },
    #[error("a chunk came after the final one")]
    AfterFinal,
    #[error("the stream was cut after {0} chunks, before its final chunk")]
    Cut(u64),
    #[error("the stream has used every sequence number")]
    Exhausted,
}

/// The response key and base nonce of one job, exported from its HPKE
/// context on both sides.
pub(crate) struct ResponseKeys {
    key: [u8; 32],
    nonce: [u8; 12],
}

impl ResponseKeys {
    pub(crate) fn export<E>(
        mut export: impl FnMut(&[u8], &mut [u8]) -> Result<(), E>,
    ) -> Result<Self, E> {
        let mut keys = Self {
            key: [0; 32],
            nonce: [0; 12],
        };
        export(EXPORT_KEY, &mut keys.key)?;
        export(EXPORT_NONCE, &mut keys.nonce)?;
        Ok(keys)
    }
}

/// The shared state of both ends of a response stream.
struct Stream {
    aead: LessSafeKey,
    base: [u8; 12],
    binding: [u8; 32],
    next: u64,
    done: bool,
}

impl Stream {
    fn new(keys: &ResponseKeys, binding: &[u8; 32]) -> Self {
        Self {
            aead: LessSafeKey::new(
                UnboundKey::new(&AES_256_GCM, &keys.key).expect("a 32-byte key"),
            ),
            base: keys.nonce,
            binding: *binding,
            next: 0,
            done: false,
        }
    }

    fn nonce(&self, seq: u64) -> Nonce {
        let mut n = self.base;
        for (b, s) in n[4..].iter_mut().zip(seq.to_be_bytes()) {
            *b ^= s;
        }
        Nonce::assume_unique_for_key(n)
    }

    fn aad(&self, seq: u64, last: bool) -> Aad<Vec<u8>> {
        let mut a = Vec::with_capacity(CHUNK_AAD.len() + 41);
        a.extend_from_slice(CHUNK_AAD);
        a.extend_from_slice(&self.binding);
        a.extend_from_slice(&seq.to_be_bytes());
        a.push(u8::from(last));
        Aad::from(a)
    }

    /// The plaintext and final flag if `chunk` is chunk `seq` of this stream.
    fn try_open(&self, chunk: &[u8], seq: u64) -> Option<(Vec<u8>, bool)> {
        [false, true].into_iter().find_map(|last| {
            let mut buf = chunk.to_vec();
            let len = self
                .aead
                .open_in_place(self.nonce(seq), self.aad(seq, last), &mut buf)
                .ok()?
                .len();
            buf.truncate(len);
            Some((buf, last))
        })
    }
}

/// The worker's end: seals the response's chunks in order.
pub struct ResponseSealer(Stream);

impl std::fmt::Debug for ResponseSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseSealer")
            .field("next", &self.0.next)
            .finish_non_exhaustive()
    }
}

impl ResponseSealer {
    pub(crate) fn new(keys: &ResponseKeys, binding: &[u8; 32]) -> Self {
        Self(Stream::new(keys, binding))
    }

    /// Seals the next chunk; `last` marks the final one (nothing may follow).
    pub fn seal(&mut self, plaintext: &[u8], last: bool) -> Result<Vec<u8>, ChunkError> {
        let s = &mut self.0;
        if s.done {
            return Err(ChunkError::AfterFinal);
        }
        let seq = s.next;
        let next = seq.checked_add(1).ok_or(ChunkError::Exhausted)?;
        let mut buf = plaintext.to_vec();
        s.aead
            .seal_in_place_append_tag(s.nonce(seq), s.aad(seq, last), &mut buf)
            .map_err(|_| ChunkError::Exhausted)?;
        s.next = next;
        s.done = last;
        Ok(buf)
    }
}

/// The client's end: opens chunks in order and says how a bad one is bad.
pub struct ResponseOpener(Stream);

impl std::fmt::Debug for ResponseOpener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseOpener")
            .field("next", &self.0.next)
            .field("done", &self.0.done)
            .finish_non_exhaustive()
    }
}

/// An opened chunk. Plaintext: no `Debug`, so it cannot reach a log.
#[derive(PartialEq, Eq)]
pub struct Opened {
    pub plaintext: Vec<u8>,
    /// The final chunk: the response is complete.
    pub last: bool,
}

impl ResponseOpener {
    pub(crate) fn new(keys: &ResponseKeys, binding: &[u8; 32]) -> Self {
        Self(Stream::new(keys, binding))
    }

    /// Opens the next chunk. After an error the stream is not to be
    /// trusted further (the caller ends it).
    pub fn open(&mut self, chunk: &[u8]) -> Result<Opened, ChunkError> {
        let s = &mut self.0;
        if s.done {
            return Err(ChunkError::AfterFinal);
        }
        if chunk.len() < TAG_LEN {
            return Err(ChunkError::Truncated(chunk.len()));
        }
        let expected = s.next;
        if let Some((plaintext, last)) = s.try_open(chunk, expected) {
            s.next = expected.checked_add(1).ok_or(ChunkError::Exhausted)?;
            s.done = last;
            return Ok(Opened { plaintext, last });
        }
        Err(self.diagnose(chunk, expected))
    }

    /// Opens `chunk` if it is the next chunk, without diagnosing a refusal.
    pub(crate) fn try_next(&mut self, chunk: &[u8]) -> Option<Opened> {
        let s = &mut self.0;
        if s.done || chunk.len() < TAG_LEN {
            return None;
        }
        let (plaintext, last) = s.try_open(chunk, s.next)?;
        s.next = s.next.checked_add(1)?;
        s.done = last;
        Some(Opened { plaintext, last })
    }

    /// Why `chunk` is not chunk `expected`: an earlier one again, a later
    /// one early, or none of this stream's.
    fn diagnose(&self, chunk: &[u8], expected: u64) -> ChunkError {
        let s = &self.0;
        let earlier = expected.saturating_sub(DIAGNOSE_WINDOW)..expected;
        if let Some(got) = earlier
            .into_iter()
            .find(|&i| s.try_open(chunk, i).is_some())
        {
            return ChunkError::Replayed { got, expected };
        }
        let later = expected.saturating_add(1)..=expected.saturating_add(DIAGNOSE_WINDOW);
        if let Some(got) = later.into_iter().find(|&i| s.try_open(chunk, i).is_some()) {
            return ChunkError::OutOfOrder { got, expected };
        }
        ChunkError::Forged { expected }
    }

    /// The stream ended (its transport closed): complete only if the final
    /// chunk came.
    pub fn finish(&self) -> Result<(), ChunkError> {
        if self.0.done {
            Ok(())
        } else {
            Err(ChunkError::Cut(self.0.next))
        }
    }
}
