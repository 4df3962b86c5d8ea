//! `kokon relay`: the Oblivious HTTP relay a VPN provider runs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::config::{load_file, merge};

#[derive(Args, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayArgs {
    /// TOML file with any of these settings (flags and env vars win).
    #[arg(long, env = "KOKON_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Registry file the gateways' certificates are verified against
    /// [default: $KOKON_HOME/registry.toml].
    #[arg(long, env = "KOKON_REGISTRY")]
    pub registry: Option<PathBuf>,
    /// Intel collateral cache for verifying TDX gateways offline
    /// [default: $KOKON_HOME/collateral].
    #[arg(long, env = "KOKON_COLLATERAL")]
    pub collateral: Option<PathBuf>,
    /// Where clients connect, plain HTTP: bind it inside the VPN tunnel or
    /// behind your TLS front [default: 127.0.0.1:7410].
    #[arg(long, env = "KOKON_RELAY_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Plain-HTTP address for /metrics and /healthz [default: 127.0.0.1:7411].
    #[arg(long, env = "KOKON_RELAY_ADMIN")]
    pub admin: Option<SocketAddr>,
    /// A gateway to relay to, as NAME=HOST:PORT (a proxy's --ohttp-listen
    /// address); repeat for several. Clients post to /gateways/NAME.
    #[arg(long = "gateway", env = "KOKON_RELAY_GATEWAYS", value_delimiter = ',')]
    pub gateways: Option<Vec<String>>,
    /// Largest encapsulated request, in bytes [default: 4259840 (4 MiB + 64 KiB)].
    #[arg(long, env = "KOKON_RELAY_MAX_REQUEST")]
    pub max_request: Option<usize>,
    /// Largest answer passed back, in bytes; a longer one is cut [default: 67108864].
    #[arg(long, env = "KOKON_RELAY_MAX_RESPONSE")]
    pub max_response: Option<usize>,
    /// Requests relayed at once in total; more get 429 [default: 512].
    #[arg(long, env = "KOKON_RELAY_MAX_IN_FLIGHT")]
    pub max_in_flight: Option<usize>,
    /// Requests in flight from one client address [default: 16].
    #[arg(long, env = "KOKON_RELAY_MAX_IN_FLIGHT_PER_CLIENT")]
    pub max_in_flight_per_client: Option<usize>,
    /// Requests per second from one client address (a burst of as many);
    /// more get 429 with Retry-After [default: 20].
    #[arg(long, env = "KOKON_RELAY_RATE_PER_CLIENT")]
    pub rate_per_client: Option<u32>,
    /// At SIGTERM or Ctrl-C, seconds the requests in flight get to finish [default: 30].
    #[arg(long, env = "KOKON_DRAIN_SECS")]
    pub drain_secs: Option<u64>,
}

/// `NAME=HOST:PORT`.
fn gateway(s: &str) -> anyhow::Result<kokon_relay::GatewayTarget> {
    let Some((name, addr)) = s.split_once('=') else {
        bail!("--gateway {s:?}: expected NAME=HOST:PORT, e.g. main=203.0.113.7:7403");
    };
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        bail!("--gateway {s:?}: the name may hold letters, digits, '-' and '_' only");
    }
    let addr = addr
        .parse()
        .with_context(|| format!("--gateway {s:?}: {addr:?} is not HOST:PORT"))?;
    Ok(kokon_relay::GatewayTarget {
        name: name.to_string(),
        addr,
    })
}

pub async fn relay(mut a: RelayArgs) -> anyhow::Result<()> {
    let mut file: RelayArgs = load_file(a.config.as_deref())?;
    merge!(
        a,
        file,
        registry,
        collateral,
        listen,
        admin,
        gateways,
        max_request,
        max_response,
        max_in_flight,
        max_in_flight_per_client,
        rate_per_client,
        drain_secs
    );
    let gateways = a
        .gateways
        .unwrap_or_default()
        .iter()
        .map(|g| gateway(g))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if gateways.is_empty() {
        bail!("no gateway to relay to: pass --gateway NAME=HOST:PORT (a proxy's --ohttp-listen)");
    }
    let listen = a
        .listen
        .unwrap_or_else(|| "127.0.0.1:7410".parse().expect("valid"));
    let mut cfg = kokon_relay::RelayConfig::new(listen, gateways);
    cfg.admin_listen = Some(
        a.admin
            .unwrap_or_else(|| "127.0.0.1:7411".parse().expect("valid")),
    );
    cfg.max_request = a.max_request.unwrap_or(cfg.max_request);
    cfg.max_response = a.max_response.unwrap_or(cfg.max_response);
    cfg.max_in_flight = a.max_in_flight.unwrap_or(cfg.max_in_flight).max(1);
    cfg.max_in_flight_per_client = a
        .max_in_flight_per_client
        .unwrap_or(cfg.max_in_flight_per_client)
        .max(1);
    cfg.requests_per_sec_per_client = a.rate_per_client.unwrap_or(cfg.requests_per_sec_per_client);
    let grace = Duration::from_secs(a.drain_secs.unwrap_or(30));
    cfg.limits.drain_grace = grace;
    let source = crate::follow::PolicySource {
        registry: a.registry,
        collateral: a.collateral,
    };
    let policy = Arc::new(source.load()?.1);
    let shutdown = CancellationToken::new();
    let clock: Arc<dyn kokon_attest::Clock> = Arc::new(kokon_attest::SystemClock);
    let names: Vec<String> = cfg.gateways.iter().map(|g| g.name.clone()).collect();
    let h = kokon_relay::start(cfg, policy, clock, shutdown.clone())
        .await
        .context("cannot listen: is another relay using the address? choose another with --listen/--admin")?;
    for n in &names {
        eprintln!("relaying http://{}/gateways/{n}", h.addr);
    }
    if let Some(a) = h.admin_addr {
        eprintln!("relay metrics: http://{a}/metrics");
    }
    crate::shutdown_signal().await;
    shutdown.cancel();
    tokio::time::sleep(grace.min(Duration::from_secs(1))).await;
    Ok(())
}
