//! Account data, room tags and TURN credentials through the real server:
//! global and per-room round trips, who may read and write them, the types
//! the server manages, tags as `m.tag`, what `/sync` shows of them and that
//! a write wakes a parked `/sync`; the per-user quota (bytes and entries,
//! 403 `M_USER_LIMIT_EXCEEDED`); and `/voip/turnServer` with and without a
//! TURN server configured.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::{
    assert_error, create_room, enc, next_batch, room_path, start_debug, sync, woken_by, Server, User, V3,
};
use hearth::api::client::account_data::{QUOTA_BYTES_PER_USER, QUOTA_ENTRIES_PER_USER};
use serde_json::{json, Value};

const PW: &str = "account-data-test-password";

fn global(user_id: &str, kind: &str) -> String {
    format!("{V3}/user/{}/account_data/{}", enc(user_id), enc(kind))
}

fn in_room(user_id: &str, room_id: &str, kind: &str) -> String {
    format!("{V3}/user/{}/rooms/{}/account_data/{}", enc(user_id), enc(room_id), enc(kind))
}

fn tags(user_id: &str, room_id: &str) -> String {
    format!("{V3}/user/{}/rooms/{}/tags", enc(user_id), enc(room_id))
}

fn tag(user_id: &str, room_id: &str, name: &str) -> String {
    format!("{}/{}", tags(user_id, room_id), enc(name))
}

#[track_caller]
fn put_ok(s: &Server, who: &User, path: &str, body: Value) {
    assert_eq!(s.put(path, Some(&who.token), body), (200, json!({})), "PUT {path}");
}

/// The `{type: content}` of an `account_data.events` list.
fn by_type(events: &Value) -> serde_json::Map<String, Value> {
    events["events"]
        .as_array()
        .expect("account_data.events")
        .iter()
        .map(|e| (e["type"].as_str().expect("type").to_owned(), e["content"].clone()))
        .collect()
}

#[test]
fn global_account_data_round_trips_for_its_owner_only() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let path = global(&alice.id, "org.example.config");

    assert_error(&s.get(&path, Some(&alice.token)), 404, "M_NOT_FOUND");
    put_ok(&s, &alice, &path, json!({ "theme": "dark", "nested": { "n": [1, 2] } }));
    assert_eq!(
        s.get(&path, Some(&alice.token)),
        (200, json!({ "theme": "dark", "nested": { "n": [1, 2] } }))
    );
    put_ok(&s, &alice, &path, json!({ "theme": "light" }));
    assert_eq!(s.get(&path, Some(&alice.token)), (200, json!({ "theme": "light" })));
    put_ok(&s, &alice, &path, json!({}));
    assert_eq!(s.get(&path, Some(&alice.token)), (200, json!({})));
    // The r0 prefix is the same data.
    let (status, body) = s.get(&path.replace("/v3/", "/r0/"), Some(&alice.token));
    assert_eq!((status, body), (200, json!({})));

    // Bob may neither read nor write Alice's data; his own is separate.
    assert_error(&s.get(&path, Some(&bob.token)), 403, "M_FORBIDDEN");
    assert_error(&s.put(&path, Some(&bob.token), json!({ "x": 1 })), 403, "M_FORBIDDEN");
    assert_error(&s.get(&global(&bob.id, "org.example.config"), Some(&bob.token)), 404, "M_NOT_FOUND");
    assert_error(&s.get(&path, None), 401, "M_MISSING_TOKEN");

    // Content must be a JSON object.
    for body in [json!([1]), json!("x"), json!(3), Value::Null] {
        assert_error(&s.put(&path, Some(&alice.token), body), 400, "M_BAD_JSON");
    }
    let raw = s.raw("PUT", &path, &[("Authorization", &format!("Bearer {}", alice.token))], Some(b"{nope"));
    assert_eq!((raw.status, raw.json["errcode"].as_str()), (400, Some("M_NOT_JSON")));
    assert_eq!(s.get(&path, Some(&alice.token)), (200, json!({})), "failed writes change nothing");

    // Types the server manages: readable, not settable (405 M_BAD_JSON).
    for kind in ["m.fully_read", "m.push_rules"] {
        let got = s.put(&global(&alice.id, kind), Some(&alice.token), json!({ "x": 1 }));
        assert_error(&got, 405, "M_BAD_JSON");
        assert_error(&s.get(&global(&alice.id, kind), Some(&alice.token)), 404, "M_NOT_FOUND");
    }
    let long = "t".repeat(256);
    assert_error(&s.put(&global(&alice.id, &long), Some(&alice.token), json!({})), 400, "M_INVALID_PARAM");
}

#[test]
fn room_account_data_is_separate_from_global_data() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let room = create_room(&s, &alice.token, json!({}));
    let other = create_room(&s, &alice.token, json!({}));
    let path = in_room(&alice.id, &room, "org.example.room");

    assert_error(&s.get(&path, Some(&alice.token)), 404, "M_NOT_FOUND");
    put_ok(&s, &alice, &path, json!({ "pinned": true }));
    assert_eq!(s.get(&path, Some(&alice.token)), (200, json!({ "pinned": true })));
    // No inheritance either way, and rooms do not share.
    assert_error(&s.get(&global(&alice.id, "org.example.room"), Some(&alice.token)), 404, "M_NOT_FOUND");
    assert_error(
        &s.get(&in_room(&alice.id, &other, "org.example.room"), Some(&alice.token)),
        404,
        "M_NOT_FOUND",
    );
    put_ok(&s, &alice, &global(&alice.id, "org.example.room"), json!({ "global": 1 }));
    assert_eq!(s.get(&path, Some(&alice.token)), (200, json!({ "pinned": true })));

    assert_error(&s.get(&path, Some(&bob.token)), 403, "M_FORBIDDEN");
    assert_error(&s.put(&path, Some(&bob.token), json!({})), 403, "M_FORBIDDEN");
    assert_error(&s.put(&path, Some(&alice.token), json!([])), 400, "M_BAD_JSON");
    for bad in ["not-a-room", "#alias:localhost", "!"] {
        let p = in_room(&alice.id, bad, "org.example.room");
        assert_error(&s.get(&p, Some(&alice.token)), 400, "M_INVALID_PARAM");
        assert_error(&s.put(&p, Some(&alice.token), json!({})), 400, "M_INVALID_PARAM");
    }
    for kind in ["m.fully_read", "m.push_rules"] {
        let got = s.put(&in_room(&alice.id, &room, kind), Some(&alice.token), json!({ "event_id": "$x" }));
        assert_error(&got, 405, "M_BAD_JSON");
    }
}

#[test]
fn tags_are_put_listed_and_deleted() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let room = create_room(&s, &alice.token, json!({}));

    assert_eq!(s.get(&tags(&alice.id, &room), Some(&alice.token)), (200, json!({ "tags": {} })));
    put_ok(&s, &alice, &tag(&alice.id, &room, "u.work"), json!({ "order": 0.25 }));
    put_ok(&s, &alice, &tag(&alice.id, &room, "m.favourite"), json!({}));
    put_ok(&s, &alice, &tag(&alice.id, &room, "u.edge"), json!({ "order": 1 }));
    let want =
        json!({ "tags": { "u.work": { "order": 0.25 }, "m.favourite": {}, "u.edge": { "order": 1 } } });
    assert_eq!(s.get(&tags(&alice.id, &room), Some(&alice.token)), (200, want.clone()));
    // Stored as the room account data m.tag.
    assert_eq!(s.get(&in_room(&alice.id, &room, "m.tag"), Some(&alice.token)), (200, want));

    // Replacing a tag's order, deleting one, deleting one that is not there.
    put_ok(&s, &alice, &tag(&alice.id, &room, "u.work"), json!({ "order": 0.5 }));
    let got = s.delete(&tag(&alice.id, &room, "m.favourite"), Some(&alice.token), json!({}));
    assert_eq!(got, (200, json!({})));
    let got = s.delete(&tag(&alice.id, &room, "u.never"), Some(&alice.token), json!({}));
    assert_eq!(got, (200, json!({})));
    assert_eq!(
        s.get(&tags(&alice.id, &room), Some(&alice.token)),
        (200, json!({ "tags": { "u.work": { "order": 0.5 }, "u.edge": { "order": 1 } } }))
    );

    // Bad orders, bodies, tags, rooms and users.
    let path = tag(&alice.id, &room, "u.bad");
    for body in [json!({ "order": 1.5 }), json!({ "order": -0.1 }), json!({ "order": "0.5" })] {
        assert_error(&s.put(&path, Some(&alice.token), body), 400, "M_INVALID_PARAM");
    }
    assert_error(&s.put(&path, Some(&alice.token), json!([0.5])), 400, "M_BAD_JSON");
    let long = tag(&alice.id, &room, &"t".repeat(256));
    assert_error(&s.put(&long, Some(&alice.token), json!({})), 400, "M_INVALID_PARAM");
    assert_error(&s.get(&tags(&alice.id, "nope"), Some(&alice.token)), 400, "M_INVALID_PARAM");
    assert_error(&s.get(&tags(&alice.id, &room), Some(&bob.token)), 403, "M_FORBIDDEN");
    assert_error(&s.put(&tag(&alice.id, &room, "u.x"), Some(&bob.token), json!({})), 403, "M_FORBIDDEN");
    assert_error(
        &s.delete(&tag(&alice.id, &room, "u.work"), Some(&bob.token), json!({})),
        403,
        "M_FORBIDDEN",
    );
    assert_eq!(s.get(&tags(&bob.id, &room), Some(&bob.token)), (200, json!({ "tags": {} })));
    assert_eq!(
        s.get(&tags(&alice.id, &room), Some(&alice.token)).1["tags"].as_object().map(|t| t.len()),
        Some(2)
    );
}

#[test]
fn sync_shows_account_data_once_and_a_write_wakes_a_parked_sync() {
    let s = start_debug(&[], &[]);
    let alice = s.user("alice", PW);
    let room = create_room(&s, &alice.token, json!({}));
    put_ok(&s, &alice, &global(&alice.id, "m.direct"), json!({ "@bob:localhost": [room.clone()] }));
    put_ok(&s, &alice, &in_room(&alice.id, &room, "org.example.room"), json!({ "a": 1 }));
    put_ok(&s, &alice, &tag(&alice.id, &room, "m.favourite"), json!({ "order": 0.1 }));

    let first = sync(&s, &alice.token, "");
    let global_data = by_type(&first["account_data"]);
    assert_eq!(global_data.get("m.direct"), Some(&json!({ "@bob:localhost": [room.clone()] })), "{first}");
    assert!(!global_data.contains_key("org.example.room"), "room data stays in the room");
    let room_data = by_type(&first["rooms"]["join"][&room]["account_data"]);
    assert_eq!(room_data.get("org.example.room"), Some(&json!({ "a": 1 })));
    assert_eq!(room_data.get("m.tag"), Some(&json!({ "tags": { "m.favourite": { "order": 0.1 } } })));

    // Nothing new: nothing again.
    let since = next_batch(&first);
    let quiet = sync(&s, &alice.token, &format!("?since={since}&timeout=0"));
    assert!(by_type(&quiet["account_data"]).is_empty(), "{quiet}");
    assert!(quiet["rooms"]["join"].get(&room).is_none(), "{quiet}");

    // A change shows up once, alone.
    put_ok(&s, &alice, &global(&alice.id, "org.example.later"), json!({ "b": 2 }));
    let later = sync(&s, &alice.token, &format!("?since={since}&timeout=0"));
    assert_eq!(by_type(&later["account_data"]).keys().collect::<Vec<_>>(), ["org.example.later"]);
    let since = next_batch(&later);

    // Writes wake a parked sync: global data, a tag, room data, tag deletion.
    let wake = |what: &dyn Fn(), since: &str| {
        let long_poll = || sync(&s, &alice.token, &format!("?since={since}&timeout=20000"));
        woken_by(&s, &alice.id, Duration::from_secs(20), long_poll, what).0
    };
    let woken =
        wake(&|| put_ok(&s, &alice, &global(&alice.id, "org.example.wake"), json!({ "c": 3 })), &since);
    assert_eq!(by_type(&woken["account_data"]).get("org.example.wake"), Some(&json!({ "c": 3 })));
    let since = next_batch(&woken);
    let woken = wake(&|| put_ok(&s, &alice, &tag(&alice.id, &room, "u.later"), json!({})), &since);
    let room_data = by_type(&woken["rooms"]["join"][&room]["account_data"]);
    assert_eq!(
        room_data.get("m.tag"),
        Some(&json!({ "tags": { "m.favourite": { "order": 0.1 }, "u.later": {} } }))
    );
    let since = next_batch(&woken);
    let woken = wake(
        &|| {
            let got = s.delete(&tag(&alice.id, &room, "m.favourite"), Some(&alice.token), json!({}));
            assert_eq!(got.0, 200);
        },
        &since,
    );
    let room_data = by_type(&woken["rooms"]["join"][&room]["account_data"]);
    assert_eq!(room_data.get("m.tag"), Some(&json!({ "tags": { "u.later": {} } })));
}

/// Content of exactly `bytes` bytes as stored (`{"v":"…"}`).
fn sized(bytes: u64) -> Value {
    json!({ "v": "x".repeat(bytes as usize - 8) })
}

/// Asserts the quota's answer: 403 `M_USER_LIMIT_EXCEEDED` with the
/// `info_uri` the spec requires.
#[track_caller]
fn assert_over_quota(got: &(u16, Value)) {
    assert_error(got, 403, "M_USER_LIMIT_EXCEEDED");
    assert!(got.1["info_uri"].as_str().is_some_and(|u| u.starts_with("https://")), "{}", got.1);
}

#[test]
fn account_data_bytes_have_a_per_user_quota() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let room = create_room(&s, &alice.token, json!({}));
    const MB: u64 = 1_000_000;
    // Four values of 1 MB: 4 000 000 of the 4 194 304 bytes.
    for k in 1..=4 {
        put_ok(&s, &alice, &global(&alice.id, &format!("m.k{k}")), sized(MB));
    }
    // A fifth key past the quota is refused and stores nothing.
    let k5 = global(&alice.id, "m.k5");
    assert_over_quota(&s.put(&k5, Some(&alice.token), sized(200_000)));
    assert_error(&s.get(&k5, Some(&alice.token)), 404, "M_NOT_FOUND");
    // Overwriting counts the new size only (old + new would be 5 MB).
    put_ok(&s, &alice, &global(&alice.id, "m.k1"), sized(MB));
    put_ok(&s, &alice, &global(&alice.id, "m.k1"), sized(MB + 40_000));
    // Exactly at the quota is fine; one byte more is not.
    let used = 4 * MB + 40_000;
    assert_over_quota(&s.put(&k5, Some(&alice.token), sized(QUOTA_BYTES_PER_USER - used + 1)));
    put_ok(&s, &alice, &k5, sized(QUOTA_BYTES_PER_USER - used));
    // Room account data and tags come out of the same quota.
    let in_room = format!("{V3}/user/{}/rooms/{}/account_data/m.x", enc(&alice.id), enc(&room));
    assert_over_quota(&s.put(&in_room, Some(&alice.token), json!({})));
    assert_over_quota(&s.put(&tag(&alice.id, &room, "u.work"), Some(&alice.token), json!({})));
    assert_eq!(s.get(&tags(&alice.id, &room), Some(&alice.token)), (200, json!({ "tags": {} })));
    // Data the server manages is not the user's to budget: read markers
    // still move.
    let (status, sent) = s.put(
        &room_path(&room, "send/m.room.message/t1"),
        Some(&alice.token),
        json!({ "msgtype": "m.text", "body": "hi" }),
    );
    assert_eq!(status, 200, "{sent}");
    let (status, body) = s.post(
        &room_path(&room, "read_markers"),
        Some(&alice.token),
        json!({ "m.fully_read": sent["event_id"] }),
    );
    assert_eq!((status, body), (200, json!({})));
    // Shrinking makes room again.
    put_ok(&s, &alice, &global(&alice.id, "m.k1"), json!({}));
    put_ok(&s, &alice, &in_room, json!({ "a": 1 }));
    put_ok(&s, &alice, &tag(&alice.id, &room, "u.work"), json!({ "order": 0.5 }));
    // The quota is per user.
    put_ok(&s, &bob, &global(&bob.id, "m.k1"), sized(MB));
}

#[test]
fn account_data_entries_have_a_per_user_cap() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let room = create_room(&s, &alice.token, json!({}));
    put_ok(&s, &alice, &global(&alice.id, "m.first"), json!({ "n": 1 }));
    // Fill up to one short of the cap behind the server's back: thousands
    // of PUTs would only make the test slow.
    let mut db = rusqlite::Connection::open(s.db()).expect("opening the database");
    db.busy_timeout(Duration::from_secs(10)).expect("busy timeout");
    let tx = db.transaction().expect("transaction");
    for n in 1..QUOTA_ENTRIES_PER_USER - 1 {
        tx.execute(
            "INSERT INTO account_data (user_id, room_id, type, content, pos) VALUES (?1, '', ?2, '{}', 0)",
            rusqlite::params![alice.id, format!("m.filler.{n}")],
        )
        .expect("filling");
    }
    tx.commit().expect("commit");
    drop(db);

    // The last entry fits; one more, global, in a room or a room's first
    // tag, does not.
    put_ok(&s, &alice, &global(&alice.id, "m.last"), json!({}));
    assert_over_quota(&s.put(&global(&alice.id, "m.one_more"), Some(&alice.token), json!({})));
    let in_room = format!("{V3}/user/{}/rooms/{}/account_data/m.x", enc(&alice.id), enc(&room));
    assert_over_quota(&s.put(&in_room, Some(&alice.token), json!({})));
    assert_over_quota(&s.put(&tag(&alice.id, &room, "u.work"), Some(&alice.token), json!({})));
    // Existing entries can still change, growing or not.
    put_ok(&s, &alice, &global(&alice.id, "m.first"), json!({ "n": 2, "more": "x".repeat(1000) }));
    put_ok(&s, &alice, &global(&alice.id, "m.filler.7"), json!({}));
    assert_eq!(s.get(&global(&alice.id, "m.first"), Some(&alice.token)).1["n"], 2);
}

#[test]
fn turn_server_is_empty_without_configuration() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    assert_eq!(s.get(&format!("{V3}/voip/turnServer"), Some(&alice.token)), (200, json!({})));
    assert_error(&s.get(&format!("{V3}/voip/turnServer"), None), 401, "M_MISSING_TOKEN");
    // URIs without a secret are no usable configuration either.
    let s = Server::start_with(&[], &[("HEARTH_TURN_URIS", "turn:turn.example.org:3478")]);
    let alice = s.user("alice", PW);
    assert_eq!(s.get(&format!("{V3}/voip/turnServer"), Some(&alice.token)), (200, json!({})));
}

#[test]
fn turn_server_hands_out_time_limited_hmac_credentials() {
    let secret = "correct horse battery staple";
    let uris = "turn:turn.example.org:3478?transport=udp,turns:turn.example.org:5349?transport=tcp";
    let s = Server::start_with(
        &[],
        &[
            ("HEARTH_TURN_URIS", uris),
            ("HEARTH_TURN_SHARED_SECRET", secret),
            ("HEARTH_TURN_USER_LIFETIME_MS", "3600000"),
        ],
    );
    let alice = s.user("alice", PW);
    let (status, body) = s.get(&format!("{V3}/voip/turnServer"), Some(&alice.token));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["uris"],
        json!(["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349?transport=tcp"])
    );
    assert_eq!(body["ttl"], 3600);

    let username = body["username"].as_str().expect("username");
    let (expiry, user_id) = username.split_once(':').expect("expiry:user");
    assert_eq!(user_id, alice.id);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let expiry: u64 = expiry.parse().expect("expiry in seconds");
    assert!(expiry >= now + 3600 - 60 && expiry <= now + 3600 + 60, "expiry {expiry}, now {now}");

    let password = body["password"].as_str().expect("password");
    let raw = base64::engine::general_purpose::STANDARD.decode(password).expect("padded standard base64");
    assert_eq!(raw, hearth::api::client::voip::hmac_sha1(secret.as_bytes(), username.as_bytes()));
    assert_eq!(password, hearth::api::client::voip::turn_password(secret.as_bytes(), username));
}
