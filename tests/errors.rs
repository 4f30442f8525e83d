//! Error answers: unknown routes, wrong methods, bad bodies, missing and
//! unknown tokens, body limits, hostile paths, rate limits. None of them
//! may be a 500, each carries a string `errcode` and `error`, and the
//! server keeps serving afterwards without leaking secrets to its log.

mod common;

use common::{password_login, Reply, Server, V3};
use serde_json::json;

const PW: &str = "errors-secret-pw-9f27";

/// Checks the shape every error shares and returns (status, errcode).
#[track_caller]
fn error_of(r: &Reply) -> (u16, String) {
    assert_ne!(r.status, 500, "a 500: {}", r.text);
    assert!(r.status >= 400, "not an error: {} {}", r.status, r.text);
    let errcode = r.json["errcode"].as_str().unwrap_or_else(|| panic!("no string errcode: {}", r.text));
    assert!(r.json["error"].is_string(), "no string error: {}", r.text);
    (r.status, errcode.to_owned())
}

#[track_caller]
fn expect(r: Reply, status: u16, errcode: &str) -> Reply {
    assert_eq!(error_of(&r), (status, errcode.to_owned()), "{}", r.text);
    r
}

const JSON: (&str, &str) = ("Content-Type", "application/json");

#[test]
fn malformed_requests() {
    let s = Server::start();
    let (_, token, _) = s.register("alice", PW);
    let bearer = format!("Bearer {token}");
    let authed = [JSON, ("Authorization", bearer.as_str())];
    let login = format!("{V3}/login");

    // Routing.
    expect(s.raw("GET", "/_matrix/client/v3/no/such/endpoint", &[], None), 404, "M_UNRECOGNIZED");
    expect(s.raw("GET", "/", &[], None), 404, "M_UNRECOGNIZED");
    expect(s.raw("GET", "/_matrix/client/v9/login", &[], None), 404, "M_UNRECOGNIZED");
    expect(s.raw("DELETE", &login, &[], None), 405, "M_UNRECOGNIZED");
    expect(s.raw("PUT", "/_matrix/client/versions", &[JSON], Some(b"{}")), 405, "M_UNRECOGNIZED");
    expect(s.raw("PATCH", &login, &[JSON], Some(b"{}")), 405, "M_UNRECOGNIZED");

    // Bodies.
    expect(s.raw("POST", &login, &[JSON], Some(b"{not json")), 400, "M_NOT_JSON");
    expect(s.raw("POST", &login, &[JSON], Some(b"")), 400, "M_NOT_JSON");
    expect(s.raw("POST", &login, &[JSON], Some(b"{\"type\": \"\xff\xfe\"}")), 400, "M_NOT_JSON");
    expect(s.raw("POST", &login, &[JSON], Some(b"\xc3\x28")), 400, "M_NOT_JSON");
    expect(s.raw("POST", &login, &[JSON], Some(b"[1, 2, 3]")), 400, "M_BAD_JSON");
    expect(s.raw("POST", &login, &[JSON], Some(b"\"a string\"")), 400, "M_BAD_JSON");
    expect(s.raw("POST", &login, &[JSON], Some(b"{}")), 400, "M_BAD_JSON");
    expect(s.raw("POST", &login, &[JSON], Some(br#"{"type": 5}"#)), 400, "M_BAD_JSON");
    expect(
        s.raw(
            "POST",
            &login,
            &[JSON],
            Some(br#"{"type": "m.login.password", "identifier": "alice", "password": "x"}"#),
        ),
        400,
        "M_BAD_JSON",
    );
    expect(
        s.raw(
            "POST",
            &login,
            &[JSON],
            Some(br#"{"type": "m.login.password", "user": ["alice"], "password": "x"}"#),
        ),
        400,
        "M_BAD_JSON",
    );
    expect(
        s.raw("PUT", &format!("{V3}/devices/X"), &authed, Some(br#"{"display_name": 7}"#)),
        400,
        "M_BAD_JSON",
    );
    expect(
        s.raw("POST", &format!("{V3}/delete_devices"), &authed, Some(br#"{"devices": "all"}"#)),
        400,
        "M_BAD_JSON",
    );
    expect(
        s.raw("POST", &format!("{V3}/register"), &[JSON], Some(br#"{"username": 12}"#)),
        400,
        "M_BAD_JSON",
    );
    expect(
        s.raw("POST", &format!("{V3}/register"), &[JSON], Some(br#"{"auth": "dummy"}"#)),
        400,
        "M_BAD_JSON",
    );
    expect(
        s.raw("POST", &format!("{V3}/refresh"), &[JSON], Some(br#"{"refresh_token": null}"#)),
        400,
        "M_BAD_JSON",
    );
    // Deeply nested JSON is refused, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let r = s.raw("POST", &login, &[JSON], Some(deep.as_bytes()));
    let (status, _) = error_of(&r);
    assert!(status == 400 || status == 413, "{}", r.text);

    // Hostile path parameters are decoded and simply not found.
    for garbage in ["%FF%FE%00", "%zz%", "..%2F..%2Fetc%2Fpasswd", "%00", "%E2%82"] {
        expect(s.raw("GET", &format!("{V3}/devices/{garbage}"), &authed, None), 404, "M_NOT_FOUND");
    }
    expect(
        s.raw("GET", &format!("{V3}/register/available?username=%FF%00"), &[], None),
        400,
        "M_INVALID_USERNAME",
    );

    assert_eq!(s.get("/_matrix/client/versions", None).0, 200);
}

#[test]
fn tokens() {
    let s = Server::start();
    let whoami = format!("{V3}/account/whoami");
    expect(s.raw("GET", &whoami, &[], None), 401, "M_MISSING_TOKEN");
    expect(s.raw("GET", &whoami, &[("Authorization", "Basic YWxpY2U6cHc=")], None), 401, "M_MISSING_TOKEN");
    expect(s.raw("GET", &whoami, &[("Authorization", "Bearer ")], None), 401, "M_MISSING_TOKEN");
    let r = expect(
        s.raw("GET", &whoami, &[("Authorization", "Bearer hth_not_a_real_token")], None),
        401,
        "M_UNKNOWN_TOKEN",
    );
    assert_eq!(r.json["soft_logout"], false, "{}", r.text);
    let r = expect(s.raw("GET", &format!("{whoami}?access_token=nope"), &[], None), 401, "M_UNKNOWN_TOKEN");
    assert_eq!(r.json["soft_logout"], false, "{}", r.text);
    // The token is checked before the body is looked at.
    expect(
        s.raw("POST", &format!("{V3}/logout"), &[("Authorization", "Bearer nope")], Some(b"{bad")),
        401,
        "M_UNKNOWN_TOKEN",
    );
}

#[test]
fn body_limit() {
    let s = Server::start_with(&["--max-body-bytes", "2048"], &[]);
    let (_, token, _) = s.register("bob", PW);
    let big = format!(r#"{{"display_name": "{}"}}"#, "x".repeat(10 * 1024));
    let bearer = format!("Bearer {token}");
    let authed = [JSON, ("Authorization", bearer.as_str())];

    // With a Content-Length over the limit.
    expect(s.raw("PUT", &format!("{V3}/devices/X"), &authed, Some(big.as_bytes())), 413, "M_TOO_LARGE");
    let login =
        format!(r#"{{"type": "m.login.password", "user": "bob", "password": "{}"}}"#, "p".repeat(10 * 1024));
    expect(s.raw("POST", &format!("{V3}/login"), &[JSON], Some(login.as_bytes())), 413, "M_TOO_LARGE");
    // Without a length (chunked), cut off while reading.
    expect(
        s.raw_chunked("POST", &format!("{V3}/login"), None, login.clone().into_bytes()),
        413,
        "M_TOO_LARGE",
    );
    expect(
        s.raw_chunked("PUT", &format!("{V3}/devices/X"), Some(&token), big.into_bytes()),
        413,
        "M_TOO_LARGE",
    );

    // Just under the limit is fine, and the server is still healthy.
    let name = "n".repeat(300);
    let (status, body) = s.get(&format!("{V3}/devices"), Some(&token));
    assert_eq!(status, 200, "{body}");
    let device = body["devices"][0]["device_id"].as_str().expect("device").to_owned();
    let (status, body) =
        s.put(&format!("{V3}/devices/{device}"), Some(&token), json!({ "display_name": name }));
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.get("/_matrix/client/versions", None).0, 200);
    s.login("bob", PW);
}

#[test]
fn rate_limit() {
    // The test client stands in for a reverse proxy on loopback.
    let s = Server::start_with(
        &["--trusted-proxies", "127.0.0.1"],
        &[("HEARTH_RATE_LIMIT_PER_SECOND", "0.1"), ("HEARTH_RATE_LIMIT_BURST", "3")],
    );
    let login = || {
        s.raw(
            "POST",
            &format!("{V3}/login"),
            &[JSON],
            Some(password_login("nobody", "whatever").to_string().as_bytes()),
        )
    };
    for _ in 0..3 {
        expect(login(), 403, "M_FORBIDDEN");
    }
    let r = expect(login(), 429, "M_LIMIT_EXCEEDED");
    let retry = r.json["retry_after_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("retry_after_ms is not an integer: {}", r.text));
    assert!(retry > 0, "{}", r.text);

    // Endpoints that are not rate limited still answer.
    assert_eq!(s.get("/_matrix/client/versions", None).0, 200);
    assert_eq!(s.get(&format!("{V3}/login"), None).0, 200);
    // Another client behind the same local reverse proxy has its own bucket.
    let r = s.raw(
        "POST",
        &format!("{V3}/login"),
        &[JSON, ("X-Forwarded-For", "203.0.113.7")],
        Some(password_login("nobody", "whatever").to_string().as_bytes()),
    );
    expect(r, 403, "M_FORBIDDEN");
}

/// Runs a mix of failing requests, then checks that every worker still
/// answers and that the log holds no password or token.
#[test]
fn server_survives_errors_and_log_keeps_secrets() {
    let s = Server::start_with(&["--workers", "2", "--log-level", "trace"], &[]);
    let (user_id, token, _) = s.register("carol", PW);
    let mut body = password_login("carol", PW);
    body["refresh_token"] = json!(true);
    let (status, login) = s.post(&format!("{V3}/login"), None, body);
    assert_eq!(status, 200, "{login}");
    let token2 = login["access_token"].as_str().expect("token").to_owned();
    let refresh = login["refresh_token"].as_str().expect("refresh").to_owned();

    // Secrets in every place a client puts them.
    let (status, _) = s.get(&format!("{V3}/account/whoami?access_token={token}"), None);
    assert_eq!(status, 200);
    let (status, fresh) = s.post(&format!("{V3}/refresh"), None, json!({ "refresh_token": refresh }));
    assert_eq!(status, 200, "{fresh}");
    let token3 = fresh["access_token"].as_str().expect("token").to_owned();
    let refresh2 = fresh["refresh_token"].as_str().expect("refresh").to_owned();
    let (status, uia) = s.post(
        &format!("{V3}/account/password"),
        Some(&token),
        json!({ "new_password": "carol-new-secret-77" }),
    );
    assert_eq!(status, 401, "{uia}");
    let session = uia["session"].as_str().expect("session");
    let wrong = s.post(
        &format!("{V3}/account/password"),
        Some(&token),
        json!({
            "new_password": "carol-new-secret-77",
            "auth": common::password_auth(&user_id, "carol-wrong-secret-55", session),
        }),
    );
    assert_eq!(wrong.0, 401);
    let _ = s.post(&format!("{V3}/login"), None, password_login("carol", "carol-typo-secret-33"));

    for _ in 0..4 {
        let _ = s.raw("POST", &format!("{V3}/login"), &[JSON], Some(b"\xff"));
        let _ = s.raw("GET", "/_matrix/%%%/x", &[], None);
        let _ = s.raw("DELETE", "/_matrix/client/versions", &[], None);
        let _ = s.raw("POST", &format!("{V3}/logout"), &[("Authorization", "Bearer x")], None);
    }
    // Each of the two workers must still answer: more requests than workers.
    for _ in 0..6 {
        assert_eq!(s.get("/_matrix/client/versions", None).0, 200);
    }

    let log = s.log_text();
    assert!(log.contains("serving"), "{log}");
    for secret in [
        PW,
        "carol-new-secret-77",
        "carol-wrong-secret-55",
        "carol-typo-secret-33",
        token.as_str(),
        token2.as_str(),
        token3.as_str(),
        refresh.as_str(),
        refresh2.as_str(),
    ] {
        assert!(!log.contains(secret), "the log contains a secret ({secret}):\n{log}");
    }
    assert!(!log.contains("panicked"), "{log}");
}

/// Sends `bytes` on a fresh connection, half-closes it, and returns
/// everything the server answers until it closes; `None` if the server
/// cannot be reached at all.
fn raw_exchange(s: &Server, bytes: &[u8]) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", s.port)).ok()?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(60))).expect("read timeout");
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    Some(String::from_utf8_lossy(&answer).into_owned())
}

/// The status codes of the responses in a raw answer, in order.
fn statuses(answer: &str) -> Vec<u16> {
    answer.match_indices("HTTP/1.1 ").filter_map(|(i, _)| answer.get(i + 9..i + 12)?.parse().ok()).collect()
}

const VERSIONS_CLOSE: &str = "GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

/// A request may claim any Content-Length; the claim alone must not make
/// the server allocate it, crash, or lose a worker.
#[test]
fn huge_declared_content_length() {
    let s = Server::start_with(&["--workers", "2"], &[]);
    for length in ["4000000000000", "18446744073709551615", "99999999999999999999"] {
        for method in ["POST", "GET"] {
            let request = format!(
                "{method} /_matrix/client/v3/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 Content-Length: {length}\r\n\r\n{{}}"
            );
            let answer = raw_exchange(&s, request.as_bytes());
            let answer = answer.unwrap_or_else(|| {
                panic!("the server died before {method} with Content-Length {length}; log:\n{}", s.log_text())
            });
            assert!(!statuses(&answer).contains(&500), "{method} {length}: {answer}");
            // More requests than workers: every worker must still be alive.
            for _ in 0..3 {
                let after = raw_exchange(&s, VERSIONS_CLOSE.as_bytes()).unwrap_or_default();
                assert_eq!(
                    statuses(&after),
                    [200],
                    "the server stopped answering after {method} with Content-Length {length}; \
                     log:\n{}",
                    s.log_text()
                );
            }
        }
    }
}

/// After refusing an oversized chunked body the connection must still be in
/// step: the next request on it is answered as itself, not parsed out of the
/// rest of the refused body.
#[test]
fn oversized_chunked_body_leaves_the_connection_in_step() {
    let s = Server::start_with(&["--max-body-bytes", "2048"], &[]);
    let mut request = b"POST /_matrix/client/v3/login HTTP/1.1\r\nHost: x\r\n\
        Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    for _ in 0..10 {
        request.extend_from_slice(format!("400\r\n{}\r\n", "x".repeat(0x400)).as_bytes());
    }
    request.extend_from_slice(b"0\r\n\r\n");
    request.extend_from_slice(VERSIONS_CLOSE.as_bytes());
    let answer = raw_exchange(&s, &request).expect("server reachable");
    let codes = statuses(&answer);
    assert_eq!(codes.first(), Some(&413), "{answer}");
    // Either the server closed the connection after the 413, or it answered
    // the pipelined request properly; never a response to garbage.
    assert!(codes == [413] || codes == [413, 200], "{codes:?}:\n{answer}");
}
