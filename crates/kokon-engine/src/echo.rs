//! A deterministic engine for tests and benchmarks: it repeats the last
//! message (or the prompt) word by word, one word per "token".
//!
//! It is a real engine with honest limits (no model): usage counts words, and
//! `max_tokens`, `stop` and cancellation behave as in the built-in engine.

use std::time::Duration;

use kokon_proto::job::JobInput;
use kokon_proto::{FinishReason, JobEnd, JobRequest, ModelOffer, Usage};
use tokio_util::sync::CancellationToken;

use crate::text::StopMatcher;
use crate::{BoxFuture, Engine, EngineError, Output, Piece};

/// Repeats its input. See the module docs.
#[derive(Clone, Debug)]
pub struct EchoEngine {
    pub model: String,
    /// Pause before each word, to simulate generation time.
    pub per_token: Duration,
}

impl EchoEngine {
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            per_token: Duration::ZERO,
        }
    }

    pub fn with_delay(mut self, per_token: Duration) -> Self {
        self.per_token = per_token;
        self
    }
}

fn usage(prompt: usize, completion: usize) -> Usage {
    Usage {
        prompt_tokens: prompt as u32,
        completion_tokens: completion as u32,
    }
}

fn source_text(input: &JobInput) -> (&str, usize) {
    match input {
        JobInput::Prompt(p) => (p.as_str(), p.split_whitespace().count()),
        JobInput::Chat(msgs) => {
            let all = msgs
                .iter()
                .map(|m| m.content.split_whitespace().count())
                .sum();
            (msgs.last().map(|m| m.content.as_str()).unwrap_or(""), all)
        }
    }
}

impl Engine for EchoEngine {
    fn declaration(&self) -> kokon_proto::EngineDecl {
        kokon_proto::EngineDecl::local(kokon_proto::EngineKind::Echo)
    }

    fn models(&self) -> Vec<ModelOffer> {
        vec![ModelOffer {
            hash: None,
            name: self.model.clone(),
            context_len: 1 << 20,
        }]
    }

    fn run(
        &self,
        job: JobRequest,
        out: Output,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, Result<JobEnd, EngineError>> {
        let me = self.clone();
        Box::pin(async move {
            if job.model != me.model {
                return Err(EngineError::UnknownModel(job.model));
            }
            let (text, prompt_tokens) = source_text(&job.input);
            EngineError::check_prompt(prompt_tokens, job.params.max_prompt_tokens)?;
            let words: Vec<String> = text.split_whitespace().map(|w| format!("{w} ")).collect();
            let max = job
                .params
                .max_tokens
                .map(|m| m as usize)
                .unwrap_or(usize::MAX);
            let mut stops = StopMatcher::new(job.params.stop.clone());
            let mut finish = FinishReason::Stop;
            let mut completion = 0;
            for word in words {
                if completion == max {
                    finish = FinishReason::Length;
                    break;
                }
                if !me.per_token.is_zero() {
                    tokio::select! {
                        _ = tokio::time::sleep(me.per_token) => {}
                        _ = cancel.cancelled() => return Err(EngineError::Cancelled),
                    }
                }
                completion += 1;
                let step = stops.push(&word);
                let piece = Piece {
                    text: step.emit,
                    usage: usage(prompt_tokens, completion),
                };
                if !piece.text.is_empty() && out.send(piece).await.is_err() {
                    return Err(EngineError::Cancelled);
                }
                if step.stopped {
                    break;
                }
            }
            let rest = Piece {
                text: stops.finish(),
                usage: usage(prompt_tokens, completion),
            };
            if !rest.text.is_empty() && out.send(rest).await.is_err() {
                return Err(EngineError::Cancelled);
            }
            Ok(JobEnd {
                usage: usage(prompt_tokens, completion),
                finish_reason: finish,
                receipt: None,
            })
        })
    }
}
