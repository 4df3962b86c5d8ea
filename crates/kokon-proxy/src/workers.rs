//! Worker links: announce, register with the router, forget on disconnect.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kokon_attest::VerifiedPeer;
use kokon_link::LinkClient;
use kokon_money::{Signed, WorkerVoucher};
use kokon_proto::{Announce, ErrorCode, JobError, ModelOffer};
use kokon_route::WorkerId;
use tokio::sync::watch;

use crate::pay::Served;
use crate::{State, lock};

/// Time a worker has to answer the announce.
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(10);

/// A linked, attested worker.
pub(crate) struct WorkerLink {
    pub(crate) client: LinkClient,
    /// The worker's latest vault voucher, delivered by its own task.
    vouchers: watch::Sender<Option<Signed<WorkerVoucher>>>,
    pub(crate) models: Vec<ModelOffer>,
    pub(crate) price_milli: u32,
    pub(crate) payout: Option<kokon_money::PublicKey>,
    /// The certificate the worker linked with, if it carries an HPKE key:
    /// what clients verify and seal jobs to.
    pub(crate) sealing: Option<SealingCert>,
}

/// A worker's certificate as a candidate for sealed jobs.
#[derive(Clone)]
pub(crate) struct SealingCert {
    pub(crate) der: Arc<[u8]>,
    /// SHA-256 of the DER: how sealed jobs name the worker.
    pub(crate) id: [u8; 32],
}

/// The certificate `peer` linked with, if clients can seal jobs to it.
fn sealing_cert(tls: &kokon_tls::ServerLink, peer: &VerifiedPeer) -> Option<SealingCert> {
    peer.claims().hpke_key.as_ref()?;
    let der = tls.peer_certificate().to_vec();
    Some(SealingCert {
        id: kokon_attest::sha256(&der),
        der: der.into(),
    })
}

/// Runs a worker link until it closes (or this future is dropped, which
/// closes the connection: the link owns it).
pub(crate) async fn attach(state: Arc<State>, tls: kokon_tls::ServerLink, peer: VerifiedPeer) {
    let sealing = sealing_cert(&tls, &peer);
    let (client, conn) = match kokon_link::dial(tls, state.cfg.worker_link).await {
        Ok(x) => x,
        Err(e) => {
            return tracing::warn!(peer = peer.short_id(), error = %e, "worker HTTP/2 handshake failed");
        }
    };
    let mut conn = std::pin::pin!(conn);
    let announce = tokio::select! {
        a = tokio::time::timeout(ANNOUNCE_TIMEOUT, client.announce()) => match a {
            Ok(r) => r.map_err(|e| e.message),
            Err(_) => Err("announce timed out".to_string()),
        },
        _ = &mut conn => Err("link closed during announce".to_string()),
    };
    let announce = announce
        .and_then(|a| admit_models(&state, &peer, a))
        .and_then(|a| within_bounds(&state, a));
    let announce = announce.and_then(|a| needs_payout(&state, a));
    let announce = match announce {
        Ok(a) => not_disputed(&state, a).await,
        Err(why) => Err(why),
    };
    let announce = match announce {
        Ok(a) => a,
        Err(why) => {
            // The connection must be driven for the refusal to go out.
            tokio::select! { _ = refuse(&client, &peer, why) => {}, _ = &mut conn => {} }
            return;
        }
    };
    let (vouchers, latest) = watch::channel(None);
    if let Some(pay) = &state.pay {
        // Unpaid networks have no vouchers: no delivery task.
        tokio::spawn(deliver_vouchers(client.clone(), latest));
        let Some(payout) = announce.payout else {
            return;
        };
        // Resync: the worker gets its latest vault voucher again.
        let latest = pay.books().await.worker_voucher(&payout);
        if let Ok(Some(v)) = latest.wait().await {
            vouchers.send_replace(Some(v));
        }
    }
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    let _registered = Registration::new(&state, id, (client, sealing), vouchers, &announce);
    tracing::info!(worker = id, peer = peer.short_id(), models = ?announce.models.iter().map(|m| &m.name).collect::<Vec<_>>(),
        max_jobs = announce.max_jobs, "worker joined");
    let _ = conn.await;
}

/// Takes the workers paid at `payout` out of the router: their receipts
/// are disputed by too many clients. They are refused when they link again.
pub(crate) fn stop_routing(state: &State, payout: &kokon_money::PublicKey) {
    let ids: Vec<WorkerId> = lock(&state.links)
        .iter()
        .filter(|(_, l)| l.payout.as_ref() == Some(payout))
        .map(|(id, _)| *id)
        .collect();
    let mut router = lock(&state.router);
    for id in ids {
        tracing::warn!(
            worker = id,
            "worker no longer routed: its receipts are disputed by several clients"
        );
        router.remove(id);
    }
}

/// A worker whose receipts too many clients disputed is not routed.
async fn not_disputed(state: &State, a: Announce) -> Result<Announce, String> {
    match (&state.pay, &a.payout) {
        (Some(pay), Some(payout)) if crate::pay::too_disputed(pay, payout).await => {
            state.metrics.link_refused("disputed");
            Err("its receipts are disputed by several clients".into())
        }
        _ => Ok(a),
    }
}

/// On a paid network a worker must name where its earnings go.
fn needs_payout(state: &State, a: Announce) -> Result<Announce, String> {
    if state.pay.is_some() && a.payout.is_none() {
        return Err(
            "it announces no payout key, and this proxy pays its workers (start it with a wallet)"
                .into(),
        );
    }
    Ok(a)
}

/// Logs why a worker is refused and tells the worker (within a second;
/// the link closes after either way).
async fn refuse(client: &LinkClient, peer: &VerifiedPeer, why: String) {
    tracing::warn!(peer = peer.short_id(), %why, "worker refused");
    let told = JobError::new(ErrorCode::BadRequest, why);
    let _ = tokio::time::timeout(Duration::from_secs(1), client.refused(&told)).await;
}

/// Keeps the offers whose model hash the worker's certificate attests and
/// the registry allows; refuses a worker left with none.
fn admit_models(state: &State, peer: &VerifiedPeer, mut a: Announce) -> Result<Announce, String> {
    let attested = peer.claims().model_hashes();
    let policy = state.tls.policy();
    a.models.retain(|m| {
        let ok = m
            .hash
            .is_some_and(|h| attested.contains(&h.0) && policy.allows_model_named(&m.name, &h.0));
        if !ok {
            tracing::warn!(peer = peer.short_id(), model = %m.name, hash = ?m.hash.map(|h| hex::encode(h.0)),
                "model not routed: its hash is not in the worker's certificate or not allowed by the registry");
        }
        ok
    });
    if a.models.is_empty() {
        state.metrics.link_refused("model_not_allowed");
        return Err(
            "none of its models is attested in its certificate and allowed by the registry".into(),
        );
    }
    Ok(a)
}

/// Holds an offer to the registry's routing bounds: a price above its
/// maximum is refused; more jobs than its maximum are cut to it (so a worker
/// cannot draw traffic by announcing a million slots).
fn within_bounds(state: &State, mut a: Announce) -> Result<Announce, String> {
    let b = state.tls.policy().routing;
    if a.price_milli > b.max_price_milli {
        state.metrics.link_refused("price_above_registry");
        return Err(format!(
            "it asks a price coefficient of {}, above the registry's maximum {}",
            a.price_milli, b.max_price_milli
        ));
    }
    a.max_jobs = a.max_jobs.min(b.max_jobs);
    Ok(a)
}

/// A worker's place in the router and link table, removed when dropped.
struct Registration<'a> {
    state: &'a State,
    id: WorkerId,
}

impl<'a> Registration<'a> {
    fn new(
        state: &'a State,
        id: WorkerId,
        (client, sealing): (LinkClient, Option<SealingCert>),
        vouchers: watch::Sender<Option<Signed<WorkerVoucher>>>,
        a: &Announce,
    ) -> Self {
        let names: Vec<String> = a.models.iter().map(|m| m.name.clone()).collect();
        state.metrics.know_models(&names);
        lock(&state.router).add(id, names, a.max_jobs, a.price_milli);
        let mut links = lock(&state.links);
        links.insert(
            id,
            WorkerLink {
                client,
                vouchers,
                models: a.models.clone(),
                price_milli: a.price_milli,
                payout: a.payout,
                sealing,
            },
        );
        state.metrics.set_workers(links.len());
        Self { state, id }
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        lock(&self.state.router).remove(self.id);
        let mut links = lock(&self.state.links);
        links.remove(&self.id);
        self.state.metrics.set_workers(links.len());
        tracing::info!(worker = self.id, "worker left");
    }
}

/// Every model offered by a linked worker, deduplicated by name.
pub(crate) fn offers(state: &State) -> Vec<ModelOffer> {
    let mut all: Vec<ModelOffer> = lock(&state.links)
        .values()
        .flat_map(|l| l.models.clone())
        .collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    all.dedup_by(|a, b| a.name == b.name);
    all
}

/// The certificates of up to [`kokon_proto::sealed::MAX_CANDIDATES`]
/// linked workers serving `req.model` within its price cap, that clients
/// can seal jobs to: the least loaded first, then the cheaper. None is
/// refused with the reason a job would be (no such model, over the price
/// cap, no worker linked now).
pub(crate) fn candidates(
    state: &State,
    req: &kokon_proto::CandidatesRequest,
) -> Result<kokon_proto::CandidatesReply, JobError> {
    let mut offered: Vec<(WorkerId, u32, Arc<[u8]>)> = lock(&state.links)
        .iter()
        .filter(|(_, l)| l.models.iter().any(|m| m.name == req.model))
        .filter(|(_, l)| req.max_price_milli.is_none_or(|cap| l.price_milli <= cap))
        .filter_map(|(id, l)| Some((*id, l.price_milli, l.sealing.as_ref()?.der.clone())))
        .collect();
    {
        let router = lock(&state.router);
        if offered.is_empty() {
            return Err(match router.unavailable(&req.model, req.max_price_milli) {
                Some(e) => {
                    crate::flow::route_error(crate::job::as_the_registry_sees(state, &req.model, e))
                }
                None => JobError::new(
                    ErrorCode::WorkerUnavailable,
                    format!(
                        "no worker linked for `{}` has a sealing key: a job cannot be \
                         sealed to any",
                        req.model
                    ),
                ),
            });
        }
        offered.sort_by_key(|(id, price, _)| (router.active(*id).unwrap_or(u32::MAX), *price));
    }
    Ok(kokon_proto::CandidatesReply {
        certs: offered
            .iter()
            .take(kokon_proto::sealed::MAX_CANDIDATES)
            .map(|(_, _, der)| hex::encode(der))
            .collect(),
    })
}

/// The linked workers among the certificates a sealed job names.
pub(crate) fn by_cert(state: &State, certs: &[[u8; 32]]) -> Vec<WorkerId> {
    lock(&state.links)
        .iter()
        .filter(|(_, l)| l.sealing.as_ref().is_some_and(|c| certs.contains(&c.id)))
        .map(|(id, _)| *id)
        .collect()
}

/// What billing needs to know about worker `id` serving `model`.
pub(crate) fn served(state: &State, id: WorkerId, model: &str) -> Option<Served> {
    let links = lock(&state.links);
    let l = links.get(&id)?;
    Some(Served {
        price_milli: l.price_milli,
        payout: l.payout?,
        model_hash: l
            .models
            .iter()
            .find(|m| m.name == model)
            .and_then(|m| m.hash),
    })
}

/// Hands worker `id` its new vault voucher. Vouchers are cumulative: while
/// one is on its way, newer ones replace each other and only the latest
/// goes next, so a busy worker gets one voucher per round trip, not one per
/// job.
pub(crate) fn post_voucher(state: &State, id: WorkerId, v: Signed<WorkerVoucher>) {
    if let Some(l) = lock(&state.links).get(&id) {
        l.vouchers.send_replace(Some(v));
    }
}

/// Sends each new latest voucher until the link is forgotten.
async fn deliver_vouchers(
    client: LinkClient,
    mut latest: watch::Receiver<Option<Signed<WorkerVoucher>>>,
) {
    while latest.changed().await.is_ok() {
        let Some(v) = *latest.borrow_and_update() else {
            continue;
        };
        if let Err(e) = client.vault_voucher(&v).await {
            tracing::debug!(error = %e.message, "vault voucher not delivered; the next one covers it");
        }
    }
}

/// The link to worker `id`, while it is linked.
pub(crate) fn client(state: &State, id: WorkerId) -> Option<LinkClient> {
    lock(&state.links).get(&id).map(|l| l.client.clone())
}
