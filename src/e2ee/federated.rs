//! What other servers are told of local users' devices and keys
//! (Server-Server API, "Device Management"), queued in the write that
//! changed them (`storage::federation::queue`), so it goes out once that
//! commits and survives restarts.
//!
//! A device-list change is found by comparing the user's devices as
//! another server sees them (the keys `/user/devices` answers, with the
//! owner's signatures, no display name) with what was last told
//! (`device_list_sent`): each device that differs is one
//! `m.device_list_update`, with the user's next `stream_id` and the one
//! before as `prev_id`; a device no longer there is `deleted`. The stream
//! moves on whether or not a server shares a room now: one that starts
//! sharing later sees an unknown `prev_id` (or an uncached user) and
//! resyncs. The cross-signing keys go as `m.signing_key_update`.

use serde_json::{json, Map, Value};

use crate::error::Result;
use crate::log;
use crate::storage::{self, device_lists, e2ee, federation, users, Tx};

/// The user's devices with keys as another server sees them:
/// `(device_id, keys)`, sorted.
pub fn devices_for_servers(conn: &rusqlite::Connection, user_id: &str) -> Result<Vec<(String, Value)>> {
    let mut out = Vec::new();
    for (device_id, text, _) in e2ee::devices_with_keys(conn, user_id)? {
        let Ok(mut keys) = serde_json::from_str::<Value>(&text) else {
            log::warn(format_args!("skipping unreadable stored keys of {user_id} {device_id}"));
            continue;
        };
        super::merge_signatures(
            &mut keys,
            e2ee::device_signatures(conn, user_id, &device_id)?,
            user_id,
            None,
        );
        out.push((device_id, keys));
    }
    Ok(out)
}

/// The user's master and self-signing keys as another server sees them.
pub fn cross_signing_for_servers(
    conn: &rusqlite::Connection,
    user_id: &str,
) -> Result<(Option<Value>, Option<Value>)> {
    let mut master = None;
    if let Some((public, text)) = e2ee::cross_signing_key(conn, user_id, "master")? {
        if let Ok(mut k) = serde_json::from_str::<Value>(&text) {
            super::merge_signatures(&mut k, e2ee::key_signatures(conn, user_id, &public)?, user_id, None);
            master = Some(k);
        }
    }
    let self_signing = e2ee::cross_signing_key(conn, user_id, "self_signing")?
        .and_then(|(_, text)| serde_json::from_str::<Value>(&text).ok());
    Ok((master, self_signing))
}

/// The servers to tell of a local user's change; `None` for a user not
/// of this server (who has no row in `users`).
fn destinations(tx: &Tx, user_id: &str) -> Result<Option<Vec<String>>> {
    let Some((_, own)) = crate::core::ids::parse_user_id(user_id) else { return Ok(None) };
    if !users::exists(tx, user_id)? {
        return Ok(None);
    }
    Ok(Some(device_lists::servers_sharing_a_room(tx, user_id, own)?))
}

fn queue_edu(tx: &Tx, servers: &[String], kind: &str, content: &Value) -> Result<()> {
    let body = json!({ "edu_type": kind, "content": content }).to_string();
    let now = storage::now_ms();
    for server in servers {
        federation::queue(tx, server, federation::Unit::Edu, &body, now)?;
    }
    Ok(())
}

/// After a change of a local user's devices or keys: one
/// `m.device_list_update` per device that changed, to every server
/// sharing a room with the user. Does nothing for a remote user.
pub fn device_list_update(tx: &Tx, user_id: &str) -> Result<()> {
    let Some(servers) = destinations(tx, user_id)? else { return Ok(()) };
    let now: Vec<(String, String)> =
        devices_for_servers(tx, user_id)?.into_iter().map(|(d, k)| (d, k.to_string())).collect();
    let before: Map<String, Value> =
        device_lists::sent(tx, user_id)?.into_iter().map(|(d, k)| (d, Value::String(k))).collect();
    let mut changes: Vec<(String, Option<String>)> = Vec::new();
    for (device_id, keys) in &now {
        if before.get(device_id).and_then(Value::as_str) != Some(keys.as_str()) {
            changes.push((device_id.clone(), Some(keys.clone())));
        }
    }
    for device_id in before.keys() {
        if !now.iter().any(|(d, _)| d == device_id) {
            changes.push((device_id.clone(), None));
        }
    }
    for (device_id, keys) in changes {
        let (stream_id, prev) = device_lists::next_stream_id(tx, user_id)?;
        device_lists::set_sent(tx, user_id, &device_id, keys.as_deref())?;
        let prev_id: Vec<i64> = if prev > 0 { vec![prev] } else { Vec::new() };
        let mut content = json!({
            "user_id": user_id,
            "device_id": device_id,
            "stream_id": stream_id,
            "prev_id": prev_id,
        });
        match keys.as_deref().map(serde_json::from_str::<Value>) {
            Some(Ok(k)) => content["keys"] = k,
            Some(Err(_)) => continue,
            None => content["deleted"] = json!(true),
        }
        queue_edu(tx, &servers, "m.device_list_update", &content)?;
    }
    Ok(())
}

/// After a local user uploaded cross-signing keys: `m.signing_key_update`
/// with their master and self-signing keys, to every server sharing a
/// room with them.
pub fn signing_key_update(tx: &Tx, user_id: &str) -> Result<()> {
    let Some(servers) = destinations(tx, user_id)? else { return Ok(()) };
    if servers.is_empty() {
        return Ok(());
    }
    let (master, self_signing) = cross_signing_for_servers(tx, user_id)?;
    let mut content = json!({ "user_id": user_id });
    if let Some(k) = master {
        content["master_key"] = k;
    }
    if let Some(k) = self_signing {
        content["self_signing_key"] = k;
    }
    queue_edu(tx, &servers, "m.signing_key_update", &content)
}

/// A remote user's keys from the cache, if it holds them fresh.
pub struct CachedKeys {
    /// Device → keys (only those of `devices`, when named).
    pub devices: Map<String, Value>,
    pub master_key: Option<Value>,
    pub self_signing_key: Option<Value>,
}

/// The cached keys of a remote user (`devices` empty meaning all), or
/// `None` when not cached, stale, or no longer sharing a room with a local
/// user (updates are not taken then): their server is asked instead.
pub fn cached_keys(
    conn: &rusqlite::Connection,
    user_id: &str,
    devices: &[String],
) -> Result<Option<CachedKeys>> {
    let Some(list) = device_lists::remote_list(conn, user_id)? else { return Ok(None) };
    // Updates are only taken for users sharing a room with a local user.
    if list.stale || !device_lists::shared_with_local_user(conn, user_id)? {
        return Ok(None);
    }
    let mut out = Map::new();
    for (device_id, text) in device_lists::remote_devices(conn, user_id)? {
        if !devices.is_empty() && !devices.contains(&device_id) {
            continue;
        }
        if let Ok(k) = serde_json::from_str::<Value>(&text) {
            out.insert(device_id, k);
        }
    }
    let parse = |t: Option<String>| t.and_then(|t| serde_json::from_str::<Value>(&t).ok());
    Ok(Some(CachedKeys {
        devices: out,
        master_key: parse(list.master_key),
        self_signing_key: parse(list.self_signing_key),
    }))
}
