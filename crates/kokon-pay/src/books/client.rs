//! The client gateway's books: its channel and every receipt it paid.

use std::path::Path;

use kokon_money::channel::ClientChannel;
use kokon_money::{Address, ChannelVoucher, Nanotons, PublicKey, Receipt, SecretKey, Signed};
use rusqlite::{Connection, params};

use super::{from_json, get_meta, set_meta, to_json};
use crate::PayError;
use crate::fail;
use crate::journal::{Durable, Journal};
use crate::sqlite::amount;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS receipts (request TEXT PRIMARY KEY, worker TEXT NOT NULL, cost TEXT NOT NULL, receipt TEXT NOT NULL);
";

/// The latest voucher in the books at `path`, read without opening them
/// for writing (for status commands while the gateway runs).
pub fn latest_voucher(path: &Path) -> Result<Option<Signed<ChannelVoucher>>, PayError> {
    if !path.exists() {
        return Ok(None);
    }
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    match get_meta(&conn, "voucher") {
        Ok(Some(s)) => Ok(Some(from_json(&s)?)),
        Ok(None) => Ok(None),
        Err(_) => Ok(None), // books without the table yet
    }
}

/// The gateway's channel state, durable.
pub struct ClientBooks {
    db: Journal,
    key: SecretKey,
    channel: ClientChannel,
    latest: Option<Signed<ChannelVoucher>>,
}

impl std::fmt::Debug for ClientBooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBooks")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl ClientBooks {
    /// Opens the books at `path` for `channel` (with `deposit` as the ledger
    /// says now). Keeps what was spent on the same channel before.
    pub fn open(
        path: &Path,
        key: SecretKey,
        channel: Address,
        deposit: Nanotons,
    ) -> Result<Self, PayError> {
        let db = Journal::open(path, SCHEMA)?;
        let latest: Option<Signed<ChannelVoucher>> = match get_meta(db.conn(), "voucher")? {
            Some(s) => Some(from_json(&s)?),
            None => None,
        };
        let latest = latest.filter(|v| v.body.channel == channel);
        let spent = latest.map_or(0, |v| v.body.amount);
        Ok(Self {
            db,
            key,
            channel: ClientChannel {
                id: channel,
                deposit,
                spent,
            },
            latest,
        })
    }

    pub fn channel(&self) -> &ClientChannel {
        &self.channel
    }

    pub fn payer(&self) -> PublicKey {
        self.key.public()
    }

    /// The client key, to authorise jobs on this channel.
    pub fn key(&self) -> &SecretKey {
        &self.key
    }

    pub fn set_deposit(&mut self, deposit: Nanotons) {
        self.channel.deposit = deposit;
    }

    /// The latest voucher, to re-send after a reconnect (once durable).
    pub fn latest(&self) -> Durable<Option<Signed<ChannelVoucher>>> {
        self.db.durable(self.latest)
    }

    /// The books' journal (fsync counts for `/metrics`).
    pub fn journal(&self) -> &Journal {
        &self.db
    }

    /// Pays for a verified receipt: records it and signs the next voucher,
    /// to be sent once both are on disk. `None` if the job cost nothing.
    pub fn pay(
        &mut self,
        request_id: &str,
        worker: &PublicKey,
        receipt: &Signed<Receipt>,
        cost: Nanotons,
    ) -> Result<Durable<Option<Signed<ChannelVoucher>>>, PayError> {
        let voucher = if cost > 0 {
            Some(self.channel.next_voucher(cost, &self.key)?)
        } else {
            None
        };
        fail::hit("client.pay.before_persist")?;
        self.db.commit(|tx| {
            let inserted = super::exec(
                tx,
                "INSERT OR IGNORE INTO receipts (request, worker, cost, receipt) VALUES (?1, ?2, ?3, ?4)",
                params![request_id, worker.to_hex(), cost.to_string(), to_json(receipt)],
            )?;
            if inserted == 0 {
                return Err(PayError::Storage(format!(
                    "request {request_id} was already paid"
                )));
            }
            if let Some(v) = &voucher {
                set_meta(tx, "voucher", &to_json(v))?;
            }
            Ok(())
        })?;
        fail::hit("client.pay.after_persist")?;
        if let Some(v) = &voucher {
            self.channel.commit(v);
            self.latest = Some(*v);
        }
        Ok(self.db.durable(voucher))
    }

    /// Σ costs of all receipts paid (equals the latest voucher on one channel).
    pub fn receipts_total(&self) -> Result<(u64, Nanotons), PayError> {
        let mut st = self.db.conn().prepare("SELECT cost FROM receipts")?;
        let costs = st.query_map([], |r| r.get::<_, String>(0))?;
        let mut n = 0;
        let mut total = 0;
        for c in costs {
            total += amount(c?)?;
            n += 1;
        }
        Ok((n, total))
    }
}
