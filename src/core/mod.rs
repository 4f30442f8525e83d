//! Pure Matrix logic: identifiers now; events, auth rules, state resolution
//! and redaction as they arrive. Data in, data out: no SQL, HTTP or clock.

pub mod appservice;
pub mod auth;
pub mod event;
pub mod ids;
pub mod json;
pub mod power_levels;
pub mod redaction;
pub mod room_version;
pub mod server_acl;
pub mod state_res;
