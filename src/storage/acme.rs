//! What ACME needs to keep: the account key per directory, and the newest
//! certificate per directory and set of names (`acme_accounts`,
//! `acme_certs`).

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::Result;

/// The account of a directory: PKCS#8 key and, once registered, its URL.
pub fn account(conn: &Connection, directory: &str) -> Result<Option<(Vec<u8>, Option<String>)>> {
    Ok(conn
        .query_row(
            "SELECT key_pkcs8, account_url FROM acme_accounts WHERE directory = ?1",
            params![directory],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

/// Stores a new account key; an existing one is kept (the first writer
/// wins). Returns whether this key was stored.
pub fn insert_account(conn: &Connection, directory: &str, key_pkcs8: &[u8], now: i64) -> Result<bool> {
    let n = conn.execute(
        "INSERT OR IGNORE INTO acme_accounts (directory, key_pkcs8, created_ts) VALUES (?1, ?2, ?3)",
        params![directory, key_pkcs8, now],
    )?;
    Ok(n == 1)
}

pub fn set_account_url(conn: &Connection, directory: &str, url: &str) -> Result<()> {
    conn.execute("UPDATE acme_accounts SET account_url = ?2 WHERE directory = ?1", params![directory, url])?;
    Ok(())
}

/// A stored certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCert {
    pub chain_pem: String,
    pub key_pem: String,
    pub not_before_ms: i64,
    pub not_after_ms: i64,
}

pub fn cert(conn: &Connection, directory: &str, names: &str) -> Result<Option<StoredCert>> {
    Ok(conn
        .query_row(
            "SELECT chain_pem, key_pem, not_before_ms, not_after_ms FROM acme_certs
             WHERE directory = ?1 AND names = ?2",
            params![directory, names],
            |r| {
                Ok(StoredCert {
                    chain_pem: r.get(0)?,
                    key_pem: r.get(1)?,
                    not_before_ms: r.get(2)?,
                    not_after_ms: r.get(3)?,
                })
            },
        )
        .optional()?)
}

/// Stores (or replaces) the certificate of a directory and names.
pub fn put_cert(conn: &Connection, directory: &str, names: &str, cert: &StoredCert, now: i64) -> Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO acme_certs
         (directory, names, chain_pem, key_pem, not_before_ms, not_after_ms, issued_ts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![directory, names, cert.chain_pem, cert.key_pem, cert.not_before_ms, cert.not_after_ms, now],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_and_certs_round_trip() {
        let conn = crate::storage::test_conn();
        assert_eq!(account(&conn, "d").expect("read"), None);
        assert!(insert_account(&conn, "d", b"key", 1).expect("insert"));
        assert!(!insert_account(&conn, "d", b"other", 2).expect("kept"));
        set_account_url(&conn, "d", "https://acme/acct/1").expect("url");
        assert_eq!(
            account(&conn, "d").expect("read"),
            Some((b"key".to_vec(), Some("https://acme/acct/1".into())))
        );
        let c = StoredCert { chain_pem: "c".into(), key_pem: "k".into(), not_before_ms: 1, not_after_ms: 2 };
        put_cert(&conn, "d", "a.example", &c, 3).expect("put");
        assert_eq!(cert(&conn, "d", "a.example").expect("read"), Some(c.clone()));
        assert_eq!(cert(&conn, "other", "a.example").expect("read"), None);
        let newer = StoredCert { not_after_ms: 9, ..c };
        put_cert(&conn, "d", "a.example", &newer, 4).expect("replace");
        assert_eq!(cert(&conn, "d", "a.example").expect("read"), Some(newer));
    }
}
