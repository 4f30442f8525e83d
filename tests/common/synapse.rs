//! A real Synapse for the cross-server tests: installed once from PyPI by
//! `contrib/interop/install.sh` (a cached venv), configured and run by
//! `contrib/interop/synapse.sh`, one process per [`Synapse`], in a fresh
//! temporary directory, on a free loopback port, HTTPS with a certificate
//! of the test's [`TestCa`], named by its IP literal `127.0.0.1:PORT` (so
//! no well-known, SRV or DNS is involved: servers find each other by the
//! name alone). It trusts the test CA for federation, may reach loopback
//! addresses, and has open registration and no effective rate limits.
//!
//! Start one (or several) per test; it is killed when dropped, and by the
//! kernel if the test process dies first.
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::ca::TestCa;
use super::{free_port, TempDir, V3};

/// How long Synapse may take from spawn to answering HTTPS (about 3 to 6
/// seconds on an idle machine; CI machines are busy).
const READY_WAIT: Duration = Duration::from_secs(90);
/// Bound on any one HTTP exchange with Synapse.
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the port may be open with wrong answers before giving up.
const FAILING_WAIT: Duration = Duration::from_secs(10);
/// How many ports to try when the free one was taken before Synapse bound it.
const PORT_ATTEMPTS: usize = 3;

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/interop").join(name)
}

/// The Synapse version `contrib/interop/install.sh` pins.
pub fn pinned_version() -> String {
    let text = std::fs::read_to_string(script("install.sh")).expect("reading contrib/interop/install.sh");
    text.lines()
        .find_map(|l| l.strip_prefix("SYNAPSE_VERSION="))
        .expect("SYNAPSE_VERSION= in install.sh")
        .trim()
        .to_owned()
}

/// Runs `contrib/interop/install.sh` once per test process (quick when the
/// venv is already there, a minute or so when not); panics, saying why,
/// when Synapse cannot be installed.
fn ensure_installed() {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    let result = INSTALLED.get_or_init(|| {
        let out = Command::new("bash")
            .arg(script("install.sh"))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running contrib/interop/install.sh: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "contrib/interop/install.sh failed ({}); run contrib/test-deps.sh or contrib/interop/install.sh \
                 (needs PyPI, and python3 with venv):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(e) = result {
        panic!("Synapse is not installed: {e}");
    }
}

/// Spawns `cmd` so that the kernel kills it (SIGKILL) when the test
/// process dies without dropping its [`Synapse`] (killed by a timeout,
/// aborted): `PR_SET_PDEATHSIG`. That signal comes when the *thread* that
/// spawned the child ends, so every child is spawned by one thread that
/// lives as long as the process; a Synapse may then be started from any
/// thread, or kept in a `static`.
fn spawn_for_life(mut cmd: Command) -> std::io::Result<Child> {
    type Job = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("synapse-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("starting the spawner thread");
        Mutex::new(tx)
    });
    // SAFETY: prctl(2) is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner.lock().unwrap_or_else(|p| p.into_inner()).send((cmd, reply_tx)).expect("the spawner thread runs");
    reply_rx.recv().expect("the spawner thread answers")
}

/// A running Synapse.
pub struct Synapse {
    dir: TempDir,
    port: u16,
    server_name: String,
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
    extra: Option<PathBuf>,
    child: Option<Child>,
    agent: ureq::Agent,
    /// How long the last start took, spawn to answering.
    pub startup: Duration,
}

impl Synapse {
    /// A Synapse with the harness's configuration.
    pub fn start(ca: &TestCa) -> Synapse {
        Synapse::start_with(ca, "")
    }

    /// A Synapse with `extra_yaml` appended to its homeserver.yaml (a key
    /// given again there overrides the harness's).
    pub fn start_with(ca: &TestCa, extra_yaml: &str) -> Synapse {
        ensure_installed();
        let dir = TempDir::new();
        let (cert, key) = ca.issue(dir.path(), "127.0.0.1");
        let extra = (!extra_yaml.is_empty()).then(|| {
            let path = dir.join("extra.yaml");
            std::fs::write(&path, extra_yaml).expect("writing extra.yaml");
            path
        });
        let agent = ureq::AgentBuilder::new()
            .timeout(HTTP_TIMEOUT)
            .redirects(0)
            .try_proxy_from_env(false)
            .tls_config(ca.client_config())
            .build();
        let mut synapse = Synapse {
            dir,
            port: 0,
            server_name: String::new(),
            cert,
            key,
            ca: ca.pem_path().to_owned(),
            extra,
            child: None,
            agent,
            startup: Duration::ZERO,
        };
        for attempt in 1..=PORT_ATTEMPTS {
            let port = free_port();
            match synapse.spawn(port) {
                Ok(()) => return synapse,
                Err(e) if attempt < PORT_ATTEMPTS && e.contains("Address already in use") => {
                    // Another process took the port first: start afresh.
                    for file in ["homeserver.db", "homeserver.db-wal", "homeserver.db-shm"] {
                        let _ = std::fs::remove_file(synapse.dir.join(file));
                    }
                }
                Err(e) => panic!("{e}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Starts Synapse on `port` (with a fresh database only the first
    /// time) and waits until it answers; Err with the reason and its log
    /// when it exits first or does not answer in time.
    fn spawn(&mut self, port: u16) -> Result<(), String> {
        self.port = port;
        self.server_name = format!("127.0.0.1:{port}");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("stderr.log"))
            .expect("opening stderr.log");
        let stdout = stderr.try_clone().expect("cloning the stderr.log handle");
        let mut cmd = Command::new("bash");
        cmd.arg(script("synapse.sh"))
            .arg(self.dir.path())
            .arg(&self.server_name)
            .arg(port.to_string())
            .arg(&self.cert)
            .arg(&self.key)
            .arg(&self.ca);
        if let Some(extra) = &self.extra {
            cmd.arg(extra);
        }
        cmd.stdin(Stdio::null()).stdout(stdout).stderr(stderr);
        let started = Instant::now();
        self.child = Some(spawn_for_life(cmd).expect("spawning contrib/interop/synapse.sh"));
        let deadline = started + READY_WAIT;
        // Since when the port has been open but the answer wrong (a TLS
        // failure, say): that does not get better by waiting long.
        let mut failing_since: Option<Instant> = None;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().expect("waiting for synapse"))
            {
                self.child = None;
                return Err(format!(
                    "Synapse exited before answering ({status}); its log:\n{}",
                    self.log_tail(80)
                ));
            }
            let problem = match self.version_answer() {
                Ok(()) => {
                    self.startup = started.elapsed();
                    return Ok(());
                }
                Err(None) => None,
                Err(Some(problem)) => Some(problem),
            };
            let now = Instant::now();
            let failing = problem.as_ref().map(|_| *failing_since.get_or_insert(now));
            if problem.is_none() {
                failing_since = None;
            }
            if now > deadline || failing.is_some_and(|since| now - since > FAILING_WAIT) {
                self.kill();
                return Err(format!(
                    "Synapse did not answer on port {port} within {:?} ({}); its log:\n{}",
                    now - started,
                    problem.as_deref().unwrap_or("connection refused"),
                    self.log_tail(80)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the federation version endpoint answers 200 over HTTPS:
    /// Err(None) while the port is closed, Err(Some(what)) for any other
    /// failure.
    fn version_answer(&self) -> Result<(), Option<String>> {
        let url = self.url("/_matrix/federation/v1/version");
        match self.agent.get(&url).timeout(Duration::from_secs(5)).call() {
            Ok(r) if r.status() == 200 => Ok(()),
            Ok(r) => Err(Some(format!("status {}", r.status()))),
            Err(ureq::Error::Status(code, _)) => Err(Some(format!("status {code}"))),
            Err(ureq::Error::Transport(t)) if t.kind() == ureq::ErrorKind::ConnectionFailed => Err(None),
            Err(ureq::Error::Transport(t)) => Err(Some(t.to_string())),
        }
    }

    /// Kills Synapse (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills Synapse and starts it again on the same port, with the same
    /// database, keys and configuration.
    pub fn restart(&mut self) {
        self.kill();
        let port = self.port;
        if let Err(e) = self.spawn(port) {
            panic!("restarting Synapse: {e}");
        }
    }

    /// Its server name, `127.0.0.1:PORT`.
    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory of its configuration, database and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process ID of the running Synapse.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("synapse running").id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.server_name)
    }

    /// The user ID of `localpart` on this server.
    pub fn user_id(&self, localpart: &str) -> String {
        format!("@{localpart}:{}", self.server_name)
    }

    /// Its log (`homeserver.log`, then whatever it wrote to stdout and
    /// stderr).
    pub fn log_text(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        let mut text = read("homeserver.log");
        let stderr = read("stderr.log");
        if !stderr.trim().is_empty() {
            text.push_str("\n--- stdout and stderr ---\n");
            text.push_str(&stderr);
        }
        text
    }

    /// The last `n` lines of [`Synapse::log_text`].
    pub fn log_tail(&self, n: usize) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// A JSON request over HTTPS, with an access token if given; the
    /// status and the JSON body (`Null` if none or not JSON). Panics on a
    /// transport error, with the tail of Synapse's log.
    pub fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> (u16, Value) {
        let mut rq = self.agent.request(method, &self.url(path));
        if let Some(t) = token {
            rq = rq.set("Authorization", &format!("Bearer {t}"));
        }
        let result = match body {
            Some(b) => rq.send_json(b),
            None => rq.call(),
        };
        let response = match result {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(ureq::Error::Transport(t)) => {
                panic!("{method} {path} to Synapse: {t}; its log ends:\n{}", self.log_tail(40))
            }
        };
        let status = response.status();
        let text = response.into_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
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

    /// Registers `localpart` through the client API (the `m.login.dummy`
    /// UIA stage); (user ID, access token).
    pub fn register(&self, localpart: &str, password: &str) -> (String, String) {
        let mut body = json!({ "username": localpart, "password": password });
        let (status, first) = self.post(&format!("{V3}/register"), None, body.clone());
        assert_eq!(status, 401, "Synapse's first register answer: {first}");
        let session = first["session"].as_str().expect("a UIA session").to_owned();
        body["auth"] = json!({ "type": "m.login.dummy", "session": session });
        let (status, done) = self.post(&format!("{V3}/register"), None, body);
        assert_eq!(status, 200, "registering {localpart} on Synapse: {done}");
        (
            done["user_id"].as_str().expect("user_id").to_owned(),
            done["access_token"].as_str().expect("access_token").to_owned(),
        )
    }
}

impl Drop for Synapse {
    fn drop(&mut self) {
        self.kill();
    }
}
