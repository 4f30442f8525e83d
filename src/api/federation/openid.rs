//! `GET /_matrix/federation/v1/openid/userinfo` (Server-Server API,
//! "OpenID"): a third-party service exchanges an OpenID token, which a
//! user got from `POST /user/{userId}/openid/request_token`
//! (`api::client::openid`), for the user's ID. The endpoint needs no
//! authentication but the token itself (no `X-Matrix` signature: the
//! caller is a service, not a server).

use serde_json::json;

use crate::api::{Request, Response};
use crate::app::App;
use crate::crypto::token;
use crate::error::Result;
use crate::storage::{self, openid};

/// Tokens longer than this are refused without a lookup.
const TOKEN_MAX_BYTES: usize = 128;

/// GET /_matrix/federation/v1/openid/userinfo?access_token=…
///
/// `{"sub": user ID}` for a token this server issued that has not expired
/// (its account still active); anything else, a missing token included,
/// is the spec's one error: 401 `M_UNKNOWN_TOKEN`, without the
/// client-server API's `soft_logout`, which means nothing to a service.
pub fn userinfo(app: &App, req: &Request) -> Result<Response> {
    let unknown = || Response {
        status: 401,
        body: Some(json!({ "errcode": "M_UNKNOWN_TOKEN", "error": "Access token unknown or expired" })),
    };
    let Some(given) = req.query("access_token").filter(|t| !t.is_empty() && t.len() <= TOKEN_MAX_BYTES)
    else {
        return Ok(unknown());
    };
    let hash = token::token_hash(given);
    let now = storage::now_ms();
    match app.db.read(|tx| openid::owner(tx, &hash, now))? {
        Some(user_id) => Response::ok(json!({ "sub": user_id })),
        None => Ok(unknown()),
    }
}
