//! Room reads by other servers (Server-Server API: "Retrieving events",
//! "Backfilling and retrieving missing events", "Retrieving event
//! authorisation information"): `/event`, `/state`, `/state_ids`,
//! `/event_auth`, `/backfill`, `/get_missing_events` and
//! `/timestamp_to_event`. Each handler checks its parameters (400
//! `M_INVALID_PARAM` / `M_MISSING_PARAM` for the query and path, `M_BAD_JSON`
//! or `M_MISSING_PARAM` for the body), then calls one function of
//! `federation::room_reads` on a read connection, which applies the room's
//! server ACL and what the origin may see.

use serde_json::{json, Map, Value};

use crate::api::{Request, Response};
use crate::app::App;
use crate::core::ids;
use crate::error::{Error, Result};
use crate::federation::room_reads::{self as reads, Missing};
use crate::storage::events::Dir;

fn room_param(req: &Request) -> Result<&str> {
    let room_id = req.param("roomId");
    if !ids::is_valid_room_id(room_id) {
        return Err(Error::invalid_param("Invalid room ID"));
    }
    Ok(room_id)
}

fn event_id_checked<'a>(id: &'a str, what: &str) -> Result<&'a str> {
    if !ids::is_valid_event_id(id) {
        return Err(Error::invalid_param(format!("{what} is not a valid event ID")));
    }
    Ok(id)
}

fn required<'a>(req: &'a Request, name: &str) -> Result<&'a str> {
    req.query(name).ok_or_else(|| Error::missing_param(format!("{name} is required")))
}

/// A transaction-shaped answer: this server, now, and the PDUs.
fn transaction(app: &App, pdus: Vec<Value>) -> Result<Response> {
    Response::ok(json!({
        "origin": app.config.server_name,
        "origin_server_ts": crate::util::now_ms(),
        "pdus": pdus,
    }))
}

/// GET /_matrix/federation/v1/event/{eventId}
pub fn event(app: &App, req: &Request) -> Result<Response> {
    let origin = super::origin(req)?;
    let event_id = event_id_checked(req.param("eventId"), "eventId")?;
    let pdu = app.db.read(|conn| reads::event(conn, origin, event_id))?;
    transaction(app, vec![pdu])
}

/// GET /_matrix/federation/v1/state/{roomId}?event_id=
pub fn state(app: &App, req: &Request) -> Result<Response> {
    let origin = super::origin(req)?;
    let room_id = room_param(req)?;
    let event_id = event_id_checked(required(req, "event_id")?, "event_id")?;
    let s = app.db.read(|conn| reads::state(conn, origin, room_id, event_id))?;
    Response::ok(json!({ "pdus": s.pdus, "auth_chain": s.auth_chain }))
}

/// GET /_matrix/federation/v1/state_ids/{roomId}?event_id=
pub fn state_ids(app: &App, req: &Request) -> Result<Response> {
    let origin = super::origin(req)?;
    let room_id = room_param(req)?;
    let event_id = event_id_checked(required(req, "event_id")?, "event_id")?;
    let s = app.db.read(|conn| reads::state_ids(conn, origin, room_id, event_id))?;
    Response::ok(json!({ "pdu_ids": s.pdu_ids, "auth_chain_ids": s.auth_chain_ids }))
}

/// GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}
pub fn event_auth(app: &App, req: &Request) -> Result<Response> {
    let origin = super::origin(req)?;
    let room_id = room_param(req)?;
    let event_id = event_id_checked(req.param("eventId"), "eventId")?;
    let chain = app.db.read(|conn| reads::event_auth(conn, origin, room_id, event_id))?;
    Response::ok(json!({ "auth_chain": chain }))
}

/// GET /_matrix/federation/v1/backfill/{roomId}?v=&limit=
///
/// `v` may repeat (at most `BACKFILL_FROM_MAX` distinct events); `limit`
/// is required and capped at `BACKFILL_LIMIT_MAX`.
pub fn backfill(app: &App, req: &Request) -> Result<Response> {
    let origin = super::origin(req)?;
    let room_id = room_param(req)?;
    let mut from: Vec<String> = Vec::new();
    for (_, v) in req.query.iter().filter(|(k, _)| k == "v") {
        event_id_checked(v, "v")?;
        if !from.contains(v) {
            from.push(v.clone());
        }
        if from.len() > reads::BACKFILL_FROM_MAX {
            return Err(Error::invalid_param(format!(
                "Backfill starts from at most {} events",
                reads::BACKFILL_FROM_MAX
            )));
        }
    }
    if from.is_empty() {
        return Err(Error::missing_param("v is required"));
    }
    let limit: usize = required(req, "limit")?
        .parse()
        .map_err(|_| Error::invalid_param("limit must be a non-negative integer"))?;
    let pdus = app.db.read(|conn| reads::backfill(conn, origin, room_id, &from, limit))?;
    transaction(app, pdus)
}

/// A body field that must be a list of event IDs, at most `max` of them.
fn event_list(body: &Map<String, Value>, name: &str, max: usize) -> Result<Vec<String>> {
    let list = match body.get(name) {
        None | Some(Value::Null) => return Err(Error::missing_param(format!("{name} is required"))),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(Error::bad_json(format!("{name} must be a list of event IDs"))),
    };
    if list.len() > max {
        return Err(Error::bad_json(format!("{name} may name at most {max} events")));
    }
    list.iter()
        .map(|v| match v.as_str() {
            Some(id) if ids::is_valid_event_id(id) => Ok(id.to_owned()),
            _ => Err(Error::bad_json(format!("{name} must be a list of event IDs"))),
        })
        .collect()
}

/// A body field that must be an integer of at least `min`, if present.
fn integer(body: &Map<String, Value>, name: &str, min: i64) -> Result<Option<i64>> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_i64() {
            Some(n) if n >= min => Ok(Some(n)),
            _ => Err(Error::bad_json(format!("{name} must be an integer of at least {min}"))),
        },
    }
}

/// POST /_matrix/federation/v1/get_missing_events/{roomId}
///
/// `limit` defaults to `MISSING_LIMIT_DEFAULT` and is capped at
/// `MISSING_LIMIT_MAX`; `min_depth` defaults to 0.
pub fn get_missing_events(app: &App, req: &Request) -> Result<Response> {
    let origin = super::origin(req)?;
    let room_id = room_param(req)?;
    let body = req.json_value()?;
    let body = body.as_object().ok_or_else(|| Error::bad_json("The body must be a JSON object"))?;
    let ask = Missing {
        earliest_events: event_list(body, "earliest_events", reads::MISSING_EARLIEST_MAX)?,
        latest_events: event_list(body, "latest_events", reads::MISSING_LATEST_MAX)?,
        limit: integer(body, "limit", 0)?.map_or(reads::MISSING_LIMIT_DEFAULT, |n| n as usize),
        min_depth: integer(body, "min_depth", i64::MIN)?.unwrap_or(0),
    };
    let events = app.db.read(|conn| reads::missing_events(conn, origin, room_id, &ask))?;
    Response::ok(json!({ "events": events }))
}

/// GET /_matrix/federation/v1/timestamp_to_event/{roomId}?ts=&dir=
pub fn timestamp_to_event(app: &App, req: &Request) -> Result<Response> {
    let origin = super::origin(req)?;
    let room_id = room_param(req)?;
    let ts: i64 = required(req, "ts")?
        .parse()
        .map_err(|_| Error::invalid_param("ts must be an integer timestamp in milliseconds"))?;
    let dir = match required(req, "dir")? {
        "f" => Dir::Forward,
        "b" => Dir::Backward,
        _ => return Err(Error::invalid_param("dir must be f or b")),
    };
    let (event_id, origin_server_ts) =
        app.db.read(|conn| reads::timestamp_to_event(conn, origin, room_id, ts, dir))?;
    Response::ok(json!({ "event_id": event_id, "origin_server_ts": origin_server_ts }))
}
