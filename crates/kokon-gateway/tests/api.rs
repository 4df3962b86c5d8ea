//! The API's request validation, driven with `oneshot` (no sockets, no proxy:
//! every request here is refused before a job would be sent).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use kokon_attest::{Registry, Role};
use kokon_gateway::{GatewayConfig, app};
use serde_json::Value;
use tower::ServiceExt;

fn gateway(api_key: Option<&str>) -> axum::Router {
    let policy = Arc::new(Registry::local_test_network().policy().unwrap());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let tls =
        kokon_tls::node::simulated_node(Role::Client, None, policy, [0; 32], &shutdown).unwrap();
    // Port 9 (discard): nothing listens, and no test here reaches the proxy.
    let mut cfg = GatewayConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:9".parse().unwrap(),
    );
    cfg.api_key = api_key.map(String::from);
    cfg.max_body = 4096;
    app(cfg, tls)
}

async fn post(
    app: axum::Router,
    path: &str,
    body: impl Into<Body>,
    auth: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = Request::post(path)
        .header("host", "localhost:8080")
        .header("content-type", "application/json");
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let resp = app.oneshot(req.body(body.into()).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

const CHAT: &str = "/v1/chat/completions";

#[tokio::test]
async fn malformed_json_is_a_400_in_openai_shape() {
    let (s, v) = post(gateway(None), CHAT, "{nope", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );
}

#[tokio::test]
async fn a_bad_field_is_named() {
    let cases = [
        (
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":"hot"}"#,
            "temperature",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":3}"#,
            "temperature",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"top_p":1.5}"#,
            "top_p",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":-1}"#,
            "max_tokens",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"n":2}"#,
            "n",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stop":["a","b","c","d","e"]}"#,
            "stop",
        ),
        (
            r#"{"model":"m","messages":[{"role":"wizard","content":"hi"}]}"#,
            "messages[0].role",
        ),
        (r#"{"model":"m","messages":[]}"#, "messages"),
        (
            r#"{"model":"bad model!","messages":[{"role":"user","content":"hi"}]}"#,
            "model",
        ),
        (r#"{"messages":[{"role":"user","content":"hi"}]}"#, "model"),
    ];
    for (body, field) in cases {
        let (s, v) = post(gateway(None), CHAT, body, None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains(field),
            "{body}: message {msg:?} does not name {field}"
        );
    }
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let big = format!(
        r#"{{"model":"m","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(5000)
    );
    let (s, v) = post(gateway(None), CHAT, big, None).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(v["error"]["code"], "request_too_large");
}

#[tokio::test]
async fn api_key_is_enforced_when_set() {
    let body = r#"{"model":"m","messages":[]}"#;
    let (s, v) = post(gateway(Some("sekret")), CHAT, body, None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_api_key"))
    );
    let (s, _) = post(gateway(Some("sekret")), CHAT, body, Some("Bearer wrong")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // With the right key the request gets past auth (and fails validation).
    let (s, _) = post(gateway(Some("sekret")), CHAT, body, Some("Bearer sekret")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn no_proxy_means_503_not_a_hang() {
    let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    let (s, v) = post(gateway(None), CHAT, body, None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v["error"]["code"], "unavailable");
}
