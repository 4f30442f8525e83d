//! The room service: how a local event enters a room. It selects the auth
//! events from the room's current state, builds and signs the PDU
//! (`core::event`), checks it against the room version's authorization rules
//! (`core::auth`), and stores it with its state changes, all inside the
//! caller's write transaction. Also: room creation, reading state at any
//! event, and turning stored events into the client format.
//!
//! **Architecture Invariant:** nothing here knows HTTP; every check that
//! protects the room happens here, so each endpoint that adds an event gets
//! the same rules.

pub mod create;
pub mod dag;
pub mod format;
pub mod read;
pub mod token;
pub mod upgrade;
pub mod visibility;

use std::collections::{BTreeMap, HashMap};

use rusqlite::Connection;
use serde_json::Value;

use crate::app::App;
use crate::core::auth;
use crate::core::event::{self, EventError, PduTemplate};
use crate::core::room_version::{self, RoomVersion};
use crate::crypto::canonical;
use crate::crypto::token::{random_string, ALNUM};
use crate::error::{Error, ErrorKind, Result};
use crate::storage::rooms::{self, Room};
use crate::storage::{self, state, Tx};
use crate::storage::{events, graph};
pub use read::*;

/// Most `prev_events` a local event cites.
const PREV_EVENTS_MAX: usize = 10;

/// Length of the random part of an event ID in rooms v1–v2
/// (`$random:server`); 24 alphanumerics are 142 bits.
const EVENT_ID_RANDOM_LEN: usize = 24;

/// The content key naming the member who authorised a restricted join.
const AUTHORISER_KEY: &str = "join_authorised_via_users_server";

/// A local event to add to a room.
pub struct NewEvent<'a> {
    pub kind: &'a str,
    pub state_key: Option<&'a str>,
    pub content: Value,
    /// For `m.room.redaction`: the event redacted.
    pub redacts: Option<&'a str>,
    /// The sending device and its transaction ID, for idempotent sends.
    pub txn: Option<(&'a str, &'a str)>,
}

/// Where an event landed.
#[derive(Debug, Clone, PartialEq)]
pub struct Appended {
    pub event_id: String,
    pub pos: i64,
}

/// A room and its version's rules.
pub fn room_and_version(conn: &Connection, room_id: &str) -> Result<(Room, &'static RoomVersion)> {
    let room = rooms::get(conn, room_id)?.ok_or_else(|| Error::not_found("Unknown room"))?;
    let version = room_version::get(&room.version)
        .ok_or_else(|| Error::internal(format!("room {room_id} has unknown version {}", room.version)))?;
    Ok((room, version))
}

fn event_error(e: EventError) -> Error {
    match e {
        EventError::TooLarge(n) => Error::new(
            ErrorKind::TooLarge,
            format!("The event would be {n} bytes; at most {} are allowed", event::PDU_MAX_BYTES),
        ),
        EventError::Canonical(c) => Error::bad_json(format!("Event content is not valid: {c}")),
        EventError::TooDeep(n) => Error::bad_json(format!(
            "The event would nest {n} levels deep (its content is one level inside it); at most {} are allowed",
            crate::core::json::DEPTH_MAX
        )),
        other => Error::invalid_param(format!("Invalid event: {other}")),
    }
}

/// What a new event of this server's will be, before it is signed: the
/// room, its version's rules, the auth state the rules look at, and the
/// template (auth events from the current state, prev events from the
/// forward extremities).
struct Prepared {
    room: Room,
    version: &'static RoomVersion,
    auth_state: HashMap<(String, String), Value>,
    template: PduTemplate,
}

/// Fills in what a new event needs (profile, restricted-join authoriser)
/// and selects its auth and prev events.
fn prepare(app: &App, conn: &Connection, room_id: &str, sender: &str, new: NewEvent) -> Result<Prepared> {
    if !new.content.is_object() {
        return Err(Error::bad_json("Event content must be a JSON object"));
    }
    let mut new = new;
    if new.kind == "m.room.member" {
        add_profile(conn, &mut new)?;
    }
    let (room, version) = room_and_version(conn, room_id)?;
    if new.kind == "m.room.member" && new.state_key == Some(sender) {
        add_join_authorisation(app, conn, room_id, version, sender, &mut new)?;
    }
    if new.kind == "m.room.canonical_alias" && new.state_key == Some("") {
        check_canonical_alias(app, conn, room_id, &new.content)?;
    }
    if new.kind == "m.room.member" && new.state_key == Some(sender) {
        check_guest_join(conn, room_id, sender, &new.content)?;
    }
    // The auth state: what the rules look at, and what the event cites.
    let selected = auth::auth_types_for_event(version, new.kind, new.state_key, sender, &new.content);
    let mut auth_state: HashMap<(String, String), Value> = HashMap::new();
    let mut auth_events = Vec::new();
    for (kind, key) in selected.iter().chain(std::iter::once(&("m.room.create".to_owned(), String::new()))) {
        if auth_state.contains_key(&(kind.clone(), key.clone())) {
            continue;
        }
        if let Some(id) = state::current_entry(conn, room_id, kind, key)? {
            let pdu =
                load_pdu(conn, &id)?.ok_or_else(|| Error::internal(format!("state event {id} missing")))?;
            if selected.iter().any(|(k, s)| k == kind && s == key) {
                auth_events.push(id);
            }
            auth_state.insert((kind.clone(), key.clone()), pdu);
        }
    }
    let mut prev_events = events::extremities(conn, room_id)?;
    prev_events.truncate(PREV_EVENTS_MAX);
    // v1–v2: references carry the cited events' reference hashes, and the
    // event carries an ID of our choosing.
    let mut reference_hashes = BTreeMap::new();
    if version.references_carry_hashes() {
        for id in prev_events.iter().chain(&auth_events) {
            if reference_hashes.contains_key(id) {
                continue;
            }
            let pdu =
                load_pdu(conn, id)?.ok_or_else(|| Error::internal(format!("cited event {id} missing")))?;
            reference_hashes.insert(id.clone(), event::reference_hash(version, &pdu).map_err(event_error)?);
        }
    }
    let template = PduTemplate {
        event_id: new_event_id(version, &app.config.server_name),
        room_id: Some(room_id.to_owned()),
        sender: sender.to_owned(),
        kind: new.kind.to_owned(),
        state_key: new.state_key.map(str::to_owned),
        content: new.content,
        redacts: new.redacts.map(str::to_owned),
        prev_events,
        auth_events,
        reference_hashes,
        depth: (room.depth + 1) as u64,
        origin_server_ts: storage::now_ms(),
    };
    Ok(Prepared { room, version, auth_state, template })
}

/// The template of `user_id`'s (a user of another server) event of
/// `kind` with `content` in a room of this server, for `make_join`,
/// `make_leave` and `make_knock`: filled as a local event would be,
/// checked against the current state (403 if the rules refuse it), without
/// hashes, signatures or (v1–v2) an event ID, which its server adds.
pub fn remote_member_template(
    app: &App,
    conn: &Connection,
    room_id: &str,
    user_id: &str,
    content: Value,
) -> Result<(Value, &'static RoomVersion)> {
    let new = NewEvent { kind: "m.room.member", state_key: Some(user_id), content, redacts: None, txn: None };
    let p = prepare(app, conn, room_id, user_id, new)?;
    let (_, mut pdu) = event::build_pdu(p.version, &app.server_key, &app.config.server_name, p.template)
        .map_err(event_error)?;
    auth::check(p.version, &pdu, &p.auth_state).map_err(|e| Error::forbidden(e.reason))?;
    if let Some(obj) = pdu.as_object_mut() {
        for key in ["event_id", "hashes", "signatures"] {
            obj.remove(key);
        }
        obj.insert("origin".to_owned(), Value::String(app.config.server_name.clone()));
    }
    Ok((pdu, p.version))
}

/// A local event built, signed and checked against the current state,
/// not stored: an invite of a user of another server, which their server
/// co-signs before it enters the room.
pub fn build_checked(
    app: &App,
    conn: &Connection,
    room_id: &str,
    sender: &str,
    new: NewEvent,
) -> Result<(String, Value, &'static RoomVersion)> {
    let p = prepare(app, conn, room_id, sender, new)?;
    let (event_id, pdu) = event::build_pdu(p.version, &app.server_key, &app.config.server_name, p.template)
        .map_err(event_error)?;
    auth::check(p.version, &pdu, &p.auth_state).map_err(|e| Error::forbidden(e.reason))?;
    Ok((event_id, pdu, p.version))
}

/// Adds a local event to a room: auth events, PDU, authorization, storage,
/// state. An event refused by the rules is a 403 and stores nothing.
pub fn append(app: &App, conn: &Tx, room_id: &str, sender: &str, new: NewEvent) -> Result<Appended> {
    if let Some((device, txn_id)) = new.txn {
        if let Some(event_id) = events::by_txn(conn, sender, device, txn_id)? {
            let pos = events::get(conn, &event_id)?.map_or(0, |e| e.pos);
            return Ok(Appended { event_id, pos });
        }
    }
    if new.state_key.is_none() {
        check_not_duplicate_annotation(conn, sender, new.kind, &new.content)?;
    }
    let (kind, state_key, redacts, txn) = (new.kind, new.state_key, new.redacts, new.txn);
    let Prepared { room, version, auth_state, template } = prepare(app, conn, room_id, sender, new)?;
    let (event_id, pdu) =
        event::build_pdu(version, &app.server_key, &app.config.server_name, template).map_err(event_error)?;
    auth::check(version, &pdu, &auth_state).map_err(|e| Error::forbidden(e.reason))?;
    if kind == "m.room.redaction" {
        if let Some(target) = redacts {
            check_redaction(conn, room_id, version, sender, target)?;
        }
    }
    let servers_before = if app.federation.enabled() {
        crate::storage::graph::servers_in_room(conn, room_id)?
    } else {
        Vec::new()
    };
    let pos = persist(conn, &room, &event_id, &pdu, txn)?;
    if app.federation.enabled() {
        let target = if kind == "m.room.member" { state_key } else { None };
        fan_out(app, conn, room_id, &servers_before, &pdu, target)?;
    }
    // Push rules for the room's local members: notifications and queued
    // pushes, in this transaction (issue 7).
    crate::push::on_event(&app.config.server_name, conn, room_id, version, pos, &event_id, &pdu)?;
    // Wake the room's long-polls, and the target of a membership change
    // (an invitee is not in the room yet).
    let target = if kind == "m.room.member" { state_key } else { None };
    conn.changed(pos, &[room_id], &target.into_iter().collect::<Vec<_>>());
    if kind == "m.room.redaction" {
        if let Some(target) = redacts {
            apply_redaction(conn, version, room_id, target, &event_id)?;
        }
    }
    if kind == "m.room.guest_access" && state_key == Some("") {
        evict_guests_unless_allowed(app, conn, room_id)?;
    }
    Ok(Appended { event_id, pos })
}

/// One annotation per sender, event type and key on an event: a second
/// `👍` from the same user is refused (400 `M_DUPLICATE_ANNOTATION`), as
/// Synapse does and clients expect; once the first is redacted the key
/// may be used again.
fn check_not_duplicate_annotation(
    conn: &Connection,
    sender: &str,
    kind: &str,
    content: &Value,
) -> Result<()> {
    let Some(rel) = crate::storage::relations::of_content(content) else { return Ok(()) };
    let Some(key) = rel.key else { return Ok(()) };
    if crate::storage::relations::has_annotation(conn, rel.event_id, sender, kind, key)? {
        return Err(Error::new(
            ErrorKind::DuplicateAnnotation,
            "You have already sent this annotation to this event",
        ));
    }
    Ok(())
}

/// A new event's ID where the version has events carry theirs (v1–v2):
/// `$` + random + `:` + this server's name. `None` from v3, where the ID
/// is the event's hash.
pub(crate) fn new_event_id(version: &RoomVersion, server_name: &str) -> Option<String> {
    version
        .event_id_in_event()
        .then(|| format!("${}:{server_name}", random_string(EVENT_ID_RANDOM_LEN, ALNUM)))
}

/// A local user's join of a room whose join rule is `restricted` (v8 on)
/// or `knock_restricted` (v10 on), who is neither invited nor joined: if
/// they are joined to a room the rule's `allow` list names
/// (`m.room_membership`), the join names a joined local member who may
/// invite as its authoriser (`join_authorised_via_users_server`), the most
/// powerful first. Otherwise the content stays as it is and the
/// authorization rules refuse the join.
fn add_join_authorisation(
    app: &App,
    conn: &Connection,
    room_id: &str,
    version: &RoomVersion,
    sender: &str,
    new: &mut NewEvent,
) -> Result<()> {
    if !version.restricted_joins
        || new.content.get("membership").and_then(Value::as_str) != Some("join")
        || new.content.get(AUTHORISER_KEY).is_some()
    {
        return Ok(());
    }
    let Some(rules) = current_state_event(conn, room_id, "m.room.join_rules", "")? else { return Ok(()) };
    let restricted = match rules.pointer("/content/join_rule").and_then(Value::as_str) {
        Some("restricted") => true,
        Some("knock_restricted") => version.knock_restricted,
        _ => false,
    };
    if !restricted
        || matches!(state::membership(conn, sender, room_id)?.as_deref(), Some("join" | "invite" | "ban"))
    {
        return Ok(());
    }
    let allow =
        rules.pointer("/content/allow").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let server = &app.config.server_name;
    let remote = crate::core::ids::parse_user_id(sender).is_some_and(|(_, s)| s != server);
    let (mut allowed, mut known) = (false, false);
    for condition in allow {
        if condition.get("type").and_then(Value::as_str) != Some("m.room_membership") {
            continue;
        }
        let Some(other) = condition.get("room_id").and_then(Value::as_str) else { continue };
        if state::membership(conn, sender, other)?.as_deref() == Some("join") {
            allowed = true;
            break;
        }
        known = known || (remote && graph::servers_in_room(conn, other)?.iter().any(|s| s == server));
    }
    // For another server's user (make_join), say why this server cannot
    // sign, so their server tries another (the spec's two codes).
    if !allowed {
        if remote && !known {
            return Err(Error::new(
                ErrorKind::UnableToAuthoriseJoin,
                "This server is in none of the rooms whose members may join",
            ));
        }
        return Ok(());
    }
    let (levels, creators) = current_power(conn, room_id, version)?;
    let authoriser = state::members(conn, room_id, "join")?
        .into_iter()
        .filter(|user| crate::core::ids::parse_user_id(user).is_some_and(|(_, s)| s == server))
        .map(|user| (levels.user_level(&user, &creators), user))
        .filter(|(level, _)| level.at_least(levels.invite()))
        .max_by(|(a, user_a), (b, user_b)| a.cmp(b).then_with(|| user_b.cmp(user_a)));
    match (authoriser, new.content.as_object_mut()) {
        (Some((_, user)), Some(obj)) => {
            obj.insert(AUTHORISER_KEY.to_owned(), Value::String(user));
        }
        (None, _) if remote => {
            return Err(Error::new(
                ErrorKind::UnableToGrantJoin,
                "No user of this server may authorise the join; try another server in the room",
            ))
        }
        _ => {}
    }
    Ok(())
}

/// Whether the room's current `m.room.guest_access` lets guests join.
fn guests_can_join(conn: &Connection, room_id: &str) -> Result<bool> {
    let access = current_state_event(conn, room_id, "m.room.guest_access", "")?;
    Ok(access.as_ref().and_then(|e| e.pointer("/content/guest_access")).and_then(Value::as_str)
        == Some("can_join"))
}

/// A local guest joins only rooms whose `m.room.guest_access` is
/// `can_join` (the guest access module's server rule).
fn check_guest_join(conn: &Connection, room_id: &str, sender: &str, content: &Value) -> Result<()> {
    if content.get("membership").and_then(Value::as_str) != Some("join") {
        return Ok(());
    }
    if crate::storage::users::is_guest(conn, sender)? && !guests_can_join(conn, room_id)? {
        return Err(Error::new(ErrorKind::GuestAccessForbidden, "Guests may not join this room"));
    }
    Ok(())
}

/// When a room stops letting guests join, the local guests in it leave
/// (the module's rule: their membership becomes `leave`), in the same
/// transaction as the change.
fn evict_guests_unless_allowed(app: &App, conn: &Tx, room_id: &str) -> Result<()> {
    if guests_can_join(conn, room_id)? {
        return Ok(());
    }
    for guest in crate::storage::users::joined_guests(conn, room_id)? {
        let leave = NewEvent {
            kind: "m.room.member",
            state_key: Some(&guest),
            content: serde_json::json!({ "membership": "leave" }),
            redacts: None,
            txn: None,
        };
        append(app, conn, room_id, &guest, leave)?;
    }
    Ok(())
}

/// A local user's join (or invite, or knock) carries their display name and
/// avatar, as clients show members by them, unless the sender set them.
fn add_profile(conn: &Connection, new: &mut NewEvent) -> Result<()> {
    let Some(target) = new.state_key else { return Ok(()) };
    let membership = new.content.get("membership").and_then(Value::as_str);
    if !matches!(membership, Some("join" | "invite" | "knock")) {
        return Ok(());
    }
    let Some(profile) = crate::storage::profiles::get(conn, target)? else { return Ok(()) };
    let Some(obj) = new.content.as_object_mut() else { return Ok(()) };
    if let Some(name) = profile.displayname {
        obj.entry("displayname").or_insert(Value::String(name));
    }
    if let Some(url) = profile.avatar_url {
        obj.entry("avatar_url").or_insert(Value::String(url));
    }
    Ok(())
}

/// `m.room.canonical_alias` may only name valid aliases, and aliases of
/// this server must point at this room.
fn check_canonical_alias(app: &App, conn: &Connection, room_id: &str, content: &Value) -> Result<()> {
    let bad = |m: String| Error::new(ErrorKind::BadAlias, m);
    let mut aliases: Vec<&Value> = content.get("alias").into_iter().filter(|v| !v.is_null()).collect();
    match content.get("alt_aliases") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => aliases.extend(list),
        Some(_) => return Err(bad("alt_aliases must be a list of aliases".into())),
    }
    for alias in aliases {
        let Some(alias) = alias.as_str() else { return Err(bad("Aliases must be strings".into())) };
        let Some((_, server)) = crate::core::ids::parse_room_alias(alias) else {
            return Err(bad(format!("{alias} is not a valid room alias")));
        };
        if server == app.config.server_name {
            match rooms::get_alias(conn, alias)? {
                Some((target, _)) if target == room_id => {}
                _ => return Err(bad(format!("{alias} does not point to this room"))),
            }
        }
    }
    Ok(())
}

/// Clients may redact their own events, or others' with the redact level.
fn check_redaction(
    conn: &Connection,
    room_id: &str,
    version: &RoomVersion,
    sender: &str,
    target: &str,
) -> Result<()> {
    let Some(original) = events::get(conn, target)?.filter(|e| e.room_id == room_id) else {
        return Err(Error::not_found("No such event in this room"));
    };
    if original.sender == sender {
        return Ok(());
    }
    let (levels, creators) = current_power(conn, room_id, version)?;
    if levels.user_level(sender, &creators).at_least(levels.redact()) {
        Ok(())
    } else {
        Err(Error::forbidden(format!(
            "You may only redact your own events: redacting others' needs power level {}",
            levels.redact()
        )))
    }
}

/// Replaces the target's stored PDU with its redacted form.
fn apply_redaction(
    conn: &Connection,
    version: &RoomVersion,
    room_id: &str,
    target: &str,
    by: &str,
) -> Result<()> {
    let Some(original) = events::get(conn, target)?.filter(|e| e.room_id == room_id) else {
        return Ok(());
    };
    let redacted = crate::core::redaction::redact(version, &pdu_json(&original)?);
    let text = canonical::to_canonical(&redacted).map_err(|e| Error::internal(format!("redacting: {e}")))?;
    events::set_redacted(conn, target, &text, by)
}

/// Stores an authorised local event: its row and edges, the state after
/// it, the extremities, and the room's current state (`dag`).
pub(crate) fn persist(
    conn: &Connection,
    room: &Room,
    event_id: &str,
    pdu: &Value,
    txn: Option<(&str, &str)>,
) -> Result<i64> {
    let version = room_version::get(&room.version).ok_or_else(|| {
        Error::internal(format!("room {} has unknown version {}", room.room_id, room.version))
    })?;
    let pos = events::next_pos(conn)?;
    let mut row = dag::row_of(&room.room_id, event_id, pdu, pos, room.state_group)?;
    if row.depth == 0 {
        row.depth = room.depth + 1;
    }
    row.txn_device = txn.map(|(d, _)| d.to_owned());
    row.txn_id = txn.map(|(_, t)| t.to_owned());
    let after = dag::store_timeline_event(conn, version, room, &row, pdu, &[])?;
    dag::update_current(conn, version, room, &row, after)?;
    Ok(pos)
}

/// Hands a local event to every other server in the room (`before`: the
/// servers in it before the event, so a kicked or leaving server hears of
/// its own departure), and to the target's server of a membership change.
pub fn fan_out(
    app: &App,
    tx: &Tx,
    room_id: &str,
    before: &[String],
    pdu: &Value,
    target: Option<&str>,
) -> Result<()> {
    let mut destinations: Vec<String> = before.to_vec();
    // Only a membership change can add a server (a join) to the room.
    if let Some(target) = target {
        destinations.extend(crate::storage::graph::servers_in_room(tx, room_id)?);
        destinations.extend(crate::core::ids::parse_user_id(target).map(|(_, server)| server.to_owned()));
    }
    queue_pdu(app, tx, destinations, pdu)
}

/// Hands an event another server made, and this one accepted as the
/// room's resident server (a join, leave or knock through `send_*`), to
/// the room's other servers: all but this one and `origin`.
pub fn relay(app: &App, tx: &Tx, room_id: &str, pdu: &Value, origin: &str) -> Result<()> {
    let mut destinations = crate::storage::graph::servers_in_room(tx, room_id)?;
    destinations.retain(|d| d != origin);
    queue_pdu(app, tx, destinations, pdu)
}

/// Queues a PDU (without `unsigned`) for each destination once, this
/// server and servers that may not be talked to left out.
fn queue_pdu(app: &App, tx: &Tx, mut destinations: Vec<String>, pdu: &Value) -> Result<()> {
    let own = &app.config.server_name;
    destinations.sort();
    destinations.dedup();
    destinations.retain(|d| d != own && app.federation.allowed(d));
    if destinations.is_empty() {
        return Ok(());
    }
    let mut body = pdu.clone();
    if let Some(obj) = body.as_object_mut() {
        obj.remove("unsigned");
    }
    let text = canonical::to_canonical(&body).map_err(|e| Error::internal(format!("queueing PDU: {e}")))?;
    let now = storage::now_ms();
    for d in destinations {
        crate::storage::federation::queue(tx, &d, crate::storage::federation::Unit::Pdu, &text, now)?;
    }
    Ok(())
}

/// A redaction from another server, applied to its target where the
/// version's rules let it: the target is in the room and (from v3) the
/// redacting server is the original's or the sender may redact others'.
pub(crate) fn apply_remote_redaction(
    conn: &Connection,
    version: &RoomVersion,
    room_id: &str,
    sender: &str,
    target: &str,
    by: &str,
) -> Result<()> {
    let Some(original) = events::timeline_event(conn, target)?.filter(|e| e.room_id == room_id) else {
        return Ok(());
    };
    let (levels, creators) = current_power(conn, room_id, version)?;
    if auth::may_apply_redaction(version, sender, &original.sender, &levels, &creators) {
        apply_redaction(conn, version, room_id, target, by)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::create::{create_room, CreateRoom, Preset};
    use super::*;
    use crate::config::Config;
    use crate::storage::events::StoredEvent;
    use serde_json::json;

    fn app(name: &str) -> App {
        let dir = std::env::temp_dir().join(format!(
            "hearth-rooms-{name}-{}-{}",
            std::process::id(),
            storage::now_ms()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let config = Config { database: dir.join("t.db"), ..Config::default() };
        App::open(config).unwrap()
    }

    fn request(version: &'static RoomVersion, preset: Preset) -> CreateRoom {
        CreateRoom {
            version,
            preset,
            name: Some("Family".into()),
            topic: None,
            invite: vec![],
            is_direct: false,
            initial_state: vec![],
            power_level_content_override: None,
            creation_content: Default::default(),
            alias: None,
            publish: false,
        }
    }

    fn message(body: &str) -> NewEvent<'_> {
        NewEvent {
            kind: "m.room.message",
            state_key: None,
            content: json!({ "msgtype": "m.text", "body": body }),
            redacts: None,
            txn: None,
        }
    }

    #[test]
    fn rooms_of_each_version_accept_members_and_refuse_strangers() {
        let app = app("versions");
        for version in room_version::SUPPORTED {
            let alice = "@alice:localhost";
            let room_id =
                app.db.write(|c| create_room(&app, c, alice, request(version, Preset::PrivateChat))).unwrap();
            assert_eq!(version.room_id_from_create, !room_id.contains(':'), "{room_id}");
            let sent = app.db.write(|c| append(&app, c, &room_id, alice, message("hi"))).unwrap();
            assert!(sent.event_id.starts_with('$'));
            let stranger = app.db.write(|c| append(&app, c, &room_id, "@eve:localhost", message("x")));
            assert_eq!(stranger.unwrap_err().errcode(), "M_FORBIDDEN");
            // A private room refuses a join without an invite.
            let join = NewEvent {
                kind: "m.room.member",
                state_key: Some("@bob:localhost"),
                content: json!({ "membership": "join" }),
                redacts: None,
                txn: None,
            };
            assert!(app.db.write(|c| append(&app, c, &room_id, "@bob:localhost", join)).is_err());
            app.db
                .read(|c| {
                    let state = state::current_state(c, &room_id)?;
                    assert!(state.contains_key(&("m.room.name".to_owned(), String::new())));
                    assert_eq!(state::membership(c, alice, &room_id)?.as_deref(), Some("join"));
                    let e = events::get(c, &sent.event_id)?.unwrap();
                    let v = format::client_event(c, &e, None, storage::now_ms())?.expect("readable");
                    assert_eq!(v["content"]["body"], "hi");
                    assert_eq!(v["room_id"], room_id.as_str());
                    Ok(())
                })
                .unwrap();
        }
    }

    #[test]
    fn transaction_ids_make_sends_idempotent_and_redaction_strips_content() {
        let app = app("txn");
        let alice = "@alice:localhost";
        let room_id = app
            .db
            .write(|c| create_room(&app, c, alice, request(room_version::DEFAULT, Preset::PublicChat)))
            .unwrap();
        let send = || NewEvent { txn: Some(("DEV", "t1")), ..message("once") };
        let a = app.db.write(|c| append(&app, c, &room_id, alice, send())).unwrap();
        let b = app.db.write(|c| append(&app, c, &room_id, alice, send())).unwrap();
        assert_eq!(a, b);
        let redaction = NewEvent {
            kind: "m.room.redaction",
            state_key: None,
            content: json!({ "redacts": a.event_id, "reason": "oops" }),
            redacts: Some(&a.event_id),
            txn: None,
        };
        let r = app.db.write(|c| append(&app, c, &room_id, alice, redaction)).unwrap();
        app.db
            .read(|c| {
                let e = events::get(c, &a.event_id)?.unwrap();
                let v = format::client_event(
                    c,
                    &e,
                    Some(format::Viewer { user_id: alice, device_id: "DEV" }),
                    0,
                )?
                .expect("readable");
                assert_eq!(v["content"], json!({}));
                assert_eq!(v["unsigned"]["redacted_because"]["event_id"], r.event_id.as_str());
                assert_eq!(v["unsigned"]["transaction_id"], "t1");
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn content_too_deep_for_its_pdu_is_refused_and_stores_nothing() {
        let app = app("deep");
        let alice = "@alice:localhost";
        let room_id = app
            .db
            .write(|c| create_room(&app, c, alice, request(room_version::DEFAULT, Preset::PrivateChat)))
            .unwrap();
        let nested = |levels: usize| (0..levels).fold(json!(1), |inner, _| json!({ "a": inner }));
        let max = crate::core::json::DEPTH_MAX;
        let before = app.db.read(|c| events::current_pos(c)).unwrap();
        let deep = NewEvent { content: nested(max), ..message("x") };
        let refused = app.db.write(|c| append(&app, c, &room_id, alice, deep)).unwrap_err();
        assert_eq!((refused.status(), refused.errcode()), (400, "M_BAD_JSON"), "{refused}");
        assert_eq!(app.db.read(|c| events::current_pos(c)).unwrap(), before);
        let fits = NewEvent { content: nested(max - 1), ..message("x") };
        app.db.write(|c| append(&app, c, &room_id, alice, fits)).unwrap();
    }

    #[test]
    fn readers_skip_a_stored_event_that_cannot_be_parsed() {
        let app = app("unreadable");
        let alice = "@alice:localhost";
        let room_id = app
            .db
            .write(|c| create_room(&app, c, alice, request(room_version::DEFAULT, Preset::PrivateChat)))
            .unwrap();
        let good = app.db.write(|c| append(&app, c, &room_id, alice, message("good"))).unwrap();
        // A row as an older server could have stored it: nested past what
        // serde_json parses (128 levels).
        let deep = format!("{{\"content\":{}1{}}}", "{\"a\":".repeat(130), "}".repeat(130));
        let bad = app
            .db
            .write(|c| {
                let e = events::get(c, &good.event_id)?.expect("stored");
                let pos = events::next_pos(c)?;
                let bad = StoredEvent { pos, event_id: "$bad".into(), pdu: deep.clone(), txn_id: None, ..e };
                events::insert(c, &bad)?;
                Ok(bad)
            })
            .unwrap();
        assert_eq!(readable_pdu(&bad), None);
        assert!(pdu_json(&bad).is_err(), "the strict parser still refuses it");
        app.db
            .read(|c| {
                let good = events::get(c, &good.event_id)?.expect("stored");
                let list = format::client_events(c, &[good, bad.clone()], None, 0)?;
                assert_eq!(list.len(), 1);
                assert_eq!(list[0]["content"]["body"], "good");
                assert_eq!(format::client_event(c, &bad, None, 0)?, None);
                assert_eq!(load_readable_pdu(c, "$bad")?, None);
                assert!(load_pdu(c, "$bad").is_err());
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn an_erased_senders_events_are_redacted_for_those_who_join_later() {
        let app = app("erasure");
        let (alice, bob, carol) = ("@alice:localhost", "@bob:localhost", "@carol:localhost");
        let room_id = app
            .db
            .write(|c| create_room(&app, c, alice, request(room_version::DEFAULT, Preset::PublicChat)))
            .unwrap();
        let join = |who: &'static str| NewEvent {
            kind: "m.room.member",
            state_key: Some(who),
            content: json!({ "membership": "join" }),
            redacts: None,
            txn: None,
        };
        app.db.write(|c| append(&app, c, &room_id, bob, join(bob))).unwrap();
        let sent = app.db.write(|c| append(&app, c, &room_id, alice, message("mine"))).unwrap();
        app.db.write(|c| crate::storage::users::erase(c, alice, 1)).unwrap();
        app.db.write(|c| append(&app, c, &room_id, carol, join(carol))).unwrap();
        app.db
            .read(|c| {
                let e = events::get(c, &sent.event_id)?.expect("stored");
                let as_seen = |user_id: &str| {
                    let v = format::Viewer { user_id, device_id: "D" };
                    format::client_event(c, &e, Some(v), 0).map(|x| x.expect("readable"))
                };
                assert_eq!(as_seen(bob)?["content"]["body"], "mine", "bob had it before the erasure");
                assert_eq!(as_seen(carol)?["content"], json!({}), "carol joined after it");
                assert_eq!(as_seen(carol)?["event_id"], sent.event_id.as_str());
                let anyone = format::client_event(c, &e, None, 0)?.expect("readable");
                assert_eq!(anyone["content"], json!({}));
                Ok(())
            })
            .unwrap();
    }
}
