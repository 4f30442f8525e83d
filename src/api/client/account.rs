//! The signed-in user's account: password change and deactivation.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::accounts;
use crate::api::uia::{self, Spec};
use crate::api::{Request, Response};
use crate::app::App;
use crate::crypto::password;
use crate::error::{Error, ErrorKind, Result};

const PASSWORD_FLOWS: &[&[&str]] = &[&[uia::PASSWORD]];

#[derive(Deserialize)]
struct PasswordBody {
    auth: Option<Value>,
    new_password: String,
    logout_devices: Option<bool>,
}

/// Checks a new password against the limits every password obeys.
pub fn check_new_password(p: &str) -> Result<()> {
    if p.is_empty() {
        return Err(Error::new(ErrorKind::WeakPassword, "The password must not be empty"));
    }
    if p.len() > password::MAX_PASSWORD_BYTES {
        return Err(Error::invalid_param("Password too long"));
    }
    Ok(())
}

/// POST /_matrix/client/v3/account/password
///
/// Other devices are logged out unless `logout_devices` is false: their
/// access and refresh tokens, keys, to-device messages (all of which go
/// with the device) and every pusher not set by the requesting device,
/// which stays signed in.
pub fn change_password(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let body: PasswordBody = req.json()?;
    check_new_password(&body.new_password)?;
    let logout_devices = body.logout_devices.unwrap_or(true);
    let spec = Spec {
        endpoint: "POST /account/password",
        user_id: Some(&who.user_id),
        flows: PASSWORD_FLOWS,
        params: json!({ "new_password": body.new_password, "logout_devices": logout_devices }),
    };
    let passed = uia::check(app, body.auth.as_ref(), &spec)?;
    let hash =
        password::hash_password(&body.new_password).map_err(|e| Error::internal(format!("hashing: {e}")))?;
    app.db.write(|tx| {
        accounts::set_password(tx, &who.user_id, &hash, logout_devices, Some(&who.device_id))?;
        passed.finish(tx)
    })?;
    Response::ok(json!({}))
}

#[derive(Deserialize)]
struct DeactivateBody {
    auth: Option<Value>,
    /// Erasure: the user's events are served redacted to those who could
    /// not see them before (`storage::users::erase`). Also binds the UIA
    /// session; Hearth keeps no identity-server bindings.
    #[serde(default)]
    erase: bool,
    id_server: Option<String>,
}

/// POST /_matrix/client/v3/account/deactivate
pub fn deactivate(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let body: DeactivateBody = req.json_or_empty()?;
    let spec = Spec {
        endpoint: "POST /account/deactivate",
        user_id: Some(&who.user_id),
        flows: PASSWORD_FLOWS,
        params: json!({ "erase": body.erase, "id_server": body.id_server }),
    };
    let passed = uia::check(app, body.auth.as_ref(), &spec)?;
    app.db.write(|tx| {
        passed.finish(tx)?;
        accounts::deactivate(tx, &who.user_id, body.erase)
    })?;
    crate::log::info(format_args!("deactivated {}", who.user_id));
    Response::ok(json!({ "id_server_unbind_result": "no-support" }))
}
