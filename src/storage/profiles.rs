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
/// whose join rule is `public` or whose history is `world_readable`.
/// Deactivated accounts are left out. At most `max` entries, by user ID.
pub fn directory_candidates(conn: &Connection, searcher: &str, max: usize) -> Result<Vec<DirectoryEntry>> {
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
         )
         SELECT DISTINCT m.user_id, p.displayname, p.avatar_url
         FROM visible v
         JOIN memberships m ON m.room_id = v.room_id AND m.membership = 'join'
         LEFT JOIN profiles p ON p.user_id = m.user_id
         LEFT JOIN users u ON u.user_id = m.user_id
         WHERE coalesce(u.deactivated, 0) = 0
         ORDER BY m.user_id
         LIMIT ?2",
    )?;
    let max = i64::try_from(max).unwrap_or(i64::MAX);
    let rows = stmt.query_map(params![searcher, max], |r| {
        Ok(DirectoryEntry {
            user_id: r.get(0)?,
            profile: Profile { displayname: r.get(1)?, avatar_url: r.get(2)? },
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
