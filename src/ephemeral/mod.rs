//! Typing notices and presence: the state that lives in memory only, and
//! is lost (harmlessly) on restart.
//!
//! Every change takes a new ephemeral serial from the hub (the second part
//! of a sync token) *while holding the lock of the table it changes*, so a
//! sync that read the hub's serial and then reads a table sees every
//! change up to that serial.
//!
//! Time makes changes too: typing notices run out, idle users turn
//! unavailable and then offline. Nothing runs on a timer; [`refresh`]
//! applies what is due (taking a serial) and wakes the long-polls
//! concerned. `/sync` calls it before it reads the hub's serial, and the
//! handlers here call it as well, so a parked sync hears of an expiry when
//! any request touches this module, or at its own deadline at the latest.
//! A periodic tick could call [`Ephemeral::expire`] for promptness.
//!
//! Who may see whose presence: the user themself, users sharing a joined
//! room with them, and users who have them on their presence list with
//! their agreement (the original specification's rule).
//!
//! With presence turned off in the configuration, presence changes are
//! accepted and ignored, and everyone appears `offline`.
//!
//! This module owns no SQL (the presence list lives in
//! `storage::presence_list`) and knows no HTTP.

pub mod presence;
pub mod typing;

use std::sync::Mutex;

use rusqlite::Connection;
use serde_json::{json, Value};

use crate::app::App;
use crate::error::Result;
use crate::hub::{Hub, Notify};
use crate::storage::{self, lock, presence_list, state};

pub use presence::{State as PresenceState, View as PresenceView};

/// The in-memory typing and presence tables. Every table is bounded (see
/// the limits in `typing` and `presence`).
pub struct Ephemeral {
    typing: Mutex<typing::Typing>,
    presence: Mutex<presence::PresenceMap>,
    presence_enabled: bool,
}

/// What time changed: the rooms whose typers ran out, the users whose
/// presence decayed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Expired {
    pub rooms: Vec<String>,
    pub users: Vec<String>,
    /// The serial taken for them (0 if nothing changed).
    pub serial: u64,
}

impl Ephemeral {
    pub fn new(presence_enabled: bool) -> Ephemeral {
        Ephemeral {
            typing: Mutex::new(typing::Typing::default()),
            presence: Mutex::new(presence::PresenceMap::default()),
            presence_enabled,
        }
    }

    pub fn presence_enabled(&self) -> bool {
        self.presence_enabled
    }

    // ------------------------------------------------------------ typing

    /// Marks `user_id` typing in the room until `until` (ms since the
    /// epoch), or not typing for `None`. Returns the new serial if the
    /// room's typers changed.
    pub fn set_typing(
        &self,
        hub: &Hub,
        room_id: &str,
        user_id: &str,
        until: Option<i64>,
        now: i64,
    ) -> Option<u64> {
        lock(&self.typing).set(room_id, user_id, until, now, || hub.next_ephemeral())
    }

    /// The users typing in the room now.
    pub fn typers(&self, room_id: &str, now: i64) -> Vec<String> {
        lock(&self.typing).typers(room_id, now)
    }

    /// True if the room's typers changed after serial `since`.
    pub fn typing_changed_since(&self, room_id: &str, since: u64) -> bool {
        lock(&self.typing).changed_since(room_id, since)
    }

    /// The room's `m.typing` event for a sync from `since` (`None`: an
    /// initial sync): present if the typers changed after `since`, or, for
    /// an initial sync, if anyone is typing.
    pub fn typing_event(&self, room_id: &str, since: Option<u64>, now: i64) -> Option<Value> {
        let t = lock(&self.typing);
        let typers = t.typers(room_id, now);
        let include = match since {
            Some(s) => t.changed_since(room_id, s),
            None => !typers.is_empty(),
        };
        include.then(|| json!({ "type": "m.typing", "content": { "user_ids": typers } }))
    }

    // ---------------------------------------------------------- presence

    /// The user set their presence. Returns the new serial if what others
    /// see changed (never when presence is off).
    pub fn set_presence(
        &self,
        hub: &Hub,
        user_id: &str,
        state: PresenceState,
        status_msg: Option<String>,
        now: i64,
    ) -> Option<u64> {
        if !self.presence_enabled {
            return None;
        }
        lock(&self.presence).set(user_id, state, status_msg, now, || hub.next_ephemeral())
    }

    /// A client of the user synced with `set_presence = state`. Returns the
    /// new serial if what others see changed.
    pub fn synced(&self, hub: &Hub, user_id: &str, state: PresenceState, now: i64) -> Option<u64> {
        if !self.presence_enabled {
            return None;
        }
        lock(&self.presence).synced(user_id, state, now, || hub.next_ephemeral())
    }

    /// Tells the users' presence again to everyone who may see it (someone
    /// newly gained that right). Returns the serial if any was known.
    pub fn reannounce(&self, hub: &Hub, user_ids: &[&str]) -> Option<u64> {
        if !self.presence_enabled {
            return None;
        }
        let mut p = lock(&self.presence);
        let mut last = None;
        for u in user_ids {
            last = p.reannounce(u, || hub.next_ephemeral()).or(last);
        }
        last
    }

    /// What others see of the user now (`offline` when presence is off).
    pub fn presence_of(&self, user_id: &str, now: i64) -> PresenceView {
        if !self.presence_enabled {
            return PresenceView::unknown();
        }
        lock(&self.presence).view(user_id, now)
    }

    /// Users whose presence changed after `since` (all known for `None`),
    /// before any visibility check.
    pub fn presence_changed_since(&self, since: Option<u64>, now: i64) -> Vec<(String, PresenceView)> {
        if !self.presence_enabled {
            return Vec::new();
        }
        lock(&self.presence).changed_since(since, now)
    }

    // -------------------------------------------------------------- time

    /// Applies what time changed by `now`: typing notices that ran out and
    /// presence that decayed, under one new serial. Needs no database, so a
    /// periodic tick may call it; [`refresh`] also wakes the long-polls.
    pub fn expire(&self, hub: &Hub, now: i64) -> Expired {
        let mut serial = 0;
        let mut take = || {
            if serial == 0 {
                serial = hub.next_ephemeral();
            }
            serial
        };
        // One lock at a time, so the serial is taken under each table's lock.
        let rooms = lock(&self.typing).expire(now, &mut take);
        let users =
            if self.presence_enabled { lock(&self.presence).decay(now, &mut take) } else { Vec::new() };
        Expired { rooms, users, serial }
    }
}

/// Applies what time changed (see [`Ephemeral::expire`]) and wakes the
/// long-polls concerned: syncs in the rooms whose typers ran out, and the
/// users who may see a decayed presence. `/sync` calls this before reading
/// the hub's serial.
pub fn refresh(app: &App, conn: &Connection) -> Result<()> {
    let expired = app.ephemeral.expire(&app.hub, storage::now_ms());
    if expired.serial == 0 {
        return Ok(());
    }
    let mut n = Notify { pos: 0, ephemeral: expired.serial, rooms: expired.rooms, users: Vec::new() };
    for user in &expired.users {
        let (rooms, users) = presence_audience(conn, user)?;
        n.rooms.extend(rooms);
        n.users.extend(users);
    }
    n.rooms.sort();
    n.rooms.dedup();
    n.users.sort();
    n.users.dedup();
    app.hub.notify(n);
    Ok(())
}

/// A sync of `user_id` asked for `set_presence` (`online` when the query
/// leaves it out): marks them active, connected-but-idle, or changes
/// nothing (`offline`), waking those who may see a change. Parse the query
/// with [`PresenceState::parse`] (anything else is a 400).
pub fn mark_sync(app: &App, conn: &Connection, user_id: &str, set_presence: PresenceState) -> Result<()> {
    let Some(serial) = app.ephemeral.synced(&app.hub, user_id, set_presence, storage::now_ms()) else {
        return Ok(());
    };
    let (rooms, users) = presence_audience(conn, user_id)?;
    app.hub.notify(Notify { pos: 0, ephemeral: serial, rooms, users });
    Ok(())
}

/// Where a change of `user_id`'s presence must wake long-polls: the rooms
/// they are joined to (their members may see it), and the user plus those
/// who follow them on a presence list.
pub fn presence_audience(conn: &Connection, user_id: &str) -> Result<(Vec<String>, Vec<String>)> {
    let rooms = state::rooms_of_user(conn, user_id, "join")?;
    let mut users = presence_list::watchers(conn, user_id)?;
    users.push(user_id.to_owned());
    Ok((rooms, users))
}

/// May `viewer` see `target`'s presence? Themself, a shared joined room, or
/// `target` accepted on `viewer`'s presence list.
pub fn may_see_presence(conn: &Connection, viewer: &str, target: &str) -> Result<bool> {
    Ok(viewer == target
        || presence_list::share_a_room(conn, viewer, target)?
        || presence_list::accepted(conn, viewer, target)?)
}

/// An `m.presence` event for `user_id` as seen now.
pub fn presence_event(user_id: &str, view: &PresenceView) -> Value {
    json!({ "type": "m.presence", "sender": user_id, "content": presence_content(view) })
}

/// The content of an `m.presence` event (and the answer of
/// `GET /presence/{userId}/status`).
pub fn presence_content(view: &PresenceView) -> Value {
    let mut c = json!({ "presence": view.state.as_str(), "currently_active": view.currently_active });
    if let Some(ago) = view.last_active_ago {
        c["last_active_ago"] = json!(ago);
    }
    if let Some(msg) = &view.status_msg {
        c["status_msg"] = json!(msg);
    }
    c
}

/// The `m.presence` events a sync of `viewer` from serial `since` (`None`:
/// initial sync) carries: every user whose presence changed after `since`
/// and whom the viewer may see (the viewer included), oldest ID first.
pub fn presence_events_for(
    app: &App,
    conn: &Connection,
    viewer: &str,
    since: Option<u64>,
) -> Result<Vec<Value>> {
    let now = storage::now_ms();
    let mut out = Vec::new();
    for (user_id, view) in app.ephemeral.presence_changed_since(since, now) {
        if may_see_presence(conn, viewer, &user_id)? {
            out.push(presence_event(&user_id, &view));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typing_events_follow_the_serial() {
        let hub = Hub::new(1);
        let e = Ephemeral::new(true);
        assert_eq!(e.typing_event("!r", None, 0), None);
        let s = e.set_typing(&hub, "!r", "@a:x", Some(1000), 0).expect("a change");
        assert_eq!(hub.current_ephemeral(), s);
        assert_eq!(
            e.typing_event("!r", None, 10),
            Some(json!({ "type": "m.typing", "content": { "user_ids": ["@a:x"] } }))
        );
        assert_eq!(e.typing_event("!r", Some(s), 10), None);
        assert!(e.typing_event("!r", Some(s - 1), 10).is_some());
        let x = e.expire(&hub, 1000);
        assert_eq!(x.rooms, vec!["!r".to_owned()]);
        assert_eq!(
            e.typing_event("!r", Some(s), 1000),
            Some(json!({ "type": "m.typing", "content": { "user_ids": [] } }))
        );
        assert_eq!(e.expire(&hub, 2000), Expired::default());
    }

    #[test]
    fn presence_off_ignores_changes() {
        let hub = Hub::new(1);
        let e = Ephemeral::new(false);
        assert_eq!(e.set_presence(&hub, "@a:x", PresenceState::Online, None, 0), None);
        assert_eq!(e.synced(&hub, "@a:x", PresenceState::Online, 0), None);
        assert_eq!(e.presence_of("@a:x", 0), PresenceView::unknown());
        assert!(e.presence_changed_since(None, 0).is_empty());
    }

    #[test]
    fn presence_content_shape() {
        let e = Ephemeral::new(true);
        let hub = Hub::new(1);
        e.set_presence(&hub, "@a:x", PresenceState::Online, Some("hi".into()), 100);
        let v = e.presence_of("@a:x", 150);
        assert_eq!(
            presence_event("@a:x", &v),
            json!({
                "type": "m.presence", "sender": "@a:x",
                "content": { "presence": "online", "currently_active": true, "last_active_ago": 50, "status_msg": "hi" },
            })
        );
        assert_eq!(
            presence_content(&PresenceView::unknown()),
            json!({ "presence": "offline", "currently_active": false })
        );
    }
}
