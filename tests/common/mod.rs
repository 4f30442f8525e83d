//! The harness of the HTTP tests: starts a real `hearth serve` on a loopback
//! port with a database in a fresh temporary directory, talks to it with
//! ureq, and runs the admin commands of the same binary.
//!
//! Every test gets its own server and directory, so tests never share
//! state. Each test binary uses a different subset of the helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub mod ca;
pub mod fed;
pub mod synapse;

/// The binary under test.
pub const HEARTH: &str = env!("CARGO_BIN_EXE_hearth");
/// How long a server may take to print its "serving" line.
const STARTUP_WAIT: Duration = Duration::from_secs(30);
/// How long a server may take to exit after a signal.
const EXIT_WAIT: Duration = Duration::from_secs(30);
/// Bound on any one HTTP exchange, so a hung server fails a test instead
/// of hanging it.
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);

/// The client-server API prefix the tests use unless they test another.
pub const V3: &str = "/_matrix/client/v3";

/// A directory under the system temp dir, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new() -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("hearth-test-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).expect("creating a temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// An HTTP answer: status, headers (names lower-cased), body text, and the
/// body as JSON (`Null` when empty or not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub text: String,
    pub json: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }
}

/// A running `hearth serve`.
pub struct Server {
    dir: TempDir,
    args: Vec<String>,
    /// How many of `args` `restart_with` added.
    extra_args: usize,
    envs: Vec<(String, String)>,
    child: Option<Child>,
    pub port: u16,
    log: Arc<Mutex<Vec<String>>>,
    agent: ureq::Agent,
}

impl Server {
    /// A server with open registration and no effective rate limit.
    pub fn start() -> Server {
        Server::start_with(&[], &[])
    }

    /// A server with extra arguments and environment. `--listen`,
    /// `--database` and `--registration` given in `args` replace the
    /// harness's defaults; `envs` are applied after the harness's generous
    /// rate limits, so they may override those.
    pub fn start_with(args: &[&str], envs: &[(&str, &str)]) -> Server {
        let dir = TempDir::new();
        let given = |opt: &str| args.iter().any(|a| *a == opt || a.starts_with(&format!("{opt}=")));
        let mut full: Vec<String> = vec!["serve".into()];
        if !given("--listen") {
            full.extend(["--listen".into(), "127.0.0.1:0".into()]);
        }
        if !given("--database") {
            full.extend(["--database".into(), dir.join("hearth.db").display().to_string()]);
        }
        if !given("--registration") {
            full.extend(["--registration".into(), "open".into()]);
        }
        full.extend(args.iter().map(|a| a.to_string()));
        let mut all_envs: Vec<(String, String)> = vec![
            ("HEARTH_RATE_LIMIT_PER_SECOND".into(), "1000".into()),
            ("HEARTH_RATE_LIMIT_BURST".into(), "1000".into()),
        ];
        all_envs.extend(envs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let agent = ureq::AgentBuilder::new().timeout(HTTP_TIMEOUT).redirects(0).build();
        let mut server = Server {
            dir,
            args: full,
            extra_args: 0,
            envs: all_envs,
            child: None,
            port: 0,
            log: Arc::new(Mutex::new(Vec::new())),
            agent,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let mut cmd = clean_command();
        cmd.args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawning hearth");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel::<String>();
        let log = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                log.lock().unwrap_or_else(|p| p.into_inner()).push(line.clone());
                let _ = tx.send(line);
            }
        });
        self.child = Some(child);
        let deadline = Instant::now() + STARTUP_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(port) = serving_port(&line) {
                        self.port = port;
                        return;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("hearth did not start within {STARTUP_WAIT:?}; stderr:\n{}", self.log_text())
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.as_mut().and_then(|c| c.wait().ok());
                    panic!("hearth exited before serving ({status:?}); stderr:\n{}", self.log_text())
                }
            }
        }
    }

    /// The directory the server's files live in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The database file the harness gave the server.
    pub fn db(&self) -> PathBuf {
        self.dir.join("hearth.db")
    }

    /// Everything the server wrote to stderr so far (across restarts).
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).join("\n")
    }

    /// The running server's process ID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// Sends `signal` to the running server (e.g. SIGHUP), leaving it running.
    pub fn signal(&self, signal: libc::c_int) {
        let child = self.child.as_ref().expect("server running");
        // SAFETY: kill(2) with a pid we spawned and have not yet reaped.
        let rc = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({signal}) failed");
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for the process and returns how it ended.
    pub fn terminate(&mut self) -> ExitStatus {
        self.stop_with(libc::SIGTERM)
    }

    /// Sends `signal`, then waits for the process and returns how it ended.
    pub fn stop_with(&mut self, signal: libc::c_int) -> ExitStatus {
        let mut child = self.child.take().expect("server running");
        // SAFETY: kill(2) with a pid we spawned and have not yet reaped.
        let rc = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({signal}) failed");
        let deadline = Instant::now() + EXIT_WAIT;
        loop {
            if let Some(status) = child.try_wait().expect("waiting for hearth") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "hearth did not exit within {EXIT_WAIT:?} of signal {signal}; stderr:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server again with the same arguments and database (after
    /// `kill9` or `terminate`; kills a running one first).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Restarts with `extra` arguments after the ones it started with (a
    /// later call replaces the earlier extras; none goes back to the start).
    pub fn restart_with(&mut self, extra: &[&str]) {
        let base = self.args.len() - self.extra_args;
        self.args.truncate(base);
        self.args.extend(extra.iter().map(|a| a.to_string()));
        self.extra_args = extra.len();
        self.restart();
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Any request. `body` is sent as is (no Content-Type added unless in
    /// `headers`); `None` sends no body.
    pub fn raw(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Reply {
        let mut rq = self.agent.request(method, &self.url(path));
        for (k, v) in headers {
            rq = rq.set(k, v);
        }
        let result = match body {
            Some(b) => rq.send_bytes(b),
            None => rq.call(),
        };
        reply(method, path, result)
    }

    /// Sends a body of unknown length (chunked transfer encoding).
    pub fn raw_chunked(&self, method: &str, path: &str, token: Option<&str>, body: Vec<u8>) -> Reply {
        let mut rq = self.agent.request(method, &self.url(path)).set("Content-Type", "application/json");
        if let Some(t) = token {
            rq = rq.set("Authorization", &format!("Bearer {t}"));
        }
        reply(method, path, rq.send(std::io::Cursor::new(body)))
    }

    /// A JSON request; returns the status and the JSON body (`Null` if none).
    pub fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> (u16, Value) {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        let bytes = body.map(|b| serde_json::to_vec(b).expect("serialising"));
        let r = self.raw(method, path, &headers, bytes.as_deref());
        (r.status, r.json)
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        self.call("GET", path, token, None)
    }

    pub fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        self.call("POST", path, token, Some(&body))
    }

    pub fn put(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        self.call("PUT", path, token, Some(&body))
    }

    pub fn delete(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        self.call("DELETE", path, token, Some(&body))
    }

    /// Registers `user` through the open-registration UIA dance and returns
    /// (user_id, access_token, device_id).
    pub fn register(&self, user: &str, password: &str) -> (String, String, String) {
        let mut body = json!({ "username": user, "password": password });
        let (status, first) = self.post(&format!("{V3}/register"), None, body.clone());
        assert_eq!(status, 401, "first register call: {first}");
        let session = first["session"].as_str().expect("UIA session").to_owned();
        body["auth"] = json!({ "type": "m.login.dummy", "session": session });
        let (status, done) = self.post(&format!("{V3}/register"), None, body);
        assert_eq!(status, 200, "register {user}: {done}");
        (
            done["user_id"].as_str().expect("user_id").to_owned(),
            done["access_token"].as_str().expect("access_token").to_owned(),
            done["device_id"].as_str().expect("device_id").to_owned(),
        )
    }

    /// Logs `user` (a localpart or full ID) in with a password; returns the
    /// whole login answer.
    pub fn login_body(&self, user: &str, password: &str) -> Value {
        let (status, body) = self.post(&format!("{V3}/login"), None, password_login(user, password));
        assert_eq!(status, 200, "login {user}: {body}");
        body
    }

    /// Logs in and returns the access token.
    pub fn login(&self, user: &str, password: &str) -> String {
        self.login_body(user, password)["access_token"].as_str().expect("access_token").to_owned()
    }

    /// Runs an admin command against this server's database.
    pub fn hearth(&self, args: &[&str], stdin: &str) -> (i32, String, String) {
        let db = self.db().display().to_string();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--database", db.as_str()]);
        hearth(&all, stdin)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The body of a password login with an `m.id.user` identifier.
pub fn password_login(user: &str, password: &str) -> Value {
    json!({
        "type": "m.login.password",
        "identifier": { "type": "m.id.user", "user": user },
        "password": password,
    })
}

/// The `auth` object of a UIA password stage.
pub fn password_auth(user_id: &str, password: &str, session: &str) -> Value {
    json!({
        "type": "m.login.password",
        "identifier": { "type": "m.id.user", "user": user_id },
        "password": password,
        "session": session,
    })
}

/// Asserts a Matrix error: status, errcode, and a string `error`.
#[track_caller]
pub fn assert_error(got: &(u16, Value), status: u16, errcode: &str) {
    let (s, body) = got;
    assert_eq!((*s, body["errcode"].as_str()), (status, Some(errcode)), "body: {body}");
    assert!(body["error"].is_string(), "error message missing: {body}");
}

/// The port in the line `... serving NAME on http://127.0.0.1:PORT ...`.
fn serving_port(line: &str) -> Option<u16> {
    if !line.contains(" serving ") {
        return None;
    }
    let rest = line.split(" on http://").nth(1)?;
    let addr = rest.split_whitespace().next()?;
    addr.rsplit_once(':')?.1.parse().ok()
}

fn reply(method: &str, path: &str, result: Result<ureq::Response, ureq::Error>) -> Reply {
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(ureq::Error::Transport(t)) => panic!("{method} {path}: transport error: {t}"),
    };
    let status = response.status();
    let headers = response
        .headers_names()
        .into_iter()
        .map(|name| {
            let value = response.header(&name).unwrap_or("").to_owned();
            (name.to_ascii_lowercase(), value)
        })
        .collect();
    let mut bytes = Vec::new();
    response
        .into_reader()
        .read_to_end(&mut bytes)
        .unwrap_or_else(|e| panic!("{method} {path}: reading the body: {e}"));
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply { status, headers, text, json }
}

/// A command for the binary with no `HEARTH_*` variables inherited from the
/// environment running the tests.
fn clean_command() -> Command {
    let mut cmd = Command::new(HEARTH);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("HEARTH_") {
            cmd.env_remove(&key);
        }
    }
    cmd
}

/// Runs `hearth ARGS` with `stdin`; returns (exit code, stdout, stderr).
pub fn hearth(args: &[&str], stdin: &str) -> (i32, String, String) {
    hearth_env(args, &[], stdin)
}

/// Like [`hearth`], with extra environment variables.
pub fn hearth_env(args: &[&str], envs: &[(&str, &str)], stdin: &str) -> (i32, String, String) {
    let mut child = clean_command()
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning hearth");
    {
        let mut input = child.stdin.take().expect("piped stdin");
        // A command that does not read stdin may exit first; that is fine.
        let _ = input.write_all(stdin.as_bytes());
    }
    let out = child.wait_with_output().expect("waiting for hearth");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A registered user: their ID and access token.
pub struct User {
    pub id: String,
    pub token: String,
}

impl Server {
    /// Registers `name` with `password` and returns the user.
    pub fn user(&self, name: &str, password: &str) -> User {
        let (id, token, _) = self.register(name, password);
        User { id, token }
    }
}

/// Percent-encodes everything but unreserved characters, for path segments.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `/_matrix/client/v3/rooms/{room}/{rest}` with the room ID encoded.
pub fn room_path(room: &str, rest: &str) -> String {
    format!("{V3}/rooms/{}/{rest}", enc(room))
}

/// A numeric field of `/proc/{pid}/status` (`VmRSS` in KiB, `Threads`).
pub fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field).and_then(|rest| rest.strip_prefix(':')))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// Creates a room with `body` as `token`'s user; its ID.
#[track_caller]
pub fn create_room(s: &Server, token: &str, body: Value) -> String {
    let (status, r) = s.post(&format!("{V3}/createRoom"), Some(token), body);
    assert_eq!(status, 200, "createRoom: {r}");
    r["room_id"].as_str().expect("room_id").to_owned()
}

/// Sends a text message with transaction ID `txn`; its event ID.
#[track_caller]
pub fn send_text(s: &Server, token: &str, room: &str, txn: &str, body: &str) -> String {
    let (status, r) = s.put(
        &room_path(room, &format!("send/m.room.message/{txn}")),
        Some(token),
        json!({ "msgtype": "m.text", "body": body }),
    );
    assert_eq!(status, 200, "send: {r}");
    r["event_id"].as_str().expect("event_id").to_owned()
}

/// GET as `who` with a 200 expected; the body.
#[track_caller]
pub fn get_ok(s: &Server, who: &User, path: &str) -> Value {
    let (status, body) = s.get(path, Some(&who.token));
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

// ------------------------------------------------------------ room helpers

/// Creates a public room (`preset: public_chat`) as `token`'s user; its ID.
#[track_caller]
pub fn public_room(s: &Server, token: &str) -> String {
    create_room(s, token, json!({ "preset": "public_chat" }))
}

/// `POST /rooms/{room}/{action}` (join, leave, invite, kick...) with `body`
/// as `token`'s user, which must answer 200; the answer.
#[track_caller]
pub fn room_post(s: &Server, token: &str, room: &str, action: &str, body: Value) -> Value {
    let (status, reply) = s.post(&room_path(room, action), Some(token), body);
    assert_eq!(status, 200, "{action} {room}: {reply}");
    reply
}

/// Joins `room` (by ID) as `token`'s user; must succeed.
#[track_caller]
pub fn join(s: &Server, token: &str, room: &str) {
    room_post(s, token, room, "join", json!({}));
}

/// `POST /join/{room_id_or_alias}` as `token`'s user; the answer, whatever
/// it is.
pub fn try_join(s: &Server, token: &str, room_id_or_alias: &str) -> (u16, Value) {
    s.post(&format!("{V3}/join/{}", enc(room_id_or_alias)), Some(token), json!({}))
}

/// Invites `user_id` to `room` as `token`'s user; must succeed.
#[track_caller]
pub fn invite(s: &Server, token: &str, room: &str, user_id: &str) {
    room_post(s, token, room, "invite", json!({ "user_id": user_id }));
}

/// Leaves `room` as `token`'s user; must succeed.
#[track_caller]
pub fn leave(s: &Server, token: &str, room: &str) {
    room_post(s, token, room, "leave", json!({}));
}

/// The rooms `token`'s user is joined to (`/joined_rooms`), sorted.
#[track_caller]
pub fn joined_rooms(s: &Server, token: &str) -> Vec<String> {
    let (status, body) = s.get(&format!("{V3}/joined_rooms"), Some(token));
    assert_eq!(status, 200, "joined_rooms: {body}");
    let mut rooms: Vec<String> = body["joined_rooms"]
        .as_array()
        .expect("joined_rooms")
        .iter()
        .map(|r| r.as_str().expect("room ID").to_owned())
        .collect();
    rooms.sort();
    rooms
}

/// The content of the state event `kind`/`key` of `room`, read by
/// `token`'s user with `GET /rooms/{room}/state/{kind}/{key}` (must be 200).
#[track_caller]
pub fn state_content(s: &Server, token: &str, room: &str, kind: &str, key: &str) -> Value {
    let path = room_path(room, &format!("state/{kind}/{}", enc(key)));
    let (status, body) = s.get(&path, Some(token));
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// Sets the state event `kind`/`key` of `room` as `token`'s user (must be
/// 200); its event ID.
#[track_caller]
pub fn set_state(s: &Server, token: &str, room: &str, kind: &str, key: &str, content: Value) -> String {
    let (status, r) = s.put(&room_path(room, &format!("state/{kind}/{}", enc(key))), Some(token), content);
    assert_eq!(status, 200, "state {kind}: {r}");
    r["event_id"].as_str().expect("event_id").to_owned()
}

/// Sends an `m.room.message` with `content` and a transaction ID not used
/// before in this test binary; its event ID.
#[track_caller]
pub fn send_message(s: &Server, token: &str, room: &str, content: Value) -> String {
    static TXN: AtomicUsize = AtomicUsize::new(0);
    let txn = TXN.fetch_add(1, Ordering::Relaxed);
    let (status, r) = s.put(&room_path(room, &format!("send/m.room.message/t{txn}")), Some(token), content);
    assert_eq!(status, 200, "send: {r}");
    r["event_id"].as_str().expect("event_id").to_owned()
}

/// The content of an `m.text` message with `body`.
pub fn text(body: &str) -> Value {
    json!({ "msgtype": "m.text", "body": body })
}

/// Sends the text message `body` with a fresh transaction ID; its event ID.
#[track_caller]
pub fn say(s: &Server, token: &str, room: &str, body: &str) -> String {
    send_message(s, token, room, text(body))
}

// ------------------------------------------------------------ sync helpers

/// `GET /sync{query}` as `token`'s user (`query` is "" or starts with
/// `?`); asserts a 200 with a `next_batch`.
#[track_caller]
pub fn sync(s: &Server, token: &str, query: &str) -> Value {
    let (status, r) = s.get(&format!("{V3}/sync{query}"), Some(token));
    assert_eq!(status, 200, "sync{query}: {r}");
    assert!(r["next_batch"].is_string(), "sync{query} without a next_batch: {r}");
    r
}

/// An incremental sync since `since` that does not wait (`timeout=0`).
#[track_caller]
pub fn sync_since(s: &Server, token: &str, since: &str) -> Value {
    sync(s, token, &format!("?since={since}&timeout=0"))
}

/// The `next_batch` token of a sync answer.
#[track_caller]
pub fn next_batch(sync: &Value) -> String {
    sync["next_batch"].as_str().expect("next_batch").to_owned()
}

/// The timeline events of a joined room in a sync answer (none if the room
/// is not there).
pub fn timeline<'a>(sync: &'a Value, room: &str) -> &'a [Value] {
    sync["rooms"]["join"][room]["timeline"]["events"].as_array().map_or(&[], Vec::as_slice)
}

/// The `content.body` of each event of a list (`events` an array of
/// events) that has a string body, in order.
pub fn bodies(events: &Value) -> Vec<String> {
    events
        .as_array()
        .expect("a list of events")
        .iter()
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

// ---------------------------------------------------- waiting on the server

/// Bound on waiting for something the server does in the background.
pub const WAIT: Duration = Duration::from_secs(30);

/// Polls `done` until it holds, failing after [`WAIT`] with `what` and the
/// server's log.
#[track_caller]
pub fn wait_until(s: &Server, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}; server log:\n{}", s.log_text());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A loopback TCP port that was free a moment ago (bound, then released),
/// for a server that must know its port before it starts (its server name
/// is `127.0.0.1:PORT`). Another process may take it in between: a caller
/// that can tell retries with another.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a free loopback port");
    listener.local_addr().expect("the bound address").port()
}

/// The wall clock in milliseconds since the Unix epoch, as the server
/// stamps events.
pub fn now_ms() -> i64 {
    let since =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("a clock after 1970");
    i64::try_from(since.as_millis()).expect("milliseconds fit")
}

/// How many lines of the server's log so far contain `needle`.
pub fn log_count(s: &Server, needle: &str) -> usize {
    s.log_text().lines().filter(|l| l.contains(needle)).count()
}

/// Waits until the server's log has `count` lines containing `needle`.
#[track_caller]
pub fn wait_for_log(s: &Server, needle: &str, count: usize) {
    wait_until(s, &format!("{count} × {needle:?} in the log"), || log_count(s, needle) >= count);
}

/// The debug line the hub logs when it parks a long-poll of `user_id`
/// (needs a server started with `--log-level debug`).
pub fn parked_line(user_id: &str) -> String {
    format!("long-poll of {user_id} parked (")
}

/// How many times a long-poll of `user_id` has been parked so far.
pub fn parks_of(s: &Server, user_id: &str) -> usize {
    log_count(s, &parked_line(user_id))
}

/// Runs `long_poll` (a `/sync` or `/events` of `user_id` with a timeout of
/// `timeout`) on another thread, waits until the hub has parked it (one
/// park of `user_id` more than before), then runs `change` and returns
/// the long-poll's answer and what `change` returned. Asserts the answer
/// came well before the timeout, so the change woke it. The server must
/// run with `--log-level debug`.
#[track_caller]
pub fn woken_by<T: Send, C>(
    s: &Server,
    user_id: &str,
    timeout: Duration,
    long_poll: impl FnOnce() -> T + Send,
    change: impl FnOnce() -> C,
) -> (T, C) {
    let before = parks_of(s, user_id);
    let started = Instant::now();
    std::thread::scope(|scope| {
        let waiter = scope.spawn(long_poll);
        wait_for_log(s, &parked_line(user_id), before + 1);
        let changed = change();
        let answer = waiter.join().expect("the long-poll");
        let took = started.elapsed();
        assert!(took < timeout / 2, "the long-poll of {user_id} was not woken: answered after {took:?}");
        (answer, changed)
    })
}

/// Starts a server that logs at debug level (parked long-polls), with
/// extra `args` and `envs` as for [`Server::start_with`].
pub fn start_debug(args: &[&str], envs: &[(&str, &str)]) -> Server {
    let mut all = vec!["--log-level", "debug"];
    all.extend_from_slice(args);
    Server::start_with(&all, envs)
}
