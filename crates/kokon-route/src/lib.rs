//! Routing decisions, with no I/O: which worker gets a job.
//!
//! The proxy keeps one [`Router`]. A pick reserves a slot on the chosen
//! worker; the proxy calls [`Router::release`] when the job ends. Among
//! workers that serve the model, have free capacity, and cost at most the
//! client's cap, the least loaded wins (active / max jobs), then the cheaper,
//! then the one that has served fewer jobs (spreads equal workers).

use std::collections::{BTreeMap, BTreeSet};

/// Model names remembered as served before (bounded: names come from
/// attested workers' announcements, but a proxy should not grow forever).
pub const MAX_SEEN_MODELS: usize = 4096;

/// A worker's identity within one proxy process.
pub type WorkerId = u64;

/// Why no worker could take a job.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum RouteError {
    #[error("no attested worker serves this model")]
    NoWorkerForModel,
    #[error(
        "no worker serves this model right now (workers served it before and may be re-linking)"
    )]
    NoWorkerNow,
    #[error("every worker serving this model is at capacity")]
    AllBusy,
    #[error("no worker serves this model at or below the requested price")]
    OverPrice,
    #[error("none of the workers this job is sealed to is linked here now")]
    NoCandidate,
}

#[derive(Clone, Debug)]
struct Entry {
    models: Vec<String>,
    max_jobs: u32,
    active: u32,
    price_milli: u32,
    served: u64,
}

/// The proxy's view of its workers.
#[derive(Default, Debug)]
pub struct Router {
    workers: BTreeMap<WorkerId, Entry>,
    seen: BTreeSet<String>,
}

impl Router {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a worker.
    pub fn add(&mut self, id: WorkerId, models: Vec<String>, max_jobs: u32, price_milli: u32) {
        for m in &models {
            if self.seen.len() < MAX_SEEN_MODELS {
                self.seen.insert(m.clone());
            }
        }
        let e = Entry {
            models,
            max_jobs: max_jobs.max(1),
            active: 0,
            price_milli,
            served: 0,
        };
        self.workers.insert(id, e);
    }

    /// Forgets a worker (its link went away). Its active jobs end with it.
    pub fn remove(&mut self, id: WorkerId) {
        self.workers.remove(&id);
    }

    /// Picks and reserves a worker for `model`, skipping `exclude` (workers
    /// already tried for this job).
    pub fn pick(
        &mut self,
        model: &str,
        max_price: Option<u32>,
        exclude: &[WorkerId],
    ) -> Result<WorkerId, RouteError> {
        self.pick_where(model, max_price, |id| !exclude.contains(&id))
    }

    /// [`Router::pick`] among `among` only (the workers a sealed job can
    /// go to): [`RouteError::NoCandidate`] when none of them serves it.
    pub fn pick_among(
        &mut self,
        model: &str,
        max_price: Option<u32>,
        exclude: &[WorkerId],
        among: &[WorkerId],
    ) -> Result<WorkerId, RouteError> {
        let allowed = |id| among.contains(&id) && !exclude.contains(&id);
        let serves =
            |(id, e): (&WorkerId, &Entry)| allowed(*id) && e.models.iter().any(|m| m == model);
        if !self.workers.iter().any(serves) {
            return Err(RouteError::NoCandidate);
        }
        self.pick_where(model, max_price, allowed)
    }

    fn pick_where(
        &mut self,
        model: &str,
        max_price: Option<u32>,
        allowed: impl Fn(WorkerId) -> bool,
    ) -> Result<WorkerId, RouteError> {
        if let Some(e) = self.unavailable_where(model, max_price, &allowed) {
            return Err(e);
        }
        let affordable = |e: &Entry| max_price.is_none_or(|cap| e.price_milli <= cap);
        let serving = || {
            self.workers
                .iter()
                .filter(|(id, e)| allowed(**id) && e.models.iter().any(|m| m == model))
        };
        let best = serving()
            .filter(|(_, e)| affordable(e) && e.active < e.max_jobs)
            .min_by(|(_, a), (_, b)| {
                let load = (u64::from(a.active) * u64::from(b.max_jobs))
                    .cmp(&(u64::from(b.active) * u64::from(a.max_jobs)));
                load.then(a.price_milli.cmp(&b.price_milli))
                    .then(a.served.cmp(&b.served))
            })
            .map(|(id, _)| *id)
            .ok_or(RouteError::AllBusy)?;
        if let Some(e) = self.workers.get_mut(&best) {
            e.active += 1;
            e.served += 1;
        }
        Ok(best)
    }

    /// Why no job for `model` within `max_price` could be routed now, short
    /// of every worker being busy: [`RouteError::NoWorkerForModel`],
    /// [`RouteError::NoWorkerNow`] or [`RouteError::OverPrice`]. `None`
    /// when some worker serves it within the cap.
    pub fn unavailable(&self, model: &str, max_price: Option<u32>) -> Option<RouteError> {
        self.unavailable_where(model, max_price, &|_| true)
    }

    fn unavailable_where(
        &self,
        model: &str,
        max_price: Option<u32>,
        allowed: &impl Fn(WorkerId) -> bool,
    ) -> Option<RouteError> {
        let mut serving = self
            .workers
            .iter()
            .filter(|(id, e)| allowed(**id) && e.models.iter().any(|m| m == model))
            .peekable();
        if serving.peek().is_none() {
            let linked = self
                .workers
                .values()
                .any(|e| e.models.iter().any(|m| m == model));
            return Some(if linked || self.seen.contains(model) {
                // Tried them all, or they left a moment ago.
                RouteError::NoWorkerNow
            } else {
                RouteError::NoWorkerForModel
            });
        }
        let affordable = |e: &Entry| max_price.is_none_or(|cap| e.price_milli <= cap);
        (!serving.any(|(_, e)| affordable(e))).then_some(RouteError::OverPrice)
    }

    /// Frees the slot a [`Router::pick`] reserved.
    pub fn release(&mut self, id: WorkerId) {
        if let Some(e) = self.workers.get_mut(&id) {
            e.active = e.active.saturating_sub(1);
        }
    }

    /// Active jobs on a worker (for metrics and tests).
    pub fn active(&self, id: WorkerId) -> Option<u32> {
        self.workers.get(&id).map(|e| e.active)
    }

    /// Whether any worker ever announced `model` to this router.
    pub fn has_served(&self, model: &str) -> bool {
        self.seen.contains(model)
    }

    pub fn len(&self) -> usize {
        self.workers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(s: &str) -> Vec<String> {
        vec![s.to_string()]
    }

    #[test]
    fn routes_by_model_and_price() {
        let mut r = Router::new();
        r.add(1, m("a"), 2, 1000);
        r.add(2, m("b"), 2, 3000);
        assert_eq!(r.pick("a", None, &[]), Ok(1));
        assert_eq!(r.pick("b", None, &[]), Ok(2));
        assert_eq!(r.pick("c", None, &[]), Err(RouteError::NoWorkerForModel));
        assert_eq!(r.pick("b", Some(2000), &[]), Err(RouteError::OverPrice));
    }

    #[test]
    fn spreads_load_and_reports_busy() {
        let mut r = Router::new();
        for id in 1..=3 {
            r.add(id, m("a"), 1, 1000);
        }
        let mut picked: Vec<_> = (0..3).map(|_| r.pick("a", None, &[]).unwrap()).collect();
        picked.sort();
        assert_eq!(picked, vec![1, 2, 3]);
        assert_eq!(r.pick("a", None, &[]), Err(RouteError::AllBusy));
        r.release(2);
        assert_eq!(r.pick("a", None, &[]), Ok(2));
    }

    #[test]
    fn skips_excluded_workers() {
        let mut r = Router::new();
        r.add(1, m("a"), 4, 1000);
        r.add(2, m("a"), 4, 1000);
        let first = r.pick("a", None, &[]).unwrap();
        let second = r.pick("a", None, &[first]).unwrap();
        assert_ne!(first, second);
        assert_eq!(r.pick("a", None, &[1, 2]), Err(RouteError::NoWorkerNow));
    }

    #[test]
    fn a_sealed_job_goes_to_one_of_its_candidates_or_nowhere() {
        let mut r = Router::new();
        for id in 1..=3 {
            r.add(id, m("a"), 1, 1000);
        }
        assert_eq!(
            r.pick_among("a", None, &[], &[3]),
            Ok(3),
            "the only candidate"
        );
        assert_eq!(r.pick_among("a", None, &[], &[3]), Err(RouteError::AllBusy));
        assert_eq!(
            r.pick_among("a", None, &[2], &[2]),
            Err(RouteError::NoCandidate)
        );
        assert_eq!(
            r.pick_among("a", None, &[], &[7]),
            Err(RouteError::NoCandidate)
        );
        assert_eq!(
            r.pick_among("b", None, &[], &[1]),
            Err(RouteError::NoCandidate)
        );
    }

    #[test]
    fn a_model_served_before_is_not_unknown_while_its_workers_relink() {
        let mut r = Router::new();
        r.add(1, m("a"), 4, 1000);
        r.remove(1);
        assert_eq!(r.pick("a", None, &[]), Err(RouteError::NoWorkerNow));
        assert!(r.has_served("a"));
        assert_eq!(r.pick("z", None, &[]), Err(RouteError::NoWorkerForModel));
    }

    #[test]
    fn remembered_names_are_bounded() {
        let mut r = Router::new();
        for i in 0..(MAX_SEEN_MODELS as u64 + 10) {
            r.add(i, vec![format!("m{i}")], 1, 1000);
        }
        assert_eq!(r.seen.len(), MAX_SEEN_MODELS);
    }

    proptest! {
        /// Whatever the sequence of picks and releases, no worker ever runs
        /// more than its capacity and nothing is picked while all are full.
        #[test]
        fn never_exceeds_capacity(ops in proptest::collection::vec((any::<bool>(), 0u64..4), 1..200)) {
            let mut r = Router::new();
            for id in 0..4 { r.add(id, m("a"), (id as u32) + 1, 1000); }
            let mut held: Vec<WorkerId> = Vec::new();
            for (pick, which) in ops {
                if pick {
                    match r.pick("a", None, &[]) {
                        Ok(id) => held.push(id),
                        Err(e) => {
                            prop_assert_eq!(e, RouteError::AllBusy);
                            prop_assert_eq!(held.len(), 1 + 2 + 3 + 4);
                        }
                    }
                } else if let Some(pos) = held.iter().position(|h| *h == which) {
                    r.release(held.remove(pos));
                }
                for id in 0..4 {
                    let n = held.iter().filter(|h| **h == id).count() as u32;
                    prop_assert_eq!(r.active(id), Some(n));
                    prop_assert!(n <= id as u32 + 1);
                }
            }
        }
    }
}
