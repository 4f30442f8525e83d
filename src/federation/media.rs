//! Media over federation (the Server-Server API's content repository):
//! other servers' media fetched for local clients and kept in the remote
//! media cache, and the `multipart/mixed` framing of the federation media
//! answers, written (`frame`) and read (`Multipart`).
//!
//! **Fetching.** An `mxc://` of another server is asked of its origin
//! with a signed `GET /_matrix/federation/v1/media/download/{mediaId}`
//! (or `/thumbnail/{mediaId}`): a two-part answer, the metadata (`{}`)
//! and the media, whose part is either the bytes (with their
//! `Content-Type` and `Content-Disposition`) or a `Location` to fetch
//! them from with a plain GET. An origin that does not know the endpoint
//! (404 or 405 with `M_UNRECOGNIZED` or no JSON body: Synapse's
//! `is_unknown_endpoint`) is asked the deprecated
//! `/_matrix/media/v3/download/{serverName}/{mediaId}?allow_remote=false`
//! instead. Errors follow Synapse's media repository: the origin's 404 is
//! a 404 (`M_NOT_FOUND`), media over `max_upload_bytes` 502
//! `M_TOO_LARGE` (the spec's answer; the caller renders it, see
//! [`is_too_large`]), anything else — unreachable, a refusal, a malformed
//! answer — 502 `M_UNKNOWN`.
//!
//! **The cache.** Bytes are staged into the database as they are read
//! (`storage::media`'s staging, one short write per `SPILL_BYTES`), then
//! named by their hash and recorded as a `media` row of the origin. Past
//! `remote_media_cache_bytes` the least recently used cached contents
//! (`media_content.touched_ts`, refreshed at most every
//! `TOUCH_EVERY_MS` when served) are evicted in the same write. With a
//! cap of 0 (or media larger than the cap) the staged copy only serves
//! the one answer ([`Served::transient`]) and is dropped after it.
//! Thumbnails of media not in the cache are fetched from the origin
//! each time and not kept; a cached original is thumbnailed here.
//!
//! **Bounds.** At most `workers - 1` requests at once wait on other
//! servers' media (past it 429 `M_LIMIT_EXCEEDED`): each holds an HTTP
//! worker (a local user could otherwise tie them all up with slow
//! origins). Requests for the same media share one fetch (single-flight:
//! the others wait for it, at most `FLIGHT_WAIT`, then read the cache; a
//! failed fetch fails them too). With a cache of 0 each request fetches
//! its own. The flights live in this module (`flights`), one table per
//! process: `App` does not own them (yet).
//!
//! Every URL fetched, a `Location` included, goes through the outbound
//! client's address policy: an origin cannot point us at a private
//! address (unless `outbound_allow_private`).
//!
//! Answers are read as they arrive (`Federation::request_stream`), so a
//! fetch holds one `SPILL_BYTES` buffer, not the media; the whole
//! exchange is bounded by the outbound client's `REQUEST_TIMEOUT`.
//!
//! **Architecture Invariant:** no network I/O inside a write; cached
//! remote media is never served over federation (the served endpoints
//! read this server's own media only, `api::federation::media`).

use std::io::{self, Read};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::app::App;
use crate::error::{Error, ErrorKind, Result};
use crate::federation::memo::Join;
use crate::outbound::client::{Method, OutRequest};
use crate::storage::media::{self as store, ContentReader, Media, RemoteCopy, CHUNK_BYTES};
use crate::storage::{now_ms, Db};

/// Length of the random boundaries of the answers served.
pub const BOUNDARY_LEN: usize = 32;
/// Longest boundary read (RFC 2046: 1 to 70 characters).
pub const BOUNDARY_MAX: usize = 70;
/// The most bytes of one part's header block read.
pub const PART_HEAD_BYTES_MAX: usize = 8 * 1024;
/// The most bytes of the metadata part (`{}` today).
pub const METADATA_BYTES_MAX: usize = 64 * 1024;
/// An answer's bytes besides the media's: boundaries, part headers,
/// the metadata.
pub const FRAMING_BYTES_MAX: u64 = 128 * 1024;
/// The most bytes of an error answer read (for its `errcode`).
pub const ERROR_BYTES_MAX: u64 = 64 * 1024;
/// Redirects followed from a `Location` (the part's, then the target's).
pub const REDIRECTS_MAX: usize = 3;
/// Chunks read and staged per write while media arrives.
const SPILL_CHUNKS: usize = 4;
const SPILL_BYTES: usize = CHUNK_BYTES * SPILL_CHUNKS;
/// A cached copy's recency is written at most this often (a write per
/// download would be an fsync per download).
pub const TOUCH_EVERY_MS: i64 = 5 * 60 * 1000;
/// The longest a request waits for another request's fetch of the same
/// media: three whole outbound exchanges (the federation endpoint, the
/// legacy one, a redirect).
pub const FLIGHT_WAIT: Duration = Duration::from_secs(3 * 60);
/// Buffer of the multipart reader (a delimiter is at most 76 bytes).
const READ_BUF_BYTES: usize = 64 * 1024;

// ---------------------------------------------------------------------
// The multipart/mixed framing (pure).
// ---------------------------------------------------------------------

/// A fresh random boundary.
pub fn boundary() -> String {
    crate::crypto::token::random_string(BOUNDARY_LEN, crate::crypto::token::ALNUM)
}

/// The bytes before and after the media in a federation media answer
/// (RFC 2046 §5.1.1, CRLF line ends, no preamble or epilogue): the
/// metadata part (`{}`), then the media part's headers; after the media,
/// the close delimiter. The answer's `Content-Type` is
/// `multipart/mixed; boundary={boundary}`.
pub fn frame(boundary: &str, content_type: &str, disposition: &str) -> (Vec<u8>, Vec<u8>) {
    let head = format!(
        "--{boundary}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--{boundary}\r\n\
         Content-Type: {content_type}\r\nContent-Disposition: {disposition}\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    (head.into_bytes(), tail.into_bytes())
}

/// The boundary of a `multipart/mixed` `Content-Type`, if it is one.
pub fn boundary_of(content_type: &str) -> Option<String> {
    let mut params = split_params(content_type).into_iter();
    if !params.next()?.trim().eq_ignore_ascii_case("multipart/mixed") {
        return None;
    }
    let value = params.find_map(|p| {
        let (name, value) = p.split_once('=')?;
        name.trim().eq_ignore_ascii_case("boundary").then(|| unquote(value.trim()))
    })?;
    let ok = !value.is_empty()
        && value.len() <= BOUNDARY_MAX
        && value.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !value.ends_with(' ');
    ok.then_some(value)
}

/// Splits a header value at the `;` outside double quotes.
fn split_params(value: &str) -> Vec<&str> {
    let (mut parts, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts
}

/// A parameter value without its quotes and escapes.
fn unquote(value: &str) -> String {
    match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.extend(chars.next()),
                    c => out.push(c),
                }
            }
            out
        }
        None => value.to_owned(),
    }
}

/// The file name a `Content-Disposition` gives: `filename*=utf-8''…`
/// (RFC 5987, percent-decoded, valid UTF-8) first, else an ASCII
/// `filename`, as Synapse reads it (`get_filename_from_headers`). Names
/// longer than `media::FILENAME_MAX_BYTES` or with control characters
/// are left out.
pub fn filename_of(disposition: &str) -> Option<String> {
    let params: Vec<(String, String)> = split_params(disposition)
        .into_iter()
        .skip(1)
        .filter_map(|p| {
            let (name, value) = p.split_once('=')?;
            Some((name.trim().to_ascii_lowercase(), unquote(value.trim())))
        })
        .collect();
    let get = |name: &str| params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let extended = get("filename*").and_then(|v| {
        let encoded = v.get(..7).filter(|p| p.eq_ignore_ascii_case("utf-8''")).map(|_| &v[7..])?;
        String::from_utf8(percent_decode(encoded)?).ok()
    });
    let name = extended.or_else(|| get("filename").filter(|v| v.is_ascii()).map(str::to_owned))?;
    let fine = !name.is_empty()
        && name.len() <= crate::media::FILENAME_MAX_BYTES
        && !name.chars().any(char::is_control);
    fine.then_some(name)
}

/// `%XX` decoding; `None` for a malformed escape or a non-ASCII input.
fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let (bytes, mut out, mut i) = (s.as_bytes(), Vec::with_capacity(s.len()), 0);
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b if b.is_ascii() => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Whether an error answer means the endpoint is unknown to the server
/// (an older one): 404 or 405 with `M_UNRECOGNIZED`, or without a JSON
/// body (Synapse's `is_unknown_endpoint`).
pub fn is_unknown_endpoint(status: u16, body: &[u8]) -> bool {
    if status != 404 && status != 405 {
        return false;
    }
    let text = body.trim_ascii_start();
    if !text.starts_with(b"{") {
        return true;
    }
    let errcode = serde_json::from_slice::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("errcode").and_then(|c| c.as_str()).map(str::to_owned));
    errcode.as_deref() == Some("M_UNRECOGNIZED")
}

/// A part's headers: names in lower case, values trimmed.
pub type PartHeaders = Vec<(String, String)>;

pub fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Reads a `multipart/mixed` body part by part as it arrives, holding
/// at most `READ_BUF_BYTES`: [`Multipart::next_part`] moves to the next
/// part and gives its headers; reading gives that part's body, which
/// ends at the next delimiter. A body that ends inside a part is an
/// error (`UnexpectedEof`), never a short part.
pub struct Multipart<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    /// `CRLF--boundary`.
    delimiter: Vec<u8>,
    /// Inside a part's body (or the preamble, before the first part).
    in_body: bool,
    closed: bool,
}

fn malformed(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("malformed multipart answer: {what}"))
}

impl<R: Read> Multipart<R> {
    pub fn new(inner: R, boundary: &str) -> Multipart<R> {
        let mut buf = vec![0u8; READ_BUF_BYTES];
        // The first delimiter may open the body without a CRLF before it:
        // one is put in front, so every delimiter looks the same.
        buf[..2].copy_from_slice(b"\r\n");
        let delimiter = format!("\r\n--{boundary}").into_bytes();
        Multipart { inner, buf, start: 0, end: 2, eof: false, delimiter, in_body: true, closed: false }
    }

    fn available(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Reads more from the inner reader; false at its end.
    fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            return Err(malformed("a line longer than the buffer"));
        }
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// At least `n` bytes available, or fewer at the end.
    fn want(&mut self, n: usize) -> io::Result<()> {
        while self.available().len() < n && self.fill()? {}
        Ok(())
    }

    /// Moves past the rest of the current part (or the preamble) and its
    /// delimiter to the next part, and returns its headers; `None` at the
    /// close delimiter.
    pub fn next_part(&mut self) -> io::Result<Option<PartHeaders>> {
        if self.closed {
            return Ok(None);
        }
        io::copy(self, &mut io::sink())?;
        // Just past a delimiter: `--` closes, else optional whitespace and CRLF.
        self.want(2)?;
        if self.available().starts_with(b"--") {
            self.closed = true;
            return Ok(None);
        }
        let line = self.line(BOUNDARY_MAX + 2)?;
        if !line.iter().all(|b| *b == b' ' || *b == b'\t') {
            return Err(malformed("text after a boundary"));
        }
        let mut headers = Vec::new();
        let mut total = 0;
        loop {
            let line = self.line(PART_HEAD_BYTES_MAX.saturating_sub(total))?;
            total += line.len() + 2;
            if total > PART_HEAD_BYTES_MAX {
                return Err(malformed("a header block too long"));
            }
            if line.is_empty() {
                break;
            }
            let text = std::str::from_utf8(&line).map_err(|_| malformed("a header that is not text"))?;
            let (name, value) = text.split_once(':').ok_or_else(|| malformed("a header without a colon"))?;
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
        self.in_body = true;
        Ok(Some(headers))
    }

    /// The next line without its CRLF, at most `max` bytes.
    fn line(&mut self, max: usize) -> io::Result<Vec<u8>> {
        let mut searched = 0;
        loop {
            let avail = self.available();
            if let Some(i) = avail[searched..].windows(2).position(|w| w == b"\r\n") {
                let line = avail[..searched + i].to_vec();
                self.start += searched + i + 2;
                return Ok(line);
            }
            searched = avail.len().saturating_sub(1);
            if avail.len() > max {
                return Err(malformed("a header block too long"));
            }
            if !self.fill()? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the multipart answer ends in a header",
                ));
            }
        }
    }
}

impl<R: Read> Read for Multipart<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if !self.in_body || out.is_empty() {
            return Ok(0);
        }
        let d = self.delimiter.len();
        loop {
            let avail = self.available();
            if let Some(at) = avail.windows(d).position(|w| w == self.delimiter.as_slice()) {
                if at == 0 {
                    self.start += d;
                    self.in_body = false;
                    return Ok(0);
                }
                let n = at.min(out.len());
                out[..n].copy_from_slice(&avail[..n]);
                self.start += n;
                return Ok(n);
            }
            // Bytes that cannot be the start of a delimiter are the body's.
            let safe = avail.len().saturating_sub(d - 1);
            if safe > 0 {
                let n = safe.min(out.len());
                out[..n].copy_from_slice(&avail[..n]);
                self.start += n;
                return Ok(n);
            }
            if !self.fill()? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the multipart answer ends inside a part",
                ));
            }
        }
    }
}

// ---------------------------------------------------------------------
// Fetching from the origin.
// ---------------------------------------------------------------------

/// What an origin sent: the media's type, file name and bytes (read as
/// they arrive).
pub struct Fetched {
    pub content_type: String,
    pub filename: Option<String>,
    pub body: Box<dyn Read>,
}

/// What is asked of the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask<'q> {
    Download,
    /// A thumbnail; the query string (`width=…&height=…&method=…`).
    Thumbnail(&'q str),
}

/// An answer to read: its status, headers and body.
struct Incoming {
    status: u16,
    headers: Vec<(String, String)>,
    body: Box<dyn Read>,
}

impl Incoming {
    fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The start of an error answer's body.
    fn error_body(self) -> Vec<u8> {
        let mut body = Vec::new();
        let _ = self.body.take(ERROR_BYTES_MAX).read_to_end(&mut body);
        body
    }
}

/// True for the error of media larger than the limit, which the client
/// endpoints answer as 502 `M_TOO_LARGE` (the spec's and Synapse's
/// answer for remote content too large to serve).
pub fn is_too_large(e: &Error) -> bool {
    e.kind == ErrorKind::TooLarge
}

fn too_large(limit: u64) -> Error {
    Error::new(ErrorKind::TooLarge, format!("The remote media is larger than {limit} bytes"))
}

fn failed(origin: &str, why: impl std::fmt::Display) -> Error {
    crate::log::info(format_args!("fetching remote media from {origin} failed: {why}"));
    Error::new(ErrorKind::BadGateway, "Failed to fetch remote media")
}

/// The outbound client's refusal of an answer longer than asked for
/// (its message; the client has no kind of its own for it).
fn is_too_long(message: &str) -> bool {
    message.contains("longer than")
}

/// A signed GET to `origin`, its answer's body read as it arrives (at
/// most `max_bytes`).
fn get(app: &App, origin: &str, uri: &str, max_bytes: u64, limit: u64) -> Result<Incoming> {
    match app.federation.request_stream(Method::Get, origin, uri, None, max_bytes) {
        Ok(a) => Ok(Incoming { status: a.status, headers: a.headers, body: a.reader }),
        Err(e) if is_too_long(&e.message) => Err(too_large(limit)),
        Err(e) => Err(failed(origin, e.message)),
    }
}

/// A plain GET (a `Location` to follow), through the outbound client's
/// address policy.
fn plain_get(app: &App, url: &str, limit: u64) -> Result<Incoming> {
    let request =
        OutRequest { method: Method::Get, url, host: None, headers: &[], body: None, max_bytes: limit };
    match app.outbound.request_stream(&request) {
        Ok(a) => Ok(Incoming { status: a.status, headers: a.headers, body: a.reader }),
        Err(e) if is_too_long(&e.message) => Err(too_large(limit)),
        Err(e) => Err(failed(url, e.message)),
    }
}

/// Asks `origin` for its media `media_id` (valid, so safe in a path),
/// at most `limit` bytes of it.
pub fn fetch(app: &App, origin: &str, media_id: &str, ask: Ask<'_>, limit: u64) -> Result<Fetched> {
    let (uri, legacy) = match ask {
        Ask::Download => (
            format!("/_matrix/federation/v1/media/download/{media_id}"),
            format!(
                "/_matrix/media/v3/download/{}/{media_id}?allow_remote=false&allow_redirect=true",
                crate::util::percent_encode(origin)
            ),
        ),
        Ask::Thumbnail(query) => (
            format!("/_matrix/federation/v1/media/thumbnail/{media_id}?{query}"),
            format!(
                "/_matrix/media/v3/thumbnail/{}/{media_id}?{query}&allow_remote=false&allow_redirect=true",
                crate::util::percent_encode(origin)
            ),
        ),
    };
    let answer = get(app, origin, &uri, limit.saturating_add(FRAMING_BYTES_MAX), limit)?;
    if answer.is_success() {
        return from_multipart(app, origin, answer, limit);
    }
    let status = answer.status;
    let body = answer.error_body();
    if !is_unknown_endpoint(status, &body) {
        return Err(refusal(origin, status, &body, ask));
    }
    // An older server: the deprecated endpoint, which answers the bytes.
    let answer = get(app, origin, &legacy, limit, limit)?;
    plain_answer(app, origin, answer, limit, 0, ask)
}

/// The media part of a federation media answer.
fn from_multipart(app: &App, origin: &str, answer: Incoming, limit: u64) -> Result<Fetched> {
    let content_type = answer.header("content-type").unwrap_or("");
    let Some(boundary) = boundary_of(content_type) else {
        return Err(failed(origin, format!("a 200 answer of type {content_type:?}, not multipart/mixed")));
    };
    let mut parts = Multipart::new(answer.body, &boundary);
    let bad = |e: io::Error| failed(origin, e);
    parts.next_part().map_err(bad)?.ok_or_else(|| failed(origin, "no metadata part"))?;
    let mut metadata = Vec::new();
    (&mut parts).take(METADATA_BYTES_MAX as u64 + 1).read_to_end(&mut metadata).map_err(bad)?;
    if metadata.len() > METADATA_BYTES_MAX {
        return Err(failed(origin, "a metadata part too long"));
    }
    let headers = parts.next_part().map_err(bad)?.ok_or_else(|| failed(origin, "no media part"))?;
    if let Some(location) = header(&headers, "location") {
        // The spec: such a URL is not to be cached; it is followed now.
        return follow(app, location, limit, 0);
    }
    Ok(Fetched {
        content_type: crate::media::clean_content_type(header(&headers, "content-type")),
        filename: header(&headers, "content-disposition").and_then(filename_of),
        body: Box::new(parts),
    })
}

/// Follows a `Location` with a plain GET.
fn follow(app: &App, location: &str, limit: u64, hops: usize) -> Result<Fetched> {
    if hops >= REDIRECTS_MAX {
        return Err(failed(location, "too many redirects"));
    }
    if !(location.starts_with("https://") || location.starts_with("http://")) {
        return Err(failed(location, "a Location that is not an absolute URL"));
    }
    let answer = plain_get(app, location, limit)?;
    plain_answer(app, location, answer, limit, hops + 1, Ask::Download)
}

/// An answer whose body is the media itself (the deprecated endpoints,
/// a followed `Location`), or a redirect.
fn plain_answer(
    app: &App,
    from: &str,
    answer: Incoming,
    limit: u64,
    hops: usize,
    ask: Ask<'_>,
) -> Result<Fetched> {
    if matches!(answer.status, 301 | 302 | 303 | 307 | 308) {
        let location = answer.header("location").unwrap_or("").to_owned();
        return follow(app, &location, limit, hops);
    }
    if !answer.is_success() {
        let status = answer.status;
        return Err(refusal(from, status, &answer.error_body(), ask));
    }
    Ok(Fetched {
        content_type: crate::media::clean_content_type(answer.header("content-type")),
        filename: answer.header("content-disposition").and_then(filename_of),
        body: answer.body,
    })
}

/// What an origin's refusal means for our client: not found is not
/// found; too large, too large; a thumbnail it cannot make, the same
/// answer; anything else a failure to fetch.
fn refusal(origin: &str, status: u16, body: &[u8], ask: Ask<'_>) -> Error {
    let errcode = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("errcode").and_then(|c| c.as_str()).map(str::to_owned))
        .unwrap_or_default();
    match (status, errcode.as_str(), ask) {
        (404, _, _) => Error::not_found("Media not found"),
        (413, _, _) | (502, "M_TOO_LARGE", _) => {
            Error::new(ErrorKind::TooLarge, "The remote media is too large to serve")
        }
        (400, _, Ask::Thumbnail(_)) => {
            Error::new(ErrorKind::Unknown, "Cannot generate thumbnails for the requested content")
        }
        _ => failed(origin, format!("it answered {status} {errcode}")),
    }
}

// ---------------------------------------------------------------------
// The remote media cache.
// ---------------------------------------------------------------------

/// Remote media ready to serve: its row (as cached, or as fetched) and
/// its bytes in the database.
#[derive(Debug)]
pub struct Served {
    pub media: Media,
    pub content_id: i64,
    pub size: i64,
    /// A staged copy for this answer only (not cached): the reader of
    /// [`TransientReader`] drops it when done.
    pub transient: bool,
}

/// The copy of `origin`'s `media_id` in the cache, if there is one;
/// marks it used (at most every `TOUCH_EVERY_MS`).
pub fn cached(app: &App, origin: &str, media_id: &str) -> Result<Option<Served>> {
    let found = app.db.read(|tx| {
        let Some(media) = store::get(tx, origin, media_id)? else { return Ok(None) };
        let Some(content_id) = media.content_id else { return Ok(None) };
        let (Some(size), Some(touched)) =
            (store::content_size(tx, content_id)?, store::touched_ts(tx, content_id)?)
        else {
            return Ok(None);
        };
        Ok(Some((media, content_id, size, touched)))
    })?;
    let Some((media, content_id, size, touched)) = found else { return Ok(None) };
    let now = now_ms();
    if now - touched >= TOUCH_EVERY_MS {
        // Only recency: a failed write (a full disk) must not fail a read.
        let _ = app.db.write(|tx| store::touch(tx, content_id, now));
    }
    Ok(Some(Served { media, content_id, size, transient: false }))
}

/// Whether media of `origin` may be fetched or served: federation on
/// and `origin` inside the allowlist. Else not found (Synapse answers
/// 403 for the allowlist; the spec's 404 says what a client needs).
fn check_allowed(app: &App, origin: &str) -> Result<()> {
    if !app.federation.allowed(origin) {
        return Err(Error::not_found(format!(
            "Media of {origin} is not available: this server does not federate with it"
        )));
    }
    Ok(())
}

/// `origin`'s media `media_id` for a local client: from the cache, or
/// fetched from the origin (once, for all who ask at the same time),
/// stored and served. `fetch` false: the cache only.
pub fn download(app: &App, origin: &str, media_id: &str, fetch: bool) -> Result<Served> {
    check_allowed(app, origin)?;
    if let Some(c) = cached(app, origin, media_id)? {
        return Ok(c);
    }
    if !fetch {
        return Err(Error::not_found("Remote media is not cached here"));
    }
    let flights = &app.fed_memo.media;
    let _busy = flights.busy(busy_max(app))?;
    if app.config.remote_media_cache_bytes == 0 {
        return fetch_and_store(app, origin, media_id);
    }
    let key = (origin.to_owned(), media_id.to_owned());
    // Twice at most: a fetch we waited for whose copy did not stay (too
    // large for the cache) is not waited for again.
    for _ in 0..2 {
        match flights.join(&key) {
            Join::Leader(flight) => {
                if let Some(c) = cached(app, origin, media_id)? {
                    flight.finish(Ok(()));
                    return Ok(c);
                }
                let outcome = fetch_and_store(app, origin, media_id);
                flight.finish(outcome.as_ref().map(|_| ()).map_err(Clone::clone));
                return outcome;
            }
            Join::Follower(flight) => {
                crate::log::debug(format_args!(
                    "remote media {origin}/{media_id}: waiting for the fetch in progress"
                ));
                match flight.wait(FLIGHT_WAIT) {
                    None => return Err(failed(origin, "waiting for another request's fetch timed out")),
                    Some(Err(e)) => return Err(e),
                    Some(Ok(())) => {
                        if let Some(c) = cached(app, origin, media_id)? {
                            return Ok(c);
                        }
                    }
                }
            }
        }
    }
    fetch_and_store(app, origin, media_id)
}

/// A thumbnail of `origin`'s media fetched from the origin, for this
/// answer only (not cached).
pub fn thumbnail(app: &App, origin: &str, media_id: &str, query: &str) -> Result<Served> {
    check_allowed(app, origin)?;
    let _busy = app.fed_memo.media.busy(busy_max(app))?;
    let limit = app.config.max_upload_bytes;
    let fetched = fetch(app, origin, media_id, Ask::Thumbnail(query), limit)?;
    let (content_type, filename) = (fetched.content_type.clone(), fetched.filename.clone());
    let staged = stage(app, origin, fetched.body, limit)?;
    Ok(transient(origin, media_id, content_type, filename, staged))
}

/// Requests that may wait on other servers' media at once: each holds an
/// HTTP worker, and one worker stays for everything else.
fn busy_max(app: &App) -> usize {
    app.config.workers.saturating_sub(1).max(1)
}

/// Fetches, stages and (cache permitting) stores `origin`'s media, then
/// evicts what the cache holds past its cap, in one write.
fn fetch_and_store(app: &App, origin: &str, media_id: &str) -> Result<Served> {
    let limit = app.config.max_upload_bytes;
    let fetched = fetch(app, origin, media_id, Ask::Download, limit)?;
    let (content_type, filename) = (fetched.content_type, fetched.filename);
    let staged = stage(app, origin, fetched.body, limit)?;
    let cap = i64::try_from(app.config.remote_media_cache_bytes).unwrap_or(i64::MAX);
    if staged.size > cap {
        return Ok(transient(origin, media_id, content_type, filename, staged));
    }
    let local = app.config.server_name.as_str();
    let stored = app.db.write(|tx| {
        let now = now_ms();
        let content_id = store::stage_finish(tx, staged.id, &staged.sha256, now)?;
        let copy = RemoteCopy {
            origin,
            media_id,
            content_id,
            content_type: &content_type,
            filename: filename.as_deref(),
            size: staged.size,
        };
        store::insert_remote(tx, &copy, now)?;
        // The same bytes may have been stored long ago: used now.
        store::touch(tx, content_id, now)?;
        let media =
            store::get(tx, origin, media_id)?.ok_or_else(|| Error::internal("a cached copy vanished"))?;
        let content_id = media.content_id.ok_or_else(|| Error::internal("a cached copy without content"))?;
        let evicted = store::evict_remote(tx, local, cap, content_id)?;
        let size = store::content_size(tx, content_id)?.unwrap_or(media.size);
        Ok((media, content_id, size, evicted))
    });
    let (media, content_id, size, evicted) = match stored {
        Ok(s) => s,
        Err(e) => {
            let _ = app.db.write(|tx| store::stage_discard(tx, staged.id));
            return Err(e);
        }
    };
    if evicted.media > 0 {
        crate::log::info(format_args!(
            "remote media cache: {} media evicted ({} bytes freed) past remote_media_cache_bytes",
            evicted.media, evicted.bytes_freed
        ));
    }
    Ok(Served { media, content_id, size, transient: false })
}

fn transient(
    origin: &str,
    media_id: &str,
    content_type: String,
    filename: Option<String>,
    s: Staged,
) -> Served {
    let now = now_ms();
    let media = Media {
        origin: origin.to_owned(),
        media_id: media_id.to_owned(),
        user_id: None,
        content_id: Some(s.id),
        content_type: Some(content_type),
        filename,
        size: s.size,
        created_ts: now,
        expires_ts: None,
        uploaded_ts: Some(now),
    };
    Served { media, content_id: s.id, size: s.size, transient: true }
}

/// Bytes read into a staged content.
struct Staged {
    id: i64,
    sha256: [u8; 32],
    size: i64,
}

/// Fills `buf` from `body` as far as it goes (fewer bytes: its end).
fn fill(origin: &str, body: &mut dyn Read, buf: &mut [u8], limit: u64) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match body.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_too_long(&e.to_string()) => return Err(too_large(limit)),
            Err(e) => return Err(failed(origin, format!("reading the media: {e}"))),
        }
    }
    Ok(n)
}

/// Reads `body` into a staged content, `SPILL_BYTES` per write, hashing
/// as it goes; past `limit` bytes it is `TooLarge`. On any failure the
/// staged content is dropped. No write is open while reading.
fn stage(app: &App, origin: &str, mut body: Box<dyn Read>, limit: u64) -> Result<Staged> {
    let mut buf = vec![0u8; SPILL_BYTES];
    let mut n = fill(origin, &mut body, &mut buf, limit)?;
    if n as u64 > limit {
        return Err(too_large(limit));
    }
    let id = app.db.write(|tx| store::stage_begin(tx, now_ms()))?;
    let staged = (|| -> Result<Staged> {
        let mut hasher = Sha256::new();
        let (mut idx, mut size) = (0i64, 0u64);
        loop {
            size += n as u64;
            if size > limit {
                return Err(too_large(limit));
            }
            if n > 0 {
                hasher.update(&buf[..n]);
                let chunks: Vec<&[u8]> = buf[..n].chunks(CHUNK_BYTES).collect();
                app.db.write(|tx| store::stage_append(tx, id, idx, &chunks, now_ms()))?;
                idx += chunks.len() as i64;
            }
            // Only the end leaves the buffer short: every chunk but the
            // last is full, as `ContentReader` expects.
            if n < buf.len() {
                break;
            }
            n = fill(origin, &mut body, &mut buf, limit)?;
        }
        Ok(Staged { id, sha256: hasher.finalize().into(), size: i64::try_from(size).unwrap_or(i64::MAX) })
    })();
    if staged.is_err() {
        let _ = app.db.write(|tx| store::stage_discard(tx, id));
    }
    staged
}

/// Reads a transient copy and drops it once the answer is done with it
/// (sent, or abandoned). One that a crash leaves behind goes with the
/// stale uploads (`STAGED_STALE_MS`).
pub struct TransientReader<'a> {
    reader: ContentReader<'a>,
    db: &'a Db,
    content_id: i64,
}

impl<'a> TransientReader<'a> {
    pub fn new(db: &'a Db, content_id: i64, size: u64) -> TransientReader<'a> {
        TransientReader { reader: ContentReader::new(db, content_id, size), db, content_id }
    }
}

impl Read for TransientReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

impl Drop for TransientReader<'_> {
    fn drop(&mut self) {
        let id = self.content_id;
        let _ = self.db.write(|tx| store::stage_discard(tx, id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader handing out at most `step` bytes per read.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn parse(
        body: &[u8],
        boundary: &str,
        step: usize,
    ) -> io::Result<(PartHeaders, Vec<u8>, PartHeaders, Vec<u8>)> {
        let mut m = Multipart::new(Trickle { data: body, step }, boundary);
        let h1 = m.next_part()?.expect("first part");
        let mut b1 = Vec::new();
        m.read_to_end(&mut b1)?;
        let h2 = m.next_part()?.expect("second part");
        let mut b2 = Vec::new();
        m.read_to_end(&mut b2)?;
        assert!(m.next_part()?.is_none(), "exactly two parts");
        Ok((h1, b1, h2, b2))
    }

    #[test]
    fn what_is_framed_parses_back_whatever_the_reads() {
        let b = boundary();
        assert_eq!(b.len(), BOUNDARY_LEN);
        // Bytes that look like the start of a delimiter, and a CRLF at the end.
        let mut media = format!("\r\n--{}x \r\n-", &b[..10]).into_bytes();
        media.extend((0..70_000u32).map(|i| (i % 251) as u8));
        media.extend_from_slice(b"\r\n");
        let (head, tail) = frame(&b, "image/png", "inline; filename=\"a b.png\"");
        let body = [head.as_slice(), &media, &tail].concat();
        assert!(
            body.starts_with(format!("--{b}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n").as_bytes())
        );
        assert!(body.ends_with(format!("\r\n--{b}--\r\n").as_bytes()));
        for step in [1, 7, 100, 1 << 20] {
            let (h1, b1, h2, b2) = parse(&body, &b, step).unwrap();
            assert_eq!(h1, [("content-type".to_owned(), "application/json".to_owned())]);
            assert_eq!(b1, b"{}");
            assert_eq!(header(&h2, "Content-Type"), Some("image/png"));
            assert_eq!(header(&h2, "content-disposition").and_then(filename_of).as_deref(), Some("a b.png"));
            assert!(b2 == media, "step {step}");
        }
    }

    #[test]
    fn other_servers_framings_parse() {
        // Synapse's: a CRLF before the first delimiter, a Location part.
        let body = b"\r\n--xyz\r\nContent-Type: application/json\r\n\r\n{}\r\n--xyz\r\n\
                     Location: https://cdn.example/a\r\n\r\n\r\n--xyz--\r\n";
        let (_, meta, h2, b2) = parse(body, "xyz", 3).unwrap();
        assert_eq!((meta.as_slice(), b2.as_slice()), (&b"{}"[..], &b""[..]));
        assert_eq!(header(&h2, "location"), Some("https://cdn.example/a"));
        // A preamble, transport padding, a part without headers, an epilogue.
        let body = b"ignored\r\n--q \t\r\n\r\n{}\r\n--q\r\ncontent-type:text/plain\r\n\r\nhi\r\n--q--\r\nbye";
        let (h1, _, h2, b2) = parse(body, "q", 5).unwrap();
        assert!(h1.is_empty());
        assert_eq!((header(&h2, "content-type"), b2.as_slice()), (Some("text/plain"), &b"hi"[..]));
    }

    #[test]
    fn cut_or_malformed_answers_are_errors() {
        let (head, tail) = frame("bb", "text/plain", "inline");
        let whole = [head.as_slice(), b"0123456789", &tail].concat();
        // Cut anywhere before the media part's delimiter: never a short part.
        for cut in 0..head.len() + 12 {
            assert!(parse(&whole[..cut], "bb", 4).is_err(), "cut at {cut}");
        }
        assert!(parse(&whole, "other", 4).is_err(), "another boundary");
        let no_colon = b"--bb\r\nnonsense\r\n\r\n{}\r\n--bb--\r\n";
        assert!(Multipart::new(&no_colon[..], "bb").next_part().is_err());
        let long = [b"--bb\r\nX: ".as_slice(), &vec![b'a'; PART_HEAD_BYTES_MAX], b"\r\n\r\n"].concat();
        assert!(Multipart::new(&long[..], "bb").next_part().is_err());
    }

    #[test]
    fn boundaries_dispositions_and_unknown_endpoints() {
        assert_eq!(boundary_of("multipart/mixed; boundary=abc").as_deref(), Some("abc"));
        assert_eq!(boundary_of("Multipart/Mixed;boundary=\"a b;c\"").as_deref(), Some("a b;c"));
        assert_eq!(boundary_of("multipart/mixed; charset=x; boundary=z").as_deref(), Some("z"));
        assert_eq!(boundary_of("multipart/form-data; boundary=abc"), None);
        assert_eq!(boundary_of("multipart/mixed"), None);
        assert_eq!(boundary_of(&format!("multipart/mixed; boundary={}", "a".repeat(71))), None);

        assert_eq!(filename_of("inline; filename=\"cat.png\"").as_deref(), Some("cat.png"));
        assert_eq!(filename_of("attachment; filename=plain.txt").as_deref(), Some("plain.txt"));
        assert_eq!(
            filename_of("inline; filename=\"say \\\"hi\\\";.txt\"").as_deref(),
            Some("say \"hi\";.txt")
        );
        assert_eq!(
            filename_of("attachment; filename=\"r.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf").as_deref(),
            Some("résumé.pdf")
        );
        // What our own writer makes reads back.
        for name in ["a b.png", "résumé\u{1F600}.pdf", "q\"uo\\te.txt"] {
            let d = crate::media::content_disposition("application/pdf", Some(name));
            assert_eq!(filename_of(&d).as_deref(), Some(name), "{d}");
        }
        assert_eq!(filename_of("inline"), None);
        assert_eq!(filename_of("inline; filename*=utf-8''%FF"), None, "not UTF-8");
        assert_eq!(filename_of("inline; filename=\"a\u{7}b\""), None, "a control character");
        assert_eq!(filename_of(&format!("inline; filename={}", "a".repeat(256))), None);

        assert!(is_unknown_endpoint(404, br#"{"errcode":"M_UNRECOGNIZED","error":"x"}"#));
        assert!(is_unknown_endpoint(405, b""));
        assert!(is_unknown_endpoint(404, b"<html>Not Found</html>"));
        assert!(!is_unknown_endpoint(404, br#"{"errcode":"M_NOT_FOUND"}"#));
        assert!(!is_unknown_endpoint(400, br#"{"errcode":"M_UNRECOGNIZED"}"#));
        assert!(!is_unknown_endpoint(500, b""));
    }

    #[test]
    fn one_fetch_per_media_and_a_bound_on_waiting() {
        let f = crate::federation::memo::Flights::new();
        let key = ("there".to_owned(), "m".to_owned());
        let Join::Leader(lead) = f.join(&key) else { panic!("the first leads") };
        let Join::Follower(follow) = f.join(&key) else { panic!("the second follows") };
        assert!(matches!(f.join(&("there".to_owned(), "other".to_owned())), Join::Leader(_)));
        assert!(follow.wait(Duration::from_millis(10)).is_none(), "not done yet");
        let waiter = std::thread::spawn(move || follow.wait(Duration::from_secs(30)));
        lead.finish(Ok(()));
        assert_eq!(waiter.join().unwrap(), Some(Ok(())));
        // Done: the next request leads a new fetch.
        let Join::Leader(lead) = f.join(&key) else { panic!("a new fetch") };
        let Join::Follower(follow) = f.join(&key) else { panic!("follows") };
        drop(lead);
        assert!(matches!(follow.wait(Duration::from_secs(1)), Some(Err(_))), "an abandoned fetch failed");

        let one = f.busy(2).unwrap();
        let _two = f.busy(2).unwrap();
        let e = f.busy(2).err().expect("a third is refused");
        assert_eq!(e.status(), 429);
        drop(one);
        assert!(f.busy(2).is_ok());
    }
}
