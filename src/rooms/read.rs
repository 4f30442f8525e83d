//! Reading a room: stored PDUs parsed strictly (for the checks that
//! protect a room) or leniently (for readers), current state events, the
//! power levels, and the state at any event. Below the rest of the room
//! service and the push rules, which both read rooms this way.

use rusqlite::Connection;
use serde_json::Value;

use crate::core::power_levels::{Creators, PowerLevels};
use crate::core::room_version::RoomVersion;
use crate::error::{Error, Result};
use crate::storage::events::{self, StoredEvent};
use crate::storage::state;

/// Membership events followed back in search of a user's last join.
const MEMBERSHIP_HOPS_MAX: usize = 64;

/// Parses a stored PDU, for the checks that protect a room (auth events,
/// power levels, redaction): one that cannot be parsed fails the request,
/// as guessing its content could let an event through that the rules
/// refuse. Readers use [`readable_pdu`].
pub fn pdu_json(e: &StoredEvent) -> Result<Value> {
    serde_json::from_str(&e.pdu).map_err(|err| Error::internal(format!("stored PDU {}: {err}", e.event_id)))
}

/// Parses a stored PDU for a reader. One that cannot be parsed (stored
/// before the nesting limit, or damaged) is logged and is `None`: the
/// reader leaves the event out rather than fail its whole answer, so one
/// bad row never breaks `/sync` or `/messages` for a room.
pub fn readable_pdu(e: &StoredEvent) -> Option<Value> {
    match serde_json::from_str(&e.pdu) {
        Ok(pdu) => Some(pdu),
        Err(err) => {
            crate::log::warn(format_args!(
                "skipping unreadable stored event {} in {}: {err}",
                e.event_id, e.room_id
            ));
            None
        }
    }
}

/// The PDU of an event by ID, if stored (strict, as [`pdu_json`]).
pub fn load_pdu(conn: &Connection, event_id: &str) -> Result<Option<Value>> {
    events::get(conn, event_id)?.map(|e| pdu_json(&e)).transpose()
}

/// The PDU of an event by ID for a reader: absent if not stored or not
/// readable (logged, as [`readable_pdu`]).
pub fn load_readable_pdu(conn: &Connection, event_id: &str) -> Result<Option<Value>> {
    Ok(events::get(conn, event_id)?.and_then(|e| readable_pdu(&e)))
}

/// The current state event of `(kind, state_key)` in a room, as a PDU.
pub fn current_state_event(
    conn: &Connection,
    room_id: &str,
    kind: &str,
    state_key: &str,
) -> Result<Option<Value>> {
    match state::current_entry(conn, room_id, kind, state_key)? {
        Some(id) => load_pdu(conn, &id),
        None => Ok(None),
    }
}

/// The current state event of `(kind, state_key)` for a reader: absent if
/// there is none or it cannot be read (logged, as [`readable_pdu`]).
pub fn current_readable_state_event(
    conn: &Connection,
    room_id: &str,
    kind: &str,
    state_key: &str,
) -> Result<Option<Value>> {
    match state::current_entry(conn, room_id, kind, state_key)? {
        Some(id) => load_readable_pdu(conn, &id),
        None => Ok(None),
    }
}

/// The room's power levels and creators as they are now.
pub fn current_power(
    conn: &Connection,
    room_id: &str,
    version: &RoomVersion,
) -> Result<(PowerLevels, Creators)> {
    let create = current_state_event(conn, room_id, "m.room.create", "")?
        .ok_or_else(|| Error::internal(format!("room {room_id} has no create event")))?;
    let creators = Creators::from_create(version, &create);
    let pl = current_state_event(conn, room_id, "m.room.power_levels", "")?;
    let levels = PowerLevels::from_event(version, pl.as_ref())
        .map_err(|e| Error::internal(format!("stored power levels of {room_id}: {e}")))?;
    Ok((levels, creators))
}

/// The state before an event, as `(type, state_key) → event ID`.
pub fn state_before(conn: &Connection, e: &StoredEvent) -> Result<state::StateMap> {
    state::group_state(conn, e.state_before)
}

/// The state after an event: the state before it plus itself if it is a
/// state event.
pub fn state_after(conn: &Connection, e: &StoredEvent) -> Result<state::StateMap> {
    let mut s = state::group_state(conn, e.state_before)?;
    if let Some(key) = &e.state_key {
        s.insert((e.kind.clone(), key.clone()), e.event_id.clone());
    }
    Ok(s)
}

/// The membership event that ended the user's last stay in the room,
/// following their membership changes back; `None` if they never joined
/// (an invite rejected, say), or the last join is further back than
/// `MEMBERSHIP_HOPS_MAX` changes.
pub fn left_event(conn: &Connection, room_id: &str, user_id: &str) -> Result<Option<StoredEvent>> {
    let mut next = state::current_entry(conn, room_id, "m.room.member", user_id)?;
    let mut later: Option<StoredEvent> = None;
    for _ in 0..MEMBERSHIP_HOPS_MAX {
        let Some(id) = next else { return Ok(None) };
        let Some(e) = events::get(conn, &id)? else { return Ok(None) };
        // An unreadable event (logged) is not a join: look further back.
        let membership = readable_pdu(&e).and_then(|p| p.pointer("/content/membership").cloned());
        if membership.as_ref().and_then(Value::as_str) == Some("join") {
            return Ok(later);
        }
        next = state::group_entry(conn, e.state_before, "m.room.member", user_id)?;
        later = Some(e);
    }
    Ok(None)
}

/// The state types an invited or knocking user is shown (the spec's
/// "stripped state").
pub const STRIPPED_STATE_TYPES: &[&str] = &[
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.encryption",
    "m.room.topic",
];

/// An event as stripped state: type, state key, content, sender.
pub fn stripped(pdu: &Value) -> Value {
    serde_json::json!({
        "type": pdu.get("type"),
        "state_key": pdu.get("state_key"),
        "content": pdu.get("content"),
        "sender": pdu.get("sender"),
    })
}

/// The stripped state of a room for an invite or knock, then the
/// membership event itself. A room known here only by an invite from
/// another server has no state here: the `invite_room_state` its server
/// sent (kept in the invite's `unsigned`) stands in for it.
pub fn stripped_state(
    conn: &Connection,
    room_id: &str,
    membership_event: Option<&str>,
) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for kind in STRIPPED_STATE_TYPES {
        if let Some(id) = state::current_entry(conn, room_id, kind, "")? {
            out.extend(load_readable_pdu(conn, &id)?.map(|p| stripped(&p)));
        }
    }
    if let Some(pdu) = membership_event.map(|id| load_readable_pdu(conn, id)).transpose()?.flatten() {
        if out.is_empty() {
            let sent = pdu.pointer("/unsigned/invite_room_state").and_then(Value::as_array);
            out.extend(sent.into_iter().flatten().filter(|e| e.is_object()).map(stripped));
        }
        out.push(stripped(&pdu));
    }
    Ok(out)
}

/// A room's stripped state for an invite to a user of another server.
pub fn invite_room_state(conn: &Connection, room_id: &str) -> Result<Vec<Value>> {
    stripped_state(conn, room_id, None)
}

/// Most events [`nearest_by_ts`] looks at for one the caller keeps.
pub const TS_SCAN_MAX: usize = 1000;
/// Events read per step by [`nearest_by_ts`].
const TS_SCAN_BATCH: usize = 100;

/// The event of the room nearest to `ts` in the direction `dir` (at or
/// after it forward, at or before it backward) that `keep` accepts (the
/// viewer may see it), looking at most at [`TS_SCAN_MAX`] events: the
/// scan of `timestamp_to_event` for clients and for other servers.
pub fn nearest_by_ts(
    conn: &Connection,
    room_id: &str,
    ts: i64,
    dir: events::Dir,
    keep: &mut dyn FnMut(&StoredEvent) -> Result<bool>,
) -> Result<Option<StoredEvent>> {
    let mut key = match dir {
        events::Dir::Forward => (ts, 0),
        events::Dir::Backward => (ts, i64::MAX),
    };
    let mut scanned = 0;
    while scanned < TS_SCAN_MAX {
        let want = TS_SCAN_BATCH.min(TS_SCAN_MAX - scanned);
        let batch = events::by_ts(conn, room_id, key, dir, want)?;
        let got = batch.len();
        for e in batch {
            scanned += 1;
            key = (e.origin_ts, e.pos);
            if keep(&e)? {
                return Ok(Some(e));
            }
        }
        if got < want {
            break;
        }
    }
    Ok(None)
}
