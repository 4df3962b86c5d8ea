//! Both ends of a link over an in-memory pipe: the typed calls round-trip,
//! refusals come back as the peer's error, and the bounds hold (a stalled
//! body is ended by its deadline, an oversized one refused, an unknown path
//! answered 404) — each time with what the handler saw.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame as HttpFrame;
use kokon_link::{Call, LinkLimits, error_reply, frames_body, json_reply, read_call};
use kokon_proto::{
    Announce, ErrorCode, FinishReason, Frame, JobEnd, JobError, JobHeader, JobKind, ModelsReply,
    PROTOCOL_VERSION, Usage, paths,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

type Seen = Arc<Mutex<Vec<String>>>;

fn limits() -> LinkLimits {
    LinkLimits {
        body_deadline: Duration::from_millis(300),
        max_payload: 1024,
        ..LinkLimits::CLIENT
    }
}

/// A server end that records each call it decoded and answers it.
fn server(io: tokio::io::DuplexStream, seen: Seen, drain: CancellationToken) {
    tokio::spawn(async move {
        let handle = move |req| {
            let seen = seen.clone();
            async move {
                let call = match read_call(req, &limits()).await {
                    Ok(c) => c,
                    Err(e) => {
                        seen.lock()
                            .unwrap()
                            .push(format!("refused {}", e.status.as_u16()));
                        return e.reply();
                    }
                };
                seen.lock().unwrap().push(call.name().to_string());
                match call {
                    Call::Announce => json_reply(&Announce {
                        protocol_version: PROTOCOL_VERSION,
                        models: vec![kokon_proto::ModelOffer {
                            name: "m".into(),
                            context_len: 2048,
                            hash: None,
                        }],
                        max_jobs: 3,
                        price_milli: 1000,
                        payout: None,
                    }),
                    Call::Models => json_reply(&ModelsReply { models: vec![] }),
                    Call::Job(h, payload) => {
                        let (tx, rx) = mpsc::channel(4);
                        tokio::spawn(async move {
                            let _ = tx.send(Frame::Data(payload).encode()).await;
                            let end = JobEnd {
                                usage: Usage {
                                    prompt_tokens: h.request_id.len() as u32,
                                    completion_tokens: 1,
                                },
                                finish_reason: FinishReason::Stop,
                                receipt: None,
                            };
                            let _ = tx.send(Frame::End(end).encode()).await;
                        });
                        http::Response::new(frames_body(rx))
                    }
                    _ => error_reply(
                        StatusCode::BAD_REQUEST,
                        JobError::new(ErrorCode::PaymentRequired, "no channel"),
                    ),
                }
            }
        };
        let _ = kokon_link::serve_link(io, limits(), &drain, handle).await;
    });
}

async fn pair() -> (kokon_link::LinkClient, Seen, CancellationToken) {
    let (a, b) = tokio::io::duplex(1 << 16);
    let seen: Seen = Default::default();
    let drain = CancellationToken::new();
    server(b, seen.clone(), drain.clone());
    let (client, conn) = kokon_link::dial(a, limits()).await.unwrap();
    tokio::spawn(conn);
    (client, seen, drain)
}

fn header() -> JobHeader {
    JobHeader {
        request_id: "req-1".into(),
        model: "m".into(),
        kind: JobKind::Chat,
        max_price_milli: None,
        budget: None,
        payment: None,
        credit: None,
        sealed: false,
    }
}

#[tokio::test]
async fn typed_calls_round_trip() {
    let (c, seen, _) = pair().await;
    assert_eq!(c.announce().await.unwrap().max_jobs, 3);
    assert!(c.models().await.unwrap().models.is_empty());
    let mut frames = c
        .job(&header(), Bytes::from_static(b"payload"))
        .await
        .unwrap();
    match frames.next().await {
        Some(Ok(Frame::Data(d))) => assert_eq!(&d[..], b"payload"),
        other => panic!("{other:?}"),
    }
    match frames.next().await {
        Some(Ok(Frame::End(e))) => assert_eq!(e.usage.prompt_tokens, 5),
        other => panic!("{other:?}"),
    }
    assert!(
        frames.next().await.is_none(),
        "nothing after the final frame"
    );
    assert_eq!(*seen.lock().unwrap(), vec!["announce", "models", "job"]);
}

#[tokio::test]
async fn a_refusal_comes_back_as_the_peers_error() {
    let (c, _, _) = pair().await;
    let why = JobError::new(ErrorCode::BadRequest, "x");
    let e = c.refused(&why).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::PaymentRequired);
    assert_eq!(e.message, "no channel");
}

/// A raw request with a body that sends `first` and then stalls.
async fn stalled_request(path: &str, first: &'static [u8]) -> (StatusCode, Duration, Seen) {
    let (a, b) = tokio::io::duplex(1 << 16);
    let seen: Seen = Default::default();
    server(b, seen.clone(), CancellationToken::new());
    let (mut sender, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake(hyper_util::rt::TokioIo::new(a))
            .await
            .unwrap();
    tokio::spawn(conn);
    let (tx, rx) = mpsc::channel::<Result<HttpFrame<Bytes>, std::convert::Infallible>>(1);
    tx.send(Ok(HttpFrame::data(Bytes::from_static(first))))
        .await
        .unwrap();
    let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut req = http::Request::post(path).body(body.boxed()).unwrap();
    header().write(req.headers_mut());
    let started = Instant::now();
    let resp = sender.send_request(req).await.unwrap();
    let took = started.elapsed();
    drop(tx);
    (resp.status(), took, seen)
}

#[tokio::test]
async fn a_stalled_job_body_is_ended_by_its_deadline() {
    let (status, took, seen) = stalled_request(paths::JOB, b"{\"model\":").await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert_eq!(
        *seen.lock().unwrap(),
        vec!["refused 408"],
        "no job reached the handler"
    );
}

#[tokio::test]
async fn a_stalled_voucher_body_is_ended_by_its_deadline() {
    let (status, _, seen) = stalled_request(paths::VOUCHER, b"{").await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(*seen.lock().unwrap(), vec!["refused 408"]);
}

#[tokio::test]
async fn an_oversized_job_is_refused_before_the_handler() {
    let (c, seen, _) = pair().await;
    let e = c
        .job(&header(), Bytes::from(vec![b'x'; 2048]))
        .await
        .err()
        .unwrap();
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert!(e.message.contains("larger than 1024"), "{}", e.message);
    assert_eq!(*seen.lock().unwrap(), vec!["refused 413"]);
}

#[tokio::test]
async fn a_drain_finishes_streams_in_flight_and_takes_no_new_ones() {
    let (c, seen, drain) = pair().await;
    let mut frames = c.job(&header(), Bytes::from_static(b"p")).await.unwrap();
    drain.cancel();
    assert!(matches!(frames.next().await, Some(Ok(Frame::Data(_)))));
    assert!(matches!(frames.next().await, Some(Ok(Frame::End(_)))));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(c.models().await.is_err(), "a new call after the drain");
    assert_eq!(*seen.lock().unwrap(), vec!["job"]);
}
