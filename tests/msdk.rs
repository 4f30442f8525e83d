//! Hearth through matrix-rust-sdk, the library Element X runs: simplified
//! sliding sync (MSC4186) through the SDK's sync service and room list
//! (issue 14). The client is `tests/msdk/`, a Cargo project of its own (the
//! SDK's few hundred crates stay out of the server's build), built here on
//! first use into `tests/msdk/target` (or `HEARTH_MSDK_TARGET_DIR`); each
//! test runs one scenario of it against a fresh server and checks the facts
//! it prints.

mod common;

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::Server;
use serde_json::{json, Value};

/// The simplified sliding sync endpoint (unstable prefix, as clients use it).
const MSC4186: &str = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";
/// Bound on building the harness (a cold build takes minutes: see below).
const BUILD_WAIT: Duration = Duration::from_secs(45 * 60);
/// Bound on one scenario run (the harness bounds itself at 150 s).
const RUN_WAIT: Duration = Duration::from_secs(200);
/// Recorded exchanges shown when a scenario fails (all are in the record
/// file, `msdk-record.jsonl` in the server's directory, while it runs).
const SHOWN_EXCHANGES: usize = 8;
/// Characters shown of one sliding sync exchange.
const EXCHANGE_CHARS: usize = 3000;

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Waits for `child` at most `wait`; kills its process group after that.
fn wait_bounded(child: &mut Child, wait: Duration, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + wait;
    loop {
        if let Some(status) = child.try_wait().expect("waiting for a child") {
            return status;
        }
        if Instant::now() > deadline {
            // SAFETY: kill(2) on the process group we made for this child.
            unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
            let _ = child.wait();
            panic!("{what} did not finish within {wait:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Builds `tests/msdk` once per test binary; the path of its executable.
fn harness() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    static BUILDING: Mutex<()> = Mutex::new(());
    let _one = BUILDING.lock().unwrap_or_else(|p| p.into_inner());
    BUILT
        .get_or_init(|| {
            let project = manifest_dir().join("tests/msdk");
            let target = std::env::var_os("HEARTH_MSDK_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| project.join("target"));
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let started = Instant::now();
            let mut child = Command::new(cargo)
                .args(["build", "--locked", "--quiet", "--manifest-path"])
                .arg(project.join("Cargo.toml"))
                .env("CARGO_TARGET_DIR", &target)
                .stdin(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("running cargo to build tests/msdk");
            let status = wait_bounded(&mut child, BUILD_WAIT, "building tests/msdk");
            assert!(status.success(), "building tests/msdk failed ({status}); see the cargo output above");
            eprintln!("tests/msdk built in {:?}", started.elapsed());
            target.join("debug/hearth-msdk")
        })
        .clone()
}

/// What one run printed: its facts by name, its result line, and the
/// recorded exchanges of the SDK.
struct Run {
    facts: BTreeMap<String, Value>,
    result: Value,
}

impl Run {
    #[track_caller]
    fn fact(&self, name: &str) -> &Value {
        self.facts.get(name).unwrap_or_else(|| panic!("no {name} fact; facts: {:?}", self.facts))
    }
}

/// `v` as JSON, cut at `max` characters.
fn cut(v: &Value, max: usize) -> String {
    let mut text = v.to_string();
    if text.len() > max {
        let at = (0..=max).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        text.truncate(at);
        text.push_str(" …");
    }
    text
}

/// The last `n` recorded exchanges: method, path and status, and for the
/// sliding sync ones the response and the request (cut at
/// `EXCHANGE_CHARS`).
fn exchanges(record: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(record).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    for line in &lines[lines.len().saturating_sub(n)..] {
        let v: Value = serde_json::from_str(line).unwrap_or(Value::Null);
        let path = v["path"].as_str().unwrap_or(line);
        out.push_str(&format!("{} {path} -> {}\n", v["method"].as_str().unwrap_or("?"), v["status"]));
        if path.starts_with(MSC4186) {
            out.push_str(&format!("  response: {}\n", cut(&v["response"], EXCHANGE_CHARS)));
            out.push_str(&format!("  request: {}\n", cut(&v["request"], EXCHANGE_CHARS)));
        }
    }
    out
}

/// Fails clearly if the server has no simplified sliding sync endpoint.
fn require_endpoint(s: &Server) {
    let (_, token, _) = s.register("probe", "probe-password");
    let (status, body) = s.post(MSC4186, Some(&token), json!({ "lists": {} }));
    assert!(
        status != 404 && status != 405,
        "the server has no simplified sliding sync (MSC4186): POST {MSC4186} answered {status} {body}"
    );
}

/// Runs `scenario` of the harness against `s`; panics with what it saw, what
/// the SDK sent and was answered, and the server log if it fails.
fn run(s: &Server, scenario: &str) -> Run {
    require_endpoint(s);
    let exe = harness();
    let record = s.dir().join("msdk-record.jsonl");
    let stdout_path = s.dir().join("msdk-stdout");
    let stderr_path = s.dir().join("msdk-stderr");
    let mut child = Command::new(&exe)
        .arg(scenario)
        .arg(s.url(""))
        .arg("--record")
        .arg(&record)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", exe.display()));
    let status = wait_bounded(&mut child, RUN_WAIT, scenario);
    let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let mut facts = BTreeMap::new();
    let mut result = Value::Null;
    for line in stdout.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
        if let Some(name) = v["fact"].as_str() {
            facts.entry(name.to_owned()).or_insert(v.clone());
        } else if v.get("scenario").is_some() {
            result = v;
        }
    }
    if !(status.success() && result["ok"] == true) {
        let log = s.log_text();
        let log_tail: Vec<&str> = log.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
        panic!(
            "{scenario} failed ({status}) at {}: {}\n\nfacts seen:\n{stdout}\nstderr:\n{stderr}\n\
             the SDK's last exchanges:\n{}\nserver log (tail):\n{}",
            result["step"].as_str().unwrap_or("?"),
            result["error"].as_str().unwrap_or("no result line"),
            exchanges(&record, SHOWN_EXCHANGES),
            log_tail.join("\n")
        );
    }
    Run { facts, result }
}

#[test]
fn msdk_room_list_invite_join_messages_receipts_typing() {
    let s = Server::start();
    let run = run(&s, "room-list");
    assert_eq!(run.result["ok"], true);
    let registered = run.fact("registered");
    let (a, b) = (registered["a"].clone(), registered["b"].clone());
    assert_eq!(run.fact("logged_in")["user_id"], a);
    let room = run.fact("invited")["room_id"].clone();
    let invite = run.fact("invite_seen");
    assert_eq!(invite["room_id"], room);
    assert_eq!(invite["inviter"], b);
    assert_eq!(run.fact("joined")["room_id"], room);
    assert_eq!(run.fact("history_seen")["messages"], 25);
    let received = run.fact("message_received");
    assert_eq!(received["sender"], b);
    assert_eq!(received["event_id"], received["sent_as"]);
    let sent = run.fact("message_sent")["event_id"].clone();
    assert_eq!(run.fact("message_read_by_b")["event_id"], sent);
    let receipt = run.fact("receipt_seen");
    assert_eq!((&receipt["event_id"], &receipt["user"]), (&sent, &b));
    let typers = run.fact("typing_seen")["users"].as_array().cloned().unwrap_or_default();
    assert!(typers.contains(&b), "{typers:?}");
    assert_eq!(run.fact("typing_stopped")["user"], b);
    let idle = run.fact("idle_requests")["by_conn_id"].as_object().cloned().unwrap_or_default();
    assert!(idle.contains_key("room-list") && idle.contains_key("encryption"), "{idle:?}");
    // Element X offers sliding sync only if /versions advertises it.
    assert_eq!(
        run.fact("sliding_sync_advertised")["value"],
        true,
        "org.matrix.simplified_msc3575 in /versions"
    );
}
