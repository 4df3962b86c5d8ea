//! Running one job and streaming its frames back to the proxy.

use bytes::Bytes;
use http::Response;
use kokon_engine::EngineError;
use kokon_link::{Body, error_body, frames_body};
use kokon_proto::job::Chunk;
use kokon_proto::{ErrorCode, Frame, JobError, JobHeader, JobRequest};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{Worker, WorkerStats};

/// Frames buffered towards the proxy before the engine is paused.
const FRAME_BUFFER: usize = 16;

/// Accepts a job: validates it, takes a slot, and streams the response.
pub(crate) async fn accept(worker: Worker, header: JobHeader, payload: Bytes) -> Response<Body> {
    let job: JobRequest = match serde_json::from_slice(&payload) {
        Ok(j) => j,
        Err(e) => {
            return one_frame(JobError::new(
                ErrorCode::BadRequest,
                format!(
                    "job payload is not a valid job ({:?} error at line {}, column {})",
                    e.classify(),
                    e.line(),
                    e.column()
                ),
            ));
        }
    };
    if job.model != header.model {
        return one_frame(JobError::new(
            ErrorCode::BadRequest,
            "payload model differs from header model",
        ));
    }
    let mut job = job;
    if let Some(p) = &header.payment {
        // The engine never generates past what the client authorised.
        let cap = u32::try_from(p.max_completion_tokens).unwrap_or(u32::MAX);
        job.params.max_tokens = Some(job.params.max_tokens.map_or(cap, |m| m.min(cap)));
    } else if worker.pay.is_some() {
        return one_frame(JobError::new(
            ErrorCode::PaymentRequired,
            "this worker serves paid jobs only",
        ));
    }
    let Ok(permit) = worker.slots.clone().try_acquire_owned() else {
        WorkerStats::bump(&worker.stats.jobs_refused_busy);
        return one_frame(JobError::new(ErrorCode::Busy, "worker is at capacity"));
    };
    let (tx, rx) = mpsc::channel::<Bytes>(FRAME_BUFFER);
    tokio::spawn(async move {
        run(&worker, header, job, tx).await;
        drop(permit);
    });
    Response::new(frames_body(rx))
}

async fn run(worker: &Worker, header: JobHeader, job: JobRequest, tx: mpsc::Sender<Bytes>) {
    WorkerStats::bump(&worker.stats.jobs_started);
    let cancel = CancellationToken::new();
    let (text_tx, mut text_rx) = mpsc::channel::<String>(FRAME_BUFFER);
    let engine_run = tokio::spawn(worker.engine.run(job, text_tx, cancel.clone()));
    let mut client_gone = false;
    loop {
        tokio::select! {
            piece = text_rx.recv() => match piece {
                Some(text) => {
                    let chunk = serde_json::to_vec(&Chunk { text }).unwrap_or_default();
                    if tx.send(Frame::Data(Bytes::from(chunk)).encode()).await.is_err() {
                        client_gone = true;
                        break;
                    }
                }
                None => break,
            },
            _ = tx.closed() => { client_gone = true; break; }
        }
    }
    if client_gone {
        cancel.cancel();
        drop(text_rx);
    }
    let result = engine_run
        .await
        .unwrap_or_else(|e| Err(EngineError::Failed(e.to_string())));
    let frame = match result {
        _ if client_gone => {
            WorkerStats::bump(&worker.stats.jobs_cancelled);
            tracing::info!(request_id = %header.request_id, "job cancelled by the requester");
            return;
        }
        Ok(mut end) => {
            if let Some(pay) = &worker.pay
                && let Err(e) = crate::pay::attach_receipt(worker, pay, &header, &mut end).await
            {
                tracing::error!(request_id = %header.request_id, error = %e, "cannot sign the receipt");
                let _ = tx
                    .send(
                        Frame::Error(JobError::new(
                            ErrorCode::EngineFailed,
                            "worker could not sign its receipt",
                        ))
                        .encode(),
                    )
                    .await;
                return;
            }
            WorkerStats::bump(&worker.stats.jobs_completed);
            tracing::info!(request_id = %header.request_id, model = %header.model,
                prompt_tokens = end.usage.prompt_tokens, completion_tokens = end.usage.completion_tokens, "job done");
            Frame::End(end)
        }
        Err(e) => {
            WorkerStats::bump(&worker.stats.jobs_failed);
            tracing::warn!(request_id = %header.request_id, error = %e, "job failed");
            Frame::Error(e.to_job_error())
        }
    };
    let _ = tx.send(frame.encode()).await;
}

fn one_frame(err: JobError) -> Response<Body> {
    Response::new(error_body(err))
}
