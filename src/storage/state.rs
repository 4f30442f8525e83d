//! Room state: snapshots stored as deltas (`state_groups`, `state_entries`),
//! the materialised `current_state`, and `memberships`.
//!
//! A state group is the full state of a room at some point. Groups made
//! one after another from a snapshot are numbered 1, 2, 3, … (the
//! `chain_len` column); group `n` is stored as its difference from the
//! group numbered `n` with its lowest set bit cleared, found on its way
//! back to the snapshot (a Fenwick layout): group 12 against group 8,
//! group 8 against the snapshot, group 7 against group 6. So reading the
//! state at any group reads at most one group per set bit of its number
//! (at most 15 groups for the 20,000th change since a snapshot) plus the
//! snapshot, and a change writes on average about half the bits' length
//! of rows (the entries changed since that base) — where a full snapshot
//! every few dozen changes would write the whole state again, 20,000 rows
//! each time in a 20,000-member room, and grow the tables without bound.
//! A group that differs from its parent in most of the state is written
//! as a new snapshot. Messages make no groups: storage grows with state
//! changes, not messages.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::Result;

/// `(type, state_key)` → event ID.
pub type StateMap = HashMap<(String, String), String>;

/// Creates a group holding exactly `state` (a full snapshot).
pub fn new_snapshot(conn: &Connection, room_id: &str, state: &StateMap) -> Result<i64> {
    conn.execute("INSERT INTO state_groups (room_id, parent, chain_len) VALUES (?1, NULL, 0)", [room_id])?;
    let group = conn.last_insert_rowid();
    let mut stmt = conn.prepare_cached(
        "INSERT INTO state_entries (state_group, type, state_key, event_id) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for ((kind, key), event_id) in state {
        stmt.execute(params![group, kind, key, event_id])?;
    }
    Ok(group)
}

/// Creates the group that follows `parent` with one entry changed.
pub fn new_delta(
    conn: &Connection,
    room_id: &str,
    parent: i64,
    kind: &str,
    state_key: &str,
    event_id: &str,
) -> Result<i64> {
    let change = ((kind.to_owned(), state_key.to_owned()), event_id);
    write_following(conn, room_id, parent, vec![(&change.0, change.1)])
}

/// The number of a group since its snapshot (0 for a snapshot) and its
/// stored parent.
fn number_of(conn: &Connection, group: i64) -> Result<(i64, Option<i64>)> {
    Ok(conn.query_row("SELECT chain_len, parent FROM state_groups WHERE id = ?1", [group], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?)
}

/// Writes the group numbered one past `parent`'s with `changed` (entries
/// that differ from `parent`, a removal as an empty event ID), stored
/// against its base: the group numbered with the lowest bit cleared, on
/// `parent`'s way back to its snapshot. The entries between that base and
/// `parent` are carried into the new group.
fn write_following(
    conn: &Connection,
    room_id: &str,
    parent: i64,
    changed: Vec<(&(String, String), &str)>,
) -> Result<i64> {
    let (parent_number, _) = number_of(conn, parent)?;
    let number = parent_number + 1;
    let wanted = number & (number - 1);
    let mut base = parent;
    loop {
        let (n, up) = number_of(conn, base)?;
        match up {
            Some(up) if n > wanted => base = up,
            _ => break,
        }
    }
    let mut entries: HashMap<(String, String), String> =
        if base == parent { HashMap::new() } else { segment(conn, parent, base)? };
    for (key, event_id) in changed {
        entries.insert(key.clone(), event_id.to_owned());
    }
    conn.execute(
        "INSERT INTO state_groups (room_id, parent, chain_len) VALUES (?1, ?2, ?3)",
        params![room_id, base, number],
    )?;
    let group = conn.last_insert_rowid();
    let mut stmt = conn.prepare_cached(
        "INSERT INTO state_entries (state_group, type, state_key, event_id) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for ((kind, key), event_id) in &entries {
        stmt.execute(params![group, kind, key, event_id])?;
    }
    Ok(group)
}

/// The entries of the groups from `from` back to `base` (not included),
/// the nearest winning: `from`'s state as a difference from `base`'s.
fn segment(conn: &Connection, from: i64, base: i64) -> Result<HashMap<(String, String), String>> {
    let mut stmt = conn.prepare_cached(
        "WITH RECURSIVE chain(id, n) AS (
            SELECT ?1, 0
            UNION ALL
            SELECT g.parent, c.n + 1 FROM state_groups g JOIN chain c ON g.id = c.id
            WHERE g.parent IS NOT NULL AND g.parent != ?2
        )
        SELECT e.type, e.state_key, e.event_id FROM state_entries e
        JOIN chain c ON e.state_group = c.id ORDER BY c.n DESC",
    )?;
    let mut rows = stmt.query(params![from, base])?;
    let mut out = HashMap::new();
    while let Some(r) = rows.next()? {
        out.insert((r.get(0)?, r.get(1)?), r.get(2)?);
    }
    Ok(out)
}

/// The recursive walk from a group up to its snapshot, nearest first.
const CHAIN_SQL: &str = "WITH RECURSIVE chain(id, n) AS (
        SELECT ?1, 0
        UNION ALL
        SELECT g.parent, c.n + 1 FROM state_groups g JOIN chain c ON g.id = c.id
        WHERE g.parent IS NOT NULL
    )";

/// The full state of a group.
pub fn group_state(conn: &Connection, group: i64) -> Result<StateMap> {
    let sql = format!(
        "{CHAIN_SQL} SELECT e.type, e.state_key, e.event_id FROM state_entries e
         JOIN chain c ON e.state_group = c.id ORDER BY c.n DESC"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query([group])?;
    let mut state = StateMap::new();
    // Farthest first, so nearer deltas overwrite what they changed; an
    // empty event ID is a delta's removal of the key.
    while let Some(r) = rows.next()? {
        let id: String = r.get(2)?;
        if id.is_empty() {
            state.remove(&(r.get(0)?, r.get(1)?));
        } else {
            state.insert((r.get(0)?, r.get(1)?), id);
        }
    }
    Ok(state)
}

/// The group holding exactly `target`, made as the group following
/// `parent` (see the module's layout) unless it differs from `parent` in
/// most of the state, then as a snapshot. `parent` itself when nothing
/// differs.
pub fn group_for(conn: &Connection, room_id: &str, parent: i64, target: &StateMap) -> Result<i64> {
    let base = group_state(conn, parent)?;
    let mut changed: Vec<(&(String, String), &str)> =
        target.iter().filter(|(k, v)| base.get(*k) != Some(*v)).map(|(k, v)| (k, v.as_str())).collect();
    changed.extend(base.keys().filter(|k| !target.contains_key(*k)).map(|k| (k, "")));
    if changed.is_empty() {
        return Ok(parent);
    }
    if changed.len() * 2 > target.len().max(1) {
        return new_snapshot(conn, room_id, target);
    }
    write_following(conn, room_id, parent, changed)
}

/// One entry of a group's state.
pub fn group_entry(conn: &Connection, group: i64, kind: &str, state_key: &str) -> Result<Option<String>> {
    let sql = format!(
        "{CHAIN_SQL} SELECT e.event_id FROM state_entries e JOIN chain c ON e.state_group = c.id
         WHERE e.type = ?2 AND e.state_key = ?3 ORDER BY c.n LIMIT 1"
    );
    let found: Option<String> =
        conn.prepare_cached(&sql)?.query_row(params![group, kind, state_key], |r| r.get(0)).optional()?;
    // An empty ID is a delta's removal of the key.
    Ok(found.filter(|id| !id.is_empty()))
}

/// Sets one entry of a room's current state.
pub fn set_current(
    conn: &Connection,
    room_id: &str,
    kind: &str,
    state_key: &str,
    event_id: &str,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO current_state (room_id, type, state_key, event_id) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (room_id, type, state_key) DO UPDATE SET event_id = excluded.event_id",
    )?
    .execute(params![room_id, kind, state_key, event_id])?;
    Ok(())
}

/// Removes one entry of a room's current state (a resolution left the
/// key out).
pub fn remove_current(conn: &Connection, room_id: &str, kind: &str, state_key: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM current_state WHERE room_id = ?1 AND type = ?2 AND state_key = ?3")?
        .execute(params![room_id, kind, state_key])?;
    Ok(())
}

/// The event ID of one entry of a room's current state.
pub fn current_entry(
    conn: &Connection,
    room_id: &str,
    kind: &str,
    state_key: &str,
) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached(
            "SELECT event_id FROM current_state WHERE room_id = ?1 AND type = ?2 AND state_key = ?3",
        )?
        .query_row(params![room_id, kind, state_key], |r| r.get(0))
        .optional()?)
}

/// The whole current state of a room.
pub fn current_state(conn: &Connection, room_id: &str) -> Result<StateMap> {
    let mut stmt =
        conn.prepare_cached("SELECT type, state_key, event_id FROM current_state WHERE room_id = ?1")?;
    let rows = stmt.query_map([room_id], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Records a user's current membership of a room.
pub fn set_membership(
    conn: &Connection,
    user_id: &str,
    room_id: &str,
    membership: &str,
    event_id: &str,
    pos: i64,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO memberships (user_id, room_id, membership, event_id, pos) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (user_id, room_id) DO UPDATE SET membership = excluded.membership,
             event_id = excluded.event_id, pos = excluded.pos,
             forgotten = CASE WHEN excluded.membership IN ('join', 'invite', 'knock') THEN 0 ELSE forgotten END",
    )?
    .execute(params![user_id, room_id, membership, event_id, pos])?;
    Ok(())
}

/// Records the display name a member event carries (read by push rule
/// evaluation on every message, so it must not need the event's JSON).
pub fn set_member_name(conn: &Connection, user_id: &str, room_id: &str, name: Option<&str>) -> Result<()> {
    conn.prepare_cached("UPDATE memberships SET displayname = ?3 WHERE user_id = ?1 AND room_id = ?2")?
        .execute(params![user_id, room_id, name])?;
    Ok(())
}

/// A user's current membership of a room, if any.
pub fn membership(conn: &Connection, user_id: &str, room_id: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT membership FROM memberships WHERE user_id = ?1 AND room_id = ?2")?
        .query_row([user_id, room_id], |r| r.get(0))
        .optional()?)
}

/// The event of a user's current membership of a room, if any (also for
/// a room known here only by an invite from another server).
pub fn membership_event(conn: &Connection, user_id: &str, room_id: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT event_id FROM memberships WHERE user_id = ?1 AND room_id = ?2")?
        .query_row([user_id, room_id], |r| r.get(0))
        .optional()?)
}

/// Rooms where the user currently has `membership`.
pub fn rooms_of_user(conn: &Connection, user_id: &str, membership: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT room_id FROM memberships WHERE user_id = ?1 AND membership = ?2 ORDER BY room_id",
    )?;
    let rows = stmt.query_map([user_id, membership], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Users of a room with `membership`.
pub fn members(conn: &Connection, room_id: &str, membership: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT user_id FROM memberships WHERE room_id = ?1 AND membership = ?2 ORDER BY user_id",
    )?;
    let rows = stmt.query_map([room_id, membership], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Marks a room forgotten by a user who has left it. Returns false if the
/// user is still joined, invited or knocking (or never was in the room).
pub fn forget(conn: &Connection, user_id: &str, room_id: &str) -> Result<bool> {
    Ok(conn.execute(
        "UPDATE memberships SET forgotten = 1
         WHERE user_id = ?1 AND room_id = ?2 AND membership IN ('leave', 'ban')",
        [user_id, room_id],
    )? == 1)
}

/// A user's memberships that changed after stream position `since` (all of
/// them for 0), forgotten rooms left out, oldest change first:
/// `(room_id, membership, event_id, pos)`.
pub fn memberships_after(
    conn: &Connection,
    user_id: &str,
    since: i64,
) -> Result<Vec<(String, String, String, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT room_id, membership, event_id, pos FROM memberships
         WHERE user_id = ?1 AND pos > ?2 AND forgotten = 0 ORDER BY pos",
    )?;
    let rows =
        stmt.query_map(params![user_id, since], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A member event in a sync window, with what it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberChange {
    pub pos: i64,
    /// The user whose membership it sets (its state key).
    pub user_id: String,
    /// Its `content.membership` (empty if the stored PDU cannot be read).
    pub membership: String,
    /// The state group in force before it.
    pub state_before: i64,
}

/// The member events of a room in `(from, upto]` (only `user_id`'s if
/// given), oldest first. Walks the room's events in the window by position.
pub fn member_changes(
    conn: &Connection,
    room_id: &str,
    user_id: Option<&str>,
    from: i64,
    upto: i64,
) -> Result<Vec<MemberChange>> {
    let mut stmt = conn.prepare_cached(
        "SELECT pos, state_key, state_before, pdu FROM events
         WHERE room_id = ?1 AND pos > ?2 AND pos <= ?3 AND type = 'm.room.member'
           AND state_key IS NOT NULL AND (?4 IS NULL OR state_key = ?4)
         ORDER BY pos",
    )?;
    let rows = stmt.query_map(params![room_id, from, upto, user_id], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, String>(3)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (pos, user_id, state_before, pdu) = row?;
        out.push(MemberChange { pos, user_id, membership: membership_of_pdu(&pdu), state_before });
    }
    Ok(out)
}

/// The membership `user_id` had in a state group (`None`: no member event).
pub fn membership_in_group(conn: &Connection, group: i64, user_id: &str) -> Result<Option<String>> {
    let Some(event_id) = group_entry(conn, group, "m.room.member", user_id)? else { return Ok(None) };
    let pdu: Option<String> = conn
        .prepare_cached("SELECT pdu FROM events WHERE event_id = ?1")?
        .query_row([&event_id], |r| r.get(0))
        .optional()?;
    Ok(pdu.map(|p| membership_of_pdu(&p)))
}

/// `content.membership` of a stored member PDU; empty if it cannot be read.
fn membership_of_pdu(pdu: &str) -> String {
    serde_json::from_str::<serde_json::Value>(pdu)
        .ok()
        .and_then(|v| v.get("content")?.get("membership")?.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Rooms with new events, receipts or room account data in `(from, upto]`
/// (by anyone: the caller intersects them with the user's rooms). Each
/// query walks only the new rows, by stream position.
pub fn changed_rooms(conn: &Connection, from: i64, upto: i64) -> Result<std::collections::HashSet<String>> {
    let mut out = std::collections::HashSet::new();
    for sql in [
        "SELECT DISTINCT room_id FROM events WHERE pos > ?1 AND pos <= ?2",
        "SELECT DISTINCT room_id FROM receipts WHERE pos > ?1 AND pos <= ?2",
        "SELECT DISTINCT room_id FROM account_data WHERE pos > ?1 AND pos <= ?2 AND room_id != ''",
    ] {
        let mut stmt = conn.prepare_cached(sql)?;
        let rows = stmt.query_map(rusqlite::params![from, upto], |r| r.get::<_, String>(0))?;
        for r in rows {
            out.insert(r?);
        }
    }
    Ok(out)
}

/// Membership rows of the user that changed in `(from, upto]` (all current
/// ones for an initial sync), excluding forgotten rooms.
pub fn memberships_changed(
    conn: &Connection,
    user_id: &str,
    from: i64,
    upto: i64,
) -> Result<Vec<(String, String, String, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT room_id, membership, event_id, pos FROM memberships
         WHERE user_id = ?1 AND pos > ?2 AND pos <= ?3 AND forgotten = 0 AND membership != 'join'
         ORDER BY pos",
    )?;
    let rows = stmt.query_map(rusqlite::params![user_id, from, upto], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// True if `user_id` joined the room (a member event with membership
/// `join`) at some stream position after `pos`.
pub fn joined_after(conn: &Connection, room_id: &str, user_id: &str, pos: i64) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM events WHERE room_id = ?1 AND type = 'm.room.member' AND state_key = ?2
             AND pos > ?3 AND json_extract(pdu, '$.content.membership') = 'join' LIMIT 1",
        )?
        .query_row(rusqlite::params![room_id, user_id, pos], |_| Ok(()))
        .optional()?
        .is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_conn;

    fn key(k: &str, s: &str) -> (String, String) {
        (k.to_owned(), s.to_owned())
    }

    /// Groups read to get a group's state (itself, its bases, the snapshot).
    fn hops(c: &Connection, mut group: i64) -> usize {
        let mut n = 1;
        while let (_, Some(up)) = number_of(c, group).unwrap() {
            group = up;
            n += 1;
        }
        n
    }

    fn rows(c: &Connection) -> i64 {
        c.query_row("SELECT count(*) FROM state_entries", [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn deltas_resolve_to_full_state_and_reads_stay_bounded() {
        let c = test_conn();
        let mut expected = StateMap::new();
        expected.insert(key("m.room.create", ""), "$create".into());
        let mut group = new_snapshot(&c, "!r", &expected).unwrap();
        let first = group;
        for i in 0..200 {
            let ev = format!("$m{i}");
            let user = format!("@u{}:x", i % 10);
            group = new_delta(&c, "!r", group, "m.room.member", &user, &ev).unwrap();
            expected.insert(key("m.room.member", &user), ev);
            assert_eq!(group_state(&c, group).unwrap(), expected, "after change {i}");
            let number = number_of(&c, group).unwrap().0;
            assert_eq!(number, i + 1);
            assert_eq!(hops(&c, group), number.count_ones() as usize + 1, "group {number}");
        }
        // A removal is carried into later groups too.
        let mut target = expected.clone();
        target.remove(&key("m.room.member", "@u3:x"));
        let removed = group_for(&c, "!r", group, &target).unwrap();
        assert_eq!(group_state(&c, removed).unwrap(), target);
        for i in 0..40 {
            group = new_delta(
                &c,
                "!r",
                if i == 0 { removed } else { group },
                "m.room.topic",
                "",
                &format!("$t{i}"),
            )
            .unwrap();
            target.insert(key("m.room.topic", ""), format!("$t{i}"));
            assert_eq!(group_state(&c, group).unwrap(), target, "topic {i}");
        }
        // The state at an old group is unchanged by later deltas.
        assert_eq!(group_state(&c, first).unwrap().len(), 1);
        assert_eq!(group_entry(&c, group, "m.room.member", "@u3:x").unwrap(), None);
        assert_eq!(
            group_entry(&c, group, "m.room.member", "@u4:x").unwrap(),
            expected.get(&key("m.room.member", "@u4:x")).cloned()
        );
        assert_eq!(group_entry(&c, first, "m.room.member", "@u3:x").unwrap(), None);
    }

    #[test]
    fn a_growing_room_writes_rows_by_the_logarithm_not_the_state() {
        // 4,096 joins, one after another: a snapshot every 48 changes
        // would have written ~180,000 rows; the layout writes
        // about n·log2(n)/2.
        let c = test_conn();
        let mut state = StateMap::new();
        state.insert(key("m.room.create", ""), "$create".into());
        let mut group = new_snapshot(&c, "!r", &state).unwrap();
        let n = 4096i64;
        for i in 0..n {
            group =
                new_delta(&c, "!r", group, "m.room.member", &format!("@u{i}:x"), &format!("$j{i}")).unwrap();
        }
        let written = rows(&c);
        assert!(written <= n * 7 + 1, "{written} rows for {n} joins");
        assert_eq!(group_state(&c, group).unwrap().len() as i64, n + 1);
        assert!(hops(&c, group) <= 14);
        // Branches made from an old group are as right.
        let old = group_for(&c, "!r", group, &group_state(&c, group).unwrap()).unwrap();
        assert_eq!(old, group, "no change, no group");
    }

    #[test]
    fn memberships_and_forgetting() {
        let c = test_conn();
        set_membership(&c, "@a:x", "!r", "join", "$1", 1).unwrap();
        assert!(!forget(&c, "@a:x", "!r").unwrap());
        set_membership(&c, "@a:x", "!r", "leave", "$2", 2).unwrap();
        assert!(forget(&c, "@a:x", "!r").unwrap());
        assert_eq!(membership(&c, "@a:x", "!r").unwrap().as_deref(), Some("leave"));
        assert_eq!(rooms_of_user(&c, "@a:x", "leave").unwrap(), ["!r"]);
        set_membership(&c, "@a:x", "!r", "join", "$3", 3).unwrap();
        assert_eq!(members(&c, "!r", "join").unwrap(), ["@a:x"]);
    }
}
