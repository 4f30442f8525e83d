//! Nesting through the real server (issue 11, "one event can break /sync
//! for a whole room"): JSON nested past `core::json::DEPTH_MAX` is refused
//! on every write path before anything is stored, content at the limit is
//! stored and reads back through every reader, and a stored row that
//! cannot be parsed (as an older server could have written) is left out of
//! answers instead of failing them.

mod common;

use common::{assert_error, create_room, enc, get_ok, room_path, set_state, timeline, Server, User, V3};
use hearth::core::json::{depth, DEPTH_MAX};
use serde_json::{json, Value};

const PW: &str = "nesting-test-password";

/// `levels` objects, one inside the other, around `1`: `{"a":{"a":1}}` is 2.
fn nested(levels: usize) -> Value {
    (0..levels).fold(json!(1), |inner, _| json!({ "a": inner }))
}

/// A message body (and so event content) that nests `levels` deep.
fn message(levels: usize) -> Value {
    json!({ "msgtype": "m.text", "body": "deep", "deep": nested(levels - 1) })
}

/// The nesting of a JSON value as text.
fn depth_of(v: &Value) -> usize {
    depth(serde_json::to_string(v).expect("serialisable").as_bytes())
}

#[track_caller]
fn send(s: &Server, who: &User, room: &str, txn: &str, body: Value) -> (u16, Value) {
    s.put(&room_path(room, &format!("send/m.room.message/{txn}")), Some(&who.token), body)
}

#[track_caller]
fn sent(s: &Server, who: &User, room: &str, txn: &str, body: Value) -> String {
    let got = send(s, who, room, txn, body);
    assert_eq!(got.0, 200, "send: {}", got.1);
    got.1["event_id"].as_str().expect("event_id").to_owned()
}

/// A GET whose raw answer is also measured: it must parse (serde_json, as
/// in Rust clients) and stay within `max` levels.
#[track_caller]
fn get_within(s: &Server, who: &User, path: &str, max: usize) -> Value {
    let auth = format!("Bearer {}", who.token);
    let r = s.raw("GET", path, &[("Authorization", auth.as_str())], None);
    assert_eq!(r.status, 200, "GET {path}: {}", r.text);
    assert!(!r.json.is_null(), "GET {path} must parse as JSON");
    let d = depth(r.text.as_bytes());
    assert!(d <= max, "GET {path} nests {d} levels, more than {max}");
    r.json
}

/// Asserts a 400 `M_BAD_JSON` that blames the nesting.
#[track_caller]
fn assert_too_deep(got: &(u16, Value), what: &str) {
    assert_error(got, 400, "M_BAD_JSON");
    let message = got.1["error"].as_str().unwrap_or("");
    assert!(message.contains("levels deep"), "{what}: {message}");
}

/// The event IDs of a room's timeline in a `/sync` answer.
fn timeline_ids(sync: &Value, room: &str) -> Vec<String> {
    timeline(sync, room).iter().filter_map(|e| e["event_id"].as_str().map(str::to_owned)).collect()
}

/// The newest event of a room, as `/messages` shows it.
fn newest(s: &Server, who: &User, room: &str) -> Value {
    let page = get_ok(s, who, &room_path(room, "messages?dir=b&limit=1"));
    page["chunk"][0].clone()
}

#[test]
fn deep_bodies_are_refused_on_every_write_path() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let room = create_room(&s, &alice.token, json!({ "preset": "public_chat" }));
    let (status, body) = s.post(&room_path(&room, "join"), Some(&bob.token), json!({}));
    assert_eq!(status, 200, "{body}");
    let target = sent(&s, &alice, &room, "target", json!({ "msgtype": "m.text", "body": "hi" }));
    let newest_before = newest(&s, &alice, &room)["event_id"].clone();

    let deep = nested(DEPTH_MAX);
    let deep_list = (0..DEPTH_MAX).fold(json!([]), |inner, _| json!([inner]));
    let me = enc(&alice.id);
    let in_room = |rest: &str| room_path(&room, rest);
    let cases: Vec<(&str, String, Value)> = vec![
        // Room events: messages, reactions, state (an invitee's stripped
        // state included), redaction reasons.
        ("PUT", in_room("send/m.room.message/t1"), json!({ "msgtype": "m.text", "body": "x", "x": deep })),
        (
            "PUT",
            in_room("send/m.room.message/t2"),
            json!({ "msgtype": "m.text", "body": "x", "x": deep_list }),
        ),
        (
            "PUT",
            in_room("send/m.reaction/t3"),
            json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": target, "key": "x" }, "x": deep }),
        ),
        ("PUT", in_room("state/m.room.name"), json!({ "name": "n", "x": deep })),
        ("PUT", in_room("state/m.room.topic"), json!({ "topic": "t", "x": deep })),
        ("PUT", in_room(&format!("redact/{}/t4", enc(&target))), json!({ "reason": deep })),
        // createRoom: each part that becomes an event.
        ("POST", format!("{V3}/createRoom"), json!({ "creation_content": { "x": deep } })),
        (
            "POST",
            format!("{V3}/createRoom"),
            json!({ "initial_state": [{ "type": "m.room.topic", "state_key": "", "content": { "x": deep } }] }),
        ),
        ("POST", format!("{V3}/createRoom"), json!({ "power_level_content_override": { "x": deep } })),
        ("POST", format!("{V3}/createRoom"), json!({ "name": "n", "x": deep })),
        // Membership, with deep fields in the body.
        ("POST", in_room("invite"), json!({ "user_id": "@carol:localhost", "reason": "r", "x": deep })),
        ("POST", in_room("kick"), json!({ "user_id": bob.id, "x": deep })),
        ("POST", in_room("ban"), json!({ "user_id": bob.id, "x": deep })),
        ("POST", in_room("leave"), json!({ "x": deep })),
        ("POST", format!("{V3}/join/{}", enc(&room)), json!({ "x": deep })),
        ("POST", format!("{V3}/knock/{}", enc(&room)), json!({ "x": deep })),
        // Profile.
        ("PUT", format!("{V3}/profile/{me}/displayname"), json!({ "displayname": "A", "x": deep })),
        ("PUT", format!("{V3}/profile/{me}/avatar_url"), json!({ "avatar_url": "mxc://a/b", "x": deep })),
        // Account data, global and per room, and tags.
        ("PUT", format!("{V3}/user/{me}/account_data/m.custom"), json!({ "x": deep })),
        ("PUT", format!("{V3}/user/{me}/rooms/{}/account_data/m.custom", enc(&room)), json!({ "x": deep })),
        ("PUT", format!("{V3}/user/{me}/rooms/{}/tags/u.work", enc(&room)), json!({ "x": deep })),
        // Filters, push rules, to-device, keys.
        ("POST", format!("{V3}/user/{me}/filter"), json!({ "room": { "x": deep } })),
        (
            "PUT",
            format!("{V3}/pushrules/global/override/deep"),
            json!({ "actions": ["notify"], "conditions": [], "x": deep }),
        ),
        (
            "PUT",
            format!("{V3}/sendToDevice/m.test/t5"),
            json!({ "messages": { bob.id.as_str(): { "*": { "x": deep } } } }),
        ),
        ("POST", format!("{V3}/keys/upload"), json!({ "device_keys": { "x": deep } })),
        ("POST", format!("{V3}/keys/upload"), json!({ "one_time_keys": { "signed_curve25519:AAAA": deep } })),
        ("PUT", format!("{V3}/devices/NOSUCH"), json!({ "display_name": "d", "x": deep })),
        ("POST", format!("{V3}/rooms/{}/receipt/m.read/{}", enc(&room), enc(&target)), json!({ "x": deep })),
        ("POST", format!("{V3}/room_keys/version"), json!({ "algorithm": "a", "auth_data": deep })),
    ];
    for (method, path, body) in &cases {
        let depth = depth_of(body);
        assert!(depth > DEPTH_MAX, "{method} {path}: the case must be too deep ({depth})");
        let got = s.call(method, path, Some(&alice.token), Some(body));
        assert_too_deep(&got, &format!("{method} {path}"));
    }

    // Nothing was stored: no new event in the room, no room created, no
    // account data, no tag, no rule, nothing for bob's device.
    assert_eq!(newest(&s, &alice, &room)["event_id"], newest_before);
    let joined = get_ok(&s, &alice, &format!("{V3}/joined_rooms"));
    assert_eq!(joined["joined_rooms"], json!([room]));
    assert_error(
        &s.get(&format!("{V3}/user/{me}/account_data/m.custom"), Some(&alice.token)),
        404,
        "M_NOT_FOUND",
    );
    let tags = get_ok(&s, &alice, &format!("{V3}/user/{me}/rooms/{}/tags", enc(&room)));
    assert_eq!(tags, json!({ "tags": {} }));
    assert_error(
        &s.get(&format!("{V3}/pushrules/global/override/deep"), Some(&alice.token)),
        404,
        "M_NOT_FOUND",
    );
    let bob_sync = get_ok(&s, &bob, &format!("{V3}/sync"));
    assert_eq!(bob_sync["to_device"]["events"], json!([]));
    let (status, _) = s.get(&room_path(&room, &format!("event/{}", enc(&target))), Some(&alice.token));
    assert_eq!(status, 200, "the target of the refused redaction is untouched");
    assert_eq!(
        get_ok(&s, &alice, &room_path(&room, &format!("event/{}", enc(&target))))["content"]["body"],
        "hi"
    );

    // A filter in the query string is held to the same limit.
    let filter = serde_json::to_string(&json!({ "x": nested(DEPTH_MAX) })).expect("json");
    let got = s.get(&format!("{V3}/sync?filter={}", enc(&filter)), Some(&alice.token));
    assert_too_deep(&got, "sync filter");
    let got =
        s.get(&room_path(&room, &format!("messages?dir=b&filter={}", enc(&filter))), Some(&alice.token));
    assert_too_deep(&got, "messages filter");

    // Far deeper than serde_json itself parses: the same answer, not
    // M_NOT_JSON, and the server is fine.
    let hostile = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let auth = format!("Bearer {}", alice.token);
    let r = s.raw(
        "PUT",
        &in_room("send/m.room.message/t6"),
        &[("Authorization", auth.as_str()), ("Content-Type", "application/json")],
        Some(hostile.as_bytes()),
    );
    assert_too_deep(&(r.status, r.json), "100 000 levels");
    // Not JSON at all is still M_NOT_JSON.
    let r = s.raw(
        "PUT",
        &in_room("send/m.room.message/t7"),
        &[("Authorization", auth.as_str()), ("Content-Type", "application/json")],
        Some(b"{not json"),
    );
    assert_error(&(r.status, r.json), 400, "M_NOT_JSON");
}

#[test]
fn content_at_the_limit_is_stored_and_reads_back_everywhere() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let room = create_room(&s, &alice.token, json!({ "preset": "public_chat" }));
    let (status, body) = s.post(&room_path(&room, "join"), Some(&bob.token), json!({}));
    assert_eq!(status, 200, "{body}");
    let first = get_ok(&s, &bob, &format!("{V3}/sync"));
    let since = first["next_batch"].as_str().expect("next_batch").to_owned();

    // Event content is one level inside its PDU: a body of DEPTH_MAX
    // passes the body check but makes a PDU one level too deep, refused
    // before anything is stored; DEPTH_MAX - 1 is the deepest content.
    let got = send(&s, &alice, &room, "over", message(DEPTH_MAX));
    assert_too_deep(&got, "body at the limit, PDU over it");
    assert!(got.1["error"].as_str().unwrap_or("").contains("event would nest"), "{}", got.1);
    let got = s.put(&room_path(&room, "state/m.room.topic"), Some(&alice.token), message(DEPTH_MAX));
    assert_too_deep(&got, "state at the limit");
    let limit = DEPTH_MAX - 1;
    let msg = sent(&s, &alice, &room, "at-limit", message(limit));
    // A state event at the limit, replaced by another: the second carries
    // the first's content in `unsigned.prev_content`, one level deeper.
    let topic = json!({ "topic": "t", "deep": nested(limit - 1) });
    assert_eq!(depth_of(&topic), limit);
    set_state(&s, &alice.token, &room, "m.room.topic", "", topic.clone());
    let topic2_body = json!({ "topic": "t2", "deep": nested(limit - 1) });
    let topic2 = set_state(&s, &alice.token, &room, "m.room.topic", "", topic2_body.clone());
    let after = sent(&s, &alice, &room, "after", json!({ "msgtype": "m.text", "body": "after" }));

    // The deepest a sync answer can be: an event 6 levels down, plus 2
    // for `unsigned.redacted_because.content`.
    let sync_max = 6 + DEPTH_MAX + 2;
    let sync = get_within(&s, &bob, &format!("{V3}/sync?since={since}"), sync_max);
    let events = &sync["rooms"]["join"][&room]["timeline"]["events"];
    let by_id = |id: &str| events.as_array().and_then(|l| l.iter().find(|e| e["event_id"] == id)).cloned();
    let m = by_id(&msg).expect("the deep message is in the timeline");
    assert_eq!(m["content"], message(limit));
    let t2 = by_id(&topic2).expect("the second topic is in the timeline");
    assert_eq!(t2["content"], topic2_body);
    assert_eq!(t2["unsigned"]["prev_content"], topic);
    assert!(by_id(&after).is_some());
    // An initial sync shows the state at the limit too.
    let initial = get_within(&s, &bob, &format!("{V3}/sync"), sync_max);
    assert!(timeline_ids(&initial, &room).contains(&msg));

    // /messages, /event, /context, /state.
    let page = get_within(&s, &bob, &room_path(&room, "messages?dir=b&limit=10"), sync_max);
    let chunk = page["chunk"].as_array().expect("chunk");
    assert!(chunk.iter().any(|e| e["event_id"] == msg.as_str() && e["content"] == message(limit)));
    let event = get_within(&s, &bob, &room_path(&room, &format!("event/{}", enc(&msg))), sync_max);
    assert_eq!(event["content"], message(limit));
    let context =
        get_within(&s, &bob, &room_path(&room, &format!("context/{}?limit=10", enc(&after))), sync_max);
    let before = context["events_before"].as_array().expect("events_before");
    assert!(before.iter().any(|e| e["event_id"] == msg.as_str()), "{context}");
    assert!(before
        .iter()
        .any(|e| e["event_id"] == topic2.as_str() && e["unsigned"]["prev_content"] == topic));
    let context = get_within(&s, &bob, &room_path(&room, &format!("context/{}", enc(&msg))), sync_max);
    assert_eq!(context["event"]["content"], message(limit));
    let state = get_within(&s, &bob, &room_path(&room, "state"), sync_max);
    let current =
        state.as_array().and_then(|l| l.iter().find(|e| e["type"] == "m.room.topic")).expect("topic");
    assert_eq!(current["content"], topic2_body);
    let content = get_within(&s, &bob, &room_path(&room, "state/m.room.topic"), sync_max);
    assert_eq!(content, topic2_body);
    let whole = get_within(&s, &bob, &room_path(&room, "state/m.room.topic/?format=event"), sync_max);
    assert_eq!(whole["unsigned"]["prev_content"], topic);
    // The original specification's readers.
    get_within(&s, &bob, &format!("{V3}/initialSync?limit=10"), sync_max);
    get_within(&s, &bob, &room_path(&room, "initialSync"), sync_max);

    // Account data may be as deep as the body limit itself, and reads back
    // inside `/sync`.
    let me = enc(&bob.id);
    let data = json!({ "deep": nested(DEPTH_MAX - 1) });
    assert_eq!(depth_of(&data), DEPTH_MAX);
    let path = format!("{V3}/user/{me}/account_data/m.deep");
    assert_eq!(s.put(&path, Some(&bob.token), data.clone()), (200, json!({})));
    assert_eq!(get_ok(&s, &bob, &path), data);
    let in_room = format!("{V3}/user/{me}/rooms/{}/account_data/m.deep", enc(&room));
    assert_eq!(s.put(&in_room, Some(&bob.token), data.clone()), (200, json!({})));
    let sync = get_within(&s, &bob, &format!("{V3}/sync"), sync_max);
    let global = sync["account_data"]["events"].as_array().expect("account data");
    assert!(global.iter().any(|e| e["type"] == "m.deep" && e["content"] == data));
    let local = sync["rooms"]["join"][&room]["account_data"]["events"].as_array().expect("room account data");
    assert!(local.iter().any(|e| e["type"] == "m.deep" && e["content"] == data));
}

#[test]
fn a_stored_row_that_cannot_be_parsed_is_left_out_not_a_500() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let carol = s.user("carol", PW);
    let room = create_room(&s, &alice.token, json!({ "preset": "public_chat", "name": "Family" }));
    let (status, body) = s.post(&room_path(&room, "join"), Some(&bob.token), json!({}));
    assert_eq!(status, 200, "{body}");
    let before = sent(&s, &alice, &room, "before", json!({ "msgtype": "m.text", "body": "before" }));
    let bad = sent(&s, &alice, &room, "bad", json!({ "msgtype": "m.text", "body": "bad" }));
    let after = sent(&s, &alice, &room, "after", json!({ "msgtype": "m.text", "body": "after" }));
    let topic = set_state(&s, &alice.token, &room, "m.room.topic", "", json!({ "topic": "t" }));
    let me = enc(&bob.id);
    let data_path = format!("{V3}/user/{me}/account_data/m.broken");
    assert_eq!(s.put(&data_path, Some(&bob.token), json!({ "x": 1 })), (200, json!({})));
    assert_eq!(
        s.put(&format!("{V3}/user/{me}/account_data/m.fine"), Some(&bob.token), json!({})),
        (200, json!({}))
    );

    // What an older server could have stored: nested past what serde_json
    // parses. Written behind the server's back, as no API can.
    let deep = format!("{{\"content\":{}1{}}}", "{\"a\":".repeat(130), "}".repeat(130));
    let name_event = get_ok(&s, &alice, &room_path(&room, "state/m.room.name/?format=event"))["event_id"]
        .as_str()
        .expect("name event")
        .to_owned();
    let db = rusqlite::Connection::open(s.db()).expect("opening the database");
    db.busy_timeout(std::time::Duration::from_secs(10)).expect("busy timeout");
    for id in [&bad, &topic, &name_event] {
        let n =
            db.execute("UPDATE events SET pdu = ?1 WHERE event_id = ?2", [&deep, id]).expect("corrupting");
        assert_eq!(n, 1);
    }
    let n = db
        .execute("UPDATE account_data SET content = ?1 WHERE type = 'm.broken'", [&deep])
        .expect("corrupting account data");
    assert_eq!(n, 1);
    drop(db);

    // /sync: the bad event, topic and name are left out; the rest is there.
    let sync = get_ok(&s, &bob, &format!("{V3}/sync"));
    let ids = timeline_ids(&sync, &room);
    assert!(ids.contains(&before) && ids.contains(&after), "{ids:?}");
    assert!(!ids.contains(&bad) && !ids.contains(&topic));
    let state = &sync["rooms"]["join"][&room]["state"]["events"];
    assert!(state.as_array().is_some_and(|l| l.iter().all(|e| e["event_id"] != name_event.as_str())));
    let data = sync["account_data"]["events"].as_array().expect("account data");
    assert!(data.iter().any(|e| e["type"] == "m.fine"));
    assert!(data.iter().all(|e| e["type"] != "m.broken"));
    assert_error(&s.get(&data_path, Some(&bob.token)), 404, "M_NOT_FOUND");

    // /messages, /context, /event, /state.
    let page = get_ok(&s, &bob, &room_path(&room, "messages?dir=b&limit=20"));
    let chunk: Vec<&str> =
        page["chunk"].as_array().expect("chunk").iter().filter_map(|e| e["event_id"].as_str()).collect();
    assert!(chunk.contains(&before.as_str()) && chunk.contains(&after.as_str()), "{chunk:?}");
    assert!(!chunk.contains(&bad.as_str()));
    let filtered = get_ok(
        &s,
        &bob,
        &room_path(&room, &format!("messages?dir=b&filter={}", enc("{\"contains_url\":false}"))),
    );
    assert!(filtered["chunk"].as_array().is_some_and(|l| l.iter().all(|e| e["event_id"] != bad.as_str())));
    let context = get_ok(&s, &bob, &room_path(&room, &format!("context/{}?limit=10", enc(&after))));
    let around: Vec<&Value> = context["events_before"].as_array().expect("before").iter().collect();
    assert!(around.iter().any(|e| e["event_id"] == before.as_str()));
    assert!(around.iter().all(|e| e["event_id"] != bad.as_str()));
    assert_error(
        &s.get(&room_path(&room, &format!("context/{}", enc(&bad))), Some(&bob.token)),
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.get(&room_path(&room, &format!("event/{}", enc(&bad))), Some(&bob.token)),
        404,
        "M_NOT_FOUND",
    );
    assert_eq!(
        get_ok(&s, &bob, &room_path(&room, &format!("event/{}", enc(&after))))["content"]["body"],
        "after"
    );
    let state = get_ok(&s, &bob, &room_path(&room, "state"));
    let types: Vec<&str> =
        state.as_array().expect("state").iter().filter_map(|e| e["type"].as_str()).collect();
    assert!(types.contains(&"m.room.create") && !types.contains(&"m.room.topic"), "{types:?}");
    assert_error(&s.get(&room_path(&room, "state/m.room.topic"), Some(&bob.token)), 404, "M_NOT_FOUND");
    get_ok(&s, &bob, &room_path(&room, "members"));
    get_ok(&s, &bob, &format!("{V3}/initialSync?limit=10"));
    get_ok(&s, &bob, &room_path(&room, "initialSync"));
    get_ok(&s, &bob, &format!("{V3}/notifications"));
    get_ok(&s, &bob, &format!("{V3}/publicRooms"));

    // An invitee's stripped state leaves out the unreadable name.
    let (status, body) =
        s.post(&room_path(&room, "invite"), Some(&alice.token), json!({ "user_id": carol.id }));
    assert_eq!(status, 200, "{body}");
    let sync = get_ok(&s, &carol, &format!("{V3}/sync"));
    let stripped = sync["rooms"]["invite"][&room]["invite_state"]["events"].as_array().expect("invite state");
    assert!(stripped.iter().any(|e| e["type"] == "m.room.member"));
    assert!(stripped.iter().all(|e| e["type"] != "m.room.name"));

    // The room still works, and each skip was logged.
    sent(&s, &alice, &room, "later", json!({ "msgtype": "m.text", "body": "later" }));
    let log = s.log_text();
    assert!(log.contains(&format!("skipping unreadable stored event {bad}")), "{log}");
    assert!(log.contains("skipping unreadable account data \"m.broken\""), "{log}");
}
