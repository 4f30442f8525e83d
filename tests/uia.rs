//! User-interactive authentication sessions belong to one request (issue
//! 12): a session opened for one operation — endpoint, user, and the
//! parameters that matter — serves no other, and a session that
//! authorised a request is spent with it.
//!
//! The spec's client "resubmit[s] the same request with the addition of an
//! `auth` key"; it names no error for a different one. Hearth answers 403
//! `M_UNKNOWN`, as Synapse does ("Requested operation has changed during
//! the UI authentication session").

mod common;

use common::{assert_error, password_auth, password_login, Server, V3};
use serde_json::{json, Value};

const PW: &str = "uia-test-password";
const NEW: &str = "uia-new-password";

fn login_on(s: &Server, user: &str, device_id: &str) -> String {
    let mut body = password_login(user, PW);
    body["device_id"] = json!(device_id);
    let (status, login) = s.post(&format!("{V3}/login"), None, body);
    assert_eq!(status, 200, "{login}");
    login["access_token"].as_str().expect("token").to_owned()
}

fn whoami(s: &Server, token: &str) -> u16 {
    s.get(&format!("{V3}/account/whoami"), Some(token)).0
}

/// Sends `body` without `auth` and returns the session of the 401.
fn open(s: &Server, method: &str, path: &str, token: &str, body: Value) -> String {
    let (status, uia) = s.call(method, path, Some(token), Some(&body));
    assert_eq!(status, 401, "{uia}");
    uia["session"].as_str().expect("session").to_owned()
}

fn with_auth(mut body: Value, user_id: &str, session: &str) -> Value {
    body["auth"] = password_auth(user_id, PW, session);
    body
}

#[track_caller]
fn assert_operation_changed(got: &(u16, Value)) {
    assert_error(got, 403, "M_UNKNOWN");
    assert_eq!(got.1["error"], "Requested operation has changed during the UI authentication session");
}

#[test]
fn a_session_to_delete_one_device_cannot_delete_another() {
    let s = Server::start();
    let (user_id, main, _) = s.register("alice", PW);
    let a = login_on(&s, "alice", "DEV_A");
    let b = login_on(&s, "alice", "DEV_B");
    let session = open(&s, "DELETE", &format!("{V3}/devices/DEV_A"), &main, json!({}));

    // The password is right, the device is not the one the session is for.
    let got = s.delete(&format!("{V3}/devices/DEV_B"), Some(&main), with_auth(json!({}), &user_id, &session));
    assert_operation_changed(&got);
    assert_eq!(whoami(&s, &b), 200, "DEV_B must survive");
    // Nor can it serve the bulk endpoint for the same device.
    let bulk = with_auth(json!({ "devices": ["DEV_A"] }), &user_id, &session);
    assert_operation_changed(&s.post(&format!("{V3}/delete_devices"), Some(&main), bulk));
    assert_eq!(whoami(&s, &a), 200);

    // The session still serves its own request, under another version prefix too.
    let own = with_auth(json!({}), &user_id, &session);
    let (status, body) = s.delete("/_matrix/client/r0/devices/DEV_A", Some(&main), own.clone());
    assert_eq!((status, body), (200, json!({})));
    assert_eq!(whoami(&s, &a), 401);
    assert_eq!(whoami(&s, &b), 200);

    // Spent: a device logged in again under the same ID is not deleted by a replay.
    let again = login_on(&s, "alice", "DEV_A");
    assert_error(&s.delete(&format!("{V3}/devices/DEV_A"), Some(&main), own), 400, "M_UNKNOWN");
    assert_eq!(whoami(&s, &again), 200);
}

#[test]
fn a_bulk_deletion_session_covers_exactly_its_devices() {
    let s = Server::start();
    let (user_id, main, _) = s.register("bob", PW);
    let tokens: Vec<String> = ["D1", "D2", "D3"].iter().map(|d| login_on(&s, "bob", d)).collect();
    let path = format!("{V3}/delete_devices");
    let session = open(&s, "POST", &path, &main, json!({ "devices": ["D1", "D2"] }));

    for other in [json!(["D1", "D2", "D3"]), json!(["D1"]), json!(["D3"])] {
        let got = s.post(&path, Some(&main), with_auth(json!({ "devices": other }), &user_id, &session));
        assert_operation_changed(&got);
    }
    for t in &tokens {
        assert_eq!(whoami(&s, t), 200);
    }
    // The same set in another order, with a repeat, is the same request.
    let same = with_auth(json!({ "devices": ["D2", "D1", "D2"] }), &user_id, &session);
    let (status, body) = s.post(&path, Some(&main), same);
    assert_eq!((status, body), (200, json!({})));
    assert_eq!([whoami(&s, &tokens[0]), whoami(&s, &tokens[1]), whoami(&s, &tokens[2])], [401, 401, 200]);
}

#[test]
fn a_password_session_is_bound_to_the_new_password_and_logout_choice() {
    let s = Server::start();
    let (user_id, main, _) = s.register("carol", PW);
    let other = s.login("carol", PW);
    let path = format!("{V3}/account/password");
    let session = open(&s, "POST", &path, &main, json!({ "new_password": NEW, "logout_devices": false }));

    let swapped =
        with_auth(json!({ "new_password": "attacker-chosen", "logout_devices": false }), &user_id, &session);
    assert_operation_changed(&s.post(&path, Some(&main), swapped));
    // Leaving logout_devices out means true: another request.
    let defaulted = with_auth(json!({ "new_password": NEW }), &user_id, &session);
    assert_operation_changed(&s.post(&path, Some(&main), defaulted));
    s.login("carol", PW);

    let own = with_auth(json!({ "new_password": NEW, "logout_devices": false }), &user_id, &session);
    let (status, body) = s.post(&path, Some(&main), own);
    assert_eq!((status, body), (200, json!({})));
    s.login("carol", NEW);
    assert_eq!(whoami(&s, &other), 200, "logout_devices was false");

    // An explicit true and the default are one request.
    let session = open(&s, "POST", &path, &main, json!({ "new_password": PW }));
    let mut explicit = json!({ "new_password": PW, "logout_devices": true });
    explicit["auth"] = password_auth(&user_id, NEW, &session);
    let (status, body) = s.post(&path, Some(&main), explicit);
    assert_eq!((status, body), (200, json!({})));
    assert_eq!(whoami(&s, &other), 401);
}

#[test]
fn a_session_serves_one_endpoint_and_one_user() {
    let s = Server::start();
    let (carol_id, carol, _) = s.register("carol", PW);
    let (_, dan, _) = s.register("dan", PW);
    let path = format!("{V3}/account/password");
    let session = open(&s, "POST", &path, &carol, json!({ "new_password": NEW }));

    // Carol's password-change session cannot deactivate her account ...
    let deactivate = with_auth(json!({}), &carol_id, &session);
    assert_operation_changed(&s.post(&format!("{V3}/account/deactivate"), Some(&carol), deactivate));
    assert_eq!(whoami(&s, &carol), 200);
    // ... and is unknown to another user.
    let got = s.post(&path, Some(&dan), with_auth(json!({ "new_password": NEW }), &carol_id, &session));
    assert_error(&got, 400, "M_UNKNOWN");
    s.login("carol", PW);
    s.login("dan", PW);
}

#[test]
fn a_deactivation_session_is_bound_to_its_parameters() {
    let s = Server::start();
    let (user_id, token, _) = s.register("erin", PW);
    let path = format!("{V3}/account/deactivate");
    let session = open(&s, "POST", &path, &token, json!({}));
    let erase = with_auth(json!({ "erase": true }), &user_id, &session);
    assert_operation_changed(&s.post(&path, Some(&token), erase));
    assert_eq!(whoami(&s, &token), 200);
    // `erase: false` is the default: the same request.
    let (status, body) =
        s.post(&path, Some(&token), with_auth(json!({ "erase": false }), &user_id, &session));
    assert_eq!(status, 200, "{body}");
    assert_eq!(whoami(&s, &token), 401);
}
