//! The built-in engine on the real default model (pulled by the test command:
//! `kokon model pull smollm2-135m-instruct`).

use kokon_engine::llama::{LlamaConfig, LlamaEngine};
use kokon_engine::{Engine, EngineError};
use kokon_proto::job::{JobInput, SamplingParams};
use kokon_proto::{ChatMessage, FinishReason, JobEnd, JobRequest};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const MODEL: &str = kokon_models::DEFAULT_MODEL;

fn engine() -> LlamaEngine {
    let (path, _) = kokon_models::locate(&kokon_models::kokon_home(), MODEL)
        .unwrap_or_else(|e| panic!("{e} (the test command pulls it first)"));
    LlamaEngine::load(
        &path,
        LlamaConfig {
            model_sha256: None,
            name: MODEL.into(),
            context_len: 2048,
            threads: 2,
        },
    )
    .unwrap()
}

fn chat(q: &str, params: SamplingParams) -> JobRequest {
    JobRequest {
        model: MODEL.into(),
        input: JobInput::Chat(vec![ChatMessage {
            role: "user".into(),
            content: q.into(),
        }]),
        params,
    }
}

fn greedy(max_tokens: u32) -> SamplingParams {
    SamplingParams {
        temperature: Some(0.0),
        max_tokens: Some(max_tokens),
        ..Default::default()
    }
}

async fn run(e: &LlamaEngine, job: JobRequest) -> (String, Result<JobEnd, EngineError>) {
    let (tx, mut rx) = mpsc::channel(64);
    let task = tokio::spawn(e.run(job, tx, CancellationToken::new()));
    let mut text = String::new();
    while let Some(piece) = rx.recv().await {
        text.push_str(&piece);
    }
    (text, task.await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_the_capital_of_france() {
    let e = engine();
    // Without an instruction this 135M model tends to answer in French.
    let mut job = chat("What is the capital of France?", greedy(48));
    if let JobInput::Chat(m) = &mut job.input {
        let sys = "You are a helpful assistant. Answer in one English sentence.";
        m.insert(
            0,
            ChatMessage {
                role: "system".into(),
                content: sys.into(),
            },
        );
    }
    let (text, end) = run(&e, job).await;
    let end = end.unwrap();
    assert!(text.contains("Paris"), "answer was: {text}");
    assert!(end.usage.prompt_tokens > 5 && end.usage.completion_tokens > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn greedy_decoding_is_deterministic() {
    let e = engine();
    let a = run(&e, chat("Write a sentence about the sea.", greedy(32))).await;
    let b = run(&e, chat("Write a sentence about the sea.", greedy(32))).await;
    assert_eq!(a.0, b.0);
    assert_eq!(a.1.unwrap(), b.1.unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn honours_max_tokens_stop_and_seed() {
    let e = engine();
    let (_, end) = run(&e, chat("Count from one to fifty in words.", greedy(5))).await;
    let end = end.unwrap();
    assert_eq!(
        (end.usage.completion_tokens, end.finish_reason),
        (5, FinishReason::Length)
    );

    let (full, _) = run(&e, chat("Count from one to ten in words.", greedy(40))).await;
    let stop = full
        .split_whitespace()
        .nth(2)
        .expect("a few words")
        .to_string();
    let p = SamplingParams {
        stop: vec![stop.clone()],
        ..greedy(40)
    };
    let (text, end) = run(&e, chat("Count from one to ten in words.", p)).await;
    assert_eq!(end.unwrap().finish_reason, FinishReason::Stop);
    assert!(
        !text.contains(&stop) && full.starts_with(&text),
        "{text:?} vs {full:?}"
    );

    let seeded = |seed| SamplingParams {
        temperature: Some(0.9),
        seed: Some(seed),
        ..greedy(24)
    };
    let a = run(&e, chat("Tell me a story.", seeded(7))).await.0;
    let b = run(&e, chat("Tell me a story.", seeded(7))).await.0;
    assert_eq!(a, b, "same seed, same output");
}

#[tokio::test(flavor = "multi_thread")]
async fn stops_when_the_receiver_goes_away() {
    let e = engine();
    let (tx, mut rx) = mpsc::channel(1);
    let task = tokio::spawn(e.run(
        chat("Tell me a long story.", greedy(500)),
        tx,
        CancellationToken::new(),
    ));
    rx.recv().await.unwrap();
    drop(rx);
    assert_eq!(task.await.unwrap().unwrap_err(), EngineError::Cancelled);
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_prompts_longer_than_the_context() {
    let e = engine();
    let long = "word ".repeat(5000);
    let (_, end) = run(&e, chat(&long, greedy(4))).await;
    assert!(matches!(
        end.unwrap_err(),
        EngineError::ContextTooLong { .. }
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_stops_prefill_within_a_chunk_and_reports_what_was_processed() {
    use kokon_engine::llama::PREFILL_CHUNK;
    let e = engine();
    let cancel = CancellationToken::new();
    // One piece in flight: the engine cannot run ahead of this reader.
    let (tx, mut rx) = mpsc::channel(1);
    let long = "word ".repeat(1500);
    let task = tokio::spawn(e.run(chat(&long, greedy(4)), tx, cancel.clone()));
    let first = rx
        .recv()
        .await
        .expect("a progress piece after the first chunk");
    assert!(first.text.is_empty(), "progress carries no text");
    assert_eq!(first.usage.prompt_tokens as usize, PREFILL_CHUNK);
    cancel.cancel();
    let mut processed = first.usage.prompt_tokens;
    while let Some(p) = rx.recv().await {
        assert!(p.text.is_empty(), "no token is generated after a cancel");
        processed = p.usage.prompt_tokens;
    }
    assert_eq!(task.await.unwrap().unwrap_err(), EngineError::Cancelled);
    // The prompt is ~1500 tokens; the cancel, sent on the first chunk's
    // report, is seen before the third chunk starts.
    assert!(
        processed as usize <= 2 * PREFILL_CHUNK,
        "prefill went on to {processed} tokens after the cancel"
    );
}

/// How often the most repeated word of `text` appears.
fn most_repeated(text: &str) -> usize {
    let mut counts = std::collections::HashMap::new();
    for w in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        *counts.entry(w.to_lowercase()).or_insert(0usize) += 1;
    }
    counts.into_values().max().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn frequency_and_presence_penalties_cut_repetition_deterministically() {
    let e = engine();
    let q = "List twenty fruits, one per line.";
    let (plain, _) = run(&e, chat(q, greedy(64))).await;
    let penalised = |frequency, presence| SamplingParams {
        frequency_penalty: Some(frequency),
        presence_penalty: Some(presence),
        ..greedy(64)
    };
    let (freq, _) = run(&e, chat(q, penalised(2.0, 0.0))).await;
    let (pres, _) = run(&e, chat(q, penalised(0.0, 2.0))).await;
    let (again, _) = run(&e, chat(q, penalised(2.0, 0.0))).await;
    assert_eq!(freq, again, "greedy with a penalty is still deterministic");
    assert_ne!(freq, plain, "the frequency penalty changed the answer");
    assert_ne!(pres, plain, "the presence penalty changed the answer");
    // Greedy, this model lists "Apples, Bananas, Apples," over and over.
    for penalised in [&freq, &pres] {
        assert!(
            most_repeated(penalised) < most_repeated(&plain),
            "fewer repeats: {penalised:?} vs {plain:?}"
        );
    }
}
