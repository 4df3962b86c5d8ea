//! Payments for a local network: the ledger (the devnet, or the TON sandbox
//! chain), dev keys, funding, and each node's books, all under one directory.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kokon_money::ledger::ChannelState;
use kokon_money::{Economics, Nanotons, PublicKey, SecretKey};
use kokon_pay::books::client::ClientBooks;
use kokon_pay::books::proxy::ProxyBooks;
use kokon_pay::books::worker::WorkerBooks;
use kokon_pay::devnet::{Delays, Devnet};
use kokon_pay::{PayError, Settlement, SystemClock, keys};
use kokon_ton::{TonConfig, TonSettlement};

/// 1 TON in nanotons.
pub const TON: Nanotons = 1_000_000_000;

/// Payments on a local network.
#[derive(Clone, Debug)]
pub struct PaySpec {
    /// Holds `ledger.db`, `keys/` and each node's books.
    pub dir: PathBuf,
    pub economics: Economics,
    /// What the dev client deposits into its channel (and tops up to).
    pub deposit: Nanotons,
    /// The proxy's vault stake.
    pub stake: Nanotons,
    /// Most the proxy lets a channel owe it; `None`: [`Self::max_credit`]'s
    /// default, the largest cost of one job.
    pub max_credit: Option<Nanotons>,
    /// The registry's bounds on a job (its largest context and price).
    pub routing: kokon_attest::RoutingBounds,
    pub claim_every: Duration,
    /// Claim once this much is claimable (`None`: [`Self::min_claim`]'s default).
    pub min_claim: Option<Nanotons>,
    /// Settle on this TON sandbox chain instead of the devnet.
    pub ton: Option<TonConfig>,
    /// Every call the daemons make on the ledger takes this much longer (a
    /// slow chain), to show money I/O stays off the hot path.
    pub ledger_delay: Option<Duration>,
}

/// The ledger a local network settles on, with its faucet.
#[derive(Clone, Debug)]
pub enum Ledger {
    Devnet(Arc<Devnet>),
    /// A sandbox chain: the faucet is the sandbox's.
    Ton(Arc<TonSettlement>),
}

impl Ledger {
    pub fn settlement(&self) -> Arc<dyn Settlement> {
        match self {
            Ledger::Devnet(d) => d.clone(),
            Ledger::Ton(t) => t.clone(),
        }
    }

    /// Mints (devnet) or sends from the sandbox faucet (TON) to `account`.
    pub async fn fund(&self, account: PublicKey, amount: Nanotons) -> Result<(), PayError> {
        match self {
            Ledger::Devnet(d) => d.fund(account, amount).await.map(|_| ()),
            Ledger::Ton(t) if t.config().network == kokon_ton::Network::Sandbox => Ok(t
                .api()
                .sandbox_fund(&t.wallet_of(&account)?, amount)
                .await?),
            Ledger::Ton(t) => Err(PayError::Backend(format!(
                "no faucet on {:?}: send {amount} nanotons to wallet {} yourself",
                t.config().network,
                t.wallet_of(&account)?
            ))),
        }
    }

    /// The TON wallet holding `account`'s funds (none on the devnet).
    pub fn wallet_address(
        &self,
        account: &PublicKey,
    ) -> Result<Option<kokon_money::Address>, PayError> {
        match self {
            Ledger::Devnet(_) => Ok(None),
            Ledger::Ton(t) => Ok(Some(t.wallet_of(account)?)),
        }
    }

    /// Funds `account` up to `amount` (plus gas on TON) if it holds less.
    pub async fn fund_up_to(&self, account: PublicKey, amount: Nanotons) -> Result<(), PayError> {
        let want = match self {
            Ledger::Devnet(_) => amount,
            Ledger::Ton(_) => amount + TON_GAS_BUDGET,
        };
        let has = self.settlement().balance(account).await?;
        if has < want {
            self.fund(account, want - has).await?;
        }
        Ok(())
    }
}

/// What a dev key on the sandbox chain gets on top, for gas.
pub const TON_GAS_BUDGET: Nanotons = TON;

/// The settlement the daemons of a local network use: the ledger, slowed
/// down by `spec.ledger_delay` when set.
pub fn daemon_ledger(spec: &PaySpec, ledger: &Ledger) -> Arc<dyn Settlement> {
    match spec.ledger_delay {
        Some(d) => Arc::new(kokon_pay::delayed::Delayed::new(ledger.settlement(), d)),
        None => ledger.settlement(),
    }
}

/// On a public chain a claim costs about 0.01 TON of fees: claiming 1000×
/// that keeps fees near 0.1 % of earnings and transactions under one per
/// 10 TON earned.
pub const MIN_CLAIM_ON_CHAIN: Nanotons = 10 * TON;

impl PaySpec {
    /// The smallest claimable amount worth a claim: the configured one, else
    /// [`MIN_CLAIM_ON_CHAIN`] on testnet and mainnet, and 1 nanoton on the
    /// devnet and the sandbox (no real fees; tests see claims at once).
    pub fn min_claim(&self) -> Nanotons {
        let public_chain = self
            .ton
            .as_ref()
            .is_some_and(|t| t.network != kokon_ton::Network::Sandbox);
        self.min_claim
            .unwrap_or(if public_chain { MIN_CLAIM_ON_CHAIN } else { 1 })
    }

    /// The credit a channel gets: the configured amount, else the largest
    /// cost of one job (the registry's largest context each way, on the
    /// dearest model, at its highest price), so any one job fits and a
    /// client that never pays loses the proxy at most one.
    pub fn max_credit(&self) -> Nanotons {
        self.max_credit.unwrap_or_else(|| {
            let r = self.routing;
            kokon_money::receipt::Budget::largest_cost(
                &self.economics.prices,
                r.max_context,
                r.max_price_milli,
            )
            .unwrap_or(Nanotons::MAX)
        })
    }

    pub fn dev(dir: PathBuf) -> Self {
        Self {
            dir,
            economics: Economics::default(),
            deposit: TON,
            stake: TON / 10,
            max_credit: None,
            routing: kokon_attest::RoutingBounds::default(),
            claim_every: Duration::from_secs(10),
            min_claim: None,
            ton: None,
            ledger_delay: None,
        }
    }

    /// The money directory `dir` as a previous run left it: on the TON
    /// sandbox chain if it holds a `ton.json` (written by `kokon up
    /// --settlement ton-sandbox`), else on the devnet.
    pub fn load(dir: PathBuf) -> Result<Self, PayError> {
        let ton = TonFile::read(&dir)?.map(|f| f.config());
        Ok(Self {
            ton,
            ..Self::dev(dir)
        })
    }

    pub fn ledger(&self) -> Result<Ledger, PayError> {
        let e = &self.economics;
        if let Some(cfg) = &self.ton {
            let mut cfg = cfg.clone();
            cfg.channel_close_secs = e.channel_close_delay_secs;
            cfg.vault_withdraw_secs = e.vault_withdraw_delay_secs;
            return Ok(Ledger::Ton(Arc::new(TonSettlement::new(
                cfg,
                Arc::new(SystemClock),
            )?)));
        }
        let delays = Delays {
            channel_close_secs: e.channel_close_delay_secs,
            vault_withdraw_secs: e.vault_withdraw_delay_secs,
        };
        Ok(Ledger::Devnet(Arc::new(Devnet::open(
            &self.dir.join("ledger.db"),
            Arc::new(SystemClock),
            delays,
        )?)))
    }

    pub fn key(&self, name: &str) -> Result<SecretKey, PayError> {
        keys::load_or_create(&self.dir.join("keys").join(format!("{name}.key")))
    }
}

/// The money side of a started local network.
pub struct NetPay {
    pub ledger: Ledger,
    pub proxy: ProxyBooks,
    pub client: ClientBooks,
}

/// Funds the dev proxy and client, stakes the vault, opens (or reuses) the
/// client's channel, and opens both books.
/// A devnet ledger in a directory of its own, for an unpaid network that
/// still needs a registry of published keys (its relayed client checks the
/// gateway's key there). The directory goes when the returned guard does.
pub fn registry_only() -> Result<(tempfile::TempDir, Arc<dyn Settlement>), PayError> {
    let dir = tempfile::tempdir().map_err(|e| PayError::Storage(format!("temporary dir: {e}")))?;
    let e = Economics::default();
    let delays = Delays {
        channel_close_secs: e.channel_close_delay_secs,
        vault_withdraw_secs: e.vault_withdraw_delay_secs,
    };
    let devnet = Devnet::open(
        &dir.path().join("registry.db"),
        Arc::new(SystemClock),
        delays,
    )?;
    Ok((dir, Arc::new(devnet)))
}

/// The proxy's credit issuer: keys kept in `credit-keys.json` beside its
/// books (made on first start), named after the proxy's vault key so
/// every client of this proxy sees the same challenge.
pub fn credit_issuer(
    spec: &PaySpec,
    books: &kokon_pay::books::proxy::ProxyBooks,
) -> Result<kokon_credit::Issuer, PayError> {
    let name = format!("kokon proxy {}", books.owner().public().to_hex());
    kokon_pay::keys::credit_issuer(
        &spec.dir.join("credit-keys.json"),
        &name,
        kokon_credit::Schedule::default(),
    )
}

pub async fn bootstrap(spec: &PaySpec, workers: usize) -> Result<NetPay, PayError> {
    let ledger = spec.ledger()?;
    let proxy = proxy_books(spec, &ledger, "dev-proxy").await?;
    if let Ledger::Ton(_) = ledger {
        // Workers pay the gas of their own claims.
        for i in 0..workers {
            let key = spec.key(&format!("dev-worker-{i}"))?;
            ledger.fund_up_to(key.public(), 0).await?;
        }
    }
    let client = client_books(spec, &ledger, "dev-client", proxy.owner().public()).await?;
    Ok(NetPay {
        ledger,
        proxy,
        client,
    })
}

/// The books of the proxy whose key is `name`, with its vault staked
/// (devnet funds the stake the first time).
pub async fn proxy_books(
    spec: &PaySpec,
    ledger: &Ledger,
    name: &str,
) -> Result<ProxyBooks, PayError> {
    let key = spec.key(name)?;
    let s = ledger.settlement();
    let vault = s.vault_address(&key.public())?;
    if s.vault(vault).await?.is_none() {
        ledger.fund_up_to(key.public(), spec.stake).await?;
        s.vault_deposit(&key, spec.stake).await?;
    }
    ProxyBooks::open(
        &spec.dir.join(format!("{name}.db")),
        key,
        vault,
        spec.economics.commission_bps,
        spec.max_credit(),
    )
}

/// The books of the client whose key is `name`, on its open channel to
/// `proxy` (devnet funds and opens one, or tops up a low one).
pub async fn client_books(
    spec: &PaySpec,
    ledger: &Ledger,
    name: &str,
    proxy: PublicKey,
) -> Result<ClientBooks, PayError> {
    let key = spec.key(name)?;
    let (chain, ledger) = (ledger, ledger.settlement());
    let open = ledger
        .channels_of(key.public())
        .await?
        .into_iter()
        .rfind(|c| c.proxy == proxy && c.state == ChannelState::Open);
    let channel = match open {
        Some(c) => c,
        None => {
            chain.fund_up_to(key.public(), spec.deposit).await?;
            ledger.open_channel(&key, proxy, spec.deposit).await?
        }
    };
    let mut books = ClientBooks::open(
        &spec.dir.join(format!("{name}.db")),
        key,
        channel.id,
        channel.deposit,
    )?;
    if books.channel().remaining() < spec.deposit / 10 {
        // A dev channel that ran low from earlier runs gets topped up.
        chain.fund_up_to(books.payer(), spec.deposit).await?;
        let row = ledger.topup(books.key(), channel.id, spec.deposit).await?;
        books.set_deposit(row.deposit);
    }
    Ok(books)
}

/// The books of the worker whose payout key is `name`.
pub fn worker_books(spec: &PaySpec, name: &str) -> Result<WorkerBooks, PayError> {
    WorkerBooks::open(&spec.dir.join(format!("{name}.db")), spec.key(name)?)
}

/// `ton.json` in a money directory: which chain it settles on.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TonFile {
    pub network: kokon_ton::Network,
    /// Root of the toncenter v3 API.
    pub endpoint: String,
    pub registry: kokon_money::Address,
    #[serde(default)]
    pub wallet: kokon_ton::wallet::WalletKind,
}

impl TonFile {
    pub const NAME: &str = "ton.json";

    pub fn read(dir: &std::path::Path) -> Result<Option<Self>, PayError> {
        let path = dir.join(Self::NAME);
        match std::fs::read(&path) {
            Ok(b) if b.len() > 64 * 1024 => Err(PayError::Storage(format!(
                "{} is over 64 KiB",
                path.display()
            ))),
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| PayError::Storage(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(PayError::Storage(format!("{}: {e}", path.display()))),
        }
    }

    /// Writes it atomically.
    pub fn write(&self, dir: &std::path::Path) -> Result<(), PayError> {
        let tmp = dir.join(format!("{}.tmp", Self::NAME));
        let text = serde_json::to_string_pretty(self).expect("serializes");
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, dir.join(Self::NAME)))
            .map_err(|e| PayError::Storage(format!("{}: {e}", dir.display())))
    }

    pub fn config(&self) -> TonConfig {
        let mut c = TonConfig::new(self.network, &self.endpoint);
        c.registry = Some(self.registry);
        c.wallet = self.wallet;
        c
    }
}
