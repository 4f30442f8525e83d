//! Asking other servers on behalf of local clients (the Server-Server
//! API's queries and its room-free endpoints): a user's profile
//! (`/query/profile`, remembered for `memo::PROFILE_TTL_MS`), a room
//! alias (`/query/directory`), a server's published room directory
//! (`/publicRooms`), and device keys and one-time keys
//! (`/user/keys/query`, `/user/keys/claim`) of users on several servers
//! at once.
//!
//! Every answer is read up to a named size and checked for shape before
//! anything of it is used: an entry that does not fit is dropped, an
//! answer that does not is a 502. A single lookup is one request on the
//! calling worker, bounded by the outbound client's timeouts. Its errors
//! are what the client API documents, as Synapse answers them: the other
//! server's 404 or 403 passes on; a refusal of ours (federation off,
//! outside `federation_domain_allowlist`) is a 403; anything else
//! (unreachable, a 5xx, another 4xx, a malformed answer) is 502
//! `M_UNKNOWN`.
//!
//! The key requests fan out: each server is asked once, by at most
//! [`PARALLEL_PER_REQUEST`] threads per request taking servers from a
//! shared list, with at most [`THREADS_MAX`] such threads in the whole
//! process, and the caller waits at most the request's timeout
//! ([`keys_timeout`]). A server that did not answer by then, answered
//! with an error, may not be asked, or failed lately (`memo`'s negative
//! cache) is listed in `failures`. A thread still waiting on a slow
//! server at the deadline finishes that one request (the outbound
//! client's timeouts bound it), then stops: its answer goes nowhere.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::app::App;
use crate::core::ids;
use crate::error::{Error, ErrorKind, Result};
use crate::federation::client::{json_answer, Federation};
use crate::log;
use crate::outbound::client::Method;
use crate::util::{lock, percent_encode};

/// The most bytes of a profile or alias answer read.
pub const SMALL_ANSWER_MAX: u64 = 64 * 1024;
/// The most bytes of a published room directory page read.
pub const PUBLIC_ROOMS_ANSWER_MAX: u64 = 4 * 1024 * 1024;
/// The most bytes of a key query or claim answer read.
pub const KEYS_ANSWER_MAX: u64 = 8 * 1024 * 1024;
/// Rooms kept of one remote directory page.
pub const PUBLIC_ROOMS_CHUNK_MAX: usize = 500;
/// Servers kept of a remote alias's answer.
pub const ALIAS_SERVERS_MAX: usize = 64;
/// Longest remote display name kept, in bytes.
pub const DISPLAYNAME_MAX_BYTES: usize = 1024;
/// Longest remote avatar URL or time zone kept, in bytes.
pub const PROFILE_FIELD_MAX_BYTES: usize = 1000;
/// Longest pagination token passed on or kept, in bytes.
pub const TOKEN_MAX_BYTES: usize = 1024;
/// How long a key request waits for other servers when the client names
/// no `timeout` (the spec's recommendation)...
pub const KEYS_TIMEOUT_DEFAULT_MS: u64 = 10_000;
/// ...and at most, whatever it names: a waiting request holds a worker.
pub const KEYS_TIMEOUT_MAX_MS: u64 = 20_000;
/// Threads one key request asks servers with.
pub const PARALLEL_PER_REQUEST: usize = 4;
/// Threads asking servers for keys at once, over all requests.
pub const THREADS_MAX: usize = 16;
/// Servers one key request may ask; the others are listed in `failures`.
pub const SERVERS_PER_REQUEST_MAX: usize = 100;

/// The `/query/profile` request for `user_id`'s whole profile.
fn profile_uri(user_id: &str) -> String {
    format!("/_matrix/federation/v1/query/profile?user_id={}", percent_encode(user_id))
}

/// No answer came from `server` (unreachable, timed out, cut off, too
/// long): a 502 naming the server. The cause is logged, not sent: it
/// holds addresses, URLs and resolver errors.
fn unreachable(server: &str, e: &Error) -> Error {
    log::info(format_args!("federation: no answer from {server}: {}", e.message));
    Error::new(ErrorKind::BadGateway, format!("{server} could not be reached"))
}

/// A request that got no answer, as a single lookup fails: a refusal of
/// ours (federation off, outside the allowlist) is the 403 it is,
/// anything else [`unreachable`].
fn no_answer(server: &str, e: Error) -> Error {
    match e.kind {
        ErrorKind::Forbidden => e,
        _ => unreachable(server, &e),
    }
}

/// An answer that is not a 2xx JSON object, as a single lookup fails:
/// the other server's 404 and 403 stand, anything else is a 502.
fn refused(e: Error) -> Error {
    match e.kind {
        ErrorKind::NotFound | ErrorKind::Forbidden | ErrorKind::BadGateway => e,
        _ => Error::new(ErrorKind::BadGateway, e.message),
    }
}

/// A signed request whose answer must be a 2xx JSON object of at most
/// `max` bytes.
fn lookup(
    app: &App,
    method: Method,
    server: &str,
    uri: &str,
    body: Option<&Value>,
    max: u64,
) -> Result<Value> {
    let answer = app.federation.request(method, server, uri, body, max).map_err(|e| no_answer(server, e))?;
    json_answer(server, &answer).map_err(refused)
}

// Profiles.

/// The profile of `user_id`, a user of `server` (not this one), from the
/// cache or asked of their server and cached: `displayname`,
/// `avatar_url` and `m.tz` where set.
pub fn profile(app: &App, user_id: &str, server: &str) -> Result<Value> {
    if let Some(p) = app.fed_memo.profile(user_id) {
        return Ok(p);
    }
    let answer = lookup(app, Method::Get, server, &profile_uri(user_id), None, SMALL_ANSWER_MAX)?;
    let profile = checked_profile(&answer);
    app.fed_memo.put_profile(user_id, profile.clone());
    Ok(profile)
}

/// The fields of a remote profile answer kept: strings of bounded
/// length (an avatar must be an `mxc://` URI); `null` or anything else
/// counts as unset.
pub fn checked_profile(answer: &Value) -> Value {
    let mut out = Map::new();
    let text = |field: &str, max: usize| {
        answer.get(field).and_then(Value::as_str).filter(|s| s.len() <= max).map(str::to_owned)
    };
    if let Some(name) = text("displayname", DISPLAYNAME_MAX_BYTES) {
        out.insert("displayname".into(), Value::String(name));
    }
    if let Some(url) = text("avatar_url", PROFILE_FIELD_MAX_BYTES).filter(|u| u.starts_with("mxc://")) {
        out.insert("avatar_url".into(), Value::String(url));
    }
    if let Some(tz) = text("m.tz", PROFILE_FIELD_MAX_BYTES) {
        out.insert("m.tz".into(), Value::String(tz));
    }
    Value::Object(out)
}

// Room aliases.

/// The room `alias` (of `server`, not this one) names and servers that
/// may hold it, asked of `server`. Its 404 is ours; any other failure
/// a 502, or a 403 when we may not ask it.
pub fn alias(app: &App, alias: &str, server: &str) -> Result<(String, Vec<String>)> {
    let uri = format!("/_matrix/federation/v1/query/directory?room_alias={}", percent_encode(alias));
    let answer =
        lookup(app, Method::Get, server, &uri, None, SMALL_ANSWER_MAX).map_err(|e| match e.kind {
            ErrorKind::NotFound => Error::not_found(format!("Room alias {alias} not found")),
            _ => e,
        })?;
    checked_alias(&answer, server)
        .ok_or_else(|| Error::new(ErrorKind::BadGateway, format!("{server} answered an unusable alias")))
}

/// A `/query/directory` answer: a valid room ID and the valid server
/// names of `servers` (at most [`ALIAS_SERVERS_MAX`], once each, the
/// alias's own server first when listed).
pub fn checked_alias(answer: &Value, alias_server: &str) -> Option<(String, Vec<String>)> {
    let room_id = answer.get("room_id").and_then(Value::as_str).filter(|r| ids::is_valid_room_id(r))?;
    let listed = answer.get("servers").and_then(Value::as_array)?;
    let mut servers: Vec<String> = Vec::new();
    for s in listed.iter().filter_map(Value::as_str) {
        if servers.len() == ALIAS_SERVERS_MAX {
            break;
        }
        if ids::is_valid_server_name(s) && !servers.iter().any(|x| x == s) {
            servers.push(s.to_owned());
        }
    }
    if let Some(i) = servers.iter().position(|s| s == alias_server) {
        let own = servers.remove(i);
        servers.insert(0, own);
    }
    Some((room_id.to_owned(), servers))
}

// The published room directory.

/// A page of `server`'s published room directory: `POST /publicRooms`
/// with `filter_body` (a body the caller built from checked fields)
/// when there is one, else `GET` with `limit` and `since`.
pub fn public_rooms(
    app: &App,
    server: &str,
    filter_body: Option<&Value>,
    limit: usize,
    since: Option<&str>,
) -> Result<Value> {
    let uri = "/_matrix/federation/v1/publicRooms";
    let answer = match filter_body {
        Some(body) => lookup(app, Method::Post, server, uri, Some(body), PUBLIC_ROOMS_ANSWER_MAX)?,
        None => {
            let mut uri = format!("{uri}?limit={limit}");
            if let Some(s) = since {
                uri.push_str(&format!("&since={}", percent_encode(s)));
            }
            lookup(app, Method::Get, server, &uri, None, PUBLIC_ROOMS_ANSWER_MAX)?
        }
    };
    checked_public_rooms(&answer).ok_or_else(|| {
        Error::new(ErrorKind::BadGateway, format!("{server} answered something other than a room directory"))
    })
}

/// A remote directory page in the client API's shape: `chunk` must be a
/// list; each entry needs a valid `room_id` (else it is dropped), gets
/// the required counts and flags (0 and false when missing or of the
/// wrong type) and keeps the optional fields that are strings;
/// pagination tokens and the estimate are kept when well formed.
pub fn checked_public_rooms(answer: &Value) -> Option<Value> {
    let chunk = answer.get("chunk")?.as_array()?;
    let rooms: Vec<Value> = chunk
        .iter()
        .take(PUBLIC_ROOMS_CHUNK_MAX)
        .filter_map(|r| checked_summary(r, false))
        .map(Value::Object)
        .collect();
    let mut page = json!({ "chunk": rooms });
    for token in ["next_batch", "prev_batch"] {
        if let Some(t) = answer.get(token).and_then(Value::as_str).filter(|t| t.len() <= TOKEN_MAX_BYTES) {
            page[token] = json!(t);
        }
    }
    if let Some(n) = answer.get("total_room_count_estimate").and_then(Value::as_u64) {
        page["total_room_count_estimate"] = json!(n);
    }
    Some(page)
}

/// One room's summary from another server (a directory entry, a
/// `/hierarchy` room): a valid `room_id` (else `None`), the required
/// counts and flags (0 and false when missing or of the wrong type), and
/// the optional fields that are strings. With `hierarchy`, also the
/// fields of the v1.15 summary (`encryption`, `room_version`,
/// `allowed_room_ids`, at most [`HIERARCHY_CHILDREN_MAX`] valid IDs).
fn checked_summary(room: &Value, hierarchy: bool) -> Option<Map<String, Value>> {
    let room_id = room.get("room_id").and_then(Value::as_str).filter(|r| ids::is_valid_room_id(r))?;
    let flag = |f: &str| room.get(f).and_then(Value::as_bool).unwrap_or(false);
    let mut out = Map::new();
    out.insert("room_id".into(), json!(room_id));
    out.insert(
        "num_joined_members".into(),
        json!(room.get("num_joined_members").and_then(Value::as_u64).unwrap_or(0)),
    );
    out.insert("world_readable".into(), json!(flag("world_readable")));
    out.insert("guest_can_join".into(), json!(flag("guest_can_join")));
    let more: &[&str] = if hierarchy { &["encryption", "room_version"] } else { &[] };
    for field in
        ["canonical_alias", "name", "topic", "avatar_url", "join_rule", "room_type"].iter().chain(more)
    {
        if let Some(s) = room.get(*field).and_then(Value::as_str) {
            out.insert((*field).into(), json!(s));
        }
    }
    if hierarchy {
        if let Some(allowed) = room.get("allowed_room_ids").and_then(Value::as_array) {
            out.insert("allowed_room_ids".into(), json!(room_ids(allowed)));
        }
    }
    Some(out)
}

// Space hierarchies.

/// The most bytes of a `/hierarchy` answer read.
pub const HIERARCHY_ANSWER_MAX: u64 = 4 * 1024 * 1024;
/// Children, child events, inaccessible children and allowed rooms kept
/// of one `/hierarchy` answer, each.
pub const HIERARCHY_CHILDREN_MAX: usize = 500;
/// Servers kept of one child event's `via`.
pub const VIA_MAX: usize = 16;

fn room_ids(list: &[Value]) -> Vec<&str> {
    list.iter()
        .filter_map(Value::as_str)
        .filter(|r| ids::is_valid_room_id(r))
        .take(HIERARCHY_CHILDREN_MAX)
        .collect()
}

/// How long a space walk waits for one server's `/hierarchy` answer.
pub const HIERARCHY_TIMEOUT: Duration = Duration::from_secs(5);

/// `room_id`'s part of the space tree as `server` serves it
/// (`GET /_matrix/federation/v1/hierarchy/{roomId}`), checked
/// ([`checked_hierarchy`]), from `memo`'s cache or asked and cached for
/// `memo::HIERARCHY_TTL_MS`. The request runs on one of the fan-out
/// threads ([`THREADS_MAX`] in all) and the caller waits at most
/// [`HIERARCHY_TIMEOUT`]; a server that did not answer goes in the
/// negative cache, and one there is not asked.
pub fn hierarchy(app: &App, server: &str, room_id: &str, suggested_only: bool) -> Result<Value> {
    if let Some(h) = app.fed_memo.hierarchy(room_id, suggested_only) {
        return Ok(h);
    }
    if app.fed_memo.failing(server) {
        return Err(Error::new(
            ErrorKind::BadGateway,
            format!("not asked: {server} failed to answer lately"),
        ));
    }
    let busy = || Error::new(ErrorKind::BadGateway, "not asked: too many requests to other servers at once");
    let slot = ThreadSlot::take().ok_or_else(busy)?;
    let uri = format!(
        "/_matrix/federation/v1/hierarchy/{}?suggested_only={suggested_only}",
        percent_encode(room_id)
    );
    let (tx, rx) = mpsc::channel();
    let (fed, destination) = (app.federation.clone(), server.to_owned());
    std::thread::Builder::new()
        .name("fed-query".into())
        .spawn(move || {
            let _slot = slot;
            let answer = fed.request(Method::Get, &destination, &uri, None, HIERARCHY_ANSWER_MAX);
            let _ = tx.send(answer);
        })
        .map_err(|_| busy())?;
    let answer = match rx.recv_timeout(HIERARCHY_TIMEOUT) {
        Ok(Ok(answer)) => {
            app.fed_memo.answered(server);
            answer
        }
        Ok(Err(e)) => {
            // Our own refusal (federation off, outside the allowlist) says
            // nothing of the server.
            if e.kind != ErrorKind::Forbidden {
                app.fed_memo.failed(server);
            }
            return Err(no_answer(server, e));
        }
        Err(_) => {
            app.fed_memo.failed(server);
            return Err(Error::new(
                ErrorKind::BadGateway,
                format!("{server} did not answer within {HIERARCHY_TIMEOUT:?}"),
            ));
        }
    };
    let answer = json_answer(server, &answer).map_err(refused)?;
    let checked = checked_hierarchy(&answer, room_id).ok_or_else(|| {
        Error::new(ErrorKind::BadGateway, format!("{server} answered something other than a hierarchy"))
    })?;
    app.fed_memo.put_hierarchy(room_id, suggested_only, checked.clone());
    Ok(checked)
}

/// A `/hierarchy` answer in its own shape, kept only where it fits: the
/// `room` must be the one asked for; its `children_state` keeps the
/// `m.space.child` events naming a valid room with a `via` list of
/// server names (at most [`VIA_MAX`]); `children` keeps valid summaries
/// (with their own `children_state` checked the same way when present);
/// `inaccessible_children` valid room IDs.
pub fn checked_hierarchy(answer: &Value, room_id: &str) -> Option<Value> {
    let room_in = answer.get("room")?;
    let mut room = checked_summary(room_in, true).filter(|r| r["room_id"] == room_id)?;
    room.insert("children_state".into(), checked_children_state(room_in));
    let children: Vec<Value> = answer
        .get("children")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .take(HIERARCHY_CHILDREN_MAX)
        .filter_map(|c| {
            let mut out = checked_summary(c, true)?;
            if c.get("children_state").is_some() {
                out.insert("children_state".into(), checked_children_state(c));
            }
            Some(Value::Object(out))
        })
        .collect();
    let inaccessible = answer.get("inaccessible_children").and_then(Value::as_array).map(|l| room_ids(l));
    Some(json!({
        "room": room,
        "children": children,
        "inaccessible_children": inaccessible.unwrap_or_default(),
    }))
}

fn checked_children_state(room: &Value) -> Value {
    let events = room.get("children_state").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let kept: Vec<Value> = events
        .iter()
        .take(HIERARCHY_CHILDREN_MAX)
        .filter_map(|e| {
            let child = e.get("state_key").and_then(Value::as_str).filter(|r| ids::is_valid_room_id(r))?;
            if e.get("type").and_then(Value::as_str) != Some("m.space.child") {
                return None;
            }
            let sender =
                e.get("sender").and_then(Value::as_str).filter(|u| ids::parse_user_id(u).is_some())?;
            let ts = e.get("origin_server_ts").and_then(Value::as_i64)?;
            let content = e.get("content")?.as_object()?;
            let via: Vec<&str> = content
                .get("via")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter_map(Value::as_str)
                .filter(|s| ids::is_valid_server_name(s))
                .take(VIA_MAX)
                .collect();
            let mut kept = json!({ "via": via });
            if let Some(order) = content.get("order").and_then(Value::as_str) {
                kept["order"] = json!(order);
            }
            if let Some(suggested) = content.get("suggested").and_then(Value::as_bool) {
                kept["suggested"] = json!(suggested);
            }
            Some(json!({
                "type": "m.space.child",
                "state_key": child,
                "sender": sender,
                "origin_server_ts": ts,
                "content": kept,
            }))
        })
        .collect();
    Value::Array(kept)
}

// Keys, from several servers at once.

/// How long a key request waits for other servers: the client's
/// `timeout` in milliseconds, [`KEYS_TIMEOUT_DEFAULT_MS`] without one, at
/// most [`KEYS_TIMEOUT_MAX_MS`]; a negative one counts as 0 (ask no one).
pub fn keys_timeout(requested_ms: Option<i64>) -> Duration {
    let ms = match requested_ms {
        None => KEYS_TIMEOUT_DEFAULT_MS,
        Some(ms) => u64::try_from(ms).unwrap_or(0).min(KEYS_TIMEOUT_MAX_MS),
    };
    Duration::from_millis(ms)
}

/// Device and cross-signing keys of users of other servers, checked.
#[derive(Debug, Default)]
pub struct RemoteKeys {
    /// User → device → keys.
    pub device_keys: Map<String, Value>,
    pub master_keys: Map<String, Value>,
    pub self_signing_keys: Map<String, Value>,
    /// Server → why it gave nothing.
    pub failures: Map<String, Value>,
}

/// Asks each server of the users in `wanted` (user → device IDs, none
/// meaning all; users of this server are the caller's) for their keys.
pub fn query_keys(app: &App, wanted: &BTreeMap<String, Vec<String>>, timeout: Duration) -> RemoteKeys {
    let mut out = RemoteKeys::default();
    let by_server = group_by_server(wanted);
    let jobs = by_server
        .iter()
        .map(|(server, users)| Job {
            server: server.clone(),
            uri: "/_matrix/federation/v1/user/keys/query",
            body: json!({ "device_keys": users }),
        })
        .collect();
    for (server, answer) in fan_out(app, jobs, timeout, KEYS_ANSWER_MAX, &mut out.failures) {
        let asked = &by_server[&server];
        check_keys_answer(&answer, asked, &mut out);
    }
    out
}

/// Takes what a key query answer says of the users asked: a device's
/// keys when they name that user and device (and the device was asked
/// for, when devices were named), master and self-signing keys when they
/// name the user and the right usage. Anything else is left out (a
/// user-signing key is never another server's to give).
pub fn check_keys_answer(answer: &Value, asked: &BTreeMap<String, Vec<String>>, out: &mut RemoteKeys) {
    for (user_id, devices) in asked {
        if let Some(listed) = answer.pointer_get(&["device_keys", user_id]).and_then(Value::as_object) {
            let mut kept = Map::new();
            for (device_id, keys) in listed {
                if !devices.is_empty() && !devices.contains(device_id) {
                    continue;
                }
                let names = |f: &str, want: &str| keys.get(f).and_then(Value::as_str) == Some(want);
                if keys.is_object() && names("user_id", user_id) && names("device_id", device_id) {
                    kept.insert(device_id.clone(), keys.clone());
                }
            }
            out.device_keys.insert(user_id.clone(), Value::Object(kept));
        }
        for (field, usage, into) in [
            ("master_keys", "master", &mut out.master_keys),
            ("self_signing_keys", "self_signing", &mut out.self_signing_keys),
        ] {
            let Some(key) = answer.pointer_get(&[field, user_id]) else { continue };
            let owner_ok = key.get("user_id").and_then(Value::as_str) == Some(user_id);
            let usage_ok =
                key.get("usage").and_then(Value::as_array).is_some_and(|u| u.iter().any(|x| x == usage));
            if owner_ok && usage_ok && key.get("keys").is_some_and(Value::is_object) {
                into.insert(user_id.clone(), key.clone());
            }
        }
    }
}

/// One-time keys claimed of users of other servers, checked.
#[derive(Debug, Default)]
pub struct RemoteClaims {
    /// User → device → `<algorithm>:<key_id>` → key.
    pub one_time_keys: Map<String, Value>,
    /// Server → why it gave nothing.
    pub failures: Map<String, Value>,
}

/// Claims of each server of the users in `wanted` (user → device →
/// algorithm; users of this server are the caller's) one key per device.
pub fn claim_keys(
    app: &App,
    wanted: &BTreeMap<String, BTreeMap<String, String>>,
    timeout: Duration,
) -> RemoteClaims {
    let mut out = RemoteClaims::default();
    let by_server = group_by_server(wanted);
    let jobs = by_server
        .iter()
        .map(|(server, users)| Job {
            server: server.clone(),
            uri: "/_matrix/federation/v1/user/keys/claim",
            body: json!({ "one_time_keys": users }),
        })
        .collect();
    for (server, answer) in fan_out(app, jobs, timeout, KEYS_ANSWER_MAX, &mut out.failures) {
        check_claim_answer(&answer, &by_server[&server], &mut out.one_time_keys);
    }
    out
}

/// Takes what a claim answer gives for the devices asked: per device
/// one key named `<algorithm>:<key_id>` with the algorithm asked for,
/// an object or a string (the spec allows both).
pub fn check_claim_answer(
    answer: &Value,
    asked: &BTreeMap<String, BTreeMap<String, String>>,
    out: &mut Map<String, Value>,
) {
    for (user_id, devices) in asked {
        let mut kept = Map::new();
        for (device_id, algorithm) in devices {
            let Some(keys) =
                answer.pointer_get(&["one_time_keys", user_id, device_id]).and_then(Value::as_object)
            else {
                continue;
            };
            let prefix = format!("{algorithm}:");
            let found = keys.iter().find(|(name, key)| {
                name.len() > prefix.len() && name.starts_with(&prefix) && (key.is_object() || key.is_string())
            });
            if let Some((name, key)) = found {
                kept.insert(device_id.clone(), json!({ name.clone(): key.clone() }));
            }
        }
        if !kept.is_empty() {
            out.insert(user_id.clone(), Value::Object(kept));
        }
    }
}

/// `wanted`'s users by their server (users with an invalid ID dropped).
fn group_by_server<T: Clone>(wanted: &BTreeMap<String, T>) -> BTreeMap<String, BTreeMap<String, T>> {
    let mut by_server: BTreeMap<String, BTreeMap<String, T>> = BTreeMap::new();
    for (user_id, what) in wanted {
        if let Some((_, server)) = ids::parse_user_id(user_id) {
            by_server.entry(server.to_owned()).or_default().insert(user_id.clone(), what.clone());
        }
    }
    by_server
}

/// Looks up nested object members by key (keys may hold `/` and `~`,
/// which a JSON pointer would need escaped).
trait PointerGet {
    fn pointer_get(&self, path: &[&str]) -> Option<&Value>;
}

impl PointerGet for Value {
    fn pointer_get(&self, path: &[&str]) -> Option<&Value> {
        path.iter().try_fold(self, |v, k| v.get(*k))
    }
}

/// One server's request of a fan-out.
struct Job {
    server: String,
    uri: &'static str,
    body: Value,
}

/// How a server's request went: no answer at all, or its answer.
enum Outcome {
    NoAnswer(Error),
    Answered(Result<Value>),
}

/// The `failures` entry for a server: the error's body and its status.
fn failure(e: &Error) -> Value {
    let mut v = e.body();
    v["status"] = json!(e.status());
    v
}

/// Fan-out threads running now, over all requests.
static THREADS: AtomicUsize = AtomicUsize::new(0);

/// A place among the [`THREADS_MAX`] threads, given back when dropped.
struct ThreadSlot;

impl ThreadSlot {
    fn take() -> Option<ThreadSlot> {
        THREADS
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < THREADS_MAX).then_some(n + 1))
            .ok()
            .map(|_| ThreadSlot)
    }
}

impl Drop for ThreadSlot {
    fn drop(&mut self) {
        THREADS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// POSTs each job's body to its server, in parallel, waiting at most
/// `timeout`; returns the 2xx JSON answers by server and records every
/// other outcome in `failures`.
fn fan_out(
    app: &App,
    jobs: Vec<Job>,
    timeout: Duration,
    max_bytes: u64,
    failures: &mut Map<String, Value>,
) -> Vec<(String, Value)> {
    let deadline = Instant::now() + timeout;
    let mut todo = VecDeque::new();
    for job in jobs {
        let refusal = if todo.len() == SERVERS_PER_REQUEST_MAX {
            Some(Error::new(
                ErrorKind::BadGateway,
                format!("not asked: one request asks at most {SERVERS_PER_REQUEST_MAX} servers"),
            ))
        } else if !app.federation.allowed(&job.server) {
            Some(Error::forbidden(format!("Federation with {} is not allowed", job.server)))
        } else if app.fed_memo.failing(&job.server) {
            Some(Error::new(
                ErrorKind::BadGateway,
                format!("not asked: {} failed to answer lately", job.server),
            ))
        } else {
            None
        };
        match refusal {
            Some(e) => {
                failures.insert(job.server, failure(&e));
            }
            None => todo.push_back(job),
        }
    }
    let servers: Vec<String> = todo.iter().map(|j| j.server.clone()).collect();
    if servers.is_empty() {
        return Vec::new();
    }
    let queue = Arc::new(Mutex::new(todo));
    let (tx, rx) = mpsc::channel::<(String, Option<Outcome>)>();
    let fed = app.federation.clone();
    let mut started = 0;
    if !timeout.is_zero() {
        for _ in 0..PARALLEL_PER_REQUEST.min(servers.len()) {
            let Some(slot) = ThreadSlot::take() else { break };
            let (queue, tx, fed) = (queue.clone(), tx.clone(), fed.clone());
            let spawned = std::thread::Builder::new().name("fed-query".into()).spawn(move || {
                let _slot = slot;
                loop {
                    let Some(job) = lock(&queue).pop_front() else { break };
                    // A server not begun by the deadline is not asked.
                    let outcome = (Instant::now() < deadline).then(|| ask(&fed, &job, max_bytes));
                    if tx.send((job.server, outcome)).is_err() {
                        break;
                    }
                }
            });
            if spawned.is_ok() {
                started += 1;
            }
        }
    }
    drop(tx);
    let mut answers = BTreeMap::new();
    let mut done = 0;
    while started > 0 && done < servers.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok((server, outcome)) = rx.recv_timeout(left) else { break };
        done += 1;
        let timed_out =
            || Error::new(ErrorKind::BadGateway, format!("{server} did not answer within {timeout:?}"));
        let result = match outcome {
            None => Err(timed_out()),
            Some(Outcome::NoAnswer(e)) => {
                app.fed_memo.failed(&server);
                Err(unreachable(&server, &e))
            }
            Some(Outcome::Answered(r)) => {
                app.fed_memo.answered(&server);
                r
            }
        };
        match result {
            Ok(v) => {
                answers.insert(server, v);
            }
            Err(e) => {
                failures.insert(server, failure(&e));
            }
        }
    }
    let mut out = Vec::new();
    for server in servers {
        match answers.remove(&server) {
            Some(v) => out.push((server, v)),
            None if failures.contains_key(&server) => {}
            None => {
                let e = if started == 0 && !timeout.is_zero() {
                    Error::new(ErrorKind::BadGateway, "not asked: too many requests to other servers at once")
                } else {
                    Error::new(ErrorKind::BadGateway, format!("{server} did not answer within {timeout:?}"))
                };
                failures.insert(server, failure(&e));
            }
        }
    }
    out
}

/// One server's request, on a fan-out thread.
fn ask(fed: &Federation, job: &Job, max_bytes: u64) -> Outcome {
    match fed.request(Method::Post, &job.server, job.uri, Some(&job.body), max_bytes) {
        Err(e) => Outcome::NoAnswer(e),
        Ok(answer) => Outcome::Answered(json_answer(&job.server, &answer)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_keep_bounded_strings_only() {
        let answer = json!({
            "displayname": "Bob", "avatar_url": "mxc://b.example/x", "m.tz": "Europe/Berlin",
            "extra": "dropped",
        });
        assert_eq!(
            checked_profile(&answer),
            json!({ "displayname": "Bob", "avatar_url": "mxc://b.example/x", "m.tz": "Europe/Berlin" })
        );
        let odd = json!({ "displayname": null, "avatar_url": "https://x/y", "m.tz": 5 });
        assert_eq!(checked_profile(&odd), json!({}));
        let long = json!({ "displayname": "x".repeat(DISPLAYNAME_MAX_BYTES + 1) });
        assert_eq!(checked_profile(&long), json!({}));
        assert_eq!(checked_profile(&json!([1])), json!({}));
    }

    #[test]
    fn aliases_need_a_room_and_valid_servers() {
        let answer = json!({ "room_id": "!r:b.example", "servers": ["c.example", "b.example", "bad name", "c.example", 7] });
        assert_eq!(
            checked_alias(&answer, "b.example"),
            Some(("!r:b.example".to_owned(), vec!["b.example".to_owned(), "c.example".to_owned()]))
        );
        assert_eq!(checked_alias(&json!({ "room_id": "r", "servers": [] }), "b"), None);
        assert_eq!(checked_alias(&json!({ "room_id": "!r:b.example" }), "b"), None);
        let many: Vec<String> = (0..200).map(|i| format!("s{i}.example")).collect();
        let (_, servers) = checked_alias(&json!({ "room_id": "!r:b", "servers": many }), "b").unwrap();
        assert_eq!(servers.len(), ALIAS_SERVERS_MAX);
    }

    #[test]
    fn directory_pages_are_reshaped_and_bad_rooms_dropped() {
        let answer = json!({
            "chunk": [
                { "room_id": "!a:b.example", "num_joined_members": 3, "world_readable": true,
                  "guest_can_join": false, "name": "A", "topic": 5, "secret": "x" },
                { "room_id": "not a room" },
                { "room_id": "!c:b.example", "num_joined_members": -1 },
                "junk",
            ],
            "next_batch": "n1", "prev_batch": 3, "total_room_count_estimate": 2,
        });
        let page = checked_public_rooms(&answer).unwrap();
        assert_eq!(
            page,
            json!({
                "chunk": [
                    { "room_id": "!a:b.example", "num_joined_members": 3, "world_readable": true,
                      "guest_can_join": false, "name": "A" },
                    { "room_id": "!c:b.example", "num_joined_members": 0, "world_readable": false,
                      "guest_can_join": false },
                ],
                "next_batch": "n1", "total_room_count_estimate": 2,
            })
        );
        assert_eq!(checked_public_rooms(&json!({ "rooms": [] })), None);
    }

    #[test]
    fn key_answers_keep_what_was_asked_and_names_itself() {
        let bob = "@bob:b.example";
        let keys = |user: &str, device: &str| json!({ "user_id": user, "device_id": device, "keys": {} });
        let answer = json!({
            "device_keys": {
                bob: { "D1": keys(bob, "D1"), "D2": keys(bob, "D2"), "D3": keys(bob, "OTHER"),
                       "D4": keys("@eve:b.example", "D4") },
                "@eve:b.example": { "E": keys("@eve:b.example", "E") },
            },
            "master_keys": { bob: { "user_id": bob, "usage": ["master"], "keys": { "ed25519:m": "m" } } },
            "self_signing_keys": { bob: { "user_id": bob, "usage": ["master"], "keys": {} } },
            "user_signing_keys": { bob: { "user_id": bob, "usage": ["user_signing"], "keys": {} } },
        });
        let mut all = RemoteKeys::default();
        check_keys_answer(&answer, &BTreeMap::from([(bob.to_owned(), vec![])]), &mut all);
        let devices: Vec<&String> = all.device_keys[bob].as_object().unwrap().keys().collect();
        assert_eq!(devices, ["D1", "D2"]);
        assert!(all.device_keys.get("@eve:b.example").is_none(), "not asked");
        assert!(all.master_keys.contains_key(bob));
        assert!(all.self_signing_keys.is_empty(), "the wrong usage");
        let mut one = RemoteKeys::default();
        check_keys_answer(&answer, &BTreeMap::from([(bob.to_owned(), vec!["D2".to_owned()])]), &mut one);
        assert_eq!(one.device_keys[bob].as_object().unwrap().len(), 1);
    }

    #[test]
    fn claims_keep_one_key_of_the_algorithm_asked() {
        let bob = "@bob:b.example";
        let answer = json!({ "one_time_keys": { bob: {
            "D1": { "signed_curve25519:AAA": { "key": "k" } },
            "D2": { "curve25519:BBB": "k2" },
            "D3": { "signed_curve25519:CCC": { "key": "k3" } },
        } } });
        let asked = BTreeMap::from([(
            bob.to_owned(),
            BTreeMap::from([
                ("D1".to_owned(), "signed_curve25519".to_owned()),
                ("D2".to_owned(), "signed_curve25519".to_owned()),
            ]),
        )]);
        let mut out = Map::new();
        check_claim_answer(&answer, &asked, &mut out);
        assert_eq!(
            out,
            json!({ bob: { "D1": { "signed_curve25519:AAA": { "key": "k" } } } })
                .as_object()
                .unwrap()
                .clone()
        );
    }

    #[test]
    fn timeouts_default_and_are_capped() {
        assert_eq!(keys_timeout(None), Duration::from_millis(KEYS_TIMEOUT_DEFAULT_MS));
        assert_eq!(keys_timeout(Some(1500)), Duration::from_millis(1500));
        assert_eq!(keys_timeout(Some(i64::MAX)), Duration::from_millis(KEYS_TIMEOUT_MAX_MS));
        assert_eq!(keys_timeout(Some(-1)), Duration::ZERO);
    }

    #[test]
    fn thread_slots_are_bounded_and_given_back() {
        let slots: Vec<ThreadSlot> = std::iter::from_fn(ThreadSlot::take).take(THREADS_MAX + 1).collect();
        assert!(slots.len() <= THREADS_MAX);
        assert!(ThreadSlot::take().is_none());
        drop(slots);
        assert!(ThreadSlot::take().is_some());
    }

    #[test]
    fn hierarchy_answers_keep_what_fits() {
        let child = |key: &str, via: Value| {
            json!({ "type": "m.space.child", "state_key": key, "sender": "@a:b.example",
                    "origin_server_ts": 5, "content": { "via": via, "suggested": true, "extra": 1 } })
        };
        let answer = json!({
            "room": {
                "room_id": "!s:b.example", "name": "S", "num_joined_members": "many", "room_version": "10",
                "allowed_room_ids": ["!a:b.example", "bad", 3],
                "children_state": [child("!c:b.example", json!(["b.example", "bad name!"])), child("bad", json!([]))],
            },
            "children": [{ "room_id": "!c:b.example", "join_rule": "public" }, { "room_id": 7 }],
            "inaccessible_children": ["!x:b.example", "nope"],
        });
        let h = checked_hierarchy(&answer, "!s:b.example").expect("a hierarchy");
        assert_eq!(h["room"]["num_joined_members"], 0);
        assert_eq!(h["room"]["room_version"], "10");
        assert_eq!(h["room"]["allowed_room_ids"], json!(["!a:b.example"]));
        assert_eq!(
            h["room"]["children_state"],
            json!([{ "type": "m.space.child", "state_key": "!c:b.example", "sender": "@a:b.example",
                     "origin_server_ts": 5, "content": { "via": ["b.example"], "suggested": true } }])
        );
        assert_eq!(h["children"].as_array().map(Vec::len), Some(1));
        assert_eq!(h["inaccessible_children"], json!(["!x:b.example"]));
        // Another room than the one asked for, or no room, is no answer.
        assert!(checked_hierarchy(&answer, "!other:b.example").is_none());
        assert!(checked_hierarchy(&json!({ "children": [] }), "!s:b.example").is_none());
    }
}
