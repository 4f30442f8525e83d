//! Accounts: `users`.

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::error::Result;

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub user_id: String,
    pub password_hash: Option<String>,
    pub is_admin: bool,
    pub created_ts: i64,
    pub deactivated: bool,
}

const COLUMNS: &str = "user_id, password_hash, is_admin, created_ts, deactivated";

fn from_row(r: &Row) -> rusqlite::Result<User> {
    Ok(User {
        user_id: r.get(0)?,
        password_hash: r.get(1)?,
        is_admin: r.get(2)?,
        created_ts: r.get(3)?,
        deactivated: r.get(4)?,
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
}
