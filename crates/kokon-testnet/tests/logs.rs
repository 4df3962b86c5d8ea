//! What the daemons log about jobs. Every daemon of a paid in-process
//! network (gateway, proxy, two workers, one of whose engines fails its
//! jobs) logs into one buffer at debug level; the test then reads it as an
//! operator would at the default level. One test per binary: the log
//! subscriber is process-wide.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use kokon_engine::{BoxFuture, Engine, EngineError, Output};
use kokon_proto::{EngineDecl, EngineKind, JobEnd, JobRequest, ModelOffer};
use kokon_testnet::pay::PaySpec;
use kokon_testnet::{LocalNet, NetSpec, WorkerSpec};
use tokio_util::sync::CancellationToken;

/// An engine that fails every job at once.
struct Failing;

impl Engine for Failing {
    fn models(&self) -> Vec<ModelOffer> {
        vec![ModelOffer {
            name: "fails".into(),
            context_len: 4096,
            hash: None,
        }]
    }

    fn declaration(&self) -> EngineDecl {
        EngineDecl::local(EngineKind::Echo)
    }

    fn run(
        &self,
        _job: JobRequest,
        _out: Output,
        _cancel: CancellationToken,
    ) -> BoxFuture<'static, Result<JobEnd, EngineError>> {
        Box::pin(async { Err(EngineError::Failed("the engine crashed".into())) })
    }
}

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_default_level_no_daemon_logs_a_line_per_job() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    tracing_subscriber::fmt()
        .with_env_filter(
            "kokon_worker=debug,kokon_proxy=debug,kokon_gateway=debug,kokon_link=debug,info",
        )
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let tmp = tempfile::tempdir().unwrap();
    let mut spec = NetSpec::new(vec![
        WorkerSpec::new(echo("echo", 0)),
        WorkerSpec::new(Arc::new(Failing)),
    ]);
    spec.payments = Some(PaySpec::dev(tmp.path().to_path_buf()));
    let net = LocalNet::start(spec).await.unwrap();
    let canary = "canary-3b9f0c51d2";
    for stream in [false, true] {
        let ok = chat(&net.base_url(), "echo", &format!("say {canary}"), stream).await;
        assert_eq!(ok.status(), 200);
        assert!(ok.text().await.unwrap().contains(canary));
        let failed = chat(&net.base_url(), "fails", &format!("say {canary}"), stream).await;
        let body = failed.text().await.unwrap();
        assert!(body.contains("engine_failed"), "{body}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(!text.contains(canary), "content reached a log:\n{text}");
    let level = |line: &str| {
        ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"]
            .into_iter()
            .find(|l| line.split_whitespace().nth(1) == Some(*l))
    };
    let per_job = |line: &str| line.contains("request_id");
    let shown: Vec<&str> = text
        .lines()
        .filter(|l| matches!(level(l), Some("ERROR" | "WARN" | "INFO")))
        .collect();
    assert!(!shown.is_empty(), "the daemons logged at info:\n{text}");
    let linked: Vec<&str> = shown.iter().copied().filter(|l| per_job(l)).collect();
    assert!(
        linked.is_empty(),
        "per-job lines at the default level: {linked:#?}"
    );
    // The control: at debug the same run does write per-job lines (the
    // failed jobs among them), so the scan above can see them.
    let debug: Vec<&str> = text.lines().filter(|l| level(l) == Some("DEBUG")).collect();
    assert!(
        debug.iter().any(|l| per_job(l) && l.contains("job failed")),
        "{text}"
    );
}
