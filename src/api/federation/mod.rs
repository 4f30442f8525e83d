//! Federation handlers (the Server-Server API): one file per area. Every
//! route here but the key endpoints, `/version` and OpenID's `userinfo`
//! is authenticated by the `X-Matrix` signature of the origin server
//! (`AuthReq::Server`; the origin is `Request::origin`). `media`: this
//! server's own media, as `multipart/mixed` (the content repository).
//! `rooms`: the room reads other servers make (events, state, auth
//! chains, backfill, missing events, timestamps).

pub mod hierarchy;
pub mod keys;
pub mod media;
pub mod membership;
pub mod openid;
pub mod public_rooms;
pub mod query;
pub mod rooms;
pub mod send;
pub mod user;

use serde_json::json;

use crate::api::{Request, Response};
use crate::app::App;
use crate::error::{Error, Result};

/// GET /_matrix/federation/v1/version
pub fn version(_app: &App, _req: &Request) -> Result<Response> {
    Response::ok(json!({ "server": { "name": "Hearth", "version": env!("CARGO_PKG_VERSION") } }))
}

/// The origin of an authenticated federation request.
pub fn origin(req: &Request) -> Result<&str> {
    req.origin.as_deref().ok_or_else(|| Error::internal("a federation route without an origin"))
}
