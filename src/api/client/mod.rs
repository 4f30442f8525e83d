//! Client-Server API handlers, one spec area per file. Each handler's doc
//! names its route.

pub mod account;
pub mod devices;
pub mod login;
pub mod register;
pub mod versions;
