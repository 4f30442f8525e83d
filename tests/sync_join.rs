//! `/sync` around membership changes (issue 12): a room joined in the
//! window is new to the client (history per visibility, full state), a
//! profile change is not a join, leaves carry state, lazy-loaded members
//! are exact across syncs, joiners' presence, device-list changes for
//! devices without keys, and ignored users.

mod common;

use common::{
    bodies, create_room, enc, invite, join, leave, next_batch, room_path, send_text, set_state, sync, Server,
    V3,
};
use serde_json::{json, Value};

/// `?filter=…&since=…` with an inline filter.
fn q(filter: &Value, since: Option<&str>) -> String {
    let mut out = format!("?timeout=0&filter={}", enc(&filter.to_string()));
    if let Some(s) = since {
        out.push_str(&format!("&since={}", enc(s)));
    }
    out
}

fn limit(n: usize) -> Value {
    json!({ "room": { "timeline": { "limit": n } } })
}

fn state_types(section: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = section["state"]["events"]
        .as_array()
        .expect("state events")
        .iter()
        .map(|e| {
            (e["type"].as_str().unwrap_or("").to_owned(), e["state_key"].as_str().unwrap_or("").to_owned())
        })
        .collect();
    out.sort();
    out
}

fn has_state(section: &Value, kind: &str, key: &str) -> bool {
    state_types(section).iter().any(|(k, s)| k == kind && s == key)
}

fn last_type(section: &Value) -> (String, String) {
    let events = section["timeline"]["events"].as_array().expect("timeline events");
    let last = events.last().expect("a timeline event");
    (
        last["type"].as_str().unwrap_or("").to_owned(),
        last["content"]["membership"].as_str().unwrap_or("").to_owned(),
    )
}

#[test]
fn a_room_joined_in_the_window_shows_its_history_as_visibility_allows() {
    let s = Server::start();
    let (alice, a, _) = s.register("alice", "pw-alice");
    let (_, b, _) = s.register("bob", "pw-bob");
    let shared = create_room(&s, &a, json!({ "preset": "public_chat", "name": "Shared" }));
    let joined_only = create_room(&s, &a, json!({ "preset": "public_chat", "name": "Joined only" }));
    set_state(
        &s,
        &a,
        &joined_only,
        "m.room.history_visibility",
        "",
        json!({ "history_visibility": "joined" }),
    );
    for i in 0..8 {
        send_text(&s, &a, &shared, &format!("s{i}"), &format!("shared {i}"));
        send_text(&s, &a, &joined_only, &format!("j{i}"), &format!("joined {i}"));
    }
    let first = sync(&s, &b, &q(&limit(5), None));
    join(&s, &b, &shared);
    join(&s, &b, &joined_only);

    let next = sync(&s, &b, &q(&limit(5), Some(&next_batch(&first))));
    let room = &next["rooms"]["join"][&shared];
    // The latest five events: four earlier messages and the join.
    assert_eq!(
        bodies(&room["timeline"]["events"]),
        ["shared 4", "shared 5", "shared 6", "shared 7"],
        "{room}"
    );
    assert_eq!(last_type(room), ("m.room.member".into(), "join".into()));
    assert_eq!(room["timeline"]["limited"], true, "{room}");
    // The state before the timeline, in full.
    for kind in ["m.room.create", "m.room.power_levels", "m.room.join_rules", "m.room.name"] {
        assert!(has_state(room, kind, ""), "{kind} missing: {room}");
    }
    assert!(has_state(room, "m.room.member", &alice), "{room}");
    // prev_batch pages further back with /messages.
    let prev = room["timeline"]["prev_batch"].as_str().expect("prev_batch");
    let (status, page) =
        s.get(&format!("{}?dir=b&limit=3&from={}", room_path(&shared, "messages"), enc(prev)), Some(&b));
    assert_eq!(status, 200, "{page}");
    let earlier: Vec<&str> =
        page["chunk"].as_array().unwrap().iter().filter_map(|e| e["content"]["body"].as_str()).collect();
    assert_eq!(earlier, ["shared 3", "shared 2", "shared 1"]);

    // `joined` visibility: nothing before the join.
    let room = &next["rooms"]["join"][&joined_only];
    assert!(bodies(&room["timeline"]["events"]).is_empty(), "{room}");
    assert_eq!(last_type(room), ("m.room.member".into(), "join".into()));
    assert_eq!(room["timeline"]["limited"], true, "{room}");
    assert!(has_state(room, "m.room.create", ""), "{room}");
}

#[test]
fn invite_then_join_and_leave_then_rejoin_within_one_window_are_new_rooms() {
    let s = Server::start();
    let (_, a, _) = s.register("alice", "pw-alice");
    let (bob, b, _) = s.register("bob", "pw-bob");
    let room = create_room(&s, &a, json!({ "preset": "private_chat" }));
    for i in 0..3 {
        send_text(&s, &a, &room, &format!("t{i}"), &format!("before {i}"));
    }
    let first = sync(&s, &b, &q(&limit(10), None));
    invite(&s, &a, &room, &bob);
    join(&s, &b, &room);
    let next = sync(&s, &b, &q(&limit(10), Some(&next_batch(&first))));
    let r = &next["rooms"]["join"][&room];
    assert_eq!(bodies(&r["timeline"]["events"]), ["before 0", "before 1", "before 2"], "{r}");
    assert!(next["rooms"]["invite"].get(&room).is_none(), "{next}");

    // Joined at `since`, then left and joined again: new again.
    send_text(&s, &a, &room, "t9", "while joined");
    let mid = sync(&s, &b, &q(&limit(10), Some(&next_batch(&next))));
    leave(&s, &b, &room);
    invite(&s, &a, &room, &bob);
    join(&s, &b, &room);
    let again = sync(&s, &b, &q(&limit(4), Some(&next_batch(&mid))));
    let r = &again["rooms"]["join"][&room];
    assert!(
        bodies(&r["timeline"]["events"]).contains(&"while joined".to_owned()),
        "history before since: {r}"
    );
    assert_eq!(r["timeline"]["limited"], true, "{r}");
    assert!(has_state(r, "m.room.create", ""), "full state: {r}");
    assert!(again["rooms"]["leave"].get(&room).is_none(), "{again}");
}

#[test]
fn a_profile_change_is_not_a_new_join() {
    let s = Server::start();
    let (_, a, _) = s.register("alice", "pw-alice");
    let (bob, b, _) = s.register("bob", "pw-bob");
    let room = create_room(&s, &a, json!({ "preset": "public_chat" }));
    join(&s, &b, &room);
    send_text(&s, &a, &room, "t1", "hello");
    let first = sync(&s, &b, &q(&limit(10), None));
    set_state(&s, &b, &room, "m.room.member", &bob, json!({ "membership": "join", "displayname": "Bobby" }));
    let next = sync(&s, &b, &q(&limit(10), Some(&next_batch(&first))));
    let r = &next["rooms"]["join"][&room];
    let events = r["timeline"]["events"].as_array().expect("timeline");
    assert_eq!(events.len(), 1, "only the change: {r}");
    assert_eq!(events[0]["content"]["displayname"], "Bobby");
    assert_eq!(r["timeline"]["limited"], false);
    assert_eq!(r["state"]["events"], json!([]), "no state resent: {r}");
}

#[test]
fn a_room_left_between_two_syncs_carries_its_state() {
    let s = Server::start();
    let (_, a, _) = s.register("alice", "pw-alice");
    let (_, b, _) = s.register("bob", "pw-bob");
    let room = create_room(&s, &a, json!({ "preset": "public_chat" }));
    join(&s, &b, &room);
    let first = sync(&s, &b, &q(&limit(2), None));
    set_state(&s, &a, &room, "m.room.topic", "", json!({ "topic": "changed in the gap" }));
    for i in 0..4 {
        send_text(&s, &a, &room, &format!("t{i}"), &format!("m{i}"));
    }
    leave(&s, &b, &room);
    let next = sync(&s, &b, &q(&limit(2), Some(&next_batch(&first))));
    let r = &next["rooms"]["leave"][&room];
    assert_eq!(last_type(r), ("m.room.member".into(), "leave".into()), "{r}");
    assert_eq!(r["timeline"]["limited"], true);
    assert!(has_state(r, "m.room.topic", ""), "the gap's state change: {r}");
    assert!(!has_state(r, "m.room.create", ""), "not the whole state: {r}");

    // Joined and left again within one window: the whole state.
    let mid = sync(&s, &b, &q(&limit(2), Some(&next_batch(&next))));
    join(&s, &b, &room);
    leave(&s, &b, &room);
    let last = sync(&s, &b, &q(&limit(2), Some(&next_batch(&mid))));
    let r = &last["rooms"]["leave"][&room];
    assert!(has_state(r, "m.room.create", ""), "{r}");
    assert!(has_state(r, "m.room.topic", ""), "{r}");
}

fn lazy(n: usize, redundant: bool) -> Value {
    json!({ "room": {
        "timeline": { "limit": n },
        "state": { "lazy_load_members": true, "include_redundant_members": redundant },
    } })
}

fn members(section: &Value) -> Vec<String> {
    state_types(section).into_iter().filter(|(k, _)| k == "m.room.member").map(|(_, s)| s).collect()
}

#[test]
fn lazy_loaded_members_are_sent_once_and_follow_gappy_syncs() {
    let s = Server::start();
    let (alice, a, _) = s.register("alice", "pw-alice");
    let (_, b, _) = s.register("bob", "pw-bob");
    let (carol, c, _) = s.register("carol", "pw-carol");
    let room = create_room(&s, &a, json!({ "preset": "public_chat" }));
    join(&s, &c, &room);
    join(&s, &b, &room);
    send_text(&s, &c, &room, "c0", "carol speaks");
    // The last two events: bob's join and carol's message.
    let first = sync(&s, &b, &q(&lazy(2, false), None));
    let r = &first["rooms"]["join"][&room];
    assert_eq!(members(r), [carol.as_str()], "the sender's member event: {r}");

    // Carol again: the device has her member event; not resent.
    send_text(&s, &c, &room, "c1", "carol again");
    let second = sync(&s, &b, &q(&lazy(2, false), Some(&next_batch(&first))));
    let r = &second["rooms"]["join"][&room];
    assert_eq!(bodies(&r["timeline"]["events"]), ["carol again"]);
    assert!(members(r).is_empty(), "redundant member resent: {r}");
    // Unless the filter asks for redundant members.
    let redundant = sync(&s, &b, &q(&lazy(2, true), Some(&next_batch(&first))));
    assert!(members(&redundant["rooms"]["join"][&room]).contains(&carol), "{redundant}");

    // A gappy sync: alice's member event comes with her messages.
    for i in 0..4 {
        send_text(&s, &a, &room, &format!("a{i}"), &format!("alice {i}"));
    }
    let gappy = sync(&s, &b, &q(&lazy(2, false), Some(&next_batch(&second))));
    let r = &gappy["rooms"]["join"][&room];
    assert_eq!(r["timeline"]["limited"], true, "{r}");
    assert_eq!(members(r), [alice.as_str()], "{r}");
    // The same request again (the answer was lost): sent again.
    let retry = sync(&s, &b, &q(&lazy(2, false), Some(&next_batch(&second))));
    assert_eq!(members(&retry["rooms"]["join"][&room]), [alice.as_str()]);
    // Once the client moved on, not again.
    send_text(&s, &a, &room, "a9", "alice later");
    let after = sync(&s, &b, &q(&lazy(2, false), Some(&next_batch(&retry))));
    let r = &after["rooms"]["join"][&room];
    assert_eq!(bodies(&r["timeline"]["events"]), ["alice later"]);
    assert!(members(r).is_empty(), "{r}");
}

#[test]
fn joining_brings_the_members_presence_and_the_joiners_to_them() {
    let s = Server::start();
    let (alice, a, _) = s.register("alice", "pw-alice");
    let (bob, b, _) = s.register("bob", "pw-bob");
    let room = create_room(&s, &a, json!({ "preset": "public_chat" }));
    let (status, r) = s.put(
        &format!("{V3}/presence/{}/status", enc(&alice)),
        Some(&a),
        json!({ "presence": "online", "status_msg": "here" }),
    );
    assert_eq!(status, 200, "{r}");
    let bob_first = sync(&s, &b, "?timeout=0");
    let alice_first = sync(&s, &a, "?timeout=0&set_presence=offline");
    join(&s, &b, &room);

    let alice_next =
        sync(&s, &a, &format!("?timeout=0&set_presence=offline&since={}", enc(&next_batch(&alice_first))));
    let senders = |v: &Value| -> Vec<String> {
        v["presence"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["sender"].as_str().map(str::to_owned))
            .collect()
    };
    assert!(senders(&alice_next).contains(&bob), "the joiner's presence: {alice_next}");
    let bob_next = sync(&s, &b, &format!("?timeout=0&since={}", enc(&next_batch(&bob_first))));
    let p = bob_next["presence"]["events"].as_array().unwrap();
    let of_alice = p.iter().find(|e| e["sender"] == alice.as_str()).unwrap_or_else(|| panic!("{bob_next}"));
    assert_eq!(of_alice["type"], "m.presence");
    assert_eq!(of_alice["content"]["status_msg"], "here");
}

#[test]
fn devices_added_or_renamed_without_keys_are_device_list_changes() {
    let s = Server::start();
    let (alice, a, _) = s.register("alice", "pw-alice");
    let (_, b, _) = s.register("bob", "pw-bob");
    let room = create_room(&s, &a, json!({ "preset": "public_chat" }));
    join(&s, &b, &room);
    let first = sync(&s, &b, "?timeout=0");
    let login = s.login_body("alice", "pw-alice");
    let device = login["device_id"].as_str().expect("device_id").to_owned();
    let next = sync(&s, &b, &format!("?timeout=0&since={}", enc(&next_batch(&first))));
    assert_eq!(next["device_lists"]["changed"], json!([alice]), "{next}");

    let (status, r) =
        s.put(&format!("{V3}/devices/{}", enc(&device)), Some(&a), json!({ "display_name": "Phone" }));
    assert_eq!(status, 200, "{r}");
    let renamed = sync(&s, &b, &format!("?timeout=0&since={}", enc(&next_batch(&next))));
    assert_eq!(renamed["device_lists"]["changed"], json!([alice]), "{renamed}");
    // Renaming to the same name changes nothing.
    let (status, _) =
        s.put(&format!("{V3}/devices/{}", enc(&device)), Some(&a), json!({ "display_name": "Phone" }));
    assert_eq!(status, 200);
    let same = sync(&s, &b, &format!("?timeout=0&since={}", enc(&next_batch(&renamed))));
    assert_eq!(same["device_lists"]["changed"], json!([]), "{same}");
}

#[test]
fn ignored_users_messages_and_invites_are_not_delivered() {
    let s = Server::start();
    let (alice, a, _) = s.register("alice", "pw-alice");
    let (bob, b, _) = s.register("bob", "pw-bob");
    let (_, c, _) = s.register("carol", "pw-carol");
    let room = create_room(&s, &a, json!({ "preset": "public_chat" }));
    join(&s, &b, &room);
    join(&s, &c, &room);
    let (status, r) = s.put(
        &format!("{V3}/user/{}/account_data/m.ignored_user_list", enc(&bob)),
        Some(&b),
        json!({ "ignored_users": { alice.clone(): {} } }),
    );
    assert_eq!(status, 200, "{r}");
    let first = sync(&s, &b, "?timeout=0");
    send_text(&s, &a, &room, "a1", "from alice");
    set_state(&s, &a, &room, "m.room.topic", "", json!({ "topic": "state still shows" }));
    send_text(&s, &c, &room, "c1", "from carol");
    let other = create_room(&s, &a, json!({ "preset": "private_chat" }));
    invite(&s, &a, &other, &bob);

    let next = sync(&s, &b, &format!("?timeout=0&since={}", enc(&next_batch(&first))));
    let r = &next["rooms"]["join"][&room];
    assert_eq!(bodies(&r["timeline"]["events"]), ["from carol"], "{r}");
    let events = r["timeline"]["events"].as_array().unwrap();
    assert!(events.iter().any(|e| e["type"] == "m.room.topic"), "state events still delivered: {r}");
    assert!(next["rooms"]["invite"].get(&other).is_none(), "invite from an ignored user: {next}");
    // The initial sync leaves them out too.
    let initial = sync(&s, &b, "?timeout=0");
    assert!(
        !bodies(&initial["rooms"]["join"][&room]["timeline"]["events"]).contains(&"from alice".to_owned())
    );
    assert!(initial["rooms"]["invite"].get(&other).is_none());
}
