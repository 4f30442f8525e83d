//! Push rules as clients see them: the five kinds, the server-default
//! rules, a user's ruleset (defaults merged with their own rules and their
//! changes to the defaults), actions, and the checks on rules clients send.
//!
//! The default rules are the specification's. The three legacy mention
//! rules that v1.17 removed (`.m.rule.contains_display_name`,
//! `.m.rule.roomnotif`, `.m.rule.contains_user_name`) are still served,
//! in their old places: clients and bridges that send no `m.mentions`
//! still mention people by name and `@room`. As the spec said while it
//! had them, they are skipped for events that carry `m.mentions`, so an
//! intentional-mentions client gets exactly the new behaviour.
//!
//! Pure: no I/O.

use serde_json::{json, Map, Value};

/// The kinds of rule, in the order they are evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Override,
    Content,
    Room,
    Sender,
    Underride,
}

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::Override, Kind::Content, Kind::Room, Kind::Sender, Kind::Underride];

    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "override" => Kind::Override,
            "content" => Kind::Content,
            "room" => Kind::Room,
            "sender" => Kind::Sender,
            "underride" => Kind::Underride,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Override => "override",
            Kind::Content => "content",
            Kind::Room => "room",
            Kind::Sender => "sender",
            Kind::Underride => "underride",
        }
    }

    /// Override and underride rules carry conditions.
    pub fn has_conditions(self) -> bool {
        matches!(self, Kind::Override | Kind::Underride)
    }
}

/// The rule that silences everything; always first, even before user rules.
pub const MASTER: &str = ".m.rule.master";
/// The legacy mention rules, skipped for events with `m.mentions`.
pub const LEGACY_MENTION_RULES: &[&str] =
    &[".m.rule.contains_display_name", ".m.rule.roomnotif", ".m.rule.contains_user_name"];
/// Stands for the owner's user ID in the default rules.
pub const USER_ID_PLACEHOLDER: &str = "$user_id";
/// Stands for the owner's localpart in the default rules.
pub const LOCALPART_PLACEHOLDER: &str = "$localpart";

/// Most user-defined rules (of all kinds together) one account keeps.
pub const USER_RULES_MAX: usize = 500;
/// Most conditions one rule carries.
pub const CONDITIONS_MAX: usize = 20;
/// Most actions one rule carries.
pub const ACTIONS_MAX: usize = 20;
/// Longest rule ID, pattern, condition key or value string, in bytes.
pub const RULE_STRING_MAX_BYTES: usize = 1024;
/// Largest serialised tweak value, in bytes.
pub const TWEAK_MAX_BYTES: usize = 1024;

/// A push rule as it appears on the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub kind: Kind,
    pub rule_id: String,
    pub default: bool,
    pub enabled: bool,
    pub actions: Vec<Value>,
    /// Override and underride rules only.
    pub conditions: Vec<Value>,
    /// Content rules only.
    pub pattern: Option<String>,
}

impl Rule {
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "rule_id": self.rule_id,
            "default": self.default,
            "enabled": self.enabled,
            "actions": self.actions,
        });
        if self.kind.has_conditions() {
            v["conditions"] = Value::Array(self.conditions.clone());
        }
        if let Some(p) = &self.pattern {
            v["pattern"] = json!(p);
        }
        v
    }
}

/// What an account stores: one of its own rules, or (`is_default`) its
/// change to a server-default rule, of which only `enabled` and `actions`
/// (if set) count.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub kind: Kind,
    pub rule_id: String,
    pub is_default: bool,
    pub enabled: bool,
    pub actions: Option<Vec<Value>>,
    pub conditions: Vec<Value>,
    pub pattern: Option<String>,
}

/// The server-default rules, in order, with placeholders for the owner.
/// Definitions as in the specification's "Predefined Rules".
const DEFAULTS: &str = r#"{
  "override": [
    { "rule_id": ".m.rule.master", "enabled": false, "conditions": [], "actions": [] },
    { "rule_id": ".m.rule.suppress_notices",
      "conditions": [ { "kind": "event_match", "key": "content.msgtype", "pattern": "m.notice" } ],
      "actions": [] },
    { "rule_id": ".m.rule.invite_for_me",
      "conditions": [
        { "kind": "event_match", "key": "type", "pattern": "m.room.member" },
        { "kind": "event_match", "key": "content.membership", "pattern": "invite" },
        { "kind": "event_match", "key": "state_key", "pattern": "$user_id" } ],
      "actions": [ "notify", { "set_tweak": "sound", "value": "default" } ] },
    { "rule_id": ".m.rule.member_event",
      "conditions": [ { "kind": "event_match", "key": "type", "pattern": "m.room.member" } ],
      "actions": [] },
    { "rule_id": ".m.rule.is_user_mention",
      "conditions": [
        { "kind": "event_property_contains", "key": "content.m\\.mentions.user_ids", "value": "$user_id" } ],
      "actions": [ "notify", { "set_tweak": "sound", "value": "default" }, { "set_tweak": "highlight" } ] },
    { "rule_id": ".m.rule.contains_display_name",
      "conditions": [ { "kind": "contains_display_name" } ],
      "actions": [ "notify", { "set_tweak": "sound", "value": "default" }, { "set_tweak": "highlight" } ] },
    { "rule_id": ".m.rule.is_room_mention",
      "conditions": [
        { "kind": "event_property_is", "key": "content.m\\.mentions.room", "value": true },
        { "kind": "sender_notification_permission", "key": "room" } ],
      "actions": [ "notify", { "set_tweak": "highlight" } ] },
    { "rule_id": ".m.rule.roomnotif",
      "conditions": [
        { "kind": "event_match", "key": "content.body", "pattern": "@room" },
        { "kind": "sender_notification_permission", "key": "room" } ],
      "actions": [ "notify", { "set_tweak": "highlight" } ] },
    { "rule_id": ".m.rule.tombstone",
      "conditions": [
        { "kind": "event_match", "key": "type", "pattern": "m.room.tombstone" },
        { "kind": "event_match", "key": "state_key", "pattern": "" } ],
      "actions": [ "notify", { "set_tweak": "highlight" } ] },
    { "rule_id": ".m.rule.reaction",
      "conditions": [ { "kind": "event_match", "key": "type", "pattern": "m.reaction" } ],
      "actions": [] },
    { "rule_id": ".m.rule.room.server_acl",
      "conditions": [
        { "kind": "event_match", "key": "type", "pattern": "m.room.server_acl" },
        { "kind": "event_match", "key": "state_key", "pattern": "" } ],
      "actions": [] },
    { "rule_id": ".m.rule.suppress_edits",
      "conditions": [
        { "kind": "event_property_is", "key": "content.m\\.relates_to.rel_type", "value": "m.replace" } ],
      "actions": [] }
  ],
  "content": [
    { "rule_id": ".m.rule.contains_user_name", "pattern": "$localpart",
      "actions": [ "notify", { "set_tweak": "sound", "value": "default" }, { "set_tweak": "highlight" } ] }
  ],
  "underride": [
    { "rule_id": ".m.rule.call",
      "conditions": [ { "kind": "event_match", "key": "type", "pattern": "m.call.invite" } ],
      "actions": [ "notify", { "set_tweak": "sound", "value": "ring" } ] },
    { "rule_id": ".m.rule.encrypted_room_one_to_one",
      "conditions": [
        { "kind": "room_member_count", "is": "2" },
        { "kind": "event_match", "key": "type", "pattern": "m.room.encrypted" } ],
      "actions": [ "notify", { "set_tweak": "sound", "value": "default" } ] },
    { "rule_id": ".m.rule.room_one_to_one",
      "conditions": [
        { "kind": "room_member_count", "is": "2" },
        { "kind": "event_match", "key": "type", "pattern": "m.room.message" } ],
      "actions": [ "notify", { "set_tweak": "sound", "value": "default" } ] },
    { "rule_id": ".m.rule.message",
      "conditions": [ { "kind": "event_match", "key": "type", "pattern": "m.room.message" } ],
      "actions": [ "notify" ] },
    { "rule_id": ".m.rule.encrypted",
      "conditions": [ { "kind": "event_match", "key": "type", "pattern": "m.room.encrypted" } ],
      "actions": [ "notify" ] }
  ]
}"#;

/// The default rules with the placeholders left in (for compiling once).
pub fn default_templates() -> Vec<Rule> {
    let parsed: Value = serde_json::from_str(DEFAULTS).expect("the default push rules are valid JSON");
    let mut out = Vec::new();
    for kind in Kind::ALL {
        for r in parsed[kind.as_str()].as_array().map(Vec::as_slice).unwrap_or_default() {
            out.push(Rule {
                kind,
                rule_id: r["rule_id"].as_str().expect("default rule has an ID").to_owned(),
                default: true,
                enabled: r["enabled"].as_bool().unwrap_or(true),
                actions: r["actions"].as_array().cloned().unwrap_or_default(),
                conditions: r["conditions"].as_array().cloned().unwrap_or_default(),
                pattern: r["pattern"].as_str().map(str::to_owned),
            });
        }
    }
    out
}

/// Replaces the placeholders in a default rule's strings.
fn personalise(v: &mut Value, user_id: &str, localpart: &str) {
    match v {
        Value::String(s) if s == USER_ID_PLACEHOLDER => *s = user_id.to_owned(),
        Value::String(s) if s == LOCALPART_PLACEHOLDER => *s = localpart.to_owned(),
        Value::Array(list) => list.iter_mut().for_each(|x| personalise(x, user_id, localpart)),
        Value::Object(map) => map.values_mut().for_each(|x| personalise(x, user_id, localpart)),
        _ => {}
    }
}

/// The localpart of a user ID (the whole ID if it does not parse).
pub fn localpart(user_id: &str) -> &str {
    crate::core::ids::parse_user_id(user_id).map_or(user_id, |(l, _)| l)
}

/// A user's complete ruleset in evaluation order: the master rule, the
/// user's override rules, the other default overrides, then for each
/// following kind the user's rules before the defaults. `stored` is the
/// account's rows, each kind's own rules most important first.
pub fn ruleset(user_id: &str, stored: &[Stored]) -> Vec<Rule> {
    let local = localpart(user_id);
    let mut defaults = default_templates();
    for d in &mut defaults {
        if let Some(p) = &mut d.pattern {
            if p == LOCALPART_PLACEHOLDER {
                *p = local.to_owned();
            }
        }
        d.conditions.iter_mut().for_each(|c| personalise(c, user_id, local));
        if let Some(change) =
            stored.iter().find(|s| s.is_default && s.kind == d.kind && s.rule_id == d.rule_id)
        {
            d.enabled = change.enabled;
            if let Some(a) = &change.actions {
                d.actions = a.clone();
            }
        }
    }
    let own = |kind: Kind| {
        stored.iter().filter(move |s| !s.is_default && s.kind == kind).map(move |s| Rule {
            kind,
            rule_id: s.rule_id.clone(),
            default: false,
            enabled: s.enabled,
            actions: s.actions.clone().unwrap_or_default(),
            conditions: s.conditions.clone(),
            pattern: s.pattern.clone(),
        })
    };
    let mut out = Vec::with_capacity(defaults.len() + stored.len());
    for kind in Kind::ALL {
        let mut of_kind = defaults.iter().filter(|d| d.kind == kind).cloned().peekable();
        if kind == Kind::Override {
            if let Some(master) = of_kind.next_if(|d| d.rule_id == MASTER) {
                out.push(master);
            }
        }
        out.extend(own(kind));
        out.extend(of_kind);
    }
    out
}

/// The ruleset as the `global` object of `GET /pushrules/`.
pub fn ruleset_json(rules: &[Rule]) -> Value {
    let mut out = Map::new();
    for kind in Kind::ALL {
        let list: Vec<Value> = rules.iter().filter(|r| r.kind == kind).map(Rule::to_json).collect();
        out.insert(kind.as_str().to_owned(), Value::Array(list));
    }
    Value::Object(out)
}

/// Checks a client's actions and strips the historical ones (`dont_notify`,
/// `coalesce`), which mean nothing.
pub fn clean_actions(actions: &Value) -> Result<Vec<Value>, String> {
    let Value::Array(list) = actions else { return Err("actions must be a list".into()) };
    if list.len() > ACTIONS_MAX {
        return Err(format!("A rule has at most {ACTIONS_MAX} actions"));
    }
    let mut out = Vec::with_capacity(list.len());
    for a in list {
        match a {
            Value::String(s) if s == "notify" => out.push(a.clone()),
            Value::String(s) if s == "dont_notify" || s == "coalesce" => {}
            Value::Object(o) => {
                let Some(Value::String(tweak)) = o.get("set_tweak") else {
                    return Err(format!("Unknown action {a}"));
                };
                if tweak.is_empty() || tweak.len() > RULE_STRING_MAX_BYTES {
                    return Err("set_tweak must name a tweak".into());
                }
                if tweak == "highlight" && !matches!(o.get("value"), None | Some(Value::Bool(_))) {
                    return Err("The highlight tweak's value is a boolean".into());
                }
                if o.get("value").is_some_and(|v| v.to_string().len() > TWEAK_MAX_BYTES) {
                    return Err(format!("A tweak's value is at most {TWEAK_MAX_BYTES} bytes"));
                }
                out.push(a.clone());
            }
            other => return Err(format!("Unknown action {other}")),
        }
    }
    Ok(out)
}

/// Checks a client's conditions: a list of objects with a string `kind`,
/// bounded. Conditions of unknown kinds are kept (they never match).
pub fn check_conditions(conditions: &Value) -> Result<Vec<Value>, String> {
    let Value::Array(list) = conditions else { return Err("conditions must be a list".into()) };
    if list.len() > CONDITIONS_MAX {
        return Err(format!("A rule has at most {CONDITIONS_MAX} conditions"));
    }
    for c in list {
        let Value::Object(o) = c else { return Err("Each condition is an object".into()) };
        if !matches!(o.get("kind"), Some(Value::String(_))) {
            return Err("Each condition has a string kind".into());
        }
        for (k, v) in o {
            if let Value::String(s) = v {
                if s.len() > RULE_STRING_MAX_BYTES {
                    return Err(format!("Condition field {k} is at most {RULE_STRING_MAX_BYTES} bytes"));
                }
            } else if matches!(v, Value::Array(_) | Value::Object(_)) {
                return Err(format!("Condition field {k} must not be a list or object"));
            }
        }
    }
    Ok(list.clone())
}

/// The effect of a matched rule's actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effect {
    pub notify: bool,
    pub highlight: bool,
    /// The actions as JSON text (what `/notifications` shows).
    pub actions: String,
    /// The tweaks as a JSON object (what a push gateway receives).
    pub tweaks: String,
}

impl Effect {
    pub fn of(actions: &[Value]) -> Effect {
        let mut tweaks = Map::new();
        let mut notify = false;
        for a in actions {
            match a {
                Value::String(s) if s == "notify" => notify = true,
                Value::Object(o) => {
                    if let Some(Value::String(name)) = o.get("set_tweak") {
                        let value = match (name.as_str(), o.get("value")) {
                            ("highlight", None) => Value::Bool(true),
                            (_, Some(v)) => v.clone(),
                            (_, None) => Value::Bool(true),
                        };
                        tweaks.insert(name.clone(), value);
                    }
                }
                _ => {}
            }
        }
        let highlight = tweaks.get("highlight") == Some(&Value::Bool(true));
        Effect {
            notify,
            highlight,
            actions: Value::Array(actions.to_vec()).to_string(),
            tweaks: Value::Object(tweaks).to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(rules: &[Rule], kind: Kind) -> Vec<&str> {
        rules.iter().filter(|r| r.kind == kind).map(|r| r.rule_id.as_str()).collect()
    }

    #[test]
    fn defaults_are_personalised_and_ordered() {
        let rules = ruleset("@alice:example.org", &[]);
        assert_eq!(ids(&rules, Kind::Override)[0], MASTER);
        assert_eq!(ids(&rules, Kind::Content), [".m.rule.contains_user_name"]);
        let invite = rules.iter().find(|r| r.rule_id == ".m.rule.invite_for_me").unwrap();
        assert_eq!(invite.conditions[2]["pattern"], "@alice:example.org");
        let name = rules.iter().find(|r| r.rule_id == ".m.rule.contains_user_name").unwrap();
        assert_eq!(name.pattern.as_deref(), Some("alice"));
        assert!(rules.iter().all(|r| r.default));
        assert!(!rules[0].enabled);
        let json = ruleset_json(&rules);
        assert!(json["room"].as_array().unwrap().is_empty());
        assert!(json["content"][0].get("conditions").is_none());
        assert_eq!(json["override"][0]["conditions"], json!([]));
    }

    #[test]
    fn user_rules_sit_between_master_and_defaults() {
        let stored = vec![
            Stored {
                kind: Kind::Override,
                rule_id: "mine".into(),
                is_default: false,
                enabled: true,
                actions: Some(vec![json!("notify")]),
                conditions: vec![],
                pattern: None,
            },
            Stored {
                kind: Kind::Underride,
                rule_id: ".m.rule.message".into(),
                is_default: true,
                enabled: false,
                actions: Some(vec![]),
                conditions: vec![],
                pattern: None,
            },
        ];
        let rules = ruleset("@a:x", &stored);
        assert_eq!(&ids(&rules, Kind::Override)[..3], [MASTER, "mine", ".m.rule.suppress_notices"]);
        let m = rules.iter().find(|r| r.rule_id == ".m.rule.message").unwrap();
        assert!(!m.enabled && m.actions.is_empty() && m.default);
    }

    #[test]
    fn actions_are_checked_and_legacy_ones_stripped() {
        assert_eq!(clean_actions(&json!(["notify", "dont_notify", "coalesce"])).unwrap(), [json!("notify")]);
        assert!(clean_actions(&json!(["explode"])).is_err());
        assert!(clean_actions(&json!([{ "set_tweak": "highlight", "value": "yes" }])).is_err());
        assert!(clean_actions(&json!("notify")).is_err());
        let e = Effect::of(&[
            json!("notify"),
            json!({ "set_tweak": "highlight" }),
            json!({ "set_tweak": "sound", "value": "default" }),
        ]);
        assert!(e.notify && e.highlight);
        assert_eq!(
            serde_json::from_str::<Value>(&e.tweaks).unwrap(),
            json!({ "highlight": true, "sound": "default" })
        );
        let e = Effect::of(&[json!("notify"), json!({ "set_tweak": "highlight", "value": false })]);
        assert!(e.notify && !e.highlight);
    }
}
