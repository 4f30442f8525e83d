//! Logging in and out: `/login`, `/refresh`, `/logout`, `/logout/all`,
//! `/account/whoami`.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::auth::{self, Session};
use crate::api::{Request, Response};
use crate::app::App;
use crate::core::ids;
use crate::crypto::{password, token};
use crate::error::{Error, ErrorKind, Result};
use crate::storage::{self, devices, users};

/// A hash that verifies nothing, checked when the user is unknown so that a
/// failed login takes as long whether or not the account exists.
static DUMMY_HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();

#[derive(Deserialize)]
struct LoginBody {
    #[serde(rename = "type")]
    kind: String,
    identifier: Option<Value>,
    user: Option<String>,
    password: Option<String>,
    device_id: Option<String>,
    initial_device_display_name: Option<String>,
    #[serde(default)]
    refresh_token: bool,
}

/// GET /_matrix/client/v3/login
pub fn flows(_app: &App, _req: &Request) -> Result<Response> {
    Response::ok(json!({ "flows": [{ "type": "m.login.password" }] }))
}

/// The full user ID named by an `identifier` (`m.id.user`) or the legacy
/// top-level `user` of a login or UIA password body. A bare localpart is on
/// this server; a full ID must be too.
pub fn identified_user(
    identifier: Option<&Value>,
    legacy_user: Option<&str>,
    server_name: &str,
) -> Result<String> {
    let user = match identifier {
        Some(Value::Object(id)) => {
            if id.get("type").and_then(Value::as_str) != Some("m.id.user") {
                return Err(Error::new(ErrorKind::Unknown, "Only m.id.user identifiers are supported"));
            }
            id.get("user").and_then(Value::as_str)
        }
        Some(_) => return Err(Error::bad_json("identifier must be an object")),
        None => legacy_user,
    };
    let user = user.ok_or_else(|| Error::bad_json("No user named in the identifier"))?;
    // Localparts on this server are lowercase, so matching ignores case; a
    // full ID must name this server (DNS names ignore case too).
    let (local, server) = if user.starts_with('@') {
        ids::parse_user_id(user).ok_or_else(|| Error::forbidden("Invalid username or password"))?
    } else {
        (user, server_name)
    };
    if !server.eq_ignore_ascii_case(server_name) {
        return Err(Error::forbidden("That user is not on this server"));
    }
    let user_id = ids::user_id(&local.to_lowercase(), server_name);
    if user_id.len() > ids::USER_ID_MAX_BYTES {
        return Err(Error::forbidden("Invalid username or password"));
    }
    Ok(user_id)
}

/// POST /_matrix/client/v3/login
pub fn login(app: &App, req: &Request) -> Result<Response> {
    let body: LoginBody = req.json()?;
    if body.kind != "m.login.password" {
        return Err(Error::new(ErrorKind::Unknown, "Unknown login type"));
    }
    let user_id = identified_user(body.identifier.as_ref(), body.user.as_deref(), &app.config.server_name)?;
    let given = body.password.as_deref().ok_or_else(|| Error::bad_json("Missing password"))?;
    let account = app.db.read(|tx| users::get(tx, &user_id))?;
    let stored = account.as_ref().and_then(|u| u.password_hash.clone());
    let ok = match &stored {
        Some(hash) => password::verify_password(given, hash),
        None => {
            let dummy =
                DUMMY_HASH.get_or_init(|| password::hash_password("no such user").unwrap_or_default());
            let _ = password::verify_password(given, dummy);
            false
        }
    };
    if account.as_ref().is_some_and(|u| u.deactivated) {
        return Err(Error::new(ErrorKind::UserDeactivated, "This account has been deactivated"));
    }
    if !ok {
        return Err(Error::forbidden("Invalid username or password"));
    }
    let device_id = match body.device_id {
        Some(d) if ids::is_valid_device_id(&d) => d,
        Some(_) => return Err(Error::invalid_param("Invalid device_id")),
        None => auth::new_device_id(),
    };
    let display_name = body.initial_device_display_name.as_deref();
    let session = app
        .db
        .write(|tx| auth::issue_session(app, tx, &user_id, &device_id, display_name, body.refresh_token))?;
    Response::ok(session_body(app, &user_id, &device_id, session))
}

/// The body of a successful login or registration.
pub fn session_body(app: &App, user_id: &str, device_id: &str, s: Session) -> Value {
    let mut body = json!({
        "user_id": user_id,
        "access_token": s.access_token,
        "device_id": device_id,
        "home_server": app.config.server_name,
        "well_known": { "m.homeserver": { "base_url": app.config.base_url() } },
    });
    if let Some(t) = s.refresh_token {
        body["refresh_token"] = json!(t);
    }
    if let Some(ms) = s.expires_in_ms {
        body["expires_in_ms"] = json!(ms);
    }
    body
}

#[derive(Deserialize)]
struct RefreshBody {
    refresh_token: String,
}

/// POST /_matrix/client/v3/refresh
///
/// Each refresh token works once; it and the device's old access token are
/// replaced by a new pair.
pub fn refresh(app: &App, req: &Request) -> Result<Response> {
    let body: RefreshBody = req.json()?;
    let hash = token::token_hash(&body.refresh_token);
    let session = app.db.write(|tx| {
        let Some((user_id, device_id)) = devices::take_refresh_token(tx, &hash)? else {
            return Ok(None);
        };
        devices::delete_device_tokens(tx, &user_id, &device_id)?;
        auth::issue_tokens(app, tx, &user_id, &device_id, true, storage::now_ms()).map(Some)
    })?;
    let s = session
        .ok_or_else(|| Error::new(ErrorKind::UnknownToken { soft_logout: false }, "Unknown refresh token"))?;
    Response::ok(json!({
        "access_token": s.access_token,
        "refresh_token": s.refresh_token,
        "expires_in_ms": s.expires_in_ms,
    }))
}

/// POST /_matrix/client/v3/logout: ends this session and deletes its device.
pub fn logout(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    app.db.write(|tx| {
        devices::delete(tx, &who.user_id, &who.device_id)?;
        // Its keys went with it: room peers' device lists change.
        crate::e2ee::devices_removed(tx, &who.user_id)
    })?;
    Response::ok(json!({}))
}

/// POST /_matrix/client/v3/logout/all: every device of the user goes, and
/// every pusher (those of no known device too).
pub fn logout_all(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    app.db.write(|tx| {
        devices::delete_all_except(tx, &who.user_id, None)?;
        storage::push::delete_pushers_except_device(tx, &who.user_id, None)?;
        crate::e2ee::devices_removed(tx, &who.user_id)
    })?;
    Response::ok(json!({}))
}

/// GET /_matrix/client/v3/account/whoami
pub fn whoami(_app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    Response::ok(json!({ "user_id": who.user_id, "device_id": who.device_id, "is_guest": who.is_guest }))
}
