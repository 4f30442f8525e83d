//! Reporting content: `/rooms/{roomId}/report/{eventId}`,
//! `/rooms/{roomId}/report` (v1.13) and `/users/{userId}/report` (v1.14).
//!
//! A report is one row of `reports` (`storage::reports`), read and
//! resolved by server admins with `hearth reports list|resolve`; nobody is
//! notified. An event can be reported only by a member of its room who may
//! see it (history visibility), so an event the reporter cannot see is as
//! absent as one that does not exist (404). A room or a user can be
//! reported by anyone, as long as this server knows it: the spec allows
//! answering 200 for unknown ones to hide what exists, but it does not
//! require it, and a 404 tells a mistyped ID apart.

use serde_json::{json, Map, Value};

use crate::api::{Request, Response};
use crate::app::App;
use crate::core::ids;
use crate::error::{Error, Result};
use crate::rooms::visibility::Visibility;
use crate::storage::{self, events, reports, reports::Target, state};

/// Longest `reason` kept, in bytes.
pub const REASON_MAX_BYTES: usize = 2048;
/// The range of an event report's `score`: -100 (most offensive) to 0.
/// The spec dropped `score` in v1.18; older clients still send it.
pub const SCORE_MIN: i64 = -100;
pub const SCORE_MAX: i64 = 0;

/// A report's body, checked: `reason` a string of at most
/// [`REASON_MAX_BYTES`] (required where the spec requires it), `score` an
/// integer within [`SCORE_MIN`]..=[`SCORE_MAX`] when present.
struct Body {
    reason: Option<String>,
    score: Option<i64>,
}

fn parse_body(req: &Request, reason_required: bool, score_allowed: bool) -> Result<Body> {
    let body: Map<String, Value> = match req.json_value()? {
        Value::Object(map) => map,
        _ => return Err(Error::bad_json("The body must be a JSON object")),
    };
    let reason = match body.get("reason") {
        None | Some(Value::Null) if !reason_required => None,
        None | Some(Value::Null) => return Err(Error::missing_param("reason is required")),
        Some(Value::String(s)) if s.len() > REASON_MAX_BYTES => {
            return Err(Error::invalid_param(format!("reason is longer than {REASON_MAX_BYTES} bytes")))
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(Error::bad_json("reason must be a string")),
    };
    let score = match body.get("score") {
        None | Some(Value::Null) => None,
        Some(_) if !score_allowed => None,
        Some(Value::Number(n)) => match n.as_i64() {
            Some(s) if (SCORE_MIN..=SCORE_MAX).contains(&s) => Some(s),
            _ => {
                return Err(Error::invalid_param(format!(
                    "score must be an integer from {SCORE_MIN} to {SCORE_MAX}"
                )))
            }
        },
        Some(_) => return Err(Error::bad_json("score must be an integer")),
    };
    Ok(Body { reason, score })
}

fn room_param(req: &Request) -> Result<&str> {
    let room_id = req.param("roomId");
    if !ids::is_valid_room_id(room_id) {
        return Err(Error::invalid_param("Invalid room ID"));
    }
    Ok(room_id)
}

/// POST /_matrix/client/v3/rooms/{roomId}/report/{eventId}
pub fn report_event(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let room_id = room_param(req)?;
    let event_id = req.param("eventId");
    if !ids::is_valid_event_id(event_id) {
        return Err(Error::invalid_param("Invalid event ID"));
    }
    let body = parse_body(req, false, true)?;
    app.db.write(|tx| {
        let not_found = || Error::not_found("The event was not found or you are not joined to the room");
        let e = events::get(tx, event_id)?.filter(|e| e.room_id == room_id).ok_or_else(not_found)?;
        let joined = state::membership(tx, &who.user_id, room_id)?.as_deref() == Some("join");
        if !joined || !Visibility::new(tx, &who.user_id, room_id).may_see(&e)? {
            return Err(not_found());
        }
        let target = Target::Event { room_id, event_id };
        reports::insert(tx, &who.user_id, target, body.reason.as_deref(), body.score, storage::now_ms())
    })?;
    Response::ok(json!({}))
}

/// POST /_matrix/client/v3/rooms/{roomId}/report
pub fn report_room(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let room_id = room_param(req)?;
    let body = parse_body(req, true, false)?;
    app.db.write(|tx| {
        if storage::rooms::get(tx, room_id)?.is_none() {
            return Err(Error::not_found("The room was not found"));
        }
        let target = Target::Room { room_id };
        reports::insert(tx, &who.user_id, target, body.reason.as_deref(), None, storage::now_ms())
    })?;
    Response::ok(json!({}))
}

/// POST /_matrix/client/v3/users/{userId}/report
pub fn report_user(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let user_id = req.param("userId");
    if ids::parse_user_id(user_id).is_none() {
        return Err(Error::invalid_param("Invalid user ID"));
    }
    let body = parse_body(req, true, false)?;
    app.db.write(|tx| {
        if !reports::user_known(tx, user_id)? {
            return Err(Error::not_found("The user was not found"));
        }
        let target = Target::User { user_id };
        reports::insert(tx, &who.user_id, target, body.reason.as_deref(), None, storage::now_ms())
    })?;
    Response::ok(json!({}))
}
