//! Money commands on the devnet: `kokon wallet`, `kokon channel`,
//! `kokon worker earnings|claim`, `kokon proxy vault`.
//!
//! They read and write the same files `kokon up` uses (under
//! `$KOKON_HOME/devnet` unless `--devnet` says otherwise), so they work
//! while the network runs: SQLite in WAL mode serialises the writers.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use kokon_money::ledger::ChannelState;
use kokon_money::{Nanotons, PublicKey, SecretKey};
use kokon_node::pay::Ledger;
use kokon_node::pay::PaySpec;
use kokon_pay::Settlement;
use kokon_pay::books::proxy::ProxyBooks;
use kokon_pay::books::worker::WorkerBooks;
use serde_json::json;

/// Formats nanotons as TON with all nine decimals.
pub fn ton(n: Nanotons) -> String {
    format!("{}.{:09} TON", n / 1_000_000_000, n % 1_000_000_000)
}

/// Parses a TON amount ("1", "0.25", "0.000000001") into nanotons, exactly.
pub fn parse_ton(s: &str) -> anyhow::Result<Nanotons> {
    let bad = || anyhow::anyhow!("`{s}` is not an amount of TON (e.g. 1.5 or 0.000001)");
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() && frac.is_empty() || frac.len() > 9 || s.len() > 40 {
        return Err(bad());
    }
    let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || !digits(frac) {
        return Err(bad());
    }
    let int: Nanotons = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| bad())?
    };
    let frac: Nanotons = format!("{frac:0<9}").parse().map_err(|_| bad())?;
    int.checked_mul(1_000_000_000)
        .and_then(|i| i.checked_add(frac))
        .ok_or_else(bad)
}

#[derive(Args, Clone)]
pub struct Where {
    /// The money directory (devnet ledger or ton.json, keys, books)
    /// [default: $KOKON_HOME/devnet].
    #[arg(long, env = "KOKON_DEVNET", global = true)]
    pub devnet: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

impl Where {
    fn dir(&self) -> PathBuf {
        self.devnet
            .clone()
            .unwrap_or_else(|| kokon_models::kokon_home().join("devnet"))
    }

    /// The money directory's settings; an unreadable `ton.json` is an error,
    /// never a silent fall-back to the devnet.
    fn spec(&self) -> anyhow::Result<PaySpec> {
        Ok(PaySpec::load(self.dir())?)
    }

    fn ledger(&self) -> anyhow::Result<Ledger> {
        let spec = self.spec()?;
        if spec.ton.is_none() && !spec.dir.join("ledger.db").exists() {
            bail!(
                "no ledger at {}; start one with `kokon up`",
                spec.dir.display()
            );
        }
        Ok(spec.ledger()?)
    }

    fn key(&self, name: &str) -> anyhow::Result<SecretKey> {
        let path = self.dir().join("keys").join(format!("{name}.key"));
        kokon_pay::keys::load(&path).with_context(|| {
            format!("no key `{name}`; create it with `kokon wallet create --name {name}`")
        })
    }

    fn print(&self, v: serde_json::Value, text: impl FnOnce() -> String) {
        if self.json {
            println!("{v:#}");
        } else {
            println!("{}", text());
        }
    }
}

#[derive(Subcommand)]
pub enum WalletCmd {
    /// Create a key (Ed25519) in the devnet's key directory.
    Create {
        /// The key (wallet) to act as, by its name in keys/ (`--name` works too).
        #[arg(long = "wallet", alias = "name", default_value = "default")]
        name: String,
    },
    /// Store the key of a 24-word TON mnemonic (as wallet apps derive it), so
    /// a daemon pays and is paid through that wallet.
    Import {
        /// The name to store the key under in keys/ (`--name` works too).
        #[arg(long = "wallet", alias = "name")]
        name: String,
        /// File holding the 24 words (kept out of the shell history).
        #[arg(long)]
        mnemonic_file: PathBuf,
    },
    /// Show a key's public key, its TON wallet (when settling on TON) and balance.
    Show {
        /// The key (wallet) to act as, by its name in keys/ (`--name` works too).
        #[arg(long = "wallet", alias = "name", default_value = "dev-client")]
        name: String,
    },
    /// Mint devnet TON into a key's account (the devnet faucet).
    Fund {
        /// The key (wallet) to act as, by its name in keys/ (`--name` works too).
        #[arg(long = "wallet", alias = "name", default_value = "dev-client")]
        name: String,
        /// Amount in TON.
        #[arg(long)]
        amount: String,
    },
}

pub async fn wallet(cmd: WalletCmd, w: Where) -> anyhow::Result<()> {
    match cmd {
        WalletCmd::Create { name } => {
            let path = w.dir().join("keys").join(format!("{name}.key"));
            if path.exists() {
                bail!("key `{name}` already exists at {}", path.display());
            }
            let key = kokon_pay::keys::load_or_create(&path)?;
            w.print(
                json!({ "name": name, "public_key": key.public(), "path": path }),
                || {
                    format!(
                        "created key `{name}`: {}\n  stored in {}",
                        key.public(),
                        path.display()
                    )
                },
            );
        }
        WalletCmd::Import {
            name,
            mnemonic_file,
        } => {
            let path = w.dir().join("keys").join(format!("{name}.key"));
            let phrase = kokon_attest::read_at_most(&mnemonic_file, 4096)
                .with_context(|| format!("reading {}", mnemonic_file.display()))?;
            if phrase.len() > 4096 {
                bail!(
                    "{} is over 4 KiB; a mnemonic is 24 words",
                    mnemonic_file.display()
                );
            }
            let key = kokon_ton::wallet::key_from_mnemonic(&String::from_utf8_lossy(&phrase))?;
            kokon_pay::keys::write_new(&path, &key)
                .with_context(|| format!("key `{name}` (an existing key is never replaced)"))?;
            let v4 =
                kokon_ton::wallet::address(kokon_ton::wallet::WalletKind::V4r2, &key.public())?;
            let v5 =
                kokon_ton::wallet::address(kokon_ton::wallet::WalletKind::V5r1, &key.public())?;
            w.print(
                json!({ "name": name, "public_key": key.public(), "wallet_v4r2": v4, "wallet_v5r1": v5, "path": path }),
                || format!("imported `{name}`: {}\n  TON wallet v4r2 {v4}, v5r1 {v5}\n  stored in {}", key.public(), path.display()),
            );
        }
        WalletCmd::Show { name } => {
            let key = w.key(&name)?;
            let ledger = w.ledger()?;
            let balance = ledger.settlement().balance(key.public()).await?;
            let wallet = ledger.wallet_address(&key.public())?;
            w.print(json!({ "name": name, "public_key": key.public(), "wallet": wallet, "balance_nanoton": balance.to_string() }), || {
                let at = wallet.map(|a| format!("\n  TON wallet: {a}")).unwrap_or_default();
                format!("{name}: {}{at}\n  balance: {}", key.public(), ton(balance))
            });
        }
        WalletCmd::Fund { name, amount } => {
            let key = w.key(&name)?;
            let ledger = w.ledger()?;
            ledger.fund(key.public(), parse_ton(&amount)?).await?;
            let bal = ledger.settlement().balance(key.public()).await?;
            w.print(
                json!({ "name": name, "balance_nanoton": bal.to_string() }),
                || format!("{name} now holds {}", ton(bal)),
            );
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum ChannelCmd {
    /// Open a channel to a proxy's vault, depositing from the client's account.
    Open {
        /// Amount in TON.
        #[arg(long)]
        amount: String,
        /// The proxy's public key (hex); default: the devnet's dev proxy.
        #[arg(long)]
        proxy: Option<String>,
        /// The key (wallet) to act as, by its name in keys/ (`--name` works too).
        #[arg(long = "wallet", alias = "name", default_value = "dev-client")]
        name: String,
    },
    /// Add to the client's open channel.
    Topup {
        #[arg(long)]
        amount: String,
        /// The key (wallet) to act as, by its name in keys/ (`--name` works too).
        #[arg(long = "wallet", alias = "name", default_value = "dev-client")]
        name: String,
    },
    /// Deposit, spent and state of the client's channels.
    Status {
        /// The key (wallet) to act as, by its name in keys/ (`--name` works too).
        #[arg(long = "wallet", alias = "name", default_value = "dev-client")]
        name: String,
    },
    /// Close the client's channel. Unilateral by default: starts the close
    /// delay (the proxy may still claim), then `--finish` collects the
    /// refund. `--cooperative --proxy ADDR` asks the proxy to close now.
    Close {
        /// The key (wallet) to act as, by its name in keys/ (`--name` works too).
        #[arg(long = "wallet", alias = "name", default_value = "dev-client")]
        name: String,
        #[arg(long, conflicts_with = "cooperative")]
        finish: bool,
        #[arg(long, requires = "proxy")]
        cooperative: bool,
        /// The proxy's RA-TLS address (printed by `kokon up` and `kokon proxy`).
        #[arg(long)]
        proxy: Option<std::net::SocketAddr>,
    },
}

pub async fn channel(cmd: ChannelCmd, w: Where) -> anyhow::Result<()> {
    let ledger = w.ledger()?.settlement();
    let ledger = ledger.as_ref();
    match cmd {
        ChannelCmd::Open {
            amount,
            proxy,
            name,
        } => {
            let key = w.key(&name)?;
            let proxy = match proxy {
                Some(p) => PublicKey::from_hex(&p).context("--proxy must be 64 hex digits")?,
                None => w.key("dev-proxy")?.public(),
            };
            let ch = ledger
                .open_channel(&key, proxy, parse_ton(&amount)?)
                .await?;
            w.print(serde_json::to_value(ch)?, || {
                format!("opened channel {} with {}", ch.id, ton(ch.deposit))
            });
        }
        ChannelCmd::Topup { amount, name } => {
            let key = w.key(&name)?;
            let open = open_channel(ledger, &key).await?;
            let ch = ledger.topup(&key, open, parse_ton(&amount)?).await?;
            w.print(serde_json::to_value(ch)?, || {
                format!("channel {} now holds {}", ch.id, ton(ch.deposit))
            });
        }
        ChannelCmd::Status { name } => {
            let key = w.key(&name)?;
            let spent = client_spent(&w, &name);
            let rows = ledger.channels_of(key.public()).await?;
            let list: Vec<_> = rows
                .iter()
                .map(|c| json!({ "channel": c.id, "proxy": c.proxy, "deposit_nanoton": c.deposit.to_string(),
                    "claimed_nanoton": c.claimed.to_string(), "state": c.state,
                    "spent_nanoton": spent.filter(|(id, _)| *id == c.id).map(|(_, s)| s.to_string()) }))
                .collect();
            w.print(json!({ "client": key.public(), "channels": list }), || {
                let mut out = format!("client {}", key.public());
                for c in &rows {
                    let s = spent
                        .filter(|(id, _)| *id == c.id)
                        .map_or("-".into(), |(_, s)| ton(s));
                    out += &format!(
                        "\n  {}  {:?}\n    deposit {}  spent {}  claimed by proxy {}",
                        c.id,
                        c.state,
                        ton(c.deposit),
                        s,
                        ton(c.claimed)
                    );
                }
                out
            });
        }
        ChannelCmd::Close {
            name,
            cooperative: true,
            proxy: Some(addr),
            ..
        } => {
            let key = w.key(&name)?;
            let id = open_channel(ledger, &key).await?;
            // The proxy closes only a paid-up channel: bring the latest voucher.
            let books = w.dir().join(format!("{name}.db"));
            let voucher =
                kokon_pay::books::client::latest_voucher(&books)?.filter(|v| v.body.channel == id);
            let reply = close_with_proxy(&key, id, voucher, addr).await?;
            w.print(json!({ "channel": id, "claimed_nanoton": reply.claimed.to_string(), "refunded_nanoton": reply.refunded.to_string() }), || {
                format!("closed {id} with the proxy: it claimed {}, you got back {}", ton(reply.claimed), ton(reply.refunded))
            });
        }
        ChannelCmd::Close { name, finish, .. } => {
            let key = w.key(&name)?;
            let rows = ledger.channels_of(key.public()).await?;
            if finish {
                let c = rows
                    .iter()
                    .rfind(|c| matches!(c.state, ChannelState::Closing { .. }))
                    .context("no closing channel")?;
                let refund = ledger.finish_close(&key, c.id).await?;
                w.print(
                    json!({ "channel": c.id, "refund_nanoton": refund.to_string() }),
                    || format!("closed {}; refunded {}", c.id, ton(refund)),
                );
            } else {
                let id = open_channel(ledger, &key).await?;
                let c = ledger.start_close(&key, id).await?;
                w.print(serde_json::to_value(c)?, || {
                    format!("closing {}; the proxy may claim until the delay ends, then run `kokon channel close --finish`", c.id)
                });
            }
        }
    }
    Ok(())
}

/// Asks the proxy at `addr`, over an RA-TLS link, to close `channel` now.
async fn close_with_proxy(
    key: &SecretKey,
    channel: kokon_money::Address,
    voucher: Option<kokon_money::Signed<kokon_money::ChannelVoucher>>,
    addr: std::net::SocketAddr,
) -> anyhow::Result<kokon_proto::CloseReply> {
    let policy = crate::daemons::policy(&crate::daemons::Common::default())?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let tls = kokon_tls::node::simulated_node(
        kokon_attest::Role::Client,
        None,
        policy,
        [0; 32],
        &shutdown,
    )?;
    let link = kokon_gateway::ProxyLink::new(addr, tls);
    let signature = key.sign(&kokon_proto::CloseRequest::signing_hash(&channel));
    let reply = link
        .close_channel(&kokon_proto::CloseRequest {
            channel,
            signature,
            voucher,
        })
        .await;
    shutdown.cancel();
    reply.map_err(|e| anyhow::anyhow!("{}", e.message))
}

async fn open_channel(
    ledger: &dyn Settlement,
    key: &SecretKey,
) -> anyhow::Result<kokon_money::Address> {
    let rows = ledger.channels_of(key.public()).await?;
    rows.iter()
        .rfind(|c| c.state == ChannelState::Open)
        .map(|c| c.id)
        .context("no open channel; open one with `kokon channel open --amount <TON>`")
}

/// What the books of the gateway using key `name` say it has spent (if they exist).
fn client_spent(w: &Where, name: &str) -> Option<(kokon_money::Address, Nanotons)> {
    let path = w.dir().join(format!("{name}.db"));
    let v = kokon_pay::books::client::latest_voucher(&path)
        .ok()
        .flatten()?;
    Some((v.body.channel, v.body.amount))
}

/// `kokon worker earnings|claim`.
#[derive(Subcommand)]
pub enum WorkerMoneyCmd {
    /// What this worker has earned, claimed and can still claim.
    Earnings {
        /// The worker's payout key (its books are <name>.db).
        /// The key (wallet) to act as, by its name in keys/ (`--name` works too).
        #[arg(long = "wallet", alias = "name", default_value = "dev-worker-0")]
        name: String,
        #[command(flatten)]
        w: Where,
    },
    /// Claim everything claimable from the proxies' vaults now.
    Claim {
        /// The key (wallet) to act as, by its name in keys/ (`--name` works too).
        #[arg(long = "wallet", alias = "name", default_value = "dev-worker-0")]
        name: String,
        #[command(flatten)]
        w: Where,
    },
}

pub async fn worker_money(cmd: WorkerMoneyCmd) -> anyhow::Result<()> {
    let (name, w, claim) = match cmd {
        WorkerMoneyCmd::Earnings { name, w } => (name, w, false),
        WorkerMoneyCmd::Claim { name, w } => (name, w, true),
    };
    let ledger = w.ledger()?.settlement();
    let ledger = ledger.as_ref();
    let mut books = kokon_node::pay::worker_books(&w.spec()?, &name)?;
    let claimed_now = if claim {
        books.claim_due(ledger, 1).await?
    } else {
        0
    };
    for e in books.earnings() {
        books.sync_claimed(ledger, e.vault).await?;
    }
    print_earnings(&w, &books, ledger, claimed_now).await
}

async fn print_earnings(
    w: &Where,
    books: &WorkerBooks,
    ledger: &dyn Settlement,
    claimed_now: Nanotons,
) -> anyhow::Result<()> {
    let (receipts, signed) = books.receipts_total()?;
    let vaults = books.earnings();
    let earned: Nanotons = vaults.iter().map(|e| e.earned()).sum();
    let claimed: Nanotons = vaults.iter().map(|e| e.claimed).sum();
    let balance = ledger.balance(books.payout()).await?;
    let v = json!({ "payout": books.payout(), "receipts": receipts, "receipts_cost_nanoton": signed.to_string(),
        "earned_nanoton": earned.to_string(), "claimed_nanoton": claimed.to_string(),
        "claimable_nanoton": (earned - claimed).to_string(), "claimed_now_nanoton": claimed_now.to_string(),
        "balance_nanoton": balance.to_string(),
        "vaults": vaults.iter().map(|e| json!({ "vault": e.vault, "earned_nanoton": e.earned().to_string(), "claimed_nanoton": e.claimed.to_string() })).collect::<Vec<_>>() });
    w.print(v, || {
        format!(
            "worker {}\n  receipts signed: {receipts} ({} at list price)\n  earned (vouchers): {}\n  claimed: {}  claimable: {}\n  account balance: {}{}",
            books.payout(),
            ton(signed),
            ton(earned),
            ton(claimed),
            ton(earned - claimed),
            ton(balance),
            if claimed_now > 0 { format!("\n  claimed now: {}", ton(claimed_now)) } else { String::new() }
        )
    });
    Ok(())
}

/// `kokon proxy vault`.
#[derive(Args)]
pub struct VaultArgs {
    /// The proxy's key (wallet), by its name in keys/ (`--name` works too).
    #[arg(long = "wallet", alias = "name", default_value = "dev-proxy")]
    pub name: String,
    /// Ask to withdraw this many TON (executes after the delay).
    #[arg(long)]
    pub withdraw: Option<String>,
    /// Execute the pending withdrawal (after its delay).
    #[arg(long)]
    pub execute: bool,
    #[command(flatten)]
    pub w: Where,
}

pub async fn vault(a: VaultArgs) -> anyhow::Result<()> {
    let w = &a.w;
    let ledger = w.ledger()?.settlement();
    let key = w.key(&a.name)?;
    if let Some(amount) = &a.withdraw {
        let wd = ledger.request_withdrawal(&key, parse_ton(amount)?).await?;
        eprintln!(
            "withdrawal of {} requested; executes after unix time {}",
            ton(wd.amount),
            wd.not_before
        );
    }
    if a.execute {
        let got = ledger.withdraw(&key).await?;
        eprintln!("withdrew {}", ton(got));
    }
    let id = ledger.vault_address(&key.public())?;
    let row = ledger
        .vault(id)
        .await?
        .context("the dev proxy has no vault yet; start `kokon up`")?;
    let spec = w.spec()?;
    let books = ProxyBooks::open(
        &spec.dir.join("dev-proxy.db"),
        key,
        id,
        spec.economics.commission_bps,
        spec.max_credit(),
    )?;
    let t = books.totals()?;
    let v = json!({ "vault": id, "owner": row.owner, "balance_nanoton": row.balance.to_string(), "withdrawal": row.withdrawal,
        "receipts": t.receipts, "billed_nanoton": t.billed.to_string(), "paid_nanoton": t.paid.to_string(),
        "claimed_nanoton": t.claimed.to_string(), "owed_to_workers_nanoton": t.owed_to_workers.to_string(),
        "commission_nanoton": t.commission.to_string() });
    w.print(v, || {
        format!(
            "vault {id}\n  balance: {}\n  receipts billed: {} ({})\n  paid by clients (vouchers): {}  claimed: {}\n  owed to workers (vouchers): {}\n  commission: {}",
            ton(row.balance), t.receipts, ton(t.billed), ton(t.paid), ton(t.claimed), ton(t.owed_to_workers), ton(t.commission)
        )
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ton_amounts_parse_exactly() {
        assert_eq!(parse_ton("1").unwrap(), 1_000_000_000);
        assert_eq!(parse_ton("0.000000001").unwrap(), 1);
        assert_eq!(parse_ton(".5").unwrap(), 500_000_000);
        assert_eq!(parse_ton("2.25").unwrap(), 2_250_000_000);
        for bad in ["", ".", "-1", "1.0000000001", "1e9", "one", "1.2.3"] {
            assert!(parse_ton(bad).is_err(), "{bad}");
        }
        assert_eq!(ton(1_500_000_001), "1.500000001 TON");
    }
}
