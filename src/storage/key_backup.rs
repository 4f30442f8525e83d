//! Server-side key backups: `backup_versions`, `backup_keys`.
//!
//! A version number is never reused: deleting a version marks its row and
//! removes its keys. The `etag` of a version counts changes to its keys.

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::error::Result;

#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    pub version: i64,
    pub algorithm: String,
    /// JSON object text.
    pub auth_data: String,
    pub etag: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SessionKey {
    pub room_id: String,
    pub session_id: String,
    pub first_message_index: i64,
    pub forwarded_count: i64,
    pub is_verified: bool,
    /// JSON object text.
    pub session_data: String,
}

fn version_from_row(r: &Row) -> rusqlite::Result<Version> {
    Ok(Version { version: r.get(0)?, algorithm: r.get(1)?, auth_data: r.get(2)?, etag: r.get(3)? })
}

fn key_from_row(r: &Row) -> rusqlite::Result<SessionKey> {
    Ok(SessionKey {
        room_id: r.get(0)?,
        session_id: r.get(1)?,
        first_message_index: r.get(2)?,
        forwarded_count: r.get(3)?,
        is_verified: r.get(4)?,
        session_data: r.get(5)?,
    })
}

/// Creates the next version (one above any the user ever had).
pub fn create_version(conn: &Connection, user_id: &str, algorithm: &str, auth_data: &str) -> Result<i64> {
    let next: i64 = conn.query_row(
        "SELECT coalesce(max(version), 0) + 1 FROM backup_versions WHERE user_id = ?1",
        [user_id],
        |r| r.get(0),
    )?;
    conn.execute(
        "INSERT INTO backup_versions (user_id, version, algorithm, auth_data) VALUES (?1, ?2, ?3, ?4)",
        params![user_id, next, algorithm, auth_data],
    )?;
    Ok(next)
}

/// The newest version that is not deleted.
pub fn current_version(conn: &Connection, user_id: &str) -> Result<Option<Version>> {
    Ok(conn
        .query_row(
            "SELECT version, algorithm, auth_data, etag FROM backup_versions
             WHERE user_id = ?1 AND deleted = 0 ORDER BY version DESC LIMIT 1",
            [user_id],
            version_from_row,
        )
        .optional()?)
}

/// A version that is not deleted.
pub fn get_version(conn: &Connection, user_id: &str, version: i64) -> Result<Option<Version>> {
    Ok(conn
        .query_row(
            "SELECT version, algorithm, auth_data, etag FROM backup_versions
             WHERE user_id = ?1 AND version = ?2 AND deleted = 0",
            params![user_id, version],
            version_from_row,
        )
        .optional()?)
}

/// Returns false if there is no such (undeleted) version.
pub fn set_auth_data(conn: &Connection, user_id: &str, version: i64, auth_data: &str) -> Result<bool> {
    Ok(conn.execute(
        "UPDATE backup_versions SET auth_data = ?3 WHERE user_id = ?1 AND version = ?2 AND deleted = 0",
        params![user_id, version, auth_data],
    )? == 1)
}

/// Deletes a version and its keys. Returns false if there was none.
pub fn delete_version(conn: &Connection, user_id: &str, version: i64) -> Result<bool> {
    let n = conn.execute(
        "UPDATE backup_versions SET deleted = 1, auth_data = '{}' WHERE user_id = ?1 AND version = ?2 AND deleted = 0",
        params![user_id, version],
    )?;
    conn.execute("DELETE FROM backup_keys WHERE user_id = ?1 AND version = ?2", params![user_id, version])?;
    Ok(n == 1)
}

/// Counts a change to a version's keys.
pub fn bump_etag(conn: &Connection, user_id: &str, version: i64) -> Result<()> {
    conn.execute(
        "UPDATE backup_versions SET etag = etag + 1 WHERE user_id = ?1 AND version = ?2",
        params![user_id, version],
    )?;
    Ok(())
}

pub fn count_keys(conn: &Connection, user_id: &str, version: i64) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM backup_keys WHERE user_id = ?1 AND version = ?2")?
        .query_row(params![user_id, version], |r| r.get(0))?)
}

pub fn get_key(
    conn: &Connection,
    user_id: &str,
    version: i64,
    room_id: &str,
    session_id: &str,
) -> Result<Option<SessionKey>> {
    Ok(conn
        .prepare_cached(
            "SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data
             FROM backup_keys WHERE user_id = ?1 AND version = ?2 AND room_id = ?3 AND session_id = ?4",
        )?
        .query_row(params![user_id, version, room_id, session_id], key_from_row)
        .optional()?)
}

/// Stores a session key, replacing any stored one (the caller decided).
pub fn put_key(conn: &Connection, user_id: &str, version: i64, k: &SessionKey) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO backup_keys (user_id, version, room_id, session_id, first_message_index,
             forwarded_count, is_verified, session_data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        user_id,
        version,
        k.room_id,
        k.session_id,
        k.first_message_index,
        k.forwarded_count,
        k.is_verified,
        k.session_data
    ])?;
    Ok(())
}

/// The keys of a version, of one room, or one session (by room and session).
pub fn keys(
    conn: &Connection,
    user_id: &str,
    version: i64,
    room_id: Option<&str>,
    session_id: Option<&str>,
) -> Result<Vec<SessionKey>> {
    let mut stmt = conn.prepare_cached(
        "SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data
         FROM backup_keys WHERE user_id = ?1 AND version = ?2
             AND (?3 IS NULL OR room_id = ?3) AND (?4 IS NULL OR session_id = ?4)
         ORDER BY room_id, session_id",
    )?;
    let rows = stmt.query_map(params![user_id, version, room_id, session_id], key_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Deletes the keys of a version, of one room, or one session.
pub fn delete_keys(
    conn: &Connection,
    user_id: &str,
    version: i64,
    room_id: Option<&str>,
    session_id: Option<&str>,
) -> Result<usize> {
    Ok(conn.execute(
        "DELETE FROM backup_keys WHERE user_id = ?1 AND version = ?2
             AND (?3 IS NULL OR room_id = ?3) AND (?4 IS NULL OR session_id = ?4)",
        params![user_id, version, room_id, session_id],
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_conn;

    #[test]
    fn versions_are_not_reused_and_take_their_keys_along() {
        let c = test_conn();
        assert_eq!(create_version(&c, "@a:x", "alg", "{}").unwrap(), 1);
        let k = SessionKey {
            room_id: "!r".into(),
            session_id: "s".into(),
            first_message_index: 0,
            forwarded_count: 0,
            is_verified: true,
            session_data: "{}".into(),
        };
        put_key(&c, "@a:x", 1, &k).unwrap();
        assert_eq!(count_keys(&c, "@a:x", 1).unwrap(), 1);
        assert!(delete_version(&c, "@a:x", 1).unwrap());
        assert!(!delete_version(&c, "@a:x", 1).unwrap());
        assert_eq!(count_keys(&c, "@a:x", 1).unwrap(), 0);
        assert!(current_version(&c, "@a:x").unwrap().is_none());
        assert_eq!(create_version(&c, "@a:x", "alg", "{}").unwrap(), 2);
        assert_eq!(current_version(&c, "@a:x").unwrap().unwrap().version, 2);
    }
}
