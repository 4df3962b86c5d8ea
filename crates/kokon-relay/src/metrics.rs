//! The relay's Prometheus metrics: counts and bytes only, no label a client
//! chooses.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Direction {
    direction: &'static str,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<Outcome, Counter>,
    bytes: Family<Direction, Counter>,
    in_flight: Gauge,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<Outcome, Counter>::default();
        let bytes = Family::<Direction, Counter>::default();
        let in_flight = Gauge::default();
        registry.register(
            "kokon_relay_requests",
            "Requests, by outcome (forwarded, or why not)",
            requests.clone(),
        );
        registry.register(
            "kokon_relay_bytes",
            "Encapsulated bytes relayed, up (to gateways) and down (to clients)",
            bytes.clone(),
        );
        registry.register(
            "kokon_relay_in_flight",
            "Requests being relayed now",
            in_flight.clone(),
        );
        Self {
            registry,
            requests,
            bytes,
            in_flight,
        }
    }

    pub(crate) fn request(&self, outcome: &'static str) {
        self.requests.get_or_create(&Outcome { outcome }).inc();
    }

    /// Requests with this outcome so far.
    pub fn requests(&self, outcome: &'static str) -> u64 {
        self.requests.get_or_create(&Outcome { outcome }).get()
    }

    /// Bytes relayed so far towards the gateways (`"up"`) or the clients
    /// (`"down"`).
    pub fn bytes(&self, direction: &'static str) -> u64 {
        self.bytes.get_or_create(&Direction { direction }).get()
    }

    pub(crate) fn bytes_up(&self, n: usize) {
        self.bytes
            .get_or_create(&Direction { direction: "up" })
            .inc_by(n as u64);
    }

    pub(crate) fn bytes_down(&self, n: usize) {
        self.bytes
            .get_or_create(&Direction { direction: "down" })
            .inc_by(n as u64);
    }

    pub(crate) fn in_flight(&self, d: i64) {
        self.in_flight.inc_by(d);
    }

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
