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
//! Trusted roots: the web roots (`webpki-roots`, so a static binary needs
//! no system CA bundle) plus the PEM certificates of `outbound_ca_file`,
//! for a private CA (tests against other servers use a throwaway one).

use std::io::Read;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::outbound::policy;

/// Bound on opening a connection (TCP and TLS).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on each read from a destination.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on each write to a destination.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on a whole exchange, connecting included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The most bytes of an answer any caller may ask to read.
pub const RESPONSE_BYTES_MAX: u64 = 16 * 1024 * 1024;
/// Idle connections kept for reuse, over all destinations.
pub const IDLE_CONNECTIONS_MAX: usize = 64;
/// Idle connections kept per host and port.
pub const IDLE_PER_HOST_MAX: usize = 2;
/// Addresses of one name tried at most (ureq tries them in turn).
const ADDRESSES_MAX: usize = 8;

/// The shared client. Cloning it shares its connections.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    allow_private: bool,
}

/// What a destination answered: its status and at most the requested
/// number of bytes of its body.
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
}

/// Resolves names for the agent, keeping only the addresses the policy
/// allows (see the module documentation for why this closes rebinding).
struct PolicyResolver {
    allow_private: bool,
}

impl ureq::Resolver for PolicyResolver {
    fn resolve(&self, netloc: &str) -> std::io::Result<Vec<SocketAddr>> {
        let addrs: Vec<SocketAddr> = netloc
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
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(CONNECT_TIMEOUT)
            .timeout_read(READ_TIMEOUT)
            .timeout_write(WRITE_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .redirects(0)
            // A proxy would make the connection, past the resolver's check.
            .try_proxy_from_env(false)
            .max_idle_connections(IDLE_CONNECTIONS_MAX)
            .max_idle_connections_per_host(IDLE_PER_HOST_MAX)
            .user_agent(concat!("hearth/", env!("CARGO_PKG_VERSION")))
            .resolver(PolicyResolver { allow_private })
            .tls_config(tls_config(extra_roots)?)
            .build();
        Ok(Client { agent, allow_private })
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

    /// POSTs a JSON body and reads at most `max_bytes` of the answer (an
    /// answer longer than that is an error). Any HTTP status is an
    /// answer; an error means no answer came (refused by the policy,
    /// unreachable, timed out, cut off, too long).
    ///
    /// A request that fails because a reused connection turns out to have
    /// been closed by the other side is sent once more on a new one. ureq
    /// does that only for idempotent methods; Hearth's outbound POSTs are
    /// idempotent by design (pushes carry the event ID gateways drop
    /// duplicates by; federation and appservice transactions carry their
    /// transaction ID).
    pub fn post_json(&self, url: &str, body: &str, max_bytes: u64) -> Result<Answer> {
        self.check_url(url)?;
        let max_bytes = max_bytes.min(RESPONSE_BYTES_MAX);
        let request = self.agent.post(url).set("Content-Type", "application/json");
        let result = match request.clone().send_string(body) {
            Err(ureq::Error::Transport(t)) if connection_closed(&t) => request.send_string(body),
            other => other,
        };
        let response = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(ureq::Error::Transport(t)) => return Err(unreachable(t.to_string())),
        };
        let status = response.status();
        let mut body = Vec::new();
        response
            .into_reader()
            .take(max_bytes + 1)
            .read_to_end(&mut body)
            .map_err(|e| unreachable(format!("reading the answer: {e}")))?;
        if body.len() as u64 > max_bytes {
            return Err(unreachable(format!("the answer is longer than {max_bytes} bytes")));
        }
        Ok(Answer { status, headers: Vec::new(), body })
    }

    /// SHIM (replaced by the full client): a general request.
    pub fn request(&self, r: &OutRequest<'_>) -> Result<Answer> {
        self.check_url(r.url)?;
        let mut request = match r.method {
            Method::Get => self.agent.get(r.url),
            Method::Post => self.agent.post(r.url),
            Method::Put => self.agent.put(r.url),
        };
        if let Some(h) = r.host {
            request = request.set("Host", h);
        }
        for (k, v) in r.headers {
            request = request.set(k, v);
        }
        let result = match r.body {
            Some(b) => request.send_bytes(b),
            None => request.call(),
        };
        let response = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(ureq::Error::Transport(t)) => return Err(unreachable(t.to_string())),
        };
        let status = response.status();
        let headers = response
            .headers_names()
            .into_iter()
            .filter_map(|n| response.header(&n).map(|v| (n.to_ascii_lowercase(), v.to_owned())))
            .collect();
        let mut body = Vec::new();
        response
            .into_reader()
            .take(r.max_bytes + 1)
            .read_to_end(&mut body)
            .map_err(|e| unreachable(format!("reading the answer: {e}")))?;
        if body.len() as u64 > r.max_bytes {
            return Err(unreachable(format!("the answer is longer than {} bytes", r.max_bytes)));
        }
        Ok(Answer { status, headers, body })
    }
}

/// SHIM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
}

/// SHIM.
pub struct OutRequest<'a> {
    pub method: Method,
    pub url: &'a str,
    pub host: Option<&'a str>,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: Option<&'a [u8]>,
    pub max_bytes: u64,
}

impl Answer {
    /// SHIM.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
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

#[cfg(test)]
mod tests {
    use super::*;
    use ureq::Resolver;

    #[test]
    fn the_resolver_returns_only_allowed_addresses() {
        let strict = PolicyResolver { allow_private: false };
        let e = strict.resolve("127.0.0.1:80").expect_err("loopback refused");
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);
        assert!(strict.resolve("[::1]:80").is_err());
        assert!(strict.resolve("[::ffff:192.168.0.1]:443").is_err());
        assert_eq!(strict.resolve("8.8.8.8:443").expect("public"), ["8.8.8.8:443".parse().unwrap()]);
        let open = PolicyResolver { allow_private: true };
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
