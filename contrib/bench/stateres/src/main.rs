//! State resolution benchmark (issue 16): two forks of a room whose state
//! holds 30,000 entries, each fork setting the same 100 keys its own way
//! (200 conflicted events: kicks against leaves, bans against profile
//! changes, settings by the admin against settings by a moderator) while
//! changing the power levels, over a history of ~2,000 power levels
//! changes (every auth chain runs down all of them).
//!
//! Resolves the forks with `core::state_res::resolve` for room v11 (state
//! resolution v2) and room v12 (v2.1), each with a fresh in-memory source
//! per run (no auth chain remembered from the run before), and prints the
//! sizes, the median, fastest and slowest of the runs: once through
//! `MemoryEvents` (its index of who cites each event answers the graph
//! queries), once through the walking defaults alone.
//!
//!     cargo run --release --manifest-path contrib/bench/stateres/Cargo.toml [runs]

use std::time::{Duration, Instant};

use hearth::core::auth::auth_types_for_event;
use hearth::core::event;
use hearth::core::room_version::{self, RoomVersion};
use hearth::core::state_res::{self, EventSource, MemoryEvents, StateMap};
use serde_json::{json, Value};

/// Entries in the state at the fork.
const STATE_ENTRIES: usize = 30_000;
/// Settings (`org.example.setting`) in the state at the fork.
const SETTINGS: usize = 40;
/// A power levels change after every this many joins.
const JOINS_PER_POWER_CHANGE: usize = 15;
/// Every this many members change their profile after joining.
const PROFILE_CHANGE_EVERY: usize = 3;
/// Keys each fork sets: kicks/leaves, bans/profile changes, settings.
const KICKS: usize = 40;
const BANS: usize = 20;
const FORK_SETTINGS: usize = 40;
/// Each fork also changes the power levels this often.
const FORK_POWER_CHANGE_EVERY: usize = 20;
/// Users at a level of their own in the power levels.
const LISTED_USERS: usize = 20;
const RUNS: usize = 9;

const ALICE: &str = "@alice:example.org";
const BOB: &str = "@bob:example.org";
const MEMBER: &str = "m.room.member";
const POWER_LEVELS: &str = "m.room.power_levels";
const SETTING: &str = "org.example.setting";

fn user(i: usize) -> String {
    format!("@u{i}:example.org")
}

/// A room's events as JSON, in the order they were made.
struct Room {
    version: &'static RoomVersion,
    room_id: String,
    events: Vec<(String, Value)>,
    clock: i64,
    power_changes: usize,
}

impl Room {
    /// Adds an event to `state`, citing the auth events the server-server
    /// API selects from it.
    fn add(&mut self, state: &mut StateMap, sender: &str, kind: &str, key: &str, content: Value) -> String {
        self.clock += 1;
        let id = format!("${}-{}", kind.rsplit('.').next().unwrap_or(kind), self.clock);
        let auth: Vec<&String> = auth_types_for_event(self.version, kind, Some(key), sender, &content)
            .iter()
            .filter_map(|k| state.get(k))
            .collect();
        let prev = self.events.last().map(|(id, _)| id.clone()).into_iter().collect::<Vec<_>>();
        let pdu = json!({
            "event_id": id, "room_id": self.room_id, "sender": sender, "type": kind, "state_key": key,
            "content": content, "auth_events": auth, "prev_events": prev,
            "depth": self.clock, "origin_server_ts": self.clock,
        });
        self.events.push((id.clone(), pdu));
        state.insert((kind.to_owned(), key.to_owned()), id.clone());
        id
    }

    /// Alice's next power levels: bob at 50 and a rotating set of users.
    fn power_levels(&mut self, state: &mut StateMap) {
        self.power_changes += 1;
        let mut users = serde_json::Map::new();
        if !self.version.privileged_creators {
            users.insert(ALICE.to_owned(), json!(100));
        }
        users.insert(BOB.to_owned(), json!(50));
        for j in 0..LISTED_USERS {
            users.insert(user(j * 7 + self.power_changes % 5), json!(10 + (j + self.power_changes) % 30));
        }
        self.add(state, ALICE, POWER_LEVELS, "", json!({"users": users, "state_default": 50}));
    }
}

/// The room at the fork and the two forks' states.
fn build(version: &'static RoomVersion) -> (Vec<(String, Value)>, StateMap, StateMap) {
    let mut create = json!({
        "type": "m.room.create", "state_key": "", "sender": ALICE,
        "content": {"room_version": version.id},
        "auth_events": [], "prev_events": [], "depth": 0, "origin_server_ts": 0,
    });
    if version.create_has_creator_field {
        create["content"]["creator"] = json!(ALICE);
    }
    let room_id = if version.room_id_from_create {
        event::room_id_from_create(version, &create).expect("the create event hashes")
    } else {
        create["room_id"] = json!("!bench:example.org");
        "!bench:example.org".to_owned()
    };
    let create_id = event::event_id(version, &create).expect("the create event hashes");
    let mut state: StateMap = [(("m.room.create".to_owned(), String::new()), create_id.clone())].into();
    let mut room =
        Room { version, room_id, events: vec![(create_id.clone(), create)], clock: 0, power_changes: 0 };

    // Alice's first join: its one prev event is the create event.
    room.add(&mut state, ALICE, MEMBER, ALICE, json!({"membership": "join"}));
    room.power_levels(&mut state);
    room.add(&mut state, ALICE, "m.room.join_rules", "", json!({"join_rule": "public"}));
    room.add(&mut state, BOB, MEMBER, BOB, json!({"membership": "join"}));
    let members = STATE_ENTRIES - 5 - SETTINGS;
    for i in 0..members {
        let u = user(i);
        room.add(&mut state, &u, MEMBER, &u, json!({"membership": "join"}));
        if i % PROFILE_CHANGE_EVERY == 0 {
            let profile = json!({"membership": "join", "displayname": format!("User {i}")});
            room.add(&mut state, &u, MEMBER, &u, profile);
        }
        if i % JOINS_PER_POWER_CHANGE == 0 {
            room.power_levels(&mut state);
        }
    }
    for j in 0..SETTINGS {
        room.add(&mut state, ALICE, SETTING, &format!("s{j}"), json!({"side": "fork point"}));
    }
    assert_eq!(state.len(), STATE_ENTRIES);

    let (mut a, mut b) = (state.clone(), state);
    let target = |k: usize| user((k * 297 + 11) % members);
    for k in 0..KICKS + BANS + FORK_SETTINGS {
        if k % FORK_POWER_CHANGE_EVERY == 0 {
            room.power_levels(&mut a);
        }
        if k % (FORK_POWER_CHANGE_EVERY + 5) == 0 {
            room.power_levels(&mut b);
        }
        if k < KICKS {
            let u = target(k);
            room.add(&mut a, ALICE, MEMBER, &u, json!({"membership": "leave"}));
            room.add(&mut b, &u, MEMBER, &u, json!({"membership": "leave"}));
        } else if k < KICKS + BANS {
            let u = target(k);
            room.add(&mut a, ALICE, MEMBER, &u, json!({"membership": "ban"}));
            room.add(&mut b, &u, MEMBER, &u, json!({"membership": "join", "displayname": "renamed"}));
        } else {
            let key = format!("f{k}");
            room.add(&mut a, ALICE, SETTING, &key, json!({"side": "a"}));
            room.add(&mut b, BOB, SETTING, &key, json!({"side": "b"}));
        }
    }
    (room.events, a, b)
}

fn source_of(events: &[(String, Value)]) -> MemoryEvents {
    let mut source = MemoryEvents::new();
    for (id, pdu) in events {
        assert!(source.insert(id, pdu.clone(), false), "{id} has a view");
    }
    source
}

/// A source with only the two required methods: every graph query takes
/// its walking default, as for a store without an auth-chain index.
struct Walking(MemoryEvents);

impl EventSource for Walking {
    fn event(&self, id: &str) -> Option<&state_res::ResolvedEventView> {
        self.0.event(id)
    }

    fn pdu(&self, id: &str) -> Option<&Value> {
        self.0.pdu(id)
    }
}

/// Resolves `runs` times, each with a fresh source, and prints the median,
/// fastest and slowest.
fn measure<S: EventSource>(
    label: &str,
    runs: usize,
    version: &RoomVersion,
    sets: &[StateMap],
    reference: &StateMap,
    fresh: impl Fn() -> S,
) {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let source = fresh();
        let start = Instant::now();
        let resolved = state_res::resolve(version, sets, &source).expect("every event is known");
        times.push(start.elapsed());
        assert_eq!(&resolved, reference, "the same answer every run");
    }
    times.sort();
    println!(
        "  {label}, {runs} runs: median {:.1} ms, fastest {:.1} ms, slowest {:.1} ms",
        millis(times[times.len() / 2]),
        millis(times[0]),
        millis(times[times.len() - 1]),
    );
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let runs: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(RUNS);
    for id in ["11", "12"] {
        let version = room_version::get(id).expect("a served version");
        let (events, a, b) = build(version);
        let sets = [a, b];

        let source = source_of(&events);
        let conflicted = sets[0].iter().filter(|(k, v)| sets[1].get(*k) != Some(*v)).count()
            + sets[1].iter().filter(|(k, v)| sets[0].get(*k) != Some(*v)).count();
        let difference = source.auth_difference(&sets).len();
        let chains: Vec<usize> = sets[0]
            .iter()
            .filter(|(k, v)| sets[1].get(*k) != Some(*v))
            .filter_map(|(_, v)| source.auth_chain(v))
            .map(|c| c.len())
            .collect();
        let chain_mean = chains.iter().sum::<usize>() / chains.len().max(1);
        let reference = state_res::resolve(version, &sets, &source).expect("every event is known");
        let banned = reference
            .iter()
            .filter(|((kind, _), v)| {
                kind == MEMBER && source.event(v).and_then(|e| e.membership.as_deref()) == Some("ban")
            })
            .count();
        println!(
            "room v{id} ({}): {} events, state {} entries, {conflicted} conflicted, auth difference {difference}, \
             auth chains of conflicted events {chain_mean} events on average, resolved state {} entries ({banned} bans)",
            if version.state_res == room_version::StateRes::V2_1 { "v2.1" } else { "v2" },
            events.len(),
            sets[0].len(),
            reference.len(),
        );

        measure("indexed (MemoryEvents)", runs, version, &sets, &reference, || source_of(&events));
        measure("walking defaults", runs, version, &sets, &reference, || Walking(source_of(&events)));
    }
}
