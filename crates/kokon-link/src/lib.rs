//! HTTP/2 link helpers shared by the proxy and the worker: reading a job
//! request within bounds, and response bodies made of Kokon frames.

use std::convert::Infallible;

use bytes::Bytes;
use http::Request;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame as HttpFrame, Incoming};
use kokon_proto::{ErrorCode, Frame, JobError, JobHeader, MAX_JOB_PAYLOAD};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

/// Response body type on links.
pub type Body = BoxBody<Bytes, Infallible>;

/// Reads a job request: its routing header and its payload (at most
/// [`MAX_JOB_PAYLOAD`] bytes). Errors are ready to send back as a frame.
pub async fn read_job(req: Request<Incoming>) -> Result<(JobHeader, Bytes), JobError> {
    let (parts, body) = req.into_parts();
    let header = JobHeader::read(&parts.headers)
        .map_err(|e| JobError::new(ErrorCode::BadRequest, e.to_string()))?;
    let payload = Limited::new(body, MAX_JOB_PAYLOAD)
        .collect()
        .await
        .map_err(|_| JobError::new(ErrorCode::BadRequest, "job payload too large or cut short"))?
        .to_bytes();
    Ok((header, payload))
}

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
