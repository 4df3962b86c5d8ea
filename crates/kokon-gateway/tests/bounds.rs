//! What a stranger can reach on the gateway, bounded: hosts, origins,
//! content types, unsupported parameters, `/metrics`, half-sent requests,
//! the connection cap. The proxy address is port 9 (discard): a request that
//! got past the gateway's checks answers 503 (no proxy), so each refusal
//! below is proved to have stopped the request before any job was sent.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use kokon_attest::{Registry, Role};
use kokon_gateway::{GatewayConfig, app};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

fn tls() -> kokon_tls::RaTls {
    let policy = Arc::new(Registry::local_test_network().policy().unwrap());
    let shutdown = tokio_util::sync::CancellationToken::new();
    kokon_tls::node::simulated_node(Role::Client, None, policy, [0; 32], &shutdown).unwrap()
}

fn config() -> GatewayConfig {
    GatewayConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:9".parse().unwrap(),
    )
}

const CHAT: &str = "/v1/chat/completions";
const HI: &str = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;

async fn send(
    cfg: GatewayConfig,
    req: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let resp = app(cfg, tls()).oneshot(req).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, v)
}

fn chat(host: &str, content_type: &str, body: &str) -> axum::http::request::Builder {
    let _ = body;
    Request::post(CHAT)
        .header("host", host)
        .header("content-type", content_type)
}

#[tokio::test]
async fn a_request_that_passes_every_check_reaches_the_proxy_link() {
    let req = chat("127.0.0.1:8080", "application/json", HI)
        .body(HI.into())
        .unwrap();
    let (s, h, v) = send(config(), req).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["error"]["code"], "unavailable");
    assert_eq!(h["retry-after"], "1", "a 503 says when to retry");
}

#[tokio::test]
async fn a_foreign_host_is_refused() {
    // DNS rebinding: the page's own name, resolved to 127.0.0.1.
    for host in [
        "evil.example",
        "evil.example:8080",
        "localhost.evil.example:8080",
    ] {
        let req = chat(host, "application/json", HI).body(HI.into()).unwrap();
        let (s, _, v) = send(config(), req).await;
        assert_eq!(s, StatusCode::MISDIRECTED_REQUEST, "{host}");
        assert_eq!(v["error"]["code"], "host_not_allowed");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("--allow-host")
        );
    }
    let mut cfg = config();
    cfg.allow_hosts = vec!["gateway.internal".into()];
    let req = chat("gateway.internal:8080", "application/json", HI)
        .body(HI.into())
        .unwrap();
    assert_eq!(
        send(cfg, req).await.0,
        StatusCode::SERVICE_UNAVAILABLE,
        "a configured host is served"
    );
}

#[tokio::test]
async fn a_foreign_origin_is_refused_and_an_allowed_one_gets_cors() {
    let req = chat("localhost:8080", "application/json", HI)
        .header("origin", "https://evil.example")
        .body(HI.into())
        .unwrap();
    let (s, h, v) = send(config(), req).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(v["error"]["code"], "origin_not_allowed");
    assert!(h.get("access-control-allow-origin").is_none());

    let mut cfg = config();
    cfg.cors_origins = vec!["https://app.example".into()];
    let preflight = Request::options(CHAT)
        .header("host", "localhost:8080")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .body(Body::empty())
        .unwrap();
    let (s, h, _) = send(cfg.clone(), preflight).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    assert!(
        h["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("authorization")
    );
    let req = chat("localhost:8080", "application/json", HI)
        .header("origin", "https://app.example")
        .body(HI.into())
        .unwrap();
    let (s, h, _) = send(cfg.clone(), req).await;
    assert_eq!(
        s,
        StatusCode::SERVICE_UNAVAILABLE,
        "an allowed origin gets through"
    );
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    let other = Request::options(CHAT)
        .header("host", "localhost:8080")
        .header("origin", "https://evil.example")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(cfg, other).await.0, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_post_that_is_not_json_is_refused() {
    // What a web page can send without a CORS preflight.
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let req = chat("localhost", ct, HI).body(HI.into()).unwrap();
        let (s, _, v) = send(config(), req).await;
        assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct}");
        assert_eq!(v["error"]["code"], "unsupported_media_type");
    }
    let none = Request::post(CHAT)
        .header("host", "localhost")
        .body(Body::from(HI))
        .unwrap();
    assert_eq!(
        send(config(), none).await.0,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
}

#[tokio::test]
async fn unsupported_parameters_are_named_not_ignored() {
    let msgs = r#""model":"m","messages":[{"role":"user","content":"hi"}]"#;
    let refused = [
        (
            r#""tools":[{"type":"function","function":{"name":"f"}}]"#,
            "tools",
        ),
        (r#""tool_choice":"required""#, "tool_choice"),
        (r#""functions":[{"name":"f"}]"#, "functions"),
        (
            r#""response_format":{"type":"json_object"}"#,
            "response_format",
        ),
        (
            r#""response_format":{"type":"json_schema","json_schema":{"name":"x"}}"#,
            "response_format",
        ),
        (r#""logprobs":true"#, "logprobs"),
        (r#""logit_bias":{"42":5}"#, "logit_bias"),
        (r#""presence_penalty":2.5"#, "presence_penalty"),
        (r#""frequency_penalty":-3"#, "frequency_penalty"),
        (r#""modalities":["text","audio"]"#, "modalities"),
    ];
    for (extra, name) in refused {
        let body = format!("{{{msgs},{extra}}}");
        let req = chat("localhost", "application/json", &body)
            .body(body.clone().into())
            .unwrap();
        let (s, _, v) = send(config(), req).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(v["error"]["param"], name, "{body}");
        assert!(v["error"]["message"].as_str().unwrap().contains(name));
    }
    // Values that change nothing (clients send defaults) and penalties in
    // range are accepted.
    let harmless = [
        r#""tools":[]"#,
        r#""tool_choice":"none""#,
        r#""response_format":{"type":"text"}"#,
        r#""logprobs":false"#,
        r#""presence_penalty":0"#,
        r#""frequency_penalty":0.0"#,
        r#""presence_penalty":0.5"#,
        r#""frequency_penalty":-1.5"#,
        r#""logit_bias":{}"#,
        r#""modalities":["text"]"#,
        r#""user":"u-1""#,
    ];
    for extra in harmless {
        let body = format!("{{{msgs},{extra}}}");
        let req = chat("localhost", "application/json", &body)
            .body(body.clone().into())
            .unwrap();
        assert_eq!(
            send(config(), req).await.0,
            StatusCode::SERVICE_UNAVAILABLE,
            "{body}"
        );
    }
}

#[tokio::test]
async fn metrics_need_the_api_key_when_one_is_set() {
    let get = |auth: Option<&str>| {
        let mut r = Request::get("/metrics").header("host", "localhost");
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.body(Body::empty()).unwrap()
    };
    let mut cfg = config();
    cfg.api_key = Some("sekret".into());
    assert_eq!(
        send(cfg.clone(), get(None)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(cfg, get(Some("Bearer sekret"))).await.0,
        StatusCode::OK
    );
    assert_eq!(
        send(config(), get(None)).await.0,
        StatusCode::OK,
        "open without a key"
    );
}

/// A real listener: connections that send part of a request are closed
/// within the header timeout, and so are ones that send nothing.
#[tokio::test]
async fn half_sent_requests_are_closed_within_the_header_timeout() {
    let mut cfg = config();
    cfg.public.header_read_timeout = Duration::from_millis(400);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let h = kokon_gateway::start(cfg, tls(), shutdown.clone())
        .await
        .unwrap();
    let started = Instant::now();
    let mut conns = Vec::new();
    for i in 0..32 {
        let mut c = tokio::net::TcpStream::connect(h.addr).await.unwrap();
        if i % 2 == 0 {
            c.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-")
                .await
                .unwrap();
        }
        conns.push(c);
    }
    for mut c in conns {
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .expect("connection still open after 5 s");
        // Closed (0), or hyper's 408 and then closed.
        if let Ok(n) = n
            && n > 0
        {
            assert!(
                buf.starts_with(b"HTTP/1.1 408"),
                "{:?}",
                String::from_utf8_lossy(&buf[..n])
            );
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    shutdown.cancel();
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_at_once() {
    let mut cfg = config();
    cfg.public.max_connections = 4;
    cfg.public.header_read_timeout = Duration::from_secs(30);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let h = kokon_gateway::start(cfg, tls(), shutdown.clone())
        .await
        .unwrap();
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut c = tokio::net::TcpStream::connect(h.addr).await.unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let n = c.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(c);
    }
    let mut extra = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let _ = extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(2), extra.read(&mut buf))
        .await
        .expect("the fifth connection was neither served nor closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "the fifth connection was served");
    drop(held);
    shutdown.cancel();
}

#[test]
fn penalties_reach_the_job_and_zero_says_nothing() {
    use kokon_proto::JobKind;
    let job = |extra: &str| {
        let body =
            format!(r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}]{extra}}}"#);
        kokon_gateway::check_request(body.as_bytes(), JobKind::Chat, None)
            .unwrap()
            .1
            .params
    };
    let p = job(r#","presence_penalty":0.5,"frequency_penalty":-1.25"#);
    assert_eq!(
        (p.presence_penalty, p.frequency_penalty),
        (Some(0.5), Some(-1.25))
    );
    let p = job(r#","presence_penalty":0,"frequency_penalty":0.0"#);
    assert_eq!((p.presence_penalty, p.frequency_penalty), (None, None));
    assert_eq!(p, job(""), "a zero penalty is the job without one");
}
