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
