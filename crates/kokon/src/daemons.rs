//! `kokon proxy`, `kokon worker`, `kokon client` and `kokon registry`: the
//! daemons run alone, each configured by flags, `KOKON_*` env vars and a TOML file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use kokon_attest::{Registry, Role};
use kokon_engine::Engine;
use kokon_engine::echo::EchoEngine;
use kokon_engine::llama::{LlamaConfig, LlamaEngine};
use kokon_engine::upstream::{UpstreamConfig, UpstreamEngine};
use kokon_tls::node::{NodeParams, config_sha256, start_node};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::config::{load_file, load_registry, merge, registry_path};
use kokon_node::pay::{self, PaySpec};

/// Settings every daemon shares.
#[derive(Args, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Common {
    /// TOML file with any of this command's settings (flags and env vars win).
    #[arg(long, env = "KOKON_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Registry file to verify peers against [default: $KOKON_HOME/registry.toml].
    #[arg(long, env = "KOKON_REGISTRY")]
    pub registry: Option<PathBuf>,
    /// Seconds between reads of the registry file and collateral cache while
    /// the daemon runs: a change is put in force at once, and a peer the
    /// registry no longer allows is dropped; 0 reads them only at start
    /// [default: 30].
    #[arg(long, env = "KOKON_REGISTRY_POLL_SECS")]
    pub registry_poll_secs: Option<u64>,
    /// Settle payments as the money directory DIR says: on the devnet ledger
    /// in it, or on TON when it holds a `ton.json` (`kokon up` uses
    /// $KOKON_HOME/devnet, or $KOKON_HOME/ton-sandbox with
    /// --settlement ton-sandbox). Unset: an unpaid network.
    #[arg(long, env = "KOKON_DEVNET")]
    pub devnet: Option<PathBuf>,
    /// Name of this node's key in the devnet's keys/ directory
    /// [default: dev-proxy, dev-worker-0 or dev-client by role].
    #[arg(long, env = "KOKON_WALLET")]
    pub wallet: Option<String>,
    /// Proxies and workers claim on the ledger once this much (TON) is
    /// claimable, since every claim costs fees; a closing channel or a
    /// vault being withdrawn is claimed whatever the amount
    /// [default: 10 on testnet/mainnet, 1 nanoton on the devnet and sandbox].
    #[arg(long, env = "KOKON_MIN_CLAIM")]
    pub min_claim: Option<String>,
    /// Where this node's quotes come from: `tdx` (inside a TD: configfs-tsm, or
    /// /dev/tdx_guest with the host's quoting service), `simulated` (software;
    /// accepted only by test-network registries), or `auto`: tdx when either
    /// interface is present, else simulated [default: auto].
    #[arg(long, value_enum, env = "KOKON_EVIDENCE")]
    pub evidence: Option<EvidenceArg>,
    /// Intel collateral cache for verifying TDX peers offline
    /// [default: $KOKON_HOME/collateral; fill it with `kokon attest collateral fetch`].
    #[arg(long, env = "KOKON_COLLATERAL")]
    pub collateral: Option<PathBuf>,
    /// At SIGTERM or Ctrl-C, seconds the jobs in flight get to finish
    /// before the daemon exits; no new work is taken meanwhile [default: 30].
    #[arg(long, env = "KOKON_DRAIN_SECS")]
    pub drain_secs: Option<u64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EvidenceArg {
    #[default]
    Auto,
    Tdx,
    Simulated,
}

impl Common {
    /// The devnet payments of this daemon, if configured.
    fn devnet(&self) -> anyhow::Result<Option<(PaySpec, pay::Ledger)>> {
        let Some(dir) = &self.devnet else {
            return Ok(None);
        };
        let registry = load_registry(&registry_path(self.registry.clone()))?;
        let mut spec = PaySpec {
            economics: registry.economics(),
            ..PaySpec::load(dir.clone())?
        };
        if let Some(m) = &self.min_claim {
            spec.min_claim = Some(crate::wallet::parse_ton(m).context("--min-claim")?);
        }
        let ledger = spec
            .ledger()
            .with_context(|| format!("ledger of {}", dir.display()))?;
        Ok(Some((spec, ledger)))
    }

    fn wallet_or(&self, default: &str) -> String {
        self.wallet.clone().unwrap_or_else(|| default.to_string())
    }

    fn drain_grace(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.drain_secs.unwrap_or(30))
    }
}

#[derive(Args, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    /// Address for worker and client RA-TLS links [default: 0.0.0.0:7400].
    #[arg(long, env = "KOKON_PROXY_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Plain-HTTP address for /metrics and /healthz [default: 127.0.0.1:7401].
    #[arg(long, env = "KOKON_PROXY_ADMIN")]
    pub admin: Option<SocketAddr>,
    /// Workers tried per job when they fail before the first byte [default: 3].
    #[arg(long, env = "KOKON_PROXY_MAX_ATTEMPTS")]
    pub max_attempts: Option<u32>,
    /// Seconds a worker may stay silent during a job before it counts as failed [default: 120].
    #[arg(long, env = "KOKON_PROXY_JOB_IDLE_SECS")]
    pub job_idle_secs: Option<u64>,
    /// Links (workers and clients) held at once from one IP address [default: 64].
    #[arg(long, env = "KOKON_PROXY_MAX_LINKS_PER_ADDRESS")]
    pub max_links_per_address: Option<usize>,
    /// Links held at once by one client key [default: 8].
    #[arg(long, env = "KOKON_PROXY_MAX_LINKS_PER_CLIENT")]
    pub max_links_per_client: Option<usize>,
    /// Paid networks: the most a client may owe (billed, not yet paid by a
    /// voucher, plus what its running jobs may cost), in TON; a client past
    /// it gets 402 until it pays [default: the largest cost of one job — the
    /// registry's largest context each way at its highest price; 0.0131 TON
    /// with the default registry].
    #[arg(long, env = "KOKON_PROXY_MAX_CREDIT")]
    pub max_credit: Option<String>,
    /// Also run an Oblivious HTTP gateway here (TLS with this proxy's RA-TLS
    /// certificate), for clients behind a relay (`kokon relay --gateway`).
    /// Its keys are made in this process, served at
    /// /.well-known/ohttp-gateway and published in the registry as this
    /// proxy's before any client is given them (so it needs --devnet, a
    /// devnet or a ton.json) [default: none].
    #[arg(long, env = "KOKON_PROXY_OHTTP_LISTEN")]
    pub ohttp_listen: Option<SocketAddr>,
    /// Seconds between new gateway keys; the previous key is accepted until
    /// the next rotation [default: 86400].
    #[arg(long, env = "KOKON_PROXY_OHTTP_ROTATE_SECS")]
    pub ohttp_rotate_secs: Option<u64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// GGUF model on the CPU via llama.cpp.
    #[default]
    Builtin,
    /// Forward to an OpenAI-compatible server (vLLM, SGLang, llama.cpp server, Ollama).
    Upstream,
    /// Repeat the input word by word (tests and benchmarks; no model).
    Echo,
}

#[derive(Args, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineArgs {
    /// Engine to run jobs with [default: builtin].
    #[arg(long, value_enum, env = "KOKON_ENGINE")]
    pub engine: Option<EngineKind>,
    /// Model to serve (builtin: a name from `kokon model list`; echo: any name) [default: smollm2-135m-instruct; echo: echo].
    #[arg(long, env = "KOKON_MODEL")]
    pub model: Option<String>,
    /// CPU threads per job for the builtin engine [default: number of cores].
    #[arg(long, env = "KOKON_THREADS")]
    pub threads: Option<u32>,
    /// Context window per job, in tokens [default: 2048].
    #[arg(long, env = "KOKON_CONTEXT")]
    pub context: Option<u32>,
    /// Upstream base URL including /v1, e.g. http://127.0.0.1:8000/v1.
    #[arg(long, env = "KOKON_UPSTREAM_URL")]
    pub upstream_url: Option<String>,
    /// Upstream API key, if it needs one.
    #[arg(long, env = "KOKON_UPSTREAM_KEY")]
    pub upstream_key: Option<String>,
    /// Echo engine only: pause before each word, in milliseconds [default: 0].
    #[arg(long, env = "KOKON_ECHO_TOKEN_MS")]
    pub echo_token_ms: Option<u64>,
}

#[derive(Args, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    #[command(flatten)]
    #[serde(flatten)]
    pub engine: EngineArgs,
    /// Proxy to dial [default: 127.0.0.1:7400].
    #[arg(long, env = "KOKON_WORKER_PROXY")]
    pub proxy: Option<SocketAddr>,
    /// Jobs run at once [default: 2].
    #[arg(long, env = "KOKON_WORKER_MAX_JOBS")]
    pub max_jobs: Option<u32>,
    /// Price coefficient in thousandths of the registry's base price [default: 1000].
    #[arg(long, env = "KOKON_WORKER_PRICE")]
    pub price_milli: Option<u32>,
    /// Plain-HTTP address for /metrics and /healthz (port 0 = any free port) [default: 127.0.0.1:7402].
    #[arg(long, env = "KOKON_WORKER_ADMIN")]
    pub admin: Option<SocketAddr>,
    /// Paid jobs: sign a cumulative receipt after this many generated
    /// tokens, so output cut off mid-stream is still paid (0 = only at the
    /// end) [default: 64].
    #[arg(long, env = "KOKON_WORKER_RECEIPT_EVERY_TOKENS")]
    pub receipt_every_tokens: Option<u32>,
    /// Paid jobs: …or after this many milliseconds since the last receipt,
    /// whichever comes first [default: 1000].
    #[arg(long, env = "KOKON_WORKER_RECEIPT_EVERY_MS")]
    pub receipt_every_ms: Option<u64>,
}

#[derive(Args, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    /// Address of the OpenAI-compatible API [default: 127.0.0.1:8080].
    #[arg(long, env = "KOKON_CLIENT_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Proxy to send jobs to [default: 127.0.0.1:7400].
    #[arg(long, env = "KOKON_CLIENT_PROXY")]
    pub proxy: Option<SocketAddr>,
    /// Require `Authorization: Bearer <key>` on the API [default: none].
    #[arg(long, env = "KOKON_API_KEY")]
    pub api_key: Option<String>,
    /// Highest worker price coefficient accepted, in thousandths (1000 = the
    /// registry's base price) [default: 2000].
    #[arg(long, env = "KOKON_CLIENT_MAX_PRICE")]
    pub max_price_milli: Option<u32>,
    /// Public key (hex) of the proxy whose vault the channel pays, with
    /// --devnet [default: the devnet's dev-proxy key].
    #[arg(long, env = "KOKON_CLIENT_PROXY_KEY")]
    pub proxy_key: Option<String>,
    /// Host names the API answers for besides localhost, 127.0.0.1, ::1 and
    /// the listen address (comma-separated or repeated). Any other `Host`
    /// is refused, which stops DNS-rebinding pages [default: none].
    #[arg(
        long = "allow-host",
        env = "KOKON_CLIENT_ALLOW_HOSTS",
        value_delimiter = ','
    )]
    pub allow_hosts: Option<Vec<String>>,
    /// Web origins (scheme://host[:port]) allowed to call the API from a
    /// browser (CORS). A request from any other page is refused: it could
    /// spend your channel [default: none].
    #[arg(
        long = "cors-origin",
        env = "KOKON_CLIENT_CORS_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_origins: Option<Vec<String>>,
    /// Jobs run at once; more get 503 with Retry-After [default: 1024].
    #[arg(long, env = "KOKON_CLIENT_MAX_JOBS")]
    pub max_jobs: Option<usize>,
    /// Connections the API holds at once; more are closed [default: 1024].
    #[arg(long, env = "KOKON_CLIENT_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Seconds a connection has to send a request's headers (also closes
    /// idle keep-alive connections) [default: 10].
    #[arg(long, env = "KOKON_CLIENT_HEADER_TIMEOUT_SECS")]
    pub header_timeout_secs: Option<u64>,
    /// Send every call through this Oblivious HTTP relay instead of a link
    /// to --proxy: its URL for the proxy's gateway, e.g.
    /// http://relay.example:7410/gateways/main. The relay learns this
    /// machine's address and nothing else; the proxy learns what is asked
    /// (jobs stay sealed to their workers) but not who asks. The gateway's
    /// key is used only if a proxy published it in the registry, read on
    /// the chain --devnet names [default: none].
    #[arg(long, env = "KOKON_CLIENT_RELAY")]
    pub relay: Option<String>,
    /// Pay jobs with blind-signed credit tokens from the wallet at this
    /// path (created if absent), not from a channel: the proxy learns that
    /// a job is paid, not by whom. Tokens come from a channel holder
    /// (`POST /v1/credits/request` here, `POST /v1/credits/buy` at a
    /// gateway with a channel, `POST /v1/credits/accept` here; see
    /// docs/VPN.md). The proxy's credit keys are pinned only if it
    /// published them in the registry (on the chain --devnet names). With
    /// a channel too, the channel only buys tokens [default: none].
    #[arg(long, env = "KOKON_CLIENT_CREDITS")]
    pub credits: Option<PathBuf>,
    /// Where to read the keys the proxies published in the registry,
    /// without paying from it: a devnet directory (its ledger), or one
    /// holding a ton.json. For a relayed user paying by tokens alone, so
    /// that no channel names it [default: --devnet's].
    #[arg(long, env = "KOKON_CLIENT_REGISTRY_CHAIN")]
    pub registry_chain: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum RegistryCmd {
    /// Write a test-network registry that admits this build's simulated images.
    Init {
        /// Where to write it [default: $KOKON_HOME/registry.toml].
        #[arg(long)]
        path: Option<PathBuf>,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Print the registry: the file in use, or with --dir, --api or
    /// --address the registry contract on TON (read by get-methods).
    Show {
        /// The registry file [default: $KOKON_HOME/registry.toml].
        #[arg(long, env = "KOKON_REGISTRY")]
        path: Option<PathBuf>,
        #[command(flatten)]
        chain: crate::ton::ChainArgs,
    },
    /// Change the registry contract on TON, as its owner (a message from
    /// the owner's wallet), then print it.
    Set(crate::ton::SetArgs),
}

fn default_addr(s: &str) -> SocketAddr {
    s.parse().expect("valid default address")
}

pub(crate) fn policy(common: &Common) -> anyhow::Result<Arc<kokon_attest::Policy>> {
    Ok(Arc::new(policy_source(common).load()?.1))
}

fn policy_source(common: &Common) -> crate::follow::PolicySource {
    crate::follow::PolicySource {
        registry: common.registry.clone(),
        collateral: common.collateral.clone(),
    }
}

/// The node this daemon runs, following its registry while it runs (see
/// [`crate::follow`]) unless `--registry-poll-secs 0`.
fn start_following(
    common: &Common,
    node: NodeParams,
    shutdown: &CancellationToken,
) -> anyhow::Result<(kokon_tls::RaTls, Arc<kokon_attest::Policy>)> {
    let source = policy_source(common);
    let (started, policy) = source.load()?;
    let policy = Arc::new(policy);
    let tls = start_node(node, policy.clone(), shutdown)?;
    let every = common.registry_poll_secs.unwrap_or(30);
    if every > 0 {
        tokio::spawn(crate::follow::follow(
            tls.clone(),
            source,
            started,
            std::time::Duration::from_secs(every),
            shutdown.clone(),
        ));
    }
    Ok((tls, policy))
}

/// How this node proves itself: its evidence source, per `--evidence`.
fn node_params(common: &Common, role: Role, config: [u8; 32]) -> anyhow::Result<NodeParams> {
    use kokon_attest::tsm::{DEFAULT_ROOT, TsmError, open_tdx};
    let mut params = NodeParams::simulated(role, None, config);
    let root = std::path::Path::new(DEFAULT_ROOT);
    let tdx = match common.evidence.unwrap_or_default() {
        EvidenceArg::Simulated => None,
        EvidenceArg::Tdx => Some(open_tdx(root)?),
        EvidenceArg::Auto => match open_tdx(root) {
            Ok(source) => Some(source),
            Err(TsmError::NotATd(_)) => None,
            Err(e) => return Err(e.into()),
        },
    };
    match tdx {
        Some(source) => {
            params.evidence = source;
            eprintln!("evidence: TDX quotes from this TD");
        }
        None => eprintln!("evidence: SIMULATED (only test-network registries accept it)"),
    }
    Ok(params)
}

async fn run_until_signal(shutdown: CancellationToken) {
    crate::shutdown_signal().await;
    tracing::info!("shutting down: draining");
    shutdown.cancel();
}

/// Waits for `drained` after a shutdown, at most the grace (and a second).
async fn wait_drained(drained: impl std::future::Future<Output = ()>, grace: std::time::Duration) {
    if tokio::time::timeout(grace + std::time::Duration::from_secs(1), drained)
        .await
        .is_err()
    {
        tracing::warn!("drain did not finish within the grace; exiting");
    }
}

/// Binds `addr` for `flag`, with an error naming both when it is taken.
async fn bind(addr: SocketAddr, flag: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!(
            "cannot listen on {addr}: is another Kokon daemon using it? choose another with {flag}"
        )
    })
}

const NEEDS_PAID_NETWORK: &str = "--ohttp-listen publishes the gateway's keys in the registry \
     as this proxy: it needs a paid network (--devnet DIR, a devnet or a ton.json)";

pub async fn proxy(mut a: ProxyArgs) -> anyhow::Result<()> {
    let mut file: ProxyArgs = load_file(a.common.config.as_deref())?;
    merge!(
        a,
        file,
        listen,
        admin,
        max_attempts,
        job_idle_secs,
        max_links_per_address,
        max_links_per_client,
        max_credit,
        ohttp_listen,
        ohttp_rotate_secs
    );
    merge_common(&mut a.common, &mut file.common);
    let shutdown = CancellationToken::new();
    let mut cfg =
        kokon_proxy::ProxyConfig::new(a.listen.unwrap_or_else(|| default_addr("0.0.0.0:7400")));
    cfg.admin_listen = Some(a.admin.unwrap_or_else(|| default_addr("127.0.0.1:7401")));
    cfg.max_attempts = a.max_attempts.unwrap_or(3).max(1);
    cfg.job_idle_timeout = std::time::Duration::from_secs(a.job_idle_secs.unwrap_or(120).max(1));
    cfg.max_links_per_address = a.max_links_per_address.unwrap_or(cfg.max_links_per_address);
    cfg.max_links_per_client = a.max_links_per_client.unwrap_or(cfg.max_links_per_client);
    cfg.drain_grace = a.common.drain_grace();
    let ohttp = a.ohttp_listen.map(|listen| {
        let mut g = kokon_oblivious::GatewayConfig::new(listen);
        g.limits.drain_grace = cfg.drain_grace;
        if let Some(s) = a.ohttp_rotate_secs {
            g.key_rotation = std::time::Duration::from_secs(s.max(60));
        }
        g
    });
    for (addr, flag) in [
        (Some(cfg.listen), "--listen"),
        (cfg.admin_listen, "--admin"),
        (a.ohttp_listen, "--ohttp-listen"),
    ] {
        if let Some(addr) = addr {
            drop(bind(addr, flag).await?);
        }
    }
    let node = node_params(&a.common, Role::Proxy, config_sha256(&cfg))?;
    let (tls, policy) = start_following(&a.common, node, &shutdown)?;
    let routing = policy.routing;
    let pay = match a.common.devnet()? {
        Some((mut spec, ledger)) => {
            spec.routing = routing;
            if let Some(c) = &a.max_credit {
                spec.max_credit = Some(crate::wallet::parse_ton(c).context("--max-credit")?);
            }
            let books = pay::proxy_books(&spec, &ledger, &a.common.wallet_or("dev-proxy")).await?;
            eprintln!(
                "payments: devnet {}, vault {}",
                spec.dir.display(),
                books.vault()
            );
            let issuer = pay::credit_issuer(&spec, &books)?;
            Some(
                kokon_proxy::ProxyPay::new(
                    books,
                    spec.economics.clone(),
                    ledger.settlement(),
                    spec.min_claim(),
                    spec.claim_every,
                )
                .with_credits(issuer),
            )
        }
        None => None,
    };
    if ohttp.is_some() && pay.is_none() {
        bail!(NEEDS_PAID_NETWORK);
    }
    let h = kokon_proxy::start_with(cfg, tls, pay, shutdown.clone()).await?;
    eprintln!(
        "proxy listening on {} (metrics: http://{}/metrics)",
        h.addr,
        h.admin_addr.map(|a| a.to_string()).unwrap_or_default()
    );
    if let Some(g) = ohttp {
        // The gateway's keys are published in the registry under this
        // proxy's key (its books'), so a paid network it must be.
        let publisher = h.publisher().context(NEEDS_PAID_NETWORK)?;
        let g = kokon_oblivious::start(g, h.clone(), publisher, shutdown.clone()).await?;
        let a = g.addr;
        eprintln!("Oblivious HTTP gateway on {a} (relays: kokon relay --gateway NAME={a})");
    }
    run_until_signal(shutdown).await;
    wait_drained(h.drained(), a.common.drain_grace()).await;
    Ok(())
}

fn merge_common(a: &mut Common, file: &mut Common) {
    merge!(
        a,
        file,
        registry,
        registry_poll_secs,
        devnet,
        wallet,
        min_claim,
        evidence,
        collateral,
        drain_secs
    );
}

/// Builds the engine a worker runs.
pub async fn build_engine(e: &EngineArgs) -> anyhow::Result<Arc<dyn Engine>> {
    let kind = e.engine.unwrap_or_default();
    // The echo engine never pretends to be a real model.
    let default_model = if kind == EngineKind::Echo {
        "echo"
    } else {
        kokon_models::DEFAULT_MODEL
    };
    let model = e.model.clone().unwrap_or_else(|| default_model.to_string());
    let context = e.context.unwrap_or(2048);
    Ok(match kind {
        EngineKind::Echo => {
            let delay = std::time::Duration::from_millis(e.echo_token_ms.unwrap_or(0));
            Arc::new(EchoEngine::new(model).with_delay(delay))
        }
        EngineKind::Builtin => {
            let path = crate::model::ensure(&model).await?;
            let threads = e.threads.unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get() as u32)
                    .unwrap_or(2)
            });
            let model_sha256 = kokon_models::find(&model)
                .and_then(|e| hex::decode(e.sha256).ok())
                .and_then(|h| h.try_into().ok());
            let cfg = LlamaConfig {
                model_sha256,
                name: model,
                context_len: context,
                threads,
            };
            Arc::new(tokio::task::spawn_blocking(move || LlamaEngine::load(&path, cfg)).await??)
        }
        EngineKind::Upstream => {
            let Some(base_url) = e.upstream_url.clone() else {
                bail!("--engine upstream needs --upstream-url")
            };
            let mut cfg = UpstreamConfig {
                base_url,
                api_key: e.upstream_key.clone(),
                models: vec![],
                context_len: context,
            };
            let probe = UpstreamEngine::new(cfg.clone())?;
            cfg.models = match &e.model {
                Some(m) => vec![m.clone()],
                None => probe
                    .discover_models()
                    .await
                    .context("asking the upstream for its models (or pass --model)")?,
            };
            if cfg.models.is_empty() {
                bail!("the upstream serves no models");
            }
            Arc::new(UpstreamEngine::new(cfg)?)
        }
    })
}

pub async fn worker(mut a: WorkerArgs) -> anyhow::Result<()> {
    let mut file: WorkerArgs = load_file(a.common.config.as_deref())?;
    merge!(
        a,
        file,
        proxy,
        max_jobs,
        price_milli,
        admin,
        receipt_every_tokens,
        receipt_every_ms
    );
    merge_common(&mut a.common, &mut file.common);
    merge!(
        a.engine,
        file.engine,
        engine,
        model,
        threads,
        context,
        upstream_url,
        upstream_key,
        echo_token_ms
    );
    let shutdown = CancellationToken::new();
    let engine = build_engine(&a.engine).await?;
    let mut cfg =
        kokon_worker::WorkerConfig::new(a.proxy.unwrap_or_else(|| default_addr("127.0.0.1:7400")));
    cfg.max_jobs = a.max_jobs.unwrap_or(2).max(1);
    cfg.price_milli = a.price_milli.unwrap_or(1000);
    cfg.receipt_every_tokens = a.receipt_every_tokens.unwrap_or(cfg.receipt_every_tokens);
    if let Some(ms) = a.receipt_every_ms {
        cfg.receipt_every = std::time::Duration::from_millis(ms.max(1));
    }
    let mut node = node_params(&a.common, Role::Worker, config_sha256(&cfg))?;
    kokon_worker::declare(&mut node, engine.as_ref());
    let keys = kokon_worker::seal_to(&mut node);
    let (tls, _) = start_following(&a.common, node, &shutdown)?;
    let models: Vec<String> = engine.models().into_iter().map(|m| m.name).collect();
    let decl = engine.declaration();
    eprintln!(
        "worker serving {models:?} ({decl} engine), dialing proxy {}",
        cfg.proxy
    );
    if let Some(origin) = &decl.upstream {
        tracing::warn!(
            upstream = %origin,
            "the upstream engine sends every job's prompt and answer out of this TEE; \
             the certificate declares the upstream, and a production registry admits \
             this worker only if it lists it"
        );
    }
    let mut w = kokon_worker::Worker::new(cfg, engine, tls).with_keys(keys);
    if let Some((spec, ledger)) = a.common.devnet()? {
        let books = pay::worker_books(&spec, &a.common.wallet_or("dev-worker-0"))?;
        eprintln!(
            "payments: devnet {}, payout key {}",
            spec.dir.display(),
            books.payout()
        );
        let prices = spec.economics.prices.clone();
        w = w.with_pay(kokon_worker::WorkerPay::new(
            books,
            prices,
            ledger.settlement(),
            spec.min_claim(),
            spec.claim_every,
        ));
    }
    let admin = bind(
        a.admin.unwrap_or_else(|| default_addr("127.0.0.1:7402")),
        "--admin",
    )
    .await?;
    eprintln!("worker metrics: http://{}/metrics", admin.local_addr()?);
    tokio::spawn({
        let (w, s) = (w.clone(), shutdown.clone());
        async move { w.serve_admin(admin, s).await }
    });
    // At a signal the worker drains: it tells the proxy to send no new
    // jobs and returns once the running ones have finished.
    let serve = w.serve(shutdown.clone());
    let mut serve = std::pin::pin!(serve);
    tokio::select! {
        _ = &mut serve => return Ok(()),
        _ = run_until_signal(shutdown.clone()) => {}
    }
    wait_drained(serve, a.common.drain_grace()).await;
    Ok(())
}

pub async fn client(mut a: ClientArgs) -> anyhow::Result<()> {
    let mut file: ClientArgs = load_file(a.common.config.as_deref())?;
    merge!(
        a,
        file,
        listen,
        proxy,
        api_key,
        max_price_milli,
        proxy_key,
        allow_hosts,
        cors_origins,
        max_jobs,
        max_connections,
        header_timeout_secs,
        relay,
        credits,
        registry_chain
    );
    merge_common(&mut a.common, &mut file.common);
    let shutdown = CancellationToken::new();
    let mut cfg = kokon_gateway::GatewayConfig::new(
        a.listen.unwrap_or_else(|| default_addr("127.0.0.1:8080")),
        a.proxy.unwrap_or_else(|| default_addr("127.0.0.1:7400")),
    );
    cfg.api_key = a.api_key;
    if let Some(cap) = a.max_price_milli {
        cfg.max_price_milli = Some(cap);
    }
    cfg.allow_hosts = a.allow_hosts.unwrap_or_default();
    cfg.cors_origins = a.cors_origins.unwrap_or_default();
    cfg.max_concurrent_jobs = a.max_jobs.unwrap_or(cfg.max_concurrent_jobs);
    cfg.public.max_connections = a.max_connections.unwrap_or(cfg.public.max_connections);
    if let Some(s) = a.header_timeout_secs {
        cfg.public.header_read_timeout = std::time::Duration::from_secs(s.max(1));
    }
    cfg.public.drain_grace = a.common.drain_grace();
    if let Some(r) = &a.relay
        && !(r.starts_with("http://") || r.starts_with("https://"))
    {
        bail!(
            "--relay {r:?}: expected an http:// or https:// URL, e.g. http://relay:7410/gateways/main"
        );
    }
    cfg.relay = a.relay;
    drop(bind(cfg.listen, "--listen").await?);
    let node = NodeParams::simulated(Role::Client, None, config_sha256(&cfg));
    let (tls, policy) = start_following(&a.common, node, &shutdown)?;
    let devnet = a.common.devnet()?;
    let chain = devnet.as_ref().map(|(_, ledger)| ledger.settlement());
    let pay = match devnet {
        Some((spec, ledger)) => {
            // The channel pays the devnet's dev proxy unless --proxy-key names another.
            let proxy = match &a.proxy_key {
                Some(k) => kokon_money::PublicKey::from_hex(k)
                    .context("--proxy-key must be 64 hex digits")?,
                None => spec.key("dev-proxy")?.public(),
            };
            let books =
                pay::client_books(&spec, &ledger, &a.common.wallet_or("dev-client"), proxy).await?;
            eprintln!(
                "payments: devnet {}, channel {}",
                spec.dir.display(),
                books.channel().id
            );
            let prices = spec.economics.prices.clone();
            Some(kokon_gateway::ClientPay::new(
                books,
                prices,
                policy,
                Some(ledger.settlement()),
            ))
        }
        None => None,
    };
    // A relayed or credit-paying client checks the keys it is handed
    // against what the proxies published in the registry (on its chain).
    let chain = match &a.registry_chain {
        Some(dir) => Some(
            PaySpec::load(dir.clone())
                .and_then(|s| s.ledger())
                .with_context(|| format!("--registry-chain {}", dir.display()))?
                .settlement(),
        ),
        None => chain,
    };
    let registry = match (&cfg.relay, &a.credits, chain) {
        (None, None, _) => None,
        (_, _, Some(chain)) => Some(chain),
        (_, _, None) => bail!(
            "--relay and --credits check the keys the proxy hands out against the ones it \
             published in the registry: say where the registry's chain is with \
             --registry-chain DIR (read only) or --devnet DIR (a devnet, or a ton.json for TON)"
        ),
    };
    let credits = match &a.credits {
        Some(path) => {
            let registry = load_registry(&registry_path(a.common.registry.clone()))?;
            eprintln!("jobs are paid by credit tokens from {}", path.display());
            Some(kokon_gateway::CreditPay::new(
                path.clone(),
                registry.economics().prices,
            ))
        }
        None => None,
    };
    let h_relay = cfg.relay.clone();
    let h = kokon_gateway::start_paying(cfg, tls, pay, credits, registry, shutdown.clone()).await?;
    eprintln!("OpenAI-compatible API on http://{}/v1", h.addr);
    if let Some(r) = &h_relay {
        eprintln!("every call goes through the Oblivious HTTP relay {r}");
    }
    run_until_signal(shutdown).await;
    wait_drained(h.drained(), a.common.drain_grace()).await;
    Ok(())
}

pub async fn registry(cmd: RegistryCmd) -> anyhow::Result<()> {
    match cmd {
        RegistryCmd::Init { path, force } => {
            let path = registry_path(path);
            if path.exists() && !force {
                bail!("{} exists; pass --force to replace it", path.display());
            }
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&path, Registry::local_test_network().to_toml())?;
            println!(
                "wrote test-network registry (simulated attestation allowed) to {}",
                path.display()
            );
        }
        RegistryCmd::Show { chain, .. }
            if chain.dir.is_some() || chain.api.is_some() || chain.address.is_some() =>
        {
            crate::ton::registry_show(chain).await?;
        }
        RegistryCmd::Show { path, .. } => {
            let path = registry_path(path);
            print!("{}", load_registry(&path)?.to_toml());
        }
        RegistryCmd::Set(a) => crate::ton::registry_set(a).await?,
    }
    Ok(())
}
