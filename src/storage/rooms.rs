//! Rooms, aliases and the public directory: `rooms`, `room_aliases`.

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::error::Result;

#[derive(Debug, Clone, PartialEq)]
pub struct Room {
    pub room_id: String,
    pub version: String,
    pub creator: String,
    pub created_ts: i64,
    pub state_group: i64,
    pub depth: i64,
    pub published: bool,
}

fn from_row(r: &Row) -> rusqlite::Result<Room> {
    Ok(Room {
        room_id: r.get(0)?,
        version: r.get(1)?,
        creator: r.get(2)?,
        created_ts: r.get(3)?,
        state_group: r.get(4)?,
        depth: r.get(5)?,
        published: r.get(6)?,
    })
}

const COLUMNS: &str = "room_id, version, creator, created_ts, state_group, depth, published";

pub fn create(conn: &Connection, room: &Room) -> Result<()> {
    conn.execute(
        &format!("INSERT INTO rooms ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
        params![
            room.room_id,
            room.version,
            room.creator,
            room.created_ts,
            room.state_group,
            room.depth,
            room.published
        ],
    )?;
    Ok(())
}

pub fn get(conn: &Connection, room_id: &str) -> Result<Option<Room>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM rooms WHERE room_id = ?1"))?
        .query_row([room_id], from_row)
        .optional()?)
}

/// Moves the room's head after an event: its current state group and depth.
pub fn set_head(conn: &Connection, room_id: &str, state_group: i64, depth: i64) -> Result<()> {
    conn.prepare_cached("UPDATE rooms SET state_group = ?2, depth = max(depth, ?3) WHERE room_id = ?1")?
        .execute(params![room_id, state_group, depth])?;
    Ok(())
}

pub fn set_published(conn: &Connection, room_id: &str, published: bool) -> Result<bool> {
    Ok(conn.execute("UPDATE rooms SET published = ?2 WHERE room_id = ?1", params![room_id, published])? == 1)
}

/// Rooms in the public directory, in a stable order for pagination.
pub fn published(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt =
        conn.prepare("SELECT room_id FROM rooms WHERE published = 1 ORDER BY created_ts, room_id")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Returns false if the alias is taken.
pub fn put_alias(conn: &Connection, alias: &str, room_id: &str, creator: &str, now: i64) -> Result<bool> {
    Ok(conn.execute(
        "INSERT INTO room_aliases (alias, room_id, creator, created_ts) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (alias) DO NOTHING",
        params![alias, room_id, creator, now],
    )? == 1)
}

/// The room and creator of an alias.
pub fn get_alias(conn: &Connection, alias: &str) -> Result<Option<(String, String)>> {
    Ok(conn
        .query_row("SELECT room_id, creator FROM room_aliases WHERE alias = ?1", [alias], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?)
}

pub fn delete_alias(conn: &Connection, alias: &str) -> Result<bool> {
    Ok(conn.execute("DELETE FROM room_aliases WHERE alias = ?1", [alias])? == 1)
}

pub fn aliases_of(conn: &Connection, room_id: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT alias FROM room_aliases WHERE room_id = ?1 ORDER BY alias")?;
    let rows = stmt.query_map([room_id], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Rooms in the public directory with their creation time, in the order of
/// [`published`]: `(created_ts, room_id)` is the key directory pagination
/// tokens name, so a page boundary survives rooms joining or leaving the list.
pub fn published_keys(conn: &Connection) -> Result<Vec<(i64, String)>> {
    let mut stmt = conn
        .prepare("SELECT created_ts, room_id FROM rooms WHERE published = 1 ORDER BY created_ts, room_id")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
