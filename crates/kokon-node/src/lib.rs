//! Node assembly for production commands. [`pay`] builds each daemon's
//! money (ledger or TON backend, keys, books) for `kokon proxy|worker|client`
//! and the money commands; [`LocalNet`] is a whole Kokon network in one
//! process (a local test-network registry, a proxy, workers and a gateway,
//! each with its own RA-TLS identity, linked over real loopback TCP), which
//! `kokon up` runs and the tests in `kokon-testnet` drive.

pub mod pay;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kokon_attest::{Policy, Registry, Role};
use kokon_engine::Engine;
use kokon_gateway::{GatewayConfig, GatewayHandle};
use kokon_money::Nanotons;
use kokon_proxy::{ProxyConfig, ProxyHandle};
use kokon_tls::node::{NodeError, NodeParams, config_sha256, simulated_node, start_node};
use kokon_worker::{Worker, WorkerConfig, WorkerStats};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// One worker to start.
#[derive(Clone)]
pub struct WorkerSpec {
    pub engine: Arc<dyn Engine>,
    pub max_jobs: u32,
    pub price_milli: u32,
    /// Simulated image label; `None` uses this build's worker image (allowed).
    pub image_label: Option<String>,
    /// Model hashes its certificate claims; `None` claims what it serves.
    pub claimed_models: Option<Vec<[u8; 32]>>,
    /// Paid jobs: a cumulative receipt every this many tokens (0: only at
    /// the end) or this long ([`WorkerConfig`]'s defaults: 64, 1 s).
    pub receipt_every_tokens: u32,
    pub receipt_every: Duration,
}

impl WorkerSpec {
    pub fn new(engine: Arc<dyn Engine>) -> Self {
        Self {
            engine,
            max_jobs: 4,
            price_milli: 1000,
            image_label: None,
            claimed_models: None,
            receipt_every_tokens: 64,
            receipt_every: Duration::from_secs(1),
        }
    }
}

/// The name the local relay knows the proxy's gateway by.
pub const RELAYED_GATEWAY: &str = "local";

/// What network to start.
#[derive(Clone)]
pub struct NetSpec {
    pub workers: Vec<WorkerSpec>,
    pub gateway_listen: SocketAddr,
    pub proxy_listen: SocketAddr,
    pub proxy_admin: Option<SocketAddr>,
    pub api_key: Option<String>,
    /// See `GatewayConfig::allow_hosts` and `cors_origins`.
    pub allow_hosts: Vec<String>,
    pub cors_origins: Vec<String>,
    pub registry: Registry,
    /// See `ProxyConfig::job_idle_timeout`.
    pub job_idle_timeout: Duration,
    /// Payments on the devnet ledger; `None` runs an unpaid network.
    pub payments: Option<pay::PaySpec>,
    /// How long the proxy and the gateway let jobs finish when draining.
    pub drain_grace: Duration,
    /// Also run the proxy's Oblivious HTTP gateway and a relay here (on
    /// this address), and send the client gateway's calls through it.
    pub relay_listen: Option<SocketAddr>,
    /// How often the proxy's Oblivious HTTP gateway makes a new key
    /// [default: `kokon_oblivious::GatewayConfig`'s, a day].
    pub ohttp_key_rotation: Option<Duration>,
    /// Pay jobs with credit tokens (a wallet beside the books) instead of
    /// the channel, which then only buys them; the network buys this much
    /// at start (nothing for 0). Needs payments.
    pub credits: Option<Nanotons>,
}

impl NetSpec {
    pub fn new(workers: Vec<WorkerSpec>) -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            workers,
            gateway_listen: any,
            proxy_listen: any,
            proxy_admin: None,
            api_key: None,
            allow_hosts: Vec::new(),
            cors_origins: Vec::new(),
            registry: Registry::local_test_network(),
            job_idle_timeout: Duration::from_secs(120),
            drain_grace: Duration::from_secs(30),
            payments: None,
            relay_listen: None,
            ohttp_key_rotation: None,
            credits: None,
        }
    }
}

/// Buys `amount` of credit tokens on the gateway's channel for its own
/// wallet, through its API (as a provider and a user would, each on their
/// gateway): requests, purchase, tokens kept.
pub async fn buy_credits(
    gateway: SocketAddr,
    api_key: Option<&str>,
    amount: Nanotons,
) -> Result<Nanotons, NetError> {
    let http = reqwest::Client::new();
    let base = format!("http://{gateway}/v1/credits");
    let call = |path: &'static str, body: serde_json::Value| {
        let mut req = http.post(format!("{base}/{path}")).json(&body);
        if let Some(k) = api_key {
            req = req.bearer_auth(k);
        }
        async move {
            let resp = req
                .send()
                .await
                .map_err(|e| NetError::Credits(e.to_string()))?;
            let status = resp.status();
            let body: serde_json::Value = resp
                .json()
                .await
                .map_err(|e| NetError::Credits(e.to_string()))?;
            if !status.is_success() {
                return Err(NetError::Credits(format!("{path}: {status}: {body}")));
            }
            Ok(body)
        }
    };
    let asked = call(
        "request",
        serde_json::json!({ "amount_nanoton": amount.to_string() }),
    )
    .await?;
    let requests = asked["requests"].clone();
    let sold = call("buy", serde_json::json!({ "requests": requests })).await?;
    let kept = call(
        "accept",
        serde_json::json!({ "requests": requests, "responses": sold["responses"] }),
    )
    .await?;
    kept["added_nanoton"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| NetError::Credits(format!("accept: {kept}")))
}

/// Why a network could not start.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("registry: {0}")]
    Registry(#[from] kokon_attest::RegistryError),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
    #[error("workers did not link to the proxy within {0:?}")]
    WorkersLate(Duration),
    #[error("payments: {0}")]
    Pay(#[from] kokon_pay::PayError),
    #[error("buying credit tokens: {0}")]
    Credits(String),
}

/// A running worker.
pub struct WorkerHandle {
    pub stats: Arc<WorkerStats>,
    /// The worker's payment state, on paid networks.
    pub pay: Option<Arc<kokon_worker::WorkerPay>>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl WorkerHandle {
    /// Stops the worker as SIGTERM does: no new jobs, running ones finish.
    pub fn drain(&self) {
        self.stop.cancel();
    }

    /// Whether the worker has stopped (after a drain, once its jobs ended).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops the worker abruptly: its link and every job on it drop at once.
    pub fn kill(&self) {
        self.stop.cancel();
        self.task.abort();
    }
}

/// A running network. Dropping it stops everything.
pub struct LocalNet {
    pub proxy: ProxyHandle,
    /// The Oblivious HTTP relay, when the network runs one.
    pub relay: Option<kokon_relay::RelayHandle>,
    /// The Oblivious HTTP gateway in front of the proxy, with the relay.
    pub ohttp_gateway: Option<SocketAddr>,
    pub gateway: GatewayHandle,
    pub workers: Vec<WorkerHandle>,
    policy: Arc<Policy>,
    /// Every node's RA-TLS state, to put a changed registry in force.
    nodes: Vec<kokon_tls::RaTls>,
    shutdown: CancellationToken,
    pay: Option<(pay::PaySpec, pay::Ledger)>,
    /// Where the proxy published its keys (the ledger, or on an unpaid
    /// relayed network a devnet of its own).
    registry: Option<kokon_gateway::Registry>,
    /// What publishes the proxy's gateway keys, on relayed networks.
    publisher: Option<Arc<kokon_proxy::KeyPublisher>>,
    /// An unpaid relayed network's registry of published keys (a devnet
    /// ledger of its own), removed with the network.
    _registry_dir: Option<tempfile::TempDir>,
}

impl Drop for LocalNet {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.workers.iter().for_each(WorkerHandle::kill);
    }
}

impl LocalNet {
    /// Starts the network and waits until every worker has linked.
    pub async fn start(spec: NetSpec) -> Result<Self, NetError> {
        let shutdown = CancellationToken::new();
        let policy = Arc::new(spec.registry.policy()?);
        let mut pcfg = ProxyConfig::new(spec.proxy_listen);
        pcfg.admin_listen = spec.proxy_admin;
        pcfg.job_idle_timeout = spec.job_idle_timeout;
        pcfg.drain_grace = spec.drain_grace;
        let ptls = simulated_node(
            Role::Proxy,
            None,
            policy.clone(),
            config_sha256(&pcfg),
            &shutdown,
        )?;
        let booted = match &spec.payments {
            Some(p) => {
                // The registry sets the economy: prices, commission, delays.
                let p = pay::PaySpec {
                    economics: spec.registry.economics(),
                    routing: policy.routing,
                    ..p.clone()
                };
                let booted = pay::bootstrap(&p, spec.workers.len()).await?;
                Some((p, booted))
            }
            None => None,
        };
        let (proxy_pay, client_pay, pay_state) = match booted {
            Some((p, np)) => {
                let ledger = pay::daemon_ledger(&p, &np.ledger);
                let issuer = pay::credit_issuer(&p, &np.proxy)?;
                let pp = kokon_proxy::ProxyPay::new(
                    np.proxy,
                    p.economics.clone(),
                    ledger.clone(),
                    p.min_claim(),
                    p.claim_every,
                )
                .with_credits(issuer);
                let cp = kokon_gateway::ClientPay::new(
                    np.client,
                    p.economics.prices.clone(),
                    policy.clone(),
                    Some(ledger.clone()),
                );
                (Some(pp), Some(cp), Some((p, np.ledger)))
            }
            None => (None, None, None),
        };
        let mut nodes = vec![ptls.clone()];
        let proxy = kokon_proxy::start_with(pcfg, ptls, proxy_pay, shutdown.clone()).await?;
        // Where the proxy publishes the keys it hands out and clients check
        // them: the network's ledger, or on an unpaid relayed network a
        // devnet ledger of its own (the registry's stand-in).
        let (registry, registry_dir) = match (&pay_state, spec.relay_listen) {
            (Some((p, ledger)), _) => (Some(pay::daemon_ledger(p, ledger)), None),
            (None, Some(_)) => {
                let (dir, devnet) = pay::registry_only()?;
                (Some(devnet), Some(dir))
            }
            (None, None) => (None, None),
        };
        let mut publishes = None;
        let (ohttp_gateway, relay) = match (spec.relay_listen, &registry) {
            (Some(listen), Some(chain)) => {
                let any = SocketAddr::from(([127, 0, 0, 1], 0));
                let mut gcfg = kokon_oblivious::GatewayConfig::new(any);
                if let Some(every) = spec.ohttp_key_rotation {
                    gcfg.key_rotation = every;
                }
                let publisher = proxy.publisher().unwrap_or_else(|| {
                    // An unpaid proxy has no key of its own: one for the registry.
                    Arc::new(kokon_proxy::KeyPublisher::new(
                        chain.clone(),
                        Arc::new(kokon_money::SecretKey::generate()),
                    ))
                });
                publishes = Some(publisher.clone());
                let g = kokon_oblivious::start(gcfg, proxy.clone(), publisher, shutdown.clone())
                    .await?;
                let target = kokon_relay::GatewayTarget {
                    name: RELAYED_GATEWAY.into(),
                    addr: g.addr,
                };
                let cfg = kokon_relay::RelayConfig::new(listen, vec![target]);
                let clock: Arc<dyn kokon_attest::Clock> = Arc::new(kokon_attest::SystemClock);
                let r = kokon_relay::start(cfg, policy.clone(), clock, shutdown.clone()).await?;
                (Some(g.addr), Some(r))
            }
            _ => (None, None),
        };
        let mut gcfg = GatewayConfig::new(spec.gateway_listen, proxy.addr);
        gcfg.relay = relay.as_ref().map(|r| {
            format!(
                "http://{}{}{RELAYED_GATEWAY}",
                r.addr,
                kokon_relay::GATEWAYS
            )
        });
        gcfg.api_key = spec.api_key;
        gcfg.allow_hosts = spec.allow_hosts;
        gcfg.cors_origins = spec.cors_origins;
        gcfg.public.drain_grace = spec.drain_grace;
        let gtls = simulated_node(
            Role::Client,
            None,
            policy.clone(),
            config_sha256(&gcfg),
            &shutdown,
        )?;
        nodes.push(gtls.clone());
        let credits = match (&pay_state, spec.credits) {
            (Some((p, _)), Some(_)) => Some(kokon_gateway::CreditPay::new(
                p.dir.join("credits.db"),
                p.economics.prices.clone(),
            )),
            _ => None,
        };
        let api_key = gcfg.api_key.clone();
        let gateway = kokon_gateway::start_paying(
            gcfg,
            gtls,
            client_pay,
            credits,
            registry.clone(),
            shutdown.clone(),
        )
        .await?;
        if let Some(amount) = spec.credits.filter(|a| *a > 0) {
            buy_credits(gateway.addr, api_key.as_deref(), amount).await?;
        }
        let mut net = Self {
            gateway,
            proxy,
            relay,
            ohttp_gateway,
            workers: vec![],
            policy,
            nodes,
            shutdown,
            pay: pay_state,
            registry,
            publisher: publishes,
            _registry_dir: registry_dir,
        };
        let expected = spec
            .workers
            .iter()
            .filter(|w| w.image_label.is_none())
            .count();
        for w in spec.workers {
            net.add_worker(w)?;
        }
        net.wait_for_workers(expected, Duration::from_secs(20))
            .await?;
        Ok(net)
    }

    /// Puts `registry` in force on every node, as the daemons do when their
    /// registry file changes (its economics and routing are not followed).
    /// Workers started later are judged by it too.
    pub fn set_registry(&mut self, registry: &Registry) -> Result<(), NetError> {
        let mut policy = registry.policy()?;
        policy.routing = self.policy.routing;
        self.policy = Arc::new(policy);
        for node in &self.nodes {
            node.set_policy(self.policy.clone());
        }
        Ok(())
    }

    /// Starts one more worker linked to this network's proxy.
    pub fn add_worker(&mut self, w: WorkerSpec) -> Result<(), NetError> {
        let name = format!("dev-worker-{}", self.workers.len());
        let handle = self.spawn_worker(w, &name)?;
        self.workers.push(handle);
        Ok(())
    }

    /// Kills worker `i` and starts `w` in its place on the same books (so
    /// the same payout key and earnings): a worker process restarted.
    pub fn restart_worker(&mut self, i: usize, w: WorkerSpec) -> Result<(), NetError> {
        self.workers[i].kill();
        let handle = self.spawn_worker(w, &format!("dev-worker-{i}"))?;
        self.workers[i] = handle;
        Ok(())
    }

    fn spawn_worker(&mut self, w: WorkerSpec, name: &str) -> Result<WorkerHandle, NetError> {
        let stop = self.shutdown.child_token();
        let mut cfg = WorkerConfig::new(self.proxy.addr);
        cfg.max_jobs = w.max_jobs;
        cfg.price_milli = w.price_milli;
        cfg.receipt_every_tokens = w.receipt_every_tokens;
        cfg.receipt_every = w.receipt_every;
        let mut node = NodeParams::simulated(Role::Worker, w.image_label, config_sha256(&cfg));
        kokon_worker::declare(&mut node, w.engine.as_ref());
        if let Some(claimed) = w.claimed_models {
            node.models = claimed;
        }
        let keys = kokon_worker::seal_to(&mut node);
        let tls = start_node(node, self.policy.clone(), &stop)?;
        self.nodes.push(tls.clone());
        let mut worker = Worker::new(cfg, w.engine, tls).with_keys(keys);
        if let Some((spec, ledger)) = &self.pay {
            let books = pay::worker_books(spec, name)?;
            let ledger = pay::daemon_ledger(spec, ledger);
            let wp = kokon_worker::WorkerPay::new(
                books,
                spec.economics.prices.clone(),
                ledger,
                spec.min_claim(),
                spec.claim_every,
            );
            worker = worker.with_pay(wp);
        }
        let stats = worker.stats();
        let pay = worker.pay();
        let task = tokio::spawn(worker.serve(stop.clone()));
        Ok(WorkerHandle {
            stats,
            pay,
            stop,
            task,
        })
    }

    /// Waits until `n` workers are linked to the proxy.
    pub async fn wait_for_workers(&self, n: usize, within: Duration) -> Result<(), NetError> {
        let deadline = tokio::time::Instant::now() + within;
        while self.proxy.worker_count() < n {
            if tokio::time::Instant::now() > deadline {
                return Err(NetError::WorkersLate(within));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Where the proxy publishes the keys it hands out and clients check
    /// them: the ledger on paid networks, a devnet of its own on unpaid
    /// relayed ones.
    pub fn registry(&self) -> Option<kokon_gateway::Registry> {
        self.registry.clone()
    }

    /// What publishes the proxy's gateway keys in [`Self::registry`], on
    /// relayed networks.
    pub fn publisher(&self) -> Option<Arc<kokon_proxy::KeyPublisher>> {
        self.publisher.clone()
    }

    /// The ledger, on paid networks.
    pub fn ledger(&self) -> Option<pay::Ledger> {
        self.pay.as_ref().map(|(_, l)| l.clone())
    }

    /// Base URL of the OpenAI-compatible API.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.gateway.addr)
    }

    /// Stops everything.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Stops as SIGTERM stops each daemon: nothing new is accepted, jobs in
    /// flight finish (within `grace`, the daemons' own drain grace), then
    /// every link closes. Returns whether everything finished in time.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.shutdown.cancel();
        let all = async {
            tokio::join!(self.gateway.drained(), self.proxy.drained());
            while !self.workers.iter().all(WorkerHandle::is_finished) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(grace + Duration::from_secs(1), all)
            .await
            .is_ok()
    }
}
