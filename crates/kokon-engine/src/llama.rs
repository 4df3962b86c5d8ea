//! The built-in engine: GGUF models on the CPU through llama.cpp.
//!
//! Each job gets its own llama.cpp context (KV cache) on a blocking thread,
//! so jobs run side by side up to the worker's `max_jobs`. Greedy decoding
//! (temperature 0) with a fixed thread count is deterministic.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use kokon_proto::job::{JobInput, SamplingParams};
use kokon_proto::{FinishReason, JobEnd, JobRequest, ModelOffer, Usage};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use tokio_util::sync::CancellationToken;

use crate::text::{StopMatcher, Utf8Assembler};
use crate::{BoxFuture, Engine, EngineError, Output, Piece};

pub use kokon_proto::job::DEFAULT_MAX_TOKENS;

/// Prompt tokens decoded at a time: a cancel stops prefill within one
/// chunk (about a second on two CPU cores for a 0.5 B model).
pub const PREFILL_CHUNK: usize = 128;

/// Settings of the built-in engine.
#[derive(Clone, Debug)]
pub struct LlamaConfig {
    /// Name the model is served under (e.g. `smollm2-135m-instruct`).
    pub name: String,
    /// Context window per job, in tokens (capped at the model's training context).
    pub context_len: u32,
    /// CPU threads per job. Fixed, so greedy output is reproducible.
    pub threads: u32,
    /// SHA-256 of the model file, when known (named in announces and receipts).
    pub model_sha256: Option<[u8; 32]>,
}

/// A loaded GGUF model.
pub struct LlamaEngine {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: LlamaConfig,
    model: LlamaModel,
    template: Option<String>,
}

/// The process-wide llama.cpp backend (llama.cpp allows one initialisation).
pub fn backend() -> Result<&'static LlamaBackend, EngineError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            // llama.cpp logs may echo prompt text at debug level: keep them off.
            llama_cpp_2::send_logs_to_tracing(
                llama_cpp_2::LogOptions::default().with_logs_enabled(false),
            );
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| EngineError::Failed(format!("llama.cpp backend: {e}")))
}

impl LlamaEngine {
    /// Loads a GGUF file. Blocking (reads the file); call from a blocking context.
    pub fn load(path: &Path, mut cfg: LlamaConfig) -> Result<Self, EngineError> {
        let backend = backend()?;
        let model = LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())
            .map_err(|e| EngineError::Failed(format!("cannot load {}: {e}", path.display())))?;
        cfg.context_len = cfg.context_len.min(model.n_ctx_train()).max(16);
        cfg.threads = cfg.threads.max(1);
        let template = model.meta_val_str("tokenizer.chat_template").ok();
        Ok(Self {
            inner: Arc::new(Inner {
                cfg,
                model,
                template,
            }),
        })
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.inner.cfg
    }
}

impl Engine for LlamaEngine {
    fn declaration(&self) -> kokon_proto::EngineDecl {
        kokon_proto::EngineDecl::local(kokon_proto::EngineKind::Llama)
    }

    fn models(&self) -> Vec<ModelOffer> {
        vec![ModelOffer {
            hash: self.inner.cfg.model_sha256.map(kokon_money::Hash32),
            name: self.inner.cfg.name.clone(),
            context_len: self.inner.cfg.context_len,
        }]
    }

    fn run(
        &self,
        job: JobRequest,
        out: Output,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, Result<JobEnd, EngineError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            if job.model != inner.cfg.name {
                return Err(EngineError::UnknownModel(job.model));
            }
            tokio::task::spawn_blocking(move || inner.generate(job, &out, &cancel))
                .await
                .map_err(|e| EngineError::Failed(format!("generation thread: {e}")))?
        })
    }
}

impl Inner {
    fn generate(
        &self,
        job: JobRequest,
        out: &Output,
        cancel: &CancellationToken,
    ) -> Result<JobEnd, EngineError> {
        let prompt = self.prompt(&job.input)?;
        let vocab = self.model.vocab();
        let tokens = vocab.tokenize(prompt.as_bytes(), true, true);
        let n_ctx = self.cfg.context_len as usize;
        if tokens.is_empty() || tokens.len() >= n_ctx {
            return Err(EngineError::ContextTooLong {
                prompt: tokens.len(),
                context: n_ctx,
            });
        }
        // Before any prefill: a prompt the client did not pay for is refused.
        EngineError::check_prompt(tokens.len(), job.params.max_prompt_tokens)?;
        let budget = job.params.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS) as usize;
        let max_new = budget.min(n_ctx - tokens.len());

        let threads = self.cfg.threads as i32;
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx as u32))
            .with_n_batch(n_ctx as u32)
            .with_n_ubatch(512.min(n_ctx as u32))
            .with_n_threads(threads)
            .with_n_threads_batch(threads);
        let mut ctx = self.model.new_context(backend()?, params).map_err(failed)?;
        let mut batch = LlamaBatch::new(n_ctx, 1);
        self.prefill(&mut ctx, &mut batch, &tokens, out, cancel)?;

        let mut sampler = sampler(&job.params, self.model.n_vocab(), max_new);
        let mut utf8 = Utf8Assembler::default();
        let mut stops = StopMatcher::new(job.params.stop.clone());
        let mut pos = tokens.len() as i32;
        let mut completion = 0usize;
        let mut finish = FinishReason::Length;
        let prompt = tokens.len();
        let send = |text: String, completion: usize| -> Result<(), EngineError> {
            if text.is_empty() {
                return Ok(());
            }
            let usage = end(prompt, completion, FinishReason::Length).usage;
            out.blocking_send(Piece { text, usage })
                .map_err(|_| EngineError::Cancelled)
        };
        while completion < max_new {
            if cancel.is_cancelled() {
                return Err(EngineError::Cancelled);
            }
            let token = sampler.sample(&ctx, batch.n_tokens() - 1);
            if vocab.is_eog(token) {
                finish = FinishReason::Stop;
                break;
            }
            completion += 1;
            let step = stops.push(&utf8.push(&vocab.token_to_piece(token, false, None)));
            send(step.emit, completion)?;
            if step.stopped {
                return Ok(end(tokens.len(), completion, FinishReason::Stop));
            }
            batch.clear();
            batch.add(token, pos, &[0], true).map_err(failed)?;
            pos += 1;
            ctx.decode(&mut batch).map_err(failed)?;
        }
        let tail = utf8.finish();
        let step = stops.push(&tail);
        send(step.emit + &stops.finish(), completion)?;
        Ok(end(tokens.len(), completion, finish))
    }

    /// Decodes the prompt [`PREFILL_CHUNK`] tokens at a time, so a cancel
    /// stops it within one chunk; after each chunk the tokens processed so
    /// far are reported (an empty piece), so a receipt can cover them.
    fn prefill(
        &self,
        ctx: &mut llama_cpp_2::context::LlamaContext<'_>,
        batch: &mut LlamaBatch,
        tokens: &[llama_cpp_2::token::LlamaToken],
        out: &Output,
        cancel: &CancellationToken,
    ) -> Result<(), EngineError> {
        let last = tokens.len() - 1;
        for (n, chunk) in tokens.chunks(PREFILL_CHUNK).enumerate() {
            if cancel.is_cancelled() {
                return Err(EngineError::Cancelled);
            }
            batch.clear();
            let start = n * PREFILL_CHUNK;
            for (k, t) in chunk.iter().enumerate() {
                let i = start + k;
                batch.add(*t, i as i32, &[0], i == last).map_err(failed)?;
            }
            ctx.decode(batch).map_err(failed)?;
            let usage = end(start + chunk.len(), 0, FinishReason::Length).usage;
            out.blocking_send(Piece {
                text: String::new(),
                usage,
            })
            .map_err(|_| EngineError::Cancelled)?;
        }
        Ok(())
    }

    /// Renders the prompt: the model's own chat template (Jinja, from GGUF
    /// metadata) when it has one, else llama.cpp's built-in ChatML.
    fn prompt(&self, input: &JobInput) -> Result<String, EngineError> {
        let messages = match input {
            JobInput::Prompt(p) => return Ok(p.clone()),
            JobInput::Chat(m) => m,
        };
        if let Some(tmpl) = &self.template {
            return crate::template::render(tmpl, messages);
        }
        let chat: Vec<LlamaChatMessage> = messages
            .iter()
            .map(|m| LlamaChatMessage::new(m.role.clone(), m.content.clone()))
            .collect::<Result<_, _>>()
            .map_err(|_| EngineError::BadRequest("message contains a NUL byte".into()))?;
        let chatml = LlamaChatTemplate::new("chatml").map_err(failed)?;
        self.model
            .apply_chat_template(&chatml, &chat, true)
            .map_err(failed)
    }
}

fn end(prompt: usize, completion: usize, finish_reason: FinishReason) -> JobEnd {
    JobEnd {
        usage: Usage {
            prompt_tokens: prompt as u32,
            completion_tokens: completion as u32,
        },
        finish_reason,
        receipt: None,
    }
}

fn failed(e: impl std::fmt::Display) -> EngineError {
    EngineError::Failed(e.to_string())
}

/// The presence and frequency penalties first (over the completion so far:
/// the sampler sees only the tokens it picked), then greedy at temperature
/// 0, otherwise top-p then temperature then a seeded draw.
fn sampler(p: &SamplingParams, n_vocab: i32, max_new: usize) -> LlamaSampler {
    let (presence, frequency) = (
        p.presence_penalty.unwrap_or(0.0),
        p.frequency_penalty.unwrap_or(0.0),
    );
    let penalties = (presence != 0.0 || frequency != 0.0).then(|| {
        // The window is the whole completion; the repeat penalty stays off.
        let window = i32::try_from(max_new.max(1)).unwrap_or(i32::MAX);
        LlamaSampler::penalties(n_vocab, window, 1.0, frequency, presence)
    });
    let temperature = p.temperature.unwrap_or(1.0);
    let pick = if temperature <= 0.0 {
        vec![LlamaSampler::greedy()]
    } else {
        let seed = p.seed.map(|s| s as u32).unwrap_or_else(rand_seed);
        vec![
            LlamaSampler::top_p(p.top_p.unwrap_or(1.0).clamp(0.0, 1.0), 1),
            LlamaSampler::temp(temperature),
            LlamaSampler::dist(seed),
        ]
    };
    LlamaSampler::chain_simple(penalties.into_iter().chain(pick))
}

fn rand_seed() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(0u8) as u32
}
