//! Room creation: `/createRoom`. This file parses and validates the request
//! into a `rooms::create::CreateRoom`; the event sequence itself belongs to
//! the room service. Nothing here writes outside the one transaction that
//! creates the room.

use std::collections::HashSet;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::api::{Request, Response};
use crate::app::App;
use crate::core::{ids, room_version};
use crate::error::{Error, ErrorKind, Result};
use crate::rooms::create::{create_room as create, CreateRoom, Preset};
use crate::storage::{rooms, users};

/// Most users one `/createRoom` may invite.
const INVITES_MAX: usize = 100;
/// Most events one `/createRoom` may list in `initial_state`.
const INITIAL_STATE_MAX: usize = 100;

#[derive(Deserialize)]
struct CreateBody {
    visibility: Option<String>,
    room_alias_name: Option<String>,
    name: Option<String>,
    topic: Option<String>,
    invite: Option<Vec<String>>,
    invite_3pid: Option<Vec<Value>>,
    room_version: Option<String>,
    preset: Option<String>,
    is_direct: Option<bool>,
    initial_state: Option<Vec<StateEvent>>,
    power_level_content_override: Option<Map<String, Value>>,
    creation_content: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
struct StateEvent {
    #[serde(rename = "type")]
    kind: String,
    state_key: Option<String>,
    content: Map<String, Value>,
}

/// POST /_matrix/client/v3/createRoom
pub fn create_room(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let body: CreateBody = req.json()?;
    let server = app.config.server_name.as_str();

    let publish = match body.visibility.as_deref() {
        None | Some("private") => false,
        Some("public") => true,
        Some(other) => {
            return Err(Error::invalid_param(format!(
                "Unknown visibility {other:?}: expected \"public\" or \"private\""
            )))
        }
    };
    let preset = match body.preset.as_deref() {
        None if publish => Preset::PublicChat,
        None => Preset::PrivateChat,
        Some(p) => Preset::parse(p).ok_or_else(|| {
            Error::invalid_param(format!(
                "Unknown preset {p:?}: expected private_chat, trusted_private_chat or public_chat"
            ))
        })?,
    };
    let version = match body.room_version.as_deref() {
        None => room_version::DEFAULT,
        Some(v) => room_version::get(v).ok_or_else(|| {
            Error::new(
                ErrorKind::UnsupportedRoomVersion,
                format!("This server does not support room version {v:?}"),
            )
        })?,
    };
    let alias = body.room_alias_name.as_deref().map(|local| full_alias(local, server)).transpose()?;
    if body.invite_3pid.as_ref().is_some_and(|list| !list.is_empty()) {
        return Err(Error::invalid_param("Third-party invites (invite_3pid) are not supported"));
    }
    let invite = invitees(body.invite.unwrap_or_default(), &who.user_id, server)?;
    let initial_state = initial_state(body.initial_state.unwrap_or_default())?;

    let request = CreateRoom {
        version,
        preset,
        name: body.name,
        topic: body.topic,
        invite,
        is_direct: body.is_direct.unwrap_or(false),
        initial_state,
        power_level_content_override: body.power_level_content_override,
        creation_content: body.creation_content.unwrap_or_default(),
        alias,
        publish,
    };
    let room_id = app.db.write(|conn| {
        if let Some(alias) = &request.alias {
            if rooms::get_alias(conn, alias)?.is_some() {
                return Err(Error::new(ErrorKind::RoomInUse, format!("The alias {alias} is already taken")));
            }
        }
        for user in &request.invite {
            match users::get(conn, user)? {
                None => return Err(Error::not_found(format!("Cannot invite {user}: no such user"))),
                Some(u) if u.deactivated => {
                    return Err(Error::forbidden(format!("Cannot invite {user}: the account is deactivated")))
                }
                Some(_) => {}
            }
        }
        create(app, conn, &who.user_id, request).map_err(invalid_state)
    })?;
    Response::ok(json!({ "room_id": room_id }))
}

/// `#local:server` from `room_alias_name`, if it makes a valid alias.
fn full_alias(local: &str, server: &str) -> Result<String> {
    let alias = format!("#{local}:{server}");
    let valid = !local.contains(':') && ids::parse_room_alias(&alias).is_some_and(|(l, _)| l == local);
    if valid {
        Ok(alias)
    } else {
        Err(Error::invalid_param(format!("room_alias_name {local:?} does not make a valid room alias")))
    }
}

/// The invite list, validated and without duplicates. Only users of this
/// server can be invited until federation exists.
fn invitees(list: Vec<String>, creator: &str, server: &str) -> Result<Vec<String>> {
    if list.len() > INVITES_MAX {
        return Err(Error::invalid_param(format!("At most {INVITES_MAX} users can be invited at once")));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for user in list {
        let Some((_, user_server)) = ids::parse_user_id(&user) else {
            return Err(Error::invalid_param(format!("{user:?} is not a valid user ID")));
        };
        if user == creator {
            return Err(Error::invalid_param("You cannot invite yourself to your own room"));
        }
        if user_server != server {
            return Err(Error::forbidden(format!(
                "Cannot invite {user}: federation is not available yet, only users of {server} can be invited"
            )));
        }
        if seen.insert(user.clone()) {
            out.push(user);
        }
    }
    Ok(out)
}

/// `initial_state` as `(type, state_key, content)`. Membership belongs to
/// `invite` (where invitees are checked) and the create event to
/// `creation_content`, so neither may appear here.
fn initial_state(list: Vec<StateEvent>) -> Result<Vec<(String, String, Value)>> {
    if list.len() > INITIAL_STATE_MAX {
        return Err(Error::invalid_param(format!("At most {INITIAL_STATE_MAX} initial_state events")));
    }
    list.into_iter()
        .map(|e| {
            if !ids::is_valid_event_type(&e.kind) {
                return Err(Error::invalid_param(format!(
                    "Invalid event type {:?} in initial_state",
                    e.kind
                )));
            }
            match e.kind.as_str() {
                "m.room.create" => Err(Error::new(
                    ErrorKind::InvalidRoomState,
                    "initial_state cannot contain m.room.create: use creation_content",
                )),
                "m.room.member" => Err(Error::new(
                    ErrorKind::InvalidRoomState,
                    "initial_state cannot contain m.room.member: use invite",
                )),
                _ => Ok((e.kind, e.state_key.unwrap_or_default(), Value::Object(e.content))),
            }
        })
        .collect()
}

/// The spec answers an initial state the room's rules refuse (say, power
/// levels that no longer let the creator name the room) with 400
/// `M_INVALID_ROOM_STATE`, not the 403 a refused event gets elsewhere.
fn invalid_state(e: Error) -> Error {
    match e.kind {
        ErrorKind::Forbidden => Error::new(
            ErrorKind::InvalidRoomState,
            format!("The room's initial state is invalid: {}", e.message),
        ),
        _ => e,
    }
}

#[derive(Deserialize)]
struct UpgradeBody {
    new_version: String,
}

/// POST /_matrix/client/v3/rooms/{roomId}/upgrade
pub fn upgrade(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let room_id = req.param("roomId");
    if !ids::is_valid_room_id(room_id) {
        return Err(Error::invalid_param(format!("{room_id:?} is not a valid room ID")));
    }
    let body: UpgradeBody = req.json()?;
    let version = room_version::get(&body.new_version).ok_or_else(|| {
        Error::new(
            ErrorKind::UnsupportedRoomVersion,
            format!("Room version {:?} is not supported by this server", body.new_version),
        )
    })?;
    let new_room =
        app.db.write(|tx| crate::rooms::upgrade::upgrade(app, tx, &who.user_id, room_id, version))?;
    Response::ok(json!({ "replacement_room": new_room }))
}
