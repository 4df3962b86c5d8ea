//! The worker daemon: dials its proxy over RA-TLS (NAT-friendly), then serves
//! jobs over HTTP/2 on that same connection, running them on its engine.
//!
//! The link is kept alive with HTTP/2 pings and re-dialed with exponential
//! backoff and jitter when it drops.

mod job;
mod link;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kokon_engine::Engine;
use kokon_tls::RaTls;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use link::run;

/// Worker settings (see `kokon worker --help` for the documented defaults).
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The proxy to dial.
    pub proxy: SocketAddr,
    /// Jobs run at once; more are refused with `busy`.
    pub max_jobs: u32,
    /// Price coefficient in thousandths of the registry's base price.
    pub price_milli: u32,
    /// First and longest pause between reconnection attempts.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl WorkerConfig {
    pub fn new(proxy: SocketAddr) -> Self {
        Self {
            proxy,
            max_jobs: 4,
            price_milli: 1000,
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// Counters a worker keeps (exported to tests and metrics).
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub jobs_started: AtomicU64,
    pub jobs_completed: AtomicU64,
    pub jobs_failed: AtomicU64,
    pub jobs_cancelled: AtomicU64,
    pub jobs_refused_busy: AtomicU64,
    pub links_established: AtomicU64,
}

impl WorkerStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Everything a worker needs; cheap to clone.
#[derive(Clone)]
pub struct Worker {
    pub(crate) cfg: Arc<WorkerConfig>,
    pub(crate) engine: Arc<dyn Engine>,
    pub(crate) tls: RaTls,
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) stats: Arc<WorkerStats>,
}

impl Worker {
    pub fn new(cfg: WorkerConfig, engine: Arc<dyn Engine>, tls: RaTls) -> Self {
        let slots = Arc::new(Semaphore::new(cfg.max_jobs as usize));
        Self {
            cfg: Arc::new(cfg),
            engine,
            tls,
            slots,
            stats: Arc::default(),
        }
    }

    pub fn stats(&self) -> Arc<WorkerStats> {
        self.stats.clone()
    }

    /// Runs until `shutdown` is cancelled.
    pub async fn serve(self, shutdown: CancellationToken) {
        run(self, shutdown).await
    }
}
