//! Hearth against the reference server (issue 15): a real Synapse from
//! PyPI (tests/common/synapse.rs) and a Hearth on the same bed (IP-literal
//! names, one throwaway CA), in both directions. Synapse is the ground
//! truth: each test names which side asks and which answers.

mod common;

use common::ca::TestCa;
use common::fed::{self, Peer};
use common::synapse::Synapse;
use common::{enc, wait_until, TempDir};
use serde_json::{json, Value};

fn bed() -> (TempDir, TestCa) {
    let dir = TempDir::new();
    let ca = TestCa::new(dir.path());
    (dir, ca)
}

fn verifies(doc: &Value, server: &str, key: &hearth::crypto::sign::ServerKey) -> bool {
    hearth::crypto::sign::verify_json(doc, server, key.key_id(), &key.public_key())
}

/// Synapse → Hearth: Synapse's notary fetches Hearth's key document from
/// Hearth over HTTPS (checking the certificate for the IP literal and the
/// document's self-signature) and vouches for it.
#[test]
fn synapse_fetches_and_vouches_for_hearths_keys() {
    let (_dir, ca) = bed();
    let hearth = Peer::start(&ca, &[], &[]);
    let synapse = Synapse::start(&ca);
    let agent = fed::agent(&ca);
    let key = hearth.signing_key();
    let wanted = json!({ key.key_id(): { "minimum_valid_until_ts": common::now_ms() } });
    let query = json!({ "server_keys": { hearth.name.clone(): wanted } });
    let (status, answer) =
        fed::call(&agent, "POST", synapse.server_name(), "/_matrix/key/v2/query", &[], Some(&query));
    assert_eq!(status, 200, "{answer}\n{}", synapse.log_tail(40));
    let docs = answer["server_keys"].as_array().expect("server_keys");
    let doc = docs
        .iter()
        .find(|d| d["server_name"] == hearth.name)
        .unwrap_or_else(|| panic!("Synapse holds no keys of Hearth: {answer}\n{}", synapse.log_tail(40)));
    assert_eq!(doc["verify_keys"][key.key_id()]["key"], key.public_key_b64());
    assert!(verifies(doc, &hearth.name, &key), "Hearth's own signature, kept by Synapse: {doc}");
    assert!(doc["signatures"].get(synapse.server_name()).is_some(), "Synapse's signature: {doc}");
}

/// Hearth → Synapse: Hearth's notary fetches Synapse's key document and
/// vouches for it with Synapse's signature kept.
#[test]
fn hearth_fetches_and_vouches_for_synapses_keys() {
    let (_dir, ca) = bed();
    let hearth = Peer::start(&ca, &[], &[]);
    let synapse = Synapse::start(&ca);
    let agent = fed::agent(&ca);
    let (status, own) = fed::call(&agent, "GET", synapse.server_name(), "/_matrix/key/v2/server", &[], None);
    assert_eq!(status, 200);
    let uri = format!("/_matrix/key/v2/query/{}", enc(synapse.server_name()));
    let (status, answer) = fed::call(&agent, "GET", &hearth.name, &uri, &[], None);
    assert_eq!(status, 200, "{answer}\n{}", hearth.server.log_text());
    let doc = &answer["server_keys"][0];
    assert_eq!(doc["server_name"], synapse.server_name(), "{answer}\n{}", hearth.server.log_text());
    assert_eq!(doc["verify_keys"], own["verify_keys"]);
    assert_eq!(doc["signatures"][synapse.server_name()], own["signatures"][synapse.server_name()]);
    assert!(verifies(doc, &hearth.name, &hearth.signing_key()), "{doc}");
    // Synapse's own document verifies with the key it lists.
    let (key_id, key) = own["verify_keys"].as_object().unwrap().iter().next().unwrap();
    let public = hearth::crypto::b64_decode(key["key"].as_str().unwrap()).unwrap();
    assert!(hearth::crypto::sign::verify_json(
        doc,
        synapse.server_name(),
        key_id,
        &public.try_into().unwrap()
    ));
}

/// Hearth → Synapse: Hearth's sender delivers a transaction to Synapse,
/// which authenticates Hearth's X-Matrix signature (fetching Hearth's key)
/// and acknowledges it.
#[test]
fn synapse_accepts_hearths_signed_transactions() {
    let (_dir, ca) = bed();
    let mut hearth = Peer::start(&ca, &[], &[]);
    let synapse = Synapse::start(&ca);
    hearth.server.terminate();
    {
        let db = hearth::storage::Db::open(&hearth.server.db()).expect("db");
        db.write(|tx| {
            let edu =
                json!({ "edu_type": "org.example.interop", "content": { "hello": "synapse" } }).to_string();
            hearth::storage::federation::queue(
                tx,
                synapse.server_name(),
                hearth::storage::federation::Unit::Edu,
                &edu,
                1,
            )?;
            Ok(())
        })
        .expect("queueing");
    }
    hearth.server.restart();
    let outbox = || {
        let conn = rusqlite::Connection::open(hearth.server.db()).unwrap();
        conn.query_row("SELECT count(*) FROM federation_outbox", [], |r| r.get::<_, i64>(0)).unwrap()
    };
    wait_until(&hearth.server, "Synapse acknowledges Hearth's transaction", || outbox() == 0);
    // Synapse logs the authenticated request as coming from Hearth.
    let name = hearth.name.clone();
    let seen = || {
        synapse.log_text().lines().any(|l| l.contains("/_matrix/federation/v1/send/") && l.contains(&name))
    };
    wait_until(&hearth.server, "Synapse's log shows Hearth's transaction", seen);
    assert!(!hearth.server.log_text().contains("refused transaction"), "{}", hearth.server.log_text());
}

/// Synapse → Hearth: Hearth authenticates requests Synapse signs (the
/// harness asks Synapse's client API for something only Hearth knows:
/// Hearth's version over federation is unsigned, so this asks Synapse to
/// resolve Hearth's keys for a signed request it then makes).
#[test]
fn hearth_accepts_synapses_signatures_and_refuses_forged_ones() {
    let (_dir, ca) = bed();
    let hearth = Peer::start(&ca, &[], &[]);
    let synapse = Synapse::start(&ca);
    let agent = fed::agent(&ca);
    // A request signed with Synapse's real key (from its key file), as
    // Synapse itself would sign it: Hearth fetches Synapse's key from
    // Synapse and verifies.
    let text = std::fs::read_to_string(synapse.dir().join("signing.key")).expect("signing.key");
    let fields: Vec<&str> = text.split_whitespace().collect();
    let seed = hearth::crypto::sign::parse_seed(fields[2]).expect("seed");
    let key = hearth::crypto::sign::ServerKey::from_seed(&format!("ed25519:{}", fields[1]), &seed);
    let body = json!({ "origin": synapse.server_name(), "origin_server_ts": 1, "pdus": [], "edus": [] });
    let uri = "/_matrix/federation/v1/send/interop1";
    let (status, answer) =
        fed::signed(&agent, &key, synapse.server_name(), &hearth.name, "PUT", uri, Some(&body));
    assert_eq!(status, 200, "{answer}\n{}", hearth.server.log_text());
    // The same origin with another key under that ID: refused.
    let forged = hearth::crypto::sign::ServerKey::from_seed(key.key_id(), &[5; 32]);
    let (status, answer) = fed::signed(
        &agent,
        &forged,
        synapse.server_name(),
        &hearth.name,
        "PUT",
        "/_matrix/federation/v1/send/2",
        Some(&body),
    );
    assert_eq!((status, answer["errcode"].as_str()), (401, Some("M_UNAUTHORIZED")), "{answer}");
}
