//! Account registration: `/register`, `/register/available`, and the
//! registration-token validity check.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::client::login::session_body;
use crate::api::uia::{self, Spec};
use crate::api::{auth, Request, Response};
use crate::app::App;
use crate::config::Registration;
use crate::core::ids;
use crate::crypto::{password, token};
use crate::error::{Error, ErrorKind, Result};
use crate::storage::{profiles, users};

/// Length of a server-chosen localpart.
const GENERATED_LOCALPART_LEN: usize = 12;
const LOWER_DIGITS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

#[derive(Deserialize)]
struct RegisterBody {
    auth: Option<Value>,
    username: Option<String>,
    password: Option<String>,
    device_id: Option<String>,
    initial_device_display_name: Option<String>,
    #[serde(default)]
    inhibit_login: bool,
    #[serde(default)]
    refresh_token: bool,
}

/// Checks a requested localpart and turns it into a full user ID.
fn user_id_for(app: &App, username: &str) -> Result<String> {
    let invalid = |m: &'static str| Error::new(ErrorKind::InvalidUsername, m);
    if !ids::is_valid_localpart(username) {
        return Err(invalid("User names may contain only lowercase letters, digits and ._=-/+"));
    }
    let user_id = ids::user_id(username, &app.config.server_name);
    if user_id.len() > ids::USER_ID_MAX_BYTES {
        return Err(invalid("User name too long"));
    }
    Ok(user_id)
}

/// The UIA flows registration offers in each mode.
fn flows(mode: Registration) -> &'static [&'static [&'static str]] {
    match mode {
        Registration::Open => &[&[uia::DUMMY]],
        Registration::Token => &[&[uia::REGISTRATION_TOKEN]],
        Registration::Closed => &[],
    }
}

/// POST /_matrix/client/v3/register
pub fn register(app: &App, req: &Request) -> Result<Response> {
    match req.query("kind").unwrap_or("user") {
        "user" => {}
        "guest" => {
            return Err(Error::new(ErrorKind::GuestAccessForbidden, "Guest accounts are not allowed here"))
        }
        _ => return Err(Error::invalid_param("kind must be user or guest")),
    }
    if app.config.registration == Registration::Closed {
        return Err(Error::forbidden("Registration is closed on this server"));
    }
    let body: RegisterBody = req.json()?;
    let requested = match &body.username {
        Some(name) => Some(user_id_for(app, name)?),
        None => None,
    };
    if let Some(user_id) = &requested {
        if app.db.read(|tx| users::exists(tx, user_id))? {
            return Err(Error::new(ErrorKind::UserInUse, "That user ID is taken"));
        }
    }
    if let Some(p) = &body.password {
        crate::api::client::account::check_new_password(p)?;
    }
    let device_id = match &body.device_id {
        Some(d) if ids::is_valid_device_id(d) => d.clone(),
        Some(_) => return Err(Error::invalid_param("Invalid device_id")),
        None => auth::new_device_id(),
    };
    // Bound to the endpoint only: clients (matrix-js-sdk) open the session
    // with a request that names no user yet, to learn the flows, and send
    // the user name and password in a later stage.
    let spec = Spec {
        endpoint: "POST /register",
        user_id: None,
        flows: flows(app.config.registration),
        params: Value::Null,
    };
    let passed = uia::check(app, body.auth.as_ref(), &spec)?;
    // Hashing is slow on purpose; it happens before the write lock is taken.
    let hash = match &body.password {
        Some(p) => Some(password::hash_password(p).map_err(|e| Error::internal(format!("hashing: {e}")))?),
        None => None,
    };
    let user_id = requested.unwrap_or_else(|| {
        ids::user_id(&token::random_string(GENERATED_LOCALPART_LEN, LOWER_DIGITS), &app.config.server_name)
    });
    let now = crate::storage::now_ms();
    let session = app.db.write(|tx| {
        if !users::create(tx, &user_id, hash.as_deref(), false, now)? {
            return Err(Error::new(ErrorKind::UserInUse, "That user ID is taken"));
        }
        // A new account is called by its localpart until it picks a name
        // (as Synapse and Conduit do), so member events and profiles show one.
        if let Some((localpart, _)) = ids::parse_user_id(&user_id) {
            profiles::set_displayname(tx, &user_id, Some(localpart))?;
        }
        passed.finish(tx)?;
        if body.inhibit_login {
            return Ok(None);
        }
        let name = body.initial_device_display_name.as_deref();
        auth::issue_session(app, tx, &user_id, &device_id, name, body.refresh_token).map(Some)
    })?;
    crate::log::info(format_args!("registered {user_id}"));
    match session {
        None => Response::ok(json!({ "user_id": user_id })),
        Some(s) => Response::ok(session_body(app, &user_id, &device_id, s)),
    }
}

/// GET /_matrix/client/v3/register/available
pub fn available(app: &App, req: &Request) -> Result<Response> {
    let name = req.query("username").ok_or_else(|| Error::missing_param("username is required"))?;
    let user_id = user_id_for(app, name)?;
    if app.db.read(|tx| users::exists(tx, &user_id))? {
        return Err(Error::new(ErrorKind::UserInUse, "That user ID is taken"));
    }
    Response::ok(json!({ "available": true }))
}

/// GET /_matrix/client/v1/register/m.login.registration_token/validity
pub fn token_validity(app: &App, req: &Request) -> Result<Response> {
    if app.config.registration != Registration::Token {
        return Err(Error::forbidden("Registration tokens are not in use on this server"));
    }
    let t = req.query("token").ok_or_else(|| Error::missing_param("token is required"))?;
    let now = crate::storage::now_ms();
    let valid = t.len() <= uia::REG_TOKEN_MAX_LEN
        && app.db.read(|tx| crate::storage::reg_tokens::get(tx, t))?.is_some_and(|tok| tok.is_valid(now));
    Response::ok(json!({ "valid": valid }))
}
