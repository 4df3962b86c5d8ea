//! Prometheus metrics. Labels are allow-listed: a model name is a label
//! only once an attested worker announced it (any other name a client sends
//! counts as `other`), outcomes are fixed codes, never content.

use std::collections::HashSet;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    model: String,
    outcome: String,
}

/// The proxy's metrics.
pub struct Metrics {
    registry: Registry,
    jobs: Family<JobLabels, Counter>,
    candidate_lists: Family<JobLabels, Counter>,
    retries: Counter,
    workers: Gauge,
    refused: Family<RefusalLabels, Counter>,
    revoked: Family<RefusalLabels, Counter>,
    ohttp: Family<RefusalLabels, Counter>,
    /// Model names allowed as label values (announced by attested workers).
    models: Mutex<HashSet<String>>,
}

/// Model names kept as label values at most (beyond: `other`).
const MAX_MODEL_LABELS: usize = 256;

/// The label of every model name not announced by a worker.
pub const OTHER_MODEL: &str = "other";

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let jobs = Family::<JobLabels, Counter>::default();
        let candidate_lists = Family::<JobLabels, Counter>::default();
        let (retries, workers) = (Counter::default(), Gauge::default());
        let refused = Family::<RefusalLabels, Counter>::default();
        let revoked = Family::<RefusalLabels, Counter>::default();
        let ohttp = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "kokon_proxy_ohttp_requests",
            "Oblivious HTTP requests at the gateway, by outcome (whole, chunked, or why refused)",
            ohttp.clone(),
        );
        registry.register(
            "kokon_proxy_jobs",
            "Jobs finished, by model and outcome",
            jobs.clone(),
        );
        registry.register(
            "kokon_proxy_candidate_lists",
            "Candidate lists asked for (to seal jobs to), by model and outcome",
            candidate_lists.clone(),
        );
        registry.register(
            "kokon_proxy_retries",
            "Jobs re-sent to another worker before the first byte",
            retries.clone(),
        );
        registry.register("kokon_proxy_workers", "Workers linked now", workers.clone());
        registry.register(
            "kokon_proxy_links_refused",
            "Links refused, by reason (attestation failures name the check)",
            refused.clone(),
        );
        registry.register(
            "kokon_proxy_links_revoked",
            "Live links dropped because the registry changed and no longer allows the peer, by reason",
            revoked.clone(),
        );
        Self {
            registry,
            jobs,
            candidate_lists,
            retries,
            workers,
            refused,
            revoked,
            ohttp,
            models: Mutex::new(HashSet::new()),
        }
    }

    /// Allows `names` (announced by an attested worker) as label values.
    pub(crate) fn know_models(&self, names: &[String]) {
        let mut known = crate::lock(&self.models);
        for n in names {
            if known.len() < MAX_MODEL_LABELS {
                known.insert(n.clone());
            }
        }
    }

    fn model_label(&self, model: &str) -> String {
        if crate::lock(&self.models).contains(model) {
            model.into()
        } else {
            OTHER_MODEL.into()
        }
    }

    pub(crate) fn job(&self, model: &str, outcome: &'static str) {
        self.jobs
            .get_or_create(&JobLabels {
                model: self.model_label(model),
                outcome: outcome.into(),
            })
            .inc();
    }

    pub(crate) fn candidate_list(&self, model: &str, outcome: &'static str) {
        self.candidate_lists
            .get_or_create(&JobLabels {
                model: self.model_label(model),
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Count of candidate lists asked for this model (label) with this outcome.
    pub fn candidate_lists(&self, model: &str, outcome: &str) -> u64 {
        self.candidate_lists
            .get_or_create(&JobLabels {
                model: self.model_label(model),
                outcome: outcome.into(),
            })
            .get()
    }

    pub(crate) fn retry(&self) {
        self.retries.inc();
    }

    pub(crate) fn set_workers(&self, n: usize) {
        self.workers.set(n as i64);
    }

    pub(crate) fn link_refused(&self, reason: &'static str) {
        self.refused.get_or_create(&RefusalLabels { reason }).inc();
    }

    pub(crate) fn link_revoked(&self, reason: &'static str) {
        self.revoked.get_or_create(&RefusalLabels { reason }).inc();
    }

    /// Live links dropped for `reason` (an `AttestError::reason`) after a
    /// registry change.
    pub fn links_revoked(&self, reason: &'static str) -> u64 {
        self.revoked.get_or_create(&RefusalLabels { reason }).get()
    }

    /// Count of jobs with this model (label) and outcome.
    pub fn jobs(&self, model: &str, outcome: &str) -> u64 {
        self.jobs
            .get_or_create(&JobLabels {
                model: self.model_label(model),
                outcome: outcome.into(),
            })
            .get()
    }

    /// Links refused for `reason` (an `AttestError::reason`, `incompatible` or `handshake`).
    pub fn links_refused(&self, reason: &'static str) -> u64 {
        self.refused.get_or_create(&RefusalLabels { reason }).get()
    }

    pub fn retries(&self) -> u64 {
        self.retries.get()
    }

    /// Counts an Oblivious HTTP request at the gateway in front of this
    /// proxy (`kokon-oblivious`), by outcome.
    pub fn ohttp_request(&self, reason: &'static str) {
        self.ohttp.get_or_create(&RefusalLabels { reason }).inc();
    }

    /// Oblivious HTTP requests with this outcome (`whole`, `chunked`, or an
    /// error kind).
    pub fn ohttp_requests(&self, reason: &'static str) -> u64 {
        self.ohttp.get_or_create(&RefusalLabels { reason }).get()
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
