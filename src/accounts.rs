//! The account service: what changing a password or deactivating an
//! account does besides the `users` row, the same whether a user asks
//! through the client API or the operator through `hearth user …`.

use crate::error::Result;
use crate::storage::{devices, push, users, Tx};

/// Sets a new password (already hashed). With `sign_out`, every device but
/// `keep` (the requesting one, or none for the operator) is signed out:
/// its tokens, keys and pushers go, pushers of no known device too, and
/// those sharing rooms with the user see the device list change. False if
/// there is no such active account.
pub fn set_password(tx: &Tx, user_id: &str, hash: &str, sign_out: bool, keep: Option<&str>) -> Result<bool> {
    if !users::set_password(tx, user_id, hash)? {
        return Ok(false);
    }
    if sign_out {
        devices::delete_all_except(tx, user_id, keep)?;
        push::delete_pushers_except_device(tx, user_id, keep)?;
        crate::e2ee::devices_removed(tx, user_id)?;
    }
    Ok(true)
}

/// Deactivates an account for good (no password, devices, tokens or
/// pushers; the user ID is never reused), erasing its content for later
/// viewers if asked (`users::erase`). False if there is no such account.
pub fn deactivate(tx: &Tx, user_id: &str, erase: bool) -> Result<bool> {
    let done = users::deactivate(tx, user_id)?;
    if done && erase {
        users::erase(tx, user_id, crate::storage::now_ms())?;
    }
    crate::e2ee::devices_removed(tx, user_id)?;
    Ok(done)
}
