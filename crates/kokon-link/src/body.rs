//! Bodies of link requests and responses, and the typed replies.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame as HttpFrame;
use kokon_proto::{Frame, JobError};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

/// Response body type on links.
pub type Body = BoxBody<Bytes, Infallible>;

/// A body holding one final `Error` frame.
pub fn error_body(err: JobError) -> Body {
    Full::new(Frame::Error(err).encode()).boxed()
}

/// A body of fixed bytes.
pub fn full_body(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// A body streamed from a channel of encoded frames. When the peer resets
/// the stream, the body is dropped and the sender sees the channel closed.
pub fn frames_body(rx: mpsc::Receiver<Bytes>) -> Body {
    let stream = ReceiverStream::new(rx).map(|b| Ok(HttpFrame::data(b)));
    BodyExt::boxed(StreamBody::new(stream))
}

/// A 200 with `value` as JSON.
pub fn json_reply(value: &impl serde::Serialize) -> Response<Body> {
    Response::new(full_body(serde_json::to_vec(value).unwrap_or_default()))
}

/// A refusal: `status` with the [`JobError`] as JSON, which the typed calls
/// of [`crate::LinkClient`] turn back into the error.
pub fn error_reply(status: StatusCode, err: JobError) -> Response<Body> {
    let mut r = Response::new(full_body(serde_json::to_vec(&err).unwrap_or_default()));
    *r.status_mut() = status;
    r
}
