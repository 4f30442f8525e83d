//! Hearth through a real client library: matrix-js-sdk (the library Element
//! Web is built on), from `tests/js/package.json`, installed by
//! `contrib/test-deps.sh`. Each test runs one scenario of
//! `tests/js/client.mjs` against a fresh server (issue 12).

mod common;

use std::path::Path;
use std::process::Command;

use common::Server;
use serde_json::Value;

/// Runs `scenario` against `s`; returns the script's result line.
fn run(s: &Server, scenario: &str) -> Value {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    assert!(
        dir.join("node_modules/matrix-js-sdk").is_dir(),
        "matrix-js-sdk is not installed: run contrib/test-deps.sh (npm ci in tests/js)"
    );
    let out = Command::new("node")
        .current_dir(&dir)
        .arg("client.mjs")
        .arg(scenario)
        .arg(s.url(""))
        .output()
        .expect("running node (contrib/test-deps.sh installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The crypto library logs to stdout too: the result is the last JSON line.
    let result = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l).ok().filter(|v| v.get("scenario").is_some()))
        .unwrap_or_else(|| {
            panic!("no result line; stdout:\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr))
        });
    assert!(
        out.status.success() && result["ok"] == true,
        "{scenario} failed: {}\nserver log:\n{}",
        result["error"].as_str().unwrap_or("?"),
        s.log_text()
    );
    result
}

#[test]
fn js_sdk_invitee_sees_the_history_after_accepting() {
    let s = Server::start();
    let result = run(&s, "invite-history");
    let seen: Vec<&str> = result["seen"].as_array().expect("seen").iter().filter_map(Value::as_str).collect();
    for i in 0..5 {
        assert!(seen.contains(&format!("before the invite {i}").as_str()), "{seen:?}");
    }
}

#[test]
fn js_sdk_bootstraps_cross_signing() {
    let s = Server::start();
    let result = run(&s, "cross-signing");
    assert_eq!(result["ready"], true, "{result}");
    assert_eq!(result["hasMaster"], true, "{result}");
    assert_eq!(result["deviceSigned"], true, "{result}");
}

#[test]
fn js_sdk_edits_reacts_and_threads_with_bundled_aggregations() {
    let s = Server::start();
    let r = run(&s, "relations");
    let (edit, reaction, reply) = (&r["editId"], &r["reactionId"], &r["replyId"]);
    assert_eq!(r["duplicate"], "M_DUPLICATE_ANNOTATION", "{r}");
    assert_eq!(&r["bundledReplace"], edit, "{r}");
    assert_eq!(r["bundledThreadCount"], 1, "{r}");
    assert_eq!(&r["bundledThreadLatest"], reply, "{r}");
    assert_eq!(r["participated"], true, "alice wrote the root: {r}");
    assert_eq!(r["annotations"], serde_json::json!([reaction]), "{r}");
    assert_eq!(r["threadReplies"], serde_json::json!([reply]), "{r}");
    // The SDK applied the edit it found bundled.
    assert_eq!(&r["replacingEventId"], edit, "{r}");
    assert_eq!(r["shownBody"], "hello", "{r}");
    // The SDK's own reply count (`Thread.length`) starts from the bundled
    // count and adds the replies it meets in the live timeline, so it
    // depends on the order it met them in; the server's count is above.
    assert!(r["threadLength"].as_u64().is_some_and(|n| n >= 1), "{r}");
    assert_eq!(&r["threadLatest"], reply, "{r}");
    assert!(r["threads"].as_array().is_some_and(|t| t.len() == 1), "{r}");
}
