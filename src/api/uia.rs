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
//! Stages served: `m.login.dummy`, `m.login.password`,
//! `m.login.registration_token`.

use serde_json::{json, Value};

use crate::app::App;
use crate::crypto::{password, token};
use crate::error::{Error, ErrorKind, Result};
use crate::storage::{self, reg_tokens, uia, users};

pub const DUMMY: &str = "m.login.dummy";
pub const PASSWORD: &str = "m.login.password";
pub const REGISTRATION_TOKEN: &str = "m.login.registration_token";

/// Length of session IDs.
const SESSION_ID_LEN: usize = 24;
/// Registration tokens longer than this are refused without a lookup.
pub const REG_TOKEN_MAX_LEN: usize = 64;

/// What the endpoint asks for.
pub struct Spec<'a> {
    /// Names the endpoint; a session opened for one cannot serve another.
    pub kind: &'a str,
    /// The user the request acts for (None for registration).
    pub user_id: Option<&'a str>,
    /// Each flow is a list of stages; completing any one flow passes.
    pub flows: &'a [&'a [&'a str]],
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
    /// Call inside the write transaction that does the request's work.
    pub fn finish(&self, tx: &rusqlite::Connection) -> Result<()> {
        if let Some(t) = &self.reg_token {
            reg_tokens::complete(tx, t)?;
        }
        uia::finish(tx, &self.session_id)
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
            match found {
                Some(s) if s.kind == spec.kind && s.user_id.as_deref() == spec.user_id => s,
                _ => return Err(Error::new(ErrorKind::Unknown, "Unknown or expired UIA session")),
            }
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
                    let valid = token.len() <= REG_TOKEN_MAX_LEN
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
    app.db.write(|tx| uia::create(tx, &session_id, spec.kind, spec.user_id, now))?;
    Ok(uia::Session {
        session_id,
        kind: spec.kind.to_owned(),
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
