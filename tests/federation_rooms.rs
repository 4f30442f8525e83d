//! Rooms over federation between two Hearth servers on the test bed
//! (`common::fed`): joins both ways (by room ID with `via`, by alias),
//! messages both ways in the same order, invites accepted and rejected,
//! leaves, kicks and bans, a topic change seen on both sides.

mod common;

use common::ca::TestCa;
use common::fed::Peer;
use common::{create_room, enc, say, set_state, wait_until, TempDir, User, V3};
use serde_json::{json, Value};

const PW: &str = "federation-rooms-password";

fn two() -> (TempDir, TestCa, Peer, Peer) {
    let dir = TempDir::new();
    let ca = TestCa::new(dir.path());
    let a = Peer::start(&ca, &[], &[]);
    let b = Peer::start(&ca, &[], &[]);
    (dir, ca, a, b)
}

/// The bodies of the room's messages as `who` reads them back (`/messages`
/// from the end, put in order oldest first).
fn messages(p: &Peer, who: &User, room: &str) -> Vec<String> {
    let path = format!("{V3}/rooms/{}/messages?dir=b&limit=100", enc(room));
    let (status, r) = p.server.get(&path, Some(&who.token));
    if status != 200 {
        return Vec::new();
    }
    let mut out: Vec<String> = r["chunk"]
        .as_array()
        .map(|c| c.iter().filter_map(|e| e["content"]["body"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    out.reverse();
    out
}

fn members(p: &Peer, who: &User, room: &str) -> Value {
    let (status, r) = p.server.get(&format!("{V3}/rooms/{}/joined_members", enc(room)), Some(&who.token));
    assert_eq!(status, 200, "{r}");
    r["joined"].clone()
}

fn membership_of(p: &Peer, who: &User, room: &str, user: &str) -> Option<String> {
    let path = format!("{V3}/rooms/{}/state/m.room.member/{}", enc(room), enc(user));
    let (status, r) = p.server.get(&path, Some(&who.token));
    (status == 200).then(|| r["membership"].as_str().unwrap_or_default().to_owned())
}

fn join_via(p: &Peer, who: &User, room: &str, via: &str) -> (u16, Value) {
    p.server.post(&format!("{V3}/join/{}?via={}", enc(room), enc(via)), Some(&who.token), json!({}))
}

/// `bob` of `b` joins `room` of `a` through `a`, and `alice` there sees it.
fn join_seen(a: &Peer, alice: &User, b: &Peer, bob: &User, room: &str) {
    let (status, r) = join_via(b, bob, room, &a.name);
    assert_eq!(status, 200, "{r}");
    wait_until(&a.server, "bob joined", || membership_of(a, alice, room, &bob.id).as_deref() == Some("join"));
}

#[test]
fn a_user_joins_a_room_on_another_server_and_both_talk() {
    let (_dir, _ca, a, b) = two();
    let alice = a.server.user("alice", PW);
    let bob = b.server.user("bob", PW);
    let room = create_room(&a.server, &alice.token, json!({ "preset": "public_chat", "name": "Family" }));
    say(&a.server, &alice.token, &room, "before bob");

    let (status, r) = join_via(&b, &bob, &room, &a.name);
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["room_id"], room.as_str());

    // Both servers know both members.
    let on_a = members(&a, &alice, &room);
    let on_b = members(&b, &bob, &room);
    assert!(on_b.get(&alice.id).is_some() && on_b.get(&bob.id).is_some(), "{on_b}");
    wait_until(&a.server, "bob's join reaches a", || members(&a, &alice, &room).get(&bob.id).is_some());
    assert!(on_a.get(&alice.id).is_some());
    // The room's name came with the state.
    let (status, name) =
        b.server.get(&format!("{V3}/rooms/{}/state/m.room.name", enc(&room)), Some(&bob.token));
    assert_eq!((status, name["name"].as_str()), (200, Some("Family")));

    // Messages both ways, in the same order on both servers.
    say(&b.server, &bob.token, &room, "hello from b");
    wait_until(&a.server, "b's message reaches a", || {
        messages(&a, &alice, &room).contains(&"hello from b".into())
    });
    say(&a.server, &alice.token, &room, "hello from a");
    wait_until(&b.server, "a's message reaches b", || {
        messages(&b, &bob, &room).contains(&"hello from a".into())
    });
    say(&b.server, &bob.token, &room, "and again");
    wait_until(&a.server, "the third message reaches a", || {
        messages(&a, &alice, &room).contains(&"and again".into())
    });
    let seen_a = messages(&a, &alice, &room);
    let seen_b = messages(&b, &bob, &room);
    let tail = |v: &[String]| v.iter().filter(|m| m.as_str() != "before bob").cloned().collect::<Vec<_>>();
    assert_eq!(tail(&seen_a), vec!["hello from b", "hello from a", "and again"], "{seen_a:?}");
    assert_eq!(tail(&seen_b), tail(&seen_a), "both servers have the same history since the join");

    // A state change on either side is the same on both.
    let path = format!("{V3}/rooms/{}/state/m.room.topic/", enc(&room));
    let (status, r) = b.server.put(&path, Some(&bob.token), json!({ "topic": "from b" }));
    assert_eq!(status, 403, "bob has no power to set the topic in a public_chat room: {r}");
    let topic = |p: &Peer, who: &User| {
        let (_, r) = p.server.get(&format!("{V3}/rooms/{}/state/m.room.topic", enc(&room)), Some(&who.token));
        r["topic"].as_str().map(str::to_owned)
    };
    assert_eq!(topic(&b, &bob), None);
    set_state(&a.server, &alice.token, &room, "m.room.topic", "", json!({ "topic": "from a" }));
    wait_until(&b.server, "the topic reaches b", || topic(&b, &bob).as_deref() == Some("from a"));

    // Bob leaves: both servers see it.
    let (status, r) = b.server.post(&format!("{V3}/rooms/{}/leave", enc(&room)), Some(&bob.token), json!({}));
    assert_eq!(status, 200, "{r}");
    wait_until(&a.server, "bob's leave reaches a", || {
        membership_of(&a, &alice, &room, &bob.id).as_deref() == Some("leave")
    });
}

fn invite(p: &Peer, who: &User, room: &str, user: &str) -> (u16, Value) {
    p.server.post(&format!("{V3}/rooms/{}/invite", enc(room)), Some(&who.token), json!({ "user_id": user }))
}

/// The invited rooms of an initial sync, with their stripped state.
fn invites(p: &Peer, who: &User) -> Value {
    common::sync(&p.server, &who.token, "")["rooms"]["invite"].clone()
}

#[test]
fn invites_across_servers_are_accepted_and_rejected() {
    let (_dir, _ca, a, b) = two();
    let alice = a.server.user("alice", PW);
    let bob = b.server.user("bob", PW);
    let carol = b.server.user("carol", PW);
    let room = create_room(&a.server, &alice.token, json!({ "preset": "private_chat", "name": "Private" }));

    // A stranger cannot join an invite-only room through its server.
    let (status, r) = join_via(&b, &bob, &room, &a.name);
    assert_eq!(status, 403, "{r}");
    assert_eq!(r["errcode"], "M_FORBIDDEN");

    // Bob is invited: his server co-signs, the invite shows in his sync
    // with the room's stripped state.
    let (status, r) = invite(&a, &alice, &room, &bob.id);
    assert_eq!(status, 200, "{r}");
    let pending = invites(&b, &bob);
    let state = pending[&room]["invite_state"]["events"].as_array().cloned().unwrap_or_default();
    assert!(
        state.iter().any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Private"),
        "{pending}"
    );
    assert!(
        state.iter().any(|e| e["type"] == "m.room.member"
            && e["state_key"] == bob.id.as_str()
            && e["content"]["membership"] == "invite"),
        "{pending}"
    );
    assert_eq!(membership_of(&a, &alice, &room, &bob.id).as_deref(), Some("invite"));

    // He accepts without naming a server: the inviter's is used.
    let (status, r) = b.server.post(&format!("{V3}/rooms/{}/join", enc(&room)), Some(&bob.token), json!({}));
    assert_eq!(status, 200, "{r}");
    wait_until(&a.server, "bob's join reaches a", || {
        membership_of(&a, &alice, &room, &bob.id).as_deref() == Some("join")
    });
    assert!(invites(&b, &bob).get(&room).is_none());

    // Carol, on the same server as Bob (now in the room), is invited and
    // rejects: Bob's server is in the room, so it is a local leave there.
    let (status, r) = invite(&a, &alice, &room, &carol.id);
    assert_eq!(status, 200, "{r}");
    wait_until(&b.server, "carol's invite reaches b", || invites(&b, &carol).get(&room).is_some());
    let (status, r) =
        b.server.post(&format!("{V3}/rooms/{}/leave", enc(&room)), Some(&carol.token), json!({}));
    assert_eq!(status, 200, "{r}");
    wait_until(&a.server, "carol's rejection reaches a", || {
        membership_of(&a, &alice, &room, &carol.id).as_deref() == Some("leave")
    });
}

#[test]
fn an_invite_to_a_server_with_no_one_in_the_room_is_rejected_through_the_inviter() {
    let (_dir, _ca, a, b) = two();
    let alice = a.server.user("alice", PW);
    let dave = b.server.user("dave", PW);
    let room = create_room(&a.server, &alice.token, json!({ "preset": "private_chat" }));
    let (status, r) = invite(&a, &alice, &room, &dave.id);
    assert_eq!(status, 200, "{r}");
    assert!(invites(&b, &dave).get(&room).is_some());
    let (status, r) =
        b.server.post(&format!("{V3}/rooms/{}/leave", enc(&room)), Some(&dave.token), json!({}));
    assert_eq!(status, 200, "{r}");
    assert_eq!(membership_of(&a, &alice, &room, &dave.id).as_deref(), Some("leave"));
    assert!(invites(&b, &dave).get(&room).is_none(), "the rejected invite is gone from dave's sync");
    // Inviting a user who does not exist is refused by their server.
    let (status, r) = invite(&a, &alice, &room, &format!("@nobody:{}", b.name));
    assert_eq!(status, 404, "{r}");
}

#[test]
fn kicks_and_bans_of_remote_users_and_joins_by_alias_both_ways() {
    let (_dir, _ca, a, b) = two();
    let alice = a.server.user("alice", PW);
    let bob = b.server.user("bob", PW);
    let room =
        create_room(&a.server, &alice.token, json!({ "preset": "public_chat", "room_alias_name": "family" }));
    let alias = format!("#family:{}", a.name);
    let (status, r) = b.server.post(&format!("{V3}/join/{}", enc(&alias)), Some(&bob.token), json!({}));
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["room_id"], room.as_str());
    wait_until(&a.server, "bob joined", || {
        membership_of(&a, &alice, &room, &bob.id).as_deref() == Some("join")
    });

    // Kicked: his own server learns it.
    let (status, r) = a.server.post(
        &format!("{V3}/rooms/{}/kick", enc(&room)),
        Some(&alice.token),
        json!({ "user_id": bob.id, "reason": "tidy up" }),
    );
    assert_eq!(status, 200, "{r}");
    wait_until(&b.server, "the kick reaches b", || {
        membership_of(&b, &bob, &room, &bob.id).as_deref() == Some("leave")
    });
    // He rejoins, then is banned: the rejoin after that is refused.
    let (status, r) = join_via(&b, &bob, &room, &a.name);
    assert_eq!(status, 200, "{r}");
    wait_until(&a.server, "bob rejoined", || {
        membership_of(&a, &alice, &room, &bob.id).as_deref() == Some("join")
    });
    let (status, r) = a.server.post(
        &format!("{V3}/rooms/{}/ban", enc(&room)),
        Some(&alice.token),
        json!({ "user_id": bob.id }),
    );
    assert_eq!(status, 200, "{r}");
    wait_until(&b.server, "the ban reaches b", || {
        membership_of(&b, &bob, &room, &bob.id).as_deref() == Some("ban")
    });
    let (status, r) = join_via(&b, &bob, &room, &a.name);
    assert_eq!(status, 403, "a banned user cannot rejoin: {r}");

    // The other way: a room on B joined from A by its alias.
    let other =
        create_room(&b.server, &bob.token, json!({ "preset": "public_chat", "room_alias_name": "bobs" }));
    let (status, r) = a.server.post(
        &format!("{V3}/join/{}", enc(&format!("#bobs:{}", b.name))),
        Some(&alice.token),
        json!({}),
    );
    assert_eq!(status, 200, "{r}");
    say(&a.server, &alice.token, &other, "hi bob");
    wait_until(&b.server, "alice's message reaches b", || {
        messages(&b, &bob, &other).contains(&"hi bob".into())
    });
}

#[test]
fn a_server_that_was_down_catches_up() {
    let (_dir, _ca, a, mut b) = two();
    let alice = a.server.user("alice", PW);
    let bob = b.server.user("bob", PW);
    let room = create_room(&a.server, &alice.token, json!({ "preset": "public_chat" }));
    join_seen(&a, &alice, &b, &bob, &room);
    b.server.kill9();
    for i in 0..5 {
        say(&a.server, &alice.token, &room, &format!("while b was down {i}"));
    }
    b.server.restart();
    let want: Vec<String> = (0..5).map(|i| format!("while b was down {i}")).collect();
    wait_until(&b.server, "b catches up", || {
        let seen = messages(&b, &bob, &room);
        want.iter().all(|m| seen.contains(m))
    });
    let seen: Vec<String> =
        messages(&b, &bob, &room).into_iter().filter(|m| m.starts_with("while")).collect();
    assert_eq!(seen, want, "in order, once each");
}

#[test]
fn a_knock_across_servers_is_seen_and_answered_with_an_invite() {
    let (_dir, _ca, a, b) = two();
    let alice = a.server.user("alice", PW);
    let bob = b.server.user("bob", PW);
    let room =
        create_room(&a.server, &alice.token, json!({ "preset": "private_chat", "name": "Knock here" }));
    set_state(&a.server, &alice.token, &room, "m.room.join_rules", "", json!({ "join_rule": "knock" }));
    let (status, r) = b.server.post(
        &format!("{V3}/knock/{}?via={}", enc(&room), enc(&a.name)),
        Some(&bob.token),
        json!({ "reason": "let me in" }),
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(membership_of(&a, &alice, &room, &bob.id).as_deref(), Some("knock"));
    let knocked = common::sync(&b.server, &bob.token, "")["rooms"]["knock"][&room].clone();
    let state = knocked["knock_state"]["events"].as_array().cloned().unwrap_or_default();
    assert!(
        state.iter().any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Knock here"),
        "{knocked}"
    );
    let (status, r) = invite(&a, &alice, &room, &bob.id);
    assert_eq!(status, 200, "{r}");
    let (status, r) = b.server.post(&format!("{V3}/rooms/{}/join", enc(&room)), Some(&bob.token), json!({}));
    assert_eq!(status, 200, "{r}");
    wait_until(&a.server, "bob joined", || {
        membership_of(&a, &alice, &room, &bob.id).as_deref() == Some("join")
    });
}

fn topic_of(p: &Peer, who: &User, room: &str) -> Option<String> {
    let (_, r) = p.server.get(&format!("{V3}/rooms/{}/state/m.room.topic", enc(room)), Some(&who.token));
    r["topic"].as_str().map(str::to_owned)
}

/// The room's state as `(type, state_key, event_id)`, sorted.
fn state_ids(p: &Peer, who: &User, room: &str) -> Vec<(String, String, String)> {
    let (status, r) = p.server.get(&format!("{V3}/rooms/{}/state", enc(room)), Some(&who.token));
    assert_eq!(status, 200, "{r}");
    let mut out: Vec<(String, String, String)> = r
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            (s("type"), s("state_key"), s("event_id"))
        })
        .collect();
    out.sort();
    out
}

/// Both sides talk and change the topic while they cannot reach each
/// other; once they can, each fills the gap from the other's next event
/// (`get_missing_events`), both have both histories, and the state they
/// resolve is the same.
#[test]
fn a_partition_heals_into_one_history_and_one_state() {
    let (_dir, _ca, a, mut b) = two();
    let alice = a.server.user("alice", PW);
    let bob = b.server.user("bob", PW);
    let room = create_room(
        &a.server,
        &alice.token,
        json!({ "preset": "public_chat", "power_level_content_override": { "events": { "m.room.topic": 0 } } }),
    );
    join_seen(&a, &alice, &b, &bob, &room);

    // The partition: B talks to no one (it refuses A and drops what it
    // would send A); A's transactions to B are refused and dropped.
    b.server.restart_with(&["--federation-domain-allowlist", "nowhere.invalid"]);
    for i in 0..3 {
        say(&a.server, &alice.token, &room, &format!("a{i}"));
        say(&b.server, &bob.token, &room, &format!("b{i}"));
    }
    set_state(&a.server, &alice.token, &room, "m.room.topic", "", json!({ "topic": "side a" }));
    set_state(&b.server, &bob.token, &room, "m.room.topic", "", json!({ "topic": "side b" }));
    assert_eq!(topic_of(&a, &alice, &room).as_deref(), Some("side a"));
    assert_eq!(topic_of(&b, &bob, &room).as_deref(), Some("side b"));

    // Healed: the next event of each side brings the other's gap along.
    b.server.restart_with(&[]);
    say(&a.server, &alice.token, &room, "a after");
    say(&b.server, &bob.token, &room, "b after");
    let all = |p: &Peer, who: &User| {
        let seen = messages(p, who, &room);
        ["a0", "a1", "a2", "b0", "b1", "b2", "a after", "b after"]
            .iter()
            .all(|m| seen.contains(&m.to_string()))
    };
    wait_until(&a.server, "a has both histories", || all(&a, &alice));
    wait_until(&b.server, "b has both histories", || all(&b, &bob));
    for (p, who) in [(&a, &alice), (&b, &bob)] {
        let seen = messages(p, who, &room);
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), seen.len(), "no message twice: {seen:?}");
    }
    wait_until(&a.server, "one state on both sides", || {
        state_ids(&a, &alice, &room) == state_ids(&b, &bob, &room)
    });
    let topic = topic_of(&a, &alice, &room);
    assert!(matches!(topic.as_deref(), Some("side a" | "side b")), "{topic:?}");
    assert_eq!(topic_of(&b, &bob, &room), topic);
}

/// A remote event wakes a parked sync and counts as unread, as a local
/// one does.
#[test]
fn remote_events_wake_parked_syncs_and_count_as_unread() {
    let (_dir, _ca, a, b) = two();
    let alice = a.server.user("alice", PW);
    let bob = b.server.user("bob", PW);
    let room = create_room(&a.server, &alice.token, json!({ "preset": "public_chat" }));
    join_seen(&a, &alice, &b, &bob, &room);
    let since = common::next_batch(&common::sync(&a.server, &alice.token, ""));
    let parked = std::thread::scope(|scope| {
        let waiting =
            scope.spawn(|| common::sync(&a.server, &alice.token, &format!("?since={since}&timeout=20000")));
        say(&b.server, &bob.token, &room, "wake up");
        waiting.join().expect("the parked sync")
    });
    let events = common::timeline(&parked, &room);
    assert!(events.iter().any(|e| e["content"]["body"] == "wake up"), "{parked}");
    let unread = &parked["rooms"]["join"][&room]["unread_notifications"]["notification_count"];
    assert!(unread.as_u64().is_some_and(|n| n >= 1), "{parked}");
}

/// A restricted room (v10+): a remote user joined to the room its rule
/// names joins without an invite, authorised by the resident server
/// (`join_authorised_via_users_server`, co-signed); one who is not is
/// refused.
#[test]
fn a_restricted_room_is_joined_through_membership_of_another() {
    let (_dir, _ca, a, b) = two();
    let alice = a.server.user("alice", PW);
    let bob = b.server.user("bob", PW);
    let carol = b.server.user("carol", PW);
    let space = create_room(&a.server, &alice.token, json!({ "preset": "public_chat" }));
    let room = create_room(&a.server, &alice.token, json!({ "preset": "private_chat" }));
    set_state(
        &a.server,
        &alice.token,
        &room,
        "m.room.join_rules",
        "",
        json!({ "join_rule": "restricted", "allow": [{ "type": "m.room_membership", "room_id": space }] }),
    );
    let (status, r) = join_via(&b, &carol, &room, &a.name);
    assert_eq!(status, 403, "not in the space: {r}");
    let (status, r) = join_via(&b, &bob, &space, &a.name);
    assert_eq!(status, 200, "{r}");
    wait_until(&a.server, "bob in the space", || {
        membership_of(&a, &alice, &space, &bob.id).as_deref() == Some("join")
    });
    let (status, r) = join_via(&b, &bob, &room, &a.name);
    assert_eq!(status, 200, "in the space: {r}");
    let path = format!("{V3}/rooms/{}/state/m.room.member/{}", enc(&room), enc(&bob.id));
    let (status, member) = a.server.get(&path, Some(&alice.token));
    assert_eq!(status, 200, "{member}");
    assert_eq!(member["join_authorised_via_users_server"], alice.id.as_str(), "{member}");
    say(&b.server, &bob.token, &room, "in through the space");
    wait_until(&a.server, "bob's message", || {
        messages(&a, &alice, &room).contains(&"in through the space".into())
    });
}

/// A resident server that cannot sign a restricted join says why, with
/// the spec's two codes, and the joining server passes it on.
#[test]
fn a_server_that_cannot_authorise_a_restricted_join_says_why() {
    let (_dir, _ca, a, b) = two();
    let alice = a.server.user("alice", PW);
    let dave = a.server.user("dave", PW);
    let bob = b.server.user("bob", PW);
    let restrict = |room: &str, to: &str| {
        set_state(
            &a.server,
            &alice.token,
            room,
            "m.room.join_rules",
            "",
            json!({ "join_rule": "restricted", "allow": [{ "type": "m.room_membership", "room_id": to }] }),
        );
    };
    // Restricted to a room of B's that A is not in: A cannot check.
    let elsewhere = create_room(&b.server, &bob.token, json!({ "preset": "public_chat" }));
    let room = create_room(&a.server, &alice.token, json!({ "preset": "private_chat" }));
    restrict(&room, &elsewhere);
    let (status, r) = join_via(&b, &bob, &room, &a.name);
    assert_eq!((status, r["errcode"].as_str()), (400, Some("M_UNABLE_TO_AUTHORISE_JOIN")), "{r}");
    assert_eq!(membership_of(&a, &alice, &room, &bob.id), None, "nothing entered the room");
    // Restricted to a space bob is in, but the only member left on A may
    // not invite: A cannot grant the join.
    let space = create_room(&a.server, &alice.token, json!({ "preset": "public_chat" }));
    let (status, r) = join_via(&b, &bob, &space, &a.name);
    assert_eq!(status, 200, "{r}");
    wait_until(&a.server, "bob in the space", || {
        membership_of(&a, &alice, &space, &bob.id).as_deref() == Some("join")
    });
    let second = create_room(&a.server, &alice.token, json!({ "preset": "private_chat" }));
    common::invite(&a.server, &alice.token, &second, &dave.id);
    common::join(&a.server, &dave.token, &second);
    let path = format!("{V3}/rooms/{}/state/m.room.power_levels/", enc(&second));
    let (status, mut levels) = a.server.get(&path, Some(&alice.token));
    assert_eq!(status, 200, "{levels}");
    levels["invite"] = json!(50);
    let (status, r) = a.server.put(&path, Some(&alice.token), levels);
    assert_eq!(status, 200, "{r}");
    restrict(&second, &space);
    common::leave(&a.server, &alice.token, &second);
    let (status, r) = join_via(&b, &bob, &second, &a.name);
    assert_eq!((status, r["errcode"].as_str()), (400, Some("M_UNABLE_TO_GRANT_JOIN")), "{r}");
    assert_eq!(membership_of(&a, &dave, &second, &bob.id), None, "nothing entered the room");
}

/// `who`'s view of the room's messages paged from `from` (the end if
/// empty) in `dir`, `limit` at a time, through `/messages` tokens: the
/// bodies in the order served.
fn page_messages(p: &Peer, who: &User, room: &str, dir: &str, from: &str, limit: usize) -> Vec<String> {
    let filter = enc(&json!({ "types": ["m.room.message"] }).to_string());
    let mut out = Vec::new();
    let mut from = from.to_owned();
    for _ in 0..100 {
        let at = if from.is_empty() { String::new() } else { format!("&from={}", enc(&from)) };
        let path = format!("{V3}/rooms/{}/messages?dir={dir}&limit={limit}&filter={filter}{at}", enc(room));
        let (status, r) = p.server.get(&path, Some(&who.token));
        assert_eq!(status, 200, "{r}");
        let got: Vec<String> = r["chunk"]
            .as_array()
            .expect("chunk")
            .iter()
            .map(|e| e["content"]["body"].as_str().expect("body").to_owned())
            .collect();
        if got.is_empty() {
            return out;
        }
        out.extend(got);
        match r["end"].as_str() {
            Some(t) => from = t.to_owned(),
            None => return out,
        }
    }
    panic!("pagination did not end");
}

/// Issue 17: after a partition heals, the other side's events arrive late
/// (higher stream positions) at their own depths; `/messages` and
/// `/context` on both servers show the room in depth order (events of one
/// depth in the order they arrived there), not in arrival order. Paging
/// back from a sync's `prev_batch` shows exactly what that sync's timeline
/// did not, each once, and forwards from it exactly the timeline.
#[test]
fn after_a_partition_both_servers_page_in_depth_order() {
    let (_dir, _ca, a, mut b) = two();
    let alice = a.server.user("alice", PW);
    let bob = b.server.user("bob", PW);
    let room = create_room(&a.server, &alice.token, json!({ "preset": "public_chat" }));
    join_seen(&a, &alice, &b, &bob, &room);
    // Both sides talk from the same head: a{i} and b{i} have one depth.
    b.server.restart_with(&["--federation-domain-allowlist", "nowhere.invalid"]);
    let mut ids = std::collections::HashMap::new();
    for i in 0..3 {
        ids.insert(format!("a{i}"), say(&a.server, &alice.token, &room, &format!("a{i}")));
        ids.insert(format!("b{i}"), say(&b.server, &bob.token, &room, &format!("b{i}")));
    }
    b.server.restart_with(&[]);
    say(&a.server, &alice.token, &room, "a after");
    say(&b.server, &bob.token, &room, "b after");
    let all = ["a0", "a1", "a2", "b0", "b1", "b2", "a after", "b after"];
    let has_all = |p: &Peer, who: &User| {
        let seen = messages(p, who, &room);
        all.iter().all(|m| seen.contains(&m.to_string()))
    };
    wait_until(&a.server, "a has both histories", || has_all(&a, &alice));
    wait_until(&b.server, "b has both histories", || has_all(&b, &bob));

    // Oldest first: depth by depth, each server's own event of a depth
    // first (it had it first); the two later events come last.
    for (p, who, order) in
        [(&a, &alice, ["a0", "b0", "a1", "b1", "a2", "b2"]), (&b, &bob, ["b0", "a0", "b1", "a1", "b2", "a2"])]
    {
        for limit in [1, 3, 100] {
            let mut seen = page_messages(p, who, &room, "b", "", limit);
            seen.reverse();
            assert_eq!(seen[..6], order, "{} limit {limit}: {seen:?}", p.name);
            let mut last: Vec<&str> = seen[6..].iter().map(String::as_str).collect();
            last.sort();
            assert_eq!(last, ["a after", "b after"], "{}: {seen:?}", p.name);
            let forward = page_messages(p, who, &room, "f", "", limit);
            assert_eq!(forward[..6], order, "{} forwards, limit {limit}", p.name);
        }
        // /context around b1: its neighbours in depth order.
        let filter = enc(&json!({ "types": ["m.room.message"] }).to_string());
        let path = format!("{V3}/rooms/{}/context/{}?limit=2&filter={filter}", enc(&room), enc(&ids["b1"]));
        let (status, ctx) = p.server.get(&path, Some(&who.token));
        assert_eq!(status, 200, "{ctx}");
        let body = |list: &Value| -> Vec<String> {
            list.as_array()
                .unwrap()
                .iter()
                .map(|e| e["content"]["body"].as_str().unwrap().to_owned())
                .collect()
        };
        let at = order.iter().position(|m| *m == "b1").unwrap();
        assert_eq!(body(&ctx["events_before"]), [order[at - 1]], "{} {ctx}", p.name);
        assert_eq!(body(&ctx["events_after"]), [order[at + 1]], "{} {ctx}", p.name);
        let start = ctx["start"].as_str().unwrap();
        let behind = page_messages(p, who, &room, "b", start, 2);
        assert_eq!(behind[0], order[at - 2], "{}: {behind:?}", p.name);
    }

    // A's sync timeline ends with B's events, which arrived last but lie
    // below A's "a after": paging back from its prev_batch shows the rest,
    // forwards from it the timeline again, each once.
    let sync_filter =
        enc(&json!({ "room": { "timeline": { "limit": 3, "types": ["m.room.message"] } } }).to_string());
    let sync = common::sync(&a.server, &alice.token, &format!("?filter={sync_filter}"));
    let timeline: Vec<String> = common::timeline(&sync, &room)
        .iter()
        .map(|e| e["content"]["body"].as_str().unwrap().to_owned())
        .collect();
    assert!(timeline.contains(&"b2".to_owned()), "B's events came last: {timeline:?}");
    let prev =
        sync["rooms"]["join"][&room]["timeline"]["prev_batch"].as_str().expect("prev_batch").to_owned();
    for limit in [1, 2, 100] {
        let back = page_messages(&a, &alice, &room, "b", &prev, limit);
        let mut seen: Vec<&str> = back.iter().chain(&timeline).map(String::as_str).collect();
        seen.sort();
        let mut want = all.to_vec();
        want.sort();
        assert_eq!(seen, want, "back from prev_batch, limit {limit}: {back:?} + timeline {timeline:?}");
        let mut forward = page_messages(&a, &alice, &room, "f", &prev, limit);
        let mut t = timeline.clone();
        forward.sort();
        t.sort();
        assert_eq!(forward, t, "forwards from prev_batch, limit {limit}");
    }
}

/// Issue 18: a remote user's profile, as their server sent it in their
/// member event, is what local users see in the room and find in the user
/// directory.
#[test]
fn remote_profiles_come_from_their_member_events() {
    let (_dir, _ca, a, b) = two();
    let alice = a.server.user("alice", PW);
    let bob = b.server.user("bob", PW);
    let profile = format!("{V3}/profile/{}", enc(&bob.id));
    let (status, r) = b.server.put(
        &format!("{profile}/displayname"),
        Some(&bob.token),
        json!({ "displayname": "Bob of B" }),
    );
    assert_eq!(status, 200, "{r}");
    let (status, r) = b.server.put(
        &format!("{profile}/avatar_url"),
        Some(&bob.token),
        json!({ "avatar_url": "mxc://b/bobface" }),
    );
    assert_eq!(status, 200, "{r}");
    let room = create_room(&a.server, &alice.token, json!({ "preset": "public_chat" }));
    join_seen(&a, &alice, &b, &bob, &room);
    let joined = members(&a, &alice, &room);
    assert_eq!(joined[&bob.id]["display_name"], "Bob of B", "{joined}");
    let (status, r) = a.server.post(
        &format!("{V3}/user_directory/search"),
        Some(&alice.token),
        json!({ "search_term": "bob of" }),
    );
    assert_eq!(status, 200, "{r}");
    let found = r["results"].as_array().cloned().unwrap_or_default();
    let bob_found = found.iter().find(|u| u["user_id"] == bob.id.as_str());
    let bob_found = bob_found.unwrap_or_else(|| panic!("bob in the directory: {r}"));
    assert_eq!(bob_found["display_name"], "Bob of B", "{r}");
    assert_eq!(bob_found["avatar_url"], "mxc://b/bobface", "{r}");
}
