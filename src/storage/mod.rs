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
//! A full disk: a write that cannot get space fails with
//! [`ErrorKind::StorageFull`] (every write of its batch fails with it, and
//! the writer connection is left ready for the next), reads go on, and
//! writes succeed again as soon as space is freed, without a restart.
//! Opening a database whose schema is current writes nothing, so the
//! server also starts on a full disk.
//!
//! The database and its `-wal` and `-shm` files hold the signing key seed,
//! password hashes and tokens: they are created readable by their owner
//! only, and looser modes found at start are tightened.
//!
//! **Architecture Invariant:** storage knows nothing of HTTP or JSON wire
//! shapes; callers use typed functions.

pub mod account_data;
pub mod acme;
pub mod device_lists;
pub mod devices;
pub mod e2ee;
pub mod events;
pub mod federation;
pub mod feed;
pub mod graph;
pub mod ignored;
pub mod key_backup;
pub mod media;
pub mod openid;
pub mod presence_list;
pub mod profiles;
pub mod push;
pub mod receipts;
pub mod reg_tokens;
pub mod relations;
pub mod reports;
pub mod room_reads;
pub mod rooms;
pub mod schema;
pub mod search;
pub mod server_keys;
pub mod state;
pub mod uia;
pub mod users;

use std::cell::RefCell;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use crate::error::{Error, ErrorKind, Result};
use crate::log;
pub use feed::{Changes, Tx};

/// How long a connection waits for a lock held by another process (the
/// admin command line writes while the server runs).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Read connections kept open. Each holds its own page cache.
const READERS_MAX: usize = 4;
/// Page cache per connection, in KiB (SQLite's negative cache_size form).
const CACHE_KIB: i64 = 2048;
/// Size past which the WAL is checkpointed and, once the checkpoint let it
/// start over, cut back to. SQLite's own `wal_autocheckpoint` (a PASSIVE
/// checkpoint after the commit that takes the WAL past this many bytes)
/// and `journal_size_limit` (truncate the WAL to this size when it
/// restarts) do it without ever waiting: an explicit TRUNCATE or RESTART
/// checkpoint would wait for readers with the writer held, stalling every
/// write behind a long read. Truncating matters on a full disk: a WAL that
/// grew during a burst (or while a reader pinned it) gives its space back
/// to the database and the rest of the system.
const WAL_CHECKPOINT_BYTES: i64 = 4 * 1024 * 1024;
/// For tests only: caps the database at this many pages (SQLite's
/// `max_page_count`, which then fails writes with `SQLITE_FULL`), so a
/// test can fill "the disk" without filling one. Not a configuration key.
pub const TEST_MAX_PAGE_COUNT_ENV: &str = "HEARTH_TEST_MAX_PAGE_COUNT";
/// Owner read and write only: the database holds secrets.
const DB_FILE_MODE: u32 = 0o600;
/// Files beside the database that SQLite keeps in WAL mode.
const WAL_SUFFIXES: [&str; 2] = ["-wal", "-shm"];

pub struct Db {
    path: PathBuf,
    writer: Mutex<Writer>,
    /// Threads about to take the writer: while there are any, a finished
    /// write leaves the transaction open for them (group commit).
    writers_waiting: AtomicUsize,
    /// Guards the setting of batch outcomes, so that writes waiting for
    /// their batch (on `batch_done`) never miss the wake-up.
    batch_end: Mutex<()>,
    batch_done: Condvar,
    /// Whether the newest write failed for want of space (logged when it
    /// changes, not per request).
    full: AtomicBool,
    readers: Mutex<Readers>,
    reader_free: Condvar,
    /// Where committed writes announce what they changed (the hub).
    sink: OnceLock<Box<dyn Fn(Changes) + Send + Sync>>,
}

/// The writer connection and the batch (transaction) it has open.
struct Writer {
    conn: Connection,
    open: Option<Batch>,
}

/// A group commit in progress: one transaction holding several writes.
struct Batch {
    /// Writes run in it so far.
    writes: usize,
    /// Writes whose closure succeeded (kept in the transaction).
    kept: usize,
    /// How the batch ended, shared with the writes waiting for it: set
    /// exactly once, when it committed or failed.
    outcome: Arc<OnceLock<Result<()>>>,
}

/// Most writes one group commit carries; bounds how long the first of them
/// waits for its acknowledgement.
const BATCH_WRITES_MAX: usize = 64;

struct Readers {
    idle: Vec<Connection>,
    open: usize,
}

/// Milliseconds since the Unix epoch; lives in `util`, re-exported here
/// for the many callers that name it `storage::now_ms`.
pub use crate::util::now_ms;

impl Db {
    /// Opens (creating if needed) the database at `path` and brings its
    /// schema up to date. Fails if the file was written by a newer Hearth.
    ///
    /// Creates the file (and so its `-wal` and `-shm`, which SQLite gives
    /// the database file's mode) readable by the owner only, and tightens
    /// the mode of existing ones. A database whose schema is current is
    /// opened without writing to it.
    pub fn open(path: &Path) -> Result<Db, String> {
        let shown = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
        create_private(path).map_err(|e| shown(&e))?;
        for file in
            std::iter::once(path.to_path_buf()).chain(WAL_SUFFIXES.iter().map(|s| with_suffix(path, s)))
        {
            tighten_mode(&file);
        }
        let mut conn = open_connection(path, false).map_err(|e| shown(&e))?;
        schema::migrate(&mut conn)?;
        // SQLite created the -wal and -shm with the database's mode; check
        // anyway, as that is SQLite's behaviour rather than its promise.
        for file in WAL_SUFFIXES.iter().map(|s| with_suffix(path, s)) {
            tighten_mode(&file);
        }
        Ok(Db {
            path: path.to_path_buf(),
            writer: Mutex::new(Writer { conn, open: None }),
            writers_waiting: AtomicUsize::new(0),
            batch_end: Mutex::new(()),
            batch_done: Condvar::new(),
            full: AtomicBool::new(false),
            readers: Mutex::new(Readers { idle: Vec::new(), open: 0 }),
            reader_free: Condvar::new(),
            sink: OnceLock::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Installs where committed writes announce their [`Changes`] (once;
    /// the server points it at the hub). Until then they are dropped.
    pub fn set_sink(&self, sink: Box<dyn Fn(Changes) + Send + Sync>) {
        let _ = self.sink.set(sink);
    }

    /// Announces changes that need no write (typing, presence) the way a
    /// committed write's are.
    pub fn announce(&self, changes: Changes) {
        if changes.is_empty() {
            return;
        }
        if let Some(sink) = self.sink.get() {
            sink(changes);
        }
    }

    /// Runs `f` as one atomic write and returns once it is durable.
    ///
    /// Writes are grouped: each runs inside a savepoint of a shared
    /// transaction, so a failing write (`Err`) rolls back only its own
    /// changes; when no other writer is waiting (or the batch is full) the
    /// transaction commits with one fsync for the whole group. A write's
    /// result is returned only after its batch committed, so nothing is
    /// acknowledged before it is on disk. If the batch cannot be committed
    /// (the disk is full, or SQLite had to undo the whole transaction),
    /// every write in it fails with that error and the writer is left
    /// with no transaction open, ready for the next write.
    ///
    /// What `f` recorded on its [`Tx`] is announced (`set_sink`) after the
    /// batch committed, by this thread, and only if the write succeeded.
    pub fn write<T>(&self, f: impl FnOnce(&Tx) -> Result<T>) -> Result<T> {
        let changes = RefCell::new(Changes::default());
        let result = self.write_conn(|conn| f(&Tx::new(conn, &changes)));
        if result.is_ok() {
            self.announce(changes.into_inner());
        }
        result
    }

    fn write_conn<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.writers_waiting.fetch_add(1, Ordering::SeqCst);
        let mut guard = lock(&self.writer);
        self.writers_waiting.fetch_sub(1, Ordering::SeqCst);
        let w = &mut *guard;
        if w.open.is_none() {
            if let Err(e) = w.conn.execute_batch("BEGIN IMMEDIATE") {
                let e = classify(&w.conn, e);
                self.note_space(&e);
                return Err(e);
            }
        }
        let batch = w.open.get_or_insert_with(|| Batch { writes: 0, kept: 0, outcome: Arc::default() });
        batch.writes += 1;
        // A panic in `f` must not leave its half-done changes in the batch,
        // nor leave the batch open with others waiting on it.
        let outcome = catch_unwind(AssertUnwindSafe(|| run_in_savepoint(&w.conn, f)));
        if matches!(outcome, Ok(Ok(_))) {
            batch.kept += 1;
        }
        let (writes, kept, slot) = (batch.writes, batch.kept, batch.outcome.clone());
        if let Ok(Err(e)) = &outcome {
            self.note_space(e);
        }
        if w.conn.is_autocommit() {
            // SQLite undid the whole transaction, as it may when a statement
            // fails with SQLITE_FULL, an I/O error or no memory: the earlier
            // writes of the batch are gone too.
            w.open = None;
            let error = match &outcome {
                Ok(Err(e)) if e.is_server_failure() => e.clone(),
                _ => Error::internal("the database rolled back the transaction"),
            };
            self.end_batch(&slot, Err(error.clone()));
            drop(guard);
            if let Err(panic) = outcome {
                resume_unwind(panic);
            }
            return Err(error);
        }
        if self.writers_waiting.load(Ordering::SeqCst) > 0 && writes < BATCH_WRITES_MAX {
            // Someone is about to write: they (or the last of them) commit.
            drop(guard);
            let ended = self.wait_for(&slot);
            let result = outcome.unwrap_or_else(|panic| resume_unwind(panic));
            return result.and_then(|value| ended.map(|()| value));
        }
        w.open = None;
        let commit = self.commit(w, kept);
        self.end_batch(&slot, commit.clone());
        drop(guard);
        let result = outcome.unwrap_or_else(|panic| resume_unwind(panic));
        // A write that failed by itself reports its own error: it stored
        // nothing whether or not the batch committed.
        result.and_then(|value| commit.map(|()| value))
    }

    /// Commits the open batch. On failure the transaction is rolled back
    /// and, should that fail too, the connection replaced, so the writer
    /// never stays inside a transaction nobody will finish.
    fn commit(&self, w: &mut Writer, kept: usize) -> Result<()> {
        let e = match w.conn.execute_batch("COMMIT") {
            Ok(()) => {
                if kept > 0 {
                    self.note_room();
                }
                return Ok(());
            }
            Err(e) => classify(&w.conn, e),
        };
        self.note_space(&e);
        if !w.conn.is_autocommit() {
            let _ = w.conn.execute_batch("ROLLBACK");
        }
        if !w.conn.is_autocommit() {
            match open_connection(&self.path, false) {
                // Dropping the old connection rolls its transaction back.
                Ok(conn) => w.conn = conn,
                Err(reopen) => log::error(format_args!(
                    "database: a failed commit left the writer inside its transaction, \
                     and reopening failed: {reopen}"
                )),
            }
        }
        Err(e)
    }

    /// Records how a batch ended and wakes the writes waiting for it.
    fn end_batch(&self, slot: &OnceLock<Result<()>>, outcome: Result<()>) {
        {
            let _guard = lock(&self.batch_end);
            let _ = slot.set(outcome);
        }
        self.batch_done.notify_all();
    }

    /// Waits until the batch a write joined has ended; its outcome.
    fn wait_for(&self, slot: &OnceLock<Result<()>>) -> Result<()> {
        let mut guard = lock(&self.batch_end);
        loop {
            if let Some(outcome) = slot.get() {
                return outcome.clone();
            }
            guard = self.batch_done.wait(guard).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Logs when writes start failing for want of space (once, not per
    /// request: the clients are told by their 503).
    fn note_space(&self, e: &Error) {
        if e.kind == ErrorKind::StorageFull && !self.full.swap(true, Ordering::SeqCst) {
            log::error(format_args!(
                "database {}: no space left (the disk or the database's size cap is full): \
                 writes fail with 503 until space is freed; reads go on",
                self.path.display()
            ));
        }
    }

    /// Logs when writes succeed again after failing for want of space.
    fn note_room(&self) {
        if self.full.load(Ordering::Relaxed) && self.full.swap(false, Ordering::SeqCst) {
            log::info(format_args!(
                "database {}: space available again, writes succeed",
                self.path.display()
            ));
        }
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
    // The copy holds the same secrets as the database: owner only, from
    // its creation on (the rename keeps the mode).
    create_private(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
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
        // On a database in WAL mode already this writes nothing (SQLite
        // finds the mode in the header and leaves the file alone), so
        // opening works on a full disk.
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
        let page_bytes: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let pages = (WAL_CHECKPOINT_BYTES / page_bytes.max(1)).max(1);
        conn.query_row(&format!("PRAGMA journal_size_limit = {WAL_CHECKPOINT_BYTES}"), [], |_| Ok(()))?;
        conn.query_row(&format!("PRAGMA wal_autocheckpoint = {pages}"), [], |_| Ok(()))?;
        if let Some(max) = std::env::var(TEST_MAX_PAGE_COUNT_ENV).ok().and_then(|v| v.parse::<u64>().ok()) {
            conn.query_row(&format!("PRAGMA max_page_count = {max}"), [], |_| Ok(()))?;
        }
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -{CACHE_KIB};"
    ))?;
    Ok(conn)
}

/// A database error, recognising an I/O error caused by a full disk (or
/// quota): SQLite reports a short write as `SQLITE_FULL` itself, but a
/// failed `fsync`, `ftruncate` or WAL-index growth for want of space as
/// `SQLITE_IOERR`, with the cause only in the connection's errno.
fn classify(conn: &Connection, e: rusqlite::Error) -> Error {
    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::SystemIoFailure) {
        // SAFETY: the handle is the open connection's own and stays valid
        // while `conn` is borrowed; sqlite3_system_errno only reads it.
        let errno = unsafe { rusqlite::ffi::sqlite3_system_errno(conn.handle()) };
        if errno == libc::ENOSPC || errno == libc::EDQUOT {
            return Error::storage_full();
        }
    }
    Error::from(e)
}

/// Creates `path` empty with mode 0600 unless it exists. An empty file is
/// a valid empty SQLite database, and SQLite gives the `-wal`, `-shm` and
/// journal files it creates the database file's mode.
fn create_private(path: &Path) -> std::io::Result<()> {
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(DB_FILE_MODE).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes group and other permissions from an existing `path`, logging
/// it. A missing file is fine; a failure (say, an admin command run by
/// another user than the file's owner) is logged, not fatal.
fn tighten_mode(path: &Path) {
    let mode = match std::fs::metadata(path) {
        Ok(meta) => meta.permissions().mode() & 0o7777,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => return log::warn(format_args!("{}: cannot check its mode: {e}", path.display())),
    };
    if mode & 0o077 == 0 {
        return;
    }
    let tight = mode & !0o077;
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(tight)) {
        Ok(()) => log::warn(format_args!(
            "{}: was readable by others (mode {mode:04o}); now {tight:04o}: it holds keys and password hashes",
            path.display()
        )),
        Err(e) => log::warn(format_args!(
            "{}: is readable by others (mode {mode:04o}) and could not be tightened: {e}",
            path.display()
        )),
    }
}

/// `path` with `suffix` appended to its file name (`hearth.db-wal`).
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Runs `f` inside a savepoint of the open transaction: its changes are
/// kept on `Ok` and undone on `Err`, leaving the other writes of the batch.
fn run_in_savepoint<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    /// Undoes the savepoint unless disarmed: runs on `Err` and on a panic.
    struct Undo<'a>(&'a Connection, bool);
    impl Drop for Undo<'_> {
        fn drop(&mut self) {
            // Should the savepoint not roll back, the whole transaction
            // must: kept, the savepoint would commit this write's half.
            if self.1 && self.0.execute_batch("ROLLBACK TO request; RELEASE request").is_err() {
                let _ = self.0.execute_batch("ROLLBACK");
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
/// when its guard drops). Lives in `util`; re-exported for its callers.
pub(crate) use crate::util::lock;

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
    fn committed_writes_announce_what_they_changed_and_failed_ones_nothing() {
        let (db, dir) = temp_db("feed");
        let heard = Arc::new(Mutex::new(Vec::new()));
        let sink = heard.clone();
        db.set_sink(Box::new(move |c| lock(&sink).push(c)));
        db.write(|tx| {
            tx.execute("INSERT INTO t (n) VALUES (1)", [])?;
            tx.changed(1, &["!r"], &["@a"]);
            // Not yet: nothing is announced before the commit.
            assert!(lock(&heard).is_empty());
            Ok(())
        })
        .unwrap();
        let failed = db.write(|tx| {
            tx.changed(2, &["!s"], &[]);
            Err::<(), _>(Error::forbidden("refused"))
        });
        assert!(failed.is_err());
        db.write(|_| Ok(())).unwrap();
        let heard = lock(&heard).clone();
        assert_eq!(heard.len(), 1, "{heard:?}");
        assert_eq!(
            (heard[0].pos, heard[0].rooms.as_slice(), heard[0].users.as_slice()),
            (1, &["!r".to_owned()][..], &["@a".to_owned()][..])
        );
        let _ = std::fs::remove_dir_all(dir);
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

    fn count(db: &Db) -> i64 {
        db.read(|c| Ok(c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?)).unwrap()
    }

    /// Runs `first` and `second` as writes of one batch: `first` holds the
    /// batch open until `second` waits for the writer, so `second` commits
    /// for both.
    fn one_batch(
        db: &Arc<Db>,
        first: impl FnOnce(&Connection) -> Result<()> + Send + 'static,
        second: impl FnOnce(&Connection) -> Result<()> + Send + 'static,
    ) -> (Result<()>, Result<()>) {
        let (db1, db2) = (db.clone(), db.clone());
        let (entered_tx, entered) = std::sync::mpsc::channel();
        let a = std::thread::spawn(move || {
            db1.write(|c| {
                first(c)?;
                entered_tx.send(()).unwrap();
                while db1.writers_waiting.load(Ordering::SeqCst) == 0 {
                    std::thread::yield_now();
                }
                Ok(())
            })
        });
        entered.recv().unwrap();
        let b = std::thread::spawn(move || db2.write(|c| second(c)));
        (a.join().unwrap(), b.join().unwrap())
    }

    #[test]
    fn a_failed_commit_fails_the_whole_batch_and_the_writer_goes_on() {
        let (db, dir) = temp_db("commit");
        // A deferred foreign key is checked at COMMIT: a COMMIT that fails
        // and leaves the transaction open, as a full disk can.
        db.write(|c| {
            Ok(c.execute_batch(
                "CREATE TABLE parent (id INTEGER PRIMARY KEY);
                 CREATE TABLE child (pid INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);",
            )?)
        })
        .unwrap();
        let db = Arc::new(db);
        let (a, b) = one_batch(
            &db,
            |c| Ok(c.execute_batch("INSERT INTO t (n) VALUES (1)")?),
            |c| Ok(c.execute_batch("INSERT INTO child (pid) VALUES (99)")?),
        );
        assert!(a.is_err() && b.is_err(), "{a:?} {b:?}");
        assert_eq!(count(&db), 0, "nothing of the failed batch is stored");
        assert!(lock(&db.writer).conn.is_autocommit(), "the writer is left outside any transaction");
        db.write(|c| Ok(c.execute_batch("INSERT INTO t (n) VALUES (2)")?)).unwrap();
        assert_eq!(count(&db), 1);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_transaction_undone_by_sqlite_fails_every_write_of_its_batch() {
        let (db, dir) = temp_db("undone");
        let db = Arc::new(db);
        // SQLite may roll back the whole transaction when a statement fails
        // with SQLITE_FULL; the second write stands in for that.
        let (a, b) = one_batch(
            &db,
            |c| Ok(c.execute_batch("INSERT INTO t (n) VALUES (1)")?),
            |c| {
                c.execute_batch("ROLLBACK")?;
                Err(Error::storage_full())
            },
        );
        assert_eq!(a.unwrap_err().kind, ErrorKind::StorageFull, "the first write is lost too, and says why");
        assert_eq!(b.unwrap_err().kind, ErrorKind::StorageFull);
        db.write(|c| Ok(c.execute_batch("INSERT INTO t (n) VALUES (2)")?)).unwrap();
        assert_eq!(count(&db), 1);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_full_database_refuses_writes_serves_reads_and_takes_writes_once_space_is_freed() {
        let (db, dir) = temp_db("full");
        db.write(|c| Ok(c.execute_batch("CREATE TABLE blobs (b BLOB)")?)).unwrap();
        {
            let w = lock(&db.writer);
            let pages: i64 = w.conn.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
            w.conn.query_row(&format!("PRAGMA max_page_count = {}", pages + 16), [], |_| Ok(())).unwrap();
        }
        let blob = vec![7u8; 4096];
        let mut stored = 0;
        let refused = loop {
            assert!(stored < 100, "the database never filled");
            match db.write(|c| Ok(c.execute("INSERT INTO blobs (b) VALUES (?1)", [&blob])?)) {
                Ok(_) => stored += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(refused.kind, ErrorKind::StorageFull);
        assert_eq!(refused.status(), 503);
        assert!(stored > 0);
        let kept: i64 =
            db.read(|c| Ok(c.query_row("SELECT count(*) FROM blobs", [], |r| r.get(0))?)).unwrap();
        assert_eq!(kept, stored, "reads go on, and every acknowledged write is there");
        db.write(|c| Ok(c.execute("DELETE FROM blobs", [])?)).unwrap();
        db.write(|c| Ok(c.execute("INSERT INTO blobs (b) VALUES (?1)", [&blob])?)).unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn database_files_and_backups_are_private_and_loose_modes_are_tightened() {
        let (db, dir) = temp_db("modes");
        let path = dir.join("t.db");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        for p in [path.clone(), with_suffix(&path, "-wal"), with_suffix(&path, "-shm")] {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
        let copy = dir.join("copy.db");
        db.backup_to(&copy).unwrap();
        assert_eq!(mode(&copy), 0o600);
        drop(db);
        for p in [path.clone(), with_suffix(&path, "-wal"), with_suffix(&path, "-shm")] {
            if p.exists() {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            }
        }
        let _reopened = Db::open(&path).unwrap();
        for p in [path.clone(), with_suffix(&path, "-wal"), with_suffix(&path, "-shm")] {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
