//! Accounts: `users` (guests among them), and `erased_users` (who asked,
//! on deactivation, for their content to be erased, and at which stream
//! position).

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::error::Result;

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub user_id: String,
    pub password_hash: Option<String>,
    pub is_admin: bool,
    pub created_ts: i64,
    pub deactivated: bool,
    pub is_guest: bool,
}

const COLUMNS: &str = "user_id, password_hash, is_admin, created_ts, deactivated, is_guest";

fn from_row(r: &Row) -> rusqlite::Result<User> {
    Ok(User {
        user_id: r.get(0)?,
        password_hash: r.get(1)?,
        is_admin: r.get(2)?,
        created_ts: r.get(3)?,
        deactivated: r.get(4)?,
        is_guest: r.get(5)?,
    })
}

/// Creates an account. Returns false (and changes nothing) if the user ID
/// is taken, deactivated accounts included: a user ID is never reused.
pub fn create(
    conn: &Connection,
    user_id: &str,
    password_hash: Option<&str>,
    is_admin: bool,
    now: i64,
) -> Result<bool> {
    let n = conn.execute(
        "INSERT INTO users (user_id, password_hash, is_admin, created_ts) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (user_id) DO NOTHING",
        params![user_id, password_hash, is_admin, now],
    )?;
    Ok(n == 1)
}

/// Creates a guest account (no password). False if the ID is taken.
pub fn create_guest(conn: &Connection, user_id: &str, now: i64) -> Result<bool> {
    let n = conn.execute(
        "INSERT INTO users (user_id, created_ts, is_guest) VALUES (?1, ?2, 1) ON CONFLICT (user_id) DO NOTHING",
        params![user_id, now],
    )?;
    Ok(n == 1)
}

/// Turns an active guest account into a full one with a password. False
/// if `user_id` is not an active guest.
pub fn upgrade_guest(conn: &Connection, user_id: &str, password_hash: Option<&str>) -> Result<bool> {
    let n = conn.execute(
        "UPDATE users SET is_guest = 0, password_hash = ?2 WHERE user_id = ?1 AND is_guest = 1 AND deactivated = 0",
        params![user_id, password_hash],
    )?;
    Ok(n == 1)
}

pub fn is_guest(conn: &Connection, user_id: &str) -> Result<bool> {
    let found = conn
        .prepare_cached("SELECT is_guest FROM users WHERE user_id = ?1")?
        .query_row([user_id], |r| r.get::<_, bool>(0))
        .optional()?;
    Ok(found.unwrap_or(false))
}

/// The local guests joined to a room.
pub fn joined_guests(conn: &Connection, room_id: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT m.user_id FROM memberships m JOIN users u ON u.user_id = m.user_id
         WHERE m.room_id = ?1 AND m.membership = 'join' AND u.is_guest = 1 ORDER BY m.user_id",
    )?;
    let rows = stmt.query_map([room_id], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn get(conn: &Connection, user_id: &str) -> Result<Option<User>> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE user_id = ?1");
    Ok(conn.query_row(&sql, [user_id], from_row).optional()?)
}

pub fn exists(conn: &Connection, user_id: &str) -> Result<bool> {
    Ok(conn.query_row("SELECT 1 FROM users WHERE user_id = ?1", [user_id], |_| Ok(())).optional()?.is_some())
}

pub fn list(conn: &Connection) -> Result<Vec<User>> {
    let sql = format!("SELECT {COLUMNS} FROM users ORDER BY user_id");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Returns false if there is no such (active) account.
pub fn set_password(conn: &Connection, user_id: &str, password_hash: &str) -> Result<bool> {
    let n = conn.execute(
        "UPDATE users SET password_hash = ?2 WHERE user_id = ?1 AND deactivated = 0",
        params![user_id, password_hash],
    )?;
    Ok(n == 1)
}

/// Deactivates an account for good: no password, no devices, no tokens,
/// no pushers. The row stays so the user ID is never handed out again.
pub fn deactivate(conn: &Connection, user_id: &str) -> Result<bool> {
    let n =
        conn.execute("UPDATE users SET deactivated = 1, password_hash = NULL WHERE user_id = ?1", [user_id])?;
    conn.execute("DELETE FROM devices WHERE user_id = ?1", [user_id])?;
    crate::storage::push::delete_pushers_except_device(conn, user_id, None)?;
    Ok(n == 1)
}

/// Records that `user_id` asked for their content to be erased (the
/// `erase` of account deactivation), as of the current stream position,
/// and clears their profile. Returns the position. Asking again keeps the
/// first position: those who could see the events then still can.
pub fn erase(conn: &Connection, user_id: &str, now: i64) -> Result<i64> {
    let pos = crate::storage::events::current_pos(conn)?;
    conn.execute(
        "INSERT INTO erased_users (user_id, pos, ts) VALUES (?1, ?2, ?3) ON CONFLICT (user_id) DO NOTHING",
        params![user_id, pos, now],
    )?;
    crate::storage::profiles::set_displayname(conn, user_id, None)?;
    crate::storage::profiles::set_avatar_url(conn, user_id, None)?;
    Ok(erased_at(conn, user_id)?.unwrap_or(pos))
}

/// The stream position at which `user_id` asked for erasure, if they did.
pub fn erased_at(conn: &Connection, user_id: &str) -> Result<Option<i64>> {
    let mut stmt = conn.prepare_cached("SELECT pos FROM erased_users WHERE user_id = ?1")?;
    Ok(stmt.query_row([user_id], |r| r.get(0)).optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{devices, test_conn};

    #[test]
    fn create_is_unique_and_deactivation_keeps_the_id() {
        let c = test_conn();
        assert!(create(&c, "@a:x", Some("h"), false, 1).unwrap());
        assert!(!create(&c, "@a:x", Some("other"), true, 2).unwrap());
        assert_eq!(get(&c, "@a:x").unwrap().unwrap().password_hash.as_deref(), Some("h"));
        devices::create(&c, "@a:x", "D", None, 1).unwrap();
        assert!(deactivate(&c, "@a:x").unwrap());
        let u = get(&c, "@a:x").unwrap().unwrap();
        assert!(u.deactivated && u.password_hash.is_none());
        assert!(devices::list(&c, "@a:x").unwrap().is_empty());
        assert!(!create(&c, "@a:x", None, false, 3).unwrap());
        assert!(!set_password(&c, "@a:x", "new").unwrap());
    }

    #[test]
    fn erasure_is_recorded_once_and_clears_the_profile() {
        let c = test_conn();
        assert_eq!(erased_at(&c, "@a:x").unwrap(), None);
        create(&c, "@a:x", Some("h"), false, 1).unwrap();
        crate::storage::profiles::set_displayname(&c, "@a:x", Some("Alice")).unwrap();
        let pos = erase(&c, "@a:x", 5).unwrap();
        assert_eq!(erased_at(&c, "@a:x").unwrap(), Some(pos));
        assert_eq!(erased_at(&c, "@b:x").unwrap(), None);
        let p = crate::storage::profiles::get(&c, "@a:x").unwrap();
        assert!(p.as_ref().is_none_or(|p| p.displayname.is_none() && p.avatar_url.is_none()), "{p:?}");
        crate::storage::events::next_pos(&c).unwrap();
        assert_eq!(erase(&c, "@a:x", 6).unwrap(), pos, "the first erasure stands");
    }
}
