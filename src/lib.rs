//! Hearth: a Matrix homeserver for small hosts that keeps everything in one
//! SQLite file. See ARCHITECTURE.md for the map.

pub mod accounts;
pub mod acme;
pub mod api;
pub mod app;
pub mod appservice;
pub mod cli;
pub mod config;
pub mod core;
pub mod crypto;
pub mod e2ee;
pub mod ephemeral;
pub mod error;
pub mod federation;
pub mod http;
pub mod hub;
pub mod log;
pub mod media;
pub mod outbound;
pub mod push;
pub mod ratelimit;
pub mod rooms;
pub mod server;
pub mod storage;
pub mod sync;
pub mod tls;
pub mod util;
