//! The only place that speaks SQL. One SQLite file holds everything.
//!
//! `Db` owns one writer connection (behind a mutex: SQLite has one writer at
//! a time anyway) and a small pool of read connections. A request's writes
//! run in one `BEGIN IMMEDIATE` transaction through [`Db::write`], committed
//! only when the closure returns `Ok`; read-only work goes through
//! [`Db::read`] and never takes the writer.
//!
//! Durability: WAL mode with `synchronous = FULL`, so a commit that returned
//! is on disk (one fsync of the WAL per write transaction) and survives a
//! process kill or a power cut.
//!
//! **Architecture Invariant:** storage knows nothing of HTTP or JSON wire
//! shapes; callers use typed functions.

pub mod devices;
pub mod reg_tokens;
pub mod schema;
pub mod server_keys;
pub mod uia;
pub mod users;

use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use crate::error::{Error, Result};

/// How long a connection waits for a lock held by another process (the
/// admin command line writes while the server runs).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Read connections kept open. Each holds its own page cache.
const READERS_MAX: usize = 4;
/// Page cache per connection, in KiB (SQLite's negative cache_size form).
const CACHE_KIB: i64 = 2048;

pub struct Db {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Readers>,
    reader_free: Condvar,
}

struct Readers {
    idle: Vec<Connection>,
    open: usize,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Db {
    /// Opens (creating if needed) the database at `path` and brings its
    /// schema up to date. Fails if the file was written by a newer Hearth.
    pub fn open(path: &Path) -> Result<Db, String> {
        let mut writer = open_connection(path, false).map_err(|e| format!("{}: {e}", path.display()))?;
        schema::migrate(&mut writer)?;
        Ok(Db {
            path: path.to_path_buf(),
            writer: Mutex::new(writer),
            readers: Mutex::new(Readers { idle: Vec::new(), open: 0 }),
            reader_free: Condvar::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in one write transaction; commits on `Ok`, rolls back on `Err`.
    pub fn write<T>(&self, f: impl FnOnce(&Transaction) -> Result<T>) -> Result<T> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Runs `f` on a read connection inside a deferred transaction, so all
    /// its reads see one snapshot.
    pub fn read<T>(&self, f: impl FnOnce(&Transaction) -> Result<T>) -> Result<T> {
        let mut conn = self.take_reader()?;
        let result = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
            let out = f(&tx);
            // Dropping the transaction rolls it back: reads have nothing to keep.
            drop(tx);
            out
        })();
        self.give_reader(conn);
        result
    }

    fn take_reader(&self) -> Result<Connection> {
        let mut readers = lock(&self.readers);
        loop {
            if let Some(conn) = readers.idle.pop() {
                return Ok(conn);
            }
            if readers.open < READERS_MAX {
                readers.open += 1;
                drop(readers);
                return open_connection(&self.path, true).map_err(|e| {
                    lock(&self.readers).open -= 1;
                    Error::from(e)
                });
            }
            readers = self.reader_free.wait(readers).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    fn give_reader(&self, conn: Connection) {
        lock(&self.readers).idle.push(conn);
        self.reader_free.notify_one();
    }

    /// Moves everything in the WAL into the main file and truncates the WAL.
    /// Called at clean shutdown so the database is one self-contained file.
    pub fn checkpoint(&self) -> Result<()> {
        let conn = lock(&self.writer);
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    /// Writes a consistent copy of the database to `dest` with SQLite's
    /// online backup API while the server keeps running. The copy is written
    /// beside `dest` and renamed into place, so `dest` is never half-written.
    pub fn backup_to(&self, dest: &Path) -> Result<(), String> {
        backup_file(&self.path, dest)
    }
}

/// The backup itself, usable without a `Db` (the command line opens the file
/// read-only for it).
pub fn backup_file(src: &Path, dest: &Path) -> Result<(), String> {
    if !src.is_file() {
        return Err(format!("{}: no such database", src.display()));
    }
    // Opened read-write (never created): SQLite may need to create the WAL
    // index of a database that no server has open.
    let source = open_connection(src, false).map_err(|e| format!("{}: {e}", src.display()))?;
    let mut tmp = dest.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let result = (|| -> Result<(), rusqlite::Error> {
        let mut target = Connection::open(&tmp)?;
        {
            let backup = rusqlite::backup::Backup::new(&source, &mut target)?;
            // One step copies every page under one read lock: a consistent
            // snapshot even while the server writes.
            backup.step(-1)?;
        }
        // The copy is a plain rollback-journal file: one file, nothing beside it.
        target.query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()))?;
        Ok(())
    })();
    match result {
        Ok(()) => {
            let file = std::fs::File::open(&tmp).map_err(|e| e.to_string())?;
            file.sync_all().map_err(|e| e.to_string())?;
            std::fs::rename(&tmp, dest).map_err(|e| format!("{}: {e}", dest.display()))
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(format!("backup failed: {e}"))
        }
    }
}

fn open_connection(path: &Path, read_only: bool) -> rusqlite::Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    if !read_only {
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -{CACHE_KIB};"
    ))?;
    Ok(conn)
}

/// Locks a mutex, recovering it if a panicking request poisoned it: the
/// connection inside is still valid (an unfinished transaction rolls back
/// when its guard drops).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An in-memory database with the current schema, for unit tests.
#[cfg(test)]
pub fn test_conn() -> Connection {
    let mut conn = Connection::open_in_memory().expect("in-memory database");
    conn.execute_batch("PRAGMA foreign_keys = ON;").expect("pragma");
    schema::migrate(&mut conn).expect("schema");
    conn
}
