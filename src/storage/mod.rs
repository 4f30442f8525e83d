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

pub mod account_data;
pub mod acme;
pub mod devices;
pub mod e2ee;
pub mod events;
pub mod key_backup;
pub mod media;
pub mod presence_list;
pub mod profiles;
pub mod push;
pub mod receipts;
pub mod reg_tokens;
pub mod rooms;
pub mod schema;
pub mod server_keys;
pub mod state;
pub mod uia;
pub mod users;

use std::collections::VecDeque;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
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
    writer: Mutex<Writer>,
    /// Threads about to take the writer: while there are any, a finished
    /// write leaves the transaction open for them (group commit).
    writers_waiting: AtomicUsize,
    /// Outcome of the newest finished batch, and a wake-up for the writes
    /// that wait for their batch to be committed.
    committed: Mutex<Committed>,
    batch_done: Condvar,
    readers: Mutex<Readers>,
    reader_free: Condvar,
}

/// The writer connection and the batch (transaction) it has open.
struct Writer {
    conn: Connection,
    /// The batch open on `conn`, if any: its number and how many writes it holds.
    open: Option<(u64, usize)>,
    next_batch: u64,
}

#[derive(Default)]
struct Committed {
    /// The newest batch that has ended.
    batch: u64,
    /// Recent batches whose COMMIT failed (rare: a full or failing disk).
    failed: VecDeque<u64>,
}

/// Failed batches remembered for writers that wake late.
const FAILED_BATCHES_KEPT: usize = 64;

/// Most writes one group commit carries; bounds how long the first of them
/// waits for its acknowledgement.
const BATCH_WRITES_MAX: usize = 64;

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
        let mut conn = open_connection(path, false).map_err(|e| format!("{}: {e}", path.display()))?;
        schema::migrate(&mut conn)?;
        Ok(Db {
            path: path.to_path_buf(),
            writer: Mutex::new(Writer { conn, open: None, next_batch: 1 }),
            writers_waiting: AtomicUsize::new(0),
            committed: Mutex::new(Committed::default()),
            batch_done: Condvar::new(),
            readers: Mutex::new(Readers { idle: Vec::new(), open: 0 }),
            reader_free: Condvar::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` as one atomic write and returns once it is durable.
    ///
    /// Writes are grouped: each runs inside a savepoint of a shared
    /// transaction, so a failing write (`Err`) rolls back only its own
    /// changes; when no other writer is waiting (or the batch is full) the
    /// transaction commits with one fsync for the whole group. A write's
    /// result is returned only after its batch committed, so nothing is
    /// acknowledged before it is on disk.
    pub fn write<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.writers_waiting.fetch_add(1, Ordering::SeqCst);
        let mut w = lock(&self.writer);
        self.writers_waiting.fetch_sub(1, Ordering::SeqCst);
        let (batch, writes) = match w.open {
            Some(open) => open,
            None => {
                w.conn.execute_batch("BEGIN IMMEDIATE")?;
                let batch = w.next_batch;
                w.next_batch += 1;
                (batch, 0)
            }
        };
        w.open = Some((batch, writes + 1));
        // A panic in `f` must not leave its half-done changes in the batch,
        // nor leave the batch open with others waiting on it.
        let outcome = catch_unwind(AssertUnwindSafe(|| run_in_savepoint(&w.conn, f)));
        if self.writers_waiting.load(Ordering::SeqCst) > 0 && writes + 1 < BATCH_WRITES_MAX {
            // Someone is about to write: they (or the last of them) commit.
            drop(w);
            let mut c = lock(&self.committed);
            while c.batch < batch {
                c = self.batch_done.wait(c).unwrap_or_else(|p| p.into_inner());
            }
            let failed = c.failed.contains(&batch);
            drop(c);
            let result = outcome.unwrap_or_else(|panic| resume_unwind(panic));
            return if failed { Err(Error::internal("database commit failed")) } else { result };
        }
        let commit = w.conn.execute_batch("COMMIT");
        if commit.is_err() {
            let _ = w.conn.execute_batch("ROLLBACK");
        }
        w.open = None;
        {
            let mut c = lock(&self.committed);
            c.batch = batch;
            if commit.is_err() {
                if c.failed.len() == FAILED_BATCHES_KEPT {
                    c.failed.pop_front();
                }
                c.failed.push_back(batch);
            }
        }
        self.batch_done.notify_all();
        drop(w);
        let result = outcome.unwrap_or_else(|panic| resume_unwind(panic));
        commit?;
        result
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
        let w = lock(&self.writer);
        w.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
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

/// Runs `f` inside a savepoint of the open transaction: its changes are
/// kept on `Ok` and undone on `Err`, leaving the other writes of the batch.
fn run_in_savepoint<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    /// Undoes the savepoint unless disarmed: runs on `Err` and on a panic.
    struct Undo<'a>(&'a Connection, bool);
    impl Drop for Undo<'_> {
        fn drop(&mut self) {
            if self.1 {
                let _ = self.0.execute_batch("ROLLBACK TO request; RELEASE request");
            }
        }
    }
    conn.execute_batch("SAVEPOINT request")?;
    let mut undo = Undo(conn, true);
    let value = f(conn)?;
    conn.execute_batch("RELEASE request")?;
    undo.1 = false;
    Ok(value)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn temp_db(name: &str) -> (Db, PathBuf) {
        let dir = std::env::temp_dir().join(format!("hearth-db-{name}-{}-{}", std::process::id(), now_ms()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = Db::open(&dir.join("t.db")).unwrap();
        db.write(|c| Ok(c.execute_batch("CREATE TABLE t (n INTEGER PRIMARY KEY)")?)).unwrap();
        (db, dir)
    }

    #[test]
    fn grouped_writes_fail_alone_and_survive_reopen() {
        let (db, dir) = temp_db("group");
        let db = Arc::new(db);
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let db = db.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let n = t * 1000 + i;
                        let r = db.write(|c| {
                            c.execute("INSERT INTO t (n) VALUES (?1)", [n])?;
                            if n % 7 == 0 {
                                return Err(Error::forbidden("refused"));
                            }
                            Ok(())
                        });
                        assert_eq!(r.is_ok(), n % 7 != 0);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // A panicking write leaves nothing behind and does not wedge the writer.
        let db2 = db.clone();
        let panicked = std::thread::spawn(move || {
            db2.write(|c| -> Result<()> {
                c.execute("INSERT INTO t (n) VALUES (-1)", [])?;
                panic!("handler bug");
            })
        })
        .join();
        assert!(panicked.is_err());
        db.write(|c| Ok(c.execute("INSERT INTO t (n) VALUES (-2)", [])?)).unwrap();
        let expected = (0..8).flat_map(|t| (0..50).map(move |i| t * 1000 + i)).filter(|n| n % 7 != 0).count();
        let count = |db: &Db| {
            db.read(|c| Ok(c.query_row("SELECT count(*) FROM t WHERE n >= 0", [], |r| r.get::<_, i64>(0))?))
                .unwrap()
        };
        assert_eq!(count(&db) as usize, expected);
        assert_eq!(
            db.read(|c| Ok(c.query_row("SELECT count(*) FROM t WHERE n < 0", [], |r| r.get::<_, i64>(0))?))
                .unwrap(),
            1
        );
        drop(db);
        let reopened = Db::open(&dir.join("t.db")).unwrap();
        assert_eq!(count(&reopened) as usize, expected);
        let _ = std::fs::remove_dir_all(dir);
    }
}
