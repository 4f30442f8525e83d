//! The cross-server test bed works: a real Synapse (tests/common/synapse.rs,
//! contrib/interop/) starts under the test CA (tests/common/ca.rs), named
//! by its IP literal; it serves a key document signed with the key its
//! script wrote, names the pinned Synapse version, and registers users;
//! and two of them federate over HTTPS with certificates of the test CA,
//! which proves Synapse's outbound TLS (OpenSSL) accepts those
//! certificates as the harness's rustls client does.

mod common;

use common::ca::TestCa;
use common::synapse::{pinned_version, Synapse};
use common::{enc, now_ms, TempDir, V3};
use hearth::crypto::sign::{parse_seed, verify_json, ServerKey};
use serde_json::json;

/// The key ID and public key (unpadded base64) of the signing key
/// synapse.sh wrote: `ed25519 KEY_ID SEED`.
fn written_key(synapse: &Synapse) -> (String, String) {
    let text = std::fs::read_to_string(synapse.dir().join("signing.key")).expect("signing.key");
    let fields: Vec<&str> = text.split_whitespace().collect();
    assert_eq!((fields.len(), fields[0]), (3, "ed25519"), "signing.key: {text}");
    let seed = parse_seed(fields[2]).expect("a 32-byte seed");
    let key_id = format!("ed25519:{}", fields[1]);
    let public = ServerKey::from_seed(&key_id, &seed).public_key_b64();
    (key_id, public)
}

/// Whether one line of `synapse`'s log contains all of `parts`.
fn logged(synapse: &Synapse, parts: &[String]) -> bool {
    synapse.log_text().lines().any(|line| parts.iter().all(|p| line.contains(p.as_str())))
}

#[test]
fn synapse_serves_its_signed_keys_its_version_and_registers_users() {
    let tmp = TempDir::new();
    let ca = TestCa::new(tmp.path());
    let synapse = Synapse::start(&ca);
    eprintln!("Synapse answered {:?} after spawning", synapse.startup);
    let name = synapse.server_name().to_owned();
    assert_eq!(name, format!("127.0.0.1:{}", synapse.port()));

    let (status, version) = synapse.get("/_matrix/federation/v1/version", None);
    assert_eq!(status, 200, "version: {version}");
    assert_eq!(version["server"]["name"], "Synapse", "version: {version}");
    assert_eq!(version["server"]["version"], json!(pinned_version()), "version: {version}");

    // The key document: this server's name, the one key synapse.sh wrote,
    // signed with it, valid for a while yet.
    let (status, keys) = synapse.get("/_matrix/key/v2/server", None);
    assert_eq!(status, 200, "keys: {keys}");
    assert_eq!(keys["server_name"], json!(name), "keys: {keys}");
    let (key_id, public) = written_key(&synapse);
    let verify_keys = keys["verify_keys"].as_object().expect("verify_keys");
    assert_eq!(verify_keys.len(), 1, "keys: {keys}");
    assert_eq!(verify_keys[&key_id]["key"], json!(public), "keys: {keys}");
    assert!(keys["valid_until_ts"].as_i64().expect("valid_until_ts") > now_ms(), "keys: {keys}");
    assert!(keys["signatures"][&name][&key_id].is_string(), "keys: {keys}");
    let public: [u8; 32] =
        hearth::crypto::b64_decode(&public).expect("base64").try_into().expect("a 32-byte public key");
    assert!(verify_json(&keys, &name, &key_id, &public), "Synapse's signature does not verify: {keys}");
    let mut forged = keys.clone();
    forged["valid_until_ts"] = json!(keys["valid_until_ts"].as_i64().unwrap() + 1);
    assert!(!verify_json(&forged, &name, &key_id, &public), "a changed document still verifies");

    let (user_id, token) = synapse.register("alice", "interop-password");
    assert_eq!(user_id, format!("@alice:{name}"));
    let (status, me) = synapse.get(&format!("{V3}/account/whoami"), Some(&token));
    assert_eq!(status, 200, "whoami: {me}");
    assert_eq!(me["user_id"], json!(user_id), "whoami: {me}");
    assert!(me["device_id"].as_str().is_some_and(|d| !d.is_empty()), "whoami: {me}");
    let (status, anonymous) = synapse.get(&format!("{V3}/account/whoami"), None);
    assert_eq!((status, anonymous["errcode"].as_str()), (401, Some("M_MISSING_TOKEN")), "{anonymous}");
}

#[test]
fn two_synapses_federate_under_the_test_ca() {
    let tmp = TempDir::new();
    let ca = TestCa::new(tmp.path());
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| Synapse::start(&ca));
        let b = s.spawn(|| Synapse::start(&ca));
        (a.join().expect("starting Synapse A"), b.join().expect("starting Synapse B"))
    });
    eprintln!("two Synapses answered after {:?} and {:?}", a.startup, b.startup);

    let (bob, bob_token) = b.register("bob", "interop-password");
    let path = format!("{V3}/profile/{}/displayname", enc(&bob));
    let (status, body) = b.put(&path, Some(&bob_token), json!({ "displayname": "Bob of B" }));
    assert_eq!(status, 200, "setting bob's name: {body}");

    // A asks B (HTTPS to B, B's certificate checked against the CA by
    // its IP SAN); B checks A's request signature with A's key, which it
    // fetches from A (HTTPS the other way).
    let (_, alice_token) = a.register("alice", "interop-password");
    let (status, profile) = a.get(&format!("{V3}/profile/{}", enc(&bob)), Some(&alice_token));
    assert_eq!(
        status,
        200,
        "A's view of bob's profile: {profile}\nA's log ends:\n{}\nB's log ends:\n{}",
        a.log_tail(30),
        b.log_tail(30)
    );
    assert_eq!(profile["displayname"], "Bob of B", "{profile}");
    // B authenticated the request as A's, with A's key fetched from A.
    let key_fetch = [
        "Completed request: 200 OK".to_owned(),
        format!("GET matrix-federation://{}/_matrix/key/v2/server", a.server_name()),
    ];
    assert!(logged(&b, &key_fetch), "B did not fetch A's key from A; B's log ends:\n{}", b.log_tail(30));
    let query = [
        format!("{{{}}} Processed request", a.server_name()),
        "200 \"GET /_matrix/federation/v1/query/profile".into(),
    ];
    assert!(logged(&b, &query), "B did not answer A's signed query; B's log ends:\n{}", b.log_tail(30));
}
