//! Forwards jobs to an OpenAI-compatible server (vLLM, SGLang, llama.cpp's
//! server, Ollama…), streaming, with usage taken from the upstream's reply.

use std::time::Duration;

use futures::StreamExt;
use kokon_proto::job::{JobInput, SamplingParams};
use kokon_proto::{FinishReason, JobEnd, JobRequest, ModelOffer, Usage};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::{BoxFuture, Engine, EngineError, Output, Piece};

/// Longest SSE line accepted from the upstream, in bytes.
const MAX_LINE: usize = 1024 * 1024;

/// Settings of an upstream engine.
#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// Base URL including the API prefix, e.g. `http://127.0.0.1:8000/v1`.
    pub base_url: String,
    pub api_key: Option<String>,
    /// Models to serve; upstream names are used unchanged.
    pub models: Vec<String>,
    pub context_len: u32,
}

/// Forwards jobs to an OpenAI-compatible server.
#[derive(Clone)]
pub struct UpstreamEngine {
    cfg: UpstreamConfig,
    /// Where jobs go (`cfg.base_url`'s origin), declared in the certificate.
    origin: String,
    http: reqwest::Client,
}

impl UpstreamEngine {
    /// Refuses a base URL that is not `http(s)://host[:port]/…`.
    pub fn new(cfg: UpstreamConfig) -> Result<Self, EngineError> {
        let origin =
            kokon_proto::engine::origin_of(&cfg.base_url).map_err(EngineError::Upstream)?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| EngineError::Upstream(e.to_string()))?;
        Ok(Self { cfg, origin, http })
    }

    /// The origin jobs are forwarded to.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Asks the upstream which models it serves (`GET {base}/models`).
    pub async fn discover_models(&self) -> Result<Vec<String>, EngineError> {
        let url = format!("{}/models", self.cfg.base_url.trim_end_matches('/'));
        let resp = self
            .authed(self.http.get(url))
            .send()
            .await
            .map_err(upstream)?;
        let body: Value = resp
            .error_for_status()
            .map_err(upstream)?
            .json()
            .await
            .map_err(upstream)?;
        let ids = body["data"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|m| m["id"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        Ok(ids)
    }

    fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.cfg.api_key {
            Some(k) => req.bearer_auth(k),
            None => req,
        }
    }
}

fn upstream(e: impl std::fmt::Display) -> EngineError {
    EngineError::Upstream(e.to_string())
}

/// The OpenAI request body for a job (always streaming, usage included).
fn request_body(job: &JobRequest) -> (String, Value) {
    let SamplingParams {
        max_tokens,
        temperature,
        top_p,
        stop,
        seed,
        presence_penalty,
        frequency_penalty,
        max_prompt_tokens: _,
    } = &job.params;
    let mut body = json!({
        "model": job.model,
        "stream": true,
        "stream_options": { "include_usage": true },
    });
    let path = match &job.input {
        JobInput::Chat(msgs) => {
            let m: Vec<Value> = msgs
                .iter()
                .map(|m| json!({"role": m.role, "content": m.content}))
                .collect();
            body["messages"] = Value::Array(m);
            "chat/completions"
        }
        JobInput::Prompt(p) => {
            body["prompt"] = Value::String(p.clone());
            "completions"
        }
    };
    let mut set = |k: &str, v: Value| {
        if !v.is_null() {
            body[k] = v;
        }
    };
    set("max_tokens", json!(max_tokens));
    set("temperature", json!(temperature));
    set("top_p", json!(top_p));
    set("seed", json!(seed));
    set("presence_penalty", json!(presence_penalty));
    set("frequency_penalty", json!(frequency_penalty));
    if !stop.is_empty() {
        set("stop", json!(stop));
    }
    (path.to_string(), body)
}

fn prompt_bytes(input: &JobInput) -> usize {
    match input {
        JobInput::Chat(msgs) => msgs.iter().map(|m| m.content.len()).sum(),
        JobInput::Prompt(p) => p.len(),
    }
}

/// What one SSE event from the upstream contributes.
#[derive(Debug, Default, PartialEq)]
struct Event {
    text: String,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
    done: bool,
}

/// The job error for an upstream's non-2xx reply. The upstream's own
/// message is not passed on: servers quote the request in their errors (a
/// validation error names the offending input), and the error frame crosses
/// the proxy unsealed. Its status and error type, when that is a short
/// identifier, are.
fn refusal(status: reqwest::StatusCode, body: &[u8]) -> EngineError {
    let kind = serde_json::from_slice::<Value>(body)
        .map(|v| error_kind(&v["error"]))
        .unwrap_or_default();
    let msg = format!(
        "the upstream refused the job (HTTP {}{kind})",
        status.as_u16()
    );
    if status.is_client_error() {
        EngineError::BadRequest(msg)
    } else {
        upstream(msg)
    }
}

/// `, TYPE` for an OpenAI-style error object whose `type` (or `code`) is a
/// short identifier; empty otherwise.
fn error_kind(err: &Value) -> String {
    let ident = |v: &Value| {
        v.as_str()
            .filter(|s| {
                (1..=64).contains(&s.len())
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
            })
            .map(|s| format!(", {s}"))
    };
    ident(&err["type"])
        .or_else(|| ident(&err["code"]))
        .unwrap_or_default()
}

fn parse_event(line: &str) -> Result<Option<Event>, EngineError> {
    let Some(data) = line.strip_prefix("data:") else {
        return Ok(None);
    };
    let data = data.trim();
    if data == "[DONE]" {
        return Ok(Some(Event {
            done: true,
            ..Default::default()
        }));
    }
    let v: Value =
        serde_json::from_str(data).map_err(|e| upstream(format!("bad SSE event: {e}")))?;
    if let Some(err) = v.get("error") {
        return Err(upstream(format!(
            "the upstream sent an error event{}",
            error_kind(err)
        )));
    }
    let choice = &v["choices"][0];
    let text = choice["delta"]["content"]
        .as_str()
        .or(choice["text"].as_str())
        .unwrap_or("");
    let finish = match choice["finish_reason"].as_str() {
        Some("length") => Some(FinishReason::Length),
        Some(_) => Some(FinishReason::Stop),
        None => None,
    };
    let usage = v.get("usage").filter(|u| !u.is_null()).map(|u| Usage {
        prompt_tokens: u["prompt_tokens"].as_u64().unwrap_or(0) as u32,
        completion_tokens: u["completion_tokens"].as_u64().unwrap_or(0) as u32,
    });
    Ok(Some(Event {
        text: text.to_string(),
        finish,
        usage,
        done: false,
    }))
}

impl Engine for UpstreamEngine {
    fn declaration(&self) -> kokon_proto::EngineDecl {
        kokon_proto::EngineDecl::upstream(self.origin.clone())
    }

    fn models(&self) -> Vec<ModelOffer> {
        let ctx = self.cfg.context_len;
        self.cfg
            .models
            .iter()
            .map(|m| ModelOffer {
                hash: None,
                name: m.clone(),
                context_len: ctx,
            })
            .collect()
    }

    fn run(
        &self,
        job: JobRequest,
        out: Output,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, Result<JobEnd, EngineError>> {
        let me = self.clone();
        Box::pin(async move {
            if !me.cfg.models.contains(&job.model) {
                return Err(EngineError::UnknownModel(job.model));
            }
            // The upstream tokenizes; a token is at least one byte of the
            // text, so a prompt with more bytes than the budget may be
            // over it and is refused before it is sent. (The chat template
            // the upstream adds is not counted: the receipt never bills
            // above the budget, so that part is the worker's to absorb.)
            EngineError::check_prompt(prompt_bytes(&job.input), job.params.max_prompt_tokens)?;
            tokio::select! {
                r = me.stream(job, out) => r,
                _ = cancel.cancelled() => Err(EngineError::Cancelled),
            }
        })
    }
}

impl UpstreamEngine {
    async fn stream(&self, job: JobRequest, out: Output) -> Result<JobEnd, EngineError> {
        let (path, body) = request_body(&job);
        let url = format!("{}/{path}", self.cfg.base_url.trim_end_matches('/'));
        let resp = self
            .authed(self.http.post(url).json(&body))
            .send()
            .await
            .map_err(upstream)?;
        let status = resp.status();
        if !status.is_success() {
            return Err(refusal(status, &resp.bytes().await.unwrap_or_default()));
        }
        let mut bytes = resp.bytes_stream();
        let mut line = Vec::new();
        let (mut finish, mut usage) = (FinishReason::Stop, None);
        // Until the upstream reports usage (at its end), a text event counts
        // as one token and the prompt as none: progress never overstates.
        let mut events = 0u32;
        while let Some(chunk) = bytes.next().await {
            for b in chunk.map_err(upstream)? {
                if b != b'\n' {
                    if line.len() >= MAX_LINE {
                        return Err(upstream("SSE line exceeds 1 MiB"));
                    }
                    line.push(b);
                    continue;
                }
                let text = String::from_utf8_lossy(&line).into_owned();
                line.clear();
                let Some(ev) = parse_event(text.trim_end_matches('\r'))? else {
                    continue;
                };
                if ev.done {
                    return finish_with(usage, finish);
                }
                finish = ev.finish.unwrap_or(finish);
                usage = ev.usage.or(usage);
                if ev.text.is_empty() {
                    continue;
                }
                events += 1;
                let so_far = Usage {
                    prompt_tokens: 0,
                    completion_tokens: events,
                };
                let piece = Piece {
                    text: ev.text,
                    usage: usage.unwrap_or(so_far),
                };
                if out.send(piece).await.is_err() {
                    return Err(EngineError::Cancelled);
                }
            }
        }
        finish_with(usage, finish)
    }
}

fn finish_with(usage: Option<Usage>, finish_reason: FinishReason) -> Result<JobEnd, EngineError> {
    let usage = usage.ok_or_else(|| {
        upstream("upstream reported no token usage (stream_options.include_usage unsupported?)")
    })?;
    Ok(JobEnd {
        usage,
        finish_reason,
        receipt: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upstream_gets_the_penalties_only_when_there_are_some() {
        let mut job = JobRequest {
            model: "m".into(),
            input: JobInput::Prompt("hi".into()),
            params: SamplingParams::default(),
        };
        let (_, body) = request_body(&job);
        assert!(body.get("presence_penalty").is_none() && body.get("frequency_penalty").is_none());
        job.params.presence_penalty = Some(0.5);
        job.params.frequency_penalty = Some(-1.0);
        let (_, body) = request_body(&job);
        assert_eq!(body["presence_penalty"], json!(0.5));
        assert_eq!(body["frequency_penalty"], json!(-1.0));
    }

    #[test]
    fn parses_chat_completion_and_usage_events() {
        let ev =
            parse_event(r#"data: {"choices":[{"delta":{"content":"Hi"},"finish_reason":null}]}"#)
                .unwrap()
                .unwrap();
        assert_eq!(ev.text, "Hi");
        let ev = parse_event(
            r#"data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            ev.usage,
            Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 4
            })
        );
        assert!(parse_event("data: [DONE]").unwrap().unwrap().done);
        assert_eq!(parse_event(": keep-alive").unwrap(), None);
        assert!(parse_event(r#"data: {"error":{"message":"boom"}}"#).is_err());
        assert!(parse_event("data: {nope").is_err());
    }

    #[test]
    fn an_upstreams_error_text_is_never_passed_on() {
        let secret = "canary-7f3a";
        let body = format!(
            r#"{{"error":{{"message":"Input should be a valid string: {secret}","type":"invalid_request_error"}}}}"#
        );
        let e = refusal(reqwest::StatusCode::BAD_REQUEST, body.as_bytes());
        assert_eq!(
            e,
            EngineError::BadRequest(
                "the upstream refused the job (HTTP 400, invalid_request_error)".into()
            )
        );
        // A type that is not an identifier is dropped too.
        let body = format!(r#"{{"error":{{"type":"{secret} said","code":"server_error"}}}}"#);
        let e = refusal(reqwest::StatusCode::BAD_GATEWAY, body.as_bytes());
        assert_eq!(
            e.to_string(),
            "upstream server failed: the upstream refused the job (HTTP 502, server_error)"
        );
        let e = refusal(
            reqwest::StatusCode::INTERNAL_SERVER_ERROR,
            secret.as_bytes(),
        );
        assert!(!e.to_string().contains(secret));
        let ev = format!(r#"data: {{"error":{{"message":"{secret}","type":"overloaded"}}}}"#);
        let e = parse_event(&ev).unwrap_err();
        assert_eq!(
            e.to_string(),
            "upstream server failed: the upstream sent an error event, overloaded"
        );
    }
}
