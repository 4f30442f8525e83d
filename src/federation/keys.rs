//! Server keys (the Server-Server API, "Retrieving server keys"): our own
//! key document, other servers' keys fetched, cached and checked, and the
//! notary's answers.
//!
//! Other servers' keys are cached in `remote_server_keys`, one row per
//! key with the document it came in. A key that is unknown, or not valid
//! for the moment it is needed at, is fetched: from its origin first
//! (`GET /_matrix/key/v2/server`, which must be signed by every key it
//! lists), then from each of `trusted_key_servers` (`POST
//! /_matrix/key/v2/query`; the answer must be signed by the origin and by
//! the notary). One fetch per server runs at a time and at most
//! `memo::KEY_FETCHES_MAX` at once; a server that did not answer is not
//! asked again for a while (`memo`'s negative cache).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::app::App;
use crate::crypto::{b64_decode, sign::verify_json, sign::ServerKey};
use crate::error::{Error, ErrorKind, Result};
use crate::log;
use crate::storage::{self, federation as fed_store, federation::RemoteKey, server_keys};

/// How long other servers may cache our key document.
pub const OWN_VALIDITY_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// Room versions that enforce key validity (v5 on) use a key's
/// `valid_until_ts` only up to this long after it was fetched.
pub const VALIDITY_CAP_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// The most bytes of a key document read.
const KEY_ANSWER_MAX: u64 = 256 * 1024;
/// Servers one notary query may ask about.
pub const QUERY_SERVERS_MAX: usize = 100;
/// Of those, how many whose keys are not held may be fetched for it (the
/// others are answered with what is held): one query cannot keep a
/// worker busy fetching from a hundred servers.
pub const QUERY_FETCHES_MAX: usize = 8;

/// Our key document: the current key in `verify_keys`, retired ones in
/// `old_verify_keys` with when they expired, valid for
/// [`OWN_VALIDITY_MS`] from now (so it is always renewed well before it
/// runs out), signed by the current key.
pub fn own_document(app: &App) -> Result<Value> {
    let key = &app.server_key;
    let retired = app.db.read(|tx| server_keys::expired(tx))?;
    let mut old = serde_json::Map::new();
    for (key_id, seed, expired_ts) in retired {
        // Rotated while this process runs: it signs with it until restarted.
        if key_id == key.key_id() {
            continue;
        }
        let Ok(seed) = <[u8; 32]>::try_from(seed.as_slice()) else { continue };
        let public = ServerKey::from_seed(&key_id, &seed).public_key_b64();
        old.insert(key_id, json!({ "key": public, "expired_ts": expired_ts }));
    }
    let mut doc = json!({
        "server_name": app.config.server_name,
        "verify_keys": { key.key_id(): { "key": key.public_key_b64() } },
        "old_verify_keys": old,
        "valid_until_ts": storage::now_ms() + OWN_VALIDITY_MS,
    });
    key.sign_json(&app.config.server_name, &mut doc)
        .map_err(|e| Error::internal(format!("signing the key document: {e}")))?;
    Ok(doc)
}

/// Whether a cached key may verify something signed at `at_ts`. A key
/// of `old_verify_keys` verifies only what was signed before it expired.
/// `enforce_validity` (room versions 5 on, and request authentication):
/// the key must be valid at `at_ts`, counting its `valid_until_ts` at
/// most [`VALIDITY_CAP_MS`] past when it was fetched.
pub fn usable_at(k: &RemoteKey, at_ts: i64, enforce_validity: bool) -> bool {
    if let Some(expired) = k.expired_ts {
        return at_ts < expired;
    }
    !enforce_validity || at_ts <= k.valid_until_ts.min(k.fetched_ts.saturating_add(VALIDITY_CAP_MS))
}

/// The public key `server` signed with under `key_id`, valid at `at_ts`
/// (see [`usable_at`]), fetched when not cached or not valid then.
pub fn verify_key(
    app: &App,
    server: &str,
    key_id: &str,
    at_ts: i64,
    enforce_validity: bool,
) -> Result<[u8; 32]> {
    let usable =
        |k: &Option<RemoteKey>| k.as_ref().filter(|k| usable_at(k, at_ts, enforce_validity)).cloned();
    if server == app.config.server_name {
        return own_key(app, key_id);
    }
    let read = || -> Result<Option<RemoteKey>> {
        let key = app.db.read(|tx| fed_store::remote_key_by_id(tx, server, key_id))?;
        if let Some(k) = &key {
            app.fed_memo.remember_key(k);
        }
        Ok(key)
    };
    let mut cached = usable(&app.fed_memo.remembered_key(server, key_id));
    if cached.is_none() {
        cached = usable(&read()?);
    }
    let key = match cached {
        Some(k) => k,
        None => {
            fetch(app, server, &[key_id], at_ts);
            usable(&read()?).ok_or_else(|| {
                Error::new(
                    ErrorKind::Unauthorized,
                    format!("no valid key {key_id} of {server} could be found"),
                )
            })?
        }
    };
    decode_key(&key.public_key).ok_or_else(|| {
        Error::new(ErrorKind::Unauthorized, format!("the key {key_id} of {server} is malformed"))
    })
}

/// One of our own keys, current or retired.
fn own_key(app: &App, key_id: &str) -> Result<[u8; 32]> {
    if key_id == app.server_key.key_id() {
        return Ok(app.server_key.public_key());
    }
    let retired = app.db.read(|tx| server_keys::expired(tx))?;
    retired
        .into_iter()
        .find(|(id, _, _)| id == key_id)
        .and_then(|(id, seed, _)| {
            <[u8; 32]>::try_from(seed.as_slice()).ok().map(|s| ServerKey::from_seed(&id, &s))
        })
        .map(|k| k.public_key())
        .ok_or_else(|| Error::new(ErrorKind::Unauthorized, format!("{key_id} is not a key of this server")))
}

fn decode_key(b64: &str) -> Option<[u8; 32]> {
    b64_decode(b64).and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
}

/// Fetches `server`'s keys (those in `key_ids` at least) valid until
/// `min_valid_until` if it can: from the origin, then the notaries.
/// What was found is stored; failures are logged and remembered.
pub fn fetch(app: &App, server: &str, key_ids: &[&str], min_valid_until: i64) {
    if !app.federation.allowed(server) || server == app.config.server_name {
        return;
    }
    // Someone else may be fetching the same keys: wait for them, then
    // look again before asking anyone.
    let Some(_slot) = app.fed_memo.fetch_slot(server) else { return };
    let have = |app: &App| -> bool {
        app.db
            .read(|tx| fed_store::remote_keys(tx, server))
            .map(|keys| {
                key_ids
                    .iter()
                    .all(|id| keys.iter().any(|k| k.key_id == *id && usable_at(k, min_valid_until, true)))
            })
            .unwrap_or(false)
    };
    if !key_ids.is_empty() && have(app) {
        return;
    }
    if !app.fed_memo.failing(server) {
        match fetch_from_origin(app, server) {
            Ok(()) => {
                app.fed_memo.answered(server);
                if key_ids.is_empty() || have(app) {
                    return;
                }
            }
            Err(e) => {
                app.fed_memo.failed(server);
                log::info(format_args!("federation: keys of {server} from itself: {}", e.message));
            }
        }
    }
    for notary in &app.config.trusted_key_servers {
        if notary == server {
            continue;
        }
        match fetch_from_notary(app, notary, server, key_ids, min_valid_until) {
            Ok(()) if key_ids.is_empty() || have(app) => return,
            Ok(()) => {}
            Err(e) => log::info(format_args!("federation: keys of {server} from {notary}: {}", e.message)),
        }
    }
}

fn fetch_from_origin(app: &App, server: &str) -> Result<()> {
    let answer = app.federation.request(
        crate::outbound::client::Method::Get,
        server,
        "/_matrix/key/v2/server",
        None,
        KEY_ANSWER_MAX,
    )?;
    let doc = crate::federation::client::json_answer(server, &answer)?;
    let keys = check_document(&doc, server, None)?;
    store(app, &doc, keys)
}

fn fetch_from_notary(
    app: &App,
    notary: &str,
    server: &str,
    key_ids: &[&str],
    min_valid_until: i64,
) -> Result<()> {
    let criteria: serde_json::Map<String, Value> = key_ids
        .iter()
        .map(|id| (id.to_string(), json!({ "minimum_valid_until_ts": min_valid_until })))
        .collect();
    let body = json!({ "server_keys": { server: criteria } });
    let answer = app.federation.post(notary, "/_matrix/key/v2/query", &body)?;
    // The notary's own key, from the notary itself, signs its answer.
    let docs = answer.get("server_keys").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut found = false;
    for doc in docs.iter().take(QUERY_SERVERS_MAX) {
        if doc.get("server_name").and_then(Value::as_str) != Some(server) {
            continue;
        }
        let notary_sigs: Vec<String> = doc
            .get("signatures")
            .and_then(|s| s.get(notary))
            .and_then(Value::as_object)
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        let signed_by_notary = notary_sigs.iter().any(|key_id| {
            verify_key(app, notary, key_id, storage::now_ms(), true)
                .is_ok_and(|pk| verify_json(doc, notary, key_id, &pk))
        });
        if !signed_by_notary {
            return Err(Error::new(
                ErrorKind::BadGateway,
                format!("{notary}'s answer for {server} is not signed by it"),
            ));
        }
        // Kept without the notary's signature: what the origin signed.
        let mut origin_doc = doc.clone();
        if let Some(sigs) = origin_doc.get_mut("signatures").and_then(Value::as_object_mut) {
            sigs.retain(|name, _| name == server);
        }
        let keys = check_document(&origin_doc, server, None)?;
        store(app, &origin_doc, keys)?;
        found = true;
    }
    if !found {
        return Err(Error::new(ErrorKind::BadGateway, format!("{notary} holds no keys of {server}")));
    }
    Ok(())
}

/// The keys a key document lists, once it is checked: it names `server`,
/// every key in `verify_keys` signs it, `valid_until_ts` is an integer.
/// `fetched_ts` defaults to now.
pub fn check_document(doc: &Value, server: &str, fetched_ts: Option<i64>) -> Result<Vec<RemoteKey>> {
    let bad = |why: &str| Error::new(ErrorKind::BadGateway, format!("the key document of {server} {why}"));
    if doc.get("server_name").and_then(Value::as_str) != Some(server) {
        return Err(bad("names another server"));
    }
    let valid_until =
        doc.get("valid_until_ts").and_then(Value::as_i64).ok_or_else(|| bad("has no valid_until_ts"))?;
    let verify =
        doc.get("verify_keys").and_then(Value::as_object).ok_or_else(|| bad("has no verify_keys"))?;
    if verify.is_empty() {
        return Err(bad("lists no key"));
    }
    let fetched_ts = fetched_ts.unwrap_or_else(storage::now_ms);
    let mut keys = Vec::new();
    for (key_id, v) in verify {
        let b64 = v.get("key").and_then(Value::as_str).ok_or_else(|| bad("has a key without `key`"))?;
        let public = decode_key(b64).ok_or_else(|| bad("has a malformed key"))?;
        if !verify_json(doc, server, key_id, &public) {
            return Err(bad(&format!("is not signed by its key {key_id}")));
        }
        keys.push(RemoteKey {
            server_name: server.to_owned(),
            key_id: key_id.clone(),
            public_key: b64.to_owned(),
            valid_until_ts: valid_until,
            expired_ts: None,
            fetched_ts,
        });
    }
    if let Some(old) = doc.get("old_verify_keys").and_then(Value::as_object) {
        for (key_id, v) in old {
            let (Some(b64), Some(expired)) =
                (v.get("key").and_then(Value::as_str), v.get("expired_ts").and_then(Value::as_i64))
            else {
                continue;
            };
            if decode_key(b64).is_none() || verify.contains_key(key_id) {
                continue;
            }
            keys.push(RemoteKey {
                server_name: server.to_owned(),
                key_id: key_id.clone(),
                public_key: b64.to_owned(),
                valid_until_ts: valid_until.min(expired),
                expired_ts: Some(expired),
                fetched_ts,
            });
        }
    }
    Ok(keys)
}

fn store(app: &App, doc: &Value, keys: Vec<RemoteKey>) -> Result<()> {
    let text = serde_json::to_string(doc).map_err(|e| Error::internal(e.to_string()))?;
    app.db.write(|tx| {
        for k in &keys {
            fed_store::put_remote_key(tx, k, &text)?;
        }
        Ok(())
    })
}

/// The notary's answer for `server`: the key documents held for it
/// (fetched first when none is valid until `min_valid_until`), each with
/// the origin's signatures kept and ours added. Our own server: our
/// document.
pub fn notary_documents(
    app: &App,
    server: &str,
    min_valid_until: i64,
    may_fetch: bool,
) -> Result<Vec<Value>> {
    if server == app.config.server_name {
        return Ok(vec![own_document(app)?]);
    }
    let held = |app: &App| -> Result<Vec<Value>> {
        let docs = app.db.read(|tx| fed_store::remote_key_docs(tx, server))?;
        Ok(docs.iter().filter_map(|d| serde_json::from_str::<Value>(d).ok()).collect())
    };
    let mut docs = held(app)?;
    let fresh_enough = |docs: &[Value]| {
        docs.iter().any(|d| d.get("valid_until_ts").and_then(Value::as_i64) >= Some(min_valid_until))
    };
    if !fresh_enough(&docs) && may_fetch {
        fetch(app, server, &[], min_valid_until);
        docs = held(app)?;
    }
    for d in &mut docs {
        app.server_key
            .sign_json(&app.config.server_name, d)
            .map_err(|e| Error::internal(format!("signing a key document: {e}")))?;
    }
    Ok(docs)
}

/// Parses a notary query body: server → key IDs → minimum validity.
pub fn parse_query(body: &Value) -> Result<BTreeMap<String, i64>> {
    let servers = body
        .get("server_keys")
        .and_then(Value::as_object)
        .ok_or_else(|| Error::bad_json("server_keys must be an object"))?;
    if servers.len() > QUERY_SERVERS_MAX {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!("at most {QUERY_SERVERS_MAX} servers per query"),
        ));
    }
    let mut out = BTreeMap::new();
    for (server, criteria) in servers {
        let criteria = criteria
            .as_object()
            .ok_or_else(|| Error::bad_json("each server's criteria must be an object"))?;
        let mut min = 0i64;
        for c in criteria.values() {
            if let Some(t) = c.get("minimum_valid_until_ts") {
                min = min.max(
                    t.as_i64().ok_or_else(|| Error::bad_json("minimum_valid_until_ts must be an integer"))?,
                );
            }
        }
        out.insert(server.clone(), min);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(valid_until: i64, fetched: i64, expired: Option<i64>) -> RemoteKey {
        RemoteKey {
            server_name: "b".into(),
            key_id: "ed25519:1".into(),
            public_key: String::new(),
            valid_until_ts: valid_until,
            expired_ts: expired,
            fetched_ts: fetched,
        }
    }

    #[test]
    fn key_validity_rules() {
        let day = 86_400_000;
        // Within its validity.
        assert!(usable_at(&key(10 * day, 0, None), 5 * day, true));
        // Past it: only where validity is not enforced (room v1–v4).
        assert!(!usable_at(&key(10 * day, 0, None), 11 * day, true));
        assert!(usable_at(&key(10 * day, 0, None), 11 * day, false));
        // valid_until_ts counts for at most 7 days after fetching.
        let k = key(365 * day, 0, None);
        assert!(usable_at(&k, 7 * day, true));
        assert!(!usable_at(&k, 7 * day + 1, true));
        // An old key verifies only what was signed before it expired.
        let old = key(0, 0, Some(3 * day));
        assert!(usable_at(&old, 3 * day - 1, true));
        assert!(!usable_at(&old, 3 * day, true));
        assert!(!usable_at(&old, 3 * day, false));
    }

    #[test]
    fn a_key_document_must_be_signed_by_its_keys() {
        let k = ServerKey::from_seed("ed25519:a", &[3; 32]);
        let mut doc = json!({
            "server_name": "b.example",
            "verify_keys": { "ed25519:a": { "key": k.public_key_b64() } },
            "old_verify_keys": { "ed25519:old": { "key": k.public_key_b64(), "expired_ts": 5 } },
            "valid_until_ts": 1000,
        });
        k.sign_json("b.example", &mut doc).unwrap();
        let keys = check_document(&doc, "b.example", Some(7)).expect("valid");
        assert_eq!(keys.len(), 2);
        assert_eq!((keys[0].valid_until_ts, keys[0].expired_ts, keys[0].fetched_ts), (1000, None, 7));
        assert_eq!((keys[1].key_id.as_str(), keys[1].expired_ts), ("ed25519:old", Some(5)));
        assert!(check_document(&doc, "c.example", None).is_err(), "another server's name");
        let mut forged = doc.clone();
        forged["valid_until_ts"] = json!(99999);
        assert!(check_document(&forged, "b.example", None).is_err(), "changed after signing");
        let mut unsigned = doc.clone();
        unsigned.as_object_mut().unwrap().remove("signatures");
        assert!(check_document(&unsigned, "b.example", None).is_err());
        // A second key that did not sign.
        let other = ServerKey::from_seed("ed25519:b", &[4; 32]);
        let mut two = doc.clone();
        two["verify_keys"]["ed25519:b"] = json!({ "key": other.public_key_b64() });
        two.as_object_mut().unwrap().remove("signatures");
        k.sign_json("b.example", &mut two).unwrap();
        assert!(check_document(&two, "b.example", None).is_err());
    }

    #[test]
    fn notary_queries_parse() {
        let q = json!({ "server_keys": { "a": { "ed25519:1": { "minimum_valid_until_ts": 5 } }, "b": {} } });
        let parsed = parse_query(&q).unwrap();
        assert_eq!(parsed.get("a"), Some(&5));
        assert_eq!(parsed.get("b"), Some(&0));
        assert!(parse_query(&json!({})).is_err());
        assert!(parse_query(&json!({ "server_keys": { "a": { "k": { "minimum_valid_until_ts": "x" } } } }))
            .is_err());
    }
}
