//! Per-job events as aggregates. A log line per job (a request id, or just
//! its timestamp beside "job failed") links one client's jobs to each other
//! and to the traffic around them, so at the default level the daemons log
//! none: they count what happened to jobs and write one summary a minute at
//! most. Per-job lines are debug-level, which `kokon` announces loudly.
//!
//! [`Tally`] is the pure counter (the clock is an argument); [`JobEvents`]
//! is the shell a daemon holds, logging each summary at `warn`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a summary's window is at least.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// Most distinct event names counted per window; more count as `other`.
const MAX_KINDS: usize = 32;

/// Counts of events since the window opened.
#[derive(Debug, Default)]
pub struct Tally {
    opened: Option<Instant>,
    counts: BTreeMap<&'static str, u64>,
}

/// What a window saw: events by name, over how long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub secs: u64,
    pub counts: Vec<(&'static str, u64)>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total: u64 = self.counts.iter().map(|(_, n)| n).sum();
        write!(f, "{total} job events in the last {} s:", self.secs)?;
        for (i, (name, n)) in self.counts.iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            write!(f, "{sep}{name} {n}")?;
        }
        Ok(())
    }
}

impl Tally {
    /// Counts `event` at `now`. Once the window is [`SUMMARY_EVERY`] old,
    /// the event closes it: its summary (this event included) comes back and
    /// a new window opens.
    pub fn record(&mut self, event: &'static str, now: Instant) -> Option<Summary> {
        let opened = *self.opened.get_or_insert(now);
        let name = if self.counts.len() < MAX_KINDS || self.counts.contains_key(event) {
            event
        } else {
            "other"
        };
        *self.counts.entry(name).or_default() += 1;
        if now.saturating_duration_since(opened) < SUMMARY_EVERY {
            return None;
        }
        self.opened = None;
        let counts = std::mem::take(&mut self.counts).into_iter().collect();
        Some(Summary {
            secs: now.saturating_duration_since(opened).as_secs(),
            counts,
        })
    }
}

/// A daemon's per-job events: counted, summarised at `warn` once a window
/// closes, each one at `debug` only (with whatever the caller logs there).
#[derive(Debug, Default)]
pub struct JobEvents {
    tally: Mutex<Tally>,
}

impl JobEvents {
    /// Counts `event` (a stable snake_case name, never content or ids).
    pub fn note(&self, event: &'static str) {
        let summary = self
            .tally
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(event, Instant::now());
        if let Some(s) = summary {
            tracing::warn!("{s} (per job: debug level; exact counts: /metrics)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_closes_with_the_first_event_a_minute_after_it_opened() {
        let t0 = Instant::now();
        let mut t = Tally::default();
        assert_eq!(t.record("job_failed", t0), None);
        assert_eq!(
            t.record("receipt_not_billed", t0 + Duration::from_secs(30)),
            None
        );
        assert_eq!(t.record("job_failed", t0 + Duration::from_secs(59)), None);
        let s = t
            .record("job_failed", t0 + Duration::from_secs(75))
            .unwrap();
        assert_eq!(s.secs, 75);
        assert_eq!(s.counts, [("job_failed", 3), ("receipt_not_billed", 1)]);
        assert_eq!(
            s.to_string(),
            "4 job events in the last 75 s: job_failed 3, receipt_not_billed 1"
        );
        // The next window opens at the next event, not at the summary.
        let t1 = t0 + Duration::from_secs(500);
        assert_eq!(t.record("job_failed", t1), None);
        let s = t.record("job_failed", t1 + SUMMARY_EVERY).unwrap();
        assert_eq!(s.counts, [("job_failed", 2)]);
    }

    #[test]
    fn distinct_names_are_bounded() {
        let t0 = Instant::now();
        let mut t = Tally::default();
        let names: Vec<&'static str> = (0..40)
            .map(|i| &*Box::leak(format!("e{i}").into_boxed_str()))
            .collect();
        for n in &names {
            t.record(n, t0);
        }
        t.record("e0", t0);
        let s = t.record("late", t0 + SUMMARY_EVERY).unwrap();
        assert_eq!(s.counts.len(), MAX_KINDS + 1);
        assert!(s.counts.contains(&("other", 9)), "{s}");
        assert!(s.counts.contains(&("e0", 2)), "{s}");
    }
}
