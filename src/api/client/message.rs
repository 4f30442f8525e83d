//! Sending and reading room events and state: `/send`, `/state`,
//! `/redact`, `/event`, `/members`, `/joined_members`, `/context`,
//! `/messages`, `/timestamp_to_event`.
//!
//! Every write goes through `rooms::append` (auth rules, size limits,
//! transaction IDs). Every read applies history visibility to each event it
//! returns (`Visibility::may_see`); state reads show members the current
//! state, a user who left the state as it was when they left, and anyone
//! the current state of a `world_readable` room.
//!
//! `/messages` and `/context` read a room in its topological order,
//! `(depth, pos)`. Pagination tokens (`rooms::token::Point`) are points
//! between events: a page moves its point past the events it looked at,
//! so paging back and then forward from the same token (or from a sync's
//! `prev_batch`) sees every event exactly once.

use std::collections::HashSet;

use rusqlite::Connection;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::api::{Auth, Request, Response};
use crate::app::App;
use crate::core::ids;
use crate::error::{Error, ErrorKind, Result};
use crate::rooms::format::{self, Viewer};
use crate::rooms::token::{Key, Point};
use crate::rooms::visibility::{self, Visibility};
use crate::rooms::{self, NewEvent};
use crate::storage::events::{self, Dir, StoredEvent};
use crate::storage::state::{self, StateMap};
use crate::storage::{self, account_data, relations, rooms as room_store};
use crate::sync::filter::RoomEventFilter;

/// Events per `/messages` page unless the client asks otherwise.
const MESSAGES_LIMIT_DEFAULT: usize = 10;
/// Context events unless the client asks otherwise.
const CONTEXT_LIMIT_DEFAULT: usize = 10;
/// Most events one `/messages` page or `/context` answer holds.
const EVENTS_LIMIT_MAX: usize = 1000;
/// Most events one read looks at to fill a page (filters and history
/// visibility may hide many); past this the page ends early, with a token
/// to go on from.
const SCAN_MAX: usize = 5000;
/// Most events read from storage in one step of a scan.
const SCAN_BATCH_MAX: usize = 500;
/// Longest client transaction ID.
const TXN_ID_MAX_BYTES: usize = 255;
/// The memberships `/members` can filter on.
const MEMBERSHIPS: &[&str] = &["join", "invite", "knock", "leave", "ban"];

// ---------------------------------------------------------------- sending

/// PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}
///
/// `m.room.redaction` is a redaction of `content.redacts` (moved to the top
/// level in rooms before v11), as the spec requires. Other types, state
/// types included, are sent as they are, without a state key.
pub fn send(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let txn_id = req.param("txnId");
    if txn_id.len() > TXN_ID_MAX_BYTES {
        return Err(Error::invalid_param(format!("Transaction IDs are at most {TXN_ID_MAX_BYTES} bytes")));
    }
    // Guests send messages and nothing else (the guest access module).
    if who.is_guest && req.param("eventType") != "m.room.message" {
        return Err(Error::new(
            ErrorKind::GuestAccessForbidden,
            "Guests may send only m.room.message events",
        ));
    }
    send_event(app, req, who, Some(txn_id))
}

/// POST /_matrix/client/api/v1/rooms/{roomId}/send/{eventType}
///
/// The original specification's send, without a transaction ID: each call
/// makes a new event.
pub fn send_legacy(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    send_event(app, req, who, None)
}

fn send_event(app: &App, req: &Request, who: &Auth, txn_id: Option<&str>) -> Result<Response> {
    let room_id = room_param(req)?;
    let kind = event_type_param(req)?;
    let mut content = object_body(req)?;
    let mut redacts = None;
    if kind == "m.room.redaction" {
        let Some(Value::String(target)) = content.remove("redacts") else {
            return Err(Error::bad_json("An m.room.redaction needs content.redacts: the event ID to redact"));
        };
        if !ids::is_valid_event_id(&target) {
            return Err(Error::invalid_param("content.redacts is not a valid event ID"));
        }
        redacts = Some(target);
    }
    let appended = app.db.write(|conn| {
        rooms::append(
            app,
            conn,
            room_id,
            &who.user_id,
            NewEvent {
                kind,
                state_key: None,
                content: Value::Object(content),
                redacts: redacts.as_deref(),
                txn: txn_id.map(|t| (who.device_id.as_str(), t)),
            },
        )
    })?;
    Response::ok(json!({ "event_id": appended.event_id }))
}

/// PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}
/// (and without the state key, which is then empty).
pub fn put_state(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let room_id = room_param(req)?;
    let kind = event_type_param(req)?;
    let state_key = req.param("stateKey");
    let content = object_body(req)?;
    let appended = app.db.write(|conn| {
        rooms::append(
            app,
            conn,
            room_id,
            &who.user_id,
            NewEvent {
                kind,
                state_key: Some(state_key),
                content: Value::Object(content),
                redacts: None,
                txn: None,
            },
        )
    })?;
    Response::ok(json!({ "event_id": appended.event_id }))
}

#[derive(Deserialize)]
struct RedactBody {
    reason: Option<String>,
}

/// PUT /_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}
///
/// The room service checks that the sender redacts their own event or has
/// the redact power level, and applies the room version's algorithm.
pub fn redact(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let room_id = room_param(req)?;
    let target = event_id_param(req)?;
    let txn_id = req.param("txnId");
    if txn_id.len() > TXN_ID_MAX_BYTES {
        return Err(Error::invalid_param(format!("Transaction IDs are at most {TXN_ID_MAX_BYTES} bytes")));
    }
    let body: RedactBody = req.json_or_empty()?;
    let mut content = Map::new();
    if let Some(reason) = body.reason {
        content.insert("reason".into(), Value::String(reason));
    }
    let appended = app.db.write(|conn| {
        rooms::append(
            app,
            conn,
            room_id,
            &who.user_id,
            NewEvent {
                kind: "m.room.redaction",
                state_key: None,
                content: Value::Object(content),
                redacts: Some(target),
                txn: Some((who.device_id.as_str(), txn_id)),
            },
        )
    })?;
    Response::ok(json!({ "event_id": appended.event_id }))
}

// ------------------------------------------------------------------ state

/// GET /_matrix/client/v3/rooms/{roomId}/state
pub fn get_state_all(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let room_id = room_param(req)?;
    app.db.read(|conn| {
        let view = state_view(conn, room_id, &who.user_id)?;
        let map = match &view {
            StateView::Current => state::current_state(conn, room_id)?,
            StateView::LeftAt(left) => rooms::state_after(conn, left)?,
        };
        let mut list = load_all(conn, map.values())?;
        list.sort_by_key(|e| e.pos);
        let out = format::client_events(conn, &list, Some(viewer(who)), storage::now_ms())?;
        Response::ok(Value::Array(out))
    })
}

/// GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}
/// (and without the state key): the content, or with `?format=event` the
/// whole client-format event.
pub fn get_state(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let room_id = room_param(req)?;
    let kind = event_type_param(req)?;
    let state_key = req.param("stateKey");
    let whole_event = match req.query("format") {
        None | Some("content") => false,
        Some("event") => true,
        Some(_) => return Err(Error::invalid_param("format must be 'content' or 'event'")),
    };
    app.db.read(|conn| {
        let view = state_view(conn, room_id, &who.user_id)?;
        let id = match &view {
            StateView::Current => state::current_entry(conn, room_id, kind, state_key)?,
            StateView::LeftAt(left) => {
                if left.kind == kind && left.state_key.as_deref() == Some(state_key) {
                    Some(left.event_id.clone())
                } else {
                    state::group_entry(conn, left.state_before, kind, state_key)?
                }
            }
        };
        let not_found = || Error::not_found("The room has no state with this type and key");
        let e = events::get(conn, &id.ok_or_else(not_found)?)?.ok_or_else(not_found)?;
        // A stored event that cannot be read (logged) is as absent as none.
        if whole_event {
            let event = format::client_event(conn, &e, Some(viewer(who)), storage::now_ms())?;
            return Response::ok(event.ok_or_else(not_found)?);
        }
        let pdu = rooms::readable_pdu(&e).ok_or_else(not_found)?;
        Response::ok(pdu.get("content").cloned().unwrap_or_else(|| json!({})))
    })
}

/// GET /_matrix/client/v3/rooms/{roomId}/members?at&membership&not_membership
pub fn members(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let room_id = room_param(req)?;
    let at = req.query("at").map(parse_point).transpose()?;
    let want = membership_query(req, "membership")?;
    let not = membership_query(req, "not_membership")?;
    app.db.read(|conn| {
        let view = state_view(conn, room_id, &who.user_id)?;
        let map = match (&view, at) {
            (StateView::Current, None) => state::current_state(conn, room_id)?,
            (StateView::Current, Some(at)) => state_at_point(conn, room_id, at, None)?,
            (StateView::LeftAt(left), Some(at)) if !at.behind(key(left)) => {
                state_at_point(conn, room_id, at, Some(left))?
            }
            (StateView::LeftAt(left), _) => rooms::state_after(conn, left)?,
        };
        let ids = map.iter().filter(|((kind, _), _)| kind == "m.room.member").map(|(_, id)| id);
        let mut list = Vec::new();
        for e in load_all(conn, ids)? {
            let membership = content_str(&e, "membership")?.unwrap_or_default();
            let passes = match (want, not) {
                (None, None) => true,
                (Some(w), None) => membership == w,
                (None, Some(n)) => membership != n,
                // The spec makes the two an "or".
                (Some(w), Some(n)) => membership == w || membership != n,
            };
            if passes {
                list.push(e);
            }
        }
        list.sort_by(|a, b| a.state_key.cmp(&b.state_key));
        let chunk = format::client_events(conn, &list, Some(viewer(who)), storage::now_ms())?;
        Response::ok(json!({ "chunk": chunk }))
    })
}

/// GET /_matrix/client/v3/rooms/{roomId}/joined_members: only for members.
pub fn joined_members(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let room_id = room_param(req)?;
    app.db.read(|conn| {
        if state::membership(conn, &who.user_id, room_id)?.as_deref() != Some("join") {
            return Err(not_a_member());
        }
        let mut joined = Map::new();
        for user_id in state::members(conn, room_id, "join")? {
            let mut profile = Map::new();
            if let Some(id) = state::current_entry(conn, room_id, "m.room.member", &user_id)? {
                if let Some(e) = events::get(conn, &id)? {
                    if let Some(name) = content_str(&e, "displayname")? {
                        profile.insert("display_name".into(), Value::String(name));
                    }
                    if let Some(url) = content_str(&e, "avatar_url")? {
                        profile.insert("avatar_url".into(), Value::String(url));
                    }
                }
            }
            joined.insert(user_id, Value::Object(profile));
        }
        Response::ok(json!({ "joined": joined }))
    })
}

// ----------------------------------------------------------------- events

/// GET /_matrix/client/v3/rooms/{roomId}/event/{eventId}: an event the
/// user may not see is as absent as one that does not exist.
pub fn get_event(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let room_id = room_param(req)?;
    let event_id = event_id_param(req)?;
    app.db.read(|conn| {
        let e = visible_event(conn, room_id, event_id, &who.user_id)?;
        let event = format::client_event(conn, &e, Some(viewer(who)), storage::now_ms())?;
        Response::ok(event.ok_or_else(unreadable)?)
    })
}

/// GET /_matrix/client/v3/rooms/{roomId}/context/{eventId}?limit&filter
///
/// `limit` is shared: half before the event (rounded down), the rest after.
/// The filter applies to the events around the event and to `state`, not to
/// the event itself. Users the viewer ignores are left out; their event
/// itself is not found.
pub fn context(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let room_id = room_param(req)?;
    let event_id = event_id_param(req)?;
    let filter = RoomEventFilter::from_query(req.query("filter"))?;
    let limit = limit_query(req)?.unwrap_or(CONTEXT_LIMIT_DEFAULT);
    app.db.read(|conn| {
        check_may_read(conn, room_id, &who.user_id)?;
        let target = visible_event(conn, room_id, event_id, &who.user_id)?;
        // An ignored user's events are not shown, the one asked for neither.
        let ignored = account_data::ignored_users(conn, &who.user_id)?;
        if account_data::hides(&ignored, &target.sender, target.state_key.is_some()) {
            return Err(unreadable());
        }
        let room_allowed = filter.allows_room(room_id);
        let mut vis = Visibility::new(conn, &who.user_id, room_id);
        let mut keep = |e: &StoredEvent| -> Result<bool> {
            Ok(room_allowed
                && !account_data::hides(&ignored, &e.sender, e.state_key.is_some())
                && vis.may_see(e)?
                && passes(&filter, e)?)
        };
        let before_limit = limit / 2;
        // In topological order: the point just before the event, and the
        // one just after it.
        let at = key(&target);
        let before = scan(
            conn,
            room_id,
            Point::topological(at.below()),
            None,
            Dir::Backward,
            before_limit,
            &mut keep,
        )?;
        let after =
            scan(conn, room_id, Point::topological(at), None, Dir::Forward, limit - before_limit, &mut keep)?;
        // Backwards from `start` come the events before `events_before`,
        // forwards from `end` those after `events_after`.
        let start = before.point.token();
        let end = after.point.token();

        let last = after.events.last().unwrap_or(&target);
        let state_map = rooms::state_after(conn, last)?;
        let senders: HashSet<&str> = before
            .events
            .iter()
            .chain(&after.events)
            .chain(std::iter::once(&target))
            .map(|e| e.sender.as_str())
            .collect();
        // Lazy loading keeps only the senders' member events: skip the
        // others before loading them.
        let wanted = state_map.iter().filter(|((kind, key), _)| {
            room_allowed
                && !(filter.lazy_load_members && kind == "m.room.member" && !senders.contains(key.as_str()))
        });
        let mut state_events = Vec::new();
        for e in load_all(conn, wanted.map(|(_, id)| id))? {
            if passes(&filter, &e)? {
                state_events.push(e);
            }
        }
        state_events.sort_by_key(|e| e.pos);

        let now = storage::now_ms();
        let v = Some(viewer(who));
        Response::ok(json!({
            "start": start,
            "end": end,
            "event": format::client_event(conn, &target, v, now)?.ok_or_else(unreadable)?,
            "events_before": format::client_events(conn, &before.events, v, now)?,
            "events_after": format::client_events(conn, &after.events, v, now)?,
            "state": format::client_events(conn, &state_events, v, now)?,
        }))
    })
}

/// GET /_matrix/client/v3/rooms/{roomId}/messages?dir&from&to&limit&filter
///
/// Pages in the room's topological order (`rooms::token`). `from` defaults
/// to the newest stream point going backwards and the oldest point going
/// forwards; stream and sync tokens are accepted as well as topological
/// ones, and `end` is topological. `end` is omitted once paging backwards
/// exhausted the range; forwards it is always there.
/// Events of users the viewer ignores (`m.ignored_user_list`) are left
/// out. With `lazy_load_members`, `state` holds the senders' member events
/// as of their events.
pub fn messages(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let room_id = room_param(req)?;
    let dir = dir_query(req)?;
    let from = req.query("from").map(parse_point).transpose()?;
    let to = req.query("to").map(parse_point).transpose()?;
    let filter = RoomEventFilter::from_query(req.query("filter"))?;
    let limit = limit_query(req)?.or(filter.limit).unwrap_or(MESSAGES_LIMIT_DEFAULT).min(EVENTS_LIMIT_MAX);
    let page = |more_elsewhere: bool| {
        app.db.read(|conn| {
            check_may_read(conn, room_id, &who.user_id)?;
            // Without `from`: the live end going backwards, the room's start
            // going forwards.
            let from = match (from, dir) {
                (Some(point), _) => point,
                (None, Dir::Backward) => Point::stream(events::current_pos(conn)?),
                (None, Dir::Forward) => Point::START,
            };
            let start = req.query("from").map_or_else(|| from.token(), str::to_owned);
            let page = if filter.allows_room(room_id) {
                let ignored = account_data::ignored_users(conn, &who.user_id)?;
                let mut vis = Visibility::new(conn, &who.user_id, room_id);
                let mut keep = |e: &StoredEvent| -> Result<bool> {
                    Ok(!account_data::hides(&ignored, &e.sender, e.state_key.is_some())
                        && vis.may_see(e)?
                        && passes(&filter, e)?)
                };
                scan(conn, room_id, from, to, dir, limit, &mut keep)?
            } else {
                Scan { events: Vec::new(), point: from, exhausted: true, at_start: false }
            };
            let now = storage::now_ms();
            let v = Some(viewer(who));
            let mut out = json!({
                "start": start,
                "chunk": format::client_events(conn, &page.events, v, now)?,
            });
            // Backwards, `end` goes once the range is exhausted (the room's
            // start, or `to`). Forwards it always comes: more events may
            // follow, and a client polls on from it.
            let moved = page.point != from;
            match dir {
                // Backfill may find more before the oldest event here.
                Dir::Backward if page.exhausted && !(more_elsewhere && moved) => {}
                _ => out["end"] = json!(page.point.token()),
            }
            if filter.lazy_load_members {
                out["state"] =
                    json!(format::client_events(conn, &sender_members(conn, &page.events)?, v, now)?);
            }
            Ok((out, page.at_start))
        })
    };
    let (out, at_start) = page(false)?;
    // Paging back past the start of what this server has of a room that
    // began elsewhere (the earliest event it has in topological order):
    // ask the room's servers for the history before it. A read down to
    // `to` stays within what is here.
    if dir == Dir::Backward && at_start && to.is_none() && app.federation.enabled() {
        match crate::federation::pdus::backfill(app, room_id, limit) {
            Ok(0) => {}
            Ok(_) => return Response::ok(page(true)?.0),
            Err(e) => crate::log::info(format_args!("backfilling {room_id}: {e}")),
        }
    }
    Response::ok(out)
}

/// GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event?ts&dir: the
/// nearest event the user may see at or after (`f`) or at or before (`b`)
/// the timestamp.
pub fn timestamp_to_event(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let room_id = room_param(req)?;
    let ts: i64 = req
        .query("ts")
        .ok_or_else(|| Error::missing_param("ts is required"))?
        .parse()
        .map_err(|_| Error::invalid_param("ts must be an integer timestamp in milliseconds"))?;
    let dir = dir_query(req)?;
    app.db.read(|conn| {
        check_may_read(conn, room_id, &who.user_id)?;
        let mut vis = Visibility::new(conn, &who.user_id, room_id);
        if let Some(e) = rooms::nearest_by_ts(conn, room_id, ts, dir, &mut |e| vis.may_see(e))? {
            return Response::ok(json!({ "event_id": e.event_id, "origin_server_ts": e.origin_ts }));
        }
        let way = if dir == Dir::Forward { "forward" } else { "backward" };
        Err(Error::not_found(format!("No event found from {ts} in the {way} direction")))
    })
}

// ---------------------------------------------------------------- helpers

pub(crate) fn viewer(who: &Auth) -> Viewer<'_> {
    Viewer { user_id: &who.user_id, device_id: &who.device_id }
}

fn not_a_member() -> Error {
    Error::forbidden("You are not a member of this room")
}

pub(crate) fn room_param(req: &Request) -> Result<&str> {
    let room_id = req.param("roomId");
    if !ids::is_valid_room_id(room_id) {
        return Err(Error::invalid_param("Invalid room ID"));
    }
    Ok(room_id)
}

pub(crate) fn event_type_param(req: &Request) -> Result<&str> {
    let kind = req.param("eventType");
    if !ids::is_valid_event_type(kind) {
        return Err(Error::invalid_param("Invalid event type"));
    }
    Ok(kind)
}

pub(crate) fn event_id_param(req: &Request) -> Result<&str> {
    let event_id = req.param("eventId");
    if !ids::is_valid_event_id(event_id) {
        return Err(Error::invalid_param("Invalid event ID"));
    }
    Ok(event_id)
}

/// The body as event content: not JSON is `M_NOT_JSON`, not an object
/// `M_BAD_JSON`.
fn object_body(req: &Request) -> Result<Map<String, Value>> {
    match req.json_value()? {
        Value::Object(map) => Ok(map),
        _ => Err(Error::bad_json("The event content must be a JSON object")),
    }
}

/// A `/messages` token of either kind (`rooms::token`), else 400.
pub(crate) fn parse_point(text: &str) -> Result<Point> {
    Point::parse(text).ok_or_else(|| Error::invalid_param("Invalid pagination token"))
}

/// An event's place in the room's topological order.
pub(crate) fn key(e: &StoredEvent) -> Key {
    Key::new(e.depth, e.pos)
}

fn dir_query(req: &Request) -> Result<Dir> {
    match req.query("dir") {
        Some("b") => Ok(Dir::Backward),
        Some("f") => Ok(Dir::Forward),
        Some(_) => Err(Error::invalid_param("dir must be 'b' or 'f'")),
        None => Err(Error::missing_param("dir is required")),
    }
}

/// `limit` from the query, clamped to [`EVENTS_LIMIT_MAX`].
pub(crate) fn limit_query(req: &Request) -> Result<Option<usize>> {
    let Some(text) = req.query("limit") else { return Ok(None) };
    let n: i64 = text.parse().map_err(|_| Error::invalid_param("limit must be an integer"))?;
    if n < 0 {
        return Err(Error::invalid_param("limit must not be negative"));
    }
    Ok(Some(usize::try_from(n).unwrap_or(EVENTS_LIMIT_MAX).min(EVENTS_LIMIT_MAX)))
}

fn membership_query<'r>(req: &'r Request, key: &str) -> Result<Option<&'r str>> {
    match req.query(key) {
        None => Ok(None),
        Some(m) if MEMBERSHIPS.contains(&m) => Ok(Some(m)),
        Some(_) => Err(Error::invalid_param(format!("{key} must be one of {}", MEMBERSHIPS.join(", ")))),
    }
}

/// A string field of an event's content (none if the event cannot be read).
fn content_str(e: &StoredEvent, field: &str) -> Result<Option<String>> {
    Ok(rooms::readable_pdu(e)
        .as_ref()
        .and_then(|p| p.get("content"))
        .and_then(|c| c.get(field))
        .and_then(Value::as_str)
        .map(str::to_owned))
}

/// The answer for an event whose stored PDU cannot be read (logged): it
/// cannot be shown, so it is as absent as one that does not exist.
fn unreadable() -> Error {
    Error::not_found("Event not found")
}

pub(crate) fn load_all<'i>(
    conn: &Connection,
    ids: impl IntoIterator<Item = &'i String>,
) -> Result<Vec<StoredEvent>> {
    let mut out = Vec::new();
    for id in ids {
        let e = events::get(conn, id)?.ok_or_else(|| Error::internal(format!("state event {id} missing")))?;
        out.push(e);
    }
    Ok(out)
}

/// True if the event passes the filter's type, sender and URL tests. An
/// event that cannot be read passes none that look at its content.
pub(crate) fn passes(filter: &RoomEventFilter, e: &StoredEvent) -> Result<bool> {
    let content = match filter.needs_content() {
        true => match rooms::readable_pdu(e) {
            Some(pdu) => pdu.get("content").cloned(),
            None => return Ok(false),
        },
        false => None,
    };
    Ok(filter.allows_event(&e.kind, &e.sender, content.as_ref()))
}

/// May the user read this room's timeline at all? Anyone with a membership
/// (history visibility then decides per event), and anyone while the room
/// is world-readable. An unknown room is refused the same way.
pub(crate) fn check_may_read(conn: &Connection, room_id: &str, user_id: &str) -> Result<()> {
    if room_store::get(conn, room_id)?.is_none() {
        return Err(not_a_member());
    }
    if state::membership(conn, user_id, room_id)?.is_some() || visibility::world_readable(conn, room_id)? {
        Ok(())
    } else {
        Err(not_a_member())
    }
}

/// An event of this room the user may see, else 404.
pub(crate) fn visible_event(
    conn: &Connection,
    room_id: &str,
    event_id: &str,
    user_id: &str,
) -> Result<StoredEvent> {
    let not_found = || Error::not_found("Event not found");
    let e = events::get(conn, event_id)?.filter(|e| e.room_id == room_id).ok_or_else(not_found)?;
    if Visibility::new(conn, user_id, room_id).may_see(&e)? {
        Ok(e)
    } else {
        Err(not_found())
    }
}

/// Which state of a room a user may read.
pub(crate) enum StateView {
    /// The current state: for members, and for anyone in a world-readable
    /// room.
    Current,
    /// The state right after this event: the one that ended the user's
    /// last stay (leave, kick or ban).
    LeftAt(Box<StoredEvent>),
}

pub(crate) fn state_view(conn: &Connection, room_id: &str, user_id: &str) -> Result<StateView> {
    if room_store::get(conn, room_id)?.is_none() {
        return Err(not_a_member());
    }
    if state::membership(conn, user_id, room_id)?.as_deref() == Some("join")
        || visibility::world_readable(conn, room_id)?
    {
        return Ok(StateView::Current);
    }
    match rooms::read::left_event(conn, room_id, user_id)? {
        Some(e) => Ok(StateView::LeftAt(Box::new(e))),
        None => Err(Error::forbidden("You are not a member of this room and never were")),
    }
}

/// The room's state after the newest event behind the point in
/// topological order (empty before the room began). A user who left sees
/// no state past their leave (`left`): at most the state after it.
fn state_at_point(
    conn: &Connection,
    room_id: &str,
    at: Point,
    left: Option<&StoredEvent>,
) -> Result<StateMap> {
    let newest = scan(conn, room_id, at, None, Dir::Backward, 1, &mut |_| Ok(true))?.events.pop();
    match (newest, left) {
        (Some(e), Some(left)) if key(&e) > key(left) => rooms::state_after(conn, left),
        (Some(e), _) => rooms::state_after(conn, &e),
        (None, _) => Ok(StateMap::new()),
    }
}

/// For lazy loading: each sender's member event as of their first event
/// in `list` (the event itself when it is their own membership change).
fn sender_members(conn: &Connection, list: &[StoredEvent]) -> Result<Vec<StoredEvent>> {
    let mut senders = HashSet::new();
    let mut out: Vec<StoredEvent> = Vec::new();
    for e in list {
        if !senders.insert(e.sender.as_str()) {
            continue;
        }
        let member = if e.kind == "m.room.member" && e.state_key.as_deref() == Some(e.sender.as_str()) {
            Some(e.clone())
        } else {
            match state::group_entry(conn, e.state_before, "m.room.member", &e.sender)? {
                Some(id) => events::get(conn, &id)?,
                None => None,
            }
        };
        if let Some(m) = member {
            if !out.iter().any(|o| o.event_id == m.event_id) {
                out.push(m);
            }
        }
    }
    Ok(out)
}

/// The events a scan kept, and where it stopped.
pub(crate) struct Scan {
    pub(crate) events: Vec<StoredEvent>,
    /// The point past every event looked at, kept or not: the token to go
    /// on from.
    pub(crate) point: Point,
    /// True when the range holds no events past `point` (the room's end,
    /// its start, or `to`).
    pub(crate) exhausted: bool,
    /// True when a backward scan ran out of stored events: the earliest
    /// event here in topological order was passed.
    at_start: bool,
}

/// Walks a room's events in topological order from the point `from` in
/// `dir` — those behind it backwards, those ahead forwards — stopping at
/// the point `to` if given, keeping those `keep` accepts, until `limit`
/// are kept, the range ends, or [`SCAN_MAX`] were looked at (storage
/// skips the events on the other side of `from` in its index). Each step
/// reads one more event than still wanted, so a page that ends exactly at
/// the end of the range knows it did.
pub(crate) fn scan(
    conn: &Connection,
    room_id: &str,
    from: Point,
    to: Option<Point>,
    dir: Dir,
    limit: usize,
    keep: &mut dyn FnMut(&StoredEvent) -> Result<bool>,
) -> Result<Scan> {
    scan_source(conn, Source::Room(room_id), from, to, dir, limit, keep)
}

/// What a scan walks in topological order.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source<'a> {
    /// A room's events.
    Room(&'a str),
    /// The events relating to some events (`/relations`).
    Children(relations::ChildFilter<'a>),
}

/// [`scan`] over any [`Source`].
pub(crate) fn scan_source(
    conn: &Connection,
    source: Source,
    from: Point,
    to: Option<Point>,
    dir: Dir,
    limit: usize,
    keep: &mut dyn FnMut(&StoredEvent) -> Result<bool>,
) -> Result<Scan> {
    let backward = dir == Dir::Backward;
    let mut out = Scan { events: Vec::new(), point: from, exhausted: false, at_start: false };
    let mut cursor = from.cursor(backward);
    let mut scanned = 0;
    let mut step = 0;
    while out.events.len() < limit && scanned < SCAN_MAX {
        // Grow the steps while filters hide events, so a sparse match does
        // not cost one query per event.
        let want = (limit - out.events.len() + 1).max(step * 2).min(SCAN_BATCH_MAX).min(SCAN_MAX - scanned);
        step = want;
        let (edge, through) = from.side(backward);
        let side = ((edge.depth, edge.pos), through);
        let at = (cursor.depth, cursor.pos);
        let batch = match source {
            Source::Room(room_id) => events::room_events_by_key(conn, room_id, at, side, dir, want)?,
            Source::Children(filter) => relations::children_by_key(conn, filter, at, side, dir, want)?,
        };
        let got = batch.len();
        let mut used = 0;
        for e in batch {
            let at = key(&e);
            if out.events.len() == limit {
                break;
            }
            if to.is_some_and(|t| t.beyond(at, backward)) {
                out.exhausted = true;
                return Ok(out);
            }
            used += 1;
            scanned += 1;
            cursor = at;
            out.point = if backward { out.point.back_past(at) } else { out.point.forward_past(at) };
            // Storage gave the events behind `from` (backwards) or ahead
            // of it (forwards); of those, the ones on this side of `to`.
            let inside = to.is_none_or(|t| t.behind(at) != backward);
            if inside && keep(&e)? {
                out.events.push(e);
            }
        }
        if got < want && used == got {
            out.exhausted = true;
            out.at_start = backward;
            break;
        }
    }
    Ok(out)
}
