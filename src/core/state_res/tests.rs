//! Unit tests of `state_res` (beside it, so the module reads without them).
//!
//! Most tests grow a room as a graph of events, each named `$NAME`, with
//! the state before an event being the resolution of the states after its
//! `prev_events` (by the algorithm under test), and its `auth_events`
//! picked from that state by the server-server API's selection. The
//! classic cases are the scenarios other implementations test (ban against
//! a power levels change, the topic reset, join rules evasion, ...), each
//! run under v2 and v2.1 where they must agree, and apart where they don't.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::*;
use crate::core::auth::auth_types_for_event;
use crate::core::event;
use crate::core::room_version::{RoomVersion, V10, V11, V12};

const ALICE: &str = "@alice:example.com";
const BOB: &str = "@bob:example.com";
const CHARLIE: &str = "@charlie:example.com";
const DAVE: &str = "@dave:example.com";
const ELLA: &str = "@ella:example.com";

const TOPIC: &str = "m.room.topic";
const MESSAGE: &str = "m.room.message";

/// Room v1's algorithm is tested under v10's authorisation rules and
/// event format (the test rooms' events are built in one format; the
/// algorithm only calls the rules), with v1's state resolution.
const V1_TEST: RoomVersion =
    RoomVersion { id: "1", state_res: crate::core::room_version::StateRes::V1, ..V10 };

type Resolver = fn(&RoomVersion, &[StateMap], &dyn EventSource) -> Result<StateMap, ResolveError>;

/// Every pairing of rules and algorithm under which the v2 family must
/// agree: v2 under v10 and v11 rules, v2.1 under v12 rules and v11 rules.
const V2_FAMILY: [(&RoomVersion, Resolver, &str); 4] = [
    (&V10, resolve_v2, "v2/v10"),
    (&V11, resolve_v2, "v2/v11"),
    (&V12, resolve_v2_1, "v2.1/v12"),
    (&V11, resolve_v2_1, "v2.1/v11"),
];

fn id(name: &str) -> String {
    format!("${name}")
}

/// Power levels content: `users` as given, plus alice at 100 where the
/// creator is not already above everyone (v12 forbids listing her).
fn pl(version: &RoomVersion, users: &[(&str, i64)]) -> Value {
    pl_with(version, users, json!({}))
}

fn pl_with(version: &RoomVersion, users: &[(&str, i64)], extra: Value) -> Value {
    let mut map = serde_json::Map::new();
    if !version.privileged_creators {
        map.insert(ALICE.to_owned(), json!(100));
    }
    for (user, level) in users {
        map.insert((*user).to_owned(), json!(level));
    }
    let mut content = json!({ "users": map });
    for (k, v) in extra.as_object().into_iter().flatten() {
        content[k] = v.clone();
    }
    content
}

fn join() -> Value {
    json!({"membership": "join"})
}

/// A room grown event by event.
struct Room {
    version: &'static RoomVersion,
    resolve: Resolver,
    room_id: String,
    create_id: String,
    events: MemoryEvents,
    before: HashMap<String, StateMap>,
    after: HashMap<String, StateMap>,
    depth: HashMap<String, i64>,
    clock: i64,
}

impl Room {
    /// Alice creates the room (she is at 100, or its v12 creator), makes it
    /// public, and bob and charlie join; then `$START`, a message.
    fn new(version: &'static RoomVersion, resolve: Resolver) -> Room {
        let mut create = json!({
            "type": "m.room.create", "state_key": "", "sender": ALICE,
            "content": {"room_version": version.id},
            "auth_events": [], "prev_events": [], "depth": 1, "origin_server_ts": 0,
        });
        if version.create_has_creator_field {
            create["content"]["creator"] = json!(ALICE);
        }
        let room_id = if version.room_id_from_create {
            event::room_id_from_create(version, &create).expect("the create event hashes")
        } else {
            let room_id = "!room:example.com".to_owned();
            create["room_id"] = json!(room_id);
            room_id
        };
        let create_id = event::event_id(version, &create).expect("the create event hashes");
        let mut room = Room {
            version,
            resolve,
            room_id,
            create_id: create_id.clone(),
            events: MemoryEvents::new(),
            before: HashMap::new(),
            after: HashMap::new(),
            depth: HashMap::new(),
            clock: 0,
        };
        assert!(room.events.insert(&create_id, create, false));
        let state: StateMap = [(("m.room.create".to_owned(), String::new()), create_id.clone())].into();
        room.before.insert(create_id.clone(), StateMap::new());
        room.after.insert(create_id.clone(), state);
        room.depth.insert(create_id.clone(), 1);

        let ima = room.add("IMA", ALICE, MEMBER, Some(ALICE), join(), &[&create_id]);
        let ipower = room.add("IPOWER", ALICE, POWER_LEVELS, Some(""), pl(version, &[]), &[&ima]);
        room.add("IJR", ALICE, JOIN_RULES, Some(""), json!({"join_rule": "public"}), &[&ipower]);
        room.add("IMB", BOB, MEMBER, Some(BOB), join(), &["$IJR"]);
        room.add("IMC", CHARLIE, MEMBER, Some(CHARLIE), join(), &["$IMB"]);
        room.add("START", ALICE, MESSAGE, None, json!({"body": "start"}), &["$IMC"]);
        room
    }

    /// The state after each of `tips`, resolved.
    fn resolve_tips(&self, tips: &[&str]) -> StateMap {
        let sets: Vec<StateMap> = tips.iter().map(|tip| self.after[&self.full_id(tip)].clone()).collect();
        if let [only] = &sets[..] {
            return only.clone();
        }
        let resolved = (self.resolve)(self.version, &sets, &self.events).expect("every event is known");
        // The walking defaults of the graph queries agree with the index.
        let walked = (self.resolve)(self.version, &sets, &Plain(&self.events)).expect("every event is known");
        assert_eq!(resolved, walked, "resolved through MemoryEvents and through the defaults");
        resolved
    }

    fn full_id(&self, name: &str) -> String {
        if name.starts_with('$') {
            name.to_owned()
        } else {
            id(name)
        }
    }

    /// Adds `$NAME` after `prevs`, at the next tick of the clock.
    fn add(
        &mut self,
        name: &str,
        sender: &str,
        kind: &str,
        state_key: Option<&str>,
        content: Value,
        prevs: &[&str],
    ) -> String {
        self.clock += 1;
        let ts = self.clock;
        self.add_at(ts, name, sender, kind, state_key, content, prevs)
    }

    /// Adds `$NAME` after `prevs` with the timestamp `ts`.
    #[allow(clippy::too_many_arguments)]
    fn add_at(
        &mut self,
        ts: i64,
        name: &str,
        sender: &str,
        kind: &str,
        state_key: Option<&str>,
        content: Value,
        prevs: &[&str],
    ) -> String {
        let event_id = id(name);
        let prevs: Vec<String> = prevs.iter().map(|p| self.full_id(p)).collect();
        let prev_refs: Vec<&str> = prevs.iter().map(String::as_str).collect();
        let before = self.resolve_tips(&prev_refs);
        let auth_events: Vec<&String> = auth_types_for_event(self.version, kind, state_key, sender, &content)
            .iter()
            .filter_map(|key| before.get(key))
            .collect();
        let depth = prevs.iter().map(|p| self.depth[p]).max().unwrap_or(0) + 1;
        let mut pdu = json!({
            "event_id": event_id, "room_id": self.room_id, "sender": sender, "type": kind,
            "content": content, "auth_events": auth_events, "prev_events": prevs,
            "depth": depth, "origin_server_ts": ts,
        });
        if let Some(key) = state_key {
            pdu["state_key"] = json!(key);
        }
        assert!(self.events.insert(&event_id, pdu, false));
        let mut after = before.clone();
        if let Some(key) = state_key {
            after.insert((kind.to_owned(), key.to_owned()), event_id.clone());
        }
        self.before.insert(event_id.clone(), before);
        self.after.insert(event_id.clone(), after);
        self.depth.insert(event_id.clone(), depth);
        event_id
    }

    /// Marks `$NAME` rejected: it is taken out of every state computed
    /// since, as a server that rejected it (but accepted what followed)
    /// would have them.
    fn reject(&mut self, name: &str) {
        let event_id = id(name);
        self.events.set_rejected(&event_id, true);
        let before = self.before[&event_id].clone();
        for state in self.after.values_mut() {
            let keys: Vec<_> =
                state.iter().filter(|(_, v)| **v == event_id).map(|(k, _)| k.clone()).collect();
            for key in keys {
                match before.get(&key) {
                    Some(old) => state.insert(key, old.clone()),
                    None => state.remove(&key),
                };
            }
        }
    }
}

fn key(kind: &str, state_key: &str) -> (String, String) {
    (kind.to_owned(), state_key.to_owned())
}

/// Asserts each `(type, state_key)` holds `$NAME`, or nothing for `None`.
#[track_caller]
fn expect(state: &StateMap, wanted: &[(&str, &str, Option<&str>)], label: &str) {
    for &(kind, state_key, name) in wanted {
        let got = state.get(&key(kind, state_key)).map(String::as_str);
        assert_eq!(got, name.map(id).as_deref(), "{label}: ({kind}, {state_key:?})");
    }
}

// --- the classic cases, v2 and v2.1 alike ---

#[test]
fn ban_beats_a_concurrent_power_levels_change() {
    // Bob's change is sent after the ban, or (by his clock) before it: the
    // ban still comes first, alice's power being greater.
    for bob_first in [false, true] {
        for (version, resolve, label) in V2_FAMILY {
            let mut r = Room::new(version, resolve);
            r.add("PA", ALICE, POWER_LEVELS, Some(""), pl(version, &[(BOB, 50)]), &["START"]);
            r.add("MA", ALICE, MEMBER, Some(ALICE), join(), &["PA"]);
            r.add("MB", ALICE, MEMBER, Some(BOB), json!({"membership": "ban"}), &["MA"]);
            let ts = if bob_first { 1 } else { r.clock + 1 };
            r.add_at(ts, "PB", BOB, POWER_LEVELS, Some(""), pl(version, &[(BOB, 50)]), &["PA"]);
            let state = r.resolve_tips(&["MB", "PB"]);
            expect(
                &state,
                &[(POWER_LEVELS, "", Some("PA")), (MEMBER, ALICE, Some("MA")), (MEMBER, BOB, Some("MB"))],
                &format!("{label}, bob's first: {bob_first}"),
            );
        }
    }
}

#[test]
fn join_rules_change_beats_a_concurrent_join() {
    for (version, resolve, label) in V2_FAMILY {
        let mut r = Room::new(version, resolve);
        r.add("JR", ALICE, JOIN_RULES, Some(""), json!({"join_rule": "invite"}), &["START"]);
        r.add("ME", ELLA, MEMBER, Some(ELLA), join(), &["START"]);
        let state = r.resolve_tips(&["JR", "ME"]);
        expect(&state, &[(JOIN_RULES, "", Some("JR")), (MEMBER, ELLA, None)], label);
    }
}

#[test]
fn power_levels_chain_across_a_fork_resolves_to_its_end() {
    for (version, resolve, label) in V2_FAMILY {
        let mut r = Room::new(version, resolve);
        r.add("PA", ALICE, POWER_LEVELS, Some(""), pl(version, &[(BOB, 50)]), &["START"]);
        let pb = pl(version, &[(BOB, 50), (CHARLIE, 50)]);
        r.add("PB", BOB, POWER_LEVELS, Some(""), pb, &["PA"]);
        r.add("PC", ALICE, POWER_LEVELS, Some(""), pl(version, &[(BOB, 50), (CHARLIE, 0)]), &["PB"]);
        let state = r.resolve_tips(&["PC", "PA"]);
        expect(&state, &[(POWER_LEVELS, "", Some("PC"))], label);
    }
}

/// Alice's demotion of bob wins over bob's power levels, and with it the
/// topic alice set over bob's.
#[test]
fn topic_follows_the_power_levels_that_win() {
    for (version, resolve, label) in V2_FAMILY {
        let mut r = Room::new(version, resolve);
        r.add("T1", ALICE, TOPIC, Some(""), json!({"topic": "1"}), &["START"]);
        r.add("PA1", ALICE, POWER_LEVELS, Some(""), pl(version, &[(BOB, 50)]), &["T1"]);
        r.add("T2", ALICE, TOPIC, Some(""), json!({"topic": "2"}), &["PA1"]);
        r.add("PA2", ALICE, POWER_LEVELS, Some(""), pl(version, &[(BOB, 0)]), &["T2"]);
        r.add("PB", BOB, POWER_LEVELS, Some(""), pl(version, &[(BOB, 50)]), &["PA1"]);
        r.add("T3", BOB, TOPIC, Some(""), json!({"topic": "3"}), &["PB"]);
        let state = r.resolve_tips(&["PA2", "T3"]);
        expect(&state, &[(POWER_LEVELS, "", Some("PA2")), (TOPIC, "", Some("T2"))], label);

        // A merge, then a new topic on one side: resolved again at the end.
        r.add("MZ1", ALICE, MESSAGE, None, json!({"body": "merge"}), &["PA2", "T3"]);
        r.add("T4", ALICE, TOPIC, Some(""), json!({"topic": "4"}), &["MZ1"]);
        let state = r.resolve_tips(&["T4", "MZ1"]);
        expect(&state, &[(POWER_LEVELS, "", Some("PA2")), (TOPIC, "", Some("T4"))], label);
    }
}

/// The "topic reset": bob's topic, sent while he could, loses to the older
/// topic once his ban is resolved before it.
#[test]
fn topic_reset_by_a_ban() {
    for (version, resolve, label) in V2_FAMILY {
        let mut r = Room::new(version, resolve);
        r.add("T1", ALICE, TOPIC, Some(""), json!({"topic": "1"}), &["START"]);
        r.add("PA", ALICE, POWER_LEVELS, Some(""), pl(version, &[(BOB, 50)]), &["T1"]);
        r.add("T2", BOB, TOPIC, Some(""), json!({"topic": "2"}), &["PA"]);
        r.add("MB", ALICE, MEMBER, Some(BOB), json!({"membership": "ban"}), &["T2"]);
        let state = r.resolve_tips(&["MB", "T1"]);
        expect(
            &state,
            &[(TOPIC, "", Some("T1")), (MEMBER, BOB, Some("MB")), (POWER_LEVELS, "", Some("PA"))],
            label,
        );
    }
}

/// An event that fails the authorisation rules against the partial state
/// is left out, and what it would have replaced stays.
#[test]
fn an_event_that_fails_is_skipped() {
    for (version, resolve, label) in V2_FAMILY {
        let mut r = Room::new(version, resolve);
        r.add("PA", ALICE, POWER_LEVELS, Some(""), pl(version, &[(BOB, 50)]), &["START"]);
        r.add("T1", ALICE, TOPIC, Some(""), json!({"topic": "alice"}), &["PA"]);
        // Bob is demoted on one side and, on the other, sets the topic later.
        r.add("PD", ALICE, POWER_LEVELS, Some(""), pl(version, &[(BOB, 0)]), &["T1"]);
        r.add("T2", BOB, TOPIC, Some(""), json!({"topic": "bob"}), &["T1"]);
        let state = r.resolve_tips(&["PD", "T2"]);
        expect(&state, &[(POWER_LEVELS, "", Some("PD")), (TOPIC, "", Some("T1"))], label);
    }
}

/// A key missing from the partial state is taken from the event's own auth
/// events, but never from one that was rejected.
#[test]
fn a_rejected_auth_event_is_not_used() {
    for rejected in [false, true] {
        for (version, resolve, label) in V2_FAMILY {
            let mut r = Room::new(version, resolve);
            let anyone_sets_topics = pl_with(version, &[], json!({"events": {TOPIC: 0}}));
            r.add("PA", ALICE, POWER_LEVELS, Some(""), anyone_sets_topics, &["START"]);
            r.add("T0", ALICE, TOPIC, Some(""), json!({"topic": "alice"}), &["PA"]);
            r.add("JI", ALICE, JOIN_RULES, Some(""), json!({"join_rule": "invite"}), &["PA"]);
            // Dave joins uninvited (which should have been rejected) and sets
            // the topic, citing that join.
            r.add("DJ", DAVE, MEMBER, Some(DAVE), join(), &["JI"]);
            r.add("DT", DAVE, TOPIC, Some(""), json!({"topic": "dave"}), &["DJ"]);
            if rejected {
                r.reject("DJ");
            }
            let state = r.resolve_tips(&["DT", "T0"]);
            let topic = if rejected { "T0" } else { "DT" };
            let label = format!("{label}, join rejected: {rejected}");
            // The join itself fails its own checks either way.
            expect(&state, &[(TOPIC, "", Some(topic)), (MEMBER, DAVE, None)], &label);
        }
    }
}

// --- mainline ordering ---

/// Two topics on the same mainline position: the later timestamp is
/// applied last (and wins), then the larger event ID.
#[test]
fn mainline_ties_break_by_timestamp_then_event_id() {
    for (version, resolve, label) in V2_FAMILY {
        for (ts_a, ts_b, winner) in [(5000, 4000, "TA"), (4000, 5000, "TB"), (4500, 4500, "TB")] {
            let mut r = Room::new(version, resolve);
            r.add_at(ts_a, "TA", ALICE, TOPIC, Some(""), json!({"topic": "a"}), &["START"]);
            r.add_at(ts_b, "TB", ALICE, TOPIC, Some(""), json!({"topic": "b"}), &["START"]);
            let state = r.resolve_tips(&["TA", "TB"]);
            expect(&state, &[(TOPIC, "", Some(winner))], &format!("{label}, {ts_a} vs {ts_b}"));
        }
    }
}

/// A topic based on newer power levels is applied after one based on older
/// power levels, whatever their timestamps (v2: the mainline is the
/// resolved power levels' chain).
#[test]
fn mainline_position_comes_before_timestamp() {
    for (version, resolve, label) in V2_FAMILY {
        let mut r = Room::new(version, resolve);
        r.add("PA", ALICE, POWER_LEVELS, Some(""), pl(version, &[(BOB, 50)]), &["START"]);
        r.add_at(1, "TNEW", ALICE, TOPIC, Some(""), json!({"topic": "new"}), &["PA"]);
        r.add_at(9999, "TOLD", ALICE, TOPIC, Some(""), json!({"topic": "old"}), &["START"]);
        let state = r.resolve_tips(&["TNEW", "TOLD"]);
        // In v2.1 the power levels are conflicted here too (PA against
        // IPOWER), so the mainline exists in both.
        expect(&state, &[(TOPIC, "", Some("TNEW")), (POWER_LEVELS, "", Some("PA"))], label);
    }
}

#[test]
fn mainline_order_directly() {
    let mut r = Room::new(&V11, resolve_v2);
    r.add("PA", ALICE, POWER_LEVELS, Some(""), pl(&V11, &[(BOB, 50)]), &["START"]);
    r.add("PB", ALICE, POWER_LEVELS, Some(""), pl(&V11, &[(BOB, 60)]), &["PA"]);
    r.add_at(50, "X0", ALICE, TOPIC, Some(""), json!({}), &["PB"]);
    r.add_at(10, "X1", ALICE, TOPIC, Some(""), json!({}), &["PA"]);
    r.add_at(30, "X2", ALICE, TOPIC, Some(""), json!({}), &["START"]);
    r.add_at(30, "X3", ALICE, TOPIC, Some(""), json!({}), &["START"]);
    r.add_at(20, "X4", ALICE, "m.custom", Some(""), json!({}), &["$IMA"]);
    let names = ["$X0", "$X1", "$X2", "$X3", "$X4"];
    let order = v2::mainline_order(&r.events, Some("$PB"), &names).expect("known");
    // X4 cites no power levels (off the mainline); X2 and X3 sit on IPOWER
    // (position 2, tied on time), X1 on PA (1), X0 on PB (0).
    assert_eq!(order, ["$X4", "$X2", "$X3", "$X1", "$X0"]);
    let order = v2::mainline_order(&r.events, None, &names).expect("known");
    assert_eq!(order, ["$X1", "$X4", "$X2", "$X3", "$X0"]);
}

// --- reverse topological power ordering ---

#[test]
fn power_order_by_level_then_timestamp_then_id() {
    let mut r = Room::new(&V11, resolve_v2);
    r.add("PA", ALICE, POWER_LEVELS, Some(""), pl(&V11, &[(BOB, 50), (CHARLIE, 50)]), &["START"]);
    // Concurrent power events: charlie's and bob's at 50, alice's at 100.
    r.add_at(100, "CK", CHARLIE, JOIN_RULES, Some(""), json!({"join_rule": "public"}), &["PA"]);
    r.add_at(100, "BK", BOB, JOIN_RULES, Some(""), json!({"join_rule": "public"}), &["PA"]);
    r.add_at(50, "BJ", BOB, JOIN_RULES, Some(""), json!({"join_rule": "invite"}), &["PA"]);
    r.add_at(500, "AJ", ALICE, JOIN_RULES, Some(""), json!({"join_rule": "public"}), &["PA"]);
    // Ella joins under AJ and alice kicks her: the kick descends from AJ
    // through the join, which is not among the events sorted, and must
    // still come after AJ although it was sent first.
    r.add("ME", ELLA, MEMBER, Some(ELLA), join(), &["AJ"]);
    r.add_at(1, "AK", ALICE, MEMBER, Some(ELLA), json!({"membership": "leave"}), &["ME"]);
    let names = ["$PA", "$CK", "$BK", "$BJ", "$AJ", "$AK"];
    let mut ancestors: HashMap<&str, Vec<&str>> = HashMap::new();
    for name in names {
        let chain = r.events.auth_chain(name).expect("known");
        ancestors.insert(name, names.iter().copied().filter(|n| chain.contains(*n)).collect());
    }
    assert_eq!(ancestors["$AK"].len(), 2, "{:?}", ancestors["$AK"]);
    let order = v2::power_order(&V11, &r.events, &ancestors).expect("known");
    assert_eq!(order, ["$PA", "$AJ", "$AK", "$BJ", "$BK", "$CK"]);
}

// --- where v2 and v2.1 differ ---

/// The state reset v2.1 fixes. Bob changes the power levels on one side;
/// on the other he leaves, alice sets a topic. Merged, the state has both
/// his power levels and his leave. Resolved again against the topic side,
/// v2 re-checks his power levels against the unconflicted state, in which
/// he has left, and falls back to the old power levels; v2.1 checks them
/// against their own auth events and keeps them.
#[test]
fn state_reset_v2_resets_and_v2_1_does_not() {
    for (version, resolve, keeps) in
        [(&V11, resolve_v2 as Resolver, false), (&V11, resolve_v2_1, true), (&V12, resolve_v2_1, true)]
    {
        let label = format!("v{} {}", version.id, if keeps { "v2.1" } else { "v2" });
        let mut r = Room::new(version, resolve);
        r.add("PA", ALICE, POWER_LEVELS, Some(""), pl(version, &[(BOB, 50)]), &["START"]);
        r.add("PB", BOB, POWER_LEVELS, Some(""), pl(version, &[(BOB, 50), (CHARLIE, 50)]), &["PA"]);
        r.add("LB", BOB, MEMBER, Some(BOB), json!({"membership": "leave"}), &["PA"]);
        r.add("TA", ALICE, TOPIC, Some(""), json!({"topic": "a"}), &["LB"]);
        r.add("M", ALICE, MESSAGE, None, json!({"body": "merge"}), &["PB", "LB"]);
        // Both resolve the merge alike.
        let merged = r.resolve_tips(&["M"]);
        expect(&merged, &[(POWER_LEVELS, "", Some("PB")), (MEMBER, BOB, Some("LB"))], &label);

        let state = r.resolve_tips(&["M", "TA"]);
        let power = if keeps { "PB" } else { "PA" };
        expect(
            &state,
            &[(POWER_LEVELS, "", Some(power)), (MEMBER, BOB, Some("LB")), (TOPIC, "", Some("TA"))],
            &label,
        );
    }
}

#[test]
fn resolve_picks_the_algorithm_of_the_room_version() {
    for (version, keeps) in [(&V10, false), (&V11, false), (&V12, true)] {
        let mut r = Room::new(version, resolve);
        r.add("PA", ALICE, POWER_LEVELS, Some(""), pl(version, &[(BOB, 50)]), &["START"]);
        r.add("PB", BOB, POWER_LEVELS, Some(""), pl(version, &[(BOB, 50), (CHARLIE, 50)]), &["PA"]);
        r.add("LB", BOB, MEMBER, Some(BOB), json!({"membership": "leave"}), &["PA"]);
        r.add("TA", ALICE, TOPIC, Some(""), json!({"topic": "a"}), &["LB"]);
        r.add("M", ALICE, MESSAGE, None, json!({"body": "merge"}), &["PB", "LB"]);
        let state = r.resolve_tips(&["M", "TA"]);
        let power = if keeps { "PB" } else { "PA" };
        expect(&state, &[(POWER_LEVELS, "", Some(power))], &format!("v{}", version.id));
    }
    // Room v1 by its identifier: a key only one state holds is no conflict,
    // and is kept without a check (v2 checks it, and bob may not set it).
    let mut r = Room::new(&V1_TEST, resolve);
    r.add("TB", BOB, TOPIC, Some(""), json!({"topic": "bob"}), &["START"]);
    let sets = [r.after[&id("TB")].clone(), r.after[&id("START")].clone()];
    let state = resolve(&V1_TEST, &sets, &r.events).expect("known");
    expect(&state, &[(TOPIC, "", Some("TB"))], "v1");
    let state = resolve_v2(&V1_TEST, &sets, &r.events).expect("known");
    expect(&state, &[(TOPIC, "", None)], "v2 under the same rules");
}

// --- no conflicts ---

#[test]
fn without_conflicts_the_state_is_returned_unchanged() {
    let all: [(&RoomVersion, Resolver); 5] = [
        (&V1_TEST, resolve_v1),
        (&V10, resolve_v2),
        (&V11, resolve_v2),
        (&V12, resolve_v2_1),
        (&V11, resolve_v2_1),
    ];
    for (version, resolve) in all {
        let mut r = Room::new(version, resolve);
        r.add("T1", ALICE, TOPIC, Some(""), json!({"topic": "1"}), &["START"]);
        let state = r.after[&id("T1")].clone();
        assert_eq!(resolve(version, &[state.clone(), state.clone()], &r.events), Ok(state.clone()));
        assert_eq!(resolve(version, std::slice::from_ref(&state), &r.events), Ok(state.clone()));
        assert_eq!(resolve(version, &[], &r.events), Ok(StateMap::new()));
        // A concurrent message changes nothing either.
        r.add("M1", BOB, MESSAGE, None, json!({"body": "hi"}), &["START"]);
        r.add("M2", ALICE, MESSAGE, None, json!({"body": "hello"}), &["T1", "M1"]);
        assert_eq!(r.after[&id("M2")], state);
    }
}

// --- order of the state sets ---

/// A small deterministic generator (no crates): a linear congruential
/// generator with Knuth's constants.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

#[test]
fn the_result_does_not_depend_on_the_order_of_the_state_sets() {
    let all: [(&RoomVersion, Resolver); 4] =
        [(&V1_TEST, resolve_v1), (&V11, resolve_v2), (&V12, resolve_v2_1), (&V11, resolve_v2_1)];
    let mut rng = Lcg(0x5eed);
    for (version, resolve) in all {
        // Five tips: a ban, competing power levels, topics, a join rules
        // change, a leave.
        let mut r = Room::new(version, resolve);
        r.add("PA", ALICE, POWER_LEVELS, Some(""), pl(version, &[(BOB, 50), (CHARLIE, 50)]), &["START"]);
        r.add("MB", ALICE, MEMBER, Some(BOB), json!({"membership": "ban"}), &["PA"]);
        r.add("PB", BOB, POWER_LEVELS, Some(""), pl(version, &[(BOB, 50), (DAVE, 10)]), &["PA"]);
        r.add("TB", BOB, TOPIC, Some(""), json!({"topic": "bob"}), &["PB"]);
        r.add("TC", CHARLIE, TOPIC, Some(""), json!({"topic": "charlie"}), &["PA"]);
        r.add("JC", CHARLIE, JOIN_RULES, Some(""), json!({"join_rule": "invite"}), &["TC"]);
        r.add("ME", ELLA, MEMBER, Some(ELLA), join(), &["PA"]);
        r.add("LC", CHARLIE, MEMBER, Some(CHARLIE), json!({"membership": "leave"}), &["START"]);
        let mut sets: Vec<StateMap> =
            ["MB", "TB", "JC", "ME", "LC"].iter().map(|t| r.after[&id(t)].clone()).collect();
        let expected = resolve(version, &sets, &r.events).expect("known");
        for _ in 0..24 {
            rng.shuffle(&mut sets);
            assert_eq!(resolve(version, &sets, &r.events).as_ref(), Ok(&expected), "v{}", version.id);
        }
    }
}

// --- room v1 ---

#[test]
fn v1_power_levels_in_depth_order_until_one_fails() {
    let mut r = Room::new(&V1_TEST, resolve_v1);
    r.add("PA", ALICE, POWER_LEVELS, Some(""), pl(&V1_TEST, &[(BOB, 50)]), &["START"]);
    r.add("PB", BOB, POWER_LEVELS, Some(""), pl(&V1_TEST, &[(BOB, 50), (CHARLIE, 50)]), &["PA"]);
    // Between two that each pass in turn, the deeper wins.
    let state = r.resolve_tips(&["PA", "PB"]);
    expect(&state, &[(POWER_LEVELS, "", Some("PB"))], "v1");
    // Deeper still, but bob may not give charlie more than he has: the
    // chain stops at PB. The topic only one side holds is kept.
    r.add("T1", BOB, TOPIC, Some(""), json!({"topic": "x"}), &["PB"]);
    r.add("PC", BOB, POWER_LEVELS, Some(""), pl(&V1_TEST, &[(BOB, 50), (CHARLIE, 70)]), &["T1"]);
    let state = r.resolve_tips(&["PC", "PB"]);
    expect(&state, &[(POWER_LEVELS, "", Some("PB")), (TOPIC, "", Some("T1"))], "v1");
    // The shallowest is taken without a check, even against a deeper one
    // that fails after it.
    let state = r.resolve_tips(&["PC", "START"]);
    expect(&state, &[(POWER_LEVELS, "", Some("IPOWER"))], "v1");
}

#[test]
fn v1_other_conflicts_take_the_deepest_event_that_passes() {
    let mut r = Room::new(&V1_TEST, resolve_v1);
    r.add("PA", ALICE, POWER_LEVELS, Some(""), pl(&V1_TEST, &[(BOB, 0)]), &["START"]);
    r.add("TA", ALICE, TOPIC, Some(""), json!({"topic": "alice"}), &["PA"]);
    r.add("X", ALICE, MESSAGE, None, json!({}), &["START"]);
    r.add("Y", ALICE, MESSAGE, None, json!({}), &["X"]);
    r.add("Z", ALICE, MESSAGE, None, json!({}), &["Y"]);
    // Deeper than TA, sent by bob who has no power.
    r.add("TB", BOB, TOPIC, Some(""), json!({"topic": "bob"}), &["Z"]);
    let state = r.resolve_tips(&["TA", "TB"]);
    expect(&state, &[(POWER_LEVELS, "", Some("PA")), (TOPIC, "", Some("TA"))], "v1");
    // When none passes, the least deep is kept.
    r.add("TC", CHARLIE, TOPIC, Some(""), json!({"topic": "charlie"}), &["PA"]);
    let state = r.resolve_tips(&["TC", "TB"]);
    expect(&state, &[(TOPIC, "", Some("TC"))], "v1");
}

#[test]
fn v1_sha1_breaks_ties_between_events_of_one_depth() {
    let mut r = Room::new(&V1_TEST, resolve_v1);
    r.add("TA", ALICE, TOPIC, Some(""), json!({"topic": "a"}), &["START"]);
    r.add("TB", ALICE, TOPIC, Some(""), json!({"topic": "b"}), &["START"]);
    let state = r.resolve_tips(&["TA", "TB"]);
    // Ordinary keys: the smallest SHA-1 of the ID at the greatest depth.
    let winner = if v1::sha1("$TA") < v1::sha1("$TB") { "TA" } else { "TB" };
    expect(&state, &[(TOPIC, "", Some(winner))], "v1");
    assert_eq!(
        v1::sha1("abc").iter().map(|b| format!("{b:02x}")).collect::<String>(),
        "a9993e364706816aba3e25717850c26c9cd0d89d"
    );
}

// --- the source and its graph queries ---

#[test]
fn views_read_both_event_formats() {
    let v3 = json!({
        "type": MEMBER, "state_key": BOB, "sender": ALICE, "content": {"membership": "ban"},
        "auth_events": ["$a", "$b"], "prev_events": ["$p"], "depth": 7, "origin_server_ts": 99,
    });
    let view = ResolvedEventView::from_pdu("$x", &v3, false).expect("valid");
    assert_eq!(view.auth_events, ["$a", "$b"]);
    assert_eq!((view.depth, view.origin_server_ts), (7, 99));
    assert!(view.is_power_event());
    let v1 = json!({
        "type": TOPIC, "state_key": "", "sender": ALICE, "content": {},
        "auth_events": [["$a:x", {"sha256": "h"}]], "prev_events": [["$p:x", {}]],
    });
    let view = ResolvedEventView::from_pdu("$y:x", &v1, true).expect("valid");
    assert_eq!(
        (&view.auth_events[..], &view.prev_events[..]),
        (&["$a:x".to_owned()][..], &["$p:x".to_owned()][..])
    );
    assert!(view.rejected && !view.is_power_event());
    // A leave by oneself is not a power event; a message never is.
    let leave = json!({"type": MEMBER, "state_key": BOB, "sender": BOB, "content": {"membership": "leave"}});
    assert!(!ResolvedEventView::from_pdu("$z", &leave, false).expect("valid").is_power_event());
    assert!(ResolvedEventView::from_pdu("$w", &json!({"type": 5, "sender": ALICE}), false).is_none());
}

/// A source with the walking defaults only, to compare with the
/// memoising one.
struct Plain<'a>(&'a MemoryEvents);

impl EventSource for Plain<'_> {
    fn event(&self, id: &str) -> Option<&ResolvedEventView> {
        self.0.event(id)
    }

    fn pdu(&self, id: &str) -> Option<&Value> {
        self.0.pdu(id)
    }
}

#[test]
fn auth_chains_memoised_and_walked_agree() {
    let mut r = Room::new(&V11, resolve_v2);
    r.add("PA", ALICE, POWER_LEVELS, Some(""), pl(&V11, &[(BOB, 50)]), &["START"]);
    r.add("MB", ALICE, MEMBER, Some(BOB), json!({"membership": "ban"}), &["PA"]);
    let walked = Plain(&r.events).auth_chain("$MB").expect("known");
    // Ask for an ancestor first, so the second walk reuses it.
    r.events.auth_chain("$PA").expect("known");
    let memoised = r.events.auth_chain("$MB").expect("known");
    assert_eq!(walked, memoised);
    let mut names: Vec<&str> = memoised.iter().map(String::as_str).collect();
    names.sort_unstable();
    let mut want = vec![r.create_id.as_str(), "$IMA", "$IMB", "$IJR", "$IPOWER", "$PA"];
    want.sort_unstable();
    assert_eq!(names, want);
    assert_eq!(r.events.auth_chain("$nope"), None);
}

#[test]
fn auth_difference_counts_each_state_sets_own_events() {
    let mut r = Room::new(&V11, resolve_v2);
    r.add("PA", ALICE, POWER_LEVELS, Some(""), pl(&V11, &[(BOB, 50)]), &["START"]);
    r.add("MB", ALICE, MEMBER, Some(BOB), json!({"membership": "ban"}), &["PA"]);
    r.add("T1", BOB, TOPIC, Some(""), json!({"topic": "t"}), &["START"]);
    let sets = [r.after[&id("MB")].clone(), r.after[&id("T1")].clone()];
    let mut diff: Vec<String> = r.events.auth_difference(&sets).into_iter().collect();
    diff.sort_unstable();
    // PA and MB on one side, T1 on the other. IPOWER is in the state on one
    // side and below PA on the other; IMB likewise, below MB.
    assert_eq!(diff, ["$MB", "$PA", "$T1"]);
    assert!(r.events.auth_difference(&sets[..1]).is_empty());
}

#[test]
fn conflicted_subgraph_holds_the_paths_between_conflicted_events() {
    let mut r = Room::new(&V11, resolve_v2);
    r.add("PA", ALICE, POWER_LEVELS, Some(""), pl(&V11, &[(BOB, 50)]), &["START"]);
    r.add("PB", ALICE, POWER_LEVELS, Some(""), pl(&V11, &[(BOB, 51)]), &["PA"]);
    r.add("PC", ALICE, POWER_LEVELS, Some(""), pl(&V11, &[(BOB, 52)]), &["PB"]);
    r.add("TX", BOB, TOPIC, Some(""), json!({}), &["PC"]);
    // IPOWER and TX are conflicted: PA, PB, PC lie between them, and so do
    // bob's join (TX cites it) and the join rules (his join cites them),
    // which both cite IPOWER; alice's join and the create event, below
    // IPOWER, do not.
    let conflicted: HashSet<&str> = ["$TX", "$IPOWER"].into();
    let mut subgraph: Vec<String> = r.events.conflicted_subgraph(&conflicted).into_iter().collect();
    subgraph.sort_unstable();
    assert_eq!(subgraph, ["$IJR", "$IMB", "$IPOWER", "$PA", "$PB", "$PC", "$TX"]);
    assert_eq!(Plain(&r.events).conflicted_subgraph(&conflicted).len(), 7);
    let alone: HashSet<&str> = ["$TX"].into();
    assert_eq!(r.events.conflicted_subgraph(&alone), ["$TX".to_owned()].into());
}

#[test]
fn a_missing_conflicted_event_is_an_error() {
    let mut r = Room::new(&V11, resolve_v2);
    r.add("T1", ALICE, TOPIC, Some(""), json!({"topic": "1"}), &["START"]);
    let mut other = r.after[&id("T1")].clone();
    other.insert(key(TOPIC, ""), "$unknown".to_owned());
    let sets = [r.after[&id("T1")].clone(), other];
    for resolve in [resolve_v1 as Resolver, resolve_v2, resolve_v2_1] {
        assert_eq!(resolve(&V11, &sets, &r.events), Err(ResolveError::MissingEvent("$unknown".to_owned())));
    }
}

/// An event rejected against the state it was sent in (not against its
/// auth events) is checked again like any other, and kept if it passes:
/// the spec's "Rejected events". (Synapse keeps it out.)
#[test]
fn a_rejected_conflicted_event_is_checked_again() {
    for (version, resolve, label) in V2_FAMILY {
        let mut r = Room::new(version, resolve);
        r.add("T1", ALICE, TOPIC, Some(""), json!({"topic": "1"}), &["START"]);
        r.events.set_rejected("$T1", true);
        let state = r.resolve_tips(&["T1", "START"]);
        expect(&state, &[(TOPIC, "", Some("T1"))], label);
    }
}

#[test]
fn an_auth_cycle_ends() {
    // Event IDs chosen by their senders (rooms v1 and v2) can cite each
    // other; such a pair still resolves, in rank order.
    let mut r = Room::new(&V11, resolve_v2);
    let create = r.create_id.clone();
    for (name, other, topic) in [("CA", "$CB", "a"), ("CB", "$CA", "b")] {
        let pdu = json!({
            "room_id": r.room_id, "sender": ALICE, "type": JOIN_RULES, "state_key": "",
            "content": {"join_rule": "public", "topic": topic},
            "auth_events": [create, "$IPOWER", "$IMA", other], "prev_events": ["$START"],
            "depth": 99, "origin_server_ts": 99,
        });
        assert!(r.events.insert(&id(name), pdu, false));
    }
    let mut sets = [r.after[&id("START")].clone(), r.after[&id("START")].clone()];
    sets[0].insert(key(JOIN_RULES, ""), id("CA"));
    sets[1].insert(key(JOIN_RULES, ""), id("CB"));
    for resolve in [resolve_v1 as Resolver, resolve_v2, resolve_v2_1] {
        let state = resolve(&V11, &sets, &r.events).expect("known");
        assert!(state.contains_key(&key(JOIN_RULES, "")));
        let walked = resolve(&V11, &sets, &Plain(&r.events)).expect("known");
        assert_eq!(state, walked);
    }
}

#[test]
fn graph_queries_of_the_index_and_of_the_defaults_agree() {
    let mut r = Room::new(&V12, resolve_v2_1);
    r.add("PA", ALICE, POWER_LEVELS, Some(""), pl(&V12, &[(BOB, 50)]), &["START"]);
    r.add("MB", ALICE, MEMBER, Some(BOB), json!({"membership": "ban"}), &["PA"]);
    r.add("PB", BOB, POWER_LEVELS, Some(""), pl(&V12, &[(BOB, 50)]), &["PA"]);
    r.add("TC", CHARLIE, TOPIC, Some(""), json!({"topic": "c"}), &["START"]);
    r.add("LC", CHARLIE, MEMBER, Some(CHARLIE), json!({"membership": "leave"}), &["TC"]);
    let sets: Vec<StateMap> = ["MB", "PB", "LC"].iter().map(|t| r.after[&id(t)].clone()).collect();
    let plain = Plain(&r.events);
    assert_eq!(r.events.auth_difference(&sets), plain.auth_difference(&sets));
    let all: Vec<&str> = r.events.ids().collect();
    let among: HashSet<&str> = all.iter().copied().filter(|id| id.len() % 2 == 0).collect();
    let mut indexed = r.events.ancestors_among(&all, &among).expect("known");
    let mut walked = plain.ancestors_among(&all, &among).expect("known");
    for found in indexed.values_mut().chain(walked.values_mut()) {
        found.sort_unstable();
    }
    assert_eq!(indexed, walked);
    assert!(r.events.ancestors_among(&["$nope"], &among).is_err());
}
