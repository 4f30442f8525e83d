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
    /// A guest upgrading to a full account (the guest access module).
    guest_access_token: Option<String>,
}

/// What a guest registration reads of its body.
#[derive(Deserialize, Default)]
struct GuestBody {
    device_id: Option<String>,
    initial_device_display_name: Option<String>,
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

fn device_id_or_new(requested: Option<&str>) -> Result<String> {
    match requested {
        Some(d) if ids::is_valid_device_id(d) => Ok(d.to_owned()),
        Some(_) => Err(Error::invalid_param("Invalid device_id")),
        None => Ok(auth::new_device_id()),
    }
}

/// POST /_matrix/client/v3/register?kind=guest: an account with no
/// password, no UIA, and only the guest routes (`http::router`).
fn register_guest(app: &App, req: &Request) -> Result<Response> {
    if !app.config.allow_guest_access {
        return Err(Error::new(ErrorKind::GuestAccessForbidden, "Guest accounts are not allowed here"));
    }
    let body: GuestBody = req.json_or_empty()?;
    let device_id = device_id_or_new(body.device_id.as_deref())?;
    let now = crate::storage::now_ms();
    let (user_id, session) = app.db.write(|tx| {
        // A random localpart is taken only by another guest's astronomically
        // unlikely draw; draw again then.
        for _ in 0..4 {
            let user_id = generated_user_id(app);
            if users::create_guest(tx, &user_id, now)? {
                let name = body.initial_device_display_name.as_deref();
                let s = auth::issue_session(app, tx, &user_id, &device_id, name, false)?;
                return Ok((user_id, s));
            }
        }
        Err(Error::internal("could not draw a free guest user ID"))
    })?;
    crate::log::info(format_args!("registered guest {user_id}"));
    Response::ok(session_body(app, &user_id, &device_id, session))
}

fn generated_user_id(app: &App) -> String {
    ids::user_id(&token::random_string(GENERATED_LOCALPART_LEN, LOWER_DIGITS), &app.config.server_name)
}

/// The guest a `guest_access_token` belongs to: its user ID if it is an
/// active guest account.
fn upgrading_guest(app: &App, req: &Request, guest_token: &str) -> Result<String> {
    let owner = auth::authenticate(app, guest_token, &req.remote_ip, &[])?;
    if !owner.is_guest {
        return Err(Error::forbidden("guest_access_token does not belong to a guest account"));
    }
    Ok(owner.user_id)
}

/// POST /_matrix/client/v3/register
pub fn register(app: &App, req: &Request) -> Result<Response> {
    match req.query("kind").unwrap_or("user") {
        "user" => {}
        "guest" => return register_guest(app, req),
        _ => return Err(Error::invalid_param("kind must be user or guest")),
    }
    if app.config.registration == Registration::Closed {
        return Err(Error::forbidden("Registration is closed on this server"));
    }
    let body: RegisterBody = req.json()?;
    // A guest upgrading keeps its user ID: the spec has it name its own
    // localpart as `username` (it may leave it out here).
    let guest = match &body.guest_access_token {
        Some(t) => Some(upgrading_guest(app, req, t)?),
        None => None,
    };
    let requested = match &body.username {
        Some(name) => Some(user_id_for(app, name)?),
        None => guest.clone(),
    };
    if let Some(user_id) = &requested {
        if guest.as_ref().is_some_and(|g| g != user_id) {
            return Err(Error::forbidden(
                "A guest upgrades to its own user ID; username must be its localpart",
            ));
        }
        if guest.is_none() && app.db.read(|tx| users::exists(tx, user_id))? {
            return Err(Error::new(ErrorKind::UserInUse, "That user ID is taken"));
        }
    }
    if let Some(p) = &body.password {
        crate::api::client::account::check_new_password(p)?;
    }
    let device_id = device_id_or_new(body.device_id.as_deref())?;
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
    let user_id = requested.unwrap_or_else(|| generated_user_id(app));
    let now = crate::storage::now_ms();
    let session = app.db.write(|tx| {
        if guest.is_some() {
            if !users::upgrade_guest(tx, &user_id, hash.as_deref())? {
                return Err(Error::forbidden("The guest account is no longer a guest"));
            }
        } else if !users::create(tx, &user_id, hash.as_deref(), false, now)? {
            return Err(Error::new(ErrorKind::UserInUse, "That user ID is taken"));
        }
        // A new account is called by its localpart until it picks a name
        // (as Synapse and Conduit do), so member events and profiles show one;
        // an upgraded guest keeps the name it chose.
        let named = guest.is_some() && profiles::get(tx, &user_id)?.is_some_and(|p| p.displayname.is_some());
        if let Some((localpart, _)) = ids::parse_user_id(&user_id).filter(|_| !named) {
            profiles::set_displayname(tx, &user_id, Some(localpart))?;
        }
        passed.finish(tx)?;
        if body.inhibit_login {
            return Ok(None);
        }
        let name = body.initial_device_display_name.as_deref();
        auth::issue_session(app, tx, &user_id, &device_id, name, body.refresh_token).map(Some)
    })?;
    let what = if guest.is_some() { "upgraded guest" } else { "registered" };
    crate::log::info(format_args!("{what} {user_id}"));
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
    let valid = ids::is_valid_registration_token(t)
        && app.db.read(|tx| crate::storage::reg_tokens::get(tx, t))?.is_some_and(|tok| tok.is_valid(now));
    Response::ok(json!({ "valid": valid }))
}
