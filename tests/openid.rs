//! OpenID tokens (issue 12): `/user/{userId}/openid/request_token` hands
//! the user a token another service exchanges at the federation API's
//! `/openid/userinfo` for the user ID; nothing else accepts it.

mod common;

use common::{assert_error, enc, Server, V3};
use serde_json::{json, Value};

const PW: &str = "openid-test-password";

fn request_path(user_id: &str) -> String {
    format!("{V3}/user/{}/openid/request_token", enc(user_id))
}

fn userinfo(s: &Server, token: &str) -> (u16, Value) {
    s.get(&format!("/_matrix/federation/v1/openid/userinfo?access_token={}", enc(token)), None)
}

#[test]
fn a_token_names_its_user_at_userinfo_and_opens_nothing_else() {
    let s = Server::start();
    let (alice, token, _) = s.register("alice", PW);
    let (_, bob, _) = s.register("bob", PW);

    let (status, got) = s.post(&request_path(&alice), Some(&token), json!({}));
    assert_eq!(status, 200, "{got}");
    let openid = got["access_token"].as_str().expect("access_token").to_owned();
    assert_eq!(got["token_type"], "Bearer");
    assert_eq!(got["matrix_server_name"], "localhost");
    assert_eq!(got["expires_in"], 3600);
    assert_eq!(got.as_object().map(|o| o.len()), Some(4), "{got}");

    // The exchange needs no authentication but the token.
    assert_eq!(userinfo(&s, &openid), (200, json!({ "sub": alice })));
    // An empty body is as good as {} and gives another token.
    let r = s.raw("POST", &request_path(&alice), &[("Authorization", &format!("Bearer {token}"))], None);
    assert_eq!(r.status, 200, "{}", r.text);
    let second = r.json["access_token"].as_str().expect("access_token").to_owned();
    assert_ne!(second, openid);
    assert_eq!(userinfo(&s, &second), (200, json!({ "sub": alice })));

    // It is no access token, and an access token is no OpenID token.
    assert_error(&s.get(&format!("{V3}/account/whoami"), Some(&openid)), 401, "M_UNKNOWN_TOKEN");
    assert_error(&s.post(&request_path(&alice), Some(&openid), json!({})), 401, "M_UNKNOWN_TOKEN");
    for bad in [token.as_str(), "nonsense", ""] {
        let got = userinfo(&s, bad);
        assert_eq!(
            got.1,
            json!({ "errcode": "M_UNKNOWN_TOKEN", "error": "Access token unknown or expired" })
        );
        assert_eq!(got.0, 401);
    }
    let missing = s.get("/_matrix/federation/v1/openid/userinfo", None);
    assert_error(&missing, 401, "M_UNKNOWN_TOKEN");

    // Only for oneself; the body must be an object.
    assert_error(&s.post(&request_path(&alice), Some(&bob), json!({})), 403, "M_FORBIDDEN");
    assert_error(&s.post(&request_path(&alice), None, json!({})), 401, "M_MISSING_TOKEN");
    assert_error(&s.post(&request_path(&alice), Some(&token), json!([])), 400, "M_BAD_JSON");

    // Logging the device out ends its OpenID tokens.
    assert_eq!(s.post(&format!("{V3}/logout"), Some(&token), json!({})).0, 200);
    assert_error(&userinfo(&s, &openid), 401, "M_UNKNOWN_TOKEN");
    assert_error(&userinfo(&s, &second), 401, "M_UNKNOWN_TOKEN");
}

#[test]
fn both_endpoints_are_rate_limited() {
    let s = Server::start_with(
        &[],
        &[("HEARTH_RATE_LIMIT_BURST", "4"), ("HEARTH_RATE_LIMIT_PER_SECOND", "0.001")],
    );
    // Registration takes two of the four: the 401 and the account.
    let (alice, token, _) = s.register("alice", PW);
    let (status, got) = s.post(&request_path(&alice), Some(&token), json!({}));
    assert_eq!(status, 200, "{got}");
    let openid = got["access_token"].as_str().expect("access_token").to_owned();
    assert_eq!(userinfo(&s, &openid).0, 200);
    assert_error(&userinfo(&s, &openid), 429, "M_LIMIT_EXCEEDED");
    assert_error(&s.post(&request_path(&alice), Some(&token), json!({})), 429, "M_LIMIT_EXCEEDED");
}

/// A route that needs no access token ignores the Authorization header, so
/// another scheme (federation's X-Matrix) does not turn into a 401.
#[test]
fn userinfo_ignores_an_authorization_header_of_another_scheme() {
    let s = Server::start();
    let reply = s.raw(
        "GET",
        "/_matrix/federation/v1/openid/userinfo?access_token=nonsense",
        &[("Authorization", "X-Matrix origin=\"a.example\",key=\"ed25519:1\",sig=\"x\"")],
        None,
    );
    assert_eq!(reply.status, 401, "{}", reply.text);
    assert_eq!(reply.json["errcode"], "M_UNKNOWN_TOKEN", "{}", reply.text);
}
