//! Who is typing in which room: per room, the typers and when each one's
//! notice runs out, and the ephemeral serial of the room's last change.
//!
//! Pure bookkeeping: the clock (`now`, milliseconds) and the serial source
//! are passed in, so the owner ([`super::Ephemeral`]) decides locking and
//! tests decide time. A room whose last typer stopped keeps its entry (with
//! an empty list) so a sync can still learn that typing stopped; entries
//! are dropped only when the table is full, and then `floor` remembers the
//! newest serial dropped so a sync token older than it is told "nobody is
//! typing" for any room without an entry.

use std::collections::HashMap;

/// Longest typing notice a client may ask for; clients re-send every
/// 20–30 seconds while the user types.
pub const TYPING_TIMEOUT_MAX_MS: u64 = 30_000;
/// Shortest typing notice (a zero timeout would never be seen).
pub const TYPING_TIMEOUT_MIN_MS: u64 = 1_000;
/// The notice's length when the client gives no `timeout`.
pub const TYPING_TIMEOUT_DEFAULT_MS: u64 = 30_000;
/// Rooms tracked at once (with typers, or recently without).
pub const TYPING_ROOMS_MAX: usize = 10_000;
/// Typers tracked per room; past this the notice closest to running out
/// gives way.
pub const TYPERS_PER_ROOM_MAX: usize = 64;
/// Notices that ran out kept until someone takes them ([`Typing::take_ran_out`]);
/// past this the newest are not kept.
pub const RAN_OUT_MAX: usize = 1_000;

/// The clamped length of a typing notice.
pub fn clamp_timeout(timeout_ms: Option<u64>) -> u64 {
    timeout_ms.unwrap_or(TYPING_TIMEOUT_DEFAULT_MS).clamp(TYPING_TIMEOUT_MIN_MS, TYPING_TIMEOUT_MAX_MS)
}

#[derive(Debug, Default)]
struct RoomTyping {
    /// (user ID, expiry in ms since the epoch), in the order they started.
    typers: Vec<(String, i64)>,
    /// The ephemeral serial of the last change of `typers`.
    changed: u64,
}

#[derive(Debug)]
pub struct Typing {
    rooms: HashMap<String, RoomTyping>,
    /// The newest serial among the rooms dropped for space.
    floor: u64,
    /// The earliest expiry among all typers (`i64::MAX` when none).
    next_expiry: i64,
    /// (room ID, user ID) of the notices that ran out since the last
    /// [`Typing::take_ran_out`] (so other servers can be told they stopped).
    ran_out: Vec<(String, String)>,
}

impl Default for Typing {
    fn default() -> Typing {
        Typing { rooms: HashMap::new(), floor: 0, next_expiry: i64::MAX, ran_out: Vec::new() }
    }
}

impl Typing {
    /// Marks `user` typing until `until` (ms since the epoch), or not typing
    /// for `None`. Returns the serial taken from `serial` if the set of
    /// typers changed (extending a notice changes nothing anyone sees).
    pub fn set(
        &mut self,
        room_id: &str,
        user_id: &str,
        until: Option<i64>,
        now: i64,
        serial: impl FnOnce() -> u64,
    ) -> Option<u64> {
        match until {
            Some(until) => {
                if !self.rooms.contains_key(room_id) {
                    self.make_space(now);
                }
                let room = self.rooms.entry(room_id.to_owned()).or_default();
                if let Some(t) = room.typers.iter_mut().find(|(u, _)| u == user_id) {
                    if t.1 > now {
                        t.1 = until;
                        self.next_expiry = self.next_expiry.min(until);
                        return None;
                    }
                    // Expired but not yet swept: it counts as a new start.
                    t.1 = until;
                } else {
                    if room.typers.len() >= TYPERS_PER_ROOM_MAX {
                        if let Some(i) = (0..room.typers.len()).min_by_key(|&i| room.typers[i].1) {
                            room.typers.remove(i);
                        }
                    }
                    room.typers.push((user_id.to_owned(), until));
                }
                let s = serial();
                room.changed = s;
                self.next_expiry = self.next_expiry.min(until);
                Some(s)
            }
            None => {
                let room = self.rooms.get_mut(room_id)?;
                let before = room.typers.len();
                let was_live = room.typers.iter().any(|(u, exp)| u == user_id && *exp > now);
                room.typers.retain(|(u, _)| u != user_id);
                if room.typers.len() == before || !was_live {
                    // Not typing (or already run out, which `expire` reports).
                    return None;
                }
                let s = serial();
                room.changed = s;
                Some(s)
            }
        }
    }

    /// Removes the notices that ran out by `now`. If any did, takes one
    /// serial for all the rooms concerned and returns them.
    pub fn expire(&mut self, now: i64, serial: impl FnOnce() -> u64) -> Vec<String> {
        if now < self.next_expiry {
            return Vec::new();
        }
        let mut changed = Vec::new();
        let mut next = i64::MAX;
        let ran_out = &mut self.ran_out;
        for (room_id, room) in &mut self.rooms {
            let before = room.typers.len();
            room.typers.retain(|(user_id, exp)| {
                let live = *exp > now;
                if !live && ran_out.len() < RAN_OUT_MAX {
                    ran_out.push((room_id.clone(), user_id.clone()));
                }
                live
            });
            if room.typers.len() != before {
                changed.push(room_id.clone());
            }
            next = room.typers.iter().map(|(_, exp)| *exp).fold(next, i64::min);
        }
        self.next_expiry = next;
        if !changed.is_empty() {
            let s = serial();
            for room_id in &changed {
                if let Some(room) = self.rooms.get_mut(room_id) {
                    room.changed = s;
                }
            }
            changed.sort();
        }
        changed
    }

    /// The (room ID, user ID) of the notices that ran out since the last
    /// call, oldest first.
    pub fn take_ran_out(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.ran_out)
    }

    /// The users typing in a room at `now`.
    pub fn typers(&self, room_id: &str, now: i64) -> Vec<String> {
        self.rooms.get(room_id).map_or_else(Vec::new, |room| {
            room.typers.iter().filter(|(_, exp)| *exp > now).map(|(u, _)| u.clone()).collect()
        })
    }

    /// True if the room's typers changed after serial `since`.
    pub fn changed_since(&self, room_id: &str, since: u64) -> bool {
        match self.rooms.get(room_id) {
            Some(room) => room.changed > since,
            None => since < self.floor,
        }
    }

    /// Rooms tracked (for tests and limits).
    pub fn rooms_tracked(&self) -> usize {
        self.rooms.len()
    }

    /// Makes room for one more room entry: first rooms nobody types in,
    /// oldest change first, then the room whose typing changed longest ago.
    fn make_space(&mut self, now: i64) {
        if self.rooms.len() < TYPING_ROOMS_MAX {
            return;
        }
        let victim = self
            .rooms
            .iter()
            .min_by_key(|(_, r)| (r.typers.iter().any(|(_, exp)| *exp > now), r.changed))
            .map(|(id, _)| id.clone());
        if let Some(id) = victim {
            if let Some(room) = self.rooms.remove(&id) {
                self.floor = self.floor.max(room.changed);
            }
        }
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
    fn start_refresh_stop() {
        let mut t = Typing::default();
        let mut next = counter();
        assert_eq!(t.set("!r", "@a:x", Some(1000), 0, &mut next), Some(1));
        assert_eq!(t.typers("!r", 10), vec!["@a:x".to_owned()]);
        // Extending the notice is not a change.
        assert_eq!(t.set("!r", "@a:x", Some(2000), 10, &mut next), None);
        assert!(t.changed_since("!r", 0) && !t.changed_since("!r", 1));
        assert_eq!(t.set("!r", "@a:x", None, 20, &mut next), Some(2));
        assert!(t.typers("!r", 20).is_empty());
        // The emptied room still says it changed.
        assert!(t.changed_since("!r", 1));
        // Stopping again changes nothing.
        assert_eq!(t.set("!r", "@a:x", None, 30, &mut next), None);
        assert_eq!(t.set("!other", "@a:x", None, 30, &mut next), None);
        assert!(!t.changed_since("!other", 0));
    }

    #[test]
    fn expiry_takes_one_serial_and_reports_rooms() {
        let mut t = Typing::default();
        let mut next = counter();
        t.set("!r1", "@a:x", Some(100), 0, &mut next);
        t.set("!r2", "@b:x", Some(100), 0, &mut next);
        t.set("!r2", "@c:x", Some(500), 0, &mut next);
        assert!(t.expire(99, &mut next).is_empty());
        assert_eq!(t.expire(100, &mut next), vec!["!r1".to_owned(), "!r2".to_owned()]);
        assert!(t.changed_since("!r1", 3) && t.changed_since("!r2", 3) && !t.changed_since("!r2", 4));
        assert_eq!(t.typers("!r2", 100), vec!["@c:x".to_owned()]);
        let mut ran_out = t.take_ran_out();
        ran_out.sort();
        assert_eq!(ran_out, [("!r1".to_owned(), "@a:x".to_owned()), ("!r2".to_owned(), "@b:x".to_owned())]);
        assert!(t.take_ran_out().is_empty());
        // Nothing due before 500.
        assert!(t.expire(499, &mut next).is_empty());
        assert_eq!(t.expire(600, &mut next), vec!["!r2".to_owned()]);
        assert_eq!(t.take_ran_out(), [("!r2".to_owned(), "@c:x".to_owned())]);
    }

    #[test]
    fn expired_but_unswept_typers_are_hidden_and_restart_counts() {
        let mut t = Typing::default();
        let mut next = counter();
        t.set("!r", "@a:x", Some(100), 0, &mut next);
        assert!(t.typers("!r", 150).is_empty());
        assert_eq!(t.set("!r", "@a:x", Some(300), 150, &mut next), Some(2));
        // Stopping a run-out notice is left to `expire`.
        let mut t = Typing::default();
        t.set("!r", "@a:x", Some(100), 0, &mut next);
        assert_eq!(t.set("!r", "@a:x", None, 150, &mut next), None);
    }

    #[test]
    fn timeouts_are_clamped() {
        assert_eq!(clamp_timeout(None), TYPING_TIMEOUT_DEFAULT_MS);
        assert_eq!(clamp_timeout(Some(0)), TYPING_TIMEOUT_MIN_MS);
        assert_eq!(clamp_timeout(Some(u64::MAX)), TYPING_TIMEOUT_MAX_MS);
        assert_eq!(clamp_timeout(Some(5000)), 5000);
    }

    #[test]
    fn tables_stay_bounded() {
        let mut t = Typing::default();
        let mut next = counter();
        for i in 0..TYPERS_PER_ROOM_MAX + 5 {
            t.set("!r", &format!("@u{i}:x"), Some(1000 + i as i64), 0, &mut next);
        }
        assert_eq!(t.typers("!r", 0).len(), TYPERS_PER_ROOM_MAX);
        // The earliest notices gave way.
        assert!(!t.typers("!r", 0).contains(&"@u0:x".to_owned()));
        let mut t = Typing::default();
        for i in 0..TYPING_ROOMS_MAX + 3 {
            let room = format!("!r{i}");
            t.set(&room, "@a:x", Some(1000), 0, &mut next);
            t.set(&room, "@a:x", None, 0, &mut next);
        }
        assert_eq!(t.rooms_tracked(), TYPING_ROOMS_MAX);
        // A token older than a dropped room's change hears "nobody types".
        assert!(t.changed_since("!r0", 0));
        assert!(!t.changed_since("!r0", u64::MAX - 1));
    }
}
