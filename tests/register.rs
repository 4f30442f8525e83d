//! Registration in each mode: open (`m.login.dummy`), token
//! (`m.login.registration_token`), closed; user name rules; availability.

mod common;

use common::{assert_error, Server, V3};
use serde_json::{json, Value};

const PW: &str = "register-test-password";

fn register_path() -> String {
    format!("{V3}/register")
}

/// The first step of UIA: no `auth`, answered 401 with flows and a session.
fn begin(s: &Server, body: &Value) -> Value {
    let (status, uia) = s.post(&register_path(), None, body.clone());
    assert_eq!(status, 401, "{uia}");
    uia
}

fn stages(uia: &Value) -> Vec<Vec<String>> {
    uia["flows"]
        .as_array()
        .expect("flows")
        .iter()
        .map(|f| {
            f["stages"]
                .as_array()
                .expect("stages")
                .iter()
                .map(|s| s.as_str().expect("stage name").to_owned())
                .collect()
        })
        .collect()
}

#[test]
fn open_registration_with_dummy_stage() {
    let s = Server::start();
    let body = json!({ "username": "alice", "password": PW });
    let uia = begin(&s, &body);
    assert_eq!(stages(&uia), [["m.login.dummy"]], "{uia}");
    assert!(uia["params"].is_object(), "{uia}");
    let session = uia["session"].as_str().expect("session");
    assert!(!session.is_empty());
    // A fresh challenge is not an error.
    assert!(uia.get("errcode").is_none(), "{uia}");

    let mut done = body.clone();
    done["auth"] = json!({ "type": "m.login.dummy", "session": session });
    let (status, reg) = s.post(&register_path(), None, done.clone());
    assert_eq!(status, 200, "{reg}");
    assert_eq!(reg["user_id"], "@alice:localhost");
    let token = reg["access_token"].as_str().expect("access_token");
    let device = reg["device_id"].as_str().expect("device_id");
    assert!(!device.is_empty());

    let (status, me) = s.get(&format!("{V3}/account/whoami"), Some(token));
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["user_id"], "@alice:localhost");
    assert_eq!(me["device_id"], device);
    // The password set at registration logs in.
    s.login("alice", PW);

    // The finished session cannot be replayed for another account.
    done["username"] = json!("alice2");
    let got = s.post(&register_path(), None, done);
    assert_eq!(got.0, 400, "{}", got.1);
    assert!(got.1["errcode"].is_string(), "{}", got.1);
}

#[test]
fn dummy_stage_without_a_session_and_device_options() {
    let s = Server::start();
    let (status, reg) = s.post(
        &register_path(),
        None,
        json!({
            "username": "bert",
            "password": PW,
            "device_id": "BERTDEV",
            "initial_device_display_name": "Bert's laptop",
            "auth": { "type": "m.login.dummy" },
        }),
    );
    assert_eq!(status, 200, "{reg}");
    assert_eq!(reg["device_id"], "BERTDEV");
    assert!(reg.get("refresh_token").is_none(), "{reg}");
    let token = reg["access_token"].as_str().expect("token");
    let (status, dev) = s.get(&format!("{V3}/devices/BERTDEV"), Some(token));
    assert_eq!(status, 200, "{dev}");
    assert_eq!(dev["display_name"], "Bert's laptop");

    // Registration can ask for a refresh token, as login can.
    let (status, reg) = s.post(
        &register_path(),
        None,
        json!({
            "username": "bess",
            "password": PW,
            "refresh_token": true,
            "auth": { "type": "m.login.dummy" },
        }),
    );
    assert_eq!(status, 200, "{reg}");
    assert!(reg["refresh_token"].is_string(), "{reg}");
    assert!(reg["expires_in_ms"].as_u64().is_some_and(|ms| ms > 0), "{reg}");
    let (status, fresh) =
        s.post(&format!("{V3}/refresh"), None, json!({ "refresh_token": reg["refresh_token"] }));
    assert_eq!(status, 200, "{fresh}");
}

#[test]
fn user_name_rules() {
    let s = Server::start();
    s.register("taken", PW);
    let attempt = |username: &str| {
        s.post(
            &register_path(),
            None,
            json!({ "username": username, "password": PW, "auth": { "type": "m.login.dummy" } }),
        )
    };
    assert_error(&attempt("taken"), 400, "M_USER_IN_USE");
    for bad in ["Alice", "al ice", "al:ice", "émile", "a@b", ""] {
        assert_error(&attempt(bad), 400, "M_INVALID_USERNAME");
    }
    // "@" + localpart + ":localhost" may be at most 255 bytes.
    let longest = "a".repeat(255 - "@:localhost".len());
    let too_long = format!("{longest}a");
    assert_error(&attempt(&too_long), 400, "M_INVALID_USERNAME");
    let (status, reg) = attempt(&longest);
    assert_eq!(status, 200, "{reg}");
    assert_eq!(reg["user_id"].as_str().map(str::len), Some(255));
    // Every character the grammar allows.
    let (status, reg) = attempt("a.b_c=d-e/f+g0");
    assert_eq!(status, 200, "{reg}");
    assert_eq!(reg["user_id"], "@a.b_c=d-e/f+g0:localhost");
}

#[test]
fn inhibit_login_returns_only_the_user_id() {
    let s = Server::start();
    let (status, reg) = s.post(
        &register_path(),
        None,
        json!({
            "username": "quiet",
            "password": PW,
            "inhibit_login": true,
            "auth": { "type": "m.login.dummy" },
        }),
    );
    assert_eq!(status, 200, "{reg}");
    assert_eq!(reg, json!({ "user_id": "@quiet:localhost" }));
    // The account exists and has no devices until it logs in.
    let token = s.login("quiet", PW);
    let (_, list) = s.get(&format!("{V3}/devices"), Some(&token));
    assert_eq!(list["devices"].as_array().map(Vec::len), Some(1), "{list}");
}

#[test]
fn guests_are_refused() {
    let s = Server::start();
    let got =
        s.post(&format!("{V3}/register?kind=guest"), None, json!({ "auth": { "type": "m.login.dummy" } }));
    assert_error(&got, 403, "M_GUEST_ACCESS_FORBIDDEN");
    let got = s.post(&format!("{V3}/register?kind=robot"), None, json!({}));
    assert_error(&got, 400, "M_INVALID_PARAM");
}

#[test]
fn availability() {
    let s = Server::start();
    let path = |name: &str| format!("{V3}/register/available?username={name}");
    let (status, body) = s.get(&path("frida"), None);
    assert_eq!((status, body), (200, json!({ "available": true })));
    s.register("frida", PW);
    assert_error(&s.get(&path("frida"), None), 400, "M_USER_IN_USE");
    assert_error(&s.get(&path("Frida"), None), 400, "M_INVALID_USERNAME");
    assert_error(&s.get(&format!("{V3}/register/available"), None), 400, "M_MISSING_PARAM");
}

#[test]
fn no_username_gets_a_generated_valid_id() {
    let s = Server::start();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (status, reg) =
            s.post(&register_path(), None, json!({ "password": PW, "auth": { "type": "m.login.dummy" } }));
        assert_eq!(status, 200, "{reg}");
        let user_id = reg["user_id"].as_str().expect("user_id").to_owned();
        let local = user_id
            .strip_prefix('@')
            .and_then(|r| r.strip_suffix(":localhost"))
            .unwrap_or_else(|| panic!("{user_id}"));
        assert!(!local.is_empty());
        assert!(local.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()), "{user_id}");
        let token = reg["access_token"].as_str().expect("token");
        let (_, me) = s.get(&format!("{V3}/account/whoami"), Some(token));
        assert_eq!(me["user_id"], user_id.as_str());
        ids.push(user_id);
    }
    assert_ne!(ids[0], ids[1]);
}

#[test]
fn token_registration() {
    // The harness defaults to open registration; this is the server's default.
    let s = Server::start_with(&["--registration", "token"], &[]);
    let (code, out, err) = s.hearth(&["token", "create", "--uses", "1"], "");
    assert_eq!(code, 0, "{err}");
    let token = out.trim().to_owned();
    assert!(!token.is_empty(), "token create printed nothing");

    let validity = |t: &str| {
        s.get(&format!("/_matrix/client/v1/register/m.login.registration_token/validity?token={t}"), None)
    };
    assert_eq!(validity(&token), (200, json!({ "valid": true })));
    assert_eq!(validity("nosuchtoken"), (200, json!({ "valid": false })));

    let body = json!({ "username": "tina", "password": PW });
    let uia = begin(&s, &body);
    assert_eq!(stages(&uia), [["m.login.registration_token"]], "{uia}");
    let session = uia["session"].as_str().expect("session").to_owned();

    // A wrong token: still 401, now with an error, same session.
    let mut attempt = body.clone();
    attempt["auth"] = json!({
        "type": "m.login.registration_token",
        "token": "wrong-token",
        "session": session,
    });
    let (status, failed) = s.post(&register_path(), None, attempt.clone());
    assert_eq!(status, 401, "{failed}");
    assert!(failed["errcode"].is_string(), "{failed}");
    assert!(failed["error"].is_string(), "{failed}");
    assert_eq!(failed["session"], session.as_str());
    assert_eq!(stages(&failed), [["m.login.registration_token"]]);

    // The dummy stage is not offered in this mode.
    let mut dummy = body.clone();
    dummy["auth"] = json!({ "type": "m.login.dummy", "session": session });
    let (status, refused) = s.post(&register_path(), None, dummy);
    assert_eq!(status, 401, "{refused}");
    assert!(refused["errcode"].is_string(), "{refused}");

    // The right token registers.
    attempt["auth"]["token"] = json!(token);
    let (status, reg) = s.post(&register_path(), None, attempt);
    assert_eq!(status, 200, "{reg}");
    assert_eq!(reg["user_id"], "@tina:localhost");
    assert_eq!(validity(&token), (200, json!({ "valid": false })));

    // The one use is spent.
    let second = json!({
        "username": "tom",
        "password": PW,
        "auth": { "type": "m.login.registration_token", "token": token },
    });
    let (status, refused) = s.post(&register_path(), None, second);
    assert_eq!(status, 401, "{refused}");
    assert!(refused["errcode"].is_string(), "{refused}");
    let (status, _) = s.get(&format!("{V3}/register/available?username=tom"), None);
    assert_eq!(status, 200, "tom must not have been registered");

    let (code, out, err) = s.hearth(&["token", "list"], "");
    assert_eq!(code, 0, "{err}");
    let row = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some(token.as_str()))
        .unwrap_or_else(|| panic!("token missing from the list:\n{out}"));
    // token, allowed, pending, completed, expires, valid
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1..4], ["1", "0", "1"], "{out}");
    assert_eq!(cols.last(), Some(&"no"), "{out}");
}

#[test]
fn multi_use_token_runs_out() {
    let s = Server::start_with(&["--registration", "token"], &[]);
    let (code, out, err) = s.hearth(&["token", "create", "--uses", "2", "--token", "two-uses"], "");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "two-uses");
    for name in ["uma", "ulf"] {
        let (status, reg) = s.post(
            &register_path(),
            None,
            json!({
                "username": name,
                "password": PW,
                "auth": { "type": "m.login.registration_token", "token": "two-uses" },
            }),
        );
        assert_eq!(status, 200, "{name}: {reg}");
    }
    let (status, refused) = s.post(
        &register_path(),
        None,
        json!({
            "username": "ute",
            "auth": { "type": "m.login.registration_token", "token": "two-uses" },
        }),
    );
    assert_eq!(status, 401, "{refused}");
}

#[test]
fn closed_registration() {
    let s = Server::start_with(&["--registration", "closed"], &[]);
    let got = s.post(
        &register_path(),
        None,
        json!({ "username": "carl", "password": PW, "auth": { "type": "m.login.dummy" } }),
    );
    assert_error(&got, 403, "M_FORBIDDEN");
    let got = s.post(&register_path(), None, json!({ "username": "carl", "password": PW }));
    assert_error(&got, 403, "M_FORBIDDEN");
    // Tokens are not in use either.
    let got = s.get("/_matrix/client/v1/register/m.login.registration_token/validity?token=abc", None);
    assert_error(&got, 403, "M_FORBIDDEN");
}

#[test]
fn concurrent_registrations_of_one_name_have_one_winner() {
    let s = Server::start();
    let results: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                scope.spawn(|| {
                    s.post(
                        &register_path(),
                        None,
                        json!({ "username": "race", "password": PW, "auth": { "type": "m.login.dummy" } }),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    let winners = results.iter().filter(|(status, _)| *status == 200).count();
    assert_eq!(winners, 1, "{results:?}");
    for r in results.iter().filter(|(status, _)| *status != 200) {
        assert_error(r, 400, "M_USER_IN_USE");
    }
    s.login("race", PW);
}

#[test]
fn a_one_use_token_registers_one_account_under_concurrency() {
    let s = Server::start_with(&["--registration", "token"], &[]);
    let (code, _, err) = s.hearth(&["token", "create", "--uses", "1", "--token", "once"], "");
    assert_eq!(code, 0, "{err}");
    let results: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let s = &s;
                scope.spawn(move || {
                    s.post(
                        &register_path(),
                        None,
                        json!({
                            "username": format!("racer{i}"),
                            "password": PW,
                            "auth": { "type": "m.login.registration_token", "token": "once" },
                        }),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    let winners = results.iter().filter(|(status, _)| *status == 200).count();
    assert_eq!(winners, 1, "{results:?}");
    for (status, body) in results.iter().filter(|(status, _)| *status != 200) {
        assert_eq!(*status, 401, "{body}");
        assert!(body["errcode"].is_string(), "{body}");
    }
    let (_, out, _) = s.hearth(&["token", "list"], "");
    let cols: Vec<&str> = out
        .lines()
        .find(|l| l.starts_with("once"))
        .unwrap_or_else(|| panic!("{out}"))
        .split_whitespace()
        .collect();
    assert_eq!(cols[1..4], ["1", "0", "1"], "{out}");
}

/// Issue 12: a new account is named by its localpart (as Synapse and
/// Conduit name it), so profiles and member events show a name before the
/// user picks one.
#[test]
fn a_new_account_is_named_by_its_localpart() {
    let s = Server::start();
    let (user_id, token, _) = s.register("zoe", PW);
    let profile = format!("{V3}/profile/{user_id}");
    assert_eq!(s.get(&profile, None), (200, json!({ "displayname": "zoe" })));
    let (status, room) = s.post(&format!("{V3}/createRoom"), Some(&token), json!({}));
    assert_eq!(status, 200, "{room}");
    let room_id = room["room_id"].as_str().expect("room_id");
    let member = format!("{V3}/rooms/{room_id}/state/m.room.member/{user_id}");
    let (status, content) = s.get(&member, Some(&token));
    assert_eq!((status, &content["displayname"]), (200, &json!("zoe")), "{content}");

    // A server-chosen localpart names the account too.
    let (status, first) = s.post(&register_path(), None, json!({ "password": PW }));
    assert_eq!(status, 401, "{first}");
    let auth = json!({ "type": "m.login.dummy", "session": first["session"] });
    let (status, done) = s.post(&register_path(), None, json!({ "password": PW, "auth": auth }));
    assert_eq!(status, 200, "{done}");
    let generated = done["user_id"].as_str().expect("user_id");
    let localpart = generated.trim_start_matches('@').split(':').next().expect("localpart");
    let (_, got) = s.get(&format!("{V3}/profile/{generated}"), None);
    assert_eq!(got["displayname"], localpart);
}
