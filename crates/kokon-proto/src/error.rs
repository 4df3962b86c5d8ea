//! Typed job errors that travel in [`crate::Frame::Error`].

use serde::{Deserialize, Serialize};

/// Why a job failed. Each code says who failed and whether a retry is safe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No worker serves the requested model.
    ModelNotFound,
    /// Every worker serving the model is at capacity. Retry later.
    Busy,
    /// No worker serves the model at or below the client's maximum price.
    OverPrice,
    /// The worker failed before producing output (the proxy retries elsewhere).
    WorkerUnavailable,
    /// The worker failed after output started; only delivered output counts.
    WorkerFailedMidStream,
    /// The engine rejected or failed the job (bad parameters, context too long…).
    EngineFailed,
    /// The job request could not be understood by the worker.
    BadRequest,
    /// The job was cancelled by the requester.
    Cancelled,
    /// The peer speaks another protocol version.
    Incompatible,
    /// The proxy has no link to the network right now.
    Unavailable,
    /// The client's channel cannot cover the job: no deposit, out of
    /// credit, or closing. Top up and retry.
    PaymentRequired,
    /// The worker's receipt did not verify; the job is not billed.
    ReceiptRejected,
    /// The request id was already used on this channel: the job was
    /// refused before it reached a worker, and nothing was charged.
    DuplicateRequest,
    /// The prompt is longer than the budget the client signed: refused
    /// before any work, nothing was charged.
    OverBudget,
    /// None of the workers a sealed job is sealed to can take it (they
    /// left, or rotated their keys): fetch fresh candidates and seal again.
    /// Nothing ran, nothing was charged.
    StaleCandidates,
}

impl ErrorCode {
    /// True when the proxy may safely send the same job to another worker
    /// (nothing was delivered and the failure is the worker's).
    pub fn retry_elsewhere(self) -> bool {
        matches!(
            self,
            ErrorCode::WorkerUnavailable | ErrorCode::Busy | ErrorCode::StaleCandidates
        )
    }

    /// Stable snake_case name, used in metrics labels and OpenAI error codes.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ModelNotFound => "model_not_found",
            ErrorCode::Busy => "busy",
            ErrorCode::OverPrice => "over_price",
            ErrorCode::WorkerUnavailable => "worker_unavailable",
            ErrorCode::WorkerFailedMidStream => "worker_failed_mid_stream",
            ErrorCode::EngineFailed => "engine_failed",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::Incompatible => "incompatible",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::PaymentRequired => "payment_required",
            ErrorCode::ReceiptRejected => "receipt_rejected",
            ErrorCode::DuplicateRequest => "duplicate_request",
            ErrorCode::OverBudget => "over_budget",
            ErrorCode::StaleCandidates => "stale_candidates",
        }
    }
}

/// A typed job error with a human-readable message. The message never
/// contains job content: it is written by Kokon code, not echoed input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobError {
    pub code: ErrorCode,
    pub message: String,
}

impl JobError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for JobError {}
