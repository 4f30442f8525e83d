//! The Hearth under test: a real binary started on a fresh database in the
//! run's directory, on its embedded defaults plus what federating on
//! loopback needs (its name `127.0.0.1:TLSPORT`, HTTPS there with a
//! certificate from the run's CA, `outbound_allow_private`, the CA as
//! `outbound_ca_file`), open registration and rate limits raised as
//! contrib/bench/run.sh raises them. Its client API is spoken over plain
//! HTTP, its federation API over HTTPS with `X-Matrix` signatures.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hearth::crypto::sign::ServerKey;
use hearth::util::percent_encode;
use serde_json::{json, Value};

use crate::tls::Ca;
use crate::Result;

/// How long Hearth may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How often readiness is polled.
const POLL: Duration = Duration::from_millis(20);
/// The client's timeout for one request (the big join included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

pub struct Hearth {
    child: Child,
    pub pid: u32,
    /// `127.0.0.1:PORT` of the client API (plain HTTP).
    client_addr: String,
    /// `127.0.0.1:TLSPORT`: its server name and HTTPS address.
    pub name: String,
    pub log: PathBuf,
    plain: ureq::Agent,
    tls: ureq::Agent,
}

/// A port free at the moment (bound, then released).
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Hearth {
    /// Starts `bin` with its data in `dir`; returns once both listeners answer.
    pub fn start(bin: &Path, dir: &Path, ca: &Ca) -> Result<Hearth> {
        let (client_port, tls_port) = (free_port()?, free_port()?);
        let client_addr = format!("127.0.0.1:{client_port}");
        let name = format!("127.0.0.1:{tls_port}");
        let (cert, key) = ca.issue_loopback()?;
        let (cert_path, key_path) = (dir.join("hearth.pem"), dir.join("hearth.key"));
        std::fs::write(&cert_path, cert)?;
        std::fs::write(&key_path, key)?;
        let log = dir.join("hearth.log");
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .args(["--listen", &client_addr])
            .arg("--database")
            .arg(dir.join("hearth.db"))
            .args(["--server-name", &name, "--tls-listen", &name])
            .arg("--tls-cert")
            .arg(&cert_path)
            .arg("--tls-key")
            .arg(&key_path)
            .args(["--outbound-allow-private", "true"])
            .arg("--outbound-ca-file")
            .arg(ca.pem_path())
            .args(["--registration", "open", "--log-level"])
            // BENCH_LOG_LEVEL=info shows, e.g., the phases of a join.
            .arg(std::env::var("BENCH_LOG_LEVEL").unwrap_or_else(|_| "warn".into()))
            .env("HEARTH_RATE_LIMIT_PER_SECOND", "100000")
            .env("HEARTH_RATE_LIMIT_BURST", "100000")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log)?);
        let child = cmd.spawn().map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let pid = child.id();
        let plain = ureq::AgentBuilder::new().timeout(REQUEST_TIMEOUT).redirects(0).build();
        let tls = ureq::AgentBuilder::new()
            .tls_config(ca.client_config()?)
            .timeout(REQUEST_TIMEOUT)
            .redirects(0)
            .build();
        let mut hearth = Hearth { child, pid, client_addr, name, log, plain, tls };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = hearth.child.try_wait()? {
                return Err(format!("Hearth exited at start ({status}); see {}", hearth.log.display()).into());
            }
            let client =
                hearth.plain.get(&format!("http://{}/_matrix/client/versions", hearth.client_addr)).call();
            let server = hearth.tls.get(&format!("https://{}/_matrix/key/v2/server", hearth.name)).call();
            if client.is_ok() && server.is_ok() {
                return Ok(hearth);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "Hearth did not answer within {START_TIMEOUT:?}; see {}",
                    hearth.log.display()
                )
                .into());
            }
            std::thread::sleep(POLL);
        }
    }

    /// A client API call; (status, JSON body or null).
    pub fn client(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(u16, Value)> {
        let mut rq = self.plain.request(method, &format!("http://{}{path}", self.client_addr));
        if let Some(t) = token {
            rq = rq.set("Authorization", &format!("Bearer {t}"));
        }
        answer(match body {
            Some(b) => rq.send_json(b),
            None => rq.call(),
        })
    }

    /// A client API call that must succeed; its JSON body.
    pub fn client_ok(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Value> {
        let (status, v) = self.client(method, path, token, body)?;
        if status != 200 {
            return Err(format!("{method} {path}: {status} {v}").into());
        }
        Ok(v)
    }

    /// Registers `user` through the open-registration UIA dance; (user ID,
    /// access token).
    pub fn register(&self, user: &str) -> Result<(String, String)> {
        let mut body = json!({ "username": user, "password": "bench-password-1", "inhibit_login": false });
        let (status, first) = self.client("POST", "/_matrix/client/v3/register", None, Some(&body))?;
        if status != 401 {
            return Err(format!("register {user}: expected a 401 UIA step, got {status} {first}").into());
        }
        body["auth"] = json!({ "type": "m.login.dummy", "session": first["session"] });
        let done = self.client_ok("POST", "/_matrix/client/v3/register", None, Some(&body))?;
        let field = |k: &str| done[k].as_str().map(str::to_owned).ok_or_else(|| format!("register: no {k}"));
        Ok((field("user_id")?, field("access_token")?))
    }

    /// A federation request to Hearth signed as `origin` with `key`;
    /// (status, JSON body or null).
    pub fn federation(
        &self,
        key: &ServerKey,
        origin: &str,
        method: &str,
        uri: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value)> {
        let auth = hearth::federation::xmatrix::authorization(key, origin, &self.name, method, uri, body)?;
        let rq = self.tls.request(method, &format!("https://{}{uri}", self.name)).set("Authorization", &auth);
        answer(match body {
            Some(b) => rq.send_json(b),
            None => rq.call(),
        })
    }

    /// A federation request to Hearth with its Authorization header and
    /// JSON body made beforehand; (status, JSON body or null).
    pub fn federation_raw(&self, method: &str, uri: &str, auth: &str, body: &[u8]) -> Result<(u16, Value)> {
        let rq = self
            .tls
            .request(method, &format!("https://{}{uri}", self.name))
            .set("Authorization", auth)
            .set("Content-Type", "application/json");
        answer(rq.send_bytes(body))
    }

    /// `(VmRSS, VmHWM)` in KiB, from /proc/PID/status.
    pub fn memory_kib(&self) -> Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        let field = |name: &str| -> Result<u64> {
            let line = status.lines().find(|l| l.starts_with(name)).ok_or_else(|| format!("no {name}"))?;
            Ok(line.split_whitespace().nth(1).ok_or("no value")?.parse()?)
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// Resets the peak RSS (VmHWM) to the current RSS: "5" into
    /// /proc/PID/clear_refs. (VmHWM before the reset, whether VmHWM then
    /// read no more than VmRSS did plus `slack_kib`.)
    pub fn reset_peak(&self, slack_kib: u64) -> Result<(u64, bool)> {
        let (_, before) = self.memory_kib()?;
        std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5")?;
        let (rss, hwm) = self.memory_kib()?;
        Ok((before, hwm <= rss + slack_kib))
    }

    pub fn room_path(room_id: &str) -> String {
        format!("/_matrix/client/v3/rooms/{}", percent_encode(room_id))
    }

    /// Stops Hearth (SIGTERM, then waits for it).
    pub fn stop(mut self) -> Result<()> {
        self.terminate();
        Ok(())
    }

    fn terminate(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // SIGTERM: Hearth shuts down cleanly on it.
            let _ = Command::new("kill").args(["-TERM", &self.pid.to_string()]).status();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Hearth {
    fn drop(&mut self) {
        self.terminate();
    }
}

fn answer(result: std::result::Result<ureq::Response, ureq::Error>) -> Result<(u16, Value)> {
    let response = match result {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Err(e.into()),
    };
    let status = response.status();
    // Read whole: `into_string` stops at 10 MB.
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut response.into_reader(), &mut bytes)?;
    Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
}
