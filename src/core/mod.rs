//! Pure Matrix logic: identifiers now; events, auth rules, state resolution
//! and redaction as they arrive. Data in, data out: no SQL, HTTP or clock.

pub mod event;
pub mod ids;
pub mod redaction;
pub mod room_version;
