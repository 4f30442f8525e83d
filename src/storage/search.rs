//! The full-text index: `event_search` (FTS5, contentless), rowid = the
//! event's position. Written in the transaction that stores the event
//! ([`index`]); a redaction deletes the entry ([`unindex`]).

use rusqlite::{params, Connection};
use serde_json::Value;

use super::events::StoredEvent;
use crate::error::Result;

/// The text an event is found by: `content.body` of a message,
/// `content.name` of a room name, `content.topic` of a topic.
pub fn text_of<'a>(kind: &str, content: &'a Value) -> Option<&'a str> {
    let field = match kind {
        "m.room.message" => "body",
        "m.room.name" => "name",
        "m.room.topic" => "topic",
        _ => return None,
    };
    content.get(field)?.as_str()
}

/// Indexes an event just stored, when it has searchable text.
pub fn index(conn: &Connection, row: &StoredEvent, pdu: &Value) -> Result<()> {
    let Some(text) = pdu.get("content").and_then(|c| text_of(&row.kind, c)) else {
        return Ok(());
    };
    conn.prepare_cached("INSERT INTO event_search (rowid, text) VALUES (?1, ?2)")?
        .execute(params![row.pos, text])?;
    Ok(())
}

/// Removes a redacted event from the index.
pub fn unindex(conn: &Connection, pos: i64) -> Result<()> {
    conn.prepare_cached("DELETE FROM event_search WHERE rowid = ?1")?.execute([pos])?;
    Ok(())
}
