//! Events and the global stream: `events`, `forward_extremities`,
//! `stream_position`.

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::error::Result;

/// An event as stored: the indexed columns and the PDU's canonical JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub pos: i64,
    pub event_id: String,
    pub room_id: String,
    pub kind: String,
    pub state_key: Option<String>,
    pub sender: String,
    pub origin_ts: i64,
    pub depth: i64,
    pub state_before: i64,
    pub pdu: String,
    pub redacted_by: Option<String>,
    pub txn_device: Option<String>,
    pub txn_id: Option<String>,
}

pub(super) const COLUMNS: &str =
    "pos, event_id, room_id, type, state_key, sender, origin_ts, depth, state_before, pdu, \
                       redacted_by, txn_device, txn_id";

pub(super) fn from_row(r: &Row) -> rusqlite::Result<StoredEvent> {
    Ok(StoredEvent {
        pos: r.get(0)?,
        event_id: r.get(1)?,
        room_id: r.get(2)?,
        kind: r.get(3)?,
        state_key: r.get(4)?,
        sender: r.get(5)?,
        origin_ts: r.get(6)?,
        depth: r.get(7)?,
        state_before: r.get(8)?,
        pdu: r.get(9)?,
        redacted_by: r.get(10)?,
        txn_device: r.get(11)?,
        txn_id: r.get(12)?,
    })
}

/// Takes the next position of the global stream.
pub fn next_pos(conn: &Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached("UPDATE stream_position SET pos = pos + 1 WHERE id = 1 RETURNING pos")?
        .query_row([], |r| r.get(0))?)
}

/// The newest position of the global stream.
pub fn current_pos(conn: &Connection) -> Result<i64> {
    Ok(conn.prepare_cached("SELECT pos FROM stream_position WHERE id = 1")?.query_row([], |r| r.get(0))?)
}

pub fn insert(conn: &Connection, e: &StoredEvent) -> Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO events ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
    ))?
    .execute(params![
        e.pos,
        e.event_id,
        e.room_id,
        e.kind,
        e.state_key,
        e.sender,
        e.origin_ts,
        e.depth,
        e.state_before,
        e.pdu,
        e.redacted_by,
        e.txn_device,
        e.txn_id
    ])?;
    Ok(())
}

/// An event by ID: a timeline event, or one known outside the timeline
/// (an outlier or a soft-failed event, with `pos` 0; see
/// `storage::graph`). A rejected event is not returned: see
/// [`timeline_event`] and `graph::outlier` for the tables alone.
pub fn get(conn: &Connection, event_id: &str) -> Result<Option<StoredEvent>> {
    if let Some(e) = timeline_event(conn, event_id)? {
        return Ok(Some(e));
    }
    Ok(super::graph::outlier(conn, event_id)?
        .filter(|o| o.status != super::graph::Status::Rejected)
        .map(|o| o.event))
}

/// An event of the room timelines (`events`) by ID.
pub fn timeline_event(conn: &Connection, event_id: &str) -> Result<Option<StoredEvent>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM events WHERE event_id = ?1"))?
        .query_row([event_id], from_row)
        .optional()?)
}

/// A timeline event by its stream position.
pub fn at_pos(conn: &Connection, pos: i64) -> Result<Option<StoredEvent>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM events WHERE pos = ?1"))?
        .query_row([pos], from_row)
        .optional()?)
}

/// The event a client's earlier send with the same transaction ID made.
pub fn by_txn(conn: &Connection, sender: &str, device_id: &str, txn_id: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT event_id FROM events WHERE sender = ?1 AND txn_device = ?2 AND txn_id = ?3")?
        .query_row([sender, device_id, txn_id], |r| r.get(0))
        .optional()?)
}

/// Pagination direction through a room's timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    Backward,
    Forward,
}

/// Up to `limit` events of a room strictly after (forward) or before
/// (backward) `from`, stopping at `to` (exclusive) if given, in the
/// direction of travel.
pub fn room_events(
    conn: &Connection,
    room_id: &str,
    from: i64,
    to: Option<i64>,
    dir: Dir,
    limit: usize,
) -> Result<Vec<StoredEvent>> {
    let sql = match dir {
        Dir::Backward => format!(
            "SELECT {COLUMNS} FROM events WHERE room_id = ?1 AND pos < ?2 AND pos > ?3 ORDER BY pos DESC LIMIT ?4"
        ),
        Dir::Forward => format!(
            "SELECT {COLUMNS} FROM events WHERE room_id = ?1 AND pos > ?2 AND pos < ?3 ORDER BY pos ASC LIMIT ?4"
        ),
    };
    let bound = to.unwrap_or(match dir {
        Dir::Backward => i64::MIN,
        Dir::Forward => i64::MAX,
    });
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![room_id, from, bound, limit as i64], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Up to `limit` events of a room in topological order — by `(depth,
/// pos)` — strictly after (forward) or before (backward) the key `from`,
/// in the direction of travel, and on one side of a pagination point
/// (`rooms::token::Point::side`): backwards those with key `<= side.0`
/// or position `<= side.1`, forwards those with key `> side.0` or
/// position `> side.1`. The reads of `/messages` and `/context`: a walk of
/// the index `events_room_depth`, whose entries hold both, so the events
/// on the other side of the point cost no row reads.
pub fn room_events_by_key(
    conn: &Connection,
    room_id: &str,
    from: (i64, i64),
    side: ((i64, i64), i64),
    dir: Dir,
    limit: usize,
) -> Result<Vec<StoredEvent>> {
    let sql = match dir {
        Dir::Backward => format!(
            "SELECT {COLUMNS} FROM events WHERE room_id = ?1 AND (depth, pos) < (?2, ?3)
                 AND ((depth, pos) <= (?4, ?5) OR pos <= ?6)
             ORDER BY depth DESC, pos DESC LIMIT ?7"
        ),
        Dir::Forward => format!(
            "SELECT {COLUMNS} FROM events WHERE room_id = ?1 AND (depth, pos) > (?2, ?3)
                 AND ((depth, pos) > (?4, ?5) OR pos > ?6)
             ORDER BY depth ASC, pos ASC LIMIT ?7"
        ),
    };
    let ((depth, pos), through) = side;
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows =
        stmt.query_map(params![room_id, from.0, from.1, depth, pos, through, limit as i64], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The event nearest to `ts` in the given direction (at or after for
/// forward, at or before for backward).
pub fn closest_by_ts(conn: &Connection, room_id: &str, ts: i64, dir: Dir) -> Result<Option<(String, i64)>> {
    let sql = match dir {
        Dir::Forward => {
            "SELECT event_id, origin_ts FROM events WHERE room_id = ?1 AND origin_ts >= ?2
             ORDER BY origin_ts ASC, pos ASC LIMIT 1"
        }
        Dir::Backward => {
            "SELECT event_id, origin_ts FROM events WHERE room_id = ?1 AND origin_ts <= ?2
             ORDER BY origin_ts DESC, pos DESC LIMIT 1"
        }
    };
    Ok(conn
        .prepare_cached(sql)?
        .query_row(params![room_id, ts], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// Replaces an event's PDU with its redacted form and records the redaction.
/// Its relation and search entry go with the content.
pub fn set_redacted(conn: &Connection, event_id: &str, redacted_pdu: &str, by: &str) -> Result<()> {
    let pos: Option<i64> = conn
        .prepare_cached("UPDATE events SET pdu = ?2, redacted_by = ?3 WHERE event_id = ?1 RETURNING pos")?
        .query_row(params![event_id, redacted_pdu, by], |r| r.get(0))
        .optional()?;
    if let Some(pos) = pos {
        super::relations::unindex(conn, pos)?;
        super::search::unindex(conn, pos)?;
    }
    Ok(())
}

pub fn extremities(conn: &Connection, room_id: &str) -> Result<Vec<String>> {
    let mut stmt =
        conn.prepare_cached("SELECT event_id FROM forward_extremities WHERE room_id = ?1 ORDER BY event_id")?;
    let rows = stmt.query_map([room_id], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// After a local event: it is the room's only forward extremity.
pub fn set_sole_extremity(conn: &Connection, room_id: &str, event_id: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM forward_extremities WHERE room_id = ?1")?.execute([room_id])?;
    conn.prepare_cached("INSERT INTO forward_extremities (room_id, event_id) VALUES (?1, ?2)")?
        .execute([room_id, event_id])?;
    Ok(())
}

/// Up to `limit` events of a room in `(origin_ts, pos)` order, strictly
/// after the key `after` going forward (ascending) or strictly before it
/// going backward (descending). Start forward from `(ts, 0)` for "at or
/// after ts", backward from `(ts, i64::MAX)` for "at or before ts"; continue
/// from the last event's `(origin_ts, pos)`.
pub fn by_ts(
    conn: &Connection,
    room_id: &str,
    after: (i64, i64),
    dir: Dir,
    limit: usize,
) -> Result<Vec<StoredEvent>> {
    let sql = match dir {
        Dir::Forward => format!(
            "SELECT {COLUMNS} FROM events WHERE room_id = ?1 AND (origin_ts, pos) > (?2, ?3)
             ORDER BY origin_ts ASC, pos ASC LIMIT ?4"
        ),
        Dir::Backward => format!(
            "SELECT {COLUMNS} FROM events WHERE room_id = ?1 AND (origin_ts, pos) < (?2, ?3)
             ORDER BY origin_ts DESC, pos DESC LIMIT ?4"
        ),
    };
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![room_id, after.0, after.1, limit as i64], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
/// The stream position of the room's newest event of one of `types` (a
/// room's "bump stamp" for room lists ordered by recency), if any. Walks the
/// room's events newest first.
pub fn last_pos_of_types(conn: &Connection, room_id: &str, types: &[&str]) -> Result<Option<i64>> {
    let marks: Vec<String> = (0..types.len()).map(|i| format!("?{}", i + 2)).collect();
    let sql = format!(
        "SELECT pos FROM events WHERE room_id = ?1 AND type IN ({}) ORDER BY pos DESC LIMIT 1",
        marks.join(", ")
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut values: Vec<&dyn rusqlite::ToSql> = vec![&room_id];
    values.extend(types.iter().map(|t| t as &dyn rusqlite::ToSql));
    Ok(stmt.query_row(values.as_slice(), |r| r.get(0)).optional()?)
}

/// Records `event_id`'s auth events (the event's own write).
pub fn put_auth_edges(conn: &Connection, event_id: &str, auth_ids: &[String]) -> Result<()> {
    let mut st =
        conn.prepare_cached("INSERT OR IGNORE INTO event_auth_edges (event_id, auth_id) VALUES (?1, ?2)")?;
    for a in auth_ids {
        st.execute(rusqlite::params![event_id, a])?;
    }
    Ok(())
}

/// The auth chain of `event_id`: every event reachable through auth
/// edges, itself excluded, by an indexed walk of `event_auth_edges`.
pub fn auth_chain(conn: &Connection, event_id: &str) -> Result<Vec<String>> {
    let mut st = conn.prepare_cached(
        "WITH RECURSIVE chain(id) AS (
             SELECT auth_id FROM event_auth_edges WHERE event_id = ?1
             UNION
             SELECT e.auth_id FROM event_auth_edges e JOIN chain c ON e.event_id = c.id)
         SELECT id FROM chain ORDER BY id",
    )?;
    let rows = st.query_map(rusqlite::params![event_id], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The events of `ids` and their whole auth chains, by one indexed walk
/// of `event_auth_edges` from all of them.
pub fn with_auth_chains(conn: &Connection, ids: &[&str]) -> Result<std::collections::HashSet<String>> {
    let mut all: std::collections::HashSet<String> = auth_chain_of_all(conn, ids)?.into_iter().collect();
    all.extend(ids.iter().map(|id| (*id).to_owned()));
    Ok(all)
}

/// The union of the auth chains of `ids`: every event reachable from them
/// through auth edges, in ID order, by one indexed walk. One of `ids` is
/// in the answer only if another one reaches it.
pub fn auth_chain_of_all<S: AsRef<str> + serde::Serialize>(
    conn: &Connection,
    ids: &[S],
) -> Result<Vec<String>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // The seeds go in as one JSON array: a statement's parameter count is
    // bounded, a room's state is not.
    let seeds = serde_json::to_string(ids).map_err(|e| crate::error::Error::internal(e.to_string()))?;
    let mut st = conn.prepare_cached(
        "WITH RECURSIVE chain(id) AS (
             SELECT auth_id FROM event_auth_edges
                 WHERE event_id IN (SELECT value FROM json_each(?1))
             UNION
             SELECT e.auth_id FROM event_auth_edges e JOIN chain c ON e.event_id = c.id)
         SELECT id FROM chain ORDER BY id",
    )?;
    let rows = st.query_map([seeds], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The topological read goes by `(depth, pos)` both ways, from an
    /// exclusive key, and walks the index `events_room_depth`.
    #[test]
    fn room_events_by_key_reads_in_topological_order() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut conn).unwrap();
        conn.execute_batch(
            "INSERT INTO rooms (room_id, version, creator, created_ts, state_group, depth, published)
                 VALUES ('!r', '10', '@u:x', 1, 0, 0, 0), ('!o', '10', '@u:x', 1, 0, 0, 0);
             INSERT INTO events (pos, event_id, room_id, type, sender, origin_ts, depth, state_before, pdu)
                 VALUES (1, '$a', '!r', 'm', '@u:x', 1, 1, 0, '{}'), (2, '$b', '!r', 'm', '@u:x', 1, 3, 0, '{}'),
                        (3, '$c', '!r', 'm', '@u:x', 1, 2, 0, '{}'), (4, '$d', '!r', 'm', '@u:x', 1, 2, 0, '{}'),
                        (-5, '$e', '!r', 'm', '@u:x', 1, 0, 0, '{}'), (6, '$f', '!o', 'm', '@u:x', 1, 2, 0, '{}');",
        )
        .unwrap();
        let (min, max) = ((i64::MIN, i64::MIN), (i64::MAX, i64::MAX));
        let ids = |from, side, dir, limit| -> Vec<String> {
            let got = room_events_by_key(&conn, "!r", from, side, dir, limit).unwrap();
            got.into_iter().map(|e| e.event_id).collect()
        };
        let all_back = (min, i64::MAX);
        let all_forward = (max, i64::MIN);
        assert_eq!(ids(min, all_forward, Dir::Forward, 10), ["$e", "$a", "$c", "$d", "$b"]);
        assert_eq!(ids(max, all_back, Dir::Backward, 10), ["$b", "$d", "$c", "$a", "$e"]);
        assert_eq!(ids((2, 3), all_forward, Dir::Forward, 2), ["$d", "$b"]);
        assert_eq!(ids((2, 4), all_back, Dir::Backward, 2), ["$c", "$a"]);
        // One side of a point: backwards key <= (1, 1) or pos <= 2 ...
        assert_eq!(ids(max, ((1, 1), 2), Dir::Backward, 10), ["$b", "$a", "$e"]);
        // ... forwards key > (2, 3) or pos > 3.
        assert_eq!(ids(min, ((2, 3), 3), Dir::Forward, 10), ["$d", "$b"]);
        let plan: Vec<String> = conn
            .prepare(
                "EXPLAIN QUERY PLAN SELECT pos FROM events WHERE room_id = '!r' AND (depth, pos) < (2, 4)
                     AND ((depth, pos) <= (1, 1) OR pos <= 2)
                 ORDER BY depth DESC, pos DESC LIMIT 3",
            )
            .unwrap()
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(plan.iter().any(|p| p.contains("events_room_depth")), "{plan:?}");
        assert!(!plan.iter().any(|p| p.contains("TEMP B-TREE")), "no sort: {plan:?}");
    }
}
