//! Per-destination scheduling of durable outbound work, generic over the
//! kind of traffic (push now; federation and appservice transactions
//! next).
//!
//! The durable rows of a kind (its outbox table, written in the
//! transaction that made the work) are the truth; this queue keeps only
//! who is in flight and, per destination, a backoff timer, both in memory.
//! After a restart it starts from the rows alone: a destination that was
//! failing is tried again once, then backs off again.
//!
//! Each kind gets its own bounded set of sender threads ([`spawn`]). A
//! sender claims a destination that has due work, is not in flight
//! elsewhere and is not backing off, so **at most one request is in flight
//! per destination**; it sends up to `BATCH` due items there one after
//! another (over the client's kept connection), records their outcomes in
//! one go, and releases the destination. A failure ends the batch and backs the
//! destination off (`backoff_ms`: `BACKOFF_FIRST_MS` doubling up to
//! `BACKOFF_MAX_MS`); a success clears its timer. Items keep their own
//! retry schedule in their rows (the kind records it, with the same
//! `backoff_ms`).
//!
//! Senders sleep until poked ([`Queue::poke`], after a commit that may
//! have queued work, or when a destination is released), until the next
//! item or backoff timer falls due, or at most `IDLE_WAIT`. They never run
//! inside a transaction and never hold a lock while sending.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::error::Result;
use crate::log;
use crate::outbound::client::Client;
use crate::storage;

/// Wait before the first retry; each further one waits twice as long...
pub const BACKOFF_FIRST_MS: i64 = 1_000;
/// ...up to this.
pub const BACKOFF_MAX_MS: i64 = 15 * 60 * 1000;
/// Due items sent to one destination before it is released to others.
pub const BATCH: usize = 16;
/// Sender threads one kind may have.
pub const SENDERS_MAX: usize = 8;
/// Destinations whose backoff timers are remembered; past this the timers
/// closest to running out are forgotten (which only means an earlier try).
pub const DESTINATIONS_TRACKED_MAX: usize = 4096;
/// The senders look at the outbox at least this often even if not poked.
pub const IDLE_WAIT: Duration = Duration::from_secs(60);

/// The wait before retry number `failures` (1 for the first retry).
pub fn backoff_ms(failures: u32) -> i64 {
    backoff_between(failures, BACKOFF_FIRST_MS, BACKOFF_MAX_MS)
}

/// The wait before retry number `failures` when the first waits
/// `first_ms` and none more than `max_ms`.
pub fn backoff_between(failures: u32, first_ms: i64, max_ms: i64) -> i64 {
    let shift = failures.saturating_sub(1).min(30);
    first_ms.max(1).saturating_mul(1 << shift).min(max_ms)
}

/// How one attempt to send an item ended.
#[derive(Debug)]
pub enum Delivery<A> {
    /// The destination answered (whatever it said; the kind judges).
    Answered(A),
    /// There was nothing left to send (what the item was about is gone).
    Nothing,
    /// No usable answer: the item is retried later and the destination
    /// backs off.
    Failed(crate::error::Error),
}

/// What a kind of outbound traffic supplies. Every method but `send` reads
/// or writes the kind's rows; `send` does the network I/O, with no
/// transaction open.
pub trait Kind: Send + Sync + 'static {
    /// One request's worth of work (a push; a federation transaction).
    type Item: Send;
    /// What `send` makes of a destination's answer.
    type Answer: Send;
    /// For thread names and logs.
    const NAME: &'static str;

    /// Destinations with items due at `now_ms`, soonest first, at most `limit`.
    fn due_destinations(&self, now_ms: i64, limit: usize) -> Result<Vec<String>>;
    /// When the next item falls due after `now_ms`, if any does.
    fn next_due_after(&self, now_ms: i64) -> Result<Option<i64>>;
    /// Up to `limit` items due at `now_ms` for `destination`, in order.
    fn load(&self, destination: &str, now_ms: i64, limit: usize) -> Result<Vec<Self::Item>>;
    /// Sends one item.
    fn send(&self, client: &Client, item: &Self::Item) -> Delivery<Self::Answer>;
    /// Records the outcomes of items sent to one destination, in the order
    /// sent, in the rows (done, retry at, given up) — best in one write
    /// transaction, so a batch costs one commit. At most `BATCH` at once.
    fn record(&self, outcomes: Vec<(Self::Item, Delivery<Self::Answer>)>) -> Result<()>;
    /// Housekeeping, run by the senders when idle.
    fn tick(&self, _now_ms: i64) {}
}

/// The handle: pokes the senders. Clones share the same senders.
#[derive(Clone, Default)]
pub struct Queue {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

/// The in-memory part: destinations in flight and backoff timers.
#[derive(Debug, Default)]
struct State {
    poked: bool,
    in_flight: HashSet<String>,
    backoff: HashMap<String, Backoff>,
    /// The backoff bounds, when not the defaults.
    bounds: Option<(i64, i64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Backoff {
    failures: u32,
    until_ms: i64,
}

impl State {
    /// Destinations that cannot be claimed now: how many of the due ones
    /// to ask for so that some claimable one is among them if any exists.
    fn busy(&self, now_ms: i64) -> usize {
        self.in_flight.len() + self.backoff.values().filter(|b| b.until_ms > now_ms).count()
    }

    /// Claims the first of `candidates` neither in flight nor backing off.
    fn claim(&mut self, candidates: Vec<String>, now_ms: i64) -> Option<String> {
        let free = candidates.into_iter().find(|d| {
            !self.in_flight.contains(d) && self.backoff.get(d).is_none_or(|b| b.until_ms <= now_ms)
        })?;
        self.in_flight.insert(free.clone());
        Some(free)
    }

    /// Releases a claimed destination: after a failure it backs off one
    /// step further; after a success its timer goes.
    fn release(&mut self, destination: &str, failed: bool, now_ms: i64) {
        self.in_flight.remove(destination);
        if !failed {
            self.backoff.remove(destination);
            return;
        }
        let failures = self.backoff.get(destination).map_or(0, |b| b.failures).saturating_add(1);
        if !self.backoff.contains_key(destination) && self.backoff.len() >= DESTINATIONS_TRACKED_MAX {
            self.backoff.retain(|_, b| b.until_ms > now_ms);
            if self.backoff.len() >= DESTINATIONS_TRACKED_MAX {
                let soonest = self.backoff.iter().min_by_key(|(_, b)| b.until_ms).map(|(d, _)| d.clone());
                if let Some(d) = soonest {
                    self.backoff.remove(&d);
                }
            }
        }
        let wait = match self.bounds {
            Some((first, max)) => backoff_between(failures, first, max),
            None => backoff_ms(failures),
        };
        self.backoff.insert(destination.to_owned(), Backoff { failures, until_ms: now_ms + wait });
    }

    /// The earliest backoff timer still running, if any.
    fn next_timer(&self, now_ms: i64) -> Option<i64> {
        self.backoff.values().map(|b| b.until_ms).filter(|&t| t > now_ms).min()
    }
}

impl Queue {
    pub fn new() -> Queue {
        Queue::default()
    }

    /// A queue whose destinations back off from `first_ms` doubling up
    /// to `max_ms` (federation's configured bounds).
    pub fn with_backoff(first_ms: i64, max_ms: i64) -> Queue {
        let q = Queue::default();
        storage::lock(&q.shared.state).bounds = Some((first_ms.max(1), max_ms.max(first_ms.max(1))));
        q
    }

    /// `destination` is reachable after all (it contacted us): its backoff
    /// timer goes and its work is tried at once.
    pub fn reset(&self, destination: &str) {
        let mut st = storage::lock(&self.shared.state);
        if st.backoff.remove(destination).is_some() {
            st.poked = true;
            drop(st);
            self.shared.wake.notify_all();
        }
    }

    /// Whether `destination` is backing off now (for tests and logs).
    pub fn backing_off(&self, destination: &str) -> bool {
        let now = storage::now_ms();
        storage::lock(&self.shared.state).backoff.get(destination).is_some_and(|b| b.until_ms > now)
    }

    /// Something committed: there may be new work. Never blocks for long.
    pub fn poke(&self) {
        storage::lock(&self.shared.state).poked = true;
        self.shared.wake.notify_all();
    }

    fn release(&self, destination: &str, failed: bool) {
        storage::lock(&self.shared.state).release(destination, failed, storage::now_ms());
        // Work for this destination may have waited on it.
        self.poke();
    }
}

/// Starts `senders` threads (at most `SENDERS_MAX`) draining `kind`'s
/// rows through `client`; `queue` is the handle that wakes them.
pub fn spawn<K: Kind>(kind: Arc<K>, client: Client, queue: Queue, senders: usize) {
    for i in 0..senders.clamp(1, SENDERS_MAX) {
        let (kind, client, queue) = (kind.clone(), client.clone(), queue.clone());
        std::thread::Builder::new()
            .name(format!("{}-sender-{i}", K::NAME))
            .spawn(move || run(&*kind, &client, &queue))
            .expect("spawning an outbound sender thread");
    }
}

fn run<K: Kind>(kind: &K, client: &Client, queue: &Queue) {
    loop {
        storage::lock(&queue.shared.state).poked = false;
        let now = storage::now_ms();
        match claim(kind, queue, now) {
            Ok(Some(destination)) => {
                let failed = drain(kind, client, &destination);
                queue.release(&destination, failed);
                continue;
            }
            Ok(None) => {}
            Err(e) => log::warn(format_args!("{}: reading the outbox: {}", K::NAME, e.message)),
        }
        kind.tick(now);
        // Due items not claimed are in flight elsewhere (their release
        // pokes) or backing off (their timer is waited for).
        let next_item = kind.next_due_after(now).ok().flatten();
        let st = storage::lock(&queue.shared.state);
        let next = [next_item, st.next_timer(now)].into_iter().flatten().min();
        let wait = next.map_or(IDLE_WAIT, |t| Duration::from_millis((t - now).max(1) as u64).min(IDLE_WAIT));
        if !st.poked {
            let _ = queue.shared.wake.wait_timeout(st, wait);
        }
    }
}

/// Claims a destination with due work, if one is free.
fn claim<K: Kind>(kind: &K, queue: &Queue, now: i64) -> Result<Option<String>> {
    let busy = storage::lock(&queue.shared.state).busy(now);
    let limit = (busy + SENDERS_MAX).min(DESTINATIONS_TRACKED_MAX + 2 * SENDERS_MAX);
    let due = kind.due_destinations(now, limit)?;
    if due.is_empty() {
        return Ok(None);
    }
    Ok(storage::lock(&queue.shared.state).claim(due, now))
}

/// Sends a batch of due items to a claimed destination; true if the
/// destination failed (and should back off).
fn drain<K: Kind>(kind: &K, client: &Client, destination: &str) -> bool {
    let items = match kind.load(destination, storage::now_ms(), BATCH) {
        Ok(items) => items,
        Err(e) => {
            log::warn(format_args!("{}: reading the outbox: {}", K::NAME, e.message));
            return true;
        }
    };
    // Sent one after another; the outcomes are recorded together. A crash
    // before the record sends the batch again (every kind's requests are
    // idempotent at their destination).
    let mut outcomes = Vec::with_capacity(items.len());
    let mut failed = false;
    for item in items {
        let delivery = kind.send(client, &item);
        failed = matches!(delivery, Delivery::Failed(_));
        outcomes.push((item, delivery));
        if failed {
            break;
        }
    }
    if outcomes.is_empty() {
        return false;
    }
    if let Err(e) = kind.record(outcomes) {
        log::warn(format_args!("{}: recording deliveries: {}", K::NAME, e.message));
        return true;
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn backoff_doubles_between_its_bounds() {
        assert_eq!(backoff_ms(0), BACKOFF_FIRST_MS);
        assert_eq!(backoff_ms(1), BACKOFF_FIRST_MS);
        assert_eq!(backoff_ms(2), 2 * BACKOFF_FIRST_MS);
        assert_eq!(backoff_ms(3), 4 * BACKOFF_FIRST_MS);
        assert_eq!(backoff_ms(10), 512 * BACKOFF_FIRST_MS);
        assert_eq!(backoff_ms(11), BACKOFF_MAX_MS);
        assert_eq!(backoff_ms(40), BACKOFF_MAX_MS);
        assert_eq!(backoff_ms(u32::MAX), BACKOFF_MAX_MS);
        let schedule: Vec<i64> = (1..=12).map(backoff_ms).collect();
        assert!(schedule.windows(2).all(|w| w[0] <= w[1]), "{schedule:?}");
    }

    #[test]
    fn one_request_in_flight_per_destination() {
        let mut st = State::default();
        assert_eq!(st.claim(names(&["a", "b"]), 0).as_deref(), Some("a"));
        // A second sender gets the other destination, a third nothing.
        assert_eq!(st.claim(names(&["a", "b"]), 0).as_deref(), Some("b"));
        assert_eq!(st.claim(names(&["a", "b"]), 0), None);
        assert_eq!(st.busy(0), 2);
        st.release("a", false, 0);
        assert_eq!(st.claim(names(&["a", "b"]), 0).as_deref(), Some("a"));
    }

    #[test]
    fn a_failing_destination_backs_off_and_a_success_clears_it() {
        let mut st = State::default();
        st.claim(names(&["a"]), 0);
        st.release("a", true, 0);
        assert_eq!(st.next_timer(0), Some(BACKOFF_FIRST_MS));
        assert_eq!(st.claim(names(&["a"]), BACKOFF_FIRST_MS - 1), None);
        assert_eq!(st.busy(BACKOFF_FIRST_MS - 1), 1);
        // Others are not held up by it.
        assert_eq!(st.claim(names(&["a", "b"]), 10).as_deref(), Some("b"));
        let t = BACKOFF_FIRST_MS;
        assert_eq!(st.claim(names(&["a"]), t).as_deref(), Some("a"));
        st.release("a", true, t);
        assert_eq!(st.next_timer(t), Some(t + 2 * BACKOFF_FIRST_MS));
        let t = t + 2 * BACKOFF_FIRST_MS;
        st.claim(names(&["a"]), t);
        st.release("a", false, t);
        assert_eq!(st.next_timer(t), None);
        assert_eq!(st.claim(names(&["a"]), t).as_deref(), Some("a"));
    }

    #[test]
    fn configured_bounds_and_reset() {
        assert_eq!(backoff_between(1, 500, 3000), 500);
        assert_eq!(backoff_between(3, 500, 3000), 2000);
        assert_eq!(backoff_between(4, 500, 3000), 3000);
        let q = Queue::with_backoff(500, 3000);
        let now = storage::now_ms();
        {
            let mut st = storage::lock(&q.shared.state);
            st.claim(names(&["a"]), now);
            st.release("a", true, now);
            assert_eq!(st.next_timer(now), Some(now + 500));
        }
        assert!(q.backing_off("a"));
        q.reset("a");
        assert!(!q.backing_off("a"));
        assert!(storage::lock(&q.shared.state).poked);
    }

    #[test]
    fn backoff_timers_are_bounded() {
        let mut st = State::default();
        for i in 0..DESTINATIONS_TRACKED_MAX + 10 {
            let d = format!("d{i}");
            // All still running: the soonest to end are forgotten.
            st.claim(vec![d.clone()], 0);
            st.release(&d, true, 0);
        }
        assert_eq!(st.backoff.len(), DESTINATIONS_TRACKED_MAX);
        // The newest failure is remembered.
        assert!(st.backoff.contains_key(&format!("d{}", DESTINATIONS_TRACKED_MAX + 9)));
    }
}
