//! Rooms of every version, 1 to 12, through the real server: creation,
//! messages, state, redactions, invites, joins, kicks, bans, knocking (v7
//! on), restricted joins (v8 on), and all of it read back through `/sync`,
//! `/messages` and `/event`. Each version's rules come from the one table
//! in `core::room_version`; these tests check what a client sees of them.

mod common;

use common::{
    assert_error, create_room, enc, invite, join, room_path, say, set_state, state_content, sync, try_join,
    Server, User, V3,
};
use serde_json::{json, Value};

const PW: &str = "room-versions-password";

/// Every room version, as `/createRoom` names them.
const VERSIONS: [&str; 12] = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"];

fn num(version: &str) -> u32 {
    version.parse().expect("numeric room versions")
}

/// What an event ID looks like in a room of `version`: `$opaque:server` in
/// v1–v2, `$` and 43 characters of standard base64 in v3, of URL-safe
/// base64 from v4.
#[track_caller]
fn assert_event_id_format(version: &str, id: &str) {
    let body = id.strip_prefix('$').unwrap_or_else(|| panic!("v{version}: {id} has no $"));
    match num(version) {
        1 | 2 => {
            let (opaque, server) = body.split_once(':').unwrap_or_else(|| panic!("v{version}: {id}"));
            assert_eq!(server, "localhost", "v{version}: {id}");
            assert!(
                !opaque.is_empty() && opaque.bytes().all(|b| b.is_ascii_alphanumeric()),
                "v{version}: {id}"
            );
        }
        3 => {
            assert_eq!(body.len(), 43, "v{version}: {id}");
            assert!(
                body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/'),
                "v{version}: {id}"
            );
        }
        _ => {
            assert_eq!(body.len(), 43, "v{version}: {id}");
            assert!(
                body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "v{version}: {id}"
            );
        }
    }
}

fn try_create(s: &Server, who: &User, body: Value) -> (u16, Value) {
    s.post(&format!("{V3}/createRoom"), Some(&who.token), body)
}

/// `POST /rooms/{room}/{action}` as `who`; the answer, whatever it is.
fn act(s: &Server, who: &User, room: &str, action: &str, body: Value) -> (u16, Value) {
    s.post(&room_path(room, action), Some(&who.token), body)
}

#[track_caller]
fn act_ok(s: &Server, who: &User, room: &str, action: &str, target: &User) {
    let (status, body) = act(s, who, room, action, json!({ "user_id": target.id }));
    assert_eq!((status, &body), (200, &json!({})), "{action} {} in {room}", target.id);
}

/// `GET /rooms/{room}/event/{id}` as `who` (must be 200).
#[track_caller]
fn event(s: &Server, who: &User, room: &str, id: &str) -> Value {
    let (status, body) = s.get(&room_path(room, &format!("event/{}", enc(id))), Some(&who.token));
    assert_eq!(status, 200, "event {id}: {body}");
    body
}

/// Redacts `id` in `room` as `who` with transaction ID `txn` (unique per
/// device, so per test across rooms); the answer.
fn redact(s: &Server, who: &User, room: &str, id: &str, txn: &str) -> (u16, Value) {
    s.put(
        &room_path(room, &format!("redact/{}/{txn}", enc(id))),
        Some(&who.token),
        json!({ "reason": "tidy" }),
    )
}

/// The membership of `user` in `room`, as `who` reads it.
#[track_caller]
fn membership(s: &Server, who: &User, room: &str, user: &User) -> Value {
    state_content(s, &who.token, room, "m.room.member", &user.id)["membership"].clone()
}

/// The room's events, newest first, as `/messages` pages them backwards
/// from the end (one page is plenty for these rooms).
#[track_caller]
fn messages_backwards(s: &Server, who: &User, room: &str) -> Vec<Value> {
    let (status, body) = s.get(&room_path(room, "messages?dir=b&limit=100"), Some(&who.token));
    assert_eq!(status, 200, "messages: {body}");
    assert!(body.get("end").is_none(), "more than one page: {body}");
    body["chunk"].as_array().expect("a chunk").clone()
}

/// The IDs of `events`.
fn ids(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["event_id"].as_str().expect("an event ID")).collect()
}

#[test]
fn every_version_can_be_created_and_is_listed() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let (status, body) = s.get(&format!("{V3}/capabilities"), Some(&alice.token));
    assert_eq!(status, 200, "{body}");
    let versions = &body["capabilities"]["m.room_versions"];
    assert_eq!(versions["default"], "12", "{body}");
    let expected: serde_json::Map<String, Value> =
        VERSIONS.iter().map(|v| ((*v).to_owned(), json!("stable"))).collect();
    assert_eq!(versions["available"], Value::Object(expected), "{body}");

    for version in VERSIONS {
        let room = create_room(&s, &alice.token, json!({ "room_version": version }));
        let create = state_content(&s, &alice.token, &room, "m.room.create", "");
        assert_eq!(create["room_version"], version, "{create}");
        // `creator` until v10; from v11 the sender is the creator.
        let creator = if num(version) <= 10 { json!(alice.id) } else { Value::Null };
        assert_eq!(create["creator"], creator, "v{version}: {create}");
        // Room IDs carry the server name until v12 derives them from the
        // create event.
        assert_eq!(room.ends_with(":localhost"), num(version) < 12, "v{version}: {room}");
    }
    for unknown in ["0", "13", "01", "1.0", " 1", "v1", "", "org.example.custom"] {
        assert_error(
            &try_create(&s, &alice, json!({ "room_version": unknown })),
            400,
            "M_UNSUPPORTED_ROOM_VERSION",
        );
    }
    assert_error(&try_create(&s, &alice, json!({ "room_version": 1 })), 400, "M_BAD_JSON");
}

/// In each version: a message, a state change, redactions (one's own and,
/// with the power, another's; without it, refused), an invite and join, a
/// kick, bans and an unban; then everything read back through `/event`,
/// `/messages` and `/sync`.
#[test]
fn messages_state_redactions_and_membership_in_every_version() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let carol = s.user("carol", PW);
    let dave = s.user("dave", PW);
    for version in VERSIONS {
        let room = create_room(
            &s,
            &alice.token,
            json!({ "room_version": version, "preset": "private_chat", "name": format!("Room v{version}") }),
        );
        // A message and a state change.
        let hello = say(&s, &alice.token, &room, &format!("hello v{version}"));
        assert_event_id_format(version, &hello);
        let topic =
            set_state(&s, &alice.token, &room, "m.room.topic", "", json!({ "topic": format!("t{version}") }));
        assert_event_id_format(version, &topic);
        assert_eq!(
            state_content(&s, &alice.token, &room, "m.room.topic", "")["topic"],
            format!("t{version}")
        );

        // Bob is invited and joins; carol too.
        invite(&s, &alice.token, &room, &bob.id);
        assert_eq!(membership(&s, &alice, &room, &bob), "invite");
        join(&s, &bob.token, &room);
        invite(&s, &alice.token, &room, &carol.id);
        join(&s, &carol.token, &room);
        let from_bob = say(&s, &bob.token, &room, "bob was here");
        let from_carol = say(&s, &carol.token, &room, "carol was here");

        // Redactions: bob (level 0) may redact his own event but not
        // alice's; alice (100) may redact anyone's.
        let (status, body) = redact(&s, &bob, &room, &hello, &format!("r1-{version}"));
        assert_error(&(status, body), 403, "M_FORBIDDEN");
        let (status, body) = redact(&s, &bob, &room, &from_bob, &format!("r2-{version}"));
        assert_eq!(status, 200, "v{version}: {body}");
        let own_redaction = body["event_id"].as_str().expect("event_id").to_owned();
        let (status, body) = redact(&s, &alice, &room, &from_carol, &format!("r3-{version}"));
        assert_eq!(status, 200, "v{version}: {body}");
        let redaction = body["event_id"].as_str().expect("event_id").to_owned();
        assert_event_id_format(version, &redaction);
        for (target, by) in [(&from_bob, &own_redaction), (&from_carol, &redaction)] {
            let redacted = event(&s, &alice, &room, target);
            assert_eq!(redacted["content"], json!({}), "v{version}: {redacted}");
            assert_eq!(redacted["unsigned"]["redacted_because"]["event_id"], json!(by), "v{version}");
            // Clients find `redacts` at the top level and in content, in
            // every version.
            let r = event(&s, &alice, &room, by);
            assert_eq!(
                (&r["redacts"], &r["content"]["redacts"]),
                (&json!(target), &json!(target)),
                "v{version}: {r}"
            );
            assert_eq!(r["content"]["reason"], "tidy");
        }
        assert_eq!(event(&s, &bob, &room, &hello)["content"]["body"], format!("hello v{version}"));

        // A kick, bans (of a member and of someone never here), an unban.
        act_ok(&s, &alice, &room, "kick", &carol);
        assert_eq!(membership(&s, &alice, &room, &carol), "leave");
        assert_error(
            &s.put(
                &room_path(&room, &format!("send/m.room.message/c-{version}")),
                Some(&carol.token),
                json!({"body": "x"}),
            ),
            403,
            "M_FORBIDDEN",
        );
        assert_error(&act(&s, &bob, &room, "ban", json!({ "user_id": alice.id })), 403, "M_FORBIDDEN");
        act_ok(&s, &alice, &room, "ban", &bob);
        act_ok(&s, &alice, &room, "ban", &dave);
        assert_eq!(membership(&s, &alice, &room, &bob), "ban");
        assert_error(&try_join(&s, &dave.token, &room), 403, "M_FORBIDDEN");
        act_ok(&s, &alice, &room, "unban", &bob);
        assert_eq!(membership(&s, &alice, &room, &bob), "leave");
        // Unbanned is not invited: the room is invite-only.
        assert_error(&try_join(&s, &bob.token, &room), 403, "M_FORBIDDEN");

        // /messages: every event, newest first, in the version's format.
        let chunk = messages_backwards(&s, &alice, &room);
        let listed = ids(&chunk);
        for id in &listed {
            assert_event_id_format(version, id);
        }
        let newest_first = |a: &str, b: &str| {
            let pos = |id: &str| {
                listed.iter().position(|x| *x == id).unwrap_or_else(|| panic!("v{version}: {id} missing"))
            };
            pos(a) < pos(b)
        };
        assert!(newest_first(&redaction, &from_carol) && newest_first(&from_carol, &from_bob));
        assert!(newest_first(&from_bob, &topic) && newest_first(&topic, &hello));
        let oldest = chunk.last().expect("events");
        assert_eq!(
            (&oldest["type"], &oldest["content"]["room_version"]),
            (&json!("m.room.create"), &json!(version))
        );
        let by_id = |id: &str| chunk.iter().find(|e| e["event_id"] == id).expect("listed").clone();
        assert_eq!(by_id(&hello)["content"]["body"], format!("hello v{version}"));
        assert_eq!(by_id(&from_bob)["content"], json!({}));
        let memberships: Vec<(String, String)> = chunk
            .iter()
            .rev()
            .filter(|e| e["type"] == "m.room.member")
            .map(|e| {
                (
                    e["state_key"].as_str().unwrap_or("").to_owned(),
                    e["content"]["membership"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        let expect: Vec<(String, String)> = [
            (&alice, "join"),
            (&bob, "invite"),
            (&bob, "join"),
            (&carol, "invite"),
            (&carol, "join"),
            (&carol, "leave"),
            (&bob, "ban"),
            (&dave, "ban"),
            (&bob, "leave"),
        ]
        .iter()
        .map(|(u, m)| (u.id.clone(), (*m).to_owned()))
        .collect();
        assert_eq!(memberships, expect, "v{version}");

        // /sync: the room with its state and timeline as alice sees it.
        let filter = enc(r#"{"room":{"timeline":{"limit":100}}}"#);
        let synced = sync(&s, &alice.token, &format!("?filter={filter}"));
        let joined = &synced["rooms"]["join"][&room];
        let timeline = joined["timeline"]["events"].as_array().expect("a timeline");
        assert_eq!(ids(timeline).into_iter().rev().collect::<Vec<_>>(), listed, "v{version}");
        let in_timeline = |id: &str| timeline.iter().find(|e| e["event_id"] == id).expect("in the timeline");
        assert_eq!(in_timeline(&from_carol)["content"], json!({}));
        assert_eq!(in_timeline(&from_carol)["unsigned"]["redacted_because"]["event_id"], json!(redaction));
        assert_eq!(in_timeline(&topic)["content"]["topic"], format!("t{version}"));
        // Bob left (after the unban) and sees the room among his leaves.
        let bobs = sync(&s, &bob.token, &format!("?filter={}", enc(r#"{"room":{"include_leave":true}}"#)));
        assert!(bobs["rooms"]["leave"].get(&room).is_some(), "v{version}: {bobs}");
    }
}

/// Knocking arrives with v7: before, `knock` is no membership at all.
#[test]
fn knocking_from_v7() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let eve = s.user("eve", PW);
    for version in VERSIONS {
        let room = create_room(
            &s,
            &alice.token,
            json!({
                "room_version": version,
                "initial_state": [{ "type": "m.room.join_rules", "content": { "join_rule": "knock" } }],
            }),
        );
        let (status, body) =
            s.post(&format!("{V3}/knock/{}", enc(&room)), Some(&eve.token), json!({ "reason": "hi" }));
        if num(version) < 7 {
            assert_error(&(status, body), 403, "M_FORBIDDEN");
            let (status, _) = s
                .get(&room_path(&room, &format!("state/m.room.member/{}", enc(&eve.id))), Some(&alice.token));
            assert_eq!(status, 404, "v{version}: no member event for eve");
            // Nor does `knock` let an invitee in: it is no join rule there.
            invite(&s, &alice.token, &room, &eve.id);
            assert_error(&try_join(&s, &eve.token, &room), 403, "M_FORBIDDEN");
            continue;
        }
        assert_eq!((status, &body), (200, &json!({ "room_id": room })), "v{version}");
        let knock = state_content(&s, &alice.token, &room, "m.room.member", &eve.id);
        assert_eq!((&knock["membership"], &knock["reason"]), (&json!("knock"), &json!("hi")), "v{version}");
        let eves = sync(&s, &eve.token, "");
        assert!(eves["rooms"]["knock"][&room]["knock_state"]["events"].is_array(), "v{version}: {eves}");
        // A knock can be withdrawn, and made again.
        assert_eq!(act(&s, &eve, &room, "leave", json!({})).0, 200);
        assert_eq!(membership(&s, &alice, &room, &eve), "leave");
        assert_eq!(s.post(&format!("{V3}/knock/{}", enc(&room)), Some(&eve.token), json!({})).0, 200);
        // Knocking is asking: an invite lets eve in.
        assert_error(&try_join(&s, &eve.token, &room), 403, "M_FORBIDDEN");
        invite(&s, &alice.token, &room, &eve.id);
        join(&s, &eve.token, &room);
        assert_eq!(membership(&s, &alice, &room, &eve), "join");
    }
}

/// Restricted joins arrive with v8 (`knock_restricted` with v10): members of
/// the room the allow rule names join without an invite, the join naming a
/// member who may invite (`join_authorised_via_users_server`); others may not.
#[test]
fn restricted_joins_from_v8() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let carol = s.user("carol", PW);
    // The space bob is in, carol is not.
    let space = create_room(
        &s,
        &alice.token,
        json!({ "preset": "public_chat", "creation_content": { "type": "m.space" } }),
    );
    join(&s, &bob.token, &space);
    for version in VERSIONS {
        for rule in ["restricted", "knock_restricted"] {
            let supported = match rule {
                "restricted" => num(version) >= 8,
                _ => num(version) >= 10,
            };
            let room = create_room(
                &s,
                &alice.token,
                json!({
                    "room_version": version,
                    "initial_state": [{ "type": "m.room.join_rules", "content": {
                        "join_rule": rule,
                        "allow": [{ "type": "m.room_membership", "room_id": space }],
                    }}],
                }),
            );
            // Carol is in no allowed room, so never joins without an invite.
            assert_error(&try_join(&s, &carol.token, &room), 403, "M_FORBIDDEN");
            let bob_joins = try_join(&s, &bob.token, &room);
            if !supported {
                assert_error(&bob_joins, 403, "M_FORBIDDEN");
                continue;
            }
            assert_eq!(bob_joins, (200, json!({ "room_id": room })), "v{version} {rule}");
            let joined = state_content(&s, &alice.token, &room, "m.room.member", &bob.id);
            assert_eq!(joined["membership"], "join");
            assert_eq!(joined["join_authorised_via_users_server"], json!(alice.id), "v{version}: {joined}");
            say(&s, &bob.token, &room, "in through the space");
            if rule == "knock_restricted" {
                // …and carol may knock instead.
                let (status, body) =
                    s.post(&format!("{V3}/knock/{}", enc(&room)), Some(&carol.token), json!({}));
                assert_eq!(status, 200, "v{version}: {body}");
                assert_eq!(membership(&s, &alice, &room, &carol), "knock");
                continue;
            }
            // Redacting the join keeps its authoriser from v9 (v8 forgot it).
            let (_, member_event) = s.get(&room_path(&room, "state"), Some(&alice.token));
            let join_id = member_event
                .as_array()
                .expect("state")
                .iter()
                .find(|e| e["type"] == "m.room.member" && e["state_key"] == bob.id.as_str())
                .and_then(|e| e["event_id"].as_str())
                .expect("bob's member event")
                .to_owned();
            let (status, body) = redact(&s, &alice, &room, &join_id, &format!("rj-{version}-{rule}"));
            assert_eq!(status, 200, "{body}");
            let redacted = event(&s, &alice, &room, &join_id);
            let expected = if num(version) >= 9 {
                json!({ "membership": "join", "join_authorised_via_users_server": alice.id })
            } else {
                json!({ "membership": "join" })
            };
            assert_eq!(redacted["content"], expected, "v{version}: {redacted}");
            // Bob is still a member; he leaves and comes back the same way.
            act(&s, &bob, &room, "leave", json!({}));
            assert_eq!(try_join(&s, &bob.token, &room).0, 200);
        }
    }
    // Leaving the space closes the door.
    let room = create_room(
        &s,
        &alice.token,
        json!({ "room_version": "9", "initial_state": [{ "type": "m.room.join_rules", "content": {
            "join_rule": "restricted", "allow": [{ "type": "m.room_membership", "room_id": space }] }}] }),
    );
    act(&s, &bob, &space, "leave", json!({}));
    assert_error(&try_join(&s, &bob.token, &room), 403, "M_FORBIDDEN");
}

/// Power levels written as strings work in v1–v9 and are refused from v10.
#[test]
fn string_power_levels_until_v10() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let carol = s.user("carol", PW);
    for version in VERSIONS {
        let room = create_room(&s, &alice.token, json!({ "room_version": version, "preset": "public_chat" }));
        join(&s, &bob.token, &room);
        join(&s, &carol.token, &room);
        let mut levels = state_content(&s, &alice.token, &room, "m.room.power_levels", "");
        let users = if num(version) >= 12 {
            json!({ bob.id.clone(): " 050" })
        } else {
            json!({ alice.id.clone(): "100", bob.id.clone(): " 050" })
        };
        levels["users"] = users;
        levels["kick"] = json!("+50");
        let (status, body) =
            s.put(&room_path(&room, "state/m.room.power_levels/"), Some(&alice.token), levels);
        if num(version) >= 10 {
            assert_error(&(status, body), 403, "M_FORBIDDEN");
            assert_error(&act(&s, &bob, &room, "kick", json!({ "user_id": carol.id })), 403, "M_FORBIDDEN");
            continue;
        }
        assert_eq!(status, 200, "v{version}: {body}");
        // Bob's " 050" is 50, enough for the kick level "+50".
        act_ok(&s, &bob, &room, "kick", &carol);
        assert_eq!(membership(&s, &alice, &room, &carol), "leave");
        let stored = state_content(&s, &alice.token, &room, "m.room.power_levels", "");
        assert_eq!(stored["kick"], "+50", "stored as sent");
    }
}

/// The auth chain the database indexes as events are stored
/// (`event_auth_edges`) is the one the PDUs describe, in both reference
/// formats (v1's `[id, hashes]` pairs and v12's IDs).
#[test]
fn auth_chains_are_indexed_as_events_are_stored() {
    use std::collections::{BTreeSet, HashMap};
    let s = Server::start();
    let alice = s.user("alice", "pw-alice-1");
    for version in ["1", "12"] {
        let room = create_room(&s, &alice.token, json!({ "room_version": version, "preset": "public_chat" }));
        let last = say(&s, &alice.token, &room, "hello");
        let conn = rusqlite::Connection::open(s.db()).expect("db");
        let mut pdus = HashMap::new();
        let mut st = conn.prepare("SELECT event_id, pdu FROM events WHERE room_id = ?1").unwrap();
        for row in st.query_map([&room], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).unwrap() {
            let (id, pdu) = row.unwrap();
            pdus.insert(id, serde_json::from_str::<Value>(&pdu).unwrap());
        }
        let refs = |id: &str| -> Vec<String> {
            pdus[id]["auth_events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().or_else(|| r[0].as_str()).unwrap().to_owned())
                .collect()
        };
        let mut walked = BTreeSet::new();
        let mut todo = refs(&last);
        while let Some(id) = todo.pop() {
            if walked.insert(id.clone()) {
                todo.extend(refs(&id));
            }
        }
        let indexed: BTreeSet<String> =
            hearth::storage::events::auth_chain(&conn, &last).unwrap().into_iter().collect();
        // Power levels and the sender's membership, and before v12 the create event.
        let least = if version == "12" { 2 } else { 3 };
        assert!(walked.len() >= least, "v{version}: {walked:?}");
        assert_eq!(indexed, walked, "v{version}");
    }
}
