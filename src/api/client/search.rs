//! Server-side search: `POST /search`, the `room_events` category (the
//! only one the spec defines; other categories are ignored).
//!
//! The words of `search_term` are looked up in the full-text index
//! (`storage::search`), in the rooms the user is joined to or has left
//! (not forgotten), each result passing history visibility
//! (`Visibility::may_see`), the ignored-users list and the request's
//! filter, as `/messages` applies them. Results are rendered by
//! `rooms::format`, like every other event a client reads.
//!
//! `next_batch` tokens are opaque to clients: the order, the stream
//! position the first page searched up to (later events are left for a
//! new search, so paging neither repeats nor skips), the place in the
//! order past the last match looked at, and for a group's token the room
//! or sender it keeps to.

use std::collections::{HashMap, HashSet};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rusqlite::Connection;
use serde_json::{json, Map, Value};

use super::message::{self, StateView};
use crate::api::{Auth, Request, Response};
use crate::app::App;
use crate::core::ids;
use crate::error::{Error, Result};
use crate::rooms::format;
use crate::rooms::token::Point;
use crate::rooms::visibility::Visibility;
use crate::storage::events::{self, Dir, StoredEvent};
use crate::storage::search::{self as index, Candidate, Cursor, Order};
use crate::storage::{self, account_data, state};
use crate::sync::filter::RoomEventFilter;

/// Results per page unless the filter's `limit` says otherwise.
const RESULTS_LIMIT_DEFAULT: usize = 10;
/// Most results one page holds.
const RESULTS_LIMIT_MAX: usize = 100;
/// Longest `search_term` accepted.
const SEARCH_TERM_MAX_BYTES: usize = 1000;
/// Events before and after each result unless the client asks otherwise.
const CONTEXT_LIMIT_DEFAULT: usize = 5;
/// Most events before, and most after, each result.
const CONTEXT_LIMIT_MAX: usize = 50;
/// Most index matches one page looks at (other rooms, history visibility
/// and filters may hide many); past this the page ends early, with a
/// token to go on from.
const SCAN_MAX: usize = 5000;
/// Most matches read from the index in one step of a page.
const SCAN_BATCH_MAX: usize = 500;
/// `count` stops counting here: an estimate, as the spec allows. Each
/// match counted costs a row read (about 3 µs warm; 10,000 took 30 ms in
/// contrib/bench/search).
const COUNT_MAX: usize = 1000;
/// Most `group_by` entries (there are two keys).
const GROUPS_MAX: usize = 2;
/// The searchable keys and the event type each belongs to.
const KEYS: [(&str, &str); 3] =
    [("content.body", "m.room.message"), ("content.name", "m.room.name"), ("content.topic", "m.room.topic")];

/// POST /_matrix/client/v3/search?next_batch
pub fn search(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let body = req.json_value()?;
    let categories = match body.get("search_categories") {
        Some(Value::Object(c)) => c,
        Some(_) => return Err(Error::bad_json("search_categories must be an object")),
        None => return Err(Error::bad_json("search_categories is required")),
    };
    let Some(criteria) = categories.get("room_events").filter(|v| !v.is_null()) else {
        return Response::ok(json!({ "search_categories": {} }));
    };
    let criteria = Criteria::parse(criteria)?;
    let token = req.query("next_batch").map(|t| Token::parse(t, criteria.order)).transpose()?;
    let out = app.db.read(|conn| room_events(conn, who, &criteria, token))?;
    Response::ok(json!({ "search_categories": { "room_events": out } }))
}

/// The `room_events` criteria of a request.
struct Criteria {
    term: String,
    /// The event types of the keys searched.
    types: Vec<&'static str>,
    filter: RoomEventFilter,
    order: Order,
    context: Option<ContextReq>,
    include_state: bool,
    groups: Vec<Group>,
}

#[derive(Clone, Copy)]
struct ContextReq {
    before: usize,
    after: usize,
    profile: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    RoomId,
    Sender,
}

impl Group {
    fn key(self) -> &'static str {
        match self {
            Group::RoomId => "room_id",
            Group::Sender => "sender",
        }
    }

    fn of(self, e: &StoredEvent) -> &str {
        match self {
            Group::RoomId => &e.room_id,
            Group::Sender => &e.sender,
        }
    }
}

impl Criteria {
    /// Wrong JSON types are `M_BAD_JSON`; values outside what the spec
    /// allows (an unknown key, order or group) `M_INVALID_PARAM`.
    fn parse(v: &Value) -> Result<Criteria> {
        let Value::Object(obj) = v else {
            return Err(Error::bad_json("search_categories.room_events must be an object"));
        };
        let term = match field(obj, "search_term") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(Error::bad_json("search_term must be a string")),
            None => return Err(Error::bad_json("search_term is required")),
        };
        if term.len() > SEARCH_TERM_MAX_BYTES {
            return Err(Error::invalid_param(format!(
                "search_term is longer than {SEARCH_TERM_MAX_BYTES} bytes"
            )));
        }
        let types = match field(obj, "keys") {
            None => KEYS.iter().map(|(_, t)| *t).collect(),
            Some(Value::Array(keys)) => {
                let mut types = Vec::new();
                for k in keys {
                    let Value::String(k) = k else {
                        return Err(Error::bad_json("keys must be a list of strings"));
                    };
                    let Some((_, t)) = KEYS.iter().find(|(name, _)| name == k) else {
                        return Err(Error::invalid_param(format!(
                            "keys may hold content.body, content.name and content.topic, not {k:?}"
                        )));
                    };
                    if !types.contains(t) {
                        types.push(*t);
                    }
                }
                types
            }
            Some(_) => return Err(Error::bad_json("keys must be a list of strings")),
        };
        let filter = match field(obj, "filter") {
            None => RoomEventFilter::default(),
            Some(f) => RoomEventFilter::parse(f)?,
        };
        let order = match field(obj, "order_by") {
            None => Order::Rank,
            Some(Value::String(s)) if s == "rank" => Order::Rank,
            Some(Value::String(s)) if s == "recent" => Order::Recent,
            Some(Value::String(_)) => {
                return Err(Error::invalid_param("order_by must be 'rank' or 'recent'"))
            }
            Some(_) => return Err(Error::bad_json("order_by must be a string")),
        };
        let context = match field(obj, "event_context") {
            None => None,
            Some(Value::Object(c)) => Some(ContextReq {
                before: context_limit(c, "before_limit")?,
                after: context_limit(c, "after_limit")?,
                profile: flag(c, "event_context.include_profile")?,
            }),
            Some(_) => return Err(Error::bad_json("event_context must be an object")),
        };
        let include_state = flag(obj, "include_state")?;
        let groups = match field(obj, "groupings") {
            None => Vec::new(),
            Some(Value::Object(g)) => group_by(g)?,
            Some(_) => return Err(Error::bad_json("groupings must be an object")),
        };
        Ok(Criteria { term, types, filter, order, context, include_state, groups })
    }

    fn limit(&self) -> usize {
        self.filter.limit.unwrap_or(RESULTS_LIMIT_DEFAULT).min(RESULTS_LIMIT_MAX)
    }
}

/// A field, `null` counting as absent.
fn field<'v>(obj: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    obj.get(key).filter(|v| !v.is_null())
}

/// A boolean field (`path` names it in errors, its last part is the key);
/// absent is false.
fn flag(obj: &Map<String, Value>, path: &str) -> Result<bool> {
    let key = path.rsplit('.').next().unwrap_or(path);
    match field(obj, key) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(Error::bad_json(format!("{path} must be a boolean"))),
    }
}

fn context_limit(obj: &Map<String, Value>, key: &str) -> Result<usize> {
    match field(obj, key) {
        None => Ok(CONTEXT_LIMIT_DEFAULT),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(n) => Ok(usize::try_from(n).unwrap_or(CONTEXT_LIMIT_MAX).min(CONTEXT_LIMIT_MAX)),
            None => Err(Error::invalid_param(format!("event_context.{key} must not be negative"))),
        },
        Some(_) => Err(Error::bad_json(format!("event_context.{key} must be an integer"))),
    }
}

fn group_by(obj: &Map<String, Value>) -> Result<Vec<Group>> {
    let Some(list) = field(obj, "group_by") else { return Ok(Vec::new()) };
    let Value::Array(list) = list else { return Err(Error::bad_json("groupings.group_by must be a list")) };
    let mut out = Vec::new();
    for g in list {
        let group = match g.get("key") {
            Some(Value::String(k)) if k == "room_id" => Group::RoomId,
            Some(Value::String(k)) if k == "sender" => Group::Sender,
            Some(Value::String(_)) => {
                return Err(Error::invalid_param("groupings.group_by keys must be 'room_id' or 'sender'"))
            }
            _ => return Err(Error::bad_json("groupings.group_by entries must be objects with a string key")),
        };
        if !out.contains(&group) {
            out.push(group);
        }
    }
    debug_assert!(out.len() <= GROUPS_MAX);
    Ok(out)
}

/// What a `next_batch` token holds.
#[derive(Debug, Clone, PartialEq)]
struct Token {
    order: Order,
    /// The stream position the first page searched up to.
    upto: i64,
    /// Past the last match looked at.
    cursor: Cursor,
    /// A group's token keeps to its room or sender.
    scope: Option<(Group, String)>,
}

impl Token {
    fn encode(&self) -> String {
        let order = match self.order {
            Order::Rank => "r",
            Order::Recent => "t",
        };
        let (group, value) = match &self.scope {
            None => ("", ""),
            Some((g, v)) => (g.key(), v.as_str()),
        };
        let text = format!(
            "{order}|{}|{:x}|{}|{group}|{value}",
            self.upto,
            self.cursor.score.to_bits(),
            self.cursor.pos
        );
        URL_SAFE_NO_PAD.encode(text)
    }

    /// A token this server made for a search in the same order, else
    /// `M_INVALID_PARAM`.
    fn parse(text: &str, order: Order) -> Result<Token> {
        Token::decode(text)
            .filter(|t| t.order == order)
            .ok_or_else(|| Error::invalid_param("Invalid next_batch token for this search"))
    }

    fn decode(text: &str) -> Option<Token> {
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let mut parts = text.splitn(6, '|');
        let order = match parts.next()? {
            "r" => Order::Rank,
            "t" => Order::Recent,
            _ => return None,
        };
        let upto = parts.next()?.parse().ok()?;
        let score = f64::from_bits(u64::from_str_radix(parts.next()?, 16).ok()?);
        let pos = parts.next()?.parse().ok()?;
        if score.is_nan() {
            return None;
        }
        let scope = match (parts.next()?, parts.next()?) {
            ("", "") => None,
            ("room_id", r) if ids::is_valid_room_id(r) => Some((Group::RoomId, r.to_owned())),
            ("sender", u) if ids::parse_user_id(u).is_some() => Some((Group::Sender, u.to_owned())),
            _ => return None,
        };
        Some(Token { order, upto, cursor: Cursor { score, pos }, scope })
    }
}

/// A searchable room: how far the user may read it (`None` while joined)
/// and its visibility answers.
struct Room<'a> {
    upto: Option<i64>,
    vis: Visibility<'a>,
}

/// One result: the event and its `bm25` score.
struct Hit {
    event: StoredEvent,
    score: f64,
}

/// A page of results and where it stopped.
struct Page {
    hits: Vec<Hit>,
    /// Past the last match looked at, when there may be more.
    next: Option<Cursor>,
}

fn room_events(conn: &Connection, who: &Auth, c: &Criteria, token: Option<Token>) -> Result<Value> {
    let Some((expr, words)) = index::match_expression(&c.term) else {
        // No words, no matches.
        return Ok(json!({ "results": [], "count": 0, "highlights": [] }));
    };
    let scope = token.as_ref().and_then(|t| t.scope.clone());
    let searchable: Vec<(String, Option<i64>)> = index::searchable_rooms(conn, &who.user_id)?
        .into_iter()
        .filter(|(room, _)| c.filter.allows_room(room))
        .filter(|(room, _)| match &scope {
            Some((Group::RoomId, r)) => r == room,
            _ => true,
        })
        .collect();
    let upto = match &token {
        Some(t) => t.upto,
        None => events::current_pos(conn)?,
    };
    let cursor = match &token {
        None => Cursor::START,
        // Scores drift as the index grows: go on from the one the last
        // match looked at has now (it is gone if it was redacted since).
        Some(t) if t.order == Order::Rank => {
            let score = index::score_of(conn, &expr, t.cursor.pos)?.unwrap_or(t.cursor.score);
            Cursor { score, pos: t.cursor.pos }
        }
        Some(t) => t.cursor,
    };
    let sender = match &scope {
        Some((Group::Sender, s)) => Some(s.as_str()),
        _ => None,
    };
    let mut rooms: HashMap<&str, Room> = searchable
        .iter()
        .map(|(id, upto)| (id.as_str(), Room { upto: *upto, vis: Visibility::new(conn, &who.user_id, id) }))
        .collect();
    let ignored = account_data::ignored_users(conn, &who.user_id)?;
    let page = scan(conn, c, &ignored, &expr, upto, cursor, sender, &mut rooms)?;

    let scopes: Vec<(&str, Option<i64>)> = searchable.iter().map(|(r, u)| (r.as_str(), *u)).collect();
    let count = index::count(conn, &expr, upto, &scopes, &c.types, COUNT_MAX)?;
    let now = storage::now_ms();
    let viewer = Some(message::viewer(who));
    let mut results = Vec::new();
    let mut shown: Vec<&StoredEvent> = Vec::new();
    for hit in &page.hits {
        // An event whose stored PDU cannot be read (logged) is left out.
        let Some(event) = format::client_event(conn, &hit.event, viewer, now)? else { continue };
        let mut result = json!({ "rank": -hit.score, "result": event });
        if let Some(want) = c.context {
            let room = rooms
                .get_mut(hit.event.room_id.as_str())
                .ok_or_else(|| Error::internal("a search hit outside the searchable rooms"))?;
            result["context"] = context(conn, who, &ignored, &hit.event, want, &mut room.vis)?;
        }
        results.push(result);
        shown.push(&hit.event);
    }
    let next_token = |scope: Option<(Group, String)>| {
        page.next.map(|cursor| Token { order: c.order, upto, cursor, scope }.encode())
    };
    let mut out = json!({ "results": results, "count": count.max(shown.len()), "highlights": words });
    if let Some(t) = next_token(scope.clone()) {
        out["next_batch"] = json!(t);
    }
    if !c.groups.is_empty() {
        let mut groups = Map::new();
        for g in &c.groups {
            groups.insert(g.key().to_owned(), group(&shown, *g, |v| next_token(Some((*g, v.to_owned())))));
        }
        out["groups"] = Value::Object(groups);
    }
    if c.include_state {
        out["state"] = room_state(conn, who, &shown)?;
    }
    Ok(out)
}

/// Reads matches from the index in order from `cursor`, keeping those of
/// the searchable rooms (up to each one's bound) that the user may see and
/// the filter passes, until a page is full, the matches end, or
/// [`SCAN_MAX`] were looked at. Each step reads one more match than still
/// wanted, so a page that ends with the matches knows it did.
#[allow(clippy::too_many_arguments)]
fn scan(
    conn: &Connection,
    c: &Criteria,
    ignored: &HashSet<String>,
    expr: &str,
    upto: i64,
    mut cursor: Cursor,
    sender: Option<&str>,
    rooms: &mut HashMap<&str, Room>,
) -> Result<Page> {
    let limit = c.limit();
    let room_ids: Vec<&str> = rooms.keys().copied().collect();
    let mut hits = Vec::new();
    let mut scanned = 0;
    let mut step = 0;
    if room_ids.is_empty() || c.types.is_empty() {
        return Ok(Page { hits, next: None });
    }
    while scanned < SCAN_MAX {
        // Grow the steps while most matches are hidden, so sparse results
        // do not cost one query per match.
        let want = (limit - hits.len() + 1).max(step * 2).min(SCAN_BATCH_MAX).min(SCAN_MAX - scanned);
        step = want;
        let batch: Vec<Candidate> = index::candidates(conn, expr, upto, c.order, cursor, want)?;
        let positions: Vec<i64> = batch.iter().map(|m| m.pos).collect();
        let mut found = index::events_at(conn, &positions, &room_ids, &c.types)?;
        for m in &batch {
            if hits.len() == limit {
                return Ok(Page { hits, next: Some(cursor) });
            }
            scanned += 1;
            cursor = Cursor { score: m.score, pos: m.pos };
            let Some(e) = found.remove(&m.pos) else { continue };
            let Some(room) = rooms.get_mut(e.room_id.as_str()) else { continue };
            let keep = room.upto.is_none_or(|u| e.pos <= u)
                && sender.is_none_or(|s| s == e.sender)
                && !account_data::hides(ignored, &e.sender, e.state_key.is_some())
                && message::passes(&c.filter, &e)?
                && room.vis.may_see(&e)?;
            if keep {
                hits.push(Hit { event: e, score: m.score });
            }
        }
        if batch.len() < want {
            return Ok(Page { hits, next: None });
        }
    }
    Ok(Page { hits, next: Some(cursor) })
}

/// `context` of one result: the events around it the user may see (users
/// they ignore left out), with tokens for `/messages` to go on from, and
/// with `include_profile` each sender's profile as of the last of them.
fn context(
    conn: &Connection,
    who: &Auth,
    ignored: &HashSet<String>,
    target: &StoredEvent,
    want: ContextReq,
    vis: &mut Visibility,
) -> Result<Value> {
    let mut keep = |e: &StoredEvent| -> Result<bool> {
        Ok(!account_data::hides(ignored, &e.sender, e.state_key.is_some()) && vis.may_see(e)?)
    };
    let at = message::key(target);
    let room = &target.room_id;
    let before = message::scan(
        conn,
        room,
        Point::topological(at.below()),
        None,
        Dir::Backward,
        want.before,
        &mut keep,
    )?;
    let after = message::scan(conn, room, Point::topological(at), None, Dir::Forward, want.after, &mut keep)?;
    let now = storage::now_ms();
    let viewer = Some(message::viewer(who));
    let mut out = json!({
        "start": before.point.token(),
        "end": after.point.token(),
        "events_before": format::client_events(conn, &before.events, viewer, now)?,
        "events_after": format::client_events(conn, &after.events, viewer, now)?,
    });
    if want.profile {
        let last = after.events.last().unwrap_or(target);
        let mut profiles = Map::new();
        for e in before.events.iter().chain([target]).chain(&after.events) {
            if !profiles.contains_key(&e.sender) {
                profiles.insert(e.sender.clone(), profile_at(conn, last, &e.sender)?);
            }
        }
        out["profile_info"] = Value::Object(profiles);
    }
    Ok(out)
}

/// A user's `displayname` and `avatar_url` in the room right after `e`.
fn profile_at(conn: &Connection, e: &StoredEvent, user_id: &str) -> Result<Value> {
    let member = if e.kind == "m.room.member" && e.state_key.as_deref() == Some(user_id) {
        Some(e.clone())
    } else {
        match state::group_entry(conn, e.state_before, "m.room.member", user_id)? {
            Some(id) => events::get(conn, &id)?,
            None => None,
        }
    };
    let mut profile = Map::new();
    let pdu = member.as_ref().and_then(crate::rooms::readable_pdu);
    if let Some(content) = pdu.as_ref().and_then(|p| p.get("content")) {
        for key in ["displayname", "avatar_url"] {
            if let Some(Value::String(s)) = content.get(key) {
                profile.insert(key.to_owned(), json!(s));
            }
        }
    }
    Ok(Value::Object(profile))
}

/// The groups of one key: each value's results in page order, the group's
/// `order` (where its first result came, from 1), and a token to go on in
/// the group alone.
fn group(shown: &[&StoredEvent], g: Group, next: impl Fn(&str) -> Option<String>) -> Value {
    let mut out = Map::new();
    for e in shown {
        let n = out.len() + 1;
        let entry = out.entry(g.of(e).to_owned()).or_insert_with(|| json!({ "results": [], "order": n }));
        if let Some(list) = entry["results"].as_array_mut() {
            list.push(json!(e.event_id));
        }
    }
    for (value, entry) in out.iter_mut() {
        if let Some(t) = next(value) {
            entry["next_batch"] = json!(t);
        }
    }
    Value::Object(out)
}

/// `state`: for each room of the results, the state the user may read, as
/// `GET /state` answers it (the current state, or as they left it).
fn room_state(conn: &Connection, who: &Auth, shown: &[&StoredEvent]) -> Result<Value> {
    let mut out = Map::new();
    let rooms: HashSet<&str> = shown.iter().map(|e| e.room_id.as_str()).collect();
    let now = storage::now_ms();
    for room in rooms {
        let map = match message::state_view(conn, room, &who.user_id) {
            Ok(StateView::Current) => state::current_state(conn, room)?,
            Ok(StateView::LeftAt(left)) => crate::rooms::state_after(conn, &left)?,
            Err(e) if e.is_server_failure() => return Err(e),
            // Never a member (an invite only): no state to show.
            Err(_) => continue,
        };
        let mut list = message::load_all(conn, map.values())?;
        list.sort_by_key(|e| e.pos);
        out.insert(
            room.to_owned(),
            json!(format::client_events(conn, &list, Some(message::viewer(who)), now)?),
        );
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_refuse_other_orders_and_junk() {
        let t = Token {
            order: Order::Rank,
            upto: 42,
            cursor: Cursor { score: -1.25e-6, pos: 7 },
            scope: Some((Group::RoomId, "!a|b:c".into())),
        };
        assert_eq!(Token::parse(&t.encode(), Order::Rank).unwrap(), t);
        assert!(Token::parse(&t.encode(), Order::Recent).is_err());
        let start = Token { order: Order::Recent, upto: 1, cursor: Cursor::START, scope: None };
        assert_eq!(Token::parse(&start.encode(), Order::Recent).unwrap(), start);
        for junk in [
            "",
            "x",
            "%%%",
            "cnw",
            &URL_SAFE_NO_PAD.encode("r|1|zz|3||"),
            &URL_SAFE_NO_PAD.encode("t|1|0|3|room_id|nope"),
        ] {
            assert!(
                Token::parse(junk, Order::Recent).is_err() && Token::parse(junk, Order::Rank).is_err(),
                "{junk}"
            );
        }
    }

    #[test]
    fn criteria_errors() {
        let bad_json = [
            json!([]),
            json!({}),
            json!({ "search_term": 5 }),
            json!({ "search_term": "x", "keys": "content.body" }),
            json!({ "search_term": "x", "keys": [1] }),
            json!({ "search_term": "x", "order_by": 1 }),
            json!({ "search_term": "x", "event_context": [] }),
            json!({ "search_term": "x", "event_context": { "before_limit": "3" } }),
            json!({ "search_term": "x", "include_state": "yes" }),
            json!({ "search_term": "x", "groupings": { "group_by": {} } }),
            json!({ "search_term": "x", "filter": { "limit": "3" } }),
        ];
        for v in bad_json {
            assert_eq!(Criteria::parse(&v).err().map(|e| e.errcode()), Some("M_BAD_JSON"), "{v}");
        }
        let invalid = [
            json!({ "search_term": "x", "keys": ["content.msgtype"] }),
            json!({ "search_term": "x", "order_by": "oldest" }),
            json!({ "search_term": "x", "groupings": { "group_by": [{ "key": "type" }] } }),
            json!({ "search_term": "x", "event_context": { "after_limit": -1 } }),
            json!({ "search_term": "x".repeat(SEARCH_TERM_MAX_BYTES + 1) }),
        ];
        for v in invalid {
            assert_eq!(Criteria::parse(&v).err().map(|e| e.errcode()), Some("M_INVALID_PARAM"), "{v}");
        }
        let c = Criteria::parse(&json!({
            "search_term": "x", "keys": ["content.name", "content.name"], "order_by": "recent",
            "event_context": { "after_limit": 1000 }, "filter": { "limit": 1000 },
        }))
        .unwrap();
        assert_eq!(c.types, ["m.room.name"]);
        assert_eq!(c.order, Order::Recent);
        assert_eq!(c.limit(), RESULTS_LIMIT_MAX);
        let ctx = c.context.unwrap();
        assert_eq!((ctx.before, ctx.after, ctx.profile), (CONTEXT_LIMIT_DEFAULT, CONTEXT_LIMIT_MAX, false));
    }
}
