//! Spaces: `GET /_matrix/client/v1/rooms/{roomId}/hierarchy`, and what
//! the federation API's `/hierarchy/{roomId}` (`api::federation::hierarchy`)
//! serves from the same functions ([`local_summary`], [`children_of`],
//! [`server_may_preview`]).
//!
//! The tree is walked depth-first, as the spec says ("Paginates over the
//! space tree in a depth-first manner"), from the root through the
//! `m.space.child` state events of each space (a child needs a non-empty
//! `via`), children in the spec's order (`order`, then the event's
//! `origin_server_ts`, then room ID), every room at most once. A room is
//! listed when the requester may see or preview it: joined or invited,
//! world-readable, join rule `public`, `knock` or `knock_restricted`, or
//! `restricted` with the requester joined to an allowed room; the root
//! must be, or the answer is 403. A room this server has no state for is
//! asked of the servers in its `via` (`federation::queries::hierarchy`,
//! answers cached by `federation::memo` for `memo::HIERARCHY_TTL_MS`),
//! and the children that server lists are used for the rooms below.
//!
//! Pagination needs no state kept here: a `from` token names how many
//! rooms earlier pages held and the `suggested_only` and `max_depth` they
//! were asked with; each page walks the tree again and skips those rooms.
//! Every request is bounded: at most [`ROOMS_WALKED_MAX`] rooms looked at
//! (so at most that many over all pages), [`REMOTE_ASKS_MAX`] remote
//! answers, none asked after [`REMOTE_BUDGET`], each waited for at most
//! `queries::HIERARCHY_TIMEOUT`, depth [`MAX_DEPTH_MAX`].

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use serde_json::{json, Map, Value};

use crate::api::client::directory;
use crate::api::{Request, Response};
use crate::app::App;
use crate::core::ids;
use crate::error::{Error, Result};
use crate::federation::queries;
use crate::log;
use crate::rooms;
use crate::storage::{self, graph, state};

/// Rooms one page holds when the client names no `limit`...
pub const LIMIT_DEFAULT: usize = 50;
/// ...and at most.
pub const LIMIT_MAX: usize = 100;
/// How deep the walk goes below the root when the client names no
/// `max_depth`, and at most.
pub const MAX_DEPTH_MAX: usize = 20;
/// Rooms one request looks at, over every page before it and its own.
pub const ROOMS_WALKED_MAX: usize = 500;
/// Remote `/hierarchy` answers one request uses (cached ones included).
pub const REMOTE_ASKS_MAX: usize = 16;
/// How long one request spends asking other servers: none is asked past
/// it, so a walk waits at most this plus one `queries::HIERARCHY_TIMEOUT`.
pub const REMOTE_BUDGET: Duration = Duration::from_secs(10);
/// Servers of one child's `via` tried.
pub const VIA_TRIED_MAX: usize = 3;
/// `m.space.child` events listed in one room's `children_state`.
pub const CHILDREN_MAX: usize = queries::HIERARCHY_CHILDREN_MAX;
/// Longest valid `order` of an `m.space.child` event (the spec).
const ORDER_MAX_CHARS: usize = 50;

/// One valid child of a space, from its `m.space.child` event.
#[derive(Debug, Clone, PartialEq)]
pub struct Child {
    pub room_id: String,
    pub via: Vec<String>,
    pub suggested: bool,
    order: Option<String>,
    ts: i64,
}

/// The spec's ordering of a space's children: those with a valid `order`
/// (at most 50 characters of printable ASCII) first, by `order`; then by
/// the child event's `origin_server_ts`; then by room ID.
fn sort_children(children: &mut [Child]) {
    children.sort_by(|a, b| child_key(a).cmp(&child_key(b)));
}

fn child_key(c: &Child) -> (bool, Option<&str>, i64, &str) {
    (c.order.is_none(), c.order.as_deref(), c.ts, &c.room_id)
}

fn valid_order(order: &str) -> bool {
    order.chars().count() <= ORDER_MAX_CHARS && order.chars().all(|c| (' '..='~').contains(&c))
}

/// The children a summary's `children_state` names, in the spec's order.
pub fn children_of(summary: &Map<String, Value>) -> Vec<Child> {
    let events =
        summary.get("children_state").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let mut out: Vec<Child> = events.iter().filter_map(child_of).collect();
    sort_children(&mut out);
    out
}

/// A stripped `m.space.child` event as a child, if it is a valid one.
fn child_of(event: &Value) -> Option<Child> {
    let room_id = event.get("state_key").and_then(Value::as_str).filter(|r| ids::is_valid_room_id(r))?;
    let content = event.get("content")?;
    let via: Vec<String> = content
        .get("via")
        .and_then(Value::as_array)?
        .iter()
        .filter_map(Value::as_str)
        .filter(|s| ids::is_valid_server_name(s))
        .take(queries::VIA_MAX)
        .map(str::to_owned)
        .collect();
    if via.is_empty() {
        return None;
    }
    Some(Child {
        room_id: room_id.to_owned(),
        via,
        suggested: content.get("suggested").and_then(Value::as_bool).unwrap_or(false),
        order: content.get("order").and_then(Value::as_str).filter(|o| valid_order(o)).map(str::to_owned),
        ts: event.get("origin_server_ts").and_then(Value::as_i64).unwrap_or(0),
    })
}

/// The rooms a join rule's `allow` list admits members of.
fn allowed_rooms(join_rules: &Value) -> Vec<String> {
    let allow = join_rules.pointer("/content/allow").and_then(Value::as_array).map(Vec::as_slice);
    allow
        .unwrap_or_default()
        .iter()
        .filter(|c| c.get("type").and_then(Value::as_str) == Some("m.room_membership"))
        .filter_map(|c| c.get("room_id").and_then(Value::as_str))
        .filter(|r| ids::is_valid_room_id(r))
        .take(CHILDREN_MAX)
        .map(str::to_owned)
        .collect()
}

/// A room's `SpaceHierarchyRoomsChunk` from its current state here: the
/// directory's summary plus `room_version`, `encryption`,
/// `allowed_room_ids` (restricted rooms) and `children_state` (the valid
/// `m.space.child` events of a space, stripped, with their
/// `origin_server_ts`; empty for any other room). `None` when this server
/// holds no state of the room.
pub fn local_summary(conn: &Connection, room_id: &str) -> Result<Option<Map<String, Value>>> {
    let Some(room) = storage::rooms::get(conn, room_id)? else { return Ok(None) };
    if rooms::current_readable_state_event(conn, room_id, "m.room.create", "")?.is_none() {
        return Ok(None);
    }
    let mut summary = directory::room_summary(conn, room_id)?;
    summary.insert("room_version".into(), json!(room.version));
    let encryption = rooms::current_readable_state_event(conn, room_id, "m.room.encryption", "")?;
    if let Some(alg) =
        encryption.as_ref().and_then(|e| e.pointer("/content/algorithm")).and_then(Value::as_str)
    {
        summary.insert("encryption".into(), json!(alg));
    }
    let join_rule = summary.get("join_rule").and_then(Value::as_str);
    if matches!(join_rule, Some("restricted" | "knock_restricted")) {
        let rules = rooms::current_readable_state_event(conn, room_id, "m.room.join_rules", "")?;
        summary
            .insert("allowed_room_ids".into(), json!(rules.as_ref().map(allowed_rooms).unwrap_or_default()));
    }
    let mut children_state = Vec::new();
    if summary.get("room_type").and_then(Value::as_str) == Some("m.space") {
        let current = state::current_state(conn, room_id)?;
        let mut children: Vec<(Child, Value)> = Vec::new();
        for ((kind, _), id) in &current {
            if kind != "m.space.child" {
                continue;
            }
            let Some(pdu) = rooms::load_readable_pdu(conn, id)? else { continue };
            let stripped = json!({
                "type": "m.space.child",
                "state_key": pdu.get("state_key").cloned().unwrap_or(Value::Null),
                "sender": pdu.get("sender").cloned().unwrap_or(Value::Null),
                "content": pdu.get("content").cloned().unwrap_or_else(|| json!({})),
                "origin_server_ts": pdu.get("origin_server_ts").cloned().unwrap_or(json!(0)),
            });
            if let Some(child) = child_of(&stripped) {
                children.push((child, stripped));
            }
        }
        // In the children's order, bounded.
        children.sort_by(|(a, _), (b, _)| child_key(a).cmp(&child_key(b)));
        children_state = children.into_iter().take(CHILDREN_MAX).map(|(_, e)| e).collect();
    }
    summary.insert("children_state".into(), Value::Array(children_state));
    Ok(Some(summary))
}

/// Join rules that let anyone see a room's summary: public, and the
/// knockable ones.
fn open_rule(summary: &Map<String, Value>) -> bool {
    matches!(summary.get("join_rule").and_then(Value::as_str), Some("public" | "knock" | "knock_restricted"))
}

fn world_readable(summary: &Map<String, Value>) -> bool {
    summary.get("world_readable").and_then(Value::as_bool) == Some(true)
}

fn allowed_ids(summary: &Map<String, Value>) -> impl Iterator<Item = &str> {
    let restricted =
        matches!(summary.get("join_rule").and_then(Value::as_str), Some("restricted" | "knock_restricted"));
    let ids = summary.get("allowed_room_ids").and_then(Value::as_array).filter(|_| restricted);
    ids.map(Vec::as_slice).unwrap_or_default().iter().filter_map(Value::as_str)
}

/// May this user see the room in a hierarchy (the spec's list under
/// `rooms`)? Joined or invited (not banned); the room world-readable or
/// open to join or knock; or restricted with the user joined to one of
/// its allowed rooms. Works on a summary from here or from another
/// server; memberships are this server's.
pub fn user_may_preview(conn: &Connection, user_id: &str, summary: &Map<String, Value>) -> Result<bool> {
    let room_id = summary.get("room_id").and_then(Value::as_str).unwrap_or_default();
    match state::membership(conn, user_id, room_id)?.as_deref() {
        Some("join" | "invite") => return Ok(true),
        Some("ban") => return Ok(false),
        _ => {}
    }
    if world_readable(summary) || open_rule(summary) {
        return Ok(true);
    }
    for allowed in allowed_ids(summary) {
        if state::membership(conn, user_id, allowed)?.as_deref() == Some("join") {
            return Ok(true);
        }
    }
    Ok(false)
}

/// May another server see the room in a hierarchy? World-readable or
/// open to join or knock; one of its users joined; or restricted with
/// one of its users joined to an allowed room (its own server then
/// filters for the user, by `allowed_room_ids`).
pub fn server_may_preview(conn: &Connection, server: &str, summary: &Map<String, Value>) -> Result<bool> {
    if world_readable(summary) || open_rule(summary) {
        return Ok(true);
    }
    let room_id = summary.get("room_id").and_then(Value::as_str).unwrap_or_default();
    let in_room =
        |room: &str| -> Result<bool> { Ok(graph::servers_in_room(conn, room)?.iter().any(|s| s == server)) };
    if in_room(room_id)? {
        return Ok(true);
    }
    for allowed in allowed_ids(summary) {
        if in_room(allowed)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Where a page starts: how many rooms the pages before it held, and what
/// they were asked with (`suggested_only` and `max_depth` cannot change).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Token {
    skip: usize,
    suggested_only: bool,
    max_depth: usize,
}

impl Token {
    fn render(&self) -> String {
        format!("h{}_{}_{}", self.skip, u8::from(self.suggested_only), self.max_depth)
    }

    fn parse(s: &str) -> Result<Token> {
        let bad = || Error::invalid_param("Invalid pagination token");
        let mut parts = s.strip_prefix('h').ok_or_else(bad)?.split('_');
        let mut number = || -> Result<usize> {
            let p = parts.next().ok_or_else(bad)?;
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            p.parse().map_err(|_| bad())
        };
        let (skip, suggested, max_depth) = (number()?, number()?, number()?);
        if parts.next().is_some() || suggested > 1 || max_depth > MAX_DEPTH_MAX || skip > ROOMS_WALKED_MAX {
            return Err(bad());
        }
        Ok(Token { skip, suggested_only: suggested == 1, max_depth })
    }
}

/// The request's parameters, checked.
struct Query {
    suggested_only: bool,
    max_depth: usize,
    limit: usize,
    skip: usize,
}

fn query(req: &Request) -> Result<Query> {
    let suggested_only = match req.query("suggested_only") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(Error::invalid_param(format!("suggested_only must be true or false, not {other:?}")))
        }
    };
    let number = |name: &str, min: i64| -> Result<Option<i64>> {
        let Some(text) = req.query(name) else { return Ok(None) };
        match text.parse::<i64>() {
            Ok(n) if n >= min => Ok(Some(n)),
            _ => Err(Error::invalid_param(format!(
                "{name} must be an integer of at least {min}, not {text:?}"
            ))),
        }
    };
    let limit = number("limit", 1)?.map_or(LIMIT_DEFAULT, |n| n.min(LIMIT_MAX as i64) as usize);
    let max_depth = number("max_depth", 0)?.map_or(MAX_DEPTH_MAX, |n| n.min(MAX_DEPTH_MAX as i64) as usize);
    let skip = match req.query("from") {
        None => 0,
        Some(from) => {
            let t = Token::parse(from)?;
            if t.suggested_only != suggested_only || t.max_depth != max_depth {
                return Err(Error::invalid_param(
                    "suggested_only and max_depth cannot change on paginated requests",
                ));
            }
            t.skip
        }
    };
    Ok(Query { suggested_only, max_depth, limit, skip })
}

/// GET /_matrix/client/v1/rooms/{roomId}/hierarchy
pub fn hierarchy(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let root = req.param("roomId");
    if !ids::is_valid_room_id(root) {
        return Err(Error::invalid_param("Invalid room ID"));
    }
    let q = query(req)?;
    let root_summary = app.db.read(|tx| match local_summary(tx, root)? {
        Some(s) if user_may_preview(tx, &who.user_id, &s)? => Ok(s),
        _ => Err(Error::forbidden("You are not allowed to view this room")),
    })?;
    let want = q.skip + q.limit + 1;
    let mut rooms = Walk::new(app, &who.user_id, &q).run(root_summary, want)?;
    let more = rooms.len() == want;
    rooms.truncate(q.skip + q.limit);
    let page: Vec<Value> = rooms.into_iter().skip(q.skip).map(Value::Object).collect();
    let mut out = json!({ "rooms": page });
    if more {
        let next = Token { skip: q.skip + q.limit, suggested_only: q.suggested_only, max_depth: q.max_depth };
        out["next_batch"] = json!(next.render());
    }
    Response::ok(out)
}

/// One walk of the tree for one user.
struct Walk<'a> {
    app: &'a App,
    user_id: &'a str,
    suggested_only: bool,
    max_depth: usize,
    /// Remote answers used so far.
    asks: usize,
    /// No other server is asked after this.
    remote_deadline: Instant,
    /// Summaries of rooms another server listed as children.
    remote_children: HashMap<String, Map<String, Value>>,
    /// Rooms another server said its servers cannot see.
    inaccessible: HashSet<String>,
}

impl<'a> Walk<'a> {
    fn new(app: &'a App, user_id: &'a str, q: &Query) -> Walk<'a> {
        Walk {
            app,
            user_id,
            suggested_only: q.suggested_only,
            max_depth: q.max_depth,
            asks: 0,
            remote_deadline: Instant::now() + REMOTE_BUDGET,
            remote_children: HashMap::new(),
            inaccessible: HashSet::new(),
        }
    }

    /// The rooms the user may see, in order, from the root (already
    /// checked), until `want` are found or the tree or the bounds end.
    fn run(&mut self, root: Map<String, Value>, want: usize) -> Result<Vec<Map<String, Value>>> {
        let root_id = root.get("room_id").and_then(Value::as_str).unwrap_or_default().to_owned();
        let mut seen: HashSet<String> = HashSet::from([root_id]);
        let mut out = Vec::new();
        // (summary, depth) of rooms listed whose children are still to go.
        let mut stack: Vec<(Child, usize)> = Vec::new();
        self.push_children(&root, 0, &seen, &mut stack);
        out.push(root);
        let mut walked = 1;
        while let Some((child, depth)) = stack.pop() {
            if out.len() >= want || walked >= ROOMS_WALKED_MAX {
                break;
            }
            if !seen.insert(child.room_id.clone()) || self.inaccessible.contains(&child.room_id) {
                continue;
            }
            walked += 1;
            let local = self.app.db.read(|tx| local_summary(tx, &child.room_id))?;
            let Some(summary) = local.or_else(|| self.remote(&child)) else { continue };
            if !self.app.db.read(|tx| user_may_preview(tx, self.user_id, &summary))? {
                continue;
            }
            self.push_children(&summary, depth, &seen, &mut stack);
            out.push(summary);
        }
        Ok(out)
    }

    /// Puts a listed room's children on the stack, first child on top,
    /// unless the walk is as deep as asked.
    fn push_children(
        &self,
        summary: &Map<String, Value>,
        depth: usize,
        seen: &HashSet<String>,
        stack: &mut Vec<(Child, usize)>,
    ) {
        if depth >= self.max_depth {
            return;
        }
        let children = children_of(summary);
        for c in children.into_iter().rev() {
            if (c.suggested || !self.suggested_only) && !seen.contains(&c.room_id) {
                stack.push((c, depth + 1));
            }
        }
    }

    /// A room this server has no state of, from another server: the
    /// summary a parent's answer listed (when it is no space, whose
    /// children would be needed), else `/hierarchy` asked of the child's
    /// `via` servers in turn. `None` when none could say.
    fn remote(&mut self, child: &Child) -> Option<Map<String, Value>> {
        if let Some(s) = self.remote_children.get(&child.room_id) {
            if s.get("room_type").and_then(Value::as_str) != Some("m.space") {
                let mut s = s.clone();
                s.insert("children_state".into(), json!([]));
                return Some(s);
            }
        }
        let ours = &self.app.config.server_name;
        for server in child.via.iter().filter(|s| *s != ours).take(VIA_TRIED_MAX) {
            if self.asks >= REMOTE_ASKS_MAX || Instant::now() >= self.remote_deadline {
                return None;
            }
            self.asks += 1;
            match queries::hierarchy(self.app, server, &child.room_id, self.suggested_only) {
                Ok(answer) => return Some(self.take_answer(answer)),
                Err(e) => {
                    log::info(format_args!("hierarchy of {} from {server}: {e}", child.room_id));
                }
            }
        }
        None
    }

    /// Keeps a remote answer's children and inaccessible rooms for later;
    /// its room.
    fn take_answer(&mut self, answer: Value) -> Map<String, Value> {
        let Value::Object(mut answer) = answer else { return Map::new() };
        if let Some(Value::Array(children)) = answer.remove("children") {
            for c in children {
                if let Value::Object(c) = c {
                    if let Some(id) = c.get("room_id").and_then(Value::as_str) {
                        self.remote_children.insert(id.to_owned(), c);
                    }
                }
            }
        }
        if let Some(Value::Array(ids)) = answer.remove("inaccessible_children") {
            self.inaccessible.extend(ids.into_iter().filter_map(|v| v.as_str().map(str::to_owned)));
        }
        match answer.remove("room") {
            Some(Value::Object(room)) => room,
            _ => Map::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(room: &str, order: Option<&str>, ts: i64) -> Value {
        let mut content = json!({ "via": ["example.org"] });
        if let Some(o) = order {
            content["order"] = json!(o);
        }
        json!({ "type": "m.space.child", "state_key": room, "sender": "@a:x", "origin_server_ts": ts, "content": content })
    }

    #[test]
    fn children_follow_the_spec_order_and_need_a_via() {
        let mut summary = Map::new();
        summary.insert(
            "children_state".into(),
            json!([
                child("!late:x", None, 5),
                child("!early:x", None, 1),
                child("!b:x", Some("b"), 9),
                child("!a:x", Some("a"), 9),
                child("!bad-order:x", Some("\u{7f}"), 0),
                { "type": "m.space.child", "state_key": "!novia:x", "content": { "via": [] } },
                { "type": "m.space.child", "state_key": "!gone:x", "content": {} },
            ]),
        );
        let ids: Vec<String> = children_of(&summary).into_iter().map(|c| c.room_id).collect();
        assert_eq!(ids, ["!a:x", "!b:x", "!bad-order:x", "!early:x", "!late:x"]);
        assert!(valid_order(&"x".repeat(50)) && !valid_order(&"x".repeat(51)));
    }

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let t = Token { skip: 20, suggested_only: true, max_depth: 3 };
        assert_eq!(Token::parse(&t.render()), Ok(t));
        for bad in
            ["", "h", "20_1_3", "h20_2_3", "h20_1", "h20_1_3_4", "h-1_0_3", "hx_0_3", "h1_0_999", "h+1_0_3"]
        {
            assert_eq!(Token::parse(bad).unwrap_err().errcode(), "M_INVALID_PARAM", "{bad}");
        }
    }
}
