//! Device lists, cross-signing keys and to-device messages from other
//! servers (Server-Server API, "Device Management", "Send-to-device
//! messaging"): the `m.device_list_update`, `m.signing_key_update` and
//! `m.direct_to_device` EDUs, and the resync of a remote user's device
//! list (`GET /user/devices/{userId}`).
//!
//! Every EDU must be about a user of the server that sent it. A remote
//! user's devices are cached (`storage::device_lists`) only while a local
//! user shares a room with them. An update newer than the cache is
//! applied when each of its `prev_id`s is at or before the cached
//! `stream_id` (it follows what we have, as Synapse decides); anything
//! else — a later `prev_id` we never saw (a gap), no `prev_id`, a user
//! not cached yet —
//! marks the cache stale and asks for a resync (as does a `/keys/query`
//! that found a followed user uncached). Resyncs run on one
//! worker thread fed by a bounded queue ([`RESYNC_QUEUE_MAX`]; when full
//! the user stays stale and `/keys/query` asks their server live), never
//! on the thread receiving the transaction and never inside a write.
//! What changed reaches local users as `device_lists.changed`
//! (`e2ee::remote_device_list_changed`).
//!
//! A to-device EDU is delivered once: its `(origin, message_id)` is
//! recorded (`to_device_in`, kept [`TO_DEVICE_IN_KEEP_MS`]) in the write
//! that delivers it, so a retried transaction delivers nothing again.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};

use serde_json::Value;

use crate::app::App;
use crate::core::ids;
use crate::e2ee::to_device::{deliver_local, Message, TO_DEVICE_MESSAGES_PER_REQUEST_MAX};
use crate::error::{Error, Result};
use crate::log;
use crate::storage::{self, device_lists};

/// Devices of one remote user kept in the cache; more are dropped.
pub const DEVICES_PER_USER_MAX: usize = 1000;
/// Largest keys object of one device kept, as JSON text.
pub const DEVICE_KEYS_MAX_BYTES: usize = 16 * 1024;
/// Users waiting for a resync; past it a resync is not queued (the user
/// stays stale, and a `/keys/query` asks their server).
pub const RESYNC_QUEUE_MAX: usize = 64;
/// How long a received to-device `message_id` is remembered.
pub const TO_DEVICE_IN_KEEP_MS: i64 = 24 * 60 * 60 * 1000;
/// Largest content of one received to-device message, as JSON text.
pub const TO_DEVICE_CONTENT_MAX_BYTES: usize = 65536;
/// Longest event type, message ID and device ID received.
const NAME_MAX_BYTES: usize = 255;

/// The resync queue, once [`start`] ran.
static RESYNC: OnceLock<SyncSender<String>> = OnceLock::new();

/// Starts the resync worker. Called once, with the federation sender.
pub fn start(app: Arc<App>) {
    let (tx, rx) = sync_channel(RESYNC_QUEUE_MAX);
    if RESYNC.set(tx).is_err() {
        return;
    }
    // Users left stale by the previous run get their resync now.
    match app.db.read(|c| device_lists::stale_remote_users(c, RESYNC_QUEUE_MAX)) {
        Ok(users) => users.iter().for_each(|u| request_resync(u)),
        Err(e) => log::warn(format_args!("federation: stale device lists not read: {}", e.message)),
    }
    let spawned = std::thread::Builder::new().name("device-resync".into()).spawn(move || worker(&app, rx));
    if let Err(e) = spawned {
        log::warn(format_args!("federation: no device-list resync thread: {e}"));
    }
}

fn worker(app: &App, rx: Receiver<String>) {
    while let Ok(user_id) = rx.recv() {
        let needed = app.db.read(|c| {
            Ok(device_lists::shared_with_local_user(c, &user_id)?
                && device_lists::remote_list(c, &user_id)?.is_none_or(|l| l.stale))
        });
        if !matches!(needed, Ok(true)) {
            continue;
        }
        if let Err(e) = resync(app, &user_id) {
            log::info(format_args!("federation: device-list resync of {user_id} failed: {}", e.message));
        }
    }
}

/// Asks for a resync of `user_id`'s device list (dropped when the queue
/// is full or the worker is not running: the cache stays stale). The
/// worker fetches it only if a local user shares a room with them and the
/// cache lacks them or is stale. `/keys/query` asks for the users it had
/// to ask live, so that the next answer comes from the cache.
pub fn request_resync(user_id: &str) {
    let Some(q) = RESYNC.get() else { return };
    if let Err(TrySendError::Full(_)) = q.try_send(user_id.to_owned()) {
        log::info(format_args!("federation: resync queue full, {user_id} stays stale"));
    }
}

/// Fetches `user_id`'s whole device list from their server and replaces
/// the cache with it.
pub fn resync(app: &App, user_id: &str) -> Result<()> {
    let Some((_, server)) = ids::parse_user_id(user_id) else { return Ok(()) };
    let uri = format!("/_matrix/federation/v1/user/devices/{}", crate::util::percent_encode(user_id));
    let answer = app.federation.get(server, &uri)?;
    if answer.get("user_id").and_then(Value::as_str) != Some(user_id) {
        return Err(Error::bad_json("the answer names another user"));
    }
    let stream_id = answer.get("stream_id").and_then(Value::as_i64).unwrap_or(0);
    let mut devices = Vec::new();
    for d in answer.get("devices").and_then(Value::as_array).into_iter().flatten() {
        let Some(device_id) = d.get("device_id").and_then(Value::as_str) else { continue };
        if devices.len() >= DEVICES_PER_USER_MAX {
            log::info(format_args!("federation: {user_id} has more than {DEVICES_PER_USER_MAX} devices"));
            break;
        }
        if let Some(keys) = checked_device_keys(d.get("keys"), user_id, device_id) {
            devices.push((device_id.to_owned(), keys));
        }
    }
    let list = device_lists::RemoteList {
        stream_id,
        stale: false,
        master_key: checked_cross_signing(answer.get("master_key"), user_id, "master"),
        self_signing_key: checked_cross_signing(answer.get("self_signing_key"), user_id, "self_signing"),
    };
    let now = storage::now_ms();
    app.db.write(|tx| {
        device_lists::replace_remote(tx, user_id, &list, &devices, now)?;
        crate::e2ee::remote_device_list_changed(tx, user_id)
    })
}

/// A device's keys as JSON text, if they name the user and device and fit.
fn checked_device_keys(keys: Option<&Value>, user_id: &str, device_id: &str) -> Option<String> {
    let keys = keys.filter(|k| k.is_object())?;
    let names = |f: &str, want: &str| keys.get(f).and_then(Value::as_str) == Some(want);
    if !names("user_id", user_id) || !names("device_id", device_id) {
        return None;
    }
    let text = keys.to_string();
    (text.len() <= DEVICE_KEYS_MAX_BYTES).then_some(text)
}

/// A cross-signing key as JSON text, if it is the user's, of the usage.
fn checked_cross_signing(key: Option<&Value>, user_id: &str, usage: &str) -> Option<String> {
    let key = key.filter(|k| k.is_object())?;
    let owner_ok = key.get("user_id").and_then(Value::as_str) == Some(user_id);
    let usage_ok = key.get("usage").and_then(Value::as_array).is_some_and(|u| u.iter().any(|x| x == usage));
    let text = key.to_string();
    (owner_ok
        && usage_ok
        && key.get("keys").is_some_and(Value::is_object)
        && text.len() <= DEVICE_KEYS_MAX_BYTES)
        .then_some(text)
}

/// The EDU's `user_id` if it is a user of `origin`.
fn user_of_origin<'a>(content: &'a Value, field: &str, origin: &str) -> Result<&'a str> {
    let user_id = content.get(field).and_then(Value::as_str).unwrap_or_default();
    match ids::parse_user_id(user_id) {
        Some((_, server)) if server == origin => Ok(user_id),
        _ => Err(Error::forbidden(format!("{user_id:?} is not a user of {origin}"))),
    }
}

/// What to do with an update, given the cache.
#[derive(Debug, PartialEq)]
enum Step {
    Apply,
    AlreadyHave,
    Resync,
}

/// An update with `stream_id` and `prev_id` against the cached list.
fn step(cached: Option<&device_lists::RemoteList>, stream_id: i64, prev_id: &[i64]) -> Step {
    let Some(list) = cached else { return Step::Resync };
    if list.stale {
        return Step::Resync;
    }
    if stream_id <= list.stream_id {
        return Step::AlreadyHave;
    }
    // Every update before it is in what we have: the cache was at or past
    // its `prev_id` (a resync's `stream_id` may be past the last update
    // sent to us, as Synapse's is). No `prev_id` says nothing: resync.
    if !prev_id.is_empty() && prev_id.iter().all(|p| *p <= list.stream_id) {
        Step::Apply
    } else {
        Step::Resync
    }
}

/// `m.device_list_update` from `origin`.
pub fn receive_device_list_update(app: &App, origin: &str, content: &Value) -> Result<()> {
    let user_id = user_of_origin(content, "user_id", origin)?;
    let device_id = content.get("device_id").and_then(Value::as_str).unwrap_or_default();
    if device_id.is_empty() || device_id.len() > NAME_MAX_BYTES {
        return Err(Error::bad_json("a bad device_id"));
    }
    let Some(stream_id) = content.get("stream_id").and_then(Value::as_i64) else {
        return Err(Error::bad_json("no stream_id"));
    };
    let prev_id: Vec<i64> = content
        .get("prev_id")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_i64)
        .collect();
    let deleted = content.get("deleted").and_then(Value::as_bool).unwrap_or(false);
    let keys = if deleted { None } else { checked_device_keys(content.get("keys"), user_id, device_id) };
    let now = storage::now_ms();
    // Most updates need no write (not followed, already had): a read says.
    let (shared, cached) = app.db.read(|c| {
        Ok((device_lists::shared_with_local_user(c, user_id)?, device_lists::remote_list(c, user_id)?))
    })?;
    let fresh = cached.as_ref().is_some_and(|l| !l.stale);
    if (!shared && !fresh) || (shared && step(cached.as_ref(), stream_id, &prev_id) == Step::AlreadyHave) {
        return Ok(());
    }
    let resync_needed = app.db.write(|tx| {
        if !device_lists::shared_with_local_user(tx, user_id)? {
            // Not followed any more: what is cached may fall behind.
            device_lists::mark_remote_stale(tx, user_id)?;
            return Ok(false);
        }
        let cached = device_lists::remote_list(tx, user_id)?;
        match step(cached.as_ref(), stream_id, &prev_id) {
            Step::AlreadyHave => Ok(false),
            Step::Resync => {
                device_lists::mark_remote_stale(tx, user_id)?;
                Ok(true)
            }
            Step::Apply => {
                if deleted {
                    device_lists::set_remote_device(tx, user_id, device_id, None)?;
                } else if let Some(k) = &keys {
                    let known =
                        device_lists::remote_devices(tx, user_id)?.iter().any(|(d, _)| d == device_id);
                    if known || device_lists::remote_device_count(tx, user_id)? < DEVICES_PER_USER_MAX as i64
                    {
                        device_lists::set_remote_device(tx, user_id, device_id, Some(k))?;
                    }
                }
                // An update without (usable) keys still moves the stream:
                // the device exists, it has no keys we keep.
                device_lists::set_remote_stream_id(tx, user_id, stream_id, now)?;
                crate::e2ee::remote_device_list_changed(tx, user_id)?;
                Ok(false)
            }
        }
    })?;
    if resync_needed {
        request_resync(user_id);
    }
    Ok(())
}

/// `m.signing_key_update` from `origin`.
pub fn receive_signing_key_update(app: &App, origin: &str, content: &Value) -> Result<()> {
    let user_id = user_of_origin(content, "user_id", origin)?;
    let master = checked_cross_signing(content.get("master_key"), user_id, "master");
    let self_signing = checked_cross_signing(content.get("self_signing_key"), user_id, "self_signing");
    let resync_needed = app.db.write(|tx| {
        if !device_lists::shared_with_local_user(tx, user_id)? {
            return Ok(false);
        }
        match device_lists::remote_list(tx, user_id)? {
            Some(l) if !l.stale => {
                for (usage, key) in [("master", &master), ("self_signing", &self_signing)] {
                    if let Some(k) = key {
                        device_lists::set_remote_cross_signing(tx, user_id, usage, k)?;
                    }
                }
                crate::e2ee::remote_device_list_changed(tx, user_id)?;
                Ok(false)
            }
            _ => Ok(true),
        }
    })?;
    if resync_needed {
        request_resync(user_id);
    }
    Ok(())
}

/// `m.direct_to_device` from `origin`.
pub fn receive_to_device(app: &App, origin: &str, content: &Value) -> Result<()> {
    let sender = user_of_origin(content, "sender", origin)?;
    let kind = content.get("type").and_then(Value::as_str).unwrap_or_default();
    let message_id = content.get("message_id").and_then(Value::as_str).unwrap_or_default();
    if kind.is_empty()
        || message_id.is_empty()
        || kind.len() > NAME_MAX_BYTES
        || message_id.len() > NAME_MAX_BYTES
    {
        return Err(Error::bad_json("a bad type or message_id"));
    }
    let Some(by_user) = content.get("messages").and_then(Value::as_object) else {
        return Err(Error::bad_json("no messages"));
    };
    let mut messages = Vec::new();
    for (user_id, devices) in by_user {
        match ids::parse_user_id(user_id) {
            Some((_, server)) if server == app.config.server_name => {}
            _ => continue,
        }
        for (device_id, c) in devices.as_object().into_iter().flatten() {
            let text = c.to_string();
            if !c.is_object() || text.len() > TO_DEVICE_CONTENT_MAX_BYTES {
                continue;
            }
            if messages.len() >= TO_DEVICE_MESSAGES_PER_REQUEST_MAX {
                return Err(Error::invalid_param("too many messages in one EDU"));
            }
            messages.push(Message { user_id, device_id, content: text });
        }
    }
    let now = storage::now_ms();
    app.db.write(|tx| {
        if device_lists::to_device_first_receipt(tx, origin, message_id, now, now - TO_DEVICE_IN_KEEP_MS)? {
            deliver_local(tx, sender, kind, &messages)?;
        }
        Ok(())
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list(stream_id: i64, stale: bool) -> device_lists::RemoteList {
        device_lists::RemoteList { stream_id, stale, master_key: None, self_signing_key: None }
    }

    #[test]
    fn updates_apply_in_order_and_gaps_resync() {
        assert_eq!(step(None, 5, &[4]), Step::Resync);
        assert_eq!(step(Some(&list(4, false)), 5, &[4]), Step::Apply);
        assert_eq!(step(Some(&list(4, false)), 4, &[3]), Step::AlreadyHave);
        assert_eq!(step(Some(&list(4, false)), 7, &[6]), Step::Resync);
        assert_eq!(step(Some(&list(4, false)), 7, &[]), Step::Resync);
        // A resync may have answered past the last update sent.
        assert_eq!(step(Some(&list(5, false)), 7, &[4]), Step::Apply);
        assert_eq!(step(Some(&list(5, false)), 7, &[4, 6]), Step::Resync);
        assert_eq!(step(Some(&list(4, true)), 5, &[4]), Step::Resync);
    }

    #[test]
    fn keys_must_name_their_user_and_device() {
        let k = json!({ "user_id": "@a:y", "device_id": "D", "keys": {} });
        assert!(checked_device_keys(Some(&k), "@a:y", "D").is_some());
        assert!(checked_device_keys(Some(&k), "@b:y", "D").is_none());
        assert!(checked_device_keys(Some(&k), "@a:y", "E").is_none());
        let m = json!({ "user_id": "@a:y", "usage": ["master"], "keys": { "ed25519:x": "x" } });
        assert!(checked_cross_signing(Some(&m), "@a:y", "master").is_some());
        assert!(checked_cross_signing(Some(&m), "@a:y", "self_signing").is_none());
    }
}
