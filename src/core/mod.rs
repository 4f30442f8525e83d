//! Pure Matrix logic: identifiers now; events, auth rules, state resolution
//! and redaction as they arrive. Data in, data out: no SQL, HTTP or clock.

pub mod ids;
pub mod room_version;
