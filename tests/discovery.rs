//! Discovery and server facts: `/versions`, `.well-known`, capabilities,
//! the published signing key, and CORS.

mod common;

use common::{assert_error, Server, V3};
use hearth::crypto::{b64_decode, sign::verify_json};
use serde_json::Value;

#[test]
fn versions_lists_current_and_legacy_spec_versions() {
    let s = Server::start();
    let (status, body) = s.get("/_matrix/client/versions", None);
    assert_eq!(status, 200, "{body}");
    let versions: Vec<&str> = body["versions"]
        .as_array()
        .expect("versions is an array")
        .iter()
        .map(|v| v.as_str().expect("each version is a string"))
        .collect();
    assert!(versions.contains(&"v1.19"), "{versions:?}");
    assert!(versions.contains(&"r0.6.1"), "{versions:?}");
    assert!(body["unstable_features"].is_object(), "{body}");
}

#[test]
fn well_known_client_and_server() {
    let s = Server::start();
    let (status, body) = s.get("/.well-known/matrix/client", None);
    assert_eq!(status, 200, "{body}");
    // Without public_baseurl the listening address is advertised.
    assert_eq!(body["m.homeserver"]["base_url"], format!("http://127.0.0.1:{}", s.port));
    let (status, body) = s.get("/.well-known/matrix/server", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["m.server"], "localhost:8448");
}

#[test]
fn well_known_follows_configuration() {
    let s = Server::start_with(
        &[
            "--server-name",
            "example.org",
            "--public-baseurl",
            "https://matrix.example.org",
            "--well-known-server",
            "matrix.example.org:443",
        ],
        &[],
    );
    let (_, body) = s.get("/.well-known/matrix/client", None);
    assert_eq!(body["m.homeserver"]["base_url"], "https://matrix.example.org");
    let (_, body) = s.get("/.well-known/matrix/server", None);
    assert_eq!(body["m.server"], "matrix.example.org:443");
    // User IDs carry the configured server name.
    let (user_id, _, _) = s.register("dora", "pw-dora-1");
    assert_eq!(user_id, "@dora:example.org");
}

#[test]
fn capabilities_need_a_token() {
    let s = Server::start();
    assert_error(&s.get(&format!("{V3}/capabilities"), None), 401, "M_MISSING_TOKEN");
    let (_, token, _) = s.register("cap", "pw-cap-1");
    for prefix in [V3, "/_matrix/client/r0"] {
        let (status, body) = s.get(&format!("{prefix}/capabilities"), Some(&token));
        assert_eq!(status, 200, "{body}");
        let caps = &body["capabilities"];
        assert_eq!(caps["m.change_password"]["enabled"], true, "{body}");
        assert_eq!(caps["m.room_versions"]["default"], "12", "{body}");
        let available = caps["m.room_versions"]["available"].as_object().expect("available room versions");
        assert_eq!(available.get("12").and_then(Value::as_str), Some("stable"));
    }
}

/// Fetches the key document and checks it: one ed25519 key, valid in the
/// future, self-signed with a signature that verifies. Returns (key id,
/// public key).
fn checked_key_document(s: &Server, path: &str) -> (String, String) {
    let (status, doc) = s.get(path, None);
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["server_name"], "localhost");
    let keys = doc["verify_keys"].as_object().expect("verify_keys");
    assert_eq!(keys.len(), 1, "{doc}");
    let (key_id, key) = keys.iter().next().expect("one key");
    assert!(key_id.starts_with("ed25519:"), "{key_id}");
    let public_b64 = key["key"].as_str().expect("key is a string");
    let public: [u8; 32] =
        b64_decode(public_b64).expect("key is base64").try_into().expect("an ed25519 key is 32 bytes");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    let valid_until = doc["valid_until_ts"].as_i64().expect("valid_until_ts");
    assert!(valid_until > now_ms, "valid_until_ts {valid_until} is not in the future");
    assert!(
        verify_json(&doc, "localhost", key_id, &public),
        "the key document's signature does not verify: {doc}"
    );
    // A tampered document must not verify, or the check above means nothing.
    let mut tampered = doc.clone();
    tampered["valid_until_ts"] = (valid_until + 1).into();
    assert!(!verify_json(&tampered, "localhost", key_id, &public));
    (key_id.clone(), public_b64.to_owned())
}

#[test]
fn server_key_is_signed_and_survives_restart() {
    let mut s = Server::start();
    let first = checked_key_document(&s, "/_matrix/key/v2/server");
    // The deprecated form with a key ID answers with the same document.
    let by_id = checked_key_document(&s, &format!("/_matrix/key/v2/server/{}", first.0));
    assert_eq!(by_id, first);
    s.restart();
    let after = checked_key_document(&s, "/_matrix/key/v2/server");
    assert_eq!(after, first, "the signing key changed across a restart");
}

#[test]
fn cors_headers_on_every_response() {
    let s = Server::start();
    let cases: &[(&str, &str, Option<&[u8]>)] = &[
        ("GET", "/_matrix/client/versions", None),
        ("GET", "/_matrix/client/v3/no/such/thing", None),
        ("DELETE", "/_matrix/client/v3/login", None),
        ("GET", "/_matrix/client/v3/account/whoami", None),
        ("POST", "/_matrix/client/v3/login", Some(b"not json")),
    ];
    for (method, path, body) in cases {
        let r = s.raw(method, path, &[], *body);
        assert_eq!(r.header("Access-Control-Allow-Origin"), Some("*"), "{method} {path} -> {}", r.status);
        assert_eq!(r.header("Content-Type"), Some("application/json"));
    }

    let r = s.raw(
        "OPTIONS",
        "/_matrix/client/v3/login",
        &[
            ("Origin", "https://app.example"),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "Authorization, Content-Type"),
        ],
        None,
    );
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some("*"));
    let methods = r.header("Access-Control-Allow-Methods").expect("Allow-Methods");
    for m in ["GET", "POST", "PUT", "DELETE", "OPTIONS"] {
        assert!(methods.contains(m), "{methods}");
    }
    let headers = r.header("Access-Control-Allow-Headers").expect("Allow-Headers");
    for h in ["Authorization", "Content-Type", "X-Requested-With"] {
        assert!(headers.contains(h), "{headers}");
    }
    assert!(r.text.is_empty(), "a 204 has no body: {:?}", r.text);
}

/// Issue 12: the unstable flags clients gate on, each for a built feature.
/// Adding or dropping one is a decision: change this list with the feature.
#[test]
fn unstable_features_are_pinned() {
    let s = Server::start();
    let (status, body) = s.get("/_matrix/client/versions", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["unstable_features"],
        serde_json::json!({
            "org.matrix.e2e_cross_signing": true,
            "org.matrix.msc2432": true,
            "org.matrix.msc2285.stable": true,
            "org.matrix.msc3771": true,
            "org.matrix.msc3773": true,
            "org.matrix.msc3827.stable": true,
            "org.matrix.simplified_msc3575": true,
        })
    );
}

/// Issue 12: no bridged networks is an empty object, not a 404; older
/// clients' `/unstable` cross-signing uploads are served.
#[test]
fn thirdparty_protocols_and_unstable_cross_signing_routes() {
    let s = Server::start();
    let (_, token, _) = s.register("disco", "disco-password");
    let (status, body) = s.get(&format!("{V3}/thirdparty/protocols"), Some(&token));
    assert_eq!((status, body), (200, serde_json::json!({})));
    assert_error(&s.get(&format!("{V3}/thirdparty/protocols"), None), 401, "M_MISSING_TOKEN");
    // Same handler as /v3: an empty upload is a clear 400, not a 404.
    let got = s.post("/_matrix/client/unstable/keys/signatures/upload", Some(&token), serde_json::json!({}));
    assert_eq!(got.0, 200, "{}", got.1);
    let got =
        s.post("/_matrix/client/unstable/keys/device_signing/upload", Some(&token), serde_json::json!({}));
    assert_ne!(got.0, 404, "{}", got.1);
    assert!(got.1["errcode"].is_string() || got.0 == 200, "{}", got.1);
}
