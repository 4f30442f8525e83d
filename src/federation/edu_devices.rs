//! Device lists, cross-signing keys and to-device messages across servers
//! (issue 18, in progress: received EDUs of these types are not applied
//! yet).

use serde_json::Value;

use crate::app::App;
use crate::error::Result;

/// `m.device_list_update` from `origin`.
pub fn receive_device_list_update(_app: &App, _origin: &str, _content: &Value) -> Result<()> {
    Ok(())
}

/// `m.signing_key_update` from `origin`.
pub fn receive_signing_key_update(_app: &App, _origin: &str, _content: &Value) -> Result<()> {
    Ok(())
}

/// `m.direct_to_device` from `origin`.
pub fn receive_to_device(_app: &App, _origin: &str, _content: &Value) -> Result<()> {
    Ok(())
}
