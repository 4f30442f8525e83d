//! Room upgrades through the real server (issue 16): `POST
//! /rooms/{roomId}/upgrade` from v1 to v12 and between other versions:
//! the tombstone, the predecessor, the copied state and power levels,
//! the moved alias and directory entry, the old room closed to ordinary
//! members, and the refusals.

mod common;

use common::*;
use serde_json::{json, Value};

fn upgrade(s: &Server, who: &User, room: &str, version: &str) -> (u16, Value) {
    s.post(&room_path(room, "upgrade"), Some(&who.token), json!({ "new_version": version }))
}

fn state_of(s: &Server, who: &User, room: &str) -> Vec<Value> {
    let (status, v) = s.get(&room_path(room, "state"), Some(&who.token));
    assert_eq!(status, 200, "{v}");
    v.as_array().expect("state list").clone()
}

fn find<'a>(state: &'a [Value], kind: &str, key: &str) -> Option<&'a Value> {
    state.iter().find(|e| e["type"] == kind && e["state_key"] == key)
}

#[test]
fn a_v1_room_upgraded_to_v12_keeps_what_clients_rely_on() {
    let s = Server::start();
    let alice = s.user("alice", "pw-alice-1");
    let bob = s.user("bob", "pw-bob-1");
    let carol = s.user("carol", "pw-carol-1");
    let alias = format!("#family:{}", "localhost");
    let room = create_room(
        &s,
        &alice.token,
        json!({ "room_version": "1", "preset": "public_chat", "name": "Family", "topic": "Dinner plans",
                "room_alias_name": "family", "visibility": "public",
                "power_level_content_override": { "users": { "@alice:localhost": 100, "@bob:localhost": 50 } } }),
    );
    join(&s, &bob.token, &room);
    join(&s, &carol.token, &room);
    say(&s, &carol.token, &room, "before the upgrade");
    set_state(&s, &alice.token, &room, "m.room.avatar", "", json!({ "url": "mxc://localhost/avatar" }));
    set_state(&s, &alice.token, &room, "m.space.parent", "!space:localhost", json!({ "via": ["localhost"] }));

    // Bob (50) may not send the tombstone (100).
    let refused = upgrade(&s, &bob, &room, "12");
    assert_error(&refused, 403, "M_FORBIDDEN");
    assert_error(&upgrade(&s, &alice, &room, "99"), 400, "M_UNSUPPORTED_ROOM_VERSION");

    let (status, answer) = upgrade(&s, &alice, &room, "12");
    assert_eq!(status, 200, "{answer}");
    let new_room = answer["replacement_room"].as_str().expect("replacement_room").to_owned();
    assert_ne!(new_room, room);

    // The old room: the tombstone, and ordinary members silenced.
    let old = state_of(&s, &alice, &room);
    let tomb = find(&old, "m.room.tombstone", "").expect("tombstone");
    assert_eq!(tomb["content"]["replacement_room"], new_room);
    assert!(tomb["content"]["body"].is_string());
    let pl = &find(&old, "m.room.power_levels", "").expect("levels")["content"];
    assert!(pl["events_default"].as_i64().unwrap() >= 50 && pl["invite"].as_i64().unwrap() >= 50, "{pl}");
    let (status, _) = s.put(
        &room_path(&room, "send/m.room.message/late"),
        Some(&carol.token),
        json!({ "msgtype": "m.text", "body": "too late" }),
    );
    assert_eq!(status, 403, "an ordinary member can no longer talk in the old room");

    // The new room: version 12, its predecessor, the copied state.
    join(&s, &bob.token, &new_room);
    let new = state_of(&s, &alice, &new_room);
    let create = &find(&new, "m.room.create", "").expect("create")["content"];
    assert_eq!(create["room_version"], "12");
    assert_eq!(create["predecessor"]["room_id"], room);
    assert!(create["predecessor"]["event_id"].is_string(), "{create}");
    assert!(create.get("creator").is_none(), "v12 has no creator field");
    assert_eq!(find(&new, "m.room.name", "").unwrap()["content"]["name"], "Family");
    assert_eq!(find(&new, "m.room.topic", "").unwrap()["content"]["topic"], "Dinner plans");
    assert_eq!(find(&new, "m.room.avatar", "").unwrap()["content"]["url"], "mxc://localhost/avatar");
    assert_eq!(find(&new, "m.room.join_rules", "").unwrap()["content"]["join_rule"], "public");
    assert!(find(&new, "m.space.parent", "!space:localhost").is_some());
    let levels = &find(&new, "m.room.power_levels", "").unwrap()["content"];
    assert_eq!(levels["users"]["@bob:localhost"], 50, "{levels}");
    assert!(levels["users"].get("@alice:localhost").is_none(), "v12 creators are not listed: {levels}");
    assert!(
        levels["events"]["m.room.tombstone"].as_i64().unwrap() > levels["state_default"].as_i64().unwrap()
    );
    // The alias, canonical alias and directory entry moved.
    let (status, resolved) = s.get(&format!("{V3}/directory/room/{}", enc(&alias)), None);
    assert_eq!((status, resolved["room_id"].as_str()), (200, Some(new_room.as_str())));
    assert_eq!(find(&new, "m.room.canonical_alias", "").unwrap()["content"]["alias"], alias);
    let (_, listed) = s.get(&format!("{V3}/publicRooms"), None);
    let ids: Vec<&str> =
        listed["chunk"].as_array().unwrap().iter().filter_map(|r| r["room_id"].as_str()).collect();
    assert!(ids.contains(&new_room.as_str()) && !ids.contains(&room.as_str()), "{listed}");
    // Messages flow in the new room; clients see the tombstone in sync.
    say(&s, &bob.token, &new_room, "after the upgrade");
    let sync = sync(&s, &bob.token, "");
    let old_timeline = timeline(&sync, &room);
    assert!(old_timeline.iter().any(|e| e["type"] == "m.room.tombstone"), "{sync}");
    assert_eq!(bodies(&json!(timeline(&sync, &new_room))), ["after the upgrade"]);
}

#[test]
fn upgrades_between_other_versions() {
    let s = Server::start();
    let alice = s.user("alice", "pw-alice-1");
    for (from, to) in [("9", "10"), ("12", "12"), ("12", "11"), ("4", "7")] {
        let room = create_room(&s, &alice.token, json!({ "room_version": from, "name": format!("v{from}") }));
        let (status, answer) = upgrade(&s, &alice, &room, to);
        assert_eq!(status, 200, "{from} -> {to}: {answer}");
        let new_room = answer["replacement_room"].as_str().unwrap();
        let new = state_of(&s, &alice, new_room);
        assert_eq!(find(&new, "m.room.create", "").unwrap()["content"]["room_version"], to);
        assert_eq!(find(&new, "m.room.name", "").unwrap()["content"]["name"], format!("v{from}"));
        let levels = &find(&new, "m.room.power_levels", "").unwrap()["content"];
        if to != "12" {
            assert_eq!(levels["users"]["@alice:localhost"], 100, "{from} -> {to}: {levels}");
        }
    }
    // Not a member: refused.
    let room = create_room(&s, &alice.token, json!({ "preset": "private_chat" }));
    let eve = s.user("eve", "pw-eve-1");
    assert_error(&upgrade(&s, &eve, &room, "12"), 403, "M_FORBIDDEN");
    assert_error(&upgrade(&s, &alice, "not-a-room", "12"), 400, "M_INVALID_PARAM");
}
