//! Each daemon's durable money state.
//!
//! The rule everywhere: a signed voucher or receipt is committed to disk
//! (SQLite, WAL, full fsync) before it is sent or acted on, and in-memory
//! state changes only after the commit. A crash at any point therefore
//! leaves the files at a state the daemon can resume from; cumulative
//! vouchers make a lost message harmless (the next one covers it).

pub mod client;
pub mod proxy;
pub mod wallet;
pub mod worker;

use rusqlite::{Connection, OptionalExtension, params};

use crate::PayError;

/// What a claim credited: a voucher the ledger already settled (a retry
/// after a crash) credits nothing and is not an error.
fn credited(r: Result<kokon_money::Nanotons, PayError>) -> Result<kokon_money::Nanotons, PayError> {
    match r {
        Err(PayError::Money(kokon_money::MoneyError::NotAboveLatest { .. })) => Ok(0),
        other => other,
    }
}

fn get_meta(conn: &Connection, key: &str) -> Result<Option<String>, PayError> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
}

fn set_meta(conn: &Connection, key: &str, value: &str) -> Result<(), PayError> {
    exec(
        conn,
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = ?2",
        params![key, value],
    )?;
    Ok(())
}

/// Runs one statement from the connection's statement cache (the books run
/// the same few statements for every job; parsing them each time was a
/// tenth of a paid job's CPU).
fn exec(conn: &Connection, sql: &str, p: impl rusqlite::Params) -> Result<usize, PayError> {
    Ok(conn.prepare_cached(sql)?.execute(p)?)
}

/// Rows of four text columns, the third nullable (id, key, voucher, amount).
type Row4 = (String, String, Option<String>, String);

fn rows4(conn: &Connection, sql: &str) -> Result<Vec<Row4>, PayError> {
    let mut st = conn.prepare(sql)?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("money types serialize")
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, PayError> {
    serde_json::from_str(s).map_err(|e| PayError::Storage(format!("corrupt record: {e}")))
}
