//! The original specification's v1 surface, still served (under `api/v1`,
//! `r0` and `v3`) for old clients and for room previews: `/initialSync`,
//! `/rooms/{roomId}/initialSync`, the `/events` stream and
//! `/events/{eventId}`.
//!
//! Tokens are `/sync`'s (`sync::Since`): `/initialSync`'s `end` can be
//! given to `/events` or `/sync`, and the other way round. A token
//! `s{p}_{e}` means "everything through stream position `p`", so `/events`
//! from it returns the events after `p`.
//!
//! Every event returned passes history visibility (`Visibility::may_see`),
//! as on the other read paths. `/events` with nothing new waits in the hub
//! like `/sync`, never on an HTTP worker; what it returns is bounded
//! ([`STREAM_CHUNK_MAX`] room events), the rest coming with the next call.
//! The initial syncs carry the presence of the user's contacts (everyone
//! sharing a joined room); `/events` does not carry presence changes yet.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use serde_json::{json, Value};

use crate::api::Waiter;
use crate::api::{Auth, Poll, Request, Response};
use crate::app::App;
use crate::ephemeral::presence_event;
use crate::error::{Error, Result};
use crate::rooms::format::{client_event, Viewer};
use crate::rooms::visibility::{self, Visibility};
use crate::rooms::{self, token};
use crate::storage::events::{self, Dir, StoredEvent};
use crate::storage::{self, account_data, rooms as room_store, state};
use crate::sync::Since;

/// Messages per room in an initial sync unless the client asks otherwise.
const MESSAGES_LIMIT_DEFAULT: usize = 10;
/// Most messages per room an initial sync returns.
const MESSAGES_LIMIT_MAX: usize = 100;
/// Most events examined per room to fill an initial sync's messages
/// (history visibility may hide many).
const MESSAGES_SCAN_MAX: usize = 1000;
/// Events read from storage per step of that scan.
const MESSAGES_SCAN_BATCH: usize = 100;
/// Most room events one `/events` answer holds; the next call continues.
const STREAM_CHUNK_MAX: usize = 100;
/// Most room events one `/events` computation examines; past this it
/// answers with what it has (maybe nothing) and a token to go on from.
const STREAM_SCAN_MAX: usize = 1000;

// ------------------------------------------------------------ initial sync

/// GET /_matrix/client/v3/initialSync?limit&archived: every room the user
/// is joined to or invited to (and, with `archived=true`, has left), with
/// its current state and newest messages.
pub fn initial_sync(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let limit = limit_query(req)?;
    let archived = match req.query("archived") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(Error::invalid_param("archived must be true or false")),
    };
    app.db.read(|conn| {
        let ctx = Ctx::new(app, conn, who)?;
        let data = account_data::changed(conn, &who.user_id, 0, ctx.now_pos)?;
        let mut rooms = Vec::new();
        for (room_id, membership, event_id, _) in state::memberships_after(conn, &who.user_id, 0)? {
            match membership.as_str() {
                "join" => rooms.push(ctx.room_info(&room_id, &membership, None, limit, &data)?),
                "invite" => {
                    let mut info = json!({ "room_id": room_id, "membership": membership });
                    if let Some(e) = events::get(conn, &event_id)? {
                        if let Some(invite) = ctx.format(&e)? {
                            info["invite"] = invite;
                        }
                    }
                    rooms.push(info);
                }
                "leave" | "ban" if archived => {
                    let Some(left) = events::get(conn, &event_id)? else { continue };
                    rooms.push(ctx.room_info(&room_id, &membership, Some(&left), limit, &data)?);
                }
                _ => {}
            }
        }
        let global: Vec<Value> = data
            .iter()
            .filter(|(room, _, _)| room.is_empty())
            .map(|(_, kind, content)| account_data_event(kind, content))
            .collect();
        let joined = state::rooms_of_user(conn, &who.user_id, "join")?;
        let presence = contacts_presence(app, conn, &who.user_id, &joined)?;
        Response::ok(json!({
            "end": ctx.end(ctx.now_pos),
            "rooms": rooms,
            "presence": presence,
            "account_data": global,
        }))
    })
}

/// GET /_matrix/client/v3/rooms/{roomId}/initialSync?limit: one room's
/// state and newest messages. Members see the current state; anyone sees
/// it while the room is world-readable (a preview); a user who left sees
/// the room as it was when they left. Others are refused, and so is an
/// unknown room, so the answer does not tell whether it exists.
pub fn room_initial_sync(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let room_id = req.param("roomId");
    let limit = limit_query(req)?;
    app.db.read(|conn| {
        let refused = || Error::forbidden("You are not a member of this room and never were");
        if room_store::get(conn, room_id)?.is_none() {
            return Err(refused());
        }
        let membership = state::membership(conn, &who.user_id, room_id)?;
        let upto = if membership.as_deref() == Some("join") || visibility::world_readable(conn, room_id)? {
            None
        } else {
            Some(rooms::read::left_event(conn, room_id, &who.user_id)?.ok_or_else(refused)?)
        };
        let ctx = Ctx::new(app, conn, who)?;
        let data = account_data::changed(conn, &who.user_id, 0, ctx.now_pos)?;
        let membership = membership.as_deref().unwrap_or("leave");
        let mut info = ctx.room_info(room_id, membership, upto.as_ref(), limit, &data)?;
        // The members' presence, for a member; a preview or a past stay
        // shows none.
        info["presence"] = match membership {
            "join" => json!(contacts_presence(app, conn, &who.user_id, &[room_id.to_owned()])?),
            _ => json!([]),
        };
        Response::ok(info)
    })
}

/// The `m.presence` events of `user_id` and of everyone joined to one of
/// `rooms` (the user's contacts), as they stand now, by user ID; a user
/// the server has not seen is `offline`. None when presence is off.
fn contacts_presence(app: &App, conn: &Connection, user_id: &str, rooms: &[String]) -> Result<Vec<Value>> {
    if !app.ephemeral.presence_enabled() {
        return Ok(Vec::new());
    }
    let mut users = std::collections::BTreeSet::from([user_id.to_owned()]);
    for room in rooms {
        users.extend(state::members(conn, room, "join")?);
    }
    let now = storage::now_ms();
    Ok(users.iter().map(|u| presence_event(u, &app.ephemeral.presence_of(u, now))).collect())
}

/// The `limit` query parameter, defaulted and clamped.
fn limit_query(req: &Request) -> Result<usize> {
    match req.query("limit") {
        None => Ok(MESSAGES_LIMIT_DEFAULT),
        Some(text) => text
            .parse::<usize>()
            .map(|n| n.min(MESSAGES_LIMIT_MAX))
            .map_err(|_| Error::invalid_param("limit must be a whole number")),
    }
}

/// What the initial syncs share within one read snapshot.
struct Ctx<'a> {
    conn: &'a Connection,
    user_id: &'a str,
    viewer: Viewer<'a>,
    now_ms: i64,
    now_pos: i64,
    ephemeral: u64,
    /// The users the viewer ignores: their messages are left out.
    ignored: HashSet<String>,
}

impl<'a> Ctx<'a> {
    fn new(app: &App, conn: &'a Connection, who: &'a Auth) -> Result<Ctx<'a>> {
        Ok(Ctx {
            conn,
            user_id: &who.user_id,
            viewer: Viewer { user_id: &who.user_id, device_id: &who.device_id },
            now_ms: storage::now_ms(),
            now_pos: events::current_pos(conn)?,
            ephemeral: app.hub.current_ephemeral(),
            ignored: account_data::ignored_users(conn, &who.user_id)?,
        })
    }

    /// The token for "everything through `pos`".
    fn end(&self, pos: i64) -> String {
        Since { pos, ephemeral: self.ephemeral }.format()
    }

    /// The client form of an event; `None` if it cannot be read (logged).
    fn format(&self, e: &StoredEvent) -> Result<Option<Value>> {
        client_event(self.conn, e, Some(self.viewer), self.now_ms)
    }

    /// A room as `/initialSync` shows it: its current state and newest
    /// messages, or, with `left` (the event that ended the user's stay),
    /// its state and messages up to that event.
    fn room_info(
        &self,
        room_id: &str,
        membership: &str,
        left: Option<&StoredEvent>,
        limit: usize,
        data: &[(String, String, Value)],
    ) -> Result<Value> {
        let (upto, state_map) = match left {
            Some(e) => (e.pos, rooms::state_after(self.conn, e)?),
            None => (self.now_pos, state::current_state(self.conn, room_id)?),
        };
        let messages = self.recent(room_id, upto + 1, limit)?;
        // Backwards from `s{p}` come the events before `p`.
        let start = token::at(messages.first().map_or(upto + 1, |e| e.pos));
        let mut chunk = Vec::with_capacity(messages.len());
        for e in &messages {
            chunk.extend(self.format(e)?);
        }
        let mut ids: Vec<&String> = state_map.values().collect();
        ids.sort();
        let mut state_events = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(e) = events::get(self.conn, id)? {
                state_events.extend(self.format(&e)?);
            }
        }
        let published = room_store::get(self.conn, room_id)?.is_some_and(|r| r.published);
        let room_data: Vec<Value> = data
            .iter()
            .filter(|(room, _, _)| room == room_id)
            .map(|(_, kind, content)| account_data_event(kind, content))
            .collect();
        Ok(json!({
            "room_id": room_id,
            "membership": membership,
            "messages": { "chunk": chunk, "start": start, "end": self.end(upto) },
            "state": state_events,
            "visibility": if published { "public" } else { "private" },
            "account_data": room_data,
        }))
    }

    /// The newest `limit` events before `before` the user may see, oldest
    /// first, looking at no more than [`MESSAGES_SCAN_MAX`].
    fn recent(&self, room_id: &str, before: i64, limit: usize) -> Result<Vec<StoredEvent>> {
        let mut vis = Visibility::new(self.conn, self.user_id, room_id);
        let mut out = Vec::new();
        let mut cursor = before;
        let mut scanned = 0;
        while out.len() < limit && scanned < MESSAGES_SCAN_MAX {
            let page =
                events::room_events(self.conn, room_id, cursor, None, Dir::Backward, MESSAGES_SCAN_BATCH)?;
            let done = page.len() < MESSAGES_SCAN_BATCH;
            for e in page {
                scanned += 1;
                cursor = e.pos;
                if out.len() < limit
                    && !account_data::hides(&self.ignored, &e.sender, e.state_key.is_some())
                    && vis.may_see(&e)?
                {
                    out.push(e);
                }
            }
            if done {
                break;
            }
        }
        out.reverse();
        Ok(out)
    }
}

/// An account data entry as an event.
fn account_data_event(kind: &str, content: &Value) -> Value {
    json!({ "type": kind, "content": content })
}

// ------------------------------------------------------------ single event

/// GET /_matrix/client/v3/events/{eventId}: an event the user may not see
/// is as absent as one that does not exist.
pub fn get_event(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let event_id = req.param("eventId");
    app.db.read(|conn| {
        let not_found = || Error::not_found("Event not found");
        let e = events::get(conn, event_id)?.ok_or_else(not_found)?;
        if !Visibility::new(conn, &who.user_id, &e.room_id).may_see(&e)? {
            return Err(not_found());
        }
        let viewer = Viewer { user_id: &who.user_id, device_id: &who.device_id };
        Response::ok(client_event(conn, &e, Some(viewer), storage::now_ms())?.ok_or_else(not_found)?)
    })
}

// ------------------------------------------------------------ event stream

/// GET /_matrix/client/v3/events?from&timeout&room_id&limit&dir: what happened after
/// `from` in the user's rooms (room events, receipts, account data), or,
/// with `room_id`, in that one room (a preview of a world-readable room,
/// or a room the user is in). Without `from` the stream starts now. With
/// nothing new the request waits up to `timeout` ms (clamped to
/// `sync_timeout_max_ms`) and then answers with an empty chunk and
/// `end` = `start` = `from`.
pub fn events(app: &App, req: &Request) -> Result<Poll> {
    let who = req.user()?;
    let from = match req.query("from") {
        None => None,
        Some(t) => Some((Since::parse(t).ok_or_else(|| Error::invalid_param("Invalid from token"))?, t)),
    };
    // The stream runs forwards only; `dir` and `limit` are the pagination
    // parameters the original specification let it take.
    match req.query("dir") {
        None | Some("f") => {}
        Some("b") => return Err(Error::invalid_param("The event stream only goes forwards: dir=f")),
        Some(_) => return Err(Error::invalid_param("dir must be 'f'")),
    }
    let limit = match req.query("limit") {
        None => STREAM_CHUNK_MAX,
        Some(t) => t
            .parse::<u64>()
            .map_err(|_| Error::invalid_param("limit must be a whole number"))?
            .clamp(1, STREAM_CHUNK_MAX as u64) as usize,
    };
    let timeout_ms = match req.query("timeout") {
        None => 0,
        Some(t) => t.parse::<u64>().map_err(|_| Error::invalid_param("timeout must be a whole number"))?,
    }
    .min(app.config.sync_timeout_max_ms);
    let peek = req.query("room_id").map(str::to_owned);
    let (from, from_token) = app.db.read(|conn| {
        if let Some(room_id) = &peek {
            let allowed = room_store::get(conn, room_id)?.is_some()
                && (state::membership(conn, &who.user_id, room_id)?.as_deref() == Some("join")
                    || visibility::world_readable(conn, room_id)?);
            if !allowed {
                return Err(Error::forbidden("You may not view this room"));
            }
        }
        Ok(match from {
            Some((since, text)) => (since, text.to_owned()),
            None => {
                let now = Since { pos: events::current_pos(conn)?, ephemeral: app.hub.current_ephemeral() };
                (now, now.format())
            }
        })
    })?;
    let mut waiter = EventsWaiter {
        user_id: who.user_id.clone(),
        device_id: who.device_id.clone(),
        from: from.pos,
        from_token,
        limit,
        peek,
        rooms: HashSet::new(),
        seen: (0, 0),
    };
    if let Some(answer) = waiter.compute(app)? {
        return Ok(Poll::Ready(answer));
    }
    if timeout_ms == 0 {
        return Ok(Poll::Ready(waiter.empty()));
    }
    Ok(Poll::Wait(Box::new(waiter), Instant::now() + Duration::from_millis(timeout_ms)))
}

/// An `/events` request waiting for something new.
struct EventsWaiter {
    user_id: String,
    device_id: String,
    /// The stream position the client has seen everything through.
    from: i64,
    /// The `from` token as given (or made), echoed as `start`.
    from_token: String,
    /// Most room events per answer.
    limit: usize,
    /// The one room watched, for a preview.
    peek: Option<String>,
    rooms: HashSet<String>,
    seen: (i64, u64),
}

impl EventsWaiter {
    /// The answer if there is something after `from`, `None` if not.
    fn compute(&mut self, app: &App) -> Result<Option<Response>> {
        let ephemeral = app.hub.current_ephemeral();
        let stream = app.db.read(|conn| {
            let q = StreamQuery {
                conn,
                user_id: &self.user_id,
                viewer: Viewer { user_id: &self.user_id, device_id: &self.device_id },
                from: self.from,
                limit: self.limit,
                peek: self.peek.as_deref(),
            };
            q.run()
        })?;
        self.seen = (stream.now_pos, ephemeral);
        self.rooms = stream.watched;
        let Some(end) = stream.end else { return Ok(None) };
        Ok(Some(Response {
            status: 200,
            body: Some(json!({
                "chunk": stream.chunk,
                "start": self.from_token,
                "end": Since { pos: end, ephemeral }.format(),
            })),
        }))
    }

    /// Nothing new: the client goes on from where it was.
    fn empty(&self) -> Response {
        Response {
            status: 200,
            body: Some(json!({ "chunk": [], "start": self.from_token, "end": self.from_token })),
        }
    }
}

impl Waiter for EventsWaiter {
    fn user_id(&self) -> &str {
        &self.user_id
    }
    fn rooms(&self) -> &HashSet<String> {
        &self.rooms
    }
    fn seen(&self) -> (i64, u64) {
        self.seen
    }
    fn poll(&mut self, app: &App) -> Result<Option<Response>> {
        self.compute(app)
    }
    fn timeout_response(&mut self, app: &App) -> Result<Response> {
        Ok(self.compute(app)?.unwrap_or_else(|| self.empty()))
    }
}

/// One computation of the stream, inside one read snapshot.
struct StreamQuery<'a> {
    conn: &'a Connection,
    user_id: &'a str,
    viewer: Viewer<'a>,
    from: i64,
    /// Most room events in the answer, at most [`STREAM_CHUNK_MAX`].
    limit: usize,
    peek: Option<&'a str>,
}

/// What a stream computation found.
struct Stream {
    chunk: Vec<Value>,
    /// The position the answer covers everything through; `None` if there
    /// is nothing after `from`.
    end: Option<i64>,
    /// The newest stream position when computed.
    now_pos: i64,
    /// The rooms whose events concern this stream.
    watched: HashSet<String>,
}

impl StreamQuery<'_> {
    fn run(&self) -> Result<Stream> {
        let conn = self.conn;
        let now_pos = events::current_pos(conn)?;
        // A token from the future (a restored database) reads as "now".
        let from = self.from.min(now_pos);
        let (joined, candidates): (HashSet<String>, Vec<String>) = match self.peek {
            Some(room) => (HashSet::from([room.to_owned()]), vec![room.to_owned()]),
            None => {
                let joined: HashSet<String> =
                    state::rooms_of_user(conn, self.user_id, "join")?.into_iter().collect();
                // Rooms the user left or was invited to meanwhile: their
                // events up to the change (and the change itself) count.
                let mut all = joined.clone();
                for (room, _, _, _) in state::memberships_after(conn, self.user_id, from)? {
                    all.insert(room);
                }
                let mut list: Vec<String> = all.into_iter().collect();
                list.sort();
                (joined, list)
            }
        };
        let ignored = account_data::ignored_users(conn, self.user_id)?;
        let (picked, end) = self.room_events(&candidates, &ignored, from, now_pos)?;
        let now_ms = storage::now_ms();
        let mut chunk = Vec::with_capacity(picked.len());
        for e in &picked {
            chunk.extend(client_event(conn, e, Some(self.viewer), now_ms)?);
        }
        if self.peek.is_none() {
            let mut rooms: Vec<&String> = joined.iter().collect();
            rooms.sort();
            for room in rooms {
                if let Some(r) = self.receipts(room, from, end)? {
                    chunk.push(r);
                }
            }
            for (room, kind, content) in account_data::changed(conn, self.user_id, from, end)? {
                let mut event = account_data_event(&kind, &content);
                if !room.is_empty() {
                    event["room_id"] = json!(room);
                }
                chunk.push(event);
            }
        }
        // A scan cut short counts as something new even if it kept nothing,
        // so the client moves past what it may not see.
        let something = !chunk.is_empty() || end < now_pos;
        Ok(Stream { chunk, end: something.then_some(end), now_pos, watched: joined })
    }

    /// The room events in `(from, now_pos]` of `rooms` the user may see, in
    /// stream order, at most `limit`; and the position through
    /// which all were examined.
    fn room_events(
        &self,
        rooms: &[String],
        ignored: &HashSet<String>,
        from: i64,
        now_pos: i64,
    ) -> Result<(Vec<StoredEvent>, i64)> {
        let mut vis: HashMap<&str, Visibility> =
            rooms.iter().map(|r| (r.as_str(), Visibility::new(self.conn, self.user_id, r))).collect();
        let mut picked = Vec::new();
        let mut cursor = from;
        let mut examined = 0;
        loop {
            // Each room's first events past the cursor; merged, the first
            // `limit` of them are the stream's next ones. One more
            // per room tells whether the merge left any out.
            let mut page = Vec::new();
            for room in rooms {
                page.extend(events::room_events(
                    self.conn,
                    room,
                    cursor,
                    Some(now_pos + 1),
                    Dir::Forward,
                    self.limit + 1,
                )?);
            }
            page.sort_by_key(|e| e.pos);
            let more = page.len() > self.limit;
            page.truncate(self.limit);
            examined += page.len();
            for e in page {
                cursor = e.pos;
                let own_membership =
                    e.kind == "m.room.member" && e.state_key.as_deref() == Some(self.user_id);
                let visible = match vis.get_mut(e.room_id.as_str()) {
                    Some(_) if account_data::hides(ignored, &e.sender, e.state_key.is_some()) => false,
                    Some(v) => own_membership || v.may_see(&e)?,
                    None => false,
                };
                if visible {
                    picked.push(e);
                }
            }
            if !more {
                return Ok((picked, now_pos));
            }
            if !picked.is_empty() || examined >= STREAM_SCAN_MAX {
                return Ok((picked, cursor));
            }
        }
    }

    /// The room's receipts that changed in `(from, upto]`, as one
    /// `m.receipt` event; private receipts only for their owner.
    fn receipts(&self, room_id: &str, from: i64, upto: i64) -> Result<Option<Value>> {
        let content = rooms::format::receipt_content(self.conn, room_id, from, upto, self.user_id)?;
        Ok((!content.is_empty())
            .then(|| json!({ "type": "m.receipt", "room_id": room_id, "content": content })))
    }
}
