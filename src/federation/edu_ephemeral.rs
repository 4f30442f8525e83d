//! Typing, receipts and presence across servers: the `m.typing`,
//! `m.receipt` and `m.presence` EDUs, both ways.
//!
//! Received: a server speaks only for its own users, so every entry whose
//! user is not of the origin is dropped; typing and receipts count only
//! for a user joined to the room here (which also means the room is
//! known); presence only for a user joined to some room here (whose
//! presence local users may then see by the shared-room rule). What is
//! accepted goes into the same tables as local typing, receipts and
//! presence (`ephemeral`, `storage::receipts`), so sync and
//! `/presence/{userId}/status` show it the same way. Every EDU is bounded:
//! at most [`RECEIPT_ROOMS_MAX`] rooms × [`RECEIPT_USERS_MAX`] users of a
//! receipt EDU and [`PRESENCE_PUSH_MAX`] users of a presence EDU are read.
//!
//! Sent, to the servers with a user joined to the room (or, for presence,
//! to some room of the user), through the federation outbox
//! (`storage::federation::queue`):
//! - typing on every start (a refresh too: the receiver's notice must be
//!   renewed) and stop, with Hearth's `timeout` (the notice's length,
//!   which the spec's EDU does not carry). Receivers that do not know it
//!   use their own period (Synapse: a minute), so a notice that ran out
//!   here without a stop is followed by a stop too. A received notice
//!   without `timeout` lasts [`REMOTE_TYPING_TIMEOUT_MS`]. Typing is
//!   worthless late, so it is not queued for a destination backing off,
//!   and the sender drops typing rows that waited longer than
//!   [`TYPING_STALE_MS`] before being taken into a transaction
//!   ([`drop_stale_typing`]);
//! - `m.read` receipts (threaded ones with `thread_id`) in the write that
//!   stores them; `m.read.private` never leaves the server;
//! - presence, by a thread of its own ([`start`]): the local users
//!   whose presence changed since the last tick, in one EDU of at most
//!   [`PRESENCE_PUSH_MAX`] users per destination (so a flapping client
//!   costs at most one entry a second), and every [`PRESENCE_REPEAT_MS`]
//!   everyone not offline again, as receivers forget users they hear
//!   nothing of; and the presence of local members to a server newly in
//!   their room, or of a local user newly in a room to its servers
//!   ([`start`]). Not queued for a destination backing off either: the
//!   next change or repeat tells it.
//!
//! The original specification's presence list works across servers too:
//! the seeds say both users' servers store an agreed subscription but give
//! no wire form, so Hearth speaks the one early Synapse did — EDUs
//! `m.presence_invite`, `m.presence_accept` and (Hearth's) `m.presence_drop`,
//! each `{"observer_user", "observed_user"}`. Each server mirrors the rows
//! of `presence_list` that involve its users: putting a user of another
//! server on a list sends them an invite, which their server records as
//! the same row; the row is accepted on both sides once the reverse
//! subscription exists (as between local users), and the observed user's
//! server answers an accept. Presence then also goes to the servers of a
//! user's accepted watchers, and is taken from a user some local user has
//! accepted on their list. Servers that do not know these EDUs drop them,
//! and their users are seen by the shared-room rule alone.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{json, Value};

use crate::app::App;
use crate::core::ids;
use crate::ephemeral::{self, presence::STATUS_MSG_MAX_BYTES, typing, PresenceState};
use crate::error::{Error, Result};
use crate::hub::Changes;
use crate::storage::{self, federation as fed_store, graph, presence_list, state, users, Tx};

/// Length of a received typing notice without Hearth's `timeout`: the
/// spec names none; Synapse holds remote notices one minute and repeats
/// its own every 40 seconds while its user types.
pub const REMOTE_TYPING_TIMEOUT_MS: u64 = 60_000;
/// A queued typing notice not sent within this is dropped: by then it has
/// run out at the receiver anyway.
pub const TYPING_STALE_MS: i64 = typing::TYPING_TIMEOUT_MAX_MS as i64;
/// Rooms of one received `m.receipt` EDU that are read.
pub const RECEIPT_ROOMS_MAX: usize = 100;
/// Users per room of one received `m.receipt` EDU that are read.
pub const RECEIPT_USERS_MAX: usize = 100;
/// Users of one `m.presence` EDU, sent or read.
pub const PRESENCE_PUSH_MAX: usize = 100;
/// How often the presence of every local user not offline is told again.
pub const PRESENCE_REPEAT_MS: i64 = 25 * 60 * 1000;
/// Longest thread ID of a received receipt.
const THREAD_ID_MAX_BYTES: usize = 255;

fn server_of(user_id: &str) -> Option<&str> {
    ids::parse_user_id(user_id).map(|(_, server)| server)
}

fn bad(what: &'static str) -> Error {
    Error::bad_json(what)
}

/// The servers to tell about the room: those with a member joined, not
/// this one, that federation may talk to.
fn destinations(app: &App, conn: &rusqlite::Connection, room_id: &str) -> Result<Vec<String>> {
    let own = app.federation.server_name();
    let mut out = graph::servers_in_room(conn, room_id)?;
    out.retain(|s| s != own && app.federation.allowed(s));
    Ok(out)
}

fn queue_edu(tx: &Tx, destination: &str, edu_type: &str, content: Value) -> Result<()> {
    let body = json!({ "edu_type": edu_type, "content": content }).to_string();
    fed_store::queue(tx, destination, fed_store::Unit::Edu, &body, storage::now_ms())?;
    Ok(())
}

// ---------------------------------------------------------------- typing

/// Tells the room's other servers that local `user_id` started (for
/// `timeout_ms`) or stopped typing. Destinations backing off are skipped.
/// Takes the single writer only when there is someone to tell.
pub fn send_typing(app: &App, room_id: &str, user_id: &str, typing: bool, timeout_ms: u64) -> Result<()> {
    send_typing_all(app, &[(room_id, user_id)], typing, timeout_ms)
}

/// [`send_typing`] for several (room ID, user ID), in one write.
fn send_typing_all(app: &App, notices: &[(&str, &str)], typing: bool, timeout_ms: u64) -> Result<()> {
    if !app.federation.enabled() || notices.is_empty() {
        return Ok(());
    }
    let mut out = Vec::new();
    app.db.read(|c| {
        for (room_id, user_id) in notices {
            let mut to = destinations(app, c, room_id)?;
            to.retain(|d| !app.fed_queue.backing_off(d));
            let mut content = json!({ "room_id": room_id, "user_id": user_id, "typing": typing });
            if typing {
                content["timeout"] = json!(timeout_ms);
            }
            out.extend(to.into_iter().map(|d| (d, content.clone())));
        }
        Ok(())
    })?;
    if out.is_empty() {
        return Ok(());
    }
    app.db.write(|tx| {
        for (d, content) in &out {
            queue_edu(tx, d, "m.typing", content.clone())?;
        }
        Ok(())
    })
}

/// Tells other servers that local typing notices which ran out (the
/// client sent no stop) stopped: receivers that know no `timeout` would
/// show them for their own, longer, period.
fn send_typing_ran_out(app: &App) -> Result<()> {
    let ran_out = app.ephemeral.typing_ran_out();
    let own = app.federation.server_name();
    let ours: Vec<(&str, &str)> = ran_out
        .iter()
        .filter(|(_, user_id)| server_of(user_id) == Some(own))
        .map(|(r, u)| (r.as_str(), u.as_str()))
        .collect();
    send_typing_all(app, &ours, false, 0)
}

/// Drops the typing notices queued for `destination` that waited past
/// [`TYPING_STALE_MS`] and are not yet in a transaction (the sender calls
/// this before taking rows; a transaction already sent is resent whole).
pub fn drop_stale_typing(conn: &rusqlite::Connection, destination: &str, now: i64) -> Result<usize> {
    fed_store::drop_stale_edus(conn, destination, "m.typing", now.saturating_sub(TYPING_STALE_MS))
}

/// `m.typing` from `origin`.
pub fn receive_typing(app: &App, origin: &str, content: &Value) -> Result<()> {
    let room_id = content.get("room_id").and_then(Value::as_str).ok_or_else(|| bad("no room_id"))?;
    let user_id = content.get("user_id").and_then(Value::as_str).ok_or_else(|| bad("no user_id"))?;
    let is_typing = content.get("typing").and_then(Value::as_bool).ok_or_else(|| bad("no typing"))?;
    if server_of(user_id) != Some(origin) {
        return Err(Error::forbidden(format!("{user_id} is not a user of {origin}")));
    }
    if !ids::is_valid_room_id(room_id) {
        return Err(bad("room_id is not a room ID"));
    }
    let joined = app.db.read(|c| Ok(state::membership(c, user_id, room_id)?.as_deref() == Some("join")))?;
    if !joined {
        return Err(Error::forbidden(format!("{user_id} is not joined to {room_id}")));
    }
    let now = storage::now_ms();
    let until = is_typing.then(|| {
        let timeout = match content.get("timeout").and_then(Value::as_u64) {
            Some(ms) => typing::clamp_timeout(Some(ms)),
            None => REMOTE_TYPING_TIMEOUT_MS,
        };
        now.saturating_add(timeout as i64)
    });
    if let Some(serial) = app.ephemeral.set_typing(&app.hub, room_id, user_id, until, now) {
        app.hub.notify(Changes::ephemeral(serial, &[room_id], &[]));
    }
    Ok(())
}

// -------------------------------------------------------------- receipts

/// Queues local `user_id`'s `m.read` receipt for the room's other servers,
/// in the write that stores it. Any other receipt type stays here.
#[allow(clippy::too_many_arguments)]
pub fn send_receipt(
    app: &App,
    tx: &Tx,
    room_id: &str,
    user_id: &str,
    receipt_type: &str,
    thread_id: &str,
    event_id: &str,
    ts: i64,
) -> Result<()> {
    if receipt_type != "m.read" || !app.federation.enabled() {
        return Ok(());
    }
    let to = destinations(app, tx, room_id)?;
    if to.is_empty() {
        return Ok(());
    }
    let mut data = json!({ "ts": ts });
    if !thread_id.is_empty() {
        data["thread_id"] = json!(thread_id);
    }
    let content = json!({ room_id: { "m.read": { user_id: { "event_ids": [event_id], "data": data } } } });
    for d in &to {
        queue_edu(tx, d, "m.receipt", content.clone())?;
    }
    Ok(())
}

/// One receipt of a received EDU, checked for shape.
struct ReceivedReceipt<'a> {
    room_id: &'a str,
    user_id: &'a str,
    event_id: &'a str,
    thread_id: &'a str,
    ts: i64,
}

/// The `m.read` receipts of an EDU's content whose user is of `origin`
/// and whose fields are well formed, within the bounds.
fn parse_receipts<'a>(origin: &str, content: &'a Value) -> Vec<ReceivedReceipt<'a>> {
    let mut out = Vec::new();
    let Some(rooms) = content.as_object() else { return out };
    for (room_id, by_type) in rooms.iter().take(RECEIPT_ROOMS_MAX) {
        if !ids::is_valid_room_id(room_id) {
            continue;
        }
        let Some(users) = by_type.get("m.read").and_then(Value::as_object) else { continue };
        for (user_id, r) in users.iter().take(RECEIPT_USERS_MAX) {
            if server_of(user_id) != Some(origin) {
                crate::log::info(format_args!("dropping a receipt of {user_id} sent by {origin}"));
                continue;
            }
            // Servers send one event; with several, the last one counts.
            let Some(event_id) = r
                .get("event_ids")
                .and_then(Value::as_array)
                .and_then(|ids| ids.iter().rev().find_map(Value::as_str))
                .filter(|id| ids::is_valid_event_id(id))
            else {
                continue;
            };
            let data = r.get("data");
            let ts = data.and_then(|d| d.get("ts")).and_then(Value::as_i64).unwrap_or(0).max(0);
            let thread_id = match data.and_then(|d| d.get("thread_id")) {
                None | Some(Value::Null) => "",
                Some(Value::String(t))
                    if t.len() <= THREAD_ID_MAX_BYTES && (t == "main" || ids::is_valid_event_id(t)) =>
                {
                    t.as_str()
                }
                Some(_) => continue,
            };
            out.push(ReceivedReceipt { room_id, user_id, event_id, thread_id, ts });
        }
    }
    out
}

/// `m.receipt` from `origin`: the `m.read` receipts of its users joined
/// to the rooms, stored like local ones in one write.
pub fn receive_receipts(app: &App, origin: &str, content: &Value) -> Result<()> {
    let receipts = parse_receipts(origin, content);
    if receipts.is_empty() {
        return Ok(());
    }
    app.db.write(|tx| {
        let mut pos = None;
        for r in &receipts {
            if state::membership(tx, r.user_id, r.room_id)?.as_deref() != Some("join") {
                crate::log::info(format_args!(
                    "dropping a receipt of {} not joined to {}",
                    r.user_id, r.room_id
                ));
                continue;
            }
            let p = match pos {
                Some(p) => p,
                None => *pos.insert(storage::events::next_pos(tx)?),
            };
            storage::receipts::put(tx, r.room_id, r.user_id, "m.read", r.thread_id, r.event_id, r.ts, p)?;
            tx.changed(p, &[r.room_id], &[]);
        }
        Ok(())
    })
}

// -------------------------------------------------------------- presence

/// One `push` entry of an `m.presence` EDU.
fn presence_entry(view_user: &str, view: &ephemeral::PresenceView) -> Value {
    let mut e = json!({
        "user_id": view_user,
        "presence": view.state.as_str(),
        "last_active_ago": view.last_active_ago.unwrap_or(0),
        "currently_active": view.currently_active,
    });
    if let Some(msg) = &view.status_msg {
        e["status_msg"] = json!(msg);
    }
    e
}

/// How often local presence changes and typing that ran out are gathered
/// for other servers.
const TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// Rooms whose servers and local members are remembered, to notice a
/// server or a local user newly in one; past this, the memory starts over.
pub const ROOMS_WATCHED_MAX: usize = 10_000;
/// Changed rooms waiting for the presence thread; past this, changes are
/// not noted (a later change of the room is).
const ROOMS_PENDING_MAX: usize = 1_000;

/// Who was in a room when the presence thread last looked: the other
/// servers and the local members (joined).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Audience {
    servers: Vec<String>,
    locals: Vec<String>,
}

/// Starts the thread that queues for other servers, every [`TICK`], the
/// stops of local typing that ran out, and local presence: the changes
/// ([`send_presence`]), and the presence of
/// local members to a server newly in one of their rooms, or of a local
/// user newly in a room to its servers ([`greet`]; otherwise they would
/// wait for a change or the next repeat). Rooms are looked at when a
/// durable change touched them (the change feed). Called once by the
/// server, with federation on.
pub fn start(app: std::sync::Arc<App>) {
    let pending = std::sync::Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let noted = pending.clone();
    app.hub.subscribe(Box::new(move |c| {
        if c.pos == 0 || c.rooms.is_empty() {
            return;
        }
        let mut p = crate::util::lock(&noted);
        for r in &c.rooms {
            if p.len() >= ROOMS_PENDING_MAX {
                break;
            }
            p.insert(r.clone());
        }
    }));
    std::thread::Builder::new()
        .name("ephemeral-out".into())
        .spawn(move || {
            let mut seen: HashMap<String, Audience> = HashMap::new();
            loop {
                std::thread::sleep(TICK);
                if let Err(e) = send_presence(&app) {
                    crate::log::warn(format_args!(
                        "queueing presence for other servers failed: {}",
                        e.message
                    ));
                }
                if let Err(e) = send_typing_ran_out(&app) {
                    crate::log::warn(format_args!(
                        "queueing typing stops for other servers failed: {}",
                        e.message
                    ));
                }
                let rooms = std::mem::take(&mut *crate::util::lock(&pending));
                if let Err(e) = greet(&app, &mut seen, rooms) {
                    crate::log::warn(format_args!("queueing presence for newcomers failed: {}", e.message));
                }
            }
        })
        .expect("spawning the presence sender thread");
}

/// For each room, compared with what `seen` remembers of it: tells the
/// presence (if not offline) of all local members to servers new in the
/// room, and of local members new in it to all its servers. A room seen
/// for the first time counts as new altogether (cheap: after a start
/// everyone is offline until their client syncs).
fn greet(app: &App, seen: &mut HashMap<String, Audience>, rooms: BTreeSet<String>) -> Result<()> {
    if rooms.is_empty() || !app.federation.enabled() || !app.ephemeral.presence_enabled() {
        return Ok(());
    }
    let own = app.federation.server_name().to_owned();
    let now = storage::now_ms();
    let mut out: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    app.db.read(|c| {
        for room_id in rooms {
            let mut locals = state::members(c, &room_id, "join")?;
            locals.retain(|u| server_of(u) == Some(own.as_str()));
            let now_in = Audience { servers: destinations(app, c, &room_id)?, locals };
            if seen.len() >= ROOMS_WATCHED_MAX && !seen.contains_key(&room_id) {
                seen.clear();
            }
            let before = seen.insert(room_id, now_in.clone()).unwrap_or_default();
            if before == now_in {
                continue;
            }
            for user in &now_in.locals {
                let view = app.ephemeral.presence_of(user, now);
                if view.state == PresenceState::Offline {
                    continue;
                }
                let user_is_new = !before.locals.contains(user);
                for server in &now_in.servers {
                    if user_is_new || !before.servers.contains(server) {
                        out.entry(server.clone())
                            .or_default()
                            .insert(user.clone(), presence_entry(user, &view));
                    }
                }
            }
        }
        Ok(())
    })?;
    out.retain(|d, _| !app.fed_queue.backing_off(d));
    if out.is_empty() {
        return Ok(());
    }
    app.db.write(|tx| {
        for (d, entries) in &out {
            let entries: Vec<&Value> = entries.values().collect();
            for push in entries.chunks(PRESENCE_PUSH_MAX) {
                queue_edu(tx, d, "m.presence", json!({ "push": push }))?;
            }
        }
        Ok(())
    })
}

/// Queues the local presence changes due (see the module doc) for the
/// servers sharing a room with each user, in one write.
pub fn send_presence(app: &App) -> Result<()> {
    if !app.federation.enabled() || !app.ephemeral.presence_enabled() {
        return Ok(());
    }
    let own = app.federation.server_name().to_owned();
    let now = storage::now_ms();
    let changed = app.ephemeral.presence_to_federate(
        &app.hub,
        |u| server_of(u) == Some(own.as_str()),
        PRESENCE_REPEAT_MS,
        now,
    );
    if changed.is_empty() {
        return Ok(());
    }
    let by_destination = app.db.read(|c| {
        let mut rooms: HashMap<String, Vec<String>> = HashMap::new();
        let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for (user_id, view) in &changed {
            let mut to: Vec<String> = Vec::new();
            for room_id in state::rooms_of_user(c, user_id, "join")? {
                if !rooms.contains_key(&room_id) {
                    let d = destinations(app, c, &room_id)?;
                    rooms.insert(room_id.clone(), d);
                }
                to.extend(rooms[&room_id].iter().cloned());
            }
            // Accepted watchers on other servers (presence lists).
            for watcher in presence_list::watchers(c, user_id)? {
                if let Some(server) = server_of(&watcher).filter(|s| *s != own && app.federation.allowed(s)) {
                    to.push(server.to_owned());
                }
            }
            to.sort();
            to.dedup();
            let entry = presence_entry(user_id, view);
            for d in to {
                out.entry(d).or_default().push(entry.clone());
            }
        }
        Ok(out)
    })?;
    if by_destination.is_empty() {
        for (user_id, _) in &changed {
            crate::log::debug(format_args!("presence of {user_id}: no server to tell"));
        }
        return Ok(());
    }
    let by_destination: Vec<(String, Vec<Value>)> =
        by_destination.into_iter().filter(|(d, _)| !app.fed_queue.backing_off(d)).collect();
    if by_destination.is_empty() {
        return Ok(());
    }
    app.db.write(|tx| {
        for (d, entries) in &by_destination {
            for push in entries.chunks(PRESENCE_PUSH_MAX) {
                queue_edu(tx, d, "m.presence", json!({ "push": push }))?;
            }
        }
        Ok(())
    })
}

/// `m.presence` from `origin`: the presence of its users who are joined to
/// some room here.
pub fn receive_presence(app: &App, origin: &str, content: &Value) -> Result<()> {
    if !app.ephemeral.presence_enabled() {
        return Ok(());
    }
    let push = content.get("push").and_then(Value::as_array).ok_or_else(|| bad("no push list"))?;
    let now = storage::now_ms();
    for p in push.iter().take(PRESENCE_PUSH_MAX) {
        let Some(user_id) = p.get("user_id").and_then(Value::as_str) else { continue };
        if server_of(user_id) != Some(origin) {
            crate::log::info(format_args!("dropping the presence of {user_id} sent by {origin}"));
            continue;
        }
        let Some(presence) = p.get("presence").and_then(Value::as_str).and_then(PresenceState::parse) else {
            continue;
        };
        let status_msg = p
            .get("status_msg")
            .and_then(Value::as_str)
            .filter(|m| m.len() <= STATUS_MSG_MAX_BYTES)
            .map(str::to_owned);
        let last_active_ago = p.get("last_active_ago").and_then(Value::as_i64).map(|a| a.max(0));
        let currently_active = p.get("currently_active").and_then(Value::as_bool).unwrap_or(false);
        let audience = app.db.read(|c| {
            if state::rooms_of_user(c, user_id, "join")?.is_empty()
                && presence_list::watchers(c, user_id)?.is_empty()
            {
                return Ok(None);
            }
            Ok(Some(ephemeral::presence_audience(c, user_id)?))
        })?;
        let Some((rooms, users)) = audience else { continue };
        let changed = app.ephemeral.set_remote_presence(
            &app.hub,
            user_id,
            presence,
            status_msg,
            last_active_ago,
            currently_active,
            now,
        );
        if let Some(serial) = changed {
            let rooms: Vec<&str> = rooms.iter().map(String::as_str).collect();
            let users: Vec<&str> = users.iter().map(String::as_str).collect();
            app.hub.notify(Changes::ephemeral(serial, &rooms, &users));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- presence lists

/// The presence-list EDUs (see the module doc).
pub const PRESENCE_INVITE: &str = "m.presence_invite";
pub const PRESENCE_ACCEPT: &str = "m.presence_accept";
pub const PRESENCE_DROP: &str = "m.presence_drop";

/// Queues a presence-list EDU `kind` about `observer` (who has `observed`
/// on their list) for `to`'s server, in the caller's write. Nothing for a
/// server federation may not talk to.
pub fn send_presence_list(
    app: &App,
    tx: &Tx,
    to: &str,
    kind: &str,
    observer: &str,
    observed: &str,
) -> Result<()> {
    let Some(server) = server_of(to) else { return Ok(()) };
    if !app.federation.enabled() || server == app.federation.server_name() || !app.federation.allowed(server)
    {
        return Ok(());
    }
    queue_edu(tx, server, kind, json!({ "observer_user": observer, "observed_user": observed }))
}

/// The two users of a presence-list EDU from `origin`: `remote` must be
/// the origin's, `local` this server's and known here.
fn presence_list_users<'a>(
    app: &App,
    origin: &str,
    content: &'a Value,
    remote_key: &str,
    local_key: &str,
) -> Result<(&'a str, &'a str)> {
    let user = |k: &str| content.get(k).and_then(Value::as_str).filter(|u| ids::parse_user_id(u).is_some());
    let (Some(remote), Some(local)) = (user(remote_key), user(local_key)) else {
        return Err(bad("observer_user and observed_user must be user IDs"));
    };
    if server_of(remote) != Some(origin) || server_of(local) != Some(app.federation.server_name()) {
        return Err(bad("a presence-list EDU must be about a user of its origin and one of this server"));
    }
    if !app.db.read(|c| users::exists(c, local))? {
        return Err(bad("no such local user"));
    }
    Ok((remote, local))
}

/// `m.presence_invite` from `origin`: its user `observer` put local
/// `observed` on their list. Recorded as the same row here; accepted at
/// once if `observed` has `observer` on their own list, and then the
/// observer's server is told so and given `observed`'s presence.
pub fn receive_presence_invite(app: &App, origin: &str, content: &Value) -> Result<()> {
    let (observer, observed) = presence_list_users(app, origin, content, "observer_user", "observed_user")?;
    let newly = app.db.write(|tx| {
        if presence_list::count(tx, observer)? >= presence_list::LIST_MAX {
            return Ok(false);
        }
        let (accepted, newly) = presence_list::invite(tx, observer, observed)?;
        if accepted {
            send_presence_list(app, tx, observer, PRESENCE_ACCEPT, observer, observed)?;
        }
        Ok(newly)
    })?;
    if newly {
        agreed(app, observed, observer);
    }
    Ok(())
}

/// `m.presence_accept` from `origin`: its user `observed` agreed to be on
/// local `observer`'s list (they have `observer` on theirs).
pub fn receive_presence_accept(app: &App, origin: &str, content: &Value) -> Result<()> {
    let (observed, observer) = presence_list_users(app, origin, content, "observed_user", "observer_user")?;
    let newly = app.db.write(|tx| {
        if !presence_list::list(tx, observer)?.iter().any(|e| e.target == observed) {
            return Ok(false);
        }
        // The reverse subscription, mirrored: both rows become accepted.
        Ok(presence_list::invite(tx, observed, observer)?.1)
    })?;
    if newly {
        agreed(app, observer, observed);
    }
    Ok(())
}

/// `m.presence_drop` from `origin`: its user `observer` took local
/// `observed` off their list.
pub fn receive_presence_drop(app: &App, origin: &str, content: &Value) -> Result<()> {
    let (observer, observed) = presence_list_users(app, origin, content, "observer_user", "observed_user")?;
    app.db.write(|tx| presence_list::drop_target(tx, observer, observed))?;
    Ok(())
}

/// Local `local` and remote `remote` newly see each other: `local`'s
/// presence goes out again (to `remote`'s server now too), and `local`'s
/// syncs are woken.
fn agreed(app: &App, local: &str, remote: &str) {
    if let Some(serial) = app.ephemeral.reannounce(&app.hub, &[local]) {
        app.hub.notify(Changes::ephemeral(serial, &[], &[local, remote]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_are_read_only_for_the_origins_users_and_within_bounds() {
        let content = json!({
            "!r:b": { "m.read": {
                "@u:b": { "event_ids": ["$e1"], "data": { "ts": 5, "thread_id": "$root" } },
                "@forged:c": { "event_ids": ["$e2"], "data": { "ts": 5 } },
                "@bad:b": { "event_ids": [], "data": { "ts": 5 } },
                "@thread:b": { "event_ids": ["$e3"], "data": { "ts": 5, "thread_id": "not a thread" } },
            }, "m.read.private": { "@p:b": { "event_ids": ["$e4"], "data": { "ts": 1 } } } },
            "not a room": { "m.read": { "@u:b": { "event_ids": ["$e1"], "data": { "ts": 5 } } } },
        });
        let got = parse_receipts("b", &content);
        assert_eq!(got.len(), 1);
        let r = &got[0];
        assert_eq!(
            (r.room_id, r.user_id, r.event_id, r.thread_id, r.ts),
            ("!r:b", "@u:b", "$e1", "$root", 5)
        );

        let mut many = serde_json::Map::new();
        for i in 0..RECEIPT_USERS_MAX + 10 {
            many.insert(format!("@u{i}:b"), json!({ "event_ids": ["$e"], "data": { "ts": 1 } }));
        }
        let content = json!({ "!r:b": { "m.read": many } });
        assert_eq!(parse_receipts("b", &content).len(), RECEIPT_USERS_MAX);
    }

    #[test]
    fn presence_entries_carry_the_status_message() {
        let view = ephemeral::PresenceView {
            state: PresenceState::Online,
            last_active_ago: Some(7),
            currently_active: true,
            status_msg: Some("here".into()),
        };
        assert_eq!(
            presence_entry("@a:x", &view),
            json!({ "user_id": "@a:x", "presence": "online", "last_active_ago": 7,
                    "currently_active": true, "status_msg": "here" })
        );
    }
}
