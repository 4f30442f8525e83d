//! Stored events in the client format: the PDU's client-visible fields plus
//! `unsigned` (`age`, `transaction_id` for the sending device only,
//! `prev_content` of state events, `redacted_because`), and erased
//! senders' events redacted for those who join later.
//!
//! **Erasure.** The events of a user who asked for erasure on
//! deactivation (`storage::users::erased_at`) are served redacted (the
//! room version's algorithm) to anyone who could not see them before the
//! erasure: users who were neither joined when the event was sent nor
//! joined when the erasure was asked. The spec's rule: those who join
//! later get redacted copies, those who had them keep them.
//!
//! A stored PDU that cannot be parsed is logged and left out
//! (`rooms::readable_pdu`): the event is absent from lists, and what it
//! would add to another event's `unsigned` is omitted.

use rusqlite::Connection;
use serde_json::{json, Map, Value};

use crate::core::redaction::redact;
use crate::error::Result;
use crate::rooms::readable_pdu;
use crate::rooms::visibility::Visibility;
use crate::storage::events::{self, Dir, StoredEvent};
use crate::storage::{receipts, relations, state, users};

/// Who is looking, so that `transaction_id` reaches only the sending device.
#[derive(Debug, Clone, Copy)]
pub struct Viewer<'a> {
    pub user_id: &'a str,
    pub device_id: &'a str,
}

/// The client-format event, without `unsigned`.
fn base(e: &StoredEvent, pdu: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("event_id".into(), json!(e.event_id));
    out.insert("room_id".into(), json!(e.room_id));
    out.insert("sender".into(), json!(e.sender));
    out.insert("type".into(), json!(e.kind));
    out.insert("origin_server_ts".into(), json!(e.origin_ts));
    out.insert("content".into(), pdu.get("content").cloned().unwrap_or_else(|| json!({})));
    if let Some(key) = &e.state_key {
        out.insert("state_key".into(), json!(key));
    }
    // Clients of every room version find the redacted event at the top
    // level and, as v11 asks servers to serve older versions' redactions,
    // in `content` too; from v11 the PDU carries it in content only.
    if e.kind == "m.room.redaction" {
        let redacts = pdu.get("redacts").or_else(|| pdu.pointer("/content/redacts")).cloned();
        if let Some(r) = redacts {
            if let Some(Value::Object(content)) = out.get_mut("content") {
                content.entry("redacts").or_insert_with(|| r.clone());
            }
            out.insert("redacts".into(), r);
        }
    }
    out
}

/// Which bundled aggregations (`unsigned.m.relations`) an event gets: all
/// of them for the events a client asked for, only its edit for an event
/// inside another's aggregation (a thread's latest reply), none for the
/// edit itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bundle {
    All,
    EditOnly,
    None,
}

/// Formats one event for a client, with its bundled aggregations; `None`
/// if its stored PDU cannot be read.
pub fn client_event(
    conn: &Connection,
    e: &StoredEvent,
    viewer: Option<Viewer>,
    now: i64,
) -> Result<Option<Value>> {
    format_event(conn, e, viewer, now, Bundle::All)
}

fn format_event(
    conn: &Connection,
    e: &StoredEvent,
    viewer: Option<Viewer>,
    now: i64,
    bundle: Bundle,
) -> Result<Option<Value>> {
    let Some(mut pdu) = readable_pdu(e) else { return Ok(None) };
    let mut membership = None;
    if let Some(v) = viewer {
        membership = membership_at(conn, e, &pdu, v.user_id)?;
    }
    if let Some(erased_pos) = users::erased_at(conn, &e.sender)? {
        if !saw_before_erasure(conn, e, viewer, membership.as_deref(), erased_pos)? {
            let (_, version) = crate::rooms::room_and_version(conn, &e.room_id)?;
            pdu = redact(version, &pdu);
        }
    }
    let mut out = base(e, &pdu);
    let mut unsigned = Map::new();
    unsigned.insert("age".into(), json!((now - e.origin_ts).max(0)));
    if let (Some(v), Some(device), Some(txn)) = (viewer, &e.txn_device, &e.txn_id) {
        if v.user_id == e.sender && v.device_id == device {
            unsigned.insert("transaction_id".into(), json!(txn));
        }
    }
    if let Some(m) = membership {
        unsigned.insert("membership".into(), json!(m));
    }
    if let Some(key) = &e.state_key {
        if let Some(prev_id) = state::group_entry(conn, e.state_before, &e.kind, key)? {
            if let Some(prev) = events::get(conn, &prev_id)? {
                unsigned.insert("replaces_state".into(), json!(prev_id));
                unsigned.insert("prev_sender".into(), json!(prev.sender));
                if let Some(c) = readable_pdu(&prev).as_ref().and_then(|p| p.get("content")) {
                    unsigned.insert("prev_content".into(), c.clone());
                }
            }
        }
    }
    if let Some(by) = &e.redacted_by {
        if let Some(redaction) = events::get(conn, by)? {
            // Unreadable, the redaction still marks the event redacted.
            let r_pdu = readable_pdu(&redaction).unwrap_or_else(|| json!({}));
            let mut because = base(&redaction, &r_pdu);
            because.insert("unsigned".into(), json!({ "age": (now - redaction.origin_ts).max(0) }));
            unsigned.insert("redacted_because".into(), Value::Object(because));
        }
    }
    if bundle != Bundle::None {
        if let Some(relations) = aggregations(conn, e, &pdu, viewer, now, bundle)? {
            unsigned.insert("m.relations".into(), relations);
        }
    }
    out.insert("unsigned".into(), Value::Object(unsigned));
    Ok(Some(Value::Object(out)))
}

/// Most event IDs in an `m.reference` aggregation's chunk.
const REFERENCES_MAX: usize = 100;
/// Most of a thread's newest replies looked at for one the viewer may see.
const THREAD_LATEST_SCAN_MAX: usize = 20;
/// Most edits of one event looked at for the newest valid one (the
/// newest are looked at first; invalid ones are rare).
const EDITS_SCAN_MAX: usize = 20;

/// The bundled aggregations of an event (the spec's "Aggregations of
/// child events"): `m.replace` (its newest valid edit), `m.thread` (the
/// latest reply the viewer may see, how many, and whether they took part) and
/// `m.reference` (the IDs of the events referring to it). Annotations are
/// not bundled. An event with no such children costs one index probe.
fn aggregations(
    conn: &Connection,
    e: &StoredEvent,
    pdu: &Value,
    viewer: Option<Viewer>,
    now: i64,
    bundle: Bundle,
) -> Result<Option<Value>> {
    let summary = relations::summary(conn, &e.event_id)?;
    let mut out = Map::new();
    // A redacted event keeps no edit: what it was replaced by went with it.
    if summary.replaces && e.redacted_by.is_none() {
        if let Some(edit) = newest_edit(conn, e, pdu)? {
            if let Some(v) = format_event(conn, &edit, viewer, now, Bundle::None)? {
                out.insert("m.replace".into(), v);
            }
        }
    }
    if bundle == Bundle::All {
        if let Some(latest_pos) = summary.thread_latest {
            // The newest reply the viewer may see (one who left does not
            // see the replies after their leave); none among the newest
            // few: no summary.
            let latest = match viewer {
                None => events::at_pos(conn, latest_pos)?,
                Some(v) => {
                    let mut vis = Visibility::new(conn, v.user_id, &e.room_id);
                    let mut found = None;
                    for reply in relations::children(
                        conn,
                        &e.event_id,
                        "m.thread",
                        relations::Newest::Arrived,
                        THREAD_LATEST_SCAN_MAX,
                    )? {
                        if reply.room_id == e.room_id && vis.may_see(&reply)? {
                            found = Some(reply);
                            break;
                        }
                    }
                    found
                }
            };
            if let Some(latest) = latest {
                if let Some(latest_json) = format_event(conn, &latest, viewer, now, Bundle::EditOnly)? {
                    let participated = match viewer {
                        Some(v) => {
                            v.user_id == e.sender
                                || relations::replied_in_thread(conn, &e.event_id, v.user_id)?
                        }
                        None => false,
                    };
                    out.insert(
                        "m.thread".into(),
                        json!({
                            "latest_event": latest_json,
                            "count": summary.thread_count,
                            "current_user_participated": participated,
                        }),
                    );
                }
            }
        }
        if summary.references {
            let chunk: Vec<Value> = relations::child_ids(conn, &e.event_id, "m.reference", REFERENCES_MAX)?
                .into_iter()
                .map(|id| json!({ "event_id": id }))
                .collect();
            out.insert("m.reference".into(), json!({ "chunk": chunk }));
        }
    }
    Ok((!out.is_empty()).then_some(Value::Object(out)))
}

/// The newest edit of `original` that the replacement rules accept: same
/// room, same sender, same type, neither a state event, the original not
/// itself an edit, and (unencrypted) an `m.new_content` object. Ordered by
/// `origin_server_ts`, then event ID, as the spec orders edits.
fn newest_edit(conn: &Connection, original: &StoredEvent, pdu: &Value) -> Result<Option<StoredEvent>> {
    if original.state_key.is_some() {
        return Ok(None);
    }
    let rel_type = pdu.pointer("/content/m.relates_to/rel_type").and_then(Value::as_str);
    if rel_type == Some("m.replace") {
        return Ok(None);
    }
    for edit in
        relations::children(conn, &original.event_id, "m.replace", relations::Newest::Sent, EDITS_SCAN_MAX)?
    {
        if edit.room_id != original.room_id
            || edit.sender != original.sender
            || edit.kind != original.kind
            || edit.state_key.is_some()
        {
            continue;
        }
        if edit.kind != "m.room.encrypted" {
            let Some(edit_pdu) = readable_pdu(&edit) else { continue };
            if !edit_pdu.pointer("/content/m.new_content").is_some_and(Value::is_object) {
                continue;
            }
        }
        return Ok(Some(edit));
    }
    Ok(None)
}

/// For an event of a user who asked for erasure at stream position
/// `erased_pos`: could the viewer see it before? They could if they were
/// joined when it was sent (`membership`, theirs before the event) or when
/// the erasure was asked. Nobody else (no viewer, a later joiner, a guest
/// of a world-readable room) gets the original.
fn saw_before_erasure(
    conn: &Connection,
    e: &StoredEvent,
    viewer: Option<Viewer>,
    membership: Option<&str>,
    erased_pos: i64,
) -> Result<bool> {
    let Some(v) = viewer else { return Ok(false) };
    if membership == Some("join") {
        return Ok(true);
    }
    // The room's last event at or before the erasure, and the viewer's
    // membership after it.
    let Some(last) =
        events::room_events(conn, &e.room_id, erased_pos.saturating_add(1), None, Dir::Backward, 1)?
            .into_iter()
            .next()
    else {
        return Ok(false);
    };
    let member_id = if last.kind == "m.room.member" && last.state_key.as_deref() == Some(v.user_id) {
        Some(last.event_id.clone())
    } else {
        state::group_entry(conn, last.state_before, "m.room.member", v.user_id)?
    };
    let Some(member) = member_id.map(|id| events::get(conn, &id)).transpose()?.flatten() else {
        return Ok(false);
    };
    let joined = readable_pdu(&member)
        .and_then(|p| p.pointer("/content/membership").and_then(Value::as_str).map(|m| m == "join"));
    Ok(joined == Some(true))
}

/// Memberships looked up per state group, kept per thread. State groups
/// never change, so entries never go stale; the map is cleared when full.
const MEMBERSHIP_CACHE_MAX: usize = 4096;

thread_local! {
    static MEMBERSHIP_CACHE: std::cell::RefCell<std::collections::HashMap<(i64, String), Option<String>>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// The viewer's membership at the time of an event (`unsigned.membership`):
/// after it for their own membership events, else as it stood before it.
fn membership_at(conn: &Connection, e: &StoredEvent, pdu: &Value, user_id: &str) -> Result<Option<String>> {
    if e.kind == "m.room.member" && e.state_key.as_deref() == Some(user_id) {
        return Ok(pdu.pointer("/content/membership").and_then(Value::as_str).map(str::to_owned));
    }
    let key = (e.state_before, user_id.to_owned());
    if let Some(hit) = MEMBERSHIP_CACHE.with(|c| c.borrow().get(&key).cloned()) {
        return Ok(hit);
    }
    let membership = match state::group_entry(conn, e.state_before, "m.room.member", user_id)? {
        Some(id) => events::get(conn, &id)?
            .and_then(|m| readable_pdu(&m))
            .and_then(|p| p.pointer("/content/membership").and_then(Value::as_str).map(str::to_owned)),
        None => None,
    };
    MEMBERSHIP_CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= MEMBERSHIP_CACHE_MAX {
            c.clear();
        }
        c.insert(key, membership.clone());
    });
    Ok(membership)
}

/// Formats a list of events, leaving out those that cannot be read.
pub fn client_events(
    conn: &Connection,
    list: &[StoredEvent],
    viewer: Option<Viewer>,
    now: i64,
) -> Result<Vec<Value>> {
    let mut out = Vec::with_capacity(list.len());
    for e in list {
        out.extend(client_event(conn, e, viewer, now)?);
    }
    Ok(out)
}
/// The content of the `m.receipt` event for a room's receipts that changed
/// in `(from, upto]`, as `viewer` may see them: private receipts only for
/// their owner. Empty when nothing changed.
pub fn receipt_content(
    conn: &Connection,
    room_id: &str,
    from: i64,
    upto: i64,
    viewer: &str,
) -> Result<Map<String, Value>> {
    let mut content = Map::new();
    for r in receipts::changed(conn, room_id, from, upto)? {
        if r.receipt_type == "m.read.private" && r.user_id != viewer {
            continue;
        }
        let mut entry = json!({ "ts": r.ts });
        if !r.thread_id.is_empty() {
            entry["thread_id"] = json!(r.thread_id);
        }
        let by_event = content.entry(r.event_id).or_insert_with(|| json!({}));
        by_event[&r.receipt_type][&r.user_id] = entry;
    }
    Ok(content)
}
