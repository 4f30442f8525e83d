//! Application service registrations (issue 20), pure: the YAML file a
//! bridge generates, read into a checked [`Registration`], and the
//! namespace tests the rest of the server asks ("is this user ID the
//! bridge's?", "exclusively?").
//!
//! The YAML is read with `saphyr-parser`'s events into a small tree
//! ([`Node`]) and then field by field, so a bad file is refused with the
//! key at fault named (`namespaces.users[0].regex: ...`). Keys this server
//! does not know are ignored: bridges write their own. A namespace's regex
//! matches from the start of the ID, as Synapse's `re.match` does (bridges
//! write both `@_irc_.*` and `^@_irc_.*:example\.org$`).
//!
//! Not wired yet: nothing loads registrations at start (the next steps of
//! issue 20).

use std::collections::BTreeMap;
use std::fmt;

use saphyr_parser::{Event, Parser, ScalarStyle};

use crate::core::ids;

/// Largest registration file read, in bytes.
pub const FILE_MAX_BYTES: usize = 64 * 1024;
/// Most namespaces of one kind.
pub const NAMESPACES_MAX: usize = 64;
/// Longest namespace regex, in bytes.
pub const REGEX_MAX_BYTES: usize = 1024;
/// Deepest nesting of YAML mappings and sequences read.
const DEPTH_MAX: usize = 16;

/// One namespace: its regex, anchored at the start, and whether it is the
/// application service's alone.
#[derive(Debug, Clone)]
pub struct Namespace {
    pub regex: regex_lite::Regex,
    pub exclusive: bool,
}

/// A checked registration.
#[derive(Debug, Clone)]
pub struct Registration {
    pub id: String,
    /// `None`: the application service wants no traffic.
    pub url: Option<String>,
    pub as_token: String,
    pub hs_token: String,
    pub sender_localpart: String,
    pub users: Vec<Namespace>,
    pub aliases: Vec<Namespace>,
    pub rooms: Vec<Namespace>,
    /// Whether its masqueraded users are rate limited (default true).
    pub rate_limited: bool,
    pub protocols: Vec<String>,
    /// Ephemeral events pushed (`receive_ephemeral`, or the MSC2409 names).
    pub receive_ephemeral: bool,
    /// MSC3202: device masquerading, to-device and device lists pushed.
    pub device_extensions: bool,
}

/// Why a registration was refused: the key at fault (empty for the file
/// as a whole) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationError {
    pub key: String,
    pub message: String,
}

impl fmt::Display for RegistrationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

fn refuse<T>(key: &str, message: impl Into<String>) -> Result<T, RegistrationError> {
    Err(RegistrationError { key: key.to_owned(), message: message.into() })
}

/// The YAML the parser gave: plain scalars keep that they were plain, so
/// `true` and `"true"` can be told apart.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Scalar { text: String, plain: bool },
    Seq(Vec<Node>),
    Map(BTreeMap<String, Node>),
}

impl Node {
    fn kind(&self) -> &'static str {
        match self {
            Node::Scalar { .. } => "a scalar",
            Node::Seq(_) => "a list",
            Node::Map(_) => "a mapping",
        }
    }
}

/// Reads one YAML document into a [`Node`]; anchors, aliases and tags are
/// refused (no registration needs them, and aliases can multiply a
/// small file into a large tree).
fn tree(text: &str) -> Result<Node, RegistrationError> {
    let mut stack: Vec<(Node, Option<String>)> = Vec::new();
    let mut root = None;
    for event in Parser::new_from_str(text) {
        let (event, span) =
            event.map_err(|e| RegistrationError { key: String::new(), message: format!("not YAML: {e}") })?;
        let line = span.start.line();
        let node = match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing | Event::DocumentEnd => continue,
            Event::DocumentStart(_) if root.is_some() => return refuse("", "more than one YAML document"),
            Event::DocumentStart(_) => continue,
            Event::Alias(_) => return refuse("", format!("line {line}: YAML aliases are not accepted")),
            Event::Scalar(value, style, anchor, tag) => {
                if anchor != 0 || tag.is_some() {
                    return refuse("", format!("line {line}: YAML anchors and tags are not accepted"));
                }
                Node::Scalar { text: value.into_owned(), plain: style == ScalarStyle::Plain }
            }
            Event::SequenceStart(anchor, ref tag) | Event::MappingStart(anchor, ref tag) => {
                if anchor != 0 || tag.is_some() {
                    return refuse("", format!("line {line}: YAML anchors and tags are not accepted"));
                }
                if stack.len() >= DEPTH_MAX {
                    return refuse("", format!("line {line}: nested deeper than {DEPTH_MAX}"));
                }
                let empty = if matches!(event, Event::SequenceStart(..)) {
                    Node::Seq(Vec::new())
                } else {
                    Node::Map(BTreeMap::new())
                };
                stack.push((empty, None));
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some((node, None)) => node,
                Some((_, Some(key))) => return refuse(&key, "a key without a value"),
                None => return refuse("", "unbalanced YAML"),
            },
        };
        // Place the finished node in its parent, or make it the root.
        match stack.last_mut() {
            None => root = Some(node),
            Some((Node::Seq(items), _)) => items.push(node),
            Some((Node::Map(map), pending)) => match pending.take() {
                None => match node {
                    Node::Scalar { text, .. } => {
                        if map.contains_key(&text) {
                            return refuse(&text, format!("line {line}: the key appears twice"));
                        }
                        *pending = Some(text);
                    }
                    other => return refuse("", format!("line {line}: a key is {}", other.kind())),
                },
                Some(key) => {
                    map.insert(key, node);
                }
            },
            Some((Node::Scalar { .. }, _)) => return refuse("", "unbalanced YAML"),
        }
    }
    root.ok_or_else(|| RegistrationError { key: String::new(), message: "the file is empty".into() })
}

/// Reads and checks a registration file's text.
pub fn parse(text: &str) -> Result<Registration, RegistrationError> {
    if text.len() > FILE_MAX_BYTES {
        return refuse("", format!("larger than {FILE_MAX_BYTES} bytes"));
    }
    let Node::Map(top) = tree(text)? else { return refuse("", "the file is not a YAML mapping") };
    let id = required_string(&top, "id")?;
    let url = match top.get("url") {
        None => {
            return refuse(
                "url",
                "missing (write `url: null` for an application service that takes no traffic)",
            )
        }
        Some(Node::Scalar { text, plain: true }) if text == "null" || text == "~" || text.is_empty() => None,
        Some(_) => {
            let url = string(&top, "url")?;
            if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() <= "https://".len() {
                return refuse("url", "must be an http:// or https:// URL, or null");
            }
            Some(url.trim_end_matches('/').to_owned())
        }
    };
    let as_token = required_string(&top, "as_token")?;
    let hs_token = required_string(&top, "hs_token")?;
    if as_token == hs_token {
        return refuse("hs_token", "must differ from as_token");
    }
    let sender_localpart = required_string(&top, "sender_localpart")?;
    if !ids::is_valid_localpart(&sender_localpart) {
        return refuse("sender_localpart", "is not a valid user ID localpart");
    }
    let Some(Node::Map(namespaces)) = top.get("namespaces") else {
        return refuse("namespaces", "missing, or not a mapping");
    };
    let users = namespace_list(namespaces, "users")?;
    let aliases = namespace_list(namespaces, "aliases")?;
    let rooms = namespace_list(namespaces, "rooms")?;
    let rate_limited = optional_bool(&top, "rate_limited")?.unwrap_or(true);
    let protocols = match top.get("protocols") {
        None => Vec::new(),
        Some(Node::Scalar { text, plain: true }) if text == "null" || text == "~" => Vec::new(),
        Some(Node::Seq(items)) => items
            .iter()
            .enumerate()
            .map(|(i, n)| match n {
                Node::Scalar { text, .. } if !text.is_empty() => Ok(text.clone()),
                _ => refuse(&format!("protocols[{i}]"), "must be a protocol name"),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return refuse("protocols", "must be a list of protocol names"),
    };
    let mut receive_ephemeral = false;
    for key in ["receive_ephemeral", "push_ephemeral", "de.sorunome.msc2409.push_ephemeral"] {
        receive_ephemeral |= optional_bool(&top, key)?.unwrap_or(false);
    }
    let device_extensions = optional_bool(&top, "org.matrix.msc3202")?.unwrap_or(false);
    Ok(Registration {
        id,
        url,
        as_token,
        hs_token,
        sender_localpart,
        users,
        aliases,
        rooms,
        rate_limited,
        protocols,
        receive_ephemeral,
        device_extensions,
    })
}

fn string(map: &BTreeMap<String, Node>, key: &str) -> Result<String, RegistrationError> {
    match map.get(key) {
        Some(Node::Scalar { text, .. }) => Ok(text.clone()),
        Some(other) => refuse(key, format!("must be a string, not {}", other.kind())),
        None => refuse(key, "missing"),
    }
}

fn required_string(map: &BTreeMap<String, Node>, key: &str) -> Result<String, RegistrationError> {
    let text = string(map, key)?;
    if text.is_empty() {
        return refuse(key, "must not be empty");
    }
    Ok(text)
}

fn optional_bool(map: &BTreeMap<String, Node>, key: &str) -> Result<Option<bool>, RegistrationError> {
    match map.get(key) {
        None => Ok(None),
        Some(Node::Scalar { text, plain: true }) if text == "true" => Ok(Some(true)),
        Some(Node::Scalar { text, plain: true }) if text == "false" => Ok(Some(false)),
        Some(_) => refuse(key, "must be true or false"),
    }
}

fn namespace_list(
    namespaces: &BTreeMap<String, Node>,
    kind: &str,
) -> Result<Vec<Namespace>, RegistrationError> {
    let key = format!("namespaces.{kind}");
    let items = match namespaces.get(kind) {
        None => return Ok(Vec::new()),
        Some(Node::Scalar { text, plain: true }) if text == "null" || text == "~" => return Ok(Vec::new()),
        Some(Node::Seq(items)) => items,
        Some(other) => return refuse(&key, format!("must be a list, not {}", other.kind())),
    };
    if items.len() > NAMESPACES_MAX {
        return refuse(&key, format!("more than {NAMESPACES_MAX} namespaces"));
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("{key}[{i}]");
        let Node::Map(ns) = item else { return refuse(&at, "must be a mapping with regex and exclusive") };
        let regex = required_string(ns, "regex")
            .map_err(|e| RegistrationError { key: format!("{at}.regex"), ..e })?;
        if regex.len() > REGEX_MAX_BYTES {
            return refuse(&format!("{at}.regex"), format!("longer than {REGEX_MAX_BYTES} bytes"));
        }
        let compiled = regex_lite::Regex::new(&format!("^(?:{regex})")).map_err(|e| RegistrationError {
            key: format!("{at}.regex"),
            message: format!("not a regex: {e}"),
        })?;
        let exclusive = match optional_bool(ns, "exclusive") {
            Ok(Some(b)) => b,
            Ok(None) => return refuse(&format!("{at}.exclusive"), "missing"),
            Err(e) => return Err(RegistrationError { key: format!("{at}.exclusive"), ..e }),
        };
        out.push(Namespace { regex: compiled, exclusive });
    }
    Ok(out)
}

impl Registration {
    /// Is `user_id` one of this application service's users (its sender
    /// or in its user namespaces)? `server_name`: this server's.
    pub fn is_user(&self, user_id: &str, server_name: &str) -> bool {
        user_id == ids::user_id(&self.sender_localpart, server_name) || matches(&self.users, user_id, false)
    }

    /// Is `user_id` in an exclusive user namespace?
    pub fn is_exclusive_user(&self, user_id: &str) -> bool {
        matches(&self.users, user_id, true)
    }

    /// Is `alias` in an alias namespace (only the exclusive ones if asked)?
    pub fn is_alias(&self, alias: &str, exclusive_only: bool) -> bool {
        matches(&self.aliases, alias, exclusive_only)
    }

    /// Is `room_id` in a room namespace?
    pub fn is_room(&self, room_id: &str) -> bool {
        matches(&self.rooms, room_id, false)
    }
}

fn matches(list: &[Namespace], value: &str, exclusive_only: bool) -> bool {
    list.iter().any(|n| (n.exclusive || !exclusive_only) && n.regex.is_match(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What mautrix-whatsapp's `-g` writes, comments and all.
    const MAUTRIX: &str = r#"# Generated by mautrix-whatsapp
id: whatsapp
url: http://localhost:29318/
as_token: "wPJ2nVj0Ol6dWEZd2zmk3r9n"
hs_token: 'Vr8fnK3Zk1bN1rUWv9kd6g8e'
sender_localpart: whatsappbot
rate_limited: false
namespaces:
    users:
    - regex: ^@whatsappbot:example\.org$
      exclusive: true
    - regex: ^@whatsapp_.*:example\.org$
      exclusive: true
    aliases: []
de.sorunome.msc2409.push_ephemeral: true
receive_ephemeral: true
org.matrix.msc3202: true
"#;

    #[test]
    fn a_bridge_generated_file_is_read() {
        let r = parse(MAUTRIX).unwrap();
        assert_eq!(r.id, "whatsapp");
        assert_eq!(r.url.as_deref(), Some("http://localhost:29318"));
        assert_eq!(
            (r.as_token.as_str(), r.hs_token.as_str()),
            ("wPJ2nVj0Ol6dWEZd2zmk3r9n", "Vr8fnK3Zk1bN1rUWv9kd6g8e")
        );
        assert!(!r.rate_limited && r.receive_ephemeral && r.device_extensions);
        assert_eq!(r.users.len(), 2);
        assert!(r.aliases.is_empty() && r.rooms.is_empty());
        assert!(r.is_user("@whatsapp_123:example.org", "example.org"));
        assert!(r.is_user("@whatsappbot:example.org", "example.org"));
        assert!(r.is_exclusive_user("@whatsapp_123:example.org"));
        assert!(!r.is_user("@alice:example.org", "example.org"));
        // Anchored at the end too where the regex says so.
        assert!(!r.is_user("@whatsapp_1:example.org.evil", "example.org"));
    }

    #[test]
    fn unanchored_regexes_match_from_the_start() {
        let r = parse(
            "id: irc\nurl: null\nas_token: a\nhs_token: h\nsender_localpart: ircbot\nnamespaces:\n  users:\n    - exclusive: false\n      regex: \"@_irc_.*\"\n  aliases:\n    - exclusive: true\n      regex: \"#_irc_.*\"\n  rooms: ~\n",
        )
        .unwrap();
        assert_eq!(r.url, None);
        assert!(r.rate_limited, "rate limited unless it says otherwise");
        assert!(r.is_user("@_irc_bob:x", "x"));
        assert!(!r.is_user("@bob_irc_:x", "x"), "not anywhere in the ID: from its start");
        assert!(!r.is_exclusive_user("@_irc_bob:x"));
        assert!(r.is_alias("#_irc_chan:x", true));
        assert!(!r.is_room("!r:x"));
    }

    #[test]
    fn bad_files_name_the_key_at_fault() {
        let base = "id: t\nurl: http://h:1\nas_token: a\nhs_token: h\nsender_localpart: bot\nnamespaces:\n  users:\n    - regex: \"@t_.*\"\n      exclusive: true\n";
        assert!(parse(base).is_ok());
        let cases: &[(&str, &str)] = &[
            ("id: t\n", "url"),
            (&base.replace("id: t\n", ""), "id"),
            (&base.replace("as_token: a", "as_token: \"\""), "as_token"),
            (&base.replace("hs_token: h", "hs_token: a"), "hs_token"),
            (&base.replace("sender_localpart: bot", "sender_localpart: Bot!"), "sender_localpart"),
            (&base.replace("url: http://h:1", "url: ftp://h"), "url"),
            (&base.replace("\"@t_.*\"", "\"@t_(\""), "namespaces.users[0].regex"),
            (&base.replace("exclusive: true", "exclusive: \"yes\""), "namespaces.users[0].exclusive"),
            (&base.replace("      exclusive: true\n", ""), "namespaces.users[0].exclusive"),
            (&format!("{base}rate_limited: maybe\n"), "rate_limited"),
            (&format!("{base}protocols: irc\n"), "protocols"),
            (&base.replace("namespaces:\n", "namespaces: 3\nx:\n"), "namespaces"),
            (&format!("{base}id: again\n"), "id"),
        ];
        for (text, key) in cases {
            let err = parse(text).expect_err(text);
            assert_eq!(err.key, *key, "{text}: {err}");
        }
        for hostile in ["", "- a\n- b\n", "a: &x [1]\nb: *x\n", "{", "a: !!str b\n", "---\na: 1\n---\nb: 2\n"]
        {
            let err = parse(hostile).expect_err(hostile);
            assert!(err.key.is_empty() || err.key == "id", "{hostile}: {err}");
        }
        assert!(parse(&"[".repeat(100)).is_err());
        assert!(parse(&"a".repeat(FILE_MAX_BYTES + 1)).is_err());
    }
}
