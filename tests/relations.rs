//! Event relationships over HTTP: edits (`m.replace`), reactions
//! (`m.annotation`), threads (`m.thread`, `/threads`), references, the
//! `/relations` endpoint with its pagination, filters, recursion and
//! visibility, the bundled aggregations on every read path, and the
//! per-thread unread counts of `/sync`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::{assert_error, create_room, enc, join, say, Server, User, V3};
use serde_json::{json, Value};

const PW: &str = "relations-test-password";
const V1: &str = "/_matrix/client/v1";

/// Sends an event of `kind` with `content`; its event ID.
#[track_caller]
fn send(s: &Server, who: &User, room: &str, kind: &str, content: Value) -> String {
    let (status, r) = try_send(s, who, room, kind, content);
    assert_eq!(status, 200, "send {kind}: {r}");
    r["event_id"].as_str().expect("event_id").to_owned()
}

fn try_send(s: &Server, who: &User, room: &str, kind: &str, content: Value) -> (u16, Value) {
    static TXN: AtomicUsize = AtomicUsize::new(0);
    let txn = TXN.fetch_add(1, Ordering::Relaxed);
    s.put(&format!("{V3}/rooms/{}/send/{kind}/r{txn}", enc(room)), Some(&who.token), content)
}

fn react(s: &Server, who: &User, room: &str, target: &str, key: &str) -> (u16, Value) {
    try_send(
        s,
        who,
        room,
        "m.reaction",
        json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": target, "key": key } }),
    )
}

#[track_caller]
fn edit(s: &Server, who: &User, room: &str, target: &str, body: &str) -> String {
    send(
        s,
        who,
        room,
        "m.room.message",
        json!({
            "msgtype": "m.text", "body": format!("* {body}"),
            "m.new_content": { "msgtype": "m.text", "body": body },
            "m.relates_to": { "rel_type": "m.replace", "event_id": target },
        }),
    )
}

#[track_caller]
fn reply_in_thread(s: &Server, who: &User, room: &str, root: &str, body: &str) -> String {
    send(
        s,
        who,
        room,
        "m.room.message",
        json!({
            "msgtype": "m.text", "body": body,
            "m.relates_to": { "rel_type": "m.thread", "event_id": root, "is_falling_back": true,
                              "m.in_reply_to": { "event_id": root } },
        }),
    )
}

#[track_caller]
fn redact(s: &Server, who: &User, room: &str, event: &str) {
    static TXN: AtomicUsize = AtomicUsize::new(0);
    let txn = TXN.fetch_add(1, Ordering::Relaxed);
    let (status, r) = s.put(
        &format!("{V3}/rooms/{}/redact/{}/x{txn}", enc(room), enc(event)),
        Some(&who.token),
        json!({ "reason": "test" }),
    );
    assert_eq!(status, 200, "redact: {r}");
}

#[track_caller]
fn get_event(s: &Server, who: &User, room: &str, event: &str) -> Value {
    let (status, body) = s.get(&format!("{V3}/rooms/{}/event/{}", enc(room), enc(event)), Some(&who.token));
    assert_eq!(status, 200, "event: {body}");
    body
}

fn relations_path(room: &str, event: &str, rest: &str) -> String {
    format!("{V1}/rooms/{}/relations/{}{rest}", enc(room), enc(event))
}

#[track_caller]
fn relations(s: &Server, who: &User, room: &str, event: &str, rest: &str) -> Value {
    let (status, body) = s.get(&relations_path(room, event, rest), Some(&who.token));
    assert_eq!(status, 200, "relations{rest}: {body}");
    body
}

fn ids(chunk: &Value) -> Vec<String> {
    chunk.as_array().expect("chunk").iter().map(|e| e["event_id"].as_str().expect("id").to_owned()).collect()
}

fn room_of_two(s: &Server) -> (User, User, String) {
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let room = create_room(s, &alice.token, json!({ "preset": "public_chat" }));
    join(s, &bob.token, &room);
    (alice, bob, room)
}

#[test]
fn edits_are_bundled_newest_valid_first_and_follow_redactions() {
    let s = Server::start();
    let (alice, bob, room) = room_of_two(&s);
    let original = say(&s, &alice.token, &room, "helo");
    let first = edit(&s, &alice, &room, &original, "hello");
    // Not valid replacements: another sender, another type, no new content.
    edit(&s, &bob, &room, &original, "bob's version");
    send(
        &s,
        &alice,
        &room,
        "m.sticker",
        json!({ "body": "x", "m.new_content": { "body": "y" },
                "m.relates_to": { "rel_type": "m.replace", "event_id": original } }),
    );
    send(
        &s,
        &alice,
        &room,
        "m.room.message",
        json!({ "msgtype": "m.text", "body": "no new content",
                "m.relates_to": { "rel_type": "m.replace", "event_id": original } }),
    );
    let second = edit(&s, &alice, &room, &original, "hello, world");

    let seen = get_event(&s, &bob, &room, &original);
    let bundled = &seen["unsigned"]["m.relations"]["m.replace"];
    assert_eq!(bundled["event_id"], json!(second), "{seen}");
    assert_eq!(bundled["content"]["m.new_content"]["body"], "hello, world");
    // The original's content is served as it was (the client applies the edit).
    assert_eq!(seen["content"]["body"], "helo");
    // An edit carries no edit of its own.
    assert!(get_event(&s, &bob, &room, &second)["unsigned"].get("m.relations").is_none());

    // The same bundle on /messages, /context and /sync.
    let (_, page) = s.get(&format!("{V3}/rooms/{}/messages?dir=b&limit=20", enc(&room)), Some(&bob.token));
    let listed = page["chunk"].as_array().unwrap().iter().find(|e| e["event_id"] == json!(original)).unwrap();
    assert_eq!(listed["unsigned"]["m.relations"]["m.replace"]["event_id"], json!(second));
    let (_, ctx) = s.get(&format!("{V3}/rooms/{}/context/{}", enc(&room), enc(&original)), Some(&bob.token));
    assert_eq!(ctx["event"]["unsigned"]["m.relations"]["m.replace"]["event_id"], json!(second));
    let sync = common::sync(&s, &bob.token, "");
    let in_sync = common::timeline(&sync, &room).iter().find(|e| e["event_id"] == json!(original)).cloned();
    assert_eq!(
        in_sync.expect("original in sync")["unsigned"]["m.relations"]["m.replace"]["event_id"],
        json!(second)
    );

    // A redacted edit drops out: the one before it is bundled.
    redact(&s, &alice, &room, &second);
    let seen = get_event(&s, &bob, &room, &original);
    assert_eq!(seen["unsigned"]["m.relations"]["m.replace"]["event_id"], json!(first), "{seen}");
    // A redacted original keeps no edit.
    redact(&s, &alice, &room, &original);
    let seen = get_event(&s, &bob, &room, &original);
    assert!(seen["unsigned"].get("m.relations").is_none(), "{seen}");
    assert!(seen["content"].as_object().unwrap().is_empty());
}

#[test]
fn one_reaction_per_sender_and_key_and_redacted_ones_go() {
    let s = Server::start();
    let (alice, bob, room) = room_of_two(&s);
    let msg = say(&s, &alice.token, &room, "react to me");
    let (status, first) = react(&s, &bob, &room, &msg, "👍");
    assert_eq!(status, 200, "{first}");
    assert_error(&react(&s, &bob, &room, &msg, "👍"), 400, "M_DUPLICATE_ANNOTATION");
    assert_eq!(react(&s, &bob, &room, &msg, "🎉").0, 200);
    assert_eq!(react(&s, &alice, &room, &msg, "👍").0, 200);

    let listed = relations(&s, &alice, &room, &msg, "/m.annotation?limit=10");
    assert_eq!(listed["chunk"].as_array().unwrap().len(), 3, "{listed}");
    let keys: Vec<&str> = listed["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["content"]["m.relates_to"]["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["👍", "🎉", "👍"], "newest first");
    let by_type = relations(&s, &alice, &room, &msg, "/m.annotation/m.reaction?limit=10");
    assert_eq!(ids(&by_type["chunk"]), ids(&listed["chunk"]));
    assert!(relations(&s, &alice, &room, &msg, "/m.annotation/m.room.message")["chunk"]
        .as_array()
        .unwrap()
        .is_empty());
    // Annotations are not bundled.
    assert!(get_event(&s, &alice, &room, &msg)["unsigned"].get("m.relations").is_none());

    // Redacted, the reaction is gone from the list and may be sent again.
    let first_id = first["event_id"].as_str().unwrap();
    redact(&s, &bob, &room, first_id);
    let listed = relations(&s, &alice, &room, &msg, "/m.annotation?limit=10");
    assert_eq!(listed["chunk"].as_array().unwrap().len(), 2);
    assert!(!ids(&listed["chunk"]).contains(&first_id.to_owned()));
    assert_eq!(react(&s, &bob, &room, &msg, "👍").0, 200);
}

#[test]
fn threads_are_bundled_and_listed_by_latest_activity() {
    let s = Server::start();
    let (alice, bob, room) = room_of_two(&s);
    let carol = s.user("carol", PW);
    join(&s, &carol.token, &room);
    let old_root = say(&s, &alice.token, &room, "first thread");
    reply_in_thread(&s, &bob, &room, &old_root, "reply 1");
    let new_root = say(&s, &bob.token, &room, "second thread");
    reply_in_thread(&s, &alice, &room, &new_root, "reply a");
    // Activity in the older thread brings it to the top.
    reply_in_thread(&s, &bob, &room, &old_root, "reply 2");
    let last = reply_in_thread(&s, &bob, &room, &old_root, "reply 3");
    let edit_of_last = edit(&s, &bob, &room, &last, "reply 3, edited");

    let root = get_event(&s, &alice, &room, &old_root);
    let thread = &root["unsigned"]["m.relations"]["m.thread"];
    assert_eq!(thread["count"], 3, "{root}");
    assert_eq!(thread["latest_event"]["event_id"], json!(last));
    // The latest reply carries its own edit.
    assert_eq!(
        thread["latest_event"]["unsigned"]["m.relations"]["m.replace"]["event_id"],
        json!(edit_of_last)
    );
    assert_eq!(thread["current_user_participated"], true, "alice started it");
    let for_carol = get_event(&s, &carol, &room, &old_root);
    assert_eq!(for_carol["unsigned"]["m.relations"]["m.thread"]["current_user_participated"], false);

    let all = common::get_ok(&s, &alice, &format!("{V1}/rooms/{}/threads", enc(&room)));
    assert_eq!(ids(&all["chunk"]), [old_root.clone(), new_root.clone()], "{all}");
    assert_eq!(all["chunk"][0]["unsigned"]["m.relations"]["m.thread"]["count"], 3);
    assert!(all.get("next_batch").is_none());
    let carols =
        common::get_ok(&s, &carol, &format!("{V1}/rooms/{}/threads?include=participated", enc(&room)));
    assert!(carols["chunk"].as_array().unwrap().is_empty(), "{carols}");
    reply_in_thread(&s, &carol, &room, &new_root, "me too");
    let carols =
        common::get_ok(&s, &carol, &format!("{V1}/rooms/{}/threads?include=participated", enc(&room)));
    assert_eq!(ids(&carols["chunk"]), std::slice::from_ref(&new_root));

    // Paging one at a time sees each thread once, in order.
    let mut seen = Vec::new();
    let mut from: Option<String> = None;
    for _ in 0..5 {
        let q = from.as_ref().map(|t| format!("&from={}", enc(t))).unwrap_or_default();
        let page = common::get_ok(&s, &alice, &format!("{V1}/rooms/{}/threads?limit=1{q}", enc(&room)));
        seen.extend(ids(&page["chunk"]));
        match page["next_batch"].as_str() {
            Some(t) => from = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, [new_root.clone(), old_root.clone()]);

    // Thread replies through /relations.
    let replies = relations(&s, &alice, &room, &old_root, "/m.thread?limit=10");
    assert_eq!(replies["chunk"].as_array().unwrap().len(), 3);
    assert_eq!(replies["chunk"][0]["event_id"], json!(last));
    assert_error(
        &s.get(&format!("{V1}/rooms/{}/threads?include=mine", enc(&room)), Some(&alice.token)),
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &s.get(&format!("{V1}/rooms/{}/threads?from=nonsense", enc(&room)), Some(&alice.token)),
        400,
        "M_INVALID_PARAM",
    );
}

#[test]
fn references_are_bundled() {
    let s = Server::start();
    let (alice, bob, room) = room_of_two(&s);
    let msg = say(&s, &alice.token, &room, "poll");
    let r1 = send(
        &s,
        &bob,
        &room,
        "m.room.message",
        json!({ "msgtype": "m.text", "body": "ref", "m.relates_to": { "rel_type": "m.reference", "event_id": msg } }),
    );
    let r2 = send(
        &s,
        &alice,
        &room,
        "org.example.response",
        json!({ "m.relates_to": { "rel_type": "m.reference", "event_id": msg } }),
    );
    let seen = get_event(&s, &bob, &room, &msg);
    assert_eq!(
        seen["unsigned"]["m.relations"]["m.reference"],
        json!({ "chunk": [{ "event_id": r1 }, { "event_id": r2 }] })
    );
}

#[test]
fn relations_page_both_ways_and_recurse() {
    let s = Server::start();
    let (alice, bob, room) = room_of_two(&s);
    let root = say(&s, &alice.token, &room, "root");
    let mut replies = Vec::new();
    for i in 0..7 {
        replies.push(reply_in_thread(
            &s,
            if i % 2 == 0 { &alice } else { &bob },
            &room,
            &root,
            &format!("r{i}"),
        ));
    }
    // Backwards (the default), newest first, each once.
    let mut seen = Vec::new();
    let mut from: Option<String> = None;
    for _ in 0..10 {
        let q = from.as_ref().map(|t| format!("&from={}", enc(t))).unwrap_or_default();
        let page = relations(&s, &bob, &room, &root, &format!("?limit=3{q}"));
        assert!(page.get("recursion_depth").is_none());
        let got = ids(&page["chunk"]);
        assert!(got.len() <= 3);
        if from.is_some() {
            assert_eq!(page["prev_batch"], json!(from.clone().unwrap()));
        }
        seen.extend(got);
        match page["next_batch"].as_str() {
            Some(t) => from = Some(t.to_owned()),
            None => break,
        }
    }
    let newest_first: Vec<String> = replies.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);
    // Forwards, oldest first.
    let mut seen = Vec::new();
    let mut from: Option<String> = None;
    for _ in 0..10 {
        let q = from.as_ref().map(|t| format!("&from={}", enc(t))).unwrap_or_default();
        let page = relations(&s, &bob, &room, &root, &format!("?dir=f&limit=2{q}"));
        seen.extend(ids(&page["chunk"]));
        match page["next_batch"].as_str() {
            Some(t) => from = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, replies);
    // `to` stops at a token from an earlier page.
    let first = relations(&s, &bob, &room, &root, "?limit=2");
    let until = first["next_batch"].as_str().unwrap().to_owned();
    let upto = relations(&s, &bob, &room, &root, &format!("?limit=10&to={}", enc(&until)));
    assert_eq!(ids(&upto["chunk"]), ids(&first["chunk"]));
    // A /messages token works as `from`.
    let (_, msgs) = s.get(&format!("{V3}/rooms/{}/messages?dir=b&limit=2", enc(&room)), Some(&bob.token));
    let below =
        relations(&s, &bob, &room, &root, &format!("?limit=10&from={}", enc(msgs["end"].as_str().unwrap())));
    assert_eq!(ids(&below["chunk"]), newest_first[2..].to_vec());

    // Recursion: a reaction to a reply relates to the root only indirectly.
    let (_, reaction) = react(&s, &alice, &room, &replies[0], "👀");
    let reaction = reaction["event_id"].as_str().unwrap().to_owned();
    let direct = relations(&s, &bob, &room, &root, "?limit=50&recurse=false");
    assert_eq!(direct["recursion_depth"], 1);
    assert!(!ids(&direct["chunk"]).contains(&reaction));
    let deep = relations(&s, &bob, &room, &root, "?limit=50&recurse=true");
    assert_eq!(deep["recursion_depth"], 3);
    assert_eq!(ids(&deep["chunk"])[0], reaction);
    assert_eq!(deep["chunk"].as_array().unwrap().len(), 8);
    let deep_annotations = relations(&s, &bob, &room, &root, "/m.annotation?recurse=true");
    assert_eq!(ids(&deep_annotations["chunk"]), [reaction]);

    // Bad parameters are refused cleanly.
    for q in ["?dir=x", "?recurse=maybe", "?from=garbage", "?limit=-1", "?to=t1-2-3-4"] {
        assert_error(&s.get(&relations_path(&room, &root, q), Some(&bob.token)), 400, "M_INVALID_PARAM");
    }
    assert_error(&s.get(&relations_path(&room, "not-an-id", ""), Some(&bob.token)), 400, "M_INVALID_PARAM");
    assert_error(&s.get(&relations_path(&room, "$unknown", ""), Some(&bob.token)), 404, "M_NOT_FOUND");
}

#[test]
fn relations_apply_membership_and_history_visibility() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let outsider = s.user("outsider", PW);
    let room = create_room(
        &s,
        &alice.token,
        json!({ "preset": "public_chat", "initial_state": [{
            "type": "m.room.history_visibility", "state_key": "",
            "content": { "history_visibility": "joined" } }] }),
    );
    let before = say(&s, &alice.token, &room, "before bob");
    reply_in_thread(&s, &alice, &room, &before, "early reply");
    join(&s, &bob.token, &room);
    // Not a member at all: 403; a parent from before the join: 404.
    assert_error(&s.get(&relations_path(&room, &before, ""), Some(&outsider.token)), 403, "M_FORBIDDEN");
    assert_error(
        &s.get(&format!("{V1}/rooms/{}/threads", enc(&room)), Some(&outsider.token)),
        403,
        "M_FORBIDDEN",
    );
    assert_error(&s.get(&relations_path(&room, &before, ""), Some(&bob.token)), 404, "M_NOT_FOUND");
    // A thread whose root bob cannot see is not listed to him.
    let threads = common::get_ok(&s, &bob, &format!("{V1}/rooms/{}/threads", enc(&room)));
    assert!(threads["chunk"].as_array().unwrap().is_empty(), "{threads}");
    let after = say(&s, &alice.token, &room, "after bob");
    let r = reply_in_thread(&s, &alice, &room, &after, "late reply");
    assert_eq!(ids(&relations(&s, &bob, &room, &after, "")["chunk"]), [r]);
    // The ignored user's relations are left out.
    let (status, _) = s.put(
        &format!("{V3}/user/{}/account_data/m.ignored_user_list", enc(&bob.id)),
        Some(&bob.token),
        json!({ "ignored_users": { alice.id.clone(): {} } }),
    );
    assert_eq!(status, 200);
    let carol = s.user("carol", PW);
    join(&s, &carol.token, &room);
    let r2 = reply_in_thread(&s, &carol, &room, &after, "carol's reply");
    assert_eq!(ids(&relations(&s, &bob, &room, &after, "")["chunk"]), [r2]);
}

#[test]
fn sync_counts_unread_per_thread_and_threaded_receipts_clear_them() {
    let s = Server::start();
    let (alice, bob, room) = room_of_two(&s);
    let root = say(&s, &alice.token, &room, "root");
    let r1 = reply_in_thread(&s, &alice, &room, &root, "thread 1");
    reply_in_thread(&s, &alice, &room, &root, "thread 2");
    let main = say(&s, &alice.token, &room, "main again");
    let filter = enc(&json!({ "room": { "timeline": { "unread_thread_notifications": true } } }).to_string());
    let counts = |s: &Server| {
        let sync = common::sync(s, &bob.token, &format!("?filter={filter}"));
        sync["rooms"]["join"][&room].clone()
    };
    let joined = counts(&s);
    assert_eq!(joined["unread_notifications"]["notification_count"], 2, "{joined}");
    assert_eq!(joined["unread_thread_notifications"][&root]["notification_count"], 2, "{joined}");
    // Reading the thread up to its first reply clears that one only.
    let receipt = |event: &str, thread: &str| {
        let (status, r) = s.post(
            &format!("{V3}/rooms/{}/receipt/m.read/{}", enc(&room), enc(event)),
            Some(&bob.token),
            json!({ "thread_id": thread }),
        );
        assert_eq!(status, 200, "{r}");
    };
    receipt(&r1, &root);
    let joined = counts(&s);
    assert_eq!(joined["unread_thread_notifications"][&root]["notification_count"], 1, "{joined}");
    assert_eq!(joined["unread_notifications"]["notification_count"], 2, "{joined}");
    receipt(&main, "main");
    let joined = counts(&s);
    assert_eq!(joined["unread_notifications"]["notification_count"], 0, "{joined}");
    assert_eq!(joined["unread_thread_notifications"][&root]["notification_count"], 1, "{joined}");
    // Without the filter flag, every notification counts in one figure.
    let plain = common::sync(&s, &bob.token, "");
    assert!(plain["rooms"]["join"][&room].get("unread_thread_notifications").is_none());
    assert_eq!(plain["rooms"]["join"][&room]["unread_notifications"]["notification_count"], 1);
}

#[test]
fn a_thread_summary_shows_the_newest_reply_the_reader_may_see() {
    let s = Server::start();
    let (alice, bob, room) = room_of_two(&s);
    let root = say(&s, &alice.token, &room, "root");
    let seen_by_bob = reply_in_thread(&s, &alice, &room, &root, "while bob is here");
    common::leave(&s, &bob.token, &room);
    let after_leave = reply_in_thread(&s, &alice, &room, &root, "after bob left");
    let for_bob = get_event(&s, &bob, &room, &root);
    let thread = &for_bob["unsigned"]["m.relations"]["m.thread"];
    assert_eq!(thread["latest_event"]["event_id"], json!(seen_by_bob), "{for_bob}");
    let for_alice = get_event(&s, &alice, &room, &root);
    assert_eq!(
        for_alice["unsigned"]["m.relations"]["m.thread"]["latest_event"]["event_id"],
        json!(after_leave)
    );
}
