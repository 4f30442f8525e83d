//! Server-side key backups: `/room_keys/version[/{version}]` and
//! `/room_keys/keys[/{roomId}[/{sessionId}]]`.
//!
//! The server stores encrypted session keys it cannot read. When a key for
//! a stored session arrives, the better of the two is kept (the spec's
//! rules): verified beats unverified, then the lower `first_message_index`,
//! then the fewer forwards. Keys are written only to the newest version.
//! Each request is one transaction; the `etag` moves when keys change.

use serde_json::{json, Map, Value};

use crate::api::{Request, Response};
use crate::app::App;
use crate::error::{Error, Result};
use crate::log;
use crate::storage::key_backup::{self, SessionKey, Version};

/// Session keys one upload may carry.
pub const BACKUP_SESSIONS_PER_REQUEST_MAX: usize = 10_000;
/// Session keys one backup version may hold.
pub const BACKUP_KEYS_PER_VERSION_MAX: i64 = 1_000_000;
/// Largest `session_data`, as JSON text.
const SESSION_DATA_MAX_BYTES: usize = 16384;
/// Largest `auth_data`, as JSON text.
const AUTH_DATA_MAX_BYTES: usize = 16384;
/// Longest algorithm name, room ID and session ID.
const NAME_MAX_BYTES: usize = 255;

fn not_found() -> Error {
    Error::not_found("No such backup version")
}

/// A path or query version: versions are numbers; anything else names none.
fn parse_version(s: &str) -> Option<i64> {
    s.parse::<i64>().ok().filter(|v| *v > 0)
}

fn version_json(v: &Version, count: i64) -> Result<Value> {
    // Damaged `auth_data` (logged) shows as empty rather than failing the
    // answer: the client sees a backup it cannot verify and can replace it.
    let auth_data: Value = serde_json::from_str(&v.auth_data).unwrap_or_else(|e| {
        log::warn(format_args!("unreadable stored auth_data of backup version {}: {e}", v.version));
        json!({})
    });
    Ok(json!({
        "algorithm": v.algorithm,
        "auth_data": auth_data,
        "count": count,
        "etag": v.etag.to_string(),
        "version": v.version.to_string(),
    }))
}

/// Checks `{algorithm, auth_data}`; returns them (auth_data as text).
fn parse_version_body(body: &Value) -> Result<(String, String)> {
    let algorithm = body
        .get("algorithm")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty() && a.len() <= NAME_MAX_BYTES)
        .ok_or_else(|| Error::bad_json("algorithm must be a non-empty string"))?;
    let auth_data = body.get("auth_data").filter(|a| a.is_object());
    let auth_data = auth_data.ok_or_else(|| Error::bad_json("auth_data must be an object"))?.to_string();
    if auth_data.len() > AUTH_DATA_MAX_BYTES {
        return Err(Error::invalid_param(format!("auth_data may be at most {AUTH_DATA_MAX_BYTES} bytes")));
    }
    Ok((algorithm.to_owned(), auth_data))
}

/// POST /_matrix/client/v3/room_keys/version
pub fn create_version(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let (algorithm, auth_data) = parse_version_body(&req.json_value()?)?;
    let version = app.db.write(|tx| key_backup::create_version(tx, &who.user_id, &algorithm, &auth_data))?;
    Response::ok(json!({ "version": version.to_string() }))
}

/// GET /_matrix/client/v3/room_keys/version
pub fn get_current_version(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let body = app.db.read(|tx| {
        let v = key_backup::current_version(tx, &who.user_id)?.ok_or_else(not_found)?;
        version_json(&v, key_backup::count_keys(tx, &who.user_id, v.version)?)
    })?;
    Response::ok(body)
}

/// GET /_matrix/client/v3/room_keys/version/{version}
pub fn get_version(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let version = parse_version(req.param("version")).ok_or_else(not_found)?;
    let body = app.db.read(|tx| {
        let v = key_backup::get_version(tx, &who.user_id, version)?.ok_or_else(not_found)?;
        version_json(&v, key_backup::count_keys(tx, &who.user_id, v.version)?)
    })?;
    Response::ok(body)
}

/// PUT /_matrix/client/v3/room_keys/version/{version}: only `auth_data`
/// may change.
pub fn update_version(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let body = req.json_value()?;
    let (algorithm, auth_data) = parse_version_body(&body)?;
    let version = parse_version(req.param("version")).ok_or_else(not_found)?;
    match body.get("version") {
        None | Some(Value::Null) => {}
        Some(Value::String(v)) if parse_version(v) == Some(version) => {}
        Some(_) => return Err(Error::invalid_param("The version in the body does not match the path")),
    }
    app.db.write(|tx| {
        let v = key_backup::get_version(tx, &who.user_id, version)?.ok_or_else(not_found)?;
        if v.algorithm != algorithm {
            return Err(Error::invalid_param("The algorithm of a backup cannot change"));
        }
        key_backup::set_auth_data(tx, &who.user_id, version, &auth_data)?;
        Ok(())
    })?;
    Response::ok(json!({}))
}

/// DELETE /_matrix/client/v3/room_keys/version/{version}
pub fn delete_version(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let version = parse_version(req.param("version")).ok_or_else(not_found)?;
    if !app.db.write(|tx| key_backup::delete_version(tx, &who.user_id, version))? {
        return Err(not_found());
    }
    Response::ok(json!({}))
}

/// Checks one `KeyBackupData` object.
fn parse_session(room_id: &str, session_id: &str, v: &Value) -> Result<SessionKey> {
    if room_id.is_empty()
        || room_id.len() > NAME_MAX_BYTES
        || session_id.is_empty()
        || session_id.len() > NAME_MAX_BYTES
    {
        return Err(Error::invalid_param("Room and session IDs must be 1 to 255 bytes"));
    }
    let count = |name: &str| -> Result<i64> {
        v.get(name)
            .and_then(Value::as_i64)
            .filter(|n| (0..=crate::crypto::canonical::MAX_SAFE_INTEGER).contains(n))
            .ok_or_else(|| Error::bad_json(format!("{name} must be a non-negative integer")))
    };
    let is_verified = v
        .get("is_verified")
        .and_then(Value::as_bool)
        .ok_or_else(|| Error::bad_json("is_verified must be a boolean"))?;
    let session_data = v
        .get("session_data")
        .filter(|d| d.is_object())
        .ok_or_else(|| Error::bad_json("session_data must be an object"))?
        .to_string();
    if session_data.len() > SESSION_DATA_MAX_BYTES {
        return Err(Error::invalid_param(format!(
            "session_data may be at most {SESSION_DATA_MAX_BYTES} bytes"
        )));
    }
    Ok(SessionKey {
        room_id: room_id.to_owned(),
        session_id: session_id.to_owned(),
        first_message_index: count("first_message_index")?,
        forwarded_count: count("forwarded_count")?,
        is_verified,
        session_data,
    })
}

/// `{sessionId: KeyBackupData}` of one room.
fn parse_sessions(room_id: &str, v: Option<&Value>, out: &mut Vec<SessionKey>) -> Result<()> {
    let sessions =
        v.and_then(Value::as_object).ok_or_else(|| Error::bad_json("sessions must be an object"))?;
    for (session_id, data) in sessions {
        if out.len() >= BACKUP_SESSIONS_PER_REQUEST_MAX {
            return Err(Error::invalid_param(format!(
                "At most {BACKUP_SESSIONS_PER_REQUEST_MAX} session keys per request"
            )));
        }
        out.push(parse_session(room_id, session_id, data)?);
    }
    Ok(())
}

/// True if `new` should replace `old` by the spec's rules.
pub fn is_better(new: &SessionKey, old: &SessionKey) -> bool {
    if new.is_verified != old.is_verified {
        return new.is_verified;
    }
    if new.first_message_index != old.first_message_index {
        return new.first_message_index < old.first_message_index;
    }
    new.forwarded_count < old.forwarded_count
}

/// The `version` query parameter.
fn query_version(req: &Request) -> Result<&str> {
    req.query("version").ok_or_else(|| Error::missing_param("The version query parameter is required"))
}

/// `{etag, count}` of a version.
fn etag_count(tx: &rusqlite::Connection, user_id: &str, version: i64) -> Result<Value> {
    let v = key_backup::get_version(tx, user_id, version)?.ok_or_else(not_found)?;
    Ok(json!({ "etag": v.etag.to_string(), "count": key_backup::count_keys(tx, user_id, version)? }))
}

/// PUT /_matrix/client/v3/room_keys/keys[/{roomId}[/{sessionId}]]
pub fn put_keys(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let asked = query_version(req)?;
    let body = req.json_value()?;
    if !body.is_object() {
        return Err(Error::bad_json("The body must be a JSON object"));
    }
    let mut keys = Vec::new();
    match (req.param_opt("roomId"), req.param_opt("sessionId")) {
        (None, _) => {
            let rooms = body
                .get("rooms")
                .and_then(Value::as_object)
                .ok_or_else(|| Error::bad_json("rooms must be an object"))?;
            for (room_id, room) in rooms {
                parse_sessions(room_id, room.get("sessions"), &mut keys)?;
            }
        }
        (Some(room_id), None) => parse_sessions(room_id, body.get("sessions"), &mut keys)?,
        (Some(room_id), Some(session_id)) => keys.push(parse_session(room_id, session_id, &body)?),
    }
    let user_id = who.user_id.as_str();
    let outcome = app.db.write(|tx| {
        let current = key_backup::current_version(tx, user_id)?.ok_or_else(not_found)?;
        if parse_version(asked) != Some(current.version) {
            return Ok(Err(current.version));
        }
        let version = current.version;
        let mut changed = false;
        for k in &keys {
            let keep_old = key_backup::get_key(tx, user_id, version, &k.room_id, &k.session_id)?
                .is_some_and(|old| !is_better(k, &old));
            if !keep_old {
                key_backup::put_key(tx, user_id, version, k)?;
                changed = true;
            }
        }
        if changed {
            if key_backup::count_keys(tx, user_id, version)? > BACKUP_KEYS_PER_VERSION_MAX {
                return Err(Error::invalid_param(format!(
                    "A backup may hold at most {BACKUP_KEYS_PER_VERSION_MAX} session keys"
                )));
            }
            key_backup::bump_etag(tx, user_id, version)?;
        }
        etag_count(tx, user_id, version).map(Ok)
    })?;
    match outcome {
        Ok(body) => Response::ok(body),
        Err(current) => Ok(Response {
            status: 403,
            body: Some(json!({
                "errcode": "M_WRONG_ROOM_KEYS_VERSION",
                "error": "Keys may only be stored in the current backup version",
                "current_version": current.to_string(),
            })),
        }),
    }
}

fn session_json(k: &SessionKey) -> Value {
    let session_data: Value = serde_json::from_str(&k.session_data).unwrap_or_else(|e| {
        log::warn(format_args!("unreadable stored session_data of a backed-up key: {e}"));
        json!({})
    });
    json!({
        "first_message_index": k.first_message_index,
        "forwarded_count": k.forwarded_count,
        "is_verified": k.is_verified,
        "session_data": session_data,
    })
}

/// GET /_matrix/client/v3/room_keys/keys[/{roomId}[/{sessionId}]]
pub fn get_keys(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let version = parse_version(query_version(req)?).ok_or_else(not_found)?;
    let room = req.param_opt("roomId");
    let session = req.param_opt("sessionId");
    let keys = app.db.read(|tx| {
        key_backup::get_version(tx, &who.user_id, version)?.ok_or_else(not_found)?;
        key_backup::keys(tx, &who.user_id, version, room, session)
    })?;
    if session.is_some() {
        let k = keys.first().ok_or_else(|| Error::not_found("No such session key"))?;
        return Response::ok(session_json(k));
    }
    let mut rooms: Map<String, Value> = Map::new();
    for k in &keys {
        let entry = rooms.entry(k.room_id.clone()).or_insert_with(|| json!({ "sessions": {} }));
        entry["sessions"][&k.session_id] = session_json(k);
    }
    match room {
        Some(r) => Response::ok(rooms.remove(r).unwrap_or_else(|| json!({ "sessions": {} }))),
        None => Response::ok(json!({ "rooms": rooms })),
    }
}

/// DELETE /_matrix/client/v3/room_keys/keys[/{roomId}[/{sessionId}]]
pub fn delete_keys(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let version = parse_version(query_version(req)?).ok_or_else(not_found)?;
    let room = req.param_opt("roomId");
    let session = req.param_opt("sessionId");
    let body = app.db.write(|tx| {
        key_backup::get_version(tx, &who.user_id, version)?.ok_or_else(not_found)?;
        if key_backup::delete_keys(tx, &who.user_id, version, room, session)? > 0 {
            key_backup::bump_etag(tx, &who.user_id, version)?;
        }
        etag_count(tx, &who.user_id, version)
    })?;
    Response::ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(verified: bool, index: i64, forwards: i64) -> SessionKey {
        SessionKey {
            room_id: "!r".into(),
            session_id: "s".into(),
            first_message_index: index,
            forwarded_count: forwards,
            is_verified: verified,
            session_data: "{}".into(),
        }
    }

    #[test]
    fn merge_rules() {
        assert!(is_better(&key(true, 9, 9), &key(false, 0, 0)));
        assert!(!is_better(&key(false, 0, 0), &key(true, 9, 9)));
        assert!(is_better(&key(false, 1, 9), &key(false, 2, 0)));
        assert!(!is_better(&key(false, 3, 0), &key(false, 2, 9)));
        assert!(is_better(&key(true, 2, 0), &key(true, 2, 1)));
        assert!(!is_better(&key(true, 2, 1), &key(true, 2, 1)));
    }
}
