//! The device and key service: what changes of a user's devices and keys
//! mean for everyone else (a device-list change, on the stream, waking the
//! user and the rooms they are in), and the key counts sync reports. The
//! client API's key endpoints, account and device handlers, and sync all
//! use it; it knows nothing of HTTP.
//!
//! Across servers (issue 18): a change of a local user's devices or keys
//! is also told every server sharing a room with them (`federated`, in
//! the same write), and to-device messages are delivered to local devices
//! the same way whether sent here or by another server (`to_device`).

pub mod federated;
pub mod to_device;

use rusqlite::Connection;
use serde_json::{json, Map, Value};

use crate::error::Result;
use crate::storage::{e2ee, events, state, Tx};

/// The one-time key algorithm every count names.
pub const SIGNED_CURVE25519: &str = "signed_curve25519";

/// Records a change of `user_id`'s devices or keys: a new stream position,
/// and a wake-up for the user and everyone in their rooms.
pub fn device_list_changed(conn: &Tx, user_id: &str) -> Result<()> {
    let pos = events::next_pos(conn)?;
    e2ee::mark_device_list_changed(conn, user_id, pos)?;
    wake_device_list_watchers(conn, user_id, pos)
}

/// Wakes the syncs that may see a device-list change of `user_id` (the
/// user's and those of the rooms they are in). A device deletion records
/// its change in the database itself (a trigger); its handler calls this
/// with the current position.
pub fn wake_device_list_watchers(conn: &Tx, user_id: &str, pos: i64) -> Result<()> {
    wake(conn, user_id, pos)?;
    federated::device_list_update(conn, user_id)
}

/// A remote user's devices or keys changed (an update from their server,
/// or a resync): local users sharing a room with them see it in
/// `device_lists.changed`.
pub fn remote_device_list_changed(conn: &Tx, user_id: &str) -> Result<()> {
    let pos = events::next_pos(conn)?;
    e2ee::mark_device_list_changed(conn, user_id, pos)?;
    wake(conn, user_id, pos)
}

fn wake(conn: &Tx, user_id: &str, pos: i64) -> Result<()> {
    let rooms = state::rooms_of_user(conn, user_id, "join")?;
    let rooms: Vec<&str> = rooms.iter().map(String::as_str).collect();
    conn.changed(pos, &rooms, &[user_id]);
    Ok(())
}

/// After devices were deleted: wakes whoever may see the change.
pub fn devices_removed(conn: &Tx, user_id: &str) -> Result<()> {
    let pos = events::current_pos(conn)?;
    wake_device_list_watchers(conn, user_id, pos)
}

/// `one_time_key_counts` for a device: every stored algorithm, and
/// `signed_curve25519` always (clients read a missing count as unknown).
pub fn one_time_key_counts(conn: &Connection, user_id: &str, device_id: &str) -> Result<Value> {
    let mut counts = Map::new();
    counts.insert(SIGNED_CURVE25519.to_owned(), json!(0));
    for (alg, n) in e2ee::one_time_key_counts(conn, user_id, device_id)? {
        counts.insert(alg, json!(n));
    }
    Ok(Value::Object(counts))
}

/// Adds the stored extra signatures a requester may see to a key object:
/// the owner's own, and the requester's (`None`: another server, which
/// sees only the owner's).
pub fn merge_signatures(obj: &mut Value, sigs: Vec<e2ee::Signature>, owner: &str, requester: Option<&str>) {
    for (signer_user, signer_key, signature) in sigs {
        // Signatures by another user's keys (user-signing) are for that
        // user's eyes only.
        if signer_user != owner && Some(signer_user.as_str()) != requester {
            continue;
        }
        if !obj.get("signatures").is_some_and(Value::is_object) {
            obj["signatures"] = json!({});
        }
        if !obj["signatures"].get(&signer_user).is_some_and(Value::is_object) {
            obj["signatures"][&signer_user] = json!({});
        }
        obj["signatures"][&signer_user][&signer_key] = json!(signature);
    }
}
