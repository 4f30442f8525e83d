//! Queries (Server-Server API, "Querying for information"): another
//! server asks what one of our room aliases names (`/query/directory`)
//! or one of our users' profile (`/query/profile`). Both answer for this
//! server's aliases and users only: anything else is 400
//! `M_INVALID_PARAM`, as Synapse answers. Any other query type is no
//! route (404 `M_UNRECOGNIZED`, the spec's answer for unknown endpoints).

use serde_json::{json, Map, Value};

use crate::api::client::{directory, profile};
use crate::api::{Request, Response};
use crate::app::App;
use crate::core::ids;
use crate::error::{Error, Result};

/// A required query string parameter.
fn required<'a>(req: &'a Request, name: &str) -> Result<&'a str> {
    req.query(name).ok_or_else(|| Error::missing_param(format!("{name} is required")))
}

/// GET /_matrix/federation/v1/query/directory?room_alias=
///
/// `{room_id, servers}`: this server first, then those of the room's
/// other joined members. An unknown alias is 404 `M_NOT_FOUND`.
pub fn directory(app: &App, req: &Request) -> Result<Response> {
    let alias = required(req, "room_alias")?;
    let (_, server) = ids::parse_room_alias(alias)
        .ok_or_else(|| Error::invalid_param(format!("{alias} is not a valid room alias")))?;
    if server != app.config.server_name {
        return Err(Error::invalid_param(format!("{alias} is not an alias of this server")));
    }
    let (room_id, servers) = directory::local_alias_servers(app, alias)?
        .ok_or_else(|| Error::not_found(format!("Room alias {alias} not found")))?;
    Response::ok(json!({ "room_id": room_id, "servers": servers }))
}

/// GET /_matrix/federation/v1/query/profile?user_id=&field=
///
/// The user's display name and avatar where set; with `field`
/// (`displayname` or `avatar_url`), that one only (`{}` when unset). An
/// unknown user, or a field this server does not keep, is 404
/// `M_NOT_FOUND`.
pub fn profile(app: &App, req: &Request) -> Result<Response> {
    let user_id = required(req, "user_id")?;
    let (_, server) = ids::parse_user_id(user_id)
        .ok_or_else(|| Error::invalid_param(format!("{user_id:?} is not a valid user ID")))?;
    if server != app.config.server_name {
        return Err(Error::invalid_param(format!("{user_id} is not a user of this server")));
    }
    let field = req.query("field");
    if let Some(f) = field.filter(|f| !matches!(*f, "displayname" | "avatar_url")) {
        return Err(Error::not_found(format!("This server keeps no profile field {f:?}")));
    }
    let found = profile::local_profile(app, user_id)?;
    let mut out = Map::new();
    for (name, value) in [("displayname", found.displayname), ("avatar_url", found.avatar_url)] {
        if let Some(v) = value.filter(|_| field.is_none_or(|f| f == name)) {
            out.insert(name.into(), Value::String(v));
        }
    }
    Response::ok(Value::Object(out))
}
