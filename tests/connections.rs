//! The connection front end under hostile traffic (issue 11): request-head
//! limits (414/431 with a JSON body), the connection cap (503 with
//! `Retry-After`), slowloris heads and bodies closed at their deadlines,
//! non-ASCII headers answered, pipelining, `Expect: 100-continue`, the
//! `Server` header, and memory that does not grow with a huge header.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Server;
use serde_json::Value;

/// Longest a test waits for the server to answer or close.
const ANSWER_WAIT: Duration = Duration::from_secs(30);

fn connect(s: &Server) -> TcpStream {
    let c = TcpStream::connect(("127.0.0.1", s.port)).expect("connect");
    c.set_read_timeout(Some(ANSWER_WAIT)).expect("timeout");
    c
}

/// Reads until the server closes the connection (or the wait ends).
fn read_to_close(c: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one response (its `Content-Length` says how long).
fn read_response(c: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match c.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => break,
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let len = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    c.read_exact(&mut body).expect("body");
    head + &String::from_utf8_lossy(&body)
}

fn status_of(response: &str) -> u16 {
    response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn json_of(response: &str) -> Value {
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(body).unwrap_or(Value::Null)
}

fn assert_json_error(response: &str, status: u16, errcode: &str) {
    assert_eq!(status_of(response), status, "{response}");
    let json = json_of(response);
    assert_eq!(json["errcode"], errcode, "{response}");
    assert!(json["error"].is_string(), "{response}");
}

#[test]
fn head_limits_answer_json_and_close() {
    let s = Server::start();
    let cases: Vec<(Vec<u8>, u16)> = vec![
        // A request line over 8 KiB.
        (format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(9000)).into_bytes(), 414),
        // One header over 8 KiB.
        (format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "b".repeat(9000)).into_bytes(), 431),
        // More than 100 headers.
        (
            (0..101).fold(b"GET / HTTP/1.1\r\n".to_vec(), |mut v, i| {
                v.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
                v
            }),
            431,
        ),
        // Over 64 KiB of headers, each within its own limit.
        (
            (0..20).fold(b"GET / HTTP/1.1\r\n".to_vec(), |mut v, i| {
                v.extend_from_slice(format!("X-{i}: {}\r\n", "c".repeat(4000)).as_bytes());
                v
            }),
            431,
        ),
    ];
    for (request, status) in cases {
        let mut c = connect(&s);
        c.write_all(&request).expect("send");
        let response = read_to_close(&mut c);
        assert_json_error(&response, status, "M_TOO_LARGE");
        assert!(response.contains("\r\nConnection: close\r\n"), "{response}");
    }
    // Just within the limits: answered.
    let mut c = connect(&s);
    let head = (0..99).fold(b"GET /_matrix/client/versions HTTP/1.1\r\n".to_vec(), |mut v, i| {
        v.extend_from_slice(format!("X-{i}: {}\r\n", "d".repeat(500)).as_bytes());
        v
    });
    c.write_all(&[head, b"Connection: close\r\n\r\n".to_vec()].concat()).expect("send");
    assert_eq!(status_of(&read_to_close(&mut c)), 200);
}

#[test]
fn malformed_and_unsupported_requests_get_json_errors() {
    let s = Server::start();
    for (request, status) in [
        (&b"NONSENSE\r\n\r\n"[..], 400),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n folded: header\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nExpect: telepathy\r\n\r\n", 417),
    ] {
        let mut c = connect(&s);
        c.write_all(request).expect("send");
        let response = read_to_close(&mut c);
        assert_eq!(status_of(&response), status, "{}: {response}", String::from_utf8_lossy(request));
        assert!(json_of(&response)["errcode"].is_string(), "{response}");
    }
}

#[test]
fn non_ascii_header_is_answered() {
    let s = Server::start();
    let mut c = connect(&s);
    c.write_all(
        "GET /_matrix/client/versions HTTP/1.1\r\nUser-Agent: café\r\nConnection: close\r\n\r\n".as_bytes(),
    )
    .expect("send");
    let response = read_to_close(&mut c);
    assert_eq!(status_of(&response), 200, "{response}");
    assert!(json_of(&response)["versions"].is_array());
    // A non-ASCII Authorization is as good as none: a clear 401.
    let mut c = connect(&s);
    c.write_all(
        "GET /_matrix/client/v3/account/whoami HTTP/1.1\r\nAuthorization: Bearer é\r\n\r\n".as_bytes(),
    )
    .expect("send");
    assert_json_error(&read_response(&mut c), 401, "M_MISSING_TOKEN");
}

#[test]
fn server_header_names_hearth() {
    let s = Server::start();
    let reply = s.raw("GET", "/_matrix/client/versions", &[], None);
    let server = reply.header("Server").expect("Server header");
    assert!(server.starts_with("Hearth/"), "{server}");
    let reply = s.raw("GET", "/_matrix/client/v3/nowhere", &[], None);
    assert!(reply.header("Server").is_some_and(|v| v.starts_with("Hearth/")));
}

#[test]
fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let s = Server::start();
    let (_, token, _) = s.register("pipe", "pipe-password");
    let mut c = connect(&s);
    let whoami =
        format!("GET /_matrix/client/v3/account/whoami HTTP/1.1\r\nAuthorization: Bearer {token}\r\n\r\n");
    let versions = "GET /_matrix/client/versions HTTP/1.1\r\n\r\n";
    let body = r#"{"a":1}"#;
    let put = format!(
        "PUT /_matrix/client/v3/user/@pipe:localhost/account_data/x.y HTTP/1.1\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    c.write_all(format!("{whoami}{versions}{put}{whoami}").as_bytes()).expect("send");
    let first = read_response(&mut c);
    assert_eq!(json_of(&first)["user_id"], "@pipe:localhost", "{first}");
    assert!(json_of(&read_response(&mut c))["versions"].is_array());
    assert_eq!(status_of(&read_response(&mut c)), 200);
    assert_eq!(json_of(&read_response(&mut c))["user_id"], "@pipe:localhost");
    let (status, data) = s.get("/_matrix/client/v3/user/@pipe:localhost/account_data/x.y", Some(&token));
    assert_eq!((status, data), (200, serde_json::json!({"a": 1})));
}

#[test]
fn expect_continue_and_large_bodies_stream_to_the_handler() {
    let s = Server::start();
    let (_, token, _) = s.register("cont", "cont-password");
    let mut c = connect(&s);
    // 100 KiB: more than the reactor buffers, so the worker streams it.
    let value = "v".repeat(100 * 1024);
    let body = format!(r#"{{"big":"{value}"}}"#);
    c.write_all(
        format!(
            "PUT /_matrix/client/v3/user/@cont:localhost/account_data/x.big HTTP/1.1\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .expect("head");
    let interim = read_response(&mut c);
    assert!(interim.starts_with("HTTP/1.1 100 Continue\r\n"), "{interim}");
    c.write_all(body.as_bytes()).expect("body");
    let response = read_response(&mut c);
    assert_eq!(status_of(&response), 200, "{response}");
    let (status, data) = s.get("/_matrix/client/v3/user/@cont:localhost/account_data/x.big", Some(&token));
    assert_eq!(status, 200);
    assert_eq!(data["big"].as_str().map(str::len), Some(value.len()));
    // The connection carries on.
    c.write_all(b"GET /_matrix/client/versions HTTP/1.1\r\n\r\n").expect("send");
    assert_eq!(status_of(&read_response(&mut c)), 200);
}

#[test]
fn connection_cap_answers_503_with_retry_after() {
    let s = Server::start_with(&["--max-connections", "16"], &[]);
    let held: Vec<TcpStream> = (0..16).map(|_| connect(&s)).collect();
    let mut extra = connect(&s);
    let response = read_to_close(&mut extra);
    assert_json_error(&response, 503, "M_LIMIT_EXCEEDED");
    assert!(response.contains("\r\nRetry-After: "), "{response}");
    assert!(json_of(&response)["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0));
    let deadline = Instant::now() + ANSWER_WAIT;
    while !s.log_text().contains("connections open: refused") {
        assert!(Instant::now() < deadline, "refusal not logged:\n{}", s.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    // One held connection closes: a new client gets in.
    drop(held);
    let deadline = Instant::now() + ANSWER_WAIT;
    loop {
        let mut c = connect(&s);
        let _ = c.write_all(b"GET /_matrix/client/versions HTTP/1.1\r\nConnection: close\r\n\r\n");
        if status_of(&read_to_close(&mut c)) == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "no connection accepted after the others closed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn slow_heads_and_bodies_are_cut_off_at_their_deadlines() {
    let s = Server::start();
    // A slowloris head: a byte a second, never finished.
    let mut head = connect(&s);
    head.write_all(b"GET /_matrix/client/versions HTTP/1.1\r\nX-Slow: ").expect("start");
    // A body that stalls after its first bytes.
    let mut body = connect(&s);
    body.write_all(b"POST /_matrix/client/v3/login HTTP/1.1\r\nContent-Length: 1000\r\n\r\n{\"ty")
        .expect("start");
    let started = Instant::now();
    let trickle = std::thread::spawn({
        let mut head = head.try_clone().expect("clone");
        move || {
            // Keeps sending until the server closes (bounded by ANSWER_WAIT);
            // the pause is the point: a client this slow.
            while started.elapsed() < ANSWER_WAIT && head.write_all(b"a").is_ok() {
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    });
    let response = read_to_close(&mut head);
    assert_json_error(&response, 408, "M_UNKNOWN");
    let response = read_to_close(&mut body);
    assert_json_error(&response, 408, "M_UNKNOWN");
    assert!(started.elapsed() < ANSWER_WAIT, "not cut off");
    let _ = trickle.join();
    // The server still serves.
    assert_eq!(s.raw("GET", "/_matrix/client/versions", &[], None).status, 200);
}

#[test]
fn a_huge_header_costs_no_memory() {
    let s = Server::start();
    let pid = s.pid();
    assert_eq!(s.raw("GET", "/_matrix/client/versions", &[], None).status, 200);
    let before = common::proc_status(pid, "VmRSS");
    let mut threads = Vec::new();
    for _ in 0..4 {
        let port = s.port;
        threads.push(std::thread::spawn(move || {
            let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            c.set_read_timeout(Some(ANSWER_WAIT)).expect("timeout");
            let _ = c.write_all(b"GET / HTTP/1.1\r\nX-Huge: ");
            let chunk = vec![b'h'; 1024 * 1024];
            // 50 MiB of one header line, or until the server closes.
            for _ in 0..50 {
                if c.write_all(&chunk).is_err() {
                    break;
                }
            }
        }));
    }
    for t in threads {
        t.join().expect("flooder");
    }
    assert_eq!(s.raw("GET", "/_matrix/client/versions", &[], None).status, 200);
    let after = common::proc_status(pid, "VmRSS");
    assert!(after < before + 8 * 1024, "RSS grew from {before} KiB to {after} KiB");
}

#[test]
fn a_parked_sync_whose_client_left_is_let_go() {
    let s = common::start_debug(&[], &[]);
    let (user, token, _) = s.register("leaver", "leaver-password");
    let (status, first) = s.get("/_matrix/client/v3/sync", Some(&token));
    assert_eq!(status, 200);
    let since = first["next_batch"].as_str().expect("next_batch").to_owned();
    let mut c = connect(&s);
    c.write_all(
        format!(
            "GET /_matrix/client/v3/sync?since={since}&timeout=60000 HTTP/1.1\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
        .as_bytes(),
    )
    .expect("send");
    // Parked: the hub holds it, and there is no answer yet.
    common::wait_for_log(&s, &common::parked_line(&user), 1);
    c.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
    let mut byte = [0u8; 1];
    assert!(c.read(&mut byte).is_err(), "answered at once");
    let parked_logs = s.log_text().matches("GET /_matrix/client/v3/sync 200").count();
    drop(c);
    // The hub lets it go long before its 60 s deadline.
    let deadline = Instant::now() + ANSWER_WAIT;
    while s.log_text().matches("GET /_matrix/client/v3/sync 200").count() == parked_logs {
        assert!(Instant::now() < deadline, "the parked sync of a departed client was kept");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_unread_body_closes_the_connection_and_the_answer_says_so() {
    let s = Server::start();
    let mut c = connect(&s);
    // An upload refused before its body is read (no token): 1 MiB declared,
    // the first 64 KiB sent.
    c.write_all(b"POST /_matrix/media/v3/upload HTTP/1.1\r\nContent-Type: image/png\r\nContent-Length: 1048576\r\n\r\n")
        .expect("head");
    c.write_all(&vec![0u8; 64 * 1024]).expect("body start");
    let response = read_to_close(&mut c);
    assert_json_error(&response, 401, "M_MISSING_TOKEN");
    assert!(response.contains("\r\nConnection: close\r\n"), "{response}");
    // A request whose body was read keeps its connection, without the header.
    let mut c = connect(&s);
    c.write_all(b"POST /_matrix/client/v3/login HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}").expect("send");
    let response = read_response(&mut c);
    assert_eq!(status_of(&response), 400, "{response}");
    assert!(!response.contains("Connection: close"), "{response}");
    c.write_all(b"GET /_matrix/client/versions HTTP/1.1\r\n\r\n").expect("send");
    assert_eq!(status_of(&read_response(&mut c)), 200);
}
