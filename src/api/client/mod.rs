//! Client-Server API handlers, one spec area per file. Each handler's doc
//! names its route.

pub mod account;
pub mod devices;
pub mod directory;
pub mod filter;
pub mod login;
pub mod membership;
pub mod message;
pub mod register;
pub mod rooms;
pub mod sync;
pub mod versions;
