//! The static binaries of `contrib/build-static.sh`: the x86-64 one runs
//! here natively, the aarch64 one under `qemu-aarch64-static` (Debian
//! `qemu-user-static`). Each starts, answers `/versions`, registers a user
//! and sends a message; each stays within the size budget. Cold start (to
//! the first `/versions` answer) and idle RSS are printed, for the record.
//!
//! Needs the tools .ci/run installs (musl-tools, gcc-aarch64-linux-gnu,
//! qemu-user-static, the rustup musl targets); without them the test fails
//! rather than passing by doing nothing. The build is a no-op when the
//! binaries are up to date.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::TempDir;
use serde_json::{json, Value};

/// The design's budget for the stripped binary.
const SIZE_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// Startup under emulation is slow; this bounds it.
const START_WAIT: Duration = Duration::from_secs(120);
/// After start, memory settles this long before RSS is read.
const SETTLE: Duration = Duration::from_secs(2);

const X86_64: &str = "x86_64-unknown-linux-musl";
const AARCH64: &str = "aarch64-unknown-linux-musl";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Builds (or finds up to date) the static binary for `target`.
fn build(target: &str) -> PathBuf {
    let status = Command::new("bash")
        .arg(root().join("contrib/build-static.sh"))
        .arg(target)
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .expect("running contrib/build-static.sh");
    assert!(
        status.success(),
        "contrib/build-static.sh {target} failed: see above (.ci/run installs what it needs)"
    );
    let bin = root().join("target/static").join(target).join("release/hearth");
    let size = std::fs::metadata(&bin).expect("the built binary").len();
    eprintln!("figure: {target} binary {size} bytes ({:.2} MiB)", size as f64 / 1048576.0);
    assert!(size <= SIZE_MAX_BYTES, "{target}: {size} bytes is over the 10 MB budget");
    bin
}

/// A server process (possibly qemu running it), killed on drop.
struct Running {
    child: Child,
    port: u16,
    started_in: Duration,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(mut cmd: Command, dir: &Path) -> Running {
    let t0 = Instant::now();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--registration", "open", "--workers", "2"])
        .arg("--database")
        .arg(dir.join("hearth.db"))
        .env("HEARTH_RATE_LIMIT_BURST", "1000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawning the static binary");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("  | {line}");
            if let Some(port) = line.split(" on http://").nth(1).and_then(|r| r.split_whitespace().next()) {
                if let Some(port) = port.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()) {
                    let _ = tx.send(port);
                }
            }
        }
    });
    let port = rx.recv_timeout(START_WAIT).expect("the static binary printed its serving line");
    let agent = agent();
    loop {
        if matches!(agent.get(&format!("http://127.0.0.1:{port}/_matrix/client/versions")).call(), Ok(r) if r.status() == 200)
        {
            break;
        }
        assert!(t0.elapsed() < START_WAIT, "no /versions answer");
        std::thread::sleep(Duration::from_millis(5));
    }
    Running { child, port, started_in: t0.elapsed() }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(Duration::from_secs(120)).build()
}

fn call(port: u16, method: &str, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
    let mut rq = agent().request(method, &format!("http://127.0.0.1:{port}{path}"));
    if let Some(t) = token {
        rq = rq.set("Authorization", &format!("Bearer {t}"));
    }
    let response = match rq.send_json(body.clone()) {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {path}: {e}"),
    };
    let status = response.status();
    (status, response.into_json().unwrap_or(Value::Null))
}

/// Start, /versions, register, create a room, send a message.
fn exercise(label: &str, cmd: Command) {
    let dir = TempDir::new();
    let server = start(cmd, dir.path());
    // Idle memory is the measure: the pause is the point, not a wait.
    std::thread::sleep(SETTLE);
    let rss = common::proc_status(server.child.id(), "VmRSS");
    eprintln!(
        "figure: {label}: cold start to first /versions {} ms, idle RSS {rss} KiB",
        server.started_in.as_millis()
    );
    let port = server.port;
    let v3 = "/_matrix/client/v3";
    let mut body = json!({"username": "pi", "password": "a long passphrase"});
    let (status, first) = call(port, "POST", &format!("{v3}/register"), None, &body);
    assert_eq!(status, 401, "{first}");
    body["auth"] = json!({"type": "m.login.dummy", "session": first["session"]});
    let (status, done) = call(port, "POST", &format!("{v3}/register"), None, &body);
    assert_eq!(status, 200, "{done}");
    let token = done["access_token"].as_str().expect("token").to_owned();
    let (status, room) = call(port, "POST", &format!("{v3}/createRoom"), Some(&token), &json!({}));
    assert_eq!(status, 200, "{room}");
    let room_id = room["room_id"].as_str().expect("room id").replace('!', "%21").replace(':', "%3A");
    let (status, sent) = call(
        port,
        "PUT",
        &format!("{v3}/rooms/{room_id}/send/m.room.message/t1"),
        Some(&token),
        &json!({"msgtype": "m.text", "body": "hello from a small machine"}),
    );
    assert_eq!(status, 200, "{sent}");
    assert!(sent["event_id"].as_str().is_some_and(|e| e.starts_with('$')), "{sent}");
}

#[test]
fn static_binaries_run_natively_and_under_qemu() {
    let x86 = build(X86_64);
    // A static binary has no program interpreter (no dynamic loader).
    let elf = std::fs::read(&x86).expect("read binary");
    assert!(!elf.windows(b"ld-linux".len()).any(|w| w == b"ld-linux"), "the x86-64 binary is static");
    exercise("x86_64 (native)", Command::new(&x86));

    let qemu = match Command::new("qemu-aarch64-static").arg("--version").output() {
        Ok(out) if out.status.success() => "qemu-aarch64-static",
        _ => panic!("qemu-aarch64-static not found: apt-get install qemu-user-static (.ci/run does)"),
    };
    let arm = build(AARCH64);
    let mut cmd = Command::new(qemu);
    cmd.arg(&arm);
    exercise("aarch64 (qemu-aarch64-static)", cmd);
}
