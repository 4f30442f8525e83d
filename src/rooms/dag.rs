//! The room as a graph (issue 17): how an event from another server
//! enters a room, and the bookkeeping every event shares, local or not.
//!
//! An event keeps its own `prev_events`, `auth_events` and `depth`. The
//! state before it is the state after its parent (one parent) or the
//! resolution of its parents' states (`core::state_res`, fed from storage
//! by [`resolve_groups`]); the room's current state is the resolution of
//! its forward extremities' states, applied as a diff to `current_state`
//! and `memberships`. Events outside the timeline live in
//! `storage::graph`: outliers (known without their place), rejected
//! events (refused by the rules; never state, never shown, never cited)
//! and soft-failed events (allowed at their place, not against the
//! current state: not shown, not extremities, resolvable when cited).
//!
//! Checks here are the ones that need the room: the rules against the
//! event's own `auth_events`, against the state before it, and against
//! the current state (soft failure), in the spec's order. Signatures,
//! hashes and shape are the federation layer's, before it calls in.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;

use rusqlite::Connection;
use serde_json::Value;

use crate::app::App;
use crate::core::auth;
use crate::core::event;
use crate::core::room_version::RoomVersion;
use crate::core::state_res::{self, AuthChain, EventSource, MemoryEvents, ResolveError, ResolvedEventView};
use crate::crypto::canonical;
use crate::error::{Error, Result};
use crate::storage::events::{self, StoredEvent};
use crate::storage::graph::{self, Outlier, Status};
use crate::storage::rooms::{self, Room};
use crate::storage::state::{self, StateMap};
use crate::storage::{self as store, Tx};

/// Times a resolution is retried after loading an event it asked for.
const RESOLVE_RETRIES: usize = 8;

/// What became of an event from another server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// In the timeline at this stream position.
    Stored(i64),
    /// Already known here (in the timeline, rejected or soft-failed).
    Known,
    /// Allowed at its place in the graph, not against the current state.
    SoftFailed(String),
    /// Refused by the authorization rules, with the reason; stored as
    /// rejected.
    Rejected(String),
    /// Some of its auth events are not stored here: fetch them first.
    MissingAuth(Vec<String>),
    /// None of its prev events is stored here (and no state was given).
    MissingPrevs(Vec<String>),
}

/// An event from another server, as the room service takes it: its
/// room's version, its ID and its PDU (checked for shape, signatures and
/// hash already; the redacted copy if the hash did not match).
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    pub version: &'static RoomVersion,
    pub room_id: &'a str,
    pub event_id: &'a str,
    pub pdu: &'a Value,
}

/// Where an event from elsewhere came from: the live stream (it may be
/// new to local users and push) or backfill (history: sorts before what
/// is known, never new in a sync).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    Live,
    /// At this (negative) stream position, which the caller picked so a
    /// batch keeps its order (`graph::backfill_pos`).
    Backfill(i64),
}

/// The `event_id`s of `pdu[field]` in either reference format.
pub fn referenced(version: &RoomVersion, pdu: &Value, field: &'static str) -> Vec<String> {
    event::referenced_ids(version, pdu, field)
        .map(|ids| ids.into_iter().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Where a stored event is: in a timeline, or outside it as `Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Timeline,
    Outside(Status),
}

/// A stored event by ID in any table, and where it is.
pub fn load_any(conn: &Connection, event_id: &str) -> Result<Option<(StoredEvent, Place)>> {
    if let Some(e) = events::timeline_event(conn, event_id)? {
        return Ok(Some((e, Place::Timeline)));
    }
    Ok(graph::outlier(conn, event_id)?.map(|o| (o.event, Place::Outside(o.status))))
}

const REJECTED: Place = Place::Outside(Status::Rejected);

fn parse(e: &StoredEvent) -> Result<Value> {
    super::pdu_json(e)
}

/// The state group after a stored event: for a message the group before
/// it; for a state event the group that adds it (made and recorded when
/// an older row has none).
pub fn group_after(conn: &Connection, e: &StoredEvent) -> Result<i64> {
    let Some(key) = &e.state_key else { return Ok(e.state_before) };
    if let Some(g) = graph::state_after(conn, &e.event_id)? {
        return Ok(g);
    }
    let g = state::new_delta(conn, &e.room_id, e.state_before, &e.kind, key, &e.event_id)?;
    graph::put_state_after(conn, &e.event_id, g)?;
    Ok(g)
}

/// An [`EventSource`] filled from storage with what one resolution needs,
/// and the auth difference computed by an indexed walk.
struct Loaded {
    events: MemoryEvents,
    difference: AuthChain,
}

impl EventSource for Loaded {
    fn event(&self, id: &str) -> Option<&ResolvedEventView> {
        self.events.event(id)
    }
    fn pdu(&self, id: &str) -> Option<&Value> {
        self.events.pdu(id)
    }
    fn auth_chain(&self, id: &str) -> Option<std::sync::Arc<AuthChain>> {
        self.events.auth_chain(id)
    }
    fn auth_difference(&self, _state_sets: &[state_res::StateMap]) -> AuthChain {
        self.difference.clone()
    }
}

/// Loads `ids` and their auth chains into `into` (what is not stored is
/// left out; the resolution names it if it needs it).
fn load_with_chains(conn: &Connection, ids: &[&str], into: &mut MemoryEvents) -> Result<()> {
    for id in events::with_auth_chains(conn, ids)? {
        if into.event(&id).is_some() {
            continue;
        }
        if let Some((e, status)) = load_any(conn, &id)? {
            if let Ok(pdu) = parse(&e) {
                into.insert(&id, pdu, status == REJECTED);
            }
        }
    }
    Ok(())
}

/// The resolution of the states of `groups` under the room version's
/// algorithm. Loads only the conflicted events, the auth difference and
/// their auth chains.
pub fn resolve_groups(
    conn: &Connection,
    version: &RoomVersion,
    room_id: &str,
    groups: &[i64],
) -> Result<StateMap> {
    let mut unique: Vec<i64> = groups.to_vec();
    unique.sort_unstable();
    unique.dedup();
    match unique.as_slice() {
        [] => return Ok(StateMap::new()),
        [only] => return state::group_state(conn, *only),
        _ => {}
    }
    let sets: Vec<state_res::StateMap> = unique
        .iter()
        .map(|g| state::group_state(conn, *g).map(|s| s.into_iter().collect::<BTreeMap<_, _>>()))
        .collect::<Result<_>>()?;
    // The conflicted events: keys where the sets do not all agree.
    let mut keys: HashSet<&(String, String)> = HashSet::new();
    for set in &sets {
        keys.extend(set.keys());
    }
    let mut conflicted: HashSet<&str> = HashSet::new();
    for key in keys {
        let first = sets[0].get(key);
        if sets.iter().any(|s| s.get(key) != first) {
            conflicted.extend(sets.iter().filter_map(|s| s.get(key)).map(String::as_str));
        }
    }
    if conflicted.is_empty() {
        return Ok(sets[0].clone().into_iter().collect());
    }
    // The auth difference: ∪ Cᵢ − ∩ Cᵢ, Cᵢ a set's events and their chains.
    let mut full: Vec<HashSet<String>> = Vec::with_capacity(sets.len());
    for set in &sets {
        let ids: Vec<&str> = set.values().map(String::as_str).collect();
        full.push(events::with_auth_chains(conn, &ids)?);
    }
    let mut difference = AuthChain::new();
    for (i, c) in full.iter().enumerate() {
        for id in c {
            if full.iter().enumerate().any(|(j, other)| j != i && !other.contains(id)) {
                difference.insert(id.clone());
            }
        }
    }
    drop(full);
    let mut events = MemoryEvents::new();
    let mut seeds: Vec<&str> =
        conflicted.iter().copied().chain(difference.iter().map(String::as_str)).collect();
    // From v12 no event cites the create event, which every check needs.
    let create_id = format!("${}", room_id.strip_prefix('!').unwrap_or_default());
    if version.room_id_from_create {
        seeds.push(&create_id);
    }
    load_with_chains(conn, &seeds, &mut events)?;
    let mut source = Loaded { events, difference };
    for _ in 0..RESOLVE_RETRIES {
        match state_res::resolve(version, &sets, &source) {
            Ok(resolved) => return Ok(resolved.into_iter().collect()),
            Err(ResolveError::MissingEvent(id)) => {
                if load_any(conn, &id)?.is_none() {
                    return Err(Error::internal(format!("state resolution needs {id}, which is not stored")));
                }
                load_with_chains(conn, &[&id], &mut source.events)?;
            }
        }
    }
    Err(Error::internal("state resolution kept asking for more events"))
}

/// The PDUs of the state entries an event's rules look at.
fn auth_state_of(
    conn: &Connection,
    version: &RoomVersion,
    pdu: &Value,
    group: i64,
) -> Result<HashMap<(String, String), Value>> {
    let kind = pdu.get("type").and_then(Value::as_str).unwrap_or_default();
    let sender = pdu.get("sender").and_then(Value::as_str).unwrap_or_default();
    let state_key = pdu.get("state_key").and_then(Value::as_str);
    let content = pdu.get("content").cloned().unwrap_or(Value::Null);
    let mut selected = auth::auth_types_for_event(version, kind, state_key, sender, &content);
    selected.push(("m.room.create".to_owned(), String::new()));
    let mut out = HashMap::new();
    for (k, s) in selected {
        if out.contains_key(&(k.clone(), s.clone())) {
            continue;
        }
        if let Some(id) = state::group_entry(conn, group, &k, &s)? {
            if let Some((e, _)) = load_any(conn, &id)? {
                out.insert((k, s), parse(&e)?);
            }
        }
    }
    Ok(out)
}

/// Auth events read while checking a run of events, kept parsed: a
/// join's thousands of members cite the same few events (the create
/// event, the power levels, the join rules). Only what is stored is
/// remembered (stored events do not change status); at most
/// [`AUTH_CACHE_MAX`] of them, then it starts again.
#[derive(Default)]
pub struct AuthCache {
    known: HashMap<String, Option<Rc<Value>>>,
}

/// Auth events an [`AuthCache`] holds at most.
pub const AUTH_CACHE_MAX: usize = 4096;

impl AuthCache {
    /// `None` when the event is not stored; `Some(None)` when it was
    /// rejected; else the event.
    fn get(&mut self, conn: &Connection, id: &str) -> Result<Option<Option<Rc<Value>>>> {
        if let Some(known) = self.known.get(id) {
            return Ok(Some(known.clone()));
        }
        let found = match load_any(conn, id)? {
            None => return Ok(None),
            Some((_, REJECTED)) => None,
            Some((e, _)) => Some(Rc::new(parse(&e)?)),
        };
        if self.known.len() >= AUTH_CACHE_MAX {
            self.known.clear();
        }
        self.known.insert(id.to_owned(), found.clone());
        Ok(Some(found))
    }
}

/// Checks `pdu` against the events its `auth_events` name (the spec's
/// second check on receipt): all stored, none rejected, the right
/// selection, and the rules pass against them.
fn check_against_auth_events(
    conn: &Connection,
    version: &RoomVersion,
    pdu: &Value,
    cache: &mut AuthCache,
) -> Result<Verdict> {
    let ids = referenced(version, pdu, "auth_events");
    let mut missing = Vec::new();
    let mut auth_pdus = Vec::with_capacity(ids.len());
    for id in &ids {
        match cache.get(conn, id)? {
            None => missing.push(id.clone()),
            Some(None) => {
                return Ok(Verdict::Rejected(format!("it cites the rejected auth event {id}")));
            }
            Some(Some(p)) => auth_pdus.push(p),
        }
    }
    if !missing.is_empty() {
        return Ok(Verdict::MissingAuth(missing));
    }
    let refs: Vec<&Value> = auth_pdus.iter().map(|p| &**p).collect();
    if let Err(e) = auth::check_auth_events(version, pdu, &refs) {
        return Ok(Verdict::Rejected(e.reason));
    }
    // From v12 the create event is not cited: the room ID names it.
    let mut create = None;
    if version.room_id_from_create && pdu.get("type").and_then(Value::as_str) != Some("m.room.create") {
        let room_id = pdu.get("room_id").and_then(Value::as_str).unwrap_or_default();
        let create_id = format!("${}", room_id.strip_prefix('!').unwrap_or_default());
        match cache.get(conn, &create_id)? {
            Some(None) => return Ok(Verdict::Rejected("the room's create event was rejected".into())),
            Some(Some(p)) => create = Some(p),
            None => return Ok(Verdict::MissingAuth(vec![create_id])),
        }
    }
    let mut map: HashMap<(String, String), &Value> = HashMap::new();
    for p in create.iter().chain(&auth_pdus) {
        let k = p.get("type").and_then(Value::as_str).unwrap_or_default().to_owned();
        let s = p.get("state_key").and_then(Value::as_str).unwrap_or_default().to_owned();
        map.insert((k, s), &**p);
    }
    match auth::check(version, pdu, &map) {
        Ok(()) => Ok(Verdict::Stored(0)),
        Err(e) => Ok(Verdict::Rejected(e.reason)),
    }
}

/// The indexed columns of a PDU for its row.
pub(crate) fn row_of(
    room_id: &str,
    event_id: &str,
    pdu: &Value,
    pos: i64,
    state_before: i64,
) -> Result<StoredEvent> {
    row_with(room_id, event_id, pdu, None, pos, state_before)
}

/// [`row_of`] with the PDU's canonical JSON already made (`text`), when
/// the caller has it.
fn row_with(
    room_id: &str,
    event_id: &str,
    pdu: &Value,
    text: Option<String>,
    pos: i64,
    state_before: i64,
) -> Result<StoredEvent> {
    let text = match text {
        Some(text) => text,
        None => canonical::to_canonical(pdu).map_err(|e| Error::internal(format!("storing PDU: {e}")))?,
    };
    let s = |k: &str| pdu.get(k).and_then(Value::as_str).map(str::to_owned);
    Ok(StoredEvent {
        pos,
        event_id: event_id.to_owned(),
        room_id: room_id.to_owned(),
        kind: s("type").unwrap_or_default(),
        state_key: s("state_key"),
        sender: s("sender").unwrap_or_default(),
        origin_ts: pdu.get("origin_server_ts").and_then(Value::as_i64).unwrap_or(0),
        depth: pdu.get("depth").and_then(Value::as_i64).unwrap_or(0),
        state_before,
        pdu: text,
        redacted_by: None,
        txn_device: None,
        txn_id: None,
    })
}

/// Stores an event outside the timeline with its auth edges.
pub fn put_outlier(
    conn: &Connection,
    ev: &Incoming,
    status: Status,
    reason: Option<&str>,
    state_before: i64,
) -> Result<()> {
    put_outlier_text(conn, ev, status, reason, state_before, None)
}

/// [`put_outlier`] with the PDU's canonical JSON already made, if given.
fn put_outlier_text(
    conn: &Connection,
    ev: &Incoming,
    status: Status,
    reason: Option<&str>,
    state_before: i64,
    text: Option<String>,
) -> Result<()> {
    let Incoming { version, room_id, event_id, pdu } = *ev;
    let event = row_with(room_id, event_id, pdu, text, 0, state_before)?;
    events::put_auth_edges(conn, event_id, &referenced(version, pdu, "auth_events"))?;
    graph::put_outlier(conn, &Outlier { event, status, reason: reason.map(str::to_owned) }, store::now_ms())
}

/// Stores an outlier (an auth-chain or state event known without its
/// place in the graph) after the rules pass against its own auth events;
/// one that fails is stored as rejected. Returns the verdict (never
/// `Stored` with a position: `Stored(0)` means kept as an outlier).
pub fn ingest_outlier(conn: &Connection, ev: &Incoming) -> Result<Verdict> {
    ingest_outlier_with(conn, ev, &mut AuthCache::default(), None)
}

/// [`ingest_outlier`] for one of a run of events, with the run's auth
/// events remembered in `cache`; `text`, when given, is the PDU's
/// canonical JSON, stored as it is.
pub fn ingest_outlier_with(
    conn: &Connection,
    ev: &Incoming,
    cache: &mut AuthCache,
    text: Option<String>,
) -> Result<Verdict> {
    let Incoming { version, event_id, pdu, .. } = *ev;
    if load_any(conn, event_id)?.is_some() {
        return Ok(Verdict::Known);
    }
    let verdict = check_against_auth_events(conn, version, pdu, cache)?;
    match &verdict {
        Verdict::Stored(_) => put_outlier_text(conn, ev, Status::Outlier, None, 0, text)?,
        Verdict::Rejected(reason) => put_outlier_text(conn, ev, Status::Rejected, Some(reason), 0, text)?,
        _ => {}
    }
    Ok(verdict)
}

/// Adds an event from another server to a room's graph, inside the
/// caller's write: the rules against its auth events, the state before it
/// (`before`, when given, is that state as another server reported it),
/// the rules against that state, soft failure against the current state,
/// then storage and the current state's update. Nothing is stored for
/// `MissingAuth` and `MissingPrevs`.
pub fn ingest(
    app: &App,
    tx: &Tx,
    ev: &Incoming,
    before: Option<&StateMap>,
    arrival: Arrival,
) -> Result<Verdict> {
    let Incoming { version, room_id, event_id, pdu } = *ev;
    if let Some((_, Place::Timeline | Place::Outside(Status::Rejected | Status::SoftFailed))) =
        load_any(tx, event_id)?
    {
        return Ok(Verdict::Known);
    }
    let room = rooms::get(tx, room_id)?.ok_or_else(|| Error::not_found("Unknown room"))?;
    // 1. The rules against the event's own auth events.
    let verdict = check_against_auth_events(tx, version, pdu, &mut AuthCache::default())?;
    match verdict {
        Verdict::Stored(_) => {}
        Verdict::Rejected(reason) => {
            put_outlier(tx, ev, Status::Rejected, Some(&reason), 0)?;
            return Ok(Verdict::Rejected(reason));
        }
        other => return Ok(other),
    }
    // 2. The state before it.
    let prevs = referenced(version, pdu, "prev_events");
    let mut groups = Vec::new();
    let mut missing = Vec::new();
    for p in &prevs {
        match load_any(tx, p)? {
            Some((e, Place::Timeline | Place::Outside(Status::SoftFailed))) => {
                groups.push(group_after(tx, &e)?)
            }
            Some((_, REJECTED)) => {}
            _ => missing.push(p.clone()),
        }
    }
    let group = match before {
        Some(given) => state::group_for(tx, room_id, room.state_group, given)?,
        None if groups.is_empty() => return Ok(Verdict::MissingPrevs(missing)),
        None => {
            groups.sort_unstable();
            groups.dedup();
            match groups.as_slice() {
                // One parent state (the common case): it is the state
                // before, with nothing read.
                [only] => *only,
                _ => {
                    let resolved = resolve_groups(tx, version, room_id, &groups)?;
                    state::group_for(tx, room_id, groups[0], &resolved)?
                }
            }
        }
    };
    // 3. The rules against the state before it.
    let at_place = auth_state_of(tx, version, pdu, group)?;
    if let Err(e) = auth::check(version, pdu, &at_place) {
        put_outlier(tx, ev, Status::Rejected, Some(&e.reason), 0)?;
        return Ok(Verdict::Rejected(e.reason));
    }
    // 4. Soft failure: the rules against the current state (live only).
    if arrival == Arrival::Live && group != room.state_group {
        let now = auth_state_of(tx, version, pdu, room.state_group)?;
        if let Err(e) = auth::check(version, pdu, &now) {
            put_outlier(tx, ev, Status::SoftFailed, Some(&e.reason), group)?;
            return Ok(Verdict::SoftFailed(e.reason));
        }
    }
    let pos = match arrival {
        Arrival::Live => events::next_pos(tx)?,
        Arrival::Backfill(pos) => pos,
    };
    let row = row_of(room_id, event_id, pdu, pos, group)?;
    let after = store_timeline_event(tx, version, &room, &row, pdu, &missing)?;
    if arrival == Arrival::Live {
        update_current(tx, version, &room, &row, after)?;
        crate::push::on_event(&app.config.server_name, tx, room_id, version, pos, event_id, pdu)?;
        let target = (row.kind == "m.room.member").then_some(row.state_key.as_deref()).flatten();
        tx.changed(pos, &[room_id], &target.into_iter().collect::<Vec<_>>());
    }
    if row.kind == "m.room.redaction" {
        let target = pdu
            .get("redacts")
            .or_else(|| pdu.pointer("/content/redacts"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        if let Some(target) = target {
            super::apply_remote_redaction(tx, version, room_id, &row.sender, &target, event_id)?;
        }
    }
    Ok(Verdict::Stored(pos))
}

/// Writes a timeline event: its row, its auth and prev edges, the state
/// after it (returned), the forward and backward extremities. An outlier
/// it was is no longer one. The room's head is [`update_current`]'s.
pub(crate) fn store_timeline_event(
    conn: &Connection,
    version: &RoomVersion,
    room: &Room,
    row: &StoredEvent,
    pdu: &Value,
    missing_prevs: &[String],
) -> Result<i64> {
    let prevs = referenced(version, pdu, "prev_events");
    events::put_auth_edges(conn, &row.event_id, &referenced(version, pdu, "auth_events"))?;
    graph::put_prev_edges(conn, &row.event_id, &prevs)?;
    graph::remove_outlier(conn, &row.event_id)?;
    events::insert(conn, row)?;
    crate::storage::relations::index(conn, row, pdu)?;
    crate::storage::search::index(conn, row, pdu)?;
    let after = match &row.state_key {
        Some(key) => {
            let g = state::new_delta(conn, &room.room_id, row.state_before, &row.kind, key, &row.event_id)?;
            graph::put_state_after(conn, &row.event_id, g)?;
            g
        }
        None => row.state_before,
    };
    graph::advance_extremities(conn, &room.room_id, &row.event_id, &prevs)?;
    graph::update_backward_extremities(conn, &room.room_id, &row.event_id, missing_prevs)?;
    Ok(after)
}

/// The room's current state after `row` joined the graph: the state after
/// it when it extends the current state and is the only extremity, else
/// the resolution of all the forward extremities' states; applied as a
/// diff to `current_state` and `memberships`; the room's head (state
/// group and depth) moves with it. `after`: the state group after `row`,
/// as [`store_timeline_event`] returned it.
pub(crate) fn update_current(
    conn: &Connection,
    version: &RoomVersion,
    room: &Room,
    row: &StoredEvent,
    after: i64,
) -> Result<()> {
    let extremities = events::extremities(conn, &room.room_id)?;
    if extremities.len() == 1 && extremities[0] == row.event_id && row.state_before == room.state_group {
        // The common case: one step on from the current state.
        if let Some(key) = &row.state_key {
            apply_entry(conn, &room.room_id, &row.kind, key, Some(&row.event_id), row.pos)?;
        }
        rooms::set_head(conn, &room.room_id, after, row.depth)?;
        return Ok(());
    }
    let mut groups = Vec::with_capacity(extremities.len());
    for id in &extremities {
        if let Some(e) = events::timeline_event(conn, id)? {
            groups.push(group_after(conn, &e)?);
        }
    }
    if groups.is_empty() {
        return rooms::set_head(conn, &room.room_id, room.state_group, row.depth);
    }
    let resolved = resolve_groups(conn, version, &room.room_id, &groups)?;
    let group = state::group_for(conn, &room.room_id, groups[0], &resolved)?;
    if group == room.state_group {
        return rooms::set_head(conn, &room.room_id, room.state_group, row.depth);
    }
    let old = state::group_state(conn, room.state_group)?;
    for (key, id) in &resolved {
        if old.get(key) != Some(id) {
            apply_entry(conn, &room.room_id, &key.0, &key.1, Some(id), row.pos)?;
        }
    }
    for key in old.keys().filter(|k| !resolved.contains_key(*k)) {
        apply_entry(conn, &room.room_id, &key.0, &key.1, None, row.pos)?;
    }
    rooms::set_head(conn, &room.room_id, group, row.depth)?;
    Ok(())
}

/// Sets (or removes) one entry of the current state, and the membership
/// it carries.
fn apply_entry(
    conn: &Connection,
    room_id: &str,
    kind: &str,
    key: &str,
    event_id: Option<&str>,
    pos: i64,
) -> Result<()> {
    let Some(event_id) = event_id else {
        state::remove_current(conn, room_id, kind, key)?;
        if kind == "m.room.member" {
            state::set_membership(conn, key, room_id, "leave", "", pos)?;
        }
        return Ok(());
    };
    state::set_current(conn, room_id, kind, key, event_id)?;
    if kind == "m.room.member" {
        // Only the two fields are read (a join applies thousands).
        let member = events::get(conn, event_id)?
            .and_then(|e| serde_json::from_str::<MemberPdu>(&e.pdu).ok())
            .map(|p| p.content)
            .unwrap_or_default();
        let membership = member.membership.as_deref().unwrap_or("leave");
        state::set_membership(conn, key, room_id, membership, event_id, pos)?;
        state::set_member_name(conn, key, room_id, member.displayname.as_deref())?;
    }
    Ok(())
}

/// What [`apply_entry`] reads of a member event; any other field is
/// skipped, and a field of another type reads as absent.
#[derive(serde::Deserialize)]
struct MemberPdu {
    #[serde(default)]
    content: MemberContent,
}

#[derive(serde::Deserialize, Default)]
struct MemberContent {
    #[serde(default, deserialize_with = "string_or_none")]
    membership: Option<String>,
    #[serde(default, deserialize_with = "string_or_none")]
    displayname: Option<String>,
}

fn string_or_none<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<String>, D::Error> {
    use serde::Deserialize;
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        _ => None,
    })
}

/// A local user's join of a room through another server (`send_join`'s
/// answer, its events already checked and kept as outliers): the room
/// known here from `state` (the state before the join, of events stored
/// here and not rejected), the join checked against its auth events and
/// that state, then in the timeline with the room's current state made
/// that state plus the join. Returns the join's stream position.
pub fn persist_remote_join(tx: &Tx, ev: &Incoming, state: &StateMap, creator: &str) -> Result<i64> {
    let Incoming { version, room_id, event_id, pdu } = *ev;
    match check_against_auth_events(tx, version, pdu, &mut AuthCache::default())? {
        Verdict::Stored(_) => {}
        Verdict::Rejected(reason) => {
            return Err(Error::forbidden(format!("The join is not allowed: {reason}")))
        }
        _ => return Err(Error::bad_gateway("The join cites auth events the resident server did not send")),
    }
    let now = store::now_ms();
    let room = match rooms::get(tx, room_id)? {
        Some(room) => room,
        None => {
            let empty = state::new_snapshot(tx, room_id, &StateMap::new())?;
            let room = Room {
                room_id: room_id.to_owned(),
                version: version.id.to_owned(),
                creator: creator.to_owned(),
                created_ts: now,
                state_group: empty,
                depth: 0,
                published: false,
            };
            rooms::create(tx, &room)?;
            room
        }
    };
    let group = state::new_snapshot(tx, room_id, state)?;
    let at_place = auth_state_of(tx, version, pdu, group)?;
    auth::check(version, pdu, &at_place)
        .map_err(|e| Error::forbidden(format!("The join is not allowed: {}", e.reason)))?;
    let pos = events::next_pos(tx)?;
    // The current state becomes the state the resident server sent.
    let old = state::current_state(tx, room_id)?;
    for key in old.keys().filter(|k| !state.contains_key(*k)) {
        apply_entry(tx, room_id, &key.0, &key.1, None, pos)?;
    }
    for (key, id) in state {
        if old.get(key) != Some(id) {
            apply_entry(tx, room_id, &key.0, &key.1, Some(id), pos)?;
        }
    }
    rooms::set_head(tx, room_id, group, 0)?;
    graph::clear_extremities(tx, room_id)?;
    let room = Room { state_group: group, ..room };
    let row = row_of(room_id, event_id, pdu, pos, group)?;
    let mut missing = Vec::new();
    for p in referenced(version, pdu, "prev_events") {
        if events::timeline_event(tx, &p)?.is_none() {
            missing.push(p);
        }
    }
    let after = store_timeline_event(tx, version, &room, &row, pdu, &missing)?;
    update_current(tx, version, &room, &row, after)?;
    tx.changed(pos, &[room_id], &[row.sender.as_str()]);
    Ok(pos)
}
