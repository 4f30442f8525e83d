//! End-to-end encryption: device keys, one-time and fallback keys,
//! cross-signing keys and their signatures, the device-list change stream,
//! and to-device messages (`e2e_*`, `to_device_*` tables).
//!
//! Keys are stored as the JSON text the client uploaded (already checked by
//! the caller); this module never parses them. Everything owned by a device
//! is removed with it by `ON DELETE CASCADE`, and a trigger records the loss
//! of a device's keys as a device-list change.

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::Result;

/// A signature stored beside a key: `(signer user, signer key ID, signature)`.
pub type Signature = (String, String, String);

// Device keys.

/// A device's stored identity keys (JSON text).
pub fn device_keys(conn: &Connection, user_id: &str, device_id: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT key_json FROM e2e_device_keys WHERE user_id = ?1 AND device_id = ?2")?
        .query_row([user_id, device_id], |r| r.get(0))
        .optional()?)
}

/// Stores a device's identity keys. Returns true if they changed. Keys that
/// change lose the signatures made over the old ones.
pub fn set_device_keys(conn: &Connection, user_id: &str, device_id: &str, json: &str) -> Result<bool> {
    match device_keys(conn, user_id, device_id)? {
        Some(old) if old == json => Ok(false),
        Some(_) => {
            conn.execute(
                "UPDATE e2e_device_keys SET key_json = ?3 WHERE user_id = ?1 AND device_id = ?2",
                params![user_id, device_id, json],
            )?;
            conn.execute(
                "DELETE FROM e2e_device_signatures WHERE user_id = ?1 AND device_id = ?2",
                [user_id, device_id],
            )?;
            Ok(true)
        }
        None => {
            conn.execute(
                "INSERT INTO e2e_device_keys (user_id, device_id, key_json) VALUES (?1, ?2, ?3)",
                params![user_id, device_id, json],
            )?;
            Ok(true)
        }
    }
}

/// Every device of a user that has keys: `(device_id, key_json, display_name)`.
pub fn devices_with_keys(conn: &Connection, user_id: &str) -> Result<Vec<(String, String, Option<String>)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT k.device_id, k.key_json, d.display_name FROM e2e_device_keys k
         JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id
         WHERE k.user_id = ?1 ORDER BY k.device_id",
    )?;
    let rows = stmt.query_map([user_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn add_device_signature(
    conn: &Connection,
    user_id: &str,
    device_id: &str,
    signer_user: &str,
    signer_key: &str,
    signature: &str,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO e2e_device_signatures (user_id, device_id, signer_user, signer_key, signature)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![user_id, device_id, signer_user, signer_key, signature])?;
    Ok(())
}

pub fn device_signatures(conn: &Connection, user_id: &str, device_id: &str) -> Result<Vec<Signature>> {
    let mut stmt = conn.prepare_cached(
        "SELECT signer_user, signer_key, signature FROM e2e_device_signatures
         WHERE user_id = ?1 AND device_id = ?2",
    )?;
    let rows = stmt.query_map([user_id, device_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

// One-time and fallback keys.

/// How many unclaimed one-time keys a device has, per algorithm.
pub fn one_time_key_counts(conn: &Connection, user_id: &str, device_id: &str) -> Result<Vec<(String, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT algorithm, count(*) FROM e2e_one_time_keys WHERE user_id = ?1 AND device_id = ?2
         GROUP BY algorithm ORDER BY algorithm",
    )?;
    let rows = stmt.query_map([user_id, device_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A stored one-time key's JSON, if the device has one under that ID.
pub fn one_time_key(
    conn: &Connection,
    user_id: &str,
    device_id: &str,
    algorithm: &str,
    key_id: &str,
) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached(
            "SELECT key_json FROM e2e_one_time_keys
             WHERE user_id = ?1 AND device_id = ?2 AND algorithm = ?3 AND key_id = ?4",
        )?
        .query_row([user_id, device_id, algorithm, key_id], |r| r.get(0))
        .optional()?)
}

pub fn add_one_time_key(
    conn: &Connection,
    user_id: &str,
    device_id: &str,
    algorithm: &str,
    key_id: &str,
    json: &str,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id, key_json)
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
    )?
    .execute(params![user_id, device_id, algorithm, key_id, json])?;
    Ok(())
}

/// Takes (deletes and returns) one one-time key of the device:
/// `(key_id, key_json)`. Within the single write transaction of a claim,
/// no two claimers can get the same key.
pub fn claim_one_time_key(
    conn: &Connection,
    user_id: &str,
    device_id: &str,
    algorithm: &str,
) -> Result<Option<(String, String)>> {
    Ok(conn
        .prepare_cached(
            "DELETE FROM e2e_one_time_keys WHERE (user_id, device_id, algorithm, key_id) = (
                 SELECT user_id, device_id, algorithm, key_id FROM e2e_one_time_keys
                 WHERE user_id = ?1 AND device_id = ?2 AND algorithm = ?3 ORDER BY key_id LIMIT 1)
             RETURNING key_id, key_json",
        )?
        .query_row([user_id, device_id, algorithm], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// Sets the device's fallback key for an algorithm (unused), replacing the
/// previous one. Uploading the same key again keeps its used flag.
pub fn set_fallback_key(
    conn: &Connection,
    user_id: &str,
    device_id: &str,
    algorithm: &str,
    key_id: &str,
    json: &str,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id, key_json, used)
         VALUES (?1, ?2, ?3, ?4, ?5, 0)
         ON CONFLICT (user_id, device_id, algorithm) DO UPDATE SET
             used = CASE WHEN key_id = excluded.key_id AND key_json = excluded.key_json THEN used ELSE 0 END,
             key_id = excluded.key_id, key_json = excluded.key_json",
    )?
    .execute(params![user_id, device_id, algorithm, key_id, json])?;
    Ok(())
}

/// Hands out the device's fallback key for an algorithm and marks it used:
/// `(key_id, key_json)`. It stays available until replaced.
pub fn claim_fallback_key(
    conn: &Connection,
    user_id: &str,
    device_id: &str,
    algorithm: &str,
) -> Result<Option<(String, String)>> {
    Ok(conn
        .prepare_cached(
            "UPDATE e2e_fallback_keys SET used = 1 WHERE user_id = ?1 AND device_id = ?2 AND algorithm = ?3
             RETURNING key_id, key_json",
        )?
        .query_row([user_id, device_id, algorithm], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// The algorithms for which the device has a fallback key not yet handed out.
pub fn unused_fallback_algorithms(conn: &Connection, user_id: &str, device_id: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT algorithm FROM e2e_fallback_keys WHERE user_id = ?1 AND device_id = ?2 AND used = 0
         ORDER BY algorithm",
    )?;
    let rows = stmt.query_map([user_id, device_id], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

// Cross-signing keys.

/// A user's cross-signing key of one usage: `(public_key, key_json)`.
pub fn cross_signing_key(conn: &Connection, user_id: &str, usage: &str) -> Result<Option<(String, String)>> {
    Ok(conn
        .prepare_cached(
            "SELECT public_key, key_json FROM e2e_cross_signing_keys WHERE user_id = ?1 AND usage = ?2",
        )?
        .query_row([user_id, usage], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

pub fn set_cross_signing_key(
    conn: &Connection,
    user_id: &str,
    usage: &str,
    public_key: &str,
    json: &str,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO e2e_cross_signing_keys (user_id, usage, public_key, key_json)
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![user_id, usage, public_key, json])?;
    Ok(())
}

pub fn add_key_signature(
    conn: &Connection,
    user_id: &str,
    public_key: &str,
    signer_user: &str,
    signer_key: &str,
    signature: &str,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO e2e_key_signatures (user_id, public_key, signer_user, signer_key, signature)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![user_id, public_key, signer_user, signer_key, signature])?;
    Ok(())
}

pub fn key_signatures(conn: &Connection, user_id: &str, public_key: &str) -> Result<Vec<Signature>> {
    let mut stmt = conn.prepare_cached(
        "SELECT signer_user, signer_key, signature FROM e2e_key_signatures
         WHERE user_id = ?1 AND public_key = ?2",
    )?;
    let rows = stmt.query_map([user_id, public_key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

// Device lists.

/// Records that a user's devices or keys changed at stream position `pos`.
pub fn mark_device_list_changed(conn: &Connection, user_id: &str, pos: i64) -> Result<()> {
    conn.prepare_cached("INSERT OR REPLACE INTO e2e_device_list_changes (user_id, pos) VALUES (?1, ?2)")?
        .execute(params![user_id, pos])?;
    Ok(())
}

/// Users whose device list changed in `(from, upto]`.
pub fn device_lists_changed_between(conn: &Connection, from: i64, upto: i64) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT user_id FROM e2e_device_list_changes WHERE pos > ?1 AND pos <= ?2 ORDER BY user_id",
    )?;
    let rows = stmt.query_map([from, upto], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// True if two users are both joined to some room.
pub fn share_a_room(conn: &Connection, a: &str, b: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM memberships x JOIN memberships y ON x.room_id = y.room_id
             WHERE x.user_id = ?1 AND y.user_id = ?2 AND x.membership = 'join' AND y.membership = 'join'
             LIMIT 1",
        )?
        .query_row([a, b], |_| Ok(()))
        .optional()?
        .is_some())
}

/// `(room_id, user_id)` of membership events in `(from, upto]`, once each.
pub fn membership_events_between(conn: &Connection, from: i64, upto: i64) -> Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT room_id, state_key FROM events
         WHERE pos > ?1 AND pos <= ?2 AND type = 'm.room.member' AND state_key IS NOT NULL",
    )?;
    let rows = stmt.query_map([from, upto], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

// To-device messages.

/// A to-device message waiting for its device.
#[derive(Debug, Clone, PartialEq)]
pub struct ToDevice {
    pub sender: String,
    pub kind: String,
    pub content: String,
}

/// True if the device already sent a to-device request with this
/// transaction ID.
pub fn to_device_txn_seen(conn: &Connection, user_id: &str, device_id: &str, txn_id: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM to_device_txns WHERE user_id = ?1 AND device_id = ?2 AND txn_id = ?3")?
        .query_row([user_id, device_id, txn_id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Remembers a transaction ID, forgetting this device's ones older than
/// `forget_before`.
pub fn add_to_device_txn(
    conn: &Connection,
    user_id: &str,
    device_id: &str,
    txn_id: &str,
    now: i64,
    forget_before: i64,
) -> Result<()> {
    conn.prepare_cached(
        "DELETE FROM to_device_txns WHERE user_id = ?1 AND device_id = ?2 AND created_ts < ?3",
    )?
    .execute(params![user_id, device_id, forget_before])?;
    conn.prepare_cached(
        "INSERT INTO to_device_txns (user_id, device_id, txn_id, created_ts) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![user_id, device_id, txn_id, now])?;
    Ok(())
}

/// The devices of a user (for `*` recipients).
pub fn device_ids(conn: &Connection, user_id: &str) -> Result<Vec<String>> {
    let mut stmt =
        conn.prepare_cached("SELECT device_id FROM devices WHERE user_id = ?1 ORDER BY device_id")?;
    let rows = stmt.query_map([user_id], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn device_exists(conn: &Connection, user_id: &str, device_id: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM devices WHERE user_id = ?1 AND device_id = ?2")?
        .query_row([user_id, device_id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// How many messages wait for a device.
pub fn to_device_pending(conn: &Connection, user_id: &str, device_id: &str) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM to_device_messages WHERE user_id = ?1 AND device_id = ?2")?
        .query_row([user_id, device_id], |r| r.get(0))?)
}

pub fn add_to_device(
    conn: &Connection,
    user_id: &str,
    device_id: &str,
    pos: i64,
    m: &ToDevice,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO to_device_messages (user_id, device_id, pos, sender, type, content)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![user_id, device_id, pos, m.sender, m.kind, m.content])?;
    Ok(())
}

/// The device's messages sent in `(from, upto]`, oldest first.
pub fn to_device_between(
    conn: &Connection,
    user_id: &str,
    device_id: &str,
    from: i64,
    upto: i64,
) -> Result<Vec<ToDevice>> {
    let mut stmt = conn.prepare_cached(
        "SELECT sender, type, content FROM to_device_messages
         WHERE user_id = ?1 AND device_id = ?2 AND pos > ?3 AND pos <= ?4 ORDER BY pos, id",
    )?;
    let rows = stmt.query_map(params![user_id, device_id, from, upto], |r| {
        Ok(ToDevice { sender: r.get(0)?, kind: r.get(1)?, content: r.get(2)? })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// True if the device has messages at or before `upto` (delivered ones a
/// sync with that token acknowledges).
pub fn to_device_delivered(conn: &Connection, user_id: &str, device_id: &str, upto: i64) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM to_device_messages WHERE user_id = ?1 AND device_id = ?2 AND pos <= ?3 LIMIT 1",
        )?
        .query_row(params![user_id, device_id, upto], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Deletes the device's messages at or before `upto`; returns how many.
pub fn delete_to_device_upto(conn: &Connection, user_id: &str, device_id: &str, upto: i64) -> Result<usize> {
    Ok(conn
        .prepare_cached("DELETE FROM to_device_messages WHERE user_id = ?1 AND device_id = ?2 AND pos <= ?3")?
        .execute(params![user_id, device_id, upto])?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{devices, events, test_conn, users};

    fn setup() -> Connection {
        let c = test_conn();
        users::create(&c, "@a:x", None, false, 1).unwrap();
        devices::create(&c, "@a:x", "D", None, 1).unwrap();
        c
    }

    #[test]
    fn one_time_keys_are_claimed_once_and_fallback_stays() {
        let c = setup();
        add_one_time_key(&c, "@a:x", "D", "signed_curve25519", "k1", "{}").unwrap();
        add_one_time_key(&c, "@a:x", "D", "signed_curve25519", "k2", "{}").unwrap();
        assert_eq!(one_time_key_counts(&c, "@a:x", "D").unwrap(), [("signed_curve25519".to_owned(), 2)]);
        let a = claim_one_time_key(&c, "@a:x", "D", "signed_curve25519").unwrap().unwrap();
        let b = claim_one_time_key(&c, "@a:x", "D", "signed_curve25519").unwrap().unwrap();
        assert_ne!(a.0, b.0);
        assert!(claim_one_time_key(&c, "@a:x", "D", "signed_curve25519").unwrap().is_none());
        set_fallback_key(&c, "@a:x", "D", "signed_curve25519", "f", "{\"f\":1}").unwrap();
        assert_eq!(unused_fallback_algorithms(&c, "@a:x", "D").unwrap(), ["signed_curve25519"]);
        assert_eq!(claim_fallback_key(&c, "@a:x", "D", "signed_curve25519").unwrap().unwrap().0, "f");
        assert!(unused_fallback_algorithms(&c, "@a:x", "D").unwrap().is_empty());
        // Re-uploading the same key keeps it used; a new key is unused.
        set_fallback_key(&c, "@a:x", "D", "signed_curve25519", "f", "{\"f\":1}").unwrap();
        assert!(unused_fallback_algorithms(&c, "@a:x", "D").unwrap().is_empty());
        set_fallback_key(&c, "@a:x", "D", "signed_curve25519", "g", "{\"g\":1}").unwrap();
        assert_eq!(unused_fallback_algorithms(&c, "@a:x", "D").unwrap().len(), 1);
    }

    #[test]
    fn deleting_a_device_drops_its_keys_and_messages_and_counts_as_a_change() {
        let c = setup();
        assert!(set_device_keys(&c, "@a:x", "D", "{\"k\":1}").unwrap());
        assert!(!set_device_keys(&c, "@a:x", "D", "{\"k\":1}").unwrap());
        add_device_signature(&c, "@a:x", "D", "@a:x", "ed25519:S", "sig").unwrap();
        add_one_time_key(&c, "@a:x", "D", "signed_curve25519", "k1", "{}").unwrap();
        let m = ToDevice { sender: "@b:x".into(), kind: "m.test".into(), content: "{}".into() };
        add_to_device(&c, "@a:x", "D", 1, &m).unwrap();
        add_to_device_txn(&c, "@a:x", "D", "t", 1, 0).unwrap();
        let before = events::current_pos(&c).unwrap();
        assert!(devices::delete(&c, "@a:x", "D").unwrap());
        for table in [
            "e2e_device_keys",
            "e2e_device_signatures",
            "e2e_one_time_keys",
            "to_device_messages",
            "to_device_txns",
        ] {
            let n: i64 = c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).unwrap();
            assert_eq!(n, 0, "{table}");
        }
        // Both the keys' trigger and the devices' trigger take a position.
        let after = events::current_pos(&c).unwrap();
        assert!(after > before);
        assert_eq!(device_lists_changed_between(&c, before, after).unwrap(), ["@a:x"]);
    }

    #[test]
    fn to_device_by_position_and_acknowledgement() {
        let c = setup();
        for pos in [3, 5, 7] {
            let m = ToDevice { sender: "@b:x".into(), kind: format!("m.{pos}"), content: "{}".into() };
            add_to_device(&c, "@a:x", "D", pos, &m).unwrap();
        }
        assert_eq!(to_device_between(&c, "@a:x", "D", 3, 7).unwrap().len(), 2);
        assert!(!to_device_delivered(&c, "@a:x", "D", 2).unwrap());
        assert!(to_device_delivered(&c, "@a:x", "D", 5).unwrap());
        assert_eq!(delete_to_device_upto(&c, "@a:x", "D", 5).unwrap(), 2);
        assert_eq!(to_device_pending(&c, "@a:x", "D").unwrap(), 1);
    }
}
