//! Worker links: announce, register with the router, forget on disconnect.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use kokon_attest::VerifiedPeer;
use kokon_proto::announce::MAX_ANNOUNCE;
use kokon_proto::{Announce, ModelOffer, PROTOCOL_VERSION, paths};
use kokon_route::WorkerId;
use tokio::net::TcpStream;

use crate::{State, lock};

pub(crate) type Sender = SendRequest<Full<Bytes>>;

/// A linked, attested worker.
pub(crate) struct WorkerLink {
    pub(crate) sender: Sender,
    pub(crate) models: Vec<ModelOffer>,
    pub(crate) price_milli: u32,
    pub(crate) payout: Option<kokon_money::PublicKey>,
}

/// Runs a worker link until it closes (or this future is dropped, which
/// closes the connection: the link owns it).
pub(crate) async fn attach(
    state: Arc<State>,
    tls: kokon_tls::ServerStream<TcpStream>,
    peer: VerifiedPeer,
) {
    let handshake = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(1)))
        .keep_alive_timeout(Duration::from_secs(2))
        .keep_alive_while_idle(true)
        .handshake::<_, Full<Bytes>>(TokioIo::new(tls))
        .await;
    let (mut sender, conn) = match handshake {
        Ok(x) => x,
        Err(e) => {
            return tracing::warn!(peer = peer.short_id(), error = %e, "worker HTTP/2 handshake failed");
        }
    };
    let mut conn = std::pin::pin!(conn);
    let announce = tokio::select! {
        a = fetch_announce(&mut sender) => a,
        _ = &mut conn => Err("link closed during announce".to_string()),
    };
    let announce = match announce.and_then(|a| admit_models(&state, &peer, a)) {
        Ok(a) => a,
        Err(why) => return tracing::warn!(peer = peer.short_id(), %why, "worker refused"),
    };
    if let Some(pay) = &state.pay {
        let Some(payout) = announce.payout else {
            return tracing::warn!(
                peer = peer.short_id(),
                "worker refused: it announces no payout key on a paid network"
            );
        };
        // Resync: the worker gets its latest vault voucher again.
        if let Some(v) = pay.books().await.worker_voucher(&payout) {
            tokio::spawn(crate::pay::send_worker_voucher(sender.clone(), v));
        }
    }
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    let _registered = Registration::new(&state, id, sender, &announce);
    tracing::info!(worker = id, peer = peer.short_id(), models = ?announce.models.iter().map(|m| &m.name).collect::<Vec<_>>(),
        max_jobs = announce.max_jobs, "worker joined");
    let _ = conn.await;
}

/// Keeps the offers whose model hash the worker's certificate attests and
/// the registry allows; refuses a worker left with none.
fn admit_models(state: &State, peer: &VerifiedPeer, mut a: Announce) -> Result<Announce, String> {
    let attested = peer.claims().model_hashes();
    let policy = state.tls.policy();
    a.models.retain(|m| {
        let ok = m
            .hash
            .is_some_and(|h| attested.contains(&h.0) && policy.allows_model(&h.0));
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

/// A worker's place in the router and link table, removed when dropped.
struct Registration<'a> {
    state: &'a State,
    id: WorkerId,
}

impl<'a> Registration<'a> {
    fn new(state: &'a State, id: WorkerId, sender: Sender, a: &Announce) -> Self {
        let names = a.models.iter().map(|m| m.name.clone()).collect();
        lock(&state.router).add(id, names, a.max_jobs, a.price_milli);
        let mut links = lock(&state.links);
        links.insert(
            id,
            WorkerLink {
                sender,
                models: a.models.clone(),
                price_milli: a.price_milli,
                payout: a.payout,
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

async fn fetch_announce(sender: &mut Sender) -> Result<Announce, String> {
    let req = Request::get(paths::ANNOUNCE)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .map_err(|_| "announce timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let body = Limited::new(resp.into_body(), MAX_ANNOUNCE)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let a = Announce::parse(&body)?;
    if a.protocol_version != PROTOCOL_VERSION {
        return Err(format!(
            "worker speaks protocol {}, proxy speaks {PROTOCOL_VERSION}",
            a.protocol_version
        ));
    }
    Ok(a)
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

/// What billing needs to know about worker `id` serving `model`.
pub(crate) fn served(state: &State, id: WorkerId, model: &str) -> Option<crate::pay::Served> {
    let links = lock(&state.links);
    let l = links.get(&id)?;
    Some(crate::pay::Served {
        price_milli: l.price_milli,
        payout: l.payout?,
        model_hash: l
            .models
            .iter()
            .find(|m| m.name == model)
            .and_then(|m| m.hash),
    })
}

pub(crate) fn sender(state: &State, id: WorkerId) -> Option<Sender> {
    lock(&state.links).get(&id).map(|l| l.sender.clone())
}
