//! Sealing a job end to end to verified candidate workers (the shell of
//! [`crate::candidates`]): the proxy relays ciphertext it cannot open.

use bytes::Bytes;
use kokon_attest::{Clock, SystemClock};
use kokon_proto::{CandidatesRequest, ErrorCode, JobError, JobHeader};
use kokon_seal::ClientJob;

use crate::AppState;
use crate::candidates::Verified;

/// A job sealed to its candidates, and what reads their answer.
pub(crate) struct Sealed {
    pub payload: Bytes,
    pub client: ClientJob,
}

/// Seals `plain` (the job) for `header` (whose budget and price cap it
/// binds) to the candidates the proxy offers for its model, each verified
/// here. `fresh`: ask the proxy again rather than reuse a recent list.
pub(crate) async fn seal(
    s: &AppState,
    header: &JobHeader,
    plain: &[u8],
    fresh: bool,
) -> Result<Sealed, JobError> {
    let req = CandidatesRequest {
        model: header.model.clone(),
        max_price_milli: header.max_price_milli,
    };
    let list: Vec<_> = verified(s, &req, fresh)
        .await?
        .into_iter()
        .map(|v| v.candidate)
        .collect();
    let (job, client) = kokon_seal::seal_job(&list, &header.binding(), plain)
        .map_err(|e| JobError::new(ErrorCode::Unavailable, format!("cannot seal the job: {e}")))?;
    Ok(Sealed {
        payload: Bytes::from(job.encode()),
        client,
    })
}

/// The workers the proxy offers for `req`, each verified here (a recent
/// list unless `fresh`).
pub(crate) async fn verified(
    s: &AppState,
    req: &CandidatesRequest,
    fresh: bool,
) -> Result<Vec<Verified>, JobError> {
    let now = SystemClock.now_unix();
    if fresh {
        s.candidates.forget(req);
    }
    let policy = s.link.policy();
    if let Some(list) = s.candidates.cached(req, &policy, now) {
        return Ok(list);
    }
    let reply = s.link.candidates(req).await?;
    let certs = reply.decode().map_err(|e| {
        JobError::new(
            ErrorCode::Unavailable,
            format!("the proxy's candidates are malformed: {e}"),
        )
    })?;
    s.candidates.judge(req, &certs, &policy, now)
}
