//! The end-to-end job payload, client gateway ↔ worker.
//!
//! The proxy forwards these bytes without parsing them. Content types do not
//! implement `Debug` or `Display`, so they cannot reach a log line by accident.

use serde::{Deserialize, Serialize};

/// A job request as the worker's engine needs it.
#[derive(Clone, Serialize, Deserialize)]
pub struct JobRequest {
    pub model: String,
    pub input: JobInput,
    #[serde(default)]
    pub params: SamplingParams,
}

/// What to generate from.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobInput {
    /// A conversation; the engine applies the model's chat template.
    Chat(Vec<ChatMessage>),
    /// A raw prompt (legacy completions).
    Prompt(String),
}

/// One chat message.
#[derive(Clone, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// Tokens generated when a request sets no `max_tokens` (engines use it, and
/// a paying gateway budgets for it).
pub const DEFAULT_MAX_TOKENS: u32 = 1024;

/// Generation parameters (OpenAI semantics).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SamplingParams {
    pub max_tokens: Option<u32>,
    /// The longest prompt (in the model's tokens, template included) the
    /// engine may process: a longer one is refused before any prefill. A
    /// paid worker sets it from the signed budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_prompt_tokens: Option<u32>,
    /// 0 means greedy. `None` means the OpenAI default (1.0).
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    #[serde(default)]
    pub stop: Vec<String>,
    pub seed: Option<u64>,
    /// OpenAI's `presence_penalty` (-2 to 2): subtracted from the logit of
    /// every token already in the completion. `None`: 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f32>,
    /// OpenAI's `frequency_penalty` (-2 to 2): subtracted once per time a
    /// token already appears in the completion. `None`: 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f32>,
}

/// One streamed piece of output (inside a `Data` frame).
#[derive(Clone, Serialize, Deserialize)]
pub struct Chunk {
    pub text: String,
}

/// Token counts of a finished job.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

impl Usage {
    pub fn total(&self) -> u32 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// Why generation stopped (OpenAI's `finish_reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// The body of the final `End` frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEnd {
    pub usage: Usage,
    pub finish_reason: FinishReason,
    /// The worker's signed receipt, on paid networks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<Box<ReceiptEnvelope>>,
}

/// A receipt and the certificate of the attested key that signed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptEnvelope {
    pub receipt: kokon_money::Signed<kokon_money::Receipt>,
    /// The worker's RA-TLS certificate (DER, hex).
    pub cert: String,
}
