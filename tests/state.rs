//! Room state over HTTP: `PUT /state` (state keys, power levels, errors),
//! `GET /state` and `GET /state/{type}/{key}` (content or whole event), and
//! who may read which state: members the current state, a user who left
//! the state as it was when they left, anyone a world-readable room's.

mod common;

use common::{assert_error, create_room, enc, invite, join, leave, room_path, Server, User, V3};
use serde_json::{json, Value};

const PW: &str = "state-test-password";

/// PUT a state event; returns the answer.
fn put_state(
    s: &Server,
    who: &User,
    room: &str,
    kind: &str,
    key: Option<&str>,
    content: Value,
) -> (u16, Value) {
    let path = match key {
        Some(k) => room_path(room, &format!("state/{kind}/{}", enc(k))),
        None => room_path(room, &format!("state/{kind}")),
    };
    s.put(&path, Some(&who.token), content)
}

#[track_caller]
fn put_ok(s: &Server, who: &User, room: &str, kind: &str, key: Option<&str>, content: Value) -> String {
    let (status, body) = put_state(s, who, room, kind, key, content);
    assert_eq!(status, 200, "PUT state {kind}: {body}");
    body["event_id"].as_str().expect("event_id").to_owned()
}

fn get_state(s: &Server, who: &User, room: &str, kind: &str, key: &str, query: &str) -> (u16, Value) {
    s.get(&room_path(room, &format!("state/{kind}/{}{query}", enc(key))), Some(&who.token))
}

#[test]
fn put_and_get_state_with_and_without_keys() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let room = create_room(&s, &alice.token, json!({ "preset": "private_chat" }));

    // No key segment, an empty one, and a real one.
    let no_key = put_ok(&s, &alice, &room, "m.example", None, json!({ "v": 1 }));
    assert_eq!(get_state(&s, &alice, &room, "m.example", "", "").1, json!({ "v": 1 }));
    let (status, body) = s.get(&room_path(&room, "state/m.example"), Some(&alice.token));
    assert_eq!((status, body), (200, json!({ "v": 1 })));
    let empty_key = put_ok(&s, &alice, &room, "m.example", Some(""), json!({ "v": 2 }));
    assert_ne!(no_key, empty_key);
    assert_eq!(get_state(&s, &alice, &room, "m.example", "", "").1, json!({ "v": 2 }));
    put_ok(&s, &alice, &room, "m.example", Some("foo/bar"), json!({ "v": "keyed" }));
    assert_eq!(get_state(&s, &alice, &room, "m.example", "foo/bar", "").1, json!({ "v": "keyed" }));

    // format=event: the whole client event, with prev_content.
    let (status, event) = get_state(&s, &alice, &room, "m.example", "", "?format=event");
    assert_eq!(status, 200, "{event}");
    assert_eq!(event["event_id"], empty_key.as_str());
    assert_eq!(event["type"], "m.example");
    assert_eq!(event["state_key"], "");
    assert_eq!(event["sender"], alice.id.as_str());
    assert_eq!(event["room_id"], room.as_str());
    assert_eq!(event["content"], json!({ "v": 2 }));
    assert_eq!(event["unsigned"]["prev_content"], json!({ "v": 1 }));
    assert_eq!(get_state(&s, &alice, &room, "m.example", "", "?format=content").1, json!({ "v": 2 }));
    assert_error(&get_state(&s, &alice, &room, "m.example", "", "?format=xml"), 400, "M_INVALID_PARAM");

    // Absent state is a 404.
    assert_error(&get_state(&s, &alice, &room, "m.example", "other", ""), 404, "M_NOT_FOUND");
    assert_error(&get_state(&s, &alice, &room, "m.nothing", "", ""), 404, "M_NOT_FOUND");

    // The whole state lists every current state event once.
    let (status, all) = s.get(&room_path(&room, "state"), Some(&alice.token));
    assert_eq!(status, 200, "{all}");
    let all = all.as_array().unwrap();
    let has =
        |kind: &str, key: &str| all.iter().filter(|e| e["type"] == kind && e["state_key"] == key).count();
    assert_eq!(has("m.room.create", ""), 1);
    assert_eq!(has("m.room.member", &alice.id), 1);
    assert_eq!(has("m.example", ""), 1);
    assert_eq!(has("m.example", "foo/bar"), 1);
    assert!(all.iter().all(|e| e["event_id"].is_string() && e["content"].is_object()));

    // Errors: bad content, bad type, bad room, over-long key.
    assert_error(&put_state(&s, &alice, &room, "m.example", None, json!([1])), 400, "M_BAD_JSON");
    assert_error(&put_state(&s, &alice, &room, "bad%01type", None, json!({})), 400, "M_INVALID_PARAM");
    let long_key = "k".repeat(300);
    assert_error(
        &put_state(&s, &alice, &room, "m.example", Some(&long_key), json!({})),
        400,
        "M_INVALID_PARAM",
    );
    let bad_room = format!("{V3}/rooms/nonsense/state/m.example");
    assert_error(&s.put(&bad_room, Some(&alice.token), json!({})), 400, "M_INVALID_PARAM");
    assert_error(&s.get(&bad_room, Some(&alice.token)), 400, "M_INVALID_PARAM");
    let post = s.post(&room_path(&room, "state/m.example"), Some(&alice.token), json!({}));
    assert_error(&post, 405, "M_UNRECOGNIZED");

    // A state type sent through /send is a plain event: the state stays.
    let path = room_path(&room, "send/m.room.name/t1");
    let (status, body) = s.put(&path, Some(&alice.token), json!({ "name": "not state" }));
    assert_eq!(status, 200, "{body}");
    assert_error(&get_state(&s, &alice, &room, "m.room.name", "", ""), 404, "M_NOT_FOUND");
}

#[test]
fn power_levels_guard_state() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let eve = s.user("eve", PW);
    let room = create_room(&s, &alice.token, json!({ "preset": "private_chat", "name": "Original" }));
    invite(&s, &alice.token, &room, &bob.id);
    join(&s, &bob.token, &room);

    // A member without power may not rename the room; a stranger may not either.
    let name = |n: &str| json!({ "name": n });
    assert_error(&put_state(&s, &bob, &room, "m.room.name", None, name("Bob's")), 403, "M_FORBIDDEN");
    assert_error(&put_state(&s, &eve, &room, "m.room.name", None, name("Eve's")), 403, "M_FORBIDDEN");
    assert_eq!(get_state(&s, &alice, &room, "m.room.name", "", "").1, name("Original"));
    put_ok(&s, &alice, &room, "m.room.name", None, name("Renamed"));
    assert_eq!(get_state(&s, &bob, &room, "m.room.name", "", "").1, name("Renamed"));
    // Bob may not raise himself either.
    let (_, levels) = get_state(&s, &alice, &room, "m.room.power_levels", "", "");
    let mut raised = levels.clone();
    raised["users"][bob.id.as_str()] = json!(100);
    assert_error(&put_state(&s, &bob, &room, "m.room.power_levels", None, raised), 403, "M_FORBIDDEN");

    // Power levels with values that are not integers are refused.
    for (key, bad) in [("ban", json!("50")), ("events_default", json!(1.5)), ("kick", json!(null))] {
        let mut wrong = levels.clone();
        wrong[key] = bad;
        let (status, body) = put_state(&s, &alice, &room, "m.room.power_levels", None, wrong);
        assert!(status == 400 || status == 403, "{key}: {status} {body}");
        assert!(body["errcode"].is_string(), "{body}");
    }
    let mut wrong = levels.clone();
    wrong["users"][bob.id.as_str()] = json!("50");
    let (status, _) = put_state(&s, &alice, &room, "m.room.power_levels", None, wrong);
    assert!(status == 400 || status == 403, "{status}");
    assert_eq!(get_state(&s, &alice, &room, "m.room.power_levels", "", "").1, levels);

    // Given the power to, Bob may rename the room.
    let mut granted = levels.clone();
    granted["users"][bob.id.as_str()] = json!(50);
    put_ok(&s, &alice, &room, "m.room.power_levels", None, granted);
    put_ok(&s, &bob, &room, "m.room.name", None, name("Bob's now"));
    assert_eq!(get_state(&s, &alice, &room, "m.room.name", "", "").1, name("Bob's now"));
}

#[test]
fn who_may_read_which_state() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let carol = s.user("carol", PW);
    let eve = s.user("eve", PW);
    let room = create_room(&s, &alice.token, json!({ "preset": "public_chat", "name": "Before" }));
    join(&s, &bob.token, &room);
    leave(&s, &bob.token, &room);
    put_ok(&s, &alice, &room, "m.room.name", None, json!({ "name": "After" }));
    invite(&s, &alice.token, &room, &carol.id);

    // A member sees the current state.
    assert_eq!(get_state(&s, &alice, &room, "m.room.name", "", "").1["name"], "After");
    // Bob left: he sees the room as it was when he left, his leave included.
    assert_eq!(get_state(&s, &bob, &room, "m.room.name", "", "").1["name"], "Before");
    let (status, mine) = get_state(&s, &bob, &room, "m.room.member", &bob.id, "");
    assert_eq!((status, mine["membership"].as_str()), (200, Some("leave")));
    let (status, all) = s.get(&room_path(&room, "state"), Some(&bob.token));
    assert_eq!(status, 200, "{all}");
    let names: Vec<&Value> = all.as_array().unwrap().iter().filter(|e| e["type"] == "m.room.name").collect();
    assert_eq!(names.len(), 1);
    assert_eq!(names[0]["content"]["name"], "Before");
    // ...and the members as they were: no invite for Carol yet.
    let (status, members) = s.get(&room_path(&room, "members"), Some(&bob.token));
    assert_eq!(status, 200, "{members}");
    let chunk = members["chunk"].as_array().unwrap();
    assert!(chunk.iter().all(|e| e["state_key"] != carol.id.as_str()), "{members}");
    assert!(chunk.iter().any(|e| e["state_key"] == bob.id.as_str() && e["content"]["membership"] == "leave"));

    // An invitee and a stranger are not members.
    for outsider in [&carol, &eve] {
        assert_error(&get_state(&s, outsider, &room, "m.room.name", "", ""), 403, "M_FORBIDDEN");
        assert_error(&s.get(&room_path(&room, "state"), Some(&outsider.token)), 403, "M_FORBIDDEN");
        assert_error(&s.get(&room_path(&room, "members"), Some(&outsider.token)), 403, "M_FORBIDDEN");
    }
    // An unknown room looks the same as one you are not in.
    let nowhere = room_path("!nowhere:localhost", "state");
    assert_error(&s.get(&nowhere, Some(&alice.token)), 403, "M_FORBIDDEN");

    // A world-readable room's current state is open to anyone.
    put_ok(
        &s,
        &alice,
        &room,
        "m.room.history_visibility",
        None,
        json!({ "history_visibility": "world_readable" }),
    );
    assert_eq!(get_state(&s, &eve, &room, "m.room.name", "", "").1["name"], "After");
    assert_eq!(get_state(&s, &bob, &room, "m.room.name", "", "").1["name"], "After");
    let (status, all) = s.get(&room_path(&room, "state"), Some(&eve.token));
    assert_eq!(status, 200, "{all}");
    // Reading is not writing.
    assert_error(
        &put_state(&s, &eve, &room, "m.room.topic", None, json!({ "topic": "x" })),
        403,
        "M_FORBIDDEN",
    );
}
