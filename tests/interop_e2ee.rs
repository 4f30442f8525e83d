//! End-to-end encryption across servers against the reference server
//! (issue 18): a real Synapse (tests/common/synapse.rs) and a Hearth on
//! the same bed, their users in one room. A new device on either side is
//! seen in the other's `device_lists.changed` and `/keys/query` (and a
//! deleted one leaves it), cross-signing keys cross both ways, to-device
//! messages for all of a user's devices (`*`) reach them, and an
//! Olm/Megolm conversation (vodozemac) goes both ways.

mod common;
mod e2ee_client;

use common::ca::TestCa;
use common::fed::Peer;
use common::synapse::Synapse;
use common::{create_room, enc, TempDir, V3};
use e2ee_client::{
    queried_master, receive_encrypted, receive_room_key, send_encrypted, share_room_key,
    upload_cross_signing, Dev, Homeserver, CROSS_WAIT,
};
use serde_json::{json, Value};

const PW: &str = "interop-e2ee-password";

impl Homeserver for Synapse {
    fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> (u16, Value) {
        Synapse::call(self, method, path, token, body)
    }
}

fn login(hs: &dyn Homeserver, user: &str, device_id: &str) -> Dev {
    let body = json!({
        "type": "m.login.password", "identifier": { "type": "m.id.user", "user": user },
        "password": PW, "device_id": device_id,
    });
    let (status, r) = hs.call("POST", &format!("{V3}/login"), None, Some(&body));
    assert_eq!(status, 200, "{r}");
    Dev::of_token(hs, r["access_token"].as_str().unwrap())
}

fn changed(sync: &Value) -> Vec<String> {
    sync["device_lists"]["changed"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Waits until `who`'s `/keys/query` on `hs` lists `device` of `user`.
fn wait_for_device(hs: &dyn Homeserver, who: &Dev, user: &str, device: &str) {
    let deadline = std::time::Instant::now() + CROSS_WAIT;
    while who.query_device(hs, user, device).is_none() {
        assert!(std::time::Instant::now() < deadline, "{user}'s {device} not in /keys/query");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn encrypted_conversation_and_device_lists_between_hearth_and_synapse() {
    let dir = TempDir::new();
    let ca = TestCa::new(dir.path());
    let hearth = Peer::start(&ca, &[], &[]);
    let synapse = Synapse::start(&ca);
    let (h, s) = (&hearth.server, &synapse);
    let hal_user = h.user("hal", PW);
    let (sam_id, sam_token) = synapse.register("sam", PW);
    let room = create_room(h, &hal_user.token, json!({ "preset": "public_chat" }));
    let (status, r) = synapse.post(
        &format!("{V3}/join/{}?server_name={}", enc(&room), enc(&hearth.name)),
        Some(&sam_token),
        json!({}),
    );
    assert_eq!(status, 200, "{r}\n{}", synapse.log_tail(60));
    common::wait_until(h, "sam's join reaches Hearth", || {
        let (_, r) = h.get(&format!("{V3}/rooms/{}/joined_members", enc(&room)), Some(&hal_user.token));
        r["joined"].get(&sam_id).is_some()
    });

    let mut hal = Dev::of_token(h, &hal_user.token);
    let mut sam = Dev::of_token(s, &sam_token);
    hal.upload_keys(h, 5);
    sam.upload_keys(s, 5);
    hal.sync(h, 0);
    sam.sync(s, 0);

    // Hearth to Synapse.
    let mut out = share_room_key(h, &hal, &sam_id, &sam.device_id, &room, "k1");
    let mut inbound = receive_room_key(s, &mut sam, &hal_user.id, &room);
    send_encrypted(h, &hal, &mut out, &room, "secret from Hearth", "m1");
    assert_eq!(receive_encrypted(s, &mut sam, &mut inbound, &hal_user.id, &room), "secret from Hearth");

    // Synapse to Hearth.
    let mut out = share_room_key(s, &sam, &hal_user.id, &hal.device_id, &room, "k2");
    let mut inbound = receive_room_key(h, &mut hal, &sam_id, &room);
    send_encrypted(s, &sam, &mut out, &room, "secret from Synapse", "m2");
    assert_eq!(receive_encrypted(h, &mut hal, &mut inbound, &sam_id, &room), "secret from Synapse");

    // A new device on Synapse: Hearth's sync and /keys/query see it.
    let mut sam2 = login(s, "sam", "SAMTWO");
    sam2.upload_keys(s, 1);
    hal.sync_until(h, "sam in Hearth's device_lists.changed", |r| changed(r).contains(&sam_id).then_some(()));
    wait_for_device(h, &hal, &sam_id, "SAMTWO");
    // From Hearth's cache, filled by Synapse's updates (and a resync).
    let conn = rusqlite::Connection::open(h.db()).unwrap();
    let (stale, devices): (i64, i64) = conn
        .query_row(
            "SELECT stale, (SELECT count(*) FROM remote_devices d WHERE d.user_id = l.user_id)
             FROM remote_device_lists l WHERE user_id = ?1",
            [&sam_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("sam's devices are cached on Hearth");
    assert_eq!((stale, devices), (0, 2));
    // Synapse's updates follow on from the first resync (its stream_id may
    // be past the last update it sent): Hearth fetched sam's list once.
    let fetches = synapse
        .log_text()
        .matches(&format!("GET /_matrix/federation/v1/user/devices/{}", enc(&sam_id)))
        .count();
    assert_eq!(fetches, 1, "Hearth resynced sam's devices {fetches} times");

    // A new device on Hearth: Synapse's sync and /keys/query see it.
    let mut hal2 = login(h, "hal", "HALTWO");
    hal2.upload_keys(h, 1);
    sam.sync_until(s, "hal in Synapse's device_lists.changed", |r| {
        changed(r).contains(&hal_user.id).then_some(())
    });
    wait_for_device(s, &sam, &hal_user.id, "HALTWO");

    // Cross-signing keys, both ways (m.signing_key_update).
    let (hal_master, _) = upload_cross_signing(h, &hal);
    let (sam_master, _) = upload_cross_signing(s, &sam);
    let deadline = std::time::Instant::now() + CROSS_WAIT;
    while queried_master(s, &sam, &hal_user.id).as_deref() != Some(hal_master.as_str())
        || queried_master(h, &hal, &sam_id).as_deref() != Some(sam_master.as_str())
    {
        assert!(std::time::Instant::now() < deadline, "the master keys do not cross");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let master_cached: Option<String> = conn
        .query_row("SELECT master_key FROM remote_device_lists WHERE user_id = ?1", [&sam_id], |r| r.get(0))
        .unwrap();
    assert!(
        master_cached.is_some_and(|k| k.contains(&sam_master)),
        "Hearth caches Synapse's signing key update"
    );

    // A deleted device on Hearth leaves Synapse's /keys/query.
    let (status, r) = h.post(&format!("{V3}/logout"), Some(&hal2.token), json!({}));
    assert_eq!(status, 200, "{r}");
    let deadline = std::time::Instant::now() + CROSS_WAIT;
    while sam.query_device(s, &hal_user.id, "HALTWO").is_some() {
        assert!(std::time::Instant::now() < deadline, "HALTWO still listed on Synapse");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // To-device to all devices of the other side's user, both ways.
    to_all_devices(h, &hal, s, &mut sam, "all1");
    to_all_devices(s, &sam2, h, &mut hal, "all2");
}

/// `from` sends a to-device message to every device of `to`'s user; `to`
/// receives it.
fn to_all_devices(from_hs: &dyn Homeserver, from: &Dev, to_hs: &dyn Homeserver, to: &mut Dev, txn: &str) {
    let body = json!({ "messages": { &to.user_id: { "*": { "to": "everyone", "txn": txn } } } });
    let (status, r) =
        from_hs.call("PUT", &format!("{V3}/sendToDevice/m.test/{txn}"), Some(&from.token), Some(&body));
    assert_eq!(status, 200, "{r}");
    let got = to.sync_until(to_hs, "the to-device message for all devices arrives", |r| {
        e2ee_client::to_device_events(r)
            .into_iter()
            .find(|e| e["type"] == "m.test" && e["content"]["txn"] == txn)
    });
    assert_eq!(got["sender"], from.user_id.as_str());
}
