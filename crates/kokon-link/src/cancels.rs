//! The jobs running on one side of a link, by request id, so the peer can
//! cancel one by name (`POST cancel`) without resetting its stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio_util::sync::CancellationToken;

/// Running jobs by request id. Bounded by its owner: one entry per job
/// stream, and a link carries at most `max_streams` of those.
#[derive(Debug, Default)]
pub struct Cancels(Mutex<HashMap<String, CancellationToken>>);

/// A job's entry in [`Cancels`], removed when dropped.
#[derive(Debug)]
pub struct Cancellable {
    cancels: Arc<Cancels>,
    id: String,
    token: CancellationToken,
}

impl Cancels {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, CancellationToken>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a job; `None` if one with this id runs already.
    pub fn start(self: &Arc<Self>, id: &str) -> Option<Cancellable> {
        let token = CancellationToken::new();
        let mut jobs = self.lock();
        if jobs.contains_key(id) {
            return None;
        }
        jobs.insert(id.to_string(), token.clone());
        Some(Cancellable {
            cancels: self.clone(),
            id: id.to_string(),
            token,
        })
    }

    /// Cancels the running job `id`; false if none runs.
    pub fn cancel(&self, id: &str) -> bool {
        self.lock().get(id).map(|t| t.cancel()).is_some()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Cancellable {
    /// Cancelled when the peer cancels the job.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }
}

impl Drop for Cancellable {
    fn drop(&mut self) {
        self.cancels.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_is_cancelled_by_its_id_and_forgotten_when_it_ends() {
        let c = Arc::new(Cancels::default());
        let job = c.start("a").unwrap();
        assert!(c.start("a").is_none(), "one job per id");
        assert!(!c.cancel("b"));
        assert!(c.cancel("a"));
        assert!(job.token().is_cancelled());
        drop(job);
        assert!(c.is_empty());
        assert!(!c.cancel("a"), "an ended job cannot be cancelled");
    }
}
