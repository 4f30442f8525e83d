//! Devices and the tokens that belong to them: `devices`, `access_tokens`,
//! `refresh_tokens`. Tokens arrive here already hashed.

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::error::Result;

#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    pub device_id: String,
    pub display_name: Option<String>,
    pub last_seen_ts: Option<i64>,
    pub last_seen_ip: Option<String>,
}

/// Who an access token speaks for.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenOwner {
    pub user_id: String,
    pub device_id: String,
    pub expires_ts: Option<i64>,
    pub last_seen_ts: Option<i64>,
    pub deactivated: bool,
    pub is_admin: bool,
    pub is_guest: bool,
}

fn device_from_row(r: &Row) -> rusqlite::Result<Device> {
    Ok(Device {
        device_id: r.get(0)?,
        display_name: r.get(1)?,
        last_seen_ts: r.get(2)?,
        last_seen_ip: r.get(3)?,
    })
}

/// Creates the device if it does not exist; an existing device keeps its
/// display name (the spec's `initial_device_display_name` is only initial).
pub fn create(
    conn: &Connection,
    user_id: &str,
    device_id: &str,
    display_name: Option<&str>,
    now: i64,
) -> Result<()> {
    conn.execute(
        "INSERT INTO devices (user_id, device_id, display_name, created_ts) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (user_id, device_id) DO NOTHING",
        params![user_id, device_id, display_name, now],
    )?;
    Ok(())
}

pub fn get(conn: &Connection, user_id: &str, device_id: &str) -> Result<Option<Device>> {
    Ok(conn
        .query_row(
            "SELECT device_id, display_name, last_seen_ts, last_seen_ip FROM devices
             WHERE user_id = ?1 AND device_id = ?2",
            [user_id, device_id],
            device_from_row,
        )
        .optional()?)
}

pub fn list(conn: &Connection, user_id: &str) -> Result<Vec<Device>> {
    let mut stmt = conn.prepare(
        "SELECT device_id, display_name, last_seen_ts, last_seen_ip FROM devices
         WHERE user_id = ?1 ORDER BY device_id",
    )?;
    let rows = stmt.query_map([user_id], device_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Returns false if the device does not exist.
pub fn set_display_name(
    conn: &Connection,
    user_id: &str,
    device_id: &str,
    display_name: Option<&str>,
) -> Result<bool> {
    let n = conn.execute(
        "UPDATE devices SET display_name = ?3 WHERE user_id = ?1 AND device_id = ?2",
        params![user_id, device_id, display_name],
    )?;
    Ok(n == 1)
}

/// Deletes a device and, by cascade, its tokens. Returns false if absent.
pub fn delete(conn: &Connection, user_id: &str, device_id: &str) -> Result<bool> {
    let n =
        conn.execute("DELETE FROM devices WHERE user_id = ?1 AND device_id = ?2", [user_id, device_id])?;
    Ok(n == 1)
}

/// Deletes every device of the user but `keep`. Returns how many went.
pub fn delete_all_except(conn: &Connection, user_id: &str, keep: Option<&str>) -> Result<usize> {
    Ok(conn
        .execute("DELETE FROM devices WHERE user_id = ?1 AND device_id IS NOT ?2", params![user_id, keep])?)
}

/// Records when and from where a device was last used.
pub fn touch(conn: &Connection, user_id: &str, device_id: &str, now: i64, ip: &str) -> Result<()> {
    conn.execute(
        "UPDATE devices SET last_seen_ts = ?3, last_seen_ip = ?4 WHERE user_id = ?1 AND device_id = ?2",
        params![user_id, device_id, now, ip],
    )?;
    Ok(())
}

pub fn add_access_token(
    conn: &Connection,
    hash: &[u8; 32],
    user_id: &str,
    device_id: &str,
    now: i64,
    expires_ts: Option<i64>,
) -> Result<()> {
    conn.execute(
        "INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts, expires_ts)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![&hash[..], user_id, device_id, now, expires_ts],
    )?;
    Ok(())
}

pub fn add_refresh_token(
    conn: &Connection,
    hash: &[u8; 32],
    user_id: &str,
    device_id: &str,
    now: i64,
) -> Result<()> {
    conn.execute(
        "INSERT INTO refresh_tokens (token_hash, user_id, device_id, created_ts) VALUES (?1, ?2, ?3, ?4)",
        params![&hash[..], user_id, device_id, now],
    )?;
    Ok(())
}

/// Drops every access and refresh token of one device (the device stays).
pub fn delete_device_tokens(conn: &Connection, user_id: &str, device_id: &str) -> Result<()> {
    conn.execute("DELETE FROM access_tokens WHERE user_id = ?1 AND device_id = ?2", [user_id, device_id])?;
    conn.execute("DELETE FROM refresh_tokens WHERE user_id = ?1 AND device_id = ?2", [user_id, device_id])?;
    Ok(())
}

pub fn lookup_access_token(conn: &Connection, hash: &[u8; 32]) -> Result<Option<TokenOwner>> {
    Ok(conn
        .query_row(
            "SELECT t.user_id, t.device_id, t.expires_ts, d.last_seen_ts, u.deactivated, u.is_admin, u.is_guest
             FROM access_tokens t
             JOIN devices d ON d.user_id = t.user_id AND d.device_id = t.device_id
             JOIN users u ON u.user_id = t.user_id
             WHERE t.token_hash = ?1",
            [&hash[..]],
            |r| {
                Ok(TokenOwner {
                    user_id: r.get(0)?,
                    device_id: r.get(1)?,
                    expires_ts: r.get(2)?,
                    last_seen_ts: r.get(3)?,
                    deactivated: r.get(4)?,
                    is_admin: r.get(5)?,
                    is_guest: r.get(6)?,
                })
            },
        )
        .optional()?)
}

/// Consumes a refresh token: it is deleted and its owner returned, so each
/// refresh token works once.
pub fn take_refresh_token(conn: &Connection, hash: &[u8; 32]) -> Result<Option<(String, String)>> {
    let owner = conn
        .query_row(
            "DELETE FROM refresh_tokens WHERE token_hash = ?1 RETURNING user_id, device_id",
            [&hash[..]],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(owner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{test_conn, users};

    fn setup() -> Connection {
        let c = test_conn();
        users::create(&c, "@a:x", None, false, 1).unwrap();
        c
    }

    #[test]
    fn tokens_die_with_their_device() {
        let c = setup();
        create(&c, "@a:x", "D1", Some("phone"), 1).unwrap();
        create(&c, "@a:x", "D1", Some("ignored"), 2).unwrap();
        assert_eq!(get(&c, "@a:x", "D1").unwrap().unwrap().display_name.as_deref(), Some("phone"));
        add_access_token(&c, &[1; 32], "@a:x", "D1", 1, None).unwrap();
        add_refresh_token(&c, &[2; 32], "@a:x", "D1", 1).unwrap();
        assert_eq!(lookup_access_token(&c, &[1; 32]).unwrap().unwrap().device_id, "D1");
        assert!(delete(&c, "@a:x", "D1").unwrap());
        assert!(lookup_access_token(&c, &[1; 32]).unwrap().is_none());
        assert!(take_refresh_token(&c, &[2; 32]).unwrap().is_none());
        assert!(!delete(&c, "@a:x", "D1").unwrap());
    }

    #[test]
    fn refresh_token_works_once_and_delete_all_keeps_one() {
        let c = setup();
        for d in ["A", "B", "C"] {
            create(&c, "@a:x", d, None, 1).unwrap();
        }
        add_refresh_token(&c, &[3; 32], "@a:x", "A", 1).unwrap();
        assert_eq!(take_refresh_token(&c, &[3; 32]).unwrap(), Some(("@a:x".into(), "A".into())));
        assert_eq!(take_refresh_token(&c, &[3; 32]).unwrap(), None);
        assert_eq!(delete_all_except(&c, "@a:x", Some("B")).unwrap(), 2);
        let left: Vec<_> = list(&c, "@a:x").unwrap().into_iter().map(|d| d.device_id).collect();
        assert_eq!(left, ["B"]);
        assert_eq!(delete_all_except(&c, "@a:x", None).unwrap(), 1);
    }
}
