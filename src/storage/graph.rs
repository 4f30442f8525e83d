//! The room as a graph (issue 17): events outside the timeline
//! (`event_outliers`: outliers, rejected and soft-failed events), the prev
//! edges, the state after each state event, and the forward and backward
//! extremities of each room.

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::Result;
use crate::storage::events::StoredEvent;

/// What an event stored outside the timeline is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Known without its place in the graph (an auth-chain event, an
    /// event fetched for the state it holds).
    Outlier,
    /// Refused by the authorization rules.
    Rejected,
    /// Passed the rules at its own place but not against the current
    /// state: kept for state resolution, never shown.
    SoftFailed,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Outlier => "outlier",
            Status::Rejected => "rejected",
            Status::SoftFailed => "soft_failed",
        }
    }

    fn parse(s: &str) -> Status {
        match s {
            "rejected" => Status::Rejected,
            "soft_failed" => Status::SoftFailed,
            _ => Status::Outlier,
        }
    }
}

/// An event of `event_outliers`: its indexed columns as a timeline
/// event has them, and what it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Outlier {
    pub event: StoredEvent,
    pub status: Status,
    pub reason: Option<String>,
}

/// Stores (or replaces) an event outside the timeline. `event.pos` is not
/// stored; `event.state_before` is, for a soft-failed event.
pub fn put_outlier(conn: &Connection, o: &Outlier, now: i64) -> Result<()> {
    let e = &o.event;
    let state_before = (o.status == Status::SoftFailed).then_some(e.state_before);
    conn.prepare_cached(
        "INSERT INTO event_outliers (event_id, room_id, status, reason, type, state_key, sender,
             origin_ts, depth, state_before, pdu, received_ts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT (event_id) DO UPDATE SET status = excluded.status, reason = excluded.reason,
             state_before = excluded.state_before, pdu = excluded.pdu",
    )?
    .execute(params![
        e.event_id,
        e.room_id,
        o.status.as_str(),
        o.reason,
        e.kind,
        e.state_key,
        e.sender,
        e.origin_ts,
        e.depth,
        state_before,
        e.pdu,
        now
    ])?;
    Ok(())
}

/// An outlier's status, type and state key only (no PDU read): what
/// building a state map from thousands of them needs.
pub fn outlier_key(conn: &Connection, event_id: &str) -> Result<Option<(Status, String, Option<String>)>> {
    Ok(conn
        .prepare_cached("SELECT status, type, state_key FROM event_outliers WHERE event_id = ?1")?
        .query_row([event_id], |r| Ok((Status::parse(&r.get::<_, String>(0)?), r.get(1)?, r.get(2)?)))
        .optional()?)
}

/// An event stored outside the timeline. Its `pos` is 0 and, unless it
/// soft-failed, its `state_before` is 0 (no state known).
pub fn outlier(conn: &Connection, event_id: &str) -> Result<Option<Outlier>> {
    Ok(conn
        .prepare_cached(
            "SELECT event_id, room_id, status, reason, type, state_key, sender, origin_ts, depth,
                 state_before, pdu FROM event_outliers WHERE event_id = ?1",
        )?
        .query_row([event_id], |r| {
            Ok(Outlier {
                event: StoredEvent {
                    pos: 0,
                    event_id: r.get(0)?,
                    room_id: r.get(1)?,
                    kind: r.get(4)?,
                    state_key: r.get(5)?,
                    sender: r.get(6)?,
                    origin_ts: r.get(7)?,
                    depth: r.get(8)?,
                    state_before: r.get::<_, Option<i64>>(9)?.unwrap_or(0),
                    pdu: r.get(10)?,
                    redacted_by: None,
                    txn_device: None,
                    txn_id: None,
                },
                status: Status::parse(&r.get::<_, String>(2)?),
                reason: r.get(3)?,
            })
        })
        .optional()?)
}

/// Removes an outlier that became a timeline event.
pub fn remove_outlier(conn: &Connection, event_id: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM event_outliers WHERE event_id = ?1")?.execute([event_id])?;
    Ok(())
}

/// Records `event_id`'s prev events (the event's own write).
pub fn put_prev_edges(conn: &Connection, event_id: &str, prev_ids: &[String]) -> Result<()> {
    let mut st =
        conn.prepare_cached("INSERT OR IGNORE INTO event_prev_edges (event_id, prev_id) VALUES (?1, ?2)")?;
    for p in prev_ids {
        st.execute(params![event_id, p])?;
    }
    Ok(())
}

/// True if a timeline event of the room cites `event_id` as a prev event.
pub fn has_successor(conn: &Connection, event_id: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM event_prev_edges p JOIN events e ON e.event_id = p.event_id
             WHERE p.prev_id = ?1 LIMIT 1",
        )?
        .query_row([event_id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// The prev events of `event_id`.
pub fn prev_ids(conn: &Connection, event_id: &str) -> Result<Vec<String>> {
    let mut st = conn.prepare_cached("SELECT prev_id FROM event_prev_edges WHERE event_id = ?1")?;
    let rows = st.query_map([event_id], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Records the state group after a state event.
pub fn put_state_after(conn: &Connection, event_id: &str, group: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO event_state_after (event_id, state_group) VALUES (?1, ?2)
         ON CONFLICT (event_id) DO UPDATE SET state_group = excluded.state_group",
    )?
    .execute(params![event_id, group])?;
    Ok(())
}

/// The state group after a state event, if recorded.
pub fn state_after(conn: &Connection, event_id: &str) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT state_group FROM event_state_after WHERE event_id = ?1")?
        .query_row([event_id], |r| r.get(0))
        .optional()?)
}

/// A new event of the room: the prev events it cites stop being forward
/// extremities, and it becomes one unless a stored event already cites it.
pub fn advance_extremities(
    conn: &Connection,
    room_id: &str,
    event_id: &str,
    prev_ids: &[String],
) -> Result<()> {
    let mut st =
        conn.prepare_cached("DELETE FROM forward_extremities WHERE room_id = ?1 AND event_id = ?2")?;
    for p in prev_ids {
        st.execute([room_id, p])?;
    }
    if !has_successor(conn, event_id)? {
        conn.prepare_cached("INSERT OR IGNORE INTO forward_extremities (room_id, event_id) VALUES (?1, ?2)")?
            .execute([room_id, event_id])?;
    }
    Ok(())
}

/// A new event arrived: it is no longer missing, and those of its prev
/// events that are not stored are where backfill goes on.
pub fn update_backward_extremities(
    conn: &Connection,
    room_id: &str,
    event_id: &str,
    missing_prevs: &[String],
) -> Result<()> {
    conn.prepare_cached("DELETE FROM backward_extremities WHERE room_id = ?1 AND event_id = ?2")?
        .execute([room_id, event_id])?;
    let mut st = conn
        .prepare_cached("INSERT OR IGNORE INTO backward_extremities (room_id, event_id) VALUES (?1, ?2)")?;
    for p in missing_prevs {
        st.execute([room_id, p])?;
    }
    Ok(())
}

/// The room's backward extremities.
pub fn backward_extremities(conn: &Connection, room_id: &str) -> Result<Vec<String>> {
    let mut st = conn
        .prepare_cached("SELECT event_id FROM backward_extremities WHERE room_id = ?1 ORDER BY event_id")?;
    let rows = st.query_map([room_id], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The servers with a user joined to the room now, in name order.
pub fn servers_in_room(conn: &Connection, room_id: &str) -> Result<Vec<String>> {
    let mut st = conn.prepare_cached(
        "SELECT DISTINCT substr(user_id, instr(user_id, ':') + 1) AS server FROM memberships
         WHERE room_id = ?1 AND membership = 'join' ORDER BY server",
    )?;
    let rows = st.query_map([room_id], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The smallest stream position of any event minus one (at most -1): the
/// position of an event arriving by backfill, which sorts before all the
/// room's history known so far and never counts as new in a sync.
pub fn backfill_pos(conn: &Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT min(coalesce(min(pos), 0), 0) - 1 FROM events")?
        .query_row([], |r| r.get(0))?)
}

/// Forgets the room's forward extremities (a join through another server
/// starts the room's graph again from the join).
pub fn clear_extremities(conn: &Connection, room_id: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM forward_extremities WHERE room_id = ?1")?.execute([room_id])?;
    Ok(())
}
