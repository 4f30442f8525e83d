//! Server-side key backups through the real server (issue 5): the version
//! lifecycle, the merge rules for session keys, `etag` and `count`, the
//! three URL shapes, and bad input.

mod common;

use common::{assert_error, enc, Server, V3};
use serde_json::{json, Value};

const ALG: &str = "m.megolm_backup.v1.curve25519-aes-sha2";
const ROOM: &str = "!room:example.org";

fn session(verified: bool, index: i64, forwards: i64, tag: &str) -> Value {
    json!({
        "first_message_index": index,
        "forwarded_count": forwards,
        "is_verified": verified,
        "session_data": { "ephemeral": "e", "ciphertext": tag, "mac": "m" },
    })
}

fn new_version(s: &Server, token: &str) -> String {
    let (status, r) = s.post(
        &format!("{V3}/room_keys/version"),
        Some(token),
        json!({ "algorithm": ALG, "auth_data": { "public_key": "pk" } }),
    );
    assert_eq!(status, 200, "{r}");
    r["version"].as_str().expect("version is a string").to_owned()
}

fn keys_url(version: &str, room: Option<&str>, session: Option<&str>) -> String {
    let mut url = format!("{V3}/room_keys/keys");
    if let Some(r) = room {
        url.push_str(&format!("/{}", enc(r)));
    }
    if let Some(s) = session {
        url.push_str(&format!("/{}", enc(s)));
    }
    format!("{url}?version={version}")
}

#[test]
fn backup_version_lifecycle() {
    let s = Server::start();
    let (_, a, _) = s.register("alice", "pw-alice");
    let (_, b, _) = s.register("bob", "pw-bob");
    // No backup yet: exactly 404 M_NOT_FOUND.
    assert_error(&s.get(&format!("{V3}/room_keys/version"), Some(&a)), 404, "M_NOT_FOUND");
    let v1 = new_version(&s, &a);
    let (status, info) = s.get(&format!("{V3}/room_keys/version"), Some(&a));
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["version"], json!(v1));
    assert_eq!(info["algorithm"], ALG);
    assert_eq!(info["auth_data"], json!({ "public_key": "pk" }));
    assert_eq!(info["count"], 0);
    assert!(info["etag"].is_string(), "{info}");
    // Another user sees none of it.
    assert_error(&s.get(&format!("{V3}/room_keys/version"), Some(&b)), 404, "M_NOT_FOUND");
    assert_error(&s.get(&format!("{V3}/room_keys/version/{v1}"), Some(&b)), 404, "M_NOT_FOUND");

    // auth_data may change; the algorithm and version may not.
    let url = format!("{V3}/room_keys/version/{v1}");
    let (status, r) = s.put(
        &url,
        Some(&a),
        json!({ "algorithm": ALG, "auth_data": { "public_key": "pk2" }, "version": v1 }),
    );
    assert_eq!((status, r), (200, json!({})));
    assert_eq!(s.get(&url, Some(&a)).1["auth_data"]["public_key"], "pk2");
    assert_error(
        &s.put(&url, Some(&a), json!({ "algorithm": "other", "auth_data": {} })),
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &s.put(&url, Some(&a), json!({ "algorithm": ALG, "auth_data": {}, "version": "99" })),
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &s.put(&format!("{V3}/room_keys/version/99"), Some(&a), json!({ "algorithm": ALG, "auth_data": {} })),
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.post(&format!("{V3}/room_keys/version"), Some(&a), json!({ "algorithm": ALG })),
        400,
        "M_BAD_JSON",
    );

    // A newer version takes over: keys go only there.
    let v2 = new_version(&s, &a);
    assert_ne!(v1, v2);
    let (status, r) = s.put(&keys_url(&v1, Some(ROOM), Some("s1")), Some(&a), session(false, 0, 0, "x"));
    assert_eq!(status, 403, "{r}");
    assert_eq!(r["errcode"], "M_WRONG_ROOM_KEYS_VERSION");
    assert_eq!(r["current_version"], json!(v2));
    let (status, r) = s.put(&keys_url(&v2, Some(ROOM), Some("s1")), Some(&a), session(false, 0, 0, "x"));
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["count"], 1);

    // Deleting the newest version: the older one is current again, and
    // version numbers are never reused.
    assert_eq!(s.delete(&format!("{V3}/room_keys/version/{v2}"), Some(&a), json!({})).0, 200);
    assert_error(&s.delete(&format!("{V3}/room_keys/version/{v2}"), Some(&a), json!({})), 404, "M_NOT_FOUND");
    assert_error(&s.get(&keys_url(&v2, None, None), Some(&a)), 404, "M_NOT_FOUND");
    assert_eq!(s.get(&format!("{V3}/room_keys/version"), Some(&a)).1["version"], json!(v1));
    assert_eq!(s.delete(&format!("{V3}/room_keys/version/{v1}"), Some(&a), json!({})).0, 200);
    assert_error(&s.get(&format!("{V3}/room_keys/version"), Some(&a)), 404, "M_NOT_FOUND");
    let v3 = new_version(&s, &a);
    assert!(v3 != v1 && v3 != v2, "{v3}");
    assert_eq!(s.get(&format!("{V3}/room_keys/version/{v3}"), Some(&a)).1["count"], 0);
}

#[test]
fn session_keys_merge_by_the_spec_rules_with_etag_and_count() {
    let s = Server::start();
    let (_, a, _) = s.register("alice", "pw-alice");
    let v = new_version(&s, &a);
    let one = keys_url(&v, Some(ROOM), Some("sess"));
    let stored =
        |s: &Server| s.get(&one, Some(&a)).1["session_data"]["ciphertext"].as_str().unwrap().to_owned();
    let put = |body: Value| {
        let (status, r) = s.put(&one, Some(&a), body);
        assert_eq!(status, 200, "{r}");
        r["etag"].as_str().unwrap().to_owned()
    };

    let e0 = put(session(false, 5, 1, "first"));
    // Worse: a later first message index, or more forwards. Kept out.
    assert_eq!(put(session(false, 6, 0, "later-index")), e0);
    assert_eq!(put(session(false, 5, 2, "more-forwards")), e0);
    assert_eq!(stored(&s), "first");
    // Better: fewer forwards, then a lower index.
    let e1 = put(session(false, 5, 0, "fewer-forwards"));
    assert_ne!(e1, e0);
    assert_eq!(stored(&s), "fewer-forwards");
    put(session(false, 2, 9, "lower-index"));
    assert_eq!(stored(&s), "lower-index");
    // Verified beats everything; unverified never replaces verified.
    put(session(true, 50, 50, "verified"));
    assert_eq!(stored(&s), "verified");
    put(session(false, 0, 0, "unverified-but-better"));
    assert_eq!(stored(&s), "verified");

    // The three shapes of PUT, GET and DELETE.
    let (status, r) = s.put(
        &keys_url(&v, None, None),
        Some(&a),
        json!({ "rooms": {
            ROOM: { "sessions": { "s2": session(false, 0, 0, "two") } },
            "!other:example.org": { "sessions": { "s3": session(false, 0, 0, "three") } },
        } }),
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["count"], 3);
    let (status, r) = s.put(
        &keys_url(&v, Some(ROOM), None),
        Some(&a),
        json!({ "sessions": { "s4": session(false, 0, 0, "four") } }),
    );
    assert_eq!((status, r["count"].clone()), (200, json!(4)), "{r}");
    let (_, all) = s.get(&keys_url(&v, None, None), Some(&a));
    assert_eq!(all["rooms"][ROOM]["sessions"].as_object().unwrap().len(), 3, "{all}");
    assert_eq!(all["rooms"]["!other:example.org"]["sessions"]["s3"]["session_data"]["ciphertext"], "three");
    let (_, room) = s.get(&keys_url(&v, Some(ROOM), None), Some(&a));
    assert_eq!(room["sessions"]["s2"]["first_message_index"], 0, "{room}");
    let (status, empty) = s.get(&keys_url(&v, Some("!none:example.org"), None), Some(&a));
    assert_eq!((status, empty), (200, json!({ "sessions": {} })));
    assert_error(&s.get(&keys_url(&v, Some(ROOM), Some("nope")), Some(&a)), 404, "M_NOT_FOUND");
    assert_eq!(s.get(&format!("{V3}/room_keys/version/{v}"), Some(&a)).1["count"], 4);

    let (status, r) = s.delete(&keys_url(&v, Some(ROOM), Some("s2")), Some(&a), json!({}));
    assert_eq!((status, r["count"].clone()), (200, json!(3)), "{r}");
    let (status, r) = s.delete(&keys_url(&v, Some(ROOM), None), Some(&a), json!({}));
    assert_eq!((status, r["count"].clone()), (200, json!(1)), "{r}");
    let (status, r) = s.delete(&keys_url(&v, None, None), Some(&a), json!({}));
    assert_eq!((status, r["count"].clone()), (200, json!(0)), "{r}");
}

#[test]
fn bad_backup_input_is_refused_and_stores_nothing() {
    let s = Server::start();
    let (_, a, _) = s.register("alice", "pw-alice");
    let v = new_version(&s, &a);
    // No version parameter.
    assert_error(&s.get(&format!("{V3}/room_keys/keys"), Some(&a)), 400, "M_MISSING_PARAM");
    // One bad session in a batch: none of the batch is stored.
    let (status, r) = s.put(
        &keys_url(&v, None, None),
        Some(&a),
        json!({ "rooms": { ROOM: { "sessions": {
            "good": session(false, 0, 0, "ok"),
            "bad": { "first_message_index": -1, "forwarded_count": 0, "is_verified": false, "session_data": {} },
        } } } }),
    );
    assert_error(&(status, r), 400, "M_BAD_JSON");
    let (status, r) = s.put(
        &keys_url(&v, Some(ROOM), Some("x")),
        Some(&a),
        json!({ "first_message_index": 0, "forwarded_count": 0, "is_verified": "yes", "session_data": {} }),
    );
    assert_error(&(status, r), 400, "M_BAD_JSON");
    let big = "x".repeat(20_000);
    assert_error(
        &s.put(&keys_url(&v, Some(ROOM), Some("x")), Some(&a), session(false, 0, 0, &big)),
        400,
        "M_INVALID_PARAM",
    );
    assert_eq!(s.get(&format!("{V3}/room_keys/version/{v}"), Some(&a)).1["count"], 0);
    // Keys for a version that is not a number, or no backup at all.
    assert_error(&s.get(&keys_url("abc", None, None), Some(&a)), 404, "M_NOT_FOUND");
    let (_, b, _) = s.register("bob", "pw-bob");
    assert_error(
        &s.put(&keys_url("1", Some(ROOM), Some("x")), Some(&b), session(false, 0, 0, "x")),
        404,
        "M_NOT_FOUND",
    );
}
