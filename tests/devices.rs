//! Device management: list, get, rename, and delete (one or many) behind
//! user-interactive authentication.

mod common;

use common::{assert_error, password_auth, password_login, Server, V3};
use serde_json::{json, Value};

const PW: &str = "device-test-password";

/// Logs in on a chosen device; returns its access token.
fn login_on(s: &Server, user: &str, device_id: &str, name: &str) -> String {
    let mut body = password_login(user, PW);
    body["device_id"] = json!(device_id);
    body["initial_device_display_name"] = json!(name);
    let (status, login) = s.post(&format!("{V3}/login"), None, body);
    assert_eq!(status, 200, "{login}");
    login["access_token"].as_str().expect("token").to_owned()
}

fn device_ids(s: &Server, token: &str) -> Vec<String> {
    let (status, list) = s.get(&format!("{V3}/devices"), Some(token));
    assert_eq!(status, 200, "{list}");
    let mut ids: Vec<String> = list["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| d["device_id"].as_str().expect("device_id").to_owned())
        .collect();
    ids.sort();
    ids
}

fn whoami_status(s: &Server, token: &str) -> (u16, Value) {
    s.get(&format!("{V3}/account/whoami"), Some(token))
}

#[test]
fn list_get_and_rename() {
    let s = Server::start();
    s.register("alice", PW);
    let phone = login_on(&s, "alice", "PHONE", "Phone");
    login_on(&s, "alice", "LAPTOP", "Laptop");
    let (_, bob, bob_device) = s.register("bob", PW);

    let ids = device_ids(&s, &phone);
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(ids.contains(&"PHONE".to_owned()) && ids.contains(&"LAPTOP".to_owned()));
    assert!(!ids.contains(&bob_device), "another user's device is listed");

    let (status, dev) = s.get(&format!("{V3}/devices/PHONE"), Some(&phone));
    assert_eq!(status, 200, "{dev}");
    assert_eq!(dev["device_id"], "PHONE");
    assert_eq!(dev["display_name"], "Phone");
    // The device was used just now, from loopback.
    assert!(dev["last_seen_ts"].as_i64().is_some_and(|ts| ts > 0), "{dev}");
    assert_eq!(dev["last_seen_ip"], "127.0.0.1", "{dev}");

    assert_error(&s.get(&format!("{V3}/devices/NOSUCH"), Some(&phone)), 404, "M_NOT_FOUND");
    // Another user's device is as unknown as a missing one.
    assert_error(&s.get(&format!("{V3}/devices/{bob_device}"), Some(&phone)), 404, "M_NOT_FOUND");
    assert_error(&s.get(&format!("{V3}/devices"), None), 401, "M_MISSING_TOKEN");

    let (status, body) =
        s.put(&format!("{V3}/devices/LAPTOP"), Some(&phone), json!({ "display_name": "Work laptop" }));
    assert_eq!((status, body), (200, json!({})));
    let (_, dev) = s.get(&format!("{V3}/devices/LAPTOP"), Some(&phone));
    assert_eq!(dev["display_name"], "Work laptop");

    assert_error(
        &s.put(&format!("{V3}/devices/NOSUCH"), Some(&phone), json!({ "display_name": "x" })),
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.put(&format!("{V3}/devices/{bob_device}"), Some(&phone), json!({ "display_name": "pwned" })),
        404,
        "M_NOT_FOUND",
    );
    let (_, dev) = s.get(&format!("{V3}/devices/{bob_device}"), Some(&bob));
    assert_ne!(dev["display_name"], "pwned");
    assert_error(
        &s.put(&format!("{V3}/devices/LAPTOP"), Some(&phone), json!({ "display_name": "x".repeat(600) })),
        400,
        "M_INVALID_PARAM",
    );
}

#[test]
fn delete_one_device_with_uia() {
    let s = Server::start();
    let (user_id, main, main_device) = s.register("carol", PW);
    let old = login_on(&s, "carol", "OLDPHONE", "Old phone");

    let path = format!("{V3}/devices/OLDPHONE");
    let (status, uia) = s.delete(&path, Some(&main), json!({}));
    assert_eq!(status, 401, "{uia}");
    assert_eq!(uia["flows"], json!([{ "stages": ["m.login.password"] }]));
    let session = uia["session"].as_str().expect("session").to_owned();
    // Still there after the challenge.
    assert_eq!(whoami_status(&s, &old).0, 200);

    let got = s.delete(&path, Some(&main), json!({ "auth": password_auth(&user_id, "wrong", &session) }));
    assert_eq!(got.0, 401, "{}", got.1);
    assert_eq!(got.1["errcode"], "M_FORBIDDEN");
    assert_eq!(whoami_status(&s, &old).0, 200);

    let (status, body) =
        s.delete(&path, Some(&main), json!({ "auth": password_auth(&user_id, PW, &session) }));
    assert_eq!((status, body), (200, json!({})));
    assert_eq!(device_ids(&s, &main), [main_device]);
    let got = whoami_status(&s, &old);
    assert_error(&got, 401, "M_UNKNOWN_TOKEN");

    // Deleting it again: it is gone.
    assert_error(&s.delete(&path, Some(&main), json!({})), 404, "M_NOT_FOUND");
}

#[test]
fn delete_one_device_without_a_body_starts_uia() {
    let s = Server::start();
    let (_, main, _) = s.register("dora", PW);
    login_on(&s, "dora", "TABLET", "Tablet");
    let auth = format!("Bearer {main}");
    let r = s.raw("DELETE", &format!("{V3}/devices/TABLET"), &[("Authorization", &auth)], None);
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(r.json["session"].is_string(), "{}", r.text);
}

#[test]
fn delete_many_devices_with_uia() {
    let s = Server::start();
    let (user_id, main, main_device) = s.register("erin", PW);
    let a = login_on(&s, "erin", "DEV_A", "A");
    let b = login_on(&s, "erin", "DEV_B", "B");
    let c = login_on(&s, "erin", "DEV_C", "C");
    let (_, frank, frank_device) = s.register("frank", PW);

    let path = format!("{V3}/delete_devices");
    // Frank's device named in Erin's request must not be touched.
    let devices = json!(["DEV_A", "DEV_B", "NOT_THERE", frank_device]);
    let (status, uia) = s.post(&path, Some(&main), json!({ "devices": devices }));
    assert_eq!(status, 401, "{uia}");
    assert_eq!(uia["flows"], json!([{ "stages": ["m.login.password"] }]));
    let session = uia["session"].as_str().expect("session").to_owned();

    let (status, body) = s.post(
        &path,
        Some(&main),
        json!({ "devices": devices, "auth": password_auth(&user_id, PW, &session) }),
    );
    assert_eq!((status, body), (200, json!({})));

    let mut left = vec![main_device, "DEV_C".to_owned()];
    left.sort();
    assert_eq!(device_ids(&s, &main), left);
    for t in [&a, &b] {
        assert_error(&whoami_status(&s, t), 401, "M_UNKNOWN_TOKEN");
    }
    assert_eq!(whoami_status(&s, &c).0, 200);
    assert_eq!(whoami_status(&s, &frank).0, 200);

    assert_error(&s.post(&path, Some(&main), json!({})), 400, "M_BAD_JSON");
}

/// The spec: "If not given, the display name is unchanged."
#[test]
fn rename_without_a_name_changes_nothing() {
    let s = Server::start();
    s.register("gail", PW);
    let token = login_on(&s, "gail", "KEEPME", "Kept name");
    let path = format!("{V3}/devices/KEEPME");
    let (status, body) = s.put(&path, Some(&token), json!({}));
    assert_eq!((status, body), (200, json!({})));
    let (_, dev) = s.get(&path, Some(&token));
    assert_eq!(dev["display_name"], "Kept name", "{dev}");
    // An empty body is the same as {}.
    let auth = format!("Bearer {token}");
    let r = s.raw("PUT", &path, &[("Authorization", &auth)], Some(b""));
    assert_eq!(r.status, 200, "{}", r.text);
    let (_, dev) = s.get(&path, Some(&token));
    assert_eq!(dev["display_name"], "Kept name", "{dev}");
    // A device that does not exist is still a 404 without a name.
    assert_error(&s.put(&format!("{V3}/devices/NOSUCH"), Some(&token), json!({})), 404, "M_NOT_FOUND");
}

#[test]
fn device_ids_are_percent_decoded_in_paths() {
    let s = Server::start();
    s.register("hank", PW);
    let odd = "dev/1 ü?#%";
    let token = login_on(&s, "hank", odd, "Odd");
    let encoded = "dev%2F1%20%C3%BC%3F%23%25";
    let (status, dev) = s.get(&format!("{V3}/devices/{encoded}"), Some(&token));
    assert_eq!(status, 200, "{dev}");
    assert_eq!(dev["device_id"], odd);
    let (status, _) =
        s.put(&format!("{V3}/devices/{encoded}"), Some(&token), json!({ "display_name": "Renamed" }));
    assert_eq!(status, 200);
    let (_, dev) = s.get(&format!("{V3}/devices/{encoded}"), Some(&token));
    assert_eq!(dev["display_name"], "Renamed");
    // Device IDs with control characters are refused at login.
    let mut body = password_login("hank", PW);
    body["device_id"] = json!("bad\u{7}id");
    assert_error(&s.post(&format!("{V3}/login"), None, body), 400, "M_INVALID_PARAM");
}
