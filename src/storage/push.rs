//! Push: `push_rules`, `pushers`, `notifications`, `push_read_marks`,
//! `push_outbox`.
//!
//! Unread counts are not stored: they are counted from the notification
//! rows after the user's read position in the room, which is the newest of
//! their `m.read` and `m.read.private` receipts (unthreaded, or of the
//! notification's thread) and of their own newest event there. So a
//! receipt needs no extra write to reset the counts.
//!
//! A pusher belongs to the device that set it (`device_id`): it goes when
//! that device is deleted (a foreign key cascade), and a pusher's pending
//! pushes go with the pusher (a trigger), whichever path deleted it.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

use crate::error::Result;
use crate::push::rules::{Kind, Stored};

/// Unread notification rows examined per room when counting; past it the
/// counts stop growing (clients show "99+" long before).
pub const UNREAD_SCAN_MAX: i64 = 10_000;

// ------------------------------------------------------------------ rules

fn json_list(text: Option<String>) -> Option<Vec<Value>> {
    text.and_then(|t| serde_json::from_str::<Vec<Value>>(&t).ok())
}

/// The account's stored rows, each kind's own rules most important first.
pub fn rules(conn: &Connection, user_id: &str) -> Result<Vec<Stored>> {
    let mut stmt = conn.prepare_cached(
        "SELECT kind, rule_id, is_default, enabled, actions, conditions, pattern FROM push_rules
         WHERE user_id = ?1 ORDER BY priority DESC, rule_id",
    )?;
    let rows = stmt.query_map([user_id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, bool>(2)?,
            r.get::<_, bool>(3)?,
            r.get::<_, Option<String>>(4)?,
            r.get::<_, Option<String>>(5)?,
            r.get::<_, Option<String>>(6)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (kind, rule_id, is_default, enabled, actions, conditions, pattern) = row?;
        let Some(kind) = Kind::parse(&kind) else { continue };
        out.push(Stored {
            kind,
            rule_id,
            is_default,
            enabled,
            actions: json_list(actions),
            conditions: json_list(conditions).unwrap_or_default(),
            pattern,
        });
    }
    Ok(out)
}

/// Stores a rule or a change to a default rule (replacing the row).
pub fn put_rule(conn: &Connection, user_id: &str, rule: &Stored, priority: i64) -> Result<()> {
    let actions = rule.actions.as_ref().map(|a| Value::Array(a.clone()).to_string());
    let conditions = (!rule.conditions.is_empty()).then(|| Value::Array(rule.conditions.clone()).to_string());
    conn.prepare_cached(
        "INSERT INTO push_rules (user_id, kind, rule_id, is_default, priority, enabled, actions, conditions, pattern)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (user_id, kind, rule_id) DO UPDATE SET
             is_default = excluded.is_default, priority = excluded.priority, enabled = excluded.enabled,
             actions = excluded.actions, conditions = excluded.conditions, pattern = excluded.pattern",
    )?
    .execute(params![
        user_id,
        rule.kind.as_str(),
        rule.rule_id,
        rule.is_default,
        priority,
        rule.enabled,
        actions,
        conditions,
        rule.pattern
    ])?;
    Ok(())
}

/// Changes `enabled` and `actions` of one of the account's own rules;
/// false if there is no such rule.
pub fn update_own_rule(
    conn: &Connection,
    user_id: &str,
    kind: Kind,
    rule_id: &str,
    enabled: bool,
    actions: &[Value],
) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "UPDATE push_rules SET enabled = ?4, actions = ?5
             WHERE user_id = ?1 AND kind = ?2 AND rule_id = ?3 AND is_default = 0",
        )?
        .execute(params![
            user_id,
            kind.as_str(),
            rule_id,
            enabled,
            Value::Array(actions.to_vec()).to_string()
        ])?
        > 0)
}

/// Deletes a stored row; false if there was none.
pub fn delete_rule(conn: &Connection, user_id: &str, kind: Kind, rule_id: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("DELETE FROM push_rules WHERE user_id = ?1 AND kind = ?2 AND rule_id = ?3")?
        .execute(params![user_id, kind.as_str(), rule_id])?
        > 0)
}

// ---------------------------------------------------------------- pushers

#[derive(Debug, Clone, PartialEq)]
pub struct Pusher {
    pub user_id: String,
    pub app_id: String,
    pub pushkey: String,
    pub kind: String,
    pub app_display_name: String,
    pub device_display_name: String,
    pub profile_tag: Option<String>,
    pub lang: String,
    /// The `data` object as JSON text (with its `url`).
    pub data: String,
    pub pushkey_ts: i64,
    /// The device that set it; `None` for pushers set before devices were
    /// recorded (schema version 1).
    pub device_id: Option<String>,
}

const PUSHER_COLUMNS: &str = "user_id, app_id, pushkey, kind, app_display_name, device_display_name, \
                              profile_tag, lang, data, pushkey_ts, device_id";

fn pusher_row(r: &rusqlite::Row) -> rusqlite::Result<Pusher> {
    Ok(Pusher {
        user_id: r.get(0)?,
        app_id: r.get(1)?,
        pushkey: r.get(2)?,
        kind: r.get(3)?,
        app_display_name: r.get(4)?,
        device_display_name: r.get(5)?,
        profile_tag: r.get(6)?,
        lang: r.get(7)?,
        data: r.get(8)?,
        pushkey_ts: r.get(9)?,
        device_id: r.get(10)?,
    })
}

pub fn pushers(conn: &Connection, user_id: &str) -> Result<Vec<Pusher>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {PUSHER_COLUMNS} FROM pushers WHERE user_id = ?1 ORDER BY app_id, pushkey"
    ))?;
    let rows = stmt.query_map([user_id], pusher_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn pusher(conn: &Connection, user_id: &str, app_id: &str, pushkey: &str) -> Result<Option<Pusher>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {PUSHER_COLUMNS} FROM pushers WHERE user_id = ?1 AND app_id = ?2 AND pushkey = ?3"
        ))?
        .query_row(params![user_id, app_id, pushkey], pusher_row)
        .optional()?)
}

/// The `(app_id, pushkey)` of each of a user's pushers.
pub fn pusher_keys(conn: &Connection, user_id: &str) -> Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare_cached("SELECT app_id, pushkey FROM pushers WHERE user_id = ?1")?;
    let rows = stmt.query_map([user_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn count_pushers(conn: &Connection, user_id: &str) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM pushers WHERE user_id = ?1")?
        .query_row([user_id], |r| r.get(0))?)
}

/// Creates or replaces a pusher; it now belongs to `p.device_id`.
pub fn put_pusher(conn: &Connection, p: &Pusher) -> Result<()> {
    // An upsert, not `INSERT OR REPLACE`: a replaced row is a delete, which
    // (with recursive triggers) would drop the pusher's pending pushes.
    conn.prepare_cached(&format!(
        "INSERT INTO pushers ({PUSHER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET
             kind = excluded.kind, app_display_name = excluded.app_display_name,
             device_display_name = excluded.device_display_name, profile_tag = excluded.profile_tag,
             lang = excluded.lang, data = excluded.data, pushkey_ts = excluded.pushkey_ts,
             device_id = excluded.device_id"
    ))?
    .execute(params![
        p.user_id,
        p.app_id,
        p.pushkey,
        p.kind,
        p.app_display_name,
        p.device_display_name,
        p.profile_tag,
        p.lang,
        p.data,
        p.pushkey_ts,
        p.device_id
    ])?;
    // Its queued pushes go where it now points.
    conn.prepare_cached(&format!(
        "UPDATE push_outbox SET destination = ifnull((SELECT {URL_OF_DATA} FROM (SELECT ?4 AS data) p), '')
         WHERE user_id = ?1 AND app_id = ?2 AND pushkey = ?3"
    ))?
    .execute(params![p.user_id, p.app_id, p.pushkey, p.data])?;
    Ok(())
}

/// A pusher's gateway URL in SQL, from its `data` column (as `p.data`):
/// `data.url`, `''` if there is none (or the JSON is broken).
const URL_OF_DATA: &str =
    "CAST(ifnull(CASE WHEN json_valid(p.data) THEN json_extract(p.data, '$.url') END, '') AS TEXT)";

/// Deletes a pusher (and, by trigger, its pending pushes); false if there
/// was none.
pub fn delete_pusher(conn: &Connection, user_id: &str, app_id: &str, pushkey: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("DELETE FROM pushers WHERE user_id = ?1 AND app_id = ?2 AND pushkey = ?3")?
        .execute(params![user_id, app_id, pushkey])?
        > 0)
}

/// Deletes the pushers of other users with this app ID and pushkey (a
/// device now pushed for a different account), with their pending pushes.
pub fn delete_pushers_of_others(conn: &Connection, user_id: &str, app_id: &str, pushkey: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM pushers WHERE user_id != ?1 AND app_id = ?2 AND pushkey = ?3")?
        .execute(params![user_id, app_id, pushkey])?;
    Ok(())
}

/// Deletes every pusher of the user not set by `keep` (all of them for
/// `None`), those whose device is unknown included: when a user signs
/// their other sessions out, no pusher of theirs may go on receiving
/// notifications. Returns how many went.
pub fn delete_pushers_except_device(conn: &Connection, user_id: &str, keep: Option<&str>) -> Result<usize> {
    Ok(conn
        .prepare_cached("DELETE FROM pushers WHERE user_id = ?1 AND device_id IS NOT ?2")?
        .execute(params![user_id, keep])?)
}

// ---------------------------------------------------------- notifications

/// The joined members of a room with their display names there.
pub fn joined_with_names(conn: &Connection, room_id: &str) -> Result<Vec<(String, Option<String>)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT user_id, displayname FROM memberships WHERE room_id = ?1 AND membership = 'join'",
    )?;
    let rows = stmt.query_map([room_id], |r| {
        let name = match r.get::<_, rusqlite::types::Value>(1)? {
            rusqlite::types::Value::Text(t) => Some(t),
            _ => None,
        };
        Ok((r.get(0)?, name))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The slots of a room's users in its notification bitmaps.
pub fn slots(conn: &Connection, room_id: &str) -> Result<HashMap<String, usize>> {
    let mut stmt = conn.prepare_cached("SELECT user_id, slot FROM push_slots WHERE room_id = ?1")?;
    let rows = stmt.query_map([room_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as usize)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Gives a user the next free slot in a room.
pub fn new_slot(conn: &Connection, room_id: &str, user_id: &str) -> Result<usize> {
    let slot: i64 = conn
        .prepare_cached(
            "INSERT INTO push_slots (room_id, user_id, slot)
             SELECT ?1, ?2, coalesce(max(slot) + 1, 0) FROM push_slots WHERE room_id = ?1
             RETURNING slot",
        )?
        .query_row([room_id, user_id], |r| r.get(0))?;
    Ok(slot as usize)
}

/// The slots of one user, by room.
fn slots_of_user(conn: &Connection, user_id: &str) -> Result<HashMap<String, usize>> {
    let mut stmt = conn.prepare_cached("SELECT room_id, slot FROM push_slots WHERE user_id = ?1")?;
    let rows = stmt.query_map([user_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as usize)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn slot_of(conn: &Connection, room_id: &str, user_id: &str) -> Result<Option<usize>> {
    Ok(conn
        .prepare_cached("SELECT slot FROM push_slots WHERE room_id = ?1 AND user_id = ?2")?
        .query_row([room_id, user_id], |r| r.get::<_, i64>(0))
        .optional()?
        .map(|s| s as usize))
}

/// Sets bit `slot` of a bitmap, growing it as needed.
pub fn set_bit(bits: &mut Vec<u8>, slot: usize) {
    if bits.len() <= slot / 8 {
        bits.resize(slot / 8 + 1, 0);
    }
    bits[slot / 8] |= 1 << (slot % 8);
}

fn has_bit(bits: &[u8], slot: usize) -> bool {
    bits.get(slot / 8).is_some_and(|b| b & (1 << (slot % 8)) != 0)
}

/// The users an event notified with one outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationSet {
    pub room_id: String,
    /// The event's stream position.
    pub pos: i64,
    /// The matched rule's actions, JSON text.
    pub actions: String,
    pub highlight: bool,
    /// `main`, or the thread root's event ID.
    pub thread_id: String,
    /// Bitmap of the users' slots.
    pub users: Vec<u8>,
    pub ts: i64,
}

pub fn insert_notifications(conn: &Connection, n: &NotificationSet) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO notifications (room_id, pos, actions, highlight, thread_id, users, ts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![n.room_id, n.pos, n.actions, n.highlight, n.thread_id, n.users, n.ts])?;
    Ok(())
}

/// One user's notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub pos: i64,
    pub room_id: String,
    pub thread_id: String,
    pub highlight: bool,
    pub actions: String,
    pub ts: i64,
}

/// Notification rows (of all users) examined per `/notifications` page:
/// past it the page ends early and its token continues.
pub const NOTIFICATIONS_SCAN_MAX: usize = 5_000;

/// A user's notifications before position `before`, newest first, at most
/// `limit`; and where to continue if there may be more.
pub fn notifications(
    conn: &Connection,
    user_id: &str,
    before: i64,
    limit: usize,
    only_highlight: bool,
) -> Result<(Vec<Notification>, Option<i64>)> {
    let slots = slots_of_user(conn, user_id)?;
    if slots.is_empty() {
        return Ok((Vec::new(), None));
    }
    let mut stmt = conn.prepare_cached(
        "SELECT room_id, pos, actions, highlight, thread_id, users, ts FROM notifications
         WHERE pos < ?1 AND (?2 = 0 OR highlight = 1) ORDER BY pos DESC LIMIT ?3",
    )?;
    let mut rows = stmt.query(params![before, only_highlight, NOTIFICATIONS_SCAN_MAX as i64])?;
    let mut out = Vec::new();
    let mut scanned = 0;
    let mut last = before;
    while let Some(r) = rows.next()? {
        scanned += 1;
        let room_id: String = r.get(0)?;
        last = r.get(1)?;
        let Some(&slot) = slots.get(&room_id) else { continue };
        if !has_bit(r.get_ref(5)?.as_blob().map_err(rusqlite::Error::from)?, slot) {
            continue;
        }
        out.push(Notification {
            pos: last,
            room_id,
            thread_id: r.get(4)?,
            highlight: r.get(3)?,
            actions: r.get(2)?,
            ts: r.get(6)?,
        });
        if out.len() == limit {
            return Ok((out, Some(last)));
        }
    }
    let next = (scanned == NOTIFICATIONS_SCAN_MAX).then_some(last);
    Ok((out, next))
}

/// The ID of the event at a stream position.
pub fn event_id_at(conn: &Connection, pos: i64) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT event_id FROM events WHERE pos = ?1")?
        .query_row([pos], |r| r.get(0))
        .optional()?)
}

/// Sending an event reads the room up to it.
pub fn set_read_mark(conn: &Connection, user_id: &str, room_id: &str, pos: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO push_read_marks (user_id, room_id, pos) VALUES (?1, ?2, ?3)
         ON CONFLICT (user_id, room_id) DO UPDATE SET pos = max(pos, excluded.pos)",
    )?
    .execute(params![user_id, room_id, pos])?;
    Ok(())
}

/// How far a user has read a room: everything up to `unthreaded`, and each
/// thread (`main` for the main timeline) up to its entry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadUpTo {
    pub unthreaded: i64,
    pub threads: HashMap<String, i64>,
}

impl ReadUpTo {
    /// True if the notification at `pos` in `thread_id` has been read.
    pub fn has_read(&self, pos: i64, thread_id: &str) -> bool {
        pos <= self.unthreaded || self.threads.get(thread_id).is_some_and(|&p| pos <= p)
    }
}

/// The user's read position in a room, from their `m.read` and
/// `m.read.private` receipts (the further ahead counts) and their own
/// newest event.
pub fn read_up_to(conn: &Connection, user_id: &str, room_id: &str) -> Result<ReadUpTo> {
    let mut out = ReadUpTo::default();
    let mut stmt = conn.prepare_cached(
        "SELECT r.thread_id, max(e.pos) FROM receipts r JOIN events e ON e.event_id = r.event_id
         WHERE r.room_id = ?1 AND r.user_id = ?2 AND r.receipt_type IN ('m.read', 'm.read.private')
         GROUP BY r.thread_id",
    )?;
    let rows = stmt.query_map([room_id, user_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    for row in rows {
        let (thread, pos) = row?;
        if thread.is_empty() {
            out.unthreaded = out.unthreaded.max(pos);
        } else {
            out.threads.insert(thread, pos);
        }
    }
    let sent: Option<i64> = conn
        .prepare_cached("SELECT pos FROM push_read_marks WHERE user_id = ?1 AND room_id = ?2")?
        .query_row([user_id, room_id], |r| r.get(0))
        .optional()?;
    out.unthreaded = out.unthreaded.max(sent.unwrap_or(0));
    Ok(out)
}

/// Unread notifications of a user in a room, per thread (`main` for the
/// main timeline): `(thread_id, notification_count, highlight_count)`,
/// threads in no particular order, only those with unread notifications.
pub fn unread_counts_by_thread(
    conn: &Connection,
    user_id: &str,
    room_id: &str,
) -> Result<Vec<(String, u64, u64)>> {
    let Some(slot) = slot_of(conn, room_id, user_id)? else { return Ok(Vec::new()) };
    let read = read_up_to(conn, user_id, room_id)?;
    let mut stmt = conn.prepare_cached(
        "SELECT pos, thread_id, highlight, users FROM notifications
         WHERE room_id = ?1 AND pos > ?2 ORDER BY pos DESC LIMIT ?3",
    )?;
    let mut rows = stmt.query(params![room_id, read.unthreaded, UNREAD_SCAN_MAX])?;
    let mut counts: HashMap<String, (u64, u64)> = HashMap::new();
    while let Some(r) = rows.next()? {
        if !has_bit(r.get_ref(3)?.as_blob().map_err(rusqlite::Error::from)?, slot) {
            continue;
        }
        let (pos, thread): (i64, String) = (r.get(0)?, r.get(1)?);
        if read.has_read(pos, &thread) {
            continue;
        }
        let c = counts.entry(thread).or_default();
        c.0 += 1;
        c.1 += u64::from(r.get::<_, bool>(2)?);
    }
    Ok(counts.into_iter().map(|(t, (n, h))| (t, n, h)).collect())
}

/// Unread notifications of a user in a room, all threads together:
/// `(notification_count, highlight_count)` for `/sync`'s
/// `unread_notifications`.
pub fn unread_counts(conn: &Connection, user_id: &str, room_id: &str) -> Result<(u64, u64)> {
    Ok(unread_counts_by_thread(conn, user_id, room_id)?
        .into_iter()
        .fold((0, 0), |(n, h), (_, tn, th)| (n + tn, h + th)))
}

/// Unread notifications of a user across all rooms (a push's badge).
pub fn unread_total(conn: &Connection, user_id: &str) -> Result<u64> {
    let mut total = 0;
    for room in slots_of_user(conn, user_id)?.keys() {
        total += unread_counts(conn, user_id, room)?.0;
    }
    Ok(total)
}

/// Forgets notifications older than `before_ts`.
pub fn prune_notifications(conn: &Connection, before_ts: i64) -> Result<usize> {
    Ok(conn.prepare_cached("DELETE FROM notifications WHERE ts < ?1")?.execute([before_ts])?)
}

// ----------------------------------------------------------------- outbox

/// A push waiting to go to a gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct Push {
    pub id: i64,
    pub user_id: String,
    pub app_id: String,
    pub pushkey: String,
    pub event_id: String,
    /// The matched rule's tweaks, a JSON object.
    pub tweaks: String,
    pub attempts: i64,
}

/// Queues a push (in the transaction that stored the event).
pub fn enqueue(
    conn: &Connection,
    user_id: &str,
    (app_id, pushkey): (&str, &str),
    event_id: &str,
    tweaks: &str,
    now: i64,
) -> Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO push_outbox (user_id, app_id, pushkey, event_id, tweaks, attempts, next_try_ts, destination)
         VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ifnull((SELECT {URL_OF_DATA} FROM pushers p
             WHERE p.user_id = ?1 AND p.app_id = ?2 AND p.pushkey = ?3), ''))"
    ))?
    .execute(params![user_id, app_id, pushkey, event_id, tweaks, now])?;
    Ok(())
}

/// Gateway URLs with pushes due at `now`, the soonest due first, at most
/// `limit`. The distinct destinations are found by walking the
/// `(destination, next_try_ts)` index one destination at a time (a few
/// index seeks per gateway), not by reading every queued push: this runs
/// after every commit, and a gateway that is down may have thousands.
pub fn due_gateways(conn: &Connection, now: i64, limit: usize) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "WITH RECURSIVE d(dest) AS (
             SELECT (SELECT min(destination) FROM push_outbox)
             UNION ALL
             SELECT (SELECT min(destination) FROM push_outbox WHERE destination > d.dest) FROM d
             WHERE d.dest IS NOT NULL
         )
         SELECT dest FROM (SELECT dest, (SELECT min(next_try_ts) FROM push_outbox WHERE destination = d.dest) AS due
                           FROM d WHERE dest IS NOT NULL)
         WHERE due <= ?1 ORDER BY due, dest LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![now, limit as i64], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Up to `limit` pushes due at `now` for the gateway at `url`, oldest first.
pub fn due_at_gateway(conn: &Connection, url: &str, now: i64, limit: usize) -> Result<Vec<Push>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, user_id, app_id, pushkey, event_id, tweaks, attempts FROM push_outbox
         WHERE destination = ?2 AND next_try_ts <= ?1 ORDER BY next_try_ts, id LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![now, url, limit as i64], |r| {
        Ok(Push {
            id: r.get(0)?,
            user_id: r.get(1)?,
            app_id: r.get(2)?,
            pushkey: r.get(3)?,
            event_id: r.get(4)?,
            tweaks: r.get(5)?,
            attempts: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// When the next push falls due after `now`, if any does.
pub fn next_due_after(conn: &Connection, now: i64) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT min(next_try_ts) FROM push_outbox WHERE next_try_ts > ?1")?
        .query_row([now], |r| r.get(0))?)
}

/// A push is done (delivered, or given up).
pub fn delete_push(conn: &Connection, id: i64) -> Result<()> {
    conn.prepare_cached("DELETE FROM push_outbox WHERE id = ?1")?.execute([id])?;
    Ok(())
}

/// A push failed: try again at `next_try_ts`.
pub fn retry_push(conn: &Connection, id: i64, attempts: i64, next_try_ts: i64) -> Result<()> {
    conn.prepare_cached("UPDATE push_outbox SET attempts = ?2, next_try_ts = ?3 WHERE id = ?1")?
        .execute(params![id, attempts, next_try_ts])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GATEWAY: &str = "https://p/_matrix/push/v1/notify";
    use crate::storage::test_conn;

    fn note(c: &Connection, pos: i64, thread: &str, highlight: bool, users: &[&str]) {
        let all = slots(c, "!r:x").unwrap();
        let mut bits = Vec::new();
        for u in users {
            let slot = match all.get(*u) {
                Some(&s) => s,
                None => new_slot(c, "!r:x", u).unwrap(),
            };
            set_bit(&mut bits, slot);
        }
        let actions = if highlight { "[\"notify\",{\"set_tweak\":\"highlight\"}]" } else { "[\"notify\"]" };
        let n = NotificationSet {
            room_id: "!r:x".into(),
            pos,
            actions: actions.into(),
            highlight,
            thread_id: thread.into(),
            users: bits,
            ts: 1,
        };
        insert_notifications(c, &n).unwrap();
    }

    #[test]
    fn counts_follow_receipts_threads_and_sends() {
        let c = test_conn();
        c.execute_batch(
            "INSERT INTO rooms VALUES ('!r:x', '12', '@a:x', 0, 0, 0, 0);
             INSERT INTO events (pos, event_id, room_id, type, sender, origin_ts, depth, state_before, pdu)
             VALUES (5, '$e5', '!r:x', 'm.room.message', '@b:x', 0, 1, 0, '{}'),
                    (7, '$e7', '!r:x', 'm.room.message', '@b:x', 0, 1, 0, '{}');",
        )
        .unwrap();
        for (pos, thread, h) in
            [(5, "main", false), (6, "$root", true), (7, "main", true), (8, "$root", false)]
        {
            note(&c, pos, thread, h, &["@b:x", "@a:x"]);
        }
        note(&c, 9, "main", true, &["@b:x"]);
        assert_eq!(unread_counts(&c, "@b:x", "!r:x").unwrap(), (5, 3));
        assert_eq!(unread_counts(&c, "@z:x", "!r:x").unwrap(), (0, 0));
        assert_eq!(unread_counts(&c, "@a:x", "!r:x").unwrap(), (4, 2));
        crate::storage::receipts::put(&c, "!r:x", "@a:x", "m.read.private", "", "$e5", 0, 100).unwrap();
        assert_eq!(unread_counts(&c, "@a:x", "!r:x").unwrap(), (3, 2));
        // A threaded receipt reads only its thread.
        crate::storage::receipts::put(&c, "!r:x", "@a:x", "m.read", "main", "$e7", 0, 101).unwrap();
        let mut by_thread = unread_counts_by_thread(&c, "@a:x", "!r:x").unwrap();
        by_thread.sort();
        assert_eq!(by_thread, [("$root".to_owned(), 2, 1)]);
        // Sending reads everything before.
        set_read_mark(&c, "@a:x", "!r:x", 8).unwrap();
        assert_eq!(unread_counts(&c, "@a:x", "!r:x").unwrap(), (0, 0));
        assert_eq!(unread_total(&c, "@a:x").unwrap(), 0);
        assert_eq!(unread_total(&c, "@b:x").unwrap(), 5);
        // Listing: newest first, the user's own rows only, with a token.
        assert_eq!(notifications(&c, "@a:x", i64::MAX, 10, true).unwrap().0.len(), 2);
        let (page, next) = notifications(&c, "@a:x", i64::MAX, 2, false).unwrap();
        assert_eq!((page.iter().map(|n| n.pos).collect::<Vec<_>>(), next), (vec![8, 7], Some(7)));
        let (page, next) = notifications(&c, "@a:x", 7, 10, false).unwrap();
        assert_eq!((page.iter().map(|n| n.pos).collect::<Vec<_>>(), next), (vec![6, 5], None));
        assert!(page[0].highlight && page[0].thread_id == "$root");
        assert_eq!(notifications(&c, "@z:x", i64::MAX, 10, false).unwrap(), (vec![], None));
    }

    #[test]
    fn outbox_and_pushers() {
        let c = test_conn();
        let p = Pusher {
            user_id: "@a:x".into(),
            app_id: "app".into(),
            pushkey: "key".into(),
            kind: "http".into(),
            app_display_name: "App".into(),
            device_display_name: "Phone".into(),
            profile_tag: None,
            lang: "en".into(),
            data: "{\"url\":\"https://p/_matrix/push/v1/notify\"}".into(),
            pushkey_ts: 1,
            device_id: None,
        };
        put_pusher(&c, &p).unwrap();
        put_pusher(&c, &Pusher { user_id: "@b:x".into(), ..p.clone() }).unwrap();
        enqueue(&c, "@a:x", ("app", "key"), "$e", "{}", 10).unwrap();
        enqueue(&c, "@b:x", ("app", "key"), "$e", "{}", 20).unwrap();
        assert_eq!(due_at_gateway(&c, GATEWAY, 15, 10).unwrap().len(), 1);
        assert_eq!(next_due_after(&c, 0).unwrap(), Some(10));
        let first = &due_at_gateway(&c, GATEWAY, 15, 10).unwrap()[0];
        retry_push(&c, first.id, 1, 30).unwrap();
        assert_eq!(next_due_after(&c, 0).unwrap(), Some(20));
        delete_pushers_of_others(&c, "@a:x", "app", "key").unwrap();
        assert_eq!(pushers(&c, "@b:x").unwrap(), []);
        assert_eq!(due_at_gateway(&c, GATEWAY, 100, 10).unwrap().len(), 1);
        assert!(delete_pusher(&c, "@a:x", "app", "key").unwrap());
        assert_eq!(next_due_after(&c, 0).unwrap(), None);
    }

    #[test]
    fn outbox_by_gateway() {
        let c = test_conn();
        let p = |user: &str, url: &str| Pusher {
            user_id: user.into(),
            app_id: "app".into(),
            pushkey: "key".into(),
            kind: "http".into(),
            app_display_name: "App".into(),
            device_display_name: "Phone".into(),
            profile_tag: None,
            lang: "en".into(),
            data: json_url(url),
            pushkey_ts: 1,
            device_id: None,
        };
        fn json_url(url: &str) -> String {
            serde_json::json!({ "url": url }).to_string()
        }
        put_pusher(&c, &p("@a:x", "https://one/n")).unwrap();
        put_pusher(&c, &p("@b:x", "https://two/n")).unwrap();
        put_pusher(&c, &Pusher { data: "{}".into(), ..p("@c:x", "") }).unwrap();
        enqueue(&c, "@b:x", ("app", "key"), "$1", "{}", 5).unwrap();
        enqueue(&c, "@a:x", ("app", "key"), "$2", "{}", 10).unwrap();
        enqueue(&c, "@a:x", ("app", "key"), "$3", "{}", 12).unwrap();
        enqueue(&c, "@c:x", ("app", "key"), "$4", "{}", 50).unwrap();
        assert_eq!(due_gateways(&c, 11, 10).unwrap(), ["https://two/n", "https://one/n"]);
        assert_eq!(due_gateways(&c, 11, 1).unwrap(), ["https://two/n"]);
        assert_eq!(due_gateways(&c, 100, 10).unwrap(), ["https://two/n", "https://one/n", ""]);
        let one: Vec<String> =
            due_at_gateway(&c, "https://one/n", 100, 10).unwrap().into_iter().map(|p| p.event_id).collect();
        assert_eq!(one, ["$2", "$3"]);
        assert_eq!(due_at_gateway(&c, "https://one/n", 11, 10).unwrap().len(), 1);
        assert_eq!(due_at_gateway(&c, "", 100, 10).unwrap()[0].event_id, "$4");
        assert_eq!(next_due_after(&c, 10).unwrap(), Some(12));
        assert_eq!(next_due_after(&c, 50).unwrap(), None);
        // A pusher pointed elsewhere takes its queued pushes along.
        put_pusher(&c, &p("@a:x", "https://three/n")).unwrap();
        assert_eq!(due_gateways(&c, 100, 10).unwrap(), ["https://two/n", "https://three/n", ""]);
        assert_eq!(due_at_gateway(&c, "https://three/n", 100, 10).unwrap().len(), 2);
        assert!(due_at_gateway(&c, "https://one/n", 100, 10).unwrap().is_empty());
    }

    #[test]
    fn pushers_go_with_their_device() {
        let c = test_conn();
        crate::storage::users::create(&c, "@a:x", None, false, 0).unwrap();
        for d in ["PHONE", "LAPTOP"] {
            crate::storage::devices::create(&c, "@a:x", d, None, 0).unwrap();
        }
        let make = |key: &str, device: Option<&str>| Pusher {
            user_id: "@a:x".into(),
            app_id: "app".into(),
            pushkey: key.into(),
            kind: "http".into(),
            app_display_name: "App".into(),
            device_display_name: "Phone".into(),
            profile_tag: None,
            lang: "en".into(),
            data: "{}".into(),
            pushkey_ts: 1,
            device_id: device.map(str::to_owned),
        };
        put_pusher(&c, &make("phone", Some("PHONE"))).unwrap();
        put_pusher(&c, &make("laptop", Some("LAPTOP"))).unwrap();
        put_pusher(&c, &make("old", None)).unwrap();
        enqueue(&c, "@a:x", ("app", "phone"), "$e", "{}", 10).unwrap();
        let keys = |c: &Connection| {
            let mut k: Vec<String> = pusher_keys(c, "@a:x").unwrap().into_iter().map(|(_, k)| k).collect();
            k.sort();
            k
        };
        // Deleting a device deletes its pusher and that pusher's pushes.
        crate::storage::devices::delete(&c, "@a:x", "PHONE").unwrap();
        assert_eq!(keys(&c), ["laptop", "old"]);
        assert_eq!(next_due_after(&c, 0).unwrap(), None);
        // Updating a pusher from another device moves it there.
        put_pusher(&c, &make("old", Some("LAPTOP"))).unwrap();
        assert_eq!(pusher(&c, "@a:x", "app", "old").unwrap().unwrap().device_id.as_deref(), Some("LAPTOP"));
        put_pusher(&c, &make("orphan", None)).unwrap();
        assert_eq!(delete_pushers_except_device(&c, "@a:x", Some("LAPTOP")).unwrap(), 1);
        assert_eq!(keys(&c), ["laptop", "old"]);
        assert_eq!(delete_pushers_except_device(&c, "@a:x", None).unwrap(), 2);
        assert!(keys(&c).is_empty());
    }
}
