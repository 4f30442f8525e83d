//! Membership: join, knock, invite, leave, forget, kick, ban, unban, joined
//! rooms. Each change is one `m.room.member` event through
//! `rooms::append`, so the room version's authorization rules decide what
//! is allowed; this file only picks sender, target and content, resolves
//! aliases, and adds the checks the endpoints promise beyond the rules
//! (`/kick` needs a target in the room, `/unban` a banned one).
//!
//! A room this server is in is joined, left and invited to locally (the
//! event then goes to the room's other servers). A room it is not in is
//! joined through another server (`federation::membership`): the servers
//! named by `via` / `server_name`, an alias's servers, the inviter's, the
//! room ID's (before v12), those last seen in the room. A user of another
//! server is invited through their server. With federation off, a room or
//! alias of another server is a 404.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{Auth, Request, Response};
use crate::app::App;
use crate::core::ids;
use crate::error::{Error, ErrorKind, Result};
use crate::rooms::{self, NewEvent};
use crate::storage::{self, state, users};

const JOIN: &str = "join";
const INVITE: &str = "invite";
const LEAVE: &str = "leave";
const BAN: &str = "ban";
const KNOCK: &str = "knock";

/// The body of `/join`, `/knock` and `/leave`: all they take is a reason.
/// (`third_party_signed` is not supported and ignored.)
#[derive(Deserialize)]
struct ReasonBody {
    reason: Option<String>,
}

/// The body of `/invite`, `/kick`, `/ban` and `/unban`.
#[derive(Deserialize)]
struct TargetBody {
    user_id: Option<String>,
    reason: Option<String>,
}

impl TargetBody {
    fn user_id(&self) -> Result<&str> {
        let user = self.user_id.as_deref().ok_or_else(|| Error::missing_param("user_id is required"))?;
        if ids::parse_user_id(user).is_none() {
            return Err(Error::invalid_param(format!("{user:?} is not a valid user ID")));
        }
        Ok(user)
    }
}

/// The `{roomId}` path parameter, if it is a room ID at all.
fn room_id_param(req: &Request) -> Result<&str> {
    let room_id = req.param("roomId");
    if ids::is_valid_room_id(room_id) {
        Ok(room_id)
    } else {
        Err(Error::invalid_param(format!("{room_id:?} is not a valid room ID")))
    }
}

fn unknown_room() -> Error {
    Error::not_found("No such room on this server")
}

/// The room must exist here.
fn known_room(conn: &rusqlite::Connection, room_id: &str) -> Result<()> {
    match storage::rooms::get(conn, room_id)? {
        Some(_) => Ok(()),
        None => Err(unknown_room()),
    }
}

/// A room ID or alias from the path, resolved to a room this server has.
fn resolve(app: &App, conn: &rusqlite::Connection, id_or_alias: &str) -> Result<String> {
    let room_id = resolve_anywhere(app, conn, id_or_alias)?;
    known_room(conn, &room_id)?;
    Ok(room_id)
}

/// A room ID or a local alias resolved, the room not necessarily known
/// here; an alias of another server is left to [`resolve_remote`].
fn resolve_anywhere(app: &App, conn: &rusqlite::Connection, id_or_alias: &str) -> Result<String> {
    if id_or_alias.starts_with('!') {
        if !ids::is_valid_room_id(id_or_alias) {
            return Err(Error::invalid_param(format!("{id_or_alias:?} is not a valid room ID")));
        }
        return Ok(id_or_alias.to_owned());
    }
    if !id_or_alias.starts_with('#') {
        return Err(Error::invalid_param(format!("{id_or_alias:?} is neither a room ID nor a room alias")));
    }
    let Some((_, server)) = ids::parse_room_alias(id_or_alias) else {
        return Err(Error::invalid_param(format!("{id_or_alias:?} is not a valid room alias")));
    };
    if server != app.config.server_name {
        return Err(Error::not_found(format!(
            "{id_or_alias} belongs to another server, and federation is off here"
        )));
    }
    match storage::rooms::get_alias(conn, id_or_alias)? {
        Some((room_id, _)) => Ok(room_id),
        None => Err(Error::not_found(format!("The room alias {id_or_alias} does not exist"))),
    }
}

/// A room ID or alias resolved, asking the alias's server when it is
/// another's: the room and the servers to join it through.
fn resolve_remote(app: &App, id_or_alias: &str) -> Result<(String, Vec<String>)> {
    if let Some((_, server)) =
        id_or_alias.starts_with('#').then(|| ids::parse_room_alias(id_or_alias)).flatten()
    {
        if server != app.config.server_name && app.federation.enabled() {
            return crate::federation::queries::alias(app, id_or_alias, server);
        }
    }
    Ok((app.db.read(|conn| resolve_anywhere(app, conn, id_or_alias))?, Vec::new()))
}

/// The servers to join (or leave) a room this server is not in through:
/// those the client named, then `also` (an alias's), the server that
/// invited the user, the room ID's own (rooms before v12), and servers
/// with members in the room as last seen here.
fn servers_for(
    app: &App,
    req: &Request,
    user_id: &str,
    room_id: &str,
    also: Vec<String>,
) -> Result<Vec<String>> {
    let mut servers: Vec<String> = req
        .query
        .iter()
        .filter(|(k, _)| k == "via" || k == "server_name")
        .map(|(_, v)| v.clone())
        .filter(|v| ids::is_valid_server_name(v))
        .take(20)
        .collect();
    servers.extend(also);
    app.db.read(|conn| {
        if let Some(id) = state::membership_event(conn, user_id, room_id)? {
            if let Some(e) = storage::events::get(conn, &id)? {
                servers.extend(ids::parse_user_id(&e.sender).map(|(_, s)| s.to_owned()));
            }
        }
        Ok(())
    })?;
    if let Some((_, server)) = room_id.split_once(':') {
        servers.push(server.to_owned());
    }
    servers.extend(app.db.read(|conn| storage::graph::servers_in_room(conn, room_id))?);
    let mut seen = std::collections::HashSet::new();
    servers.retain(|s| *s != app.config.server_name && seen.insert(s.clone()));
    Ok(servers)
}

/// True if this server has a user joined to the room (so it changes the
/// room itself, and the event goes out to the other servers).
fn in_room_here(app: &App, room_id: &str) -> Result<bool> {
    app.db.read(|conn| {
        Ok(storage::rooms::get(conn, room_id)?.is_some()
            && storage::room_reads::server_has_joined_member(conn, room_id, &app.config.server_name)?)
    })
}

/// Joins `who` to a room, here or through another server.
fn join_anywhere(
    app: &App,
    req: &Request,
    who: &Auth,
    room_id: &str,
    also: Vec<String>,
    body: &ReasonBody,
) -> Result<()> {
    if !app.federation.enabled() || in_room_here(app, room_id)? {
        return app.db.write(|conn| {
            known_room(conn, room_id)?;
            join_room(app, conn, who, room_id, body)
        });
    }
    let servers = servers_for(app, req, &who.user_id, room_id, also)?;
    if servers.is_empty() {
        return Err(Error::not_found("No server is known to be in that room; name one with via"));
    }
    crate::federation::membership::join_remote(app, &who.user_id, room_id, &servers)
}

/// Appends `sender`'s `m.room.member` event for `target`.
fn append_member(
    app: &App,
    conn: &crate::storage::Tx,
    room_id: &str,
    sender: &str,
    target: &str,
    membership: &str,
    reason: Option<&str>,
) -> Result<()> {
    let mut content = json!({ "membership": membership });
    if let Some(reason) = reason {
        content["reason"] = json!(reason);
    }
    let new = NewEvent { kind: "m.room.member", state_key: Some(target), content, redacts: None, txn: None };
    rooms::append(app, conn, room_id, sender, new).map(|_| ())
}

/// Joins `who` to a resolved room. Joining a room one is in already
/// changes nothing and succeeds, so a retried join is harmless.
fn join_room(
    app: &App,
    conn: &crate::storage::Tx,
    who: &Auth,
    room_id: &str,
    body: &ReasonBody,
) -> Result<()> {
    if state::membership(conn, &who.user_id, room_id)?.as_deref() == Some(JOIN) {
        return Ok(());
    }
    append_member(app, conn, room_id, &who.user_id, &who.user_id, JOIN, body.reason.as_deref())
}

/// POST /_matrix/client/v3/join/{roomIdOrAlias}
pub fn join_by_id_or_alias(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let body: ReasonBody = req.json_or_empty()?;
    let (room_id, servers) = resolve_remote(app, req.param("roomIdOrAlias"))?;
    join_anywhere(app, req, who, &room_id, servers, &body)?;
    Response::ok(json!({ "room_id": room_id }))
}

/// POST /_matrix/client/v3/rooms/{roomId}/join
pub fn join(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let room_id = room_id_param(req)?;
    let body: ReasonBody = req.json_or_empty()?;
    join_anywhere(app, req, who, room_id, Vec::new(), &body)?;
    Response::ok(json!({ "room_id": room_id }))
}

/// POST /_matrix/client/v3/knock/{roomIdOrAlias}
pub fn knock(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let body: ReasonBody = req.json_or_empty()?;
    let (room_id, also) = resolve_remote(app, req.param("roomIdOrAlias"))?;
    if app.federation.enabled() && !in_room_here(app, &room_id)? {
        let pending = app.db.read(|conn| state::membership(conn, &who.user_id, &room_id))?;
        if pending.as_deref() != Some(KNOCK) {
            let servers = servers_for(app, req, &who.user_id, &room_id, also)?;
            if servers.is_empty() {
                return Err(unknown_room());
            }
            crate::federation::membership::knock_remote(
                app,
                &who.user_id,
                &room_id,
                &servers,
                body.reason.as_deref(),
            )?;
        }
        return Response::ok(json!({ "room_id": room_id }));
    }
    let room_id = app.db.write(|conn| {
        let room_id = resolve(app, conn, &room_id)?;
        // Knocking again while a knock is pending changes nothing.
        if state::membership(conn, &who.user_id, &room_id)?.as_deref() != Some(KNOCK) {
            append_member(app, conn, &room_id, &who.user_id, &who.user_id, KNOCK, body.reason.as_deref())?;
        }
        Ok(room_id)
    })?;
    Response::ok(json!({ "room_id": room_id }))
}

/// POST /_matrix/client/v3/rooms/{roomId}/invite
pub fn invite(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let room_id = room_id_param(req)?;
    let body: TargetBody = req.json()?;
    let target = body.user_id()?;
    let server = app.config.server_name.as_str();
    if ids::parse_user_id(target).is_some_and(|(_, s)| s != server) {
        if !app.federation.enabled() {
            return Err(Error::forbidden(format!(
                "Cannot invite {target}: federation is off, only users of {server} can be invited"
            )));
        }
        let already = app.db.read(|conn| {
            known_room(conn, room_id)?;
            Ok(state::membership(conn, target, room_id)?.as_deref() == Some(INVITE)
                && may_invite(conn, room_id, &who.user_id)?)
        })?;
        if !already {
            crate::federation::membership::invite_remote(
                app,
                room_id,
                &who.user_id,
                target,
                body.reason.as_deref(),
            )?;
        }
        return Response::ok(json!({}));
    }
    app.db.write(|conn| {
        known_room(conn, room_id)?;
        match users::get(conn, target)? {
            None => return Err(Error::not_found(format!("Cannot invite {target}: no such user"))),
            Some(u) if u.deactivated => {
                return Err(Error::forbidden(format!("Cannot invite {target}: the account is deactivated")))
            }
            Some(_) => {}
        }
        // The spec: 200 when the user "was already invited", if the sender
        // could have invited them; no second invite event is needed.
        if state::membership(conn, target, room_id)?.as_deref() == Some(INVITE)
            && may_invite(conn, room_id, &who.user_id)?
        {
            return Ok(());
        }
        append_member(app, conn, room_id, &who.user_id, target, INVITE, body.reason.as_deref())
    })?;
    Response::ok(json!({}))
}

/// True if `user` is in the room with the power to invite, as the
/// authorization rules would judge an invite.
fn may_invite(conn: &rusqlite::Connection, room_id: &str, user: &str) -> Result<bool> {
    if state::membership(conn, user, room_id)?.as_deref() != Some(JOIN) {
        return Ok(false);
    }
    let (_, version) = rooms::room_and_version(conn, room_id)?;
    let (levels, creators) = rooms::current_power(conn, room_id, version)?;
    Ok(levels.user_level(user, &creators).at_least(levels.invite()))
}

/// POST /_matrix/client/v3/rooms/{roomId}/leave
///
/// Leaves a joined room, rejects an invite or retracts a knock. Leaving a
/// room one has already left succeeds and changes nothing.
pub fn leave(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let room_id = room_id_param(req)?;
    let body: ReasonBody = req.json_or_empty()?;
    if app.federation.enabled() && !in_room_here(app, room_id)? {
        // An invite (or knock) of a room elsewhere: rejected through the
        // room's servers.
        let membership = app.db.read(|conn| state::membership(conn, &who.user_id, room_id))?;
        match membership.as_deref() {
            None => return Err(unknown_room()),
            Some(LEAVE | BAN) => return Response::ok(json!({})),
            Some(_) => {
                let servers = servers_for(app, req, &who.user_id, room_id, Vec::new())?;
                crate::federation::membership::leave_remote(app, &who.user_id, room_id, &servers)?;
                return Response::ok(json!({}));
            }
        }
    }
    app.db.write(|conn| {
        known_room(conn, room_id)?;
        if state::membership(conn, &who.user_id, room_id)?.as_deref() == Some(LEAVE) {
            return Ok(());
        }
        append_member(app, conn, room_id, &who.user_id, &who.user_id, LEAVE, body.reason.as_deref())
    })?;
    Response::ok(json!({}))
}

/// POST /_matrix/client/v3/rooms/{roomId}/forget
///
/// Only a room one has left (or been banned from) can be forgotten: while
/// joined, invited or knocking it is 400 `M_UNKNOWN`, as the spec's
/// example; a room one was never in is 404.
pub fn forget(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let room_id = room_id_param(req)?;
    app.db.write(|conn| match state::membership(conn, &who.user_id, room_id)?.as_deref() {
        None => Err(Error::not_found("You have never been in this room")),
        Some(LEAVE | BAN) => {
            state::forget(conn, &who.user_id, room_id)?;
            Ok(())
        }
        Some(m) => Err(Error::new(
            ErrorKind::Unknown,
            format!("Your membership of {room_id} is {m}: leave the room before forgetting it"),
        )),
    })?;
    Response::ok(json!({}))
}

/// POST /_matrix/client/v3/rooms/{roomId}/kick
///
/// The target must be in the room, invited or knocking (a kick then
/// rescinds the invite or refuses the knock); a banned user is unbanned
/// with `/unban`, not kicked.
pub fn kick(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let room_id = room_id_param(req)?;
    let body: TargetBody = req.json()?;
    let target = body.user_id()?;
    app.db.write(|conn| {
        known_room(conn, room_id)?;
        match state::membership(conn, target, room_id)?.as_deref() {
            Some(JOIN | INVITE | KNOCK) => {}
            Some(BAN) => return Err(Error::forbidden(format!("{target} is banned: use /unban"))),
            _ => return Err(Error::forbidden(format!("{target} is not in the room"))),
        }
        append_member(app, conn, room_id, &who.user_id, target, LEAVE, body.reason.as_deref())
    })?;
    Response::ok(json!({}))
}

/// POST /_matrix/client/v3/rooms/{roomId}/ban
pub fn ban(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let room_id = room_id_param(req)?;
    let body: TargetBody = req.json()?;
    let target = body.user_id()?;
    app.db.write(|conn| {
        known_room(conn, room_id)?;
        append_member(app, conn, room_id, &who.user_id, target, BAN, body.reason.as_deref())
    })?;
    Response::ok(json!({}))
}

/// POST /_matrix/client/v3/rooms/{roomId}/unban
///
/// Only a banned user can be unbanned: an unban must never kick.
pub fn unban(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let room_id = room_id_param(req)?;
    let body: TargetBody = req.json()?;
    let target = body.user_id()?;
    app.db.write(|conn| {
        known_room(conn, room_id)?;
        if state::membership(conn, target, room_id)?.as_deref() != Some(BAN) {
            return Err(Error::forbidden(format!("{target} is not banned from the room")));
        }
        append_member(app, conn, room_id, &who.user_id, target, LEAVE, body.reason.as_deref())
    })?;
    Response::ok(json!({}))
}

/// GET /_matrix/client/v3/joined_rooms
pub fn joined_rooms(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let rooms = app.db.read(|conn| state::rooms_of_user(conn, &who.user_id, JOIN))?;
    Response::ok(json!({ "joined_rooms": rooms.into_iter().map(Value::String).collect::<Vec<_>>() }))
}
