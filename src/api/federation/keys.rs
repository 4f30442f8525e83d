//! The key endpoints (Server-Server API, "Publishing Keys" and "Querying
//! Keys Through Another Server"): our key document, and the notary's
//! answers for keys Hearth holds. They need no authentication.

use serde_json::json;

use crate::api::{Request, Response};
use crate::app::App;
use crate::error::{Error, Result};
use crate::federation::keys;

/// GET /_matrix/key/v2/server (and the deprecated `/server/{keyId}` form,
/// which answers with the same document).
pub fn server_key(app: &App, _req: &Request) -> Result<Response> {
    Response::ok(keys::own_document(app)?)
}

/// GET /_matrix/key/v2/query/{serverName}?minimum_valid_until_ts=
pub fn query_one(app: &App, req: &Request) -> Result<Response> {
    let server = req.param("serverName");
    if !crate::core::ids::is_valid_server_name(server) {
        return Err(Error::invalid_param(format!("{server} is not a valid server name")));
    }
    let min = match req.query("minimum_valid_until_ts") {
        Some(t) => {
            t.parse::<i64>().map_err(|_| Error::invalid_param("minimum_valid_until_ts must be an integer"))?
        }
        None => 0,
    };
    Response::ok(json!({ "server_keys": keys::notary_documents(app, server, min, true)? }))
}

/// POST /_matrix/key/v2/query
pub fn query(app: &App, req: &Request) -> Result<Response> {
    let wanted = keys::parse_query(&req.json_value()?)?;
    let mut docs = Vec::new();
    for (i, (server, min)) in wanted.into_iter().enumerate() {
        if !crate::core::ids::is_valid_server_name(&server) {
            continue;
        }
        docs.extend(keys::notary_documents(app, &server, min, i < keys::QUERY_FETCHES_MAX)?);
    }
    Response::ok(json!({ "server_keys": docs }))
}
