//! EDUs from other servers: each EDU of a received transaction handed to
//! the module of its type. An EDU of an unknown type, or one whose
//! content is not what its type needs, is dropped and logged; it never
//! fails the transaction (the spec: EDUs are not acknowledged one by one).
//!
//! - `m.typing`, `m.receipt`, `m.presence`, and the presence-list
//!   handshake (`m.presence_invite`, `m.presence_accept`,
//!   `m.presence_drop`): `federation::edu_ephemeral`.
//! - `m.device_list_update`, `m.signing_key_update`, `m.direct_to_device`:
//!   `federation::edu_devices`.

use serde_json::Value;

use crate::app::App;
use crate::federation::{edu_devices, edu_ephemeral};

/// Handles the EDUs of a transaction from `origin`, in order.
pub fn receive_all(app: &App, origin: &str, edus: &[Value]) {
    for edu in edus {
        let kind = edu.get("edu_type").and_then(Value::as_str).unwrap_or_default();
        let Some(content) = edu.get("content").filter(|c| c.is_object()) else {
            crate::log::info(format_args!("dropping an EDU from {origin} without content ({kind})"));
            continue;
        };
        let handled = match kind {
            "m.typing" => edu_ephemeral::receive_typing(app, origin, content),
            "m.receipt" => edu_ephemeral::receive_receipts(app, origin, content),
            "m.presence" => edu_ephemeral::receive_presence(app, origin, content),
            edu_ephemeral::PRESENCE_INVITE => edu_ephemeral::receive_presence_invite(app, origin, content),
            edu_ephemeral::PRESENCE_ACCEPT => edu_ephemeral::receive_presence_accept(app, origin, content),
            edu_ephemeral::PRESENCE_DROP => edu_ephemeral::receive_presence_drop(app, origin, content),
            "m.device_list_update" => edu_devices::receive_device_list_update(app, origin, content),
            "m.signing_key_update" => edu_devices::receive_signing_key_update(app, origin, content),
            "m.direct_to_device" => edu_devices::receive_to_device(app, origin, content),
            _ => Ok(()),
        };
        if let Err(e) = handled {
            crate::log::info(format_args!("dropping a {kind} EDU from {origin}: {e}"));
        }
    }
}
