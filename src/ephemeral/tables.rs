//! The in-memory typing and presence tables the server holds (in `App`),
//! with the ephemeral serial each change takes from the hub. What the
//! changes mean for readers (who is told, when time expires them) is in
//! the module above.

use std::sync::Mutex;

use serde_json::{json, Value};

use super::presence::{self, State as PresenceState, View as PresenceView};
use super::typing;
use crate::hub::Hub;
use crate::storage::lock;

/// The in-memory typing and presence tables. Every table is bounded (see
/// the limits in `typing` and `presence`).
pub struct Ephemeral {
    typing: Mutex<typing::Typing>,
    presence: Mutex<presence::PresenceMap>,
    presence_enabled: bool,
    /// How far local presence was told to other servers.
    federated: Mutex<Federated>,
}

/// How far local presence changes were told to other servers: the
/// ephemeral serial up to which they were queued, and when everyone's was
/// last repeated.
#[derive(Debug, Default)]
struct Federated {
    serial: u64,
    repeated_ms: i64,
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
            federated: Mutex::new(Federated::default()),
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

    /// The (room ID, user ID) of the typing notices that ran out since the
    /// last call (at most `typing::RAN_OUT_MAX`).
    pub fn typing_ran_out(&self) -> Vec<(String, String)> {
        lock(&self.typing).take_ran_out()
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

    /// The server of `user_id` (another server) told their presence.
    /// Returns the new serial if what others see changed (never when
    /// presence is off).
    #[allow(clippy::too_many_arguments)]
    pub fn set_remote_presence(
        &self,
        hub: &Hub,
        user_id: &str,
        state: PresenceState,
        status_msg: Option<String>,
        last_active_ago: Option<i64>,
        currently_active: bool,
        now: i64,
    ) -> Option<u64> {
        if !self.presence_enabled {
            return None;
        }
        lock(&self.presence).set_remote(
            user_id,
            state,
            status_msg,
            last_active_ago,
            currently_active,
            now,
            || hub.next_ephemeral(),
        )
    }

    /// The presence to tell other servers now, of the users `is_ours`
    /// accepts: those whose presence changed since the last call, or,
    /// every `repeat_ms`, everyone not offline (so other servers, which
    /// forget users they hear nothing of, keep them). Empty when presence
    /// is off.
    pub fn presence_to_federate(
        &self,
        hub: &Hub,
        is_ours: impl Fn(&str) -> bool,
        repeat_ms: i64,
        now: i64,
    ) -> Vec<(String, PresenceView)> {
        if !self.presence_enabled {
            return Vec::new();
        }
        let mut f = lock(&self.federated);
        // Read before the table: a change racing this call is sent again
        // next time rather than missed.
        let upto = hub.current_ephemeral();
        if f.repeated_ms == 0 {
            // Everyone starts offline: the first repeat is one period on.
            f.repeated_ms = now;
        }
        let repeat = now.saturating_sub(f.repeated_ms) >= repeat_ms;
        if upto == f.serial && !repeat {
            return Vec::new();
        }
        let since = f.serial;
        f.serial = upto;
        if repeat {
            f.repeated_ms = now;
        }
        drop(f);
        let p = lock(&self.presence);
        let mut out = p.changed_since(Some(since), now);
        if repeat {
            let all = p.changed_since(None, now);
            out.extend(all.into_iter().filter(|(_, v)| v.state != PresenceState::Offline));
            out.sort_by(|a, b| a.0.cmp(&b.0));
            out.dedup_by(|a, b| a.0 == b.0);
        }
        out.retain(|(user_id, _)| is_ours(user_id));
        out
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
