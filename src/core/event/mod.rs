//! Persistent data units (PDUs): building our own events in the federation
//! format of a room version, hashing and signing them, deriving event and
//! (v12) room IDs, and checking the shape, hashes and signatures of events
//! received from other servers.
//!
//! Event formats, as the room version's [`EventIds`] says:
//!
//! - rooms v1 and v2 (`pdu_v1`): the event carries its own `event_id`,
//!   `$opaque:server`, which is signed with the rest; `prev_events` and
//!   `auth_events` are `[event_id, {"sha256": reference hash}]` pairs;
//! - room v3 (`pdu_v3`): no `event_id`; the ID is `$` and the reference hash
//!   in standard unpadded base64; references are plain event IDs;
//! - rooms v4 on (`pdu_v4`, `pdu_v6`, `pdu_v11`, `pdu_v12`): the same with
//!   URL-safe base64.
//!
//! The current spec's PDU format has no `origin` key, so built events carry
//! none. This module never looks keys up, stores events or applies auth
//! rules: callers pass keys in and decide what a failed check means.

use std::fmt;

use serde_json::Value;

use super::ids;
use super::json::{self, DEPTH_MAX};
use super::redaction::redact;
use super::room_version::{EventIds, RoomVersion};
use crate::crypto::canonical::{to_canonical_excluding, CanonicalError, MAX_SAFE_INTEGER, MIN_SAFE_INTEGER};
use crate::crypto::sign::{content_hash, object_at, verify_json, ServerKey};
use crate::crypto::{b64_decode, b64_encode, b64url_encode, sha256};

mod build;
mod check;
pub use build::{build_pdu, PduTemplate};
pub use check::{
    required_signers, validate_pdu_shape, verify_content_hash, verify_signature, verify_signature_of_form,
};

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

/// The SHA-256 of the canonical JSON of the redacted form of `event`
/// without `signatures` and `unsigned`: the server-server API's "reference
/// hash".
fn reference_digest(version: &RoomVersion, event: &Value) -> Result<[u8; 32], EventError> {
    Ok(sha256(signed_form(version, event)?.as_bytes()))
}

/// The canonical JSON that an event's signatures cover and, from v3, its
/// ID hashes: the redacted event without `signatures` (redaction already
/// drops `unsigned` and `age_ts`). Made once, it serves both checks.
pub fn signed_form(version: &RoomVersion, event: &Value) -> Result<String, EventError> {
    if !event.is_object() {
        return Err(EventError::Canonical(CanonicalError::NotAnObject));
    }
    Ok(to_canonical_excluding(&redact(version, event), &UNHASHED_REFERENCE_KEYS)?)
}

/// Returns the reference hash of `event`, encoded as the version's event
/// IDs encode it: URL-safe unpadded base64 from v4, standard unpadded
/// base64 before (which is also what the `[event_id, {"sha256": …}]`
/// references of v1–v2 carry).
pub fn reference_hash(version: &RoomVersion, event: &Value) -> Result<String, EventError> {
    let digest = reference_digest(version, event)?;
    Ok(match version.event_ids {
        EventIds::UrlSafeHash => b64url_encode(&digest),
        EventIds::Opaque | EventIds::Hash => b64_encode(&digest),
    })
}

/// Returns the event ID of `event`: from v3, `$` and its reference hash;
/// in v1–v2 the `event_id` the event carries, which must be of the form
/// `$opaque:server`.
pub fn event_id(version: &RoomVersion, event: &Value) -> Result<String, EventError> {
    match version.event_ids {
        EventIds::Opaque => opaque_event_id(event),
        EventIds::Hash | EventIds::UrlSafeHash => Ok(format!("${}", reference_hash(version, event)?)),
    }
}

/// [`event_id`] from the event's [`signed_form`], already made.
pub fn event_id_of_form(version: &RoomVersion, event: &Value, signed: &str) -> Result<String, EventError> {
    let digest = sha256(signed.as_bytes());
    match version.event_ids {
        EventIds::Opaque => opaque_event_id(event),
        EventIds::Hash => Ok(format!("${}", b64_encode(&digest))),
        EventIds::UrlSafeHash => Ok(format!("${}", b64url_encode(&digest))),
    }
}

fn opaque_event_id(event: &Value) -> Result<String, EventError> {
    let id = event.get("event_id").ok_or(EventError::Missing("event_id"))?;
    let id = id.as_str().ok_or(EventError::Invalid("event_id"))?;
    check::check_opaque_event_id("event_id", id)?;
    Ok(id.to_owned())
}

/// The server name of a v1–v2 event ID (`$opaque:server`), if it has one.
pub fn event_id_server(event_id: &str) -> Option<&str> {
    event_id.strip_prefix('$')?.split_once(':').map(|(_, server)| server)
}

/// The event IDs an event cites in `field` (`prev_events` or
/// `auth_events`), in the version's format: plain IDs, or from v1–v2
/// `[event_id, {"sha256": …}]` pairs. A malformed list is an error naming
/// the field; a missing or null one is empty.
pub fn referenced_ids<'a>(
    version: &RoomVersion,
    event: &'a Value,
    field: &'static str,
) -> Result<Vec<&'a str>, EventError> {
    let items = match event.get(field) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(EventError::Invalid(field)),
    };
    items.iter().map(|item| check::reference_id(version, item).ok_or(EventError::Invalid(field))).collect()
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
