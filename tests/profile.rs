//! Profiles and the user directory through the real server: reading and
//! setting display names and avatars, who may change them, the new member
//! events a change sends into the user's rooms, and whom a directory search
//! finds.

mod common;

use common::{assert_error, create_room, enc, join, next_batch, state_content, sync, Server, User, V3};
use serde_json::{json, Value};

const PW: &str = "profile-test-password";

fn profile_path(user_id: &str, field: &str) -> String {
    match field {
        "" => format!("{V3}/profile/{}", enc(user_id)),
        f => format!("{V3}/profile/{}/{f}", enc(user_id)),
    }
}

#[track_caller]
fn set(s: &Server, who: &User, field: &str, value: Value) {
    let got = s.put(&profile_path(&who.id, field), Some(&who.token), json!({ field: value }));
    assert_eq!(got, (200, json!({})), "set {field}");
}

fn member_content(s: &Server, viewer: &User, room_id: &str, user_id: &str) -> Value {
    state_content(s, &viewer.token, room_id, "m.room.member", user_id)
}

fn search(s: &Server, who: &User, body: Value) -> Value {
    let (status, reply) = s.post(&format!("{V3}/user_directory/search"), Some(&who.token), body);
    assert_eq!(status, 200, "search: {reply}");
    reply
}

fn found(reply: &Value) -> Vec<String> {
    reply["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["user_id"].as_str().expect("user_id").to_owned())
        .collect()
}

#[test]
fn profile_fields_round_trip_and_only_the_owner_changes_them() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);

    // Nothing set yet: the name is the localpart (given at registration),
    // there is no avatar.
    assert_eq!(s.get(&profile_path(&alice.id, ""), None), (200, json!({ "displayname": "alice" })));
    assert_error(&s.get(&profile_path(&alice.id, "avatar_url"), None), 404, "M_NOT_FOUND");

    set(&s, &alice, "displayname", json!("Alice Liddell"));
    set(&s, &alice, "avatar_url", json!("mxc://hearth.test/rabbit_hole-1"));
    let whole = json!({ "displayname": "Alice Liddell", "avatar_url": "mxc://hearth.test/rabbit_hole-1" });
    // Readable without a token, and with one.
    assert_eq!(s.get(&profile_path(&alice.id, ""), None), (200, whole.clone()));
    assert_eq!(s.get(&profile_path(&alice.id, ""), Some(&bob.token)), (200, whole));
    assert_eq!(
        s.get(&profile_path(&alice.id, "displayname"), None),
        (200, json!({ "displayname": "Alice Liddell" }))
    );
    assert_eq!(
        s.get(&profile_path(&alice.id, "avatar_url"), None),
        (200, json!({ "avatar_url": "mxc://hearth.test/rabbit_hole-1" }))
    );
    // The legacy prefixes serve the same.
    let (status, body) = s.get(&format!("/_matrix/client/r0/profile/{}", enc(&alice.id)), None);
    assert_eq!((status, &body["displayname"]), (200, &json!("Alice Liddell")));

    // Only Alice changes Alice's profile.
    let other =
        s.put(&profile_path(&alice.id, "displayname"), Some(&bob.token), json!({ "displayname": "x" }));
    assert_error(&other, 403, "M_FORBIDDEN");
    let other = s.put(
        &profile_path(&alice.id, "avatar_url"),
        Some(&bob.token),
        json!({ "avatar_url": "mxc://hearth.test/x" }),
    );
    assert_error(&other, 403, "M_FORBIDDEN");
    let anon = s.put(&profile_path(&alice.id, "displayname"), None, json!({ "displayname": "x" }));
    assert_error(&anon, 401, "M_MISSING_TOKEN");

    // null and "" clear a field.
    set(&s, &alice, "displayname", Value::Null);
    assert_error(&s.get(&profile_path(&alice.id, "displayname"), None), 404, "M_NOT_FOUND");
    set(&s, &alice, "avatar_url", json!(""));
    assert_eq!(s.get(&profile_path(&alice.id, ""), None), (200, json!({})));

    // Unicode names up to the limit, counted in characters.
    let long = "é".repeat(256);
    set(&s, &alice, "displayname", json!(long));
    assert_eq!(s.get(&profile_path(&alice.id, "displayname"), None).1["displayname"], json!(long));
}

#[test]
fn bad_profile_requests() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let put = |field: &str, body: Value| s.put(&profile_path(&alice.id, field), Some(&alice.token), body);

    assert_error(&put("displayname", json!({ "displayname": "x".repeat(257) })), 400, "M_INVALID_PARAM");
    assert_error(&put("displayname", json!({ "displayname": 7 })), 400, "M_BAD_JSON");
    assert_error(&put("displayname", json!({})), 400, "M_MISSING_PARAM");
    assert_error(&put("displayname", json!(["x"])), 400, "M_BAD_JSON");
    let raw = s.raw(
        "PUT",
        &profile_path(&alice.id, "displayname"),
        &[("Authorization", &format!("Bearer {}", alice.token))],
        Some(b"{not json"),
    );
    assert_eq!((raw.status, raw.json["errcode"].as_str()), (400, Some("M_NOT_JSON")));
    for url in ["https://example.org/a.png", "mxc://", "mxc://hearth.test/", "mxc://hearth.test/a/b"] {
        assert_error(&put("avatar_url", json!({ "avatar_url": url })), 400, "M_INVALID_PARAM");
    }
    let long = format!("mxc://hearth.test/{}", "a".repeat(1000));
    assert_error(&put("avatar_url", json!({ "avatar_url": long })), 400, "M_INVALID_PARAM");
    assert_error(&put("avatar_url", json!({ "avatar_url": false })), 400, "M_BAD_JSON");

    // Unknown users, other servers' users, and things that are no user ID.
    assert_error(&s.get(&profile_path("@nobody:localhost", ""), None), 404, "M_NOT_FOUND");
    assert_error(&s.get(&profile_path("@nobody:localhost", "displayname"), None), 404, "M_NOT_FOUND");
    // A server that cannot be reached: 502, as Synapse answers.
    assert_error(&s.get(&profile_path("@alice:elsewhere.example", ""), None), 502, "M_UNKNOWN");
    assert_error(&s.get(&profile_path("alice", ""), None), 400, "M_INVALID_PARAM");
    let remote = s.put(
        &profile_path("@alice:elsewhere.example", "displayname"),
        Some(&alice.token),
        json!({ "displayname": "x" }),
    );
    assert_error(&remote, 404, "M_NOT_FOUND");
}

#[test]
fn a_profile_change_updates_the_member_event_in_every_joined_room() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let shared = create_room(&s, &bob.token, json!({ "preset": "public_chat" }));
    let own = create_room(&s, &alice.token, json!({}));
    let left = create_room(&s, &bob.token, json!({ "preset": "public_chat" }));
    join(&s, &alice.token, &shared);
    join(&s, &alice.token, &left);
    let got = s.post(&format!("{V3}/rooms/{}/leave", enc(&left)), Some(&alice.token), json!({}));
    assert_eq!(got.0, 200, "leave: {}", got.1);
    let since = next_batch(&sync(&s, &bob.token, ""));

    set(&s, &alice, "displayname", json!("Alice"));
    set(&s, &alice, "avatar_url", json!("mxc://hearth.test/alice"));
    for room in [&shared, &own] {
        let content = member_content(&s, &alice, room, &alice.id);
        assert_eq!(content["membership"], "join");
        assert_eq!(content["displayname"], "Alice", "{room}: {content}");
        assert_eq!(content["avatar_url"], "mxc://hearth.test/alice", "{room}: {content}");
    }
    // A room Alice left is not touched.
    let content = member_content(&s, &bob, &left, &alice.id);
    assert_eq!(content["membership"], "leave");
    assert!(content.get("displayname").is_none(), "{content}");

    // Bob sees the two changes as join events in the shared room.
    let next = sync(&s, &bob.token, &format!("?since={since}"));
    let timeline = next["rooms"]["join"][&shared]["timeline"]["events"].as_array().expect("timeline").clone();
    let changes: Vec<&Value> = timeline
        .iter()
        .filter(|e| e["type"] == "m.room.member" && e["state_key"] == alice.id.as_str())
        .collect();
    assert_eq!(changes.len(), 2, "{timeline:?}");
    assert_eq!(changes[0]["content"]["displayname"], "Alice");
    assert_eq!(changes[0]["unsigned"]["prev_content"]["membership"], "join");
    assert_eq!(changes[1]["content"]["avatar_url"], "mxc://hearth.test/alice");
    assert!(next["rooms"]["join"].get(&left).is_none(), "{next}");
    let since = next["next_batch"].as_str().expect("next_batch").to_owned();

    // Setting the same name again sends nothing; clearing it does.
    set(&s, &alice, "displayname", json!("Alice"));
    let again = sync(&s, &bob.token, &format!("?since={since}&timeout=0"));
    assert!(again["rooms"]["join"].get(&shared).is_none(), "{again}");
    set(&s, &alice, "displayname", Value::Null);
    let content = member_content(&s, &bob, &shared, &alice.id);
    assert!(content.get("displayname").is_none(), "{content}");
    assert_eq!(content["avatar_url"], "mxc://hearth.test/alice");

    // Joining later carries the current profile.
    let third = create_room(&s, &bob.token, json!({ "preset": "public_chat" }));
    join(&s, &alice.token, &third);
    assert_eq!(member_content(&s, &bob, &third, &alice.id)["avatar_url"], "mxc://hearth.test/alice");
}

#[test]
fn directory_finds_room_mates_and_public_room_members_only() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let carol = s.user("carol", PW);
    let dave = s.user("dave", PW);
    let erin = s.user("erin", PW);
    // Alice and Bob share a private room; Carol is alone in hers; Dave is in
    // a public room Alice is not in; Erin shares nothing with anyone.
    let private = create_room(&s, &alice.token, json!({ "preset": "private_chat", "invite": [bob.id] }));
    join(&s, &bob.token, &private);
    create_room(&s, &carol.token, json!({ "preset": "private_chat" }));
    create_room(&s, &dave.token, json!({ "preset": "public_chat" }));
    set(&s, &bob, "displayname", json!("Robert Builder"));
    set(&s, &bob, "avatar_url", json!("mxc://hearth.test/hat"));

    let r = search(&s, &alice, json!({ "search_term": "bob" }));
    assert_eq!(
        r,
        json!({
            "results": [{ "user_id": bob.id, "display_name": "Robert Builder", "avatar_url": "mxc://hearth.test/hat" }],
            "limited": false,
        })
    );
    // Display names match too, case-insensitively, word by word.
    assert_eq!(found(&search(&s, &alice, json!({ "search_term": "ROBERT" }))), [bob.id.as_str()]);
    assert_eq!(found(&search(&s, &alice, json!({ "search_term": "builder rob" }))), [bob.id.as_str()]);
    assert_eq!(found(&search(&s, &alice, json!({ "search_term": "ilde" }))), [bob.id.as_str()]);
    // A stranger in a private room is not found, nor someone in no room.
    assert!(found(&search(&s, &alice, json!({ "search_term": "carol" }))).is_empty());
    assert!(found(&search(&s, &alice, json!({ "search_term": "erin" }))).is_empty());
    // A member of a public room is, by anyone (Erin is in no room at all).
    assert_eq!(found(&search(&s, &alice, json!({ "search_term": "dave" }))), [dave.id.as_str()]);
    assert_eq!(found(&search(&s, &erin, json!({ "search_term": "DAVE" }))), [dave.id.as_str()]);
    assert!(found(&search(&s, &erin, json!({ "search_term": "bob" }))).is_empty());
    // The searcher finds themselves through their own rooms.
    assert_eq!(found(&search(&s, &alice, json!({ "search_term": "alice" }))), [alice.id.as_str()]);
    // Carol, alone in her room, finds herself and Dave; by server name, all
    // she may see.
    let all = found(&search(&s, &carol, json!({ "search_term": "localhost" })));
    assert_eq!(all, [carol.id.as_str(), dave.id.as_str()]);

    // Leaving the shared room hides Bob again.
    let got = s.post(&format!("{V3}/rooms/{}/leave", enc(&private)), Some(&bob.token), json!({}));
    assert_eq!(got.0, 200, "leave: {}", got.1);
    assert!(found(&search(&s, &alice, json!({ "search_term": "bob" }))).is_empty());

    // Bad requests.
    let bad = s.post(&format!("{V3}/user_directory/search"), Some(&alice.token), json!({ "limit": 3 }));
    assert_error(&bad, 400, "M_MISSING_PARAM");
    let bad = s.post(&format!("{V3}/user_directory/search"), Some(&alice.token), json!({ "search_term": 3 }));
    assert_error(&bad, 400, "M_BAD_JSON");
    let long = json!({ "search_term": "x".repeat(600) });
    assert_error(
        &s.post(&format!("{V3}/user_directory/search"), Some(&alice.token), long),
        400,
        "M_INVALID_PARAM",
    );
    let anon = s.post(&format!("{V3}/user_directory/search"), None, json!({ "search_term": "bob" }));
    assert_error(&anon, 401, "M_MISSING_TOKEN");
}

#[test]
fn directory_limit_and_ranking() {
    let s = Server::start();
    let owner = s.user("owner", PW);
    let room = create_room(&s, &owner.token, json!({ "preset": "public_chat" }));
    let members: Vec<User> = (1..=5).map(|i| s.user(&format!("member{i}"), PW)).collect();
    for m in &members {
        join(&s, &m.token, &room);
    }
    set(&s, &members[4], "displayname", json!("member"));
    set(&s, &members[2], "displayname", json!("Old Member"));
    // The others drop the name registration gave them (their localpart).
    for i in [0, 1, 3] {
        set(&s, &members[i], "displayname", Value::Null);
    }

    // Default limit 10: all five, exact display name first, then the word
    // prefix, then those with a display name, then by user ID.
    let r = search(&s, &owner, json!({ "search_term": "member" }));
    assert_eq!(r["limited"], false);
    let ids = found(&r);
    let want: Vec<String> = [4, 2, 0, 1, 3].iter().map(|&i| members[i].id.clone()).collect();
    assert_eq!(ids, want);

    let r = search(&s, &owner, json!({ "search_term": "member", "limit": 2 }));
    assert_eq!((found(&r), &r["limited"]), (want[..2].to_vec(), &json!(true)));
    let r = search(&s, &owner, json!({ "search_term": "member", "limit": 5 }));
    assert_eq!((found(&r).len(), &r["limited"]), (5, &json!(false)));
    let r = search(&s, &owner, json!({ "search_term": "member", "limit": 0 }));
    assert_eq!((found(&r).len(), &r["limited"]), (0, &json!(true)));
    let r = search(&s, &owner, json!({ "search_term": "member", "limit": -4 }));
    assert_eq!((found(&r).len(), &r["limited"]), (0, &json!(true)));
    // A huge limit is clamped, not an error.
    let r = search(&s, &owner, json!({ "search_term": "member", "limit": 1_000_000 }));
    assert_eq!((found(&r).len(), &r["limited"]), (5, &json!(false)));
    let r = search(&s, &owner, json!({ "search_term": "nobody-like-this" }));
    assert_eq!(r, json!({ "results": [], "limited": false }));
}

/// Issue 12: with `user_directory_search_all_users`, the directory finds
/// every active local user, rooms or not; without it (the default, shown
/// above) only room mates and members of public rooms.
#[test]
fn directory_can_search_all_local_users() {
    for (args, envs) in [
        (&["--user-directory-search-all-users", "true"][..], &[][..]),
        (&[][..], &[("HEARTH_USER_DIRECTORY_SEARCH_ALL_USERS", "true")][..]),
    ] {
        let s = Server::start_with(args, envs);
        let alice = s.user("alice", PW);
        let hermit = s.user("hermit", PW);
        let private = s.user("private", PW);
        create_room(&s, &private.token, json!({ "preset": "private_chat" }));
        set(&s, &hermit, "displayname", json!("Lone Wolf"));

        // Neither shares a room with Alice nor sits in a public one.
        assert_eq!(found(&search(&s, &alice, json!({ "search_term": "hermit" }))), [hermit.id.as_str()]);
        assert_eq!(found(&search(&s, &alice, json!({ "search_term": "wolf" }))), [hermit.id.as_str()]);
        assert_eq!(found(&search(&s, &alice, json!({ "search_term": "private" }))), [private.id.as_str()]);
        let everyone = found(&search(&s, &hermit, json!({ "search_term": "localhost" })));
        assert_eq!(everyone, [alice.id.as_str(), hermit.id.as_str(), private.id.as_str()]);

        // A deactivated account is not found.
        let (code, _, err) = s.hearth(&["user", "deactivate", "hermit"], "");
        assert_eq!(code, 0, "{err}");
        assert!(found(&search(&s, &alice, json!({ "search_term": "hermit" }))).is_empty());
    }
    // The default is off: the same search finds nobody.
    let s = Server::start();
    let alice = s.user("alice", PW);
    s.user("hermit", PW);
    assert!(found(&search(&s, &alice, json!({ "search_term": "hermit" }))).is_empty());
}
