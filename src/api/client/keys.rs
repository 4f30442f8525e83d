//! End-to-end encryption keys: `/keys/upload`, `/keys/query`,
//! `/keys/claim`, `/keys/changes`, and cross-signing
//! (`/keys/device_signing/upload`, `/keys/signatures/upload`).
//!
//! The server never sees plaintext; it checks that what it stores is well
//! formed and signed by the key it claims, and hands it out exactly as
//! uploaded. Signatures are checked before the write transaction (ed25519
//! costs CPU); each request then writes in one transaction, so a refused
//! request stores nothing. A change others must learn about (new or changed
//! device keys, cross-signing keys, signatures) takes a stream position and
//! wakes the syncs of everyone sharing a room with the user.
//!
//! Queries and claims naming users of other servers ask those servers
//! (`federation::queries`); the local halves ([`local_keys`],
//! [`claim_local`]) also answer other servers (`api::federation::user`).

use std::collections::{BTreeMap, HashSet};

use rusqlite::Connection;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::api::uia::{self, Spec};
use crate::api::{Request, Response};
use crate::app::App;
use crate::core::ids;
use crate::crypto::canonical::to_canonical_excluding;
use crate::crypto::{b64_decode, sign::verify_json};
use crate::error::{Error, Result};
use crate::federation::queries;
use crate::log;
use crate::storage::{e2ee, events};
use crate::sync::Since;

/// The one one-time and fallback key algorithm served.
use crate::e2ee::SIGNED_CURVE25519;
/// One-time keys one upload may carry.
pub const ONE_TIME_KEYS_PER_UPLOAD_MAX: usize = 200;
/// Unclaimed one-time keys a device may have stored.
pub const ONE_TIME_KEYS_PER_DEVICE_MAX: i64 = 1000;
/// Fallback keys one upload may carry (one per algorithm).
const FALLBACK_KEYS_PER_UPLOAD_MAX: usize = 4;
/// Canonical JSON size of a device's identity keys.
const DEVICE_KEYS_MAX_BYTES: usize = 8192;
/// Canonical JSON size of one one-time, fallback or cross-signing key.
const KEY_MAX_BYTES: usize = 4096;
/// Entries of a device's `algorithms` and `keys`.
const DEVICE_KEY_ENTRIES_MAX: usize = 32;
/// Length of a key ID, key or signature string.
const KEY_STRING_MAX_BYTES: usize = 256;
/// Users one `/keys/query` may name.
const QUERY_USERS_MAX: usize = 1000;
/// Devices one `/keys/query` or `/keys/claim` may name in total.
const DEVICES_PER_REQUEST_MAX: usize = 10_000;
/// Signed objects one `/keys/signatures/upload` may carry.
const SIGNATURES_PER_UPLOAD_MAX: usize = 1000;

const DEVICE_SIGNING_FLOWS: &[&[&str]] = &[&[uia::PASSWORD]];

fn invalid(m: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::invalid_param(m)
}

/// A 400 `M_INVALID_SIGNATURE` answer (a spec error code the error kinds do
/// not carry).
fn invalid_signature(message: &str) -> Response {
    Response { status: 400, body: Some(json!({ "errcode": "M_INVALID_SIGNATURE", "error": message })) }
}

/// Decodes an unpadded base64 ed25519 or curve25519 public key.
fn key32(s: &str) -> Option<[u8; 32]> {
    if s.len() > KEY_STRING_MAX_BYTES {
        return None;
    }
    b64_decode(s).and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
}

/// The canonical JSON of `v` without `signatures` and `unsigned` (what a
/// signature covers), bounded by `max` bytes.
fn signed_part(v: &Value, max: usize) -> Result<String> {
    let text = to_canonical_excluding(v, &["signatures", "unsigned"])
        .map_err(|e| Error::bad_json(format!("Key is not valid canonical JSON: {e}")))?;
    if text.len() > max {
        return Err(invalid(format!("Key object larger than {max} bytes")));
    }
    Ok(text)
}

/// `v` without `unsigned`, as canonical JSON text to store.
fn storable(v: &Value, max: usize) -> Result<String> {
    let text = to_canonical_excluding(v, &["unsigned"])
        .map_err(|e| Error::bad_json(format!("Key is not valid canonical JSON: {e}")))?;
    if text.len() > max {
        return Err(invalid(format!("Key object larger than {max} bytes")));
    }
    Ok(text)
}

/// Parses stored JSON; stored text was checked on the way in.
fn parse_stored(text: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| Error::internal(format!("stored key JSON: {e}")))
}

/// Parses stored JSON for an answer that lists many keys: a key that
/// cannot be parsed (damaged) is logged and left out, not a failure of the
/// whole answer.
fn readable_stored(text: &str, what: std::fmt::Arguments) -> Option<Value> {
    match serde_json::from_str(text) {
        Ok(v) => Some(v),
        Err(e) => {
            log::warn(format_args!("skipping unreadable stored {what}: {e}"));
            None
        }
    }
}

/// Splits the users of a key request into this server's and other
/// servers' (users whose ID is not valid are neither: they are unknown).
fn split_local<T>(
    server_name: &str,
    wanted: BTreeMap<String, T>,
) -> (BTreeMap<String, T>, BTreeMap<String, T>) {
    let (mut local, mut remote) = (BTreeMap::new(), BTreeMap::new());
    for (user_id, what) in wanted {
        match ids::parse_user_id(&user_id) {
            Some((_, server)) if server == server_name => {
                local.insert(user_id, what);
            }
            Some(_) => {
                remote.insert(user_id, what);
            }
            None => {}
        }
    }
    (local, remote)
}

/// How long to wait for other servers: the body's `timeout`, else the
/// query string's (where Synapse reads it), in milliseconds.
fn remote_timeout(req: &Request, in_body: Option<i64>) -> std::time::Duration {
    let given = in_body.or_else(|| req.query("timeout").and_then(|t| t.parse().ok()));
    queries::keys_timeout(given)
}

// POST /keys/upload

/// Checks a device's identity keys: they name the requesting user and
/// device, carry its ed25519 and curve25519 keys, and are signed by that
/// ed25519 key. Returns the text to store and the ed25519 key.
fn check_device_keys(v: &Value, user_id: &str, device_id: &str) -> Result<(String, [u8; 32])> {
    let obj = v.as_object().ok_or_else(|| Error::bad_json("device_keys must be an object"))?;
    if obj.get("user_id").and_then(Value::as_str) != Some(user_id) {
        return Err(invalid("device_keys.user_id is not the requesting user"));
    }
    if obj.get("device_id").and_then(Value::as_str) != Some(device_id) {
        return Err(invalid("device_keys.device_id is not the requesting device"));
    }
    let algorithms = obj
        .get("algorithms")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("device_keys.algorithms must be a list"))?;
    if algorithms.len() > DEVICE_KEY_ENTRIES_MAX
        || algorithms
            .iter()
            .any(|a| !a.as_str().is_some_and(|s| !s.is_empty() && s.len() <= KEY_STRING_MAX_BYTES))
    {
        return Err(invalid("device_keys.algorithms must be a short list of algorithm names"));
    }
    let keys = obj
        .get("keys")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid("device_keys.keys must be an object"))?;
    if keys.len() > DEVICE_KEY_ENTRIES_MAX {
        return Err(invalid("device_keys.keys has too many entries"));
    }
    for (name, value) in keys {
        let ok = name.split_once(':').is_some_and(|(alg, id)| !alg.is_empty() && id == device_id)
            && value.as_str().is_some_and(|s| s.len() <= KEY_STRING_MAX_BYTES);
        if !ok {
            return Err(invalid(format!(
                "device_keys.keys.{name} must be <algorithm>:{device_id} with a string key"
            )));
        }
    }
    let ed_name = format!("ed25519:{device_id}");
    let ed25519 = keys
        .get(&ed_name)
        .and_then(Value::as_str)
        .and_then(key32)
        .ok_or_else(|| invalid(format!("device_keys.keys needs a valid {ed_name}")))?;
    keys.get(&format!("curve25519:{device_id}"))
        .and_then(Value::as_str)
        .and_then(key32)
        .ok_or_else(|| invalid(format!("device_keys.keys needs a valid curve25519:{device_id}")))?;
    if !obj.get("signatures").is_some_and(Value::is_object) {
        return Err(invalid("device_keys.signatures must be an object"));
    }
    signed_part(v, DEVICE_KEYS_MAX_BYTES)?;
    if !verify_json(v, user_id, &ed_name, &ed25519) {
        return Err(invalid("device_keys are not signed by the device's ed25519 key"));
    }
    Ok((storable(v, DEVICE_KEYS_MAX_BYTES)?, ed25519))
}

/// A one-time or fallback key from an upload.
struct UploadedKey {
    algorithm: String,
    key_id: String,
    json: String,
}

/// Checks a map of `<algorithm>:<key_id>` to signed key objects: known
/// algorithm, a 32-byte key, a valid signature by the device.
fn check_keys(
    v: Option<&Value>,
    what: &str,
    max: usize,
    user_id: &str,
    device_id: &str,
    ed25519: Option<&[u8; 32]>,
) -> Result<Vec<UploadedKey>> {
    let map = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(Error::bad_json(format!("{what} must be an object"))),
    };
    if map.len() > max {
        return Err(invalid(format!("At most {max} {what} per upload")));
    }
    if map.is_empty() {
        return Ok(Vec::new());
    }
    let ed25519 =
        ed25519.ok_or_else(|| invalid(format!("Upload the device's identity keys before {what}")))?;
    let signer = format!("ed25519:{device_id}");
    let mut out = Vec::with_capacity(map.len());
    for (name, key) in map {
        let Some((algorithm, key_id)) = name.split_once(':') else {
            return Err(invalid(format!("{what}: {name} is not <algorithm>:<key_id>")));
        };
        if algorithm != SIGNED_CURVE25519 {
            return Err(invalid(format!("{what}: unrecognised algorithm {algorithm}")));
        }
        if key_id.is_empty() || key_id.len() > KEY_STRING_MAX_BYTES {
            return Err(invalid(format!("{what}: bad key ID in {name}")));
        }
        let valid_key = key.get("key").and_then(Value::as_str).and_then(key32).is_some();
        if !key.is_object() || !valid_key {
            return Err(invalid(format!("{what}: {name} must be an object with a curve25519 key")));
        }
        signed_part(key, KEY_MAX_BYTES)?;
        if !verify_json(key, user_id, &signer, ed25519) {
            return Err(invalid(format!("{what}: {name} is not signed by the device")));
        }
        out.push(UploadedKey {
            algorithm: algorithm.to_owned(),
            key_id: key_id.to_owned(),
            json: storable(key, KEY_MAX_BYTES)?,
        });
    }
    Ok(out)
}

/// The device's stored ed25519 key, if it uploaded identity keys.
fn stored_ed25519(conn: &Connection, user_id: &str, device_id: &str) -> Result<Option<[u8; 32]>> {
    let Some(text) = e2ee::device_keys(conn, user_id, device_id)? else { return Ok(None) };
    let v = parse_stored(&text)?;
    Ok(v.get("keys")
        .and_then(|k| k.get(format!("ed25519:{device_id}")))
        .and_then(Value::as_str)
        .and_then(key32))
}

/// POST /_matrix/client/v3/keys/upload
pub fn upload(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    // Keys belong to a device: an application service must name one.
    who.device()?;
    let body = req.json_value()?;
    let Value::Object(body) = body else { return Err(Error::bad_json("The body must be a JSON object")) };
    let device_keys = match body.get("device_keys") {
        None | Some(Value::Null) => None,
        Some(v) => Some(check_device_keys(v, &who.user_id, &who.device_id)?),
    };
    let ed25519 = match &device_keys {
        Some((_, key)) => Some(*key),
        None => app.db.read(|tx| stored_ed25519(tx, &who.user_id, &who.device_id))?,
    };
    let otks = check_keys(
        body.get("one_time_keys"),
        "one_time_keys",
        ONE_TIME_KEYS_PER_UPLOAD_MAX,
        &who.user_id,
        &who.device_id,
        ed25519.as_ref(),
    )?;
    let fallbacks = check_keys(
        body.get("fallback_keys"),
        "fallback_keys",
        FALLBACK_KEYS_PER_UPLOAD_MAX,
        &who.user_id,
        &who.device_id,
        ed25519.as_ref(),
    )?;
    let (user_id, device_id) = (who.user_id.as_str(), who.device_id.as_str());
    let counts = app.db.write(|tx| {
        if let Some((text, _)) = &device_keys {
            if e2ee::set_device_keys(tx, user_id, device_id, text)? {
                crate::e2ee::device_list_changed(tx, user_id)?;
            }
        }
        for k in &otks {
            match e2ee::one_time_key(tx, user_id, device_id, &k.algorithm, &k.key_id)? {
                Some(old) if old == k.json => {}
                Some(_) => {
                    return Err(invalid(format!(
                        "One-time key {}:{} already exists with a different value",
                        k.algorithm, k.key_id
                    )))
                }
                None => e2ee::add_one_time_key(tx, user_id, device_id, &k.algorithm, &k.key_id, &k.json)?,
            }
        }
        if !otks.is_empty() {
            let total: i64 = e2ee::one_time_key_counts(tx, user_id, device_id)?.iter().map(|(_, n)| n).sum();
            if total > ONE_TIME_KEYS_PER_DEVICE_MAX {
                return Err(invalid(format!(
                    "A device may store at most {ONE_TIME_KEYS_PER_DEVICE_MAX} one-time keys"
                )));
            }
        }
        for k in &fallbacks {
            e2ee::set_fallback_key(tx, user_id, device_id, &k.algorithm, &k.key_id, &k.json)?;
        }
        crate::e2ee::one_time_key_counts(tx, user_id, device_id)
    })?;
    Response::ok(json!({ "one_time_key_counts": counts }))
}

// POST /keys/query

#[derive(Deserialize)]
struct QueryBody {
    device_keys: BTreeMap<String, Vec<String>>,
    timeout: Option<i64>,
}

/// Checks how much a key query names: at most [`QUERY_USERS_MAX`] users
/// and [`DEVICES_PER_REQUEST_MAX`] devices.
pub fn check_query_bounds(wanted: &BTreeMap<String, Vec<String>>) -> Result<()> {
    if wanted.len() > QUERY_USERS_MAX {
        return Err(invalid(format!("At most {QUERY_USERS_MAX} users per query")));
    }
    if wanted.values().map(Vec::len).sum::<usize>() > DEVICES_PER_REQUEST_MAX {
        return Err(invalid(format!("At most {DEVICES_PER_REQUEST_MAX} devices per query")));
    }
    Ok(())
}

/// The keys of local users, by user: what `/keys/query` and the
/// federation API's `/user/keys/query` and `/user/devices` answer.
#[derive(Debug, Default)]
pub struct LocalKeys {
    /// User → device → keys (`{}` for a user with none, or unknown).
    pub device_keys: Map<String, Value>,
    pub master_keys: Map<String, Value>,
    pub self_signing_keys: Map<String, Value>,
    /// The requester's own user-signing key only.
    pub user_signing_keys: Map<String, Value>,
}

/// The keys of the local users in `wanted` (user → device IDs, none
/// meaning all) as `requester` may see them: a local user sees
/// device display names, the signatures of the owner and their own, and
/// their own user-signing key; another server (`None`) sees the owner's
/// signatures only and no display names (as Synapse does by default:
/// they tell who uses which device).
pub fn local_keys(
    conn: &Connection,
    wanted: &BTreeMap<String, Vec<String>>,
    requester: Option<&str>,
) -> Result<LocalKeys> {
    let mut out = LocalKeys::default();
    for (user_id, devices_wanted) in wanted {
        let wanted: HashSet<&str> = devices_wanted.iter().map(String::as_str).collect();
        let mut devices = Map::new();
        for (device_id, text, display_name) in e2ee::devices_with_keys(conn, user_id)? {
            if !wanted.is_empty() && !wanted.contains(device_id.as_str()) {
                continue;
            }
            let Some(mut obj) = readable_stored(&text, format_args!("keys of {user_id} {device_id}")) else {
                continue;
            };
            crate::e2ee::merge_signatures(
                &mut obj,
                e2ee::device_signatures(conn, user_id, &device_id)?,
                user_id,
                requester,
            );
            if let (Some(name), Some(_)) = (display_name, requester) {
                obj["unsigned"] = json!({ "device_display_name": name });
            }
            devices.insert(device_id, obj);
        }
        out.device_keys.insert(user_id.clone(), Value::Object(devices));
        if let Some((public, text)) = e2ee::cross_signing_key(conn, user_id, "master")? {
            if let Some(mut obj) = readable_stored(&text, format_args!("master key of {user_id}")) {
                crate::e2ee::merge_signatures(
                    &mut obj,
                    e2ee::key_signatures(conn, user_id, &public)?,
                    user_id,
                    requester,
                );
                out.master_keys.insert(user_id.clone(), obj);
            }
        }
        if let Some((_, text)) = e2ee::cross_signing_key(conn, user_id, "self_signing")? {
            if let Some(obj) = readable_stored(&text, format_args!("self-signing key of {user_id}")) {
                out.self_signing_keys.insert(user_id.clone(), obj);
            }
        }
        if Some(user_id.as_str()) == requester {
            if let Some((_, text)) = e2ee::cross_signing_key(conn, user_id, "user_signing")? {
                if let Some(obj) = readable_stored(&text, format_args!("user-signing key of {user_id}")) {
                    out.user_signing_keys.insert(user_id.clone(), obj);
                }
            }
        }
    }
    Ok(out)
}

/// POST /_matrix/client/v3/keys/query
///
/// Local users from the database; users of other servers from the cache
/// of their device lists (`e2ee::federated::cached_keys`) while it is
/// fresh, else asked of their servers, all at once (`federation::queries::query_keys`), within the
/// request's `timeout`. A server that gave nothing is in `failures`.
pub fn query(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let body: QueryBody = req.json()?;
    check_query_bounds(&body.device_keys)?;
    let me = who.user_id.as_str();
    let (local, remote) = split_local(&app.config.server_name, body.device_keys);
    let (mut found, cached) = app.db.read(|tx| {
        let mut cached = BTreeMap::new();
        for (user_id, devices) in &remote {
            if let Some(c) = crate::e2ee::federated::cached_keys(tx, user_id, devices)? {
                cached.insert(user_id.clone(), c);
            }
        }
        Ok((local_keys(tx, &local, Some(me))?, cached))
    })?;
    // Users whose devices are cached fresh are answered from the cache;
    // the others are asked of their servers.
    let remote: BTreeMap<String, Vec<String>> =
        remote.into_iter().filter(|(u, _)| !cached.contains_key(u)).collect();
    for user_id in remote.keys() {
        crate::federation::edu_devices::request_resync(user_id);
    }
    for (user_id, c) in cached {
        found.device_keys.insert(user_id.clone(), Value::Object(c.devices));
        if let Some(k) = c.master_key {
            found.master_keys.insert(user_id.clone(), k);
        }
        if let Some(k) = c.self_signing_key {
            found.self_signing_keys.insert(user_id, k);
        }
    }
    let remote = if remote.is_empty() {
        queries::RemoteKeys::default()
    } else {
        queries::query_keys(app, &remote, remote_timeout(req, body.timeout))
    };
    found.device_keys.extend(remote.device_keys);
    found.master_keys.extend(remote.master_keys);
    found.self_signing_keys.extend(remote.self_signing_keys);
    Response::ok(json!({
        "failures": remote.failures,
        "device_keys": found.device_keys,
        "master_keys": found.master_keys,
        "self_signing_keys": found.self_signing_keys,
        "user_signing_keys": found.user_signing_keys,
    }))
}

// POST /keys/claim

#[derive(Deserialize)]
struct ClaimBody {
    one_time_keys: BTreeMap<String, BTreeMap<String, String>>,
    timeout: Option<i64>,
}

/// Checks how much a claim names: at most [`DEVICES_PER_REQUEST_MAX`] devices.
pub fn check_claim_bounds(wanted: &BTreeMap<String, BTreeMap<String, String>>) -> Result<()> {
    if wanted.values().map(BTreeMap::len).sum::<usize>() > DEVICES_PER_REQUEST_MAX {
        return Err(invalid(format!("At most {DEVICES_PER_REQUEST_MAX} devices per claim")));
    }
    Ok(())
}

/// Claims a key of each device of local users in `wanted` (user → device
/// → algorithm): a one-time key, else the fallback key (which stays until
/// replaced). Returns user → device → `{"<algorithm>:<key_id>": key}`
/// for the devices that had one. Run it in the request's one write
/// transaction: the single writer makes claims atomic, so two claimers
/// never get the same one-time key.
pub fn claim_local(
    tx: &Connection,
    wanted: &BTreeMap<String, BTreeMap<String, String>>,
) -> Result<Map<String, Value>> {
    let mut claimed = Map::new();
    for (user_id, devices) in wanted {
        let mut user_out = Map::new();
        for (device_id, algorithm) in devices {
            let key = match e2ee::claim_one_time_key(tx, user_id, device_id, algorithm)? {
                Some(k) => Some(k),
                None => e2ee::claim_fallback_key(tx, user_id, device_id, algorithm)?,
            };
            let Some((key_id, text)) = key else { continue };
            if let Some(key) = readable_stored(&text, format_args!("one-time key of {user_id} {device_id}")) {
                user_out.insert(device_id.clone(), json!({ format!("{algorithm}:{key_id}"): key }));
            }
        }
        if !user_out.is_empty() {
            claimed.insert(user_id.clone(), Value::Object(user_out));
        }
    }
    Ok(claimed)
}

/// POST /_matrix/client/v3/keys/claim
///
/// Local devices in one write transaction ([`claim_local`]); devices of
/// other servers claimed of their servers afterwards, all at once
/// (`federation::queries::claim_keys`), within the request's `timeout`.
pub fn claim(app: &App, req: &Request) -> Result<Response> {
    req.user()?;
    let body: ClaimBody = req.json()?;
    check_claim_bounds(&body.one_time_keys)?;
    let (local, remote) = split_local(&app.config.server_name, body.one_time_keys);
    let mut claimed =
        if local.is_empty() { Map::new() } else { app.db.write(|tx| claim_local(tx, &local))? };
    let remote = if remote.is_empty() {
        queries::RemoteClaims::default()
    } else {
        queries::claim_keys(app, &remote, remote_timeout(req, body.timeout))
    };
    claimed.extend(remote.one_time_keys);
    Response::ok(json!({ "failures": remote.failures, "one_time_keys": claimed }))
}

// GET /keys/changes

/// GET /_matrix/client/v3/keys/changes?from=…&to=…
pub fn changes(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let token = |name: &'static str| -> Result<Since> {
        let t = req.query(name).ok_or_else(|| Error::missing_param(format!("{name} is required")))?;
        Since::parse(t).ok_or_else(|| invalid(format!("Invalid {name} token")))
    };
    let (from, to) = (token("from")?, token("to")?);
    let (changed, left) = app.db.read(|tx| {
        let upto = to.pos.min(events::current_pos(tx)?);
        crate::sync::e2ee::device_list_changes(tx, &who.user_id, from.pos, upto)
    })?;
    Response::ok(json!({ "changed": changed, "left": left }))
}

// Cross-signing.

/// A checked cross-signing key: its public key and the text to store.
struct CrossKey {
    public: String,
    public_bytes: [u8; 32],
    json: String,
    value: Value,
}

/// Checks a cross-signing key's shape: the user's, the right usage, exactly
/// one ed25519 key named after itself.
fn check_cross_signing_key(v: &Value, user_id: &str, usage: &str) -> Result<CrossKey> {
    let what = format!("{usage} key");
    let obj = v.as_object().ok_or_else(|| Error::bad_json(format!("The {what} must be an object")))?;
    if obj.get("user_id").and_then(Value::as_str) != Some(user_id) {
        return Err(invalid(format!("The {what} belongs to another user")));
    }
    let usages = obj.get("usage").and_then(Value::as_array);
    if !usages.is_some_and(|u| u.len() == 1 && u[0].as_str() == Some(usage)) {
        return Err(invalid(format!("The {what} must have usage [\"{usage}\"]")));
    }
    let keys = obj
        .get("keys")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid(format!("The {what} needs keys")))?;
    let mut entries = keys.iter();
    let (Some((name, value)), None) = (entries.next(), entries.next()) else {
        return Err(invalid(format!("The {what} must have exactly one key")));
    };
    let public = name.strip_prefix("ed25519:").unwrap_or_default();
    let public_bytes = key32(public)
        .filter(|_| value.as_str() == Some(public))
        .ok_or_else(|| invalid(format!("The {what} must be ed25519:<key> naming its own ed25519 key")))?;
    if obj.get("signatures").is_some_and(|s| !s.is_object()) {
        return Err(invalid(format!("The {what}'s signatures must be an object")));
    }
    signed_part(v, KEY_MAX_BYTES)?;
    Ok(CrossKey {
        public: public.to_owned(),
        public_bytes,
        json: storable(v, KEY_MAX_BYTES)?,
        value: v.clone(),
    })
}

#[derive(Deserialize)]
struct DeviceSigningBody {
    master_key: Option<Value>,
    self_signing_key: Option<Value>,
    user_signing_key: Option<Value>,
    auth: Option<Value>,
}

/// POST /_matrix/client/v3/keys/device_signing/upload
///
/// Needs the password (UIA) unless the user has no master key yet or the
/// request only repeats the keys already stored.
pub fn device_signing_upload(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let body: DeviceSigningBody = req.json()?;
    let me = who.user_id.as_str();
    let parse = |v: &Option<Value>, usage| -> Result<Option<CrossKey>> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(v) => check_cross_signing_key(v, me, usage).map(Some),
        }
    };
    let master = parse(&body.master_key, "master")?;
    let self_signing = parse(&body.self_signing_key, "self_signing")?;
    let user_signing = parse(&body.user_signing_key, "user_signing")?;
    let stored = app.db.read(|tx| {
        Ok((
            e2ee::cross_signing_key(tx, me, "master")?,
            e2ee::cross_signing_key(tx, me, "self_signing")?,
            e2ee::cross_signing_key(tx, me, "user_signing")?,
        ))
    })?;
    if master.is_none() && self_signing.is_none() && user_signing.is_none() {
        // An upload of nothing is how clients (Element) ask whether
        // replacing the keys needs re-authentication, and with which
        // flows: with keys stored it does (401 and the flows), without it
        // does not. Nothing is written either way.
        if stored.0.is_some() {
            let spec = Spec {
                endpoint: "POST /keys/device_signing/upload",
                user_id: Some(me),
                flows: DEVICE_SIGNING_FLOWS,
                params: json!({ "master_key": null, "self_signing_key": null, "user_signing_key": null }),
            };
            let passed = uia::check(app, body.auth.as_ref(), &spec)?;
            app.db.write(|tx| passed.finish(tx))?;
        }
        return Response::ok(json!({}));
    }
    let master_public: [u8; 32] = match (&master, &stored.0) {
        (Some(m), _) => m.public_bytes,
        (None, Some((public, _))) => key32(public).ok_or_else(|| Error::internal("stored master key"))?,
        (None, None) => return Err(Error::missing_param("No master signing key is available")),
    };
    let master_id = format!("ed25519:{}", crate::crypto::b64_encode(&master_public));
    for key in [&self_signing, &user_signing].into_iter().flatten() {
        if !verify_json(&key.value, me, &master_id, &master_public) {
            return Ok(invalid_signature(
                "The self-signing and user-signing keys must be signed by the master key",
            ));
        }
    }
    // Re-auth is needed to replace existing keys, not to set the first ones
    // or to repeat the same upload.
    let same = |new: &Option<CrossKey>, old: &Option<(String, String)>| {
        new.as_ref().is_none_or(|n| old.as_ref().is_some_and(|(_, text)| *text == n.json))
    };
    let needs_auth = stored.0.is_some()
        && !(same(&master, &stored.0) && same(&self_signing, &stored.1) && same(&user_signing, &stored.2));
    let passed = if needs_auth {
        // The session vouches for these keys and no others.
        let text = |k: &Option<CrossKey>| k.as_ref().map(|k| k.json.clone());
        let spec = Spec {
            endpoint: "POST /keys/device_signing/upload",
            user_id: Some(me),
            flows: DEVICE_SIGNING_FLOWS,
            params: json!({
                "master_key": text(&master),
                "self_signing_key": text(&self_signing),
                "user_signing_key": text(&user_signing),
            }),
        };
        Some(uia::check(app, body.auth.as_ref(), &spec)?)
    } else {
        None
    };
    app.db.write(|tx| {
        if let Some(p) = &passed {
            p.finish(tx)?;
        }
        let mut changed = false;
        for (key, usage, old) in [
            (&master, "master", &stored.0),
            (&self_signing, "self_signing", &stored.1),
            (&user_signing, "user_signing", &stored.2),
        ] {
            if let Some(k) = key {
                if old.as_ref().is_none_or(|(_, text)| *text != k.json) {
                    e2ee::set_cross_signing_key(tx, me, usage, &k.public, &k.json)?;
                    changed = true;
                }
            }
        }
        if changed {
            crate::e2ee::device_list_changed(tx, me)?;
            crate::e2ee::federated::signing_key_update(tx, me)?;
        }
        Ok(())
    })?;
    Response::ok(json!({}))
}

/// A signature accepted by `/keys/signatures/upload`, to store.
enum NewSignature {
    /// Of a device's keys: (device, signer user, signer key ID, signature, the stored keys verified).
    Device { device_id: String, signer_key: String, signature: String, keys_text: String },
    /// Of a cross-signing key: (owner, public key, signer user, signer key ID, signature).
    Key { user_id: String, public: String, signer_key: String, signature: String },
}

fn failure(errcode: &str, error: &str) -> Value {
    json!({ "errcode": errcode, "error": error })
}

/// The signature `signatures[user][key_id]` of an object, if a string.
fn signature_of(v: &Value, user: &str, key_id: &str) -> Option<String> {
    v.get("signatures")?.get(user)?.get(key_id)?.as_str().map(str::to_owned)
}

/// Checks one signed object of a signatures upload. Returns what to store,
/// or the failure to report.
fn check_signed_object(
    conn: &Connection,
    me: &str,
    target_user: &str,
    key_id: &str,
    obj: &Value,
) -> Result<std::result::Result<Vec<NewSignature>, Value>> {
    if !obj.is_object() || obj.get("user_id").and_then(Value::as_str) != Some(target_user) {
        return Ok(Err(failure("M_INVALID_PARAM", "The signed object must be an object of the named user")));
    }
    let Ok(signed) = signed_part(obj, DEVICE_KEYS_MAX_BYTES) else {
        return Ok(Err(failure("M_INVALID_PARAM", "The signed object is not valid canonical JSON")));
    };
    let mismatch = || Ok(Err(failure("M_INVALID_PARAM", "The signed object does not match the stored key")));
    let bad_signature = |m: &str| Ok(Err(failure("M_INVALID_SIGNATURE", m)));
    if target_user == me {
        if let Some(text) = e2ee::device_keys(conn, me, key_id)? {
            // A device of mine, signed by my self-signing key.
            let stored = parse_stored(&text)?;
            if signed_part(&stored, usize::MAX)? != signed {
                return mismatch();
            }
            let Some((ssk, _)) = e2ee::cross_signing_key(conn, me, "self_signing")? else {
                return bad_signature("No self-signing key to sign devices with");
            };
            let signer_key = format!("ed25519:{ssk}");
            let public = key32(&ssk).ok_or_else(|| Error::internal("stored self-signing key"))?;
            let Some(signature) = signature_of(obj, me, &signer_key) else {
                return bad_signature("No signature by the self-signing key");
            };
            if !verify_json(obj, me, &signer_key, &public) {
                return bad_signature("The self-signing key's signature does not verify");
            }
            return Ok(Ok(vec![NewSignature::Device {
                device_id: key_id.to_owned(),
                signer_key,
                signature,
                keys_text: text,
            }]));
        }
        let Some((master, text)) = e2ee::cross_signing_key(conn, me, "master")? else {
            return Ok(Err(failure("M_NOT_FOUND", "No such device or key")));
        };
        if master != key_id {
            return Ok(Err(failure("M_NOT_FOUND", "No such device or key")));
        }
        // My master key, signed by my devices.
        let stored = parse_stored(&text)?;
        if signed_part(&stored, usize::MAX)? != signed {
            return mismatch();
        }
        let mut out = Vec::new();
        let sigs = obj.get("signatures").and_then(|s| s.get(me)).and_then(Value::as_object);
        for (signer_key, signature) in sigs.into_iter().flatten() {
            if signature_of(&stored, me, signer_key).is_some() {
                continue;
            }
            let device_public = match signer_key.strip_prefix("ed25519:") {
                Some(device_id) => stored_ed25519(conn, me, device_id)?,
                None => None,
            };
            let Some(public) = device_public else {
                return bad_signature("The master key may only be signed by the user's devices here");
            };
            if !verify_json(obj, me, signer_key, &public) {
                return bad_signature("A device's signature of the master key does not verify");
            }
            out.push(NewSignature::Key {
                user_id: me.to_owned(),
                public: master.clone(),
                signer_key: signer_key.clone(),
                signature: signature.as_str().unwrap_or_default().to_owned(),
            });
        }
        return Ok(Ok(out));
    }
    // Another user's master key, signed by my user-signing key.
    let Some((master, text)) = e2ee::cross_signing_key(conn, target_user, "master")? else {
        return Ok(Err(failure("M_NOT_FOUND", "The user has no master key")));
    };
    if master != key_id {
        return Ok(Err(failure("M_NOT_FOUND", "No such key")));
    }
    if signed_part(&parse_stored(&text)?, usize::MAX)? != signed {
        return mismatch();
    }
    let Some((usk, _)) = e2ee::cross_signing_key(conn, me, "user_signing")? else {
        return bad_signature("No user-signing key to sign other users with");
    };
    let signer_key = format!("ed25519:{usk}");
    let public = key32(&usk).ok_or_else(|| Error::internal("stored user-signing key"))?;
    let Some(signature) = signature_of(obj, me, &signer_key) else {
        return bad_signature("No signature by the user-signing key");
    };
    if !verify_json(obj, me, &signer_key, &public) {
        return bad_signature("The user-signing key's signature does not verify");
    }
    Ok(Ok(vec![NewSignature::Key { user_id: target_user.to_owned(), public: master, signer_key, signature }]))
}

/// POST /_matrix/client/v3/keys/signatures/upload
pub fn signatures_upload(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let body: BTreeMap<String, BTreeMap<String, Value>> = req.json()?;
    if body.values().map(BTreeMap::len).sum::<usize>() > SIGNATURES_PER_UPLOAD_MAX {
        return Err(invalid(format!("At most {SIGNATURES_PER_UPLOAD_MAX} signed objects per upload")));
    }
    let me = who.user_id.as_str();
    // Checked on a read snapshot (ed25519 costs CPU), stored in one write.
    let (accepted, failures) = app.db.read(|tx| {
        let mut accepted = Vec::new();
        let mut failures: Map<String, Value> = Map::new();
        for (user_id, objects) in &body {
            for (key_id, obj) in objects {
                match check_signed_object(tx, me, user_id, key_id, obj)? {
                    Ok(sigs) => accepted.extend(sigs),
                    Err(f) => {
                        let entry = failures.entry(user_id.clone()).or_insert_with(|| json!({}));
                        entry[key_id] = f;
                    }
                }
            }
        }
        Ok((accepted, failures))
    })?;
    if !accepted.is_empty() {
        app.db.write(|tx| {
            for s in &accepted {
                match s {
                    NewSignature::Device { device_id, signer_key, signature, keys_text } => {
                        // Keys replaced meanwhile: the signature covers the old ones.
                        if e2ee::device_keys(tx, me, device_id)?.as_deref() == Some(keys_text.as_str()) {
                            e2ee::add_device_signature(tx, me, device_id, me, signer_key, signature)?;
                        }
                    }
                    NewSignature::Key { user_id, public, signer_key, signature } => {
                        e2ee::add_key_signature(tx, user_id, public, me, signer_key, signature)?;
                    }
                }
            }
            // Signatures of my keys change what everyone sees of me; my
            // signatures of others are seen by me only.
            crate::e2ee::device_list_changed(tx, me)
        })?;
    }
    Response::ok(json!({ "failures": failures }))
}
