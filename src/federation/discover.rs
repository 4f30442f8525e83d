//! Server discovery (the Server-Server API, "Resolving server names"):
//! a server name → where to connect, which name the certificate must be
//! valid for, and which `Host` header to send.
//!
//! The steps, for a server name `hostname[:port]`:
//!
//! 1. an IP literal (`1.2.3.4`, `[::1]`, with or without a port): that
//!    address, the port or 8448; `Host` is the server name as written;
//!    no SNI (the certificate must be valid for the address).
//! 2. a hostname with a port: that; `Host` is `hostname:port`.
//! 3. otherwise `GET https://<hostname>/.well-known/matrix/server`
//!    (port 443, `Host: hostname`, redirects followed up to
//!    `REDIRECTS_MAX` within `WELL_KNOWN_TIMEOUT`, each request within
//!    `WELL_KNOWN_REQUEST_TIMEOUT`, at most `WELL_KNOWN_BYTES_MAX` read). A 200 with
//!    a valid server name in `m.server` delegates to it:
//!    1. an IP literal: as step 1, for the delegated name;
//!    2. a hostname with a port: that; `Host` is `delegated:port`;
//!    3. else the SRV record `_matrix-fed._tcp.<delegated>`: connect
//!       to its target and port, `Host` and certificate `delegated`;
//!    4. else the deprecated `_matrix._tcp.<delegated>`, the same way;
//!    5. else `delegated:8448`, `Host: delegated`.
//! 4. no valid `.well-known`: `_matrix-fed._tcp.<hostname>`,
//! 5. then `_matrix._tcp.<hostname>` (`Host` and certificate `hostname`),
//! 6. then `hostname:8448`.
//!
//! **How SRV is carried out.** A [`Destination`]'s `authority` is the
//! base URL's `host:port`: its host is the name the certificate is
//! checked for (and SNI), its port the port connected to. When an SRV
//! record names another host, the authority is `name:srvport` and
//! `resolve` tells the client (`Client::route_via`) to connect
//! `name:srvport` to `target:srvport`; the address policy then applies
//! to the target's addresses. Only the first record (lowest priority,
//! then highest weight: `outbound::dns`) is used.
//!
//! **Caches.** `.well-known` answers are kept as long as their
//! `Cache-Control` (`max-age`; `no-store`, `no-cache`: the minimum) or
//! `Expires` says (`WELL_KNOWN_TTL_DEFAULT_MS`, 24 hours, without
//! either), within `WELL_KNOWN_TTL_MIN_MS` (5 minutes) and
//! `WELL_KNOWN_TTL_MAX_MS` (48 hours); a failed or invalid one is kept
//! `WELL_KNOWN_ERROR_TTL_MS` (an hour; no exponential backoff). SRV
//! answers are kept `SRV_TTL_MS` (an hour; the records' own TTLs are not
//! read), failed lookups `SRV_ERROR_TTL_MS` (5 minutes). Each cache
//! holds at most its `*_ENTRIES_MAX` names; past it the expired entries
//! go, then the ones that expire soonest. No lock is held while asking
//! the network: two threads may ask for the same name at once, and the
//! later answer is kept.
//!
//! **Time.** Asking the network is bounded: the `.well-known` fetch by
//! `WELL_KNOWN_TIMEOUT` plus one `WELL_KNOWN_REQUEST_TIMEOUT`, each SRV
//! name by `dns::ATTEMPTS_MAX` × `dns::SERVER_TIMEOUT` (and one
//! `dns::TCP_TIMEOUT`), so a resolve with cold caches ends within about
//! a minute at worst; with warm caches it asks nothing. Call it outside
//! any database transaction, like every request it precedes.
//!
//! The `.well-known` fetch goes through a detached copy of the client
//! (`Client::detached_with_timeout`): the same address policy (with
//! `outbound_allow_private = false` a name resolving to 127.0.0.1 is
//! refused) and roots, but not the SRV routes, so a route set for
//! `name:443` never sends the fetch of `https://name/.well-known/…`
//! to the SRV target.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::core::ids;
use crate::error::{Error, Result};
use crate::outbound::client::{Answer, Client, Method, OutRequest};
use crate::outbound::dns::{self, SrvRecord};
use crate::util;

/// The federation port when nothing names another.
pub const DEFAULT_PORT: u16 = 8448;
/// The port `.well-known` is fetched from.
pub const WELL_KNOWN_PORT: u16 = 443;
/// The most of a `.well-known` answer read.
pub const WELL_KNOWN_BYTES_MAX: u64 = 64 * 1024;
/// Redirects of the `.well-known` fetch followed at most.
pub const REDIRECTS_MAX: usize = 5;
/// Bound on each request of the `.well-known` fetch, connecting included.
pub const WELL_KNOWN_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// No further redirect is followed once the fetch has taken this long
/// (so the whole fetch takes at most this plus one request's bound).
pub const WELL_KNOWN_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a `.well-known` answer is kept when it does not say.
pub const WELL_KNOWN_TTL_DEFAULT_MS: i64 = 24 * HOUR_MS;
/// The longest a `.well-known` answer is kept, whatever it says.
pub const WELL_KNOWN_TTL_MAX_MS: i64 = 48 * HOUR_MS;
/// The shortest a `.well-known` answer is kept, whatever it says
/// (`no-store` and `max-age=0` included): bounds the fetches per name.
pub const WELL_KNOWN_TTL_MIN_MS: i64 = 5 * MINUTE_MS;
/// How long a failed or invalid `.well-known` is kept.
pub const WELL_KNOWN_ERROR_TTL_MS: i64 = HOUR_MS;
/// How long SRV records (or their absence) are kept.
pub const SRV_TTL_MS: i64 = HOUR_MS;
/// How long a failed SRV lookup is kept (as "no record").
pub const SRV_ERROR_TTL_MS: i64 = 5 * MINUTE_MS;
/// Server names whose `.well-known` is kept at most.
pub const WELL_KNOWN_ENTRIES_MAX: usize = 4096;
/// SRV names whose records are kept at most (two per server name).
pub const SRV_ENTRIES_MAX: usize = 8192;

const MINUTE_MS: i64 = 60 * 1000;
const HOUR_MS: i64 = 60 * MINUTE_MS;

/// Where to send requests for a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub server_name: String,
    /// `https://{authority}` is the base URL: its host is the name the certificate must be valid for (SNI; none for an IP literal), its port the port connected to.
    pub authority: String,
    /// The Host header to send.
    pub host: String,
}

/// What discovery asks the network; a fake in tests.
pub trait Lookup: Send + Sync {
    /// `GET https://{host}/.well-known/matrix/server`, redirects
    /// followed: the last answer (any status), or an error when none came.
    fn well_known(&self, host: &str) -> Result<Answer>;
    /// The SRV records of `name` (`outbound::dns`'s order); empty when
    /// there are none, an error when the lookup failed.
    fn srv(&self, name: &str) -> Result<Vec<SrvRecord>>;
}

/// Server discovery with its caches; shared by every federation sender.
pub struct Discovery {
    client: Client,
    lookup: Box<dyn Lookup>,
    well_known: Mutex<Cache<Option<String>>>,
    srv: Mutex<Cache<Option<SrvRecord>>>,
}

impl Discovery {
    pub fn new(client: crate::outbound::client::Client) -> Discovery {
        Discovery::with_well_known_port(client, WELL_KNOWN_PORT)
    }

    /// As `new`, with `.well-known` fetched from `port` instead of 443:
    /// for tests, whose servers cannot listen on 443.
    pub fn with_well_known_port(client: Client, port: u16) -> Discovery {
        let network = Network { client: client.detached_with_timeout(WELL_KNOWN_REQUEST_TIMEOUT), port };
        Discovery::with_lookup(client, network)
    }

    /// As `new`, asking `lookup` instead of the network.
    pub fn with_lookup(client: Client, lookup: impl Lookup + 'static) -> Discovery {
        Discovery {
            client,
            lookup: Box::new(lookup),
            well_known: Mutex::new(Cache::new(WELL_KNOWN_ENTRIES_MAX)),
            srv: Mutex::new(Cache::new(SRV_ENTRIES_MAX)),
        }
    }

    /// Where to send requests for `server_name`; registers `route_via` on the client when SRV names another host.
    pub fn resolve(&self, server_name: &str) -> crate::error::Result<Destination> {
        self.resolve_at(server_name, util::now_ms())
    }

    /// `resolve` with the clock read as `now_ms` (for the caches).
    pub fn resolve_at(&self, server_name: &str, now_ms: i64) -> Result<Destination> {
        let name = parse_server_name(server_name)
            .ok_or_else(|| Error::invalid_param(format!("{server_name:?} is not a valid server name")))?;
        let destination = |authority: String, host: String| Destination {
            server_name: server_name.to_owned(),
            authority,
            host,
        };
        // Steps 1 and 2: an IP literal, or a port given.
        if let Some(literal) = name.literal() {
            return Ok(destination(literal, server_name.to_owned()));
        }
        if name.port.is_some() {
            return Ok(destination(server_name.to_owned(), server_name.to_owned()));
        }
        // Step 3: delegation by `.well-known`.
        if let Some(delegated) = self.delegation(name.host, now_ms) {
            let Some(d) = parse_server_name(&delegated) else {
                return Err(Error::internal("a delegation kept in the cache no longer parses"));
            };
            if let Some(literal) = d.literal() {
                return Ok(destination(literal, delegated)); // 3.1
            }
            if d.port.is_some() {
                return Ok(destination(delegated.clone(), delegated)); // 3.2
            }
            let authority = self.via_srv(d.host, now_ms); // 3.3 to 3.5
            return Ok(destination(authority, d.host.to_owned()));
        }
        // Steps 4 to 6.
        let authority = self.via_srv(name.host, now_ms);
        Ok(destination(authority, name.host.to_owned()))
    }

    /// The authority for `host` after its SRV records (`_matrix-fed`,
    /// then `_matrix`), with the client's route set accordingly: to the
    /// record's target, or none (a stale one removed).
    fn via_srv(&self, host: &str, now_ms: i64) -> String {
        let record = self
            .srv_record(&format!("_matrix-fed._tcp.{host}"), now_ms)
            .or_else(|| self.srv_record(&format!("_matrix._tcp.{host}"), now_ms));
        let (authority, target) = match record {
            Some(r) => (format!("{host}:{}", r.port), format!("{}:{}", r.target, r.port)),
            None => (format!("{host}:{DEFAULT_PORT}"), format!("{host}:{DEFAULT_PORT}")),
        };
        // A target equal to the authority removes the route.
        self.client.route_via(&authority, &target);
        authority
    }

    /// The first SRV record of `name`, from the cache or the network.
    fn srv_record(&self, name: &str, now_ms: i64) -> Option<SrvRecord> {
        if let Some(kept) = util::lock(&self.srv).get(name, now_ms) {
            return kept.clone();
        }
        let (record, ttl) = match self.lookup.srv(name) {
            Ok(records) => (records.into_iter().next(), SRV_TTL_MS),
            Err(_) => (None, SRV_ERROR_TTL_MS),
        };
        util::lock(&self.srv).put(name, record.clone(), now_ms.saturating_add(ttl), now_ms);
        record
    }

    /// The server `hostname` delegates to by `.well-known`, from the
    /// cache or the network; none when it does not (or cannot be asked).
    fn delegation(&self, hostname: &str, now_ms: i64) -> Option<String> {
        if let Some(kept) = util::lock(&self.well_known).get(hostname, now_ms) {
            return kept.clone();
        }
        let (delegated, ttl) = match self.lookup.well_known(hostname) {
            Ok(answer) => interpret_well_known(&answer, now_ms),
            Err(_) => (None, WELL_KNOWN_ERROR_TTL_MS),
        };
        util::lock(&self.well_known).put(hostname, delegated.clone(), now_ms.saturating_add(ttl), now_ms);
        delegated
    }
}

/// A `.well-known` answer's delegation and how long to keep it.
fn interpret_well_known(answer: &Answer, now_ms: i64) -> (Option<String>, i64) {
    if answer.status != 200 {
        return (None, WELL_KNOWN_ERROR_TTL_MS);
    }
    let delegated = serde_json::from_slice::<serde_json::Value>(&answer.body)
        .ok()
        .and_then(|v| v.get("m.server").and_then(|s| s.as_str()).map(str::to_owned))
        .filter(|s| parse_server_name(s).is_some());
    match delegated {
        Some(d) => (Some(d), cache_lifetime(answer, now_ms)),
        None => (None, WELL_KNOWN_ERROR_TTL_MS),
    }
}

/// How long to keep an answer: `Cache-Control` (`no-store`, `no-cache`,
/// `max-age`), else `Expires` (against the answer's `Date`, else
/// `now_ms`; an invalid one is in the past), else the default; always
/// within the bounds.
fn cache_lifetime(answer: &Answer, now_ms: i64) -> i64 {
    let from_cache_control = answer.header("cache-control").and_then(|value| {
        let directives: Vec<String> = value.split(',').map(|d| d.trim().to_ascii_lowercase()).collect();
        if directives.iter().any(|d| d == "no-store" || d == "no-cache") {
            return Some(0);
        }
        directives.iter().find_map(|d| {
            let seconds = d.strip_prefix("max-age=")?.trim_matches('"').parse::<i64>().ok()?;
            Some(seconds.saturating_mul(1000))
        })
    });
    let from_expires = || {
        let expires = answer.header("expires")?;
        let Some(expires_ms) = parse_http_date(expires) else { return Some(0) };
        let base = answer.header("date").and_then(parse_http_date).unwrap_or(now_ms);
        Some(expires_ms.saturating_sub(base))
    };
    let lifetime = from_cache_control.or_else(from_expires).unwrap_or(WELL_KNOWN_TTL_DEFAULT_MS);
    lifetime.clamp(WELL_KNOWN_TTL_MIN_MS, WELL_KNOWN_TTL_MAX_MS)
}

/// An HTTP date in the preferred form (`Sun, 06 Nov 1994 08:49:37 GMT`)
/// as Unix milliseconds; the obsolete forms are not read.
fn parse_http_date(s: &str) -> Option<i64> {
    let words: Vec<&str> = s.split_whitespace().collect();
    let [_weekday, day, month, year, time, "GMT"] = words[..] else { return None };
    let day: i64 = day.parse().ok().filter(|d| (1..=31).contains(d))?;
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = MONTHS.iter().position(|m| *m == month)? as i64 + 1;
    let year: i64 = year.parse().ok().filter(|y| (1970..=9999).contains(y))?;
    let hms: Vec<i64> = time.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let [h, m, sec] = hms[..] else { return None };
    if !(0..24).contains(&h) || !(0..60).contains(&m) || !(0..=60).contains(&sec) {
        return None;
    }
    Some(crate::util::ms_from_civil(year, month, day, h, m, sec))
}

/// A server name's parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ServerName<'a> {
    /// The host as written (`[…]` kept for IPv6).
    host: &'a str,
    ip: Option<IpAddr>,
    port: Option<u16>,
}

impl ServerName<'_> {
    /// For an IP literal, the authority to connect to (the port given or
    /// 8448).
    fn literal(&self) -> Option<String> {
        self.ip?;
        Some(format!("{}:{}", self.host, self.port.unwrap_or(DEFAULT_PORT)))
    }
}

/// A server name by the grammar (`core::ids`), with a port from 1 to
/// 65535 and a hostname that can be looked up (no empty label).
fn parse_server_name(s: &str) -> Option<ServerName<'_>> {
    if !ids::is_valid_server_name(s) {
        return None;
    }
    let (host, port) = match s.strip_prefix('[') {
        Some(rest) => {
            let (v6, after) = rest.split_once(']')?;
            let ip = v6.parse::<Ipv6Addr>().ok()?;
            let host = &s[..v6.len() + 2];
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return None,
            };
            return Some(ServerName { host, ip: Some(IpAddr::V6(ip)), port: parse_port(port)? });
        }
        None => match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        },
    };
    let port = parse_port(port)?;
    if let Ok(v4) = host.parse::<Ipv4Addr>() {
        return Some(ServerName { host, ip: Some(IpAddr::V4(v4)), port });
    }
    let labels_ok = host.strip_suffix('.').unwrap_or(host).split('.').all(|l| !l.is_empty() && l.len() <= 63);
    labels_ok.then_some(ServerName { host, ip: None, port })
}

/// `None` → `Some(None)`; a valid port → `Some(Some(port))`; else `None`.
fn parse_port(port: Option<&str>) -> Option<Option<u16>> {
    match port {
        None => Some(None),
        Some(p) => p.parse::<u16>().ok().filter(|&p| p != 0).map(Some),
    }
}

/// The network: `.well-known` over HTTPS through a detached client, SRV
/// through `outbound::dns`.
struct Network {
    client: Client,
    port: u16,
}

impl Lookup for Network {
    fn well_known(&self, host: &str) -> Result<Answer> {
        let url = match self.port {
            WELL_KNOWN_PORT => format!("https://{host}/.well-known/matrix/server"),
            port => format!("https://{host}:{port}/.well-known/matrix/server"),
        };
        self.follow(host, &url)
    }

    fn srv(&self, name: &str) -> Result<Vec<SrvRecord>> {
        dns::srv(name)
    }
}

impl Network {
    /// GETs `url` for `host`'s `.well-known`, following redirects (at
    /// most `REDIRECTS_MAX`, never twice to one URL).
    fn follow(&self, host: &str, url: &str) -> Result<Answer> {
        let mut url = url.to_owned();
        let mut visited: Vec<String> = Vec::new();
        let deadline = Instant::now() + WELL_KNOWN_TIMEOUT;
        for hop in 0..=REDIRECTS_MAX {
            if hop > 0 && Instant::now() >= deadline {
                return Err(unreachable(format!(
                    "{host}: .well-known took longer than {WELL_KNOWN_TIMEOUT:?}"
                )));
            }
            let answer = self.client.request(&OutRequest {
                method: Method::Get,
                url: &url,
                // The first request names the server as the spec says
                // (the same as ureq's own for port 443); redirects their
                // own authority.
                host: (hop == 0).then_some(host),
                headers: &[("Accept", "application/json")],
                body: None,
                max_bytes: WELL_KNOWN_BYTES_MAX,
            })?;
            if !matches!(answer.status, 301 | 302 | 303 | 307 | 308) {
                return Ok(answer);
            }
            let location = answer
                .header("location")
                .ok_or_else(|| unreachable(format!("{url}: a redirect without a Location")))?;
            let next = redirect_target(&url, location)?;
            visited.push(std::mem::replace(&mut url, next));
            if visited.contains(&url) {
                return Err(unreachable(format!("{host}: .well-known redirects in a loop")));
            }
        }
        Err(unreachable(format!("{host}: .well-known redirects more than {REDIRECTS_MAX} times")))
    }
}

fn unreachable(message: String) -> Error {
    Error::new(crate::error::ErrorKind::Unknown, message)
}

/// Where a redirect from `base` to `location` goes: an `https://` URL, a
/// scheme-relative `//host/…` or an absolute path; anything else (plain
/// `http://`, a relative path) is refused.
fn redirect_target(base: &str, location: &str) -> Result<String> {
    if location.starts_with("https://") {
        return Ok(location.to_owned());
    }
    if let Some(rest) = location.strip_prefix("//") {
        return Ok(format!("https://{rest}"));
    }
    if location.starts_with('/') {
        let after_scheme = base.strip_prefix("https://").unwrap_or(base);
        let authority = after_scheme.split('/').next().unwrap_or(after_scheme);
        return Ok(format!("https://{authority}{location}"));
    }
    Err(unreachable(format!("{base}: refusing to follow a redirect to {location:?}")))
}

/// A bounded map of answers with their expiry.
struct Cache<V> {
    entries: HashMap<String, (i64, V)>,
    max: usize,
}

impl<V> Cache<V> {
    fn new(max: usize) -> Cache<V> {
        Cache { entries: HashMap::new(), max }
    }

    /// The value kept for `key` unless it expired by `now_ms`.
    fn get(&self, key: &str, now_ms: i64) -> Option<&V> {
        self.entries.get(key).filter(|(expires, _)| *expires > now_ms).map(|(_, v)| v)
    }

    fn put(&mut self, key: &str, value: V, expires_ms: i64, now_ms: i64) {
        if self.entries.len() >= self.max && !self.entries.contains_key(key) {
            self.entries.retain(|_, (expires, _)| *expires > now_ms);
            if self.entries.len() >= self.max {
                let soonest =
                    self.entries.iter().min_by_key(|(_, (expires, _))| *expires).map(|(k, _)| k.clone());
                if let Some(soonest) = soonest {
                    self.entries.remove(&soonest);
                }
            }
        }
        self.entries.insert(key.to_owned(), (expires_ms, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::client::testing::{Reply, TlsServer};
    use std::sync::Arc;

    /// What the fake network knows, shared with the test.
    #[derive(Default)]
    struct World {
        /// `.well-known` answers by host; a host not here is unreachable.
        well_known: HashMap<String, Answer>,
        /// SRV records by name; a name not here has none.
        srv: HashMap<String, Vec<SrvRecord>>,
        /// SRV names whose lookup fails.
        srv_failing: Vec<String>,
        /// Every question asked, in order.
        asked: Vec<String>,
    }

    #[derive(Clone, Default)]
    struct Fake(Arc<Mutex<World>>);

    impl Fake {
        fn world(&self) -> std::sync::MutexGuard<'_, World> {
            util::lock(&self.0)
        }

        fn delegate(&self, host: &str, to: &str) -> &Fake {
            self.answer(host, ok(&format!(r#"{{"m.server":"{to}"}}"#), &[]))
        }

        fn answer(&self, host: &str, answer: Answer) -> &Fake {
            self.world().well_known.insert(host.to_owned(), answer);
            self
        }

        fn srv(&self, name: &str, target: &str, port: u16) -> &Fake {
            let record = SrvRecord { priority: 10, weight: 0, port, target: target.to_owned() };
            self.world().srv.insert(name.to_owned(), vec![record]);
            self
        }

        fn asked(&self) -> Vec<String> {
            self.world().asked.clone()
        }
    }

    impl Lookup for Fake {
        fn well_known(&self, host: &str) -> Result<Answer> {
            let mut world = self.world();
            world.asked.push(format!("well-known {host}"));
            world.well_known.get(host).cloned().ok_or_else(|| unreachable(format!("{host}: unreachable")))
        }

        fn srv(&self, name: &str) -> Result<Vec<SrvRecord>> {
            let mut world = self.world();
            world.asked.push(format!("srv {name}"));
            if world.srv_failing.iter().any(|n| n == name) {
                return Err(unreachable(format!("{name}: timed out")));
            }
            Ok(world.srv.get(name).cloned().unwrap_or_default())
        }
    }

    fn ok(body: &str, headers: &[(&str, &str)]) -> Answer {
        let headers = headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        Answer { status: 200, headers, body: body.as_bytes().to_vec() }
    }

    fn discovery() -> (Discovery, Fake, Client) {
        let client = Client::new(false, None).expect("client");
        let fake = Fake::default();
        (Discovery::with_lookup(client.clone(), fake.clone()), fake, client)
    }

    const NOW: i64 = 1_700_000_000_000;

    #[track_caller]
    fn resolves(d: &Discovery, name: &str, authority: &str, host: &str) {
        let got = d.resolve_at(name, NOW).unwrap_or_else(|e| panic!("{name}: {}", e.message));
        let want = Destination {
            server_name: name.to_owned(),
            authority: authority.to_owned(),
            host: host.to_owned(),
        };
        assert_eq!(got, want, "{name}");
    }

    #[test]
    fn discovery_is_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Discovery>();
    }

    #[test]
    fn ip_literals_are_used_as_they_are() {
        let (d, fake, _) = discovery();
        resolves(&d, "1.2.3.4", "1.2.3.4:8448", "1.2.3.4");
        resolves(&d, "1.2.3.4:99", "1.2.3.4:99", "1.2.3.4:99");
        resolves(&d, "[::1]", "[::1]:8448", "[::1]");
        resolves(&d, "[2001:db8::1]:8449", "[2001:db8::1]:8449", "[2001:db8::1]:8449");
        assert!(fake.asked().is_empty(), "nothing asked: {:?}", fake.asked());
    }

    #[test]
    fn a_hostname_with_a_port_is_used_as_it_is() {
        let (d, fake, client) = discovery();
        fake.delegate("example.org", "elsewhere.example");
        resolves(&d, "example.org:1234", "example.org:1234", "example.org:1234");
        assert!(fake.asked().is_empty(), "no .well-known, no SRV: {:?}", fake.asked());
        assert_eq!(client.route_of("example.org:1234"), None);
    }

    #[test]
    fn invalid_server_names_are_refused() {
        let (d, fake, _) = discovery();
        for bad in ["", "exa mple.org", "host:0", "host:65536", "host:", "[::1", "[::1]x", "a..b", "[zz]"] {
            assert!(d.resolve_at(bad, NOW).is_err(), "{bad:?}");
        }
        assert!(fake.asked().is_empty());
    }

    #[test]
    fn a_delegation_to_an_ip_literal_connects_there() {
        let (d, fake, _) = discovery();
        fake.delegate("a.example", "5.6.7.8")
            .delegate("b.example", "[::2]:9000")
            .delegate("c.example", "[::3]");
        resolves(&d, "a.example", "5.6.7.8:8448", "5.6.7.8");
        resolves(&d, "b.example", "[::2]:9000", "[::2]:9000");
        resolves(&d, "c.example", "[::3]:8448", "[::3]");
        assert_eq!(fake.asked(), ["well-known a.example", "well-known b.example", "well-known c.example"]);
    }

    #[test]
    fn a_delegation_with_a_port_connects_there_with_that_host() {
        let (d, fake, _) = discovery();
        fake.delegate("example.org", "hs.example.net:443");
        resolves(&d, "example.org", "hs.example.net:443", "hs.example.net:443");
        assert_eq!(fake.asked(), ["well-known example.org"], "no SRV for a delegation with a port");
    }

    #[test]
    fn a_delegation_without_a_port_follows_the_delegated_names_srv() {
        let (d, fake, client) = discovery();
        fake.delegate("example.org", "hs.example.net")
            .srv("_matrix-fed._tcp.hs.example.net", "box.example.net", 8000)
            .srv("_matrix._tcp.hs.example.net", "old.example.net", 7000);
        // Certificate and Host for the delegated name; connected to the
        // SRV target through the client's route.
        resolves(&d, "example.org", "hs.example.net:8000", "hs.example.net");
        assert_eq!(client.route_of("hs.example.net:8000").as_deref(), Some("box.example.net:8000"));
        assert_eq!(fake.asked(), ["well-known example.org", "srv _matrix-fed._tcp.hs.example.net"]);
    }

    #[test]
    fn the_deprecated_srv_name_is_the_delegations_second_choice() {
        let (d, fake, client) = discovery();
        fake.delegate("example.org", "hs.example.net").srv(
            "_matrix._tcp.hs.example.net",
            "old.example.net",
            7000,
        );
        resolves(&d, "example.org", "hs.example.net:7000", "hs.example.net");
        assert_eq!(client.route_of("hs.example.net:7000").as_deref(), Some("old.example.net:7000"));
        assert_eq!(
            fake.asked(),
            [
                "well-known example.org",
                "srv _matrix-fed._tcp.hs.example.net",
                "srv _matrix._tcp.hs.example.net"
            ]
        );
    }

    #[test]
    fn a_delegation_without_srv_goes_to_port_8448() {
        let (d, fake, client) = discovery();
        fake.delegate("example.org", "hs.example.net");
        resolves(&d, "example.org", "hs.example.net:8448", "hs.example.net");
        assert_eq!(client.route_of("hs.example.net:8448"), None);
    }

    #[test]
    fn without_a_valid_well_known_the_hostnames_srv_is_used() {
        let bodies = [
            Answer { status: 404, headers: vec![], body: br#"{"m.server":"x.example"}"#.to_vec() },
            ok("not json", &[]),
            ok(r#"{"m.server": 5}"#, &[]),
            ok(r#"{"m.server": "bad name"}"#, &[]),
            ok(r#"{"m.server": "x.example:0"}"#, &[]),
            ok(r#"{"other": "x.example"}"#, &[]),
        ];
        for body in bodies {
            let (d, fake, client) = discovery();
            fake.answer("example.org", body.clone()).srv(
                "_matrix-fed._tcp.example.org",
                "hs.example.org",
                8000,
            );
            resolves(&d, "example.org", "example.org:8000", "example.org");
            assert_eq!(
                client.route_of("example.org:8000").as_deref(),
                Some("hs.example.org:8000"),
                "{body:?}"
            );
        }
        // Unreachable, then the deprecated name.
        let (d, fake, client) = discovery();
        fake.srv("_matrix._tcp.example.org", "old.example.org", 7000);
        resolves(&d, "example.org", "example.org:7000", "example.org");
        assert_eq!(client.route_of("example.org:7000").as_deref(), Some("old.example.org:7000"));
        assert_eq!(
            fake.asked(),
            ["well-known example.org", "srv _matrix-fed._tcp.example.org", "srv _matrix._tcp.example.org"]
        );
        // Nothing at all: port 8448.
        let (d, _, _) = discovery();
        resolves(&d, "example.org", "example.org:8448", "example.org");
    }

    #[test]
    fn an_srv_target_on_the_same_host_needs_no_route_and_a_stale_one_goes() {
        let (d, fake, client) = discovery();
        fake.srv("_matrix-fed._tcp.example.org", "box.example.org", 8000);
        resolves(&d, "example.org", "example.org:8000", "example.org");
        assert!(client.route_of("example.org:8000").is_some());
        // Later the record names the host itself (expired from the cache).
        fake.srv("_matrix-fed._tcp.example.org", "example.org", 8000);
        let later = NOW + SRV_TTL_MS + 1;
        assert_eq!(d.resolve_at("example.org", later).expect("resolved").authority, "example.org:8000");
        assert_eq!(client.route_of("example.org:8000"), None, "the stale route is gone");
    }

    #[test]
    fn well_known_answers_are_kept_as_long_as_they_say() {
        let (d, fake, _) = discovery();
        fake.answer(
            "example.org",
            ok(r#"{"m.server":"one.example:443"}"#, &[("cache-control", "public, max-age=600")]),
        );
        resolves(&d, "example.org", "one.example:443", "one.example:443");
        fake.delegate("example.org", "two.example:443");
        let at = |ms: i64| d.resolve_at("example.org", NOW + ms).expect("resolved").authority;
        assert_eq!(at(599_000), "one.example:443", "kept for max-age");
        assert_eq!(fake.asked().len(), 1);
        assert_eq!(at(601_000), "two.example:443", "asked again after max-age");
        assert_eq!(fake.asked().len(), 2);
    }

    #[test]
    fn well_known_lifetimes_default_and_are_bounded() {
        let life = |headers: &[(&str, &str)]| cache_lifetime(&ok("{}", headers), NOW);
        assert_eq!(life(&[]), WELL_KNOWN_TTL_DEFAULT_MS, "24 h without a header");
        assert_eq!(life(&[("cache-control", "max-age=1000000")]), WELL_KNOWN_TTL_MAX_MS, "at most 48 h");
        assert_eq!(life(&[("cache-control", "no-store")]), WELL_KNOWN_TTL_MIN_MS, "at least the minimum");
        assert_eq!(life(&[("cache-control", "max-age=0")]), WELL_KNOWN_TTL_MIN_MS);
        assert_eq!(life(&[("cache-control", "Max-Age=3600")]), HOUR_MS);
        // Expires, against Date when there is one.
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        let two_hours_on = "Sun, 06 Nov 1994 10:49:37 GMT";
        assert_eq!(life(&[("date", date), ("expires", two_hours_on)]), 2 * HOUR_MS);
        let now_is_1994 = parse_http_date(date).expect("a date");
        assert_eq!(cache_lifetime(&ok("{}", &[("expires", two_hours_on)]), now_is_1994), 2 * HOUR_MS);
        assert_eq!(life(&[("expires", "0")]), WELL_KNOWN_TTL_MIN_MS, "an invalid Expires is in the past");
        // Cache-Control wins over Expires.
        assert_eq!(life(&[("cache-control", "max-age=7200"), ("expires", "0")]), 2 * HOUR_MS);
        // A default, then a maximum, as resolve keeps them.
        let (d, fake, _) = discovery();
        fake.answer(
            "example.org",
            ok(r#"{"m.server":"one.example:1"}"#, &[("cache-control", "max-age=999999999")]),
        );
        d.resolve_at("example.org", NOW).expect("resolved");
        fake.delegate("example.org", "two.example:1");
        let authority = |ms| d.resolve_at("example.org", NOW + ms).expect("resolved").authority;
        assert_eq!(authority(WELL_KNOWN_TTL_MAX_MS - 1), "one.example:1");
        assert_eq!(authority(WELL_KNOWN_TTL_MAX_MS), "two.example:1");
    }

    #[test]
    fn http_dates() {
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777_000));
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("Tue, 29 Feb 2000 23:59:59 GMT"), Some(951_868_799_000));
        for bad in [
            "",
            "0",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun, 06 Nov 1994 25:00:00 GMT",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn failures_are_kept_an_hour() {
        let (d, fake, _) = discovery();
        resolves(&d, "example.org", "example.org:8448", "example.org");
        let asked = fake.asked().len(); // well-known, then two SRV names
        assert_eq!(asked, 3);
        fake.delegate("example.org", "hs.example.net:443");
        let at = |ms: i64| d.resolve_at("example.org", NOW + ms).expect("resolved").authority;
        assert_eq!(at(WELL_KNOWN_ERROR_TTL_MS - 1), "example.org:8448", "the failure is kept");
        assert_eq!(fake.asked().len(), asked, "nothing asked again within the hour");
        assert_eq!(at(WELL_KNOWN_ERROR_TTL_MS), "hs.example.net:443", "asked again after it");
    }

    #[test]
    fn srv_answers_are_kept_and_failed_lookups_briefly() {
        let (d, fake, _) = discovery();
        fake.world().srv_failing.push("_matrix-fed._tcp.example.org".to_owned());
        resolves(&d, "example.org", "example.org:8448", "example.org");
        fake.world().srv_failing.clear();
        fake.srv("_matrix-fed._tcp.example.org", "hs.example.org", 8000);
        let count = |what: &str| fake.asked().iter().filter(|a| *a == what).count();
        let at = |ms: i64| d.resolve_at("example.org", NOW + ms).expect("resolved").authority;
        assert_eq!(at(SRV_ERROR_TTL_MS - 1), "example.org:8448", "the failure is kept a while");
        assert_eq!(count("srv _matrix-fed._tcp.example.org"), 1);
        assert_eq!(at(SRV_ERROR_TTL_MS), "example.org:8000");
        assert_eq!(count("srv _matrix-fed._tcp.example.org"), 2);
        // The answer is kept an hour (the .well-known failure too).
        fake.srv("_matrix-fed._tcp.example.org", "hs.example.org", 9000);
        assert_eq!(at(SRV_ERROR_TTL_MS + SRV_TTL_MS - 1), "example.org:8000");
        assert_eq!(count("srv _matrix-fed._tcp.example.org"), 2);
        assert_eq!(at(SRV_ERROR_TTL_MS + SRV_TTL_MS), "example.org:9000");
    }

    #[test]
    fn caches_are_bounded_and_drop_what_expires_soonest() {
        let mut cache = Cache::new(3);
        cache.put("a", 1, NOW + 30, NOW);
        cache.put("b", 2, NOW + 10, NOW);
        cache.put("c", 3, NOW + 20, NOW);
        cache.put("d", 4, NOW + 40, NOW);
        assert_eq!(cache.entries.len(), 3);
        assert_eq!(cache.get("b", NOW), None, "the soonest to expire went");
        assert_eq!(cache.get("a", NOW), Some(&1));
        // Expired entries go first.
        cache.put("e", 5, NOW + 50, NOW + 25); // c (NOW + 20) expired by then
        assert_eq!(
            (cache.get("a", NOW + 25), cache.get("c", NOW), cache.get("e", NOW)),
            (Some(&1), None, Some(&5))
        );
        assert_eq!(cache.get("a", NOW + 30), None, "expired at its time");
    }

    #[test]
    fn redirect_targets() {
        let base = "https://example.org/.well-known/matrix/server";
        assert_eq!(
            redirect_target(base, "https://other.example/x").expect("absolute"),
            "https://other.example/x"
        );
        assert_eq!(
            redirect_target(base, "//other.example/x").expect("scheme-relative"),
            "https://other.example/x"
        );
        assert_eq!(redirect_target(base, "/moved").expect("path"), "https://example.org/moved");
        assert_eq!(
            redirect_target("https://example.org:8443/a", "/b").expect("path"),
            "https://example.org:8443/b"
        );
        assert!(redirect_target(base, "http://example.org/x").is_err(), "never down to plain HTTP");
        assert!(redirect_target(base, "relative").is_err());
    }

    /// A `.well-known` server on 127.0.0.1 named `localhost`: the
    /// delegation behind one redirect.
    fn well_known_server() -> TlsServer {
        TlsServer::start(&["localhost"], |seen| match seen.path.as_str() {
            "/.well-known/matrix/server" => Reply::new(302, b"").header("Location", "/delegation"),
            "/delegation" => {
                Reply::new(200, br#"{"m.server":"localhost:1234"}"#).header("Cache-Control", "max-age=3600")
            }
            "/loop" => Reply::new(301, b"").header("Location", "/loop2"),
            "/loop2" => Reply::new(301, b"").header("Location", "/loop"),
            _ => Reply::new(404, b""),
        })
    }

    #[test]
    fn the_well_known_fetch_follows_a_redirect_and_is_kept() {
        let server = well_known_server();
        let client = Client::new(true, Some(server.ca_pem.as_bytes())).expect("client");
        let d = Discovery::with_well_known_port(client, server.port);
        resolves(&d, "localhost", "localhost:1234", "localhost:1234");
        let seen = server.seen();
        let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(paths, ["/.well-known/matrix/server", "/delegation"]);
        assert_eq!(seen[0].header("host"), Some("localhost"), "Host is the server name");
        assert_eq!(seen[0].sni.as_deref(), Some("localhost"));
        // Kept: no second fetch.
        resolves(&d, "localhost", "localhost:1234", "localhost:1234");
        assert_eq!(server.seen().len(), 2);
    }

    #[test]
    fn the_well_known_fetch_stops_at_a_redirect_loop() {
        let server = well_known_server();
        let client = Client::new(true, Some(server.ca_pem.as_bytes())).expect("client");
        let network = Network { client, port: server.port };
        let e = network
            .follow("localhost", &format!("https://localhost:{}/loop", server.port))
            .expect_err("a loop");
        assert!(e.message.contains("loop"), "{}", e.message);
        assert_eq!(server.seen().len(), 2, "each place asked once");
    }

    #[test]
    fn the_well_known_fetch_keeps_the_address_policy() {
        let server = well_known_server();
        let client = Client::new(false, Some(server.ca_pem.as_bytes())).expect("client");
        let network = Network { client, port: server.port };
        let e = network.well_known("localhost").expect_err("localhost is loopback");
        assert!(e.message.contains("public address"), "{}", e.message);
        assert_eq!(server.connections(), 0, "never connected");
    }
}
