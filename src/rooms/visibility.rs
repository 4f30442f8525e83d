//! Who may see which events: the spec's history visibility rules
//! (`world_readable`, `shared`, `invited`, `joined`), applied on every read
//! path.
//!
//! A state event whose stored PDU cannot be read (logged by
//! `rooms::readable_pdu`) counts the restrictive way: an unreadable history
//! visibility as `joined`, an unreadable membership as none, so a bad row
//! can hide events but never show one.

use std::collections::HashMap;

use rusqlite::Connection;
use serde_json::Value;

use crate::error::Result;
use crate::rooms::{load_readable_pdu, readable_pdu};
use crate::storage::events::{self, StoredEvent};
use crate::storage::state;

/// Answers visibility questions for one user in one room, remembering the
/// state lookups already made (events of a page share state groups).
pub struct Visibility<'a> {
    conn: &'a Connection,
    user_id: &'a str,
    room_id: &'a str,
    /// state group → (history_visibility, the user's membership).
    at_group: HashMap<i64, (String, Option<String>)>,
    /// Whether the user joined after a given position (for `shared`).
    joined_after: HashMap<i64, bool>,
}

impl<'a> Visibility<'a> {
    pub fn new(conn: &'a Connection, user_id: &'a str, room_id: &'a str) -> Visibility<'a> {
        Visibility { conn, user_id, room_id, at_group: HashMap::new(), joined_after: HashMap::new() }
    }

    /// A string field of a state event's content: `None` if there is no
    /// event or no such field, `if_unreadable` if the event cannot be read.
    fn content_field(
        &self,
        event_id: Option<String>,
        field: &str,
        if_unreadable: Option<&str>,
    ) -> Result<Option<String>> {
        let Some(id) = event_id else { return Ok(None) };
        let Some(e) = events::get(self.conn, &id)? else { return Ok(None) };
        let Some(pdu) = readable_pdu(&e) else { return Ok(if_unreadable.map(str::to_owned)) };
        Ok(pdu.pointer(&format!("/content/{field}")).and_then(Value::as_str).map(str::to_owned))
    }

    fn state_at(&mut self, group: i64) -> Result<(String, Option<String>)> {
        if let Some(v) = self.at_group.get(&group) {
            return Ok(v.clone());
        }
        let hv_id = state::group_entry(self.conn, group, "m.room.history_visibility", "")?;
        let hv = self
            .content_field(hv_id, "history_visibility", Some("joined"))?
            .unwrap_or_else(|| "shared".into());
        let member_id = state::group_entry(self.conn, group, "m.room.member", self.user_id)?;
        let membership = self.content_field(member_id, "membership", None)?;
        self.at_group.insert(group, (hv.clone(), membership.clone()));
        Ok((hv, membership))
    }

    /// True if the user joined the room at some point after `pos`.
    fn joined_since(&mut self, pos: i64) -> Result<bool> {
        if let Some(v) = self.joined_after.get(&pos) {
            return Ok(*v);
        }
        let found = crate::storage::state::joined_after(self.conn, self.room_id, self.user_id, pos)?;
        self.joined_after.insert(pos, found);
        Ok(found)
    }
}

/// True if the room's current history visibility is `world_readable`.
pub fn world_readable(conn: &Connection, room_id: &str) -> Result<bool> {
    let id = state::current_entry(conn, room_id, "m.room.history_visibility", "")?;
    let Some(id) = id else { return Ok(false) };
    Ok(load_readable_pdu(conn, &id)?.and_then(|p| p.pointer("/content/history_visibility").cloned())
        == Some(Value::String("world_readable".into())))
}

impl Visibility<'_> {
    /// May the user see this event? The spec's rules exactly: what counts
    /// is the state at the event; `shared` opens everything before a later
    /// join; `invited` opens events from the invite on (not before it); and
    /// for the user's own membership events and for history visibility
    /// events the state before *or* after the event may allow it (so people
    /// see their own leave, and the change that hid history from them).
    pub fn may_see(&mut self, e: &StoredEvent) -> Result<bool> {
        let (hv_before, membership_before) = self.state_at(e.state_before)?;
        if self.rules_allow(e.pos, &hv_before, membership_before.as_deref())? {
            return Ok(true);
        }
        let own_member = e.kind == "m.room.member" && e.state_key.as_deref() == Some(self.user_id);
        let visibility_change = e.kind == "m.room.history_visibility" && e.state_key.as_deref() == Some("");
        if !own_member && !visibility_change {
            return Ok(false);
        }
        // Unreadable, the event shows nothing beyond the state before it.
        let Some(pdu) = readable_pdu(e) else { return Ok(false) };
        let content = pdu.get("content");
        let field = |name: &str| content.and_then(|c| c.get(name)).and_then(Value::as_str);
        let hv_after = match visibility_change {
            true => field("history_visibility").unwrap_or("shared").to_owned(),
            false => hv_before,
        };
        let membership_after = match own_member {
            true => field("membership").map(str::to_owned),
            false => membership_before,
        };
        self.rules_allow(e.pos, &hv_after, membership_after.as_deref())
    }

    /// The numbered rules of "Server behaviour" for one state: an unknown
    /// visibility counts as `shared`.
    fn rules_allow(&mut self, pos: i64, hv: &str, membership: Option<&str>) -> Result<bool> {
        Ok(match hv {
            "world_readable" => true,
            _ if membership == Some("join") => true,
            "invited" => membership == Some("invite"),
            "joined" => false,
            _ => self.joined_since(pos)?,
        })
    }
}
