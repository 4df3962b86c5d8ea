//! Engines: what a worker runs jobs with.
//!
//! * [`llama::LlamaEngine`]: the built-in engine, GGUF models on the CPU via
//!   llama.cpp (see docs/ENGINES.md for why llama.cpp over candle).
//! * [`upstream::UpstreamEngine`]: forwards to any OpenAI-compatible server.
//! * [`echo::EchoEngine`]: a deterministic engine that repeats its input word
//!   by word. It is for tests and benchmarks, and says so in its model name.
//!
//! An engine streams text pieces into a channel and returns the job's usage.
//! If the receiver goes away (client cancelled) the engine stops.

pub mod echo;
pub mod llama;
pub mod template;
pub mod text;
pub mod upstream;

use std::future::Future;
use std::pin::Pin;

use kokon_proto::{EngineDecl, ErrorCode, JobEnd, JobError, JobRequest, ModelOffer, Usage};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A boxed future, so engines can be used as trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why an engine could not finish a job.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum EngineError {
    #[error("model `{0}` is not served by this engine")]
    UnknownModel(String),
    #[error("invalid request: {0}")]
    BadRequest(String),
    #[error("prompt of {prompt} tokens does not fit the {context}-token context")]
    ContextTooLong { prompt: usize, context: usize },
    #[error("engine failed: {0}")]
    Failed(String),
    #[error("upstream server failed: {0}")]
    Upstream(String),
    #[error("job was cancelled")]
    Cancelled,
    #[error("the prompt is {prompt} tokens, above the {budget} the client's budget pays for")]
    OverBudget { prompt: usize, budget: usize },
}

impl EngineError {
    /// Refuses a prompt of `prompt` tokens above the job's prompt budget.
    pub fn check_prompt(prompt: usize, max: Option<u32>) -> Result<(), EngineError> {
        match max {
            Some(budget) if prompt > budget as usize => Err(EngineError::OverBudget {
                prompt,
                budget: budget as usize,
            }),
            _ => Ok(()),
        }
    }
}

impl EngineError {
    /// The wire error for this failure.
    pub fn to_job_error(&self) -> JobError {
        let code = match self {
            EngineError::UnknownModel(_) => ErrorCode::ModelNotFound,
            EngineError::BadRequest(_) | EngineError::ContextTooLong { .. } => {
                ErrorCode::BadRequest
            }
            EngineError::Failed(_) | EngineError::Upstream(_) => ErrorCode::EngineFailed,
            EngineError::Cancelled => ErrorCode::Cancelled,
            EngineError::OverBudget { .. } => ErrorCode::OverBudget,
        };
        JobError::new(code, self.to_string())
    }
}

/// One piece of a running job's output: its text, and what the job has
/// used so far (prompt tokens processed, tokens generated up to and
/// including this piece). Workers sign receipts from it while a job runs,
/// so the usage never runs ahead of the work done.
pub struct Piece {
    pub text: String,
    pub usage: Usage,
}

impl std::ops::Deref for Piece {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text
    }
}

/// Output side of a running job: pieces in order.
pub type Output = mpsc::Sender<Piece>;

/// Runs jobs.
pub trait Engine: Send + Sync + 'static {
    /// The models this engine serves.
    fn models(&self) -> Vec<ModelOffer>;

    /// What this engine is, as the worker's certificate declares it: an
    /// engine that sends jobs out of the TEE must say where.
    fn declaration(&self) -> EngineDecl;

    /// Runs one job, streaming text into `out`, until done, failed or
    /// `cancel`led. Returns usage and finish reason.
    fn run(
        &self,
        job: JobRequest,
        out: Output,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, Result<JobEnd, EngineError>>;
}
