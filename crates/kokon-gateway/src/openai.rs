//! OpenAI request types, validation, and conversion into Kokon jobs.

use kokon_proto::job::{JobInput, SamplingParams};
use kokon_proto::{ChatMessage, JobHeader, JobKind, JobRequest};
use serde::Deserialize;

use crate::ApiError;

/// Parses a JSON body; a failure names the field at fault.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let param = (!inner.is_syntax() && !inner.is_eof() && path != ".").then(|| path.clone());
        let msg = match &param {
            Some(p) => format!("invalid field `{p}`: {inner}"),
            None if inner.is_data() => format!("invalid request: {inner}"),
            None => format!("request body is not valid JSON: {inner}"),
        };
        ApiError::bad_request(param, msg)
    })
}

/// OpenAI parameters Kokon does not implement yet. Sent with a value that
/// would change the answer, they get a 400 naming them rather than being
/// ignored (a client asking for tools or JSON output must not get prose
/// back as if it had been honoured).
#[derive(Deserialize, Default)]
struct Unsupported {
    tools: Option<serde_json::Value>,
    tool_choice: Option<serde_json::Value>,
    functions: Option<serde_json::Value>,
    function_call: Option<serde_json::Value>,
    parallel_tool_calls: Option<serde_json::Value>,
    response_format: Option<serde_json::Value>,
    logprobs: Option<serde_json::Value>,
    top_logprobs: Option<serde_json::Value>,
    logit_bias: Option<serde_json::Value>,
    audio: Option<serde_json::Value>,
    modalities: Option<serde_json::Value>,
    prediction: Option<serde_json::Value>,
    best_of: Option<serde_json::Value>,
    echo: Option<serde_json::Value>,
    suffix: Option<serde_json::Value>,
}

impl Unsupported {
    /// The first parameter set to something Kokon cannot honour.
    fn first(&self) -> Option<&'static str> {
        use serde_json::Value;
        let set = |v: &Option<Value>| v.as_ref().is_some_and(|v| !v.is_null());
        let nonzero = |v: &Option<Value>| {
            v.as_ref()
                .is_some_and(|v| !v.is_null() && v.as_f64() != Some(0.0))
        };
        let truthy = |v: &Option<Value>| {
            v.as_ref()
                .is_some_and(|v| !v.is_null() && v != &Value::Bool(false))
        };
        let nonempty = |v: &Option<Value>| {
            v.as_ref().is_some_and(|v| match v {
                Value::Null => false,
                Value::Object(m) => !m.is_empty(),
                Value::Array(a) => !a.is_empty(),
                _ => true,
            })
        };
        let text_only = |v: &Option<Value>| {
            v.as_ref()
                .is_none_or(|v| v.is_null() || v == &serde_json::json!(["text"]))
        };
        let format_text = |v: &Option<Value>| {
            v.as_ref().is_none_or(|v| {
                v.is_null() || v.get("type").and_then(Value::as_str) == Some("text")
            })
        };
        [
            ("tools", nonempty(&self.tools)),
            (
                "tool_choice",
                set(&self.tool_choice) && self.tool_choice != Some(Value::from("none")),
            ),
            ("functions", nonempty(&self.functions)),
            (
                "function_call",
                set(&self.function_call) && self.function_call != Some(Value::from("none")),
            ),
            (
                "parallel_tool_calls",
                truthy(&self.parallel_tool_calls) && nonempty(&self.tools),
            ),
            ("response_format", !format_text(&self.response_format)),
            ("logprobs", truthy(&self.logprobs)),
            ("top_logprobs", nonzero(&self.top_logprobs)),
            ("logit_bias", nonempty(&self.logit_bias)),
            ("audio", set(&self.audio)),
            ("modalities", !text_only(&self.modalities)),
            ("prediction", set(&self.prediction)),
            (
                "best_of",
                set(&self.best_of) && self.best_of.as_ref().and_then(|v| v.as_u64()) != Some(1),
            ),
            ("echo", truthy(&self.echo)),
            ("suffix", set(&self.suffix)),
        ]
        .into_iter()
        .find(|(_, refused)| *refused)
        .map(|(name, _)| name)
    }
}

/// The whole check of an OpenAI request body as the gateway runs it, for
/// fuzzing and tools: parse, refuse unsupported parameters, build the job.
pub fn check_request(
    body: &[u8],
    kind: JobKind,
    max_price: Option<u32>,
) -> Result<(JobHeader, JobRequest), ApiError> {
    let (header, job, _) = parse_request(body)?.into_job(kind, max_price)?;
    Ok((header, job))
}

/// Parses an OpenAI request: field errors name the field, and parameters
/// Kokon does not implement yet are refused by name.
pub(crate) fn parse_request(body: &[u8]) -> Result<OpenAiRequest, ApiError> {
    let req: OpenAiRequest = parse(body)?;
    let unsupported: Unsupported = serde_json::from_slice(body).unwrap_or_default();
    if let Some(name) = unsupported.first() {
        return Err(ApiError::bad_request(
            Some(name.into()),
            format!(
                "the parameter `{name}` is not supported by Kokon yet; remove it from the request"
            ),
        ));
    }
    Ok(req)
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum StopField {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Deserialize)]
pub(crate) struct ContentPart {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct InMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
}

#[derive(Deserialize, Default)]
pub(crate) struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// An OpenAI chat or legacy completion request. One flat struct serves both
/// endpoints (each requires its own input field), so that every parse error
/// can name its field.
#[derive(Deserialize)]
pub(crate) struct OpenAiRequest {
    pub model: String,
    #[serde(default)]
    messages: Option<Vec<InMessage>>,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    stop: Option<StopField>,
    seed: Option<u64>,
    n: Option<u32>,
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
}

/// What the handler needs besides the job.
pub(crate) struct Shape {
    pub kind: JobKind,
    pub model: String,
    pub stream: bool,
    pub include_usage: bool,
}

fn bad(param: &str, msg: &str) -> ApiError {
    ApiError::bad_request(
        Some(param.into()),
        format!("invalid field `{param}`: {msg}"),
    )
}

/// A penalty within OpenAI's -2 to 2; 0 is none (the job says nothing).
fn penalty(name: &str, v: Option<f32>) -> Result<Option<f32>, ApiError> {
    match v {
        Some(p) if !(-2.0..=2.0).contains(&p) => Err(bad(name, &format!("{p} is outside -2 to 2"))),
        Some(p) if p != 0.0 => Ok(Some(p)),
        _ => Ok(None),
    }
}

impl OpenAiRequest {
    fn sampling(&mut self) -> Result<SamplingParams, ApiError> {
        if let Some(t) = self.temperature.filter(|t| !(0.0..=2.0).contains(t)) {
            return Err(bad("temperature", &format!("{t} is outside 0 to 2")));
        }
        if let Some(p) = self.top_p.filter(|p| !(0.0..=1.0).contains(p)) {
            return Err(bad("top_p", &format!("{p} is outside 0 to 1")));
        }
        let presence_penalty = penalty("presence_penalty", self.presence_penalty)?;
        let frequency_penalty = penalty("frequency_penalty", self.frequency_penalty)?;
        if self.n.is_some_and(|n| n != 1) {
            return Err(bad("n", "only n = 1 is supported"));
        }
        let stop = match self.stop.take() {
            None => vec![],
            Some(StopField::One(s)) => vec![s],
            Some(StopField::Many(v)) => v,
        };
        if stop.len() > 4 {
            return Err(bad("stop", "at most 4 stop sequences"));
        }
        let max = kokon_proto::meter::MAX_STOP_BYTES;
        if stop.iter().any(|s| s.is_empty() || s.len() as u64 > max) {
            return Err(bad(
                "stop",
                &format!("each stop sequence is 1 to {max} bytes"),
            ));
        }
        let max_tokens = self.max_completion_tokens.or(self.max_tokens);
        if max_tokens == Some(0) {
            return Err(bad("max_tokens", "must be at least 1"));
        }
        Ok(SamplingParams {
            max_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            stop,
            seed: self.seed,
            presence_penalty,
            frequency_penalty,
            // The worker sets it from the signed budget.
            max_prompt_tokens: None,
        })
    }
}

fn message(i: usize, m: InMessage) -> Result<ChatMessage, ApiError> {
    let field = |f: &str| format!("messages[{i}].{f}");
    if !["system", "developer", "user", "assistant", "tool"].contains(&m.role.as_str()) {
        return Err(ApiError::bad_request(
            Some(field("role")),
            format!("invalid field `{}`: unknown role", field("role")),
        ));
    }
    let content = match m.content {
        None => String::new(),
        Some(Content::Text(t)) => t,
        Some(Content::Parts(parts)) => {
            let mut text = String::new();
            for p in parts {
                if p.kind != "text" {
                    return Err(ApiError::bad_request(
                        Some(field("content")),
                        "only text content parts are supported",
                    ));
                }
                text.push_str(p.text.as_deref().unwrap_or(""));
            }
            text
        }
    };
    let role = if m.role == "developer" {
        "system".to_string()
    } else {
        m.role
    };
    Ok(ChatMessage { role, content })
}

fn header(kind: JobKind, model: &str, max_price_milli: Option<u32>) -> Result<JobHeader, ApiError> {
    if !kokon_proto::header::valid_model(model) {
        return Err(bad("model", "must be 1-128 characters of [A-Za-z0-9._:/-]"));
    }
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    Ok(JobHeader {
        request_id,
        model: model.into(),
        kind,
        max_price_milli,
        budget: None,
        payment: None,
        credit: None,
        sealed: false,
    })
}

impl OpenAiRequest {
    /// Converts into a job of `kind`, checking the fields that kind needs.
    pub fn into_job(
        mut self,
        kind: JobKind,
        max_price: Option<u32>,
    ) -> Result<(JobHeader, JobRequest, Shape), ApiError> {
        let params = self.sampling()?;
        let input = match kind {
            JobKind::Chat => {
                let messages = self.messages.take().unwrap_or_default();
                if messages.is_empty() {
                    return Err(bad("messages", "must hold at least one message"));
                }
                JobInput::Chat(
                    messages
                        .into_iter()
                        .enumerate()
                        .map(|(i, m)| message(i, m))
                        .collect::<Result<_, _>>()?,
                )
            }
            JobKind::Completion => JobInput::Prompt(
                self.prompt
                    .take()
                    .ok_or_else(|| bad("prompt", "is required"))?,
            ),
        };
        let h = header(kind, &self.model, max_price)?;
        let shape = Shape {
            kind,
            model: self.model.clone(),
            stream: self.stream,
            include_usage: self.stream_options.unwrap_or_default().include_usage,
        };
        Ok((
            h,
            JobRequest {
                model: self.model,
                input,
                params,
            },
            shape,
        ))
    }
}
