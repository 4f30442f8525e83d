//! Server discovery (the Server-Server API, "Resolving server names").
//! PLACEHOLDER until the full resolver lands: IP literals and names with
//! a port as given, anything else on 8448.

use crate::error::{Error, Result};
use crate::outbound::client::Client;

pub struct Destination {
    pub server_name: String,
    pub authority: String,
    pub host: String,
}

pub struct Discovery {
    _client: Client,
}

impl Discovery {
    pub fn new(client: Client) -> Discovery {
        Discovery { _client: client }
    }

    pub fn resolve(&self, server_name: &str) -> Result<Destination> {
        if server_name.is_empty() || server_name.contains(['/', '@', ' ']) {
            return Err(Error::bad_json(format!("invalid server name {server_name}")));
        }
        let has_port =
            if server_name.starts_with('[') { server_name.contains("]:") } else { server_name.contains(':') };
        let authority = if has_port { server_name.to_owned() } else { format!("{server_name}:8448") };
        Ok(Destination { server_name: server_name.to_owned(), authority, host: server_name.to_owned() })
    }
}
