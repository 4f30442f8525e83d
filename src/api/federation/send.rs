//! `PUT /_matrix/federation/v1/send/{txnId}`: a transaction of PDUs and
//! EDUs from another server. Idempotent per (origin, txnId): a retried
//! transaction gets the first answer again and nothing is done twice.
//! At most `PDUS_MAX` PDUs and `EDUS_MAX` EDUs (400 past them).
//!
//! The PDUs go through `federation::pdus::receive_all` (the checks on
//! receipt, then the room's graph); one that fails is named in the answer
//! and the rest go on. Then the EDUs go through
//! `federation::edus::receive_all`, in order.

use serde_json::{json, Map, Value};

use crate::api::{Request, Response};
use crate::app::App;
use crate::core::{event, room_version};
use crate::error::{Error, Result};
use crate::storage::{self, federation as fed_store};

/// PDUs a transaction may carry (the spec's limit).
pub const PDUS_MAX: usize = 50;
/// EDUs a transaction may carry (the spec's limit).
pub const EDUS_MAX: usize = 100;
/// The largest transaction body accepted: 50 PDUs and 100 EDUs of the
/// largest size an event may have (64 KiB) would be ~9.4 MiB; real ones
/// are far smaller.
pub const BODY_MAX: usize = 10 * 1024 * 1024;
/// Transactions remembered for this long (a retry comes within minutes).
pub const REMEMBERED_MS: i64 = 24 * 60 * 60 * 1000;

/// PUT /_matrix/federation/v1/send/{txnId}
pub fn send(app: &App, req: &Request) -> Result<Response> {
    let origin = super::origin(req)?;
    let txn_id = req.param("txnId");
    if let Some(answer) = app.db.read(|tx| fed_store::txn_in(tx, origin, txn_id))? {
        let v: Value = serde_json::from_str(&answer).map_err(|e| Error::internal(e.to_string()))?;
        return Response::ok(v);
    }
    let body = req.json_value()?;
    let obj = body.as_object().ok_or_else(|| Error::bad_json("The body must be a JSON object"))?;
    if let Some(o) = obj.get("origin") {
        if o.as_str() != Some(origin) {
            return Err(Error::bad_json("origin must be the server that signed the request"));
        }
    }
    let pdus = match obj.get("pdus") {
        Some(Value::Array(p)) => p.as_slice(),
        Some(_) => return Err(Error::bad_json("pdus must be an array")),
        None => return Err(Error::missing_param("pdus is required")),
    };
    let edus = match obj.get("edus") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(e)) => e.as_slice(),
        Some(_) => return Err(Error::bad_json("edus must be an array")),
    };
    if pdus.len() > PDUS_MAX {
        return Err(Error::bad_json(format!("A transaction carries at most {PDUS_MAX} PDUs")));
    }
    if edus.len() > EDUS_MAX {
        return Err(Error::bad_json(format!("A transaction carries at most {EDUS_MAX} EDUs")));
    }
    let mut results = Map::new();
    let received = crate::federation::pdus::receive_all(app, origin, pdus);
    for (pdu, (id, outcome)) in pdus.iter().zip(received) {
        let id = match id {
            Some(id) => id,
            None => match app.db.read(|tx| pdu_event_id(tx, pdu))? {
                Some(id) => id,
                None => continue,
            },
        };
        let result = match outcome {
            Ok(()) => json!({}),
            Err(error) => json!({ "error": error }),
        };
        results.insert(id, result);
    }
    crate::federation::edus::receive_all(app, origin, edus);
    let answer = json!({ "pdus": results });
    let text = answer.to_string();
    let now = storage::now_ms();
    app.db.write(|tx| {
        fed_store::put_txn_in(tx, origin, txn_id, &text, now)?;
        fed_store::prune_txns_in(tx, now - REMEMBERED_MS)?;
        Ok(())
    })?;
    Response::ok(answer)
}

/// The event ID of a received PDU: in its room's version's format when
/// the room is known here (versions 1 and 2 carry their own), else its own
/// `event_id` if it has one, else the reference hash in the format of
/// versions 4 on.
fn pdu_event_id(conn: &rusqlite::Connection, pdu: &Value) -> Result<Option<String>> {
    let known = match pdu.get("room_id").and_then(Value::as_str) {
        Some(room_id) => storage::rooms::get(conn, room_id)?.and_then(|r| room_version::get(&r.version)),
        None => None,
    };
    if let Some(version) = known {
        return Ok(event::event_id(version, pdu).ok());
    }
    if let Some(id) = pdu.get("event_id").and_then(Value::as_str) {
        return Ok(Some(id.to_owned()));
    }
    Ok(room_version::get("10").and_then(|v| event::event_id(v, pdu).ok()))
}
