//! Push notifications: which events notify whom, unread counts, and
//! delivery to push gateways.
//!
//! - `glob.rs`, `rules.rs`, `eval.rs`: pure push rule logic — the default
//!   rules, a user's ruleset, conditions, glob matching with word
//!   boundaries, actions.
//! - this file: [`on_event`], called by `rooms::append` for every local
//!   event inside its write transaction. It evaluates each local member's
//!   rules (except the sender's, and those of members who ignore the
//!   sender: `m.ignored_user_list`) and writes, in that same transaction, a
//!   notification row per outcome (naming the users it notified by their
//!   slot in the room) and an outbox row per pusher of each notified user
//!   — so a crash can neither push what was not stored nor lose a push for
//!   what was.
//! - `sender.rs`: the delivery threads that drain the outbox to the
//!   gateways, with bounded retries and backoff.
//!
//! Cost per event: one query for the room's joined members and their
//! display names, then per local member one indexed lookup of their ignore
//! list (matched inside SQLite) and one of their stored rules (none for
//! most users, who get the precompiled defaults) and, if notified, one
//! lookup of their pushers. No JSON is parsed per member in Rust; the
//! event body is lower-cased once. The writes are a row or two for the
//! event, whatever the room's size: per-user rows would dirty one B-tree
//! page per member and made sends in a room of 100 eight times slower.
//!
//! **Architecture Invariant:** no network I/O happens here; only the sender
//! threads talk to gateways, never while a transaction is open.

pub mod eval;
pub mod glob;
pub mod rules;
pub mod sender;

use std::cell::OnceCell;
use std::collections::HashMap;

use rusqlite::Connection;
use serde_json::Value;

use crate::core::ids;
use crate::core::room_version::RoomVersion;
use crate::error::Result;
use crate::push::rules::Effect;
use crate::storage::{self, account_data, events, push};

/// Relations followed to find an event's thread (the spec suggests 3).
const THREAD_HOPS_MAX: usize = 3;

/// How long notifications are kept (read or not) for `/notifications`
/// and the counts.
pub const NOTIFICATION_RETENTION_MS: i64 = 30 * 24 * 3600 * 1000;

pub use storage::push::{unread_counts, unread_counts_by_thread};

/// The thread an event belongs to: the root of an `m.thread` relation, or
/// the thread of the event it relates to (a reaction or edit in a thread),
/// up to `THREAD_HOPS_MAX` relations deep; `main` otherwise.
fn thread_of(conn: &Connection, pdu: &Value) -> Result<String> {
    let mut relates = pdu.pointer("/content/m.relates_to").cloned();
    for _ in 0..THREAD_HOPS_MAX {
        let Some(rel) = relates.take() else { break };
        let Some(target) = rel.get("event_id").and_then(Value::as_str) else { break };
        if rel.get("rel_type").and_then(Value::as_str) == Some("m.thread") {
            return Ok(target.to_owned());
        }
        if rel.get("rel_type").is_none() {
            break;
        }
        let Some(e) = events::get(conn, target)? else { break };
        let related: Value = serde_json::from_str(&e.pdu).unwrap_or_default();
        relates = related.pointer("/content/m.relates_to").cloned();
    }
    Ok("main".to_owned())
}

/// Evaluates push rules for a newly stored local event (at stream position
/// `pos`) for every local user in the room but the sender, and records the
/// notifications and queued pushes. Runs inside the event's transaction.
pub fn on_event(
    server_name: &str,
    conn: &Connection,
    room_id: &str,
    version: &RoomVersion,
    pos: i64,
    event_id: &str,
    pdu: &Value,
) -> Result<()> {
    let sender = pdu.get("sender").and_then(Value::as_str).unwrap_or_default();
    let is_local = |u: &str| ids::parse_user_id(u).is_some_and(|(_, server)| server == server_name);
    if is_local(sender) {
        push::set_read_mark(conn, sender, room_id, pos)?;
    }
    let members = push::joined_with_names(conn, room_id)?;
    let member_count = members.len() as u64;
    let mut recipients: Vec<(String, Option<String>)> =
        members.into_iter().filter(|(u, _)| u != sender && is_local(u)).collect();
    // An invitee is not joined yet, but the invite is for them.
    if pdu.get("type").and_then(Value::as_str) == Some("m.room.member")
        && pdu.pointer("/content/membership").and_then(Value::as_str) == Some("invite")
    {
        if let Some(target) = pdu.get("state_key").and_then(Value::as_str) {
            if target != sender && is_local(target) && !recipients.iter().any(|(u, _)| u == target) {
                recipients.push((target.to_owned(), None));
            }
        }
    }
    // Nobody is notified of (or pushed) what a user they ignore sent.
    let mut kept = Vec::with_capacity(recipients.len());
    for (user_id, name) in recipients {
        if !account_data::ignores(conn, &user_id, sender)? {
            kept.push((user_id, name));
        }
    }
    let recipients = kept;
    if recipients.is_empty() {
        return Ok(());
    }
    // The room's power levels, read only if a rule asks.
    let power = OnceCell::new();
    let sender_may = |key: &str| -> bool {
        let levels = power.get_or_init(|| crate::rooms::read::current_power(conn, room_id, version).ok());
        let Some((levels, creators)) = levels else { return false };
        match levels.notification_level(key) {
            Some(needed) => levels.user_level(sender, creators).at_least(needed),
            None => false,
        }
    };
    let event = eval::Event::new(pdu, member_count, &sender_may);
    let mut slots: Option<HashMap<String, usize>> = None;
    // One row per outcome: the matched rule's actions and the users' slots.
    let mut outcomes: Vec<(Effect, Vec<u8>)> = Vec::new();
    let now = storage::now_ms();
    for (user_id, display_name) in &recipients {
        let stored = push::rules(conn, user_id)?;
        let custom;
        let rules: &[eval::Effective] = if stored.is_empty() {
            eval::defaults()
        } else {
            custom = eval::effective(&rules::ruleset(user_id, &stored));
            &custom
        };
        let owner = eval::Owner { user_id, display_name: display_name.as_deref() };
        let Some(effect) = eval::evaluate(rules, &event, &owner).filter(|e| e.notify) else { continue };
        let slots = match &mut slots {
            Some(s) => s,
            None => slots.insert(push::slots(conn, room_id)?),
        };
        let slot = match slots.get(user_id) {
            Some(&s) => s,
            None => {
                let s = push::new_slot(conn, room_id, user_id)?;
                slots.insert(user_id.clone(), s);
                s
            }
        };
        match outcomes.iter_mut().find(|(e, _)| e.actions == effect.actions) {
            Some((_, bits)) => push::set_bit(bits, slot),
            None => {
                let mut bits = Vec::new();
                push::set_bit(&mut bits, slot);
                outcomes.push((effect.clone(), bits));
            }
        }
        for (app_id, pushkey) in push::pusher_keys(conn, user_id)? {
            push::enqueue(conn, user_id, (&app_id, &pushkey), event_id, &effect.tweaks, now)?;
        }
    }
    if outcomes.is_empty() {
        return Ok(());
    }
    let thread_id = thread_of(conn, pdu)?;
    for (effect, users) in outcomes {
        push::insert_notifications(
            conn,
            &push::NotificationSet {
                room_id: room_id.to_owned(),
                pos,
                actions: effect.actions,
                highlight: effect.highlight,
                thread_id: thread_id.clone(),
                users,
                ts: now,
            },
        )?;
    }
    Ok(())
}

/// The ruleset of a user, for the API.
pub fn ruleset_of(conn: &Connection, user_id: &str) -> Result<Vec<rules::Rule>> {
    Ok(rules::ruleset(user_id, &push::rules(conn, user_id)?))
}
