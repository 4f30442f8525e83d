//! Ignored users: the `ignored_users` of a user's `m.ignored_user_list`
//! global account data, read where events are delivered (`/sync`, and any
//! other reader that must leave out what ignored users send).
//!
//! The list is account data like any other (`storage::account_data`); this
//! file only reads it. A list that cannot be parsed counts as empty (the
//! account data handler refuses non-objects, so only a damaged row can be).

use std::collections::HashSet;

use rusqlite::Connection;
use serde_json::Value;

use crate::error::Result;
use crate::storage::account_data;

/// The account data type holding the list.
pub const IGNORED_USER_LIST: &str = "m.ignored_user_list";

/// The users `user_id` ignores (one indexed lookup).
pub fn ignored_users(conn: &Connection, user_id: &str) -> Result<HashSet<String>> {
    let Some(text) = account_data::get(conn, user_id, "", IGNORED_USER_LIST)? else {
        return Ok(HashSet::new());
    };
    Ok(parse(&text))
}

/// True if `user_id` ignores `sender`. For one event; a reader of many
/// events should call [`ignored_users`] once.
pub fn is_ignored(conn: &Connection, user_id: &str, sender: &str) -> Result<bool> {
    Ok(sender != user_id && ignored_users(conn, user_id)?.contains(sender))
}

/// The user IDs of a stored list's `ignored_users` object.
fn parse(text: &str) -> HashSet<String> {
    match serde_json::from_str::<Value>(text) {
        Ok(v) => v
            .get("ignored_users")
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default(),
        Err(e) => {
            crate::log::warn(format_args!("unreadable {IGNORED_USER_LIST}: {e}; ignoring nobody"));
            HashSet::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_conn;

    #[test]
    fn reads_the_list_and_tolerates_bad_shapes() {
        let c = test_conn();
        assert!(ignored_users(&c, "@a:x").unwrap().is_empty());
        account_data::put(&c, "@a:x", "", IGNORED_USER_LIST, r#"{"ignored_users":{"@b:x":{}}}"#, 1).unwrap();
        assert!(is_ignored(&c, "@a:x", "@b:x").unwrap());
        assert!(!is_ignored(&c, "@a:x", "@c:x").unwrap());
        account_data::put(&c, "@a:x", "", IGNORED_USER_LIST, r#"{"ignored_users":[]}"#, 2).unwrap();
        assert!(ignored_users(&c, "@a:x").unwrap().is_empty());
    }
}
