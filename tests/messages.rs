//! Sending and reading events over HTTP: `/send` (transaction IDs, errors,
//! size limit), redaction, `/event`, `/members`, `/joined_members`,
//! `/context`, `/messages` pagination and filters, history visibility, and
//! `/timestamp_to_event`.

mod common;

use common::{
    assert_error, create_room, enc, invite, leave, now_ms, room_path, say, wait_until, Server, User, V3,
};
use serde_json::{json, Value};

const PW: &str = "messages-test-password";

/// A room with the given preset and history visibility.
#[track_caller]
fn room_with(s: &Server, who: &User, preset: &str, visibility: &str) -> String {
    create_room(
        s,
        &who.token,
        json!({
            "preset": preset,
            "initial_state": [{
                "type": "m.room.history_visibility", "state_key": "",
                "content": { "history_visibility": visibility },
            }],
        }),
    )
}

#[track_caller]
fn join(s: &Server, who: &User, room: &str) -> String {
    common::join(s, &who.token, room);
    current_member_event(s, who, room, &who.id)
}

/// The event ID of `user`'s current member event, as `who` sees it.
#[track_caller]
fn current_member_event(s: &Server, who: &User, room: &str, user: &str) -> String {
    let path = room_path(room, &format!("state/m.room.member/{}?format=event", enc(user)));
    let (status, body) = s.get(&path, Some(&who.token));
    assert_eq!(status, 200, "member event: {body}");
    body["event_id"].as_str().expect("event_id").to_owned()
}

/// GET /messages with a query string; asserts a 200.
#[track_caller]
fn messages(s: &Server, who: &User, room: &str, query: &str) -> Value {
    let (status, body) = s.get(&room_path(room, &format!("messages?{query}")), Some(&who.token));
    assert_eq!(status, 200, "messages?{query}: {body}");
    body
}

/// The `body` of each message event of a chunk, in order ("" for one
/// whose content was redacted).
fn bodies(page: &Value) -> Vec<String> {
    page["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| e["content"]["body"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("list")
        .iter()
        .map(|e| e["event_id"].as_str().expect("event_id").to_owned())
        .collect()
}

/// Every message body `who` can page back to, newest first.
fn all_bodies(s: &Server, who: &User, room: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut from: Option<String> = None;
    for _ in 0..100 {
        let q = match &from {
            Some(t) => format!("dir=b&limit=50&from={}", enc(t)),
            None => "dir=b&limit=50".to_owned(),
        };
        let page = messages(s, who, room, &q);
        out.extend(bodies(&page));
        match page["end"].as_str() {
            Some(t) => from = Some(t.to_owned()),
            None => return out,
        }
    }
    panic!("pagination did not end");
}

#[test]
fn transaction_ids_make_sends_idempotent_per_device() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let room = create_room(&s, &alice.token, json!({ "preset": "private_chat" }));
    let path = room_path(&room, "send/m.room.message/t1");
    let content = json!({ "msgtype": "m.text", "body": "once" });
    let (status, first) = s.put(&path, Some(&alice.token), content.clone());
    assert_eq!(status, 200, "{first}");
    let (status, again) = s.put(&path, Some(&alice.token), content.clone());
    assert_eq!(status, 200, "{again}");
    assert_eq!(first["event_id"], again["event_id"]);
    assert_eq!(all_bodies(&s, &alice, &room), ["once"]);

    // The same transaction ID from another device is another event.
    let phone = s.login("alice", PW);
    let (status, other) = s.put(&path, Some(&phone), content);
    assert_eq!(status, 200, "{other}");
    assert_ne!(other["event_id"], first["event_id"]);
    assert_eq!(all_bodies(&s, &alice, &room), ["once", "once"]);

    // transaction_id reaches only the device that sent the event.
    let page = messages(&s, &alice, &room, "dir=b&limit=2");
    let chunk = page["chunk"].as_array().unwrap();
    let mine = chunk.iter().find(|e| e["event_id"] == first["event_id"]).unwrap();
    let theirs = chunk.iter().find(|e| e["event_id"] == other["event_id"]).unwrap();
    assert_eq!(mine["unsigned"]["transaction_id"], "t1");
    assert!(theirs["unsigned"].get("transaction_id").is_none(), "{theirs}");
    assert!(mine["unsigned"]["age"].is_i64());

    // The original spec's POST without a transaction ID sends every time.
    let legacy = format!("/_matrix/client/api/v1/rooms/{}/send/m.room.message", enc(&room));
    for _ in 0..2 {
        let (status, body) =
            s.post(&legacy, Some(&alice.token), json!({ "msgtype": "m.text", "body": "old" }));
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(all_bodies(&s, &alice, &room), ["old", "old", "once", "once"]);
}

#[test]
fn send_errors() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let eve = s.user("eve", PW);
    let room = create_room(&s, &alice.token, json!({ "preset": "private_chat" }));
    let path = room_path(&room, "send/m.room.message/x1");

    assert_error(&s.put(&path, Some(&eve.token), json!({ "body": "hi" })), 403, "M_FORBIDDEN");
    assert_error(&s.put(&path, Some(&alice.token), json!(["not", "an", "object"])), 400, "M_BAD_JSON");
    assert_error(&s.put(&path, Some(&alice.token), json!("text")), 400, "M_BAD_JSON");
    let raw =
        s.raw("PUT", &path, &[("Authorization", &format!("Bearer {}", alice.token))], Some(b"{not json"));
    assert_eq!((raw.status, raw.json["errcode"].as_str()), (400, Some("M_NOT_JSON")));
    let bad_room = format!("{V3}/rooms/not-a-room/send/m.room.message/x2");
    assert_error(&s.put(&bad_room, Some(&alice.token), json!({})), 400, "M_INVALID_PARAM");
    let bad_type = room_path(&room, "send/bad%01type/x3");
    assert_error(&s.put(&bad_type, Some(&alice.token), json!({})), 400, "M_INVALID_PARAM");
    let no_such_room = format!("{V3}/rooms/{}/send/m.room.message/x4", enc("!nowhere:localhost"));
    let (status, _) = s.put(&no_such_room, Some(&alice.token), json!({}));
    assert!(status == 403 || status == 404, "{status}");
    assert_error(
        &s.get(&room_path(&room, "send/m.room.message/x5"), Some(&alice.token)),
        405,
        "M_UNRECOGNIZED",
    );

    // A PDU over 65536 bytes is refused and nothing is stored.
    let big = "x".repeat(70_000);
    let path = room_path(&room, "send/m.room.message/big");
    assert_error(&s.put(&path, Some(&alice.token), json!({ "body": big })), 413, "M_TOO_LARGE");
    assert!(all_bodies(&s, &alice, &room).is_empty());
    // The transaction ID was not spent: a retry with a smaller body works.
    let (status, body) = s.put(&path, Some(&alice.token), json!({ "msgtype": "m.text", "body": "small" }));
    assert_eq!(status, 200, "{body}");
    assert_eq!(all_bodies(&s, &alice, &room), ["small"]);
}

#[test]
fn redaction_strips_content_and_needs_power_for_others_events() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let carol = s.user("carol", PW);
    let room = create_room(&s, &alice.token, json!({ "preset": "public_chat" }));
    join(&s, &bob, &room);
    join(&s, &carol, &room);
    let from_alice = say(&s, &alice.token, &room, "alice says");
    let from_bob = say(&s, &bob.token, &room, "bob says");
    let bob_again = say(&s, &bob.token, &room, "bob again");

    // Bob may not redact Alice's message.
    let path = room_path(&room, &format!("redact/{}/r1", enc(&from_alice)));
    assert_error(&s.put(&path, Some(&bob.token), json!({})), 403, "M_FORBIDDEN");

    // Bob redacts his own, with a reason; a retry with the same txn is the same redaction.
    let path = room_path(&room, &format!("redact/{}/r2", enc(&from_bob)));
    let (status, first) = s.put(&path, Some(&bob.token), json!({ "reason": "typo" }));
    assert_eq!(status, 200, "{first}");
    let (_, again) = s.put(&path, Some(&bob.token), json!({ "reason": "typo" }));
    assert_eq!(first["event_id"], again["event_id"]);
    let (status, event) = s.get(&room_path(&room, &format!("event/{}", enc(&from_bob))), Some(&alice.token));
    assert_eq!(status, 200, "{event}");
    assert_eq!(event["content"], json!({}));
    let because = &event["unsigned"]["redacted_because"];
    assert_eq!(because["event_id"], first["event_id"]);
    assert_eq!(because["content"]["reason"], "typo");
    assert_eq!(because["redacts"], from_bob.as_str());
    let (_, redaction) = s.get(
        &room_path(&room, &format!("event/{}", enc(first["event_id"].as_str().unwrap()))),
        Some(&alice.token),
    );
    assert_eq!(redaction["type"], "m.room.redaction");
    assert_eq!(redaction["redacts"], from_bob.as_str());

    // Carol becomes a moderator and may redact others' events.
    let (_, mut levels) = s.get(&room_path(&room, "state/m.room.power_levels"), Some(&alice.token));
    levels["users"][carol.id.as_str()] = json!(50);
    let (status, body) = s.put(&room_path(&room, "state/m.room.power_levels"), Some(&alice.token), levels);
    assert_eq!(status, 200, "{body}");
    let path = room_path(&room, &format!("redact/{}/r3", enc(&bob_again)));
    let (status, body) = s.put(&path, Some(&carol.token), json!({}));
    assert_eq!(status, 200, "{body}");
    let (_, event) = s.get(&room_path(&room, &format!("event/{}", enc(&bob_again))), Some(&bob.token));
    assert_eq!(event["content"], json!({}));

    // m.room.redaction through /send is a redaction too.
    let path = room_path(&room, "send/m.room.redaction/r4");
    let (status, body) = s.put(&path, Some(&alice.token), json!({ "redacts": from_alice, "reason": "mine" }));
    assert_eq!(status, 200, "{body}");
    let (_, event) = s.get(&room_path(&room, &format!("event/{}", enc(&from_alice))), Some(&alice.token));
    assert_eq!(event["content"], json!({}));
    assert_eq!(event["unsigned"]["redacted_because"]["event_id"], body["event_id"]);
    let path = room_path(&room, "send/m.room.redaction/r5");
    assert_error(&s.put(&path, Some(&alice.token), json!({ "reason": "no target" })), 400, "M_BAD_JSON");

    // Redacting an unknown event, or with a malformed ID or body.
    let path = room_path(&room, &format!("redact/{}/r6", enc("$nothing-here")));
    assert_error(&s.put(&path, Some(&alice.token), json!({})), 404, "M_NOT_FOUND");
    let path = room_path(&room, "redact/not-an-event/r7");
    assert_error(&s.put(&path, Some(&alice.token), json!({})), 400, "M_INVALID_PARAM");
    let path = room_path(&room, &format!("redact/{}/r8", enc(&from_alice)));
    assert_error(&s.put(&path, Some(&alice.token), json!({ "reason": 5 })), 400, "M_BAD_JSON");
}

#[test]
fn single_events_and_members() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let carol = s.user("carol", PW);
    let dave = s.user("dave", PW);
    let eve = s.user("eve", PW);
    let room = create_room(&s, &alice.token, json!({ "preset": "public_chat" }));
    let hello = say(&s, &alice.token, &room, "hello");

    let (status, event) = s.get(&room_path(&room, &format!("event/{}", enc(&hello))), Some(&alice.token));
    assert_eq!(status, 200, "{event}");
    assert_eq!(
        (event["type"].as_str(), event["sender"].as_str(), event["room_id"].as_str()),
        (Some("m.room.message"), Some(alice.id.as_str()), Some(room.as_str()))
    );
    assert_eq!(event["content"]["body"], "hello");
    assert!(event["origin_server_ts"].is_i64());
    // Unknown, in another room, or invisible: all 404.
    let unknown = room_path(&room, &format!("event/{}", enc("$unknown")));
    assert_error(&s.get(&unknown, Some(&alice.token)), 404, "M_NOT_FOUND");
    let other = create_room(&s, &alice.token, json!({ "preset": "private_chat" }));
    let elsewhere = room_path(&other, &format!("event/{}", enc(&hello)));
    assert_error(&s.get(&elsewhere, Some(&alice.token)), 404, "M_NOT_FOUND");
    let secret = say(&s, &alice.token, &other, "secret");
    let hidden = room_path(&other, &format!("event/{}", enc(&secret)));
    assert_error(&s.get(&hidden, Some(&eve.token)), 404, "M_NOT_FOUND");

    join(&s, &bob, &room);
    let before_carol = messages(&s, &alice, &room, "dir=b&limit=1")["start"].as_str().unwrap().to_owned();
    invite(&s, &alice.token, &room, &carol.id);
    join(&s, &dave, &room);
    leave(&s, &dave.token, &room);
    // Alice names herself in her member event.
    let path = room_path(&room, &format!("state/m.room.member/{}", enc(&alice.id)));
    let (status, body) =
        s.put(&path, Some(&alice.token), json!({ "membership": "join", "displayname": "Alice" }));
    assert_eq!(status, 200, "{body}");

    let members = |query: &str| -> Vec<(String, String)> {
        let (status, body) = s.get(&room_path(&room, &format!("members{query}")), Some(&bob.token));
        assert_eq!(status, 200, "{body}");
        let mut out: Vec<(String, String)> = body["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                assert_eq!(e["type"], "m.room.member");
                (
                    e["state_key"].as_str().unwrap().to_owned(),
                    e["content"]["membership"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        out.sort();
        out
    };
    let pair = |u: &User, m: &str| (u.id.clone(), m.to_owned());
    assert_eq!(
        members(""),
        [pair(&alice, "join"), pair(&bob, "join"), pair(&carol, "invite"), pair(&dave, "leave")]
    );
    assert_eq!(members("?membership=join"), [pair(&alice, "join"), pair(&bob, "join")]);
    assert_eq!(members("?not_membership=join"), [pair(&carol, "invite"), pair(&dave, "leave")]);
    // Both given: membership is X *or* is not Y.
    assert_eq!(
        members("?membership=leave&not_membership=join"),
        [pair(&carol, "invite"), pair(&dave, "leave")]
    );
    assert_eq!(members("?membership=invite&not_membership=invite"), members(""));
    // At a token from before Carol's invite.
    assert_eq!(members(&format!("?at={}", enc(&before_carol))), [pair(&alice, "join"), pair(&bob, "join")]);
    let bad = room_path(&room, "members?membership=friend");
    assert_error(&s.get(&bad, Some(&bob.token)), 400, "M_INVALID_PARAM");
    let bad = room_path(&room, "members?at=nonsense");
    assert_error(&s.get(&bad, Some(&bob.token)), 400, "M_INVALID_PARAM");
    assert_error(&s.get(&room_path(&other, "members"), Some(&eve.token)), 403, "M_FORBIDDEN");

    let (status, body) = s.get(&room_path(&room, "joined_members"), Some(&bob.token));
    assert_eq!(status, 200, "{body}");
    let joined = body["joined"].as_object().unwrap();
    let mut who: Vec<&String> = joined.keys().collect();
    who.sort();
    assert_eq!(who, [&alice.id, &bob.id]);
    assert_eq!(joined[&alice.id]["display_name"], "Alice");
    // Only members: not the invitee, not someone who left, not a stranger.
    for outsider in [&carol, &dave, &eve] {
        assert_error(&s.get(&room_path(&room, "joined_members"), Some(&outsider.token)), 403, "M_FORBIDDEN");
    }
}

#[test]
fn pagination_both_directions_with_exact_order_and_tokens() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let room = create_room(&s, &alice.token, json!({ "preset": "private_chat" }));
    let sent: Vec<String> = (1..=25).map(|i| say(&s, &alice.token, &room, &format!("m{i}"))).collect();
    let names =
        |range: std::ops::RangeInclusive<i32>| -> Vec<String> { range.map(|i| format!("m{i}")).collect() };
    let rev = |range: std::ops::RangeInclusive<i32>| -> Vec<String> {
        range.rev().map(|i| format!("m{i}")).collect()
    };

    let p1 = messages(&s, &alice, &room, "dir=b&limit=10");
    assert_eq!(bodies(&p1), rev(16..=25));
    assert_eq!(ids(&p1["chunk"])[0], sent[24]);
    let end1 = p1["end"].as_str().expect("end").to_owned();
    let p2 = messages(&s, &alice, &room, &format!("dir=b&limit=10&from={}", enc(&end1)));
    assert_eq!(p2["start"], end1.as_str());
    assert_eq!(bodies(&p2), rev(6..=15));
    let end2 = p2["end"].as_str().expect("end").to_owned();
    let p3 = messages(&s, &alice, &room, &format!("dir=b&limit=10&from={}", enc(&end2)));
    assert_eq!(bodies(&p3), rev(1..=5));
    // The rest is the room's creation; it ends at m.room.create.
    assert_eq!(p3["chunk"].as_array().unwrap().len(), 10);
    let mut page = p3;
    let mut last_type = String::new();
    for _ in 0..10 {
        if let Some(e) = page["chunk"].as_array().unwrap().last() {
            last_type = e["type"].as_str().unwrap().to_owned();
        }
        let Some(from) = page["end"].as_str().map(str::to_owned) else { break };
        page = messages(&s, &alice, &room, &format!("dir=b&limit=10&from={}", enc(&from)));
    }
    assert_eq!(last_type, "m.room.create");
    assert!(page.get("end").is_none());
    // Forwards from the end of the first backward page: that page again,
    // oldest first (a token is a point between events).
    let f = messages(&s, &alice, &room, &format!("dir=f&limit=10&from={}", enc(&end1)));
    assert_eq!(bodies(&f), names(16..=25));
    // At the live end forwards, `end` is still there to poll on from.
    let live = f["end"].as_str().expect("end at the live end").to_owned();
    let none = messages(&s, &alice, &room, &format!("dir=f&limit=10&from={}", enc(&live)));
    assert!(bodies(&none).is_empty(), "{none}");
    assert_eq!(none["end"], live.as_str());
    let m26 = say(&s, &alice.token, &room, "m26");
    let polled = messages(&s, &alice, &room, &format!("dir=f&limit=10&from={}", enc(&live)));
    assert_eq!(ids(&polled["chunk"]), [m26]);
    // Forwards from the end of the second page, in two steps.
    let f1 = messages(&s, &alice, &room, &format!("dir=f&limit=5&from={}", enc(&end2)));
    assert_eq!(bodies(&f1), names(6..=10));
    let f2 = messages(&s, &alice, &room, &format!("dir=f&limit=5&from={}", enc(f1["end"].as_str().unwrap())));
    assert_eq!(bodies(&f2), names(11..=15));
    // With `to`: stop at the first page's end, which is just before m16.
    let between =
        messages(&s, &alice, &room, &format!("dir=f&limit=50&from={}&to={}", enc(&end2), enc(&end1)));
    assert_eq!(bodies(&between), names(6..=15));
    let back_to =
        messages(&s, &alice, &room, &format!("dir=b&limit=50&from={}&to={}", enc(&end1), enc(&end2)));
    assert_eq!(bodies(&back_to), rev(6..=15));
    assert!(back_to.get("end").is_none(), "backwards stops at `to`: {back_to}");
    // From the start of the room with no `from`.
    let first = messages(&s, &alice, &room, "dir=f&limit=3");
    assert_eq!(first["chunk"][0]["type"], "m.room.create");
    assert_eq!(first["chunk"].as_array().unwrap().len(), 3);
    // A sync token (`s{pos}_…`) counts everything through its position.
    let all = messages(&s, &alice, &room, "dir=b&limit=1&from=s999999999_0");
    assert_eq!(bodies(&all), ["m26"]);
    // The limit is clamped, not refused.
    let many = messages(&s, &alice, &room, "dir=b&limit=100000");
    assert_eq!(bodies(&many).len(), 26);
    assert!(many.get("end").is_none());

    let q = |query: &str| s.get(&room_path(&room, &format!("messages?{query}")), Some(&alice.token));
    assert_error(&q("dir=b&from=garbage"), 400, "M_INVALID_PARAM");
    assert_error(&q("dir=b&to=s"), 400, "M_INVALID_PARAM");
    assert_error(&q("dir=x"), 400, "M_INVALID_PARAM");
    assert_error(&q(""), 400, "M_MISSING_PARAM");
    assert_error(&q("dir=b&limit=ten"), 400, "M_INVALID_PARAM");
    assert_error(&q("dir=b&limit=-1"), 400, "M_INVALID_PARAM");
}

#[test]
fn messages_filters_and_lazy_loaded_members() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let room = create_room(&s, &alice.token, json!({ "preset": "public_chat" }));
    join(&s, &bob, &room);
    for i in 1..=6 {
        let who = if i % 2 == 0 { &bob } else { &alice };
        say(&s, &who.token, &room, &format!("m{i}"));
    }
    let path = room_path(&room, "send/m.reaction/react1");
    let (status, _) = s.put(&path, Some(&alice.token), json!({ "note": "not a message" }));
    assert_eq!(status, 200);

    let filtered = |filter: Value, extra: &str| {
        messages(&s, &alice, &room, &format!("dir=b&filter={}{extra}", enc(&filter.to_string())))
    };
    let only_bob = filtered(json!({ "senders": [bob.id] , "types": ["m.room.message"] }), "");
    assert_eq!(bodies(&only_bob), ["m6", "m4", "m2"]);
    assert!(only_bob.get("state").is_none());
    let page = filtered(
        json!({ "not_senders": [bob.id], "types": ["m.room.*"], "not_types": ["m.room.member"] }),
        "&limit=3",
    );
    assert_eq!(bodies(&page), ["m5", "m3", "m1"]);
    let reactions = filtered(json!({ "types": ["m.reac*"] }), "");
    assert_eq!(reactions["chunk"].as_array().unwrap().len(), 1);
    // The filter's own limit applies when the query has none.
    let limited = filtered(json!({ "types": ["m.room.message"], "limit": 2 }), "");
    assert_eq!(bodies(&limited), ["m6", "m5"]);
    // A filter for other rooms matches nothing here.
    let elsewhere = filtered(json!({ "rooms": ["!elsewhere:localhost"] }), "");
    assert!(elsewhere["chunk"].as_array().unwrap().is_empty());

    // Lazy loading: the senders' member events come along.
    let lazy = filtered(json!({ "types": ["m.room.message"], "lazy_load_members": true }), "&limit=1");
    assert_eq!(bodies(&lazy), ["m6"]);
    let state = lazy["state"].as_array().expect("state");
    assert_eq!(state.len(), 1, "{lazy}");
    assert_eq!(
        (state[0]["type"].as_str(), state[0]["state_key"].as_str()),
        (Some("m.room.member"), Some(bob.id.as_str()))
    );
    let lazy = filtered(json!({ "types": ["m.room.message"], "lazy_load_members": true }), "&limit=2");
    let mut keys: Vec<&str> =
        lazy["state"].as_array().unwrap().iter().map(|e| e["state_key"].as_str().unwrap()).collect();
    keys.sort();
    assert_eq!(keys, [alice.id.as_str(), bob.id.as_str()]);

    let q = |filter: &str| {
        s.get(&room_path(&room, &format!("messages?dir=b&filter={}", enc(filter))), Some(&alice.token))
    };
    assert_error(&q(r#"{"types": "m.room.message"}"#), 400, "M_BAD_JSON");
    assert_error(&q(r#"{"senders": [1]}"#), 400, "M_BAD_JSON");
    assert_error(&q(r#"{"lazy_load_members": "yes"}"#), 400, "M_BAD_JSON");
    assert_error(&q(r#"{"limit": 0}"#), 400, "M_BAD_JSON");
    assert_error(&q("[]"), 400, "M_BAD_JSON");
    assert_error(&q("{nope"), 400, "M_NOT_JSON");
}

#[test]
fn context_around_an_event() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let eve = s.user("eve", PW);
    let room = create_room(&s, &alice.token, json!({ "preset": "public_chat" }));
    join(&s, &bob, &room);
    let sent: Vec<String> = (1..=10)
        .map(|i| {
            let who = if i == 3 { &bob } else { &alice };
            say(&s, &who.token, &room, &format!("m{i}"))
        })
        .collect();

    let path = room_path(&room, &format!("context/{}?limit=4", enc(&sent[4])));
    let (status, ctx) = s.get(&path, Some(&alice.token));
    assert_eq!(status, 200, "{ctx}");
    assert_eq!(ctx["event"]["event_id"], sent[4].as_str());
    assert_eq!(ids(&ctx["events_before"]), [sent[3].clone(), sent[2].clone()]);
    assert_eq!(ids(&ctx["events_after"]), [sent[5].clone(), sent[6].clone()]);
    // The state at the last event returned: the whole room state.
    let state = ctx["state"].as_array().unwrap();
    assert!(state.iter().any(|e| e["type"] == "m.room.create"));
    assert!(state.iter().any(|e| e["type"] == "m.room.member" && e["state_key"] == bob.id.as_str()));
    // The tokens continue with /messages.
    let back =
        messages(&s, &alice, &room, &format!("dir=b&limit=2&from={}", enc(ctx["start"].as_str().unwrap())));
    assert_eq!(bodies(&back), ["m2", "m1"]);
    let fwd =
        messages(&s, &alice, &room, &format!("dir=f&limit=2&from={}", enc(ctx["end"].as_str().unwrap())));
    assert_eq!(bodies(&fwd), ["m8", "m9"]);
    // And the other way: forwards from `start` come events_before again,
    // backwards from `end` events_after.
    let start = ctx["start"].as_str().unwrap();
    let again = messages(&s, &alice, &room, &format!("dir=f&limit=3&from={}", enc(start)));
    assert_eq!(bodies(&again), ["m3", "m4", "m5"]);
    let again =
        messages(&s, &alice, &room, &format!("dir=b&limit=3&from={}", enc(ctx["end"].as_str().unwrap())));
    assert_eq!(bodies(&again), ["m7", "m6", "m5"]);

    // A filter applies around the event and to the state, not to the event.
    let filter = json!({ "senders": [alice.id], "types": ["m.room.message", "m.room.member"], "lazy_load_members": true });
    let path =
        room_path(&room, &format!("context/{}?limit=4&filter={}", enc(&sent[2]), enc(&filter.to_string())));
    let (status, ctx) = s.get(&path, Some(&alice.token));
    assert_eq!(status, 200, "{ctx}");
    assert_eq!(ctx["event"]["content"]["body"], "m3");
    assert_eq!(ids(&ctx["events_before"]), [sent[1].clone(), sent[0].clone()]);
    assert_eq!(ids(&ctx["events_after"]), [sent[3].clone(), sent[4].clone()]);
    let state = ctx["state"].as_array().unwrap();
    assert_eq!(state.len(), 1, "{ctx}");
    assert_eq!(state[0]["state_key"], alice.id.as_str());

    // limit=0 still returns the event.
    let path = room_path(&room, &format!("context/{}?limit=0", enc(&sent[0])));
    let (status, ctx) = s.get(&path, Some(&alice.token));
    assert_eq!(status, 200, "{ctx}");
    assert_eq!(ctx["event"]["event_id"], sent[0].as_str());
    assert!(ctx["events_before"].as_array().unwrap().is_empty());

    let unknown = room_path(&room, &format!("context/{}", enc("$missing")));
    assert_error(&s.get(&unknown, Some(&alice.token)), 404, "M_NOT_FOUND");
    let private = create_room(&s, &alice.token, json!({ "preset": "private_chat" }));
    let secret = say(&s, &alice.token, &private, "secret");
    let path = room_path(&private, &format!("context/{}", enc(&secret)));
    assert_error(&s.get(&path, Some(&eve.token)), 403, "M_FORBIDDEN");
    let path = room_path(&room, &format!("context/{}?filter=%7B", enc(&sent[0])));
    assert_error(&s.get(&path, Some(&alice.token)), 400, "M_NOT_JSON");
}

#[test]
fn joined_visibility_hides_history_before_the_join() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let room = room_with(&s, &alice, "public_chat", "joined");
    let before = say(&s, &alice.token, &room, "before");
    let bob_join = join(&s, &bob, &room);
    say(&s, &alice.token, &room, "after");

    assert_eq!(all_bodies(&s, &bob, &room), ["after"]);
    assert_eq!(all_bodies(&s, &alice, &room), ["after", "before"]);
    let page = messages(&s, &bob, &room, "dir=b&limit=50");
    let seen = ids(&page["chunk"]);
    assert!(seen.contains(&bob_join) && !seen.contains(&before), "{page}");
    let path = room_path(&room, &format!("event/{}", enc(&before)));
    assert_error(&s.get(&path, Some(&bob.token)), 404, "M_NOT_FOUND");
    let path = room_path(&room, &format!("context/{}", enc(&before)));
    assert_error(&s.get(&path, Some(&bob.token)), 404, "M_NOT_FOUND");
    // From the hidden message on, the first event Bob may see is his join.
    let (_, hidden) = s.get(&room_path(&room, &format!("event/{}", enc(&before))), Some(&alice.token));
    let ts = hidden["origin_server_ts"].as_i64().unwrap();
    let path = format!("/_matrix/client/v1/rooms/{}/timestamp_to_event?ts={ts}&dir=f", enc(&room));
    let (status, found) = s.get(&path, Some(&bob.token));
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["event_id"], bob_join.as_str());
}

#[test]
fn shared_visibility_shows_history_to_a_new_joiner_until_they_leave() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let eve = s.user("eve", PW);
    let room = room_with(&s, &alice, "public_chat", "shared");
    say(&s, &alice.token, &room, "before");
    // Not joined yet: no access at all.
    let path = room_path(&room, "messages?dir=b");
    assert_error(&s.get(&path, Some(&bob.token)), 403, "M_FORBIDDEN");
    join(&s, &bob, &room);
    say(&s, &alice.token, &room, "while");
    assert_eq!(all_bodies(&s, &bob, &room), ["while", "before"]);
    leave(&s, &bob.token, &room);
    let later = say(&s, &alice.token, &room, "later");
    // After leaving: what Bob could see, and his own leave, but nothing later.
    assert_eq!(all_bodies(&s, &bob, &room), ["while", "before"]);
    let page = messages(&s, &bob, &room, "dir=b&limit=1");
    assert_eq!(page["chunk"][0]["type"], "m.room.member");
    assert_eq!(page["chunk"][0]["content"]["membership"], "leave");
    let path = room_path(&room, &format!("event/{}", enc(&later)));
    assert_error(&s.get(&path, Some(&bob.token)), 404, "M_NOT_FOUND");
    assert_error(&s.get(&room_path(&room, "messages?dir=b"), Some(&eve.token)), 403, "M_FORBIDDEN");
}

#[test]
fn invited_visibility_starts_at_the_invite() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let room = room_with(&s, &alice, "private_chat", "invited");
    say(&s, &alice.token, &room, "before invite");
    invite(&s, &alice.token, &room, &bob.id);
    say(&s, &alice.token, &room, "while invited");
    join(&s, &bob, &room);
    say(&s, &alice.token, &room, "after join");
    assert_eq!(all_bodies(&s, &bob, &room), ["after join", "while invited"]);
    assert_eq!(all_bodies(&s, &alice, &room), ["after join", "while invited", "before invite"]);
}

#[test]
fn world_readable_rooms_are_readable_by_anyone() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let eve = s.user("eve", PW);
    let room = room_with(&s, &alice, "private_chat", "world_readable");
    let hello = say(&s, &alice.token, &room, "hello world");
    assert_eq!(all_bodies(&s, &eve, &room), ["hello world"]);
    let (status, event) = s.get(&room_path(&room, &format!("event/{}", enc(&hello))), Some(&eve.token));
    assert_eq!(status, 200, "{event}");
    let (status, ctx) = s.get(&room_path(&room, &format!("context/{}", enc(&hello))), Some(&eve.token));
    assert_eq!(status, 200, "{ctx}");
    let (status, state) = s.get(&room_path(&room, "state"), Some(&eve.token));
    assert_eq!(status, 200, "{state}");
    assert!(state.as_array().unwrap().iter().any(|e| e["type"] == "m.room.history_visibility"));
    // Once no longer world-readable, new events are hidden from outsiders.
    let path = room_path(&room, "state/m.room.history_visibility");
    let (status, body) = s.put(&path, Some(&alice.token), json!({ "history_visibility": "shared" }));
    assert_eq!(status, 200, "{body}");
    say(&s, &alice.token, &room, "members only");
    assert_error(&s.get(&room_path(&room, "messages?dir=b"), Some(&eve.token)), 403, "M_FORBIDDEN");
    assert_eq!(all_bodies(&s, &alice, &room), ["members only", "hello world"]);
}

#[test]
fn timestamp_to_event_in_both_directions() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let eve = s.user("eve", PW);
    let room = create_room(&s, &alice.token, json!({ "preset": "private_chat" }));
    let ts = |id: &str| -> i64 {
        let (_, e) = s.get(&room_path(&room, &format!("event/{}", enc(id))), Some(&alice.token));
        e["origin_server_ts"].as_i64().unwrap()
    };
    let first = say(&s, &alice.token, &room, "first");
    let t1 = ts(&first);
    // The second event is sent once the (shared) clock has passed the first's.
    wait_until(&s, "the clock to pass the first event's timestamp", || now_ms() > t1);
    let second = say(&s, &alice.token, &room, "second");
    let t2 = ts(&second);
    assert!(t2 > t1);
    let find = |who: &User, query: &str| {
        s.get(
            &format!("/_matrix/client/v1/rooms/{}/timestamp_to_event?{query}", enc(&room)),
            Some(&who.token),
        )
    };
    let (status, found) = find(&alice, &format!("ts={}&dir=f", t1 + 1));
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["event_id"], second.as_str());
    assert_eq!(found["origin_server_ts"], t2);
    let (_, found) = find(&alice, &format!("ts={}&dir=b", t2 - 1));
    assert_eq!(found["event_id"], first.as_str());
    let (_, found) = find(&alice, &format!("ts={t2}&dir=b"));
    assert_eq!(found["event_id"], second.as_str());
    let (_, found) = find(&alice, "ts=9999999999999&dir=b");
    assert_eq!(found["event_id"], second.as_str());
    assert_error(&find(&alice, "ts=9999999999999&dir=f"), 404, "M_NOT_FOUND");
    assert_error(&find(&alice, "ts=0&dir=b"), 404, "M_NOT_FOUND");
    assert_error(&find(&alice, "dir=b"), 400, "M_MISSING_PARAM");
    assert_error(&find(&alice, "ts=soon&dir=b"), 400, "M_INVALID_PARAM");
    assert_error(&find(&alice, "ts=0&dir=up"), 400, "M_INVALID_PARAM");
    assert_error(&find(&eve, "ts=0&dir=f"), 403, "M_FORBIDDEN");
}

/// Pages through `who`'s view of the room's messages from `from` in
/// `dir`, `k` at a time, until a page brings none; the bodies in order.
fn page_through(s: &Server, who: &User, room: &str, dir: &str, from: &str, k: usize) -> Vec<String> {
    let filter = enc(&json!({ "types": ["m.room.message"] }).to_string());
    let mut out = Vec::new();
    let mut from = from.to_owned();
    for _ in 0..100 {
        let page =
            messages(s, who, room, &format!("dir={dir}&limit={k}&filter={filter}&from={}", enc(&from)));
        let got = bodies(&page);
        if got.is_empty() {
            return out;
        }
        out.extend(got);
        match page["end"].as_str() {
            Some(t) => from = t.to_owned(),
            None => return out,
        }
    }
    panic!("pagination did not end");
}

/// Issue 12: tokens are points between events. Paging back and then
/// forward from the same token, or from a sync's `prev_batch`, sees each
/// event exactly once in each direction, in order.
#[test]
fn tokens_are_points_so_back_then_forward_sees_each_event_once() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let room = create_room(&s, &alice.token, json!({ "preset": "private_chat" }));
    // N a multiple of K: the last full page still has an `end`.
    const N: usize = 25;
    const K: usize = 5;
    for i in 1..=N {
        say(&s, &alice.token, &room, &format!("m{i}"));
    }
    let names: Vec<String> = (1..=N).map(|i| format!("m{i}")).collect();
    let rev: Vec<String> = names.iter().rev().cloned().collect();

    // Back through all N messages in pages of K; the last page's `end`
    // is still there (the room's creation lies behind it).
    let filter = enc(&json!({ "types": ["m.room.message"] }).to_string());
    let mut back = Vec::new();
    let mut from: Option<String> = None;
    while back.len() < N {
        let q = match &from {
            Some(t) => format!("dir=b&limit={K}&filter={filter}&from={}", enc(t)),
            None => format!("dir=b&limit={K}&filter={filter}"),
        };
        let page = messages(&s, &alice, &room, &q);
        back.extend(bodies(&page));
        from = Some(page["end"].as_str().expect("end while events remain").to_owned());
    }
    assert_eq!(back, rev, "backwards: each once, newest first");
    let last_end = from.expect("a token");
    assert_eq!(page_through(&s, &alice, &room, "f", &last_end, K), names, "forwards from the last end");
    assert!(page_through(&s, &alice, &room, "b", &last_end, K).is_empty());

    // From a sync's prev_batch: backwards what precedes the timeline,
    // forwards the timeline and nothing else, each once.
    let sync_filter = enc(&json!({ "room": { "timeline": { "limit": 3 } } }).to_string());
    let (status, sync) = s.get(&format!("{V3}/sync?filter={sync_filter}"), Some(&alice.token));
    assert_eq!(status, 200, "{sync}");
    let joined = &sync["rooms"]["join"][&room];
    assert_eq!(joined["timeline"]["limited"], true, "{joined}");
    let timeline = bodies(&json!({ "chunk": joined["timeline"]["events"] }));
    assert_eq!(timeline, names[N - 3..]);
    let prev = joined["timeline"]["prev_batch"].as_str().expect("prev_batch");
    assert_eq!(page_through(&s, &alice, &room, "b", prev, K), rev[3..]);
    assert_eq!(page_through(&s, &alice, &room, "f", prev, K), names[N - 3..]);
    // From next_batch: nothing behind is missed, nothing ahead yet.
    let next = sync["next_batch"].as_str().expect("next_batch");
    assert_eq!(page_through(&s, &alice, &room, "b", next, 50), rev);
    let ahead = messages(&s, &alice, &room, &format!("dir=f&from={}", enc(next)));
    assert!(ahead["chunk"].as_array().unwrap().is_empty(), "{ahead}");
    assert!(ahead["end"].is_string(), "forwards at the live end keeps an end: {ahead}");
}

/// Issue 12: `/messages` and the legacy `/events` refuse bad `limit`,
/// `dir` and `from`; filters refuse entries that are not room or user IDs.
#[test]
fn pagination_parameters_and_filter_ids_are_validated() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let room = create_room(&s, &alice.token, json!({ "preset": "private_chat" }));
    say(&s, &alice.token, &room, "m1");
    let q = |query: &str| s.get(&room_path(&room, &format!("messages?{query}")), Some(&alice.token));
    for bad in ["dir=b&limit=abc", "dir=b&limit=-2", "dir=x", "dir=B", "dir=b&from=x", "dir=b&from=s12abc"] {
        assert_error(&q(bad), 400, "M_INVALID_PARAM");
    }
    let events = |query: &str| s.get(&format!("{V3}/events?{query}"), Some(&alice.token));
    for bad in ["limit=abc", "limit=-2", "dir=x", "from=garbage", "from=s1_x"] {
        assert_error(&events(bad), 400, "M_INVALID_PARAM");
    }
    let (status, ok) = events("limit=5&dir=f&timeout=0");
    assert_eq!(status, 200, "{ok}");

    for filter in [
        json!({ "rooms": ["not-a-room"] }),
        json!({ "not_rooms": ["#alias:localhost"] }),
        json!({ "senders": ["bob"] }),
        json!({ "not_senders": ["@:localhost"] }),
    ] {
        let path = room_path(&room, &format!("messages?dir=b&filter={}", enc(&filter.to_string())));
        assert_error(&s.get(&path, Some(&alice.token)), 400, "M_INVALID_PARAM");
        let body = json!({ "room": { "timeline": filter } });
        let path = format!("{V3}/user/{}/filter", enc(&alice.id));
        assert_error(&s.post(&path, Some(&alice.token), body), 400, "M_INVALID_PARAM");
    }
    let good = json!({ "senders": [alice.id], "rooms": [room] });
    let path = room_path(&room, &format!("messages?dir=b&filter={}", enc(&good.to_string())));
    let (status, page) = s.get(&path, Some(&alice.token));
    assert_eq!(status, 200, "{page}");
    assert_eq!(bodies(&page), ["m1"]);
}

/// Issue 12: events of an ignored user (`m.ignored_user_list`) are not
/// served by `/messages` or `/context`; their state events still are.
#[test]
fn ignored_users_are_left_out_of_messages_and_context() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let room = create_room(&s, &alice.token, json!({ "preset": "public_chat" }));
    join(&s, &bob, &room);
    let a1 = say(&s, &alice.token, &room, "a1");
    let b1 = say(&s, &bob.token, &room, "b1");
    let a2 = say(&s, &alice.token, &room, "a2");
    let (status, r) = s.put(
        &format!("{V3}/user/{}/account_data/m.ignored_user_list", enc(&alice.id)),
        Some(&alice.token),
        json!({ "ignored_users": { bob.id.clone(): {} } }),
    );
    assert_eq!(status, 200, "{r}");

    let page = messages(&s, &alice, &room, "dir=b&limit=50");
    assert_eq!(bodies(&page), ["a2", "a1"]);
    let chunk = page["chunk"].as_array().unwrap();
    assert!(
        chunk.iter().any(|e| e["type"] == "m.room.member" && e["sender"] == bob.id.as_str()),
        "bob's join (state) stays: {page}"
    );
    assert_eq!(bodies(&messages(&s, &alice, &room, "dir=f&limit=50")), ["a1", "a2"]);
    // Bob still sees everything, and alice's own view of him elsewhere is
    // unchanged: only the ignoring user's reads change.
    assert_eq!(bodies(&messages(&s, &bob, &room, "dir=b&limit=50")), ["a2", "b1", "a1"]);

    let path = room_path(&room, &format!("context/{}?limit=2", enc(&a2)));
    let (status, ctx) = s.get(&path, Some(&alice.token));
    assert_eq!(status, 200, "{ctx}");
    assert_eq!(ids(&ctx["events_before"])[0], a1, "b1 is skipped: {ctx}");
    let path = room_path(&room, &format!("context/{}", enc(&b1)));
    assert_error(&s.get(&path, Some(&alice.token)), 404, "M_NOT_FOUND");
    let (status, _) = s.get(&path, Some(&bob.token));
    assert_eq!(status, 200);
}

/// Issue 17: `/messages` and `/context` hand out topological tokens
/// (`t{depth}-{pos}`, with a stream bound `_{pos}` while paging back from a
/// stream point), take them back with stream and sync tokens, and refuse
/// malformed ones; sync takes none of them.
#[test]
fn topological_tokens_round_trip_and_bad_ones_are_refused() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let room = create_room(&s, &alice.token, json!({ "preset": "private_chat" }));
    let sent: Vec<String> = (1..=6).map(|i| say(&s, &alice.token, &room, &format!("m{i}"))).collect();

    // Back from the live end: bounded by the stream point it started at.
    let p1 = messages(&s, &alice, &room, "dir=b&limit=2");
    assert_eq!(bodies(&p1), ["m6", "m5"]);
    let end1 = p1["end"].as_str().expect("end").to_owned();
    assert!(end1.starts_with('t') && end1.contains('_'), "{end1}");
    let p2 = messages(&s, &alice, &room, &format!("dir=b&limit=2&from={}", enc(&end1)));
    assert_eq!(p2["start"], end1.as_str());
    assert_eq!(bodies(&p2), ["m4", "m3"]);
    // Forwards from the same token: what lies ahead of it, each once, and
    // the point becomes a plain topological one.
    let f = messages(&s, &alice, &room, &format!("dir=f&limit=1&from={}", enc(&end1)));
    assert_eq!(bodies(&f), ["m5"]);
    let f_end = f["end"].as_str().expect("end").to_owned();
    assert!(f_end.starts_with('t') && !f_end.contains('_'), "{f_end}");
    let f2 = messages(&s, &alice, &room, &format!("dir=f&limit=10&from={}", enc(&f_end)));
    assert_eq!(bodies(&f2), ["m6"]);
    let back = messages(&s, &alice, &room, &format!("dir=b&limit=3&from={}", enc(&f_end)));
    assert_eq!(bodies(&back), ["m5", "m4", "m3"]);

    // /context's tokens are topological and work with /messages.
    let path = room_path(&room, &format!("context/{}?limit=2", enc(&sent[2])));
    let (status, ctx) = s.get(&path, Some(&alice.token));
    assert_eq!(status, 200, "{ctx}");
    let (start, end) = (ctx["start"].as_str().unwrap(), ctx["end"].as_str().unwrap());
    assert!(start.starts_with('t') && end.starts_with('t'), "{ctx}");
    assert_eq!(bodies(&messages(&s, &alice, &room, &format!("dir=b&limit=1&from={}", enc(start)))), ["m1"]);
    assert_eq!(bodies(&messages(&s, &alice, &room, &format!("dir=f&limit=1&from={}", enc(end)))), ["m5"]);
    // /members takes them as `at` (a prev_batch, usually).
    let (status, members) =
        s.get(&room_path(&room, &format!("members?at={}", enc(start))), Some(&alice.token));
    assert_eq!(status, 200, "{members}");
    assert_eq!(members["chunk"].as_array().unwrap().len(), 1, "{members}");

    let q = |query: &str| s.get(&room_path(&room, &format!("messages?{query}")), Some(&alice.token));
    for bad in [
        "t",
        "t3",
        "t3-",
        "t-",
        "tx-1",
        "t3-4x",
        "t3-4_",
        "t3-4_x",
        "t3-4_9_",
        "t3-4_9_2",
        "t3-4_9_5-1",
        "t3-4_9_2-7_1",
        "T3-4",
        "t99999999999999999999-1",
    ] {
        assert_error(&q(&format!("dir=b&from={}", enc(bad))), 400, "M_INVALID_PARAM");
        assert_error(&q(&format!("dir=f&to={}", enc(bad))), 400, "M_INVALID_PARAM");
        let members = s.get(&room_path(&room, &format!("members?at={}", enc(bad))), Some(&alice.token));
        assert_error(&members, 400, "M_INVALID_PARAM");
    }
    // Sync takes stream tokens only, as before.
    for t in [end1.as_str(), f_end.as_str(), start] {
        let got = s.get(&format!("{V3}/sync?timeout=0&since={}", enc(t)), Some(&alice.token));
        assert_error(&got, 400, "M_INVALID_PARAM");
    }
}
