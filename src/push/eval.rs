//! Evaluating push rules against an event for one user.
//!
//! Rules are compiled once: dotted key paths split, globs lower-cased and
//! tokenised, `room_member_count` comparisons parsed. The default rules are
//! compiled once per process with the owner left symbolic ([`Pat::UserId`],
//! [`Pat::Localpart`]), so a user who never changed their rules costs no
//! compilation at all; an event's body is lower-cased once for all users.
//! Evaluation then walks the rules in order and stops at the first enabled
//! rule whose conditions all hold.
//!
//! Pure: the caller supplies the room's facts (member count, whether the
//! sender may trigger a notification type).

use std::sync::{Arc, OnceLock};

use serde_json::Value;

use super::glob::{self, fold, Glob};
use super::rules::{
    self, Effect, Kind, Rule, LEGACY_MENTION_RULES, LOCALPART_PLACEHOLDER, USER_ID_PLACEHOLDER,
};

/// A pattern, or the owner's ID or localpart (default rules only).
#[derive(Debug, Clone)]
enum Pat {
    Glob(Glob),
    UserId,
    Localpart,
}

/// A value to compare with, or the owner's ID (default rules only).
#[derive(Debug, Clone)]
enum Val {
    Json(Value),
    UserId,
}

#[derive(Debug, Clone, Copy)]
enum Cmp {
    Eq,
    Lt,
    Gt,
    Le,
    Ge,
}

#[derive(Debug, Clone)]
enum Cond {
    EventMatch {
        path: Vec<String>,
        pat: Pat,
        body: bool,
    },
    PropertyIs {
        path: Vec<String>,
        value: Val,
    },
    PropertyContains {
        path: Vec<String>,
        value: Val,
    },
    DisplayName,
    MemberCount(Cmp, u64),
    SenderPermission(String),
    /// A room rule: the event is in this room.
    Room(String),
    /// A sender rule: the event is from this user.
    Sender(String),
    /// Unknown or malformed: never matches.
    Never,
}

/// A compiled rule.
#[derive(Debug)]
pub struct Compiled {
    pub rule_id: String,
    conditions: Vec<Cond>,
    /// One of the legacy mention rules.
    legacy_mention: bool,
}

/// A rule ready to evaluate: compiled conditions, and the user's settings.
#[derive(Debug, Clone)]
pub struct Effective {
    pub rule: Arc<Compiled>,
    pub enabled: bool,
    pub effect: Arc<Effect>,
}

/// Splits a dotted key path; `\.` is a dot and `\\` a backslash inside a
/// name, any other backslash is itself.
pub fn split_path(key: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = key.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(&n @ ('.' | '\\')) => {
                    cur.push(n);
                    chars.next();
                }
                _ => cur.push('\\'),
            },
            '.' => parts.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    parts.push(cur);
    parts
}

fn lookup<'v>(event: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(event, |v, p| v.as_object()?.get(p))
}

/// A non-compound value (string, integer in the canonical range, boolean,
/// null), as `event_property_*` compare them.
fn scalar(v: &Value) -> bool {
    const MAX: i64 = (1 << 53) - 1;
    match v {
        Value::String(_) | Value::Bool(_) | Value::Null => true,
        Value::Number(n) => n.as_i64().is_some_and(|i| (-MAX..=MAX).contains(&i)),
        _ => false,
    }
}

fn compile_condition(c: &Value, symbolic: bool) -> Cond {
    let s = |k: &str| c.get(k).and_then(Value::as_str);
    let placeholder = |text: &str| -> Option<Pat> {
        match text {
            USER_ID_PLACEHOLDER if symbolic => Some(Pat::UserId),
            LOCALPART_PLACEHOLDER if symbolic => Some(Pat::Localpart),
            _ => None,
        }
    };
    let value = |v: &Value| -> Option<Val> {
        if symbolic && v.as_str() == Some(USER_ID_PLACEHOLDER) {
            return Some(Val::UserId);
        }
        scalar(v).then(|| Val::Json(v.clone()))
    };
    match s("kind") {
        Some("event_match") => match (s("key"), s("pattern")) {
            (Some(key), Some(pattern)) => {
                let path = split_path(key);
                let body = path == ["content", "body"];
                let pat = placeholder(pattern).unwrap_or_else(|| Pat::Glob(Glob::new(pattern)));
                Cond::EventMatch { path, pat, body }
            }
            _ => Cond::Never,
        },
        Some(kind @ ("event_property_is" | "event_property_contains")) => {
            match (s("key"), c.get("value").and_then(value)) {
                (Some(key), Some(value)) if kind == "event_property_is" => {
                    Cond::PropertyIs { path: split_path(key), value }
                }
                (Some(key), Some(value)) => Cond::PropertyContains { path: split_path(key), value },
                _ => Cond::Never,
            }
        }
        Some("contains_display_name") => Cond::DisplayName,
        Some("room_member_count") => {
            s("is").and_then(parse_count).map_or(Cond::Never, |(op, n)| Cond::MemberCount(op, n))
        }
        Some("sender_notification_permission") => {
            s("key").map_or(Cond::Never, |k| Cond::SenderPermission(k.to_owned()))
        }
        _ => Cond::Never,
    }
}

/// `room_member_count`'s `is`: an optional `==`, `<`, `>`, `<=` or `>=`
/// and a decimal number.
fn parse_count(is: &str) -> Option<(Cmp, u64)> {
    let (op, rest) = [("==", Cmp::Eq), ("<=", Cmp::Le), (">=", Cmp::Ge), ("<", Cmp::Lt), (">", Cmp::Gt)]
        .iter()
        .find_map(|(p, op)| is.strip_prefix(p).map(|rest| (*op, rest)))
        .unwrap_or((Cmp::Eq, is));
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((op, rest.parse().ok()?))
}

/// Compiles a rule. `symbolic`: the placeholders of the default rules
/// stand for the owner.
pub fn compile(rule: &Rule, symbolic: bool) -> Compiled {
    let conditions = match rule.kind {
        Kind::Override | Kind::Underride => {
            rule.conditions.iter().map(|c| compile_condition(c, symbolic)).collect()
        }
        Kind::Content => match &rule.pattern {
            Some(p) => {
                let pat = match p.as_str() {
                    LOCALPART_PLACEHOLDER if symbolic => Pat::Localpart,
                    _ => Pat::Glob(Glob::new(p)),
                };
                vec![Cond::EventMatch { path: vec!["content".into(), "body".into()], pat, body: true }]
            }
            None => vec![Cond::Never],
        },
        Kind::Room => vec![Cond::Room(rule.rule_id.clone())],
        Kind::Sender => vec![Cond::Sender(rule.rule_id.clone())],
    };
    Compiled {
        rule_id: rule.rule_id.clone(),
        conditions,
        legacy_mention: rule.default && LEGACY_MENTION_RULES.contains(&rule.rule_id.as_str()),
    }
}

/// The default rules, compiled once, with their default settings.
pub fn defaults() -> &'static [Effective] {
    static DEFAULTS: OnceLock<Vec<Effective>> = OnceLock::new();
    DEFAULTS.get_or_init(|| {
        let templates = rules::default_templates();
        // Order as in a ruleset without user rules.
        let ordered = rules::ruleset("@user:placeholder", &[]);
        ordered
            .iter()
            .map(|r| {
                let t = templates.iter().find(|t| t.rule_id == r.rule_id && t.kind == r.kind).unwrap_or(r);
                Effective {
                    rule: Arc::new(compile(t, true)),
                    enabled: t.enabled,
                    effect: Arc::new(Effect::of(&t.actions)),
                }
            })
            .collect()
    })
}

/// A user's rules ready to evaluate: the compiled defaults with the user's
/// settings, and their own rules compiled, in ruleset order.
pub fn effective(ruleset: &[Rule]) -> Vec<Effective> {
    let defaults = defaults();
    ruleset
        .iter()
        .map(|r| {
            let base = if r.default { defaults.iter().find(|d| d.rule.rule_id == r.rule_id) } else { None };
            match base {
                Some(d) => Effective {
                    rule: d.rule.clone(),
                    enabled: r.enabled,
                    effect: Arc::new(Effect::of(&r.actions)),
                },
                None => Effective {
                    rule: Arc::new(compile(r, false)),
                    enabled: r.enabled,
                    effect: Arc::new(Effect::of(&r.actions)),
                },
            }
        })
        .collect()
}

/// An event being evaluated, with what every user's evaluation shares.
pub struct Event<'a> {
    pub json: &'a Value,
    room_id: &'a str,
    sender: &'a str,
    /// `content.body`, lower-cased, if it is a string.
    body: Option<Vec<char>>,
    /// The content has `m.mentions`: the legacy mention rules are skipped.
    has_mentions: bool,
    /// Joined members of the room.
    pub member_count: u64,
    /// Whether the sender's power level meets `notifications.{key}`.
    sender_may: &'a dyn Fn(&str) -> bool,
}

impl<'a> Event<'a> {
    pub fn new(json: &'a Value, member_count: u64, sender_may: &'a dyn Fn(&str) -> bool) -> Event<'a> {
        let content = json.get("content");
        Event {
            json,
            room_id: json.get("room_id").and_then(Value::as_str).unwrap_or(""),
            sender: json.get("sender").and_then(Value::as_str).unwrap_or(""),
            body: content.and_then(|c| c.get("body")).and_then(Value::as_str).map(fold),
            has_mentions: content.and_then(Value::as_object).is_some_and(|c| c.contains_key("m.mentions")),
            member_count,
            sender_may,
        }
    }
}

/// The user the rules belong to.
pub struct Owner<'a> {
    pub user_id: &'a str,
    /// Their display name in the room, if any.
    pub display_name: Option<&'a str>,
}

fn holds(c: &Cond, ev: &Event, owner: &Owner) -> bool {
    match c {
        Cond::EventMatch { path, pat, body } => {
            if *body {
                let Some(text) = &ev.body else { return false };
                return match pat {
                    Pat::Glob(g) => g.matches_words(text),
                    Pat::UserId => glob::contains_words(text, &fold(owner.user_id)),
                    Pat::Localpart => glob::contains_words(text, &fold(rules::localpart(owner.user_id))),
                };
            }
            let Some(Value::String(v)) = lookup(ev.json, path) else { return false };
            match pat {
                Pat::Glob(g) => g.matches(v),
                Pat::UserId => fold(v) == fold(owner.user_id),
                Pat::Localpart => fold(v) == fold(rules::localpart(owner.user_id)),
            }
        }
        Cond::PropertyIs { path, value } => lookup(ev.json, path).is_some_and(|v| same(v, value, owner)),
        Cond::PropertyContains { path, value } => match lookup(ev.json, path) {
            Some(Value::Array(list)) => list.iter().any(|v| same(v, value, owner)),
            _ => false,
        },
        Cond::DisplayName => match (owner.display_name, &ev.body) {
            (Some(name), Some(text)) if !name.is_empty() => glob::contains_words(text, &fold(name)),
            _ => false,
        },
        Cond::MemberCount(op, n) => {
            let m = ev.member_count;
            match op {
                Cmp::Eq => m == *n,
                Cmp::Lt => m < *n,
                Cmp::Gt => m > *n,
                Cmp::Le => m <= *n,
                Cmp::Ge => m >= *n,
            }
        }
        Cond::SenderPermission(key) => (ev.sender_may)(key),
        Cond::Room(r) => ev.room_id == r,
        Cond::Sender(s) => ev.sender == s,
        Cond::Never => false,
    }
}

/// Exact equality of non-compound values; integers compare as integers.
fn same(v: &Value, want: &Val, owner: &Owner) -> bool {
    match want {
        Val::UserId => v.as_str() == Some(owner.user_id),
        Val::Json(Value::Number(n)) => v.as_i64().is_some_and(|i| Some(i) == n.as_i64()),
        Val::Json(w) => scalar(v) && !v.is_number() && v == w,
    }
}

/// The effect of the first enabled rule that matches, if any.
pub fn evaluate<'r>(rules: &'r [Effective], ev: &Event, owner: &Owner) -> Option<&'r Effect> {
    rules
        .iter()
        .filter(|r| r.enabled && !(r.rule.legacy_mention && ev.has_mentions))
        .find(|r| r.rule.conditions.iter().all(|c| holds(c, ev, owner)))
        .map(|r| r.effect.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::rules::{ruleset, Stored};
    use serde_json::json;

    const ALICE: &str = "@alice:example.org";

    fn message(body: &str) -> Value {
        json!({
            "type": "m.room.message", "room_id": "!r:example.org", "sender": "@bob:example.org",
            "content": { "msgtype": "m.text", "body": body },
        })
    }

    fn run(
        rules: &[Effective],
        event: &Value,
        members: u64,
        may: bool,
        name: Option<&str>,
    ) -> Option<Effect> {
        let f = move |_: &str| may;
        let ev = Event::new(event, members, &f);
        evaluate(rules, &ev, &Owner { user_id: ALICE, display_name: name }).cloned()
    }

    #[test]
    fn paths_unescape_dots_and_backslashes() {
        assert_eq!(split_path("content.m\\.mentions.user_ids"), ["content", "m.mentions", "user_ids"]);
        assert_eq!(split_path("content.m\\\\foo"), ["content", "m\\foo"]);
        assert_eq!(split_path("a\\xb"), ["a\\xb"]);
    }

    #[test]
    fn default_rules_decide_like_the_spec() {
        let d = defaults();
        // A group message notifies without highlight.
        let e = run(d, &message("hello"), 5, false, Some("Alice")).unwrap();
        assert!(e.notify && !e.highlight);
        // One-to-one rooms notify with a sound.
        let e = run(d, &message("hello"), 2, false, None).unwrap();
        assert!(e.tweaks.contains("sound"));
        // Notices are silent.
        let notice =
            json!({ "type": "m.room.message", "content": { "msgtype": "m.notice", "body": "Alice" } });
        assert!(!run(d, &notice, 5, true, Some("Alice")).unwrap().notify);
        // Display name and localpart mentions highlight.
        assert!(run(d, &message("hey ALICE!"), 5, false, Some("Alice")).unwrap().highlight);
        assert!(!run(d, &message("malice"), 5, false, Some("Alice")).unwrap().highlight);
        assert!(run(d, &message("ping alice"), 5, false, None).unwrap().highlight);
        // @room needs the sender's permission.
        assert!(run(d, &message("@room lunch"), 5, true, None).unwrap().highlight);
        assert!(!run(d, &message("@room lunch"), 5, false, None).unwrap().highlight);
        // Intentional mentions, and the legacy rules step aside for them.
        let mut m = message("hey Alice");
        m["content"]["m.mentions"] = json!({ "user_ids": [ALICE] });
        assert!(run(d, &m, 5, false, Some("Alice")).unwrap().highlight);
        m["content"]["m.mentions"] = json!({});
        assert!(!run(d, &m, 5, false, Some("Alice")).unwrap().highlight);
        m["content"]["m.mentions"] = json!({ "room": true });
        assert!(run(d, &m, 5, true, None).unwrap().highlight);
        // Invites for me notify; other member events do not.
        let invite =
            json!({ "type": "m.room.member", "state_key": ALICE, "content": { "membership": "invite" } });
        assert!(run(d, &invite, 5, false, None).unwrap().notify);
        let join =
            json!({ "type": "m.room.member", "state_key": "@c:x", "content": { "membership": "join" } });
        assert!(!run(d, &join, 5, false, None).unwrap().notify);
        // Edits and reactions are silent; unknown types match nothing.
        let mut edit = message("* fixed");
        edit["content"]["m.relates_to"] = json!({ "rel_type": "m.replace", "event_id": "$x" });
        assert!(!run(d, &edit, 5, false, None).unwrap().notify);
        assert!(run(d, &json!({ "type": "m.custom", "content": {} }), 5, false, None).is_none());
    }

    #[test]
    fn user_rules_and_settings_apply() {
        let stored = vec![
            Stored {
                kind: Kind::Content,
                rule_id: "cake".into(),
                is_default: false,
                enabled: true,
                actions: Some(vec![json!("notify"), json!({ "set_tweak": "highlight" })]),
                conditions: vec![],
                pattern: Some("cake*lie".into()),
            },
            Stored {
                kind: Kind::Room,
                rule_id: "!quiet:example.org".into(),
                is_default: false,
                enabled: true,
                actions: Some(vec![]),
                conditions: vec![],
                pattern: None,
            },
            Stored {
                kind: Kind::Override,
                rule_id: "big".into(),
                is_default: false,
                enabled: true,
                actions: Some(vec![json!("notify")]),
                conditions: vec![
                    json!({ "kind": "room_member_count", "is": ">=10" }),
                    json!({ "kind": "unknown_kind" }),
                ],
                pattern: None,
            },
        ];
        let rules = effective(&ruleset(ALICE, &stored));
        assert!(run(&rules, &message("the cake is a lie"), 5, false, None).unwrap().highlight);
        let mut quiet = message("hi");
        quiet["room_id"] = json!("!quiet:example.org");
        assert!(!run(&rules, &quiet, 5, false, None).unwrap().notify);
        // The unknown condition disables "big".
        assert!(!run(&rules, &message("x"), 50, false, None).unwrap().highlight);
        // The master rule silences everything once enabled.
        let master = Stored {
            kind: Kind::Override,
            rule_id: rules::MASTER.into(),
            is_default: true,
            enabled: true,
            actions: None,
            conditions: vec![],
            pattern: None,
        };
        let rules = effective(&ruleset(ALICE, &[master]));
        assert!(!run(&rules, &message("alice"), 2, true, None).unwrap().notify);
    }

    #[test]
    fn property_conditions_compare_exactly() {
        let c = |v: Value| {
            compile_condition(&json!({ "kind": "event_property_is", "key": "content.x", "value": v }), false)
        };
        let ev_json = json!({ "content": { "x": 1, "s": "1", "list": [1, "a", null] } });
        let f = |_: &str| false;
        let ev = Event::new(&ev_json, 1, &f);
        let owner = Owner { user_id: ALICE, display_name: None };
        assert!(holds(&c(json!(1)), &ev, &owner));
        assert!(!holds(&c(json!("1")), &ev, &owner));
        assert!(matches!(c(json!([1])), Cond::Never));
        let contains = |v: Value| {
            compile_condition(
                &json!({ "kind": "event_property_contains", "key": "content.list", "value": v }),
                false,
            )
        };
        assert!(holds(&contains(json!(null)), &ev, &owner));
        assert!(holds(&contains(json!("a")), &ev, &owner));
        assert!(!holds(&contains(json!("b")), &ev, &owner));
        assert_eq!(parse_count("<=10").map(|(_, n)| n), Some(10));
        assert!(parse_count("=10").is_none() && parse_count("").is_none() && parse_count(">").is_none());
    }
}
