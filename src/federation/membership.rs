//! Joins, leaves and invites across servers, both ways.
//!
//! As the joining server: `make_join` on a resident server (offering the
//! room versions Hearth supports), the template filled and signed, then
//! `send_join` v2; every event of the answer's `state` and `auth_chain`
//! is checked (shape, signatures, hash, the rules against its own auth
//! events) and kept as an outlier, and the join enters the timeline with
//! that state (`rooms::dag::persist_remote_join`). Full state is asked
//! for (no `omit_members`).
//!
//! As the resident server: `make_join` / `make_leave` answer a template
//! built as a local event would be and checked against the current state;
//! `send_join` / `send_leave` take the signed event through the same
//! checks as any PDU, relay it to the room's other servers, and answer
//! `send_join` with the state before the join, its auth chain and the
//! servers in the room.
//!
//! Invites: a local user invited to a room elsewhere (`invite` v2) gets
//! the event co-signed by this server, kept as an outlier with the
//! `invite_room_state` the inviting server sent in its `unsigned`, and
//! the invite shows in their sync. A remote user invited from here: the
//! invite goes to their server first, and only the event it signed
//! enters the room.

use std::io::Read;

use serde_json::{json, Value};

use crate::app::App;
use crate::core::event;
use crate::core::ids;
use crate::core::room_version::{self, RoomVersion};
use crate::error::{Error, ErrorKind, Result};
use crate::federation::client::remote_error;
use crate::federation::join_state::{JoinAnswer, JOIN_ANSWER_MAX};
use crate::federation::pdus::{self, check_received};
use crate::outbound::client::Answer;
use crate::outbound::client::Method;
use crate::rooms::dag::{self, Incoming, Place, Verdict};
use crate::storage::{self, graph::Status, state::StateMap};
use crate::util::{lock, percent_encode};

/// Servers tried in turn for one join.
pub const JOIN_SERVERS_MAX: usize = 5;

fn ver_query() -> String {
    room_version::SUPPORTED.iter().map(|v| format!("ver={}", v.id)).collect::<Vec<_>>().join("&")
}

// As the joining server.

/// Joins `user_id` (of this server) to `room_id` through the first of
/// `servers` that lets them. The error of the last server tried when none
/// does.
pub fn join_remote(app: &App, user_id: &str, room_id: &str, servers: &[String]) -> Result<()> {
    let own = &app.config.server_name;
    let mut last = Error::not_found("No server in the room could be reached to join it");
    for server in servers.iter().filter(|s| *s != own).take(JOIN_SERVERS_MAX) {
        match join_through(app, user_id, room_id, server) {
            Ok(()) => return Ok(()),
            Err(e) => {
                crate::log::info(format_args!("joining {room_id} through {server}: {e}"));
                let refused =
                    matches!(e.kind, ErrorKind::Forbidden | ErrorKind::IncompatibleRoomVersion { .. });
                last = e;
                if refused {
                    break;
                }
            }
        }
    }
    Err(last)
}

/// The template a resident server sent, checked: a join of `user_id` to
/// `room_id`, sent by them.
fn checked_template(template: &Value, user_id: &str, room_id: &str, membership: &str) -> Result<()> {
    let s = |k: &str| template.get(k).and_then(Value::as_str);
    let ok = s("type") == Some("m.room.member")
        && s("state_key") == Some(user_id)
        && s("sender") == Some(user_id)
        && s("room_id") == Some(room_id)
        && template.pointer("/content/membership").and_then(Value::as_str) == Some(membership);
    if ok {
        Ok(())
    } else {
        Err(Error::bad_gateway(format!(
            "the resident server sent a template that is not a {membership} of {user_id}"
        )))
    }
}

/// Fills and signs a resident server's template as this server's event.
fn sign_template(
    app: &App,
    version: &RoomVersion,
    template: &Value,
    user_id: &str,
) -> Result<(String, Value)> {
    let mut pdu = template.clone();
    let own = &app.config.server_name;
    let Some(obj) = pdu.as_object_mut() else {
        return Err(Error::bad_gateway("the template is not an object"));
    };
    for key in ["signatures", "hashes", "unsigned", "event_id"] {
        obj.remove(key);
    }
    obj.insert("origin".into(), json!(own));
    obj.insert("origin_server_ts".into(), json!(storage::now_ms()));
    if let Some(id) = crate::rooms::new_event_id(version, own) {
        obj.insert("event_id".into(), json!(id));
    }
    let profile = app.db.read(|tx| storage::profiles::get(tx, user_id))?;
    if let (Some(p), Some(content)) = (profile, obj.get_mut("content").and_then(Value::as_object_mut)) {
        if content.get("membership").and_then(Value::as_str) == Some("join") {
            if let Some(name) = p.displayname {
                content.entry("displayname").or_insert(json!(name));
            }
            if let Some(url) = p.avatar_url {
                content.entry("avatar_url").or_insert(json!(url));
            }
        }
    }
    event::hash_and_sign(version, &app.server_key, own, &mut pdu)
        .map_err(|e| Error::bad_gateway(format!("the template cannot be signed: {e}")))?;
    event::validate_pdu_shape(version, &pdu).map_err(|e| Error::bad_gateway(format!("the template: {e}")))?;
    let event_id = event::event_id(version, &pdu).map_err(|e| Error::internal(e.to_string()))?;
    Ok((event_id, pdu))
}

fn join_through(app: &App, user_id: &str, room_id: &str, server: &str) -> Result<()> {
    let uri = format!(
        "/_matrix/federation/v1/make_join/{}/{}?{}",
        percent_encode(room_id),
        percent_encode(user_id),
        ver_query()
    );
    let answer = app.federation.get(server, &uri)?;
    let version_id = answer.get("room_version").and_then(Value::as_str).unwrap_or("1");
    let version = room_version::get(version_id).ok_or_else(|| {
        Error::new(
            ErrorKind::UnsupportedRoomVersion,
            format!("the room has version {version_id}, unknown here"),
        )
    })?;
    let template =
        answer.get("event").ok_or_else(|| Error::bad_gateway(format!("{server} sent no template")))?;
    checked_template(template, user_id, room_id, "join")?;
    let (event_id, mut join) = sign_template(app, version, template, user_id)?;
    let uri =
        format!("/_matrix/federation/v2/send_join/{}/{}", percent_encode(room_id), percent_encode(&event_id));
    let started = std::time::Instant::now();
    let streamed = app.federation.request_stream(Method::Put, server, &uri, Some(&join), JOIN_ANSWER_MAX)?;
    if !streamed.is_success() {
        let mut body = Vec::new();
        let _ = streamed.reader.take(64 * 1024).read_to_end(&mut body);
        let answer = Answer { status: streamed.status, headers: streamed.headers, body };
        return Err(remote_error(server, &answer));
    }
    let answer = JoinAnswer::receive(app, version, room_id, streamed.reader)?;
    let received = started.elapsed();
    // A restricted join comes back signed by its authorising server too.
    if let Some(signed) = &answer.event {
        if let Ok((id, kept)) = check_received(app, version, signed) {
            if id == event_id {
                join = kept;
            }
        }
    }
    let create = answer
        .create()?
        .ok_or_else(|| Error::bad_gateway(format!("{server} sent no m.room.create event")))?;
    let created_version = create.pointer("/content/room_version").and_then(Value::as_str).unwrap_or("1");
    if created_version != version.id {
        return Err(Error::bad_gateway(format!("the room's create event says version {created_version}")));
    }
    if version.room_id_from_create {
        let from_create =
            event::room_id_from_create(version, &create).map_err(|e| Error::bad_gateway(e.to_string()))?;
        if from_create != room_id {
            return Err(Error::bad_gateway("the create event is not this room's"));
        }
    }
    let creator = create.get("sender").and_then(Value::as_str).unwrap_or_default().to_owned();
    let room_lock = app.fed_memo.rooms.of(room_id);
    let _held = lock(&room_lock);
    answer.store(app, version, room_id)?;
    let stored = started.elapsed();
    app.db.write(|tx| {
        let mut state = StateMap::new();
        for id in answer.state_ids() {
            // Outliers all, unless the room was known here already.
            let found = match storage::graph::outlier_key(tx, id)? {
                Some((status, kind, key)) => Some((status != Status::Rejected, kind, key)),
                None => dag::load_any(tx, id)?
                    .map(|(e, place)| (place != Place::Outside(Status::Rejected), e.kind, e.state_key)),
            };
            if let Some((true, kind, Some(key))) = found {
                state.insert((kind, key), id.clone());
            }
        }
        dag::persist_remote_join(
            tx,
            &Incoming { version, room_id, event_id: &event_id, pdu: &join },
            &state,
            &creator,
        )
    })?;
    crate::log::info(format_args!(
        "joined {room_id} through {server}: {} events received, {} checked ({} dropped), {} in the state; \
         read and checked in {} ms, stored by {} ms, joined by {} ms",
        answer.received,
        answer.len(),
        answer.dropped,
        answer.state_ids().len(),
        received.as_millis(),
        stored.as_millis(),
        started.elapsed().as_millis()
    ));
    Ok(())
}

/// Leaves (or rejects an invite to) a room this server has no one joined
/// in, through `servers`: `make_leave`, sign, `send_leave` v2. The leave
/// is kept as an outlier and the user's membership set to it.
pub fn leave_remote(app: &App, user_id: &str, room_id: &str, servers: &[String]) -> Result<()> {
    member_remote(app, user_id, room_id, servers, "leave", None)
}

/// Knocks on a room of another server: `make_knock` (offering the
/// versions Hearth supports), sign, `send_knock`; the knock is kept as an
/// outlier with the `knock_room_state` the server sent, and shows in the
/// user's sync.
pub fn knock_remote(
    app: &App,
    user_id: &str,
    room_id: &str,
    servers: &[String],
    reason: Option<&str>,
) -> Result<()> {
    member_remote(app, user_id, room_id, servers, "knock", reason)
}

fn member_remote(
    app: &App,
    user_id: &str,
    room_id: &str,
    servers: &[String],
    membership: &str,
    reason: Option<&str>,
) -> Result<()> {
    let own = &app.config.server_name;
    let mut last = Error::not_found("No server in the room could be reached");
    for server in servers.iter().filter(|s| *s != own).take(JOIN_SERVERS_MAX) {
        let attempt = (|| -> Result<()> {
            let versions = if membership == "knock" { format!("?{}", ver_query()) } else { String::new() };
            let uri = format!(
                "/_matrix/federation/v1/make_{membership}/{}/{}{versions}",
                percent_encode(room_id),
                percent_encode(user_id)
            );
            let answer = app.federation.get(server, &uri)?;
            let version_id = answer.get("room_version").and_then(Value::as_str).unwrap_or("1");
            let version = room_version::get(version_id)
                .ok_or_else(|| Error::new(ErrorKind::UnsupportedRoomVersion, "unknown room version"))?;
            let mut template =
                answer.get("event").cloned().ok_or_else(|| Error::bad_gateway("no template"))?;
            checked_template(&template, user_id, room_id, membership)?;
            if let (Some(reason), Some(content)) =
                (reason, template.get_mut("content").and_then(Value::as_object_mut))
            {
                content.insert("reason".into(), json!(reason));
            }
            let (event_id, event) = sign_template(app, version, &template, user_id)?;
            let api = if membership == "knock" { "v1" } else { "v2" };
            let uri = format!(
                "/_matrix/federation/{api}/send_{membership}/{}/{}",
                percent_encode(room_id),
                percent_encode(&event_id)
            );
            let answer = app.federation.put(server, &uri, &event)?;
            let mut stored = event.clone();
            if let Some(state) = answer.get("knock_room_state").and_then(Value::as_array) {
                let kept: Vec<Value> = state.iter().filter(|e| e.is_object()).take(64).cloned().collect();
                stored["unsigned"] = json!({ "invite_room_state": kept });
            }
            app.db.write(|tx| {
                let ev = Incoming { version, room_id, event_id: &event_id, pdu: &stored };
                dag::put_outlier(tx, &ev, Status::Outlier, None, 0)?;
                let pos = storage::events::next_pos(tx)?;
                storage::state::set_membership(tx, user_id, room_id, membership, &event_id, pos)?;
                tx.changed(pos, &[room_id], &[user_id]);
                Ok(())
            })
        })();
        match attempt {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(last)
}

// As the resident server.

/// The room and its version, for a request of `origin` about `user_id`:
/// the user must be of that server, the room known here with one of this
/// server's users in it, and the origin not denied by the room's ACL.
fn resident_room(app: &App, origin: &str, room_id: &str, user_id: &str) -> Result<&'static RoomVersion> {
    match ids::parse_user_id(user_id) {
        Some((_, server)) if server == origin => {}
        Some(_) => return Err(Error::forbidden("The user is not of the requesting server")),
        None => return Err(Error::invalid_param(format!("{user_id:?} is not a valid user ID"))),
    }
    let own = app.config.server_name.clone();
    app.db.read(|tx| {
        let room = storage::rooms::get(tx, room_id)?.ok_or_else(|| Error::not_found("Unknown room"))?;
        if !storage::room_reads::server_has_joined_member(tx, room_id, &own)? {
            return Err(Error::not_found("This server is not in the room"));
        }
        crate::federation::room_reads::check_acl(tx, room_id, origin)?;
        room_version::get(&room.version).ok_or_else(|| Error::internal("a room of an unknown version"))
    })
}

/// `make_join` / `make_leave` / `make_knock`: the template for `user_id`.
pub fn make_member(
    app: &App,
    origin: &str,
    room_id: &str,
    user_id: &str,
    membership: &str,
    versions: Option<&[&str]>,
) -> Result<Value> {
    let version = resident_room(app, origin, room_id, user_id)?;
    if let Some(offered) = versions {
        if !offered.contains(&version.id) {
            return Err(Error::new(
                ErrorKind::IncompatibleRoomVersion { room_version: version.id },
                format!("The room has version {}, which the joining server does not support", version.id),
            ));
        }
    }
    let (template, version) = app.db.read(|tx| {
        crate::rooms::remote_member_template(app, tx, room_id, user_id, json!({ "membership": membership }))
    })?;
    Ok(json!({ "event": template, "room_version": version.id }))
}

/// `send_join` / `send_leave` / `send_knock`: the signed event of the
/// user's server, checked like any PDU and placed in the room, then
/// relayed to the room's other servers. Returns the event as stored (a
/// restricted join with this server's signature added) and its version.
pub fn send_member(
    app: &App,
    origin: &str,
    room_id: &str,
    event_id: &str,
    body: &Value,
    membership: &str,
) -> Result<(Value, &'static RoomVersion)> {
    let s = |k: &str| body.get(k).and_then(Value::as_str);
    let sender = s("sender").ok_or_else(|| Error::bad_json("The event has no sender"))?;
    let version = resident_room(app, origin, room_id, sender)?;
    if s("type") != Some("m.room.member")
        || s("state_key") != Some(sender)
        || s("room_id") != Some(room_id)
        || body.pointer("/content/membership").and_then(Value::as_str) != Some(membership)
    {
        return Err(Error::bad_json(format!("The event must be {sender}'s own {membership} of this room")));
    }
    let mut pdu = body.clone();
    // A restricted join this server authorises: its signature goes on first.
    let authoriser = pdu.pointer("/content/join_authorised_via_users_server").and_then(Value::as_str);
    if authoriser.and_then(ids::parse_user_id).is_some_and(|(_, s)| s == app.config.server_name) {
        event::hash_and_sign(version, &app.server_key, &app.config.server_name, &mut pdu)
            .map_err(|e| Error::bad_json(format!("The event cannot be signed: {e}")))?;
    }
    let (id, kept) = check_received(app, version, &pdu).map_err(Error::bad_json)?;
    if id != event_id {
        return Err(Error::bad_json(format!("The event's ID is {id}, not {event_id}")));
    }
    let room_lock = app.fed_memo.rooms.of(room_id);
    let _held = lock(&room_lock);
    let ev = Incoming { version, room_id, event_id: &id, pdu: &kept };
    match pdus::place(app, origin, &ev, false)? {
        Verdict::Stored(_) => app.db.write(|tx| crate::rooms::relay(app, tx, room_id, &kept, origin))?,
        Verdict::Known => {}
        Verdict::Rejected(reason) | Verdict::SoftFailed(reason) => {
            return Err(Error::forbidden(format!("The {membership} is not allowed: {reason}")))
        }
        Verdict::MissingAuth(_) | Verdict::MissingPrevs(_) => {
            return Err(Error::forbidden(format!("The {membership} cites events this server does not have")))
        }
    }
    Ok((kept, version))
}

/// The answer to `send_join` v2 once the join is in: the state before it,
/// the auth chain of that state and the join, the servers in the room.
pub fn join_answer(app: &App, room_id: &str, event_id: &str, event: Value) -> Result<Value> {
    app.db.read(|tx| {
        let join = storage::events::timeline_event(tx, event_id)?
            .ok_or_else(|| Error::internal("the join just stored is missing"))?;
        let state = storage::state::group_state(tx, join.state_before)?;
        let state_ids: Vec<&str> = state.values().map(String::as_str).collect();
        let mut seeds = state_ids.clone();
        seeds.push(event_id);
        let mut chain: Vec<String> = storage::events::with_auth_chains(tx, &seeds)?
            .into_iter()
            .filter(|id| id != event_id && !state.values().any(|s| s == id))
            .collect();
        chain.sort();
        let pdus_of = |ids: &mut dyn Iterator<Item = &str>| -> Result<Vec<Value>> {
            let mut out = Vec::new();
            for id in ids {
                if let Some(p) = crate::rooms::load_readable_pdu(tx, id)? {
                    out.push(without_unsigned(p));
                }
            }
            Ok(out)
        };
        let state_pdus = pdus_of(&mut state_ids.iter().copied())?;
        let chain_pdus = pdus_of(&mut chain.iter().map(String::as_str))?;
        Ok(json!({
            "origin": app.config.server_name,
            "state": state_pdus,
            "auth_chain": chain_pdus,
            "event": without_unsigned(event),
            "members_omitted": false,
            "servers_in_room": storage::graph::servers_in_room(tx, room_id)?,
        }))
    })
}

fn without_unsigned(mut pdu: Value) -> Value {
    if let Some(obj) = pdu.as_object_mut() {
        obj.remove("unsigned");
    }
    pdu
}

// Invites.

/// `invite` v2: a local user invited to a room on `origin`. The event is
/// checked, co-signed, kept as an outlier with the `invite_room_state` in
/// its `unsigned`, and the user's membership becomes the invite.
pub fn receive_invite(app: &App, origin: &str, room_id: &str, event_id: &str, body: &Value) -> Result<Value> {
    let version_id = body.get("room_version").and_then(Value::as_str).unwrap_or("1");
    let Some(version) = room_version::get(version_id) else {
        return Err(Error::new(
            ErrorKind::IncompatibleRoomVersion { room_version: "unknown" },
            format!("Room version {version_id:?} is not supported here"),
        ));
    };
    let event = body.get("event").ok_or_else(|| Error::missing_param("event is required"))?;
    let s = |k: &str| event.get(k).and_then(Value::as_str);
    let target = s("state_key").ok_or_else(|| Error::bad_json("The invite has no state_key"))?;
    let sender = s("sender").unwrap_or_default();
    let own = app.config.server_name.clone();
    if s("type") != Some("m.room.member")
        || s("room_id") != Some(room_id)
        || event.pointer("/content/membership").and_then(Value::as_str) != Some("invite")
    {
        return Err(Error::bad_json("The event must be an invite to this room"));
    }
    if ids::parse_user_id(target).map(|(_, s)| s) != Some(own.as_str()) {
        return Err(Error::bad_json("The invitee is not a user of this server"));
    }
    if ids::parse_user_id(sender).map(|(_, s)| s) != Some(origin) {
        return Err(Error::forbidden("The inviter is not of the requesting server"));
    }
    match app.db.read(|tx| storage::users::get(tx, target))? {
        Some(u) if !u.deactivated => {}
        _ => return Err(Error::not_found(format!("No such user {target}"))),
    }
    let mut signed = event.clone();
    if let Some(obj) = signed.as_object_mut() {
        obj.remove("unsigned");
    }
    event::hash_and_sign(version, &app.server_key, &own, &mut signed)
        .map_err(|e| Error::bad_json(format!("The invite cannot be signed: {e}")))?;
    let (id, kept) = check_received(app, version, &signed).map_err(Error::forbidden)?;
    if id != event_id {
        return Err(Error::bad_json(format!("The event's ID is {id}, not {event_id}")));
    }
    let mut stored = kept.clone();
    let stripped: Vec<Value> = body
        .get("invite_room_state")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter(|e| e.is_object()).take(64).cloned().collect())
        .unwrap_or_default();
    stored["unsigned"] = json!({ "invite_room_state": stripped });
    // A room this server is in already: the invite goes into its graph as
    // any event of the room would (the same event comes by /send too).
    let in_room = app.db.read(|tx| {
        Ok(storage::rooms::get(tx, room_id)?.is_some()
            && storage::room_reads::server_has_joined_member(tx, room_id, &own)?)
    })?;
    if in_room {
        let room_lock = app.fed_memo.rooms.of(room_id);
        let _held = lock(&room_lock);
        let ev = Incoming { version, room_id, event_id: &id, pdu: &kept };
        if matches!(pdus::place(app, origin, &ev, true), Ok(Verdict::Stored(_) | Verdict::Known)) {
            return Ok(json!({ "event": without_unsigned(kept) }));
        }
    }
    app.db.write(|tx| {
        let joined = storage::state::membership(tx, target, room_id)?;
        if joined.as_deref() == Some("join") {
            return Ok(());
        }
        let ev = Incoming { version, room_id, event_id: &id, pdu: &stored };
        dag::put_outlier(tx, &ev, Status::Outlier, None, 0)?;
        let pos = storage::events::next_pos(tx)?;
        storage::state::set_membership(tx, target, room_id, "invite", &id, pos)?;
        tx.changed(pos, &[room_id], &[target]);
        Ok(())
    })?;
    Ok(json!({ "event": without_unsigned(kept) }))
}

/// Invites `target`, a user of another server, to a room here: the event
/// built and checked, co-signed by their server (`invite` v2), then in the
/// room and handed to the room's servers and theirs.
pub fn invite_remote(
    app: &App,
    room_id: &str,
    sender: &str,
    target: &str,
    reason: Option<&str>,
) -> Result<()> {
    let Some((_, server)) = ids::parse_user_id(target) else {
        return Err(Error::invalid_param(format!("{target:?} is not a valid user ID")));
    };
    let mut content = json!({ "membership": "invite" });
    if let Some(reason) = reason {
        content["reason"] = json!(reason);
    }
    let new = crate::rooms::NewEvent {
        kind: "m.room.member",
        state_key: Some(target),
        content,
        redacts: None,
        txn: None,
    };
    let (event_id, pdu, version, stripped) = app.db.read(|tx| {
        let (id, pdu, version) = crate::rooms::build_checked(app, tx, room_id, sender, new)?;
        Ok((id, pdu, version, crate::rooms::invite_room_state(tx, room_id)?))
    })?;
    let signed = send_invite(app, server, version, &event_id, &pdu, stripped)?;
    let room_lock = app.fed_memo.rooms.of(room_id);
    let _held = lock(&room_lock);
    app.db.write(|tx| {
        let before = storage::graph::servers_in_room(tx, room_id)?;
        let ev = Incoming { version, room_id, event_id: &event_id, pdu: &signed };
        match dag::ingest(app, tx, &ev, None, dag::Arrival::Live)? {
            Verdict::Stored(_) => crate::rooms::fan_out(app, tx, room_id, &before, &signed, Some(target)),
            Verdict::Known => Ok(()),
            other => Err(Error::forbidden(format!("The invite could not enter the room: {other:?}"))),
        }
    })
}

/// Sends an invite of a user of `server` to their server first (`invite`
/// v2) and returns the event it signed back, checked.
pub fn send_invite(
    app: &App,
    server: &str,
    version: &RoomVersion,
    event_id: &str,
    pdu: &Value,
    invite_room_state: Vec<Value>,
) -> Result<Value> {
    let room_id = pdu.get("room_id").and_then(Value::as_str).unwrap_or_default();
    let uri =
        format!("/_matrix/federation/v2/invite/{}/{}", percent_encode(room_id), percent_encode(event_id));
    let body = json!({ "event": pdu, "room_version": version.id, "invite_room_state": invite_room_state });
    let answer = app.federation.put(server, &uri, &body)?;
    let signed =
        answer.get("event").ok_or_else(|| Error::bad_gateway(format!("{server} sent no signed invite")))?;
    let (id, kept) = check_received(app, version, signed).map_err(Error::bad_gateway)?;
    if id != event_id {
        return Err(Error::bad_gateway(format!("{server} signed another event ({id})")));
    }
    pdus::verify_signature_of(app, version, &kept, server)
        .map_err(|e| Error::bad_gateway(format!("the invite {server} sent back: {e}")))?;
    Ok(kept)
}
