//! Room aliases and the published room directory, through the real server:
//! alias create/resolve/delete and who may delete, `/rooms/{id}/aliases`,
//! directory visibility, and `/publicRooms` listing, search and pagination.

mod common;

use std::collections::HashSet;

use common::{assert_error, create_room, enc, join, Server, V3};
use serde_json::{json, Value};

const PW: &str = "directory-test-password";

fn alias_path(alias: &str) -> String {
    format!("{V3}/directory/room/{}", enc(alias))
}

fn list_path(room_id: &str) -> String {
    format!("{V3}/directory/list/room/{}", enc(room_id))
}

fn aliases_path(room_id: &str) -> String {
    format!("{V3}/rooms/{}/aliases", enc(room_id))
}

/// Makes a server admin with the admin command line and logs it in.
fn admin(s: &Server, name: &str) -> String {
    let (code, _, err) = s.hearth(&["user", "add", name, "--password-stdin", "--admin"], &format!("{PW}\n"));
    assert_eq!(code, 0, "user add --admin: {err}");
    s.login(name, PW)
}

fn public_rooms(s: &Server, query: &str) -> (u16, Value) {
    s.get(&format!("{V3}/publicRooms{query}"), None)
}

fn room_ids(page: &Value) -> Vec<String> {
    page["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .map(|r| r["room_id"].as_str().expect("room_id").to_owned())
        .collect()
}

fn entry<'a>(page: &'a Value, room_id: &str) -> Option<&'a Value> {
    page["chunk"].as_array().expect("chunk").iter().find(|r| r["room_id"] == room_id)
}

#[test]
fn aliases_are_created_resolved_listed_and_deleted() {
    let s = Server::start();
    let alice = s.user("alice", PW).token;
    let room = create_room(&s, &alice, json!({ "name": "Family" }));
    let other = create_room(&s, &alice, json!({}));

    let (status, body) = s.put(&alias_path("#family:localhost"), Some(&alice), json!({ "room_id": room }));
    assert_eq!((status, &body), (200, &json!({})));
    // Resolving needs no token.
    let (status, body) = s.get(&alias_path("#family:localhost"), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({ "room_id": room, "servers": ["localhost"] }));

    // Taken, whichever room the second request names.
    for target in [&room, &other] {
        let got = s.put(&alias_path("#family:localhost"), Some(&alice), json!({ "room_id": target }));
        assert_error(&got, 409, "M_UNKNOWN");
    }
    let (status, _) = s.put(&alias_path("#kin:localhost"), Some(&alice), json!({ "room_id": room }));
    assert_eq!(status, 200);
    let (status, body) = s.get(&aliases_path(&room), Some(&alice));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({ "aliases": ["#family:localhost", "#kin:localhost"] }));
    let (status, body) = s.get(&aliases_path(&other), Some(&alice));
    assert_eq!((status, body), (200, json!({ "aliases": [] })));

    let (status, body) = s.delete(&alias_path("#family:localhost"), Some(&alice), json!({}));
    assert_eq!((status, body), (200, json!({})));
    assert_error(&s.get(&alias_path("#family:localhost"), None), 404, "M_NOT_FOUND");
    assert_error(&s.delete(&alias_path("#family:localhost"), Some(&alice), json!({})), 404, "M_NOT_FOUND");
    let (_, body) = s.get(&aliases_path(&room), Some(&alice));
    assert_eq!(body, json!({ "aliases": ["#kin:localhost"] }));
    // Freed, it can point somewhere else.
    let (status, _) = s.put(&alias_path("#family:localhost"), Some(&alice), json!({ "room_id": other }));
    assert_eq!(status, 200);
    assert_eq!(s.get(&alias_path("#family:localhost"), None).1["room_id"], other.as_str());

    // Unknown aliases, and aliases of servers this one cannot reach (502,
    // as Synapse answers).
    assert_error(&s.get(&alias_path("#nobody:localhost"), None), 404, "M_NOT_FOUND");
    assert_error(&s.get(&alias_path("#family:elsewhere.example"), None), 502, "M_UNKNOWN");
    assert_error(&s.get(&alias_path("family"), None), 400, "M_INVALID_PARAM");
    assert_error(&s.delete(&alias_path("#x:elsewhere.example"), Some(&alice), json!({})), 404, "M_NOT_FOUND");
    assert_error(
        &s.delete(&alias_path("no-hash:localhost"), Some(&alice), json!({})),
        400,
        "M_INVALID_PARAM",
    );
    // A createRoom alias is an ordinary alias.
    let named = create_room(&s, &alice, json!({ "room_alias_name": "named" }));
    assert_eq!(s.get(&alias_path("#named:localhost"), None).1["room_id"], named.as_str());
    assert_error(
        &s.put(&alias_path("#named:localhost"), Some(&alice), json!({ "room_id": room })),
        409,
        "M_UNKNOWN",
    );
}

#[test]
fn alias_creation_refuses_bad_input_unknown_rooms_and_strangers() {
    let s = Server::start();
    let alice = s.user("alice", PW).token;
    let bob = s.user("bob", PW).token;
    let room = create_room(&s, &alice, json!({ "preset": "public_chat" }));
    let body = json!({ "room_id": room });

    for bad in
        ["family", "#family", "#:localhost", "#fam ily:localhost", "#family:bad server", "!room:localhost"]
    {
        assert_error(&s.put(&alias_path(bad), Some(&alice), body.clone()), 400, "M_INVALID_PARAM");
    }
    let long = format!("#{}:localhost", "a".repeat(300));
    assert_error(&s.put(&alias_path(&long), Some(&alice), body.clone()), 400, "M_INVALID_PARAM");
    assert_error(
        &s.put(&alias_path("#family:elsewhere.example"), Some(&alice), body.clone()),
        400,
        "M_INVALID_PARAM",
    );
    let unknown = json!({ "room_id": "!unknown:localhost" });
    assert_error(&s.put(&alias_path("#family:localhost"), Some(&alice), unknown), 404, "M_NOT_FOUND");
    let invalid = json!({ "room_id": "not a room" });
    assert_error(&s.put(&alias_path("#family:localhost"), Some(&alice), invalid), 400, "M_INVALID_PARAM");
    for wrong in [json!({}), json!({ "room_id": 5 }), json!({ "room_id": null }), json!(["!a:localhost"])] {
        assert_error(&s.put(&alias_path("#family:localhost"), Some(&alice), wrong), 400, "M_BAD_JSON");
    }
    let auth = format!("Bearer {alice}");
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    let r = s.raw("PUT", &alias_path("#family:localhost"), &headers, Some(b"{not json"));
    assert_eq!((r.status, r.json["errcode"].as_str()), (400, Some("M_NOT_JSON")), "{}", r.text);
    assert_error(&s.put(&alias_path("#family:localhost"), None, body.clone()), 401, "M_MISSING_TOKEN");

    // Only members may name a room.
    assert_error(&s.put(&alias_path("#family:localhost"), Some(&bob), body.clone()), 403, "M_FORBIDDEN");
    join(&s, &bob, &room);
    let (status, _) = s.put(&alias_path("#family:localhost"), Some(&bob), body);
    assert_eq!(status, 200);
    let (status, resolved) = s.get(&alias_path("#family:localhost"), None);
    assert_eq!((status, resolved["room_id"].as_str()), (200, Some(room.as_str())));
}

#[test]
fn alias_deletion_needs_the_creator_an_admin_or_canonical_alias_power() {
    let s = Server::start();
    let alice = s.user("alice", PW).token;
    let bob = s.user("bob", PW).token;
    let carol = s.user("carol", PW).token;
    let root = admin(&s, "root");
    let room = create_room(
        &s,
        &alice,
        json!({
            "preset": "public_chat",
            "visibility": "public",
            "room_alias_name": "main",
        }),
    );
    join(&s, &bob, &room);
    let put = |token: &str, alias: &str| {
        let (status, body) = s.put(&alias_path(alias), Some(token), json!({ "room_id": room }));
        assert_eq!(status, 200, "{alias}: {body}");
    };
    put(&alice, "#alices:localhost");
    put(&bob, "#bobs:localhost");
    put(&bob, "#bobs2:localhost");

    // Bob (power 0) may delete his own aliases but not Alice's; Carol is a stranger.
    assert_error(&s.delete(&alias_path("#alices:localhost"), Some(&bob), json!({})), 403, "M_FORBIDDEN");
    assert_error(&s.delete(&alias_path("#bobs:localhost"), Some(&carol), json!({})), 403, "M_FORBIDDEN");
    assert_eq!(s.delete(&alias_path("#bobs:localhost"), Some(&bob), json!({})).0, 200);
    // Alice (power 100) may delete Bob's; the admin anyone's.
    assert_eq!(s.delete(&alias_path("#bobs2:localhost"), Some(&alice), json!({})).0, 200);
    assert_eq!(s.delete(&alias_path("#alices:localhost"), Some(&root), json!({})).0, 200);
    assert_error(&s.delete(&alias_path("#alices:localhost"), Some(&root), json!({})), 404, "M_NOT_FOUND");
    assert_error(&s.delete(&alias_path("#main:localhost"), None, json!({})), 401, "M_MISSING_TOKEN");

    // The canonical alias names #main: deleting it takes it out of the
    // room's canonical alias event too (seen through the directory).
    let (_, page) = public_rooms(&s, "");
    assert_eq!(entry(&page, &room).expect("listed")["canonical_alias"], "#main:localhost");
    assert_eq!(s.delete(&alias_path("#main:localhost"), Some(&alice), json!({})).0, 200);
    let (_, page) = public_rooms(&s, "");
    let listed = entry(&page, &room).expect("listed");
    assert!(listed.get("canonical_alias").is_none(), "{listed}");
    // And a new canonical alias can be set up again through the alias API.
    put(&alice, "#main:localhost");
    let (_, body) = s.get(&aliases_path(&room), Some(&bob));
    assert_eq!(body, json!({ "aliases": ["#main:localhost"] }));
}

#[test]
fn room_alias_lists_are_for_members_world_readable_rooms_and_admins() {
    let s = Server::start();
    let alice = s.user("alice", PW).token;
    let bob = s.user("bob", PW).token;
    let root = admin(&s, "root");
    let closed = create_room(&s, &alice, json!({ "room_alias_name": "closed" }));
    let open = create_room(
        &s,
        &alice,
        json!({
            "room_alias_name": "open",
            "initial_state": [{
                "type": "m.room.history_visibility",
                "state_key": "",
                "content": { "history_visibility": "world_readable" },
            }],
        }),
    );
    assert_eq!(s.get(&aliases_path(&closed), Some(&alice)).1, json!({ "aliases": ["#closed:localhost"] }));
    assert_error(&s.get(&aliases_path(&closed), Some(&bob)), 403, "M_FORBIDDEN");
    assert_eq!(s.get(&aliases_path(&open), Some(&bob)).1, json!({ "aliases": ["#open:localhost"] }));
    assert_eq!(s.get(&aliases_path(&closed), Some(&root)).1, json!({ "aliases": ["#closed:localhost"] }));
    // Unknown rooms look like rooms one is not in, except to admins.
    assert_error(&s.get(&aliases_path("!nothing:localhost"), Some(&bob)), 403, "M_FORBIDDEN");
    assert_error(&s.get(&aliases_path("!nothing:localhost"), Some(&root)), 404, "M_NOT_FOUND");
    assert_error(&s.get(&aliases_path("nothing"), Some(&bob)), 400, "M_INVALID_PARAM");
    assert_error(&s.get(&aliases_path(&closed), None), 401, "M_MISSING_TOKEN");
}

#[test]
fn published_rooms_are_listed_with_their_summary() {
    let s = Server::start();
    let alice = s.user("alice", PW).token;
    let bob = s.user("bob", PW).token;
    let public = create_room(
        &s,
        &alice,
        json!({
            "visibility": "public",
            "name": "Garden Club",
            "topic": "Tomatoes and more",
            "room_alias_name": "garden",
        }),
    );
    let private = create_room(&s, &alice, json!({ "visibility": "private", "name": "Secret" }));
    let space = create_room(
        &s,
        &alice,
        json!({
            "visibility": "public",
            "preset": "private_chat",
            "creation_content": { "type": "m.space" },
            "initial_state": [
                { "type": "m.room.avatar", "state_key": "", "content": { "url": "mxc://localhost/pic" } },
                { "type": "m.room.history_visibility", "state_key": "",
                  "content": { "history_visibility": "world_readable" } },
            ],
        }),
    );
    join(&s, &bob, &public);

    let (status, page) = public_rooms(&s, "");
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["total_room_count_estimate"], 2);
    assert!(page.get("next_batch").is_none() && page.get("prev_batch").is_none(), "{page}");
    assert!(entry(&page, &private).is_none());
    assert_eq!(
        entry(&page, &public).expect("public room listed"),
        &json!({
            "room_id": public,
            "num_joined_members": 2,
            "world_readable": false,
            "guest_can_join": false,
            "name": "Garden Club",
            "topic": "Tomatoes and more",
            "canonical_alias": "#garden:localhost",
            "join_rule": "public",
        })
    );
    assert_eq!(
        entry(&page, &space).expect("space listed"),
        &json!({
            "room_id": space,
            "num_joined_members": 1,
            "world_readable": true,
            "guest_can_join": true,
            "avatar_url": "mxc://localhost/pic",
            "join_rule": "invite",
            "room_type": "m.space",
        })
    );
    // The same with a token, through POST, and naming this server.
    let (_, token_page) = s.get(&format!("{V3}/publicRooms?server=localhost"), Some(&bob));
    assert_eq!(token_page, page);
    let (status, post_page) = s.post(&format!("{V3}/publicRooms"), Some(&bob), json!({}));
    assert_eq!((status, post_page), (200, page));

    // Visibility as the directory API reports it.
    assert_eq!(s.get(&list_path(&public), None).1, json!({ "visibility": "public" }));
    assert_eq!(s.get(&list_path(&private), None).1, json!({ "visibility": "private" }));

    // Another server's directory is asked of it, for users with a token
    // only; one that cannot be reached is a 502.
    assert_error(&public_rooms(&s, "?server=elsewhere.example"), 401, "M_MISSING_TOKEN");
    let get = s.get(&format!("{V3}/publicRooms?server=elsewhere.example"), Some(&bob));
    assert_error(&get, 502, "M_UNKNOWN");
    assert_error(&public_rooms(&s, "?server=bad%20server"), 400, "M_INVALID_PARAM");
    let post = s.post(&format!("{V3}/publicRooms?server=elsewhere.example"), Some(&bob), json!({}));
    assert_error(&post, 502, "M_UNKNOWN");
    assert_error(&s.post(&format!("{V3}/publicRooms"), None, json!({})), 401, "M_MISSING_TOKEN");
}

#[test]
fn search_filters_by_name_topic_alias_and_room_type() {
    let s = Server::start();
    let alice = s.user("alice", PW).token;
    let knitting = create_room(&s, &alice, json!({ "visibility": "public", "name": "Knitting Circle" }));
    let chess = create_room(
        &s,
        &alice,
        json!({ "visibility": "public", "name": "Chess", "topic": "Also some KNITTING on Sundays" }),
    );
    let yarn = create_room(&s, &alice, json!({ "visibility": "public", "room_alias_name": "YarnStore" }));
    let space = create_room(
        &s,
        &alice,
        json!({ "visibility": "public", "name": "Hobbies", "creation_content": { "type": "m.space" } }),
    );
    let _hidden = create_room(&s, &alice, json!({ "name": "Knitting secrets" }));

    let search = |filter: Value| {
        let (status, page) = s.post(&format!("{V3}/publicRooms"), Some(&alice), json!({ "filter": filter }));
        assert_eq!(status, 200, "{page}");
        let mut ids = room_ids(&page);
        ids.sort();
        assert_eq!(page["total_room_count_estimate"], ids.len(), "{page}");
        ids
    };
    let sorted = |mut v: Vec<&String>| {
        v.sort();
        v.into_iter().cloned().collect::<Vec<_>>()
    };
    assert_eq!(search(json!({ "generic_search_term": "knit" })), sorted(vec![&knitting, &chess]));
    assert_eq!(search(json!({ "generic_search_term": "  CIRCLE " })), sorted(vec![&knitting]));
    assert_eq!(search(json!({ "generic_search_term": "yarnstore" })), sorted(vec![&yarn]));
    assert_eq!(search(json!({ "generic_search_term": "nothing like it" })), Vec::<String>::new());
    assert_eq!(search(json!({ "generic_search_term": "" })).len(), 4);
    assert_eq!(search(json!({ "room_types": ["m.space"] })), sorted(vec![&space]));
    assert_eq!(search(json!({ "room_types": [null] })), sorted(vec![&knitting, &chess, &yarn]));
    assert_eq!(search(json!({ "room_types": [null, "m.space"] })).len(), 4);
    assert_eq!(search(json!({ "room_types": [] })).len(), 4);
    assert_eq!(search(json!({ "generic_search_term": "hobb", "room_types": [null] })), Vec::<String>::new());

    // No third-party networks are bridged here.
    let (status, page) =
        s.post(&format!("{V3}/publicRooms"), Some(&alice), json!({ "third_party_instance_id": "irc" }));
    assert_eq!((status, page["chunk"].as_array().map(Vec::len)), (200, Some(0)));
    let (_, page) =
        s.post(&format!("{V3}/publicRooms"), Some(&alice), json!({ "include_all_networks": true }));
    assert_eq!(page["chunk"].as_array().map(Vec::len), Some(4));
    let both = json!({ "include_all_networks": true, "third_party_instance_id": "irc" });
    assert_error(&s.post(&format!("{V3}/publicRooms"), Some(&alice), both), 400, "M_INVALID_PARAM");

    // Wrong shapes.
    for wrong in [
        json!({ "filter": { "generic_search_term": 7 } }),
        json!({ "filter": { "room_types": "m.space" } }),
        json!({ "filter": { "room_types": [1] } }),
        json!({ "filter": [] }),
        json!({ "limit": "2" }),
        json!({ "limit": 1.5 }),
        json!({ "since": 3 }),
        json!({ "include_all_networks": "yes" }),
        json!("publicRooms"),
    ] {
        assert_error(&s.post(&format!("{V3}/publicRooms"), Some(&alice), wrong), 400, "M_BAD_JSON");
    }
    let auth = format!("Bearer {alice}");
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    let r = s.raw("POST", &format!("{V3}/publicRooms"), &headers, Some(b"limit=2"));
    assert_eq!((r.status, r.json["errcode"].as_str()), (400, Some("M_NOT_JSON")), "{}", r.text);
    let long = json!({ "filter": { "generic_search_term": "x".repeat(5000) } });
    assert_error(&s.post(&format!("{V3}/publicRooms"), Some(&alice), long), 400, "M_INVALID_PARAM");
}

/// Follows `next_batch` from the first page; returns the pages.
fn pages_forward(s: &Server, limit: u32) -> Vec<Value> {
    let mut pages: Vec<Value> = Vec::new();
    let mut query = format!("?limit={limit}");
    loop {
        let (status, page) = public_rooms(s, &query);
        assert_eq!(status, 200, "{page}");
        let next = page.get("next_batch").and_then(Value::as_str).map(str::to_owned);
        pages.push(page);
        assert!(pages.len() <= 10, "pagination does not end");
        match next {
            Some(t) => query = format!("?limit={limit}&since={}", enc(&t)),
            None => return pages,
        }
    }
}

#[test]
fn pagination_walks_pages_both_ways_without_duplicates() {
    let s = Server::start();
    let alice = s.user("alice", PW).token;
    let mut rooms = Vec::new();
    for i in 0..5 {
        rooms.push(create_room(&s, &alice, json!({ "visibility": "public", "name": format!("Room {i}") })));
    }
    let pages = pages_forward(&s, 2);
    let sizes: Vec<usize> = pages.iter().map(|p| room_ids(p).len()).collect();
    assert_eq!(sizes, [2, 2, 1]);
    let all: Vec<String> = pages.iter().flat_map(room_ids).collect();
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(unique.len(), 5, "{all:?}");
    assert_eq!(unique, rooms.iter().collect::<HashSet<_>>());
    assert!(pages[0].get("prev_batch").is_none(), "{}", pages[0]);
    assert!(pages[1].get("prev_batch").is_some() && pages[2].get("prev_batch").is_some());
    for p in &pages {
        assert_eq!(p["total_room_count_estimate"], 5);
    }

    // Back from the last page: the middle page again, then the first.
    let prev = pages[2]["prev_batch"].as_str().expect("prev_batch");
    let (_, back) = public_rooms(&s, &format!("?limit=2&since={}", enc(prev)));
    assert_eq!(room_ids(&back), room_ids(&pages[1]));
    let prev = back["prev_batch"].as_str().expect("prev_batch");
    let (_, first) = public_rooms(&s, &format!("?limit=2&since={}", enc(prev)));
    assert_eq!(room_ids(&first), room_ids(&pages[0]));
    assert!(first.get("prev_batch").is_none() && first.get("next_batch").is_some(), "{first}");

    // POST takes the same tokens.
    let next = pages[0]["next_batch"].as_str().expect("next_batch");
    let (status, post) =
        s.post(&format!("{V3}/publicRooms"), Some(&alice), json!({ "limit": 2, "since": next }));
    assert_eq!(status, 200, "{post}");
    assert_eq!(room_ids(&post), room_ids(&pages[1]));

    // A room leaving the directory between two requests shifts nothing:
    // the next page starts after the last room seen.
    let first_room = &room_ids(&pages[0])[0];
    let (status, _) = s.put(&list_path(first_room), Some(&alice), json!({ "visibility": "private" }));
    assert_eq!(status, 200);
    let (_, again) = public_rooms(&s, &format!("?limit=2&since={}", enc(next)));
    assert_eq!(room_ids(&again), room_ids(&pages[1]));
    assert_eq!(again["total_room_count_estimate"], 4);

    // Limits are clamped, tokens checked.
    assert_eq!(room_ids(&public_rooms(&s, "?limit=0").1).len(), 1);
    assert_eq!(room_ids(&public_rooms(&s, "?limit=1000").1).len(), 4);
    assert_error(&public_rooms(&s, "?limit=two"), 400, "M_INVALID_PARAM");
    for bogus in ["bogus", "n12", "s5", "n1.%21%21", "p.abc"] {
        assert_error(&public_rooms(&s, &format!("?since={bogus}")), 400, "M_INVALID_PARAM");
    }
    let post = s.post(&format!("{V3}/publicRooms"), Some(&alice), json!({ "since": "bogus" }));
    assert_error(&post, 400, "M_INVALID_PARAM");
}

#[test]
fn directory_visibility_is_read_by_anyone_and_set_by_moderators_or_admins() {
    let s = Server::start();
    let alice = s.user("alice", PW).token;
    let bob = s.user("bob", PW).token;
    let carol = s.user("carol", PW).token;
    let root = admin(&s, "root");
    let room = create_room(&s, &alice, json!({ "preset": "public_chat", "name": "Lounge" }));
    join(&s, &bob, &room);
    let listed = |s: &Server| entry(&public_rooms(s, "").1, &room).is_some();

    assert_eq!(s.get(&list_path(&room), None), (200, json!({ "visibility": "private" })));
    assert!(!listed(&s));
    let (status, body) = s.put(&list_path(&room), Some(&alice), json!({ "visibility": "public" }));
    assert_eq!((status, body), (200, json!({})));
    assert_eq!(s.get(&list_path(&room), Some(&bob)).1, json!({ "visibility": "public" }));
    assert!(listed(&s));

    // Bob is a member at power 0, Carol not a member.
    for token in [&bob, &carol] {
        assert_error(
            &s.put(&list_path(&room), Some(token), json!({ "visibility": "private" })),
            403,
            "M_FORBIDDEN",
        );
    }
    assert!(listed(&s));
    assert_eq!(s.put(&list_path(&room), Some(&root), json!({ "visibility": "private" })).0, 200);
    assert!(!listed(&s));
    // The visibility defaults to public.
    assert_eq!(s.put(&list_path(&room), Some(&alice), json!({})).0, 200);
    assert!(listed(&s));

    // Bad input and unknown rooms.
    assert_error(
        &s.put(&list_path(&room), Some(&alice), json!({ "visibility": "hidden" })),
        400,
        "M_INVALID_PARAM",
    );
    assert_error(&s.put(&list_path(&room), Some(&alice), json!({ "visibility": 1 })), 400, "M_BAD_JSON");
    assert_error(&s.put(&list_path(&room), Some(&alice), json!([])), 400, "M_BAD_JSON");
    let auth = format!("Bearer {alice}");
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    let r = s.raw("PUT", &list_path(&room), &headers, Some(b"public"));
    assert_eq!((r.status, r.json["errcode"].as_str()), (400, Some("M_NOT_JSON")), "{}", r.text);
    assert!(listed(&s));
    assert_error(&s.get(&list_path("!nothing:localhost"), None), 404, "M_NOT_FOUND");
    let unknown = s.put(&list_path("!nothing:localhost"), Some(&root), json!({ "visibility": "public" }));
    assert_error(&unknown, 404, "M_NOT_FOUND");
    assert_error(&s.get(&list_path("lounge"), None), 400, "M_INVALID_PARAM");
    assert_error(&s.put(&list_path(&room), None, json!({ "visibility": "public" })), 401, "M_MISSING_TOKEN");

    // A member given the power to send m.room.canonical_alias may publish.
    let delegated = create_room(
        &s,
        &alice,
        json!({
            "preset": "public_chat",
            "power_level_content_override": { "events": { "m.room.canonical_alias": 0 } },
        }),
    );
    join(&s, &bob, &delegated);
    assert_eq!(s.put(&list_path(&delegated), Some(&bob), json!({ "visibility": "public" })).0, 200);
    assert_eq!(s.get(&list_path(&delegated), None).1, json!({ "visibility": "public" }));
}
