//! OpenID tokens: `openid_tokens`.
//!
//! A token `/openid/request_token` hands out proves to another service
//! (through `/_matrix/federation/v1/openid/userinfo`) who the user is, and
//! nothing else: it is no access token. Stored as its SHA-256, like access
//! tokens. Each belongs to the device that asked for it and goes with that
//! device (a foreign key cascade); it expires after [`TOKEN_LIFETIME_MS`];
//! a user has at most [`TOKENS_PER_USER_MAX`], the oldest going first.
//! Expired tokens are swept whenever a new one is issued.

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::Result;

/// How long an OpenID token stays valid (the spec's example: 3600 s).
pub const TOKEN_LIFETIME_MS: i64 = 3600 * 1000;
/// OpenID tokens one user may hold at once; issuing one more drops the oldest.
pub const TOKENS_PER_USER_MAX: i64 = 16;

/// Stores a new token (already hashed) of `user_id`'s `device_id`, valid
/// until `now + TOKEN_LIFETIME_MS`; returns that expiry.
pub fn create(conn: &Connection, hash: &[u8; 32], user_id: &str, device_id: &str, now: i64) -> Result<i64> {
    conn.prepare_cached("DELETE FROM openid_tokens WHERE expires_ts <= ?1")?.execute([now])?;
    let expires_ts = now.saturating_add(TOKEN_LIFETIME_MS);
    conn.prepare_cached(
        "INSERT INTO openid_tokens (token_hash, user_id, device_id, expires_ts) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![&hash[..], user_id, device_id, expires_ts])?;
    conn.prepare_cached(
        "DELETE FROM openid_tokens WHERE user_id = ?1 AND rowid NOT IN
             (SELECT rowid FROM openid_tokens WHERE user_id = ?1 ORDER BY rowid DESC LIMIT ?2)",
    )?
    .execute(params![user_id, TOKENS_PER_USER_MAX])?;
    Ok(expires_ts)
}

/// The user a token speaks for, if it exists, has not expired, and its
/// account is active.
pub fn owner(conn: &Connection, hash: &[u8; 32], now: i64) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached(
            "SELECT t.user_id FROM openid_tokens t JOIN users u ON u.user_id = t.user_id
             WHERE t.token_hash = ?1 AND t.expires_ts > ?2 AND u.deactivated = 0",
        )?
        .query_row(params![&hash[..], now], |r| r.get(0))
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{devices, test_conn, users};

    fn hash(i: u8) -> [u8; 32] {
        [i; 32]
    }

    #[test]
    fn tokens_expire_are_bounded_per_user_and_go_with_their_device() {
        let c = test_conn();
        for u in ["@a:x", "@b:x"] {
            users::create(&c, u, None, false, 0).unwrap();
            devices::create(&c, u, "D", None, 0).unwrap();
        }
        assert_eq!(create(&c, &hash(0), "@a:x", "D", 0).unwrap(), TOKEN_LIFETIME_MS);
        assert_eq!(owner(&c, &hash(0), TOKEN_LIFETIME_MS - 1).unwrap().as_deref(), Some("@a:x"));
        assert_eq!(owner(&c, &hash(0), TOKEN_LIFETIME_MS).unwrap(), None);
        assert_eq!(owner(&c, &hash(99), 0).unwrap(), None);

        // Past the cap the oldest go; another user's are untouched.
        create(&c, &hash(200), "@b:x", "D", 1).unwrap();
        let max = TOKENS_PER_USER_MAX as u8;
        for i in 1..=max {
            create(&c, &hash(i), "@a:x", "D", 1).unwrap();
        }
        assert_eq!(owner(&c, &hash(0), 2).unwrap(), None);
        assert!(owner(&c, &hash(1), 2).unwrap().is_some());
        assert!(owner(&c, &hash(max), 2).unwrap().is_some());
        assert!(owner(&c, &hash(200), 2).unwrap().is_some());
        // A new token sweeps the expired ones of everyone.
        create(&c, &hash(201), "@b:x", "D", 1 + TOKEN_LIFETIME_MS).unwrap();
        let left: i64 = c.query_row("SELECT count(*) FROM openid_tokens", [], |r| r.get(0)).unwrap();
        assert_eq!(left, 1);

        // The device's deletion, or the account's deactivation, ends them.
        create(&c, &hash(202), "@a:x", "D", 2).unwrap();
        devices::delete(&c, "@a:x", "D").unwrap();
        assert_eq!(owner(&c, &hash(202), 3).unwrap(), None);
        users::deactivate(&c, "@b:x").unwrap();
        assert_eq!(owner(&c, &hash(201), 2 + TOKEN_LIFETIME_MS).unwrap(), None);
    }
}
