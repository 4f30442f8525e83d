//! Crash and shutdown behaviour: an acknowledged write survives SIGKILL,
//! and SIGTERM or SIGINT shut down cleanly (exit 0) leaving the database
//! as one self-contained file.

mod common;

use std::os::unix::process::ExitStatusExt;

use common::{assert_error, password_auth, password_login, Server, TempDir, V3};
use serde_json::json;

const PW: &str = "durable-password-1";

#[test]
fn acknowledged_writes_survive_sigkill() {
    let mut s = Server::start();
    s.register("alice", PW);
    s.kill9();
    s.restart();
    s.login("alice", PW);

    // A password change acknowledged just before the crash holds too.
    let (user_id, token, device) = s.register("bob", PW);
    let (status, uia) =
        s.post(&format!("{V3}/account/password"), Some(&token), json!({ "new_password": "bob-new-pw" }));
    assert_eq!(status, 401, "{uia}");
    let session = uia["session"].as_str().expect("session");
    let (status, body) = s.post(
        &format!("{V3}/account/password"),
        Some(&token),
        json!({ "new_password": "bob-new-pw", "auth": password_auth(&user_id, PW, session) }),
    );
    assert_eq!(status, 200, "{body}");
    s.kill9();
    s.restart();
    let old = s.post(&format!("{V3}/login"), None, password_login("bob", PW));
    assert_error(&old, 403, "M_FORBIDDEN");
    s.login("bob", "bob-new-pw");
    // The session that made the change is still signed in.
    let (status, me) = s.get(&format!("{V3}/account/whoami"), Some(&token));
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["device_id"], device.as_str());
}

#[test]
fn sigterm_is_a_clean_shutdown() {
    let mut s = Server::start();
    let (_, token, _) = s.register("carol", PW);
    let status = s.terminate();
    assert_eq!(status.code(), Some(0), "{status:?}; log:\n{}", s.log_text());
    let log = s.log_text();
    assert!(log.contains("shut down cleanly"), "{log}");

    // The WAL was checkpointed: the main file alone holds everything.
    let wal = s.dir().join("hearth.db-wal");
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(wal_len, 0, "WAL left with {wal_len} bytes");
    let elsewhere = TempDir::new();
    let copy = elsewhere.join("only-the-main-file.db");
    std::fs::copy(s.db(), &copy).expect("copying the database file");
    let copy = copy.display().to_string();
    let from_copy = Server::start_with(&["--database", &copy], &[]);
    from_copy.login("carol", PW);

    // And the original restarts with the session intact.
    s.restart();
    let (status, me) = s.get(&format!("{V3}/account/whoami"), Some(&token));
    assert_eq!(status, 200, "{me}");
}

#[test]
fn sigint_is_a_clean_shutdown_too() {
    let mut s = Server::start();
    s.register("dave", PW);
    let status = s.stop_with(libc::SIGINT);
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert_eq!(status.signal(), None);
    s.restart();
    s.login("dave", PW);
}
