//! SQLite opened for money: WAL journal, full fsync on commit.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use crate::PayError;

/// Opens (creating if needed) a database whose commits are durable when
/// `commit` returns: `journal_mode=WAL`, `synchronous=FULL`.
pub fn open(path: &Path, schema: &str) -> Result<Connection, PayError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| PayError::Storage(format!("{}: {e}", dir.display())))?;
    }
    let conn = Connection::open(path)
        .map_err(|e| PayError::Storage(format!("{}: {e}", path.display())))?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(PayError::Storage(format!(
            "{}: cannot enable WAL (got {mode})",
            path.display()
        )));
    }
    conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")?;
    conn.execute_batch(schema)?;
    Ok(conn)
}

/// u128 amounts are stored as decimal text (SQLite integers are i64).
pub fn amount(s: String) -> Result<u128, PayError> {
    s.parse()
        .map_err(|_| PayError::Storage(format!("corrupt amount `{s}`")))
}
