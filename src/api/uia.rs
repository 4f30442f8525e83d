//! User-interactive authentication (the spec's UIA): sessions, stages and
//! the 401 answers that tell a client what is still needed.
//!
//! A handler calls [`check`] with the request's `auth` object and the flows
//! it accepts. The answer is either a 401 `Error` carrying the flows (and,
//! after a failed stage, an error), or a [`Passed`] that the handler must
//! [`Passed::finish`] inside the same write transaction as its own work, so
//! that a session and a registration-token use are spent exactly when the
//! request succeeds.
//!
//! A session belongs to one request: the spec's client "resubmit[s] the
//! same request with the addition of an `auth` key", passing the session
//! back "in subsequent attempts to authenticate in the same API call".
//! Each session stores a hash of its operation — the endpoint, the user,
//! and the parameters the handler names in [`Spec::params`] (the devices
//! to delete, the new password, the keys to replace) — and a request that
//! brings the session with another operation is refused with 403
//! `M_UNKNOWN` ([`ErrorKind::UiaOperationChanged`]), as Synapse answers.
//! A session ends with the request it authorised, so it cannot be
//! replayed; of two requests racing with one completed session, only the
//! first to commit succeeds.
//!
//! Stages served: `m.login.dummy`, `m.login.password`,
//! `m.login.registration_token`.

use serde_json::{json, Value};

use crate::app::App;
use crate::crypto::{canonical, password, sha256, token};
use crate::error::{Error, ErrorKind, Result};
use crate::storage::{self, reg_tokens, uia, users};

pub const DUMMY: &str = "m.login.dummy";
pub const PASSWORD: &str = "m.login.password";
pub const REGISTRATION_TOKEN: &str = "m.login.registration_token";

/// Length of session IDs.
const SESSION_ID_LEN: usize = 24;

/// What the endpoint asks for, and what the authentication is for.
pub struct Spec<'a> {
    /// The endpoint as method and path pattern, e.g. `"DELETE
    /// /devices/{deviceId}"` (without the version prefix: a session opened
    /// under `/r0` may finish under `/v3`).
    pub endpoint: &'a str,
    /// The user the request acts for (None for registration).
    pub user_id: Option<&'a str>,
    /// Each flow is a list of stages; completing any one flow passes.
    pub flows: &'a [&'a [&'a str]],
    /// The request's parameters the authentication vouches for, in a
    /// normal form (defaults filled in, sets sorted), so that the same
    /// request spelt differently is still the same. `Value::Null` when the
    /// endpoint is all that matters.
    pub params: Value,
}

const OPERATION_CHANGED: &str = "Requested operation has changed during the UI authentication session";
const UNKNOWN_SESSION: &str = "Unknown or expired UIA session";

/// The hash stored with a session: SHA-256 over the session ID (a salt:
/// the parameters may hold a new password) and the canonical JSON of the
/// operation.
fn operation_hash(session_id: &str, spec: &Spec) -> Result<[u8; 32]> {
    let op = json!({ "endpoint": spec.endpoint, "user_id": spec.user_id, "params": spec.params });
    let text = canonical::to_canonical(&op).map_err(|e| Error::internal(format!("UIA operation: {e}")))?;
    let mut bytes = Vec::with_capacity(session_id.len() + 1 + text.len());
    bytes.extend_from_slice(session_id.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(text.as_bytes());
    Ok(sha256(&bytes))
}

/// Proof that authentication passed; spend it with [`Passed::finish`].
#[must_use]
pub struct Passed {
    session_id: String,
    reg_token: Option<String>,
}

impl Passed {
    /// The registration token this session used, if any.
    pub fn reg_token(&self) -> Option<&str> {
        self.reg_token.as_deref()
    }

    /// Ends the session and counts a registration token's use as completed.
    /// Call inside the write transaction that does the request's work. A
    /// session another request spent meanwhile is an error, which rolls
    /// this request back: one authentication, one operation.
    pub fn finish(&self, tx: &rusqlite::Connection) -> Result<()> {
        if !uia::finish(tx, &self.session_id)? {
            return Err(Error::new(ErrorKind::Unknown, UNKNOWN_SESSION));
        }
        if let Some(t) = &self.reg_token {
            reg_tokens::complete(tx, t)?;
        }
        Ok(())
    }
}

/// Runs one step of UIA for a request whose body had `auth` (or none).
pub fn check(app: &App, auth: Option<&Value>, spec: &Spec) -> Result<Passed> {
    let now = storage::now_ms();
    let Some(auth) = auth.filter(|a| !a.is_null()) else {
        let session = open_session(app, spec, now)?;
        return Err(challenge(spec, &session, ""));
    };
    let Some(auth) = auth.as_object() else {
        return Err(Error::bad_json("auth must be an object"));
    };
    let mut session = match auth.get("session") {
        Some(Value::String(id)) => {
            let found = app.db.read(|tx| uia::get(tx, id, now))?;
            // Another user's session is as unknown as a missing one.
            let Some(s) = found.filter(|s| s.user_id.as_deref() == spec.user_id) else {
                return Err(Error::new(ErrorKind::Unknown, UNKNOWN_SESSION));
            };
            if !token::constant_time_eq(&s.op_hash, &operation_hash(id, spec)?) {
                return Err(Error::new(ErrorKind::UiaOperationChanged, OPERATION_CHANGED));
            }
            s
        }
        None => open_session(app, spec, now)?,
        Some(_) => return Err(Error::bad_json("auth.session must be a string")),
    };
    let stage = auth.get("type").and_then(Value::as_str).unwrap_or("");
    let allowed = spec.flows.iter().any(|f| f.contains(&stage));
    if !allowed {
        return Err(challenge(spec, &session, "Unsupported authentication stage"));
    }
    if !session.completed.iter().any(|s| s == stage) {
        match stage {
            DUMMY => {}
            PASSWORD => check_password(app, auth, spec).map_err(|m| challenge(spec, &session, m))?,
            REGISTRATION_TOKEN => {
                let token = auth.get("token").and_then(Value::as_str).unwrap_or("");
                let taken = app.db.write(|tx| {
                    let valid = crate::core::ids::is_valid_registration_token(token)
                        && reg_tokens::get(tx, token)?.is_some_and(|t| t.is_valid(now));
                    if valid {
                        reg_tokens::add_pending(tx, token, 1)?;
                        session.reg_token = Some(token.to_owned());
                        session.completed.push(stage.to_owned());
                        uia::save(tx, &session)?;
                    }
                    Ok(valid)
                })?;
                if !taken {
                    return Err(challenge(spec, &session, "Invalid registration token"));
                }
            }
            _ => return Err(challenge(spec, &session, "Unsupported authentication stage")),
        }
        if stage != REGISTRATION_TOKEN {
            session.completed.push(stage.to_owned());
        }
    }
    let done = spec.flows.iter().any(|f| f.iter().all(|s| session.completed.iter().any(|c| c == s)));
    if done {
        Ok(Passed { session_id: session.session_id, reg_token: session.reg_token })
    } else {
        app.db.write(|tx| uia::save(tx, &session))?;
        Err(challenge(spec, &session, ""))
    }
}

fn open_session(app: &App, spec: &Spec, now: i64) -> Result<uia::Session> {
    let session_id = token::random_string(SESSION_ID_LEN, token::ALNUM);
    let op_hash = operation_hash(&session_id, spec)?;
    app.db.write(|tx| uia::create(tx, &session_id, &op_hash, spec.user_id, now))?;
    Ok(uia::Session {
        session_id,
        op_hash: op_hash.to_vec(),
        user_id: spec.user_id.map(str::to_owned),
        completed: Vec::new(),
        reg_token: None,
    })
}

/// The 401 answer: flows, params, session, completed, and an error if a
/// stage just failed.
fn challenge(spec: &Spec, session: &uia::Session, error: &'static str) -> Error {
    let flows: Vec<Value> = spec.flows.iter().map(|f| json!({ "stages": f })).collect();
    let body = json!({
        "flows": flows,
        "params": {},
        "session": session.session_id,
        "completed": session.completed,
    });
    Error::new(ErrorKind::Uia(Box::new(body)), error)
}

/// The password stage: the identified user must be the requester and the
/// password must match.
fn check_password(app: &App, auth: &serde_json::Map<String, Value>, spec: &Spec) -> Result<(), &'static str> {
    let user_id = spec.user_id.ok_or("Password authentication is not possible here")?;
    let claimed = crate::api::client::login::identified_user(
        auth.get("identifier"),
        auth.get("user").and_then(Value::as_str),
        &app.config.server_name,
    )
    .map_err(|_| "Invalid user identifier")?;
    if claimed != user_id {
        return Err("The identified user is not the one signed in");
    }
    let given = auth.get("password").and_then(Value::as_str).ok_or("Missing password")?;
    let stored = app
        .db
        .read(|tx| users::get(tx, user_id))
        .map_err(|_| "Could not check the password")?
        .and_then(|u| u.password_hash);
    match stored {
        Some(hash) if password::verify_password(given, &hash) => Ok(()),
        _ => Err("Invalid password"),
    }
}
