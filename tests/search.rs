//! Server-side search over HTTP: `POST /search`, category `room_events`:
//! which events are found (bodies, names, topics; the user's rooms only;
//! history visibility; redactions; encrypted rooms), filters and keys,
//! both orders and their paging, groups, event context with profiles,
//! state, and refusals of malformed requests and hostile search terms.

mod common;

use std::collections::HashSet;

use common::{
    assert_error, create_room, enc, invite, join, leave, room_path, say, set_state, Server, User, V3,
};
use serde_json::{json, Value};

const PW: &str = "search-test-password";

/// `POST /search` with `criteria` as the `room_events` category (and a
/// `next_batch` if given); the status and answer.
fn try_search(s: &Server, who: &User, criteria: Value, next: Option<&str>) -> (u16, Value) {
    let path = match next {
        Some(t) => format!("{V3}/search?next_batch={}", enc(t)),
        None => format!("{V3}/search"),
    };
    s.post(&path, Some(&who.token), json!({ "search_categories": { "room_events": criteria } }))
}

/// `POST /search`, which must answer 200; the `room_events` answer.
#[track_caller]
fn search(s: &Server, who: &User, criteria: Value) -> Value {
    let (status, body) = try_search(s, who, criteria.clone(), None);
    assert_eq!(status, 200, "search {criteria}: {body}");
    body["search_categories"]["room_events"].clone()
}

/// The event IDs of the results, in order.
fn ids(answer: &Value) -> Vec<String> {
    answer["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["result"]["event_id"].as_str().expect("event_id").to_owned())
        .collect()
}

/// Every result of a search, page by page; asserts no page repeats one.
#[track_caller]
fn all_pages(s: &Server, who: &User, criteria: Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut next: Option<String> = None;
    for _ in 0..50 {
        let (status, body) = try_search(s, who, criteria.clone(), next.as_deref());
        assert_eq!(status, 200, "{body}");
        let page = &body["search_categories"]["room_events"];
        for id in ids(page) {
            assert!(!out.contains(&id), "{id} twice");
            out.push(id);
        }
        match page["next_batch"].as_str() {
            Some(t) => next = Some(t.to_owned()),
            None => return out,
        }
    }
    panic!("paging did not end");
}

/// A fresh server with the users Alice and Bob.
fn alice_and_bob() -> (Server, User, User) {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    (s, alice, bob)
}

/// A room with the given history visibility, made by `who`.
fn room_with(s: &Server, who: &User, visibility: &str) -> String {
    create_room(
        s,
        &who.token,
        json!({
            "preset": "public_chat",
            "initial_state": [{
                "type": "m.room.history_visibility", "state_key": "",
                "content": { "history_visibility": visibility },
            }],
        }),
    )
}

#[test]
fn finds_bodies_names_and_topics_in_the_users_rooms_only() {
    let (s, alice, bob) = alice_and_bob();
    let room = create_room(&s, &alice.token, json!({ "name": "Orchard planning", "topic": "Harvest notes" }));
    let msg = say(&s, &alice.token, &room, "The harvest starts on Monday");
    let elsewhere = create_room(&s, &bob.token, json!({}));
    say(&s, &bob.token, &elsewhere, "harvest secrets orchard");

    let got = search(&s, &alice, json!({ "search_term": "HARVEST" }));
    assert_eq!(got["count"], 2, "{got}");
    assert_eq!(got["highlights"], json!(["harvest"]));
    let found = ids(&got);
    assert_eq!(found.len(), 2);
    assert!(found.contains(&msg));
    let types: HashSet<&str> =
        got["results"].as_array().unwrap().iter().map(|r| r["result"]["type"].as_str().unwrap()).collect();
    assert_eq!(types, HashSet::from(["m.room.message", "m.room.topic"]));
    let first = &got["results"][0];
    assert!(first["rank"].as_f64().unwrap() > 0.0, "{first}");
    assert_eq!(first["result"]["room_id"], room.as_str());

    let named = search(&s, &alice, json!({ "search_term": "orchard" }));
    assert_eq!(named["results"].as_array().unwrap().len(), 1, "{named}");
    assert_eq!(named["results"][0]["result"]["type"], "m.room.name");
    assert_eq!(named["results"][0]["result"]["content"]["name"], "Orchard planning");

    // Keys choose the fields: only topics.
    let topics = search(&s, &alice, json!({ "search_term": "harvest", "keys": ["content.topic"] }));
    assert_eq!(topics["results"].as_array().unwrap().len(), 1, "{topics}");
    assert_eq!(topics["results"][0]["result"]["type"], "m.room.topic");
    // Every word must be there.
    assert_eq!(ids(&search(&s, &alice, json!({ "search_term": "harvest monday" }))), [msg.as_str()]);
    assert!(ids(&search(&s, &alice, json!({ "search_term": "harvest tuesday" }))).is_empty());
    // Bob sees his own room's message, not Alice's room.
    let bobs = search(&s, &bob, json!({ "search_term": "harvest" }));
    assert_eq!(bobs["results"].as_array().unwrap().len(), 1, "{bobs}");
    assert_eq!(bobs["results"][0]["result"]["room_id"], elsewhere.as_str());
    assert_eq!(bobs["count"], 1);
    // A user in no room finds nothing.
    let carol = s.user("carol", PW);
    let none = search(&s, &carol, json!({ "search_term": "harvest" }));
    assert_eq!(none["results"], json!([]));
    assert_eq!(none["count"], 0);
    assert!(none.get("next_batch").is_none());
}

#[test]
fn history_visibility_decides_per_event() {
    let (s, alice, bob) = alice_and_bob();
    let joined = room_with(&s, &alice, "joined");
    let shared = room_with(&s, &alice, "shared");
    say(&s, &alice.token, &joined, "kiwi before bob");
    let shared_before = say(&s, &alice.token, &shared, "mango before bob");
    join(&s, &bob.token, &joined);
    join(&s, &bob.token, &shared);
    let during = say(&s, &alice.token, &joined, "kiwi while bob is here");
    leave(&s, &bob.token, &joined);
    say(&s, &alice.token, &joined, "kiwi after bob left");

    // Joined visibility: not before he joined, not after he left.
    assert_eq!(ids(&search(&s, &bob, json!({ "search_term": "kiwi" }))), [during.as_str()]);
    let recent = search(&s, &bob, json!({ "search_term": "kiwi", "order_by": "recent" }));
    assert_eq!(ids(&recent), [during]);
    // Shared visibility: the history before the join is his to read.
    assert_eq!(ids(&search(&s, &bob, json!({ "search_term": "mango" }))), [shared_before]);
    // Alice sees all three.
    assert_eq!(ids(&search(&s, &alice, json!({ "search_term": "kiwi" }))).len(), 3);
}

#[test]
fn redacted_and_encrypted_events_are_not_found() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let room = create_room(&s, &alice.token, json!({}));
    let gone = say(&s, &alice.token, &room, "papaya regret");
    let kept = say(&s, &alice.token, &room, "papaya fine");
    let path = room_path(&room, &format!("redact/{}/r1", enc(&gone)));
    let (status, body) = s.put(&path, Some(&alice.token), json!({}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&search(&s, &alice, json!({ "search_term": "papaya" }))), [kept]);
    assert!(ids(&search(&s, &alice, json!({ "search_term": "regret" }))).is_empty());

    let secret = create_room(
        &s,
        &alice.token,
        json!({ "initial_state": [{
            "type": "m.room.encryption", "state_key": "",
            "content": { "algorithm": "m.megolm.v1.aes-sha2" },
        }]}),
    );
    let (status, body) = s.put(
        &room_path(&secret, "send/m.room.encrypted/e1"),
        Some(&alice.token),
        json!({ "algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgAEnACguava", "sender_key": "k",
                "session_id": "s", "device_id": "D" }),
    );
    assert_eq!(status, 200, "{body}");
    let got = search(&s, &alice, json!({ "search_term": "AwgAEnACguava", "filter": { "rooms": [secret] } }));
    assert_eq!(got["results"], json!([]));
}

#[test]
fn filters_choose_rooms_senders_types_and_limit() {
    let (s, alice, bob) = alice_and_bob();
    let one = create_room(&s, &alice.token, json!({ "preset": "public_chat", "topic": "lemon room" }));
    let two = create_room(&s, &alice.token, json!({ "preset": "public_chat" }));
    join(&s, &bob.token, &one);
    join(&s, &bob.token, &two);
    let a1 = say(&s, &alice.token, &one, "lemon one alice");
    let b1 = say(&s, &bob.token, &one, "lemon one bob");
    let a2 = say(&s, &alice.token, &two, "lemon two alice");

    let set = |v: &Value| ids(v).into_iter().collect::<HashSet<_>>();
    let q = |filter: Value| json!({ "search_term": "lemon", "filter": filter });
    let in_one = search(&s, &alice, q(json!({ "rooms": [one], "types": ["m.room.message"] })));
    assert_eq!(set(&in_one), HashSet::from([a1.clone(), b1.clone()]));
    let not_one = search(&s, &alice, q(json!({ "not_rooms": [one] })));
    assert_eq!(ids(&not_one), [a2.as_str()]);
    let by_bob = search(&s, &alice, q(json!({ "senders": [bob.id] })));
    assert_eq!(ids(&by_bob), [b1.as_str()]);
    let not_bob = search(&s, &alice, q(json!({ "not_senders": [bob.id], "not_types": ["m.room.topic"] })));
    assert_eq!(set(&not_bob), HashSet::from([a1.clone(), a2.clone()]));
    let topics = search(&s, &alice, q(json!({ "types": ["m.room.t*"] })));
    assert_eq!(topics["results"].as_array().unwrap().len(), 1, "{topics}");
    assert_eq!(topics["results"][0]["result"]["type"], "m.room.topic");
    let limited = search(&s, &alice, q(json!({ "limit": 2 })));
    assert_eq!(ids(&limited).len(), 2);
    assert!(limited["next_batch"].is_string(), "{limited}");
    assert_eq!(limited["count"], 4);
    // An ignored user's messages are not found.
    let (status, body) = s.put(
        &format!("{V3}/user/{}/account_data/m.ignored_user_list", enc(&alice.id)),
        Some(&alice.token),
        json!({ "ignored_users": { bob.id.clone(): {} } }),
    );
    assert_eq!(status, 200, "{body}");
    assert!(!ids(&search(&s, &alice, q(json!({})))).contains(&b1));
}

#[test]
fn rank_and_recent_orders_page_without_repeats() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let room = create_room(&s, &alice.token, json!({}));
    let mut sent = Vec::new();
    for i in 0..7 {
        // The later messages say "plum" more often, among fewer words.
        let words = format!("plum {} {}", "plum ".repeat(i), "filler words here ".repeat(7 - i));
        sent.push(say(&s, &alice.token, &room, &words));
    }
    let recent = search(&s, &alice, json!({ "search_term": "plum", "order_by": "recent" }));
    let newest_first: Vec<String> = sent.iter().rev().cloned().collect();
    assert_eq!(ids(&recent), newest_first);
    let ranked = search(&s, &alice, json!({ "search_term": "plum", "order_by": "rank" }));
    let ranks: Vec<f64> =
        ranked["results"].as_array().unwrap().iter().map(|r| r["rank"].as_f64().unwrap()).collect();
    assert!(ranks.windows(2).all(|w| w[0] >= w[1]), "{ranks:?}");
    assert_eq!(ids(&ranked)[0], sent[6], "the densest match first");
    assert_eq!(
        ids(&search(&s, &alice, json!({ "search_term": "plum" }))),
        ids(&ranked),
        "rank is the default"
    );

    for order in ["rank", "recent"] {
        let criteria = json!({ "search_term": "plum", "order_by": order, "filter": { "limit": 2 } });
        let paged = all_pages(&s, &alice, criteria.clone());
        let whole = search(&s, &alice, json!({ "search_term": "plum", "order_by": order }));
        assert_eq!(paged, ids(&whole), "{order}");
        // Messages sent after the first page are left for a new search.
        let first = search(&s, &alice, criteria.clone());
        say(&s, &alice.token, &room, "plum newcomer");
        let token = first["next_batch"].as_str().unwrap();
        let (status, body) = try_search(&s, &alice, criteria.clone(), Some(token));
        assert_eq!(status, 200, "{body}");
        let second = ids(&body["search_categories"]["room_events"]);
        assert!(
            second.iter().all(|id| !ids(&first).contains(id) && sent.contains(id)),
            "{order}: {second:?}"
        );
        // A token of the other order, or of nothing, is refused.
        let other = if order == "rank" { "recent" } else { "rank" };
        let wrong = json!({ "search_term": "plum", "order_by": other });
        assert_error(&try_search(&s, &alice, wrong, Some(token)), 400, "M_INVALID_PARAM");
    }
    for junk in ["nonsense", "", "%%"] {
        assert_error(
            &try_search(&s, &alice, json!({ "search_term": "plum" }), Some(junk)),
            400,
            "M_INVALID_PARAM",
        );
    }
}

#[test]
fn groups_by_room_and_sender_with_their_own_paging() {
    let (s, alice, bob) = alice_and_bob();
    let one = create_room(&s, &alice.token, json!({ "preset": "public_chat" }));
    let two = create_room(&s, &alice.token, json!({ "preset": "public_chat" }));
    join(&s, &bob.token, &one);
    let mut in_one = Vec::new();
    for i in 0..3 {
        in_one.push(say(&s, &alice.token, &one, &format!("grape {i}")));
    }
    in_one.push(say(&s, &bob.token, &one, "grape from bob"));
    let in_two = say(&s, &alice.token, &two, "grape two");

    let criteria = json!({
        "search_term": "grape", "order_by": "recent", "filter": { "limit": 3 },
        "groupings": { "group_by": [{ "key": "room_id" }, { "key": "sender" }] },
    });
    let got = search(&s, &alice, criteria.clone());
    let page = ids(&got);
    assert_eq!(page, [in_two.clone(), in_one[3].clone(), in_one[2].clone()]);
    let rooms = &got["groups"]["room_id"];
    assert_eq!(rooms[&two]["results"], json!([in_two]));
    assert_eq!(rooms[&two]["order"], 1);
    assert_eq!(rooms[&one]["results"], json!([in_one[3], in_one[2]]));
    assert_eq!(rooms[&one]["order"], 2);
    let senders = &got["groups"]["sender"];
    assert_eq!(senders[&bob.id]["results"], json!([in_one[3]]));
    assert_eq!(senders[&alice.id]["results"], json!([in_two, in_one[2]]));
    // Room one's token goes on in room one alone.
    let token = rooms[&one]["next_batch"].as_str().expect("a group next_batch");
    let (status, body) = try_search(&s, &alice, criteria.clone(), Some(token));
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body["search_categories"]["room_events"]), [in_one[1].clone(), in_one[0].clone()]);
    // Bob's goes on with Bob's messages: there are no more.
    let token = senders[&bob.id]["next_batch"].as_str().expect("a group next_batch");
    let (status, body) = try_search(&s, &alice, criteria, Some(token));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["search_categories"]["room_events"]["results"], json!([]));
}

#[test]
fn event_context_profiles_and_state() {
    let (s, alice, bob) = alice_and_bob();
    let room = create_room(&s, &alice.token, json!({ "preset": "public_chat", "name": "Fruit" }));
    join(&s, &bob.token, &room);
    set_state(
        &s,
        &bob.token,
        &room,
        "m.room.member",
        &bob.id,
        json!({ "membership": "join", "displayname": "Bobby" }),
    );
    let b1 = say(&s, &alice.token, &room, "before one");
    let b2 = say(&s, &bob.token, &room, "before two");
    let hit = say(&s, &alice.token, &room, "the quince result");
    let a1 = say(&s, &bob.token, &room, "after one");
    set_state(
        &s,
        &alice.token,
        &room,
        "m.room.member",
        &alice.id,
        json!({ "membership": "join", "displayname": "Alice Later", "avatar_url": "mxc://x/y" }),
    );

    let got = search(
        &s,
        &alice,
        json!({
            "search_term": "quince", "include_state": true,
            "event_context": { "before_limit": 2, "after_limit": 1, "include_profile": true },
        }),
    );
    let result = &got["results"][0];
    assert_eq!(result["result"]["event_id"], hit.as_str());
    let ctx = &result["context"];
    let before: Vec<&str> =
        ctx["events_before"].as_array().unwrap().iter().map(|e| e["event_id"].as_str().unwrap()).collect();
    assert_eq!(before, [b2.as_str(), b1.as_str()], "newest first, as /context gives them");
    let after: Vec<&str> =
        ctx["events_after"].as_array().unwrap().iter().map(|e| e["event_id"].as_str().unwrap()).collect();
    assert_eq!(after, [a1.as_str()]);
    // Profiles as of the last event shown, not Alice's later rename.
    assert_eq!(ctx["profile_info"][&bob.id]["displayname"], "Bobby");
    assert_eq!(ctx["profile_info"][&alice.id]["displayname"], "alice");
    assert!(ctx["profile_info"][&alice.id].get("avatar_url").is_none());
    // The tokens work with /messages: backwards from start comes b1's predecessor, forwards from end the rename.
    let start = ctx["start"].as_str().unwrap();
    let end = ctx["end"].as_str().unwrap();
    let (status, back) =
        s.get(&room_path(&room, &format!("messages?dir=b&limit=1&from={}", enc(start))), Some(&alice.token));
    assert_eq!(status, 200, "{back}");
    assert_ne!(back["chunk"][0]["event_id"], b1.as_str());
    let (status, fwd) =
        s.get(&room_path(&room, &format!("messages?dir=f&limit=1&from={}", enc(end))), Some(&alice.token));
    assert_eq!(status, 200, "{fwd}");
    assert_eq!(fwd["chunk"][0]["content"]["displayname"], "Alice Later");
    // The current state of the room.
    let state = got["state"][&room].as_array().expect("state of the room");
    assert!(state.iter().any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Fruit"));
    assert!(state
        .iter()
        .any(|e| e["type"] == "m.room.member" && e["content"]["displayname"] == "Alice Later"));
    assert_eq!(got["state"].as_object().unwrap().len(), 1);
    // Without asking: no context, no state.
    let plain = search(&s, &alice, json!({ "search_term": "quince" }));
    assert!(plain["results"][0].get("context").is_none());
    assert!(plain.get("state").is_none());

    // A user who left sees the state as it was when they left.
    leave(&s, &bob.token, &room);
    set_state(&s, &alice.token, &room, "m.room.name", "", json!({ "name": "Renamed" }));
    let bobs = search(&s, &bob, json!({ "search_term": "quince", "include_state": true }));
    let state = bobs["state"][&room].as_array().expect("state");
    assert!(state.iter().any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Fruit"), "{state:?}");
    // And an invited user with no history sees no results and no state.
    let carol = s.user("carol", PW);
    invite(&s, &alice.token, &room, &carol.id);
    let carols = search(&s, &carol, json!({ "search_term": "quince", "include_state": true }));
    assert_eq!(carols["results"], json!([]));
}

#[test]
fn hostile_terms_and_malformed_requests_are_refused_cleanly() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let room = create_room(&s, &alice.token, json!({}));
    let msg = say(&s, &alice.token, &room, "Café naïve AND \"quoted\" NEAR stars* -minus 日本語");
    for term in [
        "\"",
        "\"\"\"",
        "*",
        "a*",
        "NEAR(",
        "NEAR(a b)",
        "-",
        "-minus",
        "AND",
        "OR",
        "NOT",
        "text:cafe",
        "^cafe",
        "(",
        ")",
        "{",
        "",
        "   ",
        "\u{0}",
        "🍐",
        "e\u{301}",
    ] {
        let (status, body) = try_search(&s, &alice, json!({ "search_term": term }), None);
        assert_eq!(status, 200, "{term:?}: {body}");
    }
    for (term, found) in [
        ("cafe", true),
        ("NAIVE", true),
        ("\"quoted\"", true),
        ("stars*", true),
        ("and", true),
        ("日本語", true),
        ("caf", false),
    ] {
        let got = ids(&search(&s, &alice, json!({ "search_term": term })));
        assert_eq!(got.contains(&msg), found, "{term:?}");
    }
    assert_error(
        &try_search(&s, &alice, json!({ "search_term": "x".repeat(10_000) }), None),
        400,
        "M_INVALID_PARAM",
    );

    let post = |body: Value| s.post(&format!("{V3}/search"), Some(&alice.token), body);
    assert_error(&post(json!({})), 400, "M_BAD_JSON");
    assert_error(&post(json!({ "search_categories": [] })), 400, "M_BAD_JSON");
    assert_error(&post(json!([1])), 400, "M_BAD_JSON");
    for criteria in [
        json!({}),
        json!("cafe"),
        json!({ "search_term": 1 }),
        json!({ "search_term": "cafe", "keys": "content.body" }),
        json!({ "search_term": "cafe", "filter": [] }),
        json!({ "search_term": "cafe", "filter": { "senders": "x" } }),
        json!({ "search_term": "cafe", "event_context": { "before_limit": true } }),
        json!({ "search_term": "cafe", "include_state": 1 }),
        json!({ "search_term": "cafe", "groupings": [] }),
    ] {
        assert_error(&try_search(&s, &alice, criteria, None), 400, "M_BAD_JSON");
    }
    for criteria in [
        json!({ "search_term": "cafe", "order_by": "alphabetical" }),
        json!({ "search_term": "cafe", "keys": ["content.url"] }),
        json!({ "search_term": "cafe", "groupings": { "group_by": [{ "key": "type" }] } }),
        json!({ "search_term": "cafe", "filter": { "rooms": ["not a room"] } }),
    ] {
        assert_error(&try_search(&s, &alice, criteria, None), 400, "M_INVALID_PARAM");
    }
    let auth = format!("Bearer {}", alice.token);
    let reply = s.raw("POST", &format!("{V3}/search"), &[("Authorization", &auth)], Some(b"{not json"));
    assert_eq!((reply.status, &reply.json["errcode"]), (400, &json!("M_NOT_JSON")), "{reply:?}");
    // Other categories are none of this server's: an empty answer.
    let (status, body) = post(json!({ "search_categories": { "people": { "search_term": "x" } } }));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({ "search_categories": {} }));
    // No token, no search.
    assert_error(
        &s.post(&format!("{V3}/search"), None, json!({ "search_categories": {} })),
        401,
        "M_MISSING_TOKEN",
    );
}

#[test]
fn results_carry_bundled_aggregations() {
    let (s, alice, _) = alice_and_bob();
    let room = create_room(&s, &alice.token, json!({}));
    let original = say(&s, &alice.token, &room, "apricot typo");
    let edit = common::send_message(
        &s,
        &alice.token,
        &room,
        json!({
            "msgtype": "m.text", "body": "* apricot fixed",
            "m.new_content": { "msgtype": "m.text", "body": "apricot fixed" },
            "m.relates_to": { "rel_type": "m.replace", "event_id": original },
        }),
    );
    let got = search(&s, &alice, json!({ "search_term": "typo" }));
    let result = &got["results"][0]["result"];
    assert_eq!(result["event_id"], original.as_str(), "{got}");
    assert_eq!(result["unsigned"]["m.relations"]["m.replace"]["event_id"], edit.as_str(), "{result}");
}
