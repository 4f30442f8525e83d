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
