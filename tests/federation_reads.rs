//! The room reads other servers make (`/event`, `/state`, `/state_ids`,
//! `/event_auth`, `/backfill`, `/get_missing_events`,
//! `/timestamp_to_event`), called over HTTPS with requests signed by a
//! second Hearth on the test bed (`common::fed`), whose key the host
//! fetches from it. Joins over federation do not exist yet, so the asking
//! server reads rooms that are `world_readable`; one test stands in for
//! a joined member of it with a `memberships` row.

mod common;

use std::collections::{BTreeSet, HashMap};

use common::ca::TestCa;
use common::fed::{self, Peer};
use common::{assert_error, create_room, enc, room_path, say, set_state, TempDir, User};
use hearth::core::room_version;
use hearth::crypto::sign::ServerKey;
use serde_json::{json, Value};

const PW: &str = "federation-reads-password";
const FED: &str = "/_matrix/federation/v1";

/// A host with a local user, and another server asking it.
struct Bed {
    _dir: TempDir,
    _ca: TestCa,
    host: Peer,
    asker: Peer,
    key: ServerKey,
    agent: ureq::Agent,
    alice: User,
}

impl Bed {
    fn new() -> Bed {
        let dir = TempDir::new();
        let ca = TestCa::new(dir.path());
        let host = Peer::start(&ca, &[], &[]);
        let asker = Peer::start(&ca, &[], &[]);
        let key = asker.signing_key();
        let agent = fed::agent(&ca);
        let alice = host.server.user("alice", PW);
        Bed { _dir: dir, _ca: ca, host, asker, key, agent, alice }
    }

    /// A request to the host signed by the asking server. The test bed's
    /// servers have no effective client rate limit, which the per-origin
    /// limit follows, so no request here is refused with 429.
    fn call(&self, method: &str, uri: &str, body: Option<&Value>) -> (u16, Value) {
        fed::signed(&self.agent, &self.key, &self.asker.name, &self.host.name, method, uri, body)
    }

    fn get(&self, uri: &str) -> (u16, Value) {
        self.call("GET", uri, None)
    }

    #[track_caller]
    fn get_ok(&self, uri: &str) -> Value {
        let (status, body) = self.get(uri);
        assert_eq!(status, 200, "GET {uri}: {body}");
        body
    }

    #[track_caller]
    fn missing(&self, room: &str, body: Value) -> (u16, Value) {
        self.call("POST", &format!("{FED}/get_missing_events/{}", enc(room)), Some(&body))
    }

    /// A room of alice's with `history_visibility` and `version`.
    fn room(&self, visibility: &str, version: &str) -> String {
        create_room(
            &self.host.server,
            &self.alice.token,
            json!({
                "room_version": version,
                "preset": "public_chat",
                "initial_state": [{
                    "type": "m.room.history_visibility",
                    "state_key": "",
                    "content": { "history_visibility": visibility },
                }],
            }),
        )
    }

    /// The room's current state as the client API shows it:
    /// (type, state_key) → event ID.
    fn client_state(&self, room: &str) -> HashMap<(String, String), String> {
        let (status, events) = self.host.server.get(&room_path(room, "state"), Some(&self.alice.token));
        assert_eq!(status, 200, "{events}");
        events
            .as_array()
            .expect("state events")
            .iter()
            .map(|e| {
                let key =
                    (e["type"].as_str().unwrap().to_owned(), e["state_key"].as_str().unwrap().to_owned());
                (key, e["event_id"].as_str().unwrap().to_owned())
            })
            .collect()
    }
}

fn key(kind: &str, state_key: &str) -> (String, String) {
    (kind.to_owned(), state_key.to_owned())
}

/// The ID of a PDU of a room of `version`, computed from the PDU itself.
fn id_of(version: &str, pdu: &Value) -> String {
    let v = room_version::get(version).expect("a known version");
    hearth::core::event::event_id(v, pdu).expect("an event ID")
}

fn ids_of(version: &str, pdus: &Value) -> Vec<String> {
    pdus.as_array().expect("a list of PDUs").iter().map(|p| id_of(version, p)).collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().expect("a list").iter().map(|s| s.as_str().expect("a string").to_owned()).collect()
}

fn set(v: &[String]) -> BTreeSet<String> {
    v.iter().cloned().collect()
}

fn state_ids_uri(room: &str, event: &str) -> String {
    format!("{FED}/state_ids/{}?event_id={}", enc(room), enc(event))
}

fn backfill_uri(room: &str, from: &[&str], limit: usize) -> String {
    let vs: Vec<String> = from.iter().map(|v| format!("v={}", enc(v))).collect();
    format!("{FED}/backfill/{}?{}&limit={limit}", enc(room), vs.join("&"))
}

#[test]
fn a_world_readable_room_is_read_event_by_event() {
    let bed = Bed::new();
    let room = bed.room("world_readable", "12");
    let m: Vec<String> =
        (1..=5).map(|i| say(&bed.host.server, &bed.alice.token, &room, &format!("m{i}"))).collect();
    let state = bed.client_state(&room);
    let create = &state[&key("m.room.create", "")];
    let power = &state[&key("m.room.power_levels", "")];
    let member = &state[&key("m.room.member", &bed.alice.id)];

    // One event: the transaction shape, the PDU in federation form.
    let t = bed.get_ok(&format!("{FED}/event/{}", enc(&m[2])));
    assert_eq!(t["origin"], bed.host.name);
    assert!(t["origin_server_ts"].as_i64().is_some_and(|ts| ts > 0), "{t}");
    let pdus = t["pdus"].as_array().expect("pdus");
    assert_eq!(pdus.len(), 1);
    let pdu = &pdus[0];
    assert_eq!(id_of("12", pdu), m[2], "the PDU hashes to the ID the client got");
    assert_eq!(pdu["content"]["body"], "m3");
    assert_eq!(pdu["room_id"], room.as_str());
    assert!(pdu.get("event_id").is_none() && pdu.get("unsigned").is_none(), "{pdu}");
    assert!(pdu["signatures"][&bed.host.name].is_object(), "{pdu}");
    assert_eq!(strings(&pdu["prev_events"]), vec![m[1].clone()]);
    // The event that made history world-readable is visible; the room's
    // setup before it falls under the default `shared`, so a server with no
    // member gets it only inside the state and auth chains below.
    let hv = &state[&key("m.room.history_visibility", "")];
    let t = bed.get_ok(&format!("{FED}/event/{}", enc(hv)));
    assert_eq!(t["pdus"][0]["content"]["history_visibility"], "world_readable");
    assert_eq!(id_of("12", &t["pdus"][0]), *hv);
    assert_error(&bed.get(&format!("{FED}/event/{}", enc(create))), 403, "M_FORBIDDEN");

    // The state before a message is the current state here.
    let s = bed.get_ok(&state_ids_uri(&room, &m[2]));
    let pdu_ids = strings(&s["pdu_ids"]);
    assert_eq!(set(&pdu_ids), state.values().cloned().collect::<BTreeSet<_>>());
    let chain_ids = set(&strings(&s["auth_chain_ids"]));
    for id in [create, power, member] {
        assert!(chain_ids.contains(id), "{id} in the auth chain: {s}");
    }
    assert!(chain_ids.len() < pdu_ids.len(), "the chain holds no message and not every state event");
    // `/state` is the same as PDUs.
    let s = bed.get_ok(&format!("{FED}/state/{}?event_id={}", enc(&room), enc(&m[2])));
    assert_eq!(set(&ids_of("12", &s["pdus"])), set(&pdu_ids));
    assert_eq!(set(&ids_of("12", &s["auth_chain"])), chain_ids);
    assert!(s["pdus"].as_array().unwrap().iter().any(|p| p["type"] == "m.room.create"));

    // State *before* a state event: not the event itself.
    let topic =
        set_state(&bed.host.server, &bed.alice.token, &room, "m.room.topic", "", json!({ "topic": "t" }));
    let after = say(&bed.host.server, &bed.alice.token, &room, "after the topic");
    let before_topic = set(&strings(&bed.get_ok(&state_ids_uri(&room, &topic))["pdu_ids"]));
    assert!(!before_topic.contains(&topic));
    assert_eq!(before_topic, set(&pdu_ids));
    let after_topic = set(&strings(&bed.get_ok(&state_ids_uri(&room, &after))["pdu_ids"]));
    assert!(after_topic.contains(&topic));
    assert_eq!(after_topic.len(), pdu_ids.len() + 1);

    // An event's auth chain: its auth events and theirs, not itself.
    let a = bed.get_ok(&format!("{FED}/event_auth/{}/{}", enc(&room), enc(&m[2])));
    let chain = set(&ids_of("12", &a["auth_chain"]));
    for id in [create, power, member] {
        assert!(chain.contains(id), "{id} in {a}");
    }
    assert!(!chain.contains(&m[2]));
    assert!(a["auth_chain"].as_array().unwrap().iter().all(|p| p["type"] != "m.room.message"));

    // Backfill: the given events, then their past, newest first.
    let b = bed.get_ok(&backfill_uri(&room, &[&m[4]], 3));
    assert_eq!(b["origin"], bed.host.name);
    assert_eq!(ids_of("12", &b["pdus"]), vec![m[4].clone(), m[3].clone(), m[2].clone()]);
    let all = ids_of("12", &bed.get_ok(&backfill_uri(&room, &[&after, &m[4], &after], 100))["pdus"]);
    assert_eq!(all.len(), set(&all).len(), "no event twice: {all:?}");
    assert_eq!(all.first(), Some(&after));
    assert_eq!(all.last(), Some(hv), "it ends at the first event the asker may see");
    assert!(all.contains(&topic));
    assert!(!all.contains(create) && !all.contains(member) && !all.contains(power), "the setup is left out");
    let in_order: Vec<String> =
        [after.clone(), topic.clone()].into_iter().chain(m.iter().rev().cloned()).collect();
    assert_eq!(all[..7], in_order[..], "newest first");
    let from_two = ids_of("12", &bed.get_ok(&backfill_uri(&room, &[&m[4], &m[3]], 2))["pdus"]);
    assert_eq!(from_two, vec![m[4].clone(), m[3].clone()]);
    assert!(bed.get_ok(&backfill_uri(&room, &[&m[4]], 0))["pdus"].as_array().unwrap().is_empty());

    // Missing events: the gap between what the asker has and what it got,
    // oldest first, nearest the latest events when limited.
    let body = |limit: Option<u64>, min_depth: Option<i64>| {
        let mut b = json!({ "earliest_events": [m[0]], "latest_events": [m[4]] });
        if let Some(l) = limit {
            b["limit"] = json!(l);
        }
        if let Some(d) = min_depth {
            b["min_depth"] = json!(d);
        }
        b
    };
    let (status, r) = bed.missing(&room, body(None, None));
    assert_eq!(status, 200, "{r}");
    assert_eq!(ids_of("12", &r["events"]), m[1..4].to_vec());
    let (_, r) = bed.missing(&room, body(Some(2), None));
    assert_eq!(ids_of("12", &r["events"]), m[2..4].to_vec());
    let depth_of_m3 =
        bed.get_ok(&format!("{FED}/event/{}", enc(&m[2])))["pdus"][0]["depth"].as_i64().unwrap();
    let (_, r) = bed.missing(&room, body(None, Some(depth_of_m3)));
    assert_eq!(ids_of("12", &r["events"]), m[2..4].to_vec(), "nothing below min_depth");
    // Nothing between neighbours; unknown latest events give nothing.
    let (_, r) = bed.missing(&room, json!({ "earliest_events": [m[3]], "latest_events": [m[4]] }));
    assert_eq!(r["events"], json!([]));
    // Without an earliest event, the walk goes back to the room's start,
    // leaving out what the asker may not see.
    let (_, r) = bed.missing(&room, json!({ "earliest_events": [], "latest_events": [after], "limit": 100 }));
    let gap = ids_of("12", &r["events"]);
    assert_eq!(gap.first(), Some(hv));
    assert_eq!(gap.last(), Some(&topic));
    assert_eq!(gap.len(), all.len() - 1, "everything but the latest event");

    // The event nearest a time.
    let ts = |q: &str| bed.get(&format!("{FED}/timestamp_to_event/{}?{q}", enc(&room)));
    let (status, r) = ts("ts=0&dir=f");
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["event_id"], hv.as_str(), "the first event the asker may see");
    let hv_ts = bed.get_ok(&format!("{FED}/event/{}", enc(hv)))["pdus"][0]["origin_server_ts"].clone();
    assert_eq!(r["origin_server_ts"], hv_ts);
    let m3_ts = pdu["origin_server_ts"].as_i64().unwrap();
    let (_, r) = ts(&format!("ts={m3_ts}&dir=b"));
    let found_ts = r["origin_server_ts"].as_i64().unwrap();
    assert!(found_ts == m3_ts && m.contains(&r["event_id"].as_str().unwrap().to_owned()), "{r}");
    let (_, r) = ts(&format!("ts={}&dir=b", common::now_ms() + 60_000));
    assert_eq!(r["event_id"], after.as_str());
    assert_error(&ts("ts=0&dir=b"), 404, "M_NOT_FOUND");
    assert_error(&ts(&format!("ts={}&dir=f", common::now_ms() + 60_000)), 404, "M_NOT_FOUND");
}

#[test]
fn backfill_and_missing_events_are_bounded() {
    let bed = Bed::new();
    let room = bed.room("world_readable", "12");
    let mut last = String::new();
    for i in 0..110 {
        last = say(&bed.host.server, &bed.alice.token, &room, &format!("n{i}"));
    }
    let b = bed.get_ok(&backfill_uri(&room, &[&last], 1000));
    let got = ids_of("12", &b["pdus"]);
    assert_eq!(got.len(), 100, "capped");
    assert_eq!(got.len(), set(&got).len());
    assert_eq!(got[0], last);
    let (status, r) =
        bed.missing(&room, json!({ "earliest_events": [], "latest_events": [last], "limit": 1_000_000 }));
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["events"].as_array().unwrap().len(), 100, "capped");
    let (_, r) = bed.missing(&room, json!({ "earliest_events": [], "latest_events": [last] }));
    assert_eq!(r["events"].as_array().unwrap().len(), 10, "the default limit");
    // The `v` list is bounded too.
    let many: Vec<String> = (0..21).map(|i| format!("$e{i}")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_error(&bed.get(&backfill_uri(&room, &refs, 10)), 400, "M_INVALID_PARAM");
}

#[test]
fn rooms_v1_serve_their_event_ids_and_walk_hashed_references() {
    let bed = Bed::new();
    let room = bed.room("world_readable", "1");
    let m: Vec<String> =
        (1..=3).map(|i| say(&bed.host.server, &bed.alice.token, &room, &format!("m{i}"))).collect();
    let t = bed.get_ok(&format!("{FED}/event/{}", enc(&m[1])));
    let pdu = &t["pdus"][0];
    assert_eq!(pdu["event_id"], m[1].as_str(), "v1 PDUs carry their ID");
    assert_eq!(pdu["prev_events"][0][0], m[0].as_str(), "references are [id, hashes] pairs");
    let b = bed.get_ok(&backfill_uri(&room, &[&m[2]], 3));
    assert_eq!(ids_of("1", &b["pdus"]), m.iter().rev().cloned().collect::<Vec<_>>());
    let (_, r) = bed.missing(&room, json!({ "earliest_events": [m[0]], "latest_events": [m[2]] }));
    assert_eq!(ids_of("1", &r["events"]), vec![m[1].clone()]);
    let a = bed.get_ok(&format!("{FED}/event_auth/{}/{}", enc(&room), enc(&m[1])));
    assert!(a["auth_chain"].as_array().unwrap().iter().any(|p| p["type"] == "m.room.create"));
}

#[test]
fn refusals_unknowns_and_malformed_requests() {
    let bed = Bed::new();
    let open = bed.room("world_readable", "12");
    let open_msg = say(&bed.host.server, &bed.alice.token, &open, "hello");
    let shared = bed.room("shared", "12");
    let shared_msg = say(&bed.host.server, &bed.alice.token, &shared, "secret");

    // A room the asker has no member in and may not read: 403 everywhere.
    let forbidden: Vec<(String, Option<Value>)> = vec![
        (format!("{FED}/event/{}", enc(&shared_msg)), None),
        (state_ids_uri(&shared, &shared_msg), None),
        (format!("{FED}/state/{}?event_id={}", enc(&shared), enc(&shared_msg)), None),
        (format!("{FED}/event_auth/{}/{}", enc(&shared), enc(&shared_msg)), None),
        (backfill_uri(&shared, &[&shared_msg], 10), None),
        (format!("{FED}/timestamp_to_event/{}?ts=0&dir=f", enc(&shared)), None),
        (
            format!("{FED}/get_missing_events/{}", enc(&shared)),
            Some(json!({ "earliest_events": [], "latest_events": [shared_msg] })),
        ),
    ];
    for (uri, body) in &forbidden {
        let method = if body.is_some() { "POST" } else { "GET" };
        assert_error(&bed.call(method, uri, body.as_ref()), 403, "M_FORBIDDEN");
    }
    // Unsigned: 401, as every federation route.
    let (status, _) =
        fed::call(&bed.agent, "GET", &bed.host.name, &state_ids_uri(&open, &open_msg), &[], None);
    assert_eq!(status, 401);

    // Unknown rooms and events; an event of another room.
    let nowhere = format!("!nowhere:{}", bed.host.name);
    assert_error(&bed.get(&state_ids_uri(&nowhere, &open_msg)), 404, "M_NOT_FOUND");
    assert_error(&bed.get(&backfill_uri(&nowhere, &[&open_msg], 5)), 404, "M_NOT_FOUND");
    assert_error(
        &bed.missing(&nowhere, json!({ "earliest_events": [], "latest_events": [] })),
        404,
        "M_NOT_FOUND",
    );
    assert_error(&bed.get(&format!("{FED}/event/{}", enc("$unknown"))), 404, "M_NOT_FOUND");
    assert_error(&bed.get(&state_ids_uri(&open, "$unknown")), 404, "M_NOT_FOUND");
    assert_error(&bed.get(&backfill_uri(&open, &[&open_msg, "$unknown"], 5)), 404, "M_NOT_FOUND");
    assert_error(&bed.get(&state_ids_uri(&open, &shared_msg)), 404, "M_NOT_FOUND");
    assert_error(
        &bed.get(&format!("{FED}/event_auth/{}/{}", enc(&open), enc(&shared_msg))),
        404,
        "M_NOT_FOUND",
    );
    assert_error(&bed.get(&backfill_uri(&open, &[&shared_msg], 5)), 404, "M_NOT_FOUND");
    // A latest event of another room is passed over, not walked.
    let (status, r) =
        bed.missing(&open, json!({ "earliest_events": [], "latest_events": [open_msg, shared_msg] }));
    assert_eq!(status, 200, "{r}");
    assert!(r["events"].as_array().unwrap().iter().all(|p| p["room_id"] == open.as_str()), "{r}");

    // Malformed parameters: 400 with the right code.
    let bad: Vec<(String, &str)> = vec![
        (format!("{FED}/state_ids/{}", enc(&open)), "M_MISSING_PARAM"),
        (state_ids_uri(&open, "not-an-event"), "M_INVALID_PARAM"),
        (state_ids_uri("not-a-room", &open_msg), "M_INVALID_PARAM"),
        (format!("{FED}/state/{}", enc(&open)), "M_MISSING_PARAM"),
        (format!("{FED}/event/{}", enc("no-sigil")), "M_INVALID_PARAM"),
        (format!("{FED}/event_auth/{}/{}", enc(&open), enc("x")), "M_INVALID_PARAM"),
        (format!("{FED}/backfill/{}?limit=5", enc(&open)), "M_MISSING_PARAM"),
        (format!("{FED}/backfill/{}?v={}", enc(&open), enc(&open_msg)), "M_MISSING_PARAM"),
        (format!("{FED}/backfill/{}?v={}&limit=-1", enc(&open), enc(&open_msg)), "M_INVALID_PARAM"),
        (format!("{FED}/backfill/{}?v={}&limit=ten", enc(&open), enc(&open_msg)), "M_INVALID_PARAM"),
        (format!("{FED}/backfill/{}?v=nope&limit=5", enc(&open)), "M_INVALID_PARAM"),
        (format!("{FED}/timestamp_to_event/{}?dir=f", enc(&open)), "M_MISSING_PARAM"),
        (format!("{FED}/timestamp_to_event/{}?ts=0", enc(&open)), "M_MISSING_PARAM"),
        (format!("{FED}/timestamp_to_event/{}?ts=x&dir=f", enc(&open)), "M_INVALID_PARAM"),
        (format!("{FED}/timestamp_to_event/{}?ts=0&dir=up", enc(&open)), "M_INVALID_PARAM"),
    ];
    for (uri, code) in &bad {
        assert_error(&bed.get(uri), 400, code);
    }
    let bad_bodies = [
        (json!({ "latest_events": [open_msg] }), "M_MISSING_PARAM"),
        (json!({ "earliest_events": [] }), "M_MISSING_PARAM"),
        (json!({ "earliest_events": [], "latest_events": open_msg }), "M_BAD_JSON"),
        (json!({ "earliest_events": [1], "latest_events": [open_msg] }), "M_BAD_JSON"),
        (json!({ "earliest_events": ["nope"], "latest_events": [open_msg] }), "M_BAD_JSON"),
        (json!({ "earliest_events": [], "latest_events": [open_msg], "limit": "ten" }), "M_BAD_JSON"),
        (json!({ "earliest_events": [], "latest_events": [open_msg], "limit": -1 }), "M_BAD_JSON"),
        (json!({ "earliest_events": [], "latest_events": [open_msg], "min_depth": "1" }), "M_BAD_JSON"),
        (json!({ "earliest_events": [], "latest_events": vec![open_msg.clone(); 21] }), "M_BAD_JSON"),
        (json!([]), "M_BAD_JSON"),
    ];
    for (body, code) in bad_bodies {
        assert_error(&bed.missing(&open, body.clone()), 400, code);
    }

    // The room's server ACL: denying the asker refuses it everything.
    let acl = |content: Value| {
        set_state(&bed.host.server, &bed.alice.token, &open, "m.room.server_acl", "", content)
    };
    let event_uri = format!("{FED}/event/{}", enc(&open_msg));
    acl(json!({ "allow": ["*"], "deny": ["127.0.0.1"] }));
    for uri in [
        event_uri.clone(),
        state_ids_uri(&open, &open_msg),
        backfill_uri(&open, &[&open_msg], 5),
        format!("{FED}/event_auth/{}/{}", enc(&open), enc(&open_msg)),
        format!("{FED}/timestamp_to_event/{}?ts=0&dir=f", enc(&open)),
    ] {
        assert_error(&bed.get(&uri), 403, "M_FORBIDDEN");
    }
    assert_error(
        &bed.missing(&open, json!({ "earliest_events": [], "latest_events": [open_msg] })),
        403,
        "M_FORBIDDEN",
    );
    // IP literals refused; then an ACL that allows the asker.
    acl(json!({ "allow": ["*"], "allow_ip_literals": false }));
    assert_error(&bed.get(&event_uri), 403, "M_FORBIDDEN");
    acl(json!({ "allow": ["127.0.0.*"], "allow_ip_literals": true }));
    assert_eq!(bed.get(&event_uri).0, 200);
    acl(json!({ "allow": ["example.org"] }));
    assert_error(&bed.get(&event_uri), 403, "M_FORBIDDEN");
    acl(json!({ "allow": ["*"] }));
    assert_eq!(bed.get(&event_uri).0, 200);
}

#[test]
fn a_server_with_a_joined_member_reads_a_shared_room() {
    let bed = Bed::new();
    let room = bed.room("shared", "12");
    let m1 = say(&bed.host.server, &bed.alice.token, &room, "one");
    let m2 = say(&bed.host.server, &bed.alice.token, &room, "two");
    assert_error(&bed.get(&format!("{FED}/event/{}", enc(&m2))), 403, "M_FORBIDDEN");
    // Joins over federation do not exist yet: a membership row stands in
    // for a user of the asking server joined to the room now.
    let conn = rusqlite::Connection::open(bed.host.server.db()).expect("the host's database");
    conn.busy_timeout(std::time::Duration::from_secs(10)).expect("busy timeout");
    conn.execute(
        "INSERT INTO memberships (user_id, room_id, membership, event_id, pos) VALUES (?1, ?2, 'join', '$stand-in', 0)",
        rusqlite::params![format!("@bob:{}", bed.asker.name), room],
    )
    .expect("a membership row");
    drop(conn);
    let t = bed.get_ok(&format!("{FED}/event/{}", enc(&m2)));
    assert_eq!(id_of("12", &t["pdus"][0]), m2);
    let b = bed.get_ok(&backfill_uri(&room, &[&m2], 2));
    assert_eq!(ids_of("12", &b["pdus"]), vec![m2.clone(), m1.clone()]);
    assert!(bed.get_ok(&state_ids_uri(&room, &m2))["pdu_ids"].as_array().unwrap().len() > 3);
    let (_, r) =
        bed.get(&format!("{FED}/timestamp_to_event/{}?ts={}&dir=b", enc(&room), common::now_ms() + 60_000));
    assert_eq!(r["event_id"], m2.as_str());
}
