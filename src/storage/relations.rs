//! Relations between events and threads: `event_relations`, `threads`.
//!
//! A timeline event whose content carries `m.relates_to` with an
//! `event_id` and a `rel_type` gets its row in the transaction that stores
//! it ([`index`]); a redaction takes the row away ([`unindex`]), since the
//! relation was part of the content it removes.

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

use super::events::StoredEvent;
use crate::error::Result;

/// What an event's `m.relates_to` says, when it names an event and a type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation<'a> {
    pub event_id: &'a str,
    pub rel_type: &'a str,
    pub key: Option<&'a str>,
}

/// The relation in an event's content, if it has one.
pub fn of_content(content: &Value) -> Option<Relation<'_>> {
    let rel = content.get("m.relates_to")?;
    let event_id = rel.get("event_id")?.as_str()?;
    let rel_type = rel.get("rel_type")?.as_str()?;
    let key = (rel_type == "m.annotation").then(|| rel.get("key").and_then(Value::as_str)).flatten();
    Some(Relation { event_id, rel_type, key })
}

/// Records the relation (and thread activity) of an event just stored.
pub fn index(conn: &Connection, row: &StoredEvent, pdu: &Value) -> Result<()> {
    let Some(rel) = pdu.get("content").and_then(of_content) else {
        return Ok(());
    };
    conn.prepare_cached(
        "INSERT OR REPLACE INTO event_relations (pos, relates_to, rel_type, key) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![row.pos, rel.event_id, rel.rel_type, rel.key])?;
    if rel.rel_type == "m.thread" {
        conn.prepare_cached(
            "INSERT INTO threads (root_id, room_id, latest_pos) VALUES (?1, ?2, ?3)
             ON CONFLICT (root_id) DO UPDATE SET latest_pos = max(latest_pos, excluded.latest_pos)",
        )?
        .execute(params![rel.event_id, row.room_id, row.pos])?;
    }
    Ok(())
}

/// Forgets the relation of a redacted event; a thread whose newest reply
/// it was falls back to the one before (or goes, with its last reply).
pub fn unindex(conn: &Connection, pos: i64) -> Result<()> {
    let gone: Option<(String, String)> = conn
        .prepare_cached("DELETE FROM event_relations WHERE pos = ?1 RETURNING relates_to, rel_type")?
        .query_row([pos], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if let Some((root, rel_type)) = gone {
        if rel_type == "m.thread" {
            let latest: Option<i64> = conn
                .prepare_cached(
                    "SELECT max(pos) FROM event_relations WHERE relates_to = ?1 AND rel_type = 'm.thread'",
                )?
                .query_row([&root], |r| r.get(0))?;
            match latest {
                Some(p) => conn
                    .prepare_cached("UPDATE threads SET latest_pos = ?2 WHERE root_id = ?1")?
                    .execute(params![root, p])?,
                None => conn.prepare_cached("DELETE FROM threads WHERE root_id = ?1")?.execute([&root])?,
            };
        }
    }
    Ok(())
}
