//! The `RoomEventFilter` of the spec's Filtering section: parsing a filter
//! given as JSON (bounded, with wrong types refused as `M_BAD_JSON`, and
//! entries of `rooms`/`senders` lists that are not room or user IDs as
//! `M_INVALID_PARAM`) and
//! matching events against it. `/messages` and `/context` take one in their
//! query; `/sync` can reuse the same parser for the room parts of a filter.
//!
//! Matching is pure: callers hand in the event's type, sender, room and
//! (only when [`RoomEventFilter::needs_content`]) its content.

use serde_json::{Map, Value};

use crate::core::ids;
use crate::error::{Error, Result};

/// Most entries in one list of a filter (`types`, `senders`, ...).
pub const FILTER_LIST_MAX: usize = 1000;
/// Longest entry of a list: identifiers and event types are at most this.
pub const FILTER_ITEM_MAX_BYTES: usize = 255;
/// Longest filter text accepted.
pub const FILTER_JSON_MAX_BYTES: usize = 65536;

/// A parsed `RoomEventFilter`. Absent include-lists (`None`) include
/// everything; exclude-lists win over include-lists.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoomEventFilter {
    /// At least 1 when given; callers clamp it to their own maximum.
    pub limit: Option<usize>,
    pub types: Option<Vec<String>>,
    pub not_types: Vec<String>,
    pub senders: Option<Vec<String>>,
    pub not_senders: Vec<String>,
    pub rooms: Option<Vec<String>>,
    pub not_rooms: Vec<String>,
    pub contains_url: Option<bool>,
    pub lazy_load_members: bool,
    pub include_redundant_members: bool,
    pub unread_thread_notifications: bool,
}

impl RoomEventFilter {
    /// Parses the `filter` query parameter: absent is the empty filter, text
    /// that is not JSON is `M_NOT_JSON`, a JSON value of the wrong shape
    /// `M_BAD_JSON`.
    pub fn from_query(text: Option<&str>) -> Result<RoomEventFilter> {
        let Some(text) = text else { return Ok(RoomEventFilter::default()) };
        if text.len() > FILTER_JSON_MAX_BYTES {
            return Err(Error::bad_json(format!("The filter is longer than {FILTER_JSON_MAX_BYTES} bytes")));
        }
        let value = crate::core::json::parse(text.as_bytes()).map_err(|e| Error::json(e, "The filter"))?;
        RoomEventFilter::parse(&value)
    }

    /// Parses a filter object. Unknown keys are ignored; `null` counts as
    /// absent.
    pub fn parse(value: &Value) -> Result<RoomEventFilter> {
        let Value::Object(obj) = value else {
            return Err(Error::bad_json("The filter must be a JSON object"));
        };
        let limit = match field(obj, "limit") {
            None => None,
            Some(v) => match v.as_u64() {
                Some(n) if n >= 1 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
                _ => return Err(Error::bad_json("filter.limit must be an integer greater than 0")),
            },
        };
        Ok(RoomEventFilter {
            limit,
            types: list(obj, "types")?,
            not_types: list(obj, "not_types")?.unwrap_or_default(),
            senders: ids_list(obj, "senders", Id::User)?,
            not_senders: ids_list(obj, "not_senders", Id::User)?.unwrap_or_default(),
            rooms: ids_list(obj, "rooms", Id::Room)?,
            not_rooms: ids_list(obj, "not_rooms", Id::Room)?.unwrap_or_default(),
            contains_url: flag(obj, "contains_url")?,
            lazy_load_members: flag(obj, "lazy_load_members")?.unwrap_or(false),
            include_redundant_members: flag(obj, "include_redundant_members")?.unwrap_or(false),
            unread_thread_notifications: flag(obj, "unread_thread_notifications")?.unwrap_or(false),
        })
    }

    /// True if events of this room may pass.
    pub fn allows_room(&self, room_id: &str) -> bool {
        !self.not_rooms.iter().any(|r| r == room_id)
            && self.rooms.as_ref().is_none_or(|list| list.iter().any(|r| r == room_id))
    }

    /// True if the filter looks at event content (so callers load it).
    pub fn needs_content(&self) -> bool {
        self.contains_url.is_some()
    }

    /// True if an event of `kind` from `sender` passes the type and sender
    /// lists. `content` is consulted only for `contains_url`; pass `None`
    /// when [`RoomEventFilter::needs_content`] is false.
    pub fn allows_event(&self, kind: &str, sender: &str, content: Option<&Value>) -> bool {
        if self.not_types.iter().any(|p| type_matches(p, kind)) {
            return false;
        }
        if !self.types.as_ref().is_none_or(|list| list.iter().any(|p| type_matches(p, kind))) {
            return false;
        }
        if self.not_senders.iter().any(|s| s == sender) {
            return false;
        }
        if !self.senders.as_ref().is_none_or(|list| list.iter().any(|s| s == sender)) {
            return false;
        }
        if let Some(want_url) = self.contains_url {
            let has_url = content.and_then(|c| c.get("url")).is_some();
            if has_url != want_url {
                return false;
            }
        }
        true
    }
}

fn field<'v>(obj: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn flag(obj: &Map<String, Value>, key: &str) -> Result<Option<bool>> {
    match field(obj, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(Error::bad_json(format!("filter.{key} must be a boolean"))),
    }
}

fn list(obj: &Map<String, Value>, key: &str) -> Result<Option<Vec<String>>> {
    let Some(v) = field(obj, key) else { return Ok(None) };
    let Value::Array(items) = v else {
        return Err(Error::bad_json(format!("filter.{key} must be a list of strings")));
    };
    if items.len() > FILTER_LIST_MAX {
        return Err(Error::bad_json(format!("filter.{key} has more than {FILTER_LIST_MAX} entries")));
    }
    items
        .iter()
        .map(|item| match item {
            Value::String(s) if s.len() <= FILTER_ITEM_MAX_BYTES => Ok(s.clone()),
            Value::String(_) => Err(Error::bad_json(format!(
                "filter.{key} entries are at most {FILTER_ITEM_MAX_BYTES} bytes"
            ))),
            _ => Err(Error::bad_json(format!("filter.{key} must be a list of strings"))),
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// What the entries of an identifier list must be.
#[derive(Clone, Copy)]
enum Id {
    User,
    Room,
}

/// A list of user or room IDs: of the wrong shape `M_BAD_JSON`, like any
/// list; an entry that is a string but not such an ID `M_INVALID_PARAM`
/// (the value, not the JSON, is wrong), as Hearth answers for IDs in
/// bodies elsewhere.
fn ids_list(obj: &Map<String, Value>, key: &str, id: Id) -> Result<Option<Vec<String>>> {
    let Some(items) = list(obj, key)? else { return Ok(None) };
    let (valid, what): (fn(&str) -> bool, &str) = match id {
        Id::User => (|s| ids::parse_user_id(s).is_some(), "user IDs"),
        Id::Room => (ids::is_valid_room_id, "room IDs"),
    };
    if let Some(bad) = items.iter().find(|s| !valid(s)) {
        return Err(Error::invalid_param(format!("filter.{key} must hold {what}; {bad:?} is not one")));
    }
    Ok(Some(items))
}

/// Event type patterns: `*` matches any run of characters, everything else
/// itself. Linear in practice: both sides are at most 255 bytes.
pub fn type_matches(pattern: &str, kind: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), kind.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // The last `*` seen and the text position it is currently matched up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            // Let the star swallow one more character and retry.
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wildcards() {
        assert!(type_matches("m.room.*", "m.room.message"));
        assert!(type_matches("*", ""));
        assert!(type_matches("m.*.message", "m.room.message"));
        assert!(type_matches("m.room.message", "m.room.message"));
        assert!(!type_matches("m.room.message", "m.room.messages"));
        assert!(!type_matches("m.room", "m.room.message"));
        assert!(type_matches("*a*b*", "xxaxxbxx"));
        assert!(!type_matches("*a*b", "xxbxxa"));
    }

    #[test]
    fn parse_and_match() {
        let f = RoomEventFilter::parse(&json!({
            "types": ["m.room.*"], "not_types": ["m.room.member"],
            "not_senders": ["@eve:x"], "limit": 5, "lazy_load_members": true, "unknown": 1,
        }))
        .unwrap();
        assert_eq!(f.limit, Some(5));
        assert!(f.lazy_load_members);
        assert!(f.allows_event("m.room.message", "@a:x", None));
        assert!(!f.allows_event("m.room.member", "@a:x", None));
        assert!(!f.allows_event("m.reaction", "@a:x", None));
        assert!(!f.allows_event("m.room.message", "@eve:x", None));
        let url = RoomEventFilter::parse(&json!({ "contains_url": true })).unwrap();
        assert!(url.needs_content());
        assert!(url.allows_event("m.room.message", "@a:x", Some(&json!({"url": "mxc://a/b"}))));
        assert!(!url.allows_event("m.room.message", "@a:x", Some(&json!({"body": "b"}))));
        let rooms = RoomEventFilter::parse(&json!({ "rooms": ["!a:x"], "not_rooms": ["!b:x"] })).unwrap();
        assert!(rooms.allows_room("!a:x") && !rooms.allows_room("!b:x") && !rooms.allows_room("!c:x"));
    }

    #[test]
    fn wrong_shapes_are_bad_json() {
        for bad in [
            json!([]),
            json!({ "types": "m.room.message" }),
            json!({ "senders": [1] }),
            json!({ "limit": 0 }),
            json!({ "limit": "5" }),
            json!({ "lazy_load_members": "yes" }),
            json!({ "types": vec!["x"; FILTER_LIST_MAX + 1] }),
            json!({ "types": ["x".repeat(FILTER_ITEM_MAX_BYTES + 1)] }),
            json!({ "rooms": [7] }),
        ] {
            assert_eq!(RoomEventFilter::parse(&bad).unwrap_err().errcode(), "M_BAD_JSON", "{bad}");
        }
        for bad in [
            json!({ "rooms": ["!a:x", "#alias:x"] }),
            json!({ "not_rooms": ["a:x"] }),
            json!({ "senders": ["bob"] }),
            json!({ "not_senders": ["@:x"] }),
            json!({ "senders": ["@bob:"] }),
        ] {
            assert_eq!(RoomEventFilter::parse(&bad).unwrap_err().errcode(), "M_INVALID_PARAM", "{bad}");
        }
        let ok =
            json!({ "rooms": ["!a:x", "!v12opaque"], "senders": ["@b:x"], "not_senders": ["@c:y:8448"] });
        assert!(RoomEventFilter::parse(&ok).is_ok());
        assert_eq!(RoomEventFilter::from_query(Some("{nope")).unwrap_err().errcode(), "M_NOT_JSON");
        assert_eq!(RoomEventFilter::from_query(None).unwrap(), RoomEventFilter::default());
        assert!(RoomEventFilter::parse(&json!({ "types": null })).unwrap().types.is_none());
    }
}
