//! Helpers shared by the network tests: real HTTP against the gateway.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kokon_engine::Engine;
use kokon_engine::echo::EchoEngine;
use serde_json::{Value, json};

pub fn echo(model: &str, per_token_ms: u64) -> Arc<dyn Engine> {
    Arc::new(EchoEngine::new(model).with_delay(Duration::from_millis(per_token_ms)))
}

pub fn words(n: usize) -> String {
    (0..n)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

pub async fn chat(base: &str, model: &str, text: &str, stream: bool) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}/chat/completions"))
        .json(&json!({
            "model": model,
            "messages": [{"role": "user", "content": text}],
            "stream": stream,
            "stream_options": {"include_usage": true},
        }))
        .send()
        .await
        .expect("gateway reachable")
}

/// Reads SSE `data:` payloads until the stream ends.
pub struct Sse {
    inner: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: String,
}

impl Sse {
    pub fn new(resp: reqwest::Response) -> Self {
        Self {
            inner: resp.bytes_stream().boxed(),
            buf: String::new(),
        }
    }

    /// The next event's data (`None` at end of stream).
    pub async fn next(&mut self) -> Option<String> {
        loop {
            if let Some(at) = self.buf.find("\n\n") {
                let event: String = self.buf.drain(..at + 2).collect();
                return Some(event.trim().trim_start_matches("data:").trim().to_string());
            }
            match self.inner.next().await {
                Some(Ok(b)) => self.buf.push_str(&String::from_utf8_lossy(&b)),
                _ => return None,
            }
        }
    }
}

pub fn content_of(event: &str) -> Option<String> {
    let v: Value = serde_json::from_str(event).ok()?;
    v["choices"][0]["delta"]["content"]
        .as_str()
        .map(String::from)
}

pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Waits until the async `check` holds (5 s at most).
pub async fn eventually_async<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// The devnet a paid local network settles on.
pub fn devnet(net: &kokon_testnet::LocalNet) -> Arc<kokon_pay::devnet::Devnet> {
    match net.ledger() {
        Some(kokon_testnet::pay::Ledger::Devnet(d)) => d,
        _ => panic!("these networks settle on the devnet"),
    }
}

/// The proxy's money totals, from its books (paid networks).
pub async fn proxy_totals(net: &kokon_testnet::LocalNet) -> kokon_pay::books::proxy::ProxyTotals {
    let pay = net.proxy.pay().expect("a paid network");
    pay.books().await.totals().unwrap()
}

/// What the proxy streamed back for a job sent on `link` by hand: its
/// text frames, then the final frame (the code and message of a refusal).
pub async fn frames_of(
    link: &kokon_gateway::ProxyLink,
    h: &kokon_proto::JobHeader,
    payload: bytes::Bytes,
) -> (usize, Result<(), (kokon_proto::ErrorCode, String)>) {
    use kokon_proto::Frame;
    let mut frames = match link.submit(h, payload).await {
        Ok((f, _)) => f,
        Err(e) => return (0, Err((e.code, e.message))),
    };
    let mut data = 0;
    while let Some(f) = frames.next().await {
        match f.expect("frames parse") {
            Frame::Data(_) => data += 1,
            Frame::Receipt(_) => {}
            Frame::End(_) => return (data, Ok(())),
            Frame::Error(e) => return (data, Err((e.code, e.message))),
        }
    }
    panic!("the stream ended without a final frame")
}
