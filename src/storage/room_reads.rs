//! Reads for the room endpoints other servers call
//! (`federation::room_reads`): whether a server has a joined member in a
//! room and which of its users have a membership (`memberships`).

use rusqlite::{params, Connection};

use crate::error::Result;

/// True if some user of `server_name` (a user ID ending in
/// `:server_name`; localparts hold no `:`) is joined to the room now.
pub fn server_has_joined_member(conn: &Connection, room_id: &str, server_name: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM memberships
                 WHERE room_id = ?1 AND membership = 'join'
                   AND substr(user_id, -(length(?2) + 1)) = ':' || ?2)",
        )?
        .query_row(params![room_id, server_name], |r| r.get(0))?)
}

/// Up to `max` users of `server_name` with any membership of the room
/// now (joined, left, invited...: everyone who has a member event), in ID
/// order.
pub fn server_members(
    conn: &Connection,
    room_id: &str,
    server_name: &str,
    max: usize,
) -> Result<Vec<String>> {
    let mut st = conn.prepare_cached(
        "SELECT user_id FROM memberships
             WHERE room_id = ?1 AND substr(user_id, -(length(?2) + 1)) = ':' || ?2
             ORDER BY user_id LIMIT ?3",
    )?;
    let rows = st.query_map(params![room_id, server_name, max as i64], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{events, state, test_conn};

    #[test]
    fn joined_member_of_a_server_exactly() {
        let c = test_conn();
        state::set_membership(&c, "@a:example.org", "!r", "join", "$1", 1).unwrap();
        state::set_membership(&c, "@b:other.org", "!r", "leave", "$2", 2).unwrap();
        state::set_membership(&c, "@c:sub.example.org:8448", "!r", "join", "$3", 3).unwrap();
        assert!(server_has_joined_member(&c, "!r", "example.org").unwrap());
        assert!(!server_has_joined_member(&c, "!r", "other.org").unwrap(), "left");
        assert!(!server_has_joined_member(&c, "!r", "ample.org").unwrap(), "a suffix of the name");
        assert!(!server_has_joined_member(&c, "!r", "sub.example.org").unwrap(), "the port is part of it");
        assert!(server_has_joined_member(&c, "!r", "sub.example.org:8448").unwrap());
        assert!(!server_has_joined_member(&c, "!other", "example.org").unwrap());
        state::set_membership(&c, "@d:other.org", "!r", "invite", "$4", 4).unwrap();
        assert_eq!(server_members(&c, "!r", "other.org", 10).unwrap(), vec!["@b:other.org", "@d:other.org"]);
        assert_eq!(server_members(&c, "!r", "other.org", 1).unwrap(), vec!["@b:other.org"]);
        assert!(server_members(&c, "!r", "nowhere.org", 10).unwrap().is_empty());
    }

    #[test]
    fn auth_chain_of_many_is_the_union() {
        let c = test_conn();
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        events::put_auth_edges(&c, "$pl", &ids(&["$create", "$member"])).unwrap();
        events::put_auth_edges(&c, "$member", &ids(&["$create"])).unwrap();
        events::put_auth_edges(&c, "$topic", &ids(&["$create", "$pl", "$member"])).unwrap();
        events::put_auth_edges(&c, "$other", &ids(&["$elsewhere"])).unwrap();
        assert_eq!(events::auth_chain_of_all(&c, &ids(&["$member"])).unwrap(), ids(&["$create"]));
        assert_eq!(
            events::auth_chain_of_all(&c, &ids(&["$pl", "$topic", "$create"])).unwrap(),
            ids(&["$create", "$member", "$pl"])
        );
        assert_eq!(
            events::auth_chain_of_all(&c, &ids(&["$pl"])).unwrap(),
            events::auth_chain(&c, "$pl").unwrap()
        );
        assert!(events::auth_chain_of_all::<String>(&c, &[]).unwrap().is_empty());
        assert!(events::auth_chain_of_all(&c, &ids(&["$unknown"])).unwrap().is_empty());
    }
}
