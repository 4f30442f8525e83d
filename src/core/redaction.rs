//! The redaction algorithm: which parts of an event survive when it is
//! redacted, per room version.
//!
//! Redaction is also the first step of signing an event and of its
//! reference hash (and so its event ID), so the output here must match
//! other servers byte for byte once written as canonical JSON. This module
//! only transforms JSON values; deciding whether a redaction may be applied,
//! and storing the result, belong to the callers.

use serde_json::{Map, Value};

use super::room_version::{Redaction, RoomVersion};

/// Top-level keys kept by the algorithms of rooms v1 to v10.
const TOP_LEVEL_V1: &[&str] = &[
    "event_id",
    "type",
    "room_id",
    "sender",
    "state_key",
    "content",
    "hashes",
    "signatures",
    "depth",
    "prev_events",
    "prev_state",
    "auth_events",
    "origin",
    "origin_server_ts",
    "membership",
];

/// Top-level keys kept by the room v11 algorithm: the earlier list without
/// `origin`, `membership` and `prev_state`.
const TOP_LEVEL_V11: &[&str] = &[
    "event_id",
    "type",
    "room_id",
    "sender",
    "state_key",
    "content",
    "hashes",
    "signatures",
    "depth",
    "prev_events",
    "auth_events",
    "origin_server_ts",
];

/// The `m.room.power_levels` keys every algorithm keeps (v11 adds `invite`).
const POWER_LEVELS_KEYS: &[&str] =
    &["ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default"];

/// Returns the redacted form of `event` under the redaction algorithm of
/// `version`.
///
/// Top-level keys outside the version's list are dropped, including
/// `unsigned`; `content` is always present in the result, reduced to the
/// keys the event's type protects, and is an empty object when the event's
/// `content` is missing or not an object. A value that is not an object
/// has nothing to keep, so it redacts to an empty object.
pub fn redact(version: &RoomVersion, event: &Value) -> Value {
    let Some(obj) = event.as_object() else {
        return Value::Object(Map::new());
    };
    let top_level = if version.redaction >= Redaction::V11 { TOP_LEVEL_V11 } else { TOP_LEVEL_V1 };
    let mut out: Map<String, Value> = obj
        .iter()
        .filter(|(k, _)| top_level.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let kind = obj.get("type").and_then(Value::as_str).unwrap_or("");
    let content = match obj.get("content") {
        Some(Value::Object(content)) => redact_content(version.redaction, kind, content),
        _ => Map::new(),
    };
    out.insert("content".to_owned(), Value::Object(content));
    Value::Object(out)
}

/// True if the `content` key `key` of an event of type `kind` survives
/// redaction under `rules`.
fn kept(rules: Redaction, kind: &str, key: &str) -> bool {
    match kind {
        "m.room.member" => {
            key == "membership" || (key == "join_authorised_via_users_server" && rules >= Redaction::V9)
        }
        // From v11 the create event keeps its whole content.
        "m.room.create" => rules >= Redaction::V11 || key == "creator",
        "m.room.join_rules" => key == "join_rule" || (key == "allow" && rules >= Redaction::V8),
        "m.room.power_levels" => {
            POWER_LEVELS_KEYS.contains(&key) || (key == "invite" && rules >= Redaction::V11)
        }
        // Only the first algorithm protects the historical aliases event.
        "m.room.aliases" => key == "aliases" && rules == Redaction::V1,
        "m.room.history_visibility" => key == "history_visibility",
        "m.room.redaction" => key == "redacts" && rules >= Redaction::V11,
        _ => false,
    }
}

/// Returns the part of `content` that an event of type `kind` keeps.
fn redact_content(rules: Redaction, kind: &str, content: &Map<String, Value>) -> Map<String, Value> {
    let mut out: Map<String, Value> =
        content.iter().filter(|(k, _)| kept(rules, kind, k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    // From v11 a member event also keeps `signed` inside
    // `third_party_invite`, and nothing else of that object. An invite
    // without `signed` has nothing protected, so the object is dropped.
    if kind == "m.room.member" && rules >= Redaction::V11 {
        if let Some(signed) = content.get("third_party_invite").and_then(|t| t.get("signed")) {
            let mut invite = Map::new();
            invite.insert("signed".to_owned(), signed.clone());
            out.insert("third_party_invite".to_owned(), Value::Object(invite));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::room_version::{SUPPORTED, V1, V10, V11, V12, V5, V6, V7, V8, V9};
    use serde_json::json;

    /// The versions whose number is in `range`.
    fn versions(range: std::ops::RangeInclusive<u32>) -> Vec<&'static RoomVersion> {
        SUPPORTED.iter().copied().filter(|v| range.contains(&v.id.parse().expect("numeric ids"))).collect()
    }

    /// An event carrying every top-level key either algorithm knows, plus
    /// some neither keeps.
    fn full_event(kind: &str, content: Value) -> Value {
        json!({
            "event_id": "$e",
            "type": kind,
            "room_id": "!r:x",
            "sender": "@a:x",
            "state_key": "",
            "content": content,
            "hashes": {"sha256": "h"},
            "signatures": {"x": {"ed25519:1": "s"}},
            "depth": 4,
            "prev_events": ["$p"],
            "prev_state": [],
            "auth_events": ["$a"],
            "origin": "x",
            "origin_server_ts": 7,
            "membership": "join",
            "unsigned": {"age": 1},
            "redacts": "$t",
            "age_ts": 5,
            "custom": true
        })
    }

    fn keys(v: &Value) -> Vec<&str> {
        let mut k: Vec<&str> = v.as_object().expect("an object").keys().map(String::as_str).collect();
        k.sort_unstable();
        k
    }

    fn content_of(version: &RoomVersion, kind: &str, content: &Value) -> Value {
        redact(version, &full_event(kind, content.clone()))["content"].clone()
    }

    #[test]
    fn top_level_keys_before_v11() {
        for version in versions(1..=10) {
            let r = redact(version, &full_event("m.room.message", json!({"body": "hi"})));
            let mut expected = TOP_LEVEL_V1.to_vec();
            expected.sort_unstable();
            assert_eq!(keys(&r), expected, "v{}", version.id);
            assert_eq!(r["content"], json!({}));
            assert_eq!(r["origin"], json!("x"));
            assert_eq!(r["membership"], json!("join"));
            assert_eq!(r["prev_state"], json!([]));
            assert_eq!(r["event_id"], json!("$e"));
        }
    }

    #[test]
    fn top_level_keys_v11() {
        for version in [&V11, &V12] {
            let r = redact(version, &full_event("m.room.message", json!({"body": "hi"})));
            let mut expected = TOP_LEVEL_V11.to_vec();
            expected.sort_unstable();
            assert_eq!(keys(&r), expected, "v{}", version.id);
            for gone in ["origin", "membership", "prev_state", "unsigned", "redacts", "age_ts", "custom"] {
                assert!(r.get(gone).is_none(), "{gone} survived in v{}", version.id);
            }
        }
    }

    #[test]
    fn kept_values_are_untouched() {
        let event = full_event("m.room.message", json!({}));
        for (version, list) in [(&V1, TOP_LEVEL_V1), (&V11, TOP_LEVEL_V11)] {
            let r = redact(version, &event);
            for k in list {
                assert_eq!(r[k], event[k], "{k}");
            }
        }
    }

    #[test]
    fn member_content() {
        let content = json!({
            "membership": "join",
            "join_authorised_via_users_server": "@b:y",
            "displayname": "A",
            "avatar_url": "mxc://x/y",
            "third_party_invite": {"display_name": "a@b", "signed": {"mxid": "@a:x", "token": "t"}}
        });
        // v8 added restricted joins but forgot their key (fixed in v9).
        for version in versions(1..=8) {
            assert_eq!(content_of(version, "m.room.member", &content), json!({"membership": "join"}));
        }
        for version in [&V9, &V10] {
            assert_eq!(
                content_of(version, "m.room.member", &content),
                json!({"membership": "join", "join_authorised_via_users_server": "@b:y"})
            );
        }
        for version in [&V11, &V12] {
            assert_eq!(
                content_of(version, "m.room.member", &content),
                json!({
                    "membership": "join",
                    "join_authorised_via_users_server": "@b:y",
                    "third_party_invite": {"signed": {"mxid": "@a:x", "token": "t"}}
                })
            );
        }
        // Without `signed` the invite object is not kept at all.
        for invite in [json!({"display_name": "a"}), json!("text"), json!(null), json!([1])] {
            let content = json!({"membership": "invite", "third_party_invite": invite});
            assert_eq!(content_of(&V11, "m.room.member", &content), json!({"membership": "invite"}));
        }
    }

    #[test]
    fn create_content() {
        let content =
            json!({"creator": "@a:x", "room_version": "10", "m.federate": false, "type": "m.space"});
        for version in versions(1..=10) {
            assert_eq!(content_of(version, "m.room.create", &content), json!({"creator": "@a:x"}));
        }
        for version in [&V11, &V12] {
            assert_eq!(content_of(version, "m.room.create", &content), content);
        }
    }

    #[test]
    fn join_rules_content() {
        let content = json!({
            "join_rule": "restricted",
            "allow": [{"type": "m.room_membership", "room_id": "!s:x"}],
            "extra": 1
        });
        for version in versions(1..=7) {
            assert_eq!(
                content_of(version, "m.room.join_rules", &content),
                json!({"join_rule": "restricted"})
            );
        }
        for version in versions(8..=12) {
            assert_eq!(
                content_of(version, "m.room.join_rules", &content),
                json!({"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": "!s:x"}]})
            );
        }
    }

    #[test]
    fn power_levels_content() {
        let content = json!({
            "ban": 50, "events": {"m.room.name": 50}, "events_default": 0, "invite": 0, "kick": 50,
            "redact": 50, "state_default": 50, "users": {"@a:x": 100}, "users_default": 0,
            "notifications": {"room": 50}, "historical": 100
        });
        let mut before_v11 = content.clone();
        for k in ["invite", "notifications", "historical"] {
            before_v11.as_object_mut().expect("an object").remove(k);
        }
        for version in versions(1..=10) {
            assert_eq!(content_of(version, "m.room.power_levels", &content), before_v11);
        }
        let mut v11_expected = before_v11.clone();
        v11_expected["invite"] = json!(0);
        for version in [&V11, &V12] {
            assert_eq!(content_of(version, "m.room.power_levels", &content), v11_expected);
        }
    }

    #[test]
    fn aliases_content_is_protected_until_v6() {
        let content = json!({"aliases": ["#a:x"], "other": 1});
        for version in versions(1..=5) {
            assert_eq!(content_of(version, "m.room.aliases", &content), json!({"aliases": ["#a:x"]}));
        }
        assert_eq!(V5.redaction, Redaction::V1);
        for version in versions(6..=12) {
            assert_eq!(content_of(version, "m.room.aliases", &content), json!({}), "v{}", version.id);
        }
        assert_eq!((V6.redaction, V7.redaction, V8.redaction), (Redaction::V6, Redaction::V6, Redaction::V8));
    }

    #[test]
    fn history_visibility_content() {
        let content = json!({"history_visibility": "shared", "other": 1});
        for version in SUPPORTED {
            assert_eq!(
                content_of(version, "m.room.history_visibility", &content),
                json!({"history_visibility": "shared"})
            );
        }
    }

    #[test]
    fn redaction_event() {
        let content = json!({"redacts": "$t", "reason": "spam"});
        // Before v11 neither the top-level `redacts` nor a content one is kept.
        for version in versions(1..=10) {
            let r = redact(version, &full_event("m.room.redaction", content.clone()));
            assert_eq!(r["content"], json!({}));
            assert!(r.get("redacts").is_none());
        }
        for version in [&V11, &V12] {
            let r = redact(version, &full_event("m.room.redaction", content.clone()));
            assert_eq!(r["content"], json!({"redacts": "$t"}));
            assert!(r.get("redacts").is_none());
        }
    }

    #[test]
    fn protected_keys_belong_to_their_type_only() {
        let content = json!({"membership": "join", "creator": "@a:x", "join_rule": "public", "ban": 1,
            "history_visibility": "joined", "redacts": "$t", "aliases": ["#a:x"]});
        for version in SUPPORTED {
            for kind in ["m.room.message", "m.room.topic", "m.room.name", "org.example.member"] {
                assert_eq!(content_of(version, kind, &content), json!({}), "{kind} v{}", version.id);
            }
            assert_eq!(content_of(version, "m.room.member", &content), json!({"membership": "join"}));
        }
    }

    #[test]
    fn odd_shapes_do_not_panic() {
        for version in SUPPORTED {
            assert_eq!(redact(version, &json!("x")), json!({}));
            assert_eq!(redact(version, &json!(null)), json!({}));
            assert_eq!(redact(version, &json!({})), json!({"content": {}}));
            assert_eq!(
                redact(version, &json!({"type": 5, "content": {"membership": "join"}})),
                json!({"type": 5, "content": {}})
            );
            assert_eq!(
                redact(version, &json!({"type": "m.room.member", "content": [1]})),
                json!({"type": "m.room.member", "content": {}})
            );
        }
    }

    #[test]
    fn redaction_is_idempotent() {
        let content =
            json!({"membership": "invite", "third_party_invite": {"signed": {"token": "t"}, "x": 1}});
        for version in SUPPORTED {
            for kind in ["m.room.member", "m.room.join_rules", "m.room.aliases", "m.room.create"] {
                let once = redact(version, &full_event(kind, content.clone()));
                assert_eq!(redact(version, &once), once);
            }
        }
    }
}
