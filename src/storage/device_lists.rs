//! Device lists across servers (schema 10): the per-user stream of
//! device-list updates sent to other servers and what they were told of
//! each local device (`device_list_streams`, `device_list_sent`), the
//! cache of remote users' devices and cross-signing keys
//! (`remote_device_lists`, `remote_devices`), and the to-device EDUs
//! received (`to_device_in`). Keys are stored as JSON text, checked by
//! the caller.

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::Result;

// Sent.

/// The last stream ID of a local user's device-list updates (0 if none).
pub fn stream_id(conn: &Connection, user_id: &str) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT stream_id FROM device_list_streams WHERE user_id = ?1")?
        .query_row([user_id], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Takes the user's next stream ID: `(new, previous)`.
pub fn next_stream_id(conn: &Connection, user_id: &str) -> Result<(i64, i64)> {
    let prev = stream_id(conn, user_id)?;
    conn.prepare_cached("INSERT OR REPLACE INTO device_list_streams (user_id, stream_id) VALUES (?1, ?2)")?
        .execute(params![user_id, prev + 1])?;
    Ok((prev + 1, prev))
}

/// What other servers were last told of the user's devices: `(device_id, keys)`.
pub fn sent(conn: &Connection, user_id: &str) -> Result<Vec<(String, String)>> {
    let mut st = conn.prepare_cached(
        "SELECT device_id, keys FROM device_list_sent WHERE user_id = ?1 ORDER BY device_id",
    )?;
    let rows = st.query_map([user_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Records what was told of a device (`None`: that it is gone).
pub fn set_sent(conn: &Connection, user_id: &str, device_id: &str, keys: Option<&str>) -> Result<()> {
    match keys {
        Some(k) => conn
            .prepare_cached(
                "INSERT OR REPLACE INTO device_list_sent (user_id, device_id, keys) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![user_id, device_id, k])?,
        None => conn
            .prepare_cached("DELETE FROM device_list_sent WHERE user_id = ?1 AND device_id = ?2")?
            .execute(params![user_id, device_id])?,
    };
    Ok(())
}

/// The other servers with a user joined to a room `user_id` is joined to
/// (`own` left out), in name order.
pub fn servers_sharing_a_room(conn: &Connection, user_id: &str, own: &str) -> Result<Vec<String>> {
    let mut st = conn.prepare_cached(
        "SELECT DISTINCT substr(y.user_id, instr(y.user_id, ':') + 1) AS server
         FROM memberships x JOIN memberships y ON x.room_id = y.room_id
         WHERE x.user_id = ?1 AND x.membership = 'join' AND y.membership = 'join' AND server != ?2
         ORDER BY server",
    )?;
    let rows = st.query_map([user_id, own], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// True if a local user shares a room with `user_id` (a user of `server`,
/// not this one): whether their device list is worth caching.
pub fn shared_with_local_user(conn: &Connection, user_id: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM memberships x JOIN memberships y ON x.room_id = y.room_id
             JOIN users u ON u.user_id = y.user_id
             WHERE x.user_id = ?1 AND x.membership = 'join' AND y.membership = 'join' LIMIT 1",
        )?
        .query_row([user_id], |_| Ok(()))
        .optional()?
        .is_some())
}

// The remote cache.

/// A remote user's cached device list.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteList {
    pub stream_id: i64,
    pub stale: bool,
    pub master_key: Option<String>,
    pub self_signing_key: Option<String>,
}

pub fn remote_list(conn: &Connection, user_id: &str) -> Result<Option<RemoteList>> {
    Ok(conn
        .prepare_cached(
            "SELECT stream_id, stale, master_key, self_signing_key FROM remote_device_lists WHERE user_id = ?1",
        )?
        .query_row([user_id], |r| {
            Ok(RemoteList {
                stream_id: r.get(0)?,
                stale: r.get::<_, i64>(1)? != 0,
                master_key: r.get(2)?,
                self_signing_key: r.get(3)?,
            })
        })
        .optional()?)
}

/// Replaces a remote user's whole cached list (a resync).
pub fn replace_remote(
    conn: &Connection,
    user_id: &str,
    list: &RemoteList,
    devices: &[(String, String)],
    now: i64,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO remote_device_lists
             (user_id, stream_id, stale, master_key, self_signing_key, updated_ts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        user_id,
        list.stream_id,
        list.stale as i64,
        list.master_key,
        list.self_signing_key,
        now
    ])?;
    conn.prepare_cached("DELETE FROM remote_devices WHERE user_id = ?1")?.execute([user_id])?;
    for (device_id, keys) in devices {
        set_remote_device(conn, user_id, device_id, Some(keys))?;
    }
    Ok(())
}

/// Sets (or with `None` removes) one cached device of a remote user.
pub fn set_remote_device(
    conn: &Connection,
    user_id: &str,
    device_id: &str,
    keys: Option<&str>,
) -> Result<()> {
    match keys {
        Some(k) => conn
            .prepare_cached(
                "INSERT OR REPLACE INTO remote_devices (user_id, device_id, keys) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![user_id, device_id, k])?,
        None => conn
            .prepare_cached("DELETE FROM remote_devices WHERE user_id = ?1 AND device_id = ?2")?
            .execute(params![user_id, device_id])?,
    };
    Ok(())
}

/// Moves a cached list to `stream_id` (an update applied in order).
pub fn set_remote_stream_id(conn: &Connection, user_id: &str, stream_id: i64, now: i64) -> Result<()> {
    conn.prepare_cached("UPDATE remote_device_lists SET stream_id = ?2, updated_ts = ?3 WHERE user_id = ?1")?
        .execute(params![user_id, stream_id, now])?;
    Ok(())
}

/// Marks a cached list stale (an update was missed).
pub fn mark_remote_stale(conn: &Connection, user_id: &str) -> Result<()> {
    conn.prepare_cached("UPDATE remote_device_lists SET stale = 1 WHERE user_id = ?1")?.execute([user_id])?;
    Ok(())
}

/// Up to `limit` remote users whose cached list is stale.
pub fn stale_remote_users(conn: &Connection, limit: usize) -> Result<Vec<String>> {
    let mut st = conn.prepare_cached(
        "SELECT user_id FROM remote_device_lists WHERE stale = 1 ORDER BY updated_ts LIMIT ?1",
    )?;
    let rows = st.query_map([limit as i64], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Sets a cached user's cross-signing key of one usage.
pub fn set_remote_cross_signing(conn: &Connection, user_id: &str, usage: &str, key: &str) -> Result<()> {
    let sql = match usage {
        "master" => "UPDATE remote_device_lists SET master_key = ?2 WHERE user_id = ?1",
        _ => "UPDATE remote_device_lists SET self_signing_key = ?2 WHERE user_id = ?1",
    };
    conn.prepare_cached(sql)?.execute(params![user_id, key])?;
    Ok(())
}

/// The cached devices of a remote user: `(device_id, keys)`.
pub fn remote_devices(conn: &Connection, user_id: &str) -> Result<Vec<(String, String)>> {
    let mut st = conn
        .prepare_cached("SELECT device_id, keys FROM remote_devices WHERE user_id = ?1 ORDER BY device_id")?;
    let rows = st.query_map([user_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// How many devices are cached for a remote user.
pub fn remote_device_count(conn: &Connection, user_id: &str) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM remote_devices WHERE user_id = ?1")?
        .query_row([user_id], |r| r.get(0))?)
}

// To-device EDUs received.

/// Records `(origin, message_id)`; false if it was already received.
/// Forgets those received before `forget_before`.
pub fn to_device_first_receipt(
    conn: &Connection,
    origin: &str,
    message_id: &str,
    now: i64,
    forget_before: i64,
) -> Result<bool> {
    conn.prepare_cached("DELETE FROM to_device_in WHERE received_ts < ?1")?.execute([forget_before])?;
    Ok(conn
        .prepare_cached(
            "INSERT OR IGNORE INTO to_device_in (origin, message_id, received_ts) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![origin, message_id, now])?
        == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_conn;

    #[test]
    fn stream_ids_grow_per_user() {
        let c = test_conn();
        assert_eq!(next_stream_id(&c, "@a:x").unwrap(), (1, 0));
        assert_eq!(next_stream_id(&c, "@a:x").unwrap(), (2, 1));
        assert_eq!(next_stream_id(&c, "@b:x").unwrap(), (1, 0));
    }

    #[test]
    fn remote_cache_replaced_and_updated() {
        let c = test_conn();
        let list = RemoteList { stream_id: 5, stale: false, master_key: None, self_signing_key: None };
        replace_remote(&c, "@r:y", &list, &[("D1".into(), "{}".into())], 1).unwrap();
        set_remote_device(&c, "@r:y", "D2", Some("{\"a\":1}")).unwrap();
        set_remote_stream_id(&c, "@r:y", 6, 2).unwrap();
        assert_eq!(remote_device_count(&c, "@r:y").unwrap(), 2);
        mark_remote_stale(&c, "@r:y").unwrap();
        let got = remote_list(&c, "@r:y").unwrap().unwrap();
        assert_eq!((got.stream_id, got.stale), (6, true));
        assert_eq!(stale_remote_users(&c, 10).unwrap(), ["@r:y"]);
        replace_remote(&c, "@r:y", &list, &[], 3).unwrap();
        assert!(remote_devices(&c, "@r:y").unwrap().is_empty());
    }

    #[test]
    fn to_device_received_once() {
        let c = test_conn();
        assert!(to_device_first_receipt(&c, "y", "m1", 10, 0).unwrap());
        assert!(!to_device_first_receipt(&c, "y", "m1", 11, 0).unwrap());
        assert!(to_device_first_receipt(&c, "z", "m1", 11, 0).unwrap());
        // Forgotten after a while.
        assert!(to_device_first_receipt(&c, "y", "m1", 100, 50).unwrap());
    }
}
