//! Computing a `/sync` answer from storage: everything a user may see that
//! changed between the `since` token and now, within one read snapshot.
//!
//! Everything persistent is ordered by the global stream position, so an
//! incremental sync is "rows with `since < pos <= now`" for the user's rooms
//! and data, and `next_batch` names `now`. Because the whole computation
//! reads one snapshot and every bound uses the same `now`, an event that
//! commits meanwhile falls into the next sync, never between two.
//!
//! Ephemeral data that lives in memory (typing) has its own serial, the
//! second part of the token.

pub mod conns;
pub mod e2ee;
pub mod filter;
pub mod lazy;
pub mod sliding;

use std::collections::{BTreeSet, HashSet};

use rusqlite::Connection;
use serde_json::{json, Map, Value};

use crate::app::App;
use crate::error::Result;
use crate::rooms::format::{client_event, Viewer};
use crate::rooms::visibility::Visibility;
use crate::rooms::{readable_pdu, token};
use crate::storage::events::{self, Dir, StoredEvent};
use crate::storage::{self, account_data, state};
use crate::sync::filter::RoomEventFilter;

/// Timeline events per room when the filter does not say.
pub const TIMELINE_LIMIT_DEFAULT: usize = 10;
/// Most timeline events per room a filter may ask for.
pub const TIMELINE_LIMIT_MAX: usize = 100;
/// Events examined per room to fill a filtered timeline.
const TIMELINE_SCAN_MAX: usize = 1000;
/// Members named in a room summary's `m.heroes`.
pub(crate) const HEROES_MAX: usize = 5;
/// A sync token: the stream position and the ephemeral serial it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Since {
    pub pos: i64,
    pub ephemeral: u64,
}

impl Since {
    pub fn format(&self) -> String {
        format!("{}_{}", token::at(self.pos), self.ephemeral)
    }

    /// Parses `s{pos}_{ephemeral}` (a plain `s{pos}` token from `/messages`
    /// counts as ephemeral 0, and as the point before its position, as /messages reads it).
    pub fn parse(s: &str) -> Option<Since> {
        let pos = token::point(s)?;
        let ephemeral = match s.split('_').nth(1) {
            None => 0,
            Some(e) => e.parse().ok()?,
        };
        Some(Since { pos, ephemeral })
    }
}

/// The parts of a sync filter that are honoured.
#[derive(Debug, Clone, Default)]
pub struct SyncFilter {
    pub rooms: Option<Vec<String>>,
    pub not_rooms: Vec<String>,
    pub timeline: RoomEventFilter,
    pub state: RoomEventFilter,
    pub ephemeral: RoomEventFilter,
    pub room_account_data: RoomEventFilter,
    pub account_data: RoomEventFilter,
    pub presence: RoomEventFilter,
    pub include_leave: bool,
    /// `event_fields`: dotted paths of the fields to keep in each event.
    pub event_fields: Option<Vec<String>>,
    /// `event_format: federation` asks for the PDUs as stored.
    pub federation_format: bool,
}

impl SyncFilter {
    fn allows_room(&self, room_id: &str) -> bool {
        !self.not_rooms.iter().any(|r| r == room_id)
            && self.rooms.as_ref().is_none_or(|list| list.iter().any(|r| r == room_id))
    }
}

pub struct Request<'a> {
    pub user_id: &'a str,
    pub device_id: &'a str,
    pub since: Option<Since>,
    pub full_state: bool,
    pub filter: &'a SyncFilter,
}

/// A computed sync answer.
pub struct Answer {
    pub body: Value,
    /// True if there is nothing new (an incremental sync may wait).
    pub empty: bool,
    pub next: Since,
    /// The rooms the user is joined to: their events wake a waiting sync.
    pub joined: HashSet<String>,
}

/// Computes the sync answer inside one read transaction.
pub fn compute(app: &App, conn: &Connection, req: &Request) -> Result<Answer> {
    // Expired typing and decayed presence take a serial before it is read.
    crate::ephemeral::refresh(app, conn)?;
    let now_pos = events::current_pos(conn)?;
    let now_eph = app.hub.current_ephemeral();
    let next = Since { pos: now_pos, ephemeral: now_eph };
    let from = req.since.map_or(0, |s| s.pos);
    let now = storage::now_ms();
    let viewer = Viewer { user_id: req.user_id, device_id: req.device_id };

    let joined: HashSet<String> = state::rooms_of_user(conn, req.user_id, "join")?.into_iter().collect();
    let full = req.since.is_none() || req.full_state;
    if !full && req.since == Some(next) {
        // Nothing at all happened since the token: the common case of a
        // client polling an idle server costs two index lookups.
        let mut body = empty_body(&next);
        let (counts, fallback) = e2ee::counts(conn, req.user_id, req.device_id)?;
        body["device_one_time_keys_count"] = counts;
        body["device_unused_fallback_key_types"] = json!(fallback);
        return Ok(Answer { body, empty: true, next, joined });
    }
    if req.since.is_none() {
        // A new sync sequence: the client has no members yet.
        app.sent_members.reset(req.user_id, req.device_id);
    }
    let ignored = storage::ignored::ignored_users(conn, req.user_id)?;
    let ctx = Ctx { app, conn, req, viewer, now, from, upto: now_pos, ignored };
    // Only rooms where something happened need looking at.
    let mut active: HashSet<String> =
        if full { joined.clone() } else { state::changed_rooms(conn, from, now_pos)? };
    let eph_since = req.since.map(|s| s.ephemeral);
    for room_id in &joined {
        if !active.contains(room_id) && app.ephemeral.typing_event(room_id, eph_since, now).is_some() {
            active.insert(room_id.clone());
        }
    }
    // Users whose presence the answer must carry because the syncing user
    // newly shares a room with them (either of them joined).
    let mut new_company: BTreeSet<String> = BTreeSet::new();
    let mut joined_out = Map::new();
    let mut rooms: Vec<&String> = joined.iter().filter(|r| active.contains(*r)).collect();
    rooms.sort();
    for room_id in rooms {
        if !req.filter.allows_room(room_id) {
            continue;
        }
        // A room is new to the client only if the user's membership moved
        // to `join` in the window (a profile change is a member event too).
        let fresh = match req.since {
            None => true,
            Some(_) => {
                let changes = state::member_changes(conn, room_id, None, from, now_pos)?;
                let fresh = ctx.newly_joined(&changes)?;
                if fresh {
                    new_company.extend(state::members(conn, room_id, "join")?);
                } else {
                    for c in changes.iter().filter(|c| c.membership == "join" && c.user_id != req.user_id) {
                        if state::membership_in_group(conn, c.state_before, &c.user_id)?.as_deref()
                            != Some("join")
                        {
                            new_company.insert(c.user_id.clone());
                        }
                    }
                }
                fresh
            }
        };
        if let Some(room) = ctx.joined_room(room_id, fresh)? {
            joined_out.insert(room_id.clone(), room);
        }
    }
    let mut invite_out = Map::new();
    let mut leave_out = Map::new();
    let mut knock_out = Map::new();
    for (room_id, membership, event_id, pos) in state::memberships_changed(conn, req.user_id, from, now_pos)?
    {
        if !req.filter.allows_room(&room_id) {
            continue;
        }
        match membership.as_str() {
            "invite" => {
                // Invites from ignored users are not delivered.
                let inviter = events::get(conn, &event_id)?.map(|e| e.sender);
                if inviter.is_some_and(|s| ctx.ignored.contains(&s)) {
                    continue;
                }
                let events = ctx.stripped_state(&room_id, &event_id)?;
                invite_out.insert(room_id, json!({ "invite_state": { "events": events } }));
            }
            "knock" => {
                let events = ctx.stripped_state(&room_id, &event_id)?;
                knock_out.insert(room_id, json!({ "knock_state": { "events": events } }));
            }
            "leave" | "ban" if req.since.is_some() || req.filter.include_leave => {
                leave_out.insert(room_id.clone(), ctx.left_room(&room_id, pos)?);
            }
            _ => {}
        }
    }
    let mut global_data = Vec::new();
    for (room_id, kind, content) in account_data::changed(conn, req.user_id, from, now_pos)? {
        if room_id.is_empty() && req.filter.account_data.allows_event(&kind, req.user_id, None) {
            global_data.push(json!({ "type": kind, "content": content }));
        }
    }
    // An initial sync always carries the push rules (the defaults until the
    // user first changes one), as clients expect them there.
    if req.since.is_none() && !global_data.iter().any(|e| e["type"] == "m.push_rules") {
        let rules = crate::push::rules::ruleset_json(&crate::push::ruleset_of(conn, req.user_id)?);
        if req.filter.account_data.allows_event("m.push_rules", req.user_id, None) {
            global_data.push(json!({ "type": "m.push_rules", "content": { "global": rules } }));
        }
    }
    let mut presence = crate::ephemeral::presence_events_for(app, conn, req.user_id, eph_since)?;
    if app.ephemeral.presence_enabled() {
        for user_id in new_company {
            if user_id != req.user_id && !presence.iter().any(|e| e["sender"] == user_id.as_str()) {
                let view = app.ephemeral.presence_of(&user_id, now);
                presence.push(crate::ephemeral::presence_event(&user_id, &view));
            }
        }
    }
    let presence: Vec<Value> = presence
        .into_iter()
        .filter(|e| {
            let sender = e.get("sender").and_then(Value::as_str).unwrap_or("");
            req.filter.presence.allows_event("m.presence", sender, None)
        })
        .collect();
    let e2ee_parts = e2ee::compute(conn, req.user_id, req.device_id, req.since.map(|s| s.pos), now_pos)?;
    let empty = presence.is_empty()
        && e2ee_parts.is_empty()
        && joined_out.is_empty()
        && invite_out.is_empty()
        && leave_out.is_empty()
        && knock_out.is_empty()
        && global_data.is_empty();
    let mut body = empty_body(&next);
    body["rooms"] =
        json!({ "join": joined_out, "invite": invite_out, "leave": leave_out, "knock": knock_out });
    body["account_data"] = json!({ "events": global_data });
    body["presence"] = json!({ "events": presence });
    e2ee_parts.fill(&mut body);
    Ok(Answer { body, empty, next, joined })
}

/// The body of an answer with nothing in it.
fn empty_body(next: &Since) -> Value {
    json!({
        "next_batch": next.format(),
        "rooms": { "join": {}, "invite": {}, "leave": {}, "knock": {} },
        "account_data": { "events": [] },
        "presence": { "events": [] },
        "to_device": { "events": [] },
        "device_lists": { "changed": [], "left": [] },
        "device_one_time_keys_count": {},
        "device_unused_fallback_key_types": [],
    })
}

struct Ctx<'a> {
    app: &'a App,
    conn: &'a Connection,
    req: &'a Request<'a>,
    viewer: Viewer<'a>,
    now: i64,
    from: i64,
    upto: i64,
    /// Users the syncing user ignores: their non-state events are left out.
    ignored: HashSet<String>,
}

/// How much of a room an answer carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Span {
    /// The room is new to the client: its latest events (as far as history
    /// visibility lets the user see) and the full state before them.
    Fresh,
    /// What happened in the window, like any incremental sync.
    Window,
    /// The window's events, and the whole state (`full_state=true`).
    WindowFullState,
}

impl Ctx<'_> {
    /// True if the user's membership moved to `join` in the window: a
    /// non-join of theirs in it (they left and joined again), or a join
    /// while their membership at `since` was not one. `changes` are the
    /// room's member events in the window. Display name and avatar changes
    /// are member events too, but not joins.
    fn newly_joined(&self, changes: &[state::MemberChange]) -> Result<bool> {
        let mut mine = changes.iter().filter(|c| c.user_id == self.req.user_id).peekable();
        let Some(first) = mine.peek() else { return Ok(false) };
        let before = state::membership_in_group(self.conn, first.state_before, self.req.user_id)?;
        if before.as_deref() != Some("join") {
            return Ok(true);
        }
        Ok(mine.any(|c| c.membership != "join"))
    }

    /// The newest events of a room before `before` (and after `after`, if
    /// given), filtered, oldest first, and whether more were left out.
    /// Non-state events of ignored users are left out.
    fn timeline(&self, room_id: &str, before: i64, after: Option<i64>) -> Result<(Vec<StoredEvent>, bool)> {
        let filter = &self.req.filter.timeline;
        let limit = filter.limit.unwrap_or(TIMELINE_LIMIT_DEFAULT).clamp(1, TIMELINE_LIMIT_MAX);
        let mut visibility = Visibility::new(self.conn, self.req.user_id, room_id);
        scan_timeline(self.conn, room_id, before, after, limit, |e| {
            if e.state_key.is_none() && self.ignored.contains(&e.sender) {
                return Ok(false);
            }
            // An event that cannot be read (logged) is left out.
            let pdu = match filter.needs_content() {
                true => match readable_pdu(e) {
                    Some(pdu) => Some(pdu),
                    None => return Ok(false),
                },
                false => None,
            };
            let content = pdu.as_ref().and_then(|p| p.get("content"));
            Ok(filter.allows_event(&e.kind, &e.sender, content) && visibility.may_see(e)?)
        })
    }

    /// The event as the filter asks for it; `None` if its stored PDU
    /// cannot be read (logged), and the answer leaves it out.
    fn format(&self, e: &StoredEvent) -> Result<Option<Value>> {
        let v = if self.req.filter.federation_format {
            readable_pdu(e)
        } else {
            client_event(self.conn, e, Some(self.viewer), self.now)?.map(|mut v| {
                if let Some(obj) = v.as_object_mut() {
                    obj.remove("room_id");
                }
                v
            })
        };
        Ok(match (v, &self.req.filter.event_fields) {
            (Some(v), Some(fields)) => Some(keep_fields(&v, fields)),
            (v, _) => v,
        })
    }

    /// The state map at `pos` in a room: after its newest event at or before it.
    fn state_at(&self, room_id: &str, pos: i64) -> Result<state::StateMap> {
        let last = events::room_events(self.conn, room_id, pos + 1, None, Dir::Backward, 1)?;
        match last.first() {
            Some(e) => crate::rooms::state_after(self.conn, e),
            None => Ok(state::StateMap::new()),
        }
    }

    /// True if lazy loading leaves out members this device already has.
    fn skips_redundant(&self, span: Span) -> bool {
        let f = &self.req.filter.state;
        f.lazy_load_members
            && !f.include_redundant_members
            && span == Span::Window
            && self.req.since.is_some()
    }

    /// State events from a map, filtered by the state filter (and lazy
    /// loading: members only for `senders`, and with `dedupe` not those
    /// the device was sent already), skipping `skip`.
    fn state_events(
        &self,
        room_id: &str,
        map: &state::StateMap,
        senders: &HashSet<String>,
        skip: &HashSet<String>,
        dedupe: bool,
    ) -> Result<Vec<Value>> {
        let filter = &self.req.filter.state;
        let since = self.from;
        let mut ids: Vec<&String> = map
            .iter()
            .filter(|((kind, key), id)| {
                !skip.contains(*id)
                    && filter.allows_event(kind, "", None)
                    && (kind != "m.room.member"
                        || !filter.lazy_load_members
                        || (senders.contains(key)
                            && !(dedupe
                                && self.app.sent_members.delivered(
                                    self.req.user_id,
                                    self.req.device_id,
                                    room_id,
                                    key,
                                    id,
                                    since,
                                ))))
            })
            .map(|(_, id)| id)
            .collect();
        ids.sort();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(e) = events::get(self.conn, id)? {
                let by_sender = filter.senders.is_some() || !filter.not_senders.is_empty();
                if by_sender && !filter.allows_event(&e.kind, &e.sender, None) {
                    continue;
                }
                out.extend(self.format(&e)?);
            }
        }
        Ok(out)
    }

    /// Remembers the member events an answer carries (state and timeline),
    /// when lazy loading needs to know.
    fn record_members(&self, room_id: &str, state: &[Value], timeline: &[StoredEvent]) {
        if !self.req.filter.state.lazy_load_members {
            return;
        }
        let mut sent: Vec<(String, String)> = state
            .iter()
            .filter(|e| e["type"] == "m.room.member")
            .filter_map(|e| Some((e["state_key"].as_str()?.to_owned(), e["event_id"].as_str()?.to_owned())))
            .collect();
        for e in timeline.iter().filter(|e| e.kind == "m.room.member") {
            if let Some(key) = &e.state_key {
                sent.push((key.clone(), e.event_id.clone()));
            }
        }
        self.app.sent_members.record(self.req.user_id, self.req.device_id, room_id, &sent, self.upto);
    }

    /// The `state` section of a room: the state before the timeline (all
    /// of it, or lazy-loaded members), or what changed in the gap. `upto`:
    /// the last position the room's part of the answer covers.
    fn room_state(
        &self,
        room_id: &str,
        span: Span,
        timeline: &[StoredEvent],
        limited: bool,
        upto: i64,
    ) -> Result<Vec<Value>> {
        let timeline_ids: HashSet<String> = timeline.iter().map(|e| e.event_id.clone()).collect();
        let mut senders: HashSet<String> = timeline.iter().map(|e| e.sender.clone()).collect();
        senders.insert(self.req.user_id.to_owned());
        let full = span != Span::Window;
        let lazy = self.req.filter.state.lazy_load_members;
        let dedupe = self.skips_redundant(span);
        let start_state = match timeline.first() {
            Some(first) => crate::rooms::state_before(self.conn, first)?,
            None if full => self.state_at(room_id, upto)?,
            // Nothing new in the timeline: no state can have changed either.
            None => return Ok(Vec::new()),
        };
        if full {
            return self.state_events(room_id, &start_state, &senders, &timeline_ids, false);
        }
        let mut map: state::StateMap = if limited {
            // The state that changed in the gap between `since` and the timeline.
            let before = self.state_at(room_id, self.from)?;
            start_state
                .iter()
                .filter(|(k, id)| before.get(*k) != Some(*id))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        } else {
            state::StateMap::new()
        };
        let mut wanted = senders.clone();
        wanted.extend(map.keys().filter(|(k, _)| k == "m.room.member").map(|(_, s)| s.clone()));
        if lazy {
            // Members of the timeline's senders whose events are not in it
            // (and, without `include_redundant_members`, the device lacks).
            for s in &senders {
                let key = ("m.room.member".to_owned(), s.clone());
                if let Some(id) = start_state.get(&key) {
                    map.entry(key).or_insert_with(|| id.clone());
                }
            }
        }
        self.state_events(room_id, &map, &wanted, &timeline_ids, dedupe)
    }

    /// A joined room's part of the answer; `None` if nothing in it is new.
    /// `fresh`: the room is new to the client (initial sync, or joined in
    /// the window).
    fn joined_room(&self, room_id: &str, fresh: bool) -> Result<Option<Value>> {
        let span = match (fresh, self.req.full_state) {
            (true, _) => Span::Fresh,
            (false, true) => Span::WindowFullState,
            (false, false) => Span::Window,
        };
        let after = (span != Span::Fresh).then_some(self.from);
        let (timeline, limited) = self.timeline(room_id, self.upto + 1, after)?;
        let state = self.room_state(room_id, span, &timeline, limited, self.upto)?;
        let full = span != Span::Window;
        let ephemeral = self.ephemeral(room_id)?;
        let mut room_data = Vec::new();
        // A room new to the client gets all its room account data.
        let data_from = if fresh { 0 } else { self.from };
        for (r, kind, content) in account_data::changed(self.conn, self.req.user_id, data_from, self.upto)? {
            if r == room_id && self.req.filter.room_account_data.allows_event(&kind, self.req.user_id, None) {
                room_data.push(json!({ "type": kind, "content": content }));
            }
        }
        if !full && timeline.is_empty() && state.is_empty() && ephemeral.is_empty() && room_data.is_empty() {
            return Ok(None);
        }
        self.record_members(room_id, &state, &timeline);
        let members_changed = full || timeline.iter().any(|e| e.kind == "m.room.member");
        let prev_batch = timeline.first().map_or_else(|| token::at(self.upto + 1), |e| token::at(e.pos));
        let mut timeline_json = Vec::with_capacity(timeline.len());
        for e in &timeline {
            timeline_json.extend(self.format(e)?);
        }
        // Unread counts from push rule evaluation, reset by the user's receipts.
        let (unread, by_thread) = if self.req.filter.timeline.unread_thread_notifications {
            let mut main = json!({ "highlight_count": 0, "notification_count": 0 });
            let mut threads = Map::new();
            for (thread, n, h) in
                crate::storage::push::unread_counts_by_thread(self.conn, self.req.user_id, room_id)?
            {
                let counts = json!({ "highlight_count": h, "notification_count": n });
                if thread == "main" {
                    main = counts;
                } else {
                    threads.insert(thread, counts);
                }
            }
            (main, Some(threads))
        } else {
            let (n, h) = crate::storage::push::unread_counts(self.conn, self.req.user_id, room_id)?;
            (json!({ "highlight_count": h, "notification_count": n }), None)
        };
        let mut room = json!({
            "timeline": { "events": timeline_json, "limited": limited, "prev_batch": prev_batch },
            "state": { "events": state },
            "ephemeral": { "events": ephemeral },
            "account_data": { "events": room_data },
            "unread_notifications": unread,
        });
        if let Some(threads) = by_thread {
            room["unread_thread_notifications"] = Value::Object(threads);
        }
        if members_changed {
            room["summary"] = self.summary(room_id)?;
        }
        Ok(Some(room))
    }

    /// Receipts and typing that changed since the token.
    fn ephemeral(&self, room_id: &str) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        if !self.req.filter.ephemeral.allows_room(room_id) {
            return Ok(out);
        }
        let content = crate::rooms::format::receipt_content(
            self.conn,
            room_id,
            self.from,
            self.upto,
            self.req.user_id,
        )?;
        if !content.is_empty() && self.req.filter.ephemeral.allows_event("m.receipt", "", None) {
            out.push(json!({ "type": "m.receipt", "content": content }));
        }
        let since = self.req.since.map(|s| s.ephemeral);
        if let Some(typing) = self.app.ephemeral.typing_event(room_id, since, self.now) {
            if self.req.filter.ephemeral.allows_event("m.typing", "", None) {
                out.push(typing);
            }
        }
        Ok(out)
    }

    fn summary(&self, room_id: &str) -> Result<Value> {
        let joined = state::members(self.conn, room_id, "join")?;
        let invited = state::members(self.conn, room_id, "invite")?;
        let heroes: Vec<&String> = joined
            .iter()
            .chain(invited.iter())
            .filter(|u| u.as_str() != self.req.user_id)
            .take(HEROES_MAX)
            .collect();
        Ok(json!({
            "m.heroes": heroes,
            "m.joined_member_count": joined.len(),
            "m.invited_member_count": invited.len(),
        }))
    }

    /// The stripped state shown with an invite or knock, plus the
    /// membership event itself.
    fn stripped_state(&self, room_id: &str, membership_event: &str) -> Result<Vec<Value>> {
        crate::rooms::stripped_state(self.conn, room_id, Some(membership_event))
    }

    /// A room the user left or was banned from since the token: the events
    /// up to their leaving and the state before them. A room they joined
    /// in the window (and left again) is new to the client: its latest
    /// events and full state, as for a joined room; one they were joined to
    /// at `since` gets what changed, like a joined room's window; one they
    /// never joined (an invite refused or withdrawn) no state.
    fn left_room(&self, room_id: &str, leave_pos: i64) -> Result<Value> {
        let mine = state::member_changes(self.conn, room_id, Some(self.req.user_id), self.from, leave_pos)?;
        let was_joined = match mine.first() {
            Some(first) => {
                state::membership_in_group(self.conn, first.state_before, self.req.user_id)?.as_deref()
                    == Some("join")
            }
            None => true,
        };
        let joined_in_window = mine.iter().any(|c| c.membership == "join");
        let span = match (was_joined, joined_in_window || self.req.since.is_none()) {
            (false, true) => Some(Span::Fresh),
            (false, false) => None,
            (true, _) if self.req.full_state => Some(Span::WindowFullState),
            (true, _) => Some(Span::Window),
        };
        let after = (span != Some(Span::Fresh)).then_some(self.from);
        let (timeline, limited) = self.timeline(room_id, leave_pos + 1, after)?;
        let state = match span {
            Some(span) => self.room_state(room_id, span, &timeline, limited, leave_pos)?,
            None => Vec::new(),
        };
        self.record_members(room_id, &state, &timeline);
        let prev_batch = timeline.first().map_or_else(|| token::at(leave_pos + 1), |e| token::at(e.pos));
        let mut events_json = Vec::with_capacity(timeline.len());
        for e in &timeline {
            events_json.extend(self.format(e)?);
        }
        Ok(json!({
            "timeline": { "events": events_json, "limited": limited, "prev_batch": prev_batch },
            "state": { "events": state },
            "account_data": { "events": [] },
        }))
    }
}

/// The newest events of a room before stream position `before` (and after
/// `after`, if given) that `keep` accepts, oldest first, at most `limit`,
/// and whether more were left out — also when `TIMELINE_SCAN_MAX` events
/// were looked at, so a room full of hidden events costs a bounded scan.
/// `/sync` and sliding sync both fill their timelines with it.
pub(crate) fn scan_timeline(
    conn: &Connection,
    room_id: &str,
    before: i64,
    after: Option<i64>,
    limit: usize,
    mut keep: impl FnMut(&StoredEvent) -> Result<bool>,
) -> Result<(Vec<StoredEvent>, bool)> {
    let (mut picked, mut cursor, mut scanned) = (Vec::new(), before, 0);
    loop {
        let page = events::room_events(conn, room_id, cursor, after, Dir::Backward, limit + 1)?;
        if page.is_empty() {
            break;
        }
        for e in page {
            cursor = e.pos;
            scanned += 1;
            if keep(&e)? {
                if picked.len() == limit {
                    picked.reverse();
                    return Ok((picked, true));
                }
                picked.push(e);
            }
            if scanned >= TIMELINE_SCAN_MAX {
                picked.reverse();
                return Ok((picked, true));
            }
        }
    }
    picked.reverse();
    Ok((picked, false))
}

/// Keeps only the listed dotted field paths of an event (`event_fields`).
fn keep_fields(event: &Value, fields: &[String]) -> Value {
    let mut out = json!({});
    for path in fields {
        // A backslash escapes a dot inside a field name.
        let mut parts = Vec::new();
        let mut cur = String::new();
        let mut chars = path.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                }
                '.' => parts.push(std::mem::take(&mut cur)),
                c => cur.push(c),
            }
        }
        parts.push(cur);
        let mut src = event;
        let mut found = true;
        for p in &parts {
            match src.get(p) {
                Some(v) => src = v,
                None => {
                    found = false;
                    break;
                }
            }
        }
        if !found {
            continue;
        }
        let mut dst = &mut out;
        for (i, p) in parts.iter().enumerate() {
            if i + 1 == parts.len() {
                dst[p.as_str()] = src.clone();
            } else {
                if !dst.get(p.as_str()).is_some_and(Value::is_object) {
                    dst[p.as_str()] = json!({});
                }
                dst = &mut dst[p.as_str()];
            }
        }
    }
    out
}

/// The rooms a user is joined to (for the waiter's wake-up set).
pub fn joined_rooms(conn: &Connection, user_id: &str) -> Result<HashSet<String>> {
    Ok(state::rooms_of_user(conn, user_id, "join")?.into_iter().collect())
}

/// Parses a sync filter object.
pub fn parse_filter(v: &Value) -> Result<SyncFilter> {
    use crate::error::Error;
    let Value::Object(obj) = v else { return Err(Error::bad_json("The filter must be a JSON object")) };
    let sub = |o: &Map<String, Value>, key: &str| -> Result<RoomEventFilter> {
        match o.get(key) {
            None | Some(Value::Null) => Ok(RoomEventFilter::default()),
            Some(f) => RoomEventFilter::parse(f),
        }
    };
    let room = match obj.get("room") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(r)) => r.clone(),
        Some(_) => return Err(Error::bad_json("filter.room must be an object")),
    };
    let room_lists = RoomEventFilter::parse(&Value::Object(
        room.iter()
            .filter(|(k, _)| *k == "rooms" || *k == "not_rooms")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    ))?;
    let include_leave = match room.get("include_leave") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(Error::bad_json("filter.room.include_leave must be a boolean")),
    };
    let event_fields = match obj.get("event_fields") {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) => Some(
            list.iter()
                .map(|f| {
                    f.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| Error::bad_json("event_fields must be strings"))
                })
                .collect::<Result<Vec<_>>>()?,
        ),
        Some(_) => return Err(Error::bad_json("event_fields must be a list of strings")),
    };
    let federation_format = match obj.get("event_format") {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) if s == "client" => false,
        Some(Value::String(s)) if s == "federation" => true,
        Some(_) => return Err(Error::bad_json("event_format must be client or federation")),
    };
    let mut state_filter = sub(&room, "state")?;
    // Lazy loading is asked for in the state filter (or, by some clients,
    // the timeline filter).
    let timeline = sub(&room, "timeline")?;
    if timeline.lazy_load_members {
        state_filter.lazy_load_members = true;
    }
    if timeline.include_redundant_members {
        state_filter.include_redundant_members = true;
    }
    Ok(SyncFilter {
        rooms: room_lists.rooms,
        not_rooms: room_lists.not_rooms,
        timeline,
        state: state_filter,
        ephemeral: sub(&room, "ephemeral")?,
        room_account_data: sub(&room, "account_data")?,
        account_data: sub(obj, "account_data")?,
        presence: sub(obj, "presence")?,
        include_leave,
        event_fields,
        federation_format,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let t = Since { pos: 42, ephemeral: 7 };
        assert_eq!(Since::parse(&t.format()), Some(t));
        assert_eq!(Since::parse("s5"), Some(Since { pos: 4, ephemeral: 0 }));
        assert_eq!(Since::parse("s5_x"), None);
        assert_eq!(Since::parse("garbage"), None);
    }

    #[test]
    fn event_fields_keep_only_named_paths() {
        let e = json!({ "type": "m.room.message", "content": { "body": "hi", "msgtype": "m.text" }, "sender": "@a:x" });
        let kept = keep_fields(&e, &["type".into(), "content.body".into(), "missing.x".into()]);
        assert_eq!(kept, json!({ "type": "m.room.message", "content": { "body": "hi" } }));
    }

    #[test]
    fn filters_parse_and_refuse_bad_shapes() {
        let f = parse_filter(&json!({
            "room": { "timeline": { "limit": 5 }, "state": { "lazy_load_members": true }, "rooms": ["!a:x"], "include_leave": true },
            "event_fields": ["type"],
        }))
        .unwrap();
        assert_eq!(f.timeline.limit, Some(5));
        assert!(f.state.lazy_load_members && f.include_leave);
        assert!(f.allows_room("!a:x") && !f.allows_room("!b:x"));
        assert!(parse_filter(&json!({ "room": 3 })).is_err());
        assert!(parse_filter(&json!({ "event_format": "xml" })).is_err());
        assert!(parse_filter(&json!([])).is_err());
    }
}
