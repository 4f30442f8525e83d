//! Typing, receipts and presence across servers (issue 18, in progress:
//! received EDUs of these types are not applied yet).

use serde_json::Value;

use crate::app::App;
use crate::error::Result;

/// `m.typing` from `origin`.
pub fn receive_typing(_app: &App, _origin: &str, _content: &Value) -> Result<()> {
    Ok(())
}

/// `m.receipt` from `origin`.
pub fn receive_receipts(_app: &App, _origin: &str, _content: &Value) -> Result<()> {
    Ok(())
}

/// `m.presence` from `origin`.
pub fn receive_presence(_app: &App, _origin: &str, _content: &Value) -> Result<()> {
    Ok(())
}
