//! Request handlers. Each spec area is one file under `client/` (and
//! `keys.rs` for the server key). A handler is a plain function
//! `fn(&App, &Request) -> Result<Response>`: it parses its input, calls
//! `core/` and `storage/`, and answers. It never sees tiny_http.

pub mod auth;
pub mod client;
pub mod keys;
pub mod uia;

use std::net::IpAddr;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::app::App;
use crate::error::{Error, ErrorKind, Result};

pub type Handler = fn(&App, &Request) -> Result<Response>;

/// A long-poll handler: answers now, or hands the hub a waiter and the
/// deadline (already clamped) at which to answer empty.
pub type PollHandler = fn(&App, &Request) -> Result<Poll>;

pub enum Poll {
    Ready(Response),
    Wait(Box<dyn crate::hub::Waiter>, std::time::Instant),
}

/// The authenticated requester.
#[derive(Debug, Clone)]
pub struct Auth {
    pub user_id: String,
    pub device_id: String,
    pub token_hash: [u8; 32],
    pub is_admin: bool,
}

/// A request as handlers see it: decoded path parameters and query, the
/// bounded body, the client address, and who is asking (if the route asks).
pub struct Request {
    pub params: Vec<String>,
    pub query: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub remote_ip: IpAddr,
    pub auth: Option<Auth>,
}

impl Request {
    /// The body as a JSON value; not JSON at all is `M_NOT_JSON`.
    pub fn json_value(&self) -> Result<Value> {
        serde_json::from_slice(&self.body)
            .map_err(|_| Error::new(ErrorKind::NotJson, "Content is not valid JSON"))
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

    /// The path parameter at `i` (the router guarantees it exists).
    pub fn param(&self, i: usize) -> &str {
        self.params.get(i).map(String::as_str).unwrap_or("")
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
