//! Requests to other servers: discovered (`discover`), signed with the
//! server's key (`xmatrix`), sent through the one outbound client (its
//! address policy, timeouts and caps), and refused before anything is
//! sent when federation is off, the destination is outside
//! `federation_domain_allowlist`, or is this server itself.

use std::collections::HashSet;

use serde_json::Value;

use crate::config::Config;
use crate::crypto::sign::ServerKey;
use crate::error::{Error, ErrorKind, Result};
use crate::federation::discover::Discovery;
use crate::federation::xmatrix;
use crate::outbound::client::{Answer, Client, Method, OutRequest, Streamed};

/// The most bytes of a JSON answer read from another server.
pub const JSON_ANSWER_MAX: u64 = 8 * 1024 * 1024;
/// Idle connections to other servers kept for reuse: a message in a room
/// of 200 servers goes to each in turn (fewer kept than the round means
/// none is found again). Each costs a socket and its TLS buffers.
pub const IDLE_CONNECTIONS_MAX: usize = 256;

/// The federation client: who we are, how to reach others, whom we may.
pub struct Federation {
    server_name: String,
    key: ServerKey,
    client: Client,
    discovery: Discovery,
    enabled: bool,
    allowlist: Option<HashSet<String>>,
}

impl Federation {
    pub fn new(config: &Config, key: ServerKey, client: Client) -> Federation {
        // Its own connections and SRV routes (same policy and roots): a
        // route set for a server name must not redirect a push gateway
        // that happens to live at the same host and port.
        let client = client.detached_keeping(IDLE_CONNECTIONS_MAX);
        Federation {
            server_name: config.server_name.clone(),
            key,
            discovery: Discovery::new(client.clone()),
            client,
            enabled: config.federation,
            allowlist: config.federation_domain_allowlist.as_ref().map(|l| l.iter().cloned().collect()),
        }
    }

    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether requests to or from `server` are allowed (federation on,
    /// inside the allowlist when there is one).
    pub fn allowed(&self, server: &str) -> bool {
        self.enabled && self.allowlist.as_ref().is_none_or(|l| l.contains(server))
    }

    /// Refuses what may not be asked of `destination`.
    fn check(&self, destination: &str) -> Result<()> {
        if !self.enabled {
            return Err(Error::forbidden("Federation is disabled on this server"));
        }
        if destination == self.server_name {
            return Err(Error::internal("a federation request to ourselves"));
        }
        if !self.allowed(destination) {
            return Err(Error::forbidden(format!("{destination} is not in federation_domain_allowlist")));
        }
        if !crate::core::ids::is_valid_server_name(destination) {
            return Err(Error::invalid_param(format!("{destination} is not a valid server name")));
        }
        Ok(())
    }

    /// Sends a signed request to `destination` and returns its answer,
    /// whatever its status; an error means no answer came (refused,
    /// unreachable, timed out, too long). `uri` is the path and query as
    /// sent (`/_matrix/federation/v1/…`, already percent-encoded).
    pub fn request(
        &self,
        method: Method,
        destination: &str,
        uri: &str,
        body: Option<&Value>,
        max_bytes: u64,
    ) -> Result<Answer> {
        self.signed(method, destination, uri, body, max_bytes, |client, request| client.request(request))
    }

    /// Like [`Federation::request`], but the answer's body is read as it
    /// arrives (`Client::request_stream`: at most `max_bytes`, a longer
    /// body fails on the read past them): media.
    pub fn request_stream(
        &self,
        method: Method,
        destination: &str,
        uri: &str,
        body: Option<&Value>,
        max_bytes: u64,
    ) -> Result<Streamed> {
        self.signed(method, destination, uri, body, max_bytes, |client, request| {
            client.request_stream(request)
        })
    }

    /// Checks, discovers, signs and sends a request with `send`.
    fn signed<T>(
        &self,
        method: Method,
        destination: &str,
        uri: &str,
        body: Option<&Value>,
        max_bytes: u64,
        send: impl FnOnce(&Client, &OutRequest) -> Result<T>,
    ) -> Result<T> {
        self.check(destination)?;
        let dest = self.discovery.resolve(destination)?;
        let method_name = match method {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
        };
        let auth = xmatrix::authorization(&self.key, &self.server_name, destination, method_name, uri, body)
            .map_err(|e| Error::internal(format!("signing a request: {e}")))?;
        let bytes = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
        let mut headers = vec![("Authorization", auth.as_str())];
        if bytes.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        let url = format!("https://{}{uri}", dest.authority);
        let request = OutRequest {
            method,
            url: &url,
            host: Some(&dest.host),
            headers: &headers,
            body: bytes.as_deref(),
            max_bytes,
        };
        send(&self.client, &request)
            .map_err(|e| Error::new(ErrorKind::BadGateway, format!("{destination}: {}", e.message)))
    }

    /// A signed request whose answer must be a 2xx JSON object.
    pub fn json(&self, method: Method, destination: &str, uri: &str, body: Option<&Value>) -> Result<Value> {
        let answer = self.request(method, destination, uri, body, JSON_ANSWER_MAX)?;
        json_answer(destination, &answer)
    }

    pub fn get(&self, destination: &str, uri: &str) -> Result<Value> {
        self.json(Method::Get, destination, uri, None)
    }

    pub fn post(&self, destination: &str, uri: &str, body: &Value) -> Result<Value> {
        self.json(Method::Post, destination, uri, Some(body))
    }

    pub fn put(&self, destination: &str, uri: &str, body: &Value) -> Result<Value> {
        self.json(Method::Put, destination, uri, Some(body))
    }
}

/// A 2xx answer's JSON object; any other answer as the error it names.
pub fn json_answer(destination: &str, answer: &Answer) -> Result<Value> {
    if !answer.is_success() {
        return Err(remote_error(destination, answer));
    }
    match crate::core::json::parse(&answer.body) {
        Ok(v) if v.is_object() => Ok(v),
        _ => Err(Error::new(
            ErrorKind::BadGateway,
            format!("{destination} answered something other than a JSON object"),
        )),
    }
}

/// What a non-2xx answer means here: the remote server's own refusal
/// (404, 403, 400 with its errcode) passes on as ours; anything else is
/// a 502.
pub fn remote_error(destination: &str, answer: &Answer) -> Error {
    let body = crate::core::json::parse(&answer.body).ok();
    let errcode = body.as_ref().and_then(|b| b.get("errcode")).and_then(Value::as_str).unwrap_or("");
    let said = body.as_ref().and_then(|b| b.get("error")).and_then(Value::as_str).unwrap_or("");
    let message = format!("{destination} answered {} {errcode} {said}", answer.status);
    let kind = match (answer.status, errcode) {
        (404, "M_UNRECOGNIZED") => ErrorKind::BadGateway,
        (404, _) => ErrorKind::NotFound,
        (403, _) => ErrorKind::Forbidden,
        (400, "M_INVALID_PARAM") => ErrorKind::InvalidParam,
        (400, "M_MISSING_PARAM") => ErrorKind::MissingParam,
        (400, "M_BAD_JSON") => ErrorKind::BadJson,
        (400, "M_UNABLE_TO_AUTHORISE_JOIN") => ErrorKind::UnableToAuthoriseJoin,
        (400, "M_UNABLE_TO_GRANT_JOIN") => ErrorKind::UnableToGrantJoin,
        (429, _) => ErrorKind::LimitExceeded { retry_after_ms: 1000 },
        _ => ErrorKind::BadGateway,
    };
    Error::new(kind, message)
}
