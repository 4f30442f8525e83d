//! The room reads other servers make (Server-Server API: "Retrieving
//! events", "Backfilling and retrieving missing events", "Retrieving event
//! authorisation information", `timestamp_to_event`): one event, the state
//! before an event, an event's auth chain, history walked back from some
//! events, and the event nearest a time. Read-only: every function runs on
//! a read connection.
//!
//! Who may read: a room whose current `m.room.server_acl` denies the
//! origin refuses it everything (403, [`crate::core::server_acl`]). Past
//! that, a server with a user joined to the room now may read all of it;
//! any other server only events it may see under history visibility: the
//! state before the event is `world_readable`, or in that state a user of
//! the origin was joined; and the event that makes history
//! `world_readable` itself. Before a room's first history visibility
//! event the spec's default, `shared`, holds: a server with no member
//! gets a room's setup (its create event, say) only inside the `/state`
//! and `/event_auth` of events it may see. (The spec leaves servers'
//! visibility to the implementation; this is the part of it Hearth
//! models.) A read naming an event the origin may not see is 403; history
//! walks leave such events out, and are 403 when the origin may see none
//! of their starting events.
//!
//! The walks ([`walk_back`], [`walk_missing`]) are pure over a `fetch`
//! closure, so their order and bounds are unit-tested without a database.
//! PDUs are loaded by ID through `rooms::read` only, and served in the
//! federation form ([`federation_form`]).
//!
//! **Architecture Invariant:** nothing here writes, and nothing here
//! knows HTTP; every answer is bounded by a named limit.

use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};

use rusqlite::Connection;
use serde_json::Value;

use crate::core::event::referenced_ids;
use crate::core::{room_version, server_acl};
use crate::error::{Error, Result};
use crate::rooms::read::{current_readable_state_event, load_readable_pdu, state_before};
use crate::storage::events::{self, Dir, StoredEvent};
use crate::storage::{room_reads as store, rooms, state};

/// Most events one `/backfill` answers, whatever its `limit`.
pub const BACKFILL_LIMIT_MAX: usize = 100;
/// Most `v` events a `/backfill` may start from.
pub const BACKFILL_FROM_MAX: usize = 20;
/// Events `/get_missing_events` answers when the body names no `limit`.
pub const MISSING_LIMIT_DEFAULT: usize = 10;
/// Most events one `/get_missing_events` answers, whatever its `limit`.
pub const MISSING_LIMIT_MAX: usize = 100;
/// Most `latest_events` a `/get_missing_events` may name.
pub const MISSING_LATEST_MAX: usize = 20;
/// Most `earliest_events` a `/get_missing_events` may name (the asking
/// server's forward extremities: few).
pub const MISSING_EARLIEST_MAX: usize = 100;
/// Most events one walk looks at, those it leaves out included (unknown,
/// hidden, below `min_depth`), so a hidden stretch of history costs a
/// bounded amount of work.
pub const WALK_VISITS_MAX: usize = 1000;
/// Most users of the asking server whose membership at an event is
/// looked at; past them a server with no joined member now sees only
/// `world_readable` history (a bound on work, erring on the side of less).
const ORIGIN_MEMBERS_MAX: usize = 1000;

/// Keys of a PDU's `unsigned` that only this server's clients get
/// (`rooms::format` adds them to client events; none should be stored,
/// but a PDU is never served with them).
const LOCAL_UNSIGNED_KEYS: &[&str] = &[
    "age",
    "transaction_id",
    "membership",
    "prev_content",
    "prev_sender",
    "replaces_state",
    "redacted_because",
];

// ---------------------------------------------------------------- walks

/// An event as a walk sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Node<T> {
    /// The walk's order: `(depth, stream position)`, greater is newer.
    pub key: (i64, i64),
    pub prev_events: Vec<String>,
    /// What the answer holds for this event; `None` for an event walked
    /// through but left out (one the origin may not see).
    pub item: Option<T>,
}

/// `/backfill`'s walk: from `start` (included) back along `prev_events`,
/// newest first by `(depth, position)`, at most `limit` events in the
/// answer and `visits_max` looked at. Each event appears once; an event
/// `fetch` does not know (`None`: not stored, or of another room) is
/// neither answered nor walked past.
pub fn walk_back<T>(
    start: &[String],
    limit: usize,
    visits_max: usize,
    mut fetch: impl FnMut(&str) -> Result<Option<Node<T>>>,
) -> Result<Vec<T>> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut heap: BinaryHeap<((i64, i64), String)> = BinaryHeap::new();
    let mut pending: HashMap<String, Node<T>> = HashMap::new();
    let mut visits = 0;
    let mut frontier: Vec<String> = start.to_vec();
    let mut out = Vec::new();
    while out.len() < limit {
        for id in frontier.drain(..) {
            if visits >= visits_max || !seen.insert(id.clone()) {
                continue;
            }
            visits += 1;
            if let Some(node) = fetch(&id)? {
                heap.push((node.key, id.clone()));
                pending.insert(id, node);
            }
        }
        let Some((_, id)) = heap.pop() else { break };
        let Some(node) = pending.remove(&id) else { continue };
        frontier = node.prev_events;
        if let Some(item) = node.item {
            out.push(item);
        }
    }
    Ok(out)
}

/// `/get_missing_events`' walk: breadth-first along the `prev_events` of
/// `latest` (themselves not answered), never answering or walking past an
/// event of `earliest`, nor one below `min_depth`; at most `limit` events
/// answered and `visits_max` looked at. Answered oldest first (by
/// `(depth, position)`); the events kept are those nearest `latest`.
pub fn walk_missing<T>(
    earliest: &[String],
    latest: &[String],
    limit: usize,
    min_depth: i64,
    visits_max: usize,
    mut fetch: impl FnMut(&str) -> Result<Option<Node<T>>>,
) -> Result<Vec<T>> {
    let mut seen: HashSet<String> = earliest.iter().chain(latest).cloned().collect();
    let mut queue: VecDeque<String> = VecDeque::new();
    let mut visits = 0;
    let enqueue = |prev_events: Vec<String>, seen: &mut HashSet<String>, queue: &mut VecDeque<String>| {
        for prev in prev_events {
            if seen.insert(prev.clone()) {
                queue.push_back(prev);
            }
        }
    };
    for id in latest {
        if visits >= visits_max {
            break;
        }
        visits += 1;
        if let Some(node) = fetch(id)? {
            enqueue(node.prev_events, &mut seen, &mut queue);
        }
    }
    let mut found: Vec<((i64, i64), T)> = Vec::new();
    while found.len() < limit && visits < visits_max {
        let Some(id) = queue.pop_front() else { break };
        visits += 1;
        let Some(node) = fetch(&id)? else { continue };
        if node.key.0 < min_depth {
            continue;
        }
        enqueue(node.prev_events, &mut seen, &mut queue);
        if let Some(item) = node.item {
            found.push((node.key, item));
        }
    }
    found.sort_by_key(|(key, _)| *key);
    Ok(found.into_iter().map(|(_, item)| item).collect())
}

// ---------------------------------------------------------------- access

/// A PDU as other servers get it: the stored PDU without any `unsigned`
/// key meant for this server's clients (and without `unsigned` at all when
/// nothing is left in it). Rooms v1–v2 PDUs carry their `event_id`, later
/// ones do not: the stored form is already right.
pub fn federation_form(mut pdu: Value) -> Value {
    if let Some(obj) = pdu.as_object_mut() {
        if let Some(Value::Object(unsigned)) = obj.get_mut("unsigned") {
            for key in LOCAL_UNSIGNED_KEYS {
                unsigned.remove(*key);
            }
            if !unsigned.is_empty() {
                return pdu;
            }
        }
        obj.remove("unsigned");
    }
    pdu
}

/// An event found by ID: its PDU (through `rooms::read`) and, for an
/// event of the timeline, its stored row (room, position, state).
struct Found {
    pdu: Value,
    stored: Option<StoredEvent>,
}

impl Found {
    fn room_id(&self) -> Option<&str> {
        match &self.stored {
            Some(e) => Some(&e.room_id),
            None => self.pdu.get("room_id").and_then(Value::as_str),
        }
    }

    fn key(&self) -> (i64, i64) {
        match &self.stored {
            Some(e) => (e.depth, e.pos),
            None => (self.pdu.get("depth").and_then(Value::as_i64).unwrap_or(0), 0),
        }
    }
}

fn find(conn: &Connection, event_id: &str) -> Result<Option<Found>> {
    let Some(pdu) = load_readable_pdu(conn, event_id)? else { return Ok(None) };
    Ok(Some(Found { pdu, stored: events::get(conn, event_id)? }))
}

/// The `history_visibility` a visibility event sets.
fn history_visibility(pdu: &Value) -> Option<&str> {
    pdu.pointer("/content/history_visibility").and_then(Value::as_str)
}

fn unknown_event(event_id: &str) -> Error {
    Error::not_found(format!("Unknown event {event_id}"))
}

fn forbidden_event() -> Error {
    Error::forbidden("This server may not see that event")
}

/// What one origin may read in one room, with the answers for state
/// groups remembered (the events of a walk share them).
struct Access<'c> {
    conn: &'c Connection,
    room_id: &'c str,
    origin: &'c str,
    version: &'static room_version::RoomVersion,
    /// The origin has a user joined to the room now.
    in_room: bool,
    /// State group → whether the origin may see an event after it.
    groups: HashMap<i64, bool>,
    /// The origin's users with a membership of the room, once asked.
    origin_members: Option<Vec<String>>,
}

/// The room's current `m.room.server_acl` must allow `origin` (403
/// otherwise): for its reads, its joins and its PDUs alike.
pub fn check_acl(conn: &Connection, room_id: &str, origin: &str) -> Result<()> {
    if let Some(acl_id) = state::current_entry(conn, room_id, "m.room.server_acl", "")? {
        // An ACL that cannot be read (logged) denies: a bad row may shut
        // a server out, never let one in.
        let content = load_readable_pdu(conn, &acl_id)?.and_then(|p| p.get("content").cloned());
        if !content.is_some_and(|c| server_acl::allowed(&c, origin)) {
            return Err(Error::forbidden("Server access is denied by the room's server ACL"));
        }
    }
    Ok(())
}

impl<'c> Access<'c> {
    /// The room must exist (404) and its ACL allow the origin (403).
    fn open(conn: &'c Connection, room_id: &'c str, origin: &'c str) -> Result<Access<'c>> {
        let room = rooms::get(conn, room_id)?.ok_or_else(|| Error::not_found("Unknown room"))?;
        let version = room_version::get(&room.version)
            .ok_or_else(|| Error::internal(format!("room {room_id} has unknown version {}", room.version)))?;
        check_acl(conn, room_id, origin)?;
        let in_room = store::server_has_joined_member(conn, room_id, origin)?;
        Ok(Access { conn, room_id, origin, version, in_room, groups: HashMap::new(), origin_members: None })
    }

    /// The origin is in the room or the room is `world_readable` now: the
    /// room-wide reads that name no event.
    fn may_read_room(&self) -> Result<bool> {
        if self.in_room {
            return Ok(true);
        }
        let hv = current_readable_state_event(self.conn, self.room_id, "m.room.history_visibility", "")?;
        Ok(hv.as_ref().and_then(history_visibility) == Some("world_readable"))
    }

    /// An event of this room by ID (404 if unknown or of another room).
    fn event(&self, event_id: &str) -> Result<Found> {
        let found = find(self.conn, event_id)?.ok_or_else(|| unknown_event(event_id))?;
        if found.room_id() != Some(self.room_id) {
            return Err(unknown_event(event_id));
        }
        Ok(found)
    }

    /// May the origin see this event? An event with no stored state (not
    /// in the timeline) only if it is in the room.
    fn may_see(&mut self, found: &Found) -> Result<bool> {
        if self.in_room {
            return Ok(true);
        }
        let Some(e) = &found.stored else { return Ok(false) };
        let before = match self.groups.get(&e.state_before) {
            Some(v) => *v,
            None => {
                let v = self.group_visible(e.state_before)?;
                self.groups.insert(e.state_before, v);
                v
            }
        };
        if before {
            return Ok(true);
        }
        // As for users, the change that makes history world-readable is
        // visible itself (the state after it allows it).
        if e.kind != "m.room.history_visibility" || e.state_key.as_deref() != Some("") {
            return Ok(false);
        }
        let loaded;
        let pdu = match &found.pdu {
            Value::Null => {
                loaded = load_readable_pdu(self.conn, &e.event_id)?;
                loaded.as_ref()
            }
            pdu => Some(pdu),
        };
        Ok(pdu.and_then(history_visibility) == Some("world_readable"))
    }

    /// The state group is `world_readable`, or has a user of the origin
    /// joined (one of those with a membership of the room now: a member
    /// event, once in the state, stays there). An unreadable visibility
    /// counts as `joined`, an unreadable membership as none (as
    /// `rooms::visibility` counts them).
    fn group_visible(&mut self, group: i64) -> Result<bool> {
        if let Some(id) = state::group_entry(self.conn, group, "m.room.history_visibility", "")? {
            let pdu = load_readable_pdu(self.conn, &id)?;
            if pdu.as_ref().and_then(history_visibility) == Some("world_readable") {
                return Ok(true);
            }
        }
        if self.origin_members.is_none() {
            let members = store::server_members(self.conn, self.room_id, self.origin, ORIGIN_MEMBERS_MAX)?;
            self.origin_members = Some(members);
        }
        for user in self.origin_members.as_deref().unwrap_or_default() {
            let Some(id) = state::group_entry(self.conn, group, "m.room.member", user)? else { continue };
            let pdu = load_readable_pdu(self.conn, &id)?;
            if pdu.as_ref().and_then(|p| p.pointer("/content/membership")).and_then(Value::as_str)
                == Some("join")
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// An event of this room the origin may see (404, 403).
    fn visible_event(&mut self, event_id: &str) -> Result<Found> {
        let found = self.event(event_id)?;
        if !self.may_see(&found)? {
            return Err(forbidden_event());
        }
        Ok(found)
    }

    /// An event as a walk sees it: unknown or of another room is `None`;
    /// one the origin may not see is walked through but not answered.
    fn node(&mut self, event_id: &str) -> Result<Option<Node<Value>>> {
        let Some(found) = find(self.conn, event_id)? else { return Ok(None) };
        if found.room_id() != Some(self.room_id) {
            return Ok(None);
        }
        // A PDU whose references cannot be read is answered but ends the
        // walk there.
        let prev_events = referenced_ids(self.version, &found.pdu, "prev_events")
            .map(|v| v.into_iter().map(str::to_owned).collect())
            .unwrap_or_default();
        let visible = self.may_see(&found)?;
        Ok(Some(Node { key: found.key(), prev_events, item: visible.then(|| federation_form(found.pdu)) }))
    }

    /// An auth chain as served: from room v12 on, events no longer cite the
    /// create event (the room ID stands for it), so it is added, as every
    /// receiver needs it to check the chain — unless the chain is the
    /// create event's own (`of`). Kept in ID order.
    fn with_create(&self, mut chain: Vec<String>, of: Option<&str>) -> Result<Vec<String>> {
        if !self.version.room_id_from_create {
            return Ok(chain);
        }
        let Some(create) = state::current_entry(self.conn, self.room_id, "m.room.create", "")? else {
            return Ok(chain);
        };
        if of != Some(create.as_str()) {
            if let Err(at) = chain.binary_search(&create) {
                chain.insert(at, create);
            }
        }
        Ok(chain)
    }

    /// The PDUs of `event_ids` that can be loaded, in federation form.
    fn pdus(&self, event_ids: &[String]) -> Result<Vec<Value>> {
        let mut out = Vec::with_capacity(event_ids.len());
        for id in event_ids {
            if let Some(pdu) = load_readable_pdu(self.conn, id)? {
                out.push(federation_form(pdu));
            }
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------- reads

/// The room an event is in, found from the event alone (`/event` names
/// no room); 404 if the event is unknown.
fn room_of(conn: &Connection, event_id: &str) -> Result<String> {
    let found = find(conn, event_id)?.ok_or_else(|| unknown_event(event_id))?;
    found.room_id().map(str::to_owned).ok_or_else(|| unknown_event(event_id))
}

/// GET /event/{eventId}: the event's PDU, for an origin that may see it.
pub fn event(conn: &Connection, origin: &str, event_id: &str) -> Result<Value> {
    let room_id = room_of(conn, event_id)?;
    let mut access = Access::open(conn, &room_id, origin)?;
    Ok(federation_form(access.visible_event(event_id)?.pdu))
}

/// The state before an event and the auth chain of that state, as IDs in
/// ID order.
#[derive(Debug, Clone, PartialEq)]
pub struct StateIds {
    pub pdu_ids: Vec<String>,
    pub auth_chain_ids: Vec<String>,
}

/// The state before an event and its auth chain, as PDUs.
#[derive(Debug, Clone, PartialEq)]
pub struct StatePdus {
    pub pdus: Vec<Value>,
    pub auth_chain: Vec<Value>,
}

fn state_ids_of(access: &mut Access, event_id: &str) -> Result<StateIds> {
    let found = access.visible_event(event_id)?;
    let Some(stored) = &found.stored else {
        return Err(Error::not_found(format!("This server does not know the state at {event_id}")));
    };
    let mut pdu_ids: Vec<String> = state_before(access.conn, stored)?.into_values().collect();
    pdu_ids.sort();
    let auth_chain_ids = access.with_create(events::auth_chain_of_all(access.conn, &pdu_ids)?, None)?;
    Ok(StateIds { pdu_ids, auth_chain_ids })
}

/// GET /state_ids/{roomId}?event_id=: the state before the event (the
/// state the event was authorised against, as Synapse answers), and the
/// auth chain of that state.
pub fn state_ids(conn: &Connection, origin: &str, room_id: &str, event_id: &str) -> Result<StateIds> {
    let mut access = Access::open(conn, room_id, origin)?;
    state_ids_of(&mut access, event_id)
}

/// GET /state/{roomId}?event_id=: [`state_ids`] as PDUs.
pub fn state(conn: &Connection, origin: &str, room_id: &str, event_id: &str) -> Result<StatePdus> {
    let mut access = Access::open(conn, room_id, origin)?;
    let ids = state_ids_of(&mut access, event_id)?;
    Ok(StatePdus { pdus: access.pdus(&ids.pdu_ids)?, auth_chain: access.pdus(&ids.auth_chain_ids)? })
}

/// GET /event_auth/{roomId}/{eventId}: the event's auth chain (itself
/// excluded; with the create event from v12, see `with_create`), in ID
/// order.
pub fn event_auth(conn: &Connection, origin: &str, room_id: &str, event_id: &str) -> Result<Vec<Value>> {
    let mut access = Access::open(conn, room_id, origin)?;
    access.visible_event(event_id)?;
    let chain = access.with_create(events::auth_chain(conn, event_id)?, Some(event_id))?;
    access.pdus(&chain)
}

/// GET /backfill/{roomId}?v=&limit=: the `from` events and those before
/// them, newest first ([`walk_back`]), at most `limit` (capped at
/// [`BACKFILL_LIMIT_MAX`]). Every `from` event must be of the room (404)
/// and the origin must be able to see one of them (403); the events it may
/// not see are left out.
pub fn backfill(
    conn: &Connection,
    origin: &str,
    room_id: &str,
    from: &[String],
    limit: usize,
) -> Result<Vec<Value>> {
    let mut access = Access::open(conn, room_id, origin)?;
    let mut any_visible = false;
    for id in from {
        let found = access.event(id)?;
        any_visible |= access.may_see(&found)?;
    }
    if !any_visible {
        return Err(forbidden_event());
    }
    walk_back(from, limit.min(BACKFILL_LIMIT_MAX), WALK_VISITS_MAX, |id| access.node(id))
}

/// What `/get_missing_events` asks.
#[derive(Debug, Clone, PartialEq)]
pub struct Missing {
    pub earliest_events: Vec<String>,
    pub latest_events: Vec<String>,
    pub limit: usize,
    pub min_depth: i64,
}

/// POST /get_missing_events/{roomId}: [`walk_missing`], with `limit`
/// capped at [`MISSING_LIMIT_MAX`]. Latest events this server does not
/// have (or of another room) are passed over, as the asking server may
/// know more than this one; but the origin must be able to see one of
/// those it has (403 otherwise).
pub fn missing_events(conn: &Connection, origin: &str, room_id: &str, ask: &Missing) -> Result<Vec<Value>> {
    let mut access = Access::open(conn, room_id, origin)?;
    if !access.in_room {
        let mut any_visible = false;
        for id in &ask.latest_events {
            let Some(found) = find(conn, id)? else { continue };
            if found.room_id() == Some(room_id) {
                any_visible |= access.may_see(&found)?;
            }
        }
        if !any_visible {
            return Err(forbidden_event());
        }
    }
    walk_missing(
        &ask.earliest_events,
        &ask.latest_events,
        ask.limit.min(MISSING_LIMIT_MAX),
        ask.min_depth,
        WALK_VISITS_MAX,
        |id| access.node(id),
    )
}

/// GET /timestamp_to_event/{roomId}?ts=&dir=: the ID and timestamp of the
/// event nearest `ts` in `dir` (at or after going forward, at or before
/// going backward) that the origin may see; 404 if there is none. The
/// origin must be in the room or the room `world_readable` now (403).
pub fn timestamp_to_event(
    conn: &Connection,
    origin: &str,
    room_id: &str,
    ts: i64,
    dir: Dir,
) -> Result<(String, i64)> {
    let mut access = Access::open(conn, room_id, origin)?;
    if !access.may_read_room()? {
        return Err(Error::forbidden("This server is not in the room"));
    }
    let mut keep =
        |e: &events::StoredEvent| access.may_see(&Found { pdu: Value::Null, stored: Some(e.clone()) });
    if let Some(e) = crate::rooms::read::nearest_by_ts(conn, room_id, ts, dir, &mut keep)? {
        return Ok((e.event_id, e.origin_ts));
    }
    let way = if dir == Dir::Forward { "forward" } else { "backward" };
    Err(Error::not_found(format!("No event found from {ts} in the {way} direction")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A graph by ID: (depth, prev_events, shown).
    fn graph(nodes: &[(&str, i64, &[&str], bool)]) -> HashMap<String, (i64, Vec<String>, bool)> {
        nodes
            .iter()
            .map(|(id, d, prev, shown)| {
                (id.to_string(), (*d, prev.iter().map(|p| p.to_string()).collect(), *shown))
            })
            .collect()
    }

    fn fetcher<'g>(
        g: &'g HashMap<String, (i64, Vec<String>, bool)>,
        asked: &'g std::cell::RefCell<Vec<String>>,
    ) -> impl FnMut(&str) -> Result<Option<Node<String>>> + 'g {
        move |id| {
            asked.borrow_mut().push(id.to_owned());
            Ok(g.get(id).map(|(d, prev, shown)| Node {
                key: (*d, 0),
                prev_events: prev.clone(),
                item: shown.then(|| id.to_owned()),
            }))
        }
    }

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// A linear room `$1 ← $2 ← … ← $n` (depth = number).
    fn line(n: i64) -> HashMap<String, (i64, Vec<String>, bool)> {
        (1..=n)
            .map(|i| {
                let prev = if i == 1 { vec![] } else { vec![format!("${}", i - 1)] };
                (format!("${i}"), (i, prev, true))
            })
            .collect()
    }

    #[test]
    fn backfill_walks_newest_first_from_the_given_events() {
        let g = line(10);
        let asked = Default::default();
        let got = walk_back(&ids(&["$7"]), 3, 100, fetcher(&g, &asked)).unwrap();
        assert_eq!(got, ids(&["$7", "$6", "$5"]), "the given event included, then its past");
        let got = walk_back(&ids(&["$3"]), 10, 100, fetcher(&g, &asked)).unwrap();
        assert_eq!(got, ids(&["$3", "$2", "$1"]), "stops at the create event");
        assert!(walk_back(&ids(&["$3"]), 0, 100, fetcher(&g, &asked)).unwrap().is_empty());
    }

    #[test]
    fn backfill_merges_branches_by_depth_without_duplicates() {
        // $1 ← $2 ← {$3a, $3b}; $3a ← $4a ← $5; $3b ← $5 (a merge).
        let g = graph(&[
            ("$1", 1, &[], true),
            ("$2", 2, &["$1"], true),
            ("$3a", 3, &["$2"], true),
            ("$3b", 3, &["$2"], true),
            ("$4a", 4, &["$3a"], true),
            ("$5", 5, &["$4a", "$3b"], true),
        ]);
        let asked = Default::default();
        let got = walk_back(&ids(&["$5", "$4a"]), 100, 100, fetcher(&g, &asked)).unwrap();
        assert_eq!(got, ids(&["$5", "$4a", "$3b", "$3a", "$2", "$1"]));
        assert_eq!(asked.borrow().len(), 6, "each event fetched once");
    }

    #[test]
    fn backfill_walks_through_hidden_and_past_unknown() {
        let g = graph(&[
            ("$1", 1, &[], true),
            ("$2", 2, &["$1"], false),
            ("$3", 3, &["$2", "$gone"], true),
            ("$other", 3, &[], true),
        ]);
        let asked = Default::default();
        let got = walk_back(&ids(&["$3"]), 10, 100, fetcher(&g, &asked)).unwrap();
        assert_eq!(got, ids(&["$3", "$1"]), "hidden $2 left out, unknown $gone skipped");
        // The visit bound ends the walk.
        let g = line(50);
        let asked = Default::default();
        let got = walk_back(&ids(&["$50"]), 100, 5, fetcher(&g, &asked)).unwrap();
        assert_eq!(got.len(), 5);
        assert_eq!(asked.borrow().len(), 5);
    }

    #[test]
    fn missing_events_fill_the_gap_oldest_first() {
        let g = line(10);
        let asked = Default::default();
        // The asker has $3 and got $9: it misses $4..$8.
        let got = walk_missing(&ids(&["$3"]), &ids(&["$9"]), 10, 0, 100, fetcher(&g, &asked)).unwrap();
        assert_eq!(got, ids(&["$4", "$5", "$6", "$7", "$8"]));
        // A limit keeps those nearest the latest event, still oldest first.
        let got = walk_missing(&ids(&["$3"]), &ids(&["$9"]), 2, 0, 100, fetcher(&g, &asked)).unwrap();
        assert_eq!(got, ids(&["$7", "$8"]));
        // min_depth: nothing below it, and no walk past it.
        let got = walk_missing(&ids(&[]), &ids(&["$9"]), 10, 6, 100, fetcher(&g, &asked)).unwrap();
        assert_eq!(got, ids(&["$6", "$7", "$8"]));
        // Nothing missing between neighbours; an unknown latest event gives nothing.
        assert!(walk_missing(&ids(&["$8"]), &ids(&["$9"]), 10, 0, 100, fetcher(&g, &asked))
            .unwrap()
            .is_empty());
        assert!(walk_missing(&ids(&[]), &ids(&["$nope"]), 10, 0, 100, fetcher(&g, &asked))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn missing_events_walk_breadth_first_over_branches() {
        // $1 ← $2 ← {$3a ← $4a, $3b}; latest: $4a and $3b; earliest: $1.
        let g = graph(&[
            ("$1", 1, &[], true),
            ("$2", 2, &["$1"], true),
            ("$3a", 3, &["$2"], true),
            ("$3b", 3, &["$2"], true),
            ("$4a", 4, &["$3a"], true),
        ]);
        let asked = Default::default();
        let got =
            walk_missing(&ids(&["$1"]), &ids(&["$4a", "$3b"]), 10, 0, 100, fetcher(&g, &asked)).unwrap();
        assert_eq!(got, ids(&["$2", "$3a"]), "latest events are not answered; $2 once");
        assert!(!asked.borrow().contains(&"$1".to_string()), "an earliest event is never fetched");
        // Hidden events are walked through, not answered.
        let g = graph(&[("$1", 1, &[], true), ("$2", 2, &["$1"], false), ("$3", 3, &["$2"], true)]);
        let asked = Default::default();
        let got = walk_missing(&ids(&[]), &ids(&["$3"]), 10, 0, 100, fetcher(&g, &asked)).unwrap();
        assert_eq!(got, ids(&["$1"]));
    }

    #[test]
    fn federation_form_drops_local_unsigned_keys_only() {
        let pdu = json!({ "type": "m.room.message", "unsigned": { "transaction_id": "t", "age": 5 } });
        assert_eq!(federation_form(pdu), json!({ "type": "m.room.message" }));
        let pdu =
            json!({ "type": "m.room.member", "unsigned": { "invite_room_state": [], "membership": "join" } });
        assert_eq!(
            federation_form(pdu),
            json!({ "type": "m.room.member", "unsigned": { "invite_room_state": [] } })
        );
        let pdu = json!({ "type": "m.room.create", "event_id": "$a:x" });
        assert_eq!(federation_form(pdu.clone()), pdu, "v1–v2 keep their event_id");
    }
}
