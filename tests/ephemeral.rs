//! Typing notices, receipts, read markers and presence through the real
//! server: who may set and see them, their errors, and how they reach
//! other members' `/sync`.

mod common;

use std::time::{Duration, Instant};

use common::{
    assert_error, enc, join, next_batch, public_room, room_path, say, sync, sync_since, Server, User, V3,
};
use serde_json::{json, Value};

/// The original specification's prefix (presence lists live there).
const V1: &str = "/_matrix/client/api/v1";
const PW: &str = "ephemeral-test-password";

/// The room's ephemeral events of a given type in a sync answer.
fn ephemeral_of(sync: &Value, room: &str, kind: &str) -> Vec<Value> {
    sync["rooms"]["join"][room]["ephemeral"]["events"]
        .as_array()
        .map(|l| l.iter().filter(|e| e["type"] == kind).cloned().collect())
        .unwrap_or_default()
}

/// The `m.presence` events of a sync answer, by sender.
fn presence_of(sync: &Value, sender: &str) -> Vec<Value> {
    sync["presence"]["events"]
        .as_array()
        .map(|l| l.iter().filter(|e| e["type"] == "m.presence" && e["sender"] == sender).cloned().collect())
        .unwrap_or_default()
}

#[track_caller]
fn set_typing(s: &Server, who: &User, room: &str, body: Value) -> (u16, Value) {
    s.put(&room_path(room, &format!("typing/{}", enc(&who.id))), Some(&who.token), body)
}

fn typing_users(event: &Value) -> Vec<String> {
    event["content"]["user_ids"]
        .as_array()
        .expect("user_ids")
        .iter()
        .map(|u| u.as_str().expect("user ID").to_owned())
        .collect()
}

/// Two users joined to one public room.
fn two_in_a_room(s: &Server) -> (User, User, String) {
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let room = public_room(s, &alice.token);
    join(s, &bob.token, &room);
    (alice, bob, room)
}

// ---------------------------------------------------------------- typing

/// Needs typing wired into `/sync`.
#[test]
fn typing_reaches_other_members_sync_and_stopping_clears_it() {
    let s = Server::start();
    let (alice, bob, room) = two_in_a_room(&s);
    let token = next_batch(&sync(&s, &bob.token, ""));

    assert_eq!(set_typing(&s, &alice, &room, json!({ "typing": true, "timeout": 30000 })), (200, json!({})));
    let seen = sync_since(&s, &bob.token, &token);
    let typing = ephemeral_of(&seen, &room, "m.typing");
    assert_eq!(typing.len(), 1, "{seen}");
    assert_eq!(typing_users(&typing[0]), [alice.id.as_str()]);

    // Saying it again changes nothing anyone sees.
    let token = next_batch(&seen);
    assert_eq!(set_typing(&s, &alice, &room, json!({ "typing": true, "timeout": 30000 })).0, 200);
    assert!(ephemeral_of(&sync_since(&s, &bob.token, &token), &room, "m.typing").is_empty());

    assert_eq!(set_typing(&s, &alice, &room, json!({ "typing": false })), (200, json!({})));
    let stopped = sync_since(&s, &bob.token, &token);
    let typing = ephemeral_of(&stopped, &room, "m.typing");
    assert_eq!(typing.len(), 1, "{stopped}");
    assert!(typing_users(&typing[0]).is_empty(), "{stopped}");
    // An initial sync shows no typing once nobody types.
    assert!(ephemeral_of(&sync(&s, &bob.token, ""), &room, "m.typing").is_empty());
}

/// Needs typing wired into `/sync`: a notice runs out by itself, and a
/// sync already waiting hears of it.
#[test]
fn typing_runs_out_after_its_timeout() {
    let s = Server::start();
    let (alice, bob, room) = two_in_a_room(&s);
    // The shortest notice the server grants is one second.
    assert_eq!(set_typing(&s, &alice, &room, json!({ "typing": true, "timeout": 1 })).0, 200);
    let first = sync(&s, &bob.token, "");
    let typing = ephemeral_of(&first, &room, "m.typing");
    assert_eq!(typing.len(), 1, "an initial sync shows who types: {first}");
    assert_eq!(typing_users(&typing[0]), [alice.id.as_str()]);

    let token = next_batch(&first);
    let started = Instant::now();
    let (status, waited) = s.get(&format!("{V3}/sync?since={token}&timeout=5000"), Some(&bob.token));
    assert_eq!(status, 200, "{waited}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let typing = ephemeral_of(&waited, &room, "m.typing");
    assert_eq!(typing.len(), 1, "the expiry reaches a waiting sync: {waited}");
    assert!(typing_users(&typing[0]).is_empty());
}

#[test]
fn typing_is_only_for_yourself_in_rooms_you_are_joined_to() {
    let s = Server::start();
    let (alice, bob, room) = two_in_a_room(&s);
    let carol = s.user("carol", PW);
    let other = s.put(
        &room_path(&room, &format!("typing/{}", enc(&alice.id))),
        Some(&bob.token),
        json!({ "typing": true, "timeout": 1000 }),
    );
    assert_error(&other, 403, "M_FORBIDDEN");
    assert_error(&set_typing(&s, &carol, &room, json!({ "typing": true })), 403, "M_FORBIDDEN");
    assert_error(
        &set_typing(&s, &carol, "!nowhere:localhost", json!({ "typing": true })),
        403,
        "M_FORBIDDEN",
    );
    // Once Bob leaves, he can no longer type there.
    assert_eq!(s.post(&room_path(&room, "leave"), Some(&bob.token), json!({})).0, 200);
    assert_error(&set_typing(&s, &bob, &room, json!({ "typing": true })), 403, "M_FORBIDDEN");
}

#[test]
fn typing_refuses_bad_bodies() {
    let s = Server::start();
    let (alice, _bob, room) = two_in_a_room(&s);
    assert_error(&set_typing(&s, &alice, &room, json!({ "timeout": 1000 })), 400, "M_MISSING_PARAM");
    assert_error(&set_typing(&s, &alice, &room, json!({ "typing": "yes" })), 400, "M_BAD_JSON");
    assert_error(
        &set_typing(&s, &alice, &room, json!({ "typing": true, "timeout": "soon" })),
        400,
        "M_BAD_JSON",
    );
    assert_error(&set_typing(&s, &alice, &room, json!([true])), 400, "M_BAD_JSON");
    let auth = format!("Bearer {}", alice.token);
    let r = s.raw(
        "PUT",
        &room_path(&room, &format!("typing/{}", enc(&alice.id))),
        &[("Authorization", auth.as_str())],
        Some(b"{not json"),
    );
    assert_eq!((r.status, r.json["errcode"].as_str()), (400, Some("M_NOT_JSON")));
    // A huge timeout is clamped, not refused.
    assert_eq!(set_typing(&s, &alice, &room, json!({ "typing": true, "timeout": 1u64 << 60 })).0, 200);
}

// -------------------------------------------------------------- receipts

#[track_caller]
fn post_receipt(s: &Server, who: &User, room: &str, kind: &str, event: &str, body: Value) -> (u16, Value) {
    s.post(&room_path(room, &format!("receipt/{kind}/{}", enc(event))), Some(&who.token), body)
}

#[test]
fn public_receipts_reach_others_and_private_ones_only_their_owner() {
    let s = Server::start();
    let (alice, bob, room) = two_in_a_room(&s);
    let event = say(&s, &alice.token, &room, "hello");
    let alice_token = next_batch(&sync(&s, &alice.token, ""));
    let bob_token = next_batch(&sync(&s, &bob.token, ""));

    assert_eq!(post_receipt(&s, &bob, &room, "m.read", &event, json!({})), (200, json!({})));
    let seen = sync_since(&s, &alice.token, &alice_token);
    let receipts = ephemeral_of(&seen, &room, "m.receipt");
    assert_eq!(receipts.len(), 1, "{seen}");
    let entry = &receipts[0]["content"][&event]["m.read"][&bob.id];
    assert!(entry["ts"].is_u64(), "{seen}");
    assert!(entry.get("thread_id").is_none(), "an unthreaded receipt has no thread_id");
    let alice_token = next_batch(&seen);

    let later = say(&s, &alice.token, &room, "again");
    let alice_token = next_batch(&sync_since(&s, &alice.token, &alice_token));
    assert_eq!(post_receipt(&s, &bob, &room, "m.read.private", &later, json!({})).0, 200);
    // Alice is not told of Bob's private receipt...
    let quiet = sync_since(&s, &alice.token, &alice_token);
    for r in ephemeral_of(&quiet, &room, "m.receipt") {
        assert!(r["content"][&later].get("m.read.private").is_none(), "{quiet}");
    }
    // ...but Bob sees his own.
    let own = sync_since(&s, &bob.token, &bob_token);
    let receipts = ephemeral_of(&own, &room, "m.receipt");
    assert!(receipts.iter().any(|r| r["content"][&later]["m.read.private"][&bob.id]["ts"].is_u64()), "{own}");
}

#[test]
fn threaded_receipts_carry_their_thread() {
    let s = Server::start();
    let (alice, bob, room) = two_in_a_room(&s);
    let event = say(&s, &alice.token, &room, "hello");
    let token = next_batch(&sync(&s, &alice.token, ""));
    assert_eq!(post_receipt(&s, &bob, &room, "m.read", &event, json!({ "thread_id": "main" })).0, 200);
    let seen = sync_since(&s, &alice.token, &token);
    let receipts = ephemeral_of(&seen, &room, "m.receipt");
    assert_eq!(receipts[0]["content"][&event]["m.read"][&bob.id]["thread_id"], "main", "{seen}");
}

#[test]
fn receipts_need_a_known_event_in_a_joined_room() {
    let s = Server::start();
    let (alice, bob, room) = two_in_a_room(&s);
    let carol = s.user("carol", PW);
    let event = say(&s, &alice.token, &room, "hello");
    let missing = post_receipt(&s, &bob, &room, "m.read", "$nosuchevent", json!({}));
    assert_error(&missing, 404, "M_NOT_FOUND");
    assert_error(&post_receipt(&s, &carol, &room, "m.read", &event, json!({})), 403, "M_FORBIDDEN");
    // An event of another room is not in this one.
    let other = public_room(&s, &bob.token);
    let elsewhere = say(&s, &bob.token, &other, "elsewhere");
    assert_error(&post_receipt(&s, &bob, &room, "m.read", &elsewhere, json!({})), 404, "M_NOT_FOUND");
    assert_error(&post_receipt(&s, &bob, &room, "m.unknown", &event, json!({})), 400, "M_INVALID_PARAM");
    assert_error(
        &post_receipt(&s, &bob, &room, "m.read", &event, json!({ "thread_id": "" })),
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &post_receipt(&s, &bob, &room, "m.read", &event, json!({ "thread_id": 5 })),
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &post_receipt(&s, &bob, &room, "m.fully_read", &event, json!({ "thread_id": "main" })),
        400,
        "M_INVALID_PARAM",
    );
    assert_error(&post_receipt(&s, &bob, &room, "m.read", "not-an-event", json!({})), 400, "M_INVALID_PARAM");
}

/// The `m.fully_read` content in a sync's room account data, if any.
fn fully_read(sync: &Value, room: &str) -> Option<Value> {
    sync["rooms"]["join"][room]["account_data"]["events"]
        .as_array()?
        .iter()
        .find(|e| e["type"] == "m.fully_read")
        .map(|e| e["content"].clone())
}

#[test]
fn read_markers_set_the_fully_read_marker_and_receipts() {
    let s = Server::start();
    let (alice, bob, room) = two_in_a_room(&s);
    let first = say(&s, &alice.token, &room, "one");
    let second = say(&s, &alice.token, &room, "two");
    let bob_token = next_batch(&sync(&s, &bob.token, ""));
    let alice_token = next_batch(&sync(&s, &alice.token, ""));

    let (status, body) = s.post(
        &room_path(&room, "read_markers"),
        Some(&bob.token),
        json!({ "m.fully_read": first, "m.read": second }),
    );
    assert_eq!((status, body), (200, json!({})));
    let own = sync_since(&s, &bob.token, &bob_token);
    assert_eq!(fully_read(&own, &room), Some(json!({ "event_id": first })), "{own}");
    let others = sync_since(&s, &alice.token, &alice_token);
    let receipts = ephemeral_of(&others, &room, "m.receipt");
    assert!(receipts.iter().any(|r| r["content"][&second]["m.read"][&bob.id].is_object()), "{others}");
    assert_eq!(fully_read(&others, &room), None, "markers are private");

    // The receipt endpoint sets the marker too.
    let bob_token = next_batch(&own);
    assert_eq!(post_receipt(&s, &bob, &room, "m.fully_read", &second, json!({})).0, 200);
    let moved = sync_since(&s, &bob.token, &bob_token);
    assert_eq!(fully_read(&moved, &room), Some(json!({ "event_id": second })), "{moved}");
    // m.fully_read never appears as a receipt.
    for r in ephemeral_of(&moved, &room, "m.receipt") {
        assert!(r["content"][&second].get("m.fully_read").is_none(), "{moved}");
    }

    let missing =
        s.post(&room_path(&room, "read_markers"), Some(&bob.token), json!({ "m.fully_read": "$nope" }));
    assert_error(&missing, 404, "M_NOT_FOUND");
    let carol = s.user("carol", PW);
    let outsider =
        s.post(&room_path(&room, "read_markers"), Some(&carol.token), json!({ "m.fully_read": first }));
    assert_error(&outsider, 403, "M_FORBIDDEN");
    let bad = s.post(&room_path(&room, "read_markers"), Some(&bob.token), json!({ "m.read": 7 }));
    assert_error(&bad, 400, "M_BAD_JSON");
    // A private receipt through read_markers stays private.
    let alice_token = next_batch(&others);
    let r = s.post(&room_path(&room, "read_markers"), Some(&bob.token), json!({ "m.read.private": second }));
    assert_eq!(r.0, 200);
    let quiet = sync_since(&s, &alice.token, &alice_token);
    for r in ephemeral_of(&quiet, &room, "m.receipt") {
        assert!(r["content"][&second].get("m.read.private").is_none(), "{quiet}");
    }
}

// -------------------------------------------------------------- presence

fn status_path(prefix: &str, who: &str) -> String {
    format!("{prefix}/presence/{}/status", enc(who))
}

#[test]
fn presence_is_set_and_read_back() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let none = s.get(&status_path(V3, &alice.id), Some(&alice.token));
    assert_eq!(none.0, 200, "{}", none.1);
    assert!(["offline", "online"].contains(&none.1["presence"].as_str().unwrap()), "{}", none.1);

    let set = s.put(
        &status_path(V3, &alice.id),
        Some(&alice.token),
        json!({ "presence": "online", "status_msg": "At home" }),
    );
    assert_eq!(set, (200, json!({})));
    let (status, got) = s.get(&status_path(V3, &alice.id), Some(&alice.token));
    assert_eq!(status, 200);
    assert_eq!(got["presence"], "online");
    assert_eq!(got["status_msg"], "At home");
    assert_eq!(got["currently_active"], true);
    assert!(got["last_active_ago"].as_u64().is_some_and(|ago| ago < 60_000), "{got}");

    let away = s.put(&status_path(V1, &alice.id), Some(&alice.token), json!({ "presence": "unavailable" }));
    assert_eq!(away.0, 200);
    let (_, got) = s.get(&status_path(V1, &alice.id), Some(&alice.token));
    assert_eq!(got["presence"], "unavailable");
    assert_eq!(got["currently_active"], false);
    assert!(got.get("status_msg").is_none(), "leaving status_msg out clears it: {got}");

    let offline = s.put(&status_path(V3, &alice.id), Some(&alice.token), json!({ "presence": "offline" }));
    assert_eq!(offline.0, 200);
    assert_eq!(s.get(&status_path(V3, &alice.id), Some(&alice.token)).1["presence"], "offline");
}

#[test]
fn presence_changes_are_checked() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let other = s.put(&status_path(V3, &alice.id), Some(&bob.token), json!({ "presence": "online" }));
    assert_error(&other, 403, "M_FORBIDDEN");
    let path = status_path(V3, &alice.id);
    assert_error(&s.put(&path, Some(&alice.token), json!({ "presence": "busy" })), 400, "M_INVALID_PARAM");
    assert_error(&s.put(&path, Some(&alice.token), json!({ "status_msg": "hi" })), 400, "M_MISSING_PARAM");
    assert_error(&s.put(&path, Some(&alice.token), json!({ "presence": 1 })), 400, "M_BAD_JSON");
    let long = "x".repeat(5000);
    let too_long = s.put(&path, Some(&alice.token), json!({ "presence": "online", "status_msg": long }));
    assert_error(&too_long, 400, "M_INVALID_PARAM");
    assert_error(&s.get(&status_path(V3, "not-a-user"), Some(&alice.token)), 400, "M_INVALID_PARAM");
    assert_error(&s.get(&status_path(V3, "@nobody:localhost"), Some(&alice.token)), 404, "M_NOT_FOUND");
}

#[test]
fn presence_is_visible_to_room_mates_not_to_strangers() {
    let s = Server::start();
    let (alice, bob, _room) = two_in_a_room(&s);
    let carol = s.user("carol", PW);
    let set = s.put(&status_path(V3, &alice.id), Some(&alice.token), json!({ "presence": "online" }));
    assert_eq!(set.0, 200);
    let (status, got) = s.get(&status_path(V3, &alice.id), Some(&bob.token));
    assert_eq!((status, got["presence"].as_str()), (200, Some("online")), "{got}");
    assert_error(&s.get(&status_path(V3, &alice.id), Some(&carol.token)), 403, "M_FORBIDDEN");
}

/// Needs presence wired into `/sync`.
#[test]
fn presence_changes_reach_room_mates_sync_only() {
    let s = Server::start();
    let (alice, bob, _room) = two_in_a_room(&s);
    let carol = s.user("carol", PW);
    let bob_token = next_batch(&sync(&s, &bob.token, ""));
    let carol_token = next_batch(&sync(&s, &carol.token, ""));
    let set = s.put(
        &status_path(V3, &alice.id),
        Some(&alice.token),
        json!({ "presence": "online", "status_msg": "cooking" }),
    );
    assert_eq!(set.0, 200);
    let seen = sync_since(&s, &bob.token, &bob_token);
    let events = presence_of(&seen, &alice.id);
    assert_eq!(events.len(), 1, "{seen}");
    assert_eq!(events[0]["content"]["presence"], "online");
    assert_eq!(events[0]["content"]["status_msg"], "cooking");
    assert_eq!(events[0]["content"]["currently_active"], true);
    assert!(events[0]["content"]["last_active_ago"].is_u64());
    let stranger = sync_since(&s, &carol.token, &carol_token);
    assert!(presence_of(&stranger, &alice.id).is_empty(), "{stranger}");
}

#[test]
fn presence_lists_invite_accept_and_drop() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let carol = s.user("carol", PW);
    let list = |who: &User| format!("{V1}/presence/list/{}", enc(&who.id));
    assert_eq!(s.get(&list(&alice), Some(&alice.token)), (200, json!([])));

    // Alice asks to follow Carol: pending until Carol follows her back.
    let invite = s.post(&list(&alice), Some(&alice.token), json!({ "invite": [carol.id] }));
    assert_eq!(invite, (200, json!({})));
    let (_, entries) = s.get(&list(&alice), Some(&alice.token));
    assert_eq!(entries.as_array().map(Vec::len), Some(1), "{entries}");
    assert_eq!(entries[0]["type"], "m.presence");
    assert_eq!(entries[0]["sender"], carol.id.as_str());
    assert_eq!(entries[0]["content"]["accepted"], false);
    assert_eq!(entries[0]["content"]["presence"], "offline", "not yet allowed to see");
    assert_error(&s.get(&status_path(V3, &carol.id), Some(&alice.token)), 403, "M_FORBIDDEN");

    // Carol follows Alice: the reverse subscription accepts both.
    let back = s.post(&list(&carol), Some(&carol.token), json!({ "invite": [alice.id] }));
    assert_eq!(back.0, 200);
    let set = s.put(&status_path(V3, &carol.id), Some(&carol.token), json!({ "presence": "online" }));
    assert_eq!(set.0, 200);
    let (status, got) = s.get(&status_path(V3, &carol.id), Some(&alice.token));
    assert_eq!((status, got["presence"].as_str()), (200, Some("online")), "{got}");
    assert_eq!(s.get(&status_path(V3, &alice.id), Some(&carol.token)).0, 200);
    let (_, entries) = s.get(&list(&alice), Some(&alice.token));
    assert_eq!(entries[0]["content"]["accepted"], true, "{entries}");
    assert_eq!(entries[0]["content"]["presence"], "online", "{entries}");

    // Alice drops Carol: her list is empty and Carol's presence hidden again.
    let dropped = s.post(&list(&alice), Some(&alice.token), json!({ "drop": [carol.id] }));
    assert_eq!(dropped.0, 200);
    assert_eq!(s.get(&list(&alice), Some(&alice.token)), (200, json!([])));
    assert_error(&s.get(&status_path(V3, &carol.id), Some(&alice.token)), 403, "M_FORBIDDEN");
    // The current prefix serves the same list.
    let (status, _) = s.get(&format!("{V3}/presence/list/{}", enc(&carol.id)), Some(&carol.token));
    assert_eq!(status, 200);
}

#[test]
fn presence_lists_are_their_owners_and_checked() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let list = |who: &User| format!("{V1}/presence/list/{}", enc(&who.id));
    assert_error(&s.get(&list(&alice), Some(&bob.token)), 403, "M_FORBIDDEN");
    assert_error(&s.post(&list(&alice), Some(&bob.token), json!({ "invite": [] })), 403, "M_FORBIDDEN");
    let unknown = s.post(&list(&alice), Some(&alice.token), json!({ "invite": ["@nobody:localhost"] }));
    assert_error(&unknown, 404, "M_NOT_FOUND");
    let bad = s.post(&list(&alice), Some(&alice.token), json!({ "invite": ["nobody"] }));
    assert_error(&bad, 400, "M_INVALID_PARAM");
    let shape = s.post(&list(&alice), Some(&alice.token), json!({ "invite": "@bob:localhost" }));
    assert_error(&shape, 400, "M_BAD_JSON");
    let myself = s.post(&list(&alice), Some(&alice.token), json!({ "invite": [alice.id] }));
    assert_error(&myself, 400, "M_INVALID_PARAM");
    let many: Vec<String> = (0..101).map(|i| format!("@u{i}:localhost")).collect();
    let too_many = s.post(&list(&alice), Some(&alice.token), json!({ "drop": many }));
    assert_error(&too_many, 400, "M_INVALID_PARAM");
    // Nothing half-done: a refused request changes nothing.
    let mixed = s.post(&list(&alice), Some(&alice.token), json!({ "invite": [bob.id, "@nobody:localhost"] }));
    assert_error(&mixed, 404, "M_NOT_FOUND");
    assert_eq!(s.get(&list(&alice), Some(&alice.token)), (200, json!([])));
}

#[test]
fn presence_turned_off_shows_everyone_offline() {
    let s = Server::start_with(&["--presence", "false"], &[]);
    let alice = s.user("alice", PW);
    let set = s.put(&status_path(V3, &alice.id), Some(&alice.token), json!({ "presence": "online" }));
    assert_eq!(set, (200, json!({})));
    let (status, got) = s.get(&status_path(V3, &alice.id), Some(&alice.token));
    assert_eq!((status, got["presence"].as_str()), (200, Some("offline")), "{got}");
    // Bad input is still refused.
    let bad = s.put(&status_path(V3, &alice.id), Some(&alice.token), json!({ "presence": "busy" }));
    assert_error(&bad, 400, "M_INVALID_PARAM");
}
