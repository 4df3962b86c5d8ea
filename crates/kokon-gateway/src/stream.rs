//! Reading a job's response frames, and writing OpenAI responses from them.

use bytes::Bytes;
use kokon_link::{FrameStream, StreamError};
use kokon_proto::job::Chunk;
use kokon_proto::{ErrorCode, FinishReason, Frame, JobEnd, JobError, JobKind, Usage};
use kokon_seal::ResponseReader;
use serde_json::{Value, json};

use crate::flow::Event;
use crate::openai::Shape;

/// Decodes the frame stream from the proxy into [`Event`]s, opening a
/// sealed job's chunks.
pub(crate) struct Frames {
    frames: FrameStream,
    done: bool,
    /// A sealed job's response reader.
    reader: Option<ResponseReader>,
}

impl Frames {
    pub fn new(frames: FrameStream, reader: Option<ResponseReader>) -> Self {
        Self {
            frames,
            done: false,
            reader,
        }
    }

    /// A `Data` frame's text: its JSON chunk, or for a sealed job its chunk
    /// opened (refused if it was altered, replayed, reordered or moved from
    /// another job).
    fn text(&mut self, b: &Bytes) -> Result<String, JobError> {
        let Some(reader) = &mut self.reader else {
            return chunk_text(b);
        };
        let opened = reader.open(b).map_err(tampered)?;
        String::from_utf8(opened.plaintext).map_err(|_| {
            JobError::new(
                ErrorCode::EngineFailed,
                "worker sent text that is not UTF-8",
            )
        })
    }

    /// A sealed job's response reader (which candidate answered).
    pub fn reader(&self) -> Option<&ResponseReader> {
        self.reader.as_ref()
    }

    /// A sealed response is complete at its `End` only if its final chunk came.
    fn complete(&self) -> Result<(), JobError> {
        match &self.reader {
            Some(r) => r.finish().map_err(tampered),
            None => Ok(()),
        }
    }

    /// The next event; `None` after the final one (an end or any error).
    pub async fn next(&mut self) -> Option<Result<Event, JobError>> {
        if self.done {
            return None;
        }
        let broke =
            |e: StreamError| JobError::new(ErrorCode::Unavailable, format!("proxy link: {e}"));
        let next = self.frames.next().await?;
        self.done = !matches!(&next, Ok(f) if !f.is_final());
        let ev = match next {
            Ok(Frame::Data(b)) => self.text(&b).map(|t| Event::Text(t, b.len())),
            Ok(Frame::Receipt(r)) => Ok(Event::Receipt(r)),
            Ok(Frame::End(end)) => self.complete().map(|()| Event::End(end)),
            Ok(Frame::Error(e)) => Err(e),
            Err(e) => Err(broke(e)),
        };
        // A chunk that is not text ends the stream like a broken link.
        self.done |= ev.is_err();
        Some(ev)
    }
}

fn tampered(e: kokon_seal::ChunkError) -> JobError {
    JobError::new(
        ErrorCode::WorkerFailedMidStream,
        format!("the sealed response was refused: {e}"),
    )
}

fn chunk_text(b: &Bytes) -> Result<String, JobError> {
    serde_json::from_slice::<Chunk>(b)
        .map(|c| c.text)
        .map_err(|_| JobError::new(ErrorCode::EngineFailed, "worker sent a malformed chunk"))
}

/// Identity of one response (shared by all its chunks).
pub(crate) struct Meta {
    pub id: String,
    pub created: u64,
    pub shape: Shape,
}

/// OpenAI's `usage`, plus what the job cost on paid networks.
pub(crate) fn usage_json(u: &Usage, cost: Option<u128>) -> Value {
    let mut v = json!({ "prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens, "total_tokens": u.total() });
    if let Some(c) = cost {
        v["cost_nanoton"] = json!(c);
    }
    v
}

/// The whole (non-streaming) response body.
pub(crate) fn full_response(m: &Meta, text: String, end: &JobEnd, cost: Option<u128>) -> Value {
    let finish = end.finish_reason.as_str();
    let (object, choice) = match m.shape.kind {
        JobKind::Chat => (
            "chat.completion",
            json!({ "index": 0, "message": { "role": "assistant", "content": text }, "finish_reason": finish, "logprobs": null }),
        ),
        JobKind::Completion => (
            "text_completion",
            json!({ "index": 0, "text": text, "finish_reason": finish, "logprobs": null }),
        ),
    };
    json!({ "id": m.id, "object": object, "created": m.created, "model": m.shape.model,
            "choices": [choice], "usage": usage_json(&end.usage, cost) })
}

/// One streamed chunk: text, the first (role) chunk, or the final one.
pub(crate) fn chunk(
    m: &Meta,
    text: Option<&str>,
    finish: Option<FinishReason>,
    first: bool,
) -> Value {
    let finish = finish.map(|f| f.as_str());
    let (object, choice) = match m.shape.kind {
        JobKind::Chat => {
            let mut delta = json!({});
            if first {
                delta["role"] = json!("assistant");
            }
            if let Some(t) = text {
                delta["content"] = json!(t);
            }
            (
                "chat.completion.chunk",
                json!({ "index": 0, "delta": delta, "finish_reason": finish, "logprobs": null }),
            )
        }
        JobKind::Completion => (
            "text_completion",
            json!({ "index": 0, "text": text.unwrap_or(""), "finish_reason": finish, "logprobs": null }),
        ),
    };
    json!({ "id": m.id, "object": object, "created": m.created, "model": m.shape.model, "choices": [choice] })
}

/// The usage-only chunk sent when `stream_options.include_usage` is set.
pub(crate) fn usage_chunk(m: &Meta, u: &Usage, cost: Option<u128>) -> Value {
    let object = match m.shape.kind {
        JobKind::Chat => "chat.completion.chunk",
        JobKind::Completion => "text_completion",
    };
    json!({ "id": m.id, "object": object, "created": m.created, "model": m.shape.model, "choices": [], "usage": usage_json(u, cost) })
}

pub(crate) fn sse(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}
