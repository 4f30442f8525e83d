//! Per-user data: `filters`, `account_data`; the ignore list
//! (`m.ignored_user_list`) as the read paths and push evaluation need it.
//!
//! Account data content is stored as JSON text; `changed` hands it back
//! parsed, leaving out (and logging) a row that cannot be parsed, so that
//! one bad row never fails a whole `/sync`.

use std::collections::HashSet;

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

use crate::error::Result;

/// Most filters one user keeps; the oldest go first past this.
pub const FILTERS_PER_USER_MAX: i64 = 100;

/// Stores a filter and returns its ID.
pub fn add_filter(conn: &Connection, user_id: &str, json: &str) -> Result<i64> {
    let id: i64 = conn.query_row(
        "SELECT coalesce(max(filter_id), -1) + 1 FROM filters WHERE user_id = ?1",
        [user_id],
        |r| r.get(0),
    )?;
    conn.execute(
        "INSERT INTO filters (user_id, filter_id, json) VALUES (?1, ?2, ?3)",
        params![user_id, id, json],
    )?;
    conn.execute(
        "DELETE FROM filters WHERE user_id = ?1 AND filter_id <= ?2",
        params![user_id, id - FILTERS_PER_USER_MAX],
    )?;
    Ok(id)
}

pub fn filter(conn: &Connection, user_id: &str, filter_id: i64) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT json FROM filters WHERE user_id = ?1 AND filter_id = ?2")?
        .query_row(params![user_id, filter_id], |r| r.get(0))
        .optional()?)
}

/// Sets account data (`room_id` = "" for global data) at stream position `pos`.
pub fn put(
    conn: &Connection,
    user_id: &str,
    room_id: &str,
    kind: &str,
    content: &str,
    pos: i64,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO account_data (user_id, room_id, type, content, pos) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (user_id, room_id, type) DO UPDATE SET content = excluded.content, pos = excluded.pos",
    )?
    .execute(params![user_id, room_id, kind, content, pos])?;
    Ok(())
}

pub fn get(conn: &Connection, user_id: &str, room_id: &str, kind: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT content FROM account_data WHERE user_id = ?1 AND room_id = ?2 AND type = ?3")?
        .query_row(params![user_id, room_id, kind], |r| r.get(0))
        .optional()?)
}

/// Account data changed after `since` (all of it for `since` = 0), up to
/// `upto`: `(room_id, type, content)`. A row whose content cannot be
/// parsed (stored before the nesting limit, or damaged) is logged and
/// left out.
pub fn changed(
    conn: &Connection,
    user_id: &str,
    since: i64,
    upto: i64,
) -> Result<Vec<(String, String, Value)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT room_id, type, content FROM account_data WHERE user_id = ?1 AND pos > ?2 AND pos <= ?3
         ORDER BY pos",
    )?;
    let rows = stmt.query_map(params![user_id, since, upto], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (room_id, kind, text) = row?;
        match serde_json::from_str(&text) {
            Ok(content) => out.push((room_id, kind, content)),
            Err(e) => crate::log::warn(format_args!(
                "skipping unreadable account data {kind:?} of {user_id} (room {room_id:?}): {e}"
            )),
        }
    }
    Ok(out)
}

/// The global account data type holding the users a user ignores.
pub const IGNORED_USER_LIST: &str = "m.ignored_user_list";

/// The users `user_id` ignores: the keys of `ignored_users` in their
/// `m.ignored_user_list` (empty without one; an entry that cannot be read,
/// or of the wrong shape, is logged and counts as empty).
pub fn ignored_users(conn: &Connection, user_id: &str) -> Result<HashSet<String>> {
    let Some(text) = get(conn, user_id, "", IGNORED_USER_LIST)? else { return Ok(HashSet::new()) };
    let parsed: std::result::Result<Value, _> = serde_json::from_str(&text);
    match parsed.as_ref().map(|v| v.get("ignored_users")) {
        Ok(Some(Value::Object(users))) => Ok(users.keys().cloned().collect()),
        Ok(_) => Ok(HashSet::new()),
        Err(e) => {
            crate::log::warn(format_args!("skipping unreadable {IGNORED_USER_LIST} of {user_id}: {e}"));
            Ok(HashSet::new())
        }
    }
}

/// True if an event from `sender` is hidden from a user who ignores the
/// users in `ignored`: any but a state event (state stays whole, so
/// clients keep a coherent room state; Synapse does the same).
pub fn hides(ignored: &HashSet<String>, sender: &str, is_state: bool) -> bool {
    !is_state && ignored.contains(sender)
}

/// True if `user_id` ignores `other` (as [`ignored_users`] reads it, but
/// without parsing the list outside SQLite: push evaluation asks this for
/// every member of a room, per event).
pub fn ignores(conn: &Connection, user_id: &str, other: &str) -> Result<bool> {
    // CASE, not AND: SQLite may evaluate AND's operands in any order, and
    // json_each fails on text that is not JSON.
    Ok(conn
        .prepare_cached(
            "SELECT CASE WHEN json_valid(content) AND json_type(content, '$.ignored_users') = 'object'
                THEN EXISTS (SELECT 1 FROM json_each(content, '$.ignored_users') WHERE key = ?3)
                ELSE 0 END
             FROM account_data WHERE user_id = ?1 AND room_id = '' AND type = ?2",
        )?
        .query_row(params![user_id, IGNORED_USER_LIST, other], |r| r.get(0))
        .optional()?
        .unwrap_or(false))
}

/// How much account data a user keeps: entries and bytes of content.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub entries: u64,
    pub bytes: u64,
}

/// The account data of `user_id`, per type, except the entry `(room_id,
/// kind)` (the one a write is about to replace, so it counts at its new
/// size only). One pass over the user's rows; `octet_length` reads each
/// value's stored size, not the value.
pub fn usage_by_type(
    conn: &Connection,
    user_id: &str,
    room_id: &str,
    kind: &str,
) -> Result<Vec<(String, Usage)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT type, count(*), coalesce(sum(octet_length(content)), 0) FROM account_data
         WHERE user_id = ?1 AND NOT (room_id = ?2 AND type = ?3) GROUP BY type ORDER BY type",
    )?;
    let rows = stmt.query_map(params![user_id, room_id, kind], |r| {
        let entries: i64 = r.get(1)?;
        let bytes: i64 = r.get(2)?;
        Ok((r.get(0)?, Usage { entries: entries.max(0) as u64, bytes: bytes.max(0) as u64 }))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_conn;

    #[test]
    fn filters_and_account_data() {
        let c = test_conn();
        assert_eq!(add_filter(&c, "@a:x", "{}").unwrap(), 0);
        assert_eq!(add_filter(&c, "@a:x", "{\"x\":1}").unwrap(), 1);
        assert_eq!(filter(&c, "@a:x", 1).unwrap().as_deref(), Some("{\"x\":1}"));
        assert_eq!(filter(&c, "@b:x", 1).unwrap(), None);
        put(&c, "@a:x", "", "m.direct", "{}", 5).unwrap();
        put(&c, "@a:x", "!r", "m.tag", "{\"tags\":{}}", 6).unwrap();
        put(&c, "@a:x", "", "m.direct", "{\"a\":1}", 7).unwrap();
        assert_eq!(changed(&c, "@a:x", 0, 10).unwrap().len(), 2);
        assert_eq!(
            changed(&c, "@a:x", 6, 10).unwrap(),
            vec![("".into(), "m.direct".into(), serde_json::json!({"a": 1}))]
        );
        assert_eq!(changed(&c, "@a:x", 0, 6).unwrap().len(), 1);
    }

    #[test]
    fn unreadable_account_data_is_left_out() {
        let c = test_conn();
        put(&c, "@a:x", "", "m.good", "{\"a\":1}", 1).unwrap();
        // Too deep for serde_json (as a value stored before the nesting
        // limit could be), and text that is not JSON at all.
        let deep = format!("{}1{}", "{\"a\":".repeat(200), "}".repeat(200));
        put(&c, "@a:x", "", "m.deep", &deep, 2).unwrap();
        put(&c, "@a:x", "!r:x", "m.broken", "{\"a\":", 3).unwrap();
        put(&c, "@a:x", "", "m.later", "{}", 4).unwrap();
        let kinds: Vec<String> = changed(&c, "@a:x", 0, 10).unwrap().into_iter().map(|(_, k, _)| k).collect();
        assert_eq!(kinds, vec!["m.good", "m.later"]);
    }

    #[test]
    fn ignore_lists() {
        let c = test_conn();
        assert!(ignored_users(&c, "@a:x").unwrap().is_empty());
        assert!(!ignores(&c, "@a:x", "@b:x").unwrap());
        put(&c, "@a:x", "", IGNORED_USER_LIST, r#"{"ignored_users":{"@b:x":{},"@c:x":{}}}"#, 1).unwrap();
        assert_eq!(ignored_users(&c, "@a:x").unwrap(), HashSet::from(["@b:x".to_owned(), "@c:x".to_owned()]));
        assert!(ignores(&c, "@a:x", "@b:x").unwrap());
        assert!(!ignores(&c, "@a:x", "@d:x").unwrap());
        assert!(!ignores(&c, "@b:x", "@a:x").unwrap());
        // A room's entry of that type is not the ignore list.
        put(&c, "@b:x", "!r:x", IGNORED_USER_LIST, r#"{"ignored_users":{"@a:x":{}}}"#, 2).unwrap();
        assert!(!ignores(&c, "@b:x", "@a:x").unwrap());
        for bad in [r#"{"ignored_users":["@b:x"]}"#, r#"{"ignored_users":"@b:x"}"#, "{\"a\":", "[]"] {
            put(&c, "@a:x", "", IGNORED_USER_LIST, bad, 3).unwrap();
            assert!(ignored_users(&c, "@a:x").unwrap().is_empty(), "{bad}");
            assert!(!ignores(&c, "@a:x", "@b:x").unwrap(), "{bad}");
        }
    }

    #[test]
    fn usage_counts_bytes_and_leaves_out_the_entry_replaced() {
        let c = test_conn();
        assert_eq!(usage_by_type(&c, "@a:x", "", "m.x").unwrap(), vec![]);
        put(&c, "@a:x", "", "m.a", "{\"k\":\"é\"}", 1).unwrap();
        put(&c, "@a:x", "!r:x", "m.tag", "{}", 2).unwrap();
        put(&c, "@a:x", "!s:x", "m.tag", "{}", 3).unwrap();
        put(&c, "@b:x", "", "m.a", "{\"other\":\"user\"}", 4).unwrap();
        let all = usage_by_type(&c, "@a:x", "", "m.new").unwrap();
        // Bytes, not characters: nine characters, "é" being two bytes.
        assert_eq!(
            all,
            vec![
                ("m.a".to_owned(), Usage { entries: 1, bytes: 10 }),
                ("m.tag".to_owned(), Usage { entries: 2, bytes: 4 })
            ]
        );
        let replacing = usage_by_type(&c, "@a:x", "!r:x", "m.tag").unwrap();
        assert_eq!(replacing[1], ("m.tag".to_owned(), Usage { entries: 1, bytes: 2 }));
    }
}
