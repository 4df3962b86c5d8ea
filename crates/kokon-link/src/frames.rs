//! A job's response as a stream of Kokon frames: the one reader of the
//! record layer over HTTP/2 (proxy reading a worker, gateway reading a proxy).

use http_body_util::BodyExt;
use kokon_proto::{Frame, FrameDecoder};

/// Why a frame stream ended without a final frame.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("the stream broke: {0}")]
    Broke(String),
    #[error("the peer sent a malformed frame: {0}")]
    Malformed(kokon_proto::FrameError),
    #[error("the peer ended the stream without a final frame")]
    Unfinished,
}

/// Frames decoded from a response body. Dropping it resets the stream.
pub struct FrameStream {
    body: crate::client::ReplyBody,
    dec: FrameDecoder,
    done: bool,
}

impl FrameStream {
    pub fn new(body: crate::client::ReplyBody) -> Self {
        Self {
            body,
            dec: FrameDecoder::new(),
            done: false,
        }
    }

    /// The next frame; `None` after a final (`End` or `Error`) frame or an
    /// error. Cancel-safe: bytes already read stay in the decoder.
    pub async fn next(&mut self) -> Option<Result<Frame, StreamError>> {
        if self.done {
            return None;
        }
        let r = self.read().await;
        self.done = !matches!(&r, Ok(f) if !f.is_final());
        Some(r)
    }

    async fn read(&mut self) -> Result<Frame, StreamError> {
        loop {
            if let Some(f) = self.dec.next_frame().map_err(StreamError::Malformed)? {
                return Ok(f);
            }
            match self.body.frame().await {
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        self.dec.push(&d);
                    }
                }
                Some(Err(e)) => return Err(StreamError::Broke(e.to_string())),
                None => return Err(StreamError::Unfinished),
            }
        }
    }
}
