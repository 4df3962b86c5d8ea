//! The devnet ledger: the default settlement for local networks.
//!
//! An embedded SQLite file (WAL, full fsync) holding accounts, channels and
//! vaults. Every operation loads the rows it touches, applies the pure rule
//! from `kokon_money::ledger`, and commits all rows in one transaction, so a
//! crash leaves either the whole operation or none of it.
//!
//! Honest limits: it is a single-machine ledger for development. Parties are
//! "authenticated" by holding their key in-process, and [`Devnet::fund`]
//! mints money, and any key may publish gateway keys (TON: only a proxy the
//! registry lists, from its wallet). The rules on vouchers, deposits, delays and claims are
//! exactly those the TON contracts enforce.

use std::path::Path;
use std::sync::{Arc, Mutex};

use kokon_money::ledger::{self, ChannelRow, VaultRow, Withdrawal};
use kokon_money::{
    Address, ChannelVoucher, MoneyError, Nanotons, PublicKey, SecretKey, Signed, WorkerVoucher,
};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::Clock;
use crate::PayError;
use crate::settlement::{BoxFuture, KeyRecord, Settlement};
use crate::sqlite::amount;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS accounts (key TEXT PRIMARY KEY, balance TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS channels (id TEXT PRIMARY KEY, client TEXT NOT NULL, proxy TEXT NOT NULL, row TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS channels_by_client ON channels (client);
CREATE TABLE IF NOT EXISTS vaults (id TEXT PRIMARY KEY, row TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS worker_claims (vault TEXT NOT NULL, worker TEXT NOT NULL, claimed TEXT NOT NULL, PRIMARY KEY (vault, worker));
CREATE TABLE IF NOT EXISTS published_keys (proxy TEXT PRIMARY KEY, ohttp BLOB NOT NULL, credits TEXT);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS log (seq INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, op TEXT NOT NULL, detail TEXT NOT NULL);
";

/// Delays the devnet enforces (from the registry's economics).
#[derive(Clone, Copy, Debug)]
pub struct Delays {
    pub channel_close_secs: u64,
    pub vault_withdraw_secs: u64,
}

/// Totals for checking conservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Audit {
    pub minted: Nanotons,
    pub accounts: Nanotons,
    pub channels: Nanotons,
    pub vaults: Nanotons,
}

impl Audit {
    pub fn conserved(&self) -> bool {
        self.accounts + self.channels + self.vaults == self.minted
    }
}

/// The devnet ledger. Cheap to clone.
#[derive(Clone)]
pub struct Devnet {
    conn: Arc<Mutex<Connection>>,
    clock: Arc<dyn Clock>,
    delays: Delays,
}

impl std::fmt::Debug for Devnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Devnet")
            .field("delays", &self.delays)
            .finish_non_exhaustive()
    }
}

fn key_hex(k: &PublicKey) -> String {
    k.to_hex()
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("rows serialize")
}

fn parse<T: serde::de::DeserializeOwned>(s: String) -> Result<T, PayError> {
    serde_json::from_str(&s).map_err(|e| PayError::Storage(format!("corrupt row: {e}")))
}

fn account(tx: &Transaction<'_>, k: &PublicKey) -> Result<Nanotons, PayError> {
    let s: Option<String> = tx
        .query_row(
            "SELECT balance FROM accounts WHERE key = ?1",
            [key_hex(k)],
            |r| r.get(0),
        )
        .optional()?;
    s.map_or(Ok(0), amount)
}

fn set_account(tx: &Transaction<'_>, k: &PublicKey, v: Nanotons) -> Result<(), PayError> {
    tx.execute(
        "INSERT INTO accounts (key, balance) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET balance = ?2",
        params![key_hex(k), v.to_string()],
    )?;
    Ok(())
}

/// The JSON row stored under `id` in `table` (`channels` or `vaults`).
fn row<T: serde::de::DeserializeOwned>(
    tx: &Transaction<'_>,
    table: &str,
    id: &Address,
) -> Result<Option<T>, PayError> {
    let s: Option<String> = tx
        .query_row(
            &format!("SELECT row FROM {table} WHERE id = ?1"),
            [id.to_string()],
            |r| r.get(0),
        )
        .optional()?;
    s.map(parse).transpose()
}

fn channel(tx: &Transaction<'_>, id: &Address) -> Result<ChannelRow, PayError> {
    row(tx, "channels", id)?.ok_or(PayError::NoChannel(*id))
}

fn set_channel(tx: &Transaction<'_>, c: &ChannelRow) -> Result<(), PayError> {
    tx.execute(
        "INSERT INTO channels (id, client, proxy, row) VALUES (?1, ?2, ?3, ?4) ON CONFLICT(id) DO UPDATE SET row = ?4",
        params![c.id.to_string(), key_hex(&c.client), key_hex(&c.proxy), json(c)],
    )?;
    Ok(())
}

fn vault(tx: &Transaction<'_>, id: &Address) -> Result<VaultRow, PayError> {
    row(tx, "vaults", id)?.ok_or(PayError::NoVault(*id))
}

fn set_vault(tx: &Transaction<'_>, v: &VaultRow) -> Result<(), PayError> {
    tx.execute(
        "INSERT INTO vaults (id, row) VALUES (?1, ?2) ON CONFLICT(id) DO UPDATE SET row = ?2",
        params![v.id.to_string(), json(v)],
    )?;
    Ok(())
}

fn claimed(
    tx: &Transaction<'_>,
    vault: &Address,
    worker: &PublicKey,
) -> Result<Nanotons, PayError> {
    let s: Option<String> = tx
        .query_row(
            "SELECT claimed FROM worker_claims WHERE vault = ?1 AND worker = ?2",
            params![vault.to_string(), key_hex(worker)],
            |r| r.get(0),
        )
        .optional()?;
    s.map_or(Ok(0), amount)
}

fn set_claimed(
    tx: &Transaction<'_>,
    vault: &Address,
    worker: &PublicKey,
    v: Nanotons,
) -> Result<(), PayError> {
    tx.execute(
        "INSERT INTO worker_claims (vault, worker, claimed) VALUES (?1, ?2, ?3) ON CONFLICT(vault, worker) DO UPDATE SET claimed = ?3",
        params![vault.to_string(), key_hex(worker), v.to_string()],
    )?;
    Ok(())
}

fn log(tx: &Transaction<'_>, now: u64, op: &str, detail: String) -> Result<(), PayError> {
    tx.execute(
        "INSERT INTO log (at, op, detail) VALUES (?1, ?2, ?3)",
        params![now as i64, op, detail],
    )?;
    Ok(())
}

impl Devnet {
    /// Opens (creating) the ledger at `path`.
    pub fn open(path: &Path, clock: Arc<dyn Clock>, delays: Delays) -> Result<Self, PayError> {
        // The contracts' bounds: the devnet accepts nothing TON would not.
        let terms = kokon_money::Economics {
            channel_close_delay_secs: delays.channel_close_secs,
            vault_withdraw_delay_secs: delays.vault_withdraw_secs,
            ..Default::default()
        };
        terms.check()?;
        let conn = crate::sqlite::open(path, SCHEMA)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            clock,
            delays,
        })
    }

    /// Runs `f` in one immediate transaction on a blocking thread.
    async fn tx<T, F>(&self, f: F) -> Result<T, PayError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>, u64) -> Result<T, PayError> + Send + 'static,
    {
        let (conn, now) = (self.conn.clone(), self.clock.now_unix());
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let out = f(&tx, now)?;
            tx.commit()?;
            Ok(out)
        })
        .await
        .map_err(|e| PayError::Storage(format!("ledger task failed: {e}")))?
    }

    /// Mints `amount` into `account`. Devnet only: this is the faucet.
    pub async fn fund(&self, account: PublicKey, amount: Nanotons) -> Result<Nanotons, PayError> {
        self.tx(move |tx, now| {
            let bal = account_add(tx, &account, amount)?;
            let minted: Option<String> = tx.query_row("SELECT value FROM meta WHERE key = 'minted'", [], |r| r.get(0)).optional()?;
            let minted = minted.map_or(Ok(0), crate::sqlite::amount)? + amount;
            tx.execute("INSERT INTO meta (key, value) VALUES ('minted', ?1) ON CONFLICT(key) DO UPDATE SET value = ?1", [minted.to_string()])?;
            log(tx, now, "fund", format!("{account} +{amount}"))?;
            Ok(bal)
        })
        .await
    }

    /// How many `op`s went through (`claim_channel`, `vault_claim`, … as
    /// the ledger's log names them): the transactions a chain would carry.
    pub async fn count(&self, op: &'static str) -> Result<u64, PayError> {
        self.tx(move |tx, _| {
            let n: i64 =
                tx.query_row("SELECT count(*) FROM log WHERE op = ?1", [op], |r| r.get(0))?;
            Ok(n as u64)
        })
        .await
    }

    /// Totals over the whole ledger.
    pub async fn audit(&self) -> Result<Audit, PayError> {
        self.tx(|tx, _| {
            let sum = |sql: &str| -> Result<Vec<String>, PayError> {
                let mut st = tx.prepare(sql)?;
                let rows = st.query_map([], |r| r.get::<_, String>(0))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            };
            let minted: Option<String> = tx
                .query_row("SELECT value FROM meta WHERE key = 'minted'", [], |r| {
                    r.get(0)
                })
                .optional()?;
            let accounts = sum("SELECT balance FROM accounts")?
                .into_iter()
                .map(amount)
                .sum::<Result<Nanotons, _>>()?;
            let channels = sum("SELECT row FROM channels")?
                .into_iter()
                .map(|s| parse::<ChannelRow>(s).map(|c| c.balance()))
                .sum::<Result<Nanotons, _>>()?;
            let vaults = sum("SELECT row FROM vaults")?
                .into_iter()
                .map(|s| parse::<VaultRow>(s).map(|v| v.balance))
                .sum::<Result<Nanotons, _>>()?;
            Ok(Audit {
                minted: minted.map_or(Ok(0), amount)?,
                accounts,
                channels,
                vaults,
            })
        })
        .await
    }
}

fn account_add(tx: &Transaction<'_>, k: &PublicKey, delta: Nanotons) -> Result<Nanotons, PayError> {
    let bal = account(tx, k)?
        .checked_add(delta)
        .ok_or(MoneyError::Overflow)?;
    set_account(tx, k, bal)?;
    Ok(bal)
}

impl Settlement for Devnet {
    fn balance(&self, k: PublicKey) -> BoxFuture<'_, Result<Nanotons, PayError>> {
        Box::pin(self.tx(move |tx, _| account(tx, &k)))
    }

    fn channel(&self, id: Address) -> BoxFuture<'_, Result<Option<ChannelRow>, PayError>> {
        Box::pin(self.tx(move |tx, _| row(tx, "channels", &id)))
    }

    fn channels_of(&self, client: PublicKey) -> BoxFuture<'_, Result<Vec<ChannelRow>, PayError>> {
        Box::pin(self.tx(move |tx, _| {
            let mut st = tx.prepare("SELECT row FROM channels WHERE client = ?1 ORDER BY rowid")?;
            let rows = st.query_map([key_hex(&client)], |r| r.get::<_, String>(0))?;
            rows.map(|r| parse(r?)).collect()
        }))
    }

    fn vault(&self, id: Address) -> BoxFuture<'_, Result<Option<VaultRow>, PayError>> {
        Box::pin(self.tx(move |tx, _| row(tx, "vaults", &id)))
    }

    fn worker_claimed(
        &self,
        v: Address,
        w: PublicKey,
    ) -> BoxFuture<'_, Result<Nanotons, PayError>> {
        Box::pin(self.tx(move |tx, _| claimed(tx, &v, &w)))
    }

    fn open_channel<'a>(
        &'a self,
        client: &'a SecretKey,
        proxy: PublicKey,
        amt: Nanotons,
    ) -> BoxFuture<'a, Result<ChannelRow, PayError>> {
        let client = client.public();
        Box::pin(self.tx(move |tx, now| {
            let v = vault(tx, &ledger::vault_address(&proxy))?;
            let seq: i64 = tx.query_row(
                "SELECT COUNT(*) FROM channels WHERE client = ?1 AND proxy = ?2",
                params![key_hex(&client), key_hex(&proxy)],
                |r| r.get(0),
            )?;
            let mut bal = account(tx, &client)?;
            let ch = ledger::open_channel(&mut bal, client, &v, seq as u64, amt)?;
            set_account(tx, &client, bal)?;
            set_channel(tx, &ch)?;
            log(tx, now, "open_channel", format!("{} deposit {amt}", ch.id))?;
            Ok(ch)
        }))
    }

    fn topup<'a>(
        &'a self,
        client: &'a SecretKey,
        id: Address,
        amt: Nanotons,
    ) -> BoxFuture<'a, Result<ChannelRow, PayError>> {
        let client = client.public();
        Box::pin(self.tx(move |tx, now| {
            let mut ch = channel(tx, &id)?;
            if ch.client != client {
                return Err(MoneyError::NotAuthorized("channel's client").into());
            }
            let mut bal = account(tx, &client)?;
            ledger::topup(&mut bal, &mut ch, amt)?;
            set_account(tx, &client, bal)?;
            set_channel(tx, &ch)?;
            log(tx, now, "topup", format!("{id} +{amt}"))?;
            Ok(ch)
        }))
    }

    fn claim_channel<'a>(
        &'a self,
        proxy: &'a SecretKey,
        v: Signed<ChannelVoucher>,
    ) -> BoxFuture<'a, Result<Nanotons, PayError>> {
        let proxy = proxy.public();
        Box::pin(self.tx(move |tx, now| {
            let mut ch = channel(tx, &v.body.channel)?;
            let mut vl = vault(tx, &ledger::vault_address(&proxy))?;
            let delta = ledger::claim_channel(&mut ch, &mut vl, &v, now)?;
            set_channel(tx, &ch)?;
            set_vault(tx, &vl)?;
            log(tx, now, "claim_channel", format!("{} +{delta}", ch.id))?;
            Ok(delta)
        }))
    }

    fn close_cooperative<'a>(
        &'a self,
        proxy: &'a SecretKey,
        id: Address,
        last: Option<Signed<ChannelVoucher>>,
    ) -> BoxFuture<'a, Result<(Nanotons, Nanotons), PayError>> {
        let proxy = proxy.public();
        Box::pin(self.tx(move |tx, now| {
            let mut ch = channel(tx, &id)?;
            if ch.proxy != proxy {
                return Err(MoneyError::NotAuthorized("channel's proxy").into());
            }
            let mut vl = vault(tx, &ledger::vault_address(&proxy))?;
            let mut bal = account(tx, &ch.client)?;
            let out = ledger::close_cooperative(&mut ch, &mut vl, &mut bal, last.as_ref(), now)?;
            set_account(tx, &ch.client, bal)?;
            set_channel(tx, &ch)?;
            set_vault(tx, &vl)?;
            log(
                tx,
                now,
                "close_cooperative",
                format!("{id} claimed {} refunded {}", out.0, out.1),
            )?;
            Ok(out)
        }))
    }

    fn start_close<'a>(
        &'a self,
        client: &'a SecretKey,
        id: Address,
    ) -> BoxFuture<'a, Result<ChannelRow, PayError>> {
        let (client, delay) = (client.public(), self.delays.channel_close_secs);
        Box::pin(self.tx(move |tx, now| {
            let mut ch = channel(tx, &id)?;
            if ch.client != client {
                return Err(MoneyError::NotAuthorized("channel's client").into());
            }
            ledger::start_close(&mut ch, now, delay)?;
            set_channel(tx, &ch)?;
            log(tx, now, "start_close", id.to_string())?;
            Ok(ch)
        }))
    }

    fn finish_close<'a>(
        &'a self,
        _caller: &'a SecretKey,
        id: Address,
    ) -> BoxFuture<'a, Result<Nanotons, PayError>> {
        Box::pin(self.tx(move |tx, now| {
            let mut ch = channel(tx, &id)?;
            let mut bal = account(tx, &ch.client)?;
            let refund = ledger::finish_close(&mut ch, &mut bal, now)?;
            set_account(tx, &ch.client, bal)?;
            set_channel(tx, &ch)?;
            log(tx, now, "finish_close", format!("{id} refunded {refund}"))?;
            Ok(refund)
        }))
    }

    fn vault_deposit<'a>(
        &'a self,
        owner: &'a SecretKey,
        amt: Nanotons,
    ) -> BoxFuture<'a, Result<VaultRow, PayError>> {
        let owner = owner.public();
        Box::pin(self.tx(move |tx, now| {
            let id = ledger::vault_address(&owner);
            let mut vl = row(tx, "vaults", &id)?.unwrap_or(VaultRow {
                id,
                owner,
                balance: 0,
                withdrawal: None,
            });
            let mut bal = account(tx, &owner)?;
            ledger::vault_deposit(&mut bal, &mut vl, amt)?;
            set_account(tx, &owner, bal)?;
            set_vault(tx, &vl)?;
            log(tx, now, "vault_deposit", format!("{id} +{amt}"))?;
            Ok(vl)
        }))
    }

    fn vault_claim<'a>(
        &'a self,
        worker: &'a SecretKey,
        v: Signed<WorkerVoucher>,
    ) -> BoxFuture<'a, Result<Nanotons, PayError>> {
        let worker = worker.public();
        Box::pin(self.tx(move |tx, now| {
            let mut vl = vault(tx, &v.body.vault)?;
            let mut done = claimed(tx, &vl.id, &worker)?;
            let mut bal = account(tx, &worker)?;
            let delta = ledger::vault_claim(&mut vl, &mut done, &mut bal, &v, &worker)?;
            set_vault(tx, &vl)?;
            set_claimed(tx, &vl.id, &worker, done)?;
            set_account(tx, &worker, bal)?;
            log(
                tx,
                now,
                "vault_claim",
                format!("{} worker {} +{delta}", vl.id, worker.short()),
            )?;
            Ok(delta)
        }))
    }

    fn request_withdrawal<'a>(
        &'a self,
        owner: &'a SecretKey,
        amt: Nanotons,
    ) -> BoxFuture<'a, Result<Withdrawal, PayError>> {
        let (owner, delay) = (owner.public(), self.delays.vault_withdraw_secs);
        Box::pin(self.tx(move |tx, now| {
            let mut vl = vault(tx, &ledger::vault_address(&owner))?;
            let w = ledger::request_withdrawal(&mut vl, amt, now, delay)?;
            set_vault(tx, &vl)?;
            log(tx, now, "request_withdrawal", format!("{} {amt}", vl.id))?;
            Ok(w)
        }))
    }

    fn withdraw<'a>(&'a self, owner: &'a SecretKey) -> BoxFuture<'a, Result<Nanotons, PayError>> {
        let owner = owner.public();
        Box::pin(self.tx(move |tx, now| {
            let mut vl = vault(tx, &ledger::vault_address(&owner))?;
            let mut bal = account(tx, &owner)?;
            let out = ledger::withdraw(&mut vl, &mut bal, now)?;
            set_vault(tx, &vl)?;
            set_account(tx, &owner, bal)?;
            log(tx, now, "withdraw", format!("{} {out}", vl.id))?;
            Ok(out)
        }))
    }

    fn published_keys(&self) -> BoxFuture<'_, Result<Vec<(PublicKey, KeyRecord)>, PayError>> {
        Box::pin(self.tx(|tx, _| {
            let mut stmt =
                tx.prepare("SELECT proxy, ohttp, credits FROM published_keys ORDER BY proxy")?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (proxy, ohttp, credits) = row?;
                let proxy = PublicKey::from_hex(&proxy)
                    .map_err(|e| PayError::Storage(format!("published keys: {e}")))?;
                let credits = credits.map(|c| hex32(&c)).transpose()?;
                out.push((proxy, KeyRecord { ohttp, credits }));
            }
            Ok(out)
        }))
    }

    fn publish_keys<'a>(
        &'a self,
        proxy: &'a SecretKey,
        record: &'a KeyRecord,
    ) -> BoxFuture<'a, Result<(), PayError>> {
        let (proxy, record) = (proxy.public(), record.clone());
        Box::pin(self.tx(move |tx, now| {
            check_record(&record)?;
            tx.execute(
                "INSERT INTO published_keys (proxy, ohttp, credits) VALUES (?1, ?2, ?3)
                 ON CONFLICT(proxy) DO UPDATE SET ohttp = ?2, credits = ?3",
                params![
                    key_hex(&proxy),
                    record.ohttp,
                    record.credits.map(hex::encode)
                ],
            )?;
            log(
                tx,
                now,
                "publish_keys",
                format!("{proxy} {} bytes", record.ohttp.len()),
            )?;
            Ok(())
        }))
    }
}

/// What the registry would refuse to hold.
fn check_record(record: &KeyRecord) -> Result<(), PayError> {
    if record.ohttp.len() > crate::MAX_PUBLISHED_OHTTP {
        return Err(PayError::KeysTooLarge(record.ohttp.len()));
    }
    Ok(())
}

fn hex32(s: &str) -> Result<[u8; 32], PayError> {
    hex::decode(s)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| PayError::Storage(format!("published keys: {s:?} is not 32 hex bytes")))
}
