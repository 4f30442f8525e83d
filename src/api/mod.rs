//! Request handlers. Each spec area is one file under `client/` (and
//! `keys.rs` for the server key). A handler is a plain function
//! `fn(&App, &Request) -> Result<Response>`: it parses its input, calls
//! `core/` and `storage/`, and answers. It never sees tiny_http.

pub mod auth;
pub mod client;
pub mod federation;
pub mod media;
pub mod uia;

use std::net::IpAddr;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::app::App;
use crate::core::json;
use crate::error::{Error, ErrorKind, Result};

pub type Handler = fn(&App, &Request) -> Result<Response>;

/// A long-poll handler: answers now, or hands the hub a waiter and the
/// deadline (already clamped) at which to answer empty.
pub type PollHandler = fn(&App, &Request) -> Result<Poll>;

pub enum Poll {
    Ready(Response),
    Wait(Box<dyn Waiter>, std::time::Instant),
}

/// What a parked long-poll waits for, and how to answer it: the handler's
/// side of a parked request (the HTTP layer wraps it for the hub).
pub trait Waiter: Send {
    /// The user whose changes (invites, account data, presence of people
    /// they share rooms with...) wake this waiter.
    fn user_id(&self) -> &str;
    /// The rooms whose events wake this waiter.
    fn rooms(&self) -> &std::collections::HashSet<String>;
    /// The stream positions (`pos`, ephemeral serial) the last answer covered.
    fn seen(&self) -> (i64, u64);
    /// Computes the answer if there is something new; `None` to keep
    /// waiting. May refresh the rooms and positions it watches.
    fn poll(&mut self, app: &App) -> Result<Option<Response>>;
    /// The answer at the deadline (nothing new).
    fn timeout_response(&mut self, app: &App) -> Result<Response>;
}

/// The authenticated requester.
#[derive(Debug, Clone)]
pub struct Auth {
    pub user_id: String,
    pub device_id: String,
    pub token_hash: [u8; 32],
    pub is_admin: bool,
    /// A guest account: only the routes marked for guests serve it.
    pub is_guest: bool,
    /// The application service acting (with its `as_token`), as its
    /// sender or as a user of its namespace; `device_id` is empty unless
    /// it named one.
    pub appservice: Option<std::sync::Arc<crate::core::appservice::Registration>>,
}

impl Auth {
    /// Whether rate limits apply to this requester (not to an application
    /// service registered with `rate_limited: false`).
    pub fn rate_limited(&self) -> bool {
        self.appservice.as_ref().is_none_or(|r| r.rate_limited)
    }

    /// The requester's device, for operations that need one: an
    /// application service acting without `device_id` has none.
    pub fn device(&self) -> crate::error::Result<&str> {
        if self.device_id.is_empty() {
            return Err(crate::error::Error::new(
                crate::error::ErrorKind::UnknownDevice,
                "This request needs a device: name one with device_id",
            ));
        }
        Ok(&self.device_id)
    }
}

/// A request as handlers see it: decoded path parameters and query, the
/// bounded body, the client address, and who is asking (if the route asks).
pub struct Request {
    /// Path parameters by the names the route gives them (`roomId`).
    pub params: Vec<(&'static str, String)>,
    pub query: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub remote_ip: IpAddr,
    pub auth: Option<Auth>,
    /// The server a federation request came from (its `X-Matrix`
    /// signature verified), on routes that ask for one.
    pub origin: Option<String>,
}

/// Parses JSON from a client (a body, a filter in the query string).
/// Nested deeper than [`json::DEPTH_MAX`] is `M_BAD_JSON`, checked before
/// the parser runs, so that whatever is stored from it can be read back
/// inside larger documents; not JSON at all is `M_NOT_JSON`. `what` names
/// the text in the error messages ("Content", "The filter").
pub fn parse_json(text: &[u8], what: &str) -> Result<Value> {
    json::parse(text).map_err(|e| Error::json(e, what))
}

impl Request {
    /// The body as a JSON value: see [`parse_json`].
    pub fn json_value(&self) -> Result<Value> {
        parse_json(&self.body, "Content")
    }

    /// The body as `T`: not JSON is `M_NOT_JSON`, the wrong shape `M_BAD_JSON`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        let value = self.json_value()?;
        if !value.is_object() {
            return Err(Error::bad_json("The body must be a JSON object"));
        }
        serde_json::from_value(value).map_err(|e| Error::bad_json(format!("Invalid request body: {e}")))
    }

    /// Like [`Request::json`], but an empty body counts as `{}` (clients send
    /// none to endpoints such as `/logout`).
    pub fn json_or_empty<T: DeserializeOwned>(&self) -> Result<T> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return serde_json::from_value(Value::Object(Default::default()))
                .map_err(|e| Error::bad_json(format!("Invalid request body: {e}")));
        }
        self.json()
    }

    pub fn query(&self, key: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The path parameter `name` (the router guarantees the route has it).
    pub fn param(&self, name: &str) -> &str {
        self.param_opt(name).unwrap_or("")
    }

    /// A path parameter the matched route may not have (one handler serving
    /// patterns of different lengths).
    pub fn param_opt(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    /// The authenticated user; routes that need one are marked so in the
    /// router, which refuses requests without a valid token.
    pub fn user(&self) -> Result<&Auth> {
        self.auth.as_ref().ok_or_else(|| Error::new(ErrorKind::MissingToken, "Missing access token"))
    }
}

/// A JSON answer (or an empty one, for 204s).
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Option<Value>,
}

impl Response {
    pub fn ok(body: Value) -> Result<Response> {
        Ok(Response { status: 200, body: Some(body) })
    }
    pub fn empty(status: u16) -> Response {
        Response { status, body: None }
    }
}

/// A handler that answers with bytes rather than JSON (media downloads).
/// Its answer may borrow the `App`, e.g. to stream from the database.
pub type RawHandler = for<'a> fn(&'a App, &Request) -> Result<RawResponse<'a>>;

/// A handler that reads its (large) body itself, as it arrives: `Request`'s
/// `body` is empty and `UploadBody` gives the bytes (media uploads).
pub type UploadHandler = fn(&App, &Request, &mut UploadBody<'_>) -> Result<Response>;

/// A binary answer: status, `Content-Type`, further headers, the bytes.
/// The HTTP layer adds the CORS headers, and `Cache-Control: no-store`
/// unless `headers` set one.
pub struct RawResponse<'a> {
    pub status: u16,
    pub content_type: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: RawBody<'a>,
}

pub enum RawBody<'a> {
    Bytes(Vec<u8>),
    /// `len` bytes read from `reader` while they are sent, so a large body
    /// is never in memory whole.
    Stream {
        reader: Box<dyn std::io::Read + 'a>,
        len: u64,
    },
}

impl RawResponse<'_> {
    /// A JSON error with an `errcode` that `ErrorKind` does not carry
    /// (media's `M_NOT_YET_UPLOADED`, `M_CANNOT_OVERWRITE_MEDIA`).
    pub fn error(status: u16, errcode: &str, message: &str) -> RawResponse<'static> {
        let body = serde_json::json!({ "errcode": errcode, "error": message });
        RawResponse {
            status,
            content_type: "application/json".to_owned(),
            headers: Vec::new(),
            body: RawBody::Bytes(serde_json::to_vec(&body).unwrap_or_default()),
        }
    }
}

/// A request body read as it arrives, at most `limit` bytes: one byte
/// more is `M_TOO_LARGE` (and the HTTP layer reads off the rest).
pub struct UploadBody<'a> {
    reader: &'a mut dyn std::io::Read,
    limit: u64,
    read: u64,
    declared: Option<u64>,
    content_type: Option<String>,
    done: bool,
}

impl<'a> UploadBody<'a> {
    pub fn new(
        reader: &'a mut dyn std::io::Read,
        limit: u64,
        declared: Option<u64>,
        content_type: Option<String>,
    ) -> UploadBody<'a> {
        UploadBody { reader, limit, read: 0, declared, content_type, done: false }
    }

    /// The `Content-Type` header, if given.
    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }

    /// The `Content-Length`, if given (absent for a chunked body).
    pub fn declared_len(&self) -> Option<u64> {
        self.declared
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// True once the whole body has been read.
    pub fn is_done(&self) -> bool {
        self.done
    }

    fn too_large(&self) -> Error {
        Error::new(ErrorKind::TooLarge, format!("The upload is over {} bytes", self.limit))
    }

    /// Fills `buf` as far as the body goes; fewer bytes than `buf.len()`
    /// means the body ended. Past `limit` it is `M_TOO_LARGE`.
    pub fn fill(&mut self, buf: &mut [u8]) -> Result<usize> {
        if self.declared.is_some_and(|n| n > self.limit) {
            return Err(self.too_large());
        }
        let mut n = 0;
        while n < buf.len() && !self.done {
            match self.reader.read(&mut buf[n..]) {
                Ok(0) => self.done = true,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return Err(Error::new(ErrorKind::Unknown, "Could not read the request body")),
            }
        }
        self.read += n as u64;
        if self.read > self.limit {
            return Err(self.too_large());
        }
        Ok(n)
    }
}
