//! Federation's tables: other servers' keys (`remote_server_keys`), the
//! outbox of what goes to them (`federation_outbox`), and the
//! transactions received (`federation_txns_in`).

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::Result;
use crate::storage::feed::Tx;

/// A key of another server as cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteKey {
    pub server_name: String,
    pub key_id: String,
    pub public_key: String,
    pub valid_until_ts: i64,
    pub expired_ts: Option<i64>,
    pub fetched_ts: i64,
}

fn remote_key(r: &rusqlite::Row<'_>) -> rusqlite::Result<RemoteKey> {
    Ok(RemoteKey {
        server_name: r.get(0)?,
        key_id: r.get(1)?,
        public_key: r.get(2)?,
        valid_until_ts: r.get(3)?,
        expired_ts: r.get(4)?,
        fetched_ts: r.get(5)?,
    })
}

const KEY_COLUMNS: &str = "server_name, key_id, public_key, valid_until_ts, expired_ts, fetched_ts";

/// The cached keys of `server_name`.
pub fn remote_keys(conn: &Connection, server_name: &str) -> Result<Vec<RemoteKey>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {KEY_COLUMNS} FROM remote_server_keys WHERE server_name = ?1 ORDER BY key_id"
    ))?;
    let rows = st.query_map(params![server_name], remote_key)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One cached key.
pub fn remote_key_by_id(conn: &Connection, server_name: &str, key_id: &str) -> Result<Option<RemoteKey>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {KEY_COLUMNS} FROM remote_server_keys WHERE server_name = ?1 AND key_id = ?2"
        ))?
        .query_row(params![server_name, key_id], remote_key)
        .optional()?)
}

/// The distinct key documents cached for `server_name` (as the origin
/// signed them), newest first.
pub fn remote_key_docs(conn: &Connection, server_name: &str) -> Result<Vec<String>> {
    let mut st = conn.prepare_cached(
        "SELECT doc FROM remote_server_keys WHERE server_name = ?1
         GROUP BY doc ORDER BY max(fetched_ts) DESC, max(valid_until_ts) DESC",
    )?;
    let rows = st.query_map(params![server_name], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Stores (or replaces) a key with the document it came in. A key known
/// as expired stays expired: a later document listing it as current does
/// not revive it.
pub fn put_remote_key(conn: &Connection, k: &RemoteKey, doc: &str) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO remote_server_keys
             (server_name, key_id, public_key, valid_until_ts, expired_ts, fetched_ts, doc)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (server_name, key_id) DO UPDATE SET
             public_key = excluded.public_key,
             valid_until_ts = max(valid_until_ts, excluded.valid_until_ts),
             expired_ts = CASE WHEN expired_ts IS NULL THEN excluded.expired_ts
                               WHEN excluded.expired_ts IS NULL THEN expired_ts
                               ELSE min(expired_ts, excluded.expired_ts) END,
             fetched_ts = excluded.fetched_ts,
             doc = excluded.doc",
    )?
    .execute(params![
        k.server_name,
        k.key_id,
        k.public_key,
        k.valid_until_ts,
        k.expired_ts,
        k.fetched_ts,
        doc
    ])?;
    Ok(())
}

// ------------------------------------------------------------------ outbox

/// What a queued row carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Pdu,
    Edu,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Pdu => "pdu",
            Unit::Edu => "edu",
        }
    }
}

/// Queues a PDU or EDU for `destination`, in the caller's transaction
/// (which then wakes the senders once committed).
pub fn queue(tx: &Tx<'_>, destination: &str, unit: Unit, body: &str, now: i64) -> Result<i64> {
    tx.queued_federation();
    let conn: &Connection = tx;
    conn.prepare_cached(
        "INSERT INTO federation_outbox (destination, kind, body, created_ts) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![destination, unit.as_str(), body, now])?;
    Ok(conn.last_insert_rowid())
}

/// Drops the EDUs of type `edu_type` queued for `destination` before
/// `before` and not yet taken into a transaction (ephemeral notices that
/// would arrive too late to mean anything).
pub fn drop_stale_edus(conn: &Connection, destination: &str, edu_type: &str, before: i64) -> Result<usize> {
    Ok(conn
        .prepare_cached(
            "DELETE FROM federation_outbox WHERE destination = ?1 AND kind = 'edu' AND txn_id IS NULL
             AND created_ts < ?2 AND json_extract(body, '$.edu_type') = ?3",
        )?
        .execute(params![destination, before, edu_type])?)
}

/// Destinations with something queued, the longest waiting first.
pub fn outbox_destinations(conn: &Connection, limit: usize) -> Result<Vec<String>> {
    let mut st = conn.prepare_cached(
        "SELECT destination FROM federation_outbox GROUP BY destination ORDER BY min(id) LIMIT ?1",
    )?;
    let rows = st.query_map(params![limit as i64], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A transaction to send: its ID and the rows it holds, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutTxn {
    pub destination: String,
    pub txn_id: String,
    pub pdus: Vec<String>,
    pub edus: Vec<String>,
}

/// The transaction to send next to `destination`: the one already taken
/// (sent before and not acknowledged: the same ID and rows again), else a
/// new one of the oldest rows, at most `pdus_max` PDUs and `edus_max`
/// EDUs, whose rows are marked with `new_txn_id`. `None` when nothing is
/// queued.
pub fn next_txn(
    conn: &Connection,
    destination: &str,
    new_txn_id: &str,
    pdus_max: usize,
    edus_max: usize,
) -> Result<Option<OutTxn>> {
    let pending: Option<String> = conn
        .prepare_cached(
            "SELECT txn_id FROM federation_outbox WHERE destination = ?1 AND txn_id IS NOT NULL
             ORDER BY id LIMIT 1",
        )?
        .query_row(params![destination], |r| r.get(0))
        .optional()?;
    let txn_id = match pending {
        Some(t) => t,
        None => {
            let mut taken = 0;
            for (unit, max) in [(Unit::Pdu, pdus_max), (Unit::Edu, edus_max)] {
                taken += conn
                    .prepare_cached(
                        "UPDATE federation_outbox SET txn_id = ?1 WHERE id IN (
                             SELECT id FROM federation_outbox
                             WHERE destination = ?2 AND kind = ?3 AND txn_id IS NULL ORDER BY id LIMIT ?4)",
                    )?
                    .execute(params![new_txn_id, destination, unit.as_str(), max as i64])?;
            }
            if taken == 0 {
                return Ok(None);
            }
            new_txn_id.to_owned()
        }
    };
    let mut txn = OutTxn { destination: destination.to_owned(), txn_id, pdus: Vec::new(), edus: Vec::new() };
    let mut st = conn.prepare_cached(
        "SELECT kind, body FROM federation_outbox WHERE destination = ?1 AND txn_id = ?2 ORDER BY id",
    )?;
    let rows = st.query_map(params![destination, txn.txn_id], |r| Ok((r.get::<_, String>(0)?, r.get(1)?)))?;
    for row in rows {
        let (kind, body) = row?;
        if kind == "pdu" {
            txn.pdus.push(body);
        } else {
            txn.edus.push(body);
        }
    }
    Ok(Some(txn))
}

/// The destination acknowledged `txn_id`: its rows go.
pub fn txn_done(conn: &Connection, destination: &str, txn_id: &str) -> Result<usize> {
    Ok(conn
        .prepare_cached("DELETE FROM federation_outbox WHERE destination = ?1 AND txn_id = ?2")?
        .execute(params![destination, txn_id])?)
}

/// Rows queued for `destination` (all, taken or not).
pub fn outbox_len(conn: &Connection, destination: &str) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM federation_outbox WHERE destination = ?1")?
        .query_row(params![destination], |r| r.get(0))?)
}

// ------------------------------------------------------- transactions in

/// The answer already given to (origin, txn_id), if it was received.
pub fn txn_in(conn: &Connection, origin: &str, txn_id: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT response FROM federation_txns_in WHERE origin = ?1 AND txn_id = ?2")?
        .query_row(params![origin, txn_id], |r| r.get(0))
        .optional()?)
}

/// Records the answer to a received transaction.
pub fn put_txn_in(conn: &Connection, origin: &str, txn_id: &str, response: &str, now: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO federation_txns_in (origin, txn_id, response, received_ts) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![origin, txn_id, response, now])?;
    Ok(())
}

/// Forgets transactions received before `before`.
pub fn prune_txns_in(conn: &Connection, before: i64) -> Result<usize> {
    Ok(conn
        .prepare_cached("DELETE FROM federation_txns_in WHERE received_ts < ?1")?
        .execute(params![before])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        crate::storage::schema::migrate(&mut c).unwrap();
        c
    }

    #[test]
    fn a_transaction_is_resent_whole_until_acknowledged() {
        let c = db();
        let changes = std::cell::RefCell::new(crate::storage::feed::Changes::default());
        let tx = Tx::new(&c, &changes);
        let queue = |d: &str, u: Unit, b: &str, now: i64| queue(&tx, d, u, b, now);
        for i in 0..3 {
            queue("b.example", Unit::Pdu, &format!("{{\"p\":{i}}}"), 1).unwrap();
        }
        for i in 0..4 {
            queue("b.example", Unit::Edu, &format!("{{\"e\":{i}}}"), 1).unwrap();
        }
        queue("c.example", Unit::Edu, "{}", 1).unwrap();
        assert!(changes.borrow().federation, "queueing wakes the senders");
        let t = next_txn(&c, "b.example", "t1", 2, 3).unwrap().unwrap();
        assert_eq!((t.txn_id.as_str(), t.pdus.len(), t.edus.len()), ("t1", 2, 3));
        assert_eq!(t.pdus, ["{\"p\":0}", "{\"p\":1}"]);
        // Not acknowledged: the same transaction again, whatever new ID is offered.
        queue("b.example", Unit::Pdu, "{\"p\":9}", 2).unwrap();
        let again = next_txn(&c, "b.example", "t2", 2, 3).unwrap().unwrap();
        assert_eq!(again, t);
        assert_eq!(txn_done(&c, "b.example", "t1").unwrap(), 5);
        let next = next_txn(&c, "b.example", "t3", 2, 3).unwrap().unwrap();
        assert_eq!((next.txn_id.as_str(), next.pdus.len(), next.edus.len()), ("t3", 2, 1));
        txn_done(&c, "b.example", "t3").unwrap();
        assert_eq!(next_txn(&c, "b.example", "t4", 2, 3).unwrap(), None);
        assert_eq!(outbox_destinations(&c, 10).unwrap(), ["c.example"]);
    }

    #[test]
    fn stale_edus_are_dropped_unless_already_sent() {
        let c = db();
        let changes = std::cell::RefCell::new(crate::storage::feed::Changes::default());
        let tx = Tx::new(&c, &changes);
        let typing = r#"{"content":{},"edu_type":"m.typing"}"#;
        queue(&tx, "b.example", Unit::Edu, typing, 1).unwrap();
        next_txn(&c, "b.example", "t1", 50, 100).unwrap().unwrap();
        queue(&tx, "b.example", Unit::Edu, typing, 2).unwrap();
        queue(&tx, "b.example", Unit::Edu, r#"{"content":{},"edu_type":"m.receipt"}"#, 2).unwrap();
        queue(&tx, "b.example", Unit::Edu, typing, 50).unwrap();
        // Only the untaken typing row queued before 10 goes.
        assert_eq!(drop_stale_edus(&c, "b.example", "m.typing", 10).unwrap(), 1);
        assert_eq!(outbox_len(&c, "b.example").unwrap(), 3);
    }

    #[test]
    fn an_expired_key_stays_expired() {
        let c = db();
        let mut k = RemoteKey {
            server_name: "b.example".into(),
            key_id: "ed25519:1".into(),
            public_key: "AAAA".into(),
            valid_until_ts: 100,
            expired_ts: Some(50),
            fetched_ts: 1,
        };
        put_remote_key(&c, &k, "{}").unwrap();
        k.expired_ts = None;
        k.valid_until_ts = 200;
        put_remote_key(&c, &k, "{\"n\":1}").unwrap();
        let got = remote_key_by_id(&c, "b.example", "ed25519:1").unwrap().unwrap();
        assert_eq!((got.expired_ts, got.valid_until_ts), (Some(50), 200));
        assert_eq!(remote_key_docs(&c, "b.example").unwrap(), ["{\"n\":1}"]);
    }
}
