//! Discovery: spec versions, `.well-known`, capabilities.

use serde_json::json;

use crate::api::{Request, Response};
use crate::app::App;
use crate::core::room_version;
use crate::error::Result;

/// The spec versions whose endpoint shapes this server follows. Areas a
/// version adds that are not built yet answer `M_UNRECOGNIZED`, which
/// clients treat as "not supported".
pub const SPEC_VERSIONS: &[&str] = &[
    "r0.0.1", "r0.1.0", "r0.2.0", "r0.3.0", "r0.4.0", "r0.5.0", "r0.6.0", "r0.6.1", "v1.1", "v1.2", "v1.3",
    "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11", "v1.12", "v1.13", "v1.14", "v1.15",
    "v1.16", "v1.17", "v1.18", "v1.19",
];

/// The unstable feature flags clients gate on, each for a feature built
/// here (a flag for something missing would make clients call what is not
/// there). Pinned by `tests/discovery.rs`.
pub const UNSTABLE_FEATURES: &[(&str, bool)] = &[
    // Cross-signing: without it Element never sets cross-signing up.
    ("org.matrix.e2e_cross_signing", true),
    // GET /rooms/{roomId}/aliases.
    ("org.matrix.msc2432", true),
    // Private read receipts (m.read.private).
    ("org.matrix.msc2285.stable", true),
    // Threaded read receipts (thread_id).
    ("org.matrix.msc3771", true),
    // Per-thread notification counts (unread_thread_notifications).
    ("org.matrix.msc3773", true),
    // room_types in the public room directory filter.
    ("org.matrix.msc3827.stable", true),
    // Simplified sliding sync (MSC4186): Element X syncs only with it.
    ("org.matrix.simplified_msc3575", true),
];

/// GET /_matrix/client/versions
pub fn versions(_app: &App, _req: &Request) -> Result<Response> {
    let unstable: serde_json::Map<String, serde_json::Value> =
        UNSTABLE_FEATURES.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
    Response::ok(json!({ "versions": SPEC_VERSIONS, "unstable_features": unstable }))
}

/// GET /_matrix/client/v3/thirdparty/protocols: no third-party networks are
/// bridged here (yet), which is an empty object, not an error.
pub fn thirdparty_protocols(_app: &App, _req: &Request) -> Result<Response> {
    Response::ok(json!({}))
}

/// GET /.well-known/matrix/client
pub fn well_known_client(app: &App, _req: &Request) -> Result<Response> {
    Response::ok(json!({ "m.homeserver": { "base_url": app.config.base_url() } }))
}

/// GET /.well-known/matrix/server
pub fn well_known_server(app: &App, _req: &Request) -> Result<Response> {
    Response::ok(json!({ "m.server": app.config.server_delegation() }))
}

/// GET /_matrix/client/v3/capabilities
pub fn capabilities(_app: &App, _req: &Request) -> Result<Response> {
    let available: serde_json::Map<_, _> =
        room_version::SUPPORTED.iter().map(|v| (v.id.to_owned(), json!("stable"))).collect();
    Response::ok(json!({
        "capabilities": {
            "m.change_password": { "enabled": true },
            "m.room_versions": { "default": room_version::DEFAULT.id, "available": available },
            "m.set_displayname": { "enabled": true },
            "m.set_avatar_url": { "enabled": true },
            "m.3pid_changes": { "enabled": false },
            "m.get_login_token": { "enabled": false },
        }
    }))
}
