//! Stored events in the client format: the PDU's client-visible fields plus
//! `unsigned` (`age`, `transaction_id` for the sending device only,
//! `prev_content` of state events, `redacted_because`).

use rusqlite::Connection;
use serde_json::{json, Map, Value};

use crate::error::Result;
use crate::rooms::pdu_json;
use crate::storage::events::{self, StoredEvent};
use crate::storage::state;

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
    // level; from v11 the PDU carries it in content.
    if e.kind == "m.room.redaction" {
        let redacts = pdu.get("redacts").or_else(|| pdu.pointer("/content/redacts"));
        if let Some(r) = redacts {
            out.insert("redacts".into(), r.clone());
        }
    }
    out
}

/// Formats one event for a client.
pub fn client_event(conn: &Connection, e: &StoredEvent, viewer: Option<Viewer>, now: i64) -> Result<Value> {
    let pdu = pdu_json(e)?;
    let mut out = base(e, &pdu);
    let mut unsigned = Map::new();
    unsigned.insert("age".into(), json!((now - e.origin_ts).max(0)));
    if let (Some(v), Some(device), Some(txn)) = (viewer, &e.txn_device, &e.txn_id) {
        if v.user_id == e.sender && v.device_id == device {
            unsigned.insert("transaction_id".into(), json!(txn));
        }
    }
    if let Some(key) = &e.state_key {
        if let Some(prev_id) = state::group_entry(conn, e.state_before, &e.kind, key)? {
            if let Some(prev) = events::get(conn, &prev_id)? {
                let prev_pdu = pdu_json(&prev)?;
                unsigned.insert("replaces_state".into(), json!(prev_id));
                unsigned.insert("prev_sender".into(), json!(prev.sender));
                if let Some(c) = prev_pdu.get("content") {
                    unsigned.insert("prev_content".into(), c.clone());
                }
            }
        }
    }
    if let Some(by) = &e.redacted_by {
        if let Some(redaction) = events::get(conn, by)? {
            let r_pdu = pdu_json(&redaction)?;
            let mut because = base(&redaction, &r_pdu);
            because.insert("unsigned".into(), json!({ "age": (now - redaction.origin_ts).max(0) }));
            unsigned.insert("redacted_because".into(), Value::Object(because));
        }
    }
    out.insert("unsigned".into(), Value::Object(unsigned));
    Ok(Value::Object(out))
}

/// Formats a list of events.
pub fn client_events(
    conn: &Connection,
    list: &[StoredEvent],
    viewer: Option<Viewer>,
    now: i64,
) -> Result<Vec<Value>> {
    list.iter().map(|e| client_event(conn, e, viewer, now)).collect()
}
