//! Read receipts: `receipts`.

use rusqlite::{params, Connection};

use crate::error::Result;

#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    pub user_id: String,
    pub receipt_type: String,
    pub thread_id: String,
    pub event_id: String,
    pub ts: i64,
}

/// Sets a user's receipt (the newest replaces the older one).
#[allow(clippy::too_many_arguments)]
pub fn put(
    conn: &Connection,
    room_id: &str,
    user_id: &str,
    receipt_type: &str,
    thread_id: &str,
    event_id: &str,
    ts: i64,
    pos: i64,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO receipts (room_id, user_id, receipt_type, thread_id, event_id, ts, pos)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (room_id, user_id, receipt_type, thread_id) DO UPDATE SET
             event_id = excluded.event_id, ts = excluded.ts, pos = excluded.pos",
    )?
    .execute(params![room_id, user_id, receipt_type, thread_id, event_id, ts, pos])?;
    Ok(())
}

/// Receipts in a room changed after `since` up to `upto` (all for 0).
pub fn changed(conn: &Connection, room_id: &str, since: i64, upto: i64) -> Result<Vec<Receipt>> {
    let mut stmt = conn.prepare_cached(
        "SELECT user_id, receipt_type, thread_id, event_id, ts FROM receipts
         WHERE room_id = ?1 AND pos > ?2 AND pos <= ?3 ORDER BY pos",
    )?;
    let rows = stmt.query_map(params![room_id, since, upto], |r| {
        Ok(Receipt {
            user_id: r.get(0)?,
            receipt_type: r.get(1)?,
            thread_id: r.get(2)?,
            event_id: r.get(3)?,
            ts: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
