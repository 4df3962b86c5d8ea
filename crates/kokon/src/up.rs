//! `kokon up`: a whole local network in one process.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Args;
use kokon_node::pay::PaySpec;
use kokon_node::{LocalNet, NetSpec, WorkerSpec};

use crate::daemons::{EngineArgs, build_engine};

/// Blind tokens `kokon up --relay` buys on the devnet channel at start, in
/// nanotons (0.001 TON: the change of each job comes back, so this pays
/// for many).
const UP_CREDITS: u128 = 1_000_000;

#[derive(Args)]
pub struct UpArgs {
    /// Workers to start.
    #[arg(long, default_value_t = 1, env = "KOKON_WORKERS")]
    pub workers: u32,
    /// Address of the OpenAI-compatible API.
    #[arg(long, default_value = "127.0.0.1:8080", env = "KOKON_LISTEN")]
    pub listen: SocketAddr,
    /// Address of the proxy's RA-TLS port (0 = any free port).
    #[arg(long, default_value = "127.0.0.1:0", env = "KOKON_PROXY_LISTEN")]
    pub proxy_listen: SocketAddr,
    /// Address of the proxy's /metrics and /healthz (0 = any free port).
    #[arg(long, default_value = "127.0.0.1:0", env = "KOKON_PROXY_ADMIN")]
    pub metrics_listen: SocketAddr,
    /// Jobs each worker runs at once.
    #[arg(long, default_value_t = 2, env = "KOKON_WORKER_MAX_JOBS")]
    pub max_jobs: u32,
    /// Require `Authorization: Bearer <key>` on the API.
    #[arg(long, env = "KOKON_API_KEY")]
    pub api_key: Option<String>,
    /// Host names the API answers for besides localhost, 127.0.0.1, ::1 and
    /// the listen address (needed with --listen 0.0.0.0:PORT: the names or
    /// addresses others reach this machine by). Other hosts are refused.
    #[arg(long = "allow-host", env = "KOKON_ALLOW_HOSTS", value_delimiter = ',')]
    pub allow_hosts: Vec<String>,
    /// Web origins (scheme://host[:port]) allowed to call the API from a
    /// browser; a request from any other page is refused (it could spend
    /// the channel).
    #[arg(
        long = "cors-origin",
        env = "KOKON_CORS_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,
    /// Where payments settle: `devnet` (an embedded ledger under
    /// $KOKON_HOME/devnet, funded automatically), `ton-sandbox` (Kokon's
    /// Tolk contracts on a local TON chain, the TON emulator behind a
    /// toncenter v3 API, under $KOKON_HOME/ton-sandbox; needs Node.js and
    /// `npm ci` in contracts/) or `none` (unpaid).
    #[arg(long, default_value = "devnet", env = "KOKON_SETTLEMENT")]
    pub settlement: Settlement,
    /// The money directory (ledger or chain state, keys, books)
    /// [default: $KOKON_HOME/devnet or $KOKON_HOME/ton-sandbox].
    #[arg(long, env = "KOKON_DEVNET")]
    pub devnet: Option<std::path::PathBuf>,
    /// On Ctrl-C or SIGTERM, seconds the jobs in flight get to finish before
    /// the network stops anyway.
    #[arg(long, default_value_t = 30, env = "KOKON_DRAIN_SECS")]
    pub drain_secs: u64,
    /// Also run the VPN path: the proxy's Oblivious HTTP gateway and a
    /// relay on --relay-listen, with the API's every call going through the
    /// relay (as a VPN user's would).
    #[arg(long, env = "KOKON_RELAY")]
    pub relay: bool,
    /// Address of the relay, with --relay.
    #[arg(long, default_value = "127.0.0.1:7410", env = "KOKON_RELAY_LISTEN")]
    pub relay_listen: SocketAddr,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Settlement backends `kokon up` can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Settlement {
    Devnet,
    TonSandbox,
    None,
}

pub async fn run(a: UpArgs) -> anyhow::Result<()> {
    let engine = build_engine(&a.engine).await?;
    let model = engine
        .models()
        .first()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    let workers = (0..a.workers.max(1))
        .map(|_| WorkerSpec {
            max_jobs: a.max_jobs.max(1),
            ..WorkerSpec::new(engine.clone())
        })
        .collect();
    let mut spec = NetSpec::new(workers);
    spec.gateway_listen = a.listen;
    spec.proxy_listen = a.proxy_listen;
    spec.proxy_admin = Some(a.metrics_listen);
    spec.api_key = a.api_key.clone();
    spec.allow_hosts = a.allow_hosts.clone();
    spec.cors_origins = a.cors_origins.clone();
    spec.drain_grace = std::time::Duration::from_secs(a.drain_secs);
    spec.relay_listen = a.relay.then_some(a.relay_listen);
    let mut chain = None;
    match a.settlement {
        Settlement::Devnet => {
            spec.payments = Some(PaySpec::dev(devnet_dir(&a)));
            // Through the relay, jobs are paid by blind tokens the channel buys.
            spec.credits = a.relay.then_some(UP_CREDITS);
        }
        Settlement::TonSandbox => {
            let dir = devnet_dir(&a);
            eprintln!("starting the TON sandbox chain in {}…", dir.display());
            let c =
                crate::ton::start_local_chain(&dir, &spec.registry, &a.proxy_listen.to_string())
                    .await
                    .context("starting the TON sandbox chain")?;
            // The chain's registry is the one the daemons trust.
            spec.registry = crate::ton::registry_from_chain(&spec.registry, &c.registry);
            spec.payments = Some(crate::ton::pay_spec(dir, &c.file));
            chain = Some(c);
        }
        Settlement::None => {}
    }
    let credits = spec.credits;
    let net = LocalNet::start(spec).await?;
    if let Some(c) = &chain {
        crate::ton::publish_proxy(&devnet_dir(&a), c, &net.proxy.addr.to_string())
            .await
            .context("listing the proxy in the registry contract")?;
    }
    print_banner(&net, &model, a.workers.max(1), a.api_key.is_some(), credits);
    if let Some(ledger) = net.ledger() {
        print_payments(
            &net,
            ledger.settlement().as_ref(),
            &devnet_dir(&a),
            chain.as_ref(),
        )
        .await;
    }
    crate::shutdown_signal().await;
    eprintln!(
        "stopping: letting jobs in flight finish (at most {} s)…",
        a.drain_secs
    );
    if !net
        .drain(std::time::Duration::from_secs(a.drain_secs))
        .await
    {
        eprintln!(
            "some jobs were still running after {} s; stopped anyway",
            a.drain_secs
        );
    }
    if let Some(c) = chain {
        c.chain.stop().await;
    }
    Ok(())
}

fn devnet_dir(a: &UpArgs) -> std::path::PathBuf {
    let name = match a.settlement {
        Settlement::TonSandbox => "ton-sandbox",
        _ => "devnet",
    };
    a.devnet
        .clone()
        .unwrap_or_else(|| kokon_models::kokon_home().join(name))
}

async fn print_payments(
    net: &LocalNet,
    ledger: &dyn kokon_pay::Settlement,
    dir: &std::path::Path,
    chain: Option<&crate::ton::LocalChain>,
) {
    let Some(pay) = net.proxy.pay() else { return };
    let vault = pay.books().await.vault();
    let stake = ledger
        .vault(vault)
        .await
        .ok()
        .flatten()
        .map_or(0, |v| v.balance);
    match chain {
        Some(c) => {
            println!(
                "Payments settle on the TON sandbox chain ({}).",
                dir.display()
            );
            println!("  TON API:     {} (toncenter v3)", c.file.endpoint);
            println!(
                "  registry:    {} (`kokon registry show --dir {}`)",
                c.file.registry,
                dir.display()
            );
        }
        None => println!("Payments settle on the devnet ledger ({}).", dir.display()),
    }
    println!("  proxy vault: {vault} holds {}", crate::wallet::ton(stake));
    println!("  dev client:  a funded channel; see `kokon channel status`");
    println!("  every response's usage carries `cost_nanoton`");
    println!();
}

fn print_banner(net: &LocalNet, model: &str, workers: u32, auth: bool, credits: Option<u128>) {
    let base = net.base_url();
    let metrics = net
        .proxy
        .admin_addr
        .map(|a| format!("http://{a}/metrics"))
        .unwrap_or_default();
    let auth_flag = if auth {
        " -H 'Authorization: Bearer $KOKON_API_KEY'"
    } else {
        ""
    };
    println!("Kokon local network is up.");
    println!("  attestation: SIMULATED (test network only; see docs/ATTESTATION.md)");
    println!("  model:       {model} on {workers} worker(s)");
    println!("  proxy:       {} (metrics: {metrics})", net.proxy.addr);
    if let (Some(relay), Some(gw)) = (&net.relay, net.ohttp_gateway) {
        println!(
            "  OHTTP gateway: {gw} (the proxy's; keys at https://{gw}/.well-known/ohttp-gateway)"
        );
        println!(
            "  relay:       http://{}/gateways/{} (sees who asks, never what)",
            relay.addr,
            kokon_node::RELAYED_GATEWAY
        );
        println!("  base URL:    {base} (every call goes through the relay)");
        if let Some(amount) = credits {
            println!(
                "  credits:     {amount} nanotons of blind tokens bought on the channel; \
                 jobs are paid by tokens, the channel is never named (balance: {base}/credits)"
            );
        }
    } else {
        println!("  base URL:    {base}");
    }
    println!();
    println!("Try it:");
    println!(
        "  curl -s {base}/chat/completions -H 'Content-Type: application/json'{auth_flag} \\\n    -d '{{\"model\": \"{model}\", \"temperature\": 0, \"messages\": [{{\"role\": \"system\", \"content\": \"Answer in one English sentence.\"}}, {{\"role\": \"user\", \"content\": \"What is the capital of France?\"}}]}}'"
    );
    println!();
    println!("Press Ctrl-C to stop.");
}
