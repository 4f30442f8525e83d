//! The answer to `send_join`, taken as it arrives. A big room's answer
//! (tens of thousands of events, tens of megabytes) is never held whole,
//! neither as bytes nor as one tree of JSON:
//!
//! 1. The body is parsed as it is read (`serde` over the stream). Each
//!    event of `state` and `auth_chain` goes, as soon as it is parsed, to
//!    worker threads that identify it (shape, event ID), skip one seen
//!    already (an event is often in both lists), and check its signatures
//!    and content hash (`federation::pdus`).
//! 2. A collector writes each checked event's canonical JSON to a spool
//!    file (created readable by this process only and unlinked at once,
//!    so nothing stays behind after a crash) and keeps in memory only
//!    what ordering needs: where the event is, its depth, the events of
//!    the answer it cites.
//! 3. [`JoinAnswer::store`] puts the events in auth order and stores them
//!    as outliers, each checked against its own auth events, a batch per
//!    write (`rooms::dag::ingest_outlier_with`, with the batch's auth
//!    events kept parsed: thousands of members cite the same few).
//!
//! The caller then takes the state from the state list and persists the
//! join (`federation::membership`).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Mutex;

use serde::de::{DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::app::App;
use crate::core::room_version::RoomVersion;
use crate::crypto::canonical;
use crate::error::{Error, Result};
use crate::federation::pdus;
use crate::rooms::dag::{self, AuthCache, Incoming};
use crate::util::lock;

/// Largest `send_join` answer read. It is never held whole, so this bounds
/// the time and disk a join takes rather than memory.
pub const JOIN_ANSWER_MAX: u64 = 1024 * 1024 * 1024;
/// Events of `state` and `auth_chain` together taken at most.
pub const JOIN_EVENTS_MAX: usize = 1_000_000;
/// Outliers stored per write.
const BATCH: usize = 2_000;
/// Events parsed but not yet checked, at most (the parser waits).
const QUEUED_MAX: usize = 256;
/// Threads checking signatures, at most.
const WORKERS_MAX: usize = 4;
/// Events handed from the parser to a worker, and from a worker to the
/// collector, at a time.
const HANDOVER: usize = 32;

#[derive(Clone, Copy, PartialEq, Eq)]
enum List {
    State,
    AuthChain,
}

/// A checked event of the answer, in the spool.
struct Entry {
    offset: u64,
    len: u32,
    depth: i64,
}

/// What the workers hand the collector.
enum Done {
    Checked { list: List, id: String, text: String, depth: i64, auth: Vec<String>, create: bool },
    Seen { list: List, id: String },
    Dropped,
}

/// The checked events of a `send_join` answer, spooled.
pub struct JoinAnswer {
    spool: File,
    ids: Vec<String>,
    entries: Vec<Entry>,
    /// For each event, the events of the answer among its auth events.
    cites: Vec<Vec<u32>>,
    /// The event IDs of the state list that passed the checks.
    state: Vec<String>,
    create: Option<u32>,
    /// The join as the resident server sent it back (signed by the
    /// authorising server too for a restricted join), unchecked.
    pub event: Option<Value>,
    /// Events of both lists as sent, duplicates included.
    pub received: usize,
    /// Events dropped by the checks on receipt.
    pub dropped: usize,
}

impl JoinAnswer {
    /// Reads, parses and checks a `send_join` answer of a room of
    /// `version` from `body`, a 2xx answer's body.
    pub fn receive(
        app: &App,
        version: &RoomVersion,
        room_id: &str,
        body: Box<dyn Read + Send>,
    ) -> Result<JoinAnswer> {
        let spool = spool_file(app)?;
        // Events travel in batches: one hand-over per event would spend
        // more on waking threads than on parsing.
        let (work_tx, work_rx) = sync_channel::<Vec<(List, Value)>>(QUEUED_MAX / HANDOVER);
        let work_rx = Mutex::new(work_rx);
        let (done_tx, done_rx) = sync_channel::<Vec<Done>>(QUEUED_MAX / HANDOVER);
        let seen = Mutex::new(HashSet::<String>::new());
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, WORKERS_MAX);
        let (parsed, collected) = std::thread::scope(|s| {
            for _ in 0..workers {
                let done_tx = done_tx.clone();
                let (work_rx, seen) = (&work_rx, &seen);
                s.spawn(move || loop {
                    let next = lock(work_rx).recv();
                    let Ok(batch) = next else { break };
                    let done = batch
                        .into_iter()
                        .map(|(list, pdu)| check_one(app, version, room_id, list, pdu, seen))
                        .collect();
                    // The collector drains until every sender is gone.
                    let _ = done_tx.send(done);
                });
            }
            drop(done_tx);
            let collector = s.spawn(|| collect(done_rx, &spool));
            let mut count = 0usize;
            let parsed = {
                let work_tx = work_tx;
                let mut batch = Vec::with_capacity(HANDOVER);
                let mut each = |list: List, pdu: Value| -> std::result::Result<(), String> {
                    count += 1;
                    if count > JOIN_EVENTS_MAX {
                        return Err(format!("more than {JOIN_EVENTS_MAX} events"));
                    }
                    batch.push((list, pdu));
                    if batch.len() == HANDOVER {
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(HANDOVER));
                        work_tx.send(full).map_err(|_| "the checks stopped".to_owned())?;
                    }
                    Ok(())
                };
                let mut de = serde_json::Deserializer::from_reader(BufReader::with_capacity(64 * 1024, body));
                let parsed = AnswerSeed { each: &mut each }
                    .deserialize(&mut de)
                    .and_then(|event| de.end().map(|()| event));
                if !batch.is_empty() {
                    let _ = work_tx.send(batch);
                }
                parsed
            };
            let collected =
                collector.join().unwrap_or_else(|_| Err(Error::internal("the join's collector panicked")));
            (parsed.map(|event| (event, count)), collected)
        });
        let (event, received) =
            parsed.map_err(|e| Error::bad_gateway(format!("the send_join answer could not be read: {e}")))?;
        Ok(JoinAnswer::of(spool, collected?, event, received))
    }

    fn of(spool: File, c: Collected, event: Option<Value>, received: usize) -> JoinAnswer {
        JoinAnswer {
            spool,
            ids: c.ids,
            entries: c.entries,
            cites: c.cites,
            state: c.state,
            create: c.create,
            event,
            received,
            dropped: c.dropped,
        }
    }

    /// Distinct events that passed the checks on receipt.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The event IDs of the state list that passed the checks on receipt.
    pub fn state_ids(&self) -> &[String] {
        &self.state
    }

    /// The room's `m.room.create` event, if the answer had one.
    pub fn create(&self) -> Result<Option<Value>> {
        self.create.map(|i| self.read(i as usize)).transpose()
    }

    fn read(&self, i: usize) -> Result<Value> {
        Ok(self.read_text(i)?.0)
    }

    /// Event `i` from the spool, parsed, and its canonical JSON.
    fn read_text(&self, i: usize) -> Result<(Value, String)> {
        let e = &self.entries[i];
        let mut bytes = vec![0; e.len as usize];
        self.spool
            .read_exact_at(&mut bytes, e.offset)
            .map_err(|err| Error::internal(format!("reading the join's spool: {err}")))?;
        let text =
            String::from_utf8(bytes).map_err(|err| Error::internal(format!("the join's spool: {err}")))?;
        let pdu =
            serde_json::from_str(&text).map_err(|err| Error::internal(format!("the join's spool: {err}")))?;
        Ok((pdu, text))
    }

    /// Stores every event as an outlier in auth order (each after those of
    /// its auth events that the answer has), checked against its own auth
    /// events: rejected ones are kept as rejected. A batch per write.
    pub fn store(&self, app: &App, version: &'static RoomVersion, room_id: &str) -> Result<()> {
        let depths: Vec<i64> = self.entries.iter().map(|e| e.depth).collect();
        let order = pdus::auth_order_of(&depths, &self.cites);
        drop(depths);
        for chunk in order.chunks(BATCH) {
            app.db.write(|tx| {
                let mut cache = AuthCache::default();
                for &i in chunk {
                    // Stored as spooled: its canonical JSON is not made again.
                    let (pdu, text) = self.read_text(i)?;
                    let ev = Incoming { version, room_id, event_id: &self.ids[i], pdu: &pdu };
                    dag::ingest_outlier_with(tx, &ev, &mut cache, Some(text))?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }
}

/// A spool file next to the database (or in the temporary directory),
/// readable by this process only, already unlinked.
fn spool_file(app: &App) -> Result<File> {
    let dir = app
        .config
        .database
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let name =
        format!(".hearth-join-{}", crate::crypto::b64url_encode(&crate::crypto::token::random_bytes::<12>()));
    let path = dir.join(name);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| Error::internal(format!("creating the join's spool in {}: {e}", dir.display())))?;
    let _ = std::fs::remove_file(&path);
    Ok(file)
}

/// The checks on receipt before the room: the event is of this room (or
/// names none, as a v12 create event), identified, not seen already,
/// signed and hashed as it must be.
fn check_one(
    app: &App,
    version: &RoomVersion,
    room_id: &str,
    list: List,
    pdu: Value,
    seen: &Mutex<HashSet<String>>,
) -> Done {
    let named = pdu.get("room_id").and_then(Value::as_str);
    if named.is_some_and(|r| r != room_id) {
        crate::log::warn(format_args!("join of {room_id}: dropping an event of another room"));
        return Done::Dropped;
    }
    let (id, signed) = match pdus::identify(version, &pdu) {
        Ok(found) => found,
        Err(e) => {
            crate::log::warn(format_args!("join of {room_id}: dropping an event: {e}"));
            return Done::Dropped;
        }
    };
    if !lock(seen).insert(id.clone()) {
        return Done::Seen { list, id };
    }
    let kept = match pdus::check_identified(app, version, &pdu, &id, &signed) {
        Ok(kept) => kept,
        Err(e) => {
            crate::log::warn(format_args!("join of {room_id}: dropping an event: {e}"));
            return Done::Dropped;
        }
    };
    drop(pdu);
    let Ok(text) = canonical::to_canonical(&kept) else { return Done::Dropped };
    let s = |k: &str| kept.get(k).and_then(Value::as_str);
    let create = s("type") == Some("m.room.create") && s("state_key") == Some("");
    let depth = kept.get("depth").and_then(Value::as_i64).unwrap_or(0);
    let auth = dag::referenced(version, &kept, "auth_events");
    Done::Checked { list, id, text, depth, auth, create }
}

struct Collected {
    ids: Vec<String>,
    entries: Vec<Entry>,
    cites: Vec<Vec<u32>>,
    state: Vec<String>,
    create: Option<u32>,
    dropped: usize,
}

/// Spools what the workers checked, until all of them are done (it never
/// stops early, so no worker waits on it forever).
fn collect(rx: Receiver<Vec<Done>>, spool: &File) -> Result<Collected> {
    let mut out = BufWriter::with_capacity(256 * 1024, spool);
    let mut offset = 0u64;
    let mut failed: Option<std::io::Error> = None;
    let mut index: HashMap<String, u32> = HashMap::new();
    let mut c = Collected {
        ids: Vec::new(),
        entries: Vec::new(),
        cites: Vec::new(),
        state: Vec::new(),
        create: None,
        dropped: 0,
    };
    // Auth events cited before they arrived: (citing event, cited ID).
    let mut pending: Vec<(u32, String)> = Vec::new();
    for done in rx.into_iter().flatten() {
        match done {
            Done::Dropped => c.dropped += 1,
            Done::Seen { list, id } => {
                if list == List::State {
                    c.state.push(id);
                }
            }
            Done::Checked { list, id, text, depth, auth, create } => {
                if list == List::State {
                    c.state.push(id.clone());
                }
                if index.contains_key(&id) || failed.is_some() {
                    continue;
                }
                if let Err(e) = out.write_all(text.as_bytes()) {
                    failed = Some(e);
                    continue;
                }
                let i = c.ids.len() as u32;
                c.entries.push(Entry { offset, len: text.len() as u32, depth });
                offset += text.len() as u64;
                let mut cites = Vec::with_capacity(auth.len());
                for a in auth {
                    match index.get(&a) {
                        Some(&j) => cites.push(j),
                        None => pending.push((i, a)),
                    }
                }
                c.cites.push(cites);
                if create && c.create.is_none() {
                    c.create = Some(i);
                }
                index.insert(id.clone(), i);
                c.ids.push(id);
            }
        }
    }
    if let Err(e) = out.flush() {
        failed.get_or_insert(e);
    }
    if let Some(e) = failed {
        return Err(Error::internal(format!("writing the join's spool: {e}")));
    }
    for (i, a) in pending {
        if let Some(&j) = index.get(&a) {
            c.cites[i as usize].push(j);
        }
    }
    Ok(c)
}

/// The answer object: `state` and `auth_chain` handed to `each` event by
/// event, `event` kept, anything else skipped.
struct AnswerSeed<'a, F> {
    each: &'a mut F,
}

impl<'de, F: FnMut(List, Value) -> std::result::Result<(), String>> DeserializeSeed<'de>
    for AnswerSeed<'_, F>
{
    type Value = Option<Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, F: FnMut(List, Value) -> std::result::Result<(), String>> Visitor<'de> for AnswerSeed<'_, F> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a send_join answer object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Value, A::Error> {
        let each = self.each;
        let mut event = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "state" => map.next_value_seed(ListSeed { list: List::State, each: &mut *each })?,
                "auth_chain" => map.next_value_seed(ListSeed { list: List::AuthChain, each: &mut *each })?,
                "event" => event = Some(map.next_value::<Value>()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(event)
    }
}

/// One list of events, handed on one by one.
struct ListSeed<'a, F> {
    list: List,
    each: &'a mut F,
}

impl<'de, F: FnMut(List, Value) -> std::result::Result<(), String>> DeserializeSeed<'de> for ListSeed<'_, F> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, F: FnMut(List, Value) -> std::result::Result<(), String>> Visitor<'de> for ListSeed<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        while let Some(pdu) = seq.next_element::<Value>()? {
            (self.each)(self.list, pdu).map_err(A::Error::custom)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The answer's `event`, and each event handed on with whether it is
    /// of the state list.
    type Parsed = (Option<Value>, Vec<(bool, Value)>);

    fn parse(text: &str) -> std::result::Result<Parsed, String> {
        let mut got = Vec::new();
        let mut each = |list: List, pdu: Value| -> std::result::Result<(), String> {
            if pdu.get("stop").is_some() {
                return Err("stopped".into());
            }
            got.push((list == List::State, pdu));
            Ok(())
        };
        let mut de = serde_json::Deserializer::from_reader(text.as_bytes());
        let event = AnswerSeed { each: &mut each }
            .deserialize(&mut de)
            .and_then(|e| de.end().map(|()| e))
            .map_err(|e| e.to_string())?;
        Ok((event, got))
    }

    #[test]
    fn the_answer_is_handed_on_event_by_event_and_the_rest_skipped() {
        let text = json!({
            "origin": "a.example",
            "auth_chain": [{"n": 1}, {"n": 2}],
            "servers_in_room": ["a.example"],
            "members_omitted": false,
            "event": {"type": "m.room.member"},
            "state": [{"n": 3}],
            "unknown": {"deep": [1, 2, {"x": null}]}
        })
        .to_string();
        let (event, got) = parse(&text).expect("parsed");
        assert_eq!(event, Some(json!({"type": "m.room.member"})));
        let seen: Vec<(bool, i64)> = got.iter().map(|(s, v)| (*s, v["n"].as_i64().unwrap())).collect();
        assert_eq!(seen, vec![(false, 1), (false, 2), (true, 3)]);
    }

    #[test]
    fn malformed_answers_and_refusals_stop_the_parse() {
        for bad in [
            "[]",
            r#"{"state": {"n": 1}}"#,
            r#"{"state": [{"n": 1}"#,
            r#"{"state": []} trailing"#,
            r#"{"state": [{"stop": true}]}"#,
            "",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let (event, got) = parse(r#"{"state": [], "auth_chain": []}"#).expect("empty lists");
        assert!(event.is_none() && got.is_empty());
    }

    fn checked(list: List, id: &str, auth: &[&str]) -> Done {
        Done::Checked {
            list,
            id: id.into(),
            text: format!("{{\"id\":\"{id}\"}}"),
            depth: 1,
            auth: auth.iter().map(|a| a.to_string()).collect(),
            create: id == "$create",
        }
    }

    #[test]
    fn the_collector_spools_once_and_resolves_cites_that_came_early() {
        let (tx, rx) = sync_channel::<Vec<Done>>(16);
        tx.send(vec![checked(List::State, "$member", &["$create", "$power", "$elsewhere"])]).unwrap();
        tx.send(vec![checked(List::AuthChain, "$create", &[])]).unwrap();
        tx.send(vec![checked(List::AuthChain, "$power", &["$create"])]).unwrap();
        // The same event from the other list, checked by two workers.
        tx.send(vec![checked(List::State, "$power", &["$create"])]).unwrap();
        tx.send(vec![Done::Seen { list: List::State, id: "$create".into() }]).unwrap();
        tx.send(vec![Done::Dropped]).unwrap();
        drop(tx);
        let dir = std::env::temp_dir().join(format!("hearth-spool-test-{}", std::process::id()));
        let spool = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&dir)
            .unwrap();
        let _ = std::fs::remove_file(&dir);
        let c = collect(rx, &spool).expect("collected");
        assert_eq!(c.ids, vec!["$member", "$create", "$power"]);
        assert_eq!(c.cites, vec![vec![1, 2], vec![], vec![1]], "the unknown $elsewhere is not cited");
        assert_eq!(c.state, vec!["$member", "$power", "$create"]);
        assert_eq!((c.create, c.dropped), (Some(1), 1));
        let order = pdus::auth_order_of(&[1, 1, 1], &c.cites);
        assert_eq!(order, vec![1, 2, 0]);
        let answer = JoinAnswer::of(spool, c, None, 6);
        assert_eq!(answer.read(2).unwrap(), json!({"id": "$power"}));
        assert_eq!(answer.create().unwrap(), Some(json!({"id": "$create"})));
    }
}
