//! The end-to-end encryption parts of a `/sync` answer: `to_device`,
//! `device_lists`, `device_one_time_keys_count` and
//! `device_unused_fallback_key_types`. Also serves `/keys/changes`.
//!
//! To-device messages carry the stream position of their send: a sync
//! delivers the device's messages in `(since, now]`, and the next sync, whose
//! `since` covers them, acknowledges them ([`acknowledge_to_device`] deletes
//! them), so each is delivered until the client has certainly received it.
//!
//! Device lists: a user is `changed` for the syncing user if they share a
//! room and their devices or keys changed in the window, or if they newly
//! share a room (a join in the window); `left` if a leave in the window means
//! they share no room any more.

use std::collections::{BTreeSet, HashSet};

use rusqlite::Connection;
use serde_json::{json, Value};

use crate::app::App;
use crate::error::Result;
use crate::log;
use crate::storage::{e2ee, state};

/// What the e2ee parts of an answer hold.
pub struct Parts {
    pub to_device: Vec<Value>,
    pub changed: Vec<String>,
    pub left: Vec<String>,
    pub one_time_keys_count: Value,
    pub unused_fallback: Vec<String>,
}

impl Parts {
    /// True if nothing here is news (the key counts are always sent).
    pub fn is_empty(&self) -> bool {
        self.to_device.is_empty() && self.changed.is_empty() && self.left.is_empty()
    }

    /// Writes the parts into an answer body.
    pub fn fill(self, body: &mut Value) {
        body["to_device"] = json!({ "events": self.to_device });
        body["device_lists"] = json!({ "changed": self.changed, "left": self.left });
        body["device_one_time_keys_count"] = self.one_time_keys_count;
        body["device_unused_fallback_key_types"] = json!(self.unused_fallback);
    }
}

/// The key counts of a device only (for an answer with nothing new).
pub fn counts(conn: &Connection, user_id: &str, device_id: &str) -> Result<(Value, Vec<String>)> {
    Ok((
        crate::e2ee::one_time_key_counts(conn, user_id, device_id)?,
        e2ee::unused_fallback_algorithms(conn, user_id, device_id)?,
    ))
}

/// The e2ee parts for the window `(since, upto]` (an initial sync has no
/// `since`: all pending to-device messages, no device-list changes).
pub fn compute(
    conn: &Connection,
    user_id: &str,
    device_id: &str,
    since: Option<i64>,
    upto: i64,
) -> Result<Parts> {
    // A message whose stored content cannot be parsed is logged and left out.
    let to_device = e2ee::to_device_between(conn, user_id, device_id, since.unwrap_or(0), upto)?
        .into_iter()
        .filter_map(|m| match serde_json::from_str::<Value>(&m.content) {
            Ok(content) => Some(json!({ "sender": m.sender, "type": m.kind, "content": content })),
            Err(e) => {
                log::warn(format_args!(
                    "skipping unreadable to-device message for {user_id} {device_id}: {e}"
                ));
                None
            }
        })
        .collect();
    let (changed, left) = match since {
        Some(from) => device_list_changes(conn, user_id, from, upto)?,
        None => (Vec::new(), Vec::new()),
    };
    let (one_time_keys_count, unused_fallback) = counts(conn, user_id, device_id)?;
    Ok(Parts { to_device, changed, left, one_time_keys_count, unused_fallback })
}

/// Users whose device lists `user_id` should re-fetch (`changed`) or stop
/// tracking (`left`) after the window `(from, upto]`, sorted.
pub fn device_list_changes(
    conn: &Connection,
    user_id: &str,
    from: i64,
    upto: i64,
) -> Result<(Vec<String>, Vec<String>)> {
    let mut changed = BTreeSet::new();
    let mut maybe_left = BTreeSet::new();
    if from >= upto {
        return Ok((Vec::new(), Vec::new()));
    }
    for other in e2ee::device_lists_changed_between(conn, from, upto)? {
        if other == user_id || e2ee::share_a_room(conn, user_id, &other)? {
            changed.insert(other);
        }
    }
    let mine: HashSet<String> = state::rooms_of_user(conn, user_id, "join")?.into_iter().collect();
    for (room_id, target) in e2ee::membership_events_between(conn, from, upto)? {
        if target == user_id {
            // Being invited to (or knocking on) a room shares nothing yet:
            // its members are neither new to me nor gone.
            if matches!(state::membership(conn, user_id, &room_id)?.as_deref(), Some("invite" | "knock")) {
                continue;
            }
            // My own membership changed: everyone in the room is new to me,
            // or possibly gone.
            let members = state::members(conn, &room_id, "join")?;
            let into = if mine.contains(&room_id) { &mut changed } else { &mut maybe_left };
            into.extend(members.into_iter().filter(|m| m != user_id));
        } else if mine.contains(&room_id) {
            match state::membership(conn, &target, &room_id)?.as_deref() {
                Some("join") => {
                    changed.insert(target);
                }
                _ => {
                    maybe_left.insert(target);
                }
            }
        }
    }
    let mut left = Vec::new();
    for other in maybe_left {
        if !changed.contains(&other) && other != user_id && !e2ee::share_a_room(conn, user_id, &other)? {
            left.push(other);
        }
    }
    Ok((changed.into_iter().collect(), left))
}

/// Deletes the to-device messages a sync with `since` acknowledges (those
/// at or before it). Writes only when there are some.
pub fn acknowledge_to_device(app: &App, user_id: &str, device_id: &str, since: i64) -> Result<()> {
    if app.db.read(|c| e2ee::to_device_delivered(c, user_id, device_id, since))? {
        app.db.write(|c| e2ee::delete_to_device_upto(c, user_id, device_id, since))?;
    }
    Ok(())
}
