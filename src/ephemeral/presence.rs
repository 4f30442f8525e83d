//! Each user's presence: the state they chose, their status message, when
//! they were last active and last connected, and the ephemeral serial of
//! the last change others were (or will be) told about.
//!
//! What others see is computed from the clock, lazily: a user is `online`
//! while they act or sync, `unavailable` once idle for
//! [`UNAVAILABLE_AFTER_MS`] (or when they say so), and `offline` once not
//! connected for [`OFFLINE_AFTER_MS`] (or when they say so). Each entry
//! remembers what was last announced; [`PresenceMap::decay`] notices when
//! the clock has changed what others should see and takes a serial for it,
//! so syncs hear of the change.
//!
//! Users of other servers are told by their server (`m.presence` EDUs):
//! their entry shows what that server said, and turns `offline` only once
//! nothing was heard of them for [`OFFLINE_AFTER_MS`] (servers repeat the
//! presence of their online users well within that; Synapse every 25
//! minutes).
//!
//! Pure bookkeeping, like `typing.rs`: clock and serial are passed in.

use std::collections::HashMap;

/// Idle time after which an online user is shown as unavailable.
pub const UNAVAILABLE_AFTER_MS: i64 = 5 * 60 * 1000;
/// Time without activity or sync after which a user is shown as offline.
pub const OFFLINE_AFTER_MS: i64 = 30 * 60 * 1000;
/// Users whose presence is kept; past this the one seen longest ago is
/// forgotten (and so shown offline).
pub const PRESENCE_USERS_MAX: usize = 10_000;
/// Longest status message, in bytes.
pub const STATUS_MSG_MAX_BYTES: usize = 1024;

/// A presence state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Online,
    Unavailable,
    Offline,
}

impl State {
    pub fn parse(s: &str) -> Option<State> {
        match s {
            "online" => Some(State::Online),
            "unavailable" => Some(State::Unavailable),
            "offline" => Some(State::Offline),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Online => "online",
            State::Unavailable => "unavailable",
            State::Offline => "offline",
        }
    }
}

/// What others see of a user at some moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub state: State,
    /// Milliseconds since the user was last active, if ever seen active.
    pub last_active_ago: Option<i64>,
    pub currently_active: bool,
    pub status_msg: Option<String>,
}

impl View {
    /// The view of a user the server knows nothing about.
    pub fn unknown() -> View {
        View { state: State::Offline, last_active_ago: None, currently_active: false, status_msg: None }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    /// The state the user (or their syncing client) chose.
    chosen: State,
    status_msg: Option<String>,
    last_active: Option<i64>,
    /// The last time a client of theirs synced or set presence.
    last_seen: i64,
    /// The serial of the last announced change.
    serial: u64,
    /// What was last announced: state, currently_active, status message.
    shown: (State, bool, Option<String>),
    /// For a user of another server: the `currently_active` their server
    /// said (their `chosen` state is what it said, `last_seen` when).
    remote: Option<bool>,
}

impl Entry {
    fn view(&self, now: i64) -> View {
        if let Some(active) = self.remote {
            let state = if now.saturating_sub(self.last_seen) >= OFFLINE_AFTER_MS {
                State::Offline
            } else {
                self.chosen
            };
            return View {
                state,
                last_active_ago: self.last_active.map(|a| now.saturating_sub(a).max(0)),
                currently_active: active && state == State::Online,
                status_msg: self.status_msg.clone(),
            };
        }
        let seen = self.last_seen.max(self.last_active.unwrap_or(0));
        let idle = self.last_active.map_or(i64::MAX, |a| now.saturating_sub(a));
        let state = if self.chosen == State::Offline || now.saturating_sub(seen) >= OFFLINE_AFTER_MS {
            State::Offline
        } else if self.chosen == State::Unavailable || idle >= UNAVAILABLE_AFTER_MS {
            State::Unavailable
        } else {
            State::Online
        };
        View {
            state,
            last_active_ago: self.last_active.map(|a| now.saturating_sub(a).max(0)),
            currently_active: state == State::Online,
            status_msg: self.status_msg.clone(),
        }
    }

    /// The times after `now` at which the view may change by itself.
    fn next_decay(&self, now: i64) -> i64 {
        if self.remote.is_some() {
            let at = self.last_seen.saturating_add(OFFLINE_AFTER_MS);
            return if at > now { at } else { i64::MAX };
        }
        let seen = self.last_seen.max(self.last_active.unwrap_or(0));
        let candidates = [
            self.last_active.map(|a| a.saturating_add(UNAVAILABLE_AFTER_MS)),
            Some(seen.saturating_add(OFFLINE_AFTER_MS)),
        ];
        candidates.into_iter().flatten().filter(|t| *t > now).min().unwrap_or(i64::MAX)
    }

    /// Takes a serial if what others see changed since the last announcement.
    fn announce(&mut self, now: i64, serial: impl FnOnce() -> u64) -> Option<u64> {
        let v = self.view(now);
        let shown = (v.state, v.currently_active, v.status_msg);
        if shown == self.shown {
            return None;
        }
        self.shown = shown;
        self.serial = serial();
        Some(self.serial)
    }
}

#[derive(Debug)]
pub struct PresenceMap {
    users: HashMap<String, Entry>,
    /// The earliest time at which some view may change by itself.
    next_decay: i64,
}

impl Default for PresenceMap {
    fn default() -> PresenceMap {
        PresenceMap { users: HashMap::new(), next_decay: i64::MAX }
    }
}

impl PresenceMap {
    /// The user's entry, created (as never seen) if needed, making space.
    fn entry(&mut self, user_id: &str, now: i64) -> &mut Entry {
        if !self.users.contains_key(user_id) && self.users.len() >= PRESENCE_USERS_MAX {
            let victim = self
                .users
                .iter()
                .min_by_key(|(_, e)| e.last_seen.max(e.last_active.unwrap_or(0)))
                .map(|(id, _)| id.clone());
            if let Some(id) = victim {
                self.users.remove(&id);
            }
        }
        self.users.entry(user_id.to_owned()).or_insert_with(|| Entry {
            chosen: State::Offline,
            status_msg: None,
            last_active: None,
            last_seen: now,
            serial: 0,
            shown: (State::Offline, false, None),
            remote: None,
        })
    }

    fn after_change(&mut self, user_id: &str, now: i64, serial: impl FnOnce() -> u64) -> Option<u64> {
        let e = self.users.get_mut(user_id)?;
        let changed = e.announce(now, serial);
        self.next_decay = self.next_decay.min(e.next_decay(now));
        changed
    }

    /// The user set their presence (`PUT /presence/{userId}/status`).
    /// Setting `online` counts as activity. Returns the serial taken if
    /// what others see changed.
    pub fn set(
        &mut self,
        user_id: &str,
        state: State,
        status_msg: Option<String>,
        now: i64,
        serial: impl FnOnce() -> u64,
    ) -> Option<u64> {
        let e = self.entry(user_id, now);
        e.chosen = state;
        e.status_msg = status_msg;
        e.last_seen = now;
        if state == State::Online {
            e.last_active = Some(now);
        }
        self.after_change(user_id, now, serial)
    }

    /// The server of a user of another server told their presence:
    /// `last_active_ago` milliseconds before `now`. Returns the serial
    /// taken if what others see changed.
    #[allow(clippy::too_many_arguments)]
    pub fn set_remote(
        &mut self,
        user_id: &str,
        state: State,
        status_msg: Option<String>,
        last_active_ago: Option<i64>,
        currently_active: bool,
        now: i64,
        serial: impl FnOnce() -> u64,
    ) -> Option<u64> {
        let e = self.entry(user_id, now);
        e.remote = Some(currently_active);
        e.chosen = state;
        e.status_msg = status_msg;
        e.last_seen = now;
        e.last_active = last_active_ago.map(|ago| now.saturating_sub(ago.max(0)));
        self.after_change(user_id, now, serial)
    }

    /// A client of the user synced with `set_presence`: `online` marks
    /// them active, `unavailable` connected but idle, `offline` changes
    /// nothing (the spec: the client is not marked online by this sync).
    pub fn synced(
        &mut self,
        user_id: &str,
        state: State,
        now: i64,
        serial: impl FnOnce() -> u64,
    ) -> Option<u64> {
        if state == State::Offline {
            return None;
        }
        let e = self.entry(user_id, now);
        e.chosen = state;
        e.last_seen = now;
        if state == State::Online {
            e.last_active = Some(now);
        }
        self.after_change(user_id, now, serial)
    }

    /// Gives the user's current view a new serial, so every sync that may
    /// see them is told it again (after someone newly gained the right to
    /// see it). Returns the serial, or `None` if nothing is known of them.
    pub fn reannounce(&mut self, user_id: &str, serial: impl FnOnce() -> u64) -> Option<u64> {
        let e = self.users.get_mut(user_id)?;
        e.serial = serial();
        Some(e.serial)
    }

    /// Announces the views the clock changed by `now` (online → unavailable
    /// → offline), under one serial; returns the users concerned.
    pub fn decay(&mut self, now: i64, serial: impl FnOnce() -> u64) -> Vec<String> {
        if now < self.next_decay {
            return Vec::new();
        }
        let mut changed = Vec::new();
        let mut next = i64::MAX;
        for (user_id, e) in &mut self.users {
            let v = e.view(now);
            if (v.state, v.currently_active, v.status_msg) != e.shown {
                changed.push(user_id.clone());
            }
            next = next.min(e.next_decay(now));
        }
        self.next_decay = next;
        if !changed.is_empty() {
            let s = serial();
            for user_id in &changed {
                if let Some(e) = self.users.get_mut(user_id) {
                    e.announce(now, || s);
                }
            }
            changed.sort();
        }
        changed
    }

    /// What others see of the user at `now`.
    pub fn view(&self, user_id: &str, now: i64) -> View {
        self.users.get(user_id).map_or_else(View::unknown, |e| e.view(now))
    }

    /// The users whose presence changed after serial `since` (everyone
    /// known for `None`), with their views at `now`.
    pub fn changed_since(&self, since: Option<u64>, now: i64) -> Vec<(String, View)> {
        let mut out: Vec<(String, View)> = self
            .users
            .iter()
            .filter(|(_, e)| since.is_none_or(|s| e.serial > s))
            .map(|(id, e)| (id.clone(), e.view(now)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter() -> impl FnMut() -> u64 {
        let mut n = 0;
        move || {
            n += 1;
            n
        }
    }

    #[test]
    fn unknown_users_are_offline() {
        let p = PresenceMap::default();
        assert_eq!(p.view("@a:x", 5), View::unknown());
    }

    #[test]
    fn set_and_decay() {
        let mut p = PresenceMap::default();
        let mut next = counter();
        assert_eq!(p.set("@a:x", State::Online, Some("here".into()), 1000, &mut next), Some(1));
        let v = p.view("@a:x", 1500);
        assert_eq!(v.state, State::Online);
        assert_eq!(v.last_active_ago, Some(500));
        assert!(v.currently_active);
        assert_eq!(v.status_msg.as_deref(), Some("here"));
        // Setting the same again is no change.
        assert_eq!(p.set("@a:x", State::Online, Some("here".into()), 2000, &mut next), None);
        // Nothing decays before the idle threshold.
        assert!(p.decay(2000 + UNAVAILABLE_AFTER_MS - 1, &mut next).is_empty());
        assert_eq!(p.decay(2000 + UNAVAILABLE_AFTER_MS, &mut next), vec!["@a:x".to_owned()]);
        assert_eq!(p.view("@a:x", 2000 + UNAVAILABLE_AFTER_MS).state, State::Unavailable);
        assert!(!p.view("@a:x", 2000 + UNAVAILABLE_AFTER_MS).currently_active);
        assert_eq!(p.decay(2000 + OFFLINE_AFTER_MS, &mut next), vec!["@a:x".to_owned()]);
        assert_eq!(p.view("@a:x", 2000 + OFFLINE_AFTER_MS).state, State::Offline);
        assert!(p.decay(2000 + 2 * OFFLINE_AFTER_MS, &mut next).is_empty());
        assert_eq!(p.changed_since(Some(2), 0).len(), 1);
        assert!(p.changed_since(Some(3), 0).is_empty());
    }

    #[test]
    fn syncing_keeps_users_online_and_offline_sync_changes_nothing() {
        let mut p = PresenceMap::default();
        let mut next = counter();
        assert_eq!(p.synced("@a:x", State::Offline, 0, &mut next), None);
        assert!(p.is_empty());
        assert_eq!(p.synced("@a:x", State::Online, 0, &mut next), Some(1));
        let later = UNAVAILABLE_AFTER_MS + 10;
        assert_eq!(p.synced("@a:x", State::Online, later - 20, &mut next), None);
        assert!(p.decay(later, &mut next).is_empty());
        assert_eq!(p.view("@a:x", later).state, State::Online);
        // An idle-but-connected client keeps the user unavailable, not offline.
        assert_eq!(p.synced("@a:x", State::Unavailable, later, &mut next), Some(2));
        let much_later = later + OFFLINE_AFTER_MS - 1;
        assert_eq!(p.synced("@a:x", State::Unavailable, much_later - 1, &mut next), None);
        assert_eq!(p.view("@a:x", much_later).state, State::Unavailable);
    }

    #[test]
    fn explicit_states_win_until_activity() {
        let mut p = PresenceMap::default();
        let mut next = counter();
        p.set("@a:x", State::Unavailable, None, 0, &mut next);
        assert_eq!(p.view("@a:x", 1).state, State::Unavailable);
        assert_eq!(p.view("@a:x", 1).last_active_ago, None);
        p.set("@a:x", State::Offline, Some("away".into()), 2, &mut next);
        assert_eq!(p.view("@a:x", 3).state, State::Offline);
        p.synced("@a:x", State::Online, 4, &mut next);
        assert_eq!(p.view("@a:x", 5).state, State::Online);
        assert_eq!(p.view("@a:x", 5).status_msg.as_deref(), Some("away"));
    }

    #[test]
    fn reannounce_bumps_only_known_users() {
        let mut p = PresenceMap::default();
        let mut next = counter();
        p.set("@a:x", State::Online, None, 0, &mut next);
        assert_eq!(p.reannounce("@a:x", &mut next), Some(2));
        assert_eq!(p.reannounce("@b:x", &mut next), None);
        assert_eq!(p.changed_since(Some(1), 0).len(), 1);
    }

    #[test]
    fn remote_users_show_what_their_server_said_until_it_goes_quiet() {
        let mut p = PresenceMap::default();
        let mut next = counter();
        // Online but idle for ten minutes, as their server says: still online.
        let ten_min = 10 * 60 * 1000;
        assert_eq!(
            p.set_remote("@r:y", State::Online, Some("hi".into()), Some(ten_min), true, 0, &mut next),
            Some(1)
        );
        let v = p.view("@r:y", 1000);
        assert_eq!(
            (v.state, v.currently_active, v.last_active_ago),
            (State::Online, true, Some(ten_min + 1000))
        );
        assert_eq!(v.status_msg.as_deref(), Some("hi"));
        assert!(p.decay(UNAVAILABLE_AFTER_MS + 1, &mut next).is_empty(), "no local idle rule");
        // The same again is no change; a new state is.
        assert_eq!(p.set_remote("@r:y", State::Online, Some("hi".into()), None, true, 5, &mut next), None);
        assert_eq!(p.set_remote("@r:y", State::Unavailable, None, None, false, 10, &mut next), Some(2));
        // Heard of no more: offline after the quiet period.
        assert_eq!(p.decay(10 + OFFLINE_AFTER_MS, &mut next), vec!["@r:y".to_owned()]);
        assert_eq!(p.view("@r:y", 10 + OFFLINE_AFTER_MS).state, State::Offline);
    }

    #[test]
    fn table_stays_bounded() {
        let mut p = PresenceMap::default();
        let mut next = counter();
        for i in 0..PRESENCE_USERS_MAX + 2 {
            p.set(&format!("@u{i}:x"), State::Online, None, i as i64, &mut next);
        }
        assert_eq!(p.len(), PRESENCE_USERS_MAX);
        // The ones seen longest ago were forgotten.
        assert_eq!(p.view("@u0:x", 0), View::unknown());
        assert_eq!(p.view(&format!("@u{}:x", PRESENCE_USERS_MAX + 1), 0).state, State::Online);
    }
}
