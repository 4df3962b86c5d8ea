//! The client gateway's books: its channel and every receipt it paid.

use std::path::Path;

use kokon_money::channel::ClientChannel;
use kokon_money::{Address, ChannelVoucher, Nanotons, PublicKey, Receipt, SecretKey, Signed};
use rusqlite::{Connection, OptionalExtension, params};

use super::{from_json, get_meta, set_meta, to_json};
use crate::PayError;
use crate::fail;
use crate::journal::{Durable, Journal};
use crate::sqlite::amount;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS receipts (request TEXT PRIMARY KEY, worker TEXT NOT NULL, cost TEXT NOT NULL, receipt TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS refused (request TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS purchases (batch TEXT PRIMARY KEY, amount TEXT NOT NULL) WITHOUT ROWID;
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
    /// to be sent once both are on disk. Receipts are cumulative: a job
    /// paid already is paid only the increase of a larger receipt, and
    /// nothing (`None`) for one not above what it was paid.
    pub fn pay(
        &mut self,
        request_id: &str,
        worker: &PublicKey,
        receipt: &Signed<Receipt>,
        cost: Nanotons,
    ) -> Result<Durable<Option<Signed<ChannelVoucher>>>, PayError> {
        let before = self.paid_for(request_id)?;
        let more = cost.saturating_sub(before.unwrap_or(0));
        if before.is_some() && more == 0 {
            return Ok(self.db.durable(None));
        }
        let voucher = if more > 0 {
            Some(self.channel.next_voucher(more, &self.key)?)
        } else {
            None
        };
        fail::hit("client.pay.before_persist")?;
        self.db.commit(|tx| {
            super::exec(
                tx,
                "INSERT INTO receipts (request, worker, cost, receipt) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT(request) DO UPDATE SET worker = ?2, cost = ?3, receipt = ?4",
                params![
                    request_id,
                    worker.to_hex(),
                    cost.to_string(),
                    to_json(receipt)
                ],
            )?;
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

    /// Pays for credit tokens the proxy sold (batch `batch`): records the
    /// purchase and signs the next voucher, once per batch (`None` for a
    /// batch paid before: a retried purchase).
    pub fn pay_credits(
        &mut self,
        batch: &str,
        amount: Nanotons,
    ) -> Result<Durable<Option<Signed<ChannelVoucher>>>, PayError> {
        let paid: Option<String> = self
            .db
            .conn()
            .prepare_cached("SELECT amount FROM purchases WHERE batch = ?1")?
            .query_row([batch], |r| r.get(0))
            .optional()?;
        if paid.is_some() {
            return Ok(self.db.durable(None));
        }
        let voucher = self.channel.next_voucher(amount, &self.key)?;
        fail::hit("client.pay.before_persist")?;
        self.db.commit(|tx| {
            super::exec(
                tx,
                "INSERT INTO purchases (batch, amount) VALUES (?1, ?2)",
                params![batch, amount.to_string()],
            )?;
            set_meta(tx, "voucher", &to_json(&voucher))?;
            Ok(())
        })?;
        fail::hit("client.pay.after_persist")?;
        self.channel.commit(&voucher);
        self.latest = Some(voucher);
        Ok(self.db.durable(Some(voucher)))
    }

    /// Records that the receipt of `request_id` was refused (and disputed),
    /// so a later offer of it is refused again, not paid. Written without
    /// waiting for its fsync: losing it only means checking the receipt
    /// again.
    pub fn refuse(&mut self, request_id: &str) -> Result<(), PayError> {
        self.db.commit(|tx| {
            super::exec(
                tx,
                "INSERT OR IGNORE INTO refused (request) VALUES (?1)",
                [request_id],
            )?;
            Ok(())
        })
    }

    /// Whether the receipt of `request_id` was refused.
    pub fn refused(&self, request_id: &str) -> Result<bool, PayError> {
        Ok(self
            .db
            .conn()
            .prepare_cached("SELECT 1 FROM refused WHERE request = ?1")?
            .query_row([request_id], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// What job `request_id` was paid, if it was.
    pub fn paid_for(&self, request_id: &str) -> Result<Option<Nanotons>, PayError> {
        let cost: Option<String> = self
            .db
            .conn()
            .prepare_cached("SELECT cost FROM receipts WHERE request = ?1")?
            .query_row([request_id], |r| r.get(0))
            .optional()?;
        cost.map(amount).transpose()
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

#[cfg(test)]
mod tests {
    use super::*;
    use kokon_money::{Hash32, TokenUsage};

    fn receipt(cost: Nanotons) -> Signed<Receipt> {
        let r = Receipt {
            request: Hash32([1; 32]),
            model: Hash32([2; 32]),
            usage: TokenUsage::default(),
            price_milli: 1000,
            cost,
        };
        Signed::sign(r, &SecretKey::from_bytes([3; 32])).unwrap()
    }

    #[test]
    fn a_job_is_paid_once_and_then_only_a_larger_receipts_increase() {
        let tmp = tempfile::tempdir().unwrap();
        let channel = Address::new(0, [9; 32]);
        let path = tmp.path().join("client.db");
        let mut books =
            ClientBooks::open(&path, SecretKey::from_bytes([1; 32]), channel, 10_000).unwrap();
        let worker = SecretKey::from_bytes([3; 32]).public();
        let pay = |b: &mut ClientBooks, cost| {
            b.pay("r", &worker, &receipt(cost), cost)
                .unwrap()
                .wait_blocking()
                .unwrap()
                .map(|v| v.body.amount)
        };
        assert_eq!(pay(&mut books, 300), Some(300), "a receipt mid-stream");
        assert_eq!(pay(&mut books, 300), None, "the same again: nothing more");
        assert_eq!(pay(&mut books, 200), None, "a smaller one: nothing");
        assert_eq!(pay(&mut books, 500), Some(500), "the End's: the 200 more");
        assert_eq!(books.paid_for("r").unwrap(), Some(500));
        assert_eq!(books.receipts_total().unwrap(), (1, 500));
        books.refuse("bad").unwrap();
        books.journal().flush().durable_blocking().unwrap();
        drop(books);
        let books =
            ClientBooks::open(&path, SecretKey::from_bytes([1; 32]), channel, 10_000).unwrap();
        assert_eq!(books.channel().spent, 500, "kept across a restart");
        assert!(books.refused("bad").unwrap() && !books.refused("r").unwrap());
    }
}
