//! The record layer of a job response stream.
//!
//! HTTP/2 carries the stream; these records mark message boundaries inside it
//! (as gRPC's 5-byte prefix does). A record is `type: u8 | len: u32 BE | body`.
//!
//! * `Data` (0): an opaque chunk from the worker to the client. The proxy
//!   forwards it unread (it will be ciphertext once end-to-end encryption lands).
//! * `End` (1): JSON [`JobEnd`]: usage and finish reason. Last record.
//! * `Error` (2): JSON [`JobError`]. Last record.
//! * `Receipt` (3): JSON [`ReceiptEnvelope`]: the worker's signed,
//!   cumulative receipt for the work done so far, sent while a job runs so
//!   that output is paid for even if the stream is cut. Never last.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::{JobEnd, JobError, ReceiptEnvelope};

/// Largest record body accepted, in bytes.
pub const MAX_FRAME_BODY: usize = 1024 * 1024;
const HEADER_LEN: usize = 5;

const TYPE_DATA: u8 = 0;
const TYPE_END: u8 = 1;
const TYPE_ERROR: u8 = 2;
const TYPE_RECEIPT: u8 = 3;

/// One record of a response stream.
#[derive(Clone, PartialEq, Eq)]
pub enum Frame {
    Data(Bytes),
    End(JobEnd),
    Error(JobError),
    Receipt(Box<ReceiptEnvelope>),
}

// Data frames carry content: never print them.
impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Frame::Data(b) => write!(f, "Data({} bytes)", b.len()),
            Frame::End(e) => write!(f, "End({e:?})"),
            Frame::Error(e) => write!(f, "Error({e:?})"),
            Frame::Receipt(r) => write!(f, "Receipt({:?})", r.receipt.body.usage),
        }
    }
}

/// A malformed response stream.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame type {0} is unknown")]
    UnknownType(u8),
    #[error("frame of {0} bytes exceeds the {MAX_FRAME_BODY}-byte limit")]
    TooLarge(usize),
    #[error("frame body is not valid JSON for its type: {0}")]
    BadBody(String),
    #[error("stream ended inside a frame ({0} bytes left over)")]
    Truncated(usize),
}

impl Frame {
    /// Whether nothing follows this frame in its stream (`End`, `Error`).
    pub fn is_final(&self) -> bool {
        matches!(self, Frame::End(_) | Frame::Error(_))
    }

    /// Appends this frame's encoding to `out`.
    pub fn encode_into(&self, out: &mut BytesMut) {
        let (ty, body): (u8, Bytes) = match self {
            Frame::Data(b) => (TYPE_DATA, b.clone()),
            Frame::End(e) => (TYPE_END, json(e)),
            Frame::Error(e) => (TYPE_ERROR, json(e)),
            Frame::Receipt(r) => (TYPE_RECEIPT, json(r)),
        };
        out.reserve(HEADER_LEN + body.len());
        out.put_u8(ty);
        out.put_u32(body.len() as u32);
        out.put_slice(&body);
    }

    /// This frame's encoding as one buffer.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode_into(&mut out);
        out.freeze()
    }
}

fn json<T: serde::Serialize>(v: &T) -> Bytes {
    // Serializing these plain structs cannot fail.
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

/// Incremental, bounded decoder: push bytes as they arrive, pop whole frames.
#[derive(Default)]
pub struct FrameDecoder {
    buf: BytesMut,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Returns the next complete frame, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let ty = self.buf[0];
        if ty > TYPE_RECEIPT {
            return Err(FrameError::UnknownType(ty));
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > MAX_FRAME_BODY {
            return Err(FrameError::TooLarge(len));
        }
        if self.buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        self.buf.advance(HEADER_LEN);
        let body = self.buf.split_to(len).freeze();
        let frame = match ty {
            TYPE_DATA => Frame::Data(body),
            TYPE_END => Frame::End(parse(&body)?),
            TYPE_ERROR => Frame::Error(parse(&body)?),
            _ => Frame::Receipt(parse(&body)?),
        };
        Ok(Some(frame))
    }

    /// Call at end of stream: an error if a partial frame is left.
    pub fn finish(&self) -> Result<(), FrameError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(FrameError::Truncated(n)),
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    serde_json::from_slice(body).map_err(|e| FrameError::BadBody(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorCode, FinishReason, Usage};

    fn end() -> Frame {
        Frame::End(JobEnd {
            usage: Usage {
                prompt_tokens: 3,
                completion_tokens: 5,
            },
            finish_reason: FinishReason::Stop,
            receipt: None,
        })
    }

    #[test]
    fn round_trips_byte_by_byte() {
        let frames = vec![
            Frame::Data(Bytes::from_static(b"hello")),
            Frame::Data(Bytes::new()),
            end(),
            Frame::Error(JobError::new(ErrorCode::Busy, "full")),
        ];
        let mut wire = BytesMut::new();
        frames.iter().for_each(|f| f.encode_into(&mut wire));
        let mut dec = FrameDecoder::new();
        let mut got = Vec::new();
        for b in wire.iter() {
            dec.push(&[*b]);
            while let Some(f) = dec.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, frames);
        dec.finish().unwrap();
    }

    #[test]
    fn rejects_oversized_unknown_and_truncated() {
        let mut dec = FrameDecoder::new();
        dec.push(&[0, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(dec.next_frame(), Err(FrameError::TooLarge(0xffff_ffff)));

        let mut dec = FrameDecoder::new();
        dec.push(&[9, 0, 0, 0, 0]);
        assert_eq!(dec.next_frame(), Err(FrameError::UnknownType(9)));

        let mut dec = FrameDecoder::new();
        dec.push(&[0, 0, 0, 0, 4, 1, 2]);
        assert_eq!(dec.next_frame(), Ok(None));
        assert_eq!(dec.finish(), Err(FrameError::Truncated(7)));
    }

    #[test]
    fn rejects_bad_json_bodies() {
        let mut dec = FrameDecoder::new();
        dec.push(&[1, 0, 0, 0, 2, b'{', b'x']);
        assert!(matches!(dec.next_frame(), Err(FrameError::BadBody(_))));
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        fn frame() -> impl Strategy<Value = Frame> {
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..300)
                    .prop_map(|v| Frame::Data(Bytes::from(v))),
                (any::<u32>(), any::<u32>(), any::<bool>()).prop_map(|(p, c, stop)| Frame::End(
                    JobEnd {
                        usage: Usage {
                            prompt_tokens: p,
                            completion_tokens: c
                        },
                        finish_reason: if stop {
                            FinishReason::Stop
                        } else {
                            FinishReason::Length
                        },
                        receipt: None,
                    }
                )),
                ".{0,40}".prop_map(|m| Frame::Error(JobError::new(ErrorCode::EngineFailed, m))),
            ]
        }

        proptest! {
            /// Any frames, cut into any pieces, decode to the same frames.
            #[test]
            fn decodes_what_was_encoded_across_any_split(
                frames in proptest::collection::vec(frame(), 0..12),
                cuts in proptest::collection::vec(1usize..64, 1..40),
            ) {
                let mut wire = BytesMut::new();
                frames.iter().for_each(|f| f.encode_into(&mut wire));
                let mut dec = FrameDecoder::new();
                let (mut got, mut at, mut i) = (Vec::new(), 0, 0);
                while at < wire.len() {
                    let n = cuts[i % cuts.len()].min(wire.len() - at);
                    dec.push(&wire[at..at + n]);
                    at += n;
                    i += 1;
                    while let Some(f) = dec.next_frame().unwrap() {
                        got.push(f);
                    }
                }
                prop_assert_eq!(got, frames);
                prop_assert_eq!(dec.finish(), Ok(()));
            }
        }
    }
}
