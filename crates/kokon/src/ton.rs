//! `kokon up --settlement ton-sandbox`: the local network's money and
//! registry on the TON sandbox chain; and `kokon registry show|set` for a
//! registry contract on any TON API.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use kokon_attest::Registry;
use kokon_money::{Address, Economics, PublicKey, SecretKey};
use kokon_node::pay::{PaySpec, TonFile};
use kokon_pay::SystemClock;
use kokon_ton::cells::Stakes;
use kokon_ton::registry::{self, Change, ROLE_PROXY, ROLE_WORKER, RegistryState};
use kokon_ton::sandbox::{SandboxChain, contracts_dir};
use kokon_ton::wallet::WalletKind;
use kokon_ton::{Network, TonConfig, TonSettlement};

use crate::wallet::ton;

/// What the registry owner's wallet gets from the faucet, for the
/// registry's rent reserve and the owner's messages.
const OWNER_FUNDS: u128 = 10_000_000_000;
const REGISTRY_RESERVE: u128 = 1_000_000_000;

/// A started sandbox chain with Kokon's registry on it.
pub struct LocalChain {
    pub chain: SandboxChain,
    pub file: TonFile,
    pub registry: RegistryState,
}

fn key(dir: &Path, name: &str) -> anyhow::Result<SecretKey> {
    Ok(kokon_pay::keys::load_or_create(
        &dir.join("keys").join(format!("{name}.key")),
    )?)
}

fn hash32(hex_str: &str) -> anyhow::Result<[u8; 32]> {
    let v = hex::decode(hex_str).with_context(|| format!("`{hex_str}` is not hex"))?;
    v.try_into()
        .map_err(|_| anyhow::anyhow!("`{hex_str}` is not 32 bytes"))
}

/// The changes that make the chain's registry say what `want` says
/// (images, models) and list the dev proxy; none if it already does.
fn changes(
    have: &RegistryState,
    want: &Registry,
    proxy: (PublicKey, Address, String),
) -> anyhow::Result<Vec<Change>> {
    let mut roles: std::collections::BTreeMap<[u8; 32], u8> = Default::default();
    for h in &want.proxy_images {
        *roles.entry(hash32(h)?).or_default() |= ROLE_PROXY;
    }
    for h in &want.worker_images {
        *roles.entry(hash32(h)?).or_default() |= ROLE_WORKER;
    }
    let mut out: Vec<Change> = roles
        .into_iter()
        .filter(|(h, r)| !have.images.contains(&(*h, *r)))
        .map(|(hash, roles)| Change::Image { hash, roles })
        .collect();
    for (name, hashes) in want.models.iter().flatten() {
        for h in hashes {
            let hash = hash32(h)?;
            if !have.models.contains(&(hash, name.clone())) {
                out.push(Change::Model {
                    hash,
                    name: Some(name.clone()),
                });
            }
        }
    }
    for origin in want.upstreams.iter().flatten() {
        if !have.upstreams.contains(origin) {
            out.push(Change::Upstream {
                origin: origin.clone(),
                remove: false,
            });
        }
    }
    let td = want.td_policy()?;
    if have.td != td {
        out.push(Change::TdPolicy(td));
    }
    if !have.proxies.iter().any(|p| p.key == proxy.0) {
        out.push(Change::Proxy {
            key: proxy.0,
            entry: Some((proxy.1, proxy.2)),
        });
    }
    Ok(out)
}

/// Starts the sandbox chain (durable in `dir/chain.json`), deploys the
/// registry owned by the `dev-registry` key, publishes `registry`'s images
/// and models and the dev proxy, and writes `dir/ton.json`.
pub async fn start_local_chain(
    dir: &Path,
    registry: &Registry,
    proxy_endpoint: &str,
) -> anyhow::Result<LocalChain> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let chain = SandboxChain::start(&contracts_dir(), Some(&dir.join("chain.json"))).await?;
    let economics = registry.economics();
    let ton = TonSettlement::new(
        TonConfig::new(Network::Sandbox, chain.url()),
        Arc::new(SystemClock),
    )?;
    let owner = key(dir, "dev-registry")?;
    let owner_wallet = ton.wallet_of(&owner.public())?;
    if ton.api().account(&owner_wallet).await?.balance < OWNER_FUNDS / 2 {
        ton.api().sandbox_fund(&owner_wallet, OWNER_FUNDS).await?;
    }
    let address = registry::deploy(
        &ton,
        &owner,
        &economics,
        Stakes::default(),
        REGISTRY_RESERVE,
    )
    .await?;
    let proxy = key(dir, "dev-proxy")?.public();
    let entry = (proxy, ton.wallet_of(&proxy)?, proxy_endpoint.to_string());
    let mut have = registry::read(ton.api(), &address).await?;
    let todo = changes(&have, registry, entry)?;
    for change in &todo {
        registry::apply(&ton, &owner, &address, change).await?;
    }
    if !todo.is_empty() {
        have = registry::read(ton.api(), &address).await?;
    }
    let file = TonFile {
        network: Network::Sandbox,
        endpoint: chain.url().to_string(),
        registry: address,
        wallet: WalletKind::V4r2,
    };
    file.write(dir)?;
    Ok(LocalChain {
        chain,
        file,
        registry: have,
    })
}

/// Lists the dev proxy at `endpoint` (where it actually listens) if the
/// registry, as `start_local_chain` read it, says otherwise.
pub async fn publish_proxy(dir: &Path, c: &LocalChain, endpoint: &str) -> anyhow::Result<()> {
    let ton = TonSettlement::new(c.file.config(), Arc::new(SystemClock))?;
    let proxy = key(dir, "dev-proxy")?.public();
    if c.registry
        .proxies
        .iter()
        .any(|p| p.key == proxy && p.endpoint == endpoint)
    {
        return Ok(());
    }
    let change = Change::Proxy {
        key: proxy,
        entry: Some((ton.wallet_of(&proxy)?, endpoint.to_string())),
    };
    registry::apply(&ton, &key(dir, "dev-registry")?, &c.file.registry, &change).await?;
    Ok(())
}

/// The attestation registry as the chain says it (a test network: the
/// sandbox is never production).
pub fn registry_from_chain(base: &Registry, r: &RegistryState) -> Registry {
    let mut out = base.clone();
    out.proxy_images = r.images_for(ROLE_PROXY);
    out.worker_images = r.images_for(ROLE_WORKER);
    out.models = (!r.models.is_empty()).then(|| r.models_by_name());
    // None listed: none allowed on a production network, any on a test one.
    out.upstreams = (!r.upstreams.is_empty()).then(|| r.upstreams.clone());
    out.with_td_policy(&r.td)
}

pub fn pay_spec(dir: PathBuf, file: &TonFile) -> PaySpec {
    PaySpec {
        ton: Some(file.config()),
        ..PaySpec::dev(dir)
    }
}

// ---- `kokon registry show|set` on chain ----

/// Where the registry contract is.
#[derive(Args, Clone)]
pub struct ChainArgs {
    /// Root of a toncenter v3 API (a public provider, or the sandbox's URL
    /// from `ton.json`) [default: from --dir's ton.json].
    #[arg(long, global = true, env = "KOKON_TON_API")]
    pub api: Option<String>,
    /// API key sent as X-API-Key.
    #[arg(long, global = true, env = "KOKON_TON_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// mainnet, testnet or sandbox.
    #[arg(
        long,
        global = true,
        env = "KOKON_TON_NETWORK",
        default_value = "sandbox"
    )]
    pub network: Network,
    /// The registry contract's address (`0:hex`) [default: from --dir's ton.json].
    #[arg(long, global = true, env = "KOKON_TON_REGISTRY")]
    pub address: Option<String>,
    /// A money directory whose ton.json names the API and registry
    /// [default: $KOKON_HOME/ton-sandbox].
    #[arg(long, global = true)]
    pub dir: Option<PathBuf>,
    /// Print JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

impl ChainArgs {
    fn resolve(&self) -> anyhow::Result<(TonSettlement, Address)> {
        let dir = self
            .dir
            .clone()
            .unwrap_or_else(|| kokon_models::kokon_home().join("ton-sandbox"));
        let file = TonFile::read(&dir)?;
        let (endpoint, address, network) = match (&self.api, &self.address, &file) {
            (Some(api), Some(a), _) => (api.clone(), Address::parse(a)?, self.network),
            (api, a, Some(f)) => (
                api.clone().unwrap_or_else(|| f.endpoint.clone()),
                a.as_deref()
                    .map(Address::parse)
                    .transpose()?
                    .unwrap_or(f.registry),
                f.network,
            ),
            _ => bail!(
                "say where the registry is: --api and --address, or --dir with a ton.json (`kokon up --settlement ton-sandbox` writes one)"
            ),
        };
        let mut cfg = TonConfig::new(network, &endpoint);
        cfg.api_key.clone_from(&self.api_key);
        Ok((TonSettlement::new(cfg, Arc::new(SystemClock))?, address))
    }
}

#[derive(Subcommand)]
pub enum RegistrySetCmd {
    /// Allow (or with --roles none, remove) an image hash.
    Image {
        hash: String,
        /// proxy, worker, both or none.
        #[arg(long, default_value = "both")]
        roles: String,
    },
    /// Allow a model file hash under a served name (or with --remove,
    /// disallow it).
    Model {
        hash: String,
        /// The name workers serve it under (what clients ask for).
        #[arg(long, required_unless_present = "remove")]
        name: Option<String>,
        #[arg(long)]
        remove: bool,
    },
    /// List a proxy (or with --remove, delist it).
    Proxy {
        /// The proxy's Ed25519 key (64 hex digits).
        key: String,
        /// host:port of its RA-TLS listener.
        #[arg(long, required_unless_present = "remove")]
        endpoint: Option<String>,
        #[arg(long)]
        remove: bool,
    },
    /// List an upstream origin (`https://host[:port]`) workers' upstream
    /// engines may forward jobs to, out of their TEE (or with --remove,
    /// delist it).
    Upstream {
        origin: String,
        #[arg(long)]
        remove: bool,
    },
    /// Set the TD policy (XFAM, TD attributes, MRSEAM, MRCONFIGID, MROWNER,
    /// MROWNERCONFIG, minimum TEE_TCB_SVN) to a registry file's
    /// `[attestation.td]` table; without --from, back to the default rules.
    Td {
        /// A registry file (TOML) whose `[attestation.td]` table to publish.
        #[arg(long)]
        from: Option<PathBuf>,
    },
    /// Set the economics: commission and delays (the price table's base stays
    /// the default unless --base-per-million is given).
    Economics {
        #[arg(long)]
        commission_bps: u16,
        #[arg(long)]
        channel_close_delay_secs: u64,
        #[arg(long)]
        vault_withdraw_delay_secs: u64,
        /// Nanotons per million tokens.
        #[arg(long)]
        base_per_million: Option<u64>,
        /// Minimum proxy stake in TON.
        #[arg(long, default_value = "0")]
        min_proxy_stake: String,
        /// Minimum worker stake in TON.
        #[arg(long, default_value = "0")]
        min_worker_stake: String,
    },
}

/// `kokon registry set`.
#[derive(Args)]
pub struct SetArgs {
    #[command(subcommand)]
    pub change: RegistrySetCmd,
    /// The owner's key file (32-byte hex seed) [default: dev-registry in --dir].
    #[arg(long, global = true)]
    pub owner_key: Option<PathBuf>,
    /// Or the owner's 24-word TON mnemonic, in a file.
    #[arg(long, global = true, conflicts_with = "owner_key")]
    pub owner_mnemonic: Option<PathBuf>,
    #[command(flatten)]
    pub chain: ChainArgs,
}

fn roles(s: &str) -> anyhow::Result<u8> {
    Ok(match s {
        "proxy" => ROLE_PROXY,
        "worker" => ROLE_WORKER,
        "both" => ROLE_PROXY | ROLE_WORKER,
        "none" => 0,
        _ => bail!("--roles is proxy, worker, both or none"),
    })
}

fn owner_key(a: &SetArgs) -> anyhow::Result<SecretKey> {
    if let Some(p) = &a.owner_mnemonic {
        let phrase = kokon_attest::read_at_most(p, 4096)
            .with_context(|| format!("reading {}", p.display()))?;
        if phrase.len() > 4096 {
            bail!("{} is over 4 KiB; a mnemonic is 24 words", p.display());
        }
        return Ok(kokon_ton::wallet::key_from_mnemonic(
            &String::from_utf8_lossy(&phrase),
        )?);
    }
    let path = a.owner_key.clone().unwrap_or_else(|| {
        a.chain
            .dir
            .clone()
            .unwrap_or_else(|| kokon_models::kokon_home().join("ton-sandbox"))
            .join("keys/dev-registry.key")
    });
    kokon_pay::keys::load(&path).with_context(|| format!("owner key {}", path.display()))
}

fn change(c: &RegistrySetCmd) -> anyhow::Result<Change> {
    Ok(match c {
        RegistrySetCmd::Image { hash, roles: r } => Change::Image {
            hash: hash32(hash)?,
            roles: roles(r)?,
        },
        RegistrySetCmd::Model { hash, name, remove } => Change::Model {
            hash: hash32(hash)?,
            name: if *remove { None } else { name.clone() },
        },
        RegistrySetCmd::Proxy {
            key,
            endpoint,
            remove,
        } => {
            let key = PublicKey::from_hex(key).context("the proxy key is 64 hex digits")?;
            let entry = match (remove, endpoint) {
                (true, _) => None,
                (false, Some(e)) => Some((
                    kokon_ton::wallet::address(WalletKind::V4r2, &key)?,
                    e.clone(),
                )),
                (false, None) => bail!("--endpoint is required"),
            };
            Change::Proxy { key, entry }
        }
        RegistrySetCmd::Upstream { origin, remove } => {
            let canonical = kokon_proto::engine::origin_of(origin).map_err(anyhow::Error::msg)?;
            if canonical != *origin {
                bail!("`{origin}` is not an origin; write it as `{canonical}`");
            }
            Change::Upstream {
                origin: canonical,
                remove: *remove,
            }
        }
        RegistrySetCmd::Td { from } => Change::TdPolicy(match from {
            Some(path) => crate::config::load_registry(path)?
                .td_policy()
                .with_context(|| format!("{}: [attestation.td]", path.display()))?,
            None => kokon_attest::TdPolicy::default(),
        }),
        RegistrySetCmd::Economics {
            commission_bps,
            channel_close_delay_secs,
            vault_withdraw_delay_secs,
            base_per_million,
            min_proxy_stake,
            min_worker_stake,
        } => {
            let mut e = Economics {
                commission_bps: *commission_bps,
                channel_close_delay_secs: *channel_close_delay_secs,
                vault_withdraw_delay_secs: *vault_withdraw_delay_secs,
                ..Economics::default()
            };
            // The contracts refuse these too; saying so before sending
            // saves the fee of a bounced message.
            e.check().map_err(|e| anyhow::anyhow!("{e} (--channel-close-delay-secs, --vault-withdraw-delay-secs, --commission-bps)"))?;
            if let Some(b) = base_per_million {
                e.prices.base_per_million = *b;
            }
            let stakes = Stakes {
                min_proxy: crate::wallet::parse_ton(min_proxy_stake)?,
                min_worker: crate::wallet::parse_ton(min_worker_stake)?,
            };
            Change::Economics(e, stakes)
        }
    })
}

pub async fn registry_set(a: SetArgs) -> anyhow::Result<()> {
    let change = change(&a.change)?;
    let (ton, address) = a.chain.resolve()?;
    let owner = owner_key(&a)?;
    registry::apply(&ton, &owner, &address, &change)
        .await
        .with_context(|| format!("changing the registry at {address}"))?;
    print_registry(&registry::read(ton.api(), &address).await?, a.chain.json);
    Ok(())
}

pub async fn registry_show(a: ChainArgs) -> anyhow::Result<()> {
    let (ton, address) = a.resolve()?;
    let r = registry::read(ton.api(), &address)
        .await
        .with_context(|| format!("reading the registry at {address} via {}", ton.api().base()))?;
    print_registry(&r, a.json);
    Ok(())
}

fn print_registry(r: &RegistryState, json: bool) {
    if json {
        let v = serde_json::json!({
            "address": r.address, "owner": r.owner, "version": r.version,
            "commission_bps": r.commission_bps,
            "channel_close_delay_secs": r.channel_close_delay_secs,
            "vault_withdraw_delay_secs": r.vault_withdraw_delay_secs,
            "min_proxy_stake_nanoton": r.stakes.min_proxy.to_string(),
            "min_worker_stake_nanoton": r.stakes.min_worker.to_string(),
            "base_per_million_nanoton": r.base_per_million,
            "proxy_images": r.images_for(ROLE_PROXY), "worker_images": r.images_for(ROLE_WORKER),
            "models": r.models_by_name(),
            "upstreams": r.upstreams,
            "td": kokon_attest::TdRules::from(&r.td),
            "proxies": r.proxies.iter().map(|p| serde_json::json!({"key": p.key, "wallet": p.wallet, "endpoint": p.endpoint})).collect::<Vec<_>>(),
            "gateways": r.gateways.iter().map(|(k, g)| serde_json::json!({"proxy": k, "ohttp_keys": hex::encode(&g.ohttp), "credit_keys": g.credits.map(hex::encode)})).collect::<Vec<_>>(),
        });
        println!("{v:#}");
        return;
    }
    println!("registry {} (version {})", r.address, r.version);
    println!("  owner:       {}", r.owner);
    println!(
        "  economics:   commission {} bps, channel close delay {} s, vault withdrawal delay {} s",
        r.commission_bps, r.channel_close_delay_secs, r.vault_withdraw_delay_secs
    );
    println!(
        "  stakes:      proxy {}, worker {}; base price {} per million tokens",
        ton(r.stakes.min_proxy),
        ton(r.stakes.min_worker),
        ton(u128::from(r.base_per_million))
    );
    let list = |v: Vec<String>| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join("\n               ")
        }
    };
    println!("  proxy images: {}", list(r.images_for(ROLE_PROXY)));
    println!("  worker images: {}", list(r.images_for(ROLE_WORKER)));
    println!(
        "  models:      {}",
        list(
            r.models
                .iter()
                .map(|(h, name)| format!("{name} = {}", hex::encode(h)))
                .collect()
        )
    );
    println!("  upstreams:   {}", list(r.upstreams.clone()));
    for p in &r.proxies {
        println!(
            "  proxy:       {} at {} (wallet {})",
            p.key, p.endpoint, p.wallet
        );
    }
    for (k, g) in &r.gateways {
        let configs = kokon_ohttp::KeyConfig::decode_list(&g.ohttp)
            .map(|l| {
                l.iter()
                    .map(|c| c.key_id.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_else(|_| "unreadable".into());
        let credits = g.credits.map_or("none".to_string(), hex::encode);
        println!("  published:   by {k}: gateway keys {configs}; credit keys {credits}");
    }
    if r.td == kokon_attest::TdPolicy::default() {
        println!("  TD policy:   the default rules");
    } else {
        let table = toml::to_string(&kokon_attest::TdRules::from(&r.td)).unwrap_or_default();
        println!(
            "  TD policy:   {}",
            table.trim_end().replace('\n', "\n               ")
        );
    }
}
