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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Connections kept, all users together; the least recently used goes.
pub const CONNECTIONS_MAX: usize = 4096;
/// Connections kept per user (several devices, several `conn_id`s each).
pub const CONNECTIONS_PER_USER_MAX: usize = 32;

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
        match &conn.previous {
            Some(p) if p.id == pos => Ok(p.clone()),
            _ => Err(UnknownPos),
        }
    }

    /// A fresh `pos` for an answer about to be recorded.
    pub fn next_pos(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Records the snapshot an answer stands for (its `id` is the `pos`
    /// handed out), the base it was computed from becoming the previous one.
    pub fn record(&self, key: &ConnKey, base_id: u64, snapshot: Snapshot) {
        let mut conns = crate::util::lock(&self.conns);
        let used = self.clock.fetch_add(1, Ordering::Relaxed);
        let previous = conns.remove(key).and_then(|c| {
            if c.current.id == base_id {
                Some(c.current)
            } else {
                c.previous.filter(|p| p.id == base_id)
            }
        });
        conns.insert(key.clone(), Conn { current: snapshot, previous, used });
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
        let third = conns.next_pos();
        conns.record(&k, second, Snapshot { id: third, stream: 30, ..Snapshot::default() });
        assert_eq!(conns.base(&k, Some(first)), Err(UnknownPos), "two back is gone");
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
