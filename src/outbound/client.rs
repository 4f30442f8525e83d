//! The one outbound HTTPS client, shared by every user of the server
//! (push gateways now; federation and appservices next).
//!
//! One `ureq::Agent` is kept for the life of the process, so connections
//! (and their TLS sessions) are reused per destination instead of being
//! opened for every request. Every exchange is bounded: connecting
//! (`CONNECT_TIMEOUT`), each read and write (`READ_TIMEOUT`,
//! `WRITE_TIMEOUT`), the whole exchange (`REQUEST_TIMEOUT`), the answer's
//! size (the caller's cap, at most `RESPONSE_BYTES_MAX`) and the idle
//! connections kept (`IDLE_CONNECTIONS_MAX`, `IDLE_PER_HOST_MAX`).
//! Redirects are not followed, and no proxy is used.
//!
//! **Where the address policy is enforced.** The agent's resolver
//! ([`PolicyResolver`]) is the only way ureq turns a host into addresses:
//! it resolves the name, drops every address `policy::is_public` refuses
//! (unless `outbound_allow_private`) and hands ureq only what is left, and
//! ureq connects only to addresses its resolver returned. So the check is
//! made on the very addresses connected to, once per connection, not on an
//! earlier lookup: a name that resolves to a public address when a URL is
//! checked and to `127.0.0.1` a moment later (DNS rebinding) is refused at
//! the second lookup, because that is the one the connection uses. A
//! reused connection was made to an address that passed. IP literals go
//! through the same resolver.
//!
//! **Routes.** ureq hands the resolver only `host:port`. Server discovery
//! needs a connection for `https://delegated:port` to go to an SRV
//! record's target instead while the certificate is still checked for
//! `delegated`: [`Client::route_via`] records that in a bounded map the
//! resolver reads, so the target's addresses pass the same policy, and
//! ureq keeps the URL's host as the TLS name. The `Host` header a request
//! names ([`OutRequest::host`]) replaces the one ureq would write. A
//! route applies to every request of the client it is set on (and its
//! clones) whose URL has that authority; a user whose requests must not
//! follow federation's routes holds a [`Client::detached`] one.
//!
//! Trusted roots: the web roots (`webpki-roots`, so a static binary needs
//! no system CA bundle) plus the PEM certificates of `outbound_ca_file`,
//! for a private CA (tests against other servers use a throwaway one).

use std::collections::HashMap;
use std::io::Read;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::outbound::policy;
use crate::util;

/// Bound on opening a connection (TCP and TLS).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on each read from a destination.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on each write to a destination.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on a whole exchange, connecting included (a streamed answer's
/// reading too).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The most bytes of an answer any caller may ask to read into memory.
pub const RESPONSE_BYTES_MAX: u64 = 16 * 1024 * 1024;
/// The most bytes of a streamed answer any caller may ask to read (the
/// largest `max_upload_bytes`: remote media is kept within it).
pub const STREAM_BYTES_MAX: u64 = 4 * 1024 * 1024 * 1024;
/// Idle connections kept for reuse, over all destinations.
pub const IDLE_CONNECTIONS_MAX: usize = 64;
/// Idle connections kept per host and port.
pub const IDLE_PER_HOST_MAX: usize = 2;
/// Routes (`Client::route_via`) kept; past it the oldest set is dropped.
pub const ROUTES_MAX: usize = 4096;
/// Addresses of one name tried at most (ureq tries them in turn).
const ADDRESSES_MAX: usize = 8;
/// The port ureq puts in the resolver's `host:port` when an `https://`
/// URL names none.
const HTTPS_PORT: u16 = 443;

/// The shared client. Cloning it shares its connections and its routes.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    allow_private: bool,
    routes: Arc<Mutex<Routes>>,
    tls: Arc<rustls::ClientConfig>,
}

/// An outbound request's method. Hearth's outbound requests are all
/// idempotent (see [`Client::request`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
        }
    }
}

/// One outbound request.
#[derive(Debug, Clone, Copy)]
pub struct OutRequest<'a> {
    pub method: Method,
    pub url: &'a str,
    /// The `Host` header to send instead of the URL's authority (server
    /// discovery names the header apart from the host connected to).
    pub host: Option<&'a str>,
    /// Further headers, sent as given.
    pub headers: &'a [(&'a str, &'a str)],
    /// The body, sent with its `Content-Length`; none sends no body.
    pub body: Option<&'a [u8]>,
    /// The most bytes of the answer's body read (capped at
    /// `RESPONSE_BYTES_MAX` for [`Client::request`], `STREAM_BYTES_MAX`
    /// for [`Client::request_stream`]); a longer answer is an error.
    pub max_bytes: u64,
}

/// What a destination answered: its status, its headers (names in lower
/// case, in the order received) and at most the requested number of
/// bytes of its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first value of the header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// An answer whose body is read as it arrives: `reader` gives at most
/// the request's `max_bytes` and fails (an `InvalidData` error) on the
/// first read past them, so a longer body is never silently cut.
pub struct Streamed {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub reader: Box<dyn Read + Send>,
}

impl Streamed {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first value of the header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

impl std::fmt::Debug for Streamed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streamed").field("status", &self.status).field("headers", &self.headers).finish()
    }
}

fn find_header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Where connections for an authority go instead of the authority itself
/// (SRV records: see [`Client::route_via`]), bounded by `ROUTES_MAX`.
#[derive(Default)]
struct Routes {
    /// Normalised authority → (target, when it was set).
    map: HashMap<String, (String, u64)>,
    /// Counts the routes set, for "oldest".
    set: u64,
}

impl Routes {
    fn set(&mut self, authority: String, target: String) {
        if authority == target {
            self.map.remove(&authority);
            return;
        }
        self.set += 1;
        let stamp = self.set;
        if self.map.len() >= ROUTES_MAX && !self.map.contains_key(&authority) {
            let oldest = self.map.iter().min_by_key(|(_, (_, when))| *when).map(|(a, _)| a.clone());
            if let Some(oldest) = oldest {
                self.map.remove(&oldest);
            }
        }
        self.map.insert(authority, (target, stamp));
    }

    fn target(&self, authority: &str) -> Option<String> {
        self.map.get(authority).map(|(t, _)| t.clone())
    }
}

/// `host:port` as ureq hands it to the resolver: the host in lower case
/// (the URL parser lowers it), the port 443 when none is written.
fn normalise_authority(authority: &str) -> String {
    let lower = authority.to_ascii_lowercase();
    let has_port = match lower.strip_prefix('[') {
        Some(rest) => rest.split_once(']').is_some_and(|(_, after)| after.starts_with(':')),
        None => lower.contains(':'),
    };
    match has_port {
        true => lower,
        false => format!("{lower}:{HTTPS_PORT}"),
    }
}

/// Resolves names for the agent, keeping only the addresses the policy
/// allows (see the module documentation for why this closes rebinding).
/// An authority with a route resolves to its target's addresses.
struct PolicyResolver {
    allow_private: bool,
    routes: Arc<Mutex<Routes>>,
}

impl ureq::Resolver for PolicyResolver {
    fn resolve(&self, netloc: &str) -> std::io::Result<Vec<SocketAddr>> {
        let routed = util::lock(&self.routes).target(&netloc.to_ascii_lowercase());
        let connect_to = routed.as_deref().unwrap_or(netloc);
        let addrs: Vec<SocketAddr> = connect_to
            .to_socket_addrs()?
            .filter(|a| self.allow_private || policy::is_public(a.ip()))
            .take(ADDRESSES_MAX)
            .collect();
        if addrs.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "the destination has no public address (outbound_allow_private is false)",
            ));
        }
        Ok(addrs)
    }
}

impl Client {
    /// The client the configuration asks for: the private-address policy
    /// and the extra roots of `outbound_ca_file`.
    pub fn from_config(config: &Config) -> Result<Client, String> {
        let pem = match &config.outbound_ca_file {
            Some(path) => Some(read_pem(path)?),
            None => None,
        };
        Client::new(config.outbound_allow_private, pem.as_deref())
    }

    /// A client; `extra_roots` are PEM certificates trusted besides the
    /// web roots.
    pub fn new(allow_private: bool, extra_roots: Option<&[u8]>) -> Result<Client, String> {
        Ok(Client::build(allow_private, tls_config(extra_roots)?, REQUEST_TIMEOUT, IDLE_CONNECTIONS_MAX))
    }

    /// A client with this one's policy and trusted roots but connections
    /// and routes of its own: routes set on either do not reach the
    /// other, and neither reuses the other's connections. Server
    /// discovery fetches `.well-known` through one, so an SRV route set
    /// for `name:443` never sends that fetch to the SRV target; a user
    /// that wants its requests untouched by federation's routes can hold
    /// one too. Each has its own idle connections (`IDLE_CONNECTIONS_MAX`).
    pub fn detached(&self) -> Client {
        self.detached_keeping(IDLE_CONNECTIONS_MAX)
    }

    /// A [`Client::detached`] one keeping up to `idle_max` idle
    /// connections (still at most `IDLE_PER_HOST_MAX` per destination):
    /// federation's, which hands each message of a big room to hundreds
    /// of servers in turn, where a pool smaller than the round would make
    /// every transaction a new TLS handshake.
    pub fn detached_keeping(&self, idle_max: usize) -> Client {
        Client::build(self.allow_private, self.tls.clone(), REQUEST_TIMEOUT, idle_max)
    }

    /// A [`Client::detached`] one whose exchanges (connecting included)
    /// are bounded by `timeout` instead of `REQUEST_TIMEOUT` (never
    /// longer): for small answers that must not hold their caller long.
    pub fn detached_with_timeout(&self, timeout: Duration) -> Client {
        Client::build(
            self.allow_private,
            self.tls.clone(),
            timeout.min(REQUEST_TIMEOUT),
            IDLE_CONNECTIONS_MAX,
        )
    }

    /// A client with this one's trusted roots that may reach private and
    /// loopback addresses over `http://` too, for URLs the administrator
    /// configured (an application service on the same host or network).
    /// Only ever given such URLs: it never follows redirects, so it
    /// reaches exactly the configured host.
    pub fn for_configured_hosts(&self) -> Client {
        Client::build(true, self.tls.clone(), REQUEST_TIMEOUT, IDLE_CONNECTIONS_MAX)
    }

    fn build(
        allow_private: bool,
        tls: Arc<rustls::ClientConfig>,
        timeout: Duration,
        idle_max: usize,
    ) -> Client {
        let routes = Arc::new(Mutex::new(Routes::default()));
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(CONNECT_TIMEOUT.min(timeout))
            .timeout_read(READ_TIMEOUT.min(timeout))
            .timeout_write(WRITE_TIMEOUT.min(timeout))
            .timeout(timeout)
            .redirects(0)
            // A proxy would make the connection, past the resolver's check.
            .try_proxy_from_env(false)
            .max_idle_connections(idle_max)
            .max_idle_connections_per_host(IDLE_PER_HOST_MAX)
            .user_agent(concat!("hearth/", env!("CARGO_PKG_VERSION")))
            .resolver(PolicyResolver { allow_private, routes: routes.clone() })
            .tls_config(tls.clone())
            .build();
        Client { agent, allow_private, routes, tls }
    }

    /// Whether private addresses (and plain `http://`) are allowed.
    pub fn allow_private(&self) -> bool {
        self.allow_private
    }

    /// Checks `url` against the policy, as a refusal message.
    pub fn check_url<'u>(&self, url: &'u str) -> Result<policy::Target<'u>> {
        policy::check_url(url, self.allow_private)
            .map_err(|r| unreachable(format!("the URL {}", r.message())))
    }

    /// From now on, connections for URLs whose authority is `authority`
    /// (`host:port`; no port means 443) are made to the addresses of
    /// `target` (`host:port`) instead: an SRV record's target. Only the
    /// addresses change: the address policy is applied to the target's
    /// addresses, the TLS name (SNI and the name the certificate must be
    /// valid for) stays the URL's host, and so does the `Host` header
    /// unless the request sets its own. A later call for the same
    /// authority replaces the route; a target equal to the authority
    /// removes it. At most `ROUTES_MAX` routes are kept, the oldest set
    /// dropped first.
    ///
    /// Kept connections are pooled by the URL's host and port, so one
    /// made before a route changed may still be reused; it was made to an
    /// address that passed the policy, with a certificate valid for the
    /// URL's host.
    pub fn route_via(&self, authority: &str, target: &str) {
        let (authority, target) = (normalise_authority(authority), normalise_authority(target));
        util::lock(&self.routes).set(authority, target);
    }

    /// The route set for `authority`, if any (for tests of its users).
    #[cfg(test)]
    pub(crate) fn route_of(&self, authority: &str) -> Option<String> {
        util::lock(&self.routes).target(&normalise_authority(authority))
    }

    /// POSTs a JSON body and reads at most `max_bytes` of the answer (an
    /// answer longer than that is an error): [`Client::request`] with
    /// `Content-Type: application/json`.
    pub fn post_json(&self, url: &str, body: &str, max_bytes: u64) -> Result<Answer> {
        self.request(&OutRequest {
            method: Method::Post,
            url,
            host: None,
            headers: &[("Content-Type", "application/json")],
            body: Some(body.as_bytes()),
            max_bytes,
        })
    }

    /// Sends a request and reads at most `r.max_bytes` (at most
    /// `RESPONSE_BYTES_MAX`) of the answer; a longer answer is an error.
    /// Any HTTP status is an answer; an error means no answer came
    /// (refused by the policy, unreachable, timed out, cut off, too long).
    ///
    /// A request that fails because a reused connection turns out to have
    /// been closed by the other side is sent once more on a new one. ureq
    /// does that only for idempotent methods; Hearth's outbound POSTs are
    /// idempotent by design (pushes carry the event ID gateways drop
    /// duplicates by; federation and appservice transactions carry their
    /// transaction ID), and its GETs and PUTs are idempotent by method.
    pub fn request(&self, r: &OutRequest) -> Result<Answer> {
        let max_bytes = r.max_bytes.min(RESPONSE_BYTES_MAX);
        let response = self.send(r)?;
        let (status, headers) = head_of(&response, max_bytes)?;
        let mut body = Vec::new();
        response
            .into_reader()
            .take(max_bytes + 1)
            .read_to_end(&mut body)
            .map_err(|e| unreachable(format!("reading the answer: {e}")))?;
        if body.len() as u64 > max_bytes {
            return Err(too_long(max_bytes));
        }
        Ok(Answer { status, headers, body })
    }

    /// Sends a request like [`Client::request`] and hands back the answer
    /// as soon as its head arrived; its body is read from
    /// [`Streamed::reader`], at most `r.max_bytes` (at most
    /// `STREAM_BYTES_MAX`) of it. An answer that announces a longer
    /// `Content-Length` is an error at once. The whole exchange, reading
    /// included, stays within `REQUEST_TIMEOUT`.
    pub fn request_stream(&self, r: &OutRequest) -> Result<Streamed> {
        let max_bytes = r.max_bytes.min(STREAM_BYTES_MAX);
        let response = self.send(r)?;
        let (status, headers) = head_of(&response, max_bytes)?;
        let reader =
            Box::new(Bounded { inner: response.into_reader(), left: max_bytes, max: max_bytes, over: false });
        Ok(Streamed { status, headers, reader })
    }

    /// Sends `r`, once more on a fresh connection if a kept one was
    /// found closed; any status is a response.
    fn send(&self, r: &OutRequest) -> Result<ureq::Response> {
        self.check_url(r.url)?;
        let mut request = self.agent.request(r.method.as_str(), r.url);
        for (name, value) in r.headers {
            request = request.set(name, value);
        }
        if let Some(host) = r.host {
            // ureq adds `Host` only when the request has none.
            request = request.set("Host", host);
        }
        // Any status is a response; only a failure to get one is an error
        // (boxed: ureq's is large).
        let go = |request: ureq::Request| -> std::result::Result<ureq::Response, Box<ureq::Transport>> {
            let sent = match r.body {
                Some(body) => request.send_bytes(body),
                None => request.call(),
            };
            match sent {
                Ok(response) | Err(ureq::Error::Status(_, response)) => Ok(response),
                Err(ureq::Error::Transport(t)) => Err(Box::new(t)),
            }
        };
        let result = match go(request.clone()) {
            Err(t) if connection_closed(&t) => go(request),
            other => other,
        };
        result.map_err(|t| unreachable(t.to_string()))
    }
}

/// A response's status and headers (names lowered); an error when it
/// announces a body longer than `max_bytes`.
fn head_of(response: &ureq::Response, max_bytes: u64) -> Result<(u16, Vec<(String, String)>)> {
    let mut names = response.headers_names();
    // Keep the first place of each name; `all` gives its every value.
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    let mut headers = Vec::new();
    for name in names {
        for value in response.all(&name) {
            headers.push((name.clone(), value.to_owned()));
        }
    }
    let announced = find_header(&headers, "content-length").and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > max_bytes) {
        return Err(too_long(max_bytes));
    }
    Ok((response.status(), headers))
}

fn too_long(max_bytes: u64) -> Error {
    unreachable(format!("the answer is longer than {max_bytes} bytes"))
}

/// A body reader that gives at most `max` bytes and fails past them.
struct Bounded<R> {
    inner: R,
    left: u64,
    max: u64,
    over: bool,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let max = self.max;
        let over = move || {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the answer is longer than {max} bytes"),
            )
        };
        if self.over {
            return Err(over());
        }
        if buf.is_empty() {
            return Ok(0);
        }
        // One byte past what is left tells a longer body from one that
        // ends exactly at the bound.
        let want = usize::try_from(self.left.saturating_add(1)).unwrap_or(usize::MAX).min(buf.len());
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > self.left {
            self.over = true;
            return Err(over());
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// An outbound failure. The message names the destination and the cause,
/// never a credential.
fn unreachable(message: String) -> Error {
    Error::new(ErrorKind::Unknown, message)
}

/// True for a failure that means the other side closed the connection
/// before answering: what a reused connection that went stale gives.
fn connection_closed(t: &ureq::Transport) -> bool {
    use std::error::Error as _;
    if t.kind() != ureq::ErrorKind::Io {
        return false;
    }
    let Some(io) = t.source().and_then(|s| s.downcast_ref::<std::io::Error>()) else { return false };
    matches!(
        io.kind(),
        std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::UnexpectedEof
    )
}

fn read_pem(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("outbound_ca_file {}: {e}", path.display()))
}

/// TLS trusting the web roots and the certificates in `extra_roots`.
fn tls_config(extra_roots: Option<&[u8]>) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(pem) = extra_roots {
        let before = roots.len();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("outbound_ca_file: {e}"))?;
            roots.add(cert).map_err(|e| format!("outbound_ca_file: {e}"))?;
        }
        if roots.len() == before {
            return Err("outbound_ca_file holds no certificate".to_owned());
        }
    }
    // rustls on `ring`, as everywhere in Hearth (`tls::provider`, not
    // imported: this module stays below the serving layer).
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// An HTTPS server in the test process, for the client's tests and for
/// server discovery's: a throwaway CA, a certificate it signed for the
/// names asked for, a thread per connection with keep-alive, and a
/// handler that answers each request.
#[cfg(test)]
pub(crate) mod testing {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// A request as the server read it.
    #[derive(Debug, Clone)]
    pub struct Seen {
        pub method: String,
        pub path: String,
        /// Names in lower case.
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
        /// The TLS name the client asked for.
        pub sni: Option<String>,
    }

    impl Seen {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
        }
    }

    /// An answer to write: status, headers and body (`Content-Length` is
    /// added, unless `close_delimited`: then the body ends when the
    /// connection closes).
    pub struct Reply {
        pub status: u16,
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
        pub close_delimited: bool,
    }

    impl Reply {
        pub fn new(status: u16, body: &[u8]) -> Reply {
            Reply { status, headers: Vec::new(), body: body.to_vec(), close_delimited: false }
        }

        pub fn close_delimited(mut self) -> Reply {
            self.close_delimited = true;
            self
        }

        pub fn header(mut self, name: &str, value: &str) -> Reply {
            self.headers.push((name.to_owned(), value.to_owned()));
            self
        }
    }

    type Handler = dyn Fn(&Seen) -> Reply + Send + Sync;

    pub struct TlsServer {
        pub port: u16,
        /// The CA that signed the server's certificate, as PEM.
        pub ca_pem: String,
        /// Every request read, in order (recorded before it is answered).
        pub seen: Arc<Mutex<Vec<Seen>>>,
        /// Connections accepted.
        pub connections: Arc<AtomicUsize>,
    }

    impl TlsServer {
        /// Serves on 127.0.0.1 with a certificate valid for `names`.
        pub fn start(names: &[&str], handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> TlsServer {
            let (ca_pem, config) = certificate(names);
            let listener = TcpListener::bind("127.0.0.1:0").expect("binding the test server");
            let port = listener.local_addr().expect("address").port();
            let seen = Arc::new(Mutex::new(Vec::new()));
            let connections = Arc::new(AtomicUsize::new(0));
            let handler: Arc<Handler> = Arc::new(handler);
            let (s, c) = (seen.clone(), connections.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    c.fetch_add(1, Ordering::SeqCst);
                    let (s, h, config) = (s.clone(), handler.clone(), config.clone());
                    std::thread::spawn(move || {
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                        let Ok(conn) = rustls::ServerConnection::new(config) else { return };
                        let _ = serve(rustls::StreamOwned::new(conn, stream), &s, &*h);
                    });
                }
            });
            TlsServer { port, ca_pem, seen, connections }
        }

        pub fn seen(&self) -> Vec<Seen> {
            crate::util::lock(&self.seen).clone()
        }

        pub fn connections(&self) -> usize {
            self.connections.load(Ordering::SeqCst)
        }
    }

    fn certificate(names: &[&str]) -> (String, Arc<rustls::ServerConfig>) {
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "hearth outbound unit-test CA");
        let ca = ca_params.self_signed(&ca_key).expect("ca");
        let key = rcgen::KeyPair::generate().expect("key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .expect("params")
            .signed_by(&key, &ca, &ca_key)
            .expect("leaf");
        let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_no_client_auth()
                .with_single_cert(vec![cert.der().clone()], key_der)
                .expect("server config");
        (ca.pem(), Arc::new(config))
    }

    type Tls = rustls::StreamOwned<rustls::ServerConnection, std::net::TcpStream>;

    fn serve(stream: Tls, seen: &Mutex<Vec<Seen>>, handler: &Handler) -> std::io::Result<()> {
        let mut reader = BufReader::new(stream);
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or_default().to_owned();
            let path = parts.next().unwrap_or_default().to_owned();
            let mut headers = Vec::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line)?;
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
                }
            }
            let length = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0usize);
            let mut body = vec![0; length];
            reader.read_exact(&mut body)?;
            let sni = reader.get_ref().conn.server_name().map(str::to_owned);
            let request = Seen { method, path, headers, body, sni };
            crate::util::lock(seen).push(request.clone());
            let reply = handler(&request);
            let mut head = match reply.close_delimited {
                true => format!("HTTP/1.1 {} X\r\nConnection: close\r\n", reply.status),
                false => format!("HTTP/1.1 {} X\r\nContent-Length: {}\r\n", reply.status, reply.body.len()),
            };
            for (k, v) in &reply.headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            let writer = reader.get_mut();
            writer.write_all(head.as_bytes())?;
            writer.write_all(&reply.body)?;
            writer.flush()?;
            if reply.close_delimited {
                writer.conn.send_close_notify();
                writer.flush()?;
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ureq::Resolver;

    use super::testing::{Reply, TlsServer};

    fn trusting(server: &TlsServer, allow_private: bool) -> Client {
        Client::new(allow_private, Some(server.ca_pem.as_bytes())).expect("client")
    }

    fn get<'a>(url: &'a str, host: Option<&'a str>, headers: &'a [(&'a str, &'a str)]) -> OutRequest<'a> {
        OutRequest { method: Method::Get, url, host, headers, body: None, max_bytes: 1024 }
    }

    #[test]
    fn a_get_and_a_put_carry_the_host_header_and_headers_asked_for() {
        let server = TlsServer::start(&["localhost"], |seen| {
            Reply::new(200, format!("{} {}", seen.method, seen.path).as_bytes())
                .header("X-Answer", "yes")
                .header("Cache-Control", "max-age=60")
        });
        let client = trusting(&server, true);
        let url = format!("https://localhost:{}/_matrix/key/v2/server", server.port);
        let answer = client
            .request(&get(&url, Some("remote.example"), &[("Authorization", "X-Matrix origin=\"a\"")]))
            .expect("answer");
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, b"GET /_matrix/key/v2/server");
        assert_eq!(answer.header("x-answer"), Some("yes"));
        assert_eq!(answer.header("Cache-Control"), Some("max-age=60"));
        assert!(answer.headers.iter().all(|(n, _)| *n == n.to_ascii_lowercase()), "{:?}", answer.headers);

        let url = format!("https://localhost:{}/_matrix/federation/v1/send/1", server.port);
        let body = br#"{"pdus":[]}"#;
        let answer = client
            .request(&OutRequest {
                method: Method::Put,
                url: &url,
                host: None,
                headers: &[("Content-Type", "application/json")],
                body: Some(body),
                max_bytes: 1024,
            })
            .expect("answer");
        assert_eq!(answer.body, b"PUT /_matrix/federation/v1/send/1");

        let seen = server.seen();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].header("host"), Some("remote.example"), "the Host override, once");
        assert_eq!(seen[0].headers.iter().filter(|(n, _)| n == "host").count(), 1);
        assert_eq!(seen[0].header("authorization"), Some("X-Matrix origin=\"a\""));
        assert_eq!(seen[0].sni.as_deref(), Some("localhost"), "the TLS name is the URL's host");
        assert_eq!(seen[1].header("host"), Some(format!("localhost:{}", server.port).as_str()));
        assert_eq!(seen[1].header("content-type"), Some("application/json"));
        assert_eq!(seen[1].body, body);
        assert_eq!(server.connections(), 1, "the connection was kept for the second request");
    }

    #[test]
    fn an_error_status_is_an_answer_and_a_long_answer_an_error() {
        let server = TlsServer::start(&["localhost"], |seen| match seen.path.as_str() {
            "/missing" => Reply::new(404, br#"{"errcode":"M_NOT_FOUND"}"#),
            _ => Reply::new(200, &[b'x'; 2000]),
        });
        let client = trusting(&server, true);
        let url = format!("https://localhost:{}/missing", server.port);
        let answer = client.request(&get(&url, None, &[])).expect("a 404 is an answer");
        assert_eq!((answer.status, answer.is_success()), (404, false));
        let url = format!("https://localhost:{}/big", server.port);
        let e = client.request(&get(&url, None, &[])).expect_err("2000 bytes > 1024");
        assert!(e.message.contains("longer than 1024"), "{}", e.message);
    }

    #[test]
    fn a_streamed_answer_is_read_to_its_bound_and_fails_past_it() {
        let server = TlsServer::start(&["localhost"], |seen| match seen.path.as_str() {
            "/exact" => Reply::new(200, &[7; 3000]),
            // No Content-Length: only the reader's bound can stop it.
            "/unannounced" => Reply::new(200, &[8; 5000]).close_delimited(),
            _ => Reply::new(200, &[9; 5000]),
        });
        let client = trusting(&server, true);
        let stream = |path: &str, max_bytes: u64| {
            let url = format!("https://localhost:{}{path}", server.port);
            client.request_stream(&OutRequest { max_bytes, ..get(&url, None, &[]) })
        };
        let mut streamed = stream("/exact", 3000).expect("answer");
        assert_eq!(streamed.status, 200);
        assert_eq!(streamed.header("content-length"), Some("3000"));
        let mut body = Vec::new();
        streamed.reader.read_to_end(&mut body).expect("exactly the bound");
        assert_eq!(body, vec![7; 3000]);

        let mut streamed = stream("/unannounced", 4000).expect("the head is an answer");
        assert_eq!(streamed.header("content-length"), None);
        let mut body = Vec::new();
        let e = streamed.reader.read_to_end(&mut body).expect_err("5000 bytes > 4000");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        assert!(body.len() <= 4000, "{} bytes handed out", body.len());

        // A Content-Length past the bound fails before any byte is read.
        let e = stream("/long", 4000).expect_err("announced 5000 > 4000");
        assert!(e.message.contains("longer than 4000"), "{}", e.message);
    }

    #[test]
    fn the_bounded_reader_fails_rather_than_truncating() {
        let mut exact = Bounded { inner: &[1u8; 10][..], left: 10, max: 10, over: false };
        let mut got = Vec::new();
        exact.read_to_end(&mut got).expect("ten bytes fit ten");
        assert_eq!(got.len(), 10);
        let mut long = Bounded { inner: &[1u8; 11][..], left: 10, max: 10, over: false };
        let mut got = Vec::new();
        let e = long.read_to_end(&mut got).expect_err("eleven bytes do not");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        assert!(got.len() <= 10, "never more than the bound is handed out");
        assert!(long.read(&mut [0; 4]).is_err(), "and it stays failed");
    }

    #[test]
    fn a_route_sends_a_name_to_its_target_with_the_certificate_of_the_name() {
        let server = TlsServer::start(&["name.test"], |seen| Reply::new(200, seen.path.as_bytes()));
        let client = trusting(&server, true);
        let url = format!("https://name.test:{}/ok", server.port);
        assert!(client.request(&get(&url, None, &[])).is_err(), "name.test resolves nowhere without a route");
        client.route_via(&format!("NAME.test:{}", server.port), &format!("127.0.0.1:{}", server.port));
        let answer = client.request(&get(&url, Some("name.test"), &[])).expect("routed");
        assert_eq!(answer.body, b"/ok");
        let seen = server.seen();
        assert_eq!(seen[0].sni.as_deref(), Some("name.test"));
        assert_eq!(seen[0].header("host"), Some("name.test"));
        // A target equal to the authority removes the route.
        let authority = format!("name.test:{}", server.port);
        client.route_via(&authority, &authority);
        assert!(util::lock(&client.routes).map.is_empty());
    }

    #[test]
    fn a_route_to_a_private_target_is_refused_by_the_policy() {
        let server = TlsServer::start(&["name.test"], |_| Reply::new(200, b""));
        let client = trusting(&server, false);
        client.route_via(&format!("name.test:{}", server.port), &format!("127.0.0.1:{}", server.port));
        let url = format!("https://name.test:{}/x", server.port);
        let e = client.request(&get(&url, None, &[])).expect_err("loopback target refused");
        assert!(e.message.contains("public address"), "{}", e.message);
        assert_eq!(server.connections(), 0, "nothing connected");
    }

    #[test]
    fn a_detached_client_shares_the_roots_but_not_the_routes() {
        let server = TlsServer::start(&["name.test"], |_| Reply::new(200, b"ok"));
        let client = trusting(&server, true);
        let detached = client.detached();
        client.route_via(&format!("name.test:{}", server.port), &format!("127.0.0.1:{}", server.port));
        let url = format!("https://name.test:{}/", server.port);
        assert!(detached.request(&get(&url, None, &[])).is_err(), "the route is not the detached client's");
        assert!(client.request(&get(&url, None, &[])).is_ok());
        detached.route_via(&format!("name.test:{}", server.port), &format!("127.0.0.1:{}", server.port));
        let answer = detached.request(&get(&url, None, &[])).expect("the test CA is trusted by both");
        assert_eq!(answer.body, b"ok");
        assert!(detached.allow_private());
    }

    #[test]
    fn a_detached_client_with_a_timeout_gives_up_in_time() {
        // Accepts connections and never says anything: the TLS handshake
        // waits for the server's hello until the bound.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding");
        let port = listener.local_addr().expect("address").port();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                held.push(stream);
            }
        });
        let client =
            Client::new(true, None).expect("client").detached_with_timeout(Duration::from_millis(300));
        let started = std::time::Instant::now();
        let url = format!("https://localhost:{port}/");
        assert!(client.request(&get(&url, None, &[])).is_err(), "no answer");
        assert!(started.elapsed() < Duration::from_secs(5), "gave up after {:?}", started.elapsed());
    }

    #[test]
    fn routes_are_bounded_and_the_oldest_goes_first() {
        let mut routes = Routes::default();
        for i in 0..ROUTES_MAX {
            routes.set(format!("h{i}:443"), "t:1".to_owned());
        }
        routes.set("h0:443".to_owned(), "t:2".to_owned()); // refreshed: now the newest
        routes.set("new:443".to_owned(), "t:3".to_owned());
        assert_eq!(routes.map.len(), ROUTES_MAX);
        assert_eq!(routes.target("h0:443").as_deref(), Some("t:2"));
        assert_eq!(routes.target("h1:443"), None, "the oldest was dropped");
        assert_eq!(routes.target("new:443").as_deref(), Some("t:3"));
        assert_eq!(normalise_authority("Example.ORG"), "example.org:443");
        assert_eq!(normalise_authority("[::1]"), "[::1]:443");
        assert_eq!(normalise_authority("[::1]:8448"), "[::1]:8448");
    }

    #[test]
    fn the_resolver_returns_only_allowed_addresses() {
        let strict = PolicyResolver { allow_private: false, routes: Default::default() };
        let e = strict.resolve("127.0.0.1:80").expect_err("loopback refused");
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);
        assert!(strict.resolve("[::1]:80").is_err());
        assert!(strict.resolve("[::ffff:192.168.0.1]:443").is_err());
        assert_eq!(strict.resolve("8.8.8.8:443").expect("public"), ["8.8.8.8:443".parse().unwrap()]);
        let open = PolicyResolver { allow_private: true, routes: Default::default() };
        assert_eq!(open.resolve("127.0.0.1:80").expect("allowed"), ["127.0.0.1:80".parse().unwrap()]);
    }

    #[test]
    fn a_private_address_is_refused_before_connecting() {
        let client = Client::new(false, None).expect("client");
        // The URL check refuses plain HTTP and IP literals first...
        assert!(client.post_json("http://127.0.0.1:9/x", "{}", 100).is_err());
        assert!(client.post_json("https://127.0.0.1:9/x", "{}", 100).is_err());
        // ...and a name resolving to loopback is refused by the resolver.
        let e = client.post_json("https://localhost:9/x", "{}", 100).expect_err("refused");
        assert!(e.message.contains("public address"), "{}", e.message);
    }

    #[test]
    fn extra_roots_must_hold_a_certificate() {
        assert!(Client::new(false, Some(b"not a pem")).is_err());
        let cert = rcgen::generate_simple_self_signed(vec!["ca.test".to_owned()]).expect("cert");
        assert!(Client::new(false, Some(cert.cert.pem().as_bytes())).is_ok());
    }
}
