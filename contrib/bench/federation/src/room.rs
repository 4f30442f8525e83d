//! A room the fake servers are resident in: events built with Hearth's own
//! `build_pdu` (hashed, signed by the sender's server, the version's event
//! ID), each cited auth event chosen by the spec's auth events selection,
//! `prev_events` a linear chain with increasing depth, and every event
//! checked with Hearth's auth rules (`core::auth::check` against exactly
//! the events it cites, plus `check_auth_events`) before it is kept: a
//! refused event stops the benchmark.
//!
//! [`ResidentRoom`] serves the room to a joining Hearth: `make_join` (a
//! template on the room's head) and `send_join` v2 (the state before the
//! join and its full auth chain, serialised once).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use hearth::core::auth::{self, auth_types_for_event, StateLookup};
use hearth::core::event::{self, build_pdu, PduTemplate};
use hearth::core::room_version::RoomVersion;
use hearth::crypto::sign::ServerKey;
use serde_json::{json, Value};

use crate::fake::{Answer, Body, Fake, Request, Resident};
use crate::Result;

const CREATE: &str = "m.room.create";
const MEMBER: &str = "m.room.member";

pub struct Stored {
    pub id: String,
    pub pdu: Value,
}

/// A room's events in the order they were made, and its current state.
pub struct Room {
    pub version: &'static RoomVersion,
    pub room_id: String,
    pub events: Vec<Stored>,
    index: HashMap<String, usize>,
    /// (type, state_key) → index in `events`.
    state: HashMap<(String, String), usize>,
    depth: u64,
    clock_ms: i64,
}

/// The state an event is checked against: the room's current state, but
/// only the entries the event cites (and the create event, which v12
/// never cites).
struct Cited<'a> {
    room: &'a Room,
    keys: &'a [(String, String)],
}

impl StateLookup for Cited<'_> {
    fn get(&self, kind: &str, state_key: &str) -> Option<&Value> {
        let create = kind == CREATE && state_key.is_empty();
        if !create && !self.keys.iter().any(|(k, s)| k == kind && s == state_key) {
            return None;
        }
        self.room.state.get(&(kind.to_owned(), state_key.to_owned())).map(|&i| &self.room.events[i].pdu)
    }
}

impl Room {
    /// A room with no events yet; from v12 its ID comes with the create
    /// event, before that it is `!bench…:resident`.
    pub fn new(version: &'static RoomVersion, resident: &str) -> Room {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let room_id =
            if version.room_id_from_create { String::new() } else { format!("!bench{nanos}:{resident}") };
        Room {
            version,
            room_id,
            events: Vec::new(),
            index: HashMap::new(),
            state: HashMap::new(),
            depth: 0,
            clock_ms: hearth::util::now_ms() - 30 * 24 * 3600 * 1000,
        }
    }

    pub fn head(&self) -> Option<&str> {
        self.events.last().map(|e| e.id.as_str())
    }

    /// The IDs of the auth events an event of this shape cites now.
    fn auth_ids(&self, kind: &str, state_key: Option<&str>, sender: &str, content: &Value) -> Vec<String> {
        auth_types_for_event(self.version, kind, state_key, sender, content)
            .into_iter()
            .filter_map(|k| self.state.get(&k).map(|&i| self.events[i].id.clone()))
            .collect()
    }

    /// Builds, signs (as `server` with `key`) and checks an event at the
    /// head of the room, then adds it; its ID.
    pub fn add(
        &mut self,
        server: &str,
        key: &ServerKey,
        sender: &str,
        kind: &str,
        state_key: Option<&str>,
        content: Value,
    ) -> Result<String> {
        // Timestamps a second apart, ending before now: history.
        self.clock_ms = (self.clock_ms + 1000).min(hearth::util::now_ms());
        let is_v12_create = kind == CREATE && self.version.room_id_from_create;
        let template = PduTemplate {
            event_id: None,
            room_id: (!is_v12_create).then(|| self.room_id.clone()),
            sender: sender.to_owned(),
            kind: kind.to_owned(),
            state_key: state_key.map(str::to_owned),
            auth_events: self.auth_ids(kind, state_key, sender, &content),
            content,
            redacts: None,
            prev_events: self.head().map(str::to_owned).into_iter().collect(),
            reference_hashes: Default::default(),
            depth: self.depth + 1,
            origin_server_ts: self.clock_ms,
        };
        let (id, pdu) = build_pdu(self.version, key, server, template)?;
        if is_v12_create {
            self.room_id = event::room_id_from_create(self.version, &pdu)?;
        }
        self.accept(id.clone(), pdu)?;
        Ok(id)
    }

    /// Checks `pdu` (built here or received) with Hearth's auth rules
    /// against the events it cites and, if it passes, adds it at the head.
    pub fn accept(&mut self, id: String, pdu: Value) -> Result<()> {
        event::validate_pdu_shape(self.version, &pdu)
            .map_err(|e| format!("event {id} has a bad shape: {e}"))?;
        let cited_ids = event::referenced_ids(self.version, &pdu, "auth_events")?;
        let mut cited: Vec<&Value> = Vec::with_capacity(cited_ids.len());
        let mut keys: Vec<(String, String)> = Vec::with_capacity(cited_ids.len());
        for cid in cited_ids {
            let &i =
                self.index.get(cid).ok_or_else(|| format!("event {id} cites an unknown auth event {cid}"))?;
            let e = &self.events[i].pdu;
            let field = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
            // A cited event must be the current state's: the chain is linear.
            let key = (field("type"), field("state_key"));
            if self.state.get(&key) != Some(&i) {
                return Err(format!("event {id} cites {cid}, which is not in the current state").into());
            }
            cited.push(e);
            keys.push(key);
        }
        auth::check_auth_events(self.version, &pdu, &cited)
            .map_err(|e| format!("Hearth's auth rules refuse the auth events of {id}: {e}\n{pdu}"))?;
        auth::check(self.version, &pdu, &Cited { room: self, keys: &keys })
            .map_err(|e| format!("Hearth's auth rules refuse {id}: {e}\n{pdu}"))?;
        let depth = pdu.get("depth").and_then(Value::as_u64).unwrap_or(0);
        self.depth = self.depth.max(depth);
        let i = self.events.len();
        if let Some(state_key) = pdu.get("state_key").and_then(Value::as_str) {
            let kind = pdu.get("type").and_then(Value::as_str).unwrap_or_default();
            self.state.insert((kind.to_owned(), state_key.to_owned()), i);
        }
        self.index.insert(id.clone(), i);
        self.events.push(Stored { id, pdu });
        Ok(())
    }

    /// The indices of the current state's events, in the order made.
    fn state_indices(&self) -> Vec<usize> {
        let mut ids: Vec<usize> = self.state.values().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// The full auth chain of the current state (every event an event of
    /// the state cites, transitively), state events included where they
    /// are in it, in the order made.
    fn auth_chain_indices(&self) -> Vec<usize> {
        let mut chain: BTreeSet<usize> = BTreeSet::new();
        let mut stack = self.state_indices();
        while let Some(i) = stack.pop() {
            for cid in
                event::referenced_ids(self.version, &self.events[i].pdu, "auth_events").unwrap_or_default()
            {
                if let Some(&c) = self.index.get(cid) {
                    if chain.insert(c) {
                        stack.push(c);
                    }
                }
            }
        }
        chain.into_iter().collect()
    }

    /// The `send_join` v2 answer for a join at the head: the state before
    /// it, its full auth chain (as Synapse sends it: the state events it
    /// contains are listed in both), the servers in the room. Serialised.
    pub fn join_answer(&self, origin: &str, servers: &[String]) -> Result<(Vec<u8>, usize, usize)> {
        use std::io::Write;
        let state = self.state_indices();
        let chain = self.auth_chain_indices();
        let mut out = Vec::with_capacity((state.len() + chain.len()) * 900);
        let list = |out: &mut Vec<u8>, name: &str, items: &[usize]| -> Result<()> {
            write!(out, "\"{name}\":[")?;
            for (n, &i) in items.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, &self.events[i].pdu)?;
            }
            out.push(b']');
            Ok(())
        };
        out.push(b'{');
        list(&mut out, "auth_chain", &chain)?;
        out.push(b',');
        list(&mut out, "state", &state)?;
        write!(
            out,
            ",\"origin\":{},\"servers_in_room\":{},\"members_omitted\":false}}",
            json!(origin),
            json!(servers)
        )?;
        Ok((out, state.len(), chain.len()))
    }

    /// A `make_join` template for `user_id` at the head.
    fn join_template(&self, origin: &str, user_id: &str) -> Value {
        let content = json!({ "membership": "join" });
        json!({
            "type": MEMBER,
            "room_id": self.room_id,
            "sender": user_id,
            "state_key": user_id,
            "content": content,
            "origin": origin,
            "origin_server_ts": hearth::util::now_ms(),
            "depth": self.depth + 1,
            "prev_events": self.head().into_iter().collect::<Vec<_>>(),
            "auth_events": self.auth_ids(MEMBER, Some(user_id), user_id, &content),
        })
    }
}

/// A join a [`ResidentRoom`] accepted: when its `send_join` arrived.
pub struct Joined {
    pub at: Instant,
}

/// A room served to joining servers.
pub struct ResidentRoom {
    room: Mutex<Room>,
    /// The pre-serialised `send_join` answer and the number of events the
    /// room had when it was made (it is stale once another event came).
    answer: Mutex<Option<(usize, Arc<Vec<u8>>)>>,
    servers: Vec<String>,
    joined: Mutex<Vec<Joined>>,
}

impl ResidentRoom {
    /// Serves `room`, whose servers are `servers`; its `send_join` answer
    /// serialised now. The answer's size, state and auth chain lengths.
    pub fn new(room: Room, servers: Vec<String>) -> Result<(ResidentRoom, usize, usize, usize)> {
        let (bytes, state, chain) = room.join_answer(&servers[0], &servers)?;
        let size = bytes.len();
        let answer = Mutex::new(Some((room.events.len(), Arc::new(bytes))));
        let r = ResidentRoom { room: Mutex::new(room), answer, servers, joined: Mutex::new(Vec::new()) };
        Ok((r, size, state, chain))
    }

    pub fn room(&self) -> MutexGuard<'_, Room> {
        self.room.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn joined(&self) -> MutexGuard<'_, Vec<Joined>> {
        self.joined.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn make_join(&self, fake: &Fake, req: &Request, room_id: &str, user_id: &str) -> Answer {
        let room = self.room();
        if room_id != room.room_id {
            return Answer::error(404, "M_NOT_FOUND", "unknown room");
        }
        let offered: Vec<String> = query_values(&req.target, "ver");
        if !offered.iter().any(|v| v == room.version.id) {
            let body = json!({
                "errcode": "M_INCOMPATIBLE_ROOM_VERSION",
                "error": "the room's version was not offered",
                "room_version": room.version.id,
            });
            return Answer::json(400, &body);
        }
        Answer::json(
            200,
            &json!({ "room_version": room.version.id, "event": room.join_template(&fake.name, user_id) }),
        )
    }

    fn send_join(&self, req: &Request, room_id: &str, event_id: &str) -> Answer {
        let at = Instant::now();
        let mut room = self.room();
        if room_id != room.room_id {
            return Answer::error(404, "M_NOT_FOUND", "unknown room");
        }
        let Some(pdu) = req.json() else {
            return Answer::error(400, "M_NOT_JSON", "the join is not JSON");
        };
        let id = match event::event_id(room.version, &pdu) {
            Ok(id) => id,
            Err(e) => return Answer::error(400, "M_BAD_JSON", &format!("no event ID: {e}")),
        };
        if id != event_id {
            return Answer::error(400, "M_BAD_JSON", &format!("the event's ID is {id}, not {event_id}"));
        }
        let events_before = room.events.len();
        let fresh = match self.answer.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some((n, bytes)) if *n == events_before => Some(bytes.clone()),
            _ => None,
        };
        let body = match fresh {
            Some(bytes) => Body::Shared(bytes),
            None => match room.join_answer(&self.servers[0], &self.servers) {
                Ok((bytes, _, _)) => Body::Owned(bytes),
                Err(e) => return Answer::error(500, "M_UNKNOWN", &e.to_string()),
            },
        };
        if let Err(e) = room.accept(id, pdu) {
            eprintln!("send_join: refusing the join: {e}");
            return Answer::error(403, "M_FORBIDDEN", &e.to_string());
        }
        self.joined().push(Joined { at });
        Answer { status: 200, body }
    }
}

impl Resident for ResidentRoom {
    fn answer(&self, fake: &Fake, req: &Request) -> Option<Answer> {
        let path = req.path();
        if req.method == "GET" {
            if let Some(rest) = path.strip_prefix("/_matrix/federation/v1/make_join/") {
                let (room_id, user_id) = rest.split_once('/')?;
                return Some(self.make_join(fake, req, &percent_decode(room_id), &percent_decode(user_id)));
            }
        }
        if req.method == "PUT" {
            if let Some(rest) = path.strip_prefix("/_matrix/federation/v2/send_join/") {
                let (room_id, event_id) = rest.split_once('/')?;
                return Some(self.send_join(req, &percent_decode(room_id), &percent_decode(event_id)));
            }
        }
        None
    }
}

/// The values of `name` in the query of `target`, decoded.
fn query_values(target: &str, name: &str) -> Vec<String> {
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| percent_decode(v))
        .collect()
}

/// Decodes `%XX` escapes (a malformed escape is kept as it is).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
