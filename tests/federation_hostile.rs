//! Hostile PDUs (issue 17): the harness plays a server in a room on a
//! Hearth, signing with the real key of a second Hearth of the bed (whose
//! key document the first fetches), and sends what a broken or malicious
//! server would. Each is refused as the spec says; nothing is stored that
//! should not be; the room goes on working.

mod common;

use common::ca::TestCa;
use common::fed::{self, Peer};
use common::{create_room, enc, say, TempDir, User, V3};
use hearth::core::event;
use hearth::core::room_version::{self, RoomVersion};
use hearth::crypto::sign::ServerKey;
use serde_json::{json, Value};

const PW: &str = "federation-hostile-password";

/// The harness as a server: name and key of the second peer.
struct Mallory {
    agent: ureq::Agent,
    name: String,
    key: ServerKey,
    user: String,
    target: String,
    txn: std::cell::Cell<u32>,
}

impl Mallory {
    fn call(&self, method: &str, uri: &str, body: Option<&Value>) -> (u16, Value) {
        fed::signed(&self.agent, &self.key, &self.name, &self.target, method, uri, body)
    }

    /// A signed PDU of the room (`fields` over a template), and its ID.
    fn pdu(&self, version: &RoomVersion, fields: Value) -> (String, Value) {
        let mut pdu = json!({
            "origin": self.name,
            "origin_server_ts": common::now_ms(),
            "sender": self.user,
        });
        for (k, v) in fields.as_object().expect("fields") {
            pdu[k] = v.clone();
        }
        event::hash_and_sign(version, &self.key, &self.name, &mut pdu).expect("signing");
        (event::event_id(version, &pdu).expect("an ID"), pdu)
    }

    /// Sends PDUs in one transaction; the answer's `pdus`.
    fn send(&self, pdus: &[Value]) -> Value {
        let n = self.txn.get();
        self.txn.set(n + 1);
        let body = json!({ "origin": self.name, "origin_server_ts": common::now_ms(), "pdus": pdus });
        let (status, r) = self.call("PUT", &format!("/_matrix/federation/v1/send/m{n}"), Some(&body));
        assert_eq!(status, 200, "{r}");
        r["pdus"].clone()
    }
}

/// What `alice` gets for an event by ID.
fn event_as(p: &Peer, who: &User, room: &str, id: &str) -> (u16, Value) {
    p.server.get(&format!("{V3}/rooms/{}/event/{}", enc(room), enc(id)), Some(&who.token))
}

fn timeline_ids(p: &Peer, who: &User, room: &str) -> Vec<String> {
    let (_, r) =
        p.server.get(&format!("{V3}/rooms/{}/messages?dir=b&limit=100", enc(room)), Some(&who.token));
    r["chunk"]
        .as_array()
        .map(|c| c.iter().filter_map(|e| e["event_id"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[test]
fn hostile_pdus_are_refused_and_stored_as_the_spec_says() {
    let dir = TempDir::new();
    let ca = TestCa::new(dir.path());
    let a = Peer::start(&ca, &[], &[]);
    let b = Peer::start(&ca, &[], &[]);
    let alice = a.server.user("alice", PW);
    let room = create_room(&a.server, &alice.token, json!({ "preset": "public_chat" }));
    let version = room_version::get("12").expect("v12");
    let m = Mallory {
        agent: fed::agent(&ca),
        name: b.name.clone(),
        key: b.signing_key(),
        user: format!("@mallory:{}", b.name),
        target: a.name.clone(),
        txn: std::cell::Cell::new(0),
    };

    // Mallory joins through make_join / send_join like any server.
    let uri = format!("/_matrix/federation/v1/make_join/{}/{}?ver=12", enc(&room), enc(&m.user));
    let (status, made) = m.call("GET", &uri, None);
    assert_eq!(status, 200, "{made}");
    let mut template = made["event"].clone();
    for k in ["origin", "origin_server_ts", "sender"] {
        template.as_object_mut().unwrap().remove(k);
    }
    let (join_id, join) = m.pdu(version, template);
    let uri = format!("/_matrix/federation/v2/send_join/{}/{}", enc(&room), enc(&join_id));
    let (status, joined) = m.call("PUT", &uri, Some(&join));
    assert_eq!(status, 200, "{joined}");
    let state = joined["state"].as_array().expect("state");
    let id_of = |kind: &str, key: &str| -> String {
        let e = state.iter().find(|e| e["type"] == kind && e["state_key"] == key).expect("in state");
        event::event_id(version, e).expect("an ID")
    };
    let power = id_of("m.room.power_levels", "");
    let depth = join["depth"].as_i64().unwrap();
    let message = |body: &str, prev: &str, depth: i64| -> Value {
        json!({
            "room_id": room, "type": "m.room.message", "content": { "msgtype": "m.text", "body": body },
            "prev_events": [prev], "auth_events": [power, join_id], "depth": depth,
        })
    };

    // A good message is taken and shown.
    let (good_id, good) = m.pdu(version, message("good", &join_id, depth + 1));
    let r = m.send(&[good]);
    assert_eq!(r[&good_id], json!({}), "{r}");
    assert_eq!(event_as(&a, &alice, &room, &good_id).1["content"]["body"], "good");

    // A forged signature: refused, not stored.
    let forger = ServerKey::from_seed("ed25519:forged", &[7; 32]);
    let mut forged = json!({
        "room_id": room, "type": "m.room.message", "content": { "msgtype": "m.text", "body": "forged" },
        "prev_events": [good_id], "auth_events": [power, join_id], "depth": depth + 2,
        "origin": m.name, "origin_server_ts": common::now_ms(), "sender": m.user,
    });
    event::hash_and_sign(version, &forger, &m.name, &mut forged).unwrap();
    let forged_id = event::event_id(version, &forged).unwrap();
    let r = m.send(&[forged]);
    assert!(r[&forged_id]["error"].as_str().is_some_and(|e| e.contains("signature")), "{r}");
    assert_eq!(event_as(&a, &alice, &room, &forged_id).0, 404);

    // A wrong content hash: the redacted copy is what is kept.
    let (_, mut altered) = m.pdu(version, message("original", &good_id, depth + 2));
    altered["content"]["body"] = json!("altered in transit");
    let altered_id = event::event_id(version, &altered).unwrap();
    let r = m.send(&[altered]);
    assert_eq!(r[&altered_id], json!({}), "{r}");
    let (status, kept) = event_as(&a, &alice, &room, &altered_id);
    assert_eq!((status, &kept["content"]), (200, &json!({})), "{kept}");

    // Failing auth: Mallory makes himself admin. Rejected, invisible, and
    // the power levels stay.
    let (pl_id, pl) = m.pdu(
        version,
        json!({
            "room_id": room, "type": "m.room.power_levels", "state_key": "",
            "content": { "users": { m.user.clone(): 100 } },
            "prev_events": [altered_id], "auth_events": [power, join_id], "depth": depth + 3,
        }),
    );
    let r = m.send(&[pl]);
    assert!(r[&pl_id]["error"].as_str().is_some_and(|e| e.starts_with("rejected")), "{r}");
    assert_eq!(event_as(&a, &alice, &room, &pl_id).0, 404);
    assert!(!timeline_ids(&a, &alice, &room).contains(&pl_id));
    let (_, levels) =
        a.server.get(&format!("{V3}/rooms/{}/state/m.room.power_levels", enc(&room)), Some(&alice.token));
    assert!(levels["users"].get(&m.user).is_none(), "{levels}");
    // An event citing the rejected one as an auth event is rejected too.
    let (cites_id, cites) = m.pdu(
        version,
        json!({
            "room_id": room, "type": "m.room.message", "content": { "msgtype": "m.text", "body": "x" },
            "prev_events": [altered_id], "auth_events": [pl_id, join_id], "depth": depth + 4,
        }),
    );
    let r = m.send(&[cites]);
    assert!(r[&cites_id]["error"].as_str().is_some_and(|e| e.contains("rejected")), "{r}");

    // A replayed transaction gets the same answer and does nothing again.
    let body = json!({ "origin": m.name, "origin_server_ts": 1, "pdus": [] });
    let first = m.call("PUT", "/_matrix/federation/v1/send/m0", Some(&body));
    assert_eq!(first.0, 200);
    assert_eq!(first.1["pdus"][&good_id], json!({}), "the first answer of m0: {}", first.1);

    // Over the size limit: refused, not stored.
    let (big_id, big) = m.pdu(version, message(&"x".repeat(70_000), &altered_id, depth + 3));
    let r = m.send(&[big]);
    assert!(r[&big_id]["error"].is_string(), "{r}");
    assert_eq!(event_as(&a, &alice, &room, &big_id).0, 404);

    // Soft failure: Alice bans Mallory; a message of his citing the room
    // as it was before the ban passes the rules at its place, not against
    // the current state, so it is kept but never shown.
    let (status, r) = a.server.post(
        &format!("{V3}/rooms/{}/ban", enc(&room)),
        Some(&alice.token),
        json!({ "user_id": m.user }),
    );
    assert_eq!(status, 200, "{r}");
    let (late_id, late) = m.pdu(version, message("after the ban", &altered_id, depth + 3));
    let r = m.send(&[late]);
    assert_eq!(r[&late_id], json!({}), "soft failure is not an error to the sender: {r}");
    assert!(!timeline_ids(&a, &alice, &room).contains(&late_id));
    // The room still works for its members.
    let after = say(&a.server, &alice.token, &room, "still here");
    assert!(timeline_ids(&a, &alice, &room).contains(&after));

    // A room this server is not in, and an invite in a version it does
    // not know.
    let (stray_id, stray) = m.pdu(version, message("stray", &altered_id, 5));
    let mut stray = stray;
    stray["room_id"] = json!("!nowhere");
    let r = m.send(&[stray]);
    assert!(r.as_object().unwrap().values().all(|v| v["error"].is_string()), "{r} {stray_id}");
    let uri = format!("/_matrix/federation/v2/invite/{}/{}", enc(&room), enc("$x"));
    let (status, r) = m.call("PUT", &uri, Some(&json!({ "room_version": "999", "event": {} })));
    assert_eq!((status, r["errcode"].as_str()), (400, Some("M_INCOMPATIBLE_ROOM_VERSION")), "{r}");
    // make_join offering only versions the room is not of.
    let uri = format!("/_matrix/federation/v1/make_join/{}/{}?ver=1", enc(&room), enc(&m.user));
    let (status, r) = m.call("GET", &uri, None);
    assert_eq!(
        (status, r["errcode"].as_str(), r["room_version"].as_str()),
        (400, Some("M_INCOMPATIBLE_ROOM_VERSION"), Some("12"))
    );
    // The room's ACL denies Mallory's server (ACLs ignore ports, and both
    // servers of the bed are 127.0.0.1): his PDUs are dropped without
    // failing the transaction, and the room's endpoints refuse him.
    let path = format!("{V3}/rooms/{}/state/m.room.server_acl/", enc(&room));
    let (status, r) = a.server.put(
        &path,
        Some(&alice.token),
        json!({ "allow": ["*"], "deny": ["127.0.0.1"], "allow_ip_literals": true }),
    );
    assert_eq!(status, 200, "{r}");
    let (acl_id, acl_pdu) = m.pdu(version, message("denied", &altered_id, depth + 3));
    let r = m.send(&[acl_pdu]);
    assert!(r[&acl_id]["error"].as_str().is_some_and(|e| e.contains("ACL")), "{r}");
    assert_eq!(event_as(&a, &alice, &room, &acl_id).0, 404);
    let uri = format!("/_matrix/federation/v1/state_ids/{}?event_id={}", enc(&room), enc(&good_id));
    assert_eq!(m.call("GET", &uri, None).0, 403);
    // A user of another server than the one asking.
    let uri = format!("/_matrix/federation/v1/make_join/{}/{}?ver=12", enc(&room), enc(&alice.id));
    assert_eq!(m.call("GET", &uri, None).0, 403);
}
