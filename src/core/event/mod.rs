//! Persistent data units (PDUs): building our own events in the federation
//! format of a room version, hashing and signing them, deriving event and
//! (v12) room IDs, and checking the shape, hashes and signatures of events
//! received from other servers.
//!
//! Every version served (v10 to v12) uses the v4+ event format: the event
//! ID is not part of the event but `$` plus its reference hash. The current
//! spec's PDU format has no `origin` key, so built events carry none.
//! This module never looks keys up, stores events or applies auth rules:
//! callers pass keys in and decide what a failed check means.

use std::fmt;

use serde_json::Value;

use super::ids;
use super::json::{self, DEPTH_MAX};
use super::redaction::redact;
use super::room_version::{Redaction, RoomVersion};
use crate::crypto::canonical::{to_canonical_excluding, CanonicalError, MAX_SAFE_INTEGER, MIN_SAFE_INTEGER};
use crate::crypto::sign::{content_hash, object_at, verify_json, ServerKey};
use crate::crypto::{b64_decode, b64url_encode, sha256};

mod build;
mod check;
pub use build::{build_pdu, PduTemplate};
pub use check::{validate_pdu_shape, verify_content_hash, verify_signature};

/// The largest event, in bytes of canonical JSON with its signatures.
pub const PDU_MAX_BYTES: usize = 65536;

/// The longest event `type`, in bytes.
pub const TYPE_MAX_BYTES: usize = 255;

/// The longest `state_key`, in bytes.
pub const STATE_KEY_MAX_BYTES: usize = 255;

/// The longest room ID, sigil and domain (where present) included, in bytes.
pub const ROOM_ID_MAX_BYTES: usize = 255;

/// The longest event ID, sigil included, in bytes.
pub const EVENT_ID_MAX_BYTES: usize = 255;

/// The most `prev_events` an event may list.
pub const PREV_EVENTS_MAX: usize = 20;

/// The most `auth_events` an event may list.
pub const AUTH_EVENTS_MAX: usize = 10;

/// Top-level keys that the reference hash leaves out after redaction.
/// Redaction already drops `unsigned` and `age_ts`; they are listed so the
/// hash never depends on that.
const UNHASHED_REFERENCE_KEYS: [&str; 3] = ["signatures", "unsigned", "age_ts"];

/// Why an event could not be built, hashed or accepted. Field names are
/// the event's JSON keys, with `.` for nesting.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventError {
    /// The event has no canonical JSON form: it is not an object, or holds a
    /// float or an integer outside the canonical range.
    Canonical(CanonicalError),
    /// The canonical JSON of the event is this many bytes, more than
    /// [`PDU_MAX_BYTES`].
    TooLarge(usize),
    /// The event nests arrays and objects this many levels deep, more than
    /// [`DEPTH_MAX`] (the event itself is the first level).
    TooDeep(usize),
    /// A string is longer than the spec allows for that field.
    TooLong(&'static str),
    /// A list has more entries than the spec allows.
    TooMany(&'static str),
    /// A required field is absent.
    Missing(&'static str),
    /// A field has the wrong JSON type, grammar or range.
    Invalid(&'static str),
    /// A field is present that this room version's format forbids.
    Unexpected(&'static str),
    /// The room version has no such rule, such as room IDs derived from the
    /// create event before v12.
    Unsupported(&'static str),
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventError::Canonical(e) => write!(f, "event has no canonical JSON form: {e}"),
            EventError::TooLarge(n) => write!(f, "event is {n} bytes, more than the {PDU_MAX_BYTES} allowed"),
            EventError::TooDeep(n) => {
                write!(f, "event nests {n} levels deep, more than the {DEPTH_MAX} allowed")
            }
            EventError::TooLong(field) => write!(f, "event field `{field}` is too long"),
            EventError::TooMany(field) => write!(f, "event field `{field}` has too many entries"),
            EventError::Missing(field) => write!(f, "event field `{field}` is missing"),
            EventError::Invalid(field) => write!(f, "event field `{field}` is invalid"),
            EventError::Unexpected(field) => {
                write!(f, "event field `{field}` is not allowed in this room version")
            }
            EventError::Unsupported(what) => write!(f, "the room version does not support {what}"),
        }
    }
}

impl std::error::Error for EventError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EventError::Canonical(e) => Some(e),
            _ => None,
        }
    }
}

impl From<CanonicalError> for EventError {
    fn from(e: CanonicalError) -> Self {
        EventError::Canonical(e)
    }
}

/// Returns the reference hash of `event` in URL-safe unpadded base64: the
/// SHA-256 of the canonical JSON of its redacted form without `signatures`
/// and `unsigned`.
pub fn reference_hash(version: &RoomVersion, event: &Value) -> Result<String, EventError> {
    if !event.is_object() {
        return Err(EventError::Canonical(CanonicalError::NotAnObject));
    }
    let redacted = redact(version, event);
    let canonical = to_canonical_excluding(&redacted, &UNHASHED_REFERENCE_KEYS)?;
    Ok(b64url_encode(&sha256(canonical.as_bytes())))
}

/// Returns the event ID of `event`: `$` and its reference hash.
pub fn event_id(version: &RoomVersion, event: &Value) -> Result<String, EventError> {
    Ok(format!("${}", reference_hash(version, event)?))
}

/// Returns the room ID that a v12 `m.room.create` event founds: `!` and the
/// event's reference hash, with no server name.
pub fn room_id_from_create(version: &RoomVersion, create_event: &Value) -> Result<String, EventError> {
    if !version.room_id_from_create {
        return Err(EventError::Unsupported("room IDs derived from the create event"));
    }
    if create_event.get("type").and_then(Value::as_str) != Some("m.room.create") {
        return Err(EventError::Invalid("type"));
    }
    Ok(format!("!{}", reference_hash(version, create_event)?))
}

/// Sets `hashes.sha256` to the content hash of `event`, then signs the
/// redacted event for `server_name` and adds the signature under
/// `signatures[server_name][key_id]`.
///
/// Other hashes and signatures already present are kept. On error `event`
/// is left unchanged.
pub fn hash_and_sign(
    version: &RoomVersion,
    key: &ServerKey,
    server_name: &str,
    event: &mut Value,
) -> Result<(), EventError> {
    let hash = Value::String(content_hash(event)?);
    // The signature covers the hash, so the redacted copy gets it first.
    let mut redacted = redact(version, event);
    let Some(redacted_obj) = redacted.as_object_mut() else {
        return Err(EventError::Canonical(CanonicalError::NotAnObject));
    };
    object_at(redacted_obj, "hashes").insert("sha256".to_owned(), hash.clone());
    let signature = key.sign_detached(&redacted)?;

    let Some(obj) = event.as_object_mut() else {
        return Err(EventError::Canonical(CanonicalError::NotAnObject));
    };
    object_at(obj, "hashes").insert("sha256".to_owned(), hash);
    let ours = object_at(object_at(obj, "signatures"), server_name);
    ours.insert(key.key_id().to_owned(), Value::String(signature));
    Ok(())
}

/// Refuses an event whose canonical JSON, without `unsigned`, is larger
/// than [`PDU_MAX_BYTES`], or which, `unsigned` included, nests deeper
/// than [`DEPTH_MAX`].
pub(super) fn check_limits(event: &Value) -> Result<(), EventError> {
    let text = to_canonical_excluding(event, &["unsigned"])?;
    if text.len() > PDU_MAX_BYTES {
        return Err(EventError::TooLarge(text.len()));
    }
    let mut deepest = json::depth(text.as_bytes());
    if let Some(unsigned) = event.get("unsigned") {
        // Not canonical: `unsigned` may hold floats, and nesting does not
        // depend on the form. It is one level inside the event.
        let text = serde_json::to_vec(unsigned).map_err(|_| EventError::Invalid("unsigned"))?;
        deepest = deepest.max(1 + json::depth(&text));
    }
    if deepest > DEPTH_MAX {
        return Err(EventError::TooDeep(deepest));
    }
    Ok(())
}

pub(super) fn check_len(field: &'static str, s: &str, max: usize) -> Result<(), EventError> {
    if s.len() > max {
        return Err(EventError::TooLong(field));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
