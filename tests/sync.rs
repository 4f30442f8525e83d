//! `/sync` through the real server: initial and incremental syncs, the
//! long-poll hub waking parked syncs, filters, lazy loading, limited
//! timelines with working `prev_batch`, invites and leaves.

mod common;

use std::time::Duration;

use common::{
    assert_error, bodies, create_room, enc, invite, join, leave, next_batch, parked_line, parks_of,
    send_text, start_debug, sync, wait_for_log, woken_by, Server, V3,
};
use serde_json::{json, Value};

#[test]
fn initial_sync_shows_rooms_and_incremental_sync_only_what_is_new() {
    let s = Server::start();
    let (alice, a, _) = s.register("alice", "pw-alice");
    let room = create_room(&s, &a, json!({ "preset": "public_chat", "name": "Family" }));
    send_text(&s, &a, &room, "t1", "hello");

    let first = sync(&s, &a, "");
    let joined = &first["rooms"]["join"][&room];
    assert_eq!(bodies(&joined["timeline"]["events"]), ["hello"]);
    // The create event starts the timeline, so no state precedes it.
    let timeline = joined["timeline"]["events"].as_array().unwrap();
    assert!(timeline.iter().any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Family"));
    assert!(timeline.iter().all(|e| e.get("room_id").is_none()), "sync events omit room_id");
    assert_eq!(joined["summary"]["m.joined_member_count"], 1);
    assert_eq!(joined["unread_notifications"], json!({ "highlight_count": 0, "notification_count": 0 }));
    let own = timeline.iter().find(|e| e["content"]["body"] == "hello").unwrap();
    assert_eq!(own["sender"], alice.as_str());
    assert_eq!(own["unsigned"]["transaction_id"], "t1", "the sending device sees its txn id");
    assert_eq!(own["unsigned"]["membership"], "join", "the viewer's membership at the event");

    let token = first["next_batch"].as_str().unwrap();
    let nothing = sync(&s, &a, &format!("?since={token}"));
    assert!(nothing["rooms"]["join"].as_object().unwrap().is_empty(), "{nothing}");
    assert_eq!(nothing["next_batch"], token);

    send_text(&s, &a, &room, "t2", "second");
    let next = sync(&s, &a, &format!("?since={token}"));
    assert_eq!(bodies(&next["rooms"]["join"][&room]["timeline"]["events"]), ["second"]);
    assert_eq!(next["rooms"]["join"][&room]["timeline"]["limited"], false);
}

#[test]
fn parked_sync_wakes_with_exactly_the_new_event_then_yields_nothing() {
    let s = start_debug(&[], &[]);
    let (_, a, _) = s.register("alice", "pw-alice");
    let (bob, b, _) = s.register("bob", "pw-bob");
    let room = create_room(&s, &a, json!({ "preset": "public_chat" }));
    join(&s, &b, &room);
    let token = next_batch(&sync(&s, &b, ""));

    let (woken, _) = woken_by(
        &s,
        &bob,
        Duration::from_secs(20),
        || sync(&s, &b, &format!("?since={token}&timeout=20000")),
        || send_text(&s, &a, &room, "w1", "wake up"),
    );
    let events = &woken["rooms"]["join"][&room]["timeline"];
    assert_eq!(bodies(&events["events"]), ["wake up"]);
    assert!(events["events"][0].get("unsigned").and_then(|u| u.get("transaction_id")).is_none());

    let next = woken["next_batch"].as_str().unwrap();
    for _ in 0..2 {
        let again = sync(&s, &b, &format!("?since={next}&timeout=0"));
        assert!(again["rooms"]["join"].as_object().unwrap().is_empty(), "{again}");
        assert_eq!(again["next_batch"], next);
    }
}

#[test]
fn sync_timeout_answers_empty_with_the_same_token() {
    let s = Server::start();
    let (_, a, _) = s.register("alice", "pw-alice");
    create_room(&s, &a, json!({}));
    let token = next_batch(&sync(&s, &a, ""));
    let r = sync(&s, &a, &format!("?since={token}&timeout=300"));
    assert_eq!(r["next_batch"], token.as_str());
    assert!(r["rooms"]["join"].as_object().unwrap().is_empty());
    assert_error(&s.get(&format!("{V3}/sync?since=bogus"), Some(&a)), 400, "M_INVALID_PARAM");
    assert_error(&s.get(&format!("{V3}/sync?timeout=soon"), Some(&a)), 400, "M_INVALID_PARAM");
    assert_error(&s.get(&format!("{V3}/sync"), None), 401, "M_MISSING_TOKEN");
}

#[test]
fn limited_timeline_has_state_and_a_prev_batch_that_pages_back() {
    let s = Server::start();
    let (_, a, _) = s.register("alice", "pw-alice");
    let room = create_room(&s, &a, json!({ "preset": "private_chat", "name": "Kitchen", "topic": "food" }));
    for i in 0..6 {
        send_text(&s, &a, &room, &format!("m{i}"), &format!("msg {i}"));
    }
    let filter = enc(r#"{"room":{"timeline":{"limit":2}}}"#);
    let r = sync(&s, &a, &format!("?filter={filter}"));
    let joined = &r["rooms"]["join"][&room];
    assert_eq!(bodies(&joined["timeline"]["events"]), ["msg 4", "msg 5"]);
    assert_eq!(joined["timeline"]["limited"], true);
    let state: Vec<&str> =
        joined["state"]["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    for t in ["m.room.create", "m.room.member", "m.room.power_levels", "m.room.name", "m.room.topic"] {
        assert!(state.contains(&t), "{t} missing from {state:?}");
    }
    let prev = joined["timeline"]["prev_batch"].as_str().unwrap();
    let (status, page) =
        s.get(&format!("{V3}/rooms/{}/messages?dir=b&limit=3&from={prev}", enc(&room)), Some(&a));
    assert_eq!(status, 200, "{page}");
    let older: Vec<&str> =
        page["chunk"].as_array().unwrap().iter().filter_map(|e| e["content"]["body"].as_str()).collect();
    assert_eq!(older, ["msg 3", "msg 2", "msg 1"]);

    // An incremental sync across a gap larger than the limit is limited too,
    // and its state carries what changed in the gap.
    let token = r["next_batch"].as_str().unwrap();
    let (status, _) = s.put(
        &format!("{V3}/rooms/{}/state/m.room.name/", enc(&room)),
        Some(&a),
        json!({ "name": "Pantry" }),
    );
    assert_eq!(status, 200);
    for i in 0..3 {
        send_text(&s, &a, &room, &format!("n{i}"), &format!("new {i}"));
    }
    let r = sync(&s, &a, &format!("?since={token}&filter={filter}"));
    let joined = &r["rooms"]["join"][&room];
    assert_eq!(bodies(&joined["timeline"]["events"]), ["new 1", "new 2"]);
    assert_eq!(joined["timeline"]["limited"], true);
    let names: Vec<&Value> =
        joined["state"]["events"].as_array().unwrap().iter().filter(|e| e["type"] == "m.room.name").collect();
    assert_eq!(names.len(), 1);
    assert_eq!(names[0]["content"]["name"], "Pantry");
}

#[test]
fn stored_and_inline_filters_and_lazy_loading() {
    let s = Server::start();
    let (alice, a, _) = s.register("alice", "pw-alice");
    let (bob, b, _) = s.register("bob", "pw-bob");
    let (carol, c, _) = s.register("carol", "pw-carol");
    let room = create_room(&s, &a, json!({ "preset": "public_chat" }));
    join(&s, &b, &room);
    join(&s, &c, &room);
    send_text(&s, &b, &room, "b1", "from bob");

    let filter = json!({ "room": { "timeline": { "limit": 1 }, "state": { "lazy_load_members": true } } });
    let (status, made) = s.post(&format!("{V3}/user/{}/filter", enc(&alice)), Some(&a), filter.clone());
    assert_eq!(status, 200, "{made}");
    let id = made["filter_id"].as_str().expect("filter_id is a string").to_owned();
    let (status, got) = s.get(&format!("{V3}/user/{}/filter/{id}", enc(&alice)), Some(&a));
    assert_eq!((status, got), (200, filter));
    assert_error(&s.get(&format!("{V3}/user/{}/filter/{id}", enc(&bob)), Some(&a)), 403, "M_FORBIDDEN");
    assert_error(&s.get(&format!("{V3}/user/{}/filter/999", enc(&alice)), Some(&a)), 404, "M_NOT_FOUND");
    assert_error(
        &s.post(&format!("{V3}/user/{}/filter", enc(&alice)), Some(&a), json!({ "room": 5 })),
        400,
        "M_BAD_JSON",
    );

    let r = sync(&s, &a, &format!("?filter={id}"));
    let joined = &r["rooms"]["join"][&room];
    assert_eq!(bodies(&joined["timeline"]["events"]), ["from bob"]);
    let members: Vec<&str> = joined["state"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.member")
        .map(|e| e["state_key"].as_str().unwrap())
        .collect();
    assert!(members.contains(&bob.as_str()) && members.contains(&alice.as_str()), "{members:?}");
    assert!(!members.contains(&carol.as_str()), "carol sent nothing: {members:?}");
    let _ = c;

    // Inline JSON filters work too; a bad one is refused.
    let inline = enc(r#"{"room":{"timeline":{"types":["m.room.member"]}}}"#);
    let r = sync(&s, &a, &format!("?filter={inline}"));
    assert!(r["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["type"] == "m.room.member"));
    assert_error(&s.get(&format!("{V3}/sync?filter={}", enc("{nope")), Some(&a)), 400, "M_NOT_JSON");
}

#[test]
fn invites_and_leaves_appear_and_a_leaver_stops_seeing_the_room() {
    let s = start_debug(&[], &[]);
    let (_, a, _) = s.register("alice", "pw-alice");
    let (bob, b, _) = s.register("bob", "pw-bob");
    let room = create_room(&s, &a, json!({ "preset": "private_chat", "name": "Secret" }));
    let token = next_batch(&sync(&s, &b, ""));

    let (woken, _) = woken_by(
        &s,
        &bob,
        Duration::from_secs(20),
        || sync(&s, &b, &format!("?since={token}&timeout=20000")),
        || invite(&s, &a, &room, &bob),
    );
    let invite = &woken["rooms"]["invite"][&room]["invite_state"]["events"];
    let events = invite.as_array().expect("invite_state");
    assert!(events.iter().any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Secret"));
    assert!(events.iter().any(|e| e["type"] == "m.room.member" && e["content"]["membership"] == "invite"));
    assert!(events.iter().all(|e| e.get("event_id").is_none()), "stripped state has no event IDs");

    join(&s, &b, &room);
    let token = woken["next_batch"].as_str().unwrap();
    let joined = sync(&s, &b, &format!("?since={token}"));
    let r = &joined["rooms"]["join"][&room];
    assert!(r.is_object(), "the joined room shows up: {joined}");
    let token = joined["next_batch"].as_str().unwrap().to_owned();

    leave(&s, &b, &room);
    send_text(&s, &a, &room, "after", "after bob left");
    let left = sync(&s, &b, &format!("?since={token}"));
    assert!(left["rooms"]["leave"][&room].is_object(), "{left}");
    assert!(left["rooms"]["join"].get(&room).is_none());
    assert!(
        !bodies(&left["rooms"]["leave"][&room]["timeline"]["events"]).contains(&"after bob left".to_owned())
    );
    let token = left["next_batch"].as_str().unwrap();
    send_text(&s, &a, &room, "later", "still talking");
    let later = sync(&s, &b, &format!("?since={token}&timeout=0"));
    assert!(
        later["rooms"]["join"].as_object().unwrap().is_empty()
            && later["rooms"]["leave"].as_object().unwrap().is_empty(),
        "{later}"
    );
}

#[test]
fn many_parked_syncs_do_not_starve_others_and_all_wake() {
    const PARKED: usize = 200;
    let s = start_debug(&[], &[]);
    let (_, a, _) = s.register("alice", "pw-alice");
    let (bob, b, _) = s.register("bob", "pw-bob");
    let room = create_room(&s, &a, json!({ "preset": "public_chat" }));
    join(&s, &b, &room);
    let token = next_batch(&sync(&s, &b, ""));
    let parked = parks_of(&s, &bob);
    std::thread::scope(|scope| {
        let waiters: Vec<_> = (0..PARKED)
            .map(|_| scope.spawn(|| sync(&s, &b, &format!("?since={token}&timeout=30000"))))
            .collect();
        wait_for_log(&s, &parked_line(&bob), parked + PARKED);
        // The pool still serves other requests while they are parked.
        let (status, v) = s.get("/_matrix/client/versions", None);
        assert_eq!(status, 200, "{v}");
        send_text(&s, &a, &room, "fan", "everyone wake");
        for w in waiters {
            let r = w.join().expect("waiter");
            assert_eq!(bodies(&r["rooms"]["join"][&room]["timeline"]["events"]), ["everyone wake"]);
        }
    });
}

#[test]
fn full_state_returns_the_whole_state_on_an_incremental_sync() {
    let s = Server::start();
    let (_, a, _) = s.register("alice", "pw-alice");
    let room = create_room(&s, &a, json!({ "name": "Den" }));
    let token = next_batch(&sync(&s, &a, ""));
    send_text(&s, &a, &room, "x", "x");
    let r = sync(&s, &a, &format!("?since={token}&full_state=true"));
    let state = r["rooms"]["join"][&room]["state"]["events"].as_array().unwrap();
    assert!(state.iter().any(|e| e["type"] == "m.room.name"), "{r}");
    assert!(state.iter().any(|e| e["type"] == "m.room.create"));
}
