//! A fake OpenAI-compatible engine for benchmarks: answers every chat
//! request at once with the same short SSE stream (5 chunks and usage). It
//! stands behind nginx and behind Kokon's chain alike, so the difference
//! between the two is the cost of the path, not of the engine.
//!
//! `cargo run --release -p kokon-testnet --example fake_engine -- 127.0.0.1:9100`

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};

const MODEL: &str = "bench";

fn stream_body() -> String {
    let chunk = |content: &str| {
        format!(
            "data: {{\"id\":\"b\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"{MODEL}\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{content}\"}},\"finish_reason\":null}}]}}\n\n"
        )
    };
    let mut out = String::new();
    for w in ["one ", "two ", "three ", "four ", "five "] {
        out.push_str(&chunk(w));
    }
    out.push_str(&format!(
        "data: {{\"id\":\"b\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"{MODEL}\",\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"stop\"}}],\"usage\":{{\"prompt_tokens\":8,\"completion_tokens\":5,\"total_tokens\":13}}}}\n\n"
    ));
    out.push_str("data: [DONE]\n\n");
    out
}

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9100".into());
    let body: &'static str = Box::leak(stream_body().into_boxed_str());
    let app = Router::new()
        .route(
            "/v1/models",
            get(|| async {
                axum::Json(
                    serde_json::json!({"object":"list","data":[{"id": MODEL, "object":"model"}]}),
                )
            }),
        )
        .route(
            "/v1/chat/completions",
            post(move || async move {
                ([(header::CONTENT_TYPE, "text/event-stream")], body).into_response()
            }),
        );
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    eprintln!("fake engine on http://{addr}/v1");
    axum::serve(listener, app).await.expect("serve");
}
