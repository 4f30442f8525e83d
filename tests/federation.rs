//! Federation between two Hearth servers on loopback (issue 15): IP-literal
//! server names, HTTPS with a throwaway CA, only `outbound_allow_private`
//! and `outbound_ca_file` set. Keys and the notary, request
//! authentication (forged, missing, misaddressed signatures), and the
//! sender's transactions, backoff and restart safety.

mod common;

use common::ca::TestCa;
use common::fed::{self, Peer};
use common::{wait_until, TempDir};
use serde_json::{json, Value};

fn bed() -> (TempDir, TestCa) {
    let dir = TempDir::new();
    let ca = TestCa::new(dir.path());
    (dir, ca)
}

/// The key document of `peer`, fetched over HTTPS.
fn key_doc(agent: &ureq::Agent, peer: &Peer) -> Value {
    let (status, doc) = fed::call(agent, "GET", &peer.name, "/_matrix/key/v2/server", &[], None);
    assert_eq!(status, 200, "{doc}");
    doc
}

fn verifies(doc: &Value, server: &str, key: &hearth::crypto::sign::ServerKey) -> bool {
    hearth::crypto::sign::verify_json(doc, server, key.key_id(), &key.public_key())
}

#[test]
fn key_documents_rotation_and_the_notary() {
    let (_dir, ca) = bed();
    let mut a = Peer::start(&ca, &[], &[]);
    let b = Peer::start(&ca, &[], &[]);
    let agent = fed::agent(&ca);

    let first = a.signing_key();
    let doc = key_doc(&agent, &a);
    assert_eq!(doc["server_name"], a.name);
    assert_eq!(doc["verify_keys"][first.key_id()]["key"], first.public_key_b64());
    assert_eq!(doc["old_verify_keys"], json!({}));
    let valid_until = doc["valid_until_ts"].as_i64().expect("valid_until_ts");
    assert!(valid_until > common::now_ms() + 6 * 86_400_000, "valid for about a week: {valid_until}");
    assert!(verifies(&doc, &a.name, &first));

    // Rotation: a new key; the old one listed with when it expired.
    a.server.terminate();
    let (code, out, err) = a.server.hearth(&["key", "rotate"], "");
    assert_eq!(code, 0, "{out}{err}");
    a.server.restart();
    let second = a.signing_key();
    assert_ne!(second.key_id(), first.key_id());
    let doc = key_doc(&agent, &a);
    assert_eq!(doc["verify_keys"][second.key_id()]["key"], second.public_key_b64());
    assert!(doc["verify_keys"].get(first.key_id()).is_none());
    let old = &doc["old_verify_keys"][first.key_id()];
    assert_eq!(old["key"], first.public_key_b64());
    assert!(old["expired_ts"].as_i64().is_some_and(|t| t <= common::now_ms()), "{old}");
    assert!(verifies(&doc, &a.name, &second));

    // B as a notary for A: it fetches A's keys and answers with A's
    // signature kept and its own added, by POST and by GET.
    let query =
        json!({ "server_keys": { a.name.clone(): { second.key_id(): { "minimum_valid_until_ts": 0 } } } });
    let (status, answer) = fed::call(&agent, "POST", &b.name, "/_matrix/key/v2/query", &[], Some(&query));
    assert_eq!(status, 200, "{answer}");
    let docs = answer["server_keys"].as_array().expect("server_keys");
    let doc = docs.iter().find(|d| d["verify_keys"].get(second.key_id()).is_some()).expect("A's current key");
    assert_eq!(doc["server_name"], a.name);
    assert!(verifies(doc, &a.name, &second), "A's signature is kept");
    assert!(verifies(doc, &b.name, &b.signing_key()), "B signs what it vouches for");
    let uri = format!("/_matrix/key/v2/query/{}", common::enc(&a.name));
    let (status, answer) = fed::call(&agent, "GET", &b.name, &uri, &[], None);
    assert_eq!(status, 200, "{answer}");
    assert!(answer["server_keys"].as_array().is_some_and(|d| !d.is_empty()), "{answer}");
    // Its own keys, too.
    let uri = format!("/_matrix/key/v2/query/{}", common::enc(&b.name));
    let (_, answer) = fed::call(&agent, "GET", &b.name, &uri, &[], None);
    assert_eq!(answer["server_keys"][0]["server_name"], b.name);
    // Malformed queries are the client's mistake.
    let (status, answer) = fed::call(&agent, "POST", &b.name, "/_matrix/key/v2/query", &[], Some(&json!({})));
    assert_eq!((status, answer["errcode"].as_str()), (400, Some("M_BAD_JSON")));
}

#[test]
fn requests_must_carry_a_valid_signature_for_this_server() {
    let (_dir, ca) = bed();
    let a = Peer::start(&ca, &[], &[]);
    let b = Peer::start(&ca, &[], &[]);
    let agent = fed::agent(&ca);
    let key = a.signing_key();
    let body = json!({ "origin": a.name, "origin_server_ts": 1, "pdus": [], "edus": [] });
    let uri = "/_matrix/federation/v1/send/t1";

    // Signed by A with its real key: accepted (B fetches A's key).
    let (status, answer) = fed::signed(&agent, &key, &a.name, &b.name, "PUT", uri, Some(&body));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, json!({ "pdus": {} }));

    let unauthorized = |got: (u16, Value), what: &str| {
        assert_eq!(got.0, 401, "{what}: {}", got.1);
        assert_eq!(got.1["errcode"], "M_UNAUTHORIZED", "{what}: {}", got.1);
        assert!(got.1["error"].is_string(), "{what}");
    };
    // No header at all, or another scheme.
    unauthorized(fed::call(&agent, "PUT", &b.name, uri, &[], Some(&body)), "missing");
    unauthorized(fed::call(&agent, "PUT", &b.name, uri, &["Bearer x".into()], Some(&body)), "bearer");
    // A forged signature: another key under A's key ID.
    let forged = hearth::crypto::sign::ServerKey::from_seed(key.key_id(), &[9; 32]);
    unauthorized(fed::signed(&agent, &forged, &a.name, &b.name, "PUT", uri, Some(&body)), "forged");
    // A key ID A does not have.
    let unknown = hearth::crypto::sign::ServerKey::from_seed("ed25519:nope", &[9; 32]);
    unauthorized(fed::signed(&agent, &unknown, &a.name, &b.name, "PUT", uri, Some(&body)), "unknown key");
    // Signed for another destination.
    let auth = hearth::federation::xmatrix::authorization(
        &key,
        &a.name,
        "elsewhere.example",
        "PUT",
        uri,
        Some(&body),
    )
    .unwrap();
    unauthorized(fed::call(&agent, "PUT", &b.name, uri, &[auth], Some(&body)), "destination");
    // The signed body differs from the one sent.
    let auth =
        hearth::federation::xmatrix::authorization(&key, &a.name, &b.name, "PUT", uri, Some(&json!({})))
            .unwrap();
    unauthorized(fed::call(&agent, "PUT", &b.name, uri, &[auth], Some(&body)), "body changed");
    // Malformed headers.
    unauthorized(
        fed::call(&agent, "PUT", &b.name, uri, &["X-Matrix origin=\"a".into()], Some(&body)),
        "syntax",
    );
    // The origin must be a server that answers for its keys.
    unauthorized(
        fed::signed(&agent, &key, "127.0.0.1:1", &b.name, "PUT", uri, Some(&body)),
        "unreachable origin",
    );

    // The plain listener serves federation too (for a TLS proxy on 8448).
    let auth = hearth::federation::xmatrix::authorization(
        &key,
        &a.name,
        &b.name,
        "PUT",
        "/_matrix/federation/v1/send/t2",
        Some(&body),
    )
    .unwrap();
    let r = b.server.raw(
        "PUT",
        "/_matrix/federation/v1/send/t2",
        &[("Authorization", &auth), ("Content-Type", "application/json")],
        Some(body.to_string().as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let (status, v) = b.server.get("/_matrix/federation/v1/version", None);
    assert_eq!((status, v["server"]["name"].as_str()), (200, Some("Hearth")));
}

#[test]
fn transactions_are_idempotent_and_bounded() {
    let (_dir, ca) = bed();
    let a = Peer::start(&ca, &[], &[]);
    let b = Peer::start(&ca, &[], &[]);
    let agent = fed::agent(&ca);
    let key = a.signing_key();
    let send = |txn: &str, body: &Value| {
        fed::signed(
            &agent,
            &key,
            &a.name,
            &b.name,
            "PUT",
            &format!("/_matrix/federation/v1/send/{txn}"),
            Some(body),
        )
    };
    let pdu = json!({ "type": "m.room.message", "room_id": "!r:x", "sender": "@u:x", "content": {},
                      "event_id": "$e1:x", "origin_server_ts": 1, "depth": 1, "prev_events": [], "auth_events": [] });
    let body = json!({ "origin": a.name, "origin_server_ts": 1, "pdus": [pdu], "edus": [] });
    let (status, first) = send("once", &body);
    assert_eq!(status, 200, "{first}");
    assert!(first["pdus"]["$e1:x"]["error"].is_string(), "{first}");
    // The same transaction again gets the same answer.
    let (status, again) = send("once", &json!({ "origin": a.name, "pdus": [], "edus": [] }));
    assert_eq!((status, &again), (200, &first));
    // Past the limits.
    let many = json!({ "origin": a.name, "pdus": vec![json!({}); 51], "edus": [] });
    let (status, e) = send("many-pdus", &many);
    assert_eq!((status, e["errcode"].as_str()), (400, Some("M_BAD_JSON")), "{e}");
    let many =
        json!({ "origin": a.name, "pdus": [], "edus": vec![json!({"edu_type": "x", "content": {}}); 101] });
    let (status, e) = send("many-edus", &many);
    assert_eq!((status, e["errcode"].as_str()), (400, Some("M_BAD_JSON")), "{e}");
    // Wrong types and a forged origin field.
    let (status, _) = send("bad", &json!({ "origin": a.name, "pdus": "x" }));
    assert_eq!(status, 400);
    let (status, _) = send("bad2", &json!({ "origin": "evil.example", "pdus": [] }));
    assert_eq!(status, 400);
    // A transaction larger than a client body, within the federation limit.
    let big = json!({ "origin": a.name, "pdus": [], "edus": [{ "edu_type": "x", "content": { "pad": "x".repeat(1_200_000) } }] });
    let (status, e) = send("big", &big);
    assert_eq!(status, 200, "{e}");
}

/// Queues `n` synthetic EDUs for `destination` in a stopped server's
/// database, as a part-3 EDU would be.
fn queue_edus(db: &std::path::Path, destination: &str, n: usize) {
    let db = hearth::storage::Db::open(db).expect("opening the database");
    db.write(|tx| {
        for i in 0..n {
            let edu = json!({ "edu_type": "org.example.test", "content": { "i": i } }).to_string();
            hearth::storage::federation::queue(
                tx,
                destination,
                hearth::storage::federation::Unit::Edu,
                &edu,
                1,
            )?;
        }
        Ok(())
    })
    .expect("queueing");
}

fn outbox_len(db: &std::path::Path) -> i64 {
    let conn = rusqlite::Connection::open(db).expect("db");
    conn.query_row("SELECT count(*) FROM federation_outbox", [], |r| r.get(0)).expect("count")
}

fn received(db: &std::path::Path, origin: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).expect("db");
    let mut st =
        conn.prepare("SELECT txn_id FROM federation_txns_in WHERE origin = ?1 ORDER BY received_ts").unwrap();
    st.query_map([origin], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}

#[test]
fn the_sender_delivers_in_bounded_transactions_across_restarts_and_outages() {
    let (_dir, ca) = bed();
    let mut a = Peer::start(&ca, &[], &[]);
    let mut b = Peer::start(&ca, &[], &[]);
    // 250 EDUs queued while A is down: three transactions of at most 100.
    a.server.terminate();
    queue_edus(&a.server.db(), &b.name, 250);
    a.server.restart();
    wait_until(&a.server, "A's outbox drains to B", || outbox_len(&a.server.db()) == 0);
    let txns = received(&b.server.db(), &a.name);
    assert_eq!(txns.len(), 3, "{txns:?}");

    // B is down: A keeps the transaction and backs off, then B is back and
    // gets it.
    b.server.terminate();
    a.server.terminate();
    queue_edus(&a.server.db(), &b.name, 5);
    a.server.restart();
    wait_until(&a.server, "A fails to reach B", || a.server.log_text().contains("failed, kept for a retry"));
    assert_eq!(outbox_len(&a.server.db()), 5, "nothing lost while B is down");
    // A restart of A in the middle keeps the same transaction ID.
    let pending_id = {
        let conn = rusqlite::Connection::open(a.server.db()).unwrap();
        conn.query_row("SELECT DISTINCT txn_id FROM federation_outbox", [], |r| r.get::<_, String>(0))
            .unwrap()
    };
    a.server.restart();
    b.server.restart();
    wait_until(&a.server, "A reaches B again", || outbox_len(&a.server.db()) == 0);
    let txns = received(&b.server.db(), &a.name);
    assert_eq!(txns.len(), 4, "{txns:?}");
    assert_eq!(txns.last(), Some(&pending_id), "the same transaction, not a new one");
}

#[test]
fn the_allowlist_and_the_off_switch() {
    let (_dir, ca) = bed();
    let a = Peer::start(&ca, &[], &[]);
    let b = Peer::start(&ca, &["--federation-domain-allowlist", "friends.example"], &[]);
    let off = Peer::start(&ca, &["--federation", "false"], &[]);
    let agent = fed::agent(&ca);
    let key = a.signing_key();
    let body = json!({ "origin": a.name, "pdus": [] });
    let (status, e) =
        fed::signed(&agent, &key, &a.name, &b.name, "PUT", "/_matrix/federation/v1/send/1", Some(&body));
    assert_eq!((status, e["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "{e}");
    let (status, e) = fed::call(&agent, "GET", &off.name, "/_matrix/federation/v1/version", &[], None);
    assert_eq!((status, e["errcode"].as_str()), (404, Some("M_UNRECOGNIZED")), "{e}");
    let (status, _) = fed::call(&agent, "GET", &off.name, "/_matrix/key/v2/server", &[], None);
    assert_eq!(status, 404);
}

#[test]
fn private_addresses_are_refused_by_default() {
    let (_dir, ca) = bed();
    let a = Peer::start(&ca, &[], &[]);
    let dir = TempDir::new();
    let (cert, key) = ca.issue(dir.path(), "127.0.0.1");
    let port = fed::free_port();
    let name = format!("127.0.0.1:{port}");
    // Without outbound_allow_private, B may not reach A at 127.0.0.1.
    let b = common::Server::start_with(
        &[
            "--server-name",
            &name,
            "--tls-listen",
            &name,
            "--tls-cert",
            &cert.display().to_string(),
            "--tls-key",
            &key.display().to_string(),
            "--outbound-ca-file",
            &ca.pem_path().display().to_string(),
        ],
        &[],
    );
    let agent = fed::agent(&ca);
    let body = json!({ "origin": a.name, "pdus": [] });
    let got = fed::signed(
        &agent,
        &a.signing_key(),
        &a.name,
        &name,
        "PUT",
        "/_matrix/federation/v1/send/1",
        Some(&body),
    );
    assert_eq!(got.0, 401, "B could not fetch A's key: {}", got.1);
    assert!(
        b.log_text().contains("public address") || got.1["error"].as_str().is_some_and(|e| e.contains("key")),
        "{}",
        b.log_text()
    );
}

/// A key the origin cannot give (it is down) comes from a configured
/// notary, which must have signed it and must hold the origin's own
/// signature.
#[test]
fn keys_of_a_server_that_is_down_come_from_a_trusted_notary() {
    let (_dir, ca) = bed();
    let mut a = Peer::start(&ca, &[], &[]);
    let notary = Peer::start(&ca, &[], &[]);
    let b = Peer::start(&ca, &["--trusted-key-servers", &notary.name], &[]);
    let agent = fed::agent(&ca);
    let key = a.signing_key();
    // The notary learns A's keys while A is up.
    let uri = format!("/_matrix/key/v2/query/{}", common::enc(&a.name));
    let (status, _) = fed::call(&agent, "GET", &notary.name, &uri, &[], None);
    assert_eq!(status, 200);
    a.server.terminate();
    // B has never seen A; A is down; the notary vouches for its key.
    let body = json!({ "origin": a.name, "pdus": [] });
    let (status, e) =
        fed::signed(&agent, &key, &a.name, &b.name, "PUT", "/_matrix/federation/v1/send/n1", Some(&body));
    assert_eq!(status, 200, "{e}\n{}", b.server.log_text());
    // The key is now cached at B, with A's own document.
    let conn = rusqlite::Connection::open(b.server.db()).unwrap();
    let doc: String = conn
        .query_row("SELECT doc FROM remote_server_keys WHERE server_name = ?1", [&a.name], |r| r.get(0))
        .expect("A's key cached at B");
    let doc: Value = serde_json::from_str(&doc).unwrap();
    assert!(verifies(&doc, &a.name, &key));
    // Without a notary, a server that is down and unknown cannot be verified.
    let c = Peer::start(&ca, &[], &[]);
    let (status, _) =
        fed::signed(&agent, &key, &a.name, &c.name, "PUT", "/_matrix/federation/v1/send/n2", Some(&body));
    assert_eq!(status, 401);
}

/// Other servers are rate limited per origin server, not per IP: one that
/// floods gets 429 `M_LIMIT_EXCEEDED`, another on the same address does not.
#[test]
fn rate_limits_are_per_origin_server() {
    let (_dir, ca) = bed();
    let a = Peer::start(&ca, &[], &[]);
    let c = Peer::start(&ca, &[], &[]);
    // The default client limits (the harness raises them for other tests):
    // servers then get the federation defaults.
    let b =
        Peer::start(&ca, &[], &[("HEARTH_RATE_LIMIT_PER_SECOND", "0.5"), ("HEARTH_RATE_LIMIT_BURST", "10")]);
    b.server.register("bob", "pw-bob-1");
    let agent = fed::agent(&ca);
    let uri = format!(
        "/_matrix/federation/v1/query/profile?user_id={}",
        common::enc("@bob:") + &common::enc(&b.name)
    );
    let key = a.signing_key();
    let mut limited = None;
    for _ in 0..200 {
        let got = fed::signed(&agent, &key, &a.name, &b.name, "GET", &uri, None);
        if got.0 == 429 {
            limited = Some(got.1);
            break;
        }
        assert_eq!(got.0, 200, "{}", got.1);
    }
    let e = limited.expect("A is held to its rate");
    assert_eq!(e["errcode"], "M_LIMIT_EXCEEDED");
    assert!(e["retry_after_ms"].as_u64().is_some(), "{e}");
    let got = fed::signed(&agent, &c.signing_key(), &c.name, &b.name, "GET", &uri, None);
    assert_eq!(got.0, 200, "C, from the same address, is not: {}", got.1);
}
