//! Presence lists (the original specification): `presence_list`, and the
//! membership questions presence visibility asks.
//!
//! A row `(owner, target)` means `owner` put `target` on their list; it is
//! `accepted` once `target` agreed, which happens when `target` puts
//! `owner` on their own list (the reverse subscription): both rows are then
//! accepted.

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::Result;

/// Most users one presence list holds.
pub const LIST_MAX: usize = 500;

/// One entry of a user's presence list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub target: String,
    pub accepted: bool,
}

/// The owner's list, by target.
pub fn list(conn: &Connection, owner: &str) -> Result<Vec<Entry>> {
    let mut stmt =
        conn.prepare_cached("SELECT target, accepted FROM presence_list WHERE owner = ?1 ORDER BY target")?;
    let rows = stmt.query_map([owner], |r| Ok(Entry { target: r.get(0)?, accepted: r.get(1)? }))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// How many users are on the owner's list.
pub fn count(conn: &Connection, owner: &str) -> Result<usize> {
    let n: i64 = conn
        .prepare_cached("SELECT count(*) FROM presence_list WHERE owner = ?1")?
        .query_row([owner], |r| r.get(0))?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// Puts `target` on `owner`'s list. If `target` already has `owner` on
/// theirs, both entries become accepted. Returns whether the owner's entry
/// is accepted, and whether an acceptance changed (someone newly sees
/// someone).
pub fn invite(conn: &Connection, owner: &str, target: &str) -> Result<(bool, bool)> {
    let before: Option<bool> = conn
        .prepare_cached("SELECT accepted FROM presence_list WHERE owner = ?1 AND target = ?2")?
        .query_row([owner, target], |r| r.get(0))
        .optional()?;
    let reverse: Option<bool> = conn
        .prepare_cached("SELECT accepted FROM presence_list WHERE owner = ?1 AND target = ?2")?
        .query_row([target, owner], |r| r.get(0))
        .optional()?;
    let accepted = reverse.is_some() || before == Some(true);
    conn.prepare_cached(
        "INSERT INTO presence_list (owner, target, accepted) VALUES (?1, ?2, ?3)
         ON CONFLICT (owner, target) DO UPDATE SET accepted = excluded.accepted",
    )?
    .execute(params![owner, target, accepted])?;
    let mut newly = accepted && before != Some(true);
    if reverse == Some(false) {
        conn.prepare_cached("UPDATE presence_list SET accepted = 1 WHERE owner = ?1 AND target = ?2")?
            .execute([target, owner])?;
        newly = true;
    }
    Ok((accepted, newly))
}

/// Takes `target` off `owner`'s list. Returns whether it was there.
pub fn drop_target(conn: &Connection, owner: &str, target: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("DELETE FROM presence_list WHERE owner = ?1 AND target = ?2")?
        .execute([owner, target])?
        == 1)
}

/// True if `owner` has `target` on their list and `target` agreed.
pub fn accepted(conn: &Connection, owner: &str, target: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM presence_list WHERE owner = ?1 AND target = ?2 AND accepted = 1")?
        .query_row([owner, target], |_| Ok(()))
        .optional()?
        .is_some())
}

/// The users who have `target` on their list, accepted: they see its
/// presence wherever they are.
pub fn watchers(conn: &Connection, target: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT owner FROM presence_list WHERE target = ?1 AND accepted = 1 ORDER BY owner",
    )?;
    let rows = stmt.query_map([target], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// True if both users are joined to at least one common room.
pub fn share_a_room(conn: &Connection, a: &str, b: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM memberships m1 JOIN memberships m2 ON m1.room_id = m2.room_id
             WHERE m1.user_id = ?1 AND m1.membership = 'join'
               AND m2.user_id = ?2 AND m2.membership = 'join' LIMIT 1",
        )?
        .query_row([a, b], |_| Ok(()))
        .optional()?
        .is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_conn;

    #[test]
    fn invites_are_accepted_by_the_reverse_subscription() {
        let c = test_conn();
        assert_eq!(invite(&c, "@a:x", "@b:x").unwrap(), (false, false));
        assert!(!accepted(&c, "@a:x", "@b:x").unwrap());
        assert!(watchers(&c, "@b:x").unwrap().is_empty());
        // b follows a back: both sides are now agreed.
        assert_eq!(invite(&c, "@b:x", "@a:x").unwrap(), (true, true));
        assert!(accepted(&c, "@a:x", "@b:x").unwrap() && accepted(&c, "@b:x", "@a:x").unwrap());
        assert_eq!(watchers(&c, "@b:x").unwrap(), vec!["@a:x".to_owned()]);
        // Inviting again changes nothing.
        assert_eq!(invite(&c, "@a:x", "@b:x").unwrap(), (true, false));
        assert_eq!(count(&c, "@a:x").unwrap(), 1);
        assert_eq!(list(&c, "@a:x").unwrap(), vec![Entry { target: "@b:x".into(), accepted: true }]);
        assert!(drop_target(&c, "@a:x", "@b:x").unwrap());
        assert!(!drop_target(&c, "@a:x", "@b:x").unwrap());
        assert!(list(&c, "@a:x").unwrap().is_empty());
        // b's acceptance stands: a agreed to it.
        assert!(accepted(&c, "@b:x", "@a:x").unwrap());
    }

    #[test]
    fn shared_rooms_need_both_joined() {
        let c = test_conn();
        let add = |u: &str, r: &str, m: &str| {
            crate::storage::state::set_membership(&c, u, r, m, "$e", 1).unwrap();
        };
        add("@a:x", "!r", "join");
        add("@b:x", "!r", "invite");
        assert!(!share_a_room(&c, "@a:x", "@b:x").unwrap());
        add("@b:x", "!r", "join");
        assert!(share_a_room(&c, "@a:x", "@b:x").unwrap());
        assert!(!share_a_room(&c, "@a:x", "@c:x").unwrap());
    }
}
