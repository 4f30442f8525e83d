//! Which member events each device has been sent, so lazy loading of
//! members is exact: a member whose current event the device already has
//! is not sent again (unless the filter sets `include_redundant_members`).
//!
//! Kept in memory, bounded: at most [`DEVICES_MAX`] devices (the least
//! recently used is dropped) and [`MEMBERS_PER_DEVICE_MAX`] entries per
//! device (past it the device's entries are dropped). Forgetting is always
//! safe: a forgotten member is only sent again. A restart forgets all.
//!
//! An entry remembers the `next_batch` position of the answer that carried
//! it; it counts as delivered only to a sync whose `since` is at or past
//! that position. A client that retries with an older token (the answer was
//! lost) therefore gets the members again.

use std::collections::HashMap;
use std::sync::Mutex;

/// Devices remembered at once.
pub const DEVICES_MAX: usize = 1024;
/// Member events remembered per device, over all its rooms.
pub const MEMBERS_PER_DEVICE_MAX: usize = 4096;

/// `(room_id, member)` → (event ID, position of the answer that carried it).
type Sent = HashMap<(String, String), (String, i64)>;

#[derive(Default)]
struct Device {
    sent: Sent,
    used: u64,
}

#[derive(Default)]
struct Inner {
    devices: HashMap<(String, String), Device>,
    clock: u64,
}

/// The member events sent to each device (see the module doc).
#[derive(Default)]
pub struct SentMembers {
    inner: Mutex<Inner>,
}

impl SentMembers {
    pub fn new() -> SentMembers {
        SentMembers::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The map holds no invariant a panicking holder could break.
        crate::util::lock(&self.inner)
    }

    /// Forgets what the device was sent (an initial sync starts afresh).
    pub fn reset(&self, user_id: &str, device_id: &str) {
        self.lock().devices.remove(&(user_id.to_owned(), device_id.to_owned()));
    }

    /// True if the device has `event_id` as `member`'s event in `room_id`,
    /// from an answer at or before `since`.
    pub fn delivered(
        &self,
        user_id: &str,
        device_id: &str,
        room_id: &str,
        member: &str,
        event_id: &str,
        since: i64,
    ) -> bool {
        let inner = self.lock();
        let Some(dev) = inner.devices.get(&(user_id.to_owned(), device_id.to_owned())) else { return false };
        dev.sent
            .get(&(room_id.to_owned(), member.to_owned()))
            .is_some_and(|(id, at)| id == event_id && *at <= since)
    }

    /// Records that an answer at position `at` carried these member events
    /// (`(member, event ID)`) of `room_id`.
    pub fn record(
        &self,
        user_id: &str,
        device_id: &str,
        room_id: &str,
        members: &[(String, String)],
        at: i64,
    ) {
        if members.is_empty() {
            return;
        }
        let mut inner = self.lock();
        inner.clock += 1;
        let clock = inner.clock;
        let key = (user_id.to_owned(), device_id.to_owned());
        if !inner.devices.contains_key(&key) && inner.devices.len() >= DEVICES_MAX {
            let oldest = inner.devices.iter().min_by_key(|(_, d)| d.used).map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                inner.devices.remove(&k);
            }
        }
        let dev = inner.devices.entry(key).or_default();
        dev.used = clock;
        if dev.sent.len() + members.len() > MEMBERS_PER_DEVICE_MAX {
            dev.sent.clear();
        }
        for (member, event_id) in members.iter().take(MEMBERS_PER_DEVICE_MAX) {
            let k = (room_id.to_owned(), member.clone());
            match dev.sent.get(&k) {
                // Already known: keep the earlier position, which the
                // client may have acknowledged already.
                Some((id, _)) if id == event_id => {}
                _ => {
                    dev.sent.insert(k, (event_id.clone(), at));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(member: &str, id: &str) -> (String, String) {
        (member.to_owned(), id.to_owned())
    }

    #[test]
    fn delivered_only_once_acknowledged_and_for_the_same_event() {
        let s = SentMembers::new();
        s.record("@a:x", "D", "!r", &[m("@b:x", "$1")], 10);
        assert!(!s.delivered("@a:x", "D", "!r", "@b:x", "$1", 9), "not yet acknowledged");
        assert!(s.delivered("@a:x", "D", "!r", "@b:x", "$1", 10));
        assert!(!s.delivered("@a:x", "D", "!r", "@b:x", "$2", 10), "a changed member");
        assert!(!s.delivered("@a:x", "E", "!r", "@b:x", "$1", 10), "another device");
        assert!(!s.delivered("@a:x", "D", "!s", "@b:x", "$1", 10), "another room");
        // Sent again later: the earlier, acknowledged position stays.
        s.record("@a:x", "D", "!r", &[m("@b:x", "$1")], 20);
        assert!(s.delivered("@a:x", "D", "!r", "@b:x", "$1", 15));
        s.reset("@a:x", "D");
        assert!(!s.delivered("@a:x", "D", "!r", "@b:x", "$1", 30));
    }

    #[test]
    fn bounded_per_device_and_in_devices() {
        let s = SentMembers::new();
        let many: Vec<_> = (0..MEMBERS_PER_DEVICE_MAX).map(|i| m(&format!("@u{i}:x"), "$e")).collect();
        s.record("@a:x", "D", "!r", &many, 1);
        assert!(s.delivered("@a:x", "D", "!r", "@u0:x", "$e", 1));
        // One more: over the cap, the device's entries are forgotten.
        s.record("@a:x", "D", "!s", &[m("@z:x", "$z")], 2);
        assert!(!s.delivered("@a:x", "D", "!r", "@u0:x", "$e", 2));
        assert!(s.delivered("@a:x", "D", "!s", "@z:x", "$z", 2));
        for i in 0..DEVICES_MAX {
            s.record("@a:x", &format!("X{i}"), "!r", &[m("@b:x", "$1")], 3);
        }
        assert_eq!(s.lock().devices.len(), DEVICES_MAX);
        assert!(!s.delivered("@a:x", "D", "!s", "@z:x", "$z", 3), "least recently used dropped");
    }
}
