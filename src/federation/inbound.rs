//! Authenticating a request from another server (the Server-Server API,
//! "Request Authentication"): its `X-Matrix` header parsed, the
//! destination it names ours, the origin allowed to talk to us, and the
//! signature verified against the origin's key (fetched when not cached).
//! Any failure is 401 `M_UNAUTHORIZED`, except an origin outside
//! `federation_domain_allowlist` (403 `M_FORBIDDEN`).

use serde_json::Value;

use crate::app::App;
use crate::error::{Error, ErrorKind, Result};
use crate::federation::{keys, xmatrix};

/// `X-Matrix` headers looked at per request (a server may send one per
/// key).
pub const HEADERS_MAX: usize = 4;

fn unauthorized(why: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::new(ErrorKind::Unauthorized, why)
}

/// The origin server of a request, once its signature is verified.
/// `authorization` holds the request's Authorization header values,
/// `uri` its target as received (path and query), `body` its bytes.
///
/// Checking a signature may mean fetching the origin's keys; a client
/// that names many origins whose keys are not cached is held to the
/// per-IP rate limit (`ip`), so it cannot make this server fetch keys
/// from servers of its choosing at will.
pub fn authenticate(
    app: &App,
    ip: std::net::IpAddr,
    method: &str,
    uri: &str,
    authorization: &[&str],
    body: &[u8],
) -> Result<String> {
    let candidates: Vec<xmatrix::Credentials> =
        authorization.iter().take(HEADERS_MAX).filter_map(|h| xmatrix::parse(h).ok()).collect();
    let Some(first) = candidates.first() else {
        return Err(match authorization.first() {
            None => unauthorized("Missing X-Matrix Authorization header"),
            Some(h) => match xmatrix::parse(h) {
                Err(e) => unauthorized(e.to_string()),
                Ok(_) => unauthorized("Missing X-Matrix Authorization header"),
            },
        });
    };
    let origin = first.origin.clone();
    if candidates.iter().any(|c| c.origin != origin) {
        return Err(unauthorized("X-Matrix headers name different origins"));
    }
    if !crate::core::ids::is_valid_server_name(&origin) {
        return Err(unauthorized("The X-Matrix origin is not a valid server name"));
    }
    let ours = &app.config.server_name;
    if origin == *ours {
        return Err(unauthorized("The X-Matrix origin is this server"));
    }
    if !app.federation.allowed(&origin) {
        return Err(Error::forbidden(format!("Federation with {origin} is not allowed")));
    }
    let content: Option<Value> = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(crate::core::json::parse(body).map_err(|e| Error::json(e, "Content"))?)
    };
    let cached = app.db.read(|tx| crate::storage::federation::remote_keys(tx, &origin))?;
    if !candidates.iter().all(|c| cached.iter().any(|k| k.key_id == c.key)) {
        app.limiter.check(&format!("keyfetch-ip:{ip}"))?;
    }
    let mut last = unauthorized("No X-Matrix signature verified");
    for c in &candidates {
        if c.destination.as_deref().is_some_and(|d| d != ours) {
            last = unauthorized(format!(
                "The request is addressed to {}, not this server",
                c.destination.as_deref().unwrap_or("")
            ));
            continue;
        }
        let public = match keys::verify_key(app, &origin, &c.key, crate::util::now_ms(), true) {
            Ok(k) => k,
            Err(e) => {
                last = unauthorized(e.message.into_owned());
                continue;
            }
        };
        if xmatrix::verify(c, &public, ours, method, uri, content.as_ref()) {
            return Ok(origin);
        }
        last = unauthorized(format!("The X-Matrix signature of {origin} with {} does not verify", c.key));
    }
    Err(last)
}
