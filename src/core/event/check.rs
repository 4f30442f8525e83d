//! Checking events received from other servers: their shape and limits
//! per room version, their content hash and their signatures. Federation
//! runs these before the auth rules; nothing here looks keys up.

use serde_json::{Map, Value};

use super::*;

/// True if `hashes.sha256` of `event` matches its content hash.
///
/// A false result on an event whose signature verified means the event
/// arrived redacted or altered; the spec says to use the redacted copy then.
pub fn verify_content_hash(event: &Value) -> bool {
    let Some(claimed) = event.get("hashes").and_then(|h| h.get("sha256")).and_then(Value::as_str) else {
        return false;
    };
    let Ok(actual) = content_hash(event) else {
        return false;
    };
    match (b64_decode(claimed), b64_decode(&actual)) {
        (Some(claimed), Some(actual)) => claimed == actual,
        _ => false,
    }
}

/// True if `event` carries a valid signature by `server_name` with
/// `key_id`, checked over the event's redacted form, so that it holds for
/// both the full event and a redacted copy.
pub fn verify_signature(
    version: &RoomVersion,
    event: &Value,
    server_name: &str,
    key_id: &str,
    public_key: &[u8; 32],
) -> bool {
    event.is_object() && verify_json(&redact(version, event), server_name, key_id, public_key)
}

/// [`verify_signature`] with the event's [`signed_form`] already made.
pub fn verify_signature_of_form(
    event: &Value,
    signed: &str,
    server_name: &str,
    key_id: &str,
    public_key: &[u8; 32],
) -> bool {
    crate::crypto::sign::verify_signed_bytes(event, signed.as_bytes(), server_name, key_id, public_key)
}

/// Checks that an event received from elsewhere has the keys, types and
/// sizes the event format of `version` requires.
///
/// This is the first check on receipt of a PDU; it does not check hashes,
/// signatures or auth rules. The size limit is measured without
/// `unsigned`, which any server on the way may change; the nesting limit
/// ([`DEPTH_MAX`]) with it, as whatever is stored must be readable back.
pub fn validate_pdu_shape(version: &RoomVersion, event: &Value) -> Result<(), EventError> {
    let Some(obj) = event.as_object() else {
        return Err(EventError::Invalid("event"));
    };
    let kind = required_str(obj, "type", TYPE_MAX_BYTES)?;
    let sender = required_str(obj, "sender", ids::USER_ID_MAX_BYTES)?;
    if ids::parse_user_id(sender).is_none() {
        return Err(EventError::Invalid("sender"));
    }
    if forbids_room_id(version, kind) {
        if obj.contains_key("room_id") {
            return Err(EventError::Unexpected("room_id"));
        }
    } else {
        check_room_id(required_str(obj, "room_id", ROOM_ID_MAX_BYTES)?)?;
    }
    if obj.contains_key("state_key") {
        required_str(obj, "state_key", STATE_KEY_MAX_BYTES)?;
    }
    let content = match obj.get("content") {
        Some(Value::Object(content)) => content,
        Some(_) => return Err(EventError::Invalid("content")),
        None => return Err(EventError::Missing("content")),
    };
    if version.event_id_in_event() {
        check_opaque_event_id("event_id", required_str(obj, "event_id", EVENT_ID_MAX_BYTES)?)?;
    }
    event_id_list(version, obj, "prev_events", PREV_EVENTS_MAX)?;
    event_id_list(version, obj, "auth_events", AUTH_EVENTS_MAX)?;
    // Canonical JSON's range from v6; before, any integer (`depth` below
    // 2^63, as `pdu_v1` says).
    let (min, max) = if version.strict_canonical_json {
        (MIN_SAFE_INTEGER, MAX_SAFE_INTEGER)
    } else {
        (i64::MIN, i64::MAX)
    };
    let depth = required_integer(obj, "depth")?;
    if !(0..=max).contains(&depth) {
        return Err(EventError::Invalid("depth"));
    }
    let ts = required_integer(obj, "origin_server_ts")?;
    if !(min..=max).contains(&ts) {
        return Err(EventError::Invalid("origin_server_ts"));
    }
    let hash = match obj.get("hashes") {
        None => return Err(EventError::Missing("hashes")),
        Some(Value::Object(hashes)) => match hashes.get("sha256") {
            None => return Err(EventError::Missing("hashes.sha256")),
            Some(hash) => hash.as_str().and_then(b64_decode),
        },
        Some(_) => return Err(EventError::Invalid("hashes")),
    };
    if hash.is_none_or(|h| h.len() != 32) {
        return Err(EventError::Invalid("hashes.sha256"));
    }
    match obj.get("signatures") {
        None => return Err(EventError::Missing("signatures")),
        Some(Value::Object(by_server)) => {
            let well_formed = by_server
                .values()
                .all(|keys| keys.as_object().is_some_and(|keys| keys.values().all(Value::is_string)));
            if !well_formed {
                return Err(EventError::Invalid("signatures"));
            }
        }
        Some(_) => return Err(EventError::Invalid("signatures")),
    }
    if obj.get("unsigned").is_some_and(|u| !u.is_object()) {
        return Err(EventError::Invalid("unsigned"));
    }
    if version.redacts_in_content {
        if kind == "m.room.redaction" && content.contains_key("redacts") {
            optional_event_id(content, "content.redacts", "redacts")?;
        }
    } else if obj.contains_key("redacts") {
        optional_event_id(obj, "redacts", "redacts")?;
    }
    check_limits(event)
}

/// True if an event of type `kind` must have no `room_id` in `version`.
pub(super) fn forbids_room_id(version: &RoomVersion, kind: &str) -> bool {
    version.room_id_from_create && kind == "m.room.create"
}

/// The servers whose signatures `event` needs (the server-server API's
/// "Validating hashes and signatures on received events" and the auth
/// rules of v8 on): the sender's; in v1–v2 also the server of the event
/// ID; for a join through a restricted join rule (v8 on), the server of
/// `join_authorised_via_users_server`. Each server once, the sender's
/// first. Third-party invites are the caller's to special-case.
pub fn required_signers(version: &RoomVersion, event: &Value) -> Result<Vec<String>, EventError> {
    let sender = event.get("sender").and_then(Value::as_str).ok_or(EventError::Missing("sender"))?;
    let (_, sender_server) = ids::parse_user_id(sender).ok_or(EventError::Invalid("sender"))?;
    let mut servers = vec![sender_server.to_owned()];
    let mut add = |server: &str| {
        if !servers.iter().any(|s| s == server) {
            servers.push(server.to_owned());
        }
    };
    if version.event_id_in_event() {
        let id = event_id(version, event)?;
        add(event_id_server(&id).ok_or(EventError::Invalid("event_id"))?);
    }
    if version.restricted_joins && event.get("type").and_then(Value::as_str) == Some("m.room.member") {
        if let Some(authoriser) = event.pointer("/content/join_authorised_via_users_server") {
            let authoriser = authoriser.as_str().and_then(ids::parse_user_id);
            let (_, server) =
                authoriser.ok_or(EventError::Invalid("content.join_authorised_via_users_server"))?;
            add(server);
        }
    }
    Ok(servers)
}

pub(super) fn check_room_id(room_id: &str) -> Result<(), EventError> {
    check_len("room_id", room_id, ROOM_ID_MAX_BYTES)?;
    if room_id.len() < 2 || !room_id.starts_with('!') {
        return Err(EventError::Invalid("room_id"));
    }
    Ok(())
}

pub(super) fn check_event_id(field: &'static str, id: &str) -> Result<(), EventError> {
    check_len(field, id, EVENT_ID_MAX_BYTES)?;
    if id.len() < 2 || !id.starts_with('$') {
        return Err(EventError::Invalid(field));
    }
    Ok(())
}

/// A v1–v2 event ID: `$`, a non-empty opaque part, `:` and the server
/// name of the server that made it, at most [`EVENT_ID_MAX_BYTES`].
pub(super) fn check_opaque_event_id(field: &'static str, id: &str) -> Result<(), EventError> {
    check_event_id(field, id)?;
    let opaque_ok = id[1..].split_once(':').is_some_and(|(opaque, server)| {
        !opaque.is_empty()
            && opaque.bytes().all(|b| b.is_ascii_graphic())
            && ids::is_valid_server_name(server)
    });
    if opaque_ok {
        Ok(())
    } else {
        Err(EventError::Invalid(field))
    }
}

/// The event ID in one entry of `prev_events` or `auth_events`: a string,
/// or in v1–v2 an `[event_id, {"sha256": …}]` pair. `None` if malformed.
pub(super) fn reference_id<'a>(version: &RoomVersion, item: &'a Value) -> Option<&'a str> {
    if !version.references_carry_hashes() {
        return item.as_str();
    }
    match item.as_array().map(Vec::as_slice) {
        Some([Value::String(id), Value::Object(hashes)]) => {
            hashes.values().all(Value::is_string).then_some(id.as_str())
        }
        _ => None,
    }
}

pub(super) fn check_event_ids<'a>(
    field: &'static str,
    ids: impl ExactSizeIterator<Item = &'a str>,
    max: usize,
) -> Result<(), EventError> {
    if ids.len() > max {
        return Err(EventError::TooMany(field));
    }
    for id in ids {
        check_event_id(field, id)?;
    }
    Ok(())
}

/// Returns the string under `field`, which must be present and at most
/// `max` bytes.
pub(super) fn required_str<'a>(
    obj: &'a Map<String, Value>,
    field: &'static str,
    max: usize,
) -> Result<&'a str, EventError> {
    match obj.get(field) {
        None => Err(EventError::Missing(field)),
        Some(Value::String(s)) => {
            check_len(field, s, max)?;
            Ok(s)
        }
        Some(_) => Err(EventError::Invalid(field)),
    }
}

/// Returns the JSON integer under `field`, which must be present. Floats,
/// even integral ones, and integers beyond `i64` are invalid.
pub(super) fn required_integer(obj: &Map<String, Value>, field: &'static str) -> Result<i64, EventError> {
    match obj.get(field) {
        None => Err(EventError::Missing(field)),
        Some(Value::Number(n)) if !n.is_f64() => n.as_i64().ok_or(EventError::Invalid(field)),
        Some(_) => Err(EventError::Invalid(field)),
    }
}

/// Checks that `obj[key]`, if present, is an event ID; errors name `field`.
pub(super) fn optional_event_id(
    obj: &Map<String, Value>,
    field: &'static str,
    key: &str,
) -> Result<(), EventError> {
    match obj.get(key) {
        None => Ok(()),
        Some(Value::String(id)) => check_event_id(field, id),
        Some(_) => Err(EventError::Invalid(field)),
    }
}

/// Checks that `obj[field]` is a list of at most `max` event references in
/// the version's format (see [`reference_id`]).
pub(super) fn event_id_list(
    version: &RoomVersion,
    obj: &Map<String, Value>,
    field: &'static str,
    max: usize,
) -> Result<(), EventError> {
    let items = match obj.get(field) {
        None => return Err(EventError::Missing(field)),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(EventError::Invalid(field)),
    };
    if items.len() > max {
        return Err(EventError::TooMany(field));
    }
    for item in items {
        let Some(id) = reference_id(version, item) else {
            return Err(EventError::Invalid(field));
        };
        check_event_id(field, id)?;
    }
    Ok(())
}
