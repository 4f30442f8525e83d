//! Simplified sliding sync (issue 14, MSC4186) through the real server:
//! lists ordered by recency with counts and windows, rooms sent once and
//! then only what changed, `pos` continuing, retried and unknown,
//! long-polls woken by a change, invites, leaves, subscriptions, filters,
//! timeline expansion, and the extensions.

mod common;

use std::time::Duration;

use common::{
    assert_error, create_room, enc, invite, join, leave, room_path, say, start_debug, woken_by, Server, User,
    V3,
};
use serde_json::{json, Value};

const PW: &str = "sliding-sync-password";
const PATH: &str = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";

/// One sliding sync request; `query` is `pos=…&timeout=…` or empty.
fn sliding(s: &Server, who: &User, query: &str, body: Value) -> (u16, Value) {
    let path = if query.is_empty() { PATH.to_owned() } else { format!("{PATH}?{query}") };
    s.post(&path, Some(&who.token), body)
}

#[track_caller]
fn sliding_ok(s: &Server, who: &User, query: &str, body: Value) -> Value {
    let (status, answer) = sliding(s, who, query, body);
    assert_eq!(status, 200, "{answer}");
    assert!(answer["pos"].is_string(), "{answer}");
    answer
}

fn pos_of(answer: &Value) -> String {
    answer["pos"].as_str().expect("pos").to_owned()
}

/// The list most tests use: every room, newest first, one event each.
fn all_rooms(limit: usize) -> Value {
    json!({
        "lists": { "all": {
            "ranges": [[0, 19]],
            "timeline_limit": limit,
            "required_state": [["m.room.name", ""], ["m.room.member", "$LAZY"], ["m.room.create", ""]],
        } }
    })
}

fn bodies(room: &Value) -> Vec<String> {
    room["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn lists_come_ordered_by_recency_with_counts_and_windows() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let mut rooms = Vec::new();
    for name in ["one", "two", "three"] {
        let room = create_room(&s, &alice.token, json!({ "name": name }));
        say(&s, &alice.token, &room, &format!("hello {name}"));
        rooms.push(room);
    }
    // "one" gets the newest message: it moves to the top.
    say(&s, &alice.token, &rooms[0], "newest");
    let answer = sliding_ok(&s, &alice, "", all_rooms(1));
    assert_eq!(answer["lists"]["all"]["count"], 3, "{answer}");
    let got = &answer["rooms"];
    let mut order: Vec<(&String, i64)> = got
        .as_object()
        .expect("rooms")
        .iter()
        .map(|(id, r)| (id, r["bump_stamp"].as_i64().expect("bump_stamp")))
        .collect();
    order.sort_by_key(|o| std::cmp::Reverse(o.1));
    let order: Vec<&str> = order.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(order, [rooms[0].as_str(), rooms[2].as_str(), rooms[1].as_str()]);
    let one = &got[&rooms[0]];
    assert_eq!(one["initial"], true);
    assert_eq!(one["name"], "one");
    assert_eq!(one["joined_count"], 1);
    assert_eq!(bodies(one), ["newest"]);
    assert_eq!(one["limited"], true);
    assert!(one["prev_batch"].is_string());
    let kinds: Vec<&str> =
        one["required_state"].as_array().unwrap().iter().filter_map(|e| e["type"].as_str()).collect();
    assert!(
        kinds.contains(&"m.room.name")
            && kinds.contains(&"m.room.create")
            && kinds.contains(&"m.room.member"),
        "{kinds:?}"
    );
    // `prev_batch` pages back through /messages.
    let (status, page) = s.get(
        &room_path(
            &rooms[0],
            &format!("messages?dir=b&limit=5&from={}", one["prev_batch"].as_str().unwrap()),
        ),
        Some(&alice.token),
    );
    assert_eq!(status, 200, "{page}");
    assert!(page["chunk"].as_array().unwrap().iter().any(|e| e["content"]["body"] == "hello one"), "{page}");

    // A window of one room: the newest only; the count is still all of them.
    let narrow = json!({ "lists": { "top": { "ranges": [[0, 0]], "timeline_limit": 1 } } });
    let answer = sliding_ok(&s, &alice, "", narrow);
    assert_eq!(answer["lists"]["top"]["count"], 3);
    let ids: Vec<&String> = answer["rooms"].as_object().unwrap().keys().collect();
    assert_eq!(ids, [&rooms[0]]);
}

#[test]
fn a_pos_continues_with_only_what_changed_and_an_old_one_is_refused() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let quiet = create_room(&s, &alice.token, json!({ "name": "quiet" }));
    let busy = create_room(&s, &alice.token, json!({ "name": "busy", "preset": "public_chat" }));
    join(&s, &bob.token, &busy);
    let first = sliding_ok(&s, &alice, "", all_rooms(5));
    let pos1 = pos_of(&first);
    // Nothing new: no rooms.
    let idle = sliding_ok(&s, &alice, &format!("pos={pos1}&timeout=0"), all_rooms(5));
    assert_eq!(idle["rooms"], json!({}), "{idle}");
    let pos2 = pos_of(&idle);
    // A message: only that room, only the new event, counted as live.
    say(&s, &bob.token, &busy, "news");
    let next = sliding_ok(&s, &alice, &format!("pos={pos2}&timeout=0"), all_rooms(5));
    let rooms = next["rooms"].as_object().unwrap();
    assert_eq!(rooms.keys().collect::<Vec<_>>(), [&busy], "{next}");
    assert!(!rooms.contains_key(&quiet));
    let room = &rooms[&busy];
    assert!(room.get("initial").is_none(), "{room}");
    assert_eq!(bodies(room), ["news"]);
    assert_eq!(room["num_live"], 1);
    assert_eq!(room["limited"], false);
    assert_eq!(room["notification_count"], 1, "bob's message notifies alice: {room}");
    // Bob's member event comes with it ($LAZY).
    assert!(
        room["required_state"].as_array().unwrap().iter().any(|e| e["state_key"] == bob.id.as_str()),
        "{room}"
    );
    // The previous pos again (the answer was lost): the same news again.
    let retried = sliding_ok(&s, &alice, &format!("pos={pos2}&timeout=0"), all_rooms(5));
    assert_eq!(bodies(&retried["rooms"][&busy]), ["news"], "{retried}");
    // A pos two answers back is gone: the client must start over.
    let gone = sliding(&s, &alice, &format!("pos={pos1}&timeout=0"), all_rooms(5));
    assert_error(&gone, 400, "M_UNKNOWN_POS");
    assert_error(&sliding(&s, &alice, "pos=nonsense", all_rooms(1)), 400, "M_UNKNOWN_POS");
}

#[test]
fn a_parked_sliding_sync_wakes_for_a_message() {
    let s = start_debug(&[], &[]);
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let room = create_room(&s, &alice.token, json!({ "preset": "public_chat" }));
    join(&s, &bob.token, &room);
    let pos = pos_of(&sliding_ok(&s, &alice, "", all_rooms(1)));
    let timeout = Duration::from_secs(20);
    let query = format!("pos={pos}&timeout={}", timeout.as_millis());
    let (answer, _) = woken_by(
        &s,
        &alice.id,
        timeout,
        || sliding_ok(&s, &alice, &query, all_rooms(1)),
        || say(&s, &bob.token, &room, "wake up"),
    );
    assert_eq!(bodies(&answer["rooms"][&room]), ["wake up"], "{answer}");
    // At its deadline an idle one answers with nothing new and a new pos.
    let pos = pos_of(&answer);
    let idle = sliding_ok(&s, &alice, &format!("pos={pos}&timeout=50"), all_rooms(1));
    assert_eq!(idle["rooms"], json!({}));
    assert_ne!(pos_of(&idle), pos);
}

#[test]
fn invites_leaves_and_subscriptions() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let room = create_room(&s, &bob.token, json!({ "name": "bob's" }));
    let pos = pos_of(&sliding_ok(&s, &alice, "", all_rooms(1)));
    invite(&s, &bob.token, &room, &alice.id);
    let invites = json!({ "lists": { "invites": { "ranges": [[0, 9]], "filters": { "is_invite": true } } } });
    let answer = sliding_ok(&s, &alice, &format!("pos={pos}&timeout=0"), invites.clone());
    assert_eq!(answer["lists"]["invites"]["count"], 1, "{answer}");
    let invited = &answer["rooms"][&room];
    let state: Vec<&str> = invited["invite_state"]
        .as_array()
        .expect("invite_state")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert!(state.contains(&"m.room.name") && state.contains(&"m.room.member"), "{invited}");
    // Joined, the room comes whole (its first time as a joined room).
    join(&s, &alice.token, &room);
    say(&s, &bob.token, &room, "welcome");
    let pos = pos_of(&answer);
    let joined = sliding_ok(&s, &alice, &format!("pos={pos}&timeout=0"), all_rooms(3));
    let r = &joined["rooms"][&room];
    assert_eq!(r["initial"], true, "{joined}");
    assert!(bodies(r).contains(&"welcome".to_owned()), "{r}");
    // A subscription with a larger timeline limit and every state event:
    // the room's timeline is expanded to it.
    let pos = pos_of(&joined);
    for i in 0..6 {
        say(&s, &bob.token, &room, &format!("m{i}"));
    }
    let sub =
        json!({ "room_subscriptions": { &room: { "timeline_limit": 7, "required_state": [["*", "*"]] } } });
    let answer = sliding_ok(&s, &alice, &format!("pos={pos}&timeout=0"), sub);
    let r = &answer["rooms"][&room];
    assert_eq!(r["expanded_timeline"], true, "{r}");
    assert_eq!(bodies(r), ["welcome", "m0", "m1", "m2", "m3", "m4", "m5"], "{r}");
    let kinds: Vec<&str> =
        r["required_state"].as_array().unwrap().iter().filter_map(|e| e["type"].as_str()).collect();
    assert!(kinds.contains(&"m.room.power_levels") && kinds.contains(&"m.room.join_rules"), "{kinds:?}");
    // Leaving: the room comes once more with the leave, then not again.
    let pos = pos_of(&answer);
    leave(&s, &alice.token, &room);
    let answer = sliding_ok(&s, &alice, &format!("pos={pos}&timeout=0"), all_rooms(1));
    let last = answer["rooms"][&room]["timeline"].as_array().expect("the leave").last().cloned().unwrap();
    assert_eq!(
        (last["type"].as_str(), last["content"]["membership"].as_str()),
        (Some("m.room.member"), Some("leave"))
    );
    // Clients read their membership from required_state.
    let own = &answer["rooms"][&room]["required_state"][0];
    assert_eq!(
        (own["state_key"].as_str(), own["content"]["membership"].as_str()),
        (Some(alice.id.as_str()), Some("leave")),
        "{answer}"
    );
    assert_eq!(answer["lists"]["all"]["count"], 0);
    let pos = pos_of(&answer);
    let after = sliding_ok(&s, &alice, &format!("pos={pos}&timeout=0"), all_rooms(1));
    assert!(after["rooms"].get(&room).is_none(), "{after}");
}

#[test]
fn filters_and_timeline_expansion() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let dm = create_room(&s, &alice.token, json!({ "is_direct": true, "invite": [bob.id] }));
    let space = create_room(&s, &alice.token, json!({ "creation_content": { "type": "m.space" } }));
    let plain = create_room(&s, &alice.token, json!({}));
    let (status, body) = s.put(
        &format!("{V3}/user/{}/account_data/m.direct", enc(&alice.id)),
        Some(&alice.token),
        json!({ &bob.id: [dm] }),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = s.put(
        &format!("{V3}/user/{}/rooms/{}/tags/m.favourite", enc(&alice.id), enc(&plain)),
        Some(&alice.token),
        json!({}),
    );
    assert_eq!(status, 200, "{body}");
    let list = |filters: Value| json!({ "lists": { "l": { "ranges": [[0, 9]], "filters": filters } } });
    let ids = |answer: &Value| -> Vec<String> {
        let mut v: Vec<String> = answer["rooms"].as_object().unwrap().keys().cloned().collect();
        v.sort();
        v
    };
    let mut expect = vec![dm.clone()];
    expect.sort();
    assert_eq!(ids(&sliding_ok(&s, &alice, "", list(json!({ "is_dm": true })))), expect);
    let answer = sliding_ok(&s, &alice, "", list(json!({ "not_room_types": ["m.space"] })));
    assert_eq!(answer["lists"]["l"]["count"], 2);
    assert!(!ids(&answer).contains(&space));
    assert_eq!(
        ids(&sliding_ok(&s, &alice, "", list(json!({ "room_types": ["m.space"] })))),
        std::slice::from_ref(&space)
    );
    assert_eq!(
        ids(&sliding_ok(&s, &alice, "", list(json!({ "tags": ["m.favourite"] })))),
        std::slice::from_ref(&plain)
    );
    let answer = sliding_ok(&s, &alice, "", list(json!({ "not_tags": ["m.favourite"] })));
    assert!(!ids(&answer).contains(&plain));
    assert_eq!(answer["rooms"][&dm]["is_dm"], true);

    // A larger timeline limit for a room sent with a small one expands it.
    for i in 0..4 {
        say(&s, &alice.token, &plain, &format!("p{i}"));
    }
    let small = json!({ "room_subscriptions": { &plain: { "timeline_limit": 1 } } });
    let first = sliding_ok(&s, &alice, "", small);
    assert_eq!(bodies(&first["rooms"][&plain]), ["p3"]);
    let big = json!({ "room_subscriptions": { &plain: { "timeline_limit": 4 } } });
    let again = sliding_ok(&s, &alice, &format!("pos={}&timeout=0", pos_of(&first)), big);
    let r = &again["rooms"][&plain];
    assert_eq!(r["expanded_timeline"], true, "{r}");
    assert_eq!(bodies(r), ["p0", "p1", "p2", "p3"]);
}

#[test]
fn extensions_carry_to_device_keys_account_data_receipts_and_typing() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let room = create_room(&s, &alice.token, json!({ "preset": "public_chat" }));
    join(&s, &bob.token, &room);
    let event = say(&s, &alice.token, &room, "read me");
    let (_, who) = s.get(&format!("{V3}/account/whoami"), Some(&alice.token));
    let device = who["device_id"].as_str().unwrap().to_owned();
    let mut body = all_rooms(1);
    body["extensions"] = json!({
        "to_device": { "enabled": true },
        "e2ee": { "enabled": true },
        "account_data": { "enabled": true },
        "receipts": { "enabled": true },
        "typing": { "enabled": true },
    });
    let first = sliding_ok(&s, &alice, "", body);
    let ext = &first["extensions"];
    assert!(ext["e2ee"]["device_one_time_keys_count"].is_object(), "{ext}");
    assert!(ext["e2ee"]["device_lists"]["changed"].is_array());
    let global: Vec<&str> =
        ext["account_data"]["global"].as_array().unwrap().iter().filter_map(|e| e["type"].as_str()).collect();
    assert!(global.contains(&"m.push_rules"), "{global:?}");
    let since = ext["to_device"]["next_batch"].as_str().expect("next_batch").to_owned();
    let pos = pos_of(&first);

    // Bob: a to-device message, a receipt, typing. The extensions' settings
    // are sticky: the next request does not repeat them.
    let (status, r) = s.put(
        &format!("{V3}/sendToDevice/m.test/t1"),
        Some(&bob.token),
        json!({ "messages": { &alice.id: { &device: { "hello": "alice" } } } }),
    );
    assert_eq!(status, 200, "{r}");
    let (status, r) =
        s.post(&room_path(&room, &format!("receipt/m.read/{}", enc(&event))), Some(&bob.token), json!({}));
    assert_eq!(status, 200, "{r}");
    let (status, r) = s.put(
        &room_path(&room, &format!("typing/{}", enc(&bob.id))),
        Some(&bob.token),
        json!({ "typing": true, "timeout": 30000 }),
    );
    assert_eq!(status, 200, "{r}");
    let mut next_body = all_rooms(1);
    next_body["extensions"] = json!({ "to_device": { "since": since } });
    let next = sliding_ok(&s, &alice, &format!("pos={pos}&timeout=0"), next_body);
    let ext = &next["extensions"];
    let messages = ext["to_device"]["events"].as_array().expect("to_device events");
    assert_eq!(messages.len(), 1, "{ext}");
    assert_eq!(
        (messages[0]["type"].as_str(), messages[0]["sender"].as_str()),
        (Some("m.test"), Some(bob.id.as_str()))
    );
    let receipt = &ext["receipts"]["rooms"][&room];
    assert_eq!(receipt["type"], "m.receipt", "{ext}");
    assert!(receipt["content"][&event]["m.read"][&bob.id].is_object(), "{receipt}");
    let typing = &ext["typing"]["rooms"][&room];
    assert_eq!(typing["content"]["user_ids"], json!([bob.id]), "{ext}");
    // Delivered once: acknowledged by the next `since`.
    let since = ext["to_device"]["next_batch"].as_str().unwrap().to_owned();
    let mut ack = all_rooms(1);
    ack["extensions"] = json!({ "to_device": { "since": since } });
    let again = sliding_ok(&s, &alice, &format!("pos={}&timeout=0", pos_of(&next)), ack);
    assert_eq!(again["extensions"]["to_device"]["events"], json!([]), "{again}");
}

#[test]
fn bad_requests_are_refused_clearly() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    assert_error(&s.post(PATH, None, all_rooms(1)), 401, "M_MISSING_TOKEN");
    let raw = s.raw(
        "POST",
        PATH,
        &[("Authorization", &format!("Bearer {}", alice.token)), ("Content-Type", "application/json")],
        Some(b"{not json"),
    );
    assert_eq!(raw.status, 400);
    for bad in [
        json!({ "lists": { "a": { "ranges": [[3, 1]] } } }),
        json!({ "lists": { "a": { "ranges": [[0, "x"]] } } }),
        json!({ "lists": { "a": { "required_state": "all" } } }),
        json!({ "lists": { "a": { "filters": { "is_dm": 1 } } } }),
        json!({ "conn_id": 5 }),
        json!({ "extensions": { "typing": [] } }),
    ] {
        assert_error(&sliding(&s, &alice, "", bad.clone()), 400, "M_BAD_JSON");
    }
    assert_error(&sliding(&s, &alice, "timeout=soon", all_rooms(1)), 400, "M_INVALID_PARAM");
    // Connections are separate by conn_id.
    let a = sliding_ok(&s, &alice, "", json!({ "conn_id": "room-list" }));
    let b = sliding_ok(&s, &alice, "", json!({ "conn_id": "encryption" }));
    let back =
        sliding_ok(&s, &alice, &format!("pos={}&timeout=0", pos_of(&a)), json!({ "conn_id": "room-list" }));
    assert!(back["pos"].is_string());
    let crossed =
        sliding(&s, &alice, &format!("pos={}&timeout=0", pos_of(&b)), json!({ "conn_id": "room-list" }));
    assert_error(&crossed, 400, "M_UNKNOWN_POS");
}

/// Found with matrix-rust-sdk: a receipt was repeated in every answer, so
/// every long-poll returned at once and clients busy-looped.
#[test]
fn a_receipt_is_delivered_once_and_the_connection_goes_quiet() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let room = create_room(&s, &alice.token, json!({ "preset": "public_chat" }));
    join(&s, &bob.token, &room);
    let event = say(&s, &alice.token, &room, "read me");
    let mut body = all_rooms(1);
    body["extensions"] = json!({ "receipts": { "enabled": true, "rooms": ["*"] } });
    let pos = pos_of(&sliding_ok(&s, &alice, "", body.clone()));
    let (status, r) =
        s.post(&room_path(&room, &format!("receipt/m.read/{}", enc(&event))), Some(&bob.token), json!({}));
    assert_eq!(status, 200, "{r}");
    let with = sliding_ok(&s, &alice, &format!("pos={pos}&timeout=0"), body.clone());
    assert!(with["extensions"]["receipts"]["rooms"].get(&room).is_some(), "{with}");
    let after = sliding_ok(&s, &alice, &format!("pos={}&timeout=0", pos_of(&with)), body.clone());
    assert_eq!(after["extensions"]["receipts"]["rooms"], json!({}), "{after}");
    assert_eq!(after["rooms"], json!({}));
}

/// Found with matrix-rust-sdk: a long-poll the client gave up on, answered
/// later, replaced the position the client had gone on with, and its next
/// request was refused with `M_UNKNOWN_POS`.
#[test]
fn a_long_poll_given_up_does_not_displace_the_live_pos() {
    use std::io::Write;
    let s = start_debug(&[], &[]);
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let room = create_room(&s, &alice.token, json!({ "preset": "public_chat" }));
    join(&s, &bob.token, &room);
    let first = pos_of(&sliding_ok(&s, &alice, "", all_rooms(1)));
    // A long-poll on `first`, parked, then abandoned by its client.
    let parks = common::parks_of(&s, &alice.id);
    let body = all_rooms(1).to_string();
    let url = s.url(&format!("{PATH}?pos={first}&timeout=20000"));
    let authority = url.split('/').nth(2).expect("host:port").to_owned();
    let mut sock = std::net::TcpStream::connect(&authority).expect("connect");
    write!(
        sock,
        "POST {PATH}?pos={first}&timeout=20000 HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        alice.token,
        body.len()
    )
    .expect("write");
    common::wait_for_log(&s, &common::parked_line(&alice.id), parks + 1);
    drop(sock);
    // The client goes on from `first` on a new request.
    let second = pos_of(&sliding_ok(&s, &alice, &format!("pos={first}&timeout=0"), all_rooms(1)));
    // A message wakes the abandoned one, which is answered (into the void).
    let answered = common::log_count(&s, PATH);
    say(&s, &bob.token, &room, "after");
    common::wait_until(&s, "the abandoned long-poll answered", || common::log_count(&s, PATH) > answered);
    let next = sliding_ok(&s, &alice, &format!("pos={second}&timeout=0"), all_rooms(1));
    assert_eq!(bodies(&next["rooms"][&room]), ["after"], "{next}");
}

#[test]
fn room_headers_counts_and_scoped_room_account_data() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let carol = s.user("carol", PW);
    // No name: heroes stand for it; an avatar; one invited member.
    let room = create_room(&s, &alice.token, json!({ "preset": "public_chat" }));
    join(&s, &bob.token, &room);
    invite(&s, &alice.token, &room, &carol.id);
    let (status, r) = s.put(
        &format!("{V3}/profile/{}/displayname", enc(&bob.id)),
        Some(&bob.token),
        json!({ "displayname": "Bob" }),
    );
    assert_eq!(status, 200, "{r}");
    let (status, r) = s.put(
        &room_path(&room, "state/m.room.avatar/"),
        Some(&alice.token),
        json!({ "url": "mxc://localhost/avatar" }),
    );
    assert_eq!(status, 200, "{r}");
    let (status, r) = s.put(
        &format!("{V3}/user/{}/rooms/{}/account_data/m.fully_read.custom", enc(&alice.id), enc(&room)),
        Some(&alice.token),
        json!({ "seen": true }),
    );
    assert_eq!(status, 200, "{r}");
    let mut body = all_rooms(1);
    body["extensions"] = json!({ "account_data": { "enabled": true, "lists": ["all"] } });
    let answer = sliding_ok(&s, &alice, "", body);
    let r = &answer["rooms"][&room];
    assert!(r.get("name").is_none(), "{r}");
    assert_eq!(r["avatar"], "mxc://localhost/avatar");
    assert_eq!((r["joined_count"].as_u64(), r["invited_count"].as_u64()), (Some(2), Some(1)));
    let heroes: Vec<(&str, Option<&str>)> = r["heroes"]
        .as_array()
        .expect("heroes")
        .iter()
        .map(|h| (h["user_id"].as_str().unwrap(), h["displayname"].as_str()))
        .collect();
    assert!(heroes.contains(&(bob.id.as_str(), Some("Bob"))), "{heroes:?}");
    assert!(heroes.iter().any(|(u, _)| *u == carol.id), "{heroes:?}");
    assert!(!heroes.iter().any(|(u, _)| *u == alice.id), "the user is not their own hero");
    assert_eq!((r["notification_count"].as_u64(), r["highlight_count"].as_u64()), (Some(0), Some(0)));
    let data = &answer["extensions"]["account_data"]["rooms"][&room];
    assert!(data.as_array().unwrap().iter().any(|e| e["type"] == "m.fully_read.custom"), "{answer}");
    // A subscription, then unsubscribing: the room is no longer sent for it.
    let lone = create_room(&s, &alice.token, json!({}));
    let sub = json!({ "room_subscriptions": { &lone: { "timeline_limit": 1 } } });
    let first = sliding_ok(&s, &alice, "", sub);
    assert!(first["rooms"].get(&lone).is_some());
    let off = sliding_ok(
        &s,
        &alice,
        &format!("pos={}&timeout=0", pos_of(&first)),
        json!({ "unsubscribe_rooms": [lone] }),
    );
    say(&s, &alice.token, &lone, "unseen");
    let later = sliding_ok(&s, &alice, &format!("pos={}&timeout=0", pos_of(&off)), json!({}));
    assert!(later["rooms"].get(&lone).is_none(), "{later}");
}
