//! Group commit for the books: many commits, one fsync.
//!
//! A [`Journal`] is a SQLite connection in WAL mode with `synchronous=NORMAL`:
//! a commit appends its frames to the write-ahead log (a `write`, tens of
//! microseconds) and does not wait for the disk. Durability is asked for
//! separately and paid once per group: [`Flush::durable`] fsyncs the log
//! file, which makes every commit written before that fsync durable, so
//! jobs that finish while one fsync runs share the next one (the WAL flush
//! of PostgreSQL and InnoDB). The fsync runs on a blocking thread, never on
//! the async runtime and never under the books' lock.
//!
//! The rule the books keep: whatever leaves the process (a voucher, a
//! receipt, an "ok") is handed out only as a [`Durable`], whose value can
//! be taken only after its fsync. In-memory state moves at commit time,
//! before the fsync; anything derived from it and sent later waits for its
//! own, later, flush, which covers the earlier commit too (the log is one
//! sequence). A failed fsync poisons the journal: the process's memory is
//! ahead of the disk, so every later commit and flush fails until the daemon
//! restarts from its files.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rusqlite::{Connection, Transaction};

use crate::PayError;

/// A connection whose commits become durable through [`Flush`]es.
pub struct Journal {
    conn: Connection,
    log: Arc<Log>,
}

/// The write-ahead log file and how far it is known to be on disk.
struct Log {
    file: File,
    path: PathBuf,
    /// Commits written (a sequence number per commit).
    written: AtomicU64,
    /// Every commit up to this sequence number is on disk.
    durable: AtomicU64,
    poisoned: AtomicBool,
    /// fsyncs run, for `/metrics` and tests.
    fsyncs: AtomicU64,
    /// Held by the one fsync in flight; waiters behind it usually find their
    /// commit covered when they get it.
    flushing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("log", &self.log.path)
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// Opens (creating if needed) the database at `path` with `schema`.
    pub fn open(path: &Path, schema: &str) -> Result<Self, PayError> {
        let conn = crate::sqlite::open(path, schema)?;
        conn.execute_batch("PRAGMA synchronous=NORMAL;")?;
        let wal = wal_path(path);
        let file = File::options()
            .read(true)
            .write(true)
            .open(&wal)
            .map_err(|e| PayError::Storage(format!("{}: {e}", wal.display())))?;
        // The log's directory entry must survive a power cut too.
        file.sync_all()
            .and_then(|()| sync_dir(&wal))
            .map_err(|e| PayError::Storage(format!("{}: {e}", wal.display())))?;
        Ok(Self {
            conn,
            log: Arc::new(Log {
                file,
                path: wal,
                written: AtomicU64::new(0),
                durable: AtomicU64::new(0),
                poisoned: AtomicBool::new(false),
                fsyncs: AtomicU64::new(0),
                flushing: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// For reads.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Runs `f` in one transaction and commits it (written, not yet
    /// durable: take [`Self::flush`] and wait on it before acting).
    pub fn commit<T>(
        &mut self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, PayError>,
    ) -> Result<T, PayError> {
        self.log.check()?;
        let tx = self.conn.transaction()?;
        let out = f(&tx)?;
        tx.commit()?;
        self.log.written.fetch_add(1, Ordering::SeqCst);
        Ok(out)
    }

    /// A flush covering every commit made so far.
    pub fn flush(&self) -> Flush {
        Flush {
            upto: self.log.written.load(Ordering::SeqCst),
            log: self.log.clone(),
        }
    }

    /// fsyncs run so far (each covering one or more commits).
    pub fn fsyncs(&self) -> u64 {
        self.log.fsyncs.load(Ordering::Relaxed)
    }

    /// Commits written so far.
    pub fn commits(&self) -> u64 {
        self.log.written.load(Ordering::SeqCst)
    }

    /// `value`, to be taken once every commit so far is durable.
    pub fn durable<T>(&self, value: T) -> Durable<T> {
        Durable {
            value,
            flush: self.flush(),
        }
    }
}

impl Log {
    fn check(&self) -> Result<(), PayError> {
        if self.poisoned.load(Ordering::SeqCst) {
            return Err(PayError::Storage(format!(
                "{}: an fsync failed earlier; restart the daemon to resume from its files",
                self.path.display()
            )));
        }
        Ok(())
    }

    fn covered(&self, upto: u64) -> bool {
        self.durable.load(Ordering::SeqCst) >= upto
    }

    /// One fsync covering every commit written before it starts.
    fn fsync(&self) -> Result<(), PayError> {
        let target = self.written.load(Ordering::SeqCst);
        if let Err(e) = self.file.sync_data() {
            self.poisoned.store(true, Ordering::SeqCst);
            return Err(PayError::Storage(format!(
                "{}: fsync failed: {e}",
                self.path.display()
            )));
        }
        self.durable.fetch_max(target, Ordering::SeqCst);
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// A point in the journal to wait for: every commit before it is durable
/// once [`Flush::durable`] returns.
#[must_use = "nothing is durable until the flush is waited for"]
pub struct Flush {
    upto: u64,
    log: Arc<Log>,
}

impl Flush {
    /// Waits until the commits this flush covers are on disk, running (or
    /// joining) one fsync off the async runtime.
    pub async fn durable(self) -> Result<(), PayError> {
        loop {
            self.log.check()?;
            if self.log.covered(self.upto) {
                return Ok(());
            }
            let _turn = self.log.flushing.lock().await;
            if self.log.covered(self.upto) {
                return Ok(());
            }
            let log = self.log.clone();
            tokio::task::spawn_blocking(move || log.fsync())
                .await
                .map_err(|e| PayError::Storage(format!("fsync task: {e}")))??;
        }
    }

    /// [`Self::durable`] for tools and tests: blocks the calling thread
    /// (usable inside or outside an async runtime).
    pub fn durable_blocking(self) -> Result<(), PayError> {
        loop {
            self.log.check()?;
            if self.log.covered(self.upto) {
                return Ok(());
            }
            match self.log.flushing.try_lock() {
                Ok(_turn) if self.log.covered(self.upto) => return Ok(()),
                Ok(_turn) => self.log.fsync()?,
                Err(_) => std::thread::sleep(std::time::Duration::from_micros(200)),
            }
        }
    }
}

/// A value that may leave the process only once the commits it rests on
/// are durable: [`Durable::wait`] is the only way to take it.
#[must_use = "the value is only available after waiting for durability"]
pub struct Durable<T> {
    value: T,
    flush: Flush,
}

impl<T> Durable<T> {
    pub async fn wait(self) -> Result<T, PayError> {
        self.flush.durable().await?;
        Ok(self.value)
    }

    pub fn wait_blocking(self) -> Result<T, PayError> {
        self.flush.durable_blocking()?;
        Ok(self.value)
    }
}

fn wal_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push("-wal");
    PathBuf::from(s)
}

fn sync_dir(file: &Path) -> std::io::Result<()> {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => File::open(".")?.sync_all(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v TEXT NOT NULL);";

    fn put(j: &mut Journal, k: i64) {
        j.commit(|tx| {
            tx.execute("INSERT INTO t (k, v) VALUES (?1, 'x')", [k])?;
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn a_flush_covers_every_commit_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(&dir.path().join("b.db"), SCHEMA).unwrap();
        for k in 0..10 {
            put(&mut j, k);
        }
        let f = j.flush();
        assert_eq!(f.upto, 10);
        f.durable_blocking().unwrap();
        assert!(j.log.covered(10));
        put(&mut j, 10);
        assert!(!j.log.covered(11), "a later commit is not covered yet");
    }

    #[test]
    fn flushes_taken_before_one_fsync_share_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(&dir.path().join("b.db"), SCHEMA).unwrap();
        let mut waiting = Vec::new();
        for k in 0..16 {
            put(&mut j, k);
            waiting.push(j.durable(k));
        }
        for (k, d) in waiting.into_iter().enumerate() {
            assert_eq!(d.wait_blocking().unwrap(), k as i64);
        }
        assert_eq!((j.commits(), j.fsyncs()), (16, 1), "16 commits, one fsync");
    }

    #[test]
    fn commits_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        {
            let mut j = Journal::open(&path, SCHEMA).unwrap();
            put(&mut j, 1);
            j.durable(()).wait_blocking().unwrap();
        }
        let j = Journal::open(&path, SCHEMA).unwrap();
        let n: i64 = j
            .conn()
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn a_failed_commit_changes_nothing_and_counts_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(&dir.path().join("b.db"), SCHEMA).unwrap();
        put(&mut j, 1);
        let dup = j.commit(|tx| {
            tx.execute("INSERT INTO t (k, v) VALUES (1, 'again')", [])?;
            Ok(())
        });
        assert!(dup.is_err());
        assert_eq!(j.log.written.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_waiters_share_fsyncs() {
        let dir = tempfile::tempdir().unwrap();
        let j = Arc::new(std::sync::Mutex::new(
            Journal::open(&dir.path().join("b.db"), SCHEMA).unwrap(),
        ));
        let mut tasks = Vec::new();
        for k in 0..64 {
            let j = j.clone();
            tasks.push(tokio::spawn(async move {
                let d = {
                    let mut j = j.lock().unwrap();
                    put(&mut j, k);
                    j.durable(k)
                };
                d.wait().await.unwrap()
            }));
        }
        for (k, t) in tasks.into_iter().enumerate() {
            assert_eq!(t.await.unwrap(), k as i64);
        }
        let j = j.lock().unwrap();
        assert!(j.log.covered(64));
    }

    #[test]
    fn a_poisoned_journal_refuses_commits_and_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(&dir.path().join("b.db"), SCHEMA).unwrap();
        put(&mut j, 1);
        j.log.poisoned.store(true, Ordering::SeqCst);
        let e = j.flush().durable_blocking().unwrap_err();
        assert!(e.to_string().contains("restart the daemon"), "{e}");
        assert!(j.commit(|_| Ok(())).is_err());
    }
}
