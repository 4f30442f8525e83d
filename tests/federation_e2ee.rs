//! End-to-end encryption across two Hearth servers on the test bed
//! (issue 18): device-list updates (`m.device_list_update`) reaching the
//! other server's `device_lists.changed` and `/keys/query`, a gap in them
//! healed by a resync, to-device messages through the servers delivered
//! once even when a transaction is retried, and an Olm/Megolm
//! conversation (vodozemac) between users of the two servers, both ways.

mod common;
mod e2ee_client;

use std::time::{Duration, Instant};

use common::ca::TestCa;
use common::fed::{agent, signed, Peer};
use common::{create_room, enc, TempDir, User};
use e2ee_client::{
    cross_key, receive_encrypted, receive_room_key, send_encrypted, share_room_key, to_device_events, Dev,
    CROSS_WAIT, V3,
};
use serde_json::{json, Value};

const PW: &str = "federation-e2ee-password";

/// Two servers, alice on A in a room she made, bob on B joined to it.
struct Bed {
    _dir: TempDir,
    ca: TestCa,
    a: Peer,
    b: Peer,
    alice: User,
    bob: User,
    room: String,
}

fn bed() -> Bed {
    bed_with(|_, _| {})
}

/// [`bed`], with `before_join` run for bob before he joins.
fn bed_with(before_join: impl FnOnce(&Peer, &User)) -> Bed {
    let dir = TempDir::new();
    let ca = TestCa::new(dir.path());
    let a = Peer::start(&ca, &[], &[]);
    let b = Peer::start(&ca, &[], &[]);
    let alice = a.server.user("alice", PW);
    let bob = b.server.user("bob", PW);
    before_join(&b, &bob);
    let room = create_room(&a.server, &alice.token, json!({ "preset": "public_chat" }));
    let path = format!("{V3}/join/{}?via={}", enc(&room), enc(&a.name));
    let (status, r) = b.server.post(&path, Some(&bob.token), json!({}));
    assert_eq!(status, 200, "{r}");
    common::wait_until(&a.server, "bob's join reaches a", || {
        let (_, r) = a.server.get(&format!("{V3}/rooms/{}/joined_members", enc(&room)), Some(&alice.token));
        r["joined"].get(&bob.id).is_some()
    });
    Bed { _dir: dir, ca, a, b, alice, bob, room }
}

fn login(p: &Peer, user: &str, device_id: &str) -> Dev {
    let mut body = common::password_login(user, PW);
    body["device_id"] = json!(device_id);
    let (status, r) = p.server.post(&format!("{V3}/login"), None, body);
    assert_eq!(status, 200, "{r}");
    Dev::of_token(&p.server, r["access_token"].as_str().unwrap())
}

fn wait(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + CROSS_WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {CROSS_WAIT:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The device IDs `/keys/query` on `p` gives for `user`.
fn queried_devices(p: &Peer, who: &Dev, user: &str) -> Vec<String> {
    let (status, r) =
        p.server.post(&format!("{V3}/keys/query"), Some(&who.token), json!({ "device_keys": { user: [] } }));
    assert_eq!(status, 200, "{r}");
    r["device_keys"][user].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
}

/// A's cache of a remote user: `(stream_id, stale, updated_ts, device IDs)`.
fn cached(p: &Peer, user: &str) -> Option<(i64, bool, i64, Vec<String>)> {
    let conn = rusqlite::Connection::open(p.server.db()).unwrap();
    let row: Option<(i64, i64, i64)> = conn
        .query_row(
            "SELECT stream_id, stale, updated_ts FROM remote_device_lists WHERE user_id = ?1",
            [user],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .ok();
    let (stream_id, stale, ts) = row?;
    let mut st =
        conn.prepare("SELECT device_id FROM remote_devices WHERE user_id = ?1 ORDER BY device_id").unwrap();
    let devices = st.query_map([user], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    Some((stream_id, stale != 0, ts, devices))
}

fn changed(sync: &Value) -> Vec<String> {
    sync["device_lists"]["changed"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// A transaction signed as B (the harness holds B's key) with `edus`.
fn send_as(bed: &Bed, txn_id: &str, edus: Value) -> (u16, Value) {
    let body = json!({ "origin": bed.b.name, "origin_server_ts": 1, "pdus": [], "edus": edus });
    let uri = format!("/_matrix/federation/v1/send/{txn_id}");
    signed(&agent(&bed.ca), &bed.b.signing_key(), &bed.b.name, &bed.a.name, "PUT", &uri, Some(&body))
}

#[test]
fn a_new_remote_device_reaches_device_lists_and_keys_query() {
    let bed = bed();
    let mut alice = Dev::of_token(&bed.a.server, &bed.alice.token);
    alice.sync(&bed.a.server, 0);
    let mut bob1 = Dev::of_token(&bed.b.server, &bed.bob.token);
    bob1.upload_keys(&bed.b.server, 5);
    // The first update is of a user A has not cached: a resync fetches the list.
    wait("bob's list is cached on a", || cached(&bed.a, &bed.bob.id).is_some_and(|c| !c.1 && c.3.len() == 1));
    alice.sync(&bed.a.server, 0);

    // A new device of bob's, with keys: alice's sync hears of it, her
    // /keys/query (from the cache) lists it.
    let mut bob2 = login(&bed.b, "bob", "BOBTWO");
    bob2.upload_keys(&bed.b.server, 5);
    alice.sync_until(&bed.a.server, "bob in device_lists.changed", |r| {
        changed(r).contains(&bed.bob.id).then_some(())
    });
    wait("the new device is cached", || {
        cached(&bed.a, &bed.bob.id).is_some_and(|c| c.3.contains(&"BOBTWO".into()))
    });
    let mut got = queried_devices(&bed.a, &alice, &bed.bob.id);
    got.sort();
    let mut want = vec![bob1.device_id.clone(), "BOBTWO".to_owned()];
    want.sort();
    assert_eq!(got, want);
    let (stream_id, stale, _, _) = cached(&bed.a, &bed.bob.id).unwrap();
    assert!(!stale);
    assert_eq!(stream_id, 2, "one update per device with keys");

    // The device deleted: gone from the cache too.
    let (status, r) = bed.b.server.post(&format!("{V3}/logout"), Some(&bob2.token), json!({}));
    assert_eq!(status, 200, "{r}");
    wait("the deleted device leaves the cache", || {
        cached(&bed.a, &bed.bob.id).is_some_and(|c| !c.3.contains(&"BOBTWO".into()))
    });
    assert_eq!(queried_devices(&bed.a, &alice, &bed.bob.id), [bob1.device_id.clone()]);

    // Bob leaves the only room they share: alice's sync says to stop
    // tracking him.
    alice.sync(&bed.a.server, 0);
    let (status, r) =
        bed.b.server.post(&format!("{V3}/rooms/{}/leave", enc(&bed.room)), Some(&bob1.token), json!({}));
    assert_eq!(status, 200, "{r}");
    alice.sync_until(&bed.a.server, "bob in device_lists.left", |r| {
        r["device_lists"]["left"].as_array().is_some_and(|l| l.contains(&json!(bed.bob.id))).then_some(())
    });
}

#[test]
fn a_gap_in_device_list_updates_is_healed_by_a_resync() {
    let bed = bed();
    let alice = Dev::of_token(&bed.a.server, &bed.alice.token);
    let mut bob1 = Dev::of_token(&bed.b.server, &bed.bob.token);
    bob1.upload_keys(&bed.b.server, 1);
    wait("bob's list is cached on a", || cached(&bed.a, &bed.bob.id).is_some_and(|c| !c.1 && c.3.len() == 1));
    let (stream_id, ..) = cached(&bed.a, &bed.bob.id).unwrap();
    let fake_keys =
        |device: &str| json!({ "user_id": bed.bob.id, "device_id": device, "algorithms": [], "keys": {} });

    // An update that follows what A has is applied (and shows it is the
    // cache /keys/query answers from).
    let update = json!({ "edu_type": "m.device_list_update", "content": {
        "user_id": bed.bob.id, "device_id": "INORDER", "stream_id": stream_id + 1, "prev_id": [stream_id],
        "keys": fake_keys("INORDER"),
    }});
    assert_eq!(send_as(&bed, "t1", json!([update])).0, 200);
    wait("the update is applied", || {
        cached(&bed.a, &bed.bob.id).is_some_and(|c| c.3.contains(&"INORDER".into()))
    });
    assert!(queried_devices(&bed.a, &alice, &bed.bob.id).contains(&"INORDER".into()));

    // An update whose prev_id A never saw: a gap. A resyncs from B, whose
    // list has neither made-up device.
    let before = hearth::storage::now_ms();
    let gap = json!({ "edu_type": "m.device_list_update", "content": {
        "user_id": bed.bob.id, "device_id": "AFTERGAP", "stream_id": 1000, "prev_id": [999],
        "keys": fake_keys("AFTERGAP"),
    }});
    assert_eq!(send_as(&bed, "t2", json!([gap])).0, 200);
    wait("the resync replaces the cache", || {
        cached(&bed.a, &bed.bob.id).is_some_and(|c| !c.1 && c.2 >= before)
    });
    let (stream_id_after, _, _, devices) = cached(&bed.a, &bed.bob.id).unwrap();
    assert_eq!(devices, [bob1.device_id.clone()], "the list matches B's");
    assert_eq!(stream_id_after, stream_id, "B's own stream position");
    assert_eq!(queried_devices(&bed.a, &alice, &bed.bob.id), [bob1.device_id.clone()]);

    // An update about a user of another server is refused.
    let forged = json!({ "edu_type": "m.device_list_update", "content": {
        "user_id": bed.alice.id, "device_id": "X", "stream_id": 5, "prev_id": [], "keys": {},
    }});
    assert_eq!(send_as(&bed, "t3", json!([forged])).0, 200);
}

#[test]
fn to_device_across_servers_is_delivered_once() {
    let bed = bed();
    let mut alice1 = Dev::of_token(&bed.a.server, &bed.alice.token);
    let mut alice2 = login(&bed.a, "alice", "ALICETWO");
    alice1.sync(&bed.a.server, 0);
    alice2.sync(&bed.a.server, 0);
    let bob = Dev::of_token(&bed.b.server, &bed.bob.token);

    // Through B's /sendToDevice to all of alice's devices.
    let body = json!({ "messages": { &bed.alice.id: { "*": { "hello": "all" } } } });
    let (status, r) =
        bed.b.server.put(&format!("{V3}/sendToDevice/m.test/t1"), Some(&bob.token), body.clone());
    assert_eq!(status, 200, "{r}");
    // The same transaction again sends nothing more.
    let (status, _) = bed.b.server.put(&format!("{V3}/sendToDevice/m.test/t1"), Some(&bob.token), body);
    assert_eq!(status, 200);
    for dev in [&mut alice1, &mut alice2] {
        let got = dev.sync_until(&bed.a.server, "the to-device message arrives", |r| {
            let events = to_device_events(r);
            (!events.is_empty()).then_some(events)
        });
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0]["sender"], bed.bob.id.as_str());
        assert_eq!(got[0]["type"], "m.test");
        assert_eq!(got[0]["content"], json!({ "hello": "all" }));
    }

    // A transaction signed as B, sent twice, then its EDU again in another
    // transaction: delivered once.
    let edu = json!({ "edu_type": "m.direct_to_device", "content": {
        "sender": bed.bob.id, "type": "m.test", "message_id": "m-once",
        "messages": { &bed.alice.id: { &alice1.device_id: { "n": 1 } } },
    }});
    for txn in ["r1", "r1", "r2"] {
        assert_eq!(send_as(&bed, txn, json!([edu])).0, 200);
    }
    // One the origin may not send (the sender is not B's user).
    let forged = json!({ "edu_type": "m.direct_to_device", "content": {
        "sender": bed.alice.id, "type": "m.test", "message_id": "m-forged",
        "messages": { &bed.alice.id: { &alice1.device_id: { "n": 2 } } },
    }});
    assert_eq!(send_as(&bed, "r3", json!([forged])).0, 200);
    let marker = json!({ "edu_type": "m.direct_to_device", "content": {
        "sender": bed.bob.id, "type": "m.test", "message_id": "m-last",
        "messages": { &bed.alice.id: { &alice1.device_id: { "n": 3 } } },
    }});
    assert_eq!(send_as(&bed, "r4", json!([marker])).0, 200);
    let mut seen = Vec::new();
    alice1.sync_until(&bed.a.server, "the marker arrives", |r| {
        seen.extend(to_device_events(r).into_iter().map(|e| e["content"]["n"].clone()));
        seen.contains(&json!(3)).then_some(())
    });
    assert_eq!(seen, [json!(1), json!(3)]);
}

#[test]
fn an_encrypted_conversation_across_servers_both_ways() {
    let bed = bed();
    let (a, b) = (&bed.a.server, &bed.b.server);
    let mut alice = Dev::of_token(a, &bed.alice.token);
    let mut bob = Dev::of_token(b, &bed.bob.token);
    alice.upload_keys(a, 5);
    bob.upload_keys(b, 5);
    alice.sync(a, 0);
    bob.sync(b, 0);

    // A to B: alice claims a key of bob's device on B, shares a Megolm
    // session over to-device, and sends an encrypted message.
    let mut out = share_room_key(a, &alice, &bed.bob.id, &bob.device_id, &bed.room, "k1");
    let mut inbound = receive_room_key(b, &mut bob, &bed.alice.id, &bed.room);
    send_encrypted(a, &alice, &mut out, &bed.room, "secret from A", "m1");
    assert_eq!(receive_encrypted(b, &mut bob, &mut inbound, &bed.alice.id, &bed.room), "secret from A");

    // B to A.
    let mut out = share_room_key(b, &bob, &bed.alice.id, &alice.device_id, &bed.room, "k2");
    let mut inbound = receive_room_key(a, &mut alice, &bed.bob.id, &bed.room);
    send_encrypted(b, &bob, &mut out, &bed.room, "secret from B", "m2");
    assert_eq!(receive_encrypted(a, &mut alice, &mut inbound, &bed.bob.id, &bed.room), "secret from B");
}

#[test]
fn cross_signing_keys_reach_the_other_server() {
    let bed = bed();
    let alice = Dev::of_token(&bed.a.server, &bed.alice.token);
    let mut bob1 = Dev::of_token(&bed.b.server, &bed.bob.token);
    bob1.upload_keys(&bed.b.server, 1);
    wait("bob's list is cached on a", || cached(&bed.a, &bed.bob.id).is_some_and(|c| !c.1 && c.3.len() == 1));

    let (master, ssk) = (vodozemac::Ed25519Keypair::new(), vodozemac::Ed25519Keypair::new());
    let upload = json!({
        "master_key": cross_key(&bed.bob.id, "master", &master, None),
        "self_signing_key": cross_key(&bed.bob.id, "self_signing", &ssk, Some(&master)),
    });
    let (status, r) =
        bed.b.server.post(&format!("{V3}/keys/device_signing/upload"), Some(&bob1.token), upload);
    assert_eq!(status, 200, "{r}");
    let cached_master = || {
        let conn = rusqlite::Connection::open(bed.a.server.db()).unwrap();
        conn.query_row("SELECT master_key FROM remote_device_lists WHERE user_id = ?1", [&bed.bob.id], |r| {
            r.get::<_, Option<String>>(0)
        })
        .ok()
        .flatten()
    };
    wait("the signing key update reaches a", || cached_master().is_some());
    let (status, q) = bed.a.server.post(
        &format!("{V3}/keys/query"),
        Some(&alice.token),
        json!({ "device_keys": { &bed.bob.id: [] } }),
    );
    assert_eq!(status, 200, "{q}");
    let public = master.public_key().to_base64();
    assert_eq!(q["master_keys"][&bed.bob.id]["keys"][format!("ed25519:{public}")], public.as_str(), "{q}");
    let ssk_public = ssk.public_key().to_base64();
    assert_eq!(
        q["self_signing_keys"][&bed.bob.id]["keys"][format!("ed25519:{ssk_public}")],
        ssk_public.as_str()
    );
}

#[test]
fn a_device_list_left_stale_is_resynced_after_a_restart() {
    let mut bed = bed();
    let mut bob1 = Dev::of_token(&bed.b.server, &bed.bob.token);
    bob1.upload_keys(&bed.b.server, 1);
    wait("bob's list is cached on a", || cached(&bed.a, &bed.bob.id).is_some_and(|c| !c.1 && c.3.len() == 1));

    // B is down: the gap marks the list stale and the resync fails.
    bed.b.server.terminate();
    let gap = json!({ "edu_type": "m.device_list_update", "content": {
        "user_id": bed.bob.id, "device_id": "AFTERGAP", "stream_id": 1000, "prev_id": [999],
    }});
    assert_eq!(send_as(&bed, "g1", json!([gap])).0, 200);
    wait("the list is stale", || cached(&bed.a, &bed.bob.id).is_some_and(|c| c.1));

    // Both back: A resyncs what it left stale when it starts.
    bed.b.server.restart();
    bed.a.server.restart();
    wait("the stale list is resynced", || cached(&bed.a, &bed.bob.id).is_some_and(|c| !c.1));
    assert_eq!(cached(&bed.a, &bed.bob.id).unwrap().3, [bob1.device_id.clone()]);
}

#[test]
fn a_followed_user_first_asked_live_is_then_answered_from_the_cache() {
    // Bob's keys are uploaded before he shares a room with anyone on A:
    // no update ever reaches A.
    let bed = bed_with(|b, bob| Dev::of_token(&b.server, &bob.token).upload_keys(&b.server, 1));
    let alice = Dev::of_token(&bed.a.server, &bed.alice.token);
    assert!(cached(&bed.a, &bed.bob.id).is_none());
    let bob_device = Dev::of_token(&bed.b.server, &bed.bob.token).device_id;
    assert_eq!(queried_devices(&bed.a, &alice, &bed.bob.id), std::slice::from_ref(&bob_device), "asked live");
    wait("the query's resync fills the cache", || cached(&bed.a, &bed.bob.id).is_some_and(|c| !c.1));
    assert_eq!(cached(&bed.a, &bed.bob.id).unwrap().3, [bob_device]);
}
