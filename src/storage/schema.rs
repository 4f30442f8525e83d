//! Applies `schema.sql` to a new database and upgrades older ones.
//!
//! The version lives in `PRAGMA user_version`. A new database gets the whole
//! current schema; an older one runs each upgrade step in turn. Everything
//! happens in one transaction, so a failed upgrade leaves the file as it was.
//! A database written by a newer Hearth is refused rather than guessed at.
//! A current database is only read: the server must start on a full disk.

use rusqlite::Connection;

/// The schema as it is now.
pub const SCHEMA_SQL: &str = include_str!("../../schema.sql");

/// The version `SCHEMA_SQL` describes.
pub const VERSION: i64 = 1;

/// Upgrade steps: `UPGRADES[i]` takes a database from version `i + 1` to
/// `i + 2`. Empty while the first version is the only one released.
const UPGRADES: &[&str] = &[];

/// Brings the schema of `conn`'s database to [`VERSION`]. Reads the version
/// first and opens a write transaction only when there is something to
/// create or upgrade.
pub fn migrate(conn: &mut Connection) -> Result<(), String> {
    const _: () = assert!(UPGRADES.len() as i64 == VERSION - 1);
    let err = |e: rusqlite::Error| format!("schema migration failed: {e}");
    let version =
        |c: &Connection| c.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0)).map_err(err);
    let found = version(conn)?;
    check_not_newer(found)?;
    if found == VERSION {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive).map_err(err)?;
    // Read again under the lock: another process may have migrated meanwhile.
    let found = version(&tx)?;
    check_not_newer(found)?;
    if found == VERSION {
        return Ok(());
    }
    if found == 0 {
        let tables: i64 = tx
            .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table'", [], |r| r.get(0))
            .map_err(err)?;
        if tables > 0 {
            return Err("the file is an SQLite database, but not one of Hearth's".into());
        }
        tx.execute_batch(SCHEMA_SQL).map_err(err)?;
    } else {
        for step in &UPGRADES[(found - 1) as usize..] {
            tx.execute_batch(step).map_err(err)?;
        }
    }
    tx.pragma_update(None, "user_version", VERSION).map_err(err)?;
    tx.commit().map_err(err)
}

fn check_not_newer(found: i64) -> Result<(), String> {
    if found > VERSION {
        return Err(format!(
            "the database has schema version {found}, but this Hearth knows only up to {VERSION}: \
             it was written by a newer Hearth; run that version or restore a backup"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_database_gets_current_version_and_reopens() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, VERSION);
        // A second run is a no-op, not a failure.
        migrate(&mut conn).unwrap();
    }

    #[test]
    fn a_current_database_is_opened_without_writing() {
        let dir = std::env::temp_dir().join(format!("hearth-schema-ro-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.db");
        let _ = std::fs::remove_file(&path);
        migrate(&mut Connection::open(&path).unwrap()).unwrap();
        // A read-only connection fails any write: migrating through one
        // proves the current schema needs none.
        let mut ro = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        migrate(&mut ro).unwrap();
        drop(ro);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn newer_database_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", VERSION + 1).unwrap();
        let e = migrate(&mut conn).unwrap_err();
        assert!(e.contains("newer Hearth"), "{e}");
    }

    #[test]
    fn foreign_database_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x)").unwrap();
        assert!(migrate(&mut conn).is_err());
    }
}
