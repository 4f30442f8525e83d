//! User-interactive authentication sessions: `uia_sessions`.
//!
//! Sessions are short-lived and bounded: each new one sweeps those older
//! than [`SESSION_LIFETIME_MS`], and at most [`SESSIONS_MAX`] exist at once.
//! Each holds the hash of the operation it was opened for (`api::uia`
//! computes it); it is compared, never interpreted, here.

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::Result;
use crate::storage::reg_tokens;

/// A session not finished within this time is forgotten.
pub const SESSION_LIFETIME_MS: i64 = 30 * 60 * 1000;
/// Sessions kept at most; the oldest go first past this.
pub const SESSIONS_MAX: i64 = 10_000;

#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub session_id: String,
    /// SHA-256 over the session ID and the operation the session is for.
    pub op_hash: Vec<u8>,
    pub user_id: Option<String>,
    pub completed: Vec<String>,
    pub reg_token: Option<String>,
}

pub fn create(
    conn: &Connection,
    session_id: &str,
    op_hash: &[u8],
    user_id: Option<&str>,
    now: i64,
) -> Result<()> {
    sweep(conn, now)?;
    conn.execute(
        "INSERT INTO uia_sessions (session_id, op_hash, user_id, created_ts) VALUES (?1, ?2, ?3, ?4)",
        params![session_id, op_hash, user_id, now],
    )?;
    Ok(())
}

pub fn get(conn: &Connection, session_id: &str, now: i64) -> Result<Option<Session>> {
    let row = conn
        .query_row(
            "SELECT session_id, op_hash, user_id, completed, reg_token FROM uia_sessions
             WHERE session_id = ?1 AND created_ts > ?2",
            params![session_id, now - SESSION_LIFETIME_MS],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<String>>(4)?,
                ))
            },
        )
        .optional()?;
    Ok(row.map(|(session_id, op_hash, user_id, completed, reg_token)| Session {
        session_id,
        op_hash,
        user_id,
        completed: serde_json::from_str(&completed).unwrap_or_default(),
        reg_token,
    }))
}

pub fn save(conn: &Connection, s: &Session) -> Result<()> {
    let completed = serde_json::to_string(&s.completed).unwrap_or_else(|_| "[]".into());
    conn.execute(
        "UPDATE uia_sessions SET completed = ?2, reg_token = ?3 WHERE session_id = ?1",
        params![s.session_id, completed, s.reg_token],
    )?;
    Ok(())
}

/// Ends a session whose request succeeded. A registration token it held is
/// not given back: the caller has counted it as completed. Returns false
/// if the session was gone already: another request spent it first.
pub fn finish(conn: &Connection, session_id: &str) -> Result<bool> {
    Ok(conn.execute("DELETE FROM uia_sessions WHERE session_id = ?1", [session_id])? == 1)
}

/// Forgets expired sessions (and, past the cap, the oldest), giving back the
/// registration-token uses they held.
fn sweep(conn: &Connection, now: i64) -> Result<()> {
    let mut stmt = conn.prepare(
        "DELETE FROM uia_sessions WHERE created_ts <= ?1
            OR session_id IN (SELECT session_id FROM uia_sessions ORDER BY created_ts DESC LIMIT -1 OFFSET ?2)
         RETURNING reg_token",
    )?;
    let released: Vec<Option<String>> = stmt
        .query_map(params![now - SESSION_LIFETIME_MS, SESSIONS_MAX - 1], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for token in released.into_iter().flatten() {
        reg_tokens::add_pending(conn, &token, -1)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_conn;

    #[test]
    fn expired_sessions_vanish_and_release_their_token_use() {
        let c = test_conn();
        reg_tokens::create(&c, "tok", Some(1), None, 0).unwrap();
        create(&c, "s1", b"op", None, 0).unwrap();
        let mut s = get(&c, "s1", 1).unwrap().unwrap();
        s.completed.push("m.login.registration_token".into());
        s.reg_token = Some("tok".into());
        reg_tokens::add_pending(&c, "tok", 1).unwrap();
        save(&c, &s).unwrap();
        assert_eq!(get(&c, "s1", 2).unwrap().unwrap(), s);
        assert!(!reg_tokens::get(&c, "tok").unwrap().unwrap().is_valid(2));
        let later = SESSION_LIFETIME_MS + 1;
        assert!(get(&c, "s1", later).unwrap().is_none());
        create(&c, "s2", b"op", None, later).unwrap();
        assert!(reg_tokens::get(&c, "tok").unwrap().unwrap().is_valid(later));
    }

    #[test]
    fn a_session_is_finished_once() {
        let c = test_conn();
        create(&c, "s1", b"op", Some("@a:x"), 0).unwrap();
        assert_eq!(get(&c, "s1", 1).unwrap().unwrap().op_hash, b"op");
        assert!(finish(&c, "s1").unwrap());
        assert!(!finish(&c, "s1").unwrap());
        assert!(get(&c, "s1", 1).unwrap().is_none());
    }
}
