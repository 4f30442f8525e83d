//! End-to-end encryption plumbing through the real server (issue 5): key
//! upload, query and claim (with a real Olm implementation, vodozemac),
//! fallback keys, to-device delivery, device-list changes in `/sync`, and
//! cross-signing.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{
    assert_error, enc, join, leave, password_auth, password_login, public_room, start_debug, woken_by,
    Server, V3,
};
use hearth::crypto::canonical::to_canonical_excluding;
use serde_json::{json, Value};
use vodozemac::olm::{Account, OlmMessage, SessionConfig};
use vodozemac::{Curve25519PublicKey, Ed25519Keypair};

const PW: &str = "e2ee-test-password";

/// One logged-in device with its own Olm account.
struct Dev {
    user_id: String,
    device_id: String,
    token: String,
    account: Account,
}

impl Dev {
    fn login(s: &Server, user: &str, device_id: &str) -> Dev {
        let mut body = password_login(user, PW);
        body["device_id"] = json!(device_id);
        body["initial_device_display_name"] = json!(format!("{user}'s {device_id}"));
        let (status, login) = s.post(&format!("{V3}/login"), None, body);
        assert_eq!(status, 200, "{login}");
        Dev {
            user_id: login["user_id"].as_str().unwrap().to_owned(),
            device_id: device_id.to_owned(),
            token: login["access_token"].as_str().unwrap().to_owned(),
            account: Account::new(),
        }
    }

    fn token(&self) -> Option<&str> {
        Some(&self.token)
    }

    /// Signs `v` in place with the device's ed25519 key.
    fn sign(&self, v: &mut Value) {
        let canonical = to_canonical_excluding(v, &["signatures", "unsigned"]).unwrap();
        let sig = self.account.sign(canonical.as_bytes()).to_base64();
        v["signatures"][&self.user_id][format!("ed25519:{}", self.device_id)] = json!(sig);
    }

    fn device_keys(&self) -> Value {
        let keys = self.account.identity_keys();
        let mut v = json!({
            "user_id": self.user_id,
            "device_id": self.device_id,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {
                format!("curve25519:{}", self.device_id): keys.curve25519.to_base64(),
                format!("ed25519:{}", self.device_id): keys.ed25519.to_base64(),
            },
            "signatures": {},
        });
        self.sign(&mut v);
        v
    }

    fn signed_key(&self, key: Curve25519PublicKey, fallback: bool) -> Value {
        let mut v = json!({ "key": key.to_base64(), "signatures": {} });
        if fallback {
            v["fallback"] = json!(true);
        }
        self.sign(&mut v);
        v
    }

    /// Generates `n` one-time keys and returns them as an upload map.
    fn one_time_keys(&mut self, n: usize) -> Value {
        self.account.generate_one_time_keys(n);
        let mut out = json!({});
        for (id, key) in self.account.one_time_keys() {
            out[format!("signed_curve25519:{}", id.to_base64())] = self.signed_key(key, false);
        }
        self.account.mark_keys_as_published();
        out
    }

    fn fallback_key(&mut self) -> Value {
        self.account.generate_fallback_key();
        let mut out = json!({});
        for (id, key) in self.account.fallback_key() {
            out[format!("signed_curve25519:{}", id.to_base64())] = self.signed_key(key, true);
        }
        self.account.mark_keys_as_published();
        out
    }

    fn upload(&self, s: &Server, body: Value) -> Value {
        let (status, r) = s.post(&format!("{V3}/keys/upload"), self.token(), body);
        assert_eq!(status, 200, "upload: {r}");
        r
    }

    fn sync(&self, s: &Server, since: Option<&str>, timeout_ms: u64) -> Value {
        let q = match since {
            Some(t) => format!("?since={t}&timeout={timeout_ms}"),
            None => String::new(),
        };
        let (status, r) = s.get(&format!("{V3}/sync{q}"), self.token());
        assert_eq!(status, 200, "sync: {r}");
        r
    }
}

/// Bob's or Alice's long-poll sync since `since`, woken by `change` once
/// the hub has parked it (well before its 20 s timeout).
fn woken_sync(s: &Server, d: &Dev, since: &str, change: impl FnOnce()) -> Value {
    woken_by(s, &d.user_id, Duration::from_secs(20), || d.sync(s, Some(since), 20000), change).0
}

fn register(s: &Server, user: &str) {
    s.register(user, PW);
}

fn query(s: &Server, d: &Dev, users: &[&str]) -> Value {
    let mut q = json!({});
    for u in users {
        q[*u] = json!([]);
    }
    let (status, r) = s.post(&format!("{V3}/keys/query"), d.token(), json!({ "device_keys": q }));
    assert_eq!(status, 200, "{r}");
    r
}

fn claim(s: &Server, d: &Dev, user: &str, device: &str) -> Value {
    let (status, r) = s.post(
        &format!("{V3}/keys/claim"),
        d.token(),
        json!({ "one_time_keys": { user: { device: "signed_curve25519" } } }),
    );
    assert_eq!(status, 200, "{r}");
    r["one_time_keys"][user][device].clone()
}

fn to_device_events(sync: &Value) -> Vec<Value> {
    sync["to_device"]["events"].as_array().cloned().unwrap_or_default()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect()).unwrap_or_default()
}

#[test]
fn olm_message_travels_through_send_to_device_and_sync() {
    let s = start_debug(&[], &[]);
    register(&s, "alice");
    register(&s, "bob");
    let mut a1 = Dev::login(&s, "alice", "ALICE1");
    let a2 = Dev::login(&s, "alice", "ALICE2");
    let b1 = Dev::login(&s, "bob", "BOB1");
    let _b2 = Dev::login(&s, "bob", "BOB2");

    let otks = a1.one_time_keys(5);
    let r = a1.upload(&s, json!({ "device_keys": a1.device_keys(), "one_time_keys": otks }));
    assert_eq!(r["one_time_key_counts"]["signed_curve25519"], 5, "{r}");
    let first = a1.sync(&s, None, 0);
    assert_eq!(first["device_one_time_keys_count"]["signed_curve25519"], 5, "{first}");

    // Bob's device finds Alice's device and its identity keys.
    let q = query(&s, &b1, &[&a1.user_id]);
    let dev = &q["device_keys"][&a1.user_id]["ALICE1"];
    assert_eq!(dev["unsigned"]["device_display_name"], "alice's ALICE1", "{q}");
    let curve = dev["keys"]["curve25519:ALICE1"].as_str().unwrap();
    let ed = dev["keys"]["ed25519:ALICE1"].as_str().unwrap();
    assert_eq!(curve, a1.account.curve25519_key().to_base64());
    assert_eq!(ed, a1.account.ed25519_key().to_base64());
    assert!(q["device_keys"][&a1.user_id].get("ALICE2").is_none(), "a device without keys is not listed");

    // Claims a one-time key and starts an Olm session with it.
    let claimed = claim(&s, &b1, &a1.user_id, "ALICE1");
    let (key_name, otk) = claimed.as_object().unwrap().iter().next().unwrap();
    assert!(key_name.starts_with("signed_curve25519:"));
    let identity = Curve25519PublicKey::from_base64(curve).unwrap();
    let one_time = Curve25519PublicKey::from_base64(otk["key"].as_str().unwrap()).unwrap();
    let bob_account = Account::new();
    let mut session =
        bob_account.create_outbound_session(SessionConfig::version_1(), identity, one_time).unwrap();
    let plaintext = json!({
        "type": "m.dummy", "content": {}, "sender": b1.user_id, "recipient": a1.user_id,
        "recipient_keys": { "ed25519": ed }, "keys": { "ed25519": bob_account.ed25519_key().to_base64() },
    })
    .to_string();
    let (msg_type, ciphertext) = session.encrypt(plaintext.as_bytes()).unwrap().to_parts();
    let content = json!({
        "algorithm": "m.olm.v1.curve25519-aes-sha2",
        "sender_key": bob_account.curve25519_key().to_base64(),
        "ciphertext": { curve: { "type": msg_type, "body": vodozemac::base64_encode(&ciphertext) } },
    });

    let since_a1 = first["next_batch"].as_str().unwrap().to_owned();
    let since_a2 = a2.sync(&s, None, 0)["next_batch"].as_str().unwrap().to_owned();
    // Alice's device is parked in a long-poll; the send wakes it.
    let woken = woken_sync(&s, &a1, &since_a1, || {
        let (status, r) = s.put(
            &format!("{V3}/sendToDevice/m.room.encrypted/txn1"),
            b1.token(),
            json!({ "messages": { &a1.user_id: { "ALICE1": content } } }),
        );
        assert_eq!(status, 200, "{r}");
    });
    let events = to_device_events(&woken);
    assert_eq!(events.len(), 1, "{woken}");
    assert_eq!(events[0]["sender"], json!(b1.user_id));
    assert_eq!(events[0]["type"], "m.room.encrypted");
    assert_eq!(woken["device_one_time_keys_count"]["signed_curve25519"], 4, "{woken}");

    // Alice's device decrypts it.
    let body = &events[0]["content"]["ciphertext"][curve];
    let bytes = vodozemac::base64_decode(body["body"].as_str().unwrap()).unwrap();
    let message = OlmMessage::from_parts(body["type"].as_u64().unwrap() as usize, &bytes).unwrap();
    let OlmMessage::PreKey(pre_key) = message else { panic!("the first message is a pre-key message") };
    let sender_key =
        Curve25519PublicKey::from_base64(events[0]["content"]["sender_key"].as_str().unwrap()).unwrap();
    let inbound =
        a1.account.create_inbound_session(SessionConfig::version_1(), sender_key, &pre_key).unwrap();
    assert_eq!(String::from_utf8(inbound.plaintext).unwrap(), plaintext);

    // Delivered exactly once: the next sync has nothing, the other device never had it.
    let next = woken["next_batch"].as_str().unwrap();
    assert!(to_device_events(&a1.sync(&s, Some(next), 0)).is_empty());
    assert!(to_device_events(&a2.sync(&s, Some(&since_a2), 0)).is_empty());
}

#[test]
fn to_device_is_idempotent_reaches_all_devices_and_is_kept_until_acknowledged() {
    let s = Server::start();
    register(&s, "alice");
    register(&s, "bob");
    let a1 = Dev::login(&s, "alice", "ALICE1");
    let a2 = Dev::login(&s, "alice", "ALICE2");
    let b1 = Dev::login(&s, "bob", "BOB1");
    let t1 = a1.sync(&s, None, 0)["next_batch"].as_str().unwrap().to_owned();
    let t2 = a2.sync(&s, None, 0)["next_batch"].as_str().unwrap().to_owned();

    let send = |txn: &str, n: i64| {
        let body =
            json!({ "messages": { &a1.user_id: { "*": { "n": n } }, "@nobody:localhost": { "X": {} } } });
        let (status, r) = s.put(&format!("{V3}/sendToDevice/org.example.ping/{txn}"), b1.token(), body);
        assert_eq!(status, 200, "{r}");
    };
    send("t1", 1);
    send("t1", 1); // the same transaction again: no second message
    send("t2", 2);

    for (dev, since) in [(&a1, &t1), (&a2, &t2)] {
        let got = dev.sync(&s, Some(since), 0);
        let ns: Vec<i64> =
            to_device_events(&got).iter().map(|e| e["content"]["n"].as_i64().unwrap()).collect();
        assert_eq!(ns, [1, 2], "{got}");
    }
    // Not yet acknowledged: a retry with the same token gets them again.
    let again = a1.sync(&s, Some(&t1), 0);
    assert_eq!(to_device_events(&again).len(), 2);
    // The next token acknowledges them: gone for good.
    let next = again["next_batch"].as_str().unwrap();
    assert!(to_device_events(&a1.sync(&s, Some(next), 0)).is_empty());
    assert!(to_device_events(&a1.sync(&s, Some(&t1), 0)).is_empty());
    // An initial sync shows what is still pending for a device.
    assert_eq!(to_device_events(&a2.sync(&s, None, 0)).len(), 2);

    // Bad sends store nothing.
    let (status, r) = s.put(
        &format!("{V3}/sendToDevice/m.x/t3"),
        b1.token(),
        json!({ "messages": { &a1.user_id: { "ALICE1": "not an object" } } }),
    );
    assert_error(&(status, r), 400, "M_BAD_JSON");
    let mut many = json!({});
    for i in 0..1001 {
        many[format!("D{i}")] = json!({});
    }
    assert_error(
        &s.put(
            &format!("{V3}/sendToDevice/m.x/t4"),
            b1.token(),
            json!({ "messages": { &a1.user_id: many } }),
        ),
        400,
        "M_INVALID_PARAM",
    );
}

#[test]
fn concurrent_claimers_never_get_the_same_key() {
    let s = Server::start();
    register(&s, "alice");
    register(&s, "bob");
    let mut a1 = Dev::login(&s, "alice", "ALICE1");
    let claimers: Vec<Dev> = (0..6).map(|i| Dev::login(&s, "bob", &format!("BOB{i}"))).collect();
    let otks = a1.one_time_keys(30);
    a1.upload(&s, json!({ "device_keys": a1.device_keys(), "one_time_keys": otks }));

    let claimed: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = claimers
            .iter()
            .map(|c| {
                let s = &s;
                let alice = a1.user_id.clone();
                scope.spawn(move || {
                    let mut got = Vec::new();
                    for _ in 0..6 {
                        let keys = claim(s, c, &alice, "ALICE1");
                        if let Some(obj) = keys.as_object() {
                            got.extend(obj.keys().cloned());
                        }
                    }
                    got
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    // 36 attempts, 30 keys, no fallback: each key exactly once.
    let distinct: HashSet<&String> = claimed.iter().collect();
    assert_eq!(claimed.len(), 30, "{claimed:?}");
    assert_eq!(distinct.len(), 30);
    assert!(claim(&s, &claimers[0], &a1.user_id, "ALICE1").is_null());
}

#[test]
fn fallback_key_is_used_when_one_time_keys_run_out() {
    let s = Server::start();
    register(&s, "alice");
    register(&s, "bob");
    let mut a1 = Dev::login(&s, "alice", "ALICE1");
    let b1 = Dev::login(&s, "bob", "BOB1");
    let otks = a1.one_time_keys(1);
    let fallback = a1.fallback_key();
    a1.upload(
        &s,
        json!({ "device_keys": a1.device_keys(), "one_time_keys": otks, "fallback_keys": fallback }),
    );
    let first = a1.sync(&s, None, 0);
    assert_eq!(strings(&first["device_unused_fallback_key_types"]), ["signed_curve25519"], "{first}");

    let one = claim(&s, &b1, &a1.user_id, "ALICE1");
    assert!(one.as_object().unwrap().values().all(|k| k.get("fallback").is_none()), "{one}");
    let fb = claim(&s, &b1, &a1.user_id, "ALICE1");
    let (name, key) = fb.as_object().unwrap().iter().next().unwrap();
    assert_eq!(key["fallback"], true, "{fb}");
    assert_eq!(fallback.as_object().unwrap().keys().next().unwrap(), name);
    // The fallback key stays available until replaced.
    assert_eq!(claim(&s, &b1, &a1.user_id, "ALICE1"), fb);

    let t = first["next_batch"].as_str().unwrap();
    let later = a1.sync(&s, Some(t), 0);
    assert!(strings(&later["device_unused_fallback_key_types"]).is_empty(), "{later}");
    assert_eq!(later["device_one_time_keys_count"]["signed_curve25519"], 0);
    // A new fallback key is unused again.
    let fresh = a1.fallback_key();
    a1.upload(&s, json!({ "fallback_keys": fresh }));
    let t = later["next_batch"].as_str().unwrap();
    assert_eq!(strings(&a1.sync(&s, Some(t), 0)["device_unused_fallback_key_types"]), ["signed_curve25519"]);
}

#[test]
fn device_list_changes_reach_room_peers_only() {
    let s = start_debug(&[], &[]);
    register(&s, "alice");
    register(&s, "bob");
    register(&s, "carol");
    let a1 = Dev::login(&s, "alice", "ALICE1");
    let b1 = Dev::login(&s, "bob", "BOB1");
    let c1 = Dev::login(&s, "carol", "CAROL1");
    let room = public_room(&s, &a1.token);
    join(&s, &b1.token, &room);
    a1.upload(&s, json!({ "device_keys": a1.device_keys() }));
    // Logging in is a device-list change of its own (`tests/sync_join.rs`);
    // here the new device exists before the tokens are taken.
    let a2 = Dev::login(&s, "alice", "ALICE2");
    let tb = b1.sync(&s, None, 0)["next_batch"].as_str().unwrap().to_owned();
    let tc = c1.sync(&s, None, 0)["next_batch"].as_str().unwrap().to_owned();

    // Alice's new device uploads keys: Bob's parked sync wakes with it.
    let woken = woken_sync(&s, &b1, &tb, || {
        a2.upload(&s, json!({ "device_keys": a2.device_keys() }));
    });
    assert_eq!(strings(&woken["device_lists"]["changed"]), [a1.user_id.as_str()], "{woken}");
    let carol = c1.sync(&s, Some(&tc), 0);
    assert!(strings(&carol["device_lists"]["changed"]).is_empty(), "{carol}");
    let (status, changes) = s.get(
        &format!("{V3}/keys/changes?from={tb}&to={}", enc(woken["next_batch"].as_str().unwrap())),
        b1.token(),
    );
    assert_eq!(status, 200, "{changes}");
    assert_eq!(strings(&changes["changed"]), [a1.user_id.as_str()]);

    // Deleting the device: a change, and its keys and messages are gone.
    let (status, r) = s.put(
        &format!("{V3}/sendToDevice/m.x/pending"),
        b1.token(),
        json!({ "messages": { &a1.user_id: { "ALICE2": { "lost": true } } } }),
    );
    assert_eq!(status, 200, "{r}");
    let tb = woken["next_batch"].as_str().unwrap().to_owned();
    let (status, first) = s.delete(&format!("{V3}/devices/ALICE2"), a1.token(), json!({}));
    assert_eq!(status, 401, "{first}");
    let auth = password_auth(&a1.user_id, PW, first["session"].as_str().unwrap());
    // Bob's parked sync wakes with the deletion.
    let after = woken_sync(&s, &b1, &tb, || {
        let (status, r) = s.delete(&format!("{V3}/devices/ALICE2"), a1.token(), json!({ "auth": auth }));
        assert_eq!(status, 200, "{r}");
    });
    assert_eq!(strings(&after["device_lists"]["changed"]), [a1.user_id.as_str()], "{after}");
    let q = query(&s, &b1, &[&a1.user_id]);
    let listed: Vec<&String> = q["device_keys"][&a1.user_id].as_object().unwrap().keys().collect();
    assert_eq!(listed, ["ALICE1"], "{q}");
    let again = Dev::login(&s, "alice", "ALICE2");
    assert!(to_device_events(&again.sync(&s, None, 0)).is_empty(), "messages died with the device");

    // Carol joins: she is new to Alice. Bob leaves: Alice stops tracking him.
    let ta = a1.sync(&s, None, 0)["next_batch"].as_str().unwrap().to_owned();
    join(&s, &c1.token, &room);
    leave(&s, &b1.token, &room);
    let seen = a1.sync(&s, Some(&ta), 0);
    assert_eq!(strings(&seen["device_lists"]["changed"]), [c1.user_id.as_str()], "{seen}");
    assert_eq!(strings(&seen["device_lists"]["left"]), [b1.user_id.as_str()], "{seen}");
}

#[test]
fn bad_key_uploads_are_refused_and_store_nothing() {
    let s = Server::start();
    register(&s, "alice");
    register(&s, "bob");
    let mut a1 = Dev::login(&s, "alice", "ALICE1");
    let b1 = Dev::login(&s, "bob", "BOB1");
    let url = format!("{V3}/keys/upload");

    let mut wrong_user = a1.device_keys();
    wrong_user["user_id"] = json!(b1.user_id);
    a1.sign(&mut wrong_user);
    assert_error(&s.post(&url, a1.token(), json!({ "device_keys": wrong_user })), 400, "M_INVALID_PARAM");
    let mut wrong_device = a1.device_keys();
    wrong_device["device_id"] = json!("OTHER");
    assert_error(&s.post(&url, a1.token(), json!({ "device_keys": wrong_device })), 400, "M_INVALID_PARAM");
    let mut tampered = a1.device_keys();
    tampered["algorithms"] = json!(["m.megolm.v1.aes-sha2"]);
    assert_error(&s.post(&url, a1.token(), json!({ "device_keys": tampered })), 400, "M_INVALID_PARAM");
    // B's device keys uploaded by A.
    assert_error(
        &s.post(&url, b1.token(), json!({ "device_keys": a1.device_keys() })),
        400,
        "M_INVALID_PARAM",
    );

    // Valid device keys with one bad one-time key: nothing at all is stored.
    let mut otks = a1.one_time_keys(3);
    let first = otks.as_object().unwrap().keys().next().unwrap().clone();
    otks[&first]["key"] = json!("AAAA");
    assert_error(
        &s.post(&url, a1.token(), json!({ "device_keys": a1.device_keys(), "one_time_keys": otks })),
        400,
        "M_INVALID_PARAM",
    );
    let q = query(&s, &b1, &[&a1.user_id]);
    assert!(q["device_keys"][&a1.user_id].as_object().unwrap().is_empty(), "{q}");

    // An unknown algorithm, and too many keys at once.
    let mut odd = a1.one_time_keys(1);
    let (name, key) = odd.as_object().unwrap().iter().next().map(|(k, v)| (k.clone(), v.clone())).unwrap();
    odd = json!({ name.replace("signed_curve25519", "rot13"): key });
    assert_error(
        &s.post(&url, a1.token(), json!({ "device_keys": a1.device_keys(), "one_time_keys": odd })),
        400,
        "M_INVALID_PARAM",
    );
    let too_many = a1.one_time_keys(201);
    assert_error(
        &s.post(&url, a1.token(), json!({ "device_keys": a1.device_keys(), "one_time_keys": too_many })),
        400,
        "M_INVALID_PARAM",
    );
    // One-time keys before any identity keys.
    let early = a1.one_time_keys(1);
    assert_error(&s.post(&url, a1.token(), json!({ "one_time_keys": early })), 400, "M_INVALID_PARAM");
    let bearer = format!("Bearer {}", a1.token);
    let r = s.raw("POST", &url, &[("Authorization", &bearer)], Some(b"{not json"));
    assert_error(&(r.status, r.json), 400, "M_NOT_JSON");

    // And a good upload still works afterwards.
    let good = a1.one_time_keys(2);
    let r = a1.upload(&s, json!({ "device_keys": a1.device_keys(), "one_time_keys": good }));
    assert_eq!(r["one_time_key_counts"]["signed_curve25519"], 2, "{r}");

    // Dehydrated devices are not served.
    assert_error(
        &s.get("/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device", a1.token()),
        404,
        "M_UNRECOGNIZED",
    );
    assert_error(&s.get(&format!("{V3}/dehydrated_device"), a1.token()), 404, "M_UNRECOGNIZED");
}

/// A cross-signing key object for `usage`, signed by `signer` if given.
fn cross_key(user_id: &str, usage: &str, key: &Ed25519Keypair, signer: Option<&Ed25519Keypair>) -> Value {
    let public = key.public_key().to_base64();
    let mut v =
        json!({ "user_id": user_id, "usage": [usage], "keys": { format!("ed25519:{public}"): public } });
    if let Some(signer) = signer {
        sign_with(&mut v, user_id, signer);
    }
    v
}

fn sign_with(v: &mut Value, user_id: &str, key: &Ed25519Keypair) {
    let canonical = to_canonical_excluding(v, &["signatures", "unsigned"]).unwrap();
    let public = key.public_key().to_base64();
    if v.get("signatures").is_none() {
        v["signatures"] = json!({});
    }
    v["signatures"][user_id][format!("ed25519:{public}")] = json!(key.sign(canonical.as_bytes()).to_base64());
}

#[test]
fn cross_signing_upload_query_and_signatures() {
    let s = Server::start();
    register(&s, "alice");
    register(&s, "bob");
    let a1 = Dev::login(&s, "alice", "ALICE1");
    let b1 = Dev::login(&s, "bob", "BOB1");
    a1.upload(&s, json!({ "device_keys": a1.device_keys() }));
    let room = public_room(&s, &a1.token);
    join(&s, &b1.token, &room);
    let alice = a1.user_id.clone();
    let bob = b1.user_id.clone();
    let url = format!("{V3}/keys/device_signing/upload");

    let (master, ssk, usk) = (Ed25519Keypair::new(), Ed25519Keypair::new(), Ed25519Keypair::new());
    let upload = json!({
        "master_key": cross_key(&alice, "master", &master, None),
        "self_signing_key": cross_key(&alice, "self_signing", &ssk, Some(&master)),
        "user_signing_key": cross_key(&alice, "user_signing", &usk, Some(&master)),
    });
    // A self-signing key not signed by the master key is refused.
    let mut unsigned_ssk = upload.clone();
    unsigned_ssk["self_signing_key"] = cross_key(&alice, "self_signing", &ssk, Some(&usk));
    assert_error(&s.post(&url, a1.token(), unsigned_ssk), 400, "M_INVALID_SIGNATURE");
    // The first upload needs no password, nor does repeating it.
    let tb = b1.sync(&s, None, 0)["next_batch"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        let (status, r) = s.post(&url, a1.token(), upload.clone());
        assert_eq!(status, 200, "{r}");
    }
    let seen = b1.sync(&s, Some(&tb), 0);
    assert_eq!(strings(&seen["device_lists"]["changed"]), [alice.as_str()], "{seen}");

    // Bob sees Alice's master and self-signing keys, not her user-signing key.
    let q = query(&s, &b1, &[&alice]);
    assert_eq!(q["master_keys"][&alice]["usage"], json!(["master"]), "{q}");
    assert_eq!(q["self_signing_keys"][&alice], upload["self_signing_key"]);
    assert!(q["user_signing_keys"].get(&alice).is_none(), "{q}");
    let own = query(&s, &a1, &[&alice]);
    assert_eq!(own["user_signing_keys"][&alice], upload["user_signing_key"]);

    // Replacing the keys needs the password.
    let master2 = Ed25519Keypair::new();
    let mut replace = json!({ "master_key": cross_key(&alice, "master", &master2, None) });
    let (status, challenge) = s.post(&url, a1.token(), replace.clone());
    assert_eq!(status, 401, "{challenge}");
    replace["auth"] = password_auth(&alice, "wrong", challenge["session"].as_str().unwrap());
    assert_eq!(s.post(&url, a1.token(), replace.clone()).0, 401);
    replace["auth"] = password_auth(&alice, PW, challenge["session"].as_str().unwrap());
    let (status, r) = s.post(&url, a1.token(), replace);
    assert_eq!(status, 200, "{r}");
    // Back to the first set (with the password again), for the signatures below.
    let mut back = upload.clone();
    let (_, challenge) = s.post(&url, a1.token(), back.clone());
    back["auth"] = password_auth(&alice, PW, challenge["session"].as_str().unwrap());
    assert_eq!(s.post(&url, a1.token(), back).0, 200);

    // Alice's self-signing key signs her device; a forged signature fails.
    let mut device = q["device_keys"][&alice]["ALICE1"].clone();
    device.as_object_mut().unwrap().remove("unsigned");
    sign_with(&mut device, &alice, &ssk);
    let mut forged = device.clone();
    let ssk_id = format!("ed25519:{}", ssk.public_key().to_base64());
    forged["signatures"][&alice][&ssk_id] = json!(usk.sign(b"something else").to_base64());
    let sig_url = format!("{V3}/keys/signatures/upload");
    let (status, r) = s.post(&sig_url, a1.token(), json!({ &alice: { "ALICE1": forged } }));
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["failures"][&alice]["ALICE1"]["errcode"], "M_INVALID_SIGNATURE", "{r}");
    let (status, r) = s.post(&sig_url, a1.token(), json!({ &alice: { "ALICE1": device } }));
    assert_eq!((status, r["failures"].as_object().map(|f| f.is_empty())), (200, Some(true)), "{r}");
    let q = query(&s, &b1, &[&alice]);
    assert!(q["device_keys"][&alice]["ALICE1"]["signatures"][&alice][&ssk_id].is_string(), "{q}");

    // Alice's user-signing key signs Bob's master key: only Alice sees it.
    let bob_master = Ed25519Keypair::new();
    let bob_upload = json!({ "master_key": cross_key(&bob, "master", &bob_master, None) });
    assert_eq!(s.post(&url, b1.token(), bob_upload).0, 200);
    let mut bobs = query(&s, &a1, &[&bob])["master_keys"][&bob].clone();
    sign_with(&mut bobs, &alice, &usk);
    let bob_key_id = bob_master.public_key().to_base64();
    let (status, r) = s.post(&sig_url, a1.token(), json!({ &bob: { &bob_key_id: bobs } }));
    assert_eq!((status, r["failures"].as_object().map(|f| f.is_empty())), (200, Some(true)), "{r}");
    let usk_id = format!("ed25519:{}", usk.public_key().to_base64());
    let by_alice = query(&s, &a1, &[&bob]);
    assert!(by_alice["master_keys"][&bob]["signatures"][&alice][&usk_id].is_string(), "{by_alice}");
    let by_bob = query(&s, &b1, &[&bob]);
    assert!(by_bob["master_keys"][&bob]["signatures"].get(&alice).is_none(), "{by_bob}");
    // An unknown key is reported, not stored.
    let (_, r) = s.post(&sig_url, a1.token(), json!({ &bob: { "NOPE": { "user_id": bob } } }));
    assert!(r["failures"][&bob]["NOPE"]["errcode"].is_string(), "{r}");
}

/// Issue 12: a UIA session opened to replace the cross-signing keys with
/// one set cannot install another.
#[test]
fn a_cross_signing_session_is_bound_to_its_keys() {
    let s = Server::start();
    register(&s, "carol");
    let c1 = Dev::login(&s, "carol", "CAROL1");
    let carol = c1.user_id.clone();
    let url = format!("{V3}/keys/device_signing/upload");
    let first = Ed25519Keypair::new();
    let master = |key: &Ed25519Keypair| json!({ "master_key": cross_key(&carol, "master", key, None) });
    assert_eq!(s.post(&url, c1.token(), master(&first)).0, 200);

    let (wanted, other) = (Ed25519Keypair::new(), Ed25519Keypair::new());
    let (status, challenge) = s.post(&url, c1.token(), master(&wanted));
    assert_eq!(status, 401, "{challenge}");
    let session = challenge["session"].as_str().unwrap();
    let mut swapped = master(&other);
    swapped["auth"] = password_auth(&carol, PW, session);
    let got = s.post(&url, c1.token(), swapped);
    assert_error(&got, 403, "M_UNKNOWN");
    let stored = || query(&s, &c1, &[&carol])["master_keys"][&carol]["keys"].clone();
    assert_eq!(stored(), master(&first)["master_key"]["keys"], "the keys must not change");

    let mut own = master(&wanted);
    own["auth"] = password_auth(&carol, PW, session);
    let (status, r) = s.post(&url, c1.token(), own);
    assert_eq!(status, 200, "{r}");
    assert_eq!(stored(), master(&wanted)["master_key"]["keys"]);
}

/// Issue 12: an upload of no keys is Element's probe for whether replacing
/// the cross-signing keys needs re-authentication: 200 with none stored,
/// 401 with the flows once they are; it never changes the keys.
#[test]
fn an_empty_cross_signing_upload_asks_whether_auth_is_needed() {
    let s = Server::start();
    register(&s, "probe");
    let d = Dev::login(&s, "probe", "PROBE1");
    let url = format!("{V3}/keys/device_signing/upload");
    let (status, r) = s.post(&url, d.token(), json!({}));
    assert_eq!((status, r), (200, json!({})));
    let me = d.user_id.clone();
    let (master, ssk, usk) = (Ed25519Keypair::new(), Ed25519Keypair::new(), Ed25519Keypair::new());
    let upload = json!({
        "master_key": cross_key(&me, "master", &master, None),
        "self_signing_key": cross_key(&me, "self_signing", &ssk, Some(&master)),
        "user_signing_key": cross_key(&me, "user_signing", &usk, Some(&master)),
    });
    assert_eq!(s.post(&url, d.token(), upload).0, 200);
    let before = query(&s, &d, &[&me]);
    let (status, r) = s.post(&url, d.token(), json!({}));
    assert_eq!(status, 401, "{r}");
    let flows: Vec<&Value> = r["flows"].as_array().expect("flows").iter().collect();
    assert!(flows.iter().any(|f| f["stages"] == json!(["m.login.password"])), "a password-only flow: {r}");
    assert!(r["session"].is_string(), "{r}");
    assert_eq!(query(&s, &d, &[&me])["master_keys"], before["master_keys"]);
}
