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

/// What one event's children add up to, for its bundled aggregations:
/// how many thread replies, the newest of them, and whether there is any
/// edit or reference at all (one index probe for an event with none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub thread_count: u64,
    pub thread_latest: Option<i64>,
    pub replaces: bool,
    pub references: bool,
}

/// The relations of interest to clients pointing at `event_id`.
pub fn summary(conn: &Connection, event_id: &str) -> Result<Summary> {
    let mut stmt = conn.prepare_cached(
        "SELECT rel_type, count(*), max(pos) FROM event_relations WHERE relates_to = ?1 GROUP BY rel_type",
    )?;
    let mut rows = stmt.query([event_id])?;
    let mut out = Summary::default();
    while let Some(r) = rows.next()? {
        let kind: String = r.get(0)?;
        match kind.as_str() {
            "m.thread" => {
                out.thread_count = r.get::<_, i64>(1)?.try_into().unwrap_or(0);
                out.thread_latest = r.get(2)?;
            }
            "m.replace" => out.replaces = true,
            "m.reference" => out.references = true,
            _ => {}
        }
    }
    Ok(out)
}

/// Which children come first in [`children`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Newest {
    /// By `(origin_ts, event_id)`, as the replacement rules order edits.
    Sent,
    /// By stream position (a thread's replies from the latest back).
    Arrived,
}

/// The events relating to `event_id` with `rel_type`, newest first in the
/// given sense; at most `limit`.
pub fn children(
    conn: &Connection,
    event_id: &str,
    rel_type: &str,
    newest: Newest,
    limit: usize,
) -> Result<Vec<StoredEvent>> {
    let cols = super::events::COLUMNS;
    // By position the index gives the newest few without reading the
    // others' events; by time every child's row is read and sorted.
    let (inner, order) = match newest {
        Newest::Sent => ("", "origin_ts DESC, event_id DESC"),
        Newest::Arrived => (" ORDER BY pos DESC LIMIT ?3", "pos DESC"),
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {cols} FROM events WHERE pos IN
             (SELECT pos FROM event_relations WHERE relates_to = ?1 AND rel_type = ?2{inner})
         ORDER BY {order} LIMIT ?3"
    ))?;
    let rows = stmt.query_map(params![event_id, rel_type, limit as i64], super::events::from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The IDs of the events relating to `event_id` with `rel_type`, oldest
/// first, at most `limit` (an `m.reference` aggregation's chunk).
pub fn child_ids(conn: &Connection, event_id: &str, rel_type: &str, limit: usize) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT e.event_id FROM event_relations r JOIN events e ON e.pos = r.pos
         WHERE r.relates_to = ?1 AND r.rel_type = ?2 ORDER BY r.pos LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![event_id, rel_type, limit as i64], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Did `user_id` send a reply in the thread rooted at `root_id`?
pub fn replied_in_thread(conn: &Connection, root_id: &str, user_id: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM event_relations r JOIN events e ON e.pos = r.pos
             WHERE r.relates_to = ?1 AND r.rel_type = 'm.thread' AND e.sender = ?2)",
        )?
        .query_row([root_id, user_id], |r| r.get(0))?)
}

/// Has `sender` already annotated `event_id` with `key` in an event of
/// type `kind` (not redacted)? One reaction per sender, type and key.
pub fn has_annotation(
    conn: &Connection,
    event_id: &str,
    sender: &str,
    kind: &str,
    key: &str,
) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM event_relations r JOIN events e ON e.pos = r.pos
             WHERE r.relates_to = ?1 AND r.rel_type = 'm.annotation' AND r.key = ?4
               AND e.sender = ?2 AND e.type = ?3)",
        )?
        .query_row([event_id, sender, kind, key], |r| r.get(0))?)
}

/// Which children a relations read lists: those of the events in
/// `parents` (a JSON array of event IDs), of one relation type and one
/// event type if given.
#[derive(Debug, Clone, Copy)]
pub struct ChildFilter<'a> {
    pub parents: &'a str,
    pub rel_type: Option<&'a str>,
    pub event_type: Option<&'a str>,
}

/// Up to `limit` children in topological order — by `(depth, pos)` —
/// strictly after (forward) or before (backward) the key `from`, and on one
/// side of a pagination point, as `events::room_events_by_key` reads a
/// room.
pub fn children_by_key(
    conn: &Connection,
    filter: ChildFilter,
    from: (i64, i64),
    side: ((i64, i64), i64),
    dir: super::events::Dir,
    limit: usize,
) -> Result<Vec<StoredEvent>> {
    let cols = super::events::COLUMNS;
    let (cmp, order) = match dir {
        super::events::Dir::Backward => {
            ("(depth, pos) < (?4, ?5) AND ((depth, pos) <= (?6, ?7) OR pos <= ?8)", "DESC")
        }
        super::events::Dir::Forward => {
            ("(depth, pos) > (?4, ?5) AND ((depth, pos) > (?6, ?7) OR pos > ?8)", "ASC")
        }
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {cols} FROM events WHERE pos IN
             (SELECT pos FROM event_relations WHERE relates_to IN (SELECT value FROM json_each(?1))
                AND (?2 IS NULL OR rel_type = ?2))
           AND (?3 IS NULL OR type = ?3) AND {cmp}
         ORDER BY depth {order}, pos {order} LIMIT ?9"
    ))?;
    let ((depth, pos), through) = side;
    let rows = stmt.query_map(
        params![
            filter.parents,
            filter.rel_type,
            filter.event_type,
            from.0,
            from.1,
            depth,
            pos,
            through,
            limit as i64
        ],
        super::events::from_row,
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The IDs of the events relating to any of `parents` (a JSON array of
/// event IDs), at most `limit`: one level of a recursive relations read.
pub fn children_of_any(conn: &Connection, parents: &str, limit: usize) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT e.event_id FROM event_relations r JOIN events e ON e.pos = r.pos
         WHERE r.relates_to IN (SELECT value FROM json_each(?1)) ORDER BY r.pos LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![parents, limit as i64], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// One page of a room's threads by latest activity, newest first: roots
/// with their latest reply's position strictly below `before`, at most
/// `limit`. `participant`: only threads whose root or a reply they sent.
pub fn threads_page(
    conn: &Connection,
    room_id: &str,
    before: i64,
    participant: Option<&str>,
    limit: usize,
) -> Result<Vec<(String, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT t.root_id, t.latest_pos FROM threads t
         WHERE t.room_id = ?1 AND t.latest_pos < ?2
           AND (?3 IS NULL
                OR EXISTS (SELECT 1 FROM events e WHERE e.event_id = t.root_id AND e.sender = ?3)
                OR EXISTS (SELECT 1 FROM event_relations r JOIN events e ON e.pos = r.pos
                           WHERE r.relates_to = t.root_id AND r.rel_type = 'm.thread' AND e.sender = ?3))
         ORDER BY t.latest_pos DESC LIMIT ?4",
    )?;
    let rows =
        stmt.query_map(params![room_id, before, participant, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
