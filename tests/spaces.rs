//! Spaces: `GET /_matrix/client/v1/rooms/{roomId}/hierarchy` on one
//! server (nesting, order, `suggested_only`, `max_depth`, paging, who
//! sees which room, `children_state`), restricted joins through a space,
//! and over federation between two Hearth servers (a child room only the
//! other server holds; `/_matrix/federation/v1/hierarchy` and its access
//! rules).

mod common;

use common::ca::TestCa;
use common::fed::{self, Peer};
use common::{assert_error, create_room, enc, join, set_state, try_join, Server, TempDir, User};
use serde_json::{json, Value};

const PW: &str = "spaces-password-1";

fn server_of(user: &User) -> &str {
    user.id.split_once(':').map(|(_, s)| s).expect("a user ID")
}

fn space(s: &Server, who: &User, name: &str) -> String {
    create_room(
        s,
        &who.token,
        json!({ "preset": "public_chat", "name": name, "creation_content": { "type": "m.space" } }),
    )
}

fn public(s: &Server, who: &User, name: &str) -> String {
    create_room(s, &who.token, json!({ "preset": "public_chat", "name": name }))
}

fn add_child(s: &Server, who: &User, parent: &str, child: &str, extra: Value) {
    let mut content = json!({ "via": [server_of(who)] });
    if let (Some(c), Value::Object(extra)) = (content.as_object_mut(), extra) {
        c.extend(extra);
    }
    set_state(s, &who.token, parent, "m.space.child", child, content);
}

fn hierarchy(s: &Server, who: &User, room: &str, query: &str) -> (u16, Value) {
    s.get(&format!("/_matrix/client/v1/rooms/{}/hierarchy{query}", enc(room)), Some(&who.token))
}

#[track_caller]
fn room_ids(s: &Server, who: &User, room: &str, query: &str) -> Vec<String> {
    let (status, r) = hierarchy(s, who, room, query);
    assert_eq!(status, 200, "{r}");
    ids_of(&r)
}

fn v(ids: &[&String]) -> Vec<String> {
    ids.iter().map(|s| (*s).clone()).collect()
}

fn ids_of(page: &Value) -> Vec<String> {
    page["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .map(|r| r["room_id"].as_str().expect("id").to_owned())
        .collect()
}

/// A space S with children B (a space, `order` "a") and A (`order` "b",
/// suggested), B holding the space C holding D: three levels below S.
struct Tree {
    s: String,
    a: String,
    b: String,
    c: String,
    d: String,
}

fn tree(srv: &Server, alice: &User) -> Tree {
    let t = Tree {
        s: space(srv, alice, "S"),
        a: public(srv, alice, "A"),
        b: space(srv, alice, "B"),
        c: space(srv, alice, "C"),
        d: public(srv, alice, "D"),
    };
    add_child(srv, alice, &t.s, &t.a, json!({ "order": "b", "suggested": true }));
    add_child(srv, alice, &t.s, &t.b, json!({ "order": "a" }));
    add_child(srv, alice, &t.b, &t.c, json!({}));
    add_child(srv, alice, &t.c, &t.d, json!({}));
    t
}

#[test]
fn a_nested_space_is_walked_depth_first_in_order() {
    let srv = Server::start();
    let alice = srv.user("alice", PW);
    let bob = srv.user("bob", PW);
    let t = tree(&srv, &alice);
    // A child without `via` is no child; a private room bob cannot see is
    // left out for him, listed for alice.
    set_state(&srv, &alice.token, &t.s, "m.space.child", "!gone:localhost", json!({}));
    let private = create_room(&srv, &alice.token, json!({ "preset": "private_chat", "name": "P" }));
    add_child(&srv, &alice, &t.s, &private, json!({ "order": "c" }));

    let all = [&t.s, &t.b, &t.c, &t.d, &t.a];
    assert_eq!(room_ids(&srv, &bob, &t.s, ""), v(&all));
    let mut with_private: Vec<&String> = all.to_vec();
    with_private.push(&private);
    assert_eq!(room_ids(&srv, &alice, &t.s, ""), v(&with_private));

    let (_, page) = hierarchy(&srv, &bob, &t.s, "");
    let root = &page["rooms"][0];
    assert_eq!(root["name"], "S");
    assert_eq!(root["room_type"], "m.space");
    assert_eq!(root["join_rule"], "public");
    assert_eq!(root["num_joined_members"], 1);
    assert_eq!(root["world_readable"], false);
    assert_eq!(root["guest_can_join"], false);
    assert!(root["room_version"].is_string(), "{root}");
    let state = root["children_state"].as_array().expect("children_state");
    assert_eq!(state.len(), 3, "{root}");
    let b_event = state.iter().find(|e| e["state_key"] == t.b.as_str()).expect("B's event");
    assert_eq!(b_event["type"], "m.space.child");
    assert_eq!(b_event["sender"], alice.id.as_str());
    assert_eq!(b_event["content"], json!({ "via": ["localhost"], "order": "a" }));
    assert!(b_event["origin_server_ts"].as_i64().is_some_and(|ts| ts > 0), "{b_event}");
    assert!(b_event.get("event_id").is_none() && b_event.get("unsigned").is_none(), "stripped: {b_event}");
    // A room that is no space has an empty children_state.
    let a = page["rooms"].as_array().unwrap().iter().find(|r| r["room_id"] == t.a.as_str()).unwrap();
    assert_eq!(a["children_state"], json!([]));
    assert!(a.get("room_type").is_none(), "{a}");

    // suggested_only: only the suggested children (A).
    assert_eq!(room_ids(&srv, &bob, &t.s, "?suggested_only=true"), v(&[&t.s, &t.a]));
    // max_depth.
    assert_eq!(room_ids(&srv, &bob, &t.s, "?max_depth=0"), v(&[&t.s]));
    assert_eq!(room_ids(&srv, &bob, &t.s, "?max_depth=1"), v(&[&t.s, &t.b, &t.a]));
    assert_eq!(room_ids(&srv, &bob, &t.s, "?max_depth=2"), v(&[&t.s, &t.b, &t.c, &t.a]));
    // A loop does not list a room twice.
    add_child(&srv, &alice, &t.c, &t.s, json!({}));
    assert_eq!(room_ids(&srv, &bob, &t.s, ""), v(&all));
    // A subtree from its own root, the loop taking it back up to S.
    assert_eq!(room_ids(&srv, &bob, &t.b, ""), v(&[&t.b, &t.c, &t.d, &t.s, &t.a]));
}

#[test]
fn pages_list_every_room_once_and_tokens_are_checked() {
    let srv = Server::start();
    let alice = srv.user("alice", PW);
    let t = tree(&srv, &alice);
    let whole = room_ids(&srv, &alice, &t.s, "");
    assert_eq!(whole.len(), 5);
    let mut paged = Vec::new();
    let mut query = "?limit=2".to_owned();
    loop {
        let (status, page) = hierarchy(&srv, &alice, &t.s, &query);
        assert_eq!(status, 200, "{page}");
        let ids = ids_of(&page);
        assert!(ids.len() <= 2, "{page}");
        paged.extend(ids);
        match page["next_batch"].as_str() {
            Some(next) => query = format!("?limit=2&from={}", enc(next)),
            None => break,
        }
    }
    assert_eq!(paged, whole);

    let (_, first) = hierarchy(&srv, &alice, &t.s, "?limit=2");
    let next = first["next_batch"].as_str().expect("next_batch").to_owned();
    let changed = hierarchy(&srv, &alice, &t.s, &format!("?limit=2&max_depth=1&from={}", enc(&next)));
    assert_error(&changed, 400, "M_INVALID_PARAM");
    let changed = hierarchy(&srv, &alice, &t.s, &format!("?suggested_only=true&from={}", enc(&next)));
    assert_error(&changed, 400, "M_INVALID_PARAM");
    for bad in ["?from=garbage", "?from=h1_0", "?limit=0", "?limit=x", "?max_depth=-1", "?suggested_only=yes"]
    {
        assert_error(&hierarchy(&srv, &alice, &t.s, bad), 400, "M_INVALID_PARAM");
    }
}

#[test]
fn who_sees_which_room() {
    let srv = Server::start();
    let alice = srv.user("alice", PW);
    let bob = srv.user("bob", PW);
    let carol = srv.user("carol", PW);
    let s = space(&srv, &alice, "S");
    let restricted = create_room(
        &srv,
        &alice.token,
        json!({
            "preset": "private_chat",
            "name": "R",
            "initial_state": [{
                "type": "m.room.join_rules", "state_key": "",
                "content": { "join_rule": "restricted", "allow": [{ "type": "m.room_membership", "room_id": s }] },
            }],
        }),
    );
    let readable = create_room(
        &srv,
        &alice.token,
        json!({
            "preset": "private_chat",
            "initial_state": [
                { "type": "m.room.history_visibility", "state_key": "", "content": { "history_visibility": "world_readable" } },
                { "type": "m.room.encryption", "state_key": "", "content": { "algorithm": "m.megolm.v1.aes-sha2" } },
            ],
        }),
    );
    let knock = create_room(
        &srv,
        &alice.token,
        json!({ "preset": "private_chat", "initial_state": [
            { "type": "m.room.join_rules", "state_key": "", "content": { "join_rule": "knock" } },
        ] }),
    );
    for child in [&restricted, &readable, &knock] {
        add_child(&srv, &alice, &s, child, json!({}));
    }
    // Not in the space: the restricted room is left out.
    let mut ids = room_ids(&srv, &bob, &s, "");
    ids.sort();
    let mut expected = vec![s.clone(), readable.clone(), knock.clone()];
    expected.sort();
    assert_eq!(ids, expected);
    // In the space: it is listed, with the rooms it admits members of.
    join(&srv, &bob.token, &s);
    let (_, page) = hierarchy(&srv, &bob, &s, "");
    let r = page["rooms"].as_array().unwrap().iter().find(|r| r["room_id"] == restricted.as_str());
    let r = r.unwrap_or_else(|| panic!("restricted room missing: {page}"));
    assert_eq!(r["join_rule"], "restricted");
    assert_eq!(r["allowed_room_ids"], json!([s]));
    let e = page["rooms"].as_array().unwrap().iter().find(|r| r["room_id"] == readable.as_str()).unwrap();
    assert_eq!(e["encryption"], "m.megolm.v1.aes-sha2");
    assert_eq!(e["world_readable"], true);

    // The restricted join itself: bob (in the space) may, carol may not.
    let (status, r) = try_join(&srv, &bob.token, &restricted);
    assert_eq!(status, 200, "{r}");
    let path = format!("/_matrix/client/v3/rooms/{}/state/m.room.member/{}", enc(&restricted), enc(&bob.id));
    let (_, member) = srv.get(&path, Some(&alice.token));
    assert_eq!(member["join_authorised_via_users_server"], alice.id.as_str(), "{member}");
    assert_error(&try_join(&srv, &carol.token, &restricted), 403, "M_FORBIDDEN");

    // A root the requester may not see, or that does not exist, is 403.
    let private = create_room(
        &srv,
        &alice.token,
        json!({ "preset": "private_chat", "creation_content": { "type": "m.space" } }),
    );
    assert_error(&hierarchy(&srv, &carol, &private, ""), 403, "M_FORBIDDEN");
    assert_error(&hierarchy(&srv, &carol, "!unknown:localhost", ""), 403, "M_FORBIDDEN");
    assert_error(&hierarchy(&srv, &carol, "not-a-room", ""), 400, "M_INVALID_PARAM");
    assert_eq!(hierarchy(&srv, &alice, &private, "").0, 200);
}

#[test]
fn a_child_only_another_server_holds_is_asked_of_it() {
    let dir = TempDir::new();
    let ca = TestCa::new(dir.path());
    let (a, b) = (Peer::start(&ca, &[], &[]), Peer::start(&ca, &[], &[]));
    let alice = a.server.user("alice", PW);
    let bob = b.server.user("bob", PW);
    // On B: a space with a public room and a private one; a private room.
    let b_space = space(&b.server, &bob, "B's space");
    let b_public = public(&b.server, &bob, "B public");
    let b_private =
        create_room(&b.server, &bob.token, json!({ "preset": "private_chat", "name": "B private" }));
    add_child(&b.server, &bob, &b_space, &b_public, json!({}));
    add_child(&b.server, &bob, &b_space, &b_private, json!({}));
    // On A: a space whose child is B's space, which nobody on A joined.
    let a_space = space(&a.server, &alice, "A's space");
    add_child(&a.server, &alice, &a_space, &b_space, json!({ "via": [b.name] }));

    let (status, page) = hierarchy(&a.server, &alice, &a_space, "");
    assert_eq!(status, 200, "{page}");
    assert_eq!(ids_of(&page), v(&[&a_space, &b_space, &b_public]), "{page}");
    let remote = &page["rooms"][1];
    assert_eq!(remote["name"], "B's space");
    assert_eq!(remote["room_type"], "m.space");
    assert_eq!(remote["children_state"].as_array().map(Vec::len), Some(2), "{remote}");
    assert_eq!(page["rooms"][2]["name"], "B public");
    assert_eq!(page["rooms"][2]["children_state"], json!([]));

    // B's endpoint, asked as A: the private child is inaccessible; a
    // private room itself is not found; an unknown one neither.
    let agent = fed::agent(&ca);
    let key = a.signing_key();
    let ask = |room: &str, query: &str| {
        let uri = format!("/_matrix/federation/v1/hierarchy/{}{query}", enc(room));
        fed::signed(&agent, &key, &a.name, &b.name, "GET", &uri, None)
    };
    let (status, answer) = ask(&b_space, "");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["room"]["room_id"], b_space.as_str());
    assert_eq!(answer["room"]["children_state"].as_array().map(Vec::len), Some(2));
    let children: Vec<&str> =
        answer["children"].as_array().unwrap().iter().filter_map(|c| c["room_id"].as_str()).collect();
    assert_eq!(children, [b_public.as_str()], "{answer}");
    assert_eq!(answer["inaccessible_children"], json!([b_private]));
    assert_error(&ask(&b_private, ""), 404, "M_NOT_FOUND");
    assert_error(&ask("!unknown:localhost", ""), 404, "M_NOT_FOUND");
    let (status, suggested) = ask(&b_space, "?suggested_only=true");
    assert_eq!(status, 200, "{suggested}");
    assert_eq!(suggested["children"], json!([]));
    // Unsigned, refused.
    let (status, _) = fed::call(
        &agent,
        "GET",
        &b.name,
        &format!("/_matrix/federation/v1/hierarchy/{}", enc(&b_space)),
        &[],
        None,
    );
    assert_eq!(status, 401);
    // Once A's user is in B's private room, A's server may see it.
    let path = format!("/_matrix/client/v3/rooms/{}/invite", enc(&b_private));
    assert_eq!(b.server.post(&path, Some(&bob.token), json!({ "user_id": alice.id })).0, 200);
    common::wait_until(&a.server, "the invite", || {
        let (_, s) = a.server.get("/_matrix/client/v3/sync", Some(&alice.token));
        s["rooms"]["invite"].get(&b_private).is_some()
    });
    let (status, r) = a.server.post(
        &format!("/_matrix/client/v3/join/{}?via={}", enc(&b_private), enc(&b.name)),
        Some(&alice.token),
        json!({}),
    );
    assert_eq!(status, 200, "{r}");
    let (status, answer) = ask(&b_private, "");
    assert_eq!(status, 200, "{answer}");
}

/// A restricted room on B admits members of B's space: B's hierarchy
/// lists it for A once one of A's users is in that space, and A shows it
/// to that user only.
#[test]
fn a_remote_restricted_child_is_shown_to_members_of_its_allowed_room() {
    let dir = TempDir::new();
    let ca = TestCa::new(dir.path());
    let (a, b) = (Peer::start(&ca, &[], &[]), Peer::start(&ca, &[], &[]));
    let alice = a.server.user("alice", PW);
    let carol = a.server.user("carol", PW);
    let bob = b.server.user("bob", PW);
    let b_space = space(&b.server, &bob, "B's space");
    let restricted = create_room(
        &b.server,
        &bob.token,
        json!({
            "preset": "private_chat",
            "name": "R",
            "initial_state": [{
                "type": "m.room.join_rules", "state_key": "",
                "content": { "join_rule": "restricted", "allow": [{ "type": "m.room_membership", "room_id": b_space }] },
            }],
        }),
    );
    add_child(&b.server, &bob, &b_space, &restricted, json!({}));
    let agent = fed::agent(&ca);
    let key = a.signing_key();
    let uri = format!("/_matrix/federation/v1/hierarchy/{}", enc(&b_space));
    let (status, before) = fed::signed(&agent, &key, &a.name, &b.name, "GET", &uri, None);
    assert_eq!(status, 200, "{before}");
    assert_eq!(before["inaccessible_children"], json!([restricted]), "{before}");

    // Alice joins B's space from A: now A's server may see R.
    let join = format!("/_matrix/client/v3/join/{}?via={}", enc(&b_space), enc(&b.name));
    let (status, r) = a.server.post(&join, Some(&alice.token), json!({}));
    assert_eq!(status, 200, "{r}");
    let (status, after) = fed::signed(&agent, &key, &a.name, &b.name, "GET", &uri, None);
    assert_eq!(status, 200, "{after}");
    assert_eq!(after["inaccessible_children"], json!([]), "{after}");
    assert_eq!(after["children"][0]["allowed_room_ids"], json!([b_space]), "{after}");

    // A walks B's space from its own copy and asks B about R (which A
    // holds no state of): alice sees it, carol does not.
    let (status, page) = hierarchy(&a.server, &alice, &b_space, "");
    assert_eq!(status, 200, "{page}");
    assert_eq!(ids_of(&page), v(&[&b_space, &restricted]), "{page}");
    let (status, page) = hierarchy(&a.server, &carol, &b_space, "");
    assert_eq!(status, 200, "{page}");
    assert_eq!(ids_of(&page), v(&[&b_space]), "{page}");
}
