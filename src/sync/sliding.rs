//! Simplified sliding sync (MSC4186), the sync Element X runs: the client
//! asks for windows (`ranges`) of room lists ordered by recency, rooms it
//! subscribes to, and extensions; the answer carries each list's count and
//! the rooms in the windows, each only with what changed since this
//! connection last had it (`conns::Snapshot`). Computed in one read
//! snapshot, like `/sync`, from the same stores.
//!
//! Rooms are ordered by `bump_stamp`, the stream position of their newest
//! event of a "message-like" type (`BUMP_TYPES`); the answer has no list
//! operations (MSC4186 dropped them): clients order by `bump_stamp`.

use std::collections::{BTreeMap, HashMap, HashSet};

use rusqlite::Connection;
use serde_json::{json, Map, Value};

use super::conns::{RoomSent, Snapshot};
use super::{HEROES_MAX, TIMELINE_LIMIT_MAX};
use crate::app::App;
use crate::error::{Error, Result};
use crate::rooms::format::{client_event, Viewer};
use crate::rooms::visibility::Visibility;
use crate::rooms::{load_readable_pdu, token};
use crate::storage::events::{self, Dir, StoredEvent};
use crate::storage::{self, account_data, state};

/// Event types that move a room up a list ordered by recency.
pub const BUMP_TYPES: &[&str] = &[
    "m.room.create",
    "m.room.message",
    "m.room.encrypted",
    "m.sticker",
    "m.call.invite",
    "m.poll.start",
    "org.matrix.msc3381.poll.start",
    "m.beacon_info",
    "org.matrix.msc3672.beacon_info",
];
/// Lists one request may hold.
pub const LISTS_MAX: usize = 64;
/// Ranges one list may hold.
pub const RANGES_MAX: usize = 32;
/// Room subscriptions one request may hold.
pub const SUBSCRIPTIONS_MAX: usize = 256;
/// `required_state` entries one list or subscription may hold.
pub const REQUIRED_STATE_MAX: usize = 128;
/// To-device messages one answer carries at most (the rest come next time).
pub const TO_DEVICE_LIMIT_MAX: usize = 1000;

/// What to send of each room of a list or subscription.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoomSpec {
    pub timeline_limit: usize,
    /// `(type, state_key)`, with `*`, `$ME` and `$LAZY`.
    pub required_state: Vec<(String, String)>,
}

impl RoomSpec {
    /// The union of two specs (a room in two lists gets the larger one).
    fn merge(&mut self, other: &RoomSpec) {
        self.timeline_limit = self.timeline_limit.max(other.timeline_limit);
        for entry in &other.required_state {
            if !self.required_state.contains(entry) {
                self.required_state.push(entry.clone());
            }
        }
    }
}

/// A list's room filters; `None` means "not filtered on".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filters {
    pub is_dm: Option<bool>,
    pub is_invite: Option<bool>,
    pub is_encrypted: Option<bool>,
    pub spaces: Option<Vec<String>>,
    /// Room types (`None` inside: rooms without a type).
    pub room_types: Option<Vec<Option<String>>>,
    pub not_room_types: Vec<Option<String>>,
    pub tags: Option<Vec<String>>,
    pub not_tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct List {
    pub name: String,
    pub ranges: Vec<(usize, usize)>,
    pub room: RoomSpec,
    pub filters: Filters,
}

/// A sliding sync request, parsed and bounded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request {
    pub lists: Vec<List>,
    /// Explicit rooms, sticky for the connection until unsubscribed.
    pub subscriptions: Map<String, Value>,
    /// The extensions' settings, sticky for the connection.
    pub extensions: Map<String, Value>,
}

fn bad(msg: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::bad_json(msg)
}

fn parse_spec(v: &Value) -> Result<RoomSpec> {
    let timeline_limit = match v.get("timeline_limit") {
        None | Some(Value::Null) => 0,
        Some(n) => n.as_u64().ok_or_else(|| bad("timeline_limit must be a whole number"))? as usize,
    }
    .min(TIMELINE_LIMIT_MAX);
    let mut required_state = Vec::new();
    match v.get("required_state") {
        None | Some(Value::Null) => {}
        Some(Value::Array(entries)) => {
            if entries.len() > REQUIRED_STATE_MAX {
                return Err(bad(format!("required_state holds at most {REQUIRED_STATE_MAX} entries")));
            }
            for e in entries {
                let pair = e.as_array().filter(|a| a.len() == 2);
                let (Some(t), Some(k)) = (pair.and_then(|a| a[0].as_str()), pair.and_then(|a| a[1].as_str()))
                else {
                    return Err(bad("required_state entries are [type, state_key] pairs of strings"));
                };
                required_state.push((t.to_owned(), k.to_owned()));
            }
        }
        Some(_) => return Err(bad("required_state must be a list")),
    }
    Ok(RoomSpec { timeline_limit, required_state })
}

fn strings(v: Option<&Value>, what: &str) -> Result<Option<Vec<String>>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|s| s.as_str().map(str::to_owned).ok_or_else(|| bad(format!("{what} must be strings"))))
            .collect::<Result<Vec<_>>>()
            .map(Some),
        Some(_) => Err(bad(format!("{what} must be a list"))),
    }
}

fn room_types(v: Option<&Value>, what: &str) -> Result<Option<Vec<Option<String>>>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|s| match s {
                Value::Null => Ok(None),
                Value::String(s) => Ok(Some(s.clone())),
                _ => Err(bad(format!("{what} must be strings or null"))),
            })
            .collect::<Result<Vec<_>>>()
            .map(Some),
        Some(_) => Err(bad(format!("{what} must be a list"))),
    }
}

fn flag(v: Option<&Value>, what: &str) -> Result<Option<bool>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(bad(format!("{what} must be true or false"))),
    }
}

fn parse_filters(v: Option<&Value>) -> Result<Filters> {
    let Some(v) = v.filter(|v| !v.is_null()) else { return Ok(Filters::default()) };
    if !v.is_object() {
        return Err(bad("filters must be an object"));
    }
    Ok(Filters {
        is_dm: flag(v.get("is_dm"), "is_dm")?,
        is_invite: flag(v.get("is_invite"), "is_invite")?,
        is_encrypted: flag(v.get("is_encrypted"), "is_encrypted")?,
        spaces: strings(v.get("spaces"), "spaces")?,
        room_types: room_types(v.get("room_types"), "room_types")?,
        not_room_types: room_types(v.get("not_room_types"), "not_room_types")?.unwrap_or_default(),
        tags: strings(v.get("tags"), "tags")?,
        not_tags: strings(v.get("not_tags"), "not_tags")?.unwrap_or_default(),
    })
}

/// Reads a request body against the connection's sticky parts (`base`):
/// room subscriptions and extension settings persist until changed.
pub fn parse(body: &Value, base: &Snapshot) -> Result<Request> {
    let Some(obj) = body.as_object() else { return Err(bad("The body must be a JSON object")) };
    let mut lists = Vec::new();
    match obj.get("lists") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            if m.len() > LISTS_MAX {
                return Err(bad(format!("At most {LISTS_MAX} lists")));
            }
            for (name, l) in m {
                let mut ranges = Vec::new();
                match l.get("ranges") {
                    None | Some(Value::Null) => {}
                    Some(Value::Array(rs)) if rs.len() <= RANGES_MAX => {
                        for r in rs {
                            let pair = r.as_array().filter(|a| a.len() == 2);
                            let (Some(a), Some(b)) =
                                (pair.and_then(|p| p[0].as_u64()), pair.and_then(|p| p[1].as_u64()))
                            else {
                                return Err(bad("ranges are [start, end] pairs of whole numbers"));
                            };
                            if a > b {
                                return Err(bad("a range must not end before it starts"));
                            }
                            ranges.push((a as usize, b.min(usize::MAX as u64) as usize));
                        }
                    }
                    Some(_) => return Err(bad(format!("ranges must be a list of at most {RANGES_MAX}"))),
                }
                lists.push(List {
                    name: name.clone(),
                    ranges,
                    room: parse_spec(l)?,
                    filters: parse_filters(l.get("filters"))?,
                });
            }
        }
        Some(_) => return Err(bad("lists must be an object")),
    }
    let mut subscriptions = base.subscriptions.clone();
    match obj.get("room_subscriptions") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (room_id, spec) in m {
                if !crate::core::ids::is_valid_room_id(room_id) {
                    return Err(Error::invalid_param(format!("{room_id} is not a room ID")));
                }
                parse_spec(spec)?;
                subscriptions.insert(room_id.clone(), spec.clone());
            }
        }
        Some(_) => return Err(bad("room_subscriptions must be an object")),
    }
    for room_id in strings(obj.get("unsubscribe_rooms"), "unsubscribe_rooms")?.unwrap_or_default() {
        subscriptions.remove(&room_id);
    }
    if subscriptions.len() > SUBSCRIPTIONS_MAX {
        return Err(bad(format!("At most {SUBSCRIPTIONS_MAX} room subscriptions")));
    }
    let mut extensions = base.extensions.clone();
    match obj.get("extensions") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (name, settings) in m {
                if !settings.is_object() {
                    return Err(bad(format!("extensions.{name} must be an object")));
                }
                // A setting given again replaces the kept one field by field.
                let kept = extensions.entry(name.clone()).or_insert_with(|| json!({}));
                for (k, v) in settings.as_object().into_iter().flatten() {
                    // The to-device `since` is per request, not sticky.
                    kept[k] = v.clone();
                }
            }
        }
        Some(_) => return Err(bad("extensions must be an object")),
    }
    Ok(Request { lists, subscriptions, extensions })
}

/// A computed answer, with the snapshot it stands for (its `id` set when
/// it is recorded).
pub struct Answer {
    pub body: Value,
    /// Nothing new: a request with a `pos` may wait.
    pub empty: bool,
    pub snapshot: Snapshot,
    /// The rooms whose events wake a waiting request.
    pub rooms: HashSet<String>,
}

/// The user's rooms that lists can hold, with their membership.
fn user_rooms(conn: &Connection, user_id: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for membership in ["join", "invite", "knock"] {
        for room in state::rooms_of_user(conn, user_id, membership)? {
            out.insert(room, membership.to_owned());
        }
    }
    Ok(out)
}

/// Facts about a room the filters and the ordering need.
struct Facts {
    bump: i64,
    is_dm: bool,
    encrypted: bool,
    room_type: Option<String>,
    tags: Vec<String>,
}

struct Ctx<'a> {
    conn: &'a Connection,
    user_id: &'a str,
    device_id: &'a str,
    now: i64,
    now_pos: i64,
    /// The stream position the connection's previous answer covered (0 if
    /// the connection is new).
    from: i64,
    fresh: bool,
    dm_rooms: HashSet<String>,
    ignored: HashSet<String>,
}

impl Ctx<'_> {
    fn state_content(&self, room_id: &str, kind: &str, key: &str) -> Result<Option<Value>> {
        Ok(match state::current_entry(self.conn, room_id, kind, key)? {
            Some(id) => load_readable_pdu(self.conn, &id)?.and_then(|p| p.get("content").cloned()),
            None => None,
        })
    }

    fn facts(&self, room_id: &str, membership: &str) -> Result<Facts> {
        // An invite or knock sorts by when it happened; a joined room by its
        // newest message-like event, but not below the user's own join (a
        // room just joined does not drop down the list it was invited on).
        let own = match state::current_entry(self.conn, room_id, "m.room.member", self.user_id)? {
            Some(id) => events::get(self.conn, &id)?.map_or(0, |e| e.pos),
            None => 0,
        };
        let bump = if membership == "join" {
            events::last_pos_of_types(self.conn, room_id, BUMP_TYPES)?.unwrap_or(0).max(own)
        } else {
            own
        };
        let encrypted = state::current_entry(self.conn, room_id, "m.room.encryption", "")?.is_some();
        let room_type = self
            .state_content(room_id, "m.room.create", "")?
            .and_then(|c| c.get("type").and_then(Value::as_str).map(str::to_owned));
        let tags = account_data::get(self.conn, self.user_id, room_id, "m.tag")?
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|t| t.get("tags").and_then(Value::as_object).map(|m| m.keys().cloned().collect()))
            .unwrap_or_default();
        Ok(Facts { bump, is_dm: self.dm_rooms.contains(room_id), encrypted, room_type, tags })
    }

    fn in_space(&self, room_id: &str, spaces: &[String]) -> Result<bool> {
        for space in spaces {
            if state::current_entry(self.conn, space, "m.space.child", room_id)?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn passes(&self, room_id: &str, membership: &str, f: &Facts, filters: &Filters) -> Result<bool> {
        let ok = filters.is_dm.is_none_or(|want| want == f.is_dm)
            && filters.is_invite.is_none_or(|want| want == (membership == "invite"))
            && filters.is_encrypted.is_none_or(|want| want == f.encrypted)
            && filters.room_types.as_ref().is_none_or(|types| types.contains(&f.room_type))
            && !filters.not_room_types.contains(&f.room_type)
            && filters.tags.as_ref().is_none_or(|tags| tags.iter().any(|t| f.tags.contains(t)))
            && !filters.not_tags.iter().any(|t| f.tags.contains(t));
        match (&filters.spaces, ok) {
            (Some(spaces), true) => self.in_space(room_id, spaces),
            _ => Ok(ok),
        }
    }

    /// The newest events of a room (after `after`, if given) the user may
    /// see, oldest first, and whether more were left out.
    fn timeline(&self, room_id: &str, after: Option<i64>, limit: usize) -> Result<(Vec<StoredEvent>, bool)> {
        if limit == 0 {
            let more = !events::room_events(self.conn, room_id, self.now_pos + 1, after, Dir::Backward, 1)?
                .is_empty();
            return Ok((Vec::new(), more));
        }
        let mut visibility = Visibility::new(self.conn, self.user_id, room_id);
        super::scan_timeline(self.conn, room_id, self.now_pos + 1, after, limit, |e| {
            Ok(!(e.state_key.is_none() && self.ignored.contains(&e.sender)) && visibility.may_see(e)?)
        })
    }

    fn format(&self, e: &StoredEvent) -> Result<Option<Value>> {
        client_event(
            self.conn,
            e,
            Some(Viewer { user_id: self.user_id, device_id: self.device_id }),
            self.now,
        )
    }

    /// The state events of `map` that `spec` asks for; `lazy`: the members
    /// `$LAZY` stands for (the timeline's senders).
    fn required_state(
        &self,
        map: &state::StateMap,
        spec: &RoomSpec,
        lazy: &HashSet<String>,
    ) -> Result<Vec<Value>> {
        let wanted = |kind: &str, key: &str| {
            spec.required_state.iter().any(|(t, k)| {
                (t == "*" || t == kind)
                    && (k == "*"
                        || k == key
                        || (k == "$ME" && key == self.user_id)
                        || (k == "$LAZY" && kind == "m.room.member" && lazy.contains(key)))
            })
        };
        let mut ids: Vec<&String> = map.iter().filter(|((t, k), _)| wanted(t, k)).map(|(_, id)| id).collect();
        ids.sort();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(e) = events::get(self.conn, id)? {
                out.extend(self.format(&e)?);
            }
        }
        Ok(out)
    }

    /// The state after the room's newest event at or before `pos`.
    fn state_at(&self, room_id: &str, pos: i64) -> Result<state::StateMap> {
        match events::room_events(self.conn, room_id, pos + 1, None, Dir::Backward, 1)?.first() {
            Some(e) => crate::rooms::state_after(self.conn, e),
            None => Ok(state::StateMap::new()),
        }
    }

    /// Name, avatar, heroes and member counts.
    fn header(&self, room_id: &str, room: &mut Map<String, Value>) -> Result<()> {
        let name = self.state_content(room_id, "m.room.name", "")?;
        if let Some(name) = name.as_ref().and_then(|c| c.get("name")).and_then(Value::as_str) {
            room.insert("name".into(), json!(name));
        }
        if let Some(url) =
            self.state_content(room_id, "m.room.avatar", "")?.and_then(|c| c.get("url").cloned())
        {
            room.insert("avatar".into(), url);
        }
        let joined = state::members(self.conn, room_id, "join")?;
        let invited = state::members(self.conn, room_id, "invite")?;
        room.insert("joined_count".into(), json!(joined.len()));
        room.insert("invited_count".into(), json!(invited.len()));
        let mut heroes = Vec::new();
        for user in
            joined.iter().chain(invited.iter()).filter(|u| u.as_str() != self.user_id).take(HEROES_MAX)
        {
            let content = self.state_content(room_id, "m.room.member", user)?.unwrap_or_default();
            let mut hero = json!({ "user_id": user });
            for field in ["displayname", "avatar_url"] {
                if let Some(v) = content.get(field).filter(|v| v.is_string()) {
                    hero[field] = v.clone();
                }
            }
            heroes.push(hero);
        }
        room.insert("heroes".into(), Value::Array(heroes));
        Ok(())
    }

    /// An invited or knocked room: its stripped state, once per membership.
    fn invite_room(&self, room_id: &str, membership: &str, facts: &Facts) -> Result<Value> {
        let member = state::membership_event(self.conn, self.user_id, room_id)?;
        let events_out = crate::rooms::stripped_state(self.conn, room_id, member.as_deref())?;
        let field = if membership == "knock" { "knock_state" } else { "invite_state" };
        Ok(json!({
            "initial": true,
            field: events_out,
            "bump_stamp": facts.bump,
            "is_dm": facts.is_dm,
            "timeline": [],
            "required_state": [],
        }))
    }

    /// A joined room's part of the answer, or `None` if nothing in it
    /// changed since `sent`.
    fn joined_room(
        &self,
        room_id: &str,
        spec: &RoomSpec,
        facts: &Facts,
        sent: Option<&RoomSent>,
    ) -> Result<Option<(Value, RoomSent)>> {
        let known = sent.filter(|s| s.membership == "join");
        let initial = known.is_none();
        let expanded = known.is_some_and(|s| spec.timeline_limit > s.timeline_limit);
        let after = match known {
            Some(s) if !expanded => Some(s.upto),
            _ => None,
        };
        if let Some(upto) = after {
            // Nothing happened in the room, and no receipt of the user's
            // changed its counts: nothing to send.
            let quiet =
                events::room_events(self.conn, room_id, self.now_pos + 1, Some(upto), Dir::Backward, 1)?
                    .is_empty()
                    && !crate::storage::receipts::changed(self.conn, room_id, upto, self.now_pos)?
                        .iter()
                        .any(|r| r.user_id == self.user_id);
            if quiet {
                return Ok(None);
            }
        }
        let (timeline, limited) = self.timeline(room_id, after, spec.timeline_limit)?;
        let mut lazy: HashSet<String> = timeline.iter().map(|e| e.sender.clone()).collect();
        lazy.insert(self.user_id.to_owned());
        let now_state = state::current_state(self.conn, room_id)?;
        let required = match after {
            None => self.required_state(&now_state, spec, &lazy)?,
            Some(upto) => {
                let before = self.state_at(room_id, upto)?;
                let changed: state::StateMap = now_state
                    .iter()
                    .filter(|(k, id)| before.get(*k) != Some(*id))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                // Members of new senders the client has not had yet.
                let mut map = changed;
                for s in &lazy {
                    let key = ("m.room.member".to_owned(), s.clone());
                    if let Some(id) = now_state.get(&key) {
                        if before.get(&key) != Some(id) || !timeline.is_empty() {
                            map.entry(key).or_insert_with(|| id.clone());
                        }
                    }
                }
                let timeline_ids: HashSet<&str> = timeline.iter().map(|e| e.event_id.as_str()).collect();
                self.required_state(&map, spec, &lazy)?
                    .into_iter()
                    .filter(|e| !e["event_id"].as_str().is_some_and(|id| timeline_ids.contains(id)))
                    .collect()
            }
        };
        let mut timeline_json = Vec::with_capacity(timeline.len());
        for e in &timeline {
            timeline_json.extend(self.format(e)?);
        }
        let num_live = if self.fresh { 0 } else { timeline.iter().filter(|e| e.pos > self.from).count() };
        let (notes, highlights) = crate::storage::push::unread_counts(self.conn, self.user_id, room_id)?;
        let prev_batch = timeline.first().map_or_else(|| token::at(self.now_pos + 1), |e| token::at(e.pos));
        let mut room = Map::new();
        if initial {
            room.insert("initial".into(), json!(true));
        }
        if expanded {
            room.insert("expanded_timeline".into(), json!(true));
        }
        let state_moved =
            initial || expanded || !required.is_empty() || timeline.iter().any(|e| e.state_key.is_some());
        if state_moved {
            self.header(room_id, &mut room)?;
        }
        room.insert("required_state".into(), Value::Array(required));
        room.insert("timeline".into(), Value::Array(timeline_json));
        room.insert("limited".into(), json!(limited));
        room.insert("prev_batch".into(), json!(prev_batch));
        room.insert("num_live".into(), json!(num_live));
        room.insert("bump_stamp".into(), json!(facts.bump));
        room.insert("notification_count".into(), json!(notes));
        room.insert("highlight_count".into(), json!(highlights));
        room.insert("is_dm".into(), json!(facts.is_dm));
        let limit = known.map_or(spec.timeline_limit, |s| s.timeline_limit.max(spec.timeline_limit));
        Ok(Some((
            Value::Object(room),
            RoomSent { upto: self.now_pos, timeline_limit: limit, membership: "join".into() },
        )))
    }

    /// The user's own current member event, as clients read their
    /// membership from `required_state` (matrix-rust-sdk reads state only
    /// there, never from the timeline).
    fn own_member(&self, room_id: &str) -> Result<Vec<Value>> {
        let Some(id) = state::current_entry(self.conn, room_id, "m.room.member", self.user_id)? else {
            return Ok(Vec::new());
        };
        Ok(match events::get(self.conn, &id)? {
            Some(e) => self.format(&e)?.into_iter().collect(),
            None => Vec::new(),
        })
    }

    /// A room sent before that the user has left since: what happened up
    /// to their leaving (the leave itself last), and the leave in
    /// `required_state`.
    fn left_room(&self, room_id: &str, sent: &RoomSent) -> Result<Option<Value>> {
        let (timeline, limited) = if sent.membership == "join" {
            self.timeline(room_id, Some(sent.upto), sent.timeline_limit.max(1))?
        } else {
            // A withdrawn or refused invite: nothing of the room was seen.
            (Vec::new(), false)
        };
        let mut timeline_json = Vec::with_capacity(timeline.len());
        for e in &timeline {
            timeline_json.extend(self.format(e)?);
        }
        let prev_batch = timeline.first().map_or_else(|| token::at(self.now_pos + 1), |e| token::at(e.pos));
        Ok(Some(json!({
            "timeline": timeline_json,
            "limited": limited,
            "prev_batch": prev_batch,
            "required_state": self.own_member(room_id)?,
            "num_live": timeline.len(),
        })))
    }
}

/// The rooms an extension's `lists`/`rooms` scope names among those in the
/// answer (absent or `*`: all of them).
fn scoped<'a>(
    settings: &Value,
    in_lists: &'a BTreeMap<String, Vec<String>>,
    subscribed: &'a [String],
    all: &'a BTreeMap<String, RoomSpec>,
) -> Vec<&'a String> {
    let names = |k: &str| -> Option<Vec<String>> {
        settings
            .get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
    };
    let (lists, rooms) = (names("lists"), names("rooms"));
    let any = |v: &Option<Vec<String>>| v.as_ref().is_none_or(|v| v.iter().any(|s| s == "*"));
    if any(&lists) && any(&rooms) {
        return all.keys().collect();
    }
    let mut out: Vec<&String> = Vec::new();
    if let Some(lists) = &lists {
        for l in lists {
            out.extend(in_lists.get(l).into_iter().flatten());
        }
    }
    if let Some(rooms) = &rooms {
        out.extend(subscribed.iter().filter(|r| rooms.contains(r) || rooms.iter().any(|s| s == "*")));
    }
    out.sort();
    out.dedup();
    out
}

/// Adds a room account data event to its room's list.
fn push_room_data(per_room: &mut Map<String, Value>, room_id: String, event: Value) {
    if let Value::Array(list) = per_room.entry(room_id).or_insert_with(|| json!([])) {
        list.push(event);
    }
}

fn enabled(extensions: &Map<String, Value>, name: &str) -> Option<Value> {
    extensions.get(name).filter(|s| s.get("enabled").and_then(Value::as_bool) == Some(true)).cloned()
}

/// Computes an answer continuing from `base` (a new connection: the
/// default snapshot).
pub fn compute(
    app: &App,
    conn: &Connection,
    user_id: &str,
    device_id: &str,
    req: &Request,
    base: &Snapshot,
    to_device_since: Option<i64>,
) -> Result<Answer> {
    crate::ephemeral::refresh(app, conn)?;
    let now_pos = events::current_pos(conn)?;
    let now_eph = app.hub.current_ephemeral();
    let fresh = base.id == 0;
    let dm_rooms: HashSet<String> = account_data::get(conn, user_id, "", "m.direct")?
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v.as_object().cloned())
        .map(|m| {
            m.values()
                .filter_map(Value::as_array)
                .flatten()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let ctx = Ctx {
        conn,
        user_id,
        device_id,
        now: storage::now_ms(),
        now_pos,
        from: base.stream,
        fresh,
        dm_rooms,
        ignored: storage::ignored::ignored_users(conn, user_id)?,
    };
    let mine = user_rooms(conn, user_id)?;
    let mut facts: HashMap<String, Facts> = HashMap::new();
    for (room_id, membership) in &mine {
        facts.insert(room_id.clone(), ctx.facts(room_id, membership)?);
    }
    // Lists: filter, order by recency, cut the windows.
    let mut wanted: BTreeMap<String, RoomSpec> = BTreeMap::new();
    let mut in_lists: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut lists_out = Map::new();
    let mut counts = HashMap::new();
    for list in &req.lists {
        let mut rooms: Vec<(&String, i64)> = Vec::new();
        for (room_id, membership) in &mine {
            let f = &facts[room_id];
            if ctx.passes(room_id, membership, f, &list.filters)? {
                rooms.push((room_id, f.bump));
            }
        }
        rooms.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        lists_out.insert(list.name.clone(), json!({ "count": rooms.len() }));
        counts.insert(list.name.clone(), rooms.len());
        let mut names = Vec::new();
        for &(start, end) in &list.ranges {
            for (room_id, _) in rooms.iter().skip(start).take(end.saturating_sub(start).saturating_add(1)) {
                wanted.entry((*room_id).clone()).or_default().merge(&list.room);
                names.push((*room_id).clone());
            }
        }
        in_lists.insert(list.name.clone(), names);
    }
    let mut subscribed = Vec::new();
    for (room_id, spec) in &req.subscriptions {
        if mine.contains_key(room_id) {
            wanted.entry(room_id.clone()).or_default().merge(&parse_spec(spec)?);
            subscribed.push(room_id.clone());
        }
    }
    // Each room: what changed since this connection last had it.
    let mut rooms_out = Map::new();
    let mut sent: HashMap<String, RoomSent> = base.rooms.clone();
    for (room_id, spec) in &wanted {
        let membership = &mine[room_id];
        let f = &facts[room_id];
        let before = base.rooms.get(room_id);
        if membership != "join" {
            if before.is_some_and(|s| &s.membership == membership) {
                continue;
            }
            rooms_out.insert(room_id.clone(), ctx.invite_room(room_id, membership, f)?);
            sent.insert(
                room_id.clone(),
                RoomSent { upto: now_pos, timeline_limit: 0, membership: membership.clone() },
            );
            continue;
        }
        if let Some((room, record)) = ctx.joined_room(room_id, spec, f, before)? {
            rooms_out.insert(room_id.clone(), room);
            sent.insert(room_id.clone(), record);
        }
    }
    // Rooms the client had that the user is no longer in.
    for (room_id, before) in &base.rooms {
        if mine.contains_key(room_id) {
            continue;
        }
        if let Some(room) = ctx.left_room(room_id, before)? {
            rooms_out.insert(room_id.clone(), room);
        }
        sent.remove(room_id);
    }
    // Extensions.
    let mut ext_out = Map::new();
    let mut ext_news = false;
    if let Some(settings) = enabled(&req.extensions, "to_device") {
        let since = to_device_since.unwrap_or(0);
        let limit = settings
            .get("limit")
            .and_then(Value::as_u64)
            .map_or(TO_DEVICE_LIMIT_MAX, |l| (l as usize).clamp(1, TO_DEVICE_LIMIT_MAX));
        let messages = crate::storage::e2ee::to_device_between(conn, user_id, device_id, since, now_pos)?;
        let events_out: Vec<Value> = messages
            .into_iter()
            .take(limit)
            .filter_map(|m| {
                serde_json::from_str::<Value>(&m.content)
                    .ok()
                    .map(|content| json!({ "sender": m.sender, "type": m.kind, "content": content }))
            })
            .collect();
        ext_news |= !events_out.is_empty();
        ext_out
            .insert("to_device".into(), json!({ "next_batch": now_pos.to_string(), "events": events_out }));
    }
    if enabled(&req.extensions, "e2ee").is_some() {
        let (changed, left) = if fresh {
            (Vec::new(), Vec::new())
        } else {
            super::e2ee::device_list_changes(conn, user_id, base.stream, now_pos)?
        };
        ext_news |= !changed.is_empty() || !left.is_empty();
        let (counts, fallback) = super::e2ee::counts(conn, user_id, device_id)?;
        ext_out.insert(
            "e2ee".into(),
            json!({
                "device_lists": { "changed": changed, "left": left },
                "device_one_time_keys_count": counts,
                "device_unused_fallback_key_types": fallback,
            }),
        );
    }
    if let Some(settings) = enabled(&req.extensions, "account_data") {
        let mut global = Vec::new();
        let mut per_room: Map<String, Value> = Map::new();
        let scope: HashSet<&String> =
            scoped(&settings, &in_lists, &subscribed, &wanted).into_iter().collect();
        for (room_id, kind, content) in account_data::changed(conn, user_id, base.stream, now_pos)? {
            if room_id.is_empty() {
                global.push(json!({ "type": kind, "content": content }));
            } else if scope.contains(&room_id) {
                push_room_data(&mut per_room, room_id, json!({ "type": kind, "content": content }));
            }
        }
        // Rooms new to the client get all their room account data.
        for room_id in &scope {
            let newly = !base.rooms.contains_key(*room_id) && sent.contains_key(*room_id);
            if newly && base.stream > 0 {
                for (r, kind, content) in account_data::changed(conn, user_id, 0, base.stream)? {
                    if &r == *room_id {
                        push_room_data(&mut per_room, r, json!({ "type": kind, "content": content }));
                    }
                }
            }
        }
        if fresh && !global.iter().any(|e| e["type"] == "m.push_rules") {
            let rules = crate::push::rules::ruleset_json(&crate::push::ruleset_of(conn, user_id)?);
            global.push(json!({ "type": "m.push_rules", "content": { "global": rules } }));
        }
        ext_news |= !global.is_empty() || !per_room.is_empty();
        ext_out.insert("account_data".into(), json!({ "global": global, "rooms": per_room }));
    }
    if let Some(settings) = enabled(&req.extensions, "receipts") {
        let mut per_room = Map::new();
        for room_id in scoped(&settings, &in_lists, &subscribed, &wanted) {
            if mine.get(room_id).map(String::as_str) != Some("join") {
                continue;
            }
            // A room new to the client (or to the user as a member) gets its
            // receipts as they stand; a known one those since the
            // connection's previous answer.
            let known = base.rooms.get(room_id).is_some_and(|s| s.membership == "join");
            let since = if known { base.stream } else { 0 };
            let content = crate::rooms::format::receipt_content(conn, room_id, since, now_pos, user_id)?;
            if !content.is_empty() {
                per_room.insert(room_id.clone(), json!({ "type": "m.receipt", "content": content }));
            }
        }
        ext_news |= !per_room.is_empty();
        ext_out.insert("receipts".into(), json!({ "rooms": per_room }));
    }
    if let Some(settings) = enabled(&req.extensions, "typing") {
        let mut per_room = Map::new();
        let since = (!fresh).then_some(base.ephemeral);
        for room_id in scoped(&settings, &in_lists, &subscribed, &wanted) {
            let known = base.rooms.contains_key(room_id);
            if let Some(t) = app.ephemeral.typing_event(room_id, since.filter(|_| known), ctx.now) {
                per_room.insert(room_id.clone(), t);
            }
        }
        ext_news |= !per_room.is_empty();
        ext_out.insert("typing".into(), json!({ "rooms": per_room }));
    }
    let counts_moved = counts != base.counts;
    let empty = !fresh && rooms_out.is_empty() && !counts_moved && !ext_news;
    let watched: HashSet<String> = mine.keys().cloned().collect();
    let snapshot = Snapshot {
        id: 0,
        stream: now_pos,
        ephemeral: now_eph,
        rooms: sent,
        counts,
        extensions: req.extensions.clone(),
        subscriptions: req.subscriptions.clone(),
    };
    let body = json!({ "lists": lists_out, "rooms": rooms_out, "extensions": ext_out });
    Ok(Answer { body, empty, snapshot, rooms: watched })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_bounded_and_keep_sticky_parts() {
        let base = Snapshot::default();
        let body = json!({
            "lists": { "all": { "ranges": [[0, 19]], "timeline_limit": 1,
                "required_state": [["m.room.name", ""], ["m.room.member", "$LAZY"]],
                "filters": { "is_dm": false, "not_room_types": ["m.space"] } } },
            "room_subscriptions": { "!r:x": { "timeline_limit": 20 } },
            "extensions": { "e2ee": { "enabled": true } }
        });
        let req = parse(&body, &base).unwrap();
        assert_eq!(req.lists[0].ranges, [(0, 19)]);
        assert_eq!(req.lists[0].room.timeline_limit, 1);
        assert_eq!(req.lists[0].filters.is_dm, Some(false));
        assert_eq!(req.lists[0].filters.not_room_types, [Some("m.space".to_owned())]);
        // Sticky: the next request without them keeps them.
        let kept =
            Snapshot { subscriptions: req.subscriptions.clone(), extensions: req.extensions.clone(), ..base };
        let again = parse(&json!({ "unsubscribe_rooms": [] }), &kept).unwrap();
        assert!(again.subscriptions.contains_key("!r:x") && again.extensions.contains_key("e2ee"));
        let gone = parse(&json!({ "unsubscribe_rooms": ["!r:x"] }), &kept).unwrap();
        assert!(gone.subscriptions.is_empty());
        for bad in [
            json!([]),
            json!({ "lists": { "a": { "ranges": [[5, 1]] } } }),
            json!({ "lists": { "a": { "ranges": "0-1" } } }),
            json!({ "lists": { "a": { "required_state": [["only-one"]] } } }),
            json!({ "lists": { "a": { "timeline_limit": -1 } } }),
            json!({ "lists": { "a": { "filters": { "is_dm": "yes" } } } }),
            json!({ "room_subscriptions": { "not-a-room": {} } }),
            json!({ "extensions": { "e2ee": true } }),
        ] {
            assert!(parse(&bad, &Snapshot::default()).is_err(), "{bad}");
        }
    }

    #[test]
    fn specs_merge_to_the_larger() {
        let mut a = RoomSpec { timeline_limit: 1, required_state: vec![("m.room.name".into(), "".into())] };
        a.merge(&RoomSpec { timeline_limit: 20, required_state: vec![("*".into(), "*".into())] });
        assert_eq!(a.timeline_limit, 20);
        assert_eq!(a.required_state.len(), 2);
    }
}
