//! Reports of events, rooms and users: `reports`. Written by the client
//! API's report endpoints, read and resolved by `hearth reports`.

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::error::Result;

/// One stored report. What was reported is one of: an event (`room_id`
/// and `event_id`), a room (`room_id` only) or a user (`user_id`).
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub id: i64,
    pub received_ts: i64,
    pub reporter: String,
    pub room_id: Option<String>,
    pub event_id: Option<String>,
    pub user_id: Option<String>,
    pub reason: Option<String>,
    pub score: Option<i64>,
    pub resolved_ts: Option<i64>,
}

/// What a new report names.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    Event { room_id: &'a str, event_id: &'a str },
    Room { room_id: &'a str },
    User { user_id: &'a str },
}

fn from_row(r: &Row) -> rusqlite::Result<Report> {
    Ok(Report {
        id: r.get(0)?,
        received_ts: r.get(1)?,
        reporter: r.get(2)?,
        room_id: r.get(3)?,
        event_id: r.get(4)?,
        user_id: r.get(5)?,
        reason: r.get(6)?,
        score: r.get(7)?,
        resolved_ts: r.get(8)?,
    })
}

const COLUMNS: &str = "id, received_ts, reporter, room_id, event_id, user_id, reason, score, resolved_ts";

/// Stores a report; returns its ID.
pub fn insert(
    conn: &Connection,
    reporter: &str,
    target: Target<'_>,
    reason: Option<&str>,
    score: Option<i64>,
    now: i64,
) -> Result<i64> {
    let (room_id, event_id, user_id) = match target {
        Target::Event { room_id, event_id } => (Some(room_id), Some(event_id), None),
        Target::Room { room_id } => (Some(room_id), None, None),
        Target::User { user_id } => (None, None, Some(user_id)),
    };
    conn.execute(
        "INSERT INTO reports (received_ts, reporter, room_id, event_id, user_id, reason, score)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![now, reporter, room_id, event_id, user_id, reason, score],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Reports oldest first: the open ones only, or all when `all`.
pub fn list(conn: &Connection, all: bool) -> Result<Vec<Report>> {
    let sql = if all {
        format!("SELECT {COLUMNS} FROM reports ORDER BY id")
    } else {
        format!("SELECT {COLUMNS} FROM reports WHERE resolved_ts IS NULL ORDER BY id")
    };
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn get(conn: &Connection, id: i64) -> Result<Option<Report>> {
    Ok(conn.query_row(&format!("SELECT {COLUMNS} FROM reports WHERE id = ?1"), [id], from_row).optional()?)
}

/// Marks a report resolved. `None` when there is no such report; else
/// whether it was open until now (a resolved one keeps its first time).
pub fn resolve(conn: &Connection, id: i64, now: i64) -> Result<Option<bool>> {
    let n = conn.execute(
        "UPDATE reports SET resolved_ts = ?2 WHERE id = ?1 AND resolved_ts IS NULL",
        params![id, now],
    )?;
    if n == 1 {
        return Ok(Some(true));
    }
    Ok(get(conn, id)?.map(|_| false))
}

/// True if this server knows the user: a local account, or anyone with a
/// membership in a room known here (remote users are known by their
/// rooms).
pub fn user_known(conn: &Connection, user_id: &str) -> Result<bool> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM users WHERE user_id = ?1)
                 OR EXISTS (SELECT 1 FROM memberships WHERE user_id = ?1)",
        [user_id],
        |r| r.get(0),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::storage::test_conn;

    #[test]
    fn reports_are_stored_listed_and_resolved() {
        let c = test_conn();
        let event = Target::Event { room_id: "!r:x", event_id: "$e" };
        let a = insert(&c, "@a:x", event, Some("spam"), Some(-50), 1).unwrap();
        let b = insert(&c, "@a:x", Target::User { user_id: "@b:x" }, None, None, 2).unwrap();
        assert_eq!(list(&c, false).unwrap().len(), 2);
        assert_eq!(resolve(&c, a, 3).unwrap(), Some(true));
        assert_eq!(resolve(&c, a, 4).unwrap(), Some(false));
        assert_eq!(resolve(&c, b + 100, 4).unwrap(), None);
        let open = list(&c, false).unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].user_id.as_deref(), Some("@b:x"));
        let all = list(&c, true).unwrap();
        assert_eq!(all[0].resolved_ts, Some(3));
        assert_eq!(all[0].score, Some(-50));
        assert_eq!(all[0].event_id.as_deref(), Some("$e"));
        assert!(!user_known(&c, "@nobody:x").unwrap());
    }
}
