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

/// Resolves an access token to its user and device.
pub fn authenticate(app: &App, access_token: &str, ip: &IpAddr) -> Result<Auth> {
    let hash = token::token_hash(access_token);
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
