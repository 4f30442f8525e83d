//! Client-Server API handlers, one spec area per file. Each handler's doc
//! names its route.

pub mod account;
pub mod account_data;
pub mod devices;
pub mod directory;
pub mod ephemeral;
pub mod key_backup;
pub mod keys;
pub mod legacy;
pub mod login;
pub mod membership;
pub mod message;
pub mod openid;
pub mod profile;
pub mod push;
pub mod register;
pub mod relations;
pub mod report;
pub mod rooms;
pub mod search;
pub mod sliding;
pub mod spaces;
pub mod sync;
pub mod to_device;
pub mod versions;
pub mod voip;
