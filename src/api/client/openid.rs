//! OpenID: `POST /user/{userId}/openid/request_token` hands the signed-in
//! user a token that proves their identity to another service (a widget,
//! an integration manager), which exchanges it at
//! `GET /_matrix/federation/v1/openid/userinfo` for the user ID.
//!
//! The token opens nothing else: it is no access token (tokens live in
//! `storage::openid`, apart from sessions). The userinfo endpoint, which
//! needs no authentication but the token itself, is
//! `api::federation::openid`.

use serde_json::{json, Map, Value};

use crate::api::{Request, Response};
use crate::app::App;
use crate::crypto::token;
use crate::error::{Error, Result};
use crate::storage::{self, openid};

/// POST /_matrix/client/v3/user/{userId}/openid/request_token
///
/// Only for oneself. The body is an empty object ("reserved for future
/// expansion"); an empty body counts as one.
pub fn request_token(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    if req.param("userId") != who.user_id {
        return Err(Error::forbidden("OpenID tokens may only be requested for yourself"));
    }
    let _: Map<String, Value> = req.json_or_empty()?;
    let access_token = token::new_secret_token("hth_oid_");
    let hash = token::token_hash(&access_token);
    let now = storage::now_ms();
    app.db.write(|tx| openid::create(tx, &hash, &who.user_id, &who.device_id, now))?;
    Response::ok(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "matrix_server_name": app.config.server_name,
        "expires_in": openid::TOKEN_LIFETIME_MS / 1000,
    }))
}
