//! Federation: how Hearth talks with other Matrix servers (the
//! Server-Server API). Submodules stand on different layers (see the
//! layer table in ARCHITECTURE.md):
//!
//! - `xmatrix` (foundation, pure): the `X-Matrix` request signature.
//! - `discover` (infrastructure): server name → where to connect and what
//!   to call it (the spec's server discovery), with its caches.

pub mod discover;
pub mod xmatrix;
