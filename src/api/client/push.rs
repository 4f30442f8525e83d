//! Push rules, pushers and the notification list: `/pushrules/...`,
//! `/pushers`, `/pushers/set`, `/notifications`.
//!
//! Rule changes are one write transaction each, which also stores the
//! whole new ruleset as the global account data `m.push_rules` at a new
//! stream position, so the user's other devices get it in `/sync`.
//! Evaluation and delivery live in `crate::push`.

use serde_json::{json, Map, Value};

use crate::api::{Request, Response};
use crate::app::App;
use crate::core::ids;
use crate::error::{Error, ErrorKind, Result};
use crate::push::rules::{self, Kind, Rule, Stored};
use crate::push::sender;
use crate::rooms::format::{client_event, Viewer};
use crate::storage::{self, account_data, events, push};

/// Longest pushkey, in bytes (the spec's limit).
pub const PUSHKEY_MAX_BYTES: usize = 512;
/// Longest app ID, in characters (the spec's limit).
pub const APP_ID_MAX_CHARS: usize = 64;
/// Longest display name, language or profile tag of a pusher, in bytes.
pub const PUSHER_FIELD_MAX_BYTES: usize = 512;
/// Largest `data` object of a pusher, serialised, in bytes.
pub const PUSHER_DATA_MAX_BYTES: usize = 4096;
/// Most pushers one account keeps.
pub const PUSHERS_PER_USER_MAX: i64 = 32;
/// Notifications per page when the client does not say...
pub const NOTIFICATIONS_LIMIT_DEFAULT: usize = 20;
/// ...and at most.
pub const NOTIFICATIONS_LIMIT_MAX: usize = 100;

// ------------------------------------------------------------------ rules

/// Stores the ruleset as `m.push_rules` account data at a new position.
fn announce(c: &rusqlite::Connection, user_id: &str) -> Result<i64> {
    let content = json!({ "global": rules::ruleset_json(&crate::push::ruleset_of(c, user_id)?) });
    let pos = events::next_pos(c)?;
    account_data::put(c, user_id, "", "m.push_rules", &content.to_string(), pos)?;
    Ok(pos)
}

/// Runs a rule change and announces the new ruleset.
fn change<T>(app: &App, user_id: &str, f: impl FnOnce(&rusqlite::Connection) -> Result<T>) -> Result<T> {
    app.db.write(|c| {
        let out = f(c)?;
        let pos = announce(c, user_id)?;
        c.changed(pos, &[], &[user_id]);
        Ok(out)
    })
}

fn kind_param(s: &str) -> Result<Kind> {
    Kind::parse(s).ok_or_else(|| Error::invalid_param(format!("Unknown push rule kind {s:?}")))
}

fn rule_not_found() -> Error {
    Error::not_found("The push rule was not found.")
}

fn find(rules: &[Rule], kind: Kind, rule_id: &str) -> Result<Rule> {
    rules.iter().find(|r| r.kind == kind && r.rule_id == rule_id).cloned().ok_or_else(rule_not_found)
}

/// GET /_matrix/client/v3/pushrules/
pub fn get_all(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let rules = app.db.read(|c| crate::push::ruleset_of(c, &who.user_id))?;
    Response::ok(json!({ "global": rules::ruleset_json(&rules) }))
}

/// GET /_matrix/client/v3/pushrules/{scope} (`global`; empty is the same
/// as `/pushrules/`)
pub fn get_scope(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let rules = app.db.read(|c| crate::push::ruleset_of(c, &who.user_id))?;
    match req.param("scope") {
        "" => Response::ok(json!({ "global": rules::ruleset_json(&rules) })),
        "global" => Response::ok(rules::ruleset_json(&rules)),
        other => Err(Error::not_found(format!("Unknown push rule scope {other:?}"))),
    }
}

/// GET /_matrix/client/v3/pushrules/global/{kind} (empty: the ruleset)
pub fn get_kind(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let rules = app.db.read(|c| crate::push::ruleset_of(c, &who.user_id))?;
    let all = rules::ruleset_json(&rules);
    match req.param("kind") {
        "" => Response::ok(all),
        k => {
            let kind =
                Kind::parse(k).ok_or_else(|| Error::not_found(format!("Unknown push rule kind {k:?}")))?;
            Response::ok(all[kind.as_str()].clone())
        }
    }
}

/// GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}
pub fn get_rule(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let kind = kind_param(req.param("kind"))?;
    let rules = app.db.read(|c| crate::push::ruleset_of(c, &who.user_id))?;
    Response::ok(find(&rules, kind, req.param("ruleId"))?.to_json())
}

/// Checks the ID of a rule a client creates.
fn check_rule_id(kind: Kind, rule_id: &str) -> Result<()> {
    if rule_id.starts_with('.') {
        return Err(Error::invalid_param("Rule IDs starting with '.' are reserved for server-default rules"));
    }
    if rule_id.contains(['/', '\\']) || rule_id.len() > rules::RULE_STRING_MAX_BYTES {
        return Err(Error::invalid_param("Rule IDs may not contain '/' or '\\' and are at most 1024 bytes"));
    }
    match kind {
        Kind::Room if !ids::is_valid_room_id(rule_id) => {
            Err(Error::invalid_param("A room rule's ID is the ID of its room"))
        }
        Kind::Sender if ids::parse_user_id(rule_id).is_none() => {
            Err(Error::invalid_param("A sender rule's ID is the ID of its user"))
        }
        _ => Ok(()),
    }
}

/// PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}
///
/// Creates or replaces one of the user's rules. `before`/`after` name
/// another user rule of the same kind to place it next to; a new rule
/// without them becomes the most important of its kind, a replaced one
/// keeps its place. New rules are enabled; a replaced one keeps its state.
pub fn put_rule(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let kind = kind_param(req.param("kind"))?;
    let rule_id = req.param("ruleId").to_owned();
    check_rule_id(kind, &rule_id)?;
    let body = req.json_value()?;
    let Value::Object(body) = body else { return Err(Error::bad_json("The body must be a JSON object")) };
    let actions = match body.get("actions") {
        None | Some(Value::Null) => return Err(Error::missing_param("actions is required")),
        Some(a) => rules::clean_actions(a).map_err(Error::invalid_param)?,
    };
    let conditions = match body.get("conditions") {
        Some(c) if kind.has_conditions() && !c.is_null() => {
            rules::check_conditions(c).map_err(Error::invalid_param)?
        }
        _ => Vec::new(),
    };
    let pattern = match (kind, body.get("pattern")) {
        (Kind::Content, Some(Value::String(p))) if p.len() <= rules::RULE_STRING_MAX_BYTES => Some(p.clone()),
        (Kind::Content, Some(Value::String(_))) => {
            return Err(Error::invalid_param("pattern is at most 1024 bytes"))
        }
        (Kind::Content, None | Some(Value::Null)) => {
            return Err(Error::missing_param("Content rules need a pattern"))
        }
        (Kind::Content, Some(_)) => return Err(Error::bad_json("pattern must be a string")),
        _ => None,
    };
    let before = req.query("before").map(str::to_owned);
    let after = req.query("after").map(str::to_owned);
    change(app, &who.user_id, |c| {
        let stored = push::rules(c, &who.user_id)?;
        let mut own: Vec<Stored> =
            stored.iter().filter(|s| !s.is_default && s.kind == kind).cloned().collect();
        let old = own.iter().position(|s| s.rule_id == rule_id);
        if old.is_none() && stored.iter().filter(|s| !s.is_default).count() >= rules::USER_RULES_MAX {
            return Err(Error::invalid_param(format!(
                "An account keeps at most {} push rules",
                rules::USER_RULES_MAX
            )));
        }
        let enabled = old.is_none_or(|i| own[i].enabled);
        if let Some(i) = old {
            own.remove(i);
        }
        let anchor = |id: &str| {
            own.iter()
                .position(|s| s.rule_id == id)
                .ok_or_else(|| Error::new(ErrorKind::Unknown, format!("before/after rule not found: {id}")))
        };
        let at = match (&before, &after, old) {
            (Some(b), _, _) => anchor(b)?,
            (None, Some(a), _) => anchor(a)? + 1,
            (None, None, Some(i)) => i.min(own.len()),
            (None, None, None) => 0,
        };
        own.insert(
            at,
            Stored {
                kind,
                rule_id: rule_id.clone(),
                is_default: false,
                enabled,
                actions: Some(actions),
                conditions,
                pattern,
            },
        );
        let n = own.len() as i64;
        for (i, s) in own.iter().enumerate() {
            push::put_rule(c, &who.user_id, s, n - i as i64)?;
        }
        Ok(())
    })?;
    Response::ok(json!({}))
}

/// DELETE /_matrix/client/v3/pushrules/global/{kind}/{ruleId}
pub fn delete_rule(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let kind = kind_param(req.param("kind"))?;
    let rule_id = req.param("ruleId");
    if rule_id.starts_with('.') {
        let known = rules::default_templates().iter().any(|r| r.kind == kind && r.rule_id == rule_id);
        return Err(if known {
            Error::invalid_param("Server-default rules cannot be deleted; disable them instead")
        } else {
            rule_not_found()
        });
    }
    change(app, &who.user_id, |c| {
        if push::delete_rule(c, &who.user_id, kind, rule_id)? {
            Ok(())
        } else {
            Err(rule_not_found())
        }
    })?;
    Response::ok(json!({}))
}

/// Changes a rule's `enabled` or `actions`: for a default rule, the
/// account's change to it; for its own rule, the rule.
fn set_field(app: &App, req: &Request, apply: impl FnOnce(&mut Rule)) -> Result<Response> {
    let who = req.user()?;
    let kind = kind_param(req.param("kind"))?;
    let rule_id = req.param("ruleId");
    change(app, &who.user_id, |c| {
        let mut rule = find(&crate::push::ruleset_of(c, &who.user_id)?, kind, rule_id)?;
        apply(&mut rule);
        if rule.default {
            let template =
                rules::default_templates().into_iter().find(|t| t.kind == kind && t.rule_id == rule_id);
            let actions = match template {
                Some(t) if t.actions == rule.actions => None,
                _ => Some(rule.actions.clone()),
            };
            let change = Stored {
                kind,
                rule_id: rule_id.to_owned(),
                is_default: true,
                enabled: rule.enabled,
                actions,
                conditions: Vec::new(),
                pattern: None,
            };
            push::put_rule(c, &who.user_id, &change, 0)
        } else if push::update_own_rule(c, &who.user_id, kind, rule_id, rule.enabled, &rule.actions)? {
            Ok(())
        } else {
            Err(rule_not_found())
        }
    })?;
    Response::ok(json!({}))
}

/// GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled
pub fn get_enabled(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let kind = kind_param(req.param("kind"))?;
    let rules = app.db.read(|c| crate::push::ruleset_of(c, &who.user_id))?;
    Response::ok(json!({ "enabled": find(&rules, kind, req.param("ruleId"))?.enabled }))
}

/// PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled
pub fn put_enabled(app: &App, req: &Request) -> Result<Response> {
    let body = req.json_value()?;
    let enabled = match body.get("enabled") {
        Some(Value::Bool(b)) => *b,
        None | Some(Value::Null) => return Err(Error::missing_param("enabled is required")),
        Some(_) => return Err(Error::bad_json("enabled must be a boolean")),
    };
    set_field(app, req, |r| r.enabled = enabled)
}

/// GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions
pub fn get_actions(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let kind = kind_param(req.param("kind"))?;
    let rules = app.db.read(|c| crate::push::ruleset_of(c, &who.user_id))?;
    Response::ok(json!({ "actions": find(&rules, kind, req.param("ruleId"))?.actions }))
}

/// PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions
pub fn put_actions(app: &App, req: &Request) -> Result<Response> {
    let body = req.json_value()?;
    let actions = match body.get("actions") {
        None | Some(Value::Null) => return Err(Error::missing_param("actions is required")),
        Some(a) => rules::clean_actions(a).map_err(Error::invalid_param)?,
    };
    set_field(app, req, |r| r.actions = actions)
}

// ---------------------------------------------------------------- pushers

fn pusher_json(p: &push::Pusher) -> Value {
    let data: Value = serde_json::from_str(&p.data).unwrap_or_else(|_| json!({}));
    let mut v = json!({
        "pushkey": p.pushkey,
        "kind": p.kind,
        "app_id": p.app_id,
        "app_display_name": p.app_display_name,
        "device_display_name": p.device_display_name,
        "lang": p.lang,
        "data": data,
    });
    if let Some(tag) = &p.profile_tag {
        v["profile_tag"] = json!(tag);
    }
    v
}

/// GET /_matrix/client/v3/pushers
pub fn get_pushers(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let list = app.db.read(|c| push::pushers(c, &who.user_id))?;
    Response::ok(json!({ "pushers": list.iter().map(pusher_json).collect::<Vec<_>>() }))
}

/// A bounded string field of the body; `None` if absent.
fn string_field(body: &Map<String, Value>, key: &str, max: usize) -> Result<Option<String>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= max => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(Error::invalid_param(format!("{key} is at most {max} bytes"))),
        Some(_) => Err(Error::bad_json(format!("{key} must be a string"))),
    }
}

/// POST /_matrix/client/v3/pushers/set
///
/// `kind: null` deletes the user's pusher with this app ID and pushkey.
/// Otherwise an `http` pusher is created or replaced; its `data.url` must
/// be an HTTPS URL ending in `/_matrix/push/v1/notify` at a public
/// address (see `push::sender`). Unless `append` is true, other accounts'
/// pushers with the same app ID and pushkey are removed.
pub fn set_pusher(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let body = req.json_value()?;
    let Value::Object(body) = body else { return Err(Error::bad_json("The body must be a JSON object")) };
    let app_id = string_field(&body, "app_id", APP_ID_MAX_CHARS * 4)?;
    let pushkey = string_field(&body, "pushkey", PUSHKEY_MAX_BYTES)?;
    let kind = match body.get("kind") {
        Some(Value::Null) => None,
        Some(Value::String(k)) => Some(k.clone()),
        None => return Err(Error::missing_param("Missing parameters: kind")),
        Some(_) => return Err(Error::bad_json("kind must be a string or null")),
    };
    let (Some(app_id), Some(pushkey)) = (app_id, pushkey) else {
        return Err(Error::missing_param("Missing parameters: app_id, pushkey"));
    };
    if app_id.is_empty() || app_id.chars().count() > APP_ID_MAX_CHARS {
        return Err(Error::invalid_param(format!("app_id is 1 to {APP_ID_MAX_CHARS} characters")));
    }
    if pushkey.is_empty() {
        return Err(Error::invalid_param("pushkey must not be empty"));
    }
    let Some(kind) = kind else {
        app.db.write(|c| push::delete_pusher(c, &who.user_id, &app_id, &pushkey))?;
        return Response::ok(json!({}));
    };
    if kind != "http" {
        return Err(Error::invalid_param(format!("Pushers of kind {kind:?} are not supported")));
    }
    let app_display_name = string_field(&body, "app_display_name", PUSHER_FIELD_MAX_BYTES)?;
    let device_display_name = string_field(&body, "device_display_name", PUSHER_FIELD_MAX_BYTES)?;
    let lang = string_field(&body, "lang", PUSHER_FIELD_MAX_BYTES)?;
    let profile_tag = string_field(&body, "profile_tag", PUSHER_FIELD_MAX_BYTES)?;
    let data = match body.get("data") {
        Some(Value::Object(d)) => Some(d.clone()),
        None | Some(Value::Null) => None,
        Some(_) => return Err(Error::bad_json("data must be an object")),
    };
    let missing: Vec<&str> = [
        ("app_display_name", app_display_name.is_none()),
        ("device_display_name", device_display_name.is_none()),
        ("lang", lang.is_none()),
        ("data", data.is_none()),
    ]
    .iter()
    .filter(|(_, m)| *m)
    .map(|(k, _)| *k)
    .collect();
    let (Some(app_display_name), Some(device_display_name), Some(lang), Some(data)) =
        (app_display_name, device_display_name, lang, data)
    else {
        return Err(Error::missing_param(format!("Missing parameters: {}", missing.join(", "))));
    };
    let url = match data.get("url") {
        Some(Value::String(u)) => u.clone(),
        None | Some(Value::Null) => {
            return Err(Error::missing_param("data.url is required for http pushers"))
        }
        Some(_) => return Err(Error::bad_json("data.url must be a string")),
    };
    sender::check_pusher_url(&url, app.config.outbound_allow_private)?;
    match data.get("format") {
        None | Some(Value::Null) => {}
        Some(Value::String(f)) if f == "event_id_only" => {}
        Some(_) => return Err(Error::invalid_param("data.format may only be event_id_only")),
    }
    let data_text = Value::Object(data).to_string();
    if data_text.len() > PUSHER_DATA_MAX_BYTES {
        return Err(Error::invalid_param(format!("data is at most {PUSHER_DATA_MAX_BYTES} bytes")));
    }
    let append = match body.get("append") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(Error::bad_json("append must be a boolean")),
    };
    let pusher = push::Pusher {
        user_id: who.user_id.clone(),
        app_id,
        pushkey,
        kind,
        app_display_name,
        device_display_name,
        profile_tag,
        lang,
        data: data_text,
        pushkey_ts: storage::now_ms(),
        // The pusher goes when this device does (logout, deletion, a
        // password change that signs the others out).
        device_id: Some(who.device_id.clone()),
    };
    app.db.write(|c| {
        let exists = push::pusher(c, &pusher.user_id, &pusher.app_id, &pusher.pushkey)?.is_some();
        if !exists && push::count_pushers(c, &pusher.user_id)? >= PUSHERS_PER_USER_MAX {
            return Err(Error::invalid_param(format!(
                "An account has at most {PUSHERS_PER_USER_MAX} pushers"
            )));
        }
        if !append {
            push::delete_pushers_of_others(c, &pusher.user_id, &pusher.app_id, &pusher.pushkey)?;
        }
        push::put_pusher(c, &pusher)
    })?;
    Response::ok(json!({}))
}

// ---------------------------------------------------------- notifications

/// GET /_matrix/client/v3/notifications
///
/// The user's notifications, newest first; `from` continues from a
/// `next_token`, `only=highlight` keeps highlights.
pub fn notifications(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let before = match req.query("from") {
        None | Some("") => i64::MAX,
        Some(t) => {
            t.parse::<i64>().map_err(|_| Error::invalid_param("from is not a token from this endpoint"))?
        }
    };
    let limit = match req.query("limit") {
        None => NOTIFICATIONS_LIMIT_DEFAULT,
        Some(l) => l.parse::<usize>().map_err(|_| Error::invalid_param("limit must be a number"))?,
    }
    .clamp(1, NOTIFICATIONS_LIMIT_MAX);
    let only_highlight = req.query("only").is_some_and(|o| o.split(',').any(|x| x == "highlight"));
    let now = storage::now_ms();
    let viewer = Viewer { user_id: &who.user_id, device_id: &who.device_id };
    let (list, next) = app.db.read(|c| {
        let (rows, next) = push::notifications(c, &who.user_id, before, limit, only_highlight)?;
        let mut read_by_room = std::collections::HashMap::new();
        let mut out = Vec::with_capacity(rows.len());
        for n in rows {
            let Some(id) = push::event_id_at(c, n.pos)? else { continue };
            let Some(e) = events::get(c, &id)? else { continue };
            if !read_by_room.contains_key(&n.room_id) {
                read_by_room.insert(n.room_id.clone(), push::read_up_to(c, &who.user_id, &n.room_id)?);
            }
            let read = read_by_room.get(&n.room_id).is_some_and(|r| r.has_read(n.pos, &n.thread_id));
            // An event that cannot be read (logged) is left out.
            let Some(mut event) = client_event(c, &e, Some(viewer), now)? else { continue };
            if let Some(obj) = event.as_object_mut() {
                obj.remove("room_id");
            }
            let actions: Value = serde_json::from_str(&n.actions).unwrap_or_else(|_| json!([]));
            out.push(json!({
                "actions": actions,
                "event": event,
                "read": read,
                "room_id": n.room_id,
                "ts": n.ts,
            }));
        }
        Ok((out, next))
    })?;
    let mut body = json!({ "notifications": list });
    if let Some(t) = next {
        body["next_token"] = json!(t.to_string());
    }
    Response::ok(body)
}
