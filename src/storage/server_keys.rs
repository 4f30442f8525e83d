//! The server's own ed25519 signing keys: `server_keys`.

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::Result;

/// The current signing key: its ID and 32-byte seed.
pub fn current(conn: &Connection) -> Result<Option<(String, Vec<u8>)>> {
    Ok(conn
        .query_row(
            "SELECT key_id, seed FROM server_keys WHERE expired_ts IS NULL ORDER BY created_ts DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

pub fn insert(conn: &Connection, key_id: &str, seed: &[u8; 32], now: i64) -> Result<()> {
    conn.execute(
        "INSERT INTO server_keys (key_id, seed, created_ts) VALUES (?1, ?2, ?3)",
        params![key_id, &seed[..], now],
    )?;
    Ok(())
}

/// Every expired key, newest first, with its public half.
pub fn expired(conn: &Connection) -> Result<Vec<(String, Vec<u8>, i64)>> {
    let mut st = conn.prepare(
        "SELECT key_id, seed, expired_ts FROM server_keys WHERE expired_ts IS NOT NULL ORDER BY expired_ts DESC",
    )?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Retires the current key (it is kept, with `expired_ts`, for verifying
/// what it signed) and makes `key_id` the current one.
pub fn rotate(conn: &Connection, key_id: &str, seed: &[u8; 32], now: i64) -> Result<()> {
    conn.execute("UPDATE server_keys SET expired_ts = ?1 WHERE expired_ts IS NULL", params![now])?;
    insert(conn, key_id, seed, now)
}
