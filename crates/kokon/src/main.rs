//! `kokon`: the command-line entry point. A thin shell over the library crates.

mod attest;
mod config;
mod daemons;
mod follow;
mod model;
mod pccs;
mod relay;
mod ton;
mod up;
mod wallet;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "kokon",
    version,
    about = "Kokon: confidential AI inference, paid per token in TON.",
    long_about = "Kokon routes AI jobs from clients through proxies to GPU workers running in TEEs. \
Every hop is RA-TLS (TLS whose certificate carries a TEE attestation), so no operator on the path \
can read prompts or results.\n\n\
Start here:  kokon up          (a whole local network with a real model, one command)\n\
Then:        curl http://127.0.0.1:8080/v1/models\n\n\
Files live under the Kokon home: $KOKON_HOME, default ~/.kokon. Logs: KOKON_LOG=debug."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a whole local network (registry, proxy, workers, OpenAI gateway) in one process.
    Up(up::UpArgs),
    /// Run a proxy: accepts worker and client links and routes jobs.
    /// `kokon proxy vault` shows (and withdraws from) the proxy's vault.
    Proxy(ProxyCli),
    /// Run a worker: dials a proxy and serves jobs with an engine.
    /// `kokon worker earnings|claim` show and claim what it earned.
    Worker(WorkerCli),
    /// Run a client gateway: an OpenAI-compatible API in front of a proxy
    /// (over a link, or with --relay through an Oblivious HTTP relay).
    Client(daemons::ClientArgs),
    /// Run an Oblivious HTTP relay (what a VPN provider runs): forwards
    /// encapsulated requests to proxies' gateways; it learns who asks, never what.
    Relay(relay::RelayArgs),
    /// Fetch and inspect models.
    #[command(subcommand)]
    Model(model::ModelCmd),
    /// Inspect attestation: a peer's certificate, a TDX quote, Intel collateral.
    #[command(subcommand)]
    Attest(attest::AttestCmd),
    /// Manage the registry file daemons verify peers against.
    #[command(subcommand)]
    Registry(daemons::RegistryCmd),
    /// Keys and balances on the devnet ledger.
    Wallet {
        #[command(subcommand)]
        cmd: wallet::WalletCmd,
        #[command(flatten)]
        w: wallet::Where,
    },
    /// The client's payment channel: open, top up, status, close.
    Channel {
        #[command(subcommand)]
        cmd: wallet::ChannelCmd,
        #[command(flatten)]
        w: wallet::Where,
    },
}

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
struct WorkerCli {
    #[command(subcommand)]
    money: Option<wallet::WorkerMoneyCmd>,
    #[command(flatten)]
    args: daemons::WorkerArgs,
}

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
struct ProxyCli {
    #[command(subcommand)]
    money: Option<ProxyMoneyCmd>,
    #[command(flatten)]
    args: daemons::ProxyArgs,
}

#[derive(clap::Subcommand)]
enum ProxyMoneyCmd {
    /// The proxy's vault: balance, billed, paid, owed to workers, commission.
    Vault(wallet::VaultArgs),
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KOKON_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: logs sent to a file or a pipe stay plain.
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // Per-job lines (request ids, models, outcomes) are debug-level: with
    // their timestamps they link one client's jobs to each other. Whoever
    // turns them on is told so.
    use tracing::Level;
    let per_job = tracing::enabled!(target: "kokon_worker", Level::DEBUG)
        || tracing::enabled!(target: "kokon_proxy", Level::DEBUG)
        || tracing::enabled!(target: "kokon_gateway", Level::DEBUG);
    if per_job {
        // Not through tracing: the filter that turned debug on may hide warnings.
        eprintln!(
            "WARNING: debug logging is on (KOKON_LOG): per-job lines with request ids and \
             outcomes are written, which link jobs to each other; leave it off in production"
        );
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The cause chain on one line, without a backtrace, skipping causes whose
/// text the message already contains (many error types print their source).
fn one_line(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !msg.contains(&text) {
            if !msg.is_empty() {
                msg.push_str(": ");
            }
            msg.push_str(&text);
        }
    }
    msg
}

fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let ok = |r: anyhow::Result<()>| r.map(|()| std::process::ExitCode::SUCCESS);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        ok(match cli.command {
            Command::Attest(c) => return attest::run(c).await,
            Command::Up(a) => up::run(a).await,
            Command::Proxy(ProxyCli {
                money: Some(ProxyMoneyCmd::Vault(v)),
                ..
            }) => wallet::vault(v).await,
            Command::Proxy(p) => daemons::proxy(p.args).await,
            Command::Worker(WorkerCli { money: Some(m), .. }) => wallet::worker_money(m).await,
            Command::Worker(w) => daemons::worker(w.args).await,
            Command::Wallet { cmd, w } => wallet::wallet(cmd, w).await,
            Command::Channel { cmd, w } => wallet::channel(cmd, w).await,
            Command::Client(a) => daemons::client(a).await,
            Command::Relay(a) => relay::relay(a).await,
            Command::Model(c) => model::run(c).await,
            Command::Registry(c) => daemons::registry(c).await,
        })
    })
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
