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
pub const VERSION: i64 = 2;

/// Upgrade steps: `UPGRADES[i]` takes a database from version `i + 1` to
/// `i + 2`.
const UPGRADES: &[&str] = &[upgrade_2_device_list_triggers()];

// ------------------------------------------------- upgrade step 1 -> 2 (sync)

/// Schema 2: devices added, renamed or removed record a device-list change
/// (`/sync`'s `device_lists.changed`) even before they upload keys. The
/// same triggers are in `schema.sql`.
const fn upgrade_2_device_list_triggers() -> &'static str {
    "
CREATE TRIGGER devices_added AFTER INSERT ON devices BEGIN
    UPDATE stream_position SET pos = pos + 1 WHERE id = 1;
    INSERT OR REPLACE INTO e2e_device_list_changes (user_id, pos)
        VALUES (NEW.user_id, (SELECT pos FROM stream_position WHERE id = 1));
END;
CREATE TRIGGER devices_renamed AFTER UPDATE OF display_name ON devices
    WHEN OLD.display_name IS NOT NEW.display_name BEGIN
    UPDATE stream_position SET pos = pos + 1 WHERE id = 1;
    INSERT OR REPLACE INTO e2e_device_list_changes (user_id, pos)
        VALUES (NEW.user_id, (SELECT pos FROM stream_position WHERE id = 1));
END;
CREATE TRIGGER devices_removed AFTER DELETE ON devices BEGIN
    UPDATE stream_position SET pos = pos + 1 WHERE id = 1;
    INSERT OR REPLACE INTO e2e_device_list_changes (user_id, pos)
        VALUES (OLD.user_id, (SELECT pos FROM stream_position WHERE id = 1));
END;
"
}

// ------------------------------------------------- end of upgrade steps

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

    /// A version 1 database (the current schema without what step 2 adds)
    /// gets the device triggers, the same as a new one.
    #[test]
    fn upgrade_2_adds_the_device_list_triggers() {
        let triggers = |c: &Connection| -> Vec<String> {
            let mut st = c
                .prepare("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'devices_%' ORDER BY name")
                .unwrap();
            st.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
        };
        let mut fresh = Connection::open_in_memory().unwrap();
        migrate(&mut fresh).unwrap();
        let mut old = Connection::open_in_memory().unwrap();
        migrate(&mut old).unwrap();
        old.execute_batch(
            "DROP TRIGGER devices_added; DROP TRIGGER devices_renamed; DROP TRIGGER devices_removed;
             PRAGMA user_version = 1;",
        )
        .unwrap();
        migrate(&mut old).unwrap();
        assert_eq!(triggers(&old).len(), 3);
        assert_eq!(triggers(&old), triggers(&fresh));
        let v: i64 = old.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, VERSION);
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
