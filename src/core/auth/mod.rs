//! Room authorisation rules for rooms v1 to v12: may this event be
//! accepted, given the state it is checked against?
//!
//! This module owns the rules of the spec's "Authorisation rules" sections
//! (`v1-auth-rules`, `v3-auth-rules`, v6's and v7's, `v8-auth-rules`,
//! v10's, v11's, v12's) and the server-server API's "Auth events
//! selection"; where they differ, the [`RoomVersion`] says which rule
//! applies. It reads JSON events
//! and a [`StateLookup`]; it never touches storage, HTTP or the clock, and
//! it does not fetch anything. Two checks need data it cannot see and are
//! left to the caller, who must do them before calling [`check`]:
//!
//! - signatures: the event must be signed by every server
//!   [`event::required_signers`] names (the sender's; in v1–v2 the event
//!   ID's; for a join carrying `join_authorised_via_users_server`, that
//!   user's);
//! - whether the events listed in `auth_events` were themselves rejected
//!   ([`check_auth_events`] does the rest of that rule).
//!
//! The create event's ID, which two rules need, is computed from the event
//! itself (its reference hash) from v3; only in v1–v2, where events carry
//! their IDs, is it read from the create event's `event_id`.
//!
//! Deciding whether a redaction may be *applied* is not authorisation; see
//! [`may_apply_redaction`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::BuildHasher;

use serde_json::{Map, Value};

use super::event;
use super::ids::parse_user_id;
use super::power_levels::{self, Creators, Level, PowerLevels};
use super::room_version::{self, RoomVersion};
use crate::crypto::b64_decode;
use crate::crypto::sign::verify_json;

const CREATE: &str = "m.room.create";
const MEMBER: &str = "m.room.member";
const POWER_LEVELS: &str = "m.room.power_levels";
const JOIN_RULES: &str = "m.room.join_rules";
const THIRD_PARTY_INVITE: &str = "m.room.third_party_invite";
const ALIASES: &str = "m.room.aliases";
const REDACTION: &str = "m.room.redaction";

const JOIN: &str = "join";
const INVITE: &str = "invite";
const LEAVE: &str = "leave";
const BAN: &str = "ban";
const KNOCK: &str = "knock";

/// The content key naming the member who authorised a restricted join.
const AUTHORISER_KEY: &str = "join_authorised_via_users_server";

/// The most signature checks one third-party invite may cost: every
/// signature in `signed` is tried against every public key, so a crafted
/// event could otherwise demand millions of ed25519 verifications.
const THIRD_PARTY_VERIFICATIONS_MAX: usize = 64;

/// The prefix of key IDs whose signatures can be checked.
const ED25519_PREFIX: &str = "ed25519:";

/// The state an event is authorised against: for a local event, the room's
/// current state; for a received event, the state its `auth_events` name.
///
/// In room v12 the create event is never among `auth_events`, but it must
/// still be available here under `("m.room.create", "")`: the caller finds
/// it through the room ID.
pub trait StateLookup {
    /// The state event of type `kind` with `state_key`, if any.
    fn get(&self, kind: &str, state_key: &str) -> Option<&Value>;
}

impl<S: BuildHasher> StateLookup for HashMap<(String, String), Value, S> {
    fn get(&self, kind: &str, state_key: &str) -> Option<&Value> {
        HashMap::get(self, &(kind.to_owned(), state_key.to_owned()))
    }
}

impl<S: BuildHasher> StateLookup for HashMap<(String, String), &Value, S> {
    fn get(&self, kind: &str, state_key: &str) -> Option<&Value> {
        HashMap::get(self, &(kind.to_owned(), state_key.to_owned())).copied()
    }
}

impl StateLookup for BTreeMap<(String, String), Value> {
    fn get(&self, kind: &str, state_key: &str) -> Option<&Value> {
        BTreeMap::get(self, &(kind.to_owned(), state_key.to_owned()))
    }
}

/// Why an event was refused, in words a room member would understand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthError {
    pub reason: String,
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for AuthError {}

/// Refuses with `reason`.
fn deny<T>(reason: impl Into<String>) -> Result<T, AuthError> {
    Err(AuthError { reason: reason.into() })
}

/// The fields of an event the rules look at, checked for shape.
struct Pdu<'a> {
    event: &'a Value,
    kind: &'a str,
    sender: &'a str,
    sender_server: &'a str,
    state_key: Option<&'a str>,
    content: &'a Map<String, Value>,
    room_id: Option<&'a str>,
}

impl<'a> Pdu<'a> {
    fn parse(event: &'a Value) -> Result<Pdu<'a>, AuthError> {
        let Some(kind) = event.get("type").and_then(Value::as_str) else {
            return deny("the event has no type");
        };
        let Some(sender) = event.get("sender").and_then(Value::as_str) else {
            return deny("the event has no sender");
        };
        let Some((_, sender_server)) = parse_user_id(sender) else {
            return deny(format!("the sender {sender:?} is not a valid user ID"));
        };
        let state_key = match event.get("state_key") {
            None => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => return deny("the event's state_key is not a string"),
        };
        let Some(content) = event.get("content").and_then(Value::as_object) else {
            return deny("the event has no content object");
        };
        let room_id = match event.get("room_id") {
            None => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => return deny("the event's room_id is not a string"),
        };
        Ok(Pdu { event, kind, sender, sender_server, state_key, content, room_id })
    }

    /// The content as a JSON value (known to be an object).
    fn content_value(&self) -> &'a Value {
        self.event.get("content").unwrap_or(&Value::Null)
    }

    /// The event IDs in `prev_events` (plain IDs, or in v1–v2 the IDs of
    /// `[id, hashes]` pairs), or `None` if the field is malformed.
    fn prev_events(&self, version: &RoomVersion) -> Option<Vec<&'a str>> {
        event::referenced_ids(version, self.event, "prev_events").ok()
    }
}

/// The `(type, state_key)` pairs of the state events an event must cite in
/// its `auth_events` (the server-server API's "Auth events selection").
///
/// Empty for `m.room.create`. The create event itself is selected only
/// before room v12. Each pair appears once.
pub fn auth_types_for_event(
    version: &RoomVersion,
    kind: &str,
    state_key: Option<&str>,
    sender: &str,
    content: &Value,
) -> Vec<(String, String)> {
    let mut types: Vec<(String, String)> = Vec::new();
    let mut add = |kind: &str, key: &str| {
        if !types.iter().any(|(k, s)| k == kind && s == key) {
            types.push((kind.to_owned(), key.to_owned()));
        }
    };
    if kind == CREATE {
        return Vec::new();
    }
    if !version.room_id_from_create {
        add(CREATE, "");
    }
    add(POWER_LEVELS, "");
    add(MEMBER, sender);
    if kind == MEMBER {
        if let Some(target) = state_key {
            add(MEMBER, target);
        }
        let membership = content.get("membership").and_then(Value::as_str);
        if matches!(membership, Some(JOIN | INVITE | KNOCK)) {
            add(JOIN_RULES, "");
        }
        if membership == Some(INVITE) {
            let token = content.pointer("/third_party_invite/signed/token").and_then(Value::as_str);
            if let Some(token) = token {
                add(THIRD_PARTY_INVITE, token);
            }
        }
        if membership == Some(JOIN) && version.restricted_joins {
            if let Some(authoriser) = content.get(AUTHORISER_KEY).and_then(Value::as_str) {
                add(MEMBER, authoriser);
            }
        }
    }
    types
}

/// The rule "considering the event's `auth_events`", given the events those
/// IDs name: no two for the same `(type, state_key)`, none beyond what
/// [`auth_types_for_event`] selects, all in the event's room, and (before
/// v12) the create event among them. Whether any of them was rejected is
/// the caller's to check.
pub fn check_auth_events(
    version: &RoomVersion,
    event: &Value,
    auth_events: &[&Value],
) -> Result<(), AuthError> {
    let pdu = Pdu::parse(event)?;
    if pdu.kind == CREATE {
        return Ok(());
    }
    let allowed = auth_types_for_event(version, pdu.kind, pdu.state_key, pdu.sender, pdu.content_value());
    let mut seen: Vec<(&str, &str)> = Vec::with_capacity(auth_events.len());
    for ae in auth_events {
        let kind = ae.get("type").and_then(Value::as_str).unwrap_or_default();
        let Some(key) = ae.get("state_key").and_then(Value::as_str) else {
            return deny(format!("auth event of type {kind:?} is not a state event"));
        };
        if seen.contains(&(kind, key)) {
            return deny(format!("auth_events lists ({kind}, {key:?}) twice"));
        }
        seen.push((kind, key));
        if !allowed.iter().any(|(k, s)| k == kind && s == key) {
            return deny(format!("auth_events lists ({kind}, {key:?}), which this event may not cite"));
        }
        if ae.get("room_id").and_then(Value::as_str) != pdu.room_id {
            return deny(format!("auth event ({kind}, {key:?}) belongs to another room"));
        }
    }
    if !version.room_id_from_create && !seen.iter().any(|(k, _)| *k == CREATE) {
        return deny("auth_events does not include the room's m.room.create event");
    }
    Ok(())
}

/// The authorisation rules of `version` for `event` against `state`.
///
/// See the module documentation for what the caller must check first.
pub fn check(version: &RoomVersion, event: &Value, state: &dyn StateLookup) -> Result<(), AuthError> {
    let pdu = Pdu::parse(event)?;
    if pdu.kind == CREATE {
        return check_create(version, &pdu);
    }
    let Some(create) = state.get(CREATE, "") else {
        return deny("the room has no m.room.create event");
    };
    check_room_id(version, &pdu, create)?;

    let create_server = create.get("sender").and_then(Value::as_str).and_then(parse_user_id).map(|(_, s)| s);
    let federate = create.pointer("/content/m.federate");
    if federate == Some(&Value::Bool(false)) && create_server != Some(pdu.sender_server) {
        return deny(format!("the room does not federate, so {} may not take part", pdu.sender));
    }

    if pdu.kind == ALIASES && version.special_case_aliases {
        return check_aliases(&pdu);
    }

    let pl = PowerLevels::from_event(version, state.get(POWER_LEVELS, ""))
        .map_err(|e| AuthError { reason: format!("the room's current power levels are invalid: {e}") })?;
    let room = Room { version, state, create, creators: Creators::from_create(version, create), pl };

    if pdu.kind == MEMBER {
        return check_member(&room, &pdu);
    }

    if room.membership(pdu.sender) != JOIN {
        return deny(format!("{} is not in the room", pdu.sender));
    }
    let sender_level = room.level(pdu.sender);

    if pdu.kind == THIRD_PARTY_INVITE {
        return room.require(sender_level, room.pl.invite(), "to invite");
    }

    let required = room.pl.event_level(pdu.kind, pdu.state_key.is_some());
    room.require(sender_level, required, &format!("to send {}", pdu.kind))?;

    if let Some(key) = pdu.state_key {
        if key.starts_with('@') && key != pdu.sender {
            return deny(format!("{} may not set state keyed to another user ({key})", pdu.sender));
        }
    }

    if pdu.kind == POWER_LEVELS {
        let new = power_levels::parse(version, pdu.content_value())
            .map_err(|e| AuthError { reason: format!("invalid power levels: {e}") })?;
        power_levels::check_change(version, sender_level, &room.pl, &new, pdu.sender, &room.creators)
            .map_err(|reason| AuthError { reason })?;
    }

    if pdu.kind == REDACTION && version.redaction_auth_rule {
        return check_redaction_v1(&room, &pdu, sender_level);
    }
    Ok(())
}

/// Rooms v1–v5, rule 4: `m.room.aliases` belongs to the server its
/// `state_key` names, whatever the sender's membership or power.
fn check_aliases(pdu: &Pdu) -> Result<(), AuthError> {
    match pdu.state_key {
        None => deny("an m.room.aliases event needs a state_key"),
        Some(server) if server != pdu.sender_server => {
            deny(format!("{} may not set the aliases of the server {server:?}", pdu.sender))
        }
        Some(_) => Ok(()),
    }
}

/// Rooms v1–v2, rule 11: a redaction needs the redact level, unless the
/// redacted event's ID and the redaction's own ID name the same server.
fn check_redaction_v1(room: &Room, pdu: &Pdu, sender_level: Level) -> Result<(), AuthError> {
    if sender_level.at_least(room.pl.redact()) {
        return Ok(());
    }
    let own_id = event::event_id(room.version, pdu.event).ok();
    let own_server = own_id.as_deref().and_then(event::event_id_server);
    let target_server = pdu.event.get("redacts").and_then(Value::as_str).and_then(event::event_id_server);
    if own_server.is_some() && own_server == target_server {
        Ok(())
    } else {
        deny(format!(
            "insufficient power level to redact an event of another server: needs {}, has {sender_level}",
            room.pl.redact()
        ))
    }
}

/// The rules for `m.room.create`.
fn check_create(version: &RoomVersion, pdu: &Pdu) -> Result<(), AuthError> {
    match pdu.prev_events(version) {
        Some(prev) if prev.is_empty() => {}
        _ => return deny("the m.room.create event may not have prev_events"),
    }
    if version.room_id_from_create {
        if pdu.event.get("room_id").is_some() {
            return deny("in this room version the m.room.create event may not have a room_id");
        }
    } else {
        let room_server = pdu.room_id.and_then(|id| id.split_once(':')).map(|(_, server)| server);
        if room_server != Some(pdu.sender_server) {
            return deny(format!("the room ID's server does not match the creator {}", pdu.sender));
        }
    }
    if let Some(v) = pdu.content.get("room_version") {
        if v.as_str().and_then(room_version::get).is_none() {
            return deny(format!("unknown room version {v}"));
        }
    }
    if version.create_has_creator_field && !pdu.content.contains_key("creator") {
        return deny("the m.room.create event has no creator");
    }
    if version.privileged_creators {
        if let Some(extra) = pdu.content.get("additional_creators") {
            let Some(ids) = extra.as_array() else {
                return deny("additional_creators must be a list of user IDs");
            };
            if let Some(bad) = ids.iter().find(|id| id.as_str().and_then(parse_user_id).is_none()) {
                return deny(format!("additional_creators holds an invalid user ID: {bad}"));
            }
        }
    }
    Ok(())
}

/// The event's room must be the create event's room. In v12 that means the
/// room ID is the create event's ID with `!` for `$`.
fn check_room_id(version: &RoomVersion, pdu: &Pdu, create: &Value) -> Result<(), AuthError> {
    let Some(room_id) = pdu.room_id else {
        return deny("the event has no room_id");
    };
    if version.room_id_from_create {
        if !room_id.starts_with('!') {
            return deny(format!("{room_id} is not a room ID"));
        }
        if create.get("room_id").is_some() {
            return deny("the room's m.room.create event has a room_id, which this room version forbids");
        }
        match event::room_id_from_create(version, create) {
            Ok(id) if id == room_id => {}
            Ok(_) => return deny(format!("{room_id} is not the ID of the room's m.room.create event")),
            Err(e) => return deny(format!("the room's m.room.create event cannot be hashed: {e}")),
        }
    } else if create.get("room_id").and_then(Value::as_str) != Some(room_id) {
        return deny(format!("the m.room.create event given is not the one of {room_id}"));
    }
    Ok(())
}

/// What the membership rules consult: the state, the parsed power levels
/// and the creators.
struct Room<'a> {
    version: &'a RoomVersion,
    state: &'a dyn StateLookup,
    create: &'a Value,
    creators: Creators,
    pl: PowerLevels,
}

impl Room<'_> {
    /// A user's current membership; `leave` when they have none.
    fn membership(&self, user: &str) -> &str {
        self.state
            .get(MEMBER, user)
            .and_then(|ev| ev.pointer("/content/membership"))
            .and_then(Value::as_str)
            .unwrap_or(LEAVE)
    }

    fn level(&self, user: &str) -> Level {
        self.pl.user_level(user, &self.creators)
    }

    /// Refuses unless `level` reaches `required` for `action`.
    fn require(&self, level: Level, required: i64, action: &str) -> Result<(), AuthError> {
        if level.at_least(required) {
            Ok(())
        } else {
            deny(format!("insufficient power level {action}: needs {required}, has {level}"))
        }
    }

    /// The current join rule, if one is set.
    fn join_rule(&self) -> Option<&str> {
        self.state.get(JOIN_RULES, "").and_then(|ev| ev.pointer("/content/join_rule")).and_then(Value::as_str)
    }

    /// True if the join rule lets people ask to join.
    fn allows_knocking(&self) -> bool {
        match self.join_rule() {
            Some(KNOCK) => self.version.knocking,
            Some("knock_restricted") => self.version.knock_restricted,
            _ => false,
        }
    }

    /// The creator the first join after the create event belongs to: the
    /// `creator` field before v11, the create event's sender from v11.
    fn first_creator(&self) -> Option<&str> {
        let field = if self.version.create_has_creator_field {
            self.create.pointer("/content/creator")
        } else {
            self.create.get("sender")
        };
        field.and_then(Value::as_str)
    }

    /// The create event's ID. In v12 [`check_room_id`] has already shown
    /// the room ID to be its reference hash; before, it is computed.
    fn create_event_id(&self, room_id: &str) -> Option<String> {
        if self.version.room_id_from_create {
            room_id.strip_prefix('!').map(|hash| format!("${hash}"))
        } else {
            event::event_id(self.version, self.create).ok()
        }
    }
}

/// The rules for `m.room.member`.
fn check_member(room: &Room, pdu: &Pdu) -> Result<(), AuthError> {
    let Some(target) = pdu.state_key else {
        return deny("a membership event needs a state_key");
    };
    let Some(membership) = pdu.content.get("membership").and_then(Value::as_str) else {
        return deny("a membership event needs a membership");
    };
    match membership {
        JOIN => check_join(room, pdu, target),
        INVITE => check_invite(room, pdu, target),
        LEAVE => check_leave(room, pdu, target),
        BAN => check_ban(room, pdu, target),
        KNOCK if room.version.knocking => check_knock(room, pdu, target),
        other => deny(format!("unknown membership {other:?}")),
    }
}

fn check_join(room: &Room, pdu: &Pdu, target: &str) -> Result<(), AuthError> {
    let prev = pdu.prev_events(room.version).unwrap_or_default();
    if let (Some(room_id), [only]) = (pdu.room_id, prev.as_slice()) {
        if room.create_event_id(room_id).as_deref() == Some(*only) && room.first_creator() == Some(target) {
            return Ok(());
        }
    }
    let sender = pdu.sender;
    if sender != target {
        return deny(format!("{sender} cannot join on behalf of {target}"));
    }
    let current = room.membership(sender);
    if current == BAN {
        return deny(format!("{sender} is banned from the room"));
    }
    let invited_or_joined = current == INVITE || current == JOIN;
    let version = room.version;
    match room.join_rule() {
        Some("public") => Ok(()),
        Some(INVITE) if invited_or_joined => Ok(()),
        Some(KNOCK) if version.knocking && invited_or_joined => Ok(()),
        Some(rule @ ("restricted" | "knock_restricted"))
            if (rule == "restricted" && version.restricted_joins)
                || (rule == "knock_restricted" && version.knock_restricted) =>
        {
            if invited_or_joined {
                return Ok(());
            }
            let Some(authoriser) = pdu.content.get(AUTHORISER_KEY).and_then(Value::as_str) else {
                return deny(format!("{sender} needs an invite or a member's authorisation to join"));
            };
            if room.membership(authoriser) != JOIN {
                return deny(format!("the authorising user {authoriser} is not in the room"));
            }
            let level = room.level(authoriser);
            let needed = room.pl.invite();
            if !level.at_least(needed) {
                return deny(format!(
                    "the authorising user {authoriser} may not invite: needs {needed}, has {level}"
                ));
            }
            Ok(())
        }
        Some(rule @ INVITE) => {
            deny(format!("{sender} may not join: the join rule is {rule:?} and they are not invited"))
        }
        Some(rule @ KNOCK) if version.knocking => {
            deny(format!("{sender} may not join: the join rule is {rule:?} and they are not invited"))
        }
        Some(rule) => deny(format!(
            "{sender} may not join: the join rule {rule:?} lets nobody join in room version {}",
            version.id
        )),
        None => deny(format!("{sender} may not join: the room has no join rule")),
    }
}

fn check_invite(room: &Room, pdu: &Pdu, target: &str) -> Result<(), AuthError> {
    let sender = pdu.sender;
    if let Some(tpi) = pdu.content.get("third_party_invite") {
        return check_third_party_invite(room, pdu, target, tpi);
    }
    if room.membership(sender) != JOIN {
        return deny(format!("{sender} is not in the room"));
    }
    match room.membership(target) {
        JOIN => return deny(format!("{target} is already in the room")),
        BAN => return deny(format!("{target} is banned from the room")),
        _ => {}
    }
    room.require(room.level(sender), room.pl.invite(), "to invite")
}

/// An invite that completes an `m.room.third_party_invite`: the identity
/// server's signature on `signed` must verify with one of that event's keys.
fn check_third_party_invite(room: &Room, pdu: &Pdu, target: &str, tpi: &Value) -> Result<(), AuthError> {
    if room.membership(target) == BAN {
        return deny(format!("{target} is banned from the room"));
    }
    let Some(signed) = tpi.get("signed") else {
        return deny("the third-party invite has no signed block");
    };
    let (Some(mxid), Some(token)) =
        (signed.get("mxid").and_then(Value::as_str), signed.get("token").and_then(Value::as_str))
    else {
        return deny("the third-party invite's signed block needs mxid and token");
    };
    if mxid != target {
        return deny(format!("the third-party invite is for {mxid}, not {target}"));
    }
    let Some(original) = room.state.get(THIRD_PARTY_INVITE, token) else {
        return deny("no third-party invite in the room matches this token");
    };
    if original.get("sender").and_then(Value::as_str) != Some(pdu.sender) {
        return deny(format!("{} did not send the matching third-party invite", pdu.sender));
    }
    if third_party_signature_valid(signed, original) {
        Ok(())
    } else {
        deny("the third-party invite's signature matches none of the invite's public keys")
    }
}

/// True if any ed25519 signature in `signed` verifies with any public key
/// of the `m.room.third_party_invite` event `original`.
fn third_party_signature_valid(signed: &Value, original: &Value) -> bool {
    let content = original.get("content");
    let single = content.and_then(|c| c.get("public_key")).and_then(Value::as_str);
    let listed = content
        .and_then(|c| c.get("public_keys"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|k| k.get("public_key").and_then(Value::as_str));
    let keys: Vec<[u8; 32]> = single
        .into_iter()
        .chain(listed)
        .filter_map(|k| b64_decode(k).and_then(|bytes| <[u8; 32]>::try_from(bytes.as_slice()).ok()))
        .collect();
    let Some(signatures) = signed.get("signatures").and_then(Value::as_object) else {
        return false;
    };
    let candidates = signatures.iter().flat_map(|(server, by_key)| {
        by_key
            .as_object()
            .into_iter()
            .flat_map(|m| m.keys())
            .filter(|key_id| key_id.starts_with(ED25519_PREFIX))
            .map(move |key_id| (server.as_str(), key_id.as_str()))
    });
    candidates
        .flat_map(|(server, key_id)| keys.iter().map(move |key| (server, key_id, key)))
        .take(THIRD_PARTY_VERIFICATIONS_MAX)
        .any(|(server, key_id, key)| verify_json(signed, server, key_id, key))
}

fn check_leave(room: &Room, pdu: &Pdu, target: &str) -> Result<(), AuthError> {
    let sender = pdu.sender;
    if sender == target {
        return match room.membership(sender) {
            INVITE | JOIN => Ok(()),
            // v7 on: a knock can be withdrawn.
            KNOCK if room.version.knocking => Ok(()),
            BAN => deny(format!("{sender} is banned and cannot unban themselves")),
            _ => deny(format!("{sender} is not in the room")),
        };
    }
    if room.membership(sender) != JOIN {
        return deny(format!("{sender} is not in the room"));
    }
    let (sender_level, target_level) = (room.level(sender), room.level(target));
    if room.membership(target) == BAN {
        room.require(sender_level, room.pl.ban(), "to unban")?;
    }
    room.require(sender_level, room.pl.kick(), "to kick")?;
    outranks(sender, sender_level, target, target_level, "kick")
}

fn check_ban(room: &Room, pdu: &Pdu, target: &str) -> Result<(), AuthError> {
    let sender = pdu.sender;
    if room.membership(sender) != JOIN {
        return deny(format!("{sender} is not in the room"));
    }
    let (sender_level, target_level) = (room.level(sender), room.level(target));
    room.require(sender_level, room.pl.ban(), "to ban")?;
    outranks(sender, sender_level, target, target_level, "ban")
}

/// Kicks and bans need the target strictly below the sender.
fn outranks(
    sender: &str,
    sender_level: Level,
    target: &str,
    target_level: Level,
    action: &str,
) -> Result<(), AuthError> {
    if target_level < sender_level {
        Ok(())
    } else {
        deny(format!(
            "{sender} cannot {action} {target}: their power level {target_level} is not below {sender_level}"
        ))
    }
}

fn check_knock(room: &Room, pdu: &Pdu, target: &str) -> Result<(), AuthError> {
    if !room.allows_knocking() {
        let rule = room.join_rule().unwrap_or("unset");
        return deny(format!("the room's join rule ({rule}) does not allow knocking"));
    }
    let sender = pdu.sender;
    if sender != target {
        return deny(format!("{sender} cannot knock on behalf of {target}"));
    }
    match room.membership(sender) {
        BAN => deny(format!("{sender} is banned from the room")),
        INVITE => deny(format!("{sender} is already invited")),
        JOIN => deny(format!("{sender} is already in the room")),
        _ => Ok(()),
    }
}

/// The spec's "Handling redactions" (`v3-handling-redactions`): from v3, a
/// redaction that passed authorisation is applied if its sender reaches the
/// *redact level*, or is on the same server as the sender of the event it
/// redacts. In v1–v2 the authorisation rules decided it already (rule 11),
/// so a redaction that passed them applies.
pub fn may_apply_redaction(
    version: &RoomVersion,
    redaction_sender: &str,
    original_sender: &str,
    power_levels: &PowerLevels,
    creators: &Creators,
) -> bool {
    if version.redaction_auth_rule {
        return true;
    }
    let redacting_server = parse_user_id(redaction_sender).map(|(_, server)| server);
    let original_server = parse_user_id(original_sender).map(|(_, server)| server);
    let same_server = redacting_server.is_some() && redacting_server == original_server;
    same_server || power_levels.user_level(redaction_sender, creators).at_least(power_levels.redact())
}

#[cfg(test)]
mod tests;
