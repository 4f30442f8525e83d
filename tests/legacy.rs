//! The original specification's v1 surface over HTTP: `/initialSync`,
//! `/rooms/{roomId}/initialSync`, the `/events` long-poll (waking, timing
//! out, previews, many parked at once) and `/events/{eventId}`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{
    assert_error, bodies, create_room, enc, get_ok, invite, join, leave, parked_line, parks_of, room_path,
    say, start_debug, wait_for_log, woken_by, Server, User, V3,
};
use serde_json::{json, Value};

const PW: &str = "legacy-test-password";
/// The original specification's prefix.
const V1: &str = "/_matrix/client/api/v1";

/// The room entry of an `/initialSync` answer.
#[track_caller]
fn room_of<'a>(sync: &'a Value, room: &str) -> &'a Value {
    sync["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .find(|r| r["room_id"] == room)
        .unwrap_or_else(|| panic!("{room} missing from {sync}"))
}

fn has_room(sync: &Value, room: &str) -> bool {
    sync["rooms"].as_array().expect("rooms").iter().any(|r| r["room_id"] == room)
}

fn state_types(list: &Value) -> Vec<String> {
    list.as_array().expect("state").iter().map(|e| e["type"].as_str().unwrap_or("").to_owned()).collect()
}

/// The `end` token of an `/initialSync`.
fn end_token(s: &Server, who: &User) -> String {
    get_ok(s, who, &format!("{V3}/initialSync?limit=0"))["end"].as_str().expect("end").to_owned()
}

fn events_path(query: &str) -> String {
    format!("{V3}/events?{query}")
}

#[test]
fn initial_sync_lists_rooms_with_messages_state_and_account_data() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let room = create_room(&s, &alice.token, json!({ "preset": "public_chat", "name": "Hall" }));
    say(&s, &alice.token, &room, "one");
    say(&s, &alice.token, &room, "two");
    let (status, body) = s.put(
        &format!("{V3}/user/{}/account_data/org.example.conf", enc(&alice.id)),
        Some(&alice.token),
        json!({ "k": "v" }),
    );
    assert_eq!(status, 200, "account data: {body}");

    for prefix in [V1, V3, "/_matrix/client/r0"] {
        let sync = get_ok(&s, &alice, &format!("{prefix}/initialSync"));
        assert!(sync["end"].is_string(), "{sync}");
        // Alone in her rooms, alice's contacts are herself (not seen yet).
        assert_eq!(
            sync["presence"],
            json!([{ "type": "m.presence", "sender": alice.id, "content": { "presence": "offline", "currently_active": false } }])
        );
        let data = sync["account_data"].as_array().expect("account_data");
        assert!(data.iter().any(|d| d["type"] == "org.example.conf" && d["content"]["k"] == "v"), "{sync}");
        let info = room_of(&sync, &room);
        assert_eq!(info["membership"], "join");
        assert_eq!(info["visibility"], "private");
        assert_eq!(bodies(&info["messages"]["chunk"]), ["one", "two"]);
        let first = &info["messages"]["chunk"][0];
        assert_eq!(first["room_id"], room.as_str());
        assert_eq!(first["sender"], alice.id.as_str());
        assert!(info["messages"]["start"].is_string() && info["messages"]["end"].is_string(), "{info}");
        let types = state_types(&info["state"]);
        for t in ["m.room.create", "m.room.member", "m.room.power_levels", "m.room.join_rules", "m.room.name"]
        {
            assert!(types.iter().any(|x| x == t), "{t} missing from {types:?}");
        }
        assert!(info["state"].as_array().unwrap().iter().all(|e| e["room_id"] == room.as_str()));
    }

    // A room published in the directory is public.
    let listed = create_room(&s, &alice.token, json!({ "preset": "public_chat", "visibility": "public" }));
    let sync = get_ok(&s, &alice, &format!("{V3}/initialSync"));
    assert_eq!(room_of(&sync, &listed)["visibility"], "public");

    // `limit` bounds the messages; the start token pages back with /messages.
    let sync = get_ok(&s, &alice, &format!("{V1}/initialSync?limit=1"));
    let info = room_of(&sync, &room);
    assert_eq!(bodies(&info["messages"]["chunk"]), ["two"]);
    let start = info["messages"]["start"].as_str().unwrap();
    let earlier = get_ok(&s, &alice, &room_path(&room, &format!("messages?dir=b&limit=1&from={start}")));
    assert_eq!(bodies(&earlier["chunk"]), ["one"]);
    assert_error(&s.get(&format!("{V3}/initialSync?limit=x"), Some(&alice.token)), 400, "M_INVALID_PARAM");
    assert_error(
        &s.get(&format!("{V3}/initialSync?archived=maybe"), Some(&alice.token)),
        400,
        "M_INVALID_PARAM",
    );

    // An invite shows with its event; a room left only with archived=true.
    let private = create_room(&s, &alice.token, json!({ "preset": "private_chat" }));
    invite(&s, &alice.token, &private, &bob.id);
    join(&s, &bob.token, &room);
    say(&s, &alice.token, &room, "three");
    leave(&s, &bob.token, &room);
    say(&s, &alice.token, &room, "after bob left");
    let sync = get_ok(&s, &bob, &format!("{V3}/initialSync"));
    let invited = room_of(&sync, &private);
    assert_eq!(invited["membership"], "invite");
    assert_eq!(invited["invite"]["content"]["membership"], "invite");
    assert_eq!(invited["invite"]["state_key"], bob.id.as_str());
    assert!(!has_room(&sync, &room), "{sync}");
    let sync = get_ok(&s, &bob, &format!("{V3}/initialSync?archived=true"));
    let left = room_of(&sync, &room);
    assert_eq!(left["membership"], "leave");
    let chunk = &left["messages"]["chunk"];
    assert!(bodies(chunk).contains(&"three".to_owned()), "{chunk}");
    assert!(!bodies(chunk).contains(&"after bob left".to_owned()), "{chunk}");
    assert_eq!(chunk.as_array().unwrap().last().unwrap()["content"]["membership"], "leave");
}

#[test]
fn events_long_poll_wakes_with_the_new_event() {
    let s = start_debug(&[], &[]);
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let room = create_room(&s, &alice.token, json!({ "preset": "public_chat" }));
    join(&s, &bob.token, &room);
    let from = end_token(&s, &bob);

    let (answer, sent) = woken_by(
        &s,
        &bob.id,
        Duration::from_secs(10),
        || s.get(&events_path(&format!("from={from}&timeout=10000")), Some(&bob.token)),
        || say(&s, &alice.token, &room, "wake up"),
    );
    let (status, body) = answer;
    assert_eq!(status, 200, "{body}");
    let chunk = body["chunk"].as_array().expect("chunk");
    assert_eq!(chunk.len(), 1, "{body}");
    assert_eq!(chunk[0]["event_id"], sent.as_str());
    assert_eq!(chunk[0]["room_id"], room.as_str());
    assert_eq!(chunk[0]["type"], "m.room.message");
    assert_eq!(chunk[0]["content"]["body"], "wake up");
    assert_eq!(body["start"], from.as_str());
    let end = body["end"].as_str().expect("end");
    assert_ne!(end, from);

    // Nothing after `end`: an empty chunk at once.
    let next = get_ok(&s, &bob, &events_path(&format!("from={end}&timeout=0")));
    assert_eq!(next["chunk"], json!([]), "{next}");
    assert_eq!(next["end"], end);

    // The same through the original prefix, and several events in order.
    say(&s, &alice.token, &room, "a");
    say(&s, &bob.token, &room, "b");
    let more = get_ok(&s, &bob, &format!("{V1}/events?from={end}&timeout=5000"));
    assert_eq!(bodies(&more["chunk"]), ["a", "b"]);
    // The token is a sync token: /sync continues from it.
    let end2 = more["end"].as_str().unwrap();
    let sync = get_ok(&s, &bob, &format!("{V3}/sync?since={end2}&timeout=0"));
    assert!(sync["rooms"]["join"].get(&room).is_none(), "{sync}");
}

#[test]
fn events_time_out_empty_and_validate_tokens() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let room = create_room(&s, &alice.token, json!({ "preset": "private_chat" }));
    say(&s, &alice.token, &room, "before");
    let from = end_token(&s, &alice);
    let body = get_ok(&s, &alice, &events_path(&format!("from={from}&timeout=300")));
    assert_eq!(body["chunk"], json!([]), "{body}");
    assert_eq!(body["start"], from.as_str());
    assert_eq!(body["end"], from.as_str());

    // Without `from`: the stream starts now, answered at once.
    let now = get_ok(&s, &alice, &events_path(""));
    assert_eq!(now["chunk"], json!([]), "{now}");
    assert_eq!(now["end"], from.as_str());

    // An older token brings what happened since, the user's join included.
    let all = get_ok(&s, &alice, &events_path("from=s0_0"));
    assert!(bodies(&all["chunk"]).contains(&"before".to_owned()), "{all}");
    assert!(all["chunk"].as_array().unwrap().iter().any(|e| e["type"] == "m.room.member"), "{all}");

    assert_error(&s.get(&events_path("from=garbage"), Some(&alice.token)), 400, "M_INVALID_PARAM");
    assert_error(
        &s.get(&events_path(&format!("from={from}&timeout=x")), Some(&alice.token)),
        400,
        "M_INVALID_PARAM",
    );
    assert_error(&s.get(&events_path(""), None), 401, "M_MISSING_TOKEN");
}

#[test]
fn events_chunks_are_bounded_and_continue() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let room = create_room(&s, &alice.token, json!({ "preset": "private_chat" }));
    let mut from = end_token(&s, &alice);
    let total = 130;
    for i in 0..total {
        say(&s, &alice.token, &room, &format!("m{i}"));
    }
    let mut got = Vec::new();
    let mut answers = 0;
    loop {
        let body = get_ok(&s, &alice, &events_path(&format!("from={from}")));
        let n = body["chunk"].as_array().unwrap().len();
        assert!(n <= 100, "{n} events in one answer");
        if n == 0 {
            break;
        }
        answers += 1;
        got.extend(bodies(&body["chunk"]));
        from = body["end"].as_str().unwrap().to_owned();
    }
    assert_eq!(answers, 2);
    let want: Vec<String> = (0..total).map(|i| format!("m{i}")).collect();
    assert_eq!(got, want);
}

#[test]
fn room_initial_sync_for_members_previews_and_strangers() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let carol = s.user("carol", PW);
    let private = create_room(&s, &alice.token, json!({ "preset": "private_chat", "topic": "secret" }));
    say(&s, &alice.token, &private, "hidden");
    for prefix in [V1, V3] {
        let path = format!("{prefix}/rooms/{}/initialSync", enc(&private));
        let info = get_ok(&s, &alice, &path);
        assert_eq!(info["room_id"], private.as_str());
        assert_eq!(info["membership"], "join");
        assert_eq!(info["visibility"], "private");
        assert_eq!(info["presence"].as_array().map(Vec::len), Some(1), "{info}");
        assert_eq!(info["presence"][0]["sender"], alice.id.as_str());
        assert!(info["account_data"].is_array(), "{info}");
        assert_eq!(bodies(&info["messages"]["chunk"]), ["hidden"]);
        assert!(info["messages"]["end"].is_string(), "{info}");
        assert!(state_types(&info["state"]).contains(&"m.room.topic".to_owned()), "{info}");
        assert_error(&s.get(&path, Some(&carol.token)), 403, "M_FORBIDDEN");
    }
    let unknown = format!("{V3}/rooms/{}/initialSync", enc("!nope:localhost"));
    assert_error(&s.get(&unknown, Some(&carol.token)), 403, "M_FORBIDDEN");

    // A world-readable room can be previewed, and followed with /events.
    let open = create_room(
        &s,
        &alice.token,
        json!({
            "preset": "public_chat",
            "initial_state": [{
                "type": "m.room.history_visibility", "state_key": "",
                "content": { "history_visibility": "world_readable" },
            }],
        }),
    );
    say(&s, &alice.token, &open, "for all");
    let info = get_ok(&s, &carol, &format!("{V3}/rooms/{}/initialSync", enc(&open)));
    assert_eq!(info["membership"], "leave");
    assert_eq!(bodies(&info["messages"]["chunk"]), ["for all"]);
    let end = info["messages"]["end"].as_str().unwrap().to_owned();
    say(&s, &alice.token, &open, "later");
    say(&s, &alice.token, &private, "not for carol");
    let peek = get_ok(&s, &carol, &events_path(&format!("from={end}&room_id={}&timeout=5000", enc(&open))));
    assert_eq!(bodies(&peek["chunk"]), ["later"]);
    assert!(peek["chunk"].as_array().unwrap().iter().all(|e| e["room_id"] == open.as_str()), "{peek}");
    assert_error(
        &s.get(&events_path(&format!("from={end}&room_id={}", enc(&private))), Some(&carol.token)),
        403,
        "M_FORBIDDEN",
    );
    // Carol is in no room: her own stream has nothing.
    let own = get_ok(&s, &carol, &events_path(&format!("from={end}")));
    assert_eq!(own["chunk"], json!([]), "{own}");

    // A member who left sees the room as it was when they left.
    join(&s, &carol.token, &open);
    leave(&s, &carol.token, &open);
    invite(&s, &alice.token, &private, &carol.id);
    join(&s, &carol.token, &private);
    say(&s, &alice.token, &private, "while carol is here");
    leave(&s, &carol.token, &private);
    say(&s, &alice.token, &private, "after carol left");
    let info = get_ok(&s, &carol, &format!("{V3}/rooms/{}/initialSync", enc(&private)));
    assert_eq!(info["membership"], "leave");
    let seen = bodies(&info["messages"]["chunk"]);
    assert!(seen.contains(&"while carol is here".to_owned()), "{seen:?}");
    assert!(!seen.contains(&"after carol left".to_owned()), "{seen:?}");
}

#[test]
fn single_event_visible_or_not_found() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let carol = s.user("carol", PW);
    let room = create_room(&s, &alice.token, json!({ "preset": "private_chat" }));
    let id = say(&s, &alice.token, &room, "mine");
    for prefix in [V1, V3] {
        let path = format!("{prefix}/events/{}", enc(&id));
        let e = get_ok(&s, &alice, &path);
        assert_eq!(e["event_id"], id.as_str());
        assert_eq!(e["room_id"], room.as_str());
        assert_eq!(e["content"]["body"], "mine");
        assert_error(&s.get(&path, Some(&carol.token)), 404, "M_NOT_FOUND");
    }
    let missing = format!("{V3}/events/{}", enc("$nothing-here"));
    assert_error(&s.get(&missing, Some(&alice.token)), 404, "M_NOT_FOUND");
}

#[test]
fn parked_event_streams_leave_workers_free() {
    const PARKED: usize = 20;
    let s = start_debug(&[], &[]);
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let room = create_room(&s, &alice.token, json!({ "preset": "public_chat" }));
    join(&s, &bob.token, &room);
    let from = end_token(&s, &bob);
    let answered = AtomicUsize::new(0);
    let parked = parks_of(&s, &bob.id);
    std::thread::scope(|scope| {
        let waiters: Vec<_> = (0..PARKED)
            .map(|_| {
                scope.spawn(|| {
                    let reply = s.get(&events_path(&format!("from={from}&timeout=30000")), Some(&bob.token));
                    answered.fetch_add(1, Ordering::SeqCst);
                    reply
                })
            })
            .collect();
        // All of them parked (far more than the workers).
        wait_for_log(&s, &parked_line(&bob.id), parked + PARKED);
        let (status, versions) = s.get("/_matrix/client/versions", None);
        assert_eq!(status, 200, "{versions}");
        assert!(versions["versions"].is_array(), "{versions}");
        assert_eq!(answered.load(Ordering::SeqCst), 0, "a parked /events answered before any event");
        // One message wakes them all.
        let sent = say(&s, &alice.token, &room, "for everyone");
        for w in waiters {
            let (status, body) = w.join().expect("a waiting request");
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["chunk"][0]["event_id"], sent.as_str(), "{body}");
        }
    });
}

/// Issue 12: `/initialSync` carries the presence of the user's contacts
/// (everyone sharing a joined room), and nobody else's.
#[test]
fn initial_sync_carries_the_presence_of_contacts() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let carol = s.user("carol", PW);
    let room = create_room(&s, &alice.token, json!({ "preset": "public_chat" }));
    join(&s, &bob.token, &room);
    let (status, r) = s.put(
        &format!("{V3}/presence/{}/status", enc(&bob.id)),
        Some(&bob.token),
        json!({ "presence": "online", "status_msg": "cooking" }),
    );
    assert_eq!(status, 200, "{r}");
    // Carol is online too, but shares no room with alice.
    let (status, r) = s.put(
        &format!("{V3}/presence/{}/status", enc(&carol.id)),
        Some(&carol.token),
        json!({ "presence": "online" }),
    );
    assert_eq!(status, 200, "{r}");

    let sync = get_ok(&s, &alice, &format!("{V3}/initialSync"));
    let presence = sync["presence"].as_array().expect("presence");
    let senders: Vec<&str> = presence.iter().map(|e| e["sender"].as_str().expect("sender")).collect();
    let mut want = vec![alice.id.as_str(), bob.id.as_str()];
    want.sort();
    assert_eq!(senders, want, "{sync}");
    let of_bob = presence.iter().find(|e| e["sender"] == bob.id.as_str()).expect("bob");
    assert_eq!(of_bob["type"], "m.presence");
    assert_eq!(of_bob["content"]["presence"], "online");
    assert_eq!(of_bob["content"]["status_msg"], "cooking");
    // The room's own initial sync: its members.
    let info = get_ok(&s, &alice, &format!("{V3}/rooms/{}/initialSync", enc(&room)));
    let senders: Vec<&str> = info["presence"]
        .as_array()
        .expect("presence")
        .iter()
        .map(|e| e["sender"].as_str().unwrap())
        .collect();
    assert_eq!(senders, want, "{info}");
}
