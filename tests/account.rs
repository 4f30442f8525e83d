//! The signed-in user's account: password change and deactivation, both
//! behind user-interactive authentication with the current password.

mod common;

use common::{assert_error, password_auth, password_login, Server, V3};
use serde_json::{json, Value};

const OLD: &str = "old-password-1";
const NEW: &str = "new-password-2";

fn password_path() -> String {
    format!("{V3}/account/password")
}

fn whoami(s: &Server, token: &str) -> (u16, Value) {
    s.get(&format!("{V3}/account/whoami"), Some(token))
}

/// Opens a UIA session on `path` for `token` and returns its ID, checking
/// that the password stage is the one flow.
fn open_session(s: &Server, path: &str, token: &str, body: Value) -> String {
    let (status, uia) = s.post(path, Some(token), body);
    assert_eq!(status, 401, "{uia}");
    assert_eq!(uia["flows"], json!([{ "stages": ["m.login.password"] }]), "{uia}");
    assert!(uia.get("errcode").is_none(), "{uia}");
    uia["session"].as_str().expect("session").to_owned()
}

#[test]
fn change_password_logs_out_other_devices() {
    let s = Server::start();
    let (user_id, current, _) = s.register("alice", OLD);
    let other = s.login("alice", OLD);

    let body = json!({ "new_password": NEW });
    let session = open_session(&s, &password_path(), &current, body.clone());

    let mut wrong = body.clone();
    wrong["auth"] = password_auth(&user_id, "not-the-password", &session);
    let (status, failed) = s.post(&password_path(), Some(&current), wrong);
    assert_eq!(status, 401, "{failed}");
    assert_eq!(failed["errcode"], "M_FORBIDDEN", "{failed}");
    assert!(failed["error"].is_string(), "{failed}");
    assert_eq!(failed["session"], session.as_str(), "{failed}");
    assert_eq!(failed["flows"], json!([{ "stages": ["m.login.password"] }]));
    // Nothing changed yet.
    assert_eq!(whoami(&s, &other).0, 200);

    let mut right = body.clone();
    right["auth"] = password_auth(&user_id, OLD, &session);
    let (status, done) = s.post(&password_path(), Some(&current), right);
    assert_eq!((status, done), (200, json!({})));

    let login = |pw| s.post(&format!("{V3}/login"), None, password_login("alice", pw));
    assert_error(&login(OLD), 403, "M_FORBIDDEN");
    assert_eq!(login(NEW).0, 200);

    assert_eq!(whoami(&s, &current).0, 200, "the requesting device stays");
    let got = whoami(&s, &other);
    assert_error(&got, 401, "M_UNKNOWN_TOKEN");
    assert_eq!(got.1["soft_logout"], false);
}

#[test]
fn change_password_can_keep_other_devices() {
    let s = Server::start();
    let (_, current, _) = s.register("bob", OLD);
    let other = s.login("bob", OLD);
    let body = json!({ "new_password": NEW, "logout_devices": false });
    let session = open_session(&s, &password_path(), &current, body.clone());
    let mut right = body;
    // The legacy top-level `user` in the auth dict also identifies.
    right["auth"] = json!({
        "type": "m.login.password",
        "user": "bob",
        "password": OLD,
        "session": session,
    });
    let (status, done) = s.post(&password_path(), Some(&current), right);
    assert_eq!(status, 200, "{done}");
    assert_eq!(whoami(&s, &current).0, 200);
    assert_eq!(whoami(&s, &other).0, 200);
    s.login("bob", NEW);
}

#[test]
fn password_stage_must_name_the_signed_in_user() {
    let s = Server::start();
    let (_, token, _) = s.register("carol", OLD);
    let (mallory_id, _, _) = s.register("mallory", OLD);
    let body = json!({ "new_password": NEW });
    let session = open_session(&s, &password_path(), &token, body.clone());
    // Mallory's correct password does not authorise a change of Carol's.
    let mut attempt = body;
    attempt["auth"] = password_auth(&mallory_id, OLD, &session);
    let (status, failed) = s.post(&password_path(), Some(&token), attempt);
    assert_eq!(status, 401, "{failed}");
    assert_eq!(failed["errcode"], "M_FORBIDDEN", "{failed}");
    s.login("carol", OLD);
}

#[test]
fn new_password_must_not_be_empty() {
    let s = Server::start();
    let (_, token, _) = s.register("erin", OLD);
    let got = s.post(&password_path(), Some(&token), json!({ "new_password": "" }));
    assert_error(&got, 400, "M_WEAK_PASSWORD");
    let got = s.post(&password_path(), Some(&token), json!({}));
    assert_error(&got, 400, "M_BAD_JSON");
    assert_error(&s.post(&password_path(), None, json!({ "new_password": NEW })), 401, "M_MISSING_TOKEN");
}

#[test]
fn deactivation_is_final() {
    let s = Server::start();
    let (user_id, token, _) = s.register("fred", OLD);
    let other = s.login("fred", OLD);
    let path = format!("{V3}/account/deactivate");

    // An empty body starts UIA too.
    let (status, uia) = s.post(&path, Some(&token), json!({}));
    assert_eq!(status, 401, "{uia}");
    let session = uia["session"].as_str().expect("session").to_owned();

    let got = s.post(&path, Some(&token), json!({ "auth": password_auth(&user_id, "wrong", &session) }));
    assert_eq!(got.0, 401, "{}", got.1);
    assert_eq!(got.1["errcode"], "M_FORBIDDEN");
    assert_eq!(whoami(&s, &token).0, 200);

    let (status, done) =
        s.post(&path, Some(&token), json!({ "auth": password_auth(&user_id, OLD, &session) }));
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["id_server_unbind_result"], "no-support");

    for t in [&token, &other] {
        let got = whoami(&s, t);
        assert_error(&got, 401, "M_UNKNOWN_TOKEN");
        assert_eq!(got.1["soft_logout"], false);
    }
    let login = s.post(&format!("{V3}/login"), None, password_login("fred", OLD));
    assert_error(&login, 403, "M_USER_DEACTIVATED");

    let again = s.post(
        &format!("{V3}/register"),
        None,
        json!({ "username": "fred", "password": OLD, "auth": { "type": "m.login.dummy" } }),
    );
    assert_error(&again, 400, "M_USER_IN_USE");
    assert_error(&s.get(&format!("{V3}/register/available?username=fred"), None), 400, "M_USER_IN_USE");
}

/// Issue 12: deactivation with `erase: true` serves the user's events
/// redacted to users who join later, keeps them for those who saw them,
/// and clears the profile.
#[test]
fn erasure_redacts_for_later_joiners_only() {
    let s = Server::start();
    let (alice, alice_token, _) = s.register("alice", OLD);
    let (_, bob_token, _) = s.register("bob", OLD);
    let (_, carol_token, _) = s.register("carol", OLD);
    let (status, room) =
        s.post(&format!("{V3}/createRoom"), Some(&alice_token), json!({ "preset": "public_chat" }));
    assert_eq!(status, 200, "{room}");
    let room = room["room_id"].as_str().expect("room_id").to_owned();
    let room_path = format!("{V3}/rooms/{}", common::enc(&room));
    assert_eq!(s.post(&format!("{room_path}/join"), Some(&bob_token), json!({})).0, 200);
    let (status, sent) = s.put(
        &format!("{room_path}/send/m.room.message/t1"),
        Some(&alice_token),
        json!({ "msgtype": "m.text", "body": "mine" }),
    );
    assert_eq!(status, 200, "{sent}");
    let event_id = sent["event_id"].as_str().expect("event_id").to_owned();

    let path = format!("{V3}/account/deactivate");
    let (_, uia) = s.post(&path, Some(&alice_token), json!({ "erase": true }));
    let session = uia["session"].as_str().expect("session").to_owned();
    let (status, done) = s.post(
        &path,
        Some(&alice_token),
        json!({ "erase": true, "auth": password_auth(&alice, OLD, &session) }),
    );
    assert_eq!(status, 200, "{done}");

    assert_eq!(s.post(&format!("{room_path}/join"), Some(&carol_token), json!({})).0, 200);
    let content_for = |token: &str| -> Value {
        let (status, page) = s.get(&format!("{room_path}/messages?dir=b&limit=50"), Some(token));
        assert_eq!(status, 200, "{page}");
        let ev = page["chunk"]
            .as_array()
            .expect("chunk")
            .iter()
            .find(|e| e["event_id"] == event_id.as_str())
            .cloned();
        ev.expect("the event is listed")["content"].clone()
    };
    assert_eq!(content_for(&bob_token)["body"], "mine", "bob saw it before the erasure");
    assert_eq!(content_for(&carol_token), json!({}), "carol joined after the erasure");
    let (status, profile) = s.get(&format!("{V3}/profile/{}", common::enc(&alice)), None);
    assert!(status == 404 || profile.get("displayname").is_none(), "{status} {profile}");
}
