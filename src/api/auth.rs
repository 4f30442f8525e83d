//! Access tokens in, requester out; and the issuing of new sessions.

use std::net::IpAddr;

use crate::api::Auth;
use crate::app::App;
use crate::crypto::token;
use crate::error::{Error, ErrorKind, Result};
use crate::storage::{self, devices};

/// `last_seen` is written at most this often per device, so ordinary
/// requests stay read-only (no fsync).
const LAST_SEEN_RESOLUTION_MS: i64 = 5 * 60 * 1000;
/// Length of server-chosen device IDs.
pub const DEVICE_ID_LEN: usize = 10;

fn unknown_token(soft_logout: bool) -> Error {
    let msg = if soft_logout { "Access token has expired" } else { "Unknown access token" };
    Error::new(ErrorKind::UnknownToken { soft_logout }, msg)
}

/// Resolves an access token to its user and device. An application
/// service's `as_token` acts as the user the query's `user_id` names (one
/// of its namespace, registered here) or else as its sender, with the
/// device `device_id` names (the user's) or none.
pub fn authenticate(app: &App, access_token: &str, ip: &IpAddr, query: &[(String, String)]) -> Result<Auth> {
    let hash = token::token_hash(access_token);
    let services = app.appservices.current();
    if let Some(reg) = services.by_token_hash(&hash) {
        let q = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        return masquerade(app, reg.clone(), hash, q("user_id"), q("device_id"));
    }
    let owner =
        app.db.read(|tx| devices::lookup_access_token(tx, &hash))?.ok_or_else(|| unknown_token(false))?;
    let now = storage::now_ms();
    if owner.deactivated {
        return Err(unknown_token(false));
    }
    if owner.expires_ts.is_some_and(|t| t <= now) {
        return Err(unknown_token(true));
    }
    if owner.last_seen_ts.is_none_or(|t| now - t >= LAST_SEEN_RESOLUTION_MS) {
        let ip = ip.to_string();
        // `last_seen` is advisory: a request that only reads must not fail
        // because it cannot be written (a full disk; the storage layer
        // logs that once).
        match app.db.write(|tx| devices::touch(tx, &owner.user_id, &owner.device_id, now, &ip)) {
            Ok(()) => {}
            Err(e) if e.kind == ErrorKind::StorageFull => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Auth {
        user_id: owner.user_id,
        device_id: owner.device_id,
        token_hash: hash,
        is_admin: owner.is_admin,
        is_guest: owner.is_guest,
        appservice: None,
    })
}

/// The application service whose `as_token` this is, acting as its
/// sender (which need not be registered yet: `/register` creates it).
pub fn appservice_sender(app: &App, access_token: &str) -> Option<Auth> {
    let hash = token::token_hash(access_token);
    let reg = app.appservices.current().by_token_hash(&hash)?.clone();
    Some(Auth {
        user_id: crate::core::ids::user_id(&reg.sender_localpart, &app.config.server_name),
        device_id: String::new(),
        token_hash: hash,
        is_admin: false,
        is_guest: false,
        appservice: Some(reg),
    })
}

/// An application service acting as `user_id` (its sender when `None`)
/// on `device_id`.
fn masquerade(
    app: &App,
    reg: std::sync::Arc<crate::core::appservice::Registration>,
    token_hash: [u8; 32],
    user_id: Option<&str>,
    device_id: Option<&str>,
) -> Result<Auth> {
    let server = &app.config.server_name;
    let sender = crate::core::ids::user_id(&reg.sender_localpart, server);
    let user_id = match user_id {
        None => sender,
        Some(u) => {
            let local = crate::core::ids::parse_user_id(u).is_some_and(|(_, s)| s == server.as_str());
            if !local || !reg.is_user(u, server) {
                return Err(Error::new(
                    ErrorKind::Exclusive,
                    "The application service may not act as this user: it is not in its namespace",
                ));
            }
            u.to_owned()
        }
    };
    let (user, device_known) = app.db.read(|tx| {
        let user = crate::storage::users::get(tx, &user_id)?;
        let known = match device_id {
            Some(d) => devices::get(tx, &user_id, d)?.is_some(),
            None => true,
        };
        Ok((user, known))
    })?;
    match user {
        Some(u) if !u.deactivated => {}
        Some(_) => return Err(Error::forbidden("This user has been deactivated")),
        None => {
            return Err(Error::forbidden(
                "The application service has not registered this user (POST /register first)",
            ))
        }
    }
    if !device_known {
        return Err(Error::new(ErrorKind::UnknownDevice, "The user has no such device"));
    }
    Ok(Auth {
        user_id,
        device_id: device_id.unwrap_or("").to_owned(),
        token_hash,
        is_admin: false,
        is_guest: false,
        appservice: Some(reg),
    })
}

/// What a new login or registration hands the client.
pub struct Session {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in_ms: Option<u64>,
}

/// Creates (or reuses) a device and issues tokens for it, inside the
/// caller's write transaction. A reused device's old tokens are revoked.
pub fn issue_session(
    app: &App,
    tx: &crate::storage::Tx,
    user_id: &str,
    device_id: &str,
    display_name: Option<&str>,
    with_refresh: bool,
) -> Result<Session> {
    let now = storage::now_ms();
    devices::create(tx, user_id, device_id, display_name, now)?;
    // A new device is a device-list change (recorded by a trigger): the
    // syncs of the user and of the rooms they share wake for it.
    let pos = crate::storage::events::current_pos(tx)?;
    crate::e2ee::wake_device_list_watchers(tx, user_id, pos)?;
    devices::delete_device_tokens(tx, user_id, device_id)?;
    issue_tokens(app, tx, user_id, device_id, with_refresh, now)
}

/// Issues an access token (and, if asked, a refresh token) for an existing device.
pub fn issue_tokens(
    app: &App,
    tx: &rusqlite::Connection,
    user_id: &str,
    device_id: &str,
    with_refresh: bool,
    now: i64,
) -> Result<Session> {
    let access_token = token::new_secret_token("hth_");
    let lifetime = app.config.access_token_lifetime_ms;
    let expires_ts = with_refresh.then(|| now.saturating_add(lifetime as i64));
    devices::add_access_token(tx, &token::token_hash(&access_token), user_id, device_id, now, expires_ts)?;
    let refresh_token = if with_refresh {
        let t = token::new_secret_token("hthr_");
        devices::add_refresh_token(tx, &token::token_hash(&t), user_id, device_id, now)?;
        Some(t)
    } else {
        None
    };
    Ok(Session { access_token, refresh_token, expires_in_ms: with_refresh.then_some(lifetime) })
}

/// A fresh server-chosen device ID.
pub fn new_device_id() -> String {
    token::random_string(DEVICE_ID_LEN, token::UPPER)
}
