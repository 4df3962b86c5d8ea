//! Running one job and streaming its frames back to the proxy.

use std::time::Instant;

use bytes::Bytes;
use http::Response;
use kokon_engine::EngineError;
use kokon_link::{Body, error_body, frames_body};
use kokon_proto::{ErrorCode, Frame, JobError, JobHeader, JobRequest};
use kokon_seal::ResponseSealer;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::flow::{self, Action, FlowConfig, Outcome, WorkerFlow};
use crate::{Worker, WorkerStats};

/// Frames buffered towards the proxy before the engine is paused.
const FRAME_BUFFER: usize = 16;

/// Accepts a job: validates it, takes a slot, and streams the response.
pub(crate) async fn accept(worker: Worker, header: JobHeader, payload: Bytes) -> Response<Body> {
    let opened = match header.sealed {
        true => worker
            .keys
            .open(&header, &payload)
            .map(|(b, s)| (b, Some(s))),
        false => Ok((payload.to_vec(), None)),
    };
    let job = opened.and_then(|(body, sealer)| {
        flow::accept(&header, &body, worker.pay.is_some()).map(|job| (job, sealer))
    });
    let (job, sealer) = match job {
        Ok(job) => job,
        Err(e) => return one_frame(e),
    };
    let Ok(permit) = worker.slots.clone().try_acquire_owned() else {
        WorkerStats::bump(&worker.stats.jobs_refused_busy);
        return one_frame(JobError::new(ErrorCode::Busy, "worker is at capacity"));
    };
    let Some(stop) = worker.running.start(&header.request_id) else {
        return one_frame(JobError::new(
            ErrorCode::BadRequest,
            "a job with this request id is running here already",
        ));
    };
    let (tx, rx) = mpsc::channel::<Bytes>(FRAME_BUFFER);
    tokio::spawn(async move {
        run(&worker, header, (job, sealer), tx, stop.token()).await;
        drop(stop);
        drop(permit);
    });
    Response::new(frames_body(rx))
}

/// The shell of [`WorkerFlow`]: runs the engine, feeds the flow what
/// happens, and carries out what it asks.
async fn run(
    worker: &Worker,
    header: JobHeader,
    (job, sealer): (JobRequest, Option<ResponseSealer>),
    tx: mpsc::Sender<Bytes>,
    stop: CancellationToken,
) {
    WorkerStats::bump(&worker.stats.jobs_started);
    let cfg = FlowConfig {
        paid: worker.pay.is_some(),
        engine_idle_timeout: worker.cfg.engine_idle_timeout,
        receipt_every_tokens: worker.cfg.receipt_every_tokens,
        receipt_every: worker.cfg.receipt_every,
    };
    let mut flow = WorkerFlow::new(cfg, Instant::now(), sealer);
    let cancel = CancellationToken::new();
    let (text_tx, mut text_rx) = mpsc::channel::<kokon_engine::Piece>(FRAME_BUFFER);
    let mut engine = tokio::spawn(worker.engine.run(job, text_tx, cancel.clone()));
    let mut text_open = true;
    let mut engine_over = false;
    let mut cancel_asked = false;
    loop {
        while let Some(action) = flow.poll_action() {
            act(worker, &header, &mut flow, action, &tx, &cancel).await;
        }
        if flow.is_done() {
            // The slot stays taken until the engine has really stopped
            // (a cancelled prefill runs to its end): capacity is not freed
            // before the compute is.
            drop(text_rx);
            if !engine_over {
                let _ = engine.await;
            }
            return;
        }
        let deadline = flow.poll_timeout().map(tokio::time::Instant::from_std);
        tokio::select! {
            piece = text_rx.recv(), if text_open => match piece {
                Some(piece) => flow.text(piece.text, piece.usage, Instant::now()),
                None => text_open = false,
            },
            // The engine's result, once all its text is through.
            r = &mut engine, if !text_open && !engine_over => {
                engine_over = true;
                flow.engine_done(
                    r.unwrap_or_else(|e| Err(EngineError::Failed(e.to_string())))
                        .map_err(|e| e.to_job_error()),
                );
            }
            _ = stop.cancelled(), if !cancel_asked => {
                cancel_asked = true;
                flow.cancel_requested();
            }
            _ = tx.closed() => flow.requester_gone(),
            _ = sleep_until(deadline) => flow.handle_timeout(Instant::now()),
        }
    }
}

async fn act(
    worker: &Worker,
    header: &JobHeader,
    flow: &mut WorkerFlow,
    action: Action,
    tx: &mpsc::Sender<Bytes>,
    cancel: &CancellationToken,
) {
    match action {
        Action::Send(frame) => {
            if tx.send(frame.encode()).await.is_err() {
                flow.requester_gone();
            }
        }
        Action::Sign(mut end) => {
            let Some(pay) = &worker.pay else {
                return flow.signed(Err("this worker is not paid".into()));
            };
            let r = crate::pay::attach_receipt(worker, pay, header, &mut end).await;
            if let Err(e) = &r {
                worker.events.note("receipt_unsigned");
                tracing::debug!(request_id = %header.request_id, error = %e, "cannot sign the receipt");
            }
            flow.signed(r.map(|()| end));
        }
        Action::SendReceipt(usage) => {
            let Some(pay) = &worker.pay else { return };
            match crate::pay::sign_receipt(worker, pay, header, usage) {
                Ok(env) => {
                    if tx
                        .send(Frame::Receipt(Box::new(env)).encode())
                        .await
                        .is_err()
                    {
                        flow.requester_gone();
                    }
                }
                Err(e) => {
                    worker.events.note("receipt_unsigned");
                    tracing::debug!(request_id = %header.request_id, error = %e, "cannot sign a receipt")
                }
            }
        }
        Action::CancelEngine => cancel.cancel(),
        Action::Finish(outcome) => finished(worker, header, outcome),
    }
}

fn finished(worker: &Worker, header: &JobHeader, outcome: Outcome) {
    let stats = &worker.stats;
    let id = &header.request_id;
    match outcome {
        Outcome::Completed => {
            WorkerStats::bump(&stats.jobs_completed);
            tracing::debug!(request_id = %id, model = %header.model, "job done");
        }
        Outcome::Cancelled => {
            WorkerStats::bump(&stats.jobs_cancelled);
            tracing::debug!(request_id = %id, "job cancelled by the requester");
        }
        Outcome::Failed(code) => {
            WorkerStats::bump(&stats.jobs_failed);
            worker.events.note("job_failed");
            tracing::debug!(request_id = %id, code = code.as_str(), "job failed");
        }
        Outcome::ReceiptFailed => WorkerStats::bump(&stats.jobs_failed),
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn one_frame(err: JobError) -> Response<Body> {
    Response::new(error_body(err))
}
