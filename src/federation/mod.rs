//! Federation: how Hearth talks with other Matrix servers (the
//! Server-Server API). Submodules stand on different layers (see the
//! layer table in ARCHITECTURE.md):
//!
//! - `xmatrix` (foundation, pure): the `X-Matrix` request signature.
//! - `discover` (infrastructure): server name → where to connect and what
//!   to call it (the spec's server discovery), with its caches.
//! - `client` (infrastructure): signed requests to other servers.
//! - `memo` (infrastructure): the in-memory tables `App` owns.
//! - `keys` (service): our key documents, other servers' keys fetched,
//!   cached and checked, the notary's answers.
//! - `inbound` (service): authenticating requests from other servers.
//! - `sender` (service): the outbox sent as transactions.
//! - `media` (service): other servers' media fetched and cached for local
//!   clients; the `multipart/mixed` framing of federation media answers.
//! - `queries` (service): asking other servers for profiles, aliases,
//!   room directories and keys on behalf of local clients.
//! - `edus` (service): received EDUs handed to `edu_ephemeral` (typing,
//!   receipts, presence) and `edu_devices` (device lists, cross-signing
//!   keys, to-device messages).
//! - `room_reads` (service): the room reads other servers make — one
//!   event, the state before an event, auth chains, backfill, missing
//!   events, the event nearest a time — behind the room's server ACL and
//!   what the asking server may see.

pub mod client;
pub mod discover;
pub mod edu_devices;
pub mod edu_ephemeral;
pub mod edus;
pub mod inbound;
pub mod join_state;
pub mod keys;
pub mod media;
pub mod membership;
pub mod memo;
pub mod pdus;
pub mod queries;
pub mod room_reads;
pub mod sender;
pub mod xmatrix;
