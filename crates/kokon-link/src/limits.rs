//! Every limit of a link, with its default, in one place.
//!
//! Daemons take these from their typed config; nothing else in Kokon sets a
//! keep-alive, a stream cap or a body deadline.

use std::time::Duration;

use kokon_proto::MAX_JOB_PAYLOAD;

/// Limits of one HTTP/2 link (RA-TLS, between Kokon nodes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LinkLimits {
    /// Interval between HTTP/2 pings.
    pub keep_alive_interval: Duration,
    /// A ping unanswered for this long closes the link.
    pub keep_alive_timeout: Duration,
    /// Ping even while no stream is open (detects a dead peer before the
    /// next job is routed to it).
    pub keep_alive_while_idle: bool,
    /// Streams (jobs and calls) the peer may open at once on this link.
    pub max_streams: u32,
    /// Longest time allowed to receive a request body (a job payload, a
    /// voucher) once its headers arrived; a stalled body is ended then.
    pub body_deadline: Duration,
    /// Largest job payload accepted, in bytes.
    pub max_payload: usize,
}

/// Largest body of a small call (voucher, close request, announce).
pub const MAX_CALL_BODY: usize = 64 * 1024;

/// Largest models list accepted from a proxy.
pub const MAX_MODELS_REPLY: usize = 1 << 20;

/// Largest candidates reply a client reads: eight certificates of at most
/// 32 KiB each, hex-encoded.
pub const MAX_CANDIDATES_REPLY: usize = 8 * 2 * 32 * 1024 + 1024;

/// Largest reconcile reply a client reads, in bytes (the proxy keeps its
/// replies below it).
pub const MAX_RECONCILE_REPLY: usize = 1 << 20;

impl LinkLimits {
    /// A link the proxy holds to a worker: pinged every second, idle or not,
    /// so a dead worker leaves the router within about 3 s.
    pub const WORKER: LinkLimits = LinkLimits {
        keep_alive_interval: Duration::from_secs(1),
        keep_alive_timeout: Duration::from_secs(2),
        keep_alive_while_idle: true,
        max_streams: 256,
        body_deadline: Duration::from_secs(30),
        max_payload: MAX_JOB_PAYLOAD,
    };

    /// A link between a client gateway and its proxy.
    pub const CLIENT: LinkLimits = LinkLimits {
        keep_alive_interval: Duration::from_secs(5),
        keep_alive_timeout: Duration::from_secs(10),
        keep_alive_while_idle: false,
        max_streams: 1024,
        body_deadline: Duration::from_secs(30),
        max_payload: MAX_JOB_PAYLOAD,
    };

    /// These limits with at most `n` concurrent streams (near a peer's
    /// announced capacity).
    pub fn with_max_streams(self, n: u32) -> Self {
        Self {
            max_streams: n.max(1),
            ..self
        }
    }
}

/// Limits of a public HTTP server (the gateway's OpenAI API, admin ports).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PublicLimits {
    /// Time allowed to receive a request's headers (HTTP/1); a half-sent
    /// request is closed then.
    pub header_read_timeout: Duration,
    /// An HTTP/1 connection with no request for this long is closed; for
    /// HTTP/2 the ping timeout below.
    pub idle_timeout: Duration,
    /// Connections held at once; more are closed at accept.
    pub max_connections: usize,
    /// Streams per HTTP/2 connection.
    pub max_streams: u32,
    /// On shutdown, how long in-flight requests may take to finish.
    pub drain_grace: Duration,
}

impl Default for PublicLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            max_streams: 256,
            drain_grace: Duration::from_secs(30),
        }
    }
}
