//! Outbound HTTP: the one machinery by which Hearth talks to other
//! servers on its own initiative — push gateways now, federation
//! (server-to-server transactions) and appservices next.
//!
//! - `policy.rs` (pure): which addresses and URLs outbound requests may
//!   use; private, loopback, link-local, CGNAT, multicast, unspecified
//!   and documentation addresses are refused unless
//!   `outbound_allow_private`.
//! - `client.rs`: the one HTTPS client shared by all users: connections
//!   reused per destination, timeouts, a cap on answers (or a streamed
//!   body bounded the same way), the policy enforced on the addresses
//!   actually connected, extra roots from `outbound_ca_file`, `Host`
//!   overrides and SRV routes (`route_via`) for server discovery.
//! - `dns.rs`: SRV lookups (server discovery's `_matrix-fed._tcp`
//!   records): a small bounded DNS client over UDP (TCP when truncated)
//!   to the nameservers of `/etc/resolv.conf`.
//! - `queue.rs`: per-destination scheduling over a kind's durable rows:
//!   one request in flight per destination, exponential backoff, bounded
//!   sender threads woken by `poke()` after commits, restart-safe.
//!
//! A kind (`push::sender` is the first) implements `queue::Kind`: its rows
//! and payloads stay in its own module and in `storage/`.
//!
//! **Architecture Invariant:** this module knows neither HTTP serving nor
//! any service: it imports only `config`, `error`, `log`, `util`,
//! `storage` (the lock helper and the clock) and its dependencies, never
//! `api`, `http`, `hub`, `sync`, `rooms` or `app`. No network I/O happens
//! inside a transaction.

pub mod client;
pub mod dns;
pub mod policy;
pub mod queue;
