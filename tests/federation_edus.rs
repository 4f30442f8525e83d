//! Typing, receipts and presence between two Hearth servers on the test
//! bed (`common::fed`), both ways (issue 18): typing starts, stops and
//! runs out on the receiving side; `m.read` receipts (threaded too) cross,
//! `m.read.private` never does; presence with a status message crosses;
//! EDUs a server sends about users of another server are ignored.

mod common;

use common::ca::TestCa;
use common::fed::{self, Peer};
use common::{create_room, enc, say, wait_until, TempDir, User, V3};
use serde_json::{json, Value};

const PW: &str = "federation-edus-password";

/// Two servers, alice on `a` in a public room of hers that bob on `b` has
/// joined (both servers see both members).
struct Bed {
    _dir: TempDir,
    ca: TestCa,
    a: Peer,
    b: Peer,
    alice: User,
    bob: User,
    room: String,
}

fn bed() -> Bed {
    let dir = TempDir::new();
    let ca = TestCa::new(dir.path());
    let a = Peer::start(&ca, &[], &[]);
    let b = Peer::start(&ca, &[], &[]);
    let alice = a.server.user("alice", PW);
    let bob = b.server.user("bob", PW);
    let room = create_room(&a.server, &alice.token, json!({ "preset": "public_chat" }));
    let path = format!("{V3}/join/{}?via={}", enc(&room), enc(&a.name));
    let (status, r) = b.server.post(&path, Some(&bob.token), json!({}));
    assert_eq!(status, 200, "{r}");
    wait_until(&a.server, "bob's join reaches a", || {
        let (_, r) = a.server.get(&format!("{V3}/rooms/{}/joined_members", enc(&room)), Some(&alice.token));
        r["joined"].get(&bob.id).is_some()
    });
    Bed { _dir: dir, ca, a, b, alice, bob, room }
}

/// The room's ephemeral events of a type in an initial sync of `who`.
fn ephemeral(p: &Peer, who: &User, room: &str, kind: &str) -> Vec<Value> {
    let (status, r) = p.server.get(&format!("{V3}/sync"), Some(&who.token));
    assert_eq!(status, 200, "{r}");
    r["rooms"]["join"][room]["ephemeral"]["events"]
        .as_array()
        .map(|es| es.iter().filter(|e| e["type"] == kind).cloned().collect())
        .unwrap_or_default()
}

/// Who `who` sees typing in the room (an initial sync shows the typers).
fn typers(p: &Peer, who: &User, room: &str) -> Vec<String> {
    ephemeral(p, who, room, "m.typing")
        .iter()
        .flat_map(|e| e["content"]["user_ids"].as_array().cloned().unwrap_or_default())
        .filter_map(|u| u.as_str().map(str::to_owned))
        .collect()
}

fn set_typing(p: &Peer, who: &User, room: &str, typing: bool, timeout: u64) {
    let path = format!("{V3}/rooms/{}/typing/{}", enc(room), enc(&who.id));
    let (status, r) = p.server.put(&path, Some(&who.token), json!({ "typing": typing, "timeout": timeout }));
    assert_eq!(status, 200, "{r}");
}

/// The receipts `who` sees in the room: the merged `m.receipt` content.
fn receipts(p: &Peer, who: &User, room: &str) -> Value {
    let mut all = json!({});
    for e in ephemeral(p, who, room, "m.receipt") {
        for (event_id, by_type) in e["content"].as_object().cloned().unwrap_or_default() {
            for (kind, users) in by_type.as_object().cloned().unwrap_or_default() {
                for (user, data) in users.as_object().cloned().unwrap_or_default() {
                    all[&event_id][&kind][&user] = data;
                }
            }
        }
    }
    all
}

fn post_receipt(p: &Peer, who: &User, room: &str, kind: &str, event_id: &str, body: Value) {
    let path = format!("{V3}/rooms/{}/receipt/{kind}/{}", enc(room), enc(event_id));
    let (status, r) = p.server.post(&path, Some(&who.token), body);
    assert_eq!(status, 200, "{r}");
}

/// Waits until `p` has the event (so a receipt for it can be checked).
fn wait_for_event(p: &Peer, who: &User, room: &str, event_id: &str) {
    wait_until(&p.server, "the event reaches the other server", || {
        let path = format!("{V3}/rooms/{}/event/{}", enc(room), enc(event_id));
        p.server.get(&path, Some(&who.token)).0 == 200
    });
}

fn presence(p: &Peer, who: &User, target: &str) -> Value {
    let (status, r) = p.server.get(&format!("{V3}/presence/{}/status", enc(target)), Some(&who.token));
    assert_eq!(status, 200, "{r}");
    r
}

fn set_presence(p: &Peer, who: &User, state: &str, msg: &str) {
    let path = format!("{V3}/presence/{}/status", enc(&who.id));
    let (status, r) = p.server.put(&path, Some(&who.token), json!({ "presence": state, "status_msg": msg }));
    assert_eq!(status, 200, "{r}");
}

/// Rows of the server's `receipts` table for `user_id` (any type).
fn stored_receipts(p: &Peer, user_id: &str) -> Vec<(String, String)> {
    let conn =
        rusqlite::Connection::open_with_flags(p.server.db(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("opening the database");
    let mut st = conn
        .prepare("SELECT receipt_type, event_id FROM receipts WHERE user_id = ?1 ORDER BY pos")
        .expect("a query");
    let rows = st.query_map([user_id], |r| Ok((r.get(0)?, r.get(1)?))).expect("rows");
    rows.collect::<Result<_, _>>().expect("rows")
}

#[test]
fn typing_crosses_both_ways_stops_and_runs_out() {
    let t = bed();
    let (a, b, room) = (&t.a, &t.b, t.room.as_str());

    set_typing(a, &t.alice, room, true, 30_000);
    wait_until(&b.server, "alice's typing reaches b", || typers(b, &t.bob, room) == [t.alice.id.clone()]);
    set_typing(a, &t.alice, room, false, 0);
    wait_until(&b.server, "alice's stop reaches b", || typers(b, &t.bob, room).is_empty());

    set_typing(b, &t.bob, room, true, 30_000);
    wait_until(&a.server, "bob's typing reaches a", || typers(a, &t.alice, room) == [t.bob.id.clone()]);
    set_typing(b, &t.bob, room, false, 0);
    wait_until(&a.server, "bob's stop reaches a", || typers(a, &t.alice, room).is_empty());

    // A short notice runs out on both sides.
    set_typing(b, &t.bob, room, true, 1_500);
    wait_until(&a.server, "bob's short typing reaches a", || typers(a, &t.alice, room) == [t.bob.id.clone()]);
    wait_until(&a.server, "bob's typing runs out on a", || typers(a, &t.alice, room).is_empty());

    // A received notice runs out on its own: a (as the harness signs for
    // it) says alice types for 1.5 s and never says she stopped.
    let body = json!({ "origin": a.name, "origin_server_ts": common::now_ms(), "pdus": [], "edus": [
        { "edu_type": "m.typing",
          "content": { "room_id": room, "user_id": t.alice.id, "typing": true, "timeout": 1_500 } },
    ] });
    let agent = fed::agent(&t.ca);
    let uri = "/_matrix/federation/v1/send/typing-without-stop";
    let (status, r) = fed::signed(&agent, &a.signing_key(), &a.name, &b.name, "PUT", uri, Some(&body));
    assert_eq!(status, 200, "{r}");
    wait_until(&b.server, "the notice shows on b", || typers(b, &t.bob, room) == [t.alice.id.clone()]);
    wait_until(&b.server, "the notice runs out on b", || typers(b, &t.bob, room).is_empty());
}

/// Typing rows queued for `destination` in the server's outbox.
fn queued_typing(p: &Peer, destination: &str) -> i64 {
    let conn =
        rusqlite::Connection::open_with_flags(p.server.db(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("opening the database");
    conn.query_row(
        "SELECT count(*) FROM federation_outbox WHERE destination = ?1
         AND json_extract(body, '$.edu_type') = 'm.typing'",
        [destination],
        |r| r.get(0),
    )
    .expect("a count")
}

#[test]
fn typing_is_not_queued_for_a_server_that_is_down() {
    let mut t = bed();
    let room = t.room.clone();
    t.b.server.kill9();
    // A message for b fails, and keeps failing: b is backed off.
    say(&t.a.server, &t.alice.token, &room, "are you there?");
    let failures = || common::log_count(&t.a.server, &format!("to {} failed, kept for a retry", t.b.name));
    wait_until(&t.a.server, "a backs off from b", || failures() >= 3);
    // Each typing request queues in its own write, before it answers; one
    // may slip into the instant between a backoff's end and the next
    // failure, not more.
    for _ in 0..10 {
        set_typing(&t.a, &t.alice, &room, true, 30_000);
    }
    let queued = queued_typing(&t.a, &t.b.name);
    assert!(queued <= 1, "{queued} typing notices queued for a server that is down");
}

#[test]
fn receipts_cross_both_ways_and_private_ones_stay_home() {
    let t = bed();
    let (a, b, room) = (&t.a, &t.b, t.room.as_str());
    let first = say(&a.server, &t.alice.token, room, "first");
    wait_for_event(b, &t.bob, room, &first);

    // Bob reads on b: alice sees it on a.
    post_receipt(b, &t.bob, room, "m.read", &first, json!({}));
    wait_until(&a.server, "bob's receipt reaches a", || {
        receipts(a, &t.alice, room)[&first]["m.read"][&t.bob.id]["ts"].is_i64()
    });

    // Alice's threaded receipt on a: bob sees it, thread and all.
    let second = say(&b.server, &t.bob.token, room, "second");
    wait_for_event(a, &t.alice, room, &second);
    post_receipt(a, &t.alice, room, "m.read", &second, json!({ "thread_id": "main" }));
    wait_until(&b.server, "alice's threaded receipt reaches b", || {
        receipts(b, &t.bob, room)[&second]["m.read"][&t.alice.id]["thread_id"] == "main"
    });

    // A private receipt never leaves b; a later public one does.
    let third = say(&a.server, &t.alice.token, room, "third");
    let fourth = say(&a.server, &t.alice.token, room, "fourth");
    wait_for_event(b, &t.bob, room, &fourth);
    post_receipt(b, &t.bob, room, "m.read.private", &third, json!({}));
    post_receipt(b, &t.bob, room, "m.read", &fourth, json!({}));
    wait_until(&a.server, "bob's later public receipt reaches a", || {
        receipts(a, &t.alice, room)[&fourth]["m.read"][&t.bob.id]["ts"].is_i64()
    });
    assert!(receipts(a, &t.alice, room).get(&third).is_none());
    let on_a = stored_receipts(a, &t.bob.id);
    assert!(on_a.iter().all(|(kind, event)| kind == "m.read" && event != &third), "{on_a:?}");
    // Bob still has his own private receipt at home.
    assert!(receipts(b, &t.bob, room)[&third]["m.read.private"][&t.bob.id]["ts"].is_i64());
}

#[test]
fn presence_with_a_status_message_crosses_both_ways() {
    let t = bed();
    let (a, b) = (&t.a, &t.b);

    set_presence(b, &t.bob, "online", "on b");
    wait_until(&a.server, "bob's presence reaches a", || {
        let p = presence(a, &t.alice, &t.bob.id);
        p["presence"] == "online" && p["status_msg"] == "on b"
    });
    // It shows in alice's sync as well.
    let (_, s) = a.server.get(&format!("{V3}/sync"), Some(&t.alice.token));
    let events = s["presence"]["events"].as_array().cloned().unwrap_or_default();
    assert!(
        events.iter().any(|e| e["sender"] == t.bob.id.as_str() && e["content"]["status_msg"] == "on b"),
        "{s}"
    );

    set_presence(a, &t.alice, "unavailable", "away from a");
    wait_until(&b.server, "alice's presence reaches b", || {
        let p = presence(b, &t.bob, &t.alice.id);
        p["presence"] == "unavailable" && p["status_msg"] == "away from a"
    });
}

#[test]
fn presence_set_before_a_join_reaches_the_other_server() {
    let dir = TempDir::new();
    let ca = TestCa::new(dir.path());
    let debug = ["--log-level", "debug"];
    let (a, b) = (Peer::start(&ca, &debug, &[]), Peer::start(&ca, &debug, &[]));
    let alice = a.server.user("alice", PW);
    let bob = b.server.user("bob", PW);
    set_presence(&a, &alice, "online", "here first");
    set_presence(&b, &bob, "unavailable", "came later");
    // The presence threads pass over these changes while there is nobody
    // to tell, so only the join can tell them later.
    common::wait_for_log(&a.server, &format!("presence of {}: no server to tell", alice.id), 1);
    common::wait_for_log(&b.server, &format!("presence of {}: no server to tell", bob.id), 1);
    let room = create_room(&a.server, &alice.token, json!({ "preset": "public_chat" }));
    let (status, r) =
        b.server.post(&format!("{V3}/join/{}?via={}", enc(&room), enc(&a.name)), Some(&bob.token), json!({}));
    assert_eq!(status, 200, "{r}");
    // Neither changed their presence since: the join itself tells it.
    wait_until(&b.server, "alice's presence reaches b after the join", || {
        let p = presence(&b, &bob, &alice.id);
        p["presence"] == "online" && p["status_msg"] == "here first"
    });
    wait_until(&a.server, "bob's presence reaches a after the join", || {
        let (status, p) = a.server.get(&format!("{V3}/presence/{}/status", enc(&bob.id)), Some(&alice.token));
        status == 200 && p["presence"] == "unavailable" && p["status_msg"] == "came later"
    });
}

#[test]
fn edus_about_users_of_another_server_are_ignored() {
    let t = bed();
    let (a, b, room) = (&t.a, &t.b, t.room.as_str());
    let event = say(&a.server, &t.alice.token, room, "read me");
    wait_for_event(b, &t.bob, room, &event);
    set_presence(b, &t.bob, "online", "the real bob");
    let agent = fed::agent(&t.ca);
    let key = a.signing_key();

    // a speaks for bob (a user of b, joined to the room) and for a user
    // of a third server; then for its own alice, which must count.
    let forged = |user: &str| {
        vec![
            json!({ "edu_type": "m.typing", "content": { "room_id": room, "user_id": user, "typing": true } }),
            json!({ "edu_type": "m.receipt", "content": { room: { "m.read": {
                user: { "event_ids": [event], "data": { "ts": 1 } } } } } }),
            json!({ "edu_type": "m.presence", "content": { "push": [{
                "user_id": user, "presence": "offline", "status_msg": "forged", "last_active_ago": 0 }] } }),
        ]
    };
    let mut edus = forged(&t.bob.id);
    edus.extend(forged("@eve:elsewhere.example"));
    edus.push(json!({ "edu_type": "m.typing",
                      "content": { "room_id": room, "user_id": t.alice.id, "typing": true } }));
    let body = json!({ "origin": a.name, "origin_server_ts": common::now_ms(), "pdus": [], "edus": edus });
    let (status, r) = fed::signed(
        &agent,
        &key,
        &a.name,
        &b.name,
        "PUT",
        "/_matrix/federation/v1/send/forged1",
        Some(&body),
    );
    assert_eq!(status, 200, "{r}");

    // The EDUs are applied in order: once alice types, the rest was seen.
    wait_until(&b.server, "alice's own typing counts", || typers(b, &t.bob, room).contains(&t.alice.id));
    assert_eq!(typers(b, &t.bob, room), vec![t.alice.id.clone()], "bob's forged typing was ignored");
    assert!(stored_receipts(b, &t.bob.id).is_empty());
    assert!(stored_receipts(b, "@eve:elsewhere.example").is_empty());
    let p = presence(b, &t.bob, &t.bob.id);
    assert_eq!(
        (p["presence"].as_str(), p["status_msg"].as_str()),
        (Some("online"), Some("the real bob")),
        "{p}"
    );
}

/// The original specification's presence list across two servers that
/// share no room: alice on `a` asks to follow bob on `b` (pending, his
/// presence hidden), bob follows her back (both accepted on both
/// servers), and each then sees the other's presence; dropping takes the
/// row off the other server too.
#[test]
fn presence_lists_work_across_servers_without_a_shared_room() {
    let dir = TempDir::new();
    let ca = TestCa::new(dir.path());
    let (a, b) = (Peer::start(&ca, &[], &[]), Peer::start(&ca, &[], &[]));
    let alice = a.server.user("alice", PW);
    let bob = b.server.user("bob", PW);
    let list = |p: &Peer, who: &User| {
        let (status, r) = p.server.get(&format!("{}/presence/list/{}", V3, enc(&who.id)), Some(&who.token));
        assert_eq!(status, 200, "{r}");
        r
    };
    let change = |p: &Peer, who: &User, body: Value| {
        let path = format!("{}/presence/list/{}", V3, enc(&who.id));
        let (status, r) = p.server.post(&path, Some(&who.token), body);
        assert_eq!(status, 200, "{r}");
    };
    let rows = |p: &Peer| -> Vec<(String, String, i64)> {
        let conn =
            rusqlite::Connection::open_with_flags(p.server.db(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .expect("opening the database");
        let mut st =
            conn.prepare("SELECT owner, target, accepted FROM presence_list ORDER BY owner").unwrap();
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    };
    set_presence(&b, &bob, "online", "in the garden");
    change(&a, &alice, json!({ "invite": [bob.id] }));
    wait_until(&b.server, "alice's invite reaches b", || {
        rows(&b) == vec![(alice.id.clone(), bob.id.clone(), 0)]
    });
    let entries = list(&a, &alice);
    assert_eq!(entries[0]["content"]["accepted"], false, "{entries}");
    let (status, r) = a.server.get(&format!("{V3}/presence/{}/status", enc(&bob.id)), Some(&alice.token));
    assert_eq!(status, 403, "bob's presence is not alice's to see yet: {r}");

    change(&b, &bob, json!({ "invite": [alice.id] }));
    let both = vec![(alice.id.clone(), bob.id.clone(), 1), (bob.id.clone(), alice.id.clone(), 1)];
    wait_until(&a.server, "both accepted on a", || rows(&a) == both);
    assert_eq!(rows(&b), both);
    wait_until(&a.server, "bob's presence reaches alice", || {
        let entries = list(&a, &alice);
        entries[0]["content"]["accepted"] == true
            && entries[0]["content"]["presence"] == "online"
            && entries[0]["content"]["status_msg"] == "in the garden"
    });
    set_presence(&a, &alice, "unavailable", "making tea");
    wait_until(&b.server, "alice's presence reaches bob", || {
        let (status, p) = b.server.get(&format!("{V3}/presence/{}/status", enc(&alice.id)), Some(&bob.token));
        status == 200 && p["presence"] == "unavailable" && p["status_msg"] == "making tea"
    });

    change(&a, &alice, json!({ "drop": [bob.id] }));
    let left = vec![(bob.id.clone(), alice.id.clone(), 1)];
    wait_until(&b.server, "the drop reaches b", || rows(&b) == left);
    assert_eq!(rows(&a), left);
}
