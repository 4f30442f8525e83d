//! The federation test bed: Hearth servers on 127.0.0.1 named by IP
//! literal (`127.0.0.1:PORT`), serving HTTPS on that port with a
//! certificate from the test's throwaway CA, trusting that CA for their
//! outbound requests and allowed to reach loopback — only the config keys
//! the issue names (`outbound_allow_private`, `outbound_ca_file`) plus
//! short retry bounds. The harness signs requests as a server too
//! (`signed`), with any key, to test what a receiver accepts.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::ca::TestCa;
use super::Server;

/// A Hearth server on the bed.
pub struct Peer {
    pub server: Server,
    /// `127.0.0.1:PORT`, its server name and HTTPS address.
    pub name: String,
    pub tls_port: u16,
}

pub use super::free_port;

impl Peer {
    /// Starts a Hearth on the bed with extra `args` and `envs`.
    pub fn start(ca: &TestCa, args: &[&str], envs: &[(&str, &str)]) -> Peer {
        let tls_port = free_port();
        let name = format!("127.0.0.1:{tls_port}");
        let tls_listen = name.clone();
        let (cert, key) = ca.issue(ca.pem_path().parent().expect("the CA's directory"), "127.0.0.1");
        let (cert, key) = (cert.display().to_string(), key.display().to_string());
        let ca_file = ca.pem_path().display().to_string();
        let mut all: Vec<&str> = vec![
            "--server-name",
            &name,
            "--tls-listen",
            &tls_listen,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--outbound-allow-private",
            "true",
            "--outbound-ca-file",
            &ca_file,
            "--federation-retry-min-ms",
            "200",
            "--federation-retry-max-ms",
            "2000",
        ];
        all.extend_from_slice(args);
        let server = Server::start_with(&all, envs);
        Peer { server, name, tls_port }
    }

    /// The server's own signing key, read from its database.
    pub fn signing_key(&self) -> hearth::crypto::sign::ServerKey {
        signing_key_of(&self.server.db())
    }
}

/// The current signing key stored in a Hearth database.
pub fn signing_key_of(db: &Path) -> hearth::crypto::sign::ServerKey {
    let conn = rusqlite::Connection::open(db).expect("opening the database");
    let (id, seed): (String, Vec<u8>) = conn
        .query_row(
            "SELECT key_id, seed FROM server_keys WHERE expired_ts IS NULL ORDER BY created_ts DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("a signing key");
    hearth::crypto::sign::ServerKey::from_seed(&id, &seed.try_into().expect("32 bytes"))
}

/// An HTTPS agent trusting the CA only.
pub fn agent(ca: &TestCa) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .tls_config(ca.client_config())
        .timeout(Duration::from_secs(60))
        .redirects(0)
        .build()
}

/// A request over HTTPS to `server` (`127.0.0.1:PORT`) with the given
/// Authorization header values; (status, JSON body or null).
pub fn call(
    agent: &ureq::Agent,
    method: &str,
    server: &str,
    uri: &str,
    authorization: &[String],
    body: Option<&Value>,
) -> (u16, Value) {
    let mut rq = agent.request(method, &format!("https://{server}{uri}"));
    for a in authorization {
        rq = rq.set("Authorization", a);
    }
    let result = match body {
        Some(b) => rq.send_json(b.clone()),
        None => rq.call(),
    };
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {uri} on {server}: {e}"),
    };
    let status = response.status();
    let text = response.into_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A request to `destination` signed as `origin` with `key`.
pub fn signed(
    agent: &ureq::Agent,
    key: &hearth::crypto::sign::ServerKey,
    origin: &str,
    destination: &str,
    method: &str,
    uri: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let auth = hearth::federation::xmatrix::authorization(key, origin, destination, method, uri, body)
        .expect("signing");
    call(agent, method, destination, uri, &[auth], body)
}

/// Shared for tests that need one CA across servers.
pub fn new_ca(dir: &Path) -> Arc<TestCa> {
    Arc::new(TestCa::new(dir))
}

/// An answer with its body as bytes (media is binary).
pub struct RawAnswer {
    pub status: u16,
    /// Names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Sends `rq` (with `body`: its content type and bytes) and keeps the
/// answer whole, its body as bytes; any status is an answer.
pub fn exchange(rq: ureq::Request, body: Option<(&str, &[u8])>) -> RawAnswer {
    use std::io::Read;
    let what = format!("{} {}", rq.method(), rq.url());
    let result = match body {
        Some((content_type, bytes)) => rq.set("Content-Type", content_type).send_bytes(bytes),
        None => rq.call(),
    };
    let response = match result {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{what}: {e}"),
    };
    let status = response.status();
    let headers = response
        .headers_names()
        .into_iter()
        .map(|n| {
            let v = response.header(&n).unwrap_or("").to_owned();
            (n.to_ascii_lowercase(), v)
        })
        .collect();
    let mut body = Vec::new();
    response.into_reader().read_to_end(&mut body).expect("reading the body");
    RawAnswer { status, headers, body }
}

/// A GET over HTTPS to `server` with the given Authorization header
/// values, its body kept as bytes.
pub fn get_raw(agent: &ureq::Agent, server: &str, uri: &str, authorization: &[String]) -> RawAnswer {
    let mut rq = agent.get(&format!("https://{server}{uri}"));
    for a in authorization {
        rq = rq.set("Authorization", a);
    }
    exchange(rq, None)
}

/// A GET to `destination` signed as `origin` with `key`, its body as bytes.
pub fn signed_raw(
    agent: &ureq::Agent,
    key: &hearth::crypto::sign::ServerKey,
    origin: &str,
    destination: &str,
    uri: &str,
) -> RawAnswer {
    let auth = hearth::federation::xmatrix::authorization(key, origin, destination, "GET", uri, None)
        .expect("signing");
    get_raw(agent, destination, uri, &[auth])
}

/// One part of a multipart body: its headers (names in lower case) and bytes.
pub type Part = (Vec<(String, String)>, Vec<u8>);

pub fn part_header<'p>(part: &'p Part, name: &str) -> Option<&'p str> {
    part.0.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Parses a `multipart/mixed` body strictly as RFC 2046 frames it (CRLF
/// line ends, `--boundary` lines, a close delimiter `--boundary--`),
/// independently of the server's own parser; panics on anything else.
/// Returns (preamble, parts, epilogue).
pub fn parse_multipart(content_type: &str, body: &[u8]) -> (Vec<u8>, Vec<Part>, Vec<u8>) {
    let (essence, params) = content_type.split_once(';').expect("a Content-Type with parameters");
    assert_eq!(essence.trim(), "multipart/mixed", "{content_type}");
    let boundary = params
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .expect("a boundary parameter")
        .trim_matches('"');
    assert!(!boundary.is_empty() && boundary.len() <= 70, "{boundary}");
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let dash = format!("--{boundary}").into_bytes();
    let delimiter = format!("\r\n--{boundary}").into_bytes();
    // The first delimiter may open the body directly.
    let (preamble, mut rest) = if body.starts_with(&dash) {
        (Vec::new(), &body[dash.len()..])
    } else {
        let at = find(body, &delimiter).expect("a first delimiter");
        (body[..at].to_vec(), &body[at + delimiter.len()..])
    };
    let mut parts = Vec::new();
    loop {
        if let Some(after) = rest.strip_prefix(b"--") {
            let epilogue = after.strip_prefix(b"\r\n").unwrap_or(after);
            return (preamble, parts, epilogue.to_vec());
        }
        let after = rest.strip_prefix(b"\r\n").expect("CRLF after a boundary line");
        let end = find(after, &delimiter).expect("a delimiter after each part");
        let part = &after[..end];
        let (head, bytes) = if let Some(b) = part.strip_prefix(b"\r\n") {
            (&b""[..], b)
        } else {
            let split = find(part, b"\r\n\r\n").expect("a blank line after the part's headers");
            (&part[..split], &part[split + 4..])
        };
        let headers = std::str::from_utf8(head)
            .expect("text headers")
            .split("\r\n")
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (k, v) = l.split_once(':').expect("Name: value");
                (k.trim().to_ascii_lowercase(), v.trim().to_owned())
            })
            .collect();
        parts.push((headers, bytes.to_vec()));
        rest = &after[end + delimiter.len()..];
    }
}

/// What a [`FakeOrigin`] answers: status, headers, body.
pub type FakeAnswer = (u16, Vec<(String, String)>, Vec<u8>);

/// A stand-in for another server's HTTPS listener at `127.0.0.1:PORT`
/// (certificate from the test CA), answering every request with
/// `answer(path and query, its own name)` and closing the connection; it records the
/// requests it got. It checks no signature: for what Hearth does with
/// answers a Hearth would not give (an older server's, a redirect).
pub struct FakeOrigin {
    pub name: String,
    pub requests: Arc<std::sync::Mutex<Vec<String>>>,
}

impl FakeOrigin {
    pub fn start(
        ca: &TestCa,
        answer: impl Fn(&str, &str) -> FakeAnswer + Send + Sync + 'static,
    ) -> FakeOrigin {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let (cert, key) = ca.issue_pem("127.0.0.1");
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert.as_bytes()).map(|c| c.expect("a certificate")).collect();
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("a key");
        let config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("protocol versions")
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .expect("a server configuration");
        let config = Arc::new(config);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding");
        let name = format!("127.0.0.1:{}", listener.local_addr().expect("address").port());
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = requests.clone();
        let own = name.clone();
        let answer = Arc::new(move |target: &str| answer(target, &own));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (config, seen, answer) = (config.clone(), seen.clone(), answer.clone());
                std::thread::spawn(move || serve_one(stream, config, &seen, &*answer));
            }
        });
        FakeOrigin { name, requests }
    }

    /// The requests so far (path and query).
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn serve_one(
    stream: std::net::TcpStream,
    config: Arc<rustls::ServerConfig>,
    seen: &std::sync::Mutex<Vec<String>>,
    answer: &dyn Fn(&str) -> FakeAnswer,
) {
    use std::io::{Read, Write};
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(conn) = rustls::ServerConnection::new(config) else { return };
    let mut tls = rustls::StreamOwned::new(conn, stream);
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tls.read(&mut byte) {
            Ok(1) if head.len() < 64 * 1024 => head.push(byte[0]),
            _ => return,
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let target = text.split_whitespace().nth(1).unwrap_or("").to_owned();
    seen.lock().unwrap_or_else(|p| p.into_inner()).push(target.clone());
    let (status, headers, body) = answer(&target);
    let mut out =
        format!("HTTP/1.1 {status} Fake\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for (k, v) in &headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let _ = tls.write_all(out.as_bytes());
    let _ = tls.write_all(&body);
    let _ = tls.flush();
    tls.conn.send_close_notify();
    let _ = tls.flush();
}
