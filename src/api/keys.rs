//! The server's published signing key (Server-Server API, "Publishing Keys").

use serde_json::json;

use crate::api::{Request, Response};
use crate::app::App;
use crate::error::{Error, Result};
use crate::storage;

/// How long other servers may cache the key.
const KEY_VALIDITY_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// GET /_matrix/key/v2/server (and the deprecated `/server/{keyId}` form,
/// which answers with the same document).
pub fn server_key(app: &App, _req: &Request) -> Result<Response> {
    let key = &app.server_key;
    let mut doc = json!({
        "server_name": app.config.server_name,
        "verify_keys": { key.key_id(): { "key": key.public_key_b64() } },
        "old_verify_keys": {},
        "valid_until_ts": storage::now_ms() + KEY_VALIDITY_MS,
    });
    key.sign_json(&app.config.server_name, &mut doc)
        .map_err(|e| Error::internal(format!("signing the key document: {e}")))?;
    Response::ok(doc)
}
