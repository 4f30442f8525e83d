//! Account data (global and per room) and room tags.
//!
//! Each write takes a new position of the global stream, so `/sync` sends
//! the changed data once after it, and records the change so the user's
//! parked `/sync` requests wake. Tags are the room account data `m.tag`,
//! `{"tags": {name: {order?}}}`, read and changed here as a whole.
//!
//! Only the owner reads or writes their account data. The types the server
//! manages (`m.fully_read`, `m.push_rules`) may be read here but not set.

use serde_json::{json, Map, Value};

use crate::api::{Auth, Request, Response};
use crate::app::App;
use crate::core::ids;
use crate::error::{Error, ErrorKind, Result};
use crate::hub;
use crate::log;
use crate::storage::{account_data, events};

/// Account data types the server manages; clients set them elsewhere.
const SERVER_MANAGED: &[&str] = &["m.fully_read", "m.push_rules"];
/// Longest account data type, in bytes.
pub const TYPE_MAX_BYTES: usize = 255;
/// Longest tag name, in bytes (the spec's limit).
pub const TAG_MAX_BYTES: usize = 255;
/// Most tags on one room.
pub const TAGS_PER_ROOM_MAX: usize = 100;
/// Largest content of one tag (its `order` and whatever else the client
/// keeps there), serialised, in bytes.
pub const TAG_CONTENT_MAX_BYTES: usize = 1024;
/// The room account data type that holds tags.
const TAG_TYPE: &str = "m.tag";

/// The requester, who must be the `{userId}` of the path.
fn owner(req: &Request) -> Result<&Auth> {
    let who = req.user()?;
    if req.param(0) != who.user_id {
        return Err(Error::forbidden("You may only access your own account data"));
    }
    Ok(who)
}

/// The `{roomId}` path parameter at `i`, if it is a room ID.
fn room_param(req: &Request, i: usize) -> Result<&str> {
    let room_id = req.param(i);
    if ids::is_valid_room_id(room_id) {
        Ok(room_id)
    } else {
        Err(Error::invalid_param(format!("{room_id:?} is not a valid room ID")))
    }
}

/// The `{type}` path parameter at `i`.
fn type_param(req: &Request, i: usize) -> Result<&str> {
    let kind = req.param(i);
    if kind.is_empty() || kind.len() > TYPE_MAX_BYTES {
        return Err(Error::invalid_param(format!("An account data type is 1 to {TYPE_MAX_BYTES} bytes")));
    }
    Ok(kind)
}

fn get(app: &App, user_id: &str, room_id: &str, kind: &str) -> Result<Response> {
    let Some(text) = app.db.read(|c| account_data::get(c, user_id, room_id, kind))? else {
        return Err(Error::not_found("Account data not found"));
    };
    // Content that cannot be parsed (stored before the nesting limit, or
    // damaged) is logged and cannot be shown: as absent as none.
    let content: Value = serde_json::from_str(&text).map_err(|e| {
        log::warn(format_args!(
            "unreadable stored account data {kind:?} of {user_id} (room {room_id:?}): {e}"
        ));
        Error::not_found("Account data not found")
    })?;
    Response::ok(content)
}

/// Stores `content` as `kind` at a new stream position and notes the
/// change for the user's long-polls.
fn store(app: &App, user_id: &str, room_id: &str, kind: &str, content: &Value) -> Result<()> {
    let text = content.to_string();
    let pos = app.db.write(|c| {
        let pos = events::next_pos(c)?;
        account_data::put(c, user_id, room_id, kind, &text, pos)?;
        Ok(pos)
    })?;
    hub::pending::record(pos, &[], &[user_id]);
    Ok(())
}

fn put(app: &App, req: &Request, user_id: &str, room_id: &str, kind: &str) -> Result<Response> {
    if SERVER_MANAGED.contains(&kind) {
        // The spec's answer: 405 with M_BAD_JSON (no ErrorKind has that pair).
        return Ok(Response {
            status: 405,
            body: Some(json!({
                "errcode": "M_BAD_JSON",
                "error": format!("Cannot set {kind} through this API"),
            })),
        });
    }
    let content = req.json_value()?;
    if !content.is_object() {
        return Err(Error::bad_json("Content must be a JSON object"));
    }
    store(app, user_id, room_id, kind, &content)?;
    Response::ok(json!({}))
}

/// GET /_matrix/client/v3/user/{userId}/account_data/{type}
pub fn get_global(app: &App, req: &Request) -> Result<Response> {
    let who = owner(req)?;
    get(app, &who.user_id, "", type_param(req, 1)?)
}

/// PUT /_matrix/client/v3/user/{userId}/account_data/{type}
pub fn put_global(app: &App, req: &Request) -> Result<Response> {
    let who = owner(req)?;
    put(app, req, &who.user_id, "", type_param(req, 1)?)
}

/// GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}
pub fn get_room(app: &App, req: &Request) -> Result<Response> {
    let who = owner(req)?;
    let room_id = room_param(req, 1)?;
    get(app, &who.user_id, room_id, type_param(req, 2)?)
}

/// PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}
pub fn put_room(app: &App, req: &Request) -> Result<Response> {
    let who = owner(req)?;
    let room_id = room_param(req, 1)?;
    put(app, req, &who.user_id, room_id, type_param(req, 2)?)
}

/// The tags of a room: the `tags` object of its `m.tag` data, empty if
/// there is none (or it is not an object).
fn load_tags(conn: &rusqlite::Connection, user_id: &str, room_id: &str) -> Result<Map<String, Value>> {
    let Some(text) = account_data::get(conn, user_id, room_id, TAG_TYPE)? else {
        return Ok(Map::new());
    };
    let content: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        log::warn(format_args!("unreadable stored tags of {user_id} in {room_id}: {e}"));
        Value::Null
    });
    match content.get("tags") {
        Some(Value::Object(tags)) => Ok(tags.clone()),
        _ => Ok(Map::new()),
    }
}

/// Changes a room's tags with `change` (which returns false if nothing
/// changed) in one write: a new stream position only for a real change.
fn update_tags(
    app: &App,
    user_id: &str,
    room_id: &str,
    change: impl FnOnce(&mut Map<String, Value>) -> Result<bool>,
) -> Result<()> {
    let pos = app.db.write(|c| {
        let mut tags = load_tags(c, user_id, room_id)?;
        if !change(&mut tags)? {
            return Ok(None);
        }
        let text = json!({ "tags": tags }).to_string();
        let pos = events::next_pos(c)?;
        account_data::put(c, user_id, room_id, TAG_TYPE, &text, pos)?;
        Ok(Some(pos))
    })?;
    if let Some(pos) = pos {
        hub::pending::record(pos, &[], &[user_id]);
    }
    Ok(())
}

/// The `{tag}` path parameter.
fn tag_param(req: &Request) -> Result<&str> {
    let tag = req.param(2);
    if tag.is_empty() || tag.len() > TAG_MAX_BYTES {
        return Err(Error::invalid_param(format!("A tag is 1 to {TAG_MAX_BYTES} bytes")));
    }
    Ok(tag)
}

/// GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags
pub fn get_tags(app: &App, req: &Request) -> Result<Response> {
    let who = owner(req)?;
    let room_id = room_param(req, 1)?;
    let tags = app.db.read(|c| load_tags(c, &who.user_id, room_id))?;
    Response::ok(json!({ "tags": tags }))
}

/// PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}
///
/// The body is the tag's content; its `order`, if any, is a number from 0
/// to 1.
pub fn put_tag(app: &App, req: &Request) -> Result<Response> {
    let who = owner(req)?;
    let room_id = room_param(req, 1)?;
    let tag = tag_param(req)?;
    let content = req.json_value()?;
    let Some(obj) = content.as_object() else {
        return Err(Error::bad_json("The tag's content must be a JSON object"));
    };
    match obj.get("order") {
        None => {}
        Some(Value::Number(n)) if n.as_f64().is_some_and(|o| (0.0..=1.0).contains(&o)) => {}
        Some(_) => return Err(Error::invalid_param("order must be a number from 0 to 1")),
    }
    if content.to_string().len() > TAG_CONTENT_MAX_BYTES {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!("A tag's content may be at most {TAG_CONTENT_MAX_BYTES} bytes"),
        ));
    }
    update_tags(app, &who.user_id, room_id, |tags| {
        if !tags.contains_key(tag) && tags.len() >= TAGS_PER_ROOM_MAX {
            return Err(Error::invalid_param(format!("A room may have at most {TAGS_PER_ROOM_MAX} tags")));
        }
        Ok(tags.insert(tag.to_owned(), content.clone()).as_ref() != Some(&content))
    })?;
    Response::ok(json!({}))
}

/// DELETE /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}
///
/// Removing a tag the room does not have succeeds and changes nothing.
pub fn delete_tag(app: &App, req: &Request) -> Result<Response> {
    let who = owner(req)?;
    let room_id = room_param(req, 1)?;
    let tag = tag_param(req)?;
    update_tags(app, &who.user_id, room_id, |tags| Ok(tags.remove(tag).is_some()))?;
    Response::ok(json!({}))
}
