//! The long-poll hub's limit (`max_parked_requests`) through the real
//! server: past it, a long-poll is answered at once with what there is.

mod common;

use std::io::Read;
use std::sync::mpsc;
use std::time::Duration;

use common::{parked_line, wait_for_log, Server, V3};
use serde_json::Value;

/// Bound on one HTTP exchange, so a hung server fails the test.
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);

/// A GET on a connection of its own, as separate clients make them: the
/// harness's shared agent would reuse an idle pooled connection and hide
/// a server that is slow to take new ones.
fn get_on_new_connection(url: &str, token: &str) -> (u16, Value) {
    let agent = ureq::AgentBuilder::new().timeout(HTTP_TIMEOUT).build();
    let response = match agent.get(url).set("Authorization", &format!("Bearer {token}")).call() {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("GET {url}: {e}"),
    };
    let status = response.status();
    let mut bytes = Vec::new();
    response.into_reader().read_to_end(&mut bytes).expect("reading the body");
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[test]
fn a_long_poll_past_the_park_limit_is_answered_at_once() {
    let s = Server::start_with(&["--max-parked-requests", "2", "--log-level", "debug"], &[]);
    let (user, token, _) = s.register("alice", "pw-alice");
    let (status, first) = s.get(&format!("{V3}/sync"), Some(&token));
    assert_eq!(status, 200, "{first}");
    let since = first["next_batch"].as_str().expect("next_batch").to_owned();
    let url = s.url(&format!("{V3}/sync?since={since}&timeout=30000"));

    std::thread::scope(|scope| {
        let (done_tx, done_rx) = mpsc::channel::<(usize, u16, Value)>();
        for i in 0..2 {
            let (url, token, done) = (&url, &token, done_tx.clone());
            scope.spawn(move || {
                let (status, body) = get_on_new_connection(url, token);
                let _ = done.send((i, status, body));
            });
        }
        wait_for_log(&s, &parked_line(&user), 2);

        // The hub is full: the third is answered now, with nothing new,
        // while the first two are still parked (nothing wakes them yet).
        let (status, third) = get_on_new_connection(&url, &token);
        assert_eq!(status, 200, "{third}");
        assert_eq!(third["next_batch"], since.as_str(), "nothing new: {third}");
        assert!(done_rx.try_recv().is_err(), "a parked long-poll returned before the third");

        // Something new wakes the two that are parked.
        let (status, r) = s.post(&format!("{V3}/createRoom"), Some(&token), serde_json::json!({}));
        assert_eq!(status, 200, "{r}");
        for _ in 0..2 {
            let (i, status, body) = done_rx.recv().expect("a parked long-poll");
            assert_eq!(status, 200, "parked {i}: {body}");
            assert_ne!(body["next_batch"], since.as_str(), "parked {i} woke with the new room: {body}");
        }
    });
}
