//! The fake servers: each a server name `127.0.0.1:PORT` with its own
//! ed25519 key and its own TLS listener (a certificate from the run's CA),
//! speaking just enough HTTP/1.1 (Content-Length or chunked bodies,
//! keep-alive, a thread per connection).
//!
//! What every fake server answers by itself: `GET /_matrix/key/v2/server`
//! (its self-signed key document) and `PUT /_matrix/federation/v1/send/…`
//! (every PDU recorded in the shared [`Inbox`] with when it arrived,
//! answered `{"pdus": {id: {}}}`). A [`Resident`] (the room a mode is the
//! resident server of) may answer more; anything else is a 404
//! `M_UNRECOGNIZED`, counted. Hearth's own `X-Matrix` signatures on its
//! requests are not checked: the benchmark measures Hearth, not itself.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hearth::core::event;
use hearth::core::room_version::RoomVersion;
use hearth::crypto::sign::ServerKey;
use serde_json::{json, Value};

use crate::Result;

/// How long a connection may sit idle before the fake server closes it.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest request head read, in bytes.
const HEAD_BYTES_MAX: usize = 64 * 1024;
/// The largest request body read, in bytes.
const BODY_BYTES_MAX: usize = 64 * 1024 * 1024;
/// How long the key document says it is valid for.
const KEY_VALIDITY_MS: i64 = 24 * 60 * 60 * 1000;
/// Requests nobody answers that are kept (method and path) for the report.
const UNRECOGNISED_KEPT_MAX: usize = 50;

/// One request to a fake server.
pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub body: Vec<u8>,
}

impl Request {
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// An answer's body: made for this request, or shared (the big
/// pre-serialised `send_join` answer).
pub enum Body {
    Owned(Vec<u8>),
    Shared(Arc<Vec<u8>>),
}

pub struct Answer {
    pub status: u16,
    pub body: Body,
}

impl Answer {
    pub fn json(status: u16, v: &Value) -> Answer {
        Answer { status, body: Body::Owned(v.to_string().into_bytes()) }
    }

    pub fn error(status: u16, errcode: &str, error: &str) -> Answer {
        Answer::json(status, &json!({ "errcode": errcode, "error": error }))
    }
}

/// The room a mode is the resident server of: answers `make_join` and
/// `send_join` (or whatever it recognises); `None` for anything else.
pub trait Resident: Send + Sync {
    fn answer(&self, fake: &Fake, req: &Request) -> Option<Answer>;
}

/// A fake server's identity.
pub struct Fake {
    pub index: usize,
    /// `127.0.0.1:PORT`.
    pub name: String,
    pub key: ServerKey,
    key_doc: Vec<u8>,
}

/// What the fake servers received, shared by all of them.
pub struct Inbox {
    state: Mutex<InboxState>,
    cond: Condvar,
}

#[derive(Default)]
struct InboxState {
    /// The room version the received PDUs' IDs are computed for.
    version: Option<&'static RoomVersion>,
    /// Event ID → (fake server index, arrival), in arrival order.
    arrivals: HashMap<String, Vec<(usize, Instant)>>,
    transactions: usize,
    pdus: usize,
    /// TLS connections accepted.
    connections: usize,
    /// PDUs whose ID could not be computed (no version known yet, or not
    /// an event).
    unidentified: usize,
    /// Requests answered 404, and the first few of them.
    unrecognised: usize,
    unrecognised_kept: Vec<String>,
}

/// What the fake servers saw, for the report.
pub struct InboxCounts {
    pub connections: usize,
    pub transactions: usize,
    pub pdus: usize,
    pub unidentified: usize,
    pub unrecognised: usize,
    pub unrecognised_kept: Vec<String>,
}

impl Inbox {
    fn lock(&self) -> MutexGuard<'_, InboxState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The room version for computing the IDs of PDUs received from now on.
    pub fn set_version(&self, version: &'static RoomVersion) {
        self.lock().version = Some(version);
    }

    /// Records `pdus` as received by fake server `server` now; their IDs.
    fn record(&self, server: usize, pdus: &[Value]) -> Vec<String> {
        let now = Instant::now();
        let mut st = self.lock();
        st.transactions += 1;
        let mut ids = Vec::with_capacity(pdus.len());
        for pdu in pdus {
            st.pdus += 1;
            let id = st.version.and_then(|v| event::event_id(v, pdu).ok());
            match id {
                Some(id) => {
                    st.arrivals.entry(id.clone()).or_default().push((server, now));
                    ids.push(id);
                }
                None => st.unidentified += 1,
            }
        }
        drop(st);
        self.cond.notify_all();
        ids
    }

    fn unrecognised(&self, what: String) {
        let mut st = self.lock();
        st.unrecognised += 1;
        if st.unrecognised_kept.len() < UNRECOGNISED_KEPT_MAX {
            st.unrecognised_kept.push(what);
        }
    }

    /// Waits until `event_id` reached every fake server `servers` names
    /// (or `deadline` passed); the first arrival at each of those that it
    /// reached.
    pub fn wait_for(&self, event_id: &str, servers: &[usize], deadline: Instant) -> Vec<(usize, Instant)> {
        let mut st = self.lock();
        loop {
            let firsts = first_arrivals(st.arrivals.get(event_id), servers);
            let now = Instant::now();
            if firsts.len() == servers.len() || now >= deadline {
                return firsts;
            }
            st = self.cond.wait_timeout(st, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    pub fn counts(&self) -> InboxCounts {
        let st = self.lock();
        InboxCounts {
            connections: st.connections,
            transactions: st.transactions,
            pdus: st.pdus,
            unidentified: st.unidentified,
            unrecognised: st.unrecognised,
            unrecognised_kept: st.unrecognised_kept.clone(),
        }
    }
}

/// The first arrival at each of `servers` among `arrivals`.
fn first_arrivals(arrivals: Option<&Vec<(usize, Instant)>>, servers: &[usize]) -> Vec<(usize, Instant)> {
    let mut firsts: Vec<(usize, Instant)> = Vec::new();
    for &(server, at) in arrivals.into_iter().flatten() {
        if servers.contains(&server) && !firsts.iter().any(|(s, _)| *s == server) {
            firsts.push((server, at));
        }
    }
    firsts
}

/// The running fake servers.
pub struct FakeNet {
    pub fakes: Vec<Arc<Fake>>,
    pub inbox: Arc<Inbox>,
}

impl FakeNet {
    /// Starts `count` fake servers on loopback, each with its own key,
    /// port and certificate (all from `config`'s CA).
    pub fn start(
        count: usize,
        config: Arc<rustls::ServerConfig>,
        resident: Option<Arc<dyn Resident>>,
    ) -> Result<FakeNet> {
        let inbox = Arc::new(Inbox { state: Mutex::new(InboxState::default()), cond: Condvar::new() });
        let mut fakes = Vec::with_capacity(count);
        for index in 0..count {
            let listener = TcpListener::bind("127.0.0.1:0")?;
            let name = format!("127.0.0.1:{}", listener.local_addr()?.port());
            let key = ServerKey::generate().map_err(|e| format!("a random key: {e}"))?;
            let mut doc = json!({
                "server_name": name,
                "verify_keys": { key.key_id(): { "key": key.public_key_b64() } },
                "old_verify_keys": {},
                "valid_until_ts": hearth::util::now_ms() + KEY_VALIDITY_MS,
            });
            key.sign_json(&name, &mut doc)?;
            let fake = Arc::new(Fake { index, name, key, key_doc: doc.to_string().into_bytes() });
            fakes.push(fake.clone());
            let (config, inbox, resident) = (config.clone(), inbox.clone(), resident.clone());
            std::thread::Builder::new().name(format!("fake-{index}")).spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    inbox.lock().connections += 1;
                    let (config, inbox, resident, fake) =
                        (config.clone(), inbox.clone(), resident.clone(), fake.clone());
                    let spawned =
                        std::thread::Builder::new().name(format!("fake-{index}-conn")).spawn(move || {
                            let ctx = Ctx { fake: &fake, inbox: &inbox, resident: resident.as_deref() };
                            if let Err(e) = serve(stream, config, &ctx) {
                                eprintln!("fake server {}: connection ended: {e}", fake.name);
                            }
                        });
                    if let Err(e) = spawned {
                        eprintln!("fake server: no thread for a connection: {e}");
                    }
                }
            })?;
        }
        Ok(FakeNet { fakes, inbox })
    }
}

struct Ctx<'a> {
    fake: &'a Fake,
    inbox: &'a Inbox,
    resident: Option<&'a dyn Resident>,
}

impl Ctx<'_> {
    fn answer(&self, req: &Request) -> Answer {
        let path = req.path();
        if req.method == "GET"
            && (path == "/_matrix/key/v2/server" || path.starts_with("/_matrix/key/v2/server/"))
        {
            return Answer { status: 200, body: Body::Owned(self.fake.key_doc.clone()) };
        }
        if req.method == "PUT" && path.starts_with("/_matrix/federation/v1/send/") {
            let Some(txn) = req.json() else {
                return Answer::error(400, "M_NOT_JSON", "the transaction is not JSON");
            };
            let pdus = txn.get("pdus").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            let ids = self.inbox.record(self.fake.index, pdus);
            let results: serde_json::Map<String, Value> = ids.into_iter().map(|id| (id, json!({}))).collect();
            return Answer::json(200, &json!({ "pdus": results }));
        }
        if let Some(answer) = self.resident.and_then(|r| r.answer(self.fake, req)) {
            return answer;
        }
        self.inbox.unrecognised(format!("{} {path}", req.method));
        Answer::error(404, "M_UNRECOGNIZED", "the benchmark's fake server does not serve this")
    }
}

type Tls = rustls::StreamOwned<rustls::ServerConnection, TcpStream>;

/// Serves one connection's requests in turn until the client closes it.
fn serve(stream: TcpStream, config: Arc<rustls::ServerConfig>, ctx: &Ctx) -> Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    let tls: Tls = rustls::StreamOwned::new(rustls::ServerConnection::new(config)?, stream);
    let mut conn = BufReader::new(tls);
    loop {
        let Some((req, close)) = read_request(&mut conn)? else {
            return Ok(());
        };
        let answer = ctx.answer(&req);
        let body: &[u8] = match &answer.body {
            Body::Owned(b) => b,
            Body::Shared(b) => b,
        };
        let head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n",
            answer.status,
            if answer.status < 400 { "OK" } else { "Error" },
            body.len(),
            if close { "Connection: close\r\n" } else { "" },
        );
        let out = conn.get_mut();
        out.write_all(head.as_bytes())?;
        out.write_all(body)?;
        out.flush()?;
        if close {
            out.conn.send_close_notify();
            let _ = out.flush();
            return Ok(());
        }
    }
}

/// Reads one request; `None` when the client closed the connection
/// between requests. The flag says the connection closes after it.
fn read_request(conn: &mut BufReader<Tls>) -> Result<Option<(Request, bool)>> {
    let mut head = String::new();
    let mut lines: Vec<String> = Vec::new();
    loop {
        let mut line = String::new();
        let n = match conn.read_line(&mut line) {
            Ok(n) => n,
            // A client that goes away between requests, TLS-style or not.
            Err(e) if lines.is_empty() && is_disconnect(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            if lines.is_empty() {
                return Ok(None);
            }
            return Err("the connection closed inside a request head".into());
        }
        head.push_str(&line);
        if head.len() > HEAD_BYTES_MAX {
            return Err("a request head too large".into());
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            if lines.is_empty() {
                continue; // Stray CRLF between requests.
            }
            break;
        }
        lines.push(line.to_owned());
    }
    let mut first = lines[0].split_whitespace();
    let method = first.next().unwrap_or("").to_owned();
    let target = first.next().unwrap_or("").to_owned();
    let version = first.next().unwrap_or("");
    let header = |name: &str| {
        lines[1..].iter().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    let connection = header("connection").unwrap_or_default().to_ascii_lowercase();
    let close = connection.contains("close") || (version == "HTTP/1.0" && !connection.contains("keep-alive"));
    let body = if header("transfer-encoding").is_some_and(|t| t.to_ascii_lowercase().contains("chunked")) {
        read_chunked(conn)?
    } else {
        let len: usize = header("content-length").map(|v| v.parse()).transpose()?.unwrap_or(0);
        if len > BODY_BYTES_MAX {
            return Err(format!("a body of {len} bytes").into());
        }
        let mut body = vec![0; len];
        conn.read_exact(&mut body)?;
        body
    };
    Ok(Some((Request { method, target, body }, close)))
}

fn read_chunked(conn: &mut BufReader<Tls>) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        conn.read_line(&mut line)?;
        let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)?;
        if body.len() + size > BODY_BYTES_MAX {
            return Err("a chunked body too large".into());
        }
        let start = body.len();
        body.resize(start + size, 0);
        conn.read_exact(&mut body[start..])?;
        let mut crlf = String::new();
        conn.read_line(&mut crlf)?;
        if size == 0 {
            // Trailers, if any, end with an empty line; `crlf` was the first.
            let mut trailer = crlf;
            while !trailer.trim().is_empty() {
                trailer.clear();
                conn.read_line(&mut trailer)?;
            }
            return Ok(body);
        }
    }
}

fn is_disconnect(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe | TimedOut | WouldBlock
    )
}
