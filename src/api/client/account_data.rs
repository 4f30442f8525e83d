//! Account data (global and per room) and room tags.
//!
//! Each write takes a new position of the global stream, so `/sync` sends
//! the changed data once after it, and records the change so the user's
//! parked `/sync` requests wake. Tags are the room account data `m.tag`,
//! `{"tags": {name: {order?}}}`, read and changed here as a whole.
//!
//! Only the owner reads or writes their account data. The types the server
//! manages (`m.fully_read`, `m.push_rules`) may be read here but not set.
//!
//! Each user's account data is bounded as a whole ([`QUOTA_BYTES_PER_USER`],
//! [`QUOTA_ENTRIES_PER_USER`]), checked in the write transaction; a write
//! past the quota is a 403 `M_USER_LIMIT_EXCEEDED` and stores nothing.

use serde_json::{json, Map, Value};

use crate::api::{Auth, Request, Response};
use crate::app::App;
use crate::core::ids;
use crate::error::{Error, ErrorKind, Result};
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
/// Most bytes of account data content one user keeps: global and room
/// entries and tags together, as stored (JSON text), the types the server
/// manages not counted (one `m.fully_read` per room; push rules have their
/// own limits). A single value may be up to `max_body_bytes` (1 MiB by
/// default); 4 MiB is far more than clients keep (Element: tens of KiB)
/// and bounds a user's share of the database file.
pub const QUOTA_BYTES_PER_USER: u64 = 4 * 1024 * 1024;
/// Most account data entries one user keeps (a global type, a type in a
/// room, a room's tags: one each), server-managed types not counted. Keeps
/// many tiny entries, each a row with a key of up to 510 bytes, from
/// growing without bound under the byte quota: a few per room for a user
/// in a thousand rooms.
pub const QUOTA_ENTRIES_PER_USER: u64 = 4096;
/// The `info_uri` that `M_USER_LIMIT_EXCEEDED` must carry: the spec's
/// account data module, for lack of a page of Hearth's own; the error
/// message states the limit.
const QUOTA_INFO_URI: &str = "https://spec.matrix.org/v1.19/client-server-api/#client-config";

/// A write refused by the quota; the message names the limit.
#[derive(Debug)]
struct OverQuota(String);

impl OverQuota {
    /// The spec's answer for a user's own limit (v1.18): 403 (the code the
    /// spec suggests for a storage quota) with `M_USER_LIMIT_EXCEEDED`,
    /// which `ErrorKind` does not carry, and its `info_uri`.
    fn response(self) -> Response {
        Response {
            status: 403,
            body: Some(json!({
                "errcode": "M_USER_LIMIT_EXCEEDED",
                "error": self.0,
                "info_uri": QUOTA_INFO_URI,
            })),
        }
    }
}

/// Checks, inside the write, that storing `new_bytes` of content as
/// `(room_id, kind)` keeps the user within the quota. The entry replaced
/// counts at its new size only. A write that does not grow what the user
/// keeps (same or fewer bytes, no new entry) always passes, so a user past
/// the quota can still shrink their data.
fn check_quota(
    conn: &rusqlite::Connection,
    user_id: &str,
    room_id: &str,
    kind: &str,
    new_bytes: u64,
) -> Result<std::result::Result<(), OverQuota>> {
    let (mut entries, mut bytes) = (0u64, 0u64);
    for (t, usage) in account_data::usage_by_type(conn, user_id, room_id, kind)? {
        if !SERVER_MANAGED.contains(&t.as_str()) {
            entries += usage.entries;
            bytes += usage.bytes;
        }
    }
    let (entries_after, bytes_after) = (entries + 1, bytes.saturating_add(new_bytes));
    if entries_after <= QUOTA_ENTRIES_PER_USER && bytes_after <= QUOTA_BYTES_PER_USER {
        return Ok(Ok(()));
    }
    let old = account_data::get(conn, user_id, room_id, kind)?;
    if old.as_ref().is_some_and(|old| new_bytes <= old.len() as u64) {
        return Ok(Ok(()));
    }
    if old.is_none() && entries_after > QUOTA_ENTRIES_PER_USER {
        return Ok(Err(OverQuota(format!(
            "Your account data may have at most {QUOTA_ENTRIES_PER_USER} entries (types per room and global)"
        ))));
    }
    if bytes_after > QUOTA_BYTES_PER_USER {
        return Ok(Err(OverQuota(format!(
            "Your account data may hold at most {QUOTA_BYTES_PER_USER} bytes in all; this would make it {bytes_after}"
        ))));
    }
    Ok(Ok(()))
}

/// The requester, who must be the `{userId}` of the path.
fn owner(req: &Request) -> Result<&Auth> {
    let who = req.user()?;
    if req.param("userId") != who.user_id {
        return Err(Error::forbidden("You may only access your own account data"));
    }
    Ok(who)
}

/// The `{roomId}` path parameter, if it is a room ID.
fn room_param(req: &Request) -> Result<&str> {
    let room_id = req.param("roomId");
    if ids::is_valid_room_id(room_id) {
        Ok(room_id)
    } else {
        Err(Error::invalid_param(format!("{room_id:?} is not a valid room ID")))
    }
}

/// The `{type}` path parameter.
fn type_param(req: &Request) -> Result<&str> {
    let kind = req.param("type");
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
/// change for the user's long-polls; nothing if it would pass the quota.
fn store(
    app: &App,
    user_id: &str,
    room_id: &str,
    kind: &str,
    content: &Value,
) -> Result<std::result::Result<(), OverQuota>> {
    let text = content.to_string();
    app.db.write(|c| {
        if let Err(over) = check_quota(c, user_id, room_id, kind, text.len() as u64)? {
            return Ok(Err(over));
        }
        let pos = events::next_pos(c)?;
        account_data::put(c, user_id, room_id, kind, &text, pos)?;
        c.changed(pos, &[], &[user_id]);
        Ok(Ok(()))
    })
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
    if let Err(over) = store(app, user_id, room_id, kind, &content)? {
        return Ok(over.response());
    }
    Response::ok(json!({}))
}

/// GET /_matrix/client/v3/user/{userId}/account_data/{type}
pub fn get_global(app: &App, req: &Request) -> Result<Response> {
    let who = owner(req)?;
    get(app, &who.user_id, "", type_param(req)?)
}

/// PUT /_matrix/client/v3/user/{userId}/account_data/{type}
pub fn put_global(app: &App, req: &Request) -> Result<Response> {
    let who = owner(req)?;
    put(app, req, &who.user_id, "", type_param(req)?)
}

/// GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}
pub fn get_room(app: &App, req: &Request) -> Result<Response> {
    let who = owner(req)?;
    let room_id = room_param(req)?;
    get(app, &who.user_id, room_id, type_param(req)?)
}

/// PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}
pub fn put_room(app: &App, req: &Request) -> Result<Response> {
    let who = owner(req)?;
    let room_id = room_param(req)?;
    put(app, req, &who.user_id, room_id, type_param(req)?)
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
/// changed) in one write: a new stream position only for a real change,
/// nothing if the new tags would pass the quota.
fn update_tags(
    app: &App,
    user_id: &str,
    room_id: &str,
    change: impl FnOnce(&mut Map<String, Value>) -> Result<bool>,
) -> Result<std::result::Result<(), OverQuota>> {
    app.db.write(|c| {
        let mut tags = load_tags(c, user_id, room_id)?;
        if !change(&mut tags)? {
            return Ok(Ok(()));
        }
        let text = json!({ "tags": tags }).to_string();
        if let Err(over) = check_quota(c, user_id, room_id, TAG_TYPE, text.len() as u64)? {
            return Ok(Err(over));
        }
        let pos = events::next_pos(c)?;
        account_data::put(c, user_id, room_id, TAG_TYPE, &text, pos)?;
        c.changed(pos, &[], &[user_id]);
        Ok(Ok(()))
    })
}

/// The `{tag}` path parameter.
fn tag_param(req: &Request) -> Result<&str> {
    let tag = req.param("tag");
    if tag.is_empty() || tag.len() > TAG_MAX_BYTES {
        return Err(Error::invalid_param(format!("A tag is 1 to {TAG_MAX_BYTES} bytes")));
    }
    Ok(tag)
}

/// GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags
pub fn get_tags(app: &App, req: &Request) -> Result<Response> {
    let who = owner(req)?;
    let room_id = room_param(req)?;
    let tags = app.db.read(|c| load_tags(c, &who.user_id, room_id))?;
    Response::ok(json!({ "tags": tags }))
}

/// PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}
///
/// The body is the tag's content; its `order`, if any, is a number from 0
/// to 1.
pub fn put_tag(app: &App, req: &Request) -> Result<Response> {
    let who = owner(req)?;
    let room_id = room_param(req)?;
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
    let stored = update_tags(app, &who.user_id, room_id, |tags| {
        if !tags.contains_key(tag) && tags.len() >= TAGS_PER_ROOM_MAX {
            return Err(Error::invalid_param(format!("A room may have at most {TAGS_PER_ROOM_MAX} tags")));
        }
        Ok(tags.insert(tag.to_owned(), content.clone()).as_ref() != Some(&content))
    })?;
    if let Err(over) = stored {
        return Ok(over.response());
    }
    Response::ok(json!({}))
}

/// DELETE /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}
///
/// Removing a tag the room does not have succeeds and changes nothing.
pub fn delete_tag(app: &App, req: &Request) -> Result<Response> {
    let who = owner(req)?;
    let room_id = room_param(req)?;
    let tag = tag_param(req)?;
    // Removing shrinks the tags, so the quota never refuses it.
    if let Err(over) = update_tags(app, &who.user_id, room_id, |tags| Ok(tags.remove(tag).is_some()))? {
        return Ok(over.response());
    }
    Response::ok(json!({}))
}
