//! Unit tests of `event` (beside it, so the module reads without them).

use std::collections::BTreeMap;

use super::*;
use crate::core::room_version::{Redaction, SUPPORTED, V1, V10, V11, V12, V2, V3, V7, V8};
use crate::crypto::sign::parse_seed;
use serde_json::json;

const VECTORS: &str = include_str!("../../../tests/data/spec-vectors.json");

fn vectors() -> Value {
    serde_json::from_str(VECTORS).expect("the spec vectors file is valid JSON")
}

/// The spec's example key for server `domain`, id `ed25519:1`.
fn spec_key(v: &Value) -> ServerKey {
    let sk = &v["signing_key"];
    let seed = parse_seed(sk["seed_unpadded_base64"].as_str().expect("seed is a string"))
        .expect("the spec seed parses");
    assert_eq!(sk["server_name"], json!("domain"));
    ServerKey::from_seed(sk["key_id"].as_str().expect("key_id is a string"), &seed)
}

fn test_key() -> ServerKey {
    ServerKey::from_seed("ed25519:t", &[3u8; 32])
}

fn template(kind: &str, content: Value) -> PduTemplate {
    PduTemplate {
        room_id: Some("!room:example.org".to_owned()),
        sender: "@alice:example.org".to_owned(),
        kind: kind.to_owned(),
        state_key: None,
        content,
        redacts: None,
        event_id: None,
        prev_events: vec!["$prev".to_owned()],
        auth_events: vec!["$create".to_owned(), "$member".to_owned()],
        reference_hashes: BTreeMap::new(),
        depth: 5,
        origin_server_ts: 1_700_000_000_000,
    }
}

/// [`template`] in the format of `version`: in v1–v2 with an event ID and
/// IDs of that shape, whose reference hashes it gives.
fn template_for(version: &RoomVersion, kind: &str, content: Value) -> PduTemplate {
    let mut t = template(kind, content);
    if version.event_id_in_event() {
        t.event_id = Some("$new:example.org".to_owned());
        t.prev_events = vec!["$prev:example.org".to_owned()];
        t.auth_events = vec!["$create:example.org".to_owned(), "$member:example.org".to_owned()];
        for id in t.prev_events.iter().chain(&t.auth_events) {
            t.reference_hashes.insert(id.clone(), format!("hash-of-{id}"));
        }
    }
    t
}

fn message(version: &RoomVersion) -> (String, Value) {
    build_pdu(
        version,
        &test_key(),
        "example.org",
        template_for(version, "m.room.message", json!({"body": "hello"})),
    )
    .expect("a valid template")
}

/// True if `s` is 43 characters of standard base64 (a SHA-256).
fn is_standard_hash(s: &str) -> bool {
    s.len() == 43 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

fn is_reference_hash(s: &str) -> bool {
    s.len() == 43 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[test]
fn spec_vector_plain_event_reproduced_exactly() {
    let v = vectors();
    let key = spec_key(&v);
    let case = &v["event_signing"][0];
    // This event has only keys the v9 rules keep, and empty content,
    // so under v10 its redacted form is the event itself.
    let mut event = case["input"].clone();
    hash_and_sign(&V10, &key, "domain", &mut event).expect("signable");
    assert_eq!(event, case["signed"]);
    assert!(verify_content_hash(&event));
    assert!(verify_signature(&V10, &event, "domain", "ed25519:1", &key.public_key()));

    // From v11 `origin` is not protected, so the signature covers less
    // and differs, while the content hash stays the same.
    let mut v11 = case["input"].clone();
    hash_and_sign(&V11, &key, "domain", &mut v11).expect("signable");
    assert_eq!(v11["hashes"], case["signed"]["hashes"]);
    assert_ne!(v11["signatures"], case["signed"]["signatures"]);
    assert!(verify_signature(&V11, &v11, "domain", "ed25519:1", &key.public_key()));
    assert!(!verify_signature(&V11, &case["signed"], "domain", "ed25519:1", &key.public_key()));
}

#[test]
fn spec_vector_message_verifies_over_redacted_form() {
    let v = vectors();
    let key = spec_key(&v);
    let case = &v["event_signing"][1];
    let signed = &case["signed"];
    assert!(verify_content_hash(signed));
    // The v9 rules keep `event_id` and `origin` and empty the content,
    // which is exactly what the room v1 signer covered.
    assert!(verify_signature(&V10, signed, "domain", "ed25519:1", &key.public_key()));
    assert!(!verify_signature(&V11, signed, "domain", "ed25519:1", &key.public_key()));
    let mut event = case["input"].clone();
    hash_and_sign(&V10, &key, "domain", &mut event).expect("signable");
    assert_eq!(&event, signed);
}

#[test]
fn built_pdus_follow_the_version_format() {
    for version in SUPPORTED {
        let (id, pdu) = message(version);
        match version.event_ids {
            EventIds::Opaque => {
                assert_eq!(id, "$new:example.org");
                assert_eq!(pdu["event_id"], json!(id));
                assert_eq!(
                    pdu["prev_events"],
                    json!([["$prev:example.org", {"sha256": "hash-of-$prev:example.org"}]])
                );
            }
            EventIds::Hash => assert!(id.strip_prefix('$').is_some_and(is_standard_hash), "{id}"),
            EventIds::UrlSafeHash => assert!(id.strip_prefix('$').is_some_and(is_reference_hash), "{id}"),
        }
        assert_eq!(event_id(version, &pdu).as_deref(), Ok(id.as_str()));
        let keys: Vec<&str> = pdu.as_object().expect("an object").keys().map(String::as_str).collect();
        for k in [
            "auth_events",
            "content",
            "depth",
            "hashes",
            "origin_server_ts",
            "prev_events",
            "room_id",
            "sender",
            "signatures",
            "type",
        ] {
            assert!(keys.contains(&k), "{k} missing in v{}", version.id);
        }
        for k in ["origin", "unsigned", "state_key", "redacts"] {
            assert!(!keys.contains(&k), "{k} present in v{}", version.id);
        }
        assert_eq!(keys.contains(&"event_id"), version.event_id_in_event(), "v{}", version.id);
        assert_eq!(pdu["content"], json!({"body": "hello"}));
        assert_eq!(validate_pdu_shape(version, &pdu), Ok(()));
        assert!(verify_content_hash(&pdu));
        let key = test_key();
        assert!(verify_signature(version, &pdu, "example.org", "ed25519:t", &key.public_key()));
    }
}

#[test]
fn state_key_is_kept_even_when_empty() {
    let mut t = template("m.room.topic", json!({"topic": "t"}));
    t.state_key = Some(String::new());
    let (_, pdu) = build_pdu(&V11, &test_key(), "example.org", t).expect("valid");
    assert_eq!(pdu["state_key"], json!(""));
}

#[test]
fn redacts_moves_into_content_from_v11() {
    for version in SUPPORTED.iter().filter(|v| !v.redacts_in_content) {
        let mut t = template_for(version, "m.room.redaction", json!({"reason": "spam"}));
        t.redacts = Some("$target".to_owned());
        let (_, pdu) = build_pdu(version, &test_key(), "example.org", t).expect("valid");
        assert_eq!(pdu["redacts"], json!("$target"));
        assert_eq!(pdu["content"], json!({"reason": "spam"}));
        assert_eq!(validate_pdu_shape(version, &pdu), Ok(()));
    }
    let mut t = template("m.room.redaction", json!({"reason": "spam"}));
    t.redacts = Some("$target".to_owned());
    for version in [&V11, &V12] {
        let (_, pdu) = build_pdu(version, &test_key(), "example.org", t.clone()).expect("valid");
        assert!(pdu.get("redacts").is_none());
        assert_eq!(pdu["content"], json!({"reason": "spam", "redacts": "$target"}));
        assert_eq!(validate_pdu_shape(version, &pdu), Ok(()));
    }
    let mut wrong = template("m.room.message", json!({}));
    wrong.redacts = Some("$target".to_owned());
    assert_eq!(build_pdu(&V11, &test_key(), "s", wrong), Err(EventError::Unexpected("redacts")));
    t.redacts = Some("target".to_owned());
    assert_eq!(build_pdu(&V11, &test_key(), "s", t), Err(EventError::Invalid("redacts")));
}

#[test]
fn reference_hash_covers_the_redacted_event_only() {
    let (_, pdu) = message(&V11);
    let hash = reference_hash(&V11, &pdu).expect("hashable");
    assert!(is_reference_hash(&hash));
    assert_eq!(reference_hash(&V11, &pdu.clone()).as_deref(), Ok(hash.as_str()));

    let mut changed = pdu.clone();
    changed["unsigned"] = json!({"age": 12, "transaction_id": "x"});
    changed["signatures"]["other.org"] = json!({"ed25519:o": "sig"});
    assert_eq!(reference_hash(&V11, &changed).as_deref(), Ok(hash.as_str()));

    // Message content is redacted away, so editing it alone leaves the
    // reference hash as it is; re-hashing the edit changes it through
    // `hashes`.
    changed["content"]["body"] = json!("bye");
    assert_eq!(reference_hash(&V11, &changed).as_deref(), Ok(hash.as_str()));
    hash_and_sign(&V11, &test_key(), "example.org", &mut changed).expect("signable");
    assert_ne!(reference_hash(&V11, &changed).as_deref(), Ok(hash.as_str()));

    // Protected content and top-level keys change it directly.
    let mut t = template("m.room.member", json!({"membership": "join"}));
    t.state_key = Some("@alice:example.org".to_owned());
    let (_, member) = build_pdu(&V11, &test_key(), "example.org", t).expect("valid");
    let base = reference_hash(&V11, &member).expect("hashable");
    let mut left = member.clone();
    left["content"]["membership"] = json!("leave");
    assert_ne!(reference_hash(&V11, &left).as_deref(), Ok(base.as_str()));
    let mut deeper = member;
    deeper["depth"] = json!(6);
    assert_ne!(reference_hash(&V11, &deeper).as_deref(), Ok(base.as_str()));

    assert_eq!(reference_hash(&V11, &json!([1])), Err(EventError::Canonical(CanonicalError::NotAnObject)));
    let mut float = pdu;
    float["depth"] = json!(1.5);
    assert_eq!(reference_hash(&V11, &float), Err(EventError::Canonical(CanonicalError::NonIntegralNumber)));
}

#[test]
fn reference_hash_differs_between_redaction_rules() {
    // `origin` is protected in v10 only.
    let event = json!({"type": "m.room.message", "origin": "x", "content": {}, "hashes": {"sha256": "h"}});
    let mut without = event.clone();
    without.as_object_mut().expect("an object").remove("origin");
    assert_ne!(reference_hash(&V10, &event), reference_hash(&V10, &without));
    assert_eq!(reference_hash(&V11, &event), reference_hash(&V11, &without));
}

#[test]
fn tampering() {
    let key = test_key();
    let pk = key.public_key();
    for version in SUPPORTED {
        let (_, pdu) = message(version);

        // Content is outside the redacted form: the signature still
        // holds, but the content hash exposes the change.
        let mut content = pdu.clone();
        content["content"]["body"] = json!("evil");
        assert!(verify_signature(version, &content, "example.org", "ed25519:t", &pk));
        assert!(!verify_content_hash(&content));

        // A redacted copy passes the signature check and fails the hash.
        let redacted = redact(version, &pdu);
        assert!(verify_signature(version, &redacted, "example.org", "ed25519:t", &pk));
        assert!(!verify_content_hash(&redacted));

        // Protected keys break the signature.
        for (k, v) in
            [("sender", json!("@eve:example.org")), ("depth", json!(99)), ("prev_events", json!([]))]
        {
            let mut bad = pdu.clone();
            bad[k] = v;
            assert!(!verify_signature(version, &bad, "example.org", "ed25519:t", &pk), "{k}");
        }
        // Replacing the hash together with the content breaks the
        // signature, which covers `hashes`.
        let mut rehashed = content.clone();
        rehashed["hashes"]["sha256"] = json!(content_hash(&content).expect("hashable"));
        assert!(verify_content_hash(&rehashed));
        assert!(!verify_signature(version, &rehashed, "example.org", "ed25519:t", &pk));

        // Unsigned data is free to change.
        let mut aged = pdu.clone();
        aged["unsigned"] = json!({"age": 1000});
        assert!(verify_signature(version, &aged, "example.org", "ed25519:t", &pk));
        assert!(verify_content_hash(&aged));

        assert!(!verify_signature(version, &pdu, "other.org", "ed25519:t", &pk));
        assert!(!verify_signature(version, &pdu, "example.org", "ed25519:u", &pk));
        let other = ServerKey::from_seed("ed25519:t", &[4u8; 32]).public_key();
        assert!(!verify_signature(version, &pdu, "example.org", "ed25519:t", &other));
    }
}

#[test]
fn content_hash_check_refuses_garbage() {
    assert!(!verify_content_hash(&json!("x")));
    assert!(!verify_content_hash(&json!({"content": {}})));
    assert!(!verify_content_hash(&json!({"hashes": {"sha256": 5}})));
    assert!(!verify_content_hash(&json!({"hashes": {"sha256": "!!"}})));
    assert!(!verify_content_hash(&json!({"hashes": "x"})));
    let mut event = json!({"type": "x", "content": {}});
    let hash = content_hash(&event).expect("hashable");
    // Padding does not change the decoded hash.
    event["hashes"] = json!({"sha256": format!("{hash}=")});
    assert!(verify_content_hash(&event));
    assert!(!verify_signature(&V11, &json!([]), "s", "ed25519:t", &test_key().public_key()));
}

#[test]
fn hash_and_sign_keeps_others_and_refuses_non_objects() {
    let key = test_key();
    let mut event = json!({
        "type": "m.room.message", "content": {},
        "hashes": {"sha512": "x"},
        "signatures": {"other.org": {"ed25519:o": "sig"}}
    });
    hash_and_sign(&V11, &key, "example.org", &mut event).expect("signable");
    assert_eq!(event["hashes"]["sha512"], json!("x"));
    assert_eq!(event["signatures"]["other.org"], json!({"ed25519:o": "sig"}));
    assert!(event["signatures"]["example.org"]["ed25519:t"].is_string());

    let mut list = json!([1]);
    assert_eq!(
        hash_and_sign(&V11, &key, "s", &mut list),
        Err(EventError::Canonical(CanonicalError::NotAnObject))
    );
    // A float outside the content hash's reach is still refused, and
    // the event is left as it was.
    let mut odd = json!({"type": "x", "content": {}, "hashes": {"other": 1.5}});
    let before = odd.clone();
    assert_eq!(
        hash_and_sign(&V11, &key, "s", &mut odd),
        Err(EventError::Canonical(CanonicalError::NonIntegralNumber))
    );
    assert_eq!(odd, before);
}

#[test]
fn v12_room_id_derives_from_create() {
    let mut t = template("m.room.create", json!({"room_version": "12"}));
    t.room_id = None;
    t.state_key = Some(String::new());
    t.prev_events = vec![];
    t.auth_events = vec![];
    t.depth = 1;
    let (id, create) = build_pdu(&V12, &test_key(), "example.org", t.clone()).expect("valid");
    assert!(create.get("room_id").is_none());
    let room_id = room_id_from_create(&V12, &create).expect("a v12 create event");
    assert_eq!(room_id, format!("!{}", &id[1..]));
    assert!(room_id.strip_prefix('!').is_some_and(is_reference_hash));
    assert_eq!(validate_pdu_shape(&V12, &create), Ok(()));

    assert_eq!(
        room_id_from_create(&V11, &create),
        Err(EventError::Unsupported("room IDs derived from the create event"))
    );
    let (_, msg) = message(&V12);
    assert_eq!(room_id_from_create(&V12, &msg), Err(EventError::Invalid("type")));

    // The create event must not name a room in v12, and every other
    // event must.
    let mut with_room = t.clone();
    with_room.room_id = Some("!r:example.org".to_owned());
    assert_eq!(build_pdu(&V12, &test_key(), "s", with_room), Err(EventError::Unexpected("room_id")));
    let mut with_room_id = create.clone();
    with_room_id["room_id"] = json!(room_id);
    assert_eq!(validate_pdu_shape(&V12, &with_room_id), Err(EventError::Unexpected("room_id")));
    let mut topic = template("m.room.topic", json!({}));
    topic.room_id = None;
    assert_eq!(build_pdu(&V12, &test_key(), "s", topic), Err(EventError::Missing("room_id")));
    // Older versions always need a room ID, create events included.
    assert_eq!(build_pdu(&V11, &test_key(), "s", t), Err(EventError::Missing("room_id")));
    let mut v11_create = create;
    v11_create["room_id"] = json!("!r:example.org");
    assert_eq!(validate_pdu_shape(&V11, &v11_create), Ok(()));
    v11_create.as_object_mut().expect("an object").remove("room_id");
    assert_eq!(validate_pdu_shape(&V11, &v11_create), Err(EventError::Missing("room_id")));
}

/// `levels` objects, one inside the other, around `1`.
fn nested(levels: usize) -> Value {
    (0..levels).fold(json!(1), |inner, _| json!({ "a": inner }))
}

#[test]
fn nesting_limit() {
    let key = test_key();
    // Content is one level inside the PDU: content of DEPTH_MAX - 1
    // levels makes a PDU of exactly DEPTH_MAX.
    let fits = template("m.room.message", nested(DEPTH_MAX - 1));
    let (_, pdu) = build_pdu(&V11, &key, "example.org", fits).expect("exactly at the limit");
    let text = to_canonical_excluding(&pdu, &[]).expect("canonical");
    assert_eq!(json::depth(text.as_bytes()), DEPTH_MAX);
    assert!(serde_json::from_str::<Value>(&text).is_ok());
    let over = template("m.room.message", nested(DEPTH_MAX));
    assert_eq!(build_pdu(&V11, &key, "example.org", over), Err(EventError::TooDeep(DEPTH_MAX + 1)));
    // Arrays count as much as objects, wherever they are.
    let arrays = (0..DEPTH_MAX - 2).fold(json!([]), |inner, _| json!([inner]));
    let deep_list = template("m.room.message", json!({ "list": arrays }));
    assert_eq!(build_pdu(&V11, &key, "s", deep_list), Err(EventError::TooDeep(DEPTH_MAX + 1)));
    // State events and every version are held to the same limit.
    for version in [&V10, &V11, &V12] {
        let state = PduTemplate {
            state_key: Some(String::new()),
            ..template("m.room.name", json!({ "name": "n", "x": nested(DEPTH_MAX) }))
        };
        assert_eq!(build_pdu(version, &key, "s", state), Err(EventError::TooDeep(DEPTH_MAX + 2)));
    }
}

#[test]
fn received_events_are_held_to_the_nesting_limit() {
    let (_, pdu) = message(&V11);
    let mut at_limit = pdu.clone();
    at_limit["content"]["x"] = nested(DEPTH_MAX - 2);
    assert_eq!(validate_pdu_shape(&V11, &at_limit), Ok(()));
    let mut over = pdu.clone();
    over["content"]["x"] = nested(DEPTH_MAX - 1);
    assert_eq!(validate_pdu_shape(&V11, &over), Err(EventError::TooDeep(DEPTH_MAX + 1)));
    // Far beyond what serde_json could parse: refused, not a crash.
    let mut hostile = pdu.clone();
    hostile["content"]["x"] = nested(500);
    assert_eq!(validate_pdu_shape(&V11, &hostile), Err(EventError::TooDeep(502)));
    // `unsigned` is left out of the size but not of the nesting: what
    // is stored must be readable back.
    let mut unsigned_ok = pdu.clone();
    unsigned_ok["unsigned"] = nested(DEPTH_MAX - 1);
    assert_eq!(validate_pdu_shape(&V11, &unsigned_ok), Ok(()));
    let mut unsigned_deep = pdu;
    unsigned_deep["unsigned"] = json!({ "age": 1.5, "x": nested(DEPTH_MAX - 1) });
    assert_eq!(validate_pdu_shape(&V11, &unsigned_deep), Err(EventError::TooDeep(DEPTH_MAX + 1)));
}

#[test]
fn size_limit() {
    let key = test_key();
    let big = template("m.room.message", json!({"body": "x".repeat(PDU_MAX_BYTES)}));
    assert!(
        matches!(build_pdu(&V11, &key, "example.org", big), Err(EventError::TooLarge(n)) if n > PDU_MAX_BYTES)
    );
    // Just under the limit is fine; the signature and hash count too.
    let (_, small) = message(&V11);
    let overhead = to_canonical_excluding(&small, &[]).expect("canonical").len() - "hello".len();
    let fits = template("m.room.message", json!({"body": "x".repeat(PDU_MAX_BYTES - overhead)}));
    let (_, pdu) = build_pdu(&V11, &key, "example.org", fits).expect("exactly at the limit");
    assert_eq!(to_canonical_excluding(&pdu, &[]).expect("canonical").len(), PDU_MAX_BYTES);
    let over = template("m.room.message", json!({"body": "x".repeat(PDU_MAX_BYTES - overhead + 1)}));
    assert_eq!(build_pdu(&V11, &key, "example.org", over), Err(EventError::TooLarge(PDU_MAX_BYTES + 1)));

    let mut received = pdu.clone();
    assert_eq!(validate_pdu_shape(&V11, &received), Ok(()));
    received["unsigned"] = json!({"note": "y".repeat(PDU_MAX_BYTES)});
    assert_eq!(validate_pdu_shape(&V11, &received), Ok(()));
    received["content"]["more"] = json!("z");
    assert!(matches!(validate_pdu_shape(&V11, &received), Err(EventError::TooLarge(_))));
}

#[test]
fn build_refuses_bad_templates() {
    let key = test_key();
    let long = |prefix: &str, suffix: &str, total: usize| {
        format!("{prefix}{}{suffix}", "a".repeat(total - prefix.len() - suffix.len()))
    };
    let cases: Vec<(PduTemplate, EventError)> = vec![
        (
            PduTemplate { sender: long("@", ":example.org", 256), ..template("m.room.message", json!({})) },
            EventError::TooLong("sender"),
        ),
        (
            PduTemplate { sender: "alice".to_owned(), ..template("m.room.message", json!({})) },
            EventError::Invalid("sender"),
        ),
        (template(&"t".repeat(256), json!({})), EventError::TooLong("type")),
        (
            PduTemplate { state_key: Some("k".repeat(256)), ..template("m.room.topic", json!({})) },
            EventError::TooLong("state_key"),
        ),
        (
            PduTemplate { room_id: Some(long("!", ":x", 256)), ..template("m.room.message", json!({})) },
            EventError::TooLong("room_id"),
        ),
        (
            PduTemplate { room_id: Some("room".to_owned()), ..template("m.room.message", json!({})) },
            EventError::Invalid("room_id"),
        ),
        (
            PduTemplate {
                prev_events: vec!["$p".to_owned(); PREV_EVENTS_MAX + 1],
                ..template("m.room.message", json!({}))
            },
            EventError::TooMany("prev_events"),
        ),
        (
            PduTemplate {
                auth_events: vec!["$a".to_owned(); AUTH_EVENTS_MAX + 1],
                ..template("m.room.message", json!({}))
            },
            EventError::TooMany("auth_events"),
        ),
        (
            PduTemplate { auth_events: vec![long("$", "", 256)], ..template("m.room.message", json!({})) },
            EventError::TooLong("auth_events"),
        ),
        (
            PduTemplate { prev_events: vec![String::new()], ..template("m.room.message", json!({})) },
            EventError::Invalid("prev_events"),
        ),
        (
            PduTemplate { depth: MAX_SAFE_INTEGER as u64 + 1, ..template("m.room.message", json!({})) },
            EventError::Invalid("depth"),
        ),
        (
            PduTemplate { origin_server_ts: i64::MAX, ..template("m.room.message", json!({})) },
            EventError::Invalid("origin_server_ts"),
        ),
        (template("m.room.message", json!("text")), EventError::Invalid("content")),
        (
            template("m.room.message", json!({"n": 1.5})),
            EventError::Canonical(CanonicalError::NonIntegralNumber),
        ),
    ];
    for (t, expected) in cases {
        assert_eq!(build_pdu(&V11, &key, "example.org", t), Err(expected.clone()), "{expected}");
    }
    // The limits themselves are allowed.
    let at_limits = PduTemplate {
        sender: long("@", ":example.org", 255),
        room_id: Some(long("!", ":x", 255)),
        state_key: Some("k".repeat(255)),
        prev_events: vec![long("$", "", 255); PREV_EVENTS_MAX],
        auth_events: vec![long("$", "", 255); AUTH_EVENTS_MAX],
        depth: MAX_SAFE_INTEGER as u64,
        ..template(&"t".repeat(255), json!({}))
    };
    let (_, pdu) = build_pdu(&V11, &key, "example.org", at_limits).expect("at the limits");
    assert_eq!(validate_pdu_shape(&V11, &pdu), Ok(()));
}

#[test]
fn validate_refuses_missing_fields() {
    for version in SUPPORTED {
        let (_, pdu) = message(version);
        for field in [
            "type",
            "sender",
            "room_id",
            "content",
            "prev_events",
            "auth_events",
            "depth",
            "origin_server_ts",
            "hashes",
            "signatures",
        ] {
            let mut event = pdu.clone();
            event.as_object_mut().expect("an object").remove(field);
            assert_eq!(validate_pdu_shape(version, &event), Err(EventError::Missing(field)), "{field}");
        }
        let mut event = pdu.clone();
        event["hashes"] = json!({"sha512": "x"});
        assert_eq!(validate_pdu_shape(version, &event), Err(EventError::Missing("hashes.sha256")));
    }
}

#[test]
fn validate_refuses_wrong_types() {
    let (_, pdu) = message(&V11);
    let cases: Vec<(&str, Value, EventError)> = vec![
        ("type", json!(1), EventError::Invalid("type")),
        ("sender", json!(["@a:x"]), EventError::Invalid("sender")),
        ("sender", json!("@nocolon"), EventError::Invalid("sender")),
        ("room_id", json!(null), EventError::Invalid("room_id")),
        ("room_id", json!("#alias:x"), EventError::Invalid("room_id")),
        ("state_key", json!(null), EventError::Invalid("state_key")),
        ("content", json!([]), EventError::Invalid("content")),
        ("prev_events", json!("$p"), EventError::Invalid("prev_events")),
        ("prev_events", json!([1]), EventError::Invalid("prev_events")),
        ("prev_events", json!([["$p", {"sha256": "x"}]]), EventError::Invalid("prev_events")),
        ("auth_events", json!({}), EventError::Invalid("auth_events")),
        ("auth_events", json!(["nosigil"]), EventError::Invalid("auth_events")),
        ("depth", json!("5"), EventError::Invalid("depth")),
        ("depth", json!(-1), EventError::Invalid("depth")),
        ("depth", json!(2.5), EventError::Invalid("depth")),
        ("depth", json!(MAX_SAFE_INTEGER + 1), EventError::Invalid("depth")),
        ("depth", json!(u64::MAX), EventError::Invalid("depth")),
        ("origin_server_ts", json!(null), EventError::Invalid("origin_server_ts")),
        ("origin_server_ts", json!(1e20), EventError::Invalid("origin_server_ts")),
        ("hashes", json!("abc"), EventError::Invalid("hashes")),
        ("hashes", json!({"sha256": 5}), EventError::Invalid("hashes.sha256")),
        ("hashes", json!({"sha256": "not base64!"}), EventError::Invalid("hashes.sha256")),
        ("hashes", json!({"sha256": "AAAA"}), EventError::Invalid("hashes.sha256")),
        ("signatures", json!([]), EventError::Invalid("signatures")),
        ("signatures", json!({"x": "sig"}), EventError::Invalid("signatures")),
        ("signatures", json!({"x": {"ed25519:1": 5}}), EventError::Invalid("signatures")),
        ("unsigned", json!("x"), EventError::Invalid("unsigned")),
    ];
    for (field, value, expected) in cases {
        let mut event = pdu.clone();
        event[field] = value.clone();
        assert_eq!(validate_pdu_shape(&V11, &event), Err(expected), "{field}: {value}");
    }
    assert_eq!(validate_pdu_shape(&V11, &json!([])), Err(EventError::Invalid("event")));
    assert_eq!(validate_pdu_shape(&V11, &json!(null)), Err(EventError::Invalid("event")));
    let mut float = pdu;
    float["content"]["n"] = json!(0.5);
    assert_eq!(
        validate_pdu_shape(&V11, &float),
        Err(EventError::Canonical(CanonicalError::NonIntegralNumber))
    );
}

#[test]
fn validate_checks_redacts_where_the_version_puts_it() {
    let (_, mut v10) = message(&V10);
    v10["type"] = json!("m.room.redaction");
    v10["redacts"] = json!(5);
    assert_eq!(validate_pdu_shape(&V10, &v10), Err(EventError::Invalid("redacts")));
    v10["redacts"] = json!("$t");
    assert_eq!(validate_pdu_shape(&V10, &v10), Ok(()));
    let (_, mut v11) = message(&V11);
    v11["type"] = json!("m.room.redaction");
    v11["content"]["redacts"] = json!(["$t"]);
    assert_eq!(validate_pdu_shape(&V11, &v11), Err(EventError::Invalid("content.redacts")));
    v11["content"]["redacts"] = json!("$t");
    assert_eq!(validate_pdu_shape(&V11, &v11), Ok(()));
}

#[test]
fn validate_refuses_over_long_ids() {
    let (_, pdu) = message(&V11);
    let cases: Vec<(&str, Value, EventError)> = vec![
        ("type", json!("t".repeat(256)), EventError::TooLong("type")),
        ("sender", json!(format!("@{}:x", "a".repeat(253))), EventError::TooLong("sender")),
        ("room_id", json!(format!("!{}:x", "a".repeat(253))), EventError::TooLong("room_id")),
        ("state_key", json!("k".repeat(256)), EventError::TooLong("state_key")),
        ("prev_events", json!([format!("${}", "a".repeat(255))]), EventError::TooLong("prev_events")),
        ("auth_events", json!(vec!["$a"; AUTH_EVENTS_MAX + 1]), EventError::TooMany("auth_events")),
        ("prev_events", json!(vec!["$p"; PREV_EVENTS_MAX + 1]), EventError::TooMany("prev_events")),
    ];
    for (field, value, expected) in cases {
        let mut event = pdu.clone();
        event[field] = value;
        assert_eq!(validate_pdu_shape(&V11, &event), Err(expected), "{field}");
    }
}

#[test]
fn hostile_shapes_never_panic() {
    let (_, pdu) = message(&V12);
    let odd = [
        json!(null),
        json!(true),
        json!(-1),
        json!(u64::MAX),
        json!(1e300),
        json!(""),
        json!([]),
        json!([null, {}, [[]]]),
        json!({}),
        json!({"": {"": ""}}),
    ];
    let fields = pdu.as_object().expect("an object").keys().cloned().collect::<Vec<_>>();
    for version in SUPPORTED {
        for field in fields.iter().map(String::as_str).chain(["unsigned", "redacts", "state_key"]) {
            for value in &odd {
                let mut event = pdu.clone();
                event[field] = value.clone();
                let _ = validate_pdu_shape(version, &event);
                let _ = reference_hash(version, &event);
                let _ = verify_content_hash(&event);
                let _ = verify_signature(version, &event, "example.org", "ed25519:t", &[0u8; 32]);
                let _ = hash_and_sign(version, &test_key(), "example.org", &mut event);
            }
        }
        for value in &odd {
            assert!(validate_pdu_shape(version, value).is_err());
            let _ = room_id_from_create(version, value);
        }
    }
}

#[test]
fn errors_display() {
    assert_eq!(EventError::Missing("depth").to_string(), "event field `depth` is missing");
    assert_eq!(EventError::TooLarge(70000).to_string(), "event is 70000 bytes, more than the 65536 allowed");
    assert_eq!(EventError::TooDeep(65).to_string(), "event nests 65 levels deep, more than the 64 allowed");
    let e: Box<dyn std::error::Error> = Box::new(EventError::from(CanonicalError::NotAnObject));
    assert!(e.source().is_some());
}

// --- rooms v1 to v3: event IDs in the event, hashed references, v3 IDs ---

/// The appendix's two signing examples are events of the v1 format (the
/// second carries `event_id`). v1–v2 sign them exactly as the appendix
/// shows; the reference hashes were computed independently (Python's
/// `json` and `hashlib` over the v1 redaction of each signed event).
#[test]
fn spec_vectors_in_v1_and_v2_rooms() {
    let v = vectors();
    let key = spec_key(&v);
    let expected_references =
        ["8yif6p8EqgoSten2BLje9ntKm720NyFLWQv9tn8memc", "oFAil2fHTGY66j9PIsC3hnc+/6r2SQGxCzd1/FUgtOE"];
    for version in [&V1, &V2] {
        for (case, reference) in v["event_signing"].as_array().expect("cases").iter().zip(expected_references)
        {
            let mut event = case["input"].clone();
            hash_and_sign(version, &key, "domain", &mut event).expect("signable");
            assert_eq!(event, case["signed"], "v{}", version.id);
            assert!(verify_content_hash(&event));
            assert!(verify_signature(version, &event, "domain", "ed25519:1", &key.public_key()));
            assert_eq!(reference_hash(version, &event).as_deref(), Ok(reference));
        }
        // The second event names itself; the first has no ID in this format.
        let signed = &v["event_signing"][1]["signed"];
        assert_eq!(event_id(version, signed).as_deref(), Ok("$0:domain"));
        assert_eq!(event_id(version, &v["event_signing"][0]["signed"]), Err(EventError::Missing("event_id")));
        // Its ID is signed: changing it breaks the signature.
        let mut renamed = signed.clone();
        renamed["event_id"] = json!("$1:domain");
        assert!(!verify_signature(version, &renamed, "domain", "ed25519:1", &key.public_key()));
        assert_eq!(required_signers(version, signed), Ok(vec!["domain".to_owned()]));
    }
}

/// A v3 event (the appendix's message without `event_id`, as v3 sends
/// none): hash, signature and event ID as computed by an independent
/// implementation (Python `hashlib` and `cryptography`'s ed25519). Its
/// hash has both `+` and `/`, which URL-safe base64 (v4 on) spells `-` and
/// `_`.
#[test]
fn v3_and_v4_event_ids_match_an_independent_implementation() {
    let v = vectors();
    let key = spec_key(&v);
    let mut input = v["event_signing"][1]["input"].clone();
    input.as_object_mut().expect("an object").remove("event_id");
    input["prev_events"] = json!([]);
    input["auth_events"] = json!([]);
    input["depth"] = json!(3);
    let mut event = input.clone();
    hash_and_sign(&V3, &key, "domain", &mut event).expect("signable");
    assert_eq!(event["hashes"]["sha256"], json!("atK5gEZdmYng53MrW1FeMH+DZNCN51UZEy2cphDnwJU"));
    assert_eq!(
        event["signatures"]["domain"]["ed25519:1"],
        json!("kKASaPf5sM4xzAao1yn9nkfUW4FO+bP9RZuLWNqBucbwOOTPCWCb16aZXOLEXF+oM225cVSJvJtKdXhOIolhCA")
    );
    assert_eq!(event_id(&V3, &event).as_deref(), Ok("$xZz3jM1VAN2JzWA65xSqmohvFVlV/7hF/aKKiL6g3zc"));
    // v4–v10 redact this event the same way, so the same hash, URL-safe.
    for version in
        SUPPORTED.iter().filter(|v| v.event_ids == EventIds::UrlSafeHash && v.redaction < Redaction::V11)
    {
        let mut same = input.clone();
        hash_and_sign(version, &key, "domain", &mut same).expect("signable");
        assert_eq!(same, event, "v{}", version.id);
        assert_eq!(
            event_id(version, &same).as_deref(),
            Ok("$xZz3jM1VAN2JzWA65xSqmohvFVlV_7hF_aKKiL6g3zc"),
            "v{}",
            version.id
        );
    }
    // From v3 an `event_id` key, if present, is just more content.
    assert!(event_id(&V3, &v["event_signing"][1]["signed"]).is_ok_and(|id| id != "$0:domain"));
}

/// A v1 room's first two events built here, compared byte for byte with
/// the same events signed by an independent implementation (Python): the
/// create event, then a join citing it as `[id, {"sha256": reference hash}]`.
#[test]
fn v1_pdus_carry_their_ids_and_hashed_references() {
    let v = vectors();
    let key = spec_key(&v);
    let create_template = PduTemplate {
        room_id: Some("!r:domain".to_owned()),
        sender: "@u:domain".to_owned(),
        kind: "m.room.create".to_owned(),
        state_key: Some(String::new()),
        content: json!({"creator": "@u:domain", "room_version": "1"}),
        redacts: None,
        event_id: Some("$create:domain".to_owned()),
        prev_events: vec![],
        auth_events: vec![],
        reference_hashes: BTreeMap::new(),
        depth: 1,
        origin_server_ts: 1_000_000,
    };
    let (create_id, create) = build_pdu(&V1, &key, "domain", create_template).expect("valid");
    assert_eq!(create_id, "$create:domain");
    assert_eq!(
        create,
        json!({
            "auth_events": [], "content": {"creator": "@u:domain", "room_version": "1"}, "depth": 1,
            "event_id": "$create:domain",
            "hashes": {"sha256": "+LqLEjdpddK/JrUMVcb5O+DIjaVI/bn4jpO9ui7qbCA"},
            "origin_server_ts": 1_000_000, "prev_events": [], "room_id": "!r:domain", "sender": "@u:domain",
            "signatures": {"domain": {"ed25519:1":
                "X4WIU5bFd07cU5+Z8mL0c7IpMQCV/FZMhAsEnyz7uG8cqY/ESKl8S+hVbJiD+6dqQOTm/xd0gFa3D/rdHFxUDw"}},
            "state_key": "", "type": "m.room.create"
        })
    );
    let create_ref = reference_hash(&V1, &create).expect("hashable");
    assert_eq!(create_ref, "+n0IznYw5eUCIQbYlaFpKgbRf5VnkGftf9mmjNTvvPo");

    let join_template = PduTemplate {
        room_id: Some("!r:domain".to_owned()),
        sender: "@u:domain".to_owned(),
        kind: "m.room.member".to_owned(),
        state_key: Some("@u:domain".to_owned()),
        content: json!({"membership": "join", "displayname": "U"}),
        redacts: None,
        event_id: Some("$join:domain".to_owned()),
        prev_events: vec![create_id.clone()],
        auth_events: vec![create_id.clone()],
        reference_hashes: BTreeMap::from([(create_id.clone(), create_ref.clone())]),
        depth: 2,
        origin_server_ts: 1_000_001,
    };
    let (join_id, join) = build_pdu(&V1, &key, "domain", join_template.clone()).expect("valid");
    assert_eq!(join_id, "$join:domain");
    let pair = json!([["$create:domain", {"sha256": "+n0IznYw5eUCIQbYlaFpKgbRf5VnkGftf9mmjNTvvPo"}]]);
    assert_eq!(join["prev_events"], pair);
    assert_eq!(join["auth_events"], pair);
    assert_eq!(join["hashes"]["sha256"], json!("I+RCCRzCcwMiZSbI9eqtdZduUmvI9caOphC6CfcO/xM"));
    assert_eq!(
        join["signatures"]["domain"]["ed25519:1"],
        json!("Kqdld4n4TPxGXhqk7zG9KOd6N925V0e5CKcSnk0tF/HD3xIO1jmHXviUUdQAfP7vjhP+FVG60oUDxxTlsFhiBQ")
    );
    assert_eq!(reference_hash(&V1, &join).as_deref(), Ok("vPejh4yjMUy/ZCQvik/LrMywuLj8dQNxgMe49puga2A"));
    assert_eq!(validate_pdu_shape(&V1, &join), Ok(()));
    assert_eq!(referenced_ids(&V1, &join, "prev_events"), Ok(vec!["$create:domain"]));
    assert_eq!(referenced_ids(&V1, &join, "auth_events"), Ok(vec!["$create:domain"]));
    // Read as a v3 event the pairs are malformed.
    assert_eq!(referenced_ids(&V3, &join, "prev_events"), Err(EventError::Invalid("prev_events")));
    assert_eq!(validate_pdu_shape(&V3, &join), Err(EventError::Invalid("prev_events")));

    // A reference without its hash cannot be built.
    let mut unhashed = join_template.clone();
    unhashed.reference_hashes.clear();
    assert_eq!(build_pdu(&V1, &key, "domain", unhashed), Err(EventError::Missing("prev_events.sha256")));
}

#[test]
fn event_ids_in_the_event_belong_to_v1_and_v2() {
    let key = test_key();
    for version in [&V1, &V2] {
        let mut t = template_for(version, "m.room.message", json!({}));
        t.event_id = None;
        assert_eq!(build_pdu(version, &key, "example.org", t.clone()), Err(EventError::Missing("event_id")));
        for bad in ["$nocolon", "$:example.org", "$a:", "$a:bad host", "a:example.org", "$a b:example.org"] {
            t.event_id = Some(bad.to_owned());
            assert_eq!(
                build_pdu(version, &key, "example.org", t.clone()),
                Err(EventError::Invalid("event_id")),
                "{bad}"
            );
        }
        // Our events carry our name.
        t.event_id = Some("$x:elsewhere.test".to_owned());
        assert_eq!(build_pdu(version, &key, "example.org", t.clone()), Err(EventError::Invalid("event_id")));
        t.event_id = Some(format!("${}:example.org", "a".repeat(244)));
        assert_eq!(build_pdu(version, &key, "example.org", t), Err(EventError::TooLong("event_id")));

        let (_, pdu) = message(version);
        let mut no_id = pdu.clone();
        no_id.as_object_mut().expect("an object").remove("event_id");
        assert_eq!(validate_pdu_shape(version, &no_id), Err(EventError::Missing("event_id")));
        assert_eq!(event_id(version, &no_id), Err(EventError::Missing("event_id")));
        for (value, expected) in [
            (json!(5), EventError::Invalid("event_id")),
            (json!("$nocolon"), EventError::Invalid("event_id")),
            (json!(format!("${}:x.org", "a".repeat(250))), EventError::TooLong("event_id")),
        ] {
            let mut bad = pdu.clone();
            bad["event_id"] = value;
            assert_eq!(validate_pdu_shape(version, &bad), Err(expected));
        }
        // References are pairs of an ID and an object of hashes.
        for refs in [
            json!(["$p:x"]),
            json!([["$p:x"]]),
            json!([["$p:x", "h"]]),
            json!([[5, {}]]),
            json!([["$p:x", {"sha256": 5}]]),
            json!([["$p:x", {}, 1]]),
        ] {
            let mut bad = pdu.clone();
            bad["prev_events"] = refs.clone();
            assert_eq!(validate_pdu_shape(version, &bad), Err(EventError::Invalid("prev_events")), "{refs}");
        }
    }
    for version in SUPPORTED.iter().filter(|v| !v.event_id_in_event()) {
        let mut t = template("m.room.message", json!({}));
        t.event_id = Some("$x:example.org".to_owned());
        assert_eq!(build_pdu(version, &key, "example.org", t), Err(EventError::Unexpected("event_id")));
        let (id, _) = message(version);
        assert_eq!(event_id_server(&id), None, "v{}: {id}", version.id);
    }
    assert_eq!(event_id_server("$abc:example.org:8448"), Some("example.org:8448"));
    assert_eq!(event_id_server("abc:example.org"), None);
}

/// Canonical JSON is enforced from v6 (`v6-canonical-json`): before, a
/// received event's integers may exceed 2^53 (`depth` up to 2^63 − 1).
#[test]
fn integer_range_of_received_events_from_v6() {
    for version in SUPPORTED {
        let (_, pdu) = message(version);
        let mut deep = pdu.clone();
        deep["depth"] = json!(MAX_SAFE_INTEGER + 1);
        let mut late = pdu;
        late["origin_server_ts"] = json!(MIN_SAFE_INTEGER - 1);
        if version.strict_canonical_json {
            assert_eq!(validate_pdu_shape(version, &deep), Err(EventError::Invalid("depth")));
            assert_eq!(validate_pdu_shape(version, &late), Err(EventError::Invalid("origin_server_ts")));
        } else {
            // Shape is fine; only the canonical form (for hashes) refuses.
            for event in [deep, late] {
                assert_eq!(
                    validate_pdu_shape(version, &event),
                    Err(EventError::Canonical(CanonicalError::IntegerOutOfRange)),
                    "v{}",
                    version.id
                );
            }
        }
    }
}

#[test]
fn required_signers_per_version() {
    let join = |version: &RoomVersion, authoriser: Option<&str>| {
        let mut content = json!({"membership": "join"});
        if let Some(a) = authoriser {
            content["join_authorised_via_users_server"] = json!(a);
        }
        let mut e = json!({"type": "m.room.member", "sender": "@a:one.test", "state_key": "@a:one.test",
                           "content": content});
        if version.event_id_in_event() {
            e["event_id"] = json!("$e:two.test");
        }
        e
    };
    let names = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(required_signers(&V1, &join(&V1, None)), Ok(names(&["one.test", "two.test"])));
    assert_eq!(
        required_signers(&V2, &join(&V2, Some("@b:three.test"))),
        Ok(names(&["one.test", "two.test"]))
    );
    assert_eq!(required_signers(&V3, &join(&V3, None)), Ok(names(&["one.test"])));
    assert_eq!(required_signers(&V7, &join(&V7, Some("@b:three.test"))), Ok(names(&["one.test"])));
    for version in SUPPORTED.iter().filter(|v| v.restricted_joins) {
        assert_eq!(
            required_signers(version, &join(version, Some("@b:three.test"))),
            Ok(names(&["one.test", "three.test"]))
        );
        assert_eq!(required_signers(version, &join(version, Some("@b:one.test"))), Ok(names(&["one.test"])));
        assert_eq!(
            required_signers(version, &join(version, Some("nobody"))),
            Err(EventError::Invalid("content.join_authorised_via_users_server"))
        );
    }
    let mut same = join(&V1, None);
    same["event_id"] = json!("$e:one.test");
    assert_eq!(required_signers(&V1, &same), Ok(names(&["one.test"])));
    assert_eq!(required_signers(&V8, &json!({"sender": "x"})), Err(EventError::Invalid("sender")));
    assert_eq!(required_signers(&V8, &json!({})), Err(EventError::Missing("sender")));
}
