//! Federation's in-memory tables, owned by `App`: who is being asked for
//! keys right now (one fetch per server at a time, at most
//! `KEY_FETCHES_MAX` at once), which servers failed to answer lately (the
//! negative cache), other servers' profiles asked for lately, and their
//! keys read from the database lately. All
//! bounded; losing them (a restart) only means asking again.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};

use serde_json::Value;

use crate::storage::federation::RemoteKey;
use crate::util::{lock, now_ms};

/// Key fetches running at once, over all servers.
pub const KEY_FETCHES_MAX: usize = 4;
/// The longest a request waits for someone else's fetch of the same keys.
pub const KEY_FETCH_WAIT: Duration = Duration::from_secs(30);
/// A server that did not answer for keys is not asked again for this
/// long, doubling with each further failure...
pub const NEGATIVE_FIRST_MS: i64 = 5_000;
/// ...up to this.
pub const NEGATIVE_MAX_MS: i64 = 10 * 60 * 1000;
/// Servers remembered as failing, at most.
pub const NEGATIVE_MAX: usize = 4096;
/// How long a remote profile answer is reused.
pub const PROFILE_TTL_MS: i64 = 60_000;
/// Remote profiles remembered, at most.
pub const PROFILES_MAX: usize = 1024;
/// How long another server's `/hierarchy` answer is reused (the spec:
/// "should be cached for a period of time").
pub const HIERARCHY_TTL_MS: i64 = 60_000;
/// Remote `/hierarchy` answers remembered, at most.
pub const HIERARCHIES_MAX: usize = 256;
/// How long a remote key read from the database is reused without
/// reading it again (a key's row changes only when it is fetched again).
pub const KEY_MEMO_TTL: Duration = Duration::from_secs(60);
/// Remote keys remembered, at most.
pub const KEY_MEMO_MAX: usize = 1024;

#[derive(Default)]
pub struct Memo {
    /// Remote media fetches in progress (`federation::media`).
    pub media: Flights,
    /// One lock per room that events from other servers are entering.
    pub rooms: RoomLocks,
    fetching: Mutex<Fetching>,
    fetch_done: Condvar,
    negative: Mutex<HashMap<String, (u32, i64)>>,
    profiles: Mutex<HashMap<String, (i64, Value)>>,
    /// Other servers' `/hierarchy` answers, checked, by room and
    /// `suggested_only`.
    hierarchies: Mutex<HashMap<(String, bool), (i64, Value)>>,
    /// Remote keys read lately: checking a join's thousands of signatures
    /// reads each key once, not once per event.
    keys: Mutex<HashMap<(String, String), (Instant, RemoteKey)>>,
}

#[derive(Default)]
struct Fetching {
    servers: HashSet<String>,
}

/// A fetch slot held: dropping it lets the next fetch of that server run.
pub struct FetchSlot<'a> {
    memo: &'a Memo,
    server: String,
}

impl Drop for FetchSlot<'_> {
    fn drop(&mut self) {
        lock(&self.memo.fetching).servers.remove(&self.server);
        self.memo.fetch_done.notify_all();
    }
}

impl Memo {
    pub fn new() -> Memo {
        Memo::default()
    }

    /// A remote key read within [`KEY_MEMO_TTL`].
    pub fn remembered_key(&self, server: &str, key_id: &str) -> Option<RemoteKey> {
        let keys = lock(&self.keys);
        let (read, key) = keys.get(&(server.to_owned(), key_id.to_owned()))?;
        (read.elapsed() < KEY_MEMO_TTL).then(|| key.clone())
    }

    /// Remembers a remote key as read now.
    pub fn remember_key(&self, key: &RemoteKey) {
        let mut keys = lock(&self.keys);
        if keys.len() >= KEY_MEMO_MAX {
            keys.retain(|_, (read, _)| read.elapsed() < KEY_MEMO_TTL);
            if keys.len() >= KEY_MEMO_MAX {
                keys.clear();
            }
        }
        keys.insert((key.server_name.clone(), key.key_id.clone()), (Instant::now(), key.clone()));
    }

    /// Waits for the right to fetch `server`'s keys: none other fetching
    /// them, fewer than `KEY_FETCHES_MAX` fetches running. `None` after
    /// `KEY_FETCH_WAIT` (the caller then reads what the others fetched).
    pub fn fetch_slot(&self, server: &str) -> Option<FetchSlot<'_>> {
        let deadline = std::time::Instant::now() + KEY_FETCH_WAIT;
        let mut f = lock(&self.fetching);
        loop {
            if !f.servers.contains(server) && f.servers.len() < KEY_FETCHES_MAX {
                f.servers.insert(server.to_owned());
                return Some(FetchSlot { memo: self, server: server.to_owned() });
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            f = self.fetch_done.wait_timeout(f, left).map(|(g, _)| g).unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// Whether `server` failed lately and is not to be asked yet.
    pub fn failing(&self, server: &str) -> bool {
        lock(&self.negative).get(server).is_some_and(|&(_, until)| until > now_ms())
    }

    /// `server` did not answer: not asked again for a while.
    pub fn failed(&self, server: &str) {
        let now = now_ms();
        let mut n = lock(&self.negative);
        if n.len() >= NEGATIVE_MAX && !n.contains_key(server) {
            n.retain(|_, (_, until)| *until > now);
            if n.len() >= NEGATIVE_MAX {
                return;
            }
        }
        let failures = n.get(server).map_or(0, |(f, _)| *f).saturating_add(1);
        let wait = crate::outbound::queue::backoff_between(failures, NEGATIVE_FIRST_MS, NEGATIVE_MAX_MS);
        n.insert(server.to_owned(), (failures, now + wait));
    }

    /// `server` answered (or contacted us): asked again whenever needed.
    pub fn answered(&self, server: &str) {
        lock(&self.negative).remove(server);
    }

    /// A remote profile asked for within `PROFILE_TTL_MS`.
    pub fn profile(&self, user_id: &str) -> Option<Value> {
        let now = now_ms();
        lock(&self.profiles).get(user_id).filter(|(at, _)| now - at < PROFILE_TTL_MS).map(|(_, v)| v.clone())
    }

    pub fn put_profile(&self, user_id: &str, profile: Value) {
        put_bounded(&mut lock(&self.profiles), user_id.to_owned(), profile, PROFILE_TTL_MS, PROFILES_MAX);
    }

    /// A remote `/hierarchy` answer had within [`HIERARCHY_TTL_MS`].
    pub fn hierarchy(&self, room_id: &str, suggested_only: bool) -> Option<Value> {
        let now = now_ms();
        let key = (room_id.to_owned(), suggested_only);
        lock(&self.hierarchies)
            .get(&key)
            .filter(|(at, _)| now - at < HIERARCHY_TTL_MS)
            .map(|(_, v)| v.clone())
    }

    pub fn put_hierarchy(&self, room_id: &str, suggested_only: bool, answer: Value) {
        let key = (room_id.to_owned(), suggested_only);
        put_bounded(&mut lock(&self.hierarchies), key, answer, HIERARCHY_TTL_MS, HIERARCHIES_MAX);
    }
}

/// Remembers `value` now in a table of at most `max` entries: when it is
/// full, the entries older than `ttl_ms` go, and if that was not enough,
/// all of them (a burst of new names costs only re-asking).
fn put_bounded<K: std::hash::Hash + Eq>(
    table: &mut HashMap<K, (i64, Value)>,
    key: K,
    value: Value,
    ttl_ms: i64,
    max: usize,
) {
    let now = now_ms();
    if table.len() >= max {
        table.retain(|_, (at, _)| now - *at < ttl_ms);
        if table.len() >= max {
            table.clear();
        }
    }
    table.insert(key, (now, value));
}

// ---------------------------------------------------------------------
// Single-flight.
// ---------------------------------------------------------------------

/// Remote media requests in progress: how many wait on other servers
/// (bounded), and the fetches running, by (origin, media ID), which
/// others asking for the same media wait for instead of fetching again.
/// In memory; `App` owns them (in its `Memo`).
#[derive(Default)]
pub struct Flights {
    state: Mutex<FlightState>,
}

#[derive(Default)]
struct FlightState {
    busy: usize,
    fetching: HashMap<(String, String), Arc<Flight>>,
}

/// One fetch: its outcome once known.
#[derive(Default)]
pub struct Flight {
    outcome: Mutex<Option<Result<()>>>,
    done: Condvar,
}

impl Flight {
    /// Waits for the outcome, at most `timeout`; `None` if it did not come.
    pub fn wait(&self, timeout: Duration) -> Option<Result<()>> {
        let deadline = Instant::now() + timeout;
        let mut outcome = lock(&self.outcome);
        loop {
            if let Some(o) = outcome.as_ref() {
                return Some(o.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            outcome =
                self.done.wait_timeout(outcome, left).map(|(g, _)| g).unwrap_or_else(|e| e.into_inner().0);
        }
    }
}

pub enum Join<'f> {
    /// This request fetches; the others wait for its outcome.
    Leader(Leading<'f>),
    /// Another request fetches the same media.
    Follower(Arc<Flight>),
}

/// The fetch this request leads. Finished or dropped, it leaves the
/// table and wakes those waiting (a dropped one tells them it failed).
pub struct Leading<'f> {
    flights: &'f Flights,
    key: (String, String),
    flight: Arc<Flight>,
}

impl Leading<'_> {
    pub fn finish(self, outcome: Result<()>) {
        *lock(&self.flight.outcome) = Some(outcome);
    }
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        lock(&self.flights.state).fetching.remove(&self.key);
        let mut outcome = lock(&self.flight.outcome);
        if outcome.is_none() {
            *outcome = Some(Err(Error::new(ErrorKind::BadGateway, "Failed to fetch remote media")));
        }
        self.flight.done.notify_all();
    }
}

/// A request counted as waiting on other servers' media.
pub struct Busy<'f> {
    flights: &'f Flights,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let mut s = lock(&self.flights.state);
        s.busy = s.busy.saturating_sub(1);
    }
}

impl Flights {
    pub fn new() -> Flights {
        Flights::default()
    }

    /// Counts a request in, or refuses it (429) when `max` are in.
    pub fn busy(&self, max: usize) -> Result<Busy<'_>> {
        let mut s = lock(&self.state);
        if s.busy >= max {
            return Err(Error::new(
                ErrorKind::LimitExceeded { retry_after_ms: 1000 },
                "Too many requests for remote media at once; try again shortly",
            ));
        }
        s.busy += 1;
        Ok(Busy { flights: self })
    }

    /// Leads the fetch of `key`, or follows the one running.
    pub fn join(&self, key: &(String, String)) -> Join<'_> {
        let mut s = lock(&self.state);
        if let Some(flight) = s.fetching.get(key) {
            return Join::Follower(flight.clone());
        }
        let flight = Arc::new(Flight::default());
        s.fetching.insert(key.clone(), flight.clone());
        Join::Leader(Leading { flights: self, key: key.clone(), flight })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_fetch_per_server_and_a_bounded_number_at_once() {
        let m = Memo::new();
        let a = m.fetch_slot("a").expect("free");
        let slots: Vec<_> = ["b", "c", "d"].iter().map(|s| m.fetch_slot(s).expect("free")).collect();
        assert_eq!(lock(&m.fetching).servers.len(), KEY_FETCHES_MAX);
        drop(a);
        assert!(m.fetch_slot("a").is_some());
        drop(slots);
        assert!(lock(&m.fetching).servers.is_empty());
    }

    #[test]
    fn failures_are_remembered_then_forgotten() {
        let m = Memo::new();
        assert!(!m.failing("x"));
        m.failed("x");
        assert!(m.failing("x"));
        m.failed("x");
        let until = lock(&m.negative)["x"].1;
        assert!(until - now_ms() > NEGATIVE_FIRST_MS, "the second failure waits longer");
        m.answered("x");
        assert!(!m.failing("x"));
    }
}

/// Rooms locked held at once before unused locks are let go.
const ROOM_LOCKS_KEPT: usize = 256;

/// Per-room serialisation of what comes from other servers: two
/// transactions (or a transaction and a join) never check, fetch and
/// resolve the same room at once. The writer still serialises the
/// writes themselves.
#[derive(Default)]
pub struct RoomLocks {
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl RoomLocks {
    /// The lock of `room_id` (hold `lock(&it)` for as long as needed).
    pub fn of(&self, room_id: &str) -> Arc<Mutex<()>> {
        let mut locks = lock(&self.locks);
        if locks.len() > ROOM_LOCKS_KEPT {
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        locks.entry(room_id.to_owned()).or_default().clone()
    }
}
