//! Devices and keys of local users for other servers (Server-Server
//! API, "Device Management" and "End-to-End Encryption"):
//! `GET /user/devices/{userId}`, `POST /user/keys/query` and
//! `POST /user/keys/claim`. They answer from the same storage and code
//! as the client API's `/keys/query` and `/keys/claim`
//! (`api::client::keys::local_keys`, `claim_local`), as another server
//! may see it: the owner's own signatures, no user-signing keys, no
//! device display names. Only this server's users may be named: any
//! other is 400 `M_INVALID_PARAM` for the whole request, as Synapse
//! answers.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::client::keys::{check_claim_bounds, check_query_bounds, claim_local, local_keys};
use crate::api::{Request, Response};
use crate::app::App;
use crate::core::ids;
use crate::error::{Error, Result};
use crate::storage::device_lists;

/// Refuses a user who is not a valid user of this server.
fn local_user(app: &App, user_id: &str) -> Result<()> {
    match ids::parse_user_id(user_id) {
        Some((_, server)) if server == app.config.server_name => Ok(()),
        Some(_) => Err(Error::invalid_param(format!("{user_id} is not a user of this server"))),
        None => Err(Error::invalid_param(format!("{user_id:?} is not a valid user ID"))),
    }
}

/// GET /_matrix/federation/v1/user/devices/{userId}
///
/// Every device of the user with identity keys, and their master and
/// self-signing keys. `stream_id` is the last of the user's
/// `m.device_list_update` stream (`e2ee::federated`) the answer includes:
/// the next update names it as its `prev_id`. An unknown user has no
/// devices.
pub fn devices(app: &App, req: &Request) -> Result<Response> {
    super::origin(req)?;
    let user_id = req.param("userId");
    local_user(app, user_id)?;
    let wanted = BTreeMap::from([(user_id.to_owned(), Vec::new())]);
    let (mut found, stream_id) =
        app.db.read(|tx| Ok((local_keys(tx, &wanted, None)?, device_lists::stream_id(tx, user_id)?)))?;
    let devices: Vec<Value> = match found.device_keys.remove(user_id) {
        Some(Value::Object(devices)) => devices
            .into_iter()
            .map(|(device_id, keys)| json!({ "device_id": device_id, "keys": keys }))
            .collect(),
        _ => Vec::new(),
    };
    let mut out = json!({ "user_id": user_id, "stream_id": stream_id, "devices": devices });
    if let Some(k) = found.master_keys.remove(user_id) {
        out["master_key"] = k;
    }
    if let Some(k) = found.self_signing_keys.remove(user_id) {
        out["self_signing_key"] = k;
    }
    Response::ok(out)
}

#[derive(Deserialize)]
struct QueryBody {
    device_keys: BTreeMap<String, Vec<String>>,
}

/// POST /_matrix/federation/v1/user/keys/query
pub fn keys_query(app: &App, req: &Request) -> Result<Response> {
    super::origin(req)?;
    let body: QueryBody = req.json()?;
    check_query_bounds(&body.device_keys)?;
    for user_id in body.device_keys.keys() {
        local_user(app, user_id)?;
    }
    let found = app.db.read(|tx| local_keys(tx, &body.device_keys, None))?;
    Response::ok(json!({
        "device_keys": found.device_keys,
        "master_keys": found.master_keys,
        "self_signing_keys": found.self_signing_keys,
    }))
}

#[derive(Deserialize)]
struct ClaimBody {
    one_time_keys: BTreeMap<String, BTreeMap<String, String>>,
}

/// POST /_matrix/federation/v1/user/keys/claim
pub fn keys_claim(app: &App, req: &Request) -> Result<Response> {
    super::origin(req)?;
    let body: ClaimBody = req.json()?;
    check_claim_bounds(&body.one_time_keys)?;
    for user_id in body.one_time_keys.keys() {
        local_user(app, user_id)?;
    }
    let claimed = app.db.write(|tx| claim_local(tx, &body.one_time_keys))?;
    Response::ok(json!({ "one_time_keys": claimed }))
}
