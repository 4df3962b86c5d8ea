//! Kokon's built-in engine (llama.cpp) against candle's quantized llama on the
//! same GGUF file, the same prompt tokens, greedy decoding, on the CPU.
//! Prints prefill and decode speed for both, their ratio, and whether the
//! greedy token sequences agree.

use std::time::Instant;

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;
use kokon_engine::Engine;
use kokon_engine::llama::{LlamaConfig, LlamaEngine};
use kokon_proto::job::{JobInput, SamplingParams};
use kokon_proto::{ChatMessage, JobRequest};

const NEW_TOKENS: usize = 128;
const PROMPT: &str = "Write a short story about a lighthouse keeper who finds a message in a bottle.";

struct Run {
    prefill_ms: f64,
    decode_tps: f64,
    tokens: Vec<u32>,
    prompt_len: usize,
}

fn prompt_tokens(path: &std::path::Path) -> anyhow::Result<Vec<u32>> {
    use llama_cpp_2::model::LlamaModel;
    use llama_cpp_2::model::params::LlamaModelParams;
    let model = LlamaModel::load_from_file(kokon_engine::llama::backend()?, path, &LlamaModelParams::default())?;
    let tmpl = model.meta_val_str("tokenizer.chat_template")?;
    let msg = ChatMessage { role: "user".into(), content: PROMPT.into() };
    let text = kokon_engine::template::render(&tmpl, &[msg])?;
    Ok(model.vocab().tokenize(text.as_bytes(), true, true).iter().map(|t| t.0 as u32).collect())
}

async fn kokon_run(path: &std::path::Path, threads: u32, prompt_len: usize) -> anyhow::Result<Run> {
    let engine = LlamaEngine::load(path, LlamaConfig { name: "m".into(), context_len: 2048, threads, model_sha256: None })?;
    let job = || JobRequest {
        model: "m".into(),
        input: JobInput::Chat(vec![ChatMessage { role: "user".into(), content: PROMPT.into() }]),
        params: SamplingParams { temperature: Some(0.0), max_tokens: Some(NEW_TOKENS as u32), ..Default::default() },
    };
    // Warm-up run (page in the weights).
    let (tx, mut rx) = tokio::sync::mpsc::channel(256);
    let h = tokio::spawn(engine.run(job(), tx, Default::default()));
    while rx.recv().await.is_some() {}
    h.await??;

    let (tx, mut rx) = tokio::sync::mpsc::channel(256);
    let start = Instant::now();
    let h = tokio::spawn(engine.run(job(), tx, Default::default()));
    rx.recv().await;
    let first = start.elapsed();
    while rx.recv().await.is_some() {}
    let end = h.await??;
    let total = start.elapsed();
    let n = end.usage.completion_tokens as f64;
    assert_eq!(end.usage.prompt_tokens as usize, prompt_len, "same prompt tokens in both engines");
    Ok(Run {
        prefill_ms: first.as_secs_f64() * 1e3,
        decode_tps: (n - 1.0) / (total - first).as_secs_f64(),
        tokens: vec![],
        prompt_len,
    })
}

fn candle_run(path: &std::path::Path, prompt: &[u32]) -> anyhow::Result<Run> {
    let device = Device::Cpu;
    let mut file = std::fs::File::open(path)?;
    let content = gguf_file::Content::read(&mut file)?;
    let mut model = ModelWeights::from_gguf(content, &mut file, &device)?;
    let eos = 2u32;
    let run = |model: &mut ModelWeights| -> anyhow::Result<Run> {
        let start = Instant::now();
        let input = Tensor::new(prompt, &device)?.unsqueeze(0)?;
        let logits = model.forward(&input, 0)?.squeeze(0)?;
        let mut next = logits.argmax(0)?.to_scalar::<u32>()?;
        let prefill = start.elapsed();
        let mut tokens = vec![next];
        let decode_start = Instant::now();
        for i in 0..NEW_TOKENS - 1 {
            if next == eos {
                break;
            }
            let input = Tensor::new(&[next], &device)?.unsqueeze(0)?;
            let logits = model.forward(&input, prompt.len() + i)?.squeeze(0)?;
            next = logits.argmax(0)?.to_scalar::<u32>()?;
            tokens.push(next);
        }
        let d = decode_start.elapsed();
        Ok(Run {
            prefill_ms: prefill.as_secs_f64() * 1e3,
            decode_tps: (tokens.len() - 1) as f64 / d.as_secs_f64(),
            tokens,
            prompt_len: prompt.len(),
        })
    };
    run(&mut model)?; // warm-up (the KV cache restarts at position 0)
    run(&mut model)
}

fn llama_greedy_tokens(path: &std::path::Path, prompt: &[u32]) -> anyhow::Result<Vec<u32>> {
    use llama_cpp_2::context::params::LlamaContextParams;
    use llama_cpp_2::llama_batch::LlamaBatch;
    use llama_cpp_2::model::LlamaModel;
    use llama_cpp_2::model::params::LlamaModelParams;
    use llama_cpp_2::sampling::LlamaSampler;
    use llama_cpp_2::token::LlamaToken;
    let backend = kokon_engine::llama::backend()?;
    let model = LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())?;
    let mut ctx = model.new_context(backend, LlamaContextParams::default().with_n_ctx(std::num::NonZeroU32::new(2048)))?;
    let mut batch = LlamaBatch::new(2048, 1);
    for (i, t) in prompt.iter().enumerate() {
        batch.add(LlamaToken(*t as i32), i as i32, &[0], i == prompt.len() - 1)?;
    }
    ctx.decode(&mut batch)?;
    let mut s = LlamaSampler::greedy();
    let mut out = vec![];
    for i in 0..NEW_TOKENS {
        let t = s.sample(&ctx, batch.n_tokens() - 1);
        out.push(t.0 as u32);
        if t.0 == 2 {
            break;
        }
        batch.clear();
        batch.add(t, (prompt.len() + i) as i32, &[0], true)?;
        ctx.decode(&mut batch)?;
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (path, _) = kokon_models::locate(&kokon_models::kokon_home(), kokon_models::DEFAULT_MODEL)?;
    let threads = std::thread::available_parallelism()?.get() as u32;
    let prompt = prompt_tokens(&path)?;
    let kokon = kokon_run(&path, threads, prompt.len()).await?;
    let ours = llama_greedy_tokens(&path, &prompt)?;
    let candle = candle_run(&path, &prompt)?;
    let agree = ours.iter().zip(&candle.tokens).take_while(|(a, b)| a == b).count();

    println!("SmolLM2-135M-Instruct Q4_1, {} prompt tokens, {NEW_TOKENS} new tokens greedy, {threads} threads", kokon.prompt_len);
    println!("{:<22} {:>12} {:>14}", "engine", "prefill", "decode tok/s");
    println!("{:<22} {:>9.1} ms {:>14.1}", "kokon (llama.cpp)", kokon.prefill_ms, kokon.decode_tps);
    println!("{:<22} {:>9.1} ms {:>14.1}", "candle 0.11", candle.prefill_ms, candle.decode_tps);
    println!("{:<22} {:>12.2} {:>14.2}", "ratio kokon/candle", candle.prefill_ms / kokon.prefill_ms, kokon.decode_tps / candle.decode_tps);
    println!("greedy tokens agreeing from the start: {agree} of {} (prompt {})", ours.len().min(candle.tokens.len()), candle.prompt_len);
    if std::env::var_os("SHOW_TEXT").is_some() {
        println!("llama.cpp: {:?}", detok(&path, &ours)?);
        println!("candle:    {:?}", detok(&path, &candle.tokens)?);
    }
    Ok(())
}

fn detok(path: &std::path::Path, toks: &[u32]) -> anyhow::Result<String> {
    use llama_cpp_2::model::LlamaModel;
    use llama_cpp_2::model::params::LlamaModelParams;
    use llama_cpp_2::token::LlamaToken;
    let model = LlamaModel::load_from_file(kokon_engine::llama::backend()?, path, &LlamaModelParams::default())?;
    let mut out = Vec::new();
    for t in toks.iter().take(60) {
        out.extend(model.vocab().token_to_piece(LlamaToken(*t as i32), false, None));
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}
