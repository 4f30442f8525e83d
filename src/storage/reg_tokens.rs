//! Registration tokens: `registration_tokens`.

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::error::Result;

#[derive(Debug, Clone, PartialEq)]
pub struct RegToken {
    pub token: String,
    pub uses_allowed: Option<i64>,
    pub pending: i64,
    pub completed: i64,
    pub expiry_ts: Option<i64>,
}

impl RegToken {
    /// A token is usable while it has not expired and its uses (completed
    /// plus those held by sessions in progress) are below the allowance.
    pub fn is_valid(&self, now: i64) -> bool {
        let unexpired = self.expiry_ts.is_none_or(|t| t > now);
        let uses_left = self.uses_allowed.is_none_or(|n| self.pending + self.completed < n);
        unexpired && uses_left
    }
}

fn from_row(r: &Row) -> rusqlite::Result<RegToken> {
    Ok(RegToken {
        token: r.get(0)?,
        uses_allowed: r.get(1)?,
        pending: r.get(2)?,
        completed: r.get(3)?,
        expiry_ts: r.get(4)?,
    })
}

/// Returns false if the token already exists.
pub fn create(
    conn: &Connection,
    token: &str,
    uses_allowed: Option<i64>,
    expiry_ts: Option<i64>,
    now: i64,
) -> Result<bool> {
    let n = conn.execute(
        "INSERT INTO registration_tokens (token, uses_allowed, expiry_ts, created_ts) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (token) DO NOTHING",
        params![token, uses_allowed, expiry_ts, now],
    )?;
    Ok(n == 1)
}

pub fn get(conn: &Connection, token: &str) -> Result<Option<RegToken>> {
    Ok(conn
        .query_row(
            "SELECT token, uses_allowed, pending, completed, expiry_ts FROM registration_tokens WHERE token = ?1",
            [token],
            from_row,
        )
        .optional()?)
}

pub fn list(conn: &Connection) -> Result<Vec<RegToken>> {
    let mut stmt = conn.prepare(
        "SELECT token, uses_allowed, pending, completed, expiry_ts FROM registration_tokens ORDER BY created_ts, token",
    )?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn delete(conn: &Connection, token: &str) -> Result<bool> {
    Ok(conn.execute("DELETE FROM registration_tokens WHERE token = ?1", [token])? == 1)
}

/// A registration session took (`+1`) or gave back (`-1`) a pending use.
pub fn add_pending(conn: &Connection, token: &str, delta: i64) -> Result<()> {
    conn.execute(
        "UPDATE registration_tokens SET pending = max(pending + ?2, 0) WHERE token = ?1",
        params![token, delta],
    )?;
    Ok(())
}

/// A registration holding a pending use of the token finished.
pub fn complete(conn: &Connection, token: &str) -> Result<()> {
    conn.execute(
        "UPDATE registration_tokens SET pending = max(pending - 1, 0), completed = completed + 1
         WHERE token = ?1",
        [token],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_conn;

    #[test]
    fn validity_counts_pending_and_completed_uses_and_expiry() {
        let c = test_conn();
        assert!(create(&c, "t", Some(2), Some(100), 0).unwrap());
        assert!(!create(&c, "t", None, None, 0).unwrap());
        assert!(get(&c, "t").unwrap().unwrap().is_valid(50));
        assert!(!get(&c, "t").unwrap().unwrap().is_valid(100));
        add_pending(&c, "t", 1).unwrap();
        complete(&c, "t").unwrap();
        add_pending(&c, "t", 1).unwrap();
        let t = get(&c, "t").unwrap().unwrap();
        assert_eq!((t.pending, t.completed), (1, 1));
        assert!(!t.is_valid(50));
        add_pending(&c, "t", -1).unwrap();
        assert!(get(&c, "t").unwrap().unwrap().is_valid(50));
        assert!(delete(&c, "t").unwrap());
        assert!(get(&c, "t").unwrap().is_none());
    }
}
