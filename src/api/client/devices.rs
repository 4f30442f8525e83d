//! Device management: `/devices`, `/devices/{deviceId}`, `/delete_devices`.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::uia::{self, Spec};
use crate::api::{Request, Response};
use crate::app::App;
use crate::error::{Error, Result};
use crate::storage::devices::{self, Device};

const DELETE_FLOWS: &[&[&str]] = &[&[uia::PASSWORD]];
/// Most devices one `/delete_devices` call may name.
const DELETE_MANY_MAX: usize = 1000;
/// Longest device display name accepted.
const DISPLAY_NAME_MAX_BYTES: usize = 512;

fn device_json(d: &Device) -> Value {
    let mut v = json!({ "device_id": d.device_id });
    if let Some(n) = &d.display_name {
        v["display_name"] = json!(n);
    }
    if let Some(ip) = &d.last_seen_ip {
        v["last_seen_ip"] = json!(ip);
    }
    if let Some(ts) = d.last_seen_ts {
        v["last_seen_ts"] = json!(ts);
    }
    v
}

fn not_found() -> Error {
    Error::not_found("No such device")
}

/// GET /_matrix/client/v3/devices
pub fn list(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let all = app.db.read(|tx| devices::list(tx, &who.user_id))?;
    Response::ok(json!({ "devices": all.iter().map(device_json).collect::<Vec<_>>() }))
}

/// GET /_matrix/client/v3/devices/{deviceId}
pub fn get(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let d = app.db.read(|tx| devices::get(tx, &who.user_id, req.param("deviceId")))?.ok_or_else(not_found)?;
    Response::ok(device_json(&d))
}

#[derive(Deserialize)]
struct UpdateBody {
    display_name: Option<String>,
}

/// PUT /_matrix/client/v3/devices/{deviceId}
pub fn update(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let body: UpdateBody = req.json_or_empty()?;
    if body.display_name.as_ref().is_some_and(|n| n.len() > DISPLAY_NAME_MAX_BYTES) {
        return Err(Error::invalid_param("display_name is too long"));
    }
    let device_id = req.param("deviceId");
    // The spec: "If not given, the display name is unchanged."
    let found = match body.display_name.as_deref() {
        Some(name) => {
            app.db.write(|tx| {
                let found = devices::set_display_name(tx, &who.user_id, device_id, Some(name))?;
                // The rename is a device-list change (a trigger records it):
                // parked syncs of those who share a room hear of it now.
                let pos = crate::storage::events::current_pos(tx)?;
                crate::e2ee::wake_device_list_watchers(tx, &who.user_id, pos)?;
                Ok(found)
            })?
        }
        None => app.db.read(|tx| devices::get(tx, &who.user_id, device_id))?.is_some(),
    };
    if !found {
        return Err(not_found());
    }
    Response::ok(json!({}))
}

#[derive(Deserialize)]
struct DeleteBody {
    auth: Option<Value>,
}

/// DELETE /_matrix/client/v3/devices/{deviceId}
pub fn delete(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let device_id = req.param("deviceId");
    if app.db.read(|tx| devices::get(tx, &who.user_id, device_id))?.is_none() {
        return Err(not_found());
    }
    let body: DeleteBody = req.json_or_empty()?;
    let spec = Spec {
        endpoint: "DELETE /devices/{deviceId}",
        user_id: Some(&who.user_id),
        flows: DELETE_FLOWS,
        params: json!({ "device_id": device_id }),
    };
    let passed = uia::check(app, body.auth.as_ref(), &spec)?;
    app.db.write(|tx| {
        passed.finish(tx)?;
        devices::delete(tx, &who.user_id, device_id)?;
        // Its keys went with it (a device-list change): wake room peers.
        crate::e2ee::devices_removed(tx, &who.user_id)
    })?;
    Response::ok(json!({}))
}

#[derive(Deserialize)]
struct DeleteManyBody {
    auth: Option<Value>,
    devices: Vec<String>,
}

/// POST /_matrix/client/v3/delete_devices
pub fn delete_many(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let body: DeleteManyBody = req.json()?;
    if body.devices.len() > DELETE_MANY_MAX {
        return Err(Error::invalid_param(format!("At most {DELETE_MANY_MAX} devices at once")));
    }
    // The same set of devices, in any order, is the same request.
    let mut devices: Vec<&str> = body.devices.iter().map(String::as_str).collect();
    devices.sort_unstable();
    devices.dedup();
    let spec = Spec {
        endpoint: "POST /delete_devices",
        user_id: Some(&who.user_id),
        flows: DELETE_FLOWS,
        params: json!({ "devices": devices }),
    };
    let passed = uia::check(app, body.auth.as_ref(), &spec)?;
    app.db.write(|tx| {
        passed.finish(tx)?;
        for d in &devices {
            devices::delete(tx, &who.user_id, d)?;
        }
        crate::e2ee::devices_removed(tx, &who.user_id)
    })?;
    Response::ok(json!({}))
}
