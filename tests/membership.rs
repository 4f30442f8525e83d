//! Membership over HTTP: join (by ID and alias), invite, leave, forget,
//! kick, ban, unban, knock and `/joined_rooms`, each transition both where
//! the room's rules allow it and where they refuse it, plus bad input.

mod common;

use common::{
    assert_error, create_room, enc, joined_rooms, public_room, state_content, try_join, Server, User, V3,
};
use serde_json::{json, Value};

const PW: &str = "membership-test-password";

/// `POST /rooms/{roomId}/{action}`.
fn act(s: &Server, who: &User, room_id: &str, action: &str, body: Value) -> (u16, Value) {
    s.post(&format!("{V3}/rooms/{}/{action}", enc(room_id)), Some(&who.token), body)
}

/// `POST /rooms/{roomId}/{action}` on `target`, which must succeed.
#[track_caller]
fn act_ok(s: &Server, who: &User, room_id: &str, action: &str, target: &User) {
    let (status, body) = act(s, who, room_id, action, json!({ "user_id": target.id }));
    assert_eq!((status, &body), (200, &json!({})), "{action} {}", target.id);
}

fn join(s: &Server, who: &User, room_id: &str) -> (u16, Value) {
    act(s, who, room_id, "join", json!({}))
}

fn knock(s: &Server, who: &User, room_id_or_alias: &str, body: Value) -> (u16, Value) {
    s.post(&format!("{V3}/knock/{}", enc(room_id_or_alias)), Some(&who.token), body)
}

#[track_caller]
fn joined_ok(s: &Server, who: &User, room_id: &str) {
    let (status, body) = join(s, who, room_id);
    assert_eq!((status, &body), (200, &json!({ "room_id": room_id })), "{} joining", who.id);
}

/// The `m.room.member` content of `target` as `viewer` sees it.
#[track_caller]
fn member(s: &Server, viewer: &User, room_id: &str, target: &User) -> Value {
    state_content(s, &viewer.token, room_id, "m.room.member", &target.id)
}

fn private_room(s: &Server, creator: &User) -> String {
    create_room(s, &creator.token, json!({ "preset": "private_chat" }))
}

#[test]
fn join_public_and_private_rooms() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let public = public_room(&s, &alice.token);
    let private = private_room(&s, &alice);

    joined_ok(&s, &bob, &public);
    // Joining again changes nothing and succeeds.
    joined_ok(&s, &bob, &public);
    let (status, body) = try_join(&s, &bob.token, &public);
    assert_eq!((status, &body["room_id"]), (200, &json!(public)), "{body}");
    assert_eq!(member(&s, &alice, &public, &bob)["membership"], "join");

    // Invitation only: refused, then allowed once invited.
    assert_error(&join(&s, &bob, &private), 403, "M_FORBIDDEN");
    assert_error(&try_join(&s, &bob.token, &private), 403, "M_FORBIDDEN");
    act_ok(&s, &alice, &private, "invite", &bob);
    assert_eq!(member(&s, &alice, &private, &bob)["membership"], "invite");
    assert_eq!(joined_rooms(&s, &bob.token), std::slice::from_ref(&public));
    let (status, body) = act(&s, &bob, &private, "join", json!({ "reason": "hello" }));
    assert_eq!(status, 200, "{body}");
    assert_eq!(member(&s, &alice, &private, &bob)["reason"], "hello");
    let mut both = vec![public, private];
    both.sort();
    assert_eq!(joined_rooms(&s, &bob.token), both);
}

#[test]
fn join_by_alias_and_unknown_rooms() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let room = create_room(&s, &alice.token, json!({ "preset": "public_chat", "room_alias_name": "hall" }));
    let (status, body) = try_join(&s, &bob.token, "#hall:localhost");
    assert_eq!((status, body), (200, json!({ "room_id": room })));
    // `via` and `server_name` name servers to join through; ignored here.
    let path = format!("{V3}/join/{}?via=localhost&server_name=localhost", enc("#hall:localhost"));
    assert_eq!(s.post(&path, Some(&bob.token), json!({})).0, 200);

    assert_error(&try_join(&s, &bob.token, "#nowhere:localhost"), 404, "M_NOT_FOUND");
    // Another server's alias and room are asked of that server: one that
    // cannot be reached is a 502 (tests/federation_rooms.rs joins real ones).
    assert_error(&try_join(&s, &bob.token, "#hall:elsewhere.example"), 502, "M_UNKNOWN");
    assert_error(&try_join(&s, &bob.token, "!unknown:localhost"), 404, "M_NOT_FOUND");
    assert_error(&try_join(&s, &bob.token, "!unknown:elsewhere.example"), 502, "M_UNKNOWN");
    assert_error(&join(&s, &bob, "!unknown:localhost"), 404, "M_NOT_FOUND");
    assert_error(&join(&s, &bob, "!31hneApxJ_1o-63DmFrpeqnkFfWppnzWso1JvH3ogLM"), 404, "M_NOT_FOUND");
    for bad in ["hall", "#hall", "#:localhost", "!", "!a b:localhost", "@bob:localhost", "#hall:bad host"] {
        assert_error(&try_join(&s, &bob.token, bad), 400, "M_INVALID_PARAM");
    }
    for bad in ["#hall:localhost", "room", "!a b:localhost"] {
        assert_error(&join(&s, &bob, bad), 400, "M_INVALID_PARAM");
    }
    // Knocking resolves the same way.
    assert_error(&knock(&s, &bob, "#nowhere:localhost", json!({})), 404, "M_NOT_FOUND");
    assert_error(&knock(&s, &bob, "!unknown:localhost", json!({})), 404, "M_NOT_FOUND");
    assert_error(&knock(&s, &bob, "nothing", json!({})), 400, "M_INVALID_PARAM");
}

#[test]
fn invites_need_membership_and_power() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let carol = s.user("carol", PW);
    let dave = s.user("dave", PW);
    // A public room where inviting needs level 50.
    let room = create_room(
        &s,
        &alice.token,
        json!({ "preset": "public_chat", "power_level_content_override": { "invite": 50 } }),
    );
    joined_ok(&s, &bob, &room);
    let (status, body) = act(&s, &bob, &room, "invite", json!({ "user_id": carol.id }));
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["errcode"], "M_FORBIDDEN");
    // A non-member cannot invite either.
    assert_error(&act(&s, &dave, &room, "invite", json!({ "user_id": carol.id })), 403, "M_FORBIDDEN");

    let (status, body) =
        act(&s, &alice, &room, "invite", json!({ "user_id": carol.id, "reason": "welcome" }));
    assert_eq!((status, body), (200, json!({})));
    let carol_member = member(&s, &alice, &room, &carol);
    assert_eq!((&carol_member["membership"], &carol_member["reason"]), (&json!("invite"), &json!("welcome")));
    // Already invited: still a success.
    act_ok(&s, &alice, &room, "invite", &carol);
    // Already joined: refused by the rules.
    assert_error(&act(&s, &alice, &room, "invite", json!({ "user_id": bob.id })), 403, "M_FORBIDDEN");
    // Unknown, remote and malformed users.
    let invite = |user_id: Value| act(&s, &alice, &room, "invite", json!({ "user_id": user_id }));
    assert_error(&invite(json!("@nobody:localhost")), 404, "M_NOT_FOUND");
    // A remote user's server co-signs the invite: unreachable, a 502.
    assert_error(&invite(json!("@carol:elsewhere.example")), 502, "M_UNKNOWN");
    assert_error(&invite(json!("carol")), 400, "M_INVALID_PARAM");
    assert_error(&invite(json!(5)), 400, "M_BAD_JSON");
    assert_error(&act(&s, &alice, &room, "invite", json!({ "reason": "x" })), 400, "M_MISSING_PARAM");
    assert_error(
        &act(&s, &alice, "!nope:localhost", "invite", json!({ "user_id": carol.id })),
        404,
        "M_NOT_FOUND",
    );
    assert_error(&act(&s, &alice, "nope", "invite", json!({ "user_id": carol.id })), 400, "M_INVALID_PARAM");
}

#[test]
fn leave_rejoin_and_reject_invites() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let carol = s.user("carol", PW);
    let public = public_room(&s, &alice.token);
    let private = private_room(&s, &alice);

    joined_ok(&s, &bob, &public);
    let (status, body) = act(&s, &bob, &public, "leave", json!({ "reason": "bye" }));
    assert_eq!((status, body), (200, json!({})));
    let left = member(&s, &alice, &public, &bob);
    assert_eq!((&left["membership"], &left["reason"]), (&json!("leave"), &json!("bye")));
    assert!(joined_rooms(&s, &bob.token).is_empty());
    // Leaving again changes nothing; a body is optional.
    let r = s.raw(
        "POST",
        &format!("{V3}/rooms/{public}/leave"),
        &[("Authorization", &format!("Bearer {}", bob.token))],
        None,
    );
    assert_eq!((r.status, r.json), (200, json!({})));
    joined_ok(&s, &bob, &public);
    assert_eq!(joined_rooms(&s, &bob.token), std::slice::from_ref(&public));

    // Leaving a room one was never in is refused; an unknown room is 404.
    assert_error(&act(&s, &bob, &private, "leave", json!({})), 403, "M_FORBIDDEN");
    assert_error(&act(&s, &bob, "!nope:localhost", "leave", json!({})), 404, "M_NOT_FOUND");

    // Rejecting an invite is leaving; the room then needs a new invite.
    act_ok(&s, &alice, &private, "invite", &carol);
    assert_eq!(act(&s, &carol, &private, "leave", json!({})).0, 200);
    assert_eq!(member(&s, &alice, &private, &carol)["membership"], "leave");
    assert_error(&join(&s, &carol, &private), 403, "M_FORBIDDEN");
    // A member who leaves an invitation-only room needs a new invite too.
    act_ok(&s, &alice, &private, "invite", &carol);
    joined_ok(&s, &carol, &private);
    assert_eq!(act(&s, &carol, &private, "leave", json!({})).0, 200);
    assert_error(&join(&s, &carol, &private), 403, "M_FORBIDDEN");
    act_ok(&s, &alice, &private, "invite", &carol);
    joined_ok(&s, &carol, &private);
}

#[test]
fn kicking() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let carol = s.user("carol", PW);
    let dave = s.user("dave", PW);
    let room = public_room(&s, &alice.token);
    joined_ok(&s, &bob, &room);
    joined_ok(&s, &carol, &room);

    // Bob (level 0) may not kick.
    assert_error(&act(&s, &bob, &room, "kick", json!({ "user_id": carol.id })), 403, "M_FORBIDDEN");
    assert_eq!(joined_rooms(&s, &carol.token), std::slice::from_ref(&room));
    // Alice may, with a reason on the event.
    let (status, body) = act(&s, &alice, &room, "kick", json!({ "user_id": carol.id, "reason": "jokes" }));
    assert_eq!((status, body), (200, json!({})));
    let kicked = member(&s, &alice, &room, &carol);
    assert_eq!((&kicked["membership"], &kicked["reason"]), (&json!("leave"), &json!("jokes")));
    assert!(joined_rooms(&s, &carol.token).is_empty());
    // A kicked user may rejoin a public room.
    joined_ok(&s, &carol, &room);
    // Nobody kicks someone who is not there, or their own superior.
    assert_error(&act(&s, &alice, &room, "kick", json!({ "user_id": dave.id })), 403, "M_FORBIDDEN");
    assert_error(&act(&s, &bob, &room, "kick", json!({ "user_id": alice.id })), 403, "M_FORBIDDEN");
    assert_error(&act(&s, &dave, &room, "kick", json!({ "user_id": bob.id })), 403, "M_FORBIDDEN");

    // Kicking an invitee rescinds the invite.
    let private = private_room(&s, &alice);
    act_ok(&s, &alice, &private, "invite", &dave);
    act_ok(&s, &alice, &private, "kick", &dave);
    assert_error(&join(&s, &dave, &private), 403, "M_FORBIDDEN");

    assert_error(&act(&s, &alice, &room, "kick", json!({})), 400, "M_MISSING_PARAM");
    assert_error(&act(&s, &alice, &room, "kick", json!({ "user_id": "dave" })), 400, "M_INVALID_PARAM");
    assert_error(
        &act(&s, &alice, &room, "kick", json!({ "user_id": bob.id, "reason": 3 })),
        400,
        "M_BAD_JSON",
    );
}

#[test]
fn ban_and_unban() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let carol = s.user("carol", PW);
    let room = public_room(&s, &alice.token);
    joined_ok(&s, &bob, &room);
    joined_ok(&s, &carol, &room);

    // Carol (level 0) may not ban.
    assert_error(&act(&s, &carol, &room, "ban", json!({ "user_id": bob.id })), 403, "M_FORBIDDEN");
    let (status, body) = act(&s, &alice, &room, "ban", json!({ "user_id": bob.id, "reason": "spam" }));
    assert_eq!((status, body), (200, json!({})));
    let banned = member(&s, &alice, &room, &bob);
    assert_eq!((&banned["membership"], &banned["reason"]), (&json!("ban"), &json!("spam")));
    assert!(joined_rooms(&s, &bob.token).is_empty());
    // A banned user can neither join, be invited nor leave.
    assert_error(&join(&s, &bob, &room), 403, "M_FORBIDDEN");
    assert_error(&act(&s, &alice, &room, "invite", json!({ "user_id": bob.id })), 403, "M_FORBIDDEN");
    assert_error(&act(&s, &bob, &room, "leave", json!({})), 403, "M_FORBIDDEN");
    // A ban is undone by unban, not kick.
    assert_error(&act(&s, &alice, &room, "kick", json!({ "user_id": bob.id })), 403, "M_FORBIDDEN");
    // Unbanning needs the ban level, and a banned target.
    assert_error(&act(&s, &carol, &room, "unban", json!({ "user_id": bob.id })), 403, "M_FORBIDDEN");
    assert_error(&act(&s, &alice, &room, "unban", json!({ "user_id": carol.id })), 403, "M_FORBIDDEN");
    assert_eq!(
        joined_rooms(&s, &carol.token),
        std::slice::from_ref(&room),
        "an unban of a member must not kick"
    );
    let (status, body) = act(&s, &alice, &room, "unban", json!({ "user_id": bob.id, "reason": "served" }));
    assert_eq!((status, body), (200, json!({})));
    assert_eq!(member(&s, &alice, &room, &bob)["membership"], "leave");
    joined_ok(&s, &bob, &room);

    // Anyone can be banned ahead of time, even a user who never came.
    let dave = s.user("dave", PW);
    act_ok(&s, &alice, &room, "ban", &dave);
    assert_error(&join(&s, &dave, &room), 403, "M_FORBIDDEN");
    assert_error(&act(&s, &alice, &room, "ban", json!({ "user_id": "@x" })), 400, "M_INVALID_PARAM");
    assert_error(&act(&s, &alice, &room, "unban", json!({})), 400, "M_MISSING_PARAM");
}

#[test]
fn membership_rules_in_each_room_version() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let carol = s.user("carol", PW);
    for version in ["10", "11", "12"] {
        let room =
            create_room(&s, &alice.token, json!({ "room_version": version, "preset": "private_chat" }));
        assert_error(&join(&s, &bob, &room), 403, "M_FORBIDDEN");
        act_ok(&s, &alice, &room, "invite", &bob);
        joined_ok(&s, &bob, &room);
        // The default invite level is 0: any member may invite.
        act_ok(&s, &bob, &room, "invite", &carol);
        joined_ok(&s, &carol, &room);
        assert_error(&act(&s, &bob, &room, "kick", json!({ "user_id": carol.id })), 403, "M_FORBIDDEN");
        assert_error(&act(&s, &bob, &room, "ban", json!({ "user_id": alice.id })), 403, "M_FORBIDDEN");
        act_ok(&s, &alice, &room, "kick", &carol);
        act_ok(&s, &alice, &room, "ban", &bob);
        act_ok(&s, &alice, &room, "unban", &bob);
        assert_error(&join(&s, &bob, &room), 403, "M_FORBIDDEN");
    }
}

#[test]
fn knocking() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let carol = s.user("carol", PW);
    let dave = s.user("dave", PW);
    let room = create_room(
        &s,
        &alice.token,
        json!({
            "room_alias_name": "door",
            "initial_state": [{ "type": "m.room.join_rules", "content": { "join_rule": "knock" } }],
        }),
    );
    // Knocking is asking; it does not let one in.
    let (status, body) = knock(&s, &bob, &room, json!({ "reason": "let me in" }));
    assert_eq!((status, body), (200, json!({ "room_id": room })));
    let knocked = member(&s, &alice, &room, &bob);
    assert_eq!((&knocked["membership"], &knocked["reason"]), (&json!("knock"), &json!("let me in")));
    assert_error(&join(&s, &bob, &room), 403, "M_FORBIDDEN");
    assert!(joined_rooms(&s, &bob.token).is_empty());
    // Knocking again is harmless.
    assert_eq!(knock(&s, &bob, &room, json!({})).0, 200);
    // An invite accepts the knock.
    act_ok(&s, &alice, &room, "invite", &bob);
    joined_ok(&s, &bob, &room);
    // Members cannot knock.
    assert_error(&knock(&s, &bob, &room, json!({})), 403, "M_FORBIDDEN");

    // A knock is retracted by leaving, or refused by a kick.
    let (status, body) = knock(&s, &carol, "#door:localhost", json!({}));
    assert_eq!((status, body), (200, json!({ "room_id": room })));
    assert_eq!(act(&s, &carol, &room, "leave", json!({})).0, 200);
    assert_eq!(member(&s, &alice, &room, &carol)["membership"], "leave");
    assert_eq!(knock(&s, &dave, &room, json!({})).0, 200);
    act_ok(&s, &alice, &room, "kick", &dave);
    assert_eq!(member(&s, &alice, &room, &dave)["membership"], "leave");
    // Invited and banned users cannot knock.
    act_ok(&s, &alice, &room, "invite", &carol);
    assert_error(&knock(&s, &carol, &room, json!({})), 403, "M_FORBIDDEN");
    act_ok(&s, &alice, &room, "ban", &dave);
    assert_error(&knock(&s, &dave, &room, json!({})), 403, "M_FORBIDDEN");

    // Rooms whose join rule is not knock refuse knocks.
    for preset in ["public_chat", "private_chat"] {
        let other = create_room(&s, &alice.token, json!({ "preset": preset }));
        assert_error(&knock(&s, &dave, &other, json!({})), 403, "M_FORBIDDEN");
    }
    assert_error(&knock(&s, &dave, &room, json!({ "reason": 1 })), 400, "M_BAD_JSON");
}

#[test]
fn forgetting() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let room = public_room(&s, &alice.token);
    let forget = |who: &User, room_id: &str| act(&s, who, room_id, "forget", json!({}));

    assert_error(&forget(&bob, &room), 404, "M_NOT_FOUND");
    joined_ok(&s, &bob, &room);
    assert_error(&forget(&bob, &room), 400, "M_UNKNOWN");
    assert_eq!(act(&s, &bob, &room, "leave", json!({})).0, 200);
    assert_eq!(forget(&bob, &room), (200, json!({})));
    assert_eq!(forget(&bob, &room), (200, json!({})));
    // Forgetting is not leaving for good: rejoining works.
    joined_ok(&s, &bob, &room);

    // While invited one cannot forget; after a ban one can.
    let private = private_room(&s, &alice);
    act_ok(&s, &alice, &private, "invite", &bob);
    assert_error(&forget(&bob, &private), 400, "M_UNKNOWN");
    act_ok(&s, &alice, &private, "ban", &bob);
    assert_eq!(forget(&bob, &private), (200, json!({})));

    assert_error(&forget(&bob, "!nope:localhost"), 404, "M_NOT_FOUND");
    assert_error(&forget(&bob, "nope"), 400, "M_INVALID_PARAM");
    // The endpoint takes no body: a joined user sending none still learns
    // they must leave first.
    let r = s.raw(
        "POST",
        &format!("{V3}/rooms/{room}/forget"),
        &[("Authorization", &format!("Bearer {}", alice.token))],
        None,
    );
    assert_error(&(r.status, r.json), 400, "M_UNKNOWN");
}

#[test]
fn joined_rooms_lists_exactly_the_joined_rooms() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    assert_eq!(
        s.get(&format!("{V3}/joined_rooms"), Some(&alice.token)),
        (200, json!({ "joined_rooms": [] }))
    );
    let a = public_room(&s, &alice.token);
    let b = public_room(&s, &alice.token);
    let left = public_room(&s, &alice.token);
    assert_eq!(act(&s, &alice, &left, "leave", json!({})).0, 200);
    // Invited, knocking, banned: not joined.
    let invited = private_room(&s, &bob);
    act_ok(&s, &bob, &invited, "invite", &alice);
    let knocked = create_room(
        &s,
        &bob.token,
        json!({ "initial_state": [{ "type": "m.room.join_rules", "content": { "join_rule": "knock" } }] }),
    );
    assert_eq!(knock(&s, &alice, &knocked, json!({})).0, 200);
    let banned = public_room(&s, &bob.token);
    act_ok(&s, &bob, &banned, "ban", &alice);
    let mut expected = vec![a, b];
    expected.sort();
    assert_eq!(joined_rooms(&s, &alice.token), expected);
    assert_error(&s.get(&format!("{V3}/joined_rooms"), None), 401, "M_MISSING_TOKEN");
}

#[test]
fn nobody_joins_on_behalf_of_another() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let room = public_room(&s, &alice.token);
    let path = format!("{V3}/rooms/{room}/state/m.room.member/{}", enc(&bob.id));
    assert_error(&s.put(&path, Some(&alice.token), json!({ "membership": "join" })), 403, "M_FORBIDDEN");
    assert!(joined_rooms(&s, &bob.token).is_empty());
    // Setting one's own membership through the state API follows the same rules.
    let own = format!("{V3}/rooms/{room}/state/m.room.member/{}", enc(&bob.id));
    let (status, body) = s.put(&own, Some(&bob.token), json!({ "membership": "join" }));
    assert_eq!(status, 200, "{body}");
    assert_eq!(joined_rooms(&s, &bob.token), [room]);
}

#[test]
fn bad_input() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let room = public_room(&s, &alice.token);
    let auth = format!("Bearer {}", alice.token);
    let raw = |path: &str, body: &[u8]| {
        let r = s.raw("POST", &format!("{V3}{path}"), &[("Authorization", &auth)], Some(body));
        (r.status, r.json)
    };
    for action in ["invite", "kick", "ban", "unban", "join", "leave"] {
        assert_error(&raw(&format!("/rooms/{room}/{action}"), b"{nope"), 400, "M_NOT_JSON");
        assert_error(&raw(&format!("/rooms/{room}/{action}"), b"[1]"), 400, "M_BAD_JSON");
        assert_error(&raw(&format!("/rooms/{room}/{action}"), b"{\"reason\": {}}"), 400, "M_BAD_JSON");
    }
    for action in ["invite", "kick", "ban", "unban"] {
        // These need a body naming the user.
        assert_error(&raw(&format!("/rooms/{room}/{action}"), b""), 400, "M_NOT_JSON");
        assert_error(&raw(&format!("/rooms/{room}/{action}"), b"{}"), 400, "M_MISSING_PARAM");
        assert_error(
            &raw(&format!("/rooms/{room}/{action}"), b"{\"user_id\": null}"),
            400,
            "M_MISSING_PARAM",
        );
        assert_error(&raw(&format!("/rooms/{room}/{action}"), b"{\"user_id\": []}"), 400, "M_BAD_JSON");
        for bad in ["", "bob", "@bob", "@bob:", "@b b:localhost"] {
            let body = serde_json::to_vec(&json!({ "user_id": bad })).expect("json");
            assert_error(&raw(&format!("/rooms/{room}/{action}"), &body), 400, "M_INVALID_PARAM");
        }
        assert_error(
            &raw(&format!("/rooms/not-a-room/{action}"), b"{\"user_id\": \"@bob:localhost\"}"),
            400,
            "M_INVALID_PARAM",
        );
    }
    assert_error(&raw(&format!("/join/{}", enc(&room)), b"not json"), 400, "M_NOT_JSON");
    assert_error(&raw(&format!("/knock/{}", enc(&room)), b"not json"), 400, "M_NOT_JSON");
    assert_error(&s.post(&format!("{V3}/rooms/{room}/join"), None, json!({})), 401, "M_MISSING_TOKEN");
    // The server is unharmed.
    assert_eq!(joined_rooms(&s, &alice.token), [room]);
}
