//! The HTTP edge: the connection reactor (`reactor.rs`: every socket, plain
//! and TLS, on one thread; request heads parsed within limits by
//! `head.rs`; a connection lent to a worker per request by `conn.rs`), a
//! fixed pool of worker threads taking complete requests from it, bounded
//! body reading, routing, authentication, rate limits, CORS, the access
//! log, and the panic net.
//!
//! Only this module touches tiny_http (whose `Request` and `Response` carry
//! a request and its answer). Handlers in `api/` see an
//! [`api::Request`] and return an [`api::Response`] or an [`Error`]; the JSON
//! error body is made here.

pub mod conn;
pub mod head;
pub mod reactor;
pub mod router;

use std::io::Read;
use std::net::IpAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::api::{self, RawBody, RawResponse, Request, Response, UploadBody};
use crate::app::App;
use crate::error::{Error, ErrorKind, Result};
use crate::{hub, log};
use router::{AuthReq, Method};

/// How often an idle worker looks at the shutdown flag.
const RECV_POLL: Duration = Duration::from_millis(250);

/// What every answer names itself as (`Server`).
pub const SERVER_NAME: &str = concat!("Hearth/", env!("CARGO_PKG_VERSION"));

/// Runs the worker pool until `app.shutdown` is set, then returns once every
/// worker has finished its in-flight request.
pub fn serve(app: Arc<App>, front: Arc<reactor::Front>) {
    let workers: Vec<_> = (0..app.config.workers)
        .map(|i| {
            let app = app.clone();
            let front = front.clone();
            std::thread::Builder::new()
                .name(format!("http-{i}"))
                .spawn(move || worker(&app, &front))
                .expect("spawning an HTTP worker thread")
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
}

fn worker(app: &Arc<App>, front: &reactor::Front) {
    while !app.shutdown.load(Ordering::Relaxed) {
        if let Some(rq) = front.recv_timeout(RECV_POLL) {
            handle(app, rq);
        }
    }
}

fn handle(app: &Arc<App>, mut rq: tiny_http::Request) {
    let started = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| dispatch(app, &mut rq)));
    let outcome = outcome.unwrap_or_else(|_| Outcome::Done(Err(Error::internal("handler panicked"))));
    match outcome {
        Outcome::Done(result) => respond_since(rq, result, started),
        Outcome::Raw(Ok(raw)) => respond_raw(rq, raw, started),
        Outcome::Raw(Err(e)) => respond_since(rq, Err(e), started),
        Outcome::Wait(waiter, deadline) => {
            let parked = Box::new(ParkedPoll { app: app.clone(), request: rq, waiter, deadline, started });
            if let Err(p) = app.hub.park(parked) {
                // The hub is full: answer now with what there is.
                p.expire();
            }
        }
    }
}

/// What a request comes to: an answer now (JSON, or bytes that may stream
/// from the database), or a long-poll to park.
enum Outcome<'a> {
    Done(Result<Response>),
    Raw(Result<RawResponse<'a>>),
    Wait(Box<dyn api::Waiter>, Instant),
}

/// A long-poll parked in the hub: the request, the handler's waiter, and
/// the HTTP side of answering it (CORS, JSON errors, the access log).
struct ParkedPoll {
    app: Arc<App>,
    request: tiny_http::Request,
    waiter: Box<dyn api::Waiter>,
    deadline: Instant,
    /// When the request arrived, for the access log.
    started: Instant,
}

impl hub::Parked for ParkedPoll {
    fn user_id(&self) -> &str {
        self.waiter.user_id()
    }

    fn rooms(&self) -> &std::collections::HashSet<String> {
        self.waiter.rooms()
    }

    fn seen(&self) -> (i64, u64) {
        self.waiter.seen()
    }

    fn deadline(&self) -> Instant {
        self.deadline
    }

    fn gone(&self) -> bool {
        self.request.peer_gone()
    }

    fn recheck(mut self: Box<Self>) -> Option<Box<dyn hub::Parked>> {
        match self.waiter.poll(&self.app) {
            Ok(None) => Some(self),
            Ok(Some(resp)) => {
                respond_since(self.request, Ok(resp), self.started);
                None
            }
            Err(e) => {
                log::warn(format_args!("long-poll answer failed: {}", e.message));
                respond_since(self.request, Err(e), self.started);
                None
            }
        }
    }

    fn expire(mut self: Box<Self>) {
        let resp = self.waiter.timeout_response(&self.app);
        respond_since(self.request, resp, self.started);
    }

    fn refuse(self: Box<Self>) {
        let busy = Error::new(ErrorKind::LimitExceeded { retry_after_ms: 1000 }, "The server is busy");
        respond_since(self.request, Err(busy), self.started);
    }
}

/// Writes the answer (or the error's JSON body) with the standard headers,
/// and logs the request.
pub fn respond_since(rq: tiny_http::Request, result: Result<Response>, started: Instant) {
    let method = rq.method().clone();
    let path = rq.url().split('?').next().unwrap_or("").to_owned();
    let (status, body) = match result {
        Ok(resp) => (resp.status, resp.body),
        Err(e) => {
            if matches!(e.kind, ErrorKind::Internal) {
                log::error(format_args!("{method} {path}: {}", e.message));
            }
            (e.status(), Some(e.body()))
        }
    };
    let bytes = body.map(|b| serde_json::to_vec(&b).unwrap_or_default()).unwrap_or_default();
    let mut response = tiny_http::Response::from_data(bytes).with_status_code(status);
    for h in json_headers().iter().chain(standard_headers()) {
        response.add_header(h.clone());
    }
    // The access log names the path only: query strings can carry tokens.
    log::info(format_args!("{method} {path} {status} {}ms", started.elapsed().as_millis()));
    let _ = rq.respond(response);
}

/// Writes a binary answer with the standard headers and its own, streaming
/// its body, and logs the request. A header value that is not valid is
/// left out rather than sent.
fn respond_raw(rq: tiny_http::Request, raw: RawResponse<'_>, started: Instant) {
    let method = rq.method().clone();
    let path = rq.url().split('?').next().unwrap_or("").to_owned();
    let mut headers: Vec<tiny_http::Header> = standard_headers().to_vec();
    let own = std::iter::once(("Content-Type", raw.content_type.as_str()))
        .chain(raw.headers.iter().map(|(k, v)| (*k, v.as_str())));
    headers.extend(own.filter_map(|(k, v)| tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).ok()));
    if !raw.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("Cache-Control")) {
        headers.push(no_store_header().clone());
    }
    let status = raw.status;
    let (reader, len): (Box<dyn std::io::Read + '_>, u64) = match raw.body {
        RawBody::Bytes(b) => {
            let len = b.len() as u64;
            (Box::new(std::io::Cursor::new(b)), len)
        }
        RawBody::Stream { reader, len } => (reader, len),
    };
    let response = tiny_http::Response::new(
        tiny_http::StatusCode(status),
        headers,
        reader,
        Some(usize::try_from(len).unwrap_or(usize::MAX)),
        None,
    )
    // A known length is sent as Content-Length (clients show progress).
    .with_chunked_threshold(usize::MAX);
    log::info(format_args!("{method} {path} {status} {}ms", started.elapsed().as_millis()));
    // The body is read while it is written: a failing read (or a panic in
    // it) ends this response only, never the worker.
    let _ = catch_unwind(AssertUnwindSafe(|| rq.respond(response)));
}

fn dispatch<'a>(app: &'a App, rq: &mut tiny_http::Request) -> Outcome<'a> {
    match prepare(app, rq) {
        Err(e) => Outcome::Done(Err(e)),
        Ok(None) => Outcome::Done(Ok(Response::empty(204))),
        Ok(Some((route, req))) => match route.handler {
            router::Kind::Plain(h) => Outcome::Done(h(app, &req)),
            router::Kind::Raw(h) => Outcome::Raw(h(app, &req)),
            router::Kind::Upload(h) => {
                let declared = rq.body_length().map(|n| n as u64);
                let content_type = rq
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("Content-Type"))
                    .map(|h| h.value.as_str().to_owned());
                let limit = app.config.max_upload_bytes;
                let mut body = UploadBody::new(rq.as_reader(), limit, declared, content_type);
                // A body the handler left unread closes the connection
                // after the answer (`conn::Lease`): nothing is read off here.
                Outcome::Done(h(app, &req, &mut body))
            }
            router::Kind::LongPoll(h) => match h(app, &req) {
                Ok(api::Poll::Ready(resp)) => Outcome::Done(Ok(resp)),
                Ok(api::Poll::Wait(waiter, deadline)) => Outcome::Wait(waiter, deadline),
                Err(e) => Outcome::Done(Err(e)),
            },
        },
    }
}

/// Routes, bounds, authenticates and rate-limits a request; `None` for a
/// CORS pre-flight (answered by the headers alone).
fn prepare(app: &App, rq: &mut tiny_http::Request) -> Result<Option<(&'static router::Route, Request)>> {
    let method = match rq.method() {
        tiny_http::Method::Get => Method::Get,
        tiny_http::Method::Head => Method::Get,
        tiny_http::Method::Post => Method::Post,
        tiny_http::Method::Put => Method::Put,
        tiny_http::Method::Delete => Method::Delete,
        // CORS pre-flight: the headers every response carries are the answer.
        tiny_http::Method::Options => return Ok(None),
        _ => return Err(Error::new(ErrorKind::MethodNotAllowed, "Method not allowed")),
    };
    let url = rq.url().to_owned();
    let (raw_path, raw_query) = url.split_once('?').unwrap_or((&url, ""));
    let (route, params) = router::find(method, raw_path)?;
    let query = parse_query(raw_query);
    if matches!(route.handler, router::Kind::Upload(_)) {
        // The handler reads an upload itself, after the checks below; the
        // body of one they refuse is not read (the connection closes after
        // the answer unless it was small: `conn::Lease`).
        let (remote_ip, auth, origin) = check(app, rq, route, &query, &[])?;
        return Ok(Some((route, Request { params, query, body: Vec::new(), remote_ip, auth, origin })));
    }
    // DELETE carries a body too: `DELETE /devices/{deviceId}` sends its UIA `auth` in it.
    let body = if matches!(method, Method::Post | Method::Put | Method::Delete) {
        read_body(rq, route.body_max.unwrap_or(app.config.max_body_bytes))?
    } else {
        Vec::new()
    };
    let (remote_ip, auth, origin) = check(app, rq, route, &query, &body)?;
    Ok(Some((route, Request { params, query, body, remote_ip, auth, origin })))
}

/// Authenticates and rate-limits a routed request.
fn check(
    app: &App,
    rq: &tiny_http::Request,
    route: &router::Route,
    query: &[(String, String)],
    body: &[u8],
) -> Result<(IpAddr, Option<api::Auth>, Option<String>)> {
    let remote_ip = client_ip(&app.config.trusted_proxies, rq);
    if route.federation && !app.config.federation {
        return Err(Error::new(ErrorKind::Unrecognized, "Federation is disabled on this server"));
    }
    if route.auth == AuthReq::Server {
        // Per origin server, not per IP: many servers may share a proxy.
        let headers: Vec<&str> = rq
            .headers()
            .iter()
            .filter(|h| h.field.equiv("Authorization"))
            .map(|h| h.value.as_str())
            .collect();
        let method = rq.method().as_str().to_ascii_uppercase();
        let origin =
            crate::federation::inbound::authenticate(app, remote_ip, &method, rq.url(), &headers, body)?;
        if route.rate_limited {
            app.fed_limiter.check(&origin)?;
        }
        // It reached us, so it is up: what waits for it goes now.
        app.fed_queue.reset(&origin);
        app.fed_memo.answered(&origin);
        return Ok((remote_ip, None, Some(origin)));
    }
    // A route that needs no token does not look at one: its Authorization
    // header may carry another scheme (federation's X-Matrix).
    let token = match route.auth {
        AuthReq::None => None,
        // Only an as_token is looked at; a malformed header is ignored too.
        AuthReq::Appservice => access_token(rq, query).ok().flatten(),
        _ => access_token(rq, query)?,
    };
    let auth = match (route.auth, token) {
        (AuthReq::None | AuthReq::Server, _) => None,
        (AuthReq::Appservice, None) => None,
        (AuthReq::Appservice, Some(t)) => api::auth::appservice_sender(app, &t),
        (AuthReq::Required | AuthReq::Guests, None) => {
            return Err(Error::new(ErrorKind::MissingToken, "Missing access token"))
        }
        (AuthReq::Required | AuthReq::Guests | AuthReq::Optional, Some(t)) => {
            Some(api::auth::authenticate(app, &t, &remote_ip, query)?)
        }
        (AuthReq::Optional, None) => None,
    };
    if route.auth == AuthReq::Required && auth.as_ref().is_some_and(|a| a.is_guest) {
        return Err(Error::new(ErrorKind::GuestAccessForbidden, "Guest accounts may not use this endpoint"));
    }
    // An application service registered with `rate_limited: false` is
    // not limited at all (its bridge speaks for many people at once).
    if route.rate_limited && auth.as_ref().is_none_or(|a| a.rate_limited()) {
        app.limiter.check(&format!("ip:{remote_ip}"))?;
        if let Some(a) = &auth {
            app.limiter.check(&format!("user:{}", a.user_id))?;
        }
    }
    Ok((remote_ip, auth, None))
}

/// Reads at most `limit` bytes of body; one byte more is `M_TOO_LARGE`.
fn read_body(rq: &mut tiny_http::Request, limit: usize) -> Result<Vec<u8>> {
    let too_large = || Error::new(ErrorKind::TooLarge, format!("Request body is over {limit} bytes"));
    if rq.body_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = Vec::with_capacity(rq.body_length().unwrap_or(0).min(limit));
    rq.as_reader()
        .take(limit as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|_| Error::bad_json("Could not read the request body"))?;
    if body.len() > limit {
        // The rest is not read: a chunked body's connection closes after
        // the answer (`conn::Lease`).
        return Err(too_large());
    }
    Ok(body)
}

/// The token from `Authorization: Bearer` or the `access_token` query
/// parameter (the original specification's form). Both at once must agree.
fn access_token(rq: &tiny_http::Request, query: &[(String, String)]) -> Result<Option<String>> {
    let from_header = rq
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .map(|h| {
            let v = h.value.as_str().trim();
            match v.split_once(' ') {
                Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => Ok(t.trim().to_owned()),
                _ => Err(Error::new(ErrorKind::MissingToken, "Authorization header is not a Bearer token")),
            }
        })
        .transpose()?;
    let from_query = query.iter().find(|(k, _)| k == "access_token").map(|(_, v)| v.clone());
    match (from_header, from_query) {
        (Some(h), Some(q)) if h != q => Err(Error::new(
            ErrorKind::UnknownToken { soft_logout: false },
            "Two different access tokens were given",
        )),
        (Some(t), _) | (None, Some(t)) if !t.is_empty() => Ok(Some(t)),
        _ => Ok(None),
    }
}

/// The client's address: the connection's peer. Behind a reverse proxy listed in
/// `trusted_proxies`, `X-Forwarded-For` names the client: its rightmost
/// entry that is not itself a trusted proxy (entries further left were
/// written by the client and prove nothing). From any other peer the
/// header is ignored.
fn client_ip(trusted: &[crate::config::IpNet], rq: &tiny_http::Request) -> IpAddr {
    let Some(addr) = rq.remote_addr() else { return IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED) };
    let peer = addr.ip();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let mut entries = Vec::new();
    for h in rq.headers().iter().filter(|h| h.field.equiv("X-Forwarded-For")) {
        for entry in h.value.as_str().split(',') {
            match entry.trim().parse::<IpAddr>() {
                Ok(ip) => entries.push(ip),
                // A garbled header proves nothing: the proxy is the client.
                Err(_) => return peer,
            }
        }
    }
    // Every entry a trusted proxy: the leftmost is as far as it goes.
    entries.iter().rev().find(|ip| !is_trusted(**ip)).or(entries.first()).copied().unwrap_or(peer)
}

/// Splits a query string into decoded pairs.
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

/// Percent-decodes `s` (and `+` as space in query strings). Invalid UTF-8
/// after decoding is replaced, so a hostile path cannot cause a failure here;
/// validators of each identifier then refuse what does not fit.
pub fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header is valid")
}

/// The headers of a JSON answer, besides the standard ones.
fn json_headers() -> &'static [tiny_http::Header] {
    static HEADERS: std::sync::OnceLock<Vec<tiny_http::Header>> = std::sync::OnceLock::new();
    HEADERS.get_or_init(|| vec![header("Content-Type", "application/json"), no_store_header().clone()])
}

fn no_store_header() -> &'static tiny_http::Header {
    static HEADER: std::sync::OnceLock<tiny_http::Header> = std::sync::OnceLock::new();
    HEADER.get_or_init(|| header("Cache-Control", "no-cache, no-store, must-revalidate"))
}

/// The headers every answer carries (`Server`, CORS).
fn standard_headers() -> &'static [tiny_http::Header] {
    static HEADERS: std::sync::OnceLock<Vec<tiny_http::Header>> = std::sync::OnceLock::new();
    HEADERS.get_or_init(|| {
        vec![
            header("Server", SERVER_NAME),
            header("Access-Control-Allow-Origin", "*"),
            header("Access-Control-Allow-Methods", "GET, HEAD, POST, PUT, DELETE, OPTIONS"),
            header("Access-Control-Allow-Headers", "X-Requested-With, Content-Type, Authorization, Date"),
            // Lets a hosted web client reach a server on the user's own
            // machine or network (Private Network Access pre-flights).
            header("Access-Control-Allow-Private-Network", "true"),
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("%40alice%3Aexample.org", false), "@alice:example.org");
        assert_eq!(percent_decode("a+b%2", true), "a b%2");
        assert_eq!(percent_decode("a+b", false), "a+b");
        assert_eq!(percent_decode("%", false), "%");
        assert_eq!(percent_decode("%zz", false), "%zz");
        assert_eq!(percent_decode("%ff", false), "\u{fffd}");
        assert_eq!(
            parse_query("a=1&b=%20x&&c"),
            vec![("a".into(), "1".into()), ("b".into(), " x".into()), ("c".into(), "".into())]
        );
    }
}
