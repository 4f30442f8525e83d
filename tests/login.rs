//! Sessions: `/login`, `/logout`, `/logout/all`, `/refresh`, `whoami`, and
//! the two ways of presenting an access token.

mod common;

use common::{assert_error, password_login, Server, V3};
use serde_json::json;

const PW: &str = "correct horse battery staple";

#[test]
fn login_flows_offer_password() {
    let s = Server::start();
    for prefix in [V3, "/_matrix/client/r0", "/_matrix/client/api/v1"] {
        let (status, body) = s.get(&format!("{prefix}/login"), None);
        assert_eq!(status, 200, "{prefix}: {body}");
        let flows = body["flows"].as_array().expect("flows");
        assert!(flows.iter().any(|f| f["type"] == "m.login.password"), "{body}");
    }
}

#[test]
fn login_by_localpart_full_id_legacy_user_and_old_prefixes() {
    let s = Server::start();
    s.register("alice", PW);

    let body = s.login_body("alice", PW);
    assert_eq!(body["user_id"], "@alice:localhost");
    assert!(body["access_token"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(body["device_id"].as_str().is_some_and(|d| !d.is_empty()));
    assert_eq!(body["home_server"], "localhost");
    assert_eq!(body["well_known"]["m.homeserver"]["base_url"], format!("http://127.0.0.1:{}", s.port));
    // No refresh token unless asked for, and then the token does not expire.
    assert!(body.get("refresh_token").is_none(), "{body}");
    assert!(body.get("expires_in_ms").is_none(), "{body}");

    let body = s.login_body("@alice:localhost", PW);
    assert_eq!(body["user_id"], "@alice:localhost");

    // The original specification's top-level `user`, under each prefix.
    for prefix in ["/_matrix/client/r0", "/_matrix/client/api/v1"] {
        let (status, body) = s.post(
            &format!("{prefix}/login"),
            None,
            json!({ "type": "m.login.password", "user": "alice", "password": PW }),
        );
        assert_eq!(status, 200, "{prefix}: {body}");
        assert_eq!(body["user_id"], "@alice:localhost");
        let token = body["access_token"].as_str().expect("token");
        let (status, me) = s.get(&format!("{V3}/account/whoami"), Some(token));
        assert_eq!((status, &me["user_id"]), (200, &json!("@alice:localhost")));
    }
}

#[test]
fn bad_logins_are_refused() {
    let s = Server::start();
    s.register("bob", PW);
    let login = |body| s.post(&format!("{V3}/login"), None, body);

    assert_error(&login(password_login("bob", "wrong")), 403, "M_FORBIDDEN");
    assert_error(&login(password_login("nobody", PW)), 403, "M_FORBIDDEN");
    // A user of another server cannot log in here.
    assert_error(&login(password_login("@bob:elsewhere.example", PW)), 403, "M_FORBIDDEN");
    assert_error(&login(json!({ "type": "m.login.token", "token": "abc" })), 400, "M_UNKNOWN");
    assert_error(
        &login(json!({
            "type": "m.login.password",
            "identifier": { "type": "m.id.thirdparty", "medium": "email", "address": "b@x" },
            "password": PW,
        })),
        400,
        "M_UNKNOWN",
    );
}

#[test]
fn device_id_and_display_name_are_kept() {
    let s = Server::start();
    s.register("carol", PW);
    let mut body = password_login("carol", PW);
    body["device_id"] = json!("MYPHONE");
    body["initial_device_display_name"] = json!("Carol's phone");
    let (status, login) = s.post(&format!("{V3}/login"), None, body.clone());
    assert_eq!(status, 200, "{login}");
    assert_eq!(login["device_id"], "MYPHONE");
    let token = login["access_token"].as_str().expect("token").to_owned();

    let (status, me) = s.get(&format!("{V3}/account/whoami"), Some(&token));
    assert_eq!(status, 200, "{me}");
    assert_eq!(me, json!({ "user_id": "@carol:localhost", "device_id": "MYPHONE", "is_guest": false }));

    let (status, list) = s.get(&format!("{V3}/devices"), Some(&token));
    assert_eq!(status, 200, "{list}");
    let phone = list["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .find(|d| d["device_id"] == "MYPHONE")
        .unwrap_or_else(|| panic!("MYPHONE not listed: {list}"));
    assert_eq!(phone["display_name"], "Carol's phone");

    // Logging in again on the same device replaces its token and keeps
    // the device (and its name).
    body["initial_device_display_name"] = json!("renamed?");
    let (status, again) = s.post(&format!("{V3}/login"), None, body);
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["device_id"], "MYPHONE");
    assert_error(&s.get(&format!("{V3}/account/whoami"), Some(&token)), 401, "M_UNKNOWN_TOKEN");
    let new_token = again["access_token"].as_str().expect("token");
    let (_, d) = s.get(&format!("{V3}/devices/MYPHONE"), Some(new_token));
    assert_eq!(d["display_name"], "Carol's phone");
}

#[test]
fn token_in_header_or_query() {
    let s = Server::start();
    let (user_id, token, device_id) = s.register("dave", PW);
    let (status, me) = s.get(&format!("{V3}/account/whoami"), Some(&token));
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["user_id"], user_id.as_str());
    assert_eq!(me["device_id"], device_id.as_str());
    assert_eq!(me["is_guest"], false);

    let (status, me) = s.get(&format!("{V3}/account/whoami?access_token={token}"), None);
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["user_id"], user_id.as_str());

    // Header and query naming the same token is fine; different ones are not.
    let (status, _) = s.get(&format!("{V3}/account/whoami?access_token={token}"), Some(&token));
    assert_eq!(status, 200);
    let got = s.get(&format!("{V3}/account/whoami?access_token=someoneelse"), Some(&token));
    assert_error(&got, 401, "M_UNKNOWN_TOKEN");
}

#[test]
fn logout_ends_only_this_session() {
    let s = Server::start();
    let (_, first, first_device) = s.register("erin", PW);
    let second = s.login("erin", PW);

    let (status, body) = s.post(&format!("{V3}/logout"), Some(&first), json!({}));
    assert_eq!((status, body), (200, json!({})));
    let got = s.get(&format!("{V3}/account/whoami"), Some(&first));
    assert_error(&got, 401, "M_UNKNOWN_TOKEN");
    assert_eq!(got.1["soft_logout"], false);

    // The other session lives on, and the logged-out device is gone.
    let (status, list) = s.get(&format!("{V3}/devices"), Some(&second));
    assert_eq!(status, 200, "{list}");
    let ids: Vec<&str> =
        list["devices"].as_array().expect("devices").iter().filter_map(|d| d["device_id"].as_str()).collect();
    assert_eq!(ids.len(), 1, "{list}");
    assert_ne!(ids[0], first_device);

    // Logging out needs a token; an empty body is accepted.
    assert_error(&s.post(&format!("{V3}/logout"), None, json!({})), 401, "M_MISSING_TOKEN");
    let auth = format!("Bearer {second}");
    let r = s.raw("POST", "/_matrix/client/r0/logout", &[("Authorization", &auth)], Some(b""));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_error(&s.get(&format!("{V3}/account/whoami"), Some(&second)), 401, "M_UNKNOWN_TOKEN");
}

#[test]
fn logout_all_ends_every_session_of_the_user_only() {
    let s = Server::start();
    let (_, a1, _) = s.register("fay", PW);
    let a2 = s.login("fay", PW);
    let (_, other, _) = s.register("gus", PW);

    let (status, body) = s.post(&format!("{V3}/logout/all"), Some(&a2), json!({}));
    assert_eq!((status, body), (200, json!({})));
    for t in [&a1, &a2] {
        let got = s.get(&format!("{V3}/account/whoami"), Some(t));
        assert_error(&got, 401, "M_UNKNOWN_TOKEN");
        assert_eq!(got.1["soft_logout"], false);
    }
    let (status, _) = s.get(&format!("{V3}/account/whoami"), Some(&other));
    assert_eq!(status, 200, "another user's session must survive");
    // The user can still log in afterwards.
    s.login("fay", PW);
}

#[test]
fn refresh_tokens_rotate() {
    let s = Server::start();
    s.register("hal", PW);
    let mut body = password_login("hal", PW);
    body["refresh_token"] = json!(true);
    let (status, login) = s.post(&format!("{V3}/login"), None, body);
    assert_eq!(status, 200, "{login}");
    let access1 = login["access_token"].as_str().expect("access").to_owned();
    let refresh1 = login["refresh_token"].as_str().expect("refresh").to_owned();
    assert_eq!(login["expires_in_ms"], 86_400_000, "{login}");
    let device = login["device_id"].as_str().expect("device").to_owned();
    let (status, _) = s.get(&format!("{V3}/account/whoami"), Some(&access1));
    assert_eq!(status, 200);

    let (status, fresh) = s.post(&format!("{V3}/refresh"), None, json!({ "refresh_token": refresh1 }));
    assert_eq!(status, 200, "{fresh}");
    let access2 = fresh["access_token"].as_str().expect("access").to_owned();
    let refresh2 = fresh["refresh_token"].as_str().expect("refresh").to_owned();
    assert!(fresh["expires_in_ms"].as_u64().is_some_and(|ms| ms > 0), "{fresh}");
    assert_ne!(access2, access1);
    assert_ne!(refresh2, refresh1);

    // The old refresh token is spent, the old access token revoked.
    let got = s.post(&format!("{V3}/refresh"), None, json!({ "refresh_token": refresh1 }));
    assert_error(&got, 401, "M_UNKNOWN_TOKEN");
    assert_error(&s.get(&format!("{V3}/account/whoami"), Some(&access1)), 401, "M_UNKNOWN_TOKEN");
    let (status, me) = s.get(&format!("{V3}/account/whoami"), Some(&access2));
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["device_id"], device.as_str(), "refresh keeps the device");

    // The new refresh token works in turn.
    let (status, third) = s.post(&format!("{V3}/refresh"), None, json!({ "refresh_token": refresh2 }));
    assert_eq!(status, 200, "{third}");
    assert_error(
        &s.post(&format!("{V3}/refresh"), None, json!({ "refresh_token": "hthr_nonsense" })),
        401,
        "M_UNKNOWN_TOKEN",
    );
}

#[test]
fn access_token_lifetime_is_configurable() {
    let s = Server::start_with(&["--access-token-lifetime-ms", "60000"], &[]);
    s.register("ida", PW);
    let mut body = password_login("ida", PW);
    body["refresh_token"] = json!(true);
    let (status, login) = s.post(&format!("{V3}/login"), None, body);
    assert_eq!(status, 200, "{login}");
    assert_eq!(login["expires_in_ms"], 60_000, "{login}");
}

/// The shortest configurable lifetime is a minute, so instead of waiting
/// the test moves the token's expiry into the past in the database (the
/// server holds no cached copy of it).
#[test]
fn expired_access_token_is_a_soft_logout_and_refresh_recovers() {
    let s = Server::start();
    s.register("jan", PW);
    let mut body = password_login("jan", PW);
    body["refresh_token"] = json!(true);
    let (status, login) = s.post(&format!("{V3}/login"), None, body);
    assert_eq!(status, 200, "{login}");
    let access = login["access_token"].as_str().expect("access");
    let refresh = login["refresh_token"].as_str().expect("refresh");

    let db = rusqlite::Connection::open(s.db()).expect("opening the database");
    db.busy_timeout(std::time::Duration::from_secs(10)).expect("busy timeout");
    let changed = db
        .execute(
            "UPDATE access_tokens SET expires_ts = 1 WHERE user_id = '@jan:localhost' AND expires_ts IS NOT NULL",
            [],
        )
        .expect("expiring the token");
    assert_eq!(changed, 1);
    drop(db);

    let got = s.get(&format!("{V3}/account/whoami"), Some(access));
    assert_error(&got, 401, "M_UNKNOWN_TOKEN");
    assert_eq!(got.1["soft_logout"], true, "{}", got.1);

    let (status, fresh) = s.post(&format!("{V3}/refresh"), None, json!({ "refresh_token": refresh }));
    assert_eq!(status, 200, "{fresh}");
    let new_access = fresh["access_token"].as_str().expect("access");
    let (status, me) = s.get(&format!("{V3}/account/whoami"), Some(new_access));
    assert_eq!((status, &me["user_id"]), (200, &json!("@jan:localhost")));
}

#[test]
fn a_refresh_token_works_once_under_concurrency() {
    let s = Server::start();
    s.register("kim", PW);
    let mut body = password_login("kim", PW);
    body["refresh_token"] = json!(true);
    let (_, login) = s.post(&format!("{V3}/login"), None, body);
    let refresh = login["refresh_token"].as_str().expect("refresh").to_owned();
    let results: Vec<(u16, serde_json::Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                scope.spawn(|| s.post(&format!("{V3}/refresh"), None, json!({ "refresh_token": refresh })))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    let winners: Vec<_> = results.iter().filter(|(status, _)| *status == 200).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for r in results.iter().filter(|(status, _)| *status != 200) {
        assert_error(r, 401, "M_UNKNOWN_TOKEN");
    }
    let token = winners[0].1["access_token"].as_str().expect("token");
    let (status, _) = s.get(&format!("{V3}/account/whoami"), Some(token));
    assert_eq!(status, 200);
}

#[test]
fn logging_out_voids_the_refresh_token() {
    let s = Server::start();
    s.register("lou", PW);
    let mut body = password_login("lou", PW);
    body["refresh_token"] = json!(true);
    let (_, login) = s.post(&format!("{V3}/login"), None, body);
    let access = login["access_token"].as_str().expect("access");
    let refresh = login["refresh_token"].as_str().expect("refresh");
    let (status, _) = s.post(&format!("{V3}/logout"), Some(access), json!({}));
    assert_eq!(status, 200);
    let got = s.post(&format!("{V3}/refresh"), None, json!({ "refresh_token": refresh }));
    assert_error(&got, 401, "M_UNKNOWN_TOKEN");
}
