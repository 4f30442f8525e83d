//! Building this server's own events: a PDU in the room version's format
//! from a template, hashed and signed, with its event ID.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::check::{check_event_id, check_event_ids, check_opaque_event_id, check_room_id, forbids_room_id};
use super::*;

/// What a new event says; [`build_pdu`] adds hashes and signatures and
/// lays it out in the room version's format.
#[derive(Debug, Clone, PartialEq)]
pub struct PduTemplate {
    /// Rooms v1–v2 only, where it is required: the new event's ID,
    /// `$opaque:server` with this server's name (the caller picks the
    /// opaque part, randomly). From v3 the ID is the event's hash and this
    /// must be `None`.
    pub event_id: Option<String>,
    /// The room; `None` only for a v12 `m.room.create`, whose ID derives
    /// from the event itself.
    pub room_id: Option<String>,
    pub sender: String,
    /// The event `type`.
    pub kind: String,
    /// Present for state events.
    pub state_key: Option<String>,
    /// Must be a JSON object.
    pub content: Value,
    /// The redacted event, for `m.room.redaction` only. Up to v10 it is a
    /// top-level key; from v11 it goes into `content`.
    pub redacts: Option<String>,
    pub prev_events: Vec<String>,
    pub auth_events: Vec<String>,
    /// Rooms v1–v2 only, where references carry hashes: the reference hash
    /// ([`reference_hash`]) of every event in `prev_events` and
    /// `auth_events`, by event ID. Ignored from v3.
    pub reference_hashes: BTreeMap<String, String>,
    pub depth: u64,
    pub origin_server_ts: i64,
}

/// Builds, hashes and signs an event from `t` in the format of `version`.
///
/// Returns the event ID and the signed PDU, which has no `unsigned`, no
/// `event_id` key from v3 (in v1–v2 it carries the template's) and, for a
/// v12 create event, no `room_id`. Refuses a template
/// that breaks the version's format or the spec's size limits, or whose
/// PDU would nest deeper than [`DEPTH_MAX`] (content is one level inside
/// it), so that every stored event can be read back.
pub fn build_pdu(
    version: &RoomVersion,
    key: &ServerKey,
    server_name: &str,
    t: PduTemplate,
) -> Result<(String, Value), EventError> {
    check_len("type", &t.kind, TYPE_MAX_BYTES)?;
    check_len("sender", &t.sender, ids::USER_ID_MAX_BYTES)?;
    if ids::parse_user_id(&t.sender).is_none() {
        return Err(EventError::Invalid("sender"));
    }
    if let Some(state_key) = &t.state_key {
        check_len("state_key", state_key, STATE_KEY_MAX_BYTES)?;
    }
    let room_id_forbidden = forbids_room_id(version, &t.kind);
    match (&t.room_id, room_id_forbidden) {
        (Some(_), true) => return Err(EventError::Unexpected("room_id")),
        (None, false) => return Err(EventError::Missing("room_id")),
        (Some(room_id), false) => check_room_id(room_id)?,
        (None, true) => {}
    }
    match (&t.event_id, version.event_id_in_event()) {
        (Some(id), true) => {
            check_opaque_event_id("event_id", id)?;
            if event_id_server(id) != Some(server_name) {
                return Err(EventError::Invalid("event_id"));
            }
        }
        (None, true) => return Err(EventError::Missing("event_id")),
        (Some(_), false) => return Err(EventError::Unexpected("event_id")),
        (None, false) => {}
    }
    check_event_ids("prev_events", t.prev_events.iter().map(String::as_str), PREV_EVENTS_MAX)?;
    check_event_ids("auth_events", t.auth_events.iter().map(String::as_str), AUTH_EVENTS_MAX)?;
    let refs = |field: &'static str, ids: Vec<String>| -> Result<Value, EventError> {
        if !version.references_carry_hashes() {
            return Ok(strings(ids));
        }
        let pairs = ids.into_iter().map(|id| {
            let hash = t.reference_hashes.get(&id).ok_or(EventError::Missing(field))?;
            Ok(serde_json::json!([id, { "sha256": hash }]))
        });
        Ok(Value::Array(pairs.collect::<Result<_, EventError>>()?))
    };
    let prev_events = refs("prev_events.sha256", t.prev_events)?;
    let auth_events = refs("auth_events.sha256", t.auth_events)?;
    if t.depth > MAX_SAFE_INTEGER as u64 {
        return Err(EventError::Invalid("depth"));
    }
    if !(MIN_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&t.origin_server_ts) {
        return Err(EventError::Invalid("origin_server_ts"));
    }
    let Value::Object(mut content) = t.content else {
        return Err(EventError::Invalid("content"));
    };
    let mut top_level_redacts = None;
    if let Some(redacts) = t.redacts {
        if t.kind != "m.room.redaction" {
            return Err(EventError::Unexpected("redacts"));
        }
        check_event_id("redacts", &redacts)?;
        if version.redacts_in_content {
            content.insert("redacts".to_owned(), Value::String(redacts));
        } else {
            top_level_redacts = Some(redacts);
        }
    }

    let mut pdu = Map::new();
    pdu.insert("auth_events".to_owned(), auth_events);
    pdu.insert("content".to_owned(), Value::Object(content));
    pdu.insert("depth".to_owned(), Value::from(t.depth));
    pdu.insert("hashes".to_owned(), Value::Object(Map::new()));
    pdu.insert("origin_server_ts".to_owned(), Value::from(t.origin_server_ts));
    if let Some(id) = t.event_id {
        pdu.insert("event_id".to_owned(), Value::String(id));
    }
    pdu.insert("prev_events".to_owned(), prev_events);
    if let Some(room_id) = t.room_id {
        pdu.insert("room_id".to_owned(), Value::String(room_id));
    }
    pdu.insert("sender".to_owned(), Value::String(t.sender));
    pdu.insert("signatures".to_owned(), Value::Object(Map::new()));
    if let Some(state_key) = t.state_key {
        pdu.insert("state_key".to_owned(), Value::String(state_key));
    }
    pdu.insert("type".to_owned(), Value::String(t.kind));
    if let Some(redacts) = top_level_redacts {
        pdu.insert("redacts".to_owned(), Value::String(redacts));
    }
    let mut pdu = Value::Object(pdu);

    hash_and_sign(version, key, server_name, &mut pdu)?;
    check_limits(&pdu)?;
    let id = event_id(version, &pdu)?;
    Ok((id, pdu))
}

fn strings(items: Vec<String>) -> Value {
    Value::Array(items.into_iter().map(Value::String).collect())
}
