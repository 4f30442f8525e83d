//! Joins, leaves and invites from other servers (`federation::membership`):
//! `make_join`, `send_join` v2, `make_leave`, `send_leave` v2,
//! `make_knock`, `send_knock`, `invite` v2.

use serde_json::{json, Value};

use crate::api::{Request, Response};
use crate::app::App;
use crate::core::ids;
use crate::error::{Error, Result};
use crate::federation::membership;

fn room_id(req: &Request) -> Result<&str> {
    let id = req.param("roomId");
    if ids::is_valid_room_id(id) {
        Ok(id)
    } else {
        Err(Error::invalid_param(format!("{id:?} is not a valid room ID")))
    }
}

fn user_id(req: &Request) -> Result<&str> {
    let id = req.param("userId");
    if ids::parse_user_id(id).is_some() {
        Ok(id)
    } else {
        Err(Error::invalid_param(format!("{id:?} is not a valid user ID")))
    }
}

fn event_id(req: &Request) -> Result<&str> {
    let id = req.param("eventId");
    if id.starts_with('$') && id.len() <= 255 {
        Ok(id)
    } else {
        Err(Error::invalid_param(format!("{id:?} is not a valid event ID")))
    }
}

/// GET /_matrix/federation/v1/make_join/{roomId}/{userId}?ver=…
pub fn make_join(app: &App, req: &Request) -> Result<Response> {
    let origin = super::origin(req)?;
    // No `ver` means the joining server supports version 1 only.
    let mut offered: Vec<&str> =
        req.query.iter().filter(|(k, _)| k == "ver").map(|(_, v)| v.as_str()).take(64).collect();
    if offered.is_empty() {
        offered.push("1");
    }
    let answer = membership::make_member(app, origin, room_id(req)?, user_id(req)?, "join", Some(&offered))?;
    Response::ok(answer)
}

/// PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}
pub fn send_join(app: &App, req: &Request) -> Result<Response> {
    let origin = super::origin(req)?;
    let (room_id, event_id) = (room_id(req)?, event_id(req)?);
    let body = req.json_value()?;
    let (event, _) = membership::send_member(app, origin, room_id, event_id, &body, "join")?;
    Response::ok(membership::join_answer(app, room_id, event_id, event)?)
}

/// GET /_matrix/federation/v1/make_knock/{roomId}/{userId}?ver=…
pub fn make_knock(app: &App, req: &Request) -> Result<Response> {
    let origin = super::origin(req)?;
    let offered: Vec<&str> =
        req.query.iter().filter(|(k, _)| k == "ver").map(|(_, v)| v.as_str()).take(64).collect();
    Response::ok(membership::make_member(app, origin, room_id(req)?, user_id(req)?, "knock", Some(&offered))?)
}

/// PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}: the knock
/// placed, and the room's stripped state for the knocking user.
pub fn send_knock(app: &App, req: &Request) -> Result<Response> {
    let origin = super::origin(req)?;
    let room_id = room_id(req)?;
    let body = req.json_value()?;
    membership::send_member(app, origin, room_id, event_id(req)?, &body, "knock")?;
    let state = app.db.read(|tx| crate::rooms::invite_room_state(tx, room_id))?;
    Response::ok(json!({ "knock_room_state": state }))
}

/// GET /_matrix/federation/v1/make_leave/{roomId}/{userId}
pub fn make_leave(app: &App, req: &Request) -> Result<Response> {
    let origin = super::origin(req)?;
    Response::ok(membership::make_member(app, origin, room_id(req)?, user_id(req)?, "leave", None)?)
}

/// PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}
pub fn send_leave(app: &App, req: &Request) -> Result<Response> {
    let origin = super::origin(req)?;
    let body = req.json_value()?;
    membership::send_member(app, origin, room_id(req)?, event_id(req)?, &body, "leave")?;
    Response::ok(json!({}))
}

/// PUT /_matrix/federation/v2/invite/{roomId}/{eventId}
pub fn invite(app: &App, req: &Request) -> Result<Response> {
    let origin = super::origin(req)?;
    let body: Value = req.json_value()?;
    if !body.is_object() {
        return Err(Error::bad_json("The body must be a JSON object"));
    }
    Response::ok(membership::receive_invite(app, origin, room_id(req)?, event_id(req)?, &body)?)
}
