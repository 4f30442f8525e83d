//! Events from other servers entering rooms here: the checks on receipt
//! in the spec's order, and fetching what an event needs before the room
//! service (`rooms::dag`) can place it.
//!
//! 1. Format and room version (`core::event::validate_pdu_shape`), the
//!    event ID computed as the version says.
//! 2. Signatures: the sender's server, the event ID's server (v1–v2), the
//!    authorising server of a restricted join; keys fetched as needed.
//! 3. Content hash: on a mismatch the redacted copy is what is kept.
//! 4. The room's rules (`rooms::dag::ingest`): against the event's auth
//!    events, against the state before it, soft failure against the
//!    current state.
//!
//! What is missing is fetched from the server that sent the event, all
//! bounded: auth events (`/event_auth`), prev events
//! (`/get_missing_events`, at most [`MISSING_EVENTS_LIMIT`]), and when a
//! gap remains, the state at each missing prev event (`/state_ids`, then
//! the events not known here by `/event`, at most [`STATE_FETCH_MAX`]).
//! Network work happens outside the writer, under the room's lock
//! (`memo::RoomLocks`), so two transactions never work on one room at
//! once; the writes re-check everything at commit.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Value};

use crate::app::App;
use crate::core::event;
use crate::core::room_version::{self, RoomVersion};
use crate::error::{Error, Result};
use crate::federation::keys;
use crate::rooms::dag::{self, Arrival, Incoming, Verdict};
use crate::storage::{self, state::StateMap};
use crate::util::{lock, percent_encode};

/// Events asked for at once by backfill.
pub const BACKFILL_LIMIT_MAX: usize = 100;
/// Servers asked in turn for backfill.
const BACKFILL_SERVERS_MAX: usize = 3;
/// Prev events asked for at once from the sender of an event with a gap.
pub const MISSING_EVENTS_LIMIT: usize = 20;
/// Events fetched one by one to learn the state at a gap, at most.
pub const STATE_FETCH_MAX: usize = 2_000;
/// Times one event is retried after fetching what it lacked.
const ATTEMPTS: usize = 4;

/// The room version of a room this server knows.
pub fn version_of(app: &App, room_id: &str) -> Result<Option<&'static RoomVersion>> {
    let room = app.db.read(|tx| storage::rooms::get(tx, room_id))?;
    Ok(room.and_then(|r| room_version::get(&r.version)))
}

/// Checks a received PDU of a room of `version`: shape, signatures and
/// content hash. Returns its event ID and the PDU to keep (redacted when
/// the hash does not match), or why it must be dropped.
pub fn check_received(
    app: &App,
    version: &RoomVersion,
    pdu: &Value,
) -> std::result::Result<(String, Value), String> {
    let (event_id, signed) = identify(version, pdu)?;
    let kept = check_identified(app, version, pdu, &event_id, &signed)?;
    Ok((event_id, kept))
}

/// The first check on receipt: the shape the room version asks for, and
/// the event ID it gives. Also returns the event's signed form
/// (`event::signed_form`), which [`check_identified`] checks the
/// signatures over.
pub fn identify(version: &RoomVersion, pdu: &Value) -> std::result::Result<(String, String), String> {
    event::validate_pdu_shape(version, pdu).map_err(|e| format!("malformed event: {e}"))?;
    let signed = event::signed_form(version, pdu).map_err(|e| format!("no event ID: {e}"))?;
    let id = event::event_id_of_form(version, pdu, &signed).map_err(|e| format!("no event ID: {e}"))?;
    Ok((id, signed))
}

/// The checks after [`identify`]: signatures, then the content hash.
/// Returns the PDU to keep (without `unsigned`; redacted when the hash
/// does not match).
pub fn check_identified(
    app: &App,
    version: &RoomVersion,
    pdu: &Value,
    event_id: &str,
    signed: &str,
) -> std::result::Result<Value, String> {
    let signers = event::required_signers(version, pdu).map_err(|e| format!("{event_id}: {e}"))?;
    for server in signers {
        verify_signature_with(app, version, pdu, signed, &server).map_err(|e| format!("{event_id}: {e}"))?;
    }
    let mut kept = pdu.clone();
    if let Some(obj) = kept.as_object_mut() {
        obj.remove("unsigned");
    }
    if !event::verify_content_hash(&kept) {
        kept = crate::core::redaction::redact(version, &kept);
    }
    Ok(kept)
}

/// Checks that `server` signed `pdu` with a key valid when it was sent.
pub fn verify_signature_of(
    app: &App,
    version: &RoomVersion,
    pdu: &Value,
    server: &str,
) -> std::result::Result<(), String> {
    let signed = event::signed_form(version, pdu).map_err(|e| e.to_string())?;
    verify_signature_with(app, version, pdu, &signed, server)
}

/// [`verify_signature_of`] over the event's signed form, already made.
fn verify_signature_with(
    app: &App,
    version: &RoomVersion,
    pdu: &Value,
    signed: &str,
    server: &str,
) -> std::result::Result<(), String> {
    let ts = pdu.get("origin_server_ts").and_then(Value::as_i64).unwrap_or(0);
    let Some(signatures) = pdu.pointer("/signatures").and_then(|s| s.get(server)).and_then(Value::as_object)
    else {
        return Err(format!("it is not signed by {server}"));
    };
    let verified = signatures.keys().filter(|k| k.starts_with("ed25519:")).take(4).any(|key_id| {
        keys::verify_key(app, server, key_id, ts, version.enforce_key_validity)
            .is_ok_and(|pk| event::verify_signature_of_form(pdu, signed, server, key_id, &pk))
    });
    if verified {
        Ok(())
    } else {
        Err(format!("no valid signature of {server}"))
    }
}

/// What became of one PDU of a transaction: its event ID when it has one,
/// and `Ok` when it was taken (stored, known already or soft-failed),
/// else what went wrong (the transaction's answer names it; the rest of
/// the transaction goes on).
pub type Received = (Option<String>, std::result::Result<(), String>);

/// A PDU past the checks that need no room lock.
struct Checked<'a> {
    version: &'static RoomVersion,
    room_id: &'a str,
    event_id: String,
    kept: Value,
}

impl Checked<'_> {
    fn incoming(&self) -> Incoming<'_> {
        Incoming { version: self.version, room_id: self.room_id, event_id: &self.event_id, pdu: &self.kept }
    }
}

/// The checks before the room: a room known here, the origin allowed by
/// its ACL (a denied server's PDUs are dropped), shape, signatures, hash.
fn precheck<'a>(app: &App, origin: &str, pdu: &'a Value) -> std::result::Result<Checked<'a>, Received> {
    let Some(room_id) = pdu.get("room_id").and_then(Value::as_str) else {
        return Err((None, Err("the event names no room".into())));
    };
    let version = match version_of(app, room_id) {
        Ok(Some(v)) => v,
        Ok(None) => return Err((None, Err(format!("this server is not in {room_id}")))),
        Err(e) => return Err((None, Err(e.to_string()))),
    };
    if let Err(e) = app.db.read(|tx| crate::federation::room_reads::check_acl(tx, room_id, origin)) {
        return Err((event::event_id(version, pdu).ok(), Err(e.to_string())));
    }
    match check_received(app, version, pdu) {
        Ok((event_id, kept)) => Ok(Checked { version, room_id, event_id, kept }),
        Err(e) => Err((event::event_id(version, pdu).ok(), Err(e))),
    }
}

fn outcome(verdict: Result<Verdict>) -> std::result::Result<(), String> {
    verdict.map_err(|e| e.to_string()).and_then(|v| match v {
        Verdict::Stored(_) | Verdict::Known | Verdict::SoftFailed(_) => Ok(()),
        Verdict::Rejected(reason) => Err(format!("rejected: {reason}")),
        Verdict::MissingAuth(ids) => Err(format!("auth events could not be found: {}", ids.join(", "))),
        Verdict::MissingPrevs(ids) => Err(format!("prev events could not be found: {}", ids.join(", "))),
    })
}

/// Receives the PDUs of a transaction from `origin`, answering each in
/// order. Those whose room has all they need go into one write (one
/// commit for the transaction, not one per PDU); those lacking auth or
/// prev events are then placed one by one with what is fetched for them.
/// The rooms' locks are held throughout, taken in name order.
pub fn receive_all(app: &App, origin: &str, pdus: &[Value]) -> Vec<Received> {
    let checked: Vec<std::result::Result<Checked, Received>> =
        pdus.iter().map(|p| precheck(app, origin, p)).collect();
    let mut rooms: Vec<&str> = checked.iter().filter_map(|c| c.as_ref().ok().map(|c| c.room_id)).collect();
    rooms.sort_unstable();
    rooms.dedup();
    let locks: Vec<_> = rooms.iter().map(|r| app.fed_memo.rooms.of(r)).collect();
    let _held: Vec<_> = locks.iter().map(|l| lock(l)).collect();
    // One write for all: a failure of the write itself leaves every PDU
    // to the one-by-one path.
    let batch: Option<Vec<Option<Verdict>>> = app
        .db
        .write(|tx| {
            checked
                .iter()
                .map(|c| match c {
                    Ok(c) => dag::ingest(app, tx, &c.incoming(), None, Arrival::Live).map(Some),
                    Err(_) => Ok(None),
                })
                .collect::<Result<Vec<_>>>()
        })
        .ok();
    checked
        .iter()
        .enumerate()
        .map(|(i, c)| match c {
            Err(answer) => answer.clone(),
            Ok(c) => {
                let first = batch.as_ref().and_then(|b| b[i].clone());
                let verdict = match first {
                    Some(
                        v @ (Verdict::Stored(_)
                        | Verdict::Known
                        | Verdict::SoftFailed(_)
                        | Verdict::Rejected(_)),
                    ) => Ok(v),
                    _ => place(app, origin, &c.incoming(), true),
                };
                (Some(c.event_id.clone()), outcome(verdict))
            }
        })
        .collect()
}

/// Places a checked event in its room's graph, fetching from `origin`
/// what it lacks. `fill_gaps`: ask for missing prev events first
/// (`/get_missing_events`); the events that returns are placed without
/// it, so the recursion is one level deep. The caller holds the room lock.
pub fn place(app: &App, origin: &str, ev: &Incoming, fill_gaps: bool) -> Result<Verdict> {
    place_as(app, origin, ev, fill_gaps, Arrival::Live)
}

fn place_as(app: &App, origin: &str, ev: &Incoming, fill_gaps: bool, arrival: Arrival) -> Result<Verdict> {
    let mut asked_missing = !fill_gaps;
    let mut before: Option<StateMap> = None;
    let mut verdict = Verdict::Known;
    for _ in 0..ATTEMPTS {
        verdict = app.db.write(|tx| dag::ingest(app, tx, ev, before.as_ref(), arrival))?;
        match &verdict {
            Verdict::MissingAuth(_) => fetch_auth_chain(app, origin, ev)?,
            Verdict::MissingPrevs(_) if !asked_missing => {
                asked_missing = true;
                fetch_missing_events(app, origin, ev)?;
            }
            Verdict::MissingPrevs(missing) => {
                if before.is_some() {
                    break;
                }
                before = Some(state_at_gap(app, origin, ev, missing)?);
            }
            _ => break,
        }
    }
    Ok(verdict)
}

/// Checks a list of PDUs from another server for the room of `version`,
/// dropping (and logging) those that fail, in an order where each comes
/// after the auth events of it that are in the list.
fn checked_in_auth_order(app: &App, version: &RoomVersion, pdus: &[Value]) -> Vec<(String, Value)> {
    let mut checked: Vec<(String, Value)> = Vec::with_capacity(pdus.len());
    let mut seen = HashSet::new();
    for pdu in pdus {
        match check_received(app, version, pdu) {
            Ok((id, kept)) if seen.insert(id.clone()) => checked.push((id, kept)),
            Ok(_) => {}
            Err(e) => crate::log::warn(format_args!("dropping a fetched event: {e}")),
        }
    }
    auth_order(version, checked)
}

/// Orders events so that each follows those of its auth events that are
/// among them (Kahn's algorithm, the shallowest first; a cycle's events go
/// last, where the rules refuse them).
pub fn auth_order(version: &RoomVersion, events: Vec<(String, Value)>) -> Vec<(String, Value)> {
    let index: HashMap<&str, usize> =
        events.iter().enumerate().map(|(i, (id, _))| (id.as_str(), i)).collect();
    let cites: Vec<Vec<u32>> = events
        .iter()
        .map(|(_, pdu)| {
            dag::referenced(version, pdu, "auth_events")
                .iter()
                .filter_map(|a| index.get(a.as_str()).map(|&j| j as u32))
                .collect()
        })
        .collect();
    let depths: Vec<i64> =
        events.iter().map(|(_, p)| p.get("depth").and_then(Value::as_i64).unwrap_or(0)).collect();
    drop(index);
    let order = auth_order_of(&depths, &cites);
    let mut slots: Vec<Option<(String, Value)>> = events.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

/// [`auth_order`] over indices: event `i` has depth `depths[i]` and cites
/// the events `cites[i]` (indices into the same lists). Every index once.
pub fn auth_order_of(depths: &[i64], cites: &[Vec<u32>]) -> Vec<usize> {
    let n = depths.len();
    let mut waiting = vec![0u32; n];
    let mut cited_by: Vec<Vec<u32>> = vec![Vec::new(); n];
    for (i, list) in cites.iter().enumerate() {
        for &j in list {
            let j = j as usize;
            if j != i && j < n {
                waiting[i] += 1;
                cited_by[j].push(i as u32);
            }
        }
    }
    let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<(i64, usize)>> =
        (0..n).filter(|&i| waiting[i] == 0).map(|i| std::cmp::Reverse((depths[i], i))).collect();
    let mut order = Vec::with_capacity(n);
    let mut done = vec![false; n];
    while let Some(std::cmp::Reverse((_, i))) = ready.pop() {
        done[i] = true;
        order.push(i);
        for &k in &cited_by[i] {
            let k = k as usize;
            waiting[k] -= 1;
            if waiting[k] == 0 {
                ready.push(std::cmp::Reverse((depths[k], k)));
            }
        }
    }
    order.extend((0..n).filter(|&i| !done[i]));
    order
}

/// Stores checked events as outliers, in auth order, in one write.
fn store_outliers(
    app: &App,
    version: &'static RoomVersion,
    room_id: &str,
    events: &[(String, Value)],
) -> Result<()> {
    app.db.write(|tx| {
        for (id, pdu) in events {
            let ev = Incoming { version, room_id, event_id: id, pdu };
            dag::ingest_outlier(tx, &ev)?;
        }
        Ok(())
    })
}

/// Fetches the auth chain of an event from `origin` and keeps what it
/// lacks as outliers.
fn fetch_auth_chain(app: &App, origin: &str, ev: &Incoming) -> Result<()> {
    let uri = format!(
        "/_matrix/federation/v1/event_auth/{}/{}",
        percent_encode(ev.room_id),
        percent_encode(ev.event_id)
    );
    let answer = app.federation.get(origin, &uri)?;
    let chain = answer.get("auth_chain").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let events = checked_in_auth_order(app, ev.version, chain);
    store_outliers(app, ev.version, ev.room_id, &events)
}

/// Asks `origin` for the events between the room's forward extremities
/// and `ev`, and places them, oldest first.
fn fetch_missing_events(app: &App, origin: &str, ev: &Incoming) -> Result<()> {
    let earliest = app.db.read(|tx| storage::events::extremities(tx, ev.room_id))?;
    let body = json!({
        "earliest_events": earliest,
        "latest_events": [ev.event_id],
        "limit": MISSING_EVENTS_LIMIT,
        "min_depth": 0,
    });
    let uri = format!("/_matrix/federation/v1/get_missing_events/{}", percent_encode(ev.room_id));
    let answer = app.federation.post(origin, &uri, &body)?;
    let list = answer.get("events").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let mut events = Vec::new();
    for pdu in list.iter().take(MISSING_EVENTS_LIMIT) {
        if pdu.get("room_id").and_then(Value::as_str) != Some(ev.room_id) {
            continue;
        }
        match check_received(app, ev.version, pdu) {
            Ok(checked) => events.push(checked),
            Err(e) => crate::log::warn(format_args!("dropping a missing event from {origin}: {e}")),
        }
    }
    events.sort_by_key(|(_, p)| p.get("depth").and_then(Value::as_i64).unwrap_or(0));
    for (id, pdu) in &events {
        if id == ev.event_id {
            continue;
        }
        let missing = Incoming { version: ev.version, room_id: ev.room_id, event_id: id, pdu };
        place(app, origin, &missing, false)?;
    }
    Ok(())
}

/// One event by ID from `origin`, checked.
fn fetch_event(app: &App, origin: &str, version: &RoomVersion, event_id: &str) -> Result<(String, Value)> {
    let uri = format!("/_matrix/federation/v1/event/{}", percent_encode(event_id));
    let answer = app.federation.get(origin, &uri)?;
    let pdu = answer
        .get("pdus")
        .and_then(Value::as_array)
        .and_then(|p| p.first())
        .ok_or_else(|| Error::bad_gateway(format!("{origin} sent no event for {event_id}")))?;
    let (id, kept) = check_received(app, version, pdu).map_err(Error::bad_gateway)?;
    if id != event_id {
        return Err(Error::bad_gateway(format!("{origin} sent {id} for {event_id}")));
    }
    Ok((id, kept))
}

/// The state before `ev` when prev events of it are still missing: the
/// state after each missing prev event as `origin` reports it
/// (`/state_ids` at it, which is the state before it, plus the event
/// itself), the events not known here fetched and kept as outliers, then
/// resolved with the states after the prev events known here.
fn state_at_gap(app: &App, origin: &str, ev: &Incoming, missing: &[String]) -> Result<StateMap> {
    let mut groups = Vec::new();
    let prevs = dag::referenced(ev.version, ev.pdu, "prev_events");
    for prev in prevs.iter().filter(|p| !missing.contains(p)) {
        let after = app.db.write(|tx| match dag::load_any(tx, prev)? {
            Some((e, _)) => dag::group_after(tx, &e).map(Some),
            None => Ok(None),
        })?;
        groups.extend(after);
    }
    let mut fetched = 0usize;
    for prev in missing.iter().take(crate::core::event::PREV_EVENTS_MAX) {
        let uri = format!(
            "/_matrix/federation/v1/state_ids/{}?event_id={}",
            percent_encode(ev.room_id),
            percent_encode(prev)
        );
        let answer = app.federation.get(origin, &uri)?;
        let ids = |k: &str| -> Vec<String> {
            answer
                .get(k)
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default()
        };
        let (state_ids, chain_ids) = (ids("pdu_ids"), ids("auth_chain_ids"));
        let mut wanted: Vec<String> = Vec::new();
        for id in chain_ids.iter().chain(&state_ids).chain(std::iter::once(prev)) {
            if !wanted.contains(id) && app.db.read(|tx| dag::load_any(tx, id))?.is_none() {
                wanted.push(id.clone());
            }
        }
        fetched += wanted.len();
        if fetched > STATE_FETCH_MAX {
            return Err(Error::bad_gateway(format!(
                "the state at {prev} would need more than {STATE_FETCH_MAX} events fetched"
            )));
        }
        let mut events = Vec::with_capacity(wanted.len());
        for id in &wanted {
            match fetch_event(app, origin, ev.version, id) {
                Ok(e) => events.push(e),
                Err(e) => crate::log::warn(format_args!("fetching {id} from {origin}: {e}")),
            }
        }
        let events = auth_order(ev.version, events);
        store_outliers(app, ev.version, ev.room_id, &events)?;
        let group = app.db.write(|tx| {
            let mut map = StateMap::new();
            for id in state_ids.iter().chain(std::iter::once(prev)) {
                if let Some((e, place)) = dag::load_any(tx, id)? {
                    let is_state = id != prev || e.state_key.is_some();
                    if place != dag::Place::Outside(storage::graph::Status::Rejected) && is_state {
                        if let Some(key) = e.state_key {
                            map.insert((e.kind, key), e.event_id);
                        }
                    }
                }
            }
            storage::state::new_snapshot(tx, ev.room_id, &map)
        })?;
        groups.push(group);
    }
    if groups.is_empty() {
        return Err(Error::bad_gateway("no state could be found for the event"));
    }
    app.db.read(|tx| dag::resolve_groups(tx, ev.version, ev.room_id, &groups))
}

/// History before what this server has of a room: up to `limit` events
/// before its backward extremities, from the first of the room's servers
/// that answers `/backfill`. They are checked like any PDU and placed at
/// negative stream positions, oldest lowest, so they sort before the
/// room's known history and are never new to a sync. Returns how many
/// entered the timeline.
pub fn backfill(app: &App, room_id: &str, limit: usize) -> Result<usize> {
    let own = app.config.server_name.clone();
    let (version, extremities, servers) = app.db.read(|tx| {
        let version = storage::rooms::get(tx, room_id)?.and_then(|r| room_version::get(&r.version));
        let mut ext = storage::graph::backward_extremities(tx, room_id)?;
        ext.truncate(5);
        let mut servers = storage::graph::servers_in_room(tx, room_id)?;
        servers.retain(|s| *s != own);
        Ok((version, ext, servers))
    })?;
    let Some(version) = version else { return Ok(0) };
    if extremities.is_empty() || servers.is_empty() {
        return Ok(0);
    }
    let room_lock = app.fed_memo.rooms.of(room_id);
    let _held = lock(&room_lock);
    let limit = limit.clamp(1, BACKFILL_LIMIT_MAX);
    let vs: Vec<String> = extremities.iter().map(|e| format!("v={}", percent_encode(e))).collect();
    let uri =
        format!("/_matrix/federation/v1/backfill/{}?{}&limit={limit}", percent_encode(room_id), vs.join("&"));
    let mut got = None;
    for server in servers.iter().take(BACKFILL_SERVERS_MAX) {
        match app.federation.get(server, &uri) {
            Ok(answer) => {
                got = Some((server.clone(), answer));
                break;
            }
            Err(e) => crate::log::info(format_args!("backfill of {room_id} from {server}: {e}")),
        }
    }
    let Some((server, answer)) = got else { return Ok(0) };
    let list = answer.get("pdus").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let mut events = Vec::new();
    let mut seen = HashSet::new();
    for pdu in list.iter().take(limit * 2) {
        if pdu.get("room_id").and_then(Value::as_str) != Some(room_id) {
            continue;
        }
        match check_received(app, version, pdu) {
            Ok((id, kept)) if seen.insert(id.clone()) => {
                // An outlier (fetched for the state at a gap) joins the
                // timeline now; what is in it already is left alone.
                let known = app.db.read(|tx| dag::load_any(tx, &id))?;
                if matches!(known, None | Some((_, dag::Place::Outside(storage::graph::Status::Outlier)))) {
                    events.push((id, kept));
                }
            }
            Ok(_) => {}
            Err(e) => crate::log::warn(format_args!("dropping a backfilled event from {server}: {e}")),
        }
    }
    events.sort_by_key(|(id, p)| (p.get("depth").and_then(Value::as_i64).unwrap_or(0), id.clone()));
    // Positions below everything stored, taken by one backfill at a time.
    static POSITIONS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _positions = lock(&POSITIONS);
    let lowest = app.db.read(|tx| storage::graph::backfill_pos(tx))? - events.len() as i64 + 1;
    let mut stored = 0;
    for (i, (id, pdu)) in events.iter().enumerate() {
        let ev = Incoming { version, room_id, event_id: id, pdu };
        match place_as(app, &server, &ev, false, Arrival::Backfill(lowest + i as i64)) {
            Ok(Verdict::Stored(_)) => stored += 1,
            Ok(_) => {}
            Err(e) => crate::log::info(format_args!("backfilled event {id}: {e}")),
        }
    }
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, depth: i64, auth: &[&str]) -> (String, Value) {
        (id.to_owned(), json!({ "depth": depth, "auth_events": auth }))
    }

    #[test]
    fn auth_order_puts_each_event_after_its_auth_events() {
        let v = room_version::get("12").unwrap();
        // Given newest first, with a deeper event that others cite.
        let events = vec![
            ev("$msg", 1, &["$pl", "$join"]),
            ev("$join", 9, &["$pl"]),
            ev("$pl", 5, &["$create"]),
            ev("$create", 3, &[]),
            ev("$other", 2, &["$unknown"]),
        ];
        let order: Vec<String> = auth_order(v, events).into_iter().map(|(id, _)| id).collect();
        let at = |id: &str| order.iter().position(|x| x == id).unwrap();
        assert!(
            at("$create") < at("$pl") && at("$pl") < at("$join") && at("$join") < at("$msg"),
            "{order:?}"
        );
        assert_eq!(order.len(), 5, "events citing what is not in the list keep their place");
        // A cycle does not hang; its events go last.
        let cycle = vec![ev("$x", 1, &["$y"]), ev("$y", 1, &["$x"]), ev("$z", 1, &[])];
        let order: Vec<String> = auth_order(v, cycle).into_iter().map(|(id, _)| id).collect();
        assert_eq!(order[0], "$z");
        assert_eq!(order.len(), 3);
    }
}
