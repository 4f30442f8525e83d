//! Sliding sync connections (MSC4186): what each connection — a user's
//! device and a client-chosen `conn_id` — was sent, so the next answer
//! carries only what changed. In memory and bounded: a connection the
//! server no longer knows (evicted, or the server restarted) answers
//! `M_UNKNOWN_POS` and the client starts that connection over, as the MSC
//! provides.
//!
//! A connection keeps the snapshot its newest `pos` stands for and the one
//! before it: a client whose answer was lost repeats its request with the
//! previous `pos` and gets that answer again (recomputed), not an error.
//! An answer computed from anything but the newest `pos` (a retry, or a
//! long-poll the client gave up on, answered later) does not displace the
//! newest: it is kept beside it (`SIBLINGS_MAX`), so whichever of them the
//! client actually received, it can continue from.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Connections kept, all users together; the least recently used goes.
pub const CONNECTIONS_MAX: usize = 4096;
/// Connections kept per user (several devices, several `conn_id`s each).
pub const CONNECTIONS_PER_USER_MAX: usize = 32;
/// Answers kept beside the newest one, computed from older positions.
pub const SIBLINGS_MAX: usize = 2;

/// What a room's part of an answer covered.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomSent {
    /// The stream position its events and state were sent up to.
    pub upto: i64,
    /// The timeline limit it was sent with (a larger one later expands it).
    pub timeline_limit: usize,
    /// The membership it was sent with (`join`, `invite`, `knock`).
    pub membership: String,
}

/// What one `pos` of a connection stands for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// The `pos` handed out for it (0: a new connection, nothing sent).
    pub id: u64,
    /// The stream position and ephemeral serial the answer covered.
    pub stream: i64,
    pub ephemeral: u64,
    /// Rooms sent so far, and what they were sent up to.
    pub rooms: HashMap<String, RoomSent>,
    /// Each list's room count as last sent.
    pub counts: HashMap<String, usize>,
    /// Sticky request parts: the extensions' settings and the room
    /// subscriptions, as JSON, kept until the client changes them.
    pub extensions: serde_json::Map<String, serde_json::Value>,
    pub subscriptions: serde_json::Map<String, serde_json::Value>,
}

struct Conn {
    current: Snapshot,
    previous: Option<Snapshot>,
    /// Answers computed from another base than `current`, newest last.
    siblings: Vec<Snapshot>,
    used: u64,
}

/// Which connection: user, device, `conn_id`.
pub type ConnKey = (String, String, String);

/// Why a `pos` cannot be continued from.
#[derive(Debug, PartialEq)]
pub struct UnknownPos;

/// Every live connection.
#[derive(Default)]
pub struct Connections {
    conns: Mutex<HashMap<ConnKey, Conn>>,
    next_id: AtomicU64,
    clock: AtomicU64,
}

impl Connections {
    pub fn new() -> Connections {
        Connections {
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            clock: AtomicU64::new(0),
        }
    }

    /// The snapshot a request continues from: none given, a new connection
    /// (any old state of that `conn_id` dropped); the current or previous
    /// `pos`, that snapshot; anything else is unknown.
    pub fn base(&self, key: &ConnKey, pos: Option<u64>) -> Result<Snapshot, UnknownPos> {
        let mut conns = crate::util::lock(&self.conns);
        let Some(pos) = pos else {
            conns.remove(key);
            return Ok(Snapshot::default());
        };
        let conn = conns.get_mut(key).ok_or(UnknownPos)?;
        conn.used = self.clock.fetch_add(1, Ordering::Relaxed);
        if conn.current.id == pos {
            return Ok(conn.current.clone());
        }
        conn.previous.iter().chain(conn.siblings.iter()).find(|s| s.id == pos).cloned().ok_or(UnknownPos)
    }

    /// A fresh `pos` for an answer about to be recorded.
    pub fn next_pos(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Records the snapshot an answer stands for (its `id` is the `pos`
    /// handed out). From the newest `pos` (or a sibling the client went on
    /// from), it becomes the newest and its base the previous one; from an
    /// older base it is kept as a sibling, displacing nothing.
    pub fn record(&self, key: &ConnKey, base_id: u64, snapshot: Snapshot) {
        let mut conns = crate::util::lock(&self.conns);
        let used = self.clock.fetch_add(1, Ordering::Relaxed);
        match conns.remove(key) {
            None => {
                conns.insert(
                    key.clone(),
                    Conn { current: snapshot, previous: None, siblings: Vec::new(), used },
                );
            }
            Some(mut c) => {
                let from_sibling = c.siblings.iter().position(|s| s.id == base_id);
                if c.current.id == base_id {
                    c.previous = Some(std::mem::replace(&mut c.current, snapshot));
                    c.siblings.clear();
                } else if let Some(i) = from_sibling {
                    c.previous = Some(c.siblings.remove(i));
                    c.current = snapshot;
                    c.siblings.clear();
                } else {
                    c.siblings.push(snapshot);
                    if c.siblings.len() > SIBLINGS_MAX {
                        c.siblings.remove(0);
                    }
                }
                c.used = used;
                conns.insert(key.clone(), c);
            }
        }
        evict(&mut conns, &key.0);
    }

    pub fn len(&self) -> usize {
        crate::util::lock(&self.conns).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Drops the least recently used connections past the bounds.
fn evict(conns: &mut HashMap<ConnKey, Conn>, user_id: &str) {
    loop {
        let mine: Vec<(&ConnKey, u64)> =
            conns.iter().filter(|(k, _)| k.0 == user_id).map(|(k, c)| (k, c.used)).collect();
        let victim = if mine.len() > CONNECTIONS_PER_USER_MAX {
            mine.into_iter().min_by_key(|(_, used)| *used).map(|(k, _)| k.clone())
        } else if conns.len() > CONNECTIONS_MAX {
            conns.iter().min_by_key(|(_, c)| c.used).map(|(k, _)| k.clone())
        } else {
            None
        };
        match victim {
            Some(k) => {
                conns.remove(&k);
            }
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(u: &str, c: &str) -> ConnKey {
        (u.to_owned(), "D".to_owned(), c.to_owned())
    }

    #[test]
    fn positions_continue_retry_and_expire() {
        let conns = Connections::new();
        let k = key("@a", "main");
        assert_eq!(conns.base(&k, Some(5)), Err(UnknownPos), "nothing known yet");
        let base = conns.base(&k, None).unwrap();
        assert_eq!(base.id, 0);
        let first = conns.next_pos();
        conns.record(&k, 0, Snapshot { id: first, stream: 10, ..Snapshot::default() });
        assert_eq!(conns.base(&k, Some(first)).unwrap().stream, 10);
        let second = conns.next_pos();
        conns.record(&k, first, Snapshot { id: second, stream: 20, ..Snapshot::default() });
        // The previous pos still works (a lost answer is asked for again).
        assert_eq!(conns.base(&k, Some(first)).unwrap().stream, 10);
        assert_eq!(conns.base(&k, Some(second)).unwrap().stream, 20);
        // A late answer from the previous pos (a long-poll the client gave
        // up on) is kept beside the newest, which stays valid.
        let ghost = conns.next_pos();
        conns.record(&k, first, Snapshot { id: ghost, stream: 25, ..Snapshot::default() });
        assert_eq!(conns.base(&k, Some(second)).unwrap().stream, 20);
        assert_eq!(conns.base(&k, Some(ghost)).unwrap().stream, 25);
        let third = conns.next_pos();
        conns.record(&k, second, Snapshot { id: third, stream: 30, ..Snapshot::default() });
        assert_eq!(conns.base(&k, Some(first)), Err(UnknownPos), "two back is gone");
        assert_eq!(conns.base(&k, Some(ghost)), Err(UnknownPos), "the client went on from another");
        // No pos: the connection starts over.
        assert_eq!(conns.base(&k, None).unwrap(), Snapshot::default());
        assert_eq!(conns.base(&k, Some(third)), Err(UnknownPos));
    }

    #[test]
    fn connections_per_user_are_bounded() {
        let conns = Connections::new();
        for i in 0..CONNECTIONS_PER_USER_MAX + 5 {
            let k = key("@a", &i.to_string());
            let id = conns.next_pos();
            conns.record(&k, 0, Snapshot { id, ..Snapshot::default() });
        }
        assert_eq!(conns.len(), CONNECTIONS_PER_USER_MAX);
        assert!(conns.base(&key("@a", "0"), Some(1)).is_err(), "the oldest went first");
        let other = key("@b", "x");
        conns.record(&other, 0, Snapshot { id: conns.next_pos(), ..Snapshot::default() });
        assert_eq!(conns.len(), CONNECTIONS_PER_USER_MAX + 1);
    }
}
