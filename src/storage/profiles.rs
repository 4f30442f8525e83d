//! Profiles of local users: `profiles`.

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::Result;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

pub fn get(conn: &Connection, user_id: &str) -> Result<Option<Profile>> {
    Ok(conn
        .prepare_cached("SELECT displayname, avatar_url FROM profiles WHERE user_id = ?1")?
        .query_row([user_id], |r| Ok(Profile { displayname: r.get(0)?, avatar_url: r.get(1)? }))
        .optional()?)
}

pub fn set_displayname(conn: &Connection, user_id: &str, name: Option<&str>) -> Result<()> {
    conn.execute(
        "INSERT INTO profiles (user_id, displayname) VALUES (?1, ?2)
         ON CONFLICT (user_id) DO UPDATE SET displayname = excluded.displayname",
        params![user_id, name],
    )?;
    Ok(())
}

pub fn set_avatar_url(conn: &Connection, user_id: &str, url: Option<&str>) -> Result<()> {
    conn.execute(
        "INSERT INTO profiles (user_id, avatar_url) VALUES (?1, ?2)
         ON CONFLICT (user_id) DO UPDATE SET avatar_url = excluded.avatar_url",
        params![user_id, url],
    )?;
    Ok(())
}

/// A user the directory may show, with their profile.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectoryEntry {
    pub user_id: String,
    pub profile: Profile,
}

/// The users `searcher` may find in the user directory: everyone joined to
/// a room the searcher is joined to (the searcher included), or to a room
/// whose join rule is `public` or whose history is `world_readable`; with
/// `all_local`, every local account as well. Deactivated accounts are left
/// out. Users of other servers have the display name and avatar their
/// member events carry, as their servers sent them. At most `max`
/// entries, by user ID.
pub fn directory_candidates(
    conn: &Connection,
    searcher: &str,
    all_local: bool,
    max: usize,
) -> Result<Vec<DirectoryEntry>> {
    let mut stmt = conn.prepare_cached(
        "WITH visible(room_id) AS (
             SELECT room_id FROM memberships WHERE user_id = ?1 AND membership = 'join'
             UNION
             SELECT r.room_id FROM rooms r
             JOIN current_state cs
               ON cs.room_id = r.room_id AND cs.type = 'm.room.join_rules' AND cs.state_key = ''
             JOIN events e ON e.event_id = cs.event_id
             WHERE json_extract(e.pdu, '$.content.join_rule') = 'public'
             UNION
             SELECT r.room_id FROM rooms r
             JOIN current_state cs
               ON cs.room_id = r.room_id AND cs.type = 'm.room.history_visibility' AND cs.state_key = ''
             JOIN events e ON e.event_id = cs.event_id
             WHERE json_extract(e.pdu, '$.content.history_visibility') = 'world_readable'
         ),
         found(user_id, event_id, displayname) AS (
             SELECT m.user_id, m.event_id, m.displayname FROM visible v
             JOIN memberships m ON m.room_id = v.room_id AND m.membership = 'join'
             UNION ALL
             SELECT user_id, NULL, NULL FROM users WHERE ?3
         ),
         grouped(user_id, event_id, displayname) AS (
             SELECT user_id, max(event_id), max(displayname) FROM found GROUP BY user_id
         )
         SELECT g.user_id,
                CASE WHEN u.user_id IS NULL AND p.user_id IS NULL THEN g.displayname ELSE p.displayname END,
                CASE WHEN u.user_id IS NULL AND p.user_id IS NULL THEN json_extract(coalesce(
                    (SELECT pdu FROM events WHERE event_id = g.event_id),
                    (SELECT pdu FROM event_outliers WHERE event_id = g.event_id)), '$.content.avatar_url')
                ELSE p.avatar_url END
         FROM grouped g
         LEFT JOIN profiles p ON p.user_id = g.user_id
         LEFT JOIN users u ON u.user_id = g.user_id
         WHERE coalesce(u.deactivated, 0) = 0
         ORDER BY g.user_id
         LIMIT ?2",
    )?;
    let max = i64::try_from(max).unwrap_or(i64::MAX);
    let rows = stmt.query_map(params![searcher, max, all_local], |r| {
        Ok(DirectoryEntry {
            user_id: r.get(0)?,
            profile: Profile { displayname: r.get(1)?, avatar_url: r.get(2)? },
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{events, rooms, state, test_conn, users};

    /// A room whose current state holds one event of `kind` with `content`.
    fn room_with(c: &Connection, room_id: &str, pos: i64, kind: &str, content: &str) {
        let room = rooms::Room {
            room_id: room_id.into(),
            version: "11".into(),
            creator: "@a:x".into(),
            created_ts: 0,
            state_group: 0,
            depth: 1,
            published: false,
        };
        rooms::create(c, &room).unwrap();
        let event_id = format!("$e{pos}");
        let e = events::StoredEvent {
            pos,
            event_id: event_id.clone(),
            room_id: room_id.into(),
            kind: kind.into(),
            state_key: Some(String::new()),
            sender: "@a:x".into(),
            origin_ts: 0,
            depth: 1,
            state_before: 0,
            pdu: format!("{{\"type\":\"{kind}\",\"content\":{content}}}"),
            redacted_by: None,
            txn_device: None,
            txn_id: None,
        };
        events::insert(c, &e).unwrap();
        state::set_current(c, room_id, kind, "", &event_id).unwrap();
    }

    #[test]
    fn directory_candidates_are_room_mates_and_members_of_open_rooms() {
        let c = test_conn();
        room_with(&c, "!private:x", 1, "m.room.join_rules", r#"{"join_rule":"invite"}"#);
        room_with(&c, "!public:x", 2, "m.room.join_rules", r#"{"join_rule":"public"}"#);
        room_with(
            &c,
            "!readable:x",
            3,
            "m.room.history_visibility",
            r#"{"history_visibility":"world_readable"}"#,
        );
        room_with(&c, "!hidden:x", 4, "m.room.join_rules", r#"{"join_rule":"knock"}"#);
        for (user, room, membership) in [
            ("@me:x", "!private:x", "join"),
            ("@mate:x", "!private:x", "join"),
            ("@invited:x", "!private:x", "invite"),
            ("@pub:x", "!public:x", "join"),
            ("@reader:x", "!readable:x", "join"),
            ("@hidden:x", "!hidden:x", "join"),
            ("@gone:x", "!public:x", "join"),
        ] {
            state::set_membership(&c, user, room, membership, "$m", 1).unwrap();
        }
        users::create(&c, "@gone:x", None, false, 0).unwrap();
        users::deactivate(&c, "@gone:x").unwrap();
        set_displayname(&c, "@mate:x", Some("Mate")).unwrap();
        let ids = |max| -> Vec<String> {
            directory_candidates(&c, "@me:x", false, max).unwrap().into_iter().map(|e| e.user_id).collect()
        };
        assert_eq!(ids(100), ["@mate:x", "@me:x", "@pub:x", "@reader:x"]);
        assert_eq!(ids(2), ["@mate:x", "@me:x"]);
        let mate = &directory_candidates(&c, "@me:x", false, 1).unwrap()[0];
        assert_eq!(mate.profile.displayname.as_deref(), Some("Mate"));
        // A stranger sees only the open rooms.
        let seen: Vec<String> = directory_candidates(&c, "@stranger:x", false, 100)
            .unwrap()
            .into_iter()
            .map(|e| e.user_id)
            .collect();
        assert_eq!(seen, ["@pub:x", "@reader:x"]);
        // With every local user searchable, the accounts in no visible room
        // come in too (not the deactivated one).
        users::create(&c, "@lonely:x", None, false, 0).unwrap();
        users::create(&c, "@mate:x", None, false, 0).unwrap();
        let all: Vec<String> = directory_candidates(&c, "@stranger:x", true, 100)
            .unwrap()
            .into_iter()
            .map(|e| e.user_id)
            .collect();
        assert_eq!(all, ["@lonely:x", "@mate:x", "@pub:x", "@reader:x"]);
    }
}
