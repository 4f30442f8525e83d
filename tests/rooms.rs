//! Room creation through `/createRoom`: presets, room versions, aliases,
//! name and topic, initial state, power level overrides, invites, and the
//! errors of a bad request. A refused request creates nothing.

mod common;

use common::{assert_error, create_room, enc, joined_rooms, state_content, try_join, Server, User, V3};
use serde_json::{json, Value};

const PW: &str = "rooms-test-password";

/// `POST /createRoom`; the answer, whatever it is.
fn try_create(s: &Server, who: &User, body: Value) -> (u16, Value) {
    s.post(&format!("{V3}/createRoom"), Some(&who.token), body)
}

#[test]
fn presets_and_room_versions() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let mut created = Vec::new();
    for version in [Some("10"), Some("11"), Some("12"), None] {
        let with_version = |mut body: Value| {
            if let Some(v) = version {
                body["room_version"] = json!(v);
            }
            body
        };
        // public_chat: anyone may join.
        let public = create_room(&s, &alice.token, with_version(json!({ "preset": "public_chat" })));
        // private_chat: invitation only.
        let private = create_room(&s, &alice.token, with_version(json!({ "preset": "private_chat" })));
        // trusted_private_chat: invitees get the creator's power.
        let trusted = create_room(
            &s,
            &alice.token,
            with_version(json!({ "preset": "trusted_private_chat", "invite": [bob.id] })),
        );
        for room in [&public, &private, &trusted] {
            // Rooms before v12 carry the server name; v12 IDs are a hash.
            let hashed = matches!(version, Some("12") | None);
            assert_eq!(!room.contains(':'), hashed, "version {version:?}: {room}");
            if !hashed {
                assert!(room.ends_with(":localhost"), "{room}");
            }
            assert!(room.starts_with('!'), "{room}");
        }
        let (status, body) = try_join(&s, &bob.token, &public);
        assert_eq!((status, &body["room_id"]), (200, &json!(public)), "{body}");
        assert_error(&try_join(&s, &bob.token, &private), 403, "M_FORBIDDEN");
        assert_eq!(try_join(&s, &bob.token, &trusted).0, 200);
        // Bob, as powerful as Alice in the trusted room, may ban there...
        let ban = json!({ "user_id": "@mallory:localhost" });
        let (status, body) = s.post(&format!("{V3}/rooms/{trusted}/ban"), Some(&bob.token), ban.clone());
        assert_eq!(status, 200, "version {version:?}: {body}");
        // ...but not in the public room.
        assert_error(&s.post(&format!("{V3}/rooms/{public}/ban"), Some(&bob.token), ban), 403, "M_FORBIDDEN");
        created.extend([public, private, trusted]);
    }
    created.sort();
    assert_eq!(joined_rooms(&s, &alice.token), created);
}

#[test]
fn default_room_version_and_preset_follow_visibility() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    // No preset: public visibility means public_chat, published.
    let public = create_room(&s, &alice.token, json!({ "visibility": "public" }));
    assert!(!public.contains(':'), "the default version is 12: {public}");
    assert_eq!(try_join(&s, &bob.token, &public).0, 200);
    let (status, body) = s.get(&format!("{V3}/directory/list/room/{public}"), None);
    assert_eq!((status, &body["visibility"]), (200, &json!("public")), "{body}");
    // No visibility: private, private_chat.
    let private = create_room(&s, &alice.token, json!({}));
    assert_error(&try_join(&s, &bob.token, &private), 403, "M_FORBIDDEN");
    let (status, body) = s.get(&format!("{V3}/directory/list/room/{private}"), None);
    assert_eq!((status, &body["visibility"]), (200, &json!("private")), "{body}");
    // A preset wins over visibility for the join rule.
    let listed_private =
        create_room(&s, &alice.token, json!({ "visibility": "public", "preset": "private_chat" }));
    assert_error(&try_join(&s, &bob.token, &listed_private), 403, "M_FORBIDDEN");
    let create_event = state_content(&s, &alice.token, &public, "m.room.create", "");
    assert_eq!(create_event["room_version"], "12", "{create_event}");
}

#[test]
fn room_versions_that_are_not_served() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    // Every version from 1 to 12 is served (tests/room_versions.rs).
    for v in ["0", "13", "01", "", "org.example.custom"] {
        assert_error(
            &try_create(&s, &alice, json!({ "room_version": v })),
            400,
            "M_UNSUPPORTED_ROOM_VERSION",
        );
    }
    assert_error(&try_create(&s, &alice, json!({ "room_version": 12 })), 400, "M_BAD_JSON");
    assert!(joined_rooms(&s, &alice.token).is_empty());
}

#[test]
fn aliases() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let room = create_room(&s, &alice.token, json!({ "preset": "public_chat", "room_alias_name": "family" }));
    let canonical = state_content(&s, &alice.token, &room, "m.room.canonical_alias", "");
    assert_eq!(canonical["alias"], "#family:localhost");
    // The alias leads to the room.
    let (status, body) = try_join(&s, &bob.token, "#family:localhost");
    assert_eq!((status, &body["room_id"]), (200, &json!(room)), "{body}");
    let (status, body) = s.get(&format!("{V3}/directory/room/{}", enc("#family:localhost")), None);
    assert_eq!((status, &body["room_id"]), (200, &json!(room)), "{body}");

    // A taken alias refuses the whole request: no second room appears.
    let taken = try_create(&s, &bob, json!({ "room_alias_name": "family", "name": "Imposter" }));
    assert_error(&taken, 400, "M_ROOM_IN_USE");
    assert_eq!(joined_rooms(&s, &bob.token), std::slice::from_ref(&room));

    for bad in ["", "a:b", "with space", "tab\there", "nul\u{0}"] {
        let r = try_create(&s, &bob, json!({ "room_alias_name": bad }));
        assert_error(&r, 400, "M_INVALID_PARAM");
    }
    let long = "a".repeat(300);
    assert_error(&try_create(&s, &bob, json!({ "room_alias_name": long })), 400, "M_INVALID_PARAM");
    assert_error(&try_create(&s, &bob, json!({ "room_alias_name": ["x"] })), 400, "M_BAD_JSON");
    assert_eq!(joined_rooms(&s, &bob.token), [room]);
}

#[test]
fn name_topic_initial_state_and_power_levels() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let room = create_room(
        &s,
        &alice.token,
        json!({
            "preset": "public_chat",
            "name": "The Grand Duke Pub",
            "topic": "All about happy hour",
            "initial_state": [
                { "type": "m.room.name", "content": { "name": "overridden by name" } },
                { "type": "m.room.guest_access", "state_key": "", "content": { "guest_access": "can_join" } },
                { "type": "org.example.custom", "state_key": "k", "content": { "x": 1 } },
                { "type": "m.room.history_visibility", "content": { "history_visibility": "joined" } },
            ],
            "power_level_content_override": { "invite": 50, "events": { "org.example.custom": 20 } },
            "creation_content": { "m.federate": false, "room_version": "10", "creator": "@bob:localhost" },
        }),
    );
    assert_eq!(state_content(&s, &alice.token, &room, "m.room.name", "")["name"], "The Grand Duke Pub");
    assert_eq!(state_content(&s, &alice.token, &room, "m.room.topic", "")["topic"], "All about happy hour");
    // initial_state wins over the preset.
    assert_eq!(state_content(&s, &alice.token, &room, "m.room.guest_access", "")["guest_access"], "can_join");
    assert_eq!(
        state_content(&s, &alice.token, &room, "m.room.history_visibility", "")["history_visibility"],
        "joined"
    );
    assert_eq!(state_content(&s, &alice.token, &room, "org.example.custom", "k")["x"], 1);
    let levels = state_content(&s, &alice.token, &room, "m.room.power_levels", "");
    assert_eq!(levels["invite"], 50, "{levels}");
    // The override replaces whole top-level keys.
    assert_eq!(levels["events"], json!({ "org.example.custom": 20 }), "{levels}");
    assert_eq!(levels["ban"], 50, "{levels}");
    // The server sets room_version (and, from v11, no creator field).
    let create_event = state_content(&s, &alice.token, &room, "m.room.create", "");
    assert_eq!(create_event["room_version"], "12", "{create_event}");
    assert_eq!(create_event["m.federate"], false, "{create_event}");
    assert!(create_event.get("creator").is_none(), "{create_event}");

    // The override's invite level applies: Bob (level 0) may not invite.
    assert_eq!(try_join(&s, &bob.token, &room).0, 200);
    let carol = s.user("carol", PW);
    let invite = |who: &User| {
        s.post(&format!("{V3}/rooms/{room}/invite"), Some(&who.token), json!({ "user_id": carol.id }))
    };
    assert_error(&invite(&bob), 403, "M_FORBIDDEN");
    assert_eq!(invite(&alice).0, 200);
}

#[test]
fn an_initial_state_the_rules_refuse_creates_nothing() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    // In v10 the creator has level 100: a name needing 200 cannot be set.
    let r = try_create(
        &s,
        &alice,
        json!({
            "room_version": "10",
            "name": "Unreachable",
            "power_level_content_override": { "events": { "m.room.name": 200 } },
        }),
    );
    assert_error(&r, 400, "M_INVALID_ROOM_STATE");
    // In v12 creators may not be listed in the power levels.
    let r = try_create(
        &s,
        &alice,
        json!({ "power_level_content_override": { "users": { alice.id.clone(): 100 } } }),
    );
    assert_error(&r, 400, "M_INVALID_ROOM_STATE");
    // Power levels must be integers.
    let r = try_create(&s, &alice, json!({ "power_level_content_override": { "ban": "50" } }));
    assert_error(&r, 400, "M_INVALID_ROOM_STATE");
    // Membership and the create event have their own parameters.
    for kind in ["m.room.member", "m.room.create"] {
        let r = try_create(
            &s,
            &alice,
            json!({ "initial_state": [{ "type": kind, "state_key": alice.id, "content": { "membership": "join" } }] }),
        );
        assert_error(&r, 400, "M_INVALID_ROOM_STATE");
    }
    // An alias refused with the rest is not kept.
    let r = try_create(
        &s,
        &alice,
        json!({ "room_alias_name": "kept", "power_level_content_override": { "ban": "50" } }),
    );
    assert_error(&r, 400, "M_INVALID_ROOM_STATE");
    assert!(joined_rooms(&s, &alice.token).is_empty());
    create_room(&s, &alice.token, json!({ "room_alias_name": "kept" }));
}

#[test]
fn invites() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let carol = s.user("carol", PW);
    let dave = s.user("dave", PW);
    let room =
        create_room(&s, &alice.token, json!({ "invite": [bob.id, carol.id, bob.id], "is_direct": true }));
    let bob_member = state_content(&s, &alice.token, &room, "m.room.member", &bob.id);
    assert_eq!(bob_member["membership"], "invite", "{bob_member}");
    assert_eq!(bob_member["is_direct"], true, "{bob_member}");
    assert_eq!(try_join(&s, &bob.token, &room).0, 200);
    assert_eq!(try_join(&s, &carol.token, &room).0, 200);
    assert_error(&try_join(&s, &dave.token, &room), 403, "M_FORBIDDEN");

    // Refused invite lists create nothing.
    let unknown = try_create(&s, &dave, json!({ "invite": ["@nobody:localhost"] }));
    assert_error(&unknown, 404, "M_NOT_FOUND");
    let remote = try_create(&s, &dave, json!({ "invite": ["@bob:elsewhere.example"] }));
    assert_error(&remote, 403, "M_FORBIDDEN");
    for bad in ["bob", "@bob", "@:localhost", "@bo b:localhost", ""] {
        assert_error(&try_create(&s, &dave, json!({ "invite": [bad] })), 400, "M_INVALID_PARAM");
    }
    assert_error(&try_create(&s, &dave, json!({ "invite": [dave.id] })), 400, "M_INVALID_PARAM");
    assert_error(&try_create(&s, &dave, json!({ "invite": bob.id })), 400, "M_BAD_JSON");
    let third_party = json!({ "invite_3pid": [{
        "id_server": "id.example", "id_access_token": "t", "medium": "email", "address": "a@example.org"
    }] });
    assert_error(&try_create(&s, &dave, third_party), 400, "M_INVALID_PARAM");
    // An empty invite_3pid list is no third-party invite at all.
    assert!(joined_rooms(&s, &dave.token).is_empty());
    create_room(&s, &dave.token, json!({ "invite_3pid": [] }));
}

#[test]
fn bad_requests() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let auth = format!("Bearer {}", alice.token);
    let raw = |body: &[u8]| {
        let r = s.raw("POST", &format!("{V3}/createRoom"), &[("Authorization", &auth)], Some(body));
        (r.status, r.json)
    };
    assert_error(&raw(b"{not json"), 400, "M_NOT_JSON");
    assert_error(&raw(b""), 400, "M_NOT_JSON");
    assert_error(&raw(b"[]"), 400, "M_BAD_JSON");
    for body in [
        json!({ "name": 5 }),
        json!({ "topic": {} }),
        json!({ "visibility": true }),
        json!({ "is_direct": "yes" }),
        json!({ "initial_state": {} }),
        json!({ "initial_state": [{ "type": "m.room.topic" }] }),
        json!({ "initial_state": [{ "type": "m.room.topic", "content": "x" }] }),
        json!({ "initial_state": [{ "content": {} }] }),
        json!({ "power_level_content_override": [] }),
        json!({ "creation_content": "x" }),
    ] {
        assert_error(&try_create(&s, &alice, body.clone()), 400, "M_BAD_JSON");
    }
    for body in [
        json!({ "preset": "secret_chat" }),
        json!({ "visibility": "unlisted" }),
        json!({ "initial_state": [{ "type": "", "content": {} }] }),
    ] {
        assert_error(&try_create(&s, &alice, body), 400, "M_INVALID_PARAM");
    }
    assert_error(&s.post(&format!("{V3}/createRoom"), None, json!({})), 401, "M_MISSING_TOKEN");
    assert!(joined_rooms(&s, &alice.token).is_empty());
}
