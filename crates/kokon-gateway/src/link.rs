//! The gateway's RA-TLS link to its proxy, re-dialed on demand.
//!
//! Requests never queue behind a dial: one dial runs at a time in its own
//! task, requests wait for it at most `dial_wait`, and after a failed dial
//! requests fail at once (503) until `redial_after` has passed. A proxy
//! that stops answering on a live link is found by HTTP/2 pings, and every
//! call waits at most `answer_timeout` for the proxy's response headers.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kokon_attest::Role;
use kokon_link::{FrameStream, LinkClient, LinkLimits};
use kokon_proto::{ErrorCode, JobError, JobHeader, ModelsReply};
use kokon_tls::{LinkError, RaTls};
use tokio::sync::watch;

/// Timing of the proxy link.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct LinkTiming {
    /// Longest dial (TCP + RA-TLS handshake + HTTP/2).
    pub dial_timeout: Duration,
    /// Longest a request waits for a dial in progress.
    pub dial_wait: Duration,
    /// After a failed dial, requests fail at once for this long.
    pub redial_after: Duration,
    /// Longest wait for the proxy's response headers to a call.
    pub answer_timeout: Duration,
    /// HTTP/2 limits of the link.
    pub limits: LinkLimits,
}

impl Default for LinkTiming {
    fn default() -> Self {
        Self {
            dial_timeout: Duration::from_secs(5),
            dial_wait: Duration::from_secs(3),
            redial_after: Duration::from_secs(1),
            answer_timeout: Duration::from_secs(5),
            limits: LinkLimits {
                keep_alive_interval: Duration::from_secs(2),
                keep_alive_timeout: Duration::from_secs(3),
                keep_alive_while_idle: true,
                ..LinkLimits::CLIENT
            },
        }
    }
}

#[derive(Clone)]
enum Dial {
    Idle,
    Running(watch::Receiver<Option<Result<LinkClient, JobError>>>),
    Failed { at: Instant, error: JobError },
}

struct Inner {
    /// The proxy's link address (unused when calls go through a relay).
    addr: SocketAddr,
    /// Calls made through an Oblivious HTTP relay instead of a link.
    relay: Option<LinkClient>,
    tls: RaTls,
    timing: LinkTiming,
    current: Mutex<(Option<LinkClient>, Dial)>,
}

/// A shared HTTP/2 connection to the proxy. Requests multiplex over it; when
/// it breaks, the next request dials again.
#[derive(Clone)]
pub struct ProxyLink {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ProxyLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyLink")
            .field("addr", &self.inner.addr)
            .field("relayed", &self.inner.relay.is_some())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ProxyLink {
    pub fn new(addr: SocketAddr, tls: RaTls) -> Self {
        Self::with_timing(addr, tls, LinkTiming::default())
    }

    pub fn with_timing(addr: SocketAddr, tls: RaTls, timing: LinkTiming) -> Self {
        Self {
            inner: Arc::new(Inner {
                addr,
                relay: None,
                tls,
                timing,
                current: Mutex::new((None, Dial::Idle)),
            }),
        }
    }

    /// Calls go to the proxy's Oblivious HTTP gateway through the relay at
    /// `relay` (its URL for the gateway, `…/gateways/NAME`), never over a
    /// link: the relay learns this client's address and nothing else, the
    /// proxy learns the calls and not who makes them. The gateway's keys are
    /// used only if its certificate verifies as a proxy under this node's
    /// registry policy, it signed them, and `registry` publishes them.
    pub fn relayed(
        relay: &str,
        tls: RaTls,
        timing: LinkTiming,
        registry: crate::Registry,
    ) -> Result<Self, JobError> {
        let policy_of = tls.clone();
        let verify: crate::relay::VerifyKeys =
            Arc::new(move |doc| crate::candidates::verify_gateway_keys(doc, &policy_of.policy()));
        let client = LinkClient::with_transport(Arc::new(crate::relay::Oblivious::new(
            relay, verify, registry,
        )?));
        Ok(Self {
            inner: Arc::new(Inner {
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                relay: Some(client),
                tls,
                timing,
                current: Mutex::new((None, Dial::Idle)),
            }),
        })
    }

    /// The live link, or the result of a dial (started here or already
    /// running), waited for at most `dial_wait`.
    async fn client(&self) -> Result<LinkClient, JobError> {
        if let Some(relay) = &self.inner.relay {
            return Ok(relay.clone());
        }
        let mut rx = {
            let mut cur = lock(&self.inner.current);
            if let Some(c) = cur.0.as_ref().filter(|c| c.is_open()) {
                return Ok(c.clone());
            }
            match &cur.1 {
                Dial::Running(rx) => rx.clone(),
                Dial::Failed { at, error } if at.elapsed() < self.inner.timing.redial_after => {
                    return Err(error.clone());
                }
                _ => {
                    let (tx, rx) = watch::channel(None);
                    cur.1 = Dial::Running(rx.clone());
                    tokio::spawn(self.clone().dial_task(tx));
                    rx
                }
            }
        };
        let waited =
            tokio::time::timeout(self.inner.timing.dial_wait, rx.wait_for(|r| r.is_some())).await;
        match waited {
            Ok(Ok(r)) => r.clone().unwrap_or_else(|| Err(no_link("dial ended"))),
            Ok(Err(_)) => Err(no_link("dial ended")),
            Err(_) => Err(no_link("the proxy did not complete a handshake in time")),
        }
    }

    async fn dial_task(self, tx: watch::Sender<Option<Result<LinkClient, JobError>>>) {
        let t = self.inner.timing;
        let r = match tokio::time::timeout(t.dial_timeout, self.dial()).await {
            Ok(r) => r,
            Err(_) => Err(no_link(format!(
                "no handshake with {} within {} s",
                self.inner.addr,
                t.dial_timeout.as_secs()
            ))),
        };
        {
            let mut cur = lock(&self.inner.current);
            match &r {
                Ok(c) => *cur = (Some(c.clone()), Dial::Idle),
                Err(e) => {
                    tracing::warn!(proxy = %self.inner.addr, error = %e.message, "cannot link to proxy");
                    cur.1 = Dial::Failed {
                        at: Instant::now(),
                        error: e.clone(),
                    };
                }
            }
        }
        let _ = tx.send(Some(r));
    }

    async fn dial(&self) -> Result<LinkClient, JobError> {
        let addr = self.inner.addr;
        let (tls, peer) = self
            .inner
            .tls
            .connect(addr, &[Role::Proxy])
            .await
            .map_err(|e| {
                let code = match e {
                    LinkError::Incompatible { .. } => ErrorCode::Incompatible,
                    _ => ErrorCode::Unavailable,
                };
                JobError::new(code, format!("no link to the Kokon proxy: {e}"))
            })?;
        tracing::info!(proxy = %addr, peer = peer.short_id(), "linked to proxy");
        // A revoked proxy's link fails its I/O (see `kokon_tls::Watched`).
        let revocation = tls.revocation();
        let (client, conn) = kokon_link::dial(tls, self.inner.timing.limits)
            .await
            .map_err(|e| no_link(format!("HTTP/2 handshake with {addr} failed: {e}")))?;
        tokio::spawn(async move {
            let _ = conn.await;
            if let Some(why) = revocation.get() {
                tracing::warn!(proxy = %addr, reason = why.reason(),
                    "link to the proxy dropped: the registry no longer allows it");
            }
        });
        Ok(client)
    }

    /// Runs one call on the link, waiting at most `answer_timeout` for it.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, JobError>
    where
        F: FnOnce(LinkClient) -> Fut,
        Fut: std::future::Future<Output = Result<T, JobError>>,
    {
        self.call_within(self.inner.timing.answer_timeout, f).await
    }

    async fn call_within<T, F, Fut>(&self, wait: Duration, f: F) -> Result<T, JobError>
    where
        F: FnOnce(LinkClient) -> Fut,
        Fut: std::future::Future<Output = Result<T, JobError>>,
    {
        let client = self.client().await?;
        tokio::time::timeout(wait, f(client))
            .await
            .unwrap_or_else(|_| Err(no_link("the proxy did not answer in time")))
    }

    /// Sends a job; returns the response's frame stream, and the link it
    /// runs on (where it can be cancelled).
    pub async fn submit(
        &self,
        header: &JobHeader,
        payload: Bytes,
    ) -> Result<(FrameStream, LinkClient), JobError> {
        self.call(|c| async move { Ok((c.job(header, payload).await?, c)) })
            .await
    }

    /// Tells the proxy this client refuses a receipt it billed.
    pub async fn dispute(&self, req: &kokon_proto::DisputeRequest) -> Result<(), JobError> {
        self.call(|c| async move { c.dispute(req).await }).await
    }

    /// Asks the proxy for the channel's billed jobs.
    pub async fn reconcile(
        &self,
        req: &kokon_proto::ReconcileRequest,
    ) -> Result<kokon_proto::ReconcileReply, JobError> {
        self.call(|c| async move { c.reconcile(req).await }).await
    }

    /// Cancels a job on the link it was sent on.
    pub async fn cancel(
        &self,
        on: &LinkClient,
        req: &kokon_proto::CancelRequest,
    ) -> Result<(), JobError> {
        tokio::time::timeout(self.inner.timing.answer_timeout, on.cancel(req))
            .await
            .unwrap_or_else(|_| Err(no_link("the proxy did not answer in time")))
    }

    /// The proxy's credit keys.
    pub async fn credit_keys(&self) -> Result<kokon_proto::credit::KeysReply, JobError> {
        self.call(|c| async move { c.credit_keys().await }).await
    }

    /// Buys credit tokens on the channel.
    pub async fn credit_buy(
        &self,
        req: &kokon_proto::credit::SaleRequest,
    ) -> Result<kokon_proto::credit::SaleReply, JobError> {
        self.call(|c| async move { c.credit_buy(req).await }).await
    }

    /// Claims a credit-paid job's change.
    pub async fn credit_change(
        &self,
        req: &kokon_proto::credit::ChangeRequest,
    ) -> Result<kokon_proto::credit::ChangeReply, JobError> {
        self.call(|c| async move { c.credit_change(req).await })
            .await
    }

    /// Sends a channel voucher to the proxy.
    pub async fn send_voucher(
        &self,
        v: &kokon_money::Signed<kokon_money::ChannelVoucher>,
    ) -> Result<(), JobError> {
        self.call(|c| async move { c.voucher(v).await }).await
    }

    /// Asks the proxy to close the channel cooperatively.
    pub async fn close_channel(
        &self,
        req: &kokon_proto::CloseRequest,
    ) -> Result<kokon_proto::CloseReply, JobError> {
        // The proxy settles on its ledger first: on a chain, seconds.
        self.call_within(CLOSE_TIMEOUT, |c| async move { c.close(req).await })
            .await
    }

    /// The proxy's candidate workers for a model (certificates, unverified).
    pub async fn candidates(
        &self,
        req: &kokon_proto::CandidatesRequest,
    ) -> Result<kokon_proto::CandidatesReply, JobError> {
        self.call(|c| async move { c.candidates(req).await }).await
    }

    /// The registry policy this gateway verifies peers (and candidates) by
    /// now.
    pub fn policy(&self) -> Arc<kokon_attest::Policy> {
        self.inner.tls.policy()
    }

    /// Models served by attested workers behind the proxy.
    pub async fn models(&self) -> Result<ModelsReply, JobError> {
        self.call(|c| async move { c.models().await }).await
    }
}

/// Longest wait for a cooperative close (the proxy claims on chain first).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(180);

fn no_link(msg: impl Into<String>) -> JobError {
    JobError::new(ErrorCode::Unavailable, msg)
}
