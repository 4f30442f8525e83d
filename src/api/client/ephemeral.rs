//! Typing, receipts, read markers and presence: `/typing`, `/receipt`,
//! `/read_markers`, `/presence/{userId}/status` and the original
//! specification's `/presence/list/{userId}`.
//!
//! Typing and presence live in memory (`crate::ephemeral`); each change
//! takes an ephemeral serial and wakes the long-polls of the rooms and
//! users concerned. Receipts and the fully-read marker are stored, at a
//! new stream position, in one write transaction per request.

use serde_json::{json, Map, Value};

use crate::api::{Request, Response};
use crate::app::App;
use crate::core::ids;
use crate::ephemeral::{self, presence::STATUS_MSG_MAX_BYTES, typing, PresenceState};
use crate::error::{Error, Result};
use crate::federation::edu_ephemeral;
use crate::rooms::visibility::Visibility;
use crate::storage::{self, account_data, events, presence_list, receipts, state, users, Changes, Tx};

/// Longest `thread_id` of a receipt.
const THREAD_ID_MAX_BYTES: usize = 255;
/// Most users one presence list holds.
pub const PRESENCE_LIST_MAX: usize = presence_list::LIST_MAX;
/// Most users one presence list request may invite and drop together.
pub const PRESENCE_LIST_CHANGE_MAX: usize = 100;

/// The receipt types a client may send.
const RECEIPT_TYPES: &[&str] = &["m.read", "m.read.private", "m.fully_read"];

/// Refuses unless the user is joined to the room.
fn ensure_joined(conn: &rusqlite::Connection, user_id: &str, room_id: &str) -> Result<()> {
    match state::membership(conn, user_id, room_id)?.as_deref() {
        Some("join") => Ok(()),
        _ => Err(Error::forbidden("You are not joined to this room")),
    }
}

/// Applies what the clock changed to typing and presence (waking the
/// long-polls concerned) before a handler reads or changes them.
fn refresh(app: &App) -> Result<()> {
    app.db.read(|c| ephemeral::refresh(app, c))
}

// ---------------------------------------------------------------- typing

/// PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId}
///
/// Only for yourself, only in a room you are joined to. The notice lasts
/// `timeout` milliseconds, clamped to `typing::TYPING_TIMEOUT_MIN_MS..=
/// TYPING_TIMEOUT_MAX_MS` (`TYPING_TIMEOUT_DEFAULT_MS` when left out).
pub fn typing(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let (room_id, user_id) = (req.param("roomId"), req.param("userId"));
    if user_id != who.user_id {
        return Err(Error::forbidden("You can only set your own typing state"));
    }
    let body = req.json_value()?;
    let Value::Object(body) = body else { return Err(Error::bad_json("The body must be a JSON object")) };
    let is_typing = match body.get("typing") {
        Some(Value::Bool(b)) => *b,
        None | Some(Value::Null) => return Err(Error::missing_param("typing is required")),
        Some(_) => return Err(Error::bad_json("typing must be a boolean")),
    };
    let timeout = match body.get("timeout") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(match (n.as_u64(), n.as_f64()) {
            (Some(ms), _) => ms,
            // Negative: the shortest notice; a fraction: its whole part.
            (None, Some(f)) if f.is_finite() => f.max(0.0) as u64,
            _ => return Err(Error::bad_json("timeout must be a number of milliseconds")),
        }),
        Some(_) => return Err(Error::bad_json("timeout must be a number of milliseconds")),
    };
    app.db.read(|c| ensure_joined(c, user_id, room_id))?;
    refresh(app)?;
    let now = storage::now_ms();
    let until = is_typing.then(|| now.saturating_add(typing::clamp_timeout(timeout) as i64));
    if let Some(serial) = app.ephemeral.set_typing(&app.hub, room_id, user_id, until, now) {
        app.hub.notify(Changes::ephemeral(serial, &[room_id], &[]));
    }
    // Every start goes (it renews the notice there too), and every stop.
    edu_ephemeral::send_typing(app, room_id, user_id, is_typing, typing::clamp_timeout(timeout))?;
    Response::ok(json!({}))
}

// -------------------------------------------------------------- receipts

/// A receipt or marker to store.
struct Mark<'a> {
    kind: &'a str,
    event_id: &'a str,
    thread_id: &'a str,
}

/// Checks that the event is in the room and visible to the user, then
/// stores each mark at a new stream position, recording whose long-polls
/// must hear of it: the room's members for a public receipt, only the user
/// for private receipts and markers. Public receipts are queued for the
/// room's other servers in the same write.
fn store_marks(app: &App, conn: &Tx, user_id: &str, room_id: &str, marks: &[Mark]) -> Result<()> {
    ensure_joined(conn, user_id, room_id)?;
    let mut visibility = Visibility::new(conn, user_id, room_id);
    for m in marks {
        let event = events::get(conn, m.event_id)?.filter(|e| e.room_id == room_id);
        let visible = match &event {
            Some(e) => visibility.may_see(e)?,
            None => false,
        };
        if !visible {
            return Err(Error::not_found(format!("No event {} in this room", m.event_id)));
        }
    }
    let pos = events::next_pos(conn)?;
    let now = storage::now_ms();
    let (mut public, mut private) = (false, false);
    for m in marks {
        if m.kind == "m.fully_read" {
            let content = json!({ "event_id": m.event_id }).to_string();
            account_data::put(conn, user_id, room_id, "m.fully_read", &content, pos)?;
            private = true;
        } else {
            receipts::put(conn, room_id, user_id, m.kind, m.thread_id, m.event_id, now, pos)?;
            // `m.read` goes to the room's other servers; `m.read.private` never.
            edu_ephemeral::send_receipt(app, conn, room_id, user_id, m.kind, m.thread_id, m.event_id, now)?;
            if m.kind == "m.read" {
                public = true;
            } else {
                private = true;
            }
        }
    }
    match (public, private) {
        (true, _) => conn.changed(pos, &[room_id], &[user_id]),
        (false, true) => conn.changed(pos, &[], &[user_id]),
        (false, false) => {}
    }
    Ok(())
}

fn check_event_id(event_id: &str) -> Result<()> {
    if ids::is_valid_event_id(event_id) {
        Ok(())
    } else {
        Err(Error::invalid_param(format!("{event_id:?} is not an event ID")))
    }
}

/// POST /_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}
///
/// `m.read` and `m.read.private` (optionally threaded: `thread_id` is
/// `main` or a thread root's event ID) are stored as receipts;
/// `m.fully_read` sets the fully-read marker, as `/read_markers` does.
pub fn receipt(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let (room_id, kind, event_id) = (req.param("roomId"), req.param("receiptType"), req.param("eventId"));
    if !RECEIPT_TYPES.contains(&kind) {
        return Err(Error::invalid_param(format!("Unknown receipt type {kind:?}")));
    }
    check_event_id(event_id)?;
    let body = if req.body.iter().all(u8::is_ascii_whitespace) { json!({}) } else { req.json_value()? };
    let Value::Object(body) = body else { return Err(Error::bad_json("The body must be a JSON object")) };
    let thread_id = match body.get("thread_id") {
        None | Some(Value::Null) => "",
        Some(Value::String(t)) if t.is_empty() => {
            return Err(Error::invalid_param("thread_id must be a non-empty string"))
        }
        Some(Value::String(t)) => t.as_str(),
        Some(_) => return Err(Error::invalid_param("thread_id must be a non-empty string")),
    };
    if !thread_id.is_empty() {
        if kind == "m.fully_read" {
            return Err(Error::invalid_param("m.fully_read markers have no thread_id"));
        }
        if thread_id.len() > THREAD_ID_MAX_BYTES
            || (thread_id != "main" && !ids::is_valid_event_id(thread_id))
        {
            return Err(Error::invalid_param("thread_id must be \"main\" or a thread root's event ID"));
        }
    }
    let marks = [Mark { kind, event_id, thread_id }];
    app.db.write(|c| store_marks(app, c, &who.user_id, room_id, &marks))?;
    Response::ok(json!({}))
}

/// POST /_matrix/client/v3/rooms/{roomId}/read_markers
///
/// Sets any of `m.fully_read` (the marker, in room account data),
/// `m.read` and `m.read.private` (receipts) in one transaction.
pub fn read_markers(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let room_id = req.param("roomId");
    let body = req.json_value()?;
    let Value::Object(body) = body else { return Err(Error::bad_json("The body must be a JSON object")) };
    let mut marks = Vec::new();
    for kind in ["m.fully_read", "m.read", "m.read.private"] {
        match body.get(kind) {
            None | Some(Value::Null) => {}
            Some(Value::String(id)) => {
                check_event_id(id)?;
                marks.push(Mark { kind, event_id: id, thread_id: "" });
            }
            Some(_) => return Err(Error::bad_json(format!("{kind} must be an event ID"))),
        }
    }
    app.db.write(|c| {
        if marks.is_empty() {
            // Nothing to set, but the room must still be one of the user's.
            return ensure_joined(c, &who.user_id, room_id);
        }
        store_marks(app, c, &who.user_id, room_id, &marks)
    })?;
    Response::ok(json!({}))
}

// -------------------------------------------------------------- presence

/// A user ID from the path that must name a known user: 400 if it is not
/// a user ID, 404 if no such user is known.
fn known_user(conn: &rusqlite::Connection, user_id: &str) -> Result<()> {
    if ids::parse_user_id(user_id).is_none() {
        return Err(Error::invalid_param(format!("{user_id:?} is not a user ID")));
    }
    if !users::exists(conn, user_id)? {
        return Err(Error::not_found("Unknown user"));
    }
    Ok(())
}

/// GET /_matrix/client/v3/presence/{userId}/status
///
/// Visible to the user, to those sharing a joined room with them, and to
/// those who have them on their presence list with their agreement; 403
/// for anyone else. Users of other servers show what their server told
/// (`federation::edu_ephemeral`). With presence off, everyone is `offline`.
pub fn get_presence(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let target = req.param("userId");
    app.db.read(|c| {
        match ids::parse_user_id(target) {
            // A user of another server is known by the rooms shared with them.
            Some((_, server)) if server != app.config.server_name => {}
            _ => known_user(c, target)?,
        }
        if !ephemeral::may_see_presence(c, &who.user_id, target)? {
            return Err(Error::forbidden("You are not allowed to see their presence"));
        }
        Ok(())
    })?;
    refresh(app)?;
    let view = app.ephemeral.presence_of(target, storage::now_ms());
    Response::ok(ephemeral::presence_content(&view))
}

/// PUT /_matrix/client/v3/presence/{userId}/status
///
/// Only for yourself. `status_msg` (at most `STATUS_MSG_MAX_BYTES`) is
/// replaced; leaving it out clears it. With presence off the change is
/// accepted and ignored.
pub fn set_presence(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    if req.param("userId") != who.user_id {
        return Err(Error::forbidden("You can only set your own presence"));
    }
    let body = req.json_value()?;
    let Value::Object(body) = body else { return Err(Error::bad_json("The body must be a JSON object")) };
    let state = match body.get("presence") {
        Some(Value::String(s)) => PresenceState::parse(s)
            .ok_or_else(|| Error::invalid_param("presence must be online, unavailable or offline"))?,
        None | Some(Value::Null) => return Err(Error::missing_param("presence is required")),
        Some(_) => return Err(Error::bad_json("presence must be a string")),
    };
    let status_msg = match body.get("status_msg") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() > STATUS_MSG_MAX_BYTES => {
            return Err(Error::invalid_param(format!("status_msg is at most {STATUS_MSG_MAX_BYTES} bytes")))
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(Error::bad_json("status_msg must be a string")),
    };
    if !app.ephemeral.presence_enabled() {
        return Response::ok(json!({}));
    }
    refresh(app)?;
    let now = storage::now_ms();
    if let Some(serial) = app.ephemeral.set_presence(&app.hub, &who.user_id, state, status_msg, now) {
        let (rooms, users) = app.db.read(|c| ephemeral::presence_audience(c, &who.user_id))?;
        let rooms: Vec<&str> = rooms.iter().map(String::as_str).collect();
        let users: Vec<&str> = users.iter().map(String::as_str).collect();
        app.hub.notify(Changes::ephemeral(serial, &rooms, &users));
    }
    Response::ok(json!({}))
}

/// GET /_matrix/client/api/v1/presence/list/{userId}
///
/// Your own presence list: an `m.presence` event for each user on it, with
/// `accepted` in its content. Users whose presence you may not see (they
/// have not agreed and share no room with you) appear `offline`.
pub fn get_presence_list(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    if req.param("userId") != who.user_id {
        return Err(Error::forbidden("You can only read your own presence list"));
    }
    refresh(app)?;
    let now = storage::now_ms();
    let out = app.db.read(|c| {
        let mut out = Vec::new();
        for entry in presence_list::list(c, &who.user_id)? {
            let view = if ephemeral::may_see_presence(c, &who.user_id, &entry.target)? {
                app.ephemeral.presence_of(&entry.target, now)
            } else {
                ephemeral::PresenceView::unknown()
            };
            let mut event = ephemeral::presence_event(&entry.target, &view);
            event["content"]["user_id"] = json!(entry.target);
            event["content"]["accepted"] = json!(entry.accepted);
            out.push(event);
        }
        Ok(out)
    })?;
    Response::ok(Value::Array(out))
}

/// The user IDs of an `invite` or `drop` field.
fn id_list<'a>(body: &'a Map<String, Value>, key: &str) -> Result<Vec<&'a str>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| {
                let id = v.as_str().ok_or_else(|| Error::bad_json(format!("{key} must list user IDs")))?;
                if ids::parse_user_id(id).is_none() {
                    return Err(Error::invalid_param(format!("{id:?} is not a user ID")));
                }
                Ok(id)
            })
            .collect(),
        Some(_) => Err(Error::bad_json(format!("{key} must be a list of user IDs"))),
    }
}

/// POST /_matrix/client/api/v1/presence/list/{userId}
///
/// `{invite: [...], drop: [...]}` on your own list. An invited user who
/// already has you on their list is accepted at once (both ways);
/// otherwise the entry waits until they add you. A user both invited and
/// dropped in one request ends up dropped.
pub fn update_presence_list(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let owner = who.user_id.as_str();
    if req.param("userId") != owner {
        return Err(Error::forbidden("You can only change your own presence list"));
    }
    let body = req.json_value()?;
    let Value::Object(body) = body else { return Err(Error::bad_json("The body must be a JSON object")) };
    let invite = id_list(&body, "invite")?;
    let drop = id_list(&body, "drop")?;
    if invite.len() + drop.len() > PRESENCE_LIST_CHANGE_MAX {
        return Err(Error::invalid_param(format!(
            "At most {PRESENCE_LIST_CHANGE_MAX} users may be invited and dropped at once"
        )));
    }
    if invite.contains(&owner) {
        return Err(Error::invalid_param("You cannot put yourself on your presence list"));
    }
    let newly_agreed = app.db.write(|c| {
        let mut newly = Vec::new();
        let remote = |u: &str| ids::parse_user_id(u).is_some_and(|(_, s)| s != app.config.server_name);
        for target in &invite {
            if remote(target) {
                // Their server records it and answers when they agree.
                edu_ephemeral::send_presence_list(
                    app,
                    c,
                    target,
                    edu_ephemeral::PRESENCE_INVITE,
                    owner,
                    target,
                )?;
            } else if !users::exists(c, target)? {
                return Err(Error::not_found(format!("Unknown user {target}")));
            }
            let (_, changed) = presence_list::invite(c, owner, target)?;
            if changed {
                newly.push(target.to_string());
            }
        }
        for target in &drop {
            if presence_list::drop_target(c, owner, target)? && remote(target) {
                edu_ephemeral::send_presence_list(
                    app,
                    c,
                    target,
                    edu_ephemeral::PRESENCE_DROP,
                    owner,
                    target,
                )?;
            }
        }
        if presence_list::count(c, owner)? > PRESENCE_LIST_MAX {
            return Err(Error::invalid_param(format!(
                "A presence list holds at most {PRESENCE_LIST_MAX} users"
            )));
        }
        Ok(newly)
    })?;
    // Those who newly see each other are told each other's presence again.
    let mut serial = None;
    for target in &newly_agreed {
        serial = app.ephemeral.reannounce(&app.hub, &[owner, target]).or(serial);
    }
    if let Some(serial) = serial {
        let mut users: Vec<&str> = newly_agreed.iter().map(String::as_str).collect();
        users.push(owner);
        app.hub.notify(Changes::ephemeral(serial, &[], &users));
    }
    Response::ok(json!({}))
}
