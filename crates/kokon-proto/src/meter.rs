//! The one rule, shared by the proxy and the client, that bounds a
//! receipt's generated tokens by the output that was delivered.
//!
//! Both count the same thing — the `Data` frames of the job's stream and
//! their payload bytes — so a receipt the proxy bills by this rule is one
//! the client accepts by it. Every generated token yields at least one
//! byte of text, except the end-of-sequence token and text held back by a
//! stop sequence (at most [`MAX_STOP_BYTES`]).

/// Longest stop sequence a job may carry, in bytes.
pub const MAX_STOP_BYTES: u64 = 64;

/// Bytes of a plaintext `Data` frame's payload that are not text (the
/// JSON chunk `{"text":""}` around it).
pub const CHUNK_OVERHEAD: u64 = 11;

/// Bytes of a sealed `Data` frame's payload that are not text: a sealed
/// chunk is the text itself and its AEAD tag.
pub const SEALED_CHUNK_OVERHEAD: u64 = crate::sealed::TAG_LEN as u64;

/// Output delivered so far: `Data` frames, their payload bytes, and the
/// text bytes they can carry (each frame's payload less what wraps the
/// text: the JSON chunk, or for a sealed job the tag).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputMeter {
    pub frames: u64,
    pub bytes: u64,
    pub text: u64,
    overhead: u64,
}

impl Default for OutputMeter {
    fn default() -> Self {
        Self::for_job(false)
    }
}

impl OutputMeter {
    /// The meter of a job's output, sealed end to end or not.
    pub fn for_job(sealed: bool) -> Self {
        Self {
            frames: 0,
            bytes: 0,
            text: 0,
            overhead: if sealed {
                SEALED_CHUNK_OVERHEAD
            } else {
                CHUNK_OVERHEAD
            },
        }
    }

    /// Counts one delivered `Data` frame of `len` payload bytes.
    pub fn add(&mut self, len: usize) {
        let len = len as u64;
        self.frames = self.frames.saturating_add(1);
        self.bytes = self.bytes.saturating_add(len);
        self.text = self.text.saturating_add(len.saturating_sub(self.overhead));
    }

    /// The most tokens a worker can have generated for this output. It
    /// never shrinks as output is added.
    pub fn completion_bound(&self) -> u64 {
        self.text.saturating_add(1 + MAX_STOP_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::Chunk;

    #[test]
    fn the_bound_covers_every_token_of_a_chunk_stream() {
        let mut m = OutputMeter::default();
        assert_eq!(
            m.completion_bound(),
            1 + MAX_STOP_BYTES,
            "the end token alone"
        );
        for text in ["a", "bc", "\u{e9}"] {
            let chunk = serde_json::to_vec(&Chunk { text: text.into() }).unwrap();
            assert_eq!(chunk.len() as u64, text.len() as u64 + CHUNK_OVERHEAD);
            m.add(chunk.len());
        }
        assert_eq!(m.completion_bound(), 5 + 1 + MAX_STOP_BYTES);
    }

    #[test]
    fn a_sealed_chunk_counts_its_text_only() {
        let mut m = OutputMeter::for_job(true);
        m.add(5 + SEALED_CHUNK_OVERHEAD as usize);
        m.add(SEALED_CHUNK_OVERHEAD as usize); // the final, empty chunk
        assert_eq!((m.frames, m.text), (2, 5));
        assert_eq!(m.completion_bound(), 5 + 1 + MAX_STOP_BYTES);
    }

    #[test]
    fn a_short_frame_neither_underflows_nor_lowers_the_bound() {
        let mut m = OutputMeter::default();
        m.add(0);
        assert_eq!(m.completion_bound(), 1 + MAX_STOP_BYTES);
        m.add(20);
        let before = m.completion_bound();
        m.add(3);
        assert_eq!(m.completion_bound(), before);
    }
}
