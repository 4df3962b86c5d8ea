//! Payments for a local network: the devnet ledger, dev keys, funding, and
//! each node's books, all under one directory.

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
    /// Most the proxy lets a channel owe it.
    pub max_credit: Nanotons,
    pub claim_every: Duration,
}

impl PaySpec {
    pub fn dev(dir: PathBuf) -> Self {
        Self {
            dir,
            economics: Economics::default(),
            deposit: TON,
            stake: TON / 10,
            max_credit: TON / 100,
            claim_every: Duration::from_secs(10),
        }
    }

    pub fn ledger(&self) -> Result<Devnet, PayError> {
        let e = &self.economics;
        let delays = Delays {
            channel_close_secs: e.channel_close_delay_secs,
            vault_withdraw_secs: e.vault_withdraw_delay_secs,
        };
        Devnet::open(&self.dir.join("ledger.db"), Arc::new(SystemClock), delays)
    }

    pub fn key(&self, name: &str) -> Result<SecretKey, PayError> {
        keys::load_or_create(&self.dir.join("keys").join(format!("{name}.key")))
    }
}

/// The money side of a started local network.
pub struct NetPay {
    pub ledger: Arc<Devnet>,
    pub proxy: ProxyBooks,
    pub client: ClientBooks,
}

/// Funds the dev proxy and client on the devnet, stakes the vault, opens (or
/// reuses) the client's channel, and opens both books.
pub async fn bootstrap(spec: &PaySpec) -> Result<NetPay, PayError> {
    let ledger = Arc::new(spec.ledger()?);
    let proxy = proxy_books(spec, &ledger, "dev-proxy").await?;
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
    ledger: &Devnet,
    name: &str,
) -> Result<ProxyBooks, PayError> {
    let key = spec.key(name)?;
    let vault = kokon_money::ledger::vault_address(&key.public());
    if ledger.vault(vault).await?.is_none() {
        ledger.fund(key.public(), spec.stake).await?;
        ledger.vault_deposit(&key, spec.stake).await?;
    }
    ProxyBooks::open(
        &spec.dir.join(format!("{name}.db")),
        key,
        spec.economics.commission_bps,
        spec.max_credit,
    )
}

/// The books of the client whose key is `name`, on its open channel to
/// `proxy` (devnet funds and opens one, or tops up a low one).
pub async fn client_books(
    spec: &PaySpec,
    ledger: &Devnet,
    name: &str,
    proxy: PublicKey,
) -> Result<ClientBooks, PayError> {
    let key = spec.key(name)?;
    let open = ledger
        .channels_of(key.public())
        .await?
        .into_iter()
        .rfind(|c| c.proxy == proxy && c.state == ChannelState::Open);
    let channel = match open {
        Some(c) => c,
        None => {
            ledger.fund(key.public(), spec.deposit).await?;
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
        ledger.fund(books.payer(), spec.deposit).await?;
        let row = ledger.topup(books.key(), channel.id, spec.deposit).await?;
        books.set_deposit(row.deposit);
    }
    Ok(books)
}

/// The books of the worker whose payout key is `name`.
pub fn worker_books(spec: &PaySpec, name: &str) -> Result<WorkerBooks, PayError> {
    WorkerBooks::open(&spec.dir.join(format!("{name}.db")), spec.key(name)?)
}
