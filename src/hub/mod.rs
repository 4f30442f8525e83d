//! The hub: the one thread that holds parked long-polls (`/sync`, the
//! original specification's `/events`) and wakes them when something they
//! may see happens; and the publisher of the change feed.
//!
//! Every committed write announces what it changed (`storage::feed`): the
//! database hands the [`Changes`] to [`Hub::notify`], from whichever thread
//! wrote; in-memory changes (typing, presence) are announced the same way.
//! The hub wakes the parked requests they concern and tells its other
//! subscribers ([`Hub::subscribe`]: the push sender, later the federation
//! sender and appservices).
//!
//! A long-poll that finds nothing new is not left on an HTTP worker: the
//! HTTP layer hands the hub a [`Parked`] (its request, its waiter, and how
//! to answer) and the worker goes back to serving. The hub knows neither
//! HTTP nor the database: the hub thread only does bookkeeping (indexes by
//! user and room, deadlines), and waking a parked request means handing it
//! to a small pool of responder threads, which call [`Parked::recheck`]
//! (the HTTP layer's code recomputes the answer, a read-only query, and
//! writes it); if there is still nothing for that client, it comes back to
//! be parked again. At its deadline a parked request is answered with its
//! empty response ([`Parked::expire`]).
//!
//! Lost wake-ups are impossible: every parked request carries the stream
//! positions its last answer covered, and the hub remembers the newest
//! positions it was notified of; one parked behind them is rechecked at once.
//!
//! Limits: at most `max_parked` parked requests (past that a long-poll is
//! answered at once), the hub's inbox and the responders' queue are
//! bounded, and every parked request has a deadline (the client's timeout,
//! clamped).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::log;
pub use crate::storage::Changes;
use crate::util::lock;

/// Messages the hub's inbox holds before senders wait.
const INBOX_CAPACITY: usize = 4096;
/// Responder threads that recompute and answer woken long-polls.
const RESPONDERS: usize = 2;
/// Jobs queued for the responders before the hub answers cheaply itself.
const RESPONDER_QUEUE: usize = 4096;
/// How often parked requests are looked at for clients that went away.
const GONE_SWEEP: Duration = Duration::from_secs(1);

/// A parked long-poll: what it waits for, and how it is answered. The
/// HTTP layer implements it around its request.
pub trait Parked: Send {
    /// The user whose changes (invites, account data, presence of people
    /// they share rooms with...) wake it.
    fn user_id(&self) -> &str;
    /// The rooms whose events wake it.
    fn rooms(&self) -> &HashSet<String>;
    /// The stream positions (`pos`, ephemeral serial) its last answer covered.
    fn seen(&self) -> (i64, u64);
    /// When it is answered with nothing new.
    fn deadline(&self) -> Instant;
    /// True once its client has closed the connection.
    fn gone(&self) -> bool;
    /// Something may be new: computes the answer and writes it (`None`),
    /// or comes back to be parked again (`Some`) if there is still nothing.
    fn recheck(self: Box<Self>) -> Option<Box<dyn Parked>>;
    /// Answers with the empty response (the deadline passed, the client
    /// went away, or there is no room to park it again).
    fn expire(self: Box<Self>);
    /// Answers at once without computing anything: the responders are
    /// swamped.
    fn refuse(self: Box<Self>);
}

/// A subscriber to the change feed (push now; federation, appservices next).
pub type Subscriber = Box<dyn Fn(&Changes) + Send + Sync>;

enum Msg {
    Park(Box<dyn Parked>),
    Notify(Changes),
}

/// The handle other threads use.
pub struct Hub {
    inbox: SyncSender<Msg>,
    parked: Arc<AtomicUsize>,
    ephemeral: AtomicU64,
    max_parked: usize,
    /// Set once the hub thread runs: before that (the command line, unit
    /// tests) changes only reach the subscribers, so the bounded inbox
    /// cannot fill with nobody to empty it.
    running: AtomicBool,
    /// Filled in until the threads start.
    start: Mutex<Option<(Receiver<Msg>, SyncSender<Msg>)>>,
    subscribers: RwLock<Vec<Subscriber>>,
}

impl Hub {
    pub fn new(max_parked: usize) -> Hub {
        let (tx, rx) = sync_channel(INBOX_CAPACITY);
        Hub {
            inbox: tx.clone(),
            parked: Arc::new(AtomicUsize::new(0)),
            ephemeral: AtomicU64::new(0),
            max_parked,
            running: AtomicBool::new(false),
            start: Mutex::new(Some((rx, tx))),
            subscribers: RwLock::new(Vec::new()),
        }
    }

    /// Starts the hub thread and its responders. Called once by the server.
    pub fn start(self: &Arc<Hub>) {
        let Some((rx, tx)) = lock(&self.start).take() else { return };
        let (jobs_tx, jobs_rx) = sync_channel::<Job>(RESPONDER_QUEUE);
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        for i in 0..RESPONDERS {
            let hub = self.clone();
            let jobs = jobs_rx.clone();
            let back = tx.clone();
            std::thread::Builder::new()
                .name(format!("hub-responder-{i}"))
                .spawn(move || responder(&hub, &jobs, &back))
                .expect("spawning a hub responder thread");
        }
        let parked = self.parked.clone();
        std::thread::Builder::new()
            .name("hub".into())
            .spawn(move || run(rx, jobs_tx, parked))
            .expect("spawning the hub thread");
        self.running.store(true, Ordering::SeqCst);
    }

    /// Adds a subscriber to the change feed; it is called with every
    /// change, on the thread that made it, so it must only take note (set
    /// a flag, wake its own thread) and never block.
    pub fn subscribe(&self, s: Subscriber) {
        self.subscribers.write().unwrap_or_else(|p| p.into_inner()).push(s);
    }

    /// Tells the hub something changed (after the change committed).
    pub fn notify(&self, changes: Changes) {
        for s in self.subscribers.read().unwrap_or_else(|p| p.into_inner()).iter() {
            s(&changes);
        }
        if !self.running.load(Ordering::SeqCst) {
            return;
        }
        // A full inbox means the hub is far behind; waiting here keeps the
        // wake-up (and bounds memory) at the cost of this writer's latency.
        let _ = self.inbox.send(Msg::Notify(changes));
    }

    /// A new ephemeral serial (typing, presence changed).
    pub fn next_ephemeral(&self) -> u64 {
        self.ephemeral.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub fn current_ephemeral(&self) -> u64 {
        self.ephemeral.load(Ordering::SeqCst)
    }

    /// True if another long-poll may be parked.
    pub fn has_room(&self) -> bool {
        self.parked.load(Ordering::Relaxed) < self.max_parked
    }

    /// Parks a long-poll. If the hub is full or not running, it comes back
    /// for the caller to answer at once.
    pub fn park(&self, p: Box<dyn Parked>) -> std::result::Result<(), Box<dyn Parked>> {
        if !self.has_room() || !self.running.load(Ordering::SeqCst) {
            return Err(p);
        }
        self.parked.fetch_add(1, Ordering::Relaxed);
        match self.inbox.try_send(Msg::Park(p)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(Msg::Park(p)) | TrySendError::Disconnected(Msg::Park(p))) => {
                self.parked.fetch_sub(1, Ordering::Relaxed);
                Err(p)
            }
            Err(_) => Ok(()),
        }
    }

    pub fn parked(&self) -> usize {
        self.parked.load(Ordering::Relaxed)
    }
}

enum Job {
    /// Something may be new: recompute.
    Recheck(Box<dyn Parked>),
    /// The deadline passed (or the client went away): answer with the
    /// empty response.
    Expire(Box<dyn Parked>),
}

/// The hub's bookkeeping: parked requests indexed by user and room, their
/// deadlines, and the newest positions announced. No threads, no I/O: the
/// hub thread drives it, and unit tests drive it directly.
struct Book {
    next_id: u64,
    waiting: HashMap<u64, Box<dyn Parked>>,
    by_user: HashMap<String, HashSet<u64>>,
    by_room: HashMap<String, HashSet<u64>>,
    deadlines: BTreeMap<(Instant, u64), ()>,
    latest: (i64, u64),
}

impl Book {
    fn new() -> Book {
        Book {
            next_id: 0,
            waiting: HashMap::new(),
            by_user: HashMap::new(),
            by_room: HashMap::new(),
            deadlines: BTreeMap::new(),
            latest: (0, 0),
        }
    }

    /// Parks `p`, or hands it back to be rechecked at once if something
    /// was announced after the answer it last saw.
    fn park(&mut self, p: Box<dyn Parked>) -> Option<Box<dyn Parked>> {
        let (pos, eph) = p.seen();
        if pos < self.latest.0 || eph < self.latest.1 {
            return Some(p);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.by_user.entry(p.user_id().to_owned()).or_default().insert(id);
        for room in p.rooms() {
            self.by_room.entry(room.clone()).or_default().insert(id);
        }
        self.deadlines.insert((p.deadline(), id), ());
        self.waiting.insert(id, p);
        None
    }

    /// The parked requests `c` concerns, taken out of the book.
    fn woken_by(&mut self, c: &Changes) -> Vec<Box<dyn Parked>> {
        self.latest = (self.latest.0.max(c.pos), self.latest.1.max(c.ephemeral));
        let mut ids: HashSet<u64> = HashSet::new();
        for room in &c.rooms {
            ids.extend(self.by_room.get(room).into_iter().flatten());
        }
        for user in &c.users {
            ids.extend(self.by_user.get(user).into_iter().flatten());
        }
        let mut ids: Vec<u64> = ids.into_iter().collect();
        ids.sort_unstable();
        ids.into_iter().filter_map(|id| self.take(id)).collect()
    }

    /// Those whose deadline is at or before `now`.
    fn expired(&mut self, now: Instant) -> Vec<Box<dyn Parked>> {
        let due: Vec<u64> = self.deadlines.range(..=(now, u64::MAX)).map(|(&(_, id), _)| id).collect();
        due.into_iter().filter_map(|id| self.take(id)).collect()
    }

    /// Those whose client has gone away.
    fn gone(&mut self) -> Vec<Box<dyn Parked>> {
        let gone: Vec<u64> = self.waiting.iter().filter(|(_, p)| p.gone()).map(|(id, _)| *id).collect();
        gone.into_iter().filter_map(|id| self.take(id)).collect()
    }

    /// The earliest deadline.
    fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.keys().next().map(|(d, _)| *d)
    }

    fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Removes a parked request from every index.
    fn take(&mut self, id: u64) -> Option<Box<dyn Parked>> {
        let p = self.waiting.remove(&id)?;
        if let Some(set) = self.by_user.get_mut(p.user_id()) {
            set.remove(&id);
            if set.is_empty() {
                self.by_user.remove(p.user_id());
            }
        }
        for room in p.rooms() {
            if let Some(set) = self.by_room.get_mut(room) {
                set.remove(&id);
                if set.is_empty() {
                    self.by_room.remove(room);
                }
            }
        }
        self.deadlines.remove(&(p.deadline(), id));
        Some(p)
    }
}

/// The hub thread: receives parkings and changes, keeps the book, and
/// hands what is due to the responders.
fn run(rx: Receiver<Msg>, jobs: SyncSender<Job>, parked_count: Arc<AtomicUsize>) {
    let mut book = Book::new();
    let dispatch = |job: Job| {
        parked_count.fetch_sub(1, Ordering::Relaxed);
        if let Err(e) = jobs.try_send(job) {
            // The responders are swamped: answer at once rather than let
            // the queue grow. (Cannot happen while the queue is larger
            // than max_parked.)
            let (TrySendError::Full(job) | TrySendError::Disconnected(job)) = e;
            let (Job::Recheck(p) | Job::Expire(p)) = job;
            p.refuse();
        }
    };
    let mut next_gone_sweep = Instant::now() + GONE_SWEEP;
    loop {
        let now = Instant::now();
        // A client that closed its connection no longer waits: its request
        // is answered now (the answer is lost; its connection and its place
        // under max_parked come free) rather than at its deadline.
        if now >= next_gone_sweep {
            next_gone_sweep = now + GONE_SWEEP;
            book.gone().into_iter().for_each(|p| dispatch(Job::Expire(p)));
        }
        book.expired(now).into_iter().for_each(|p| dispatch(Job::Expire(p)));
        let mut wait =
            book.next_deadline().map_or(Duration::from_secs(60), |d| d.saturating_duration_since(now));
        if !book.is_empty() {
            wait = wait.min(next_gone_sweep.saturating_duration_since(now));
        }
        match rx.recv_timeout(wait) {
            Ok(Msg::Park(p)) => {
                let user = p.user_id().to_owned();
                match book.park(p) {
                    // Something happened between its answer and its parking.
                    Some(p) => dispatch(Job::Recheck(p)),
                    None => log::debug(format_args!(
                        "long-poll of {user} parked ({} parked)",
                        parked_count.load(Ordering::Relaxed)
                    )),
                }
            }
            Ok(Msg::Notify(c)) => book.woken_by(&c).into_iter().for_each(|p| dispatch(Job::Recheck(p))),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// A responder thread: rechecks woken requests and answers them, or parks
/// them again when there is still nothing new.
fn responder(hub: &Hub, jobs: &Mutex<Receiver<Job>>, back: &SyncSender<Msg>) {
    loop {
        let job = match lock(jobs).recv() {
            Ok(j) => j,
            Err(_) => return,
        };
        let again = match job {
            Job::Expire(p) => {
                p.expire();
                continue;
            }
            Job::Recheck(p) if Instant::now() >= p.deadline() => {
                p.expire();
                continue;
            }
            Job::Recheck(p) => match p.recheck() {
                None => continue,
                Some(again) => again,
            },
        };
        // Parked again only within max_parked (others may have taken the
        // places meanwhile): else answered now, as a long-poll past the
        // limit is.
        if !hub.has_room() {
            again.expire();
            continue;
        }
        hub.parked.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = back.try_send(Msg::Park(again)) {
            hub.parked.fetch_sub(1, Ordering::Relaxed);
            if let TrySendError::Full(Msg::Park(p)) | TrySendError::Disconnected(Msg::Park(p)) = e {
                p.expire();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::{channel, Sender};

    /// A parked request that reports what happens to it.
    struct Probe {
        name: &'static str,
        user: String,
        rooms: HashSet<String>,
        seen: (i64, u64),
        deadline: Instant,
        gone: bool,
        log: Sender<String>,
    }

    impl Parked for Probe {
        fn user_id(&self) -> &str {
            &self.user
        }
        fn rooms(&self) -> &HashSet<String> {
            &self.rooms
        }
        fn seen(&self) -> (i64, u64) {
            self.seen
        }
        fn deadline(&self) -> Instant {
            self.deadline
        }
        fn gone(&self) -> bool {
            self.gone
        }
        fn recheck(self: Box<Self>) -> Option<Box<dyn Parked>> {
            let _ = self.log.send(format!("recheck {}", self.name));
            None
        }
        fn expire(self: Box<Self>) {
            let _ = self.log.send(format!("expire {}", self.name));
        }
        fn refuse(self: Box<Self>) {
            let _ = self.log.send(format!("refuse {}", self.name));
        }
    }

    fn probe(name: &'static str, user: &str, rooms: &[&str], in_ms: u64, log: &Sender<String>) -> Box<Probe> {
        Box::new(Probe {
            name,
            user: user.into(),
            rooms: rooms.iter().map(|r| r.to_string()).collect(),
            seen: (0, 0),
            deadline: Instant::now() + Duration::from_millis(in_ms),
            gone: false,
            log: log.clone(),
        })
    }

    fn names(ps: Vec<Box<dyn Parked>>) -> Vec<String> {
        ps.into_iter().map(|p| p.user_id().to_owned()).collect()
    }

    #[test]
    fn changes_wake_exactly_the_users_and_rooms_they_name() {
        let (log, _rx) = channel();
        let mut book = Book::new();
        assert!(book.park(probe("a", "@a", &["!r"], 60_000, &log)).is_none());
        assert!(book.park(probe("b", "@b", &["!s"], 60_000, &log)).is_none());
        assert!(book.park(probe("c", "@c", &[], 60_000, &log)).is_none());
        let woken = book.woken_by(&Changes {
            pos: 1,
            rooms: vec!["!r".into()],
            users: vec!["@c".into()],
            ..Default::default()
        });
        assert_eq!(names(woken), ["@a", "@c"]);
        // Woken ones are out of every index: the same change wakes nobody now.
        let again = book.woken_by(&Changes {
            pos: 2,
            rooms: vec!["!r".into()],
            users: vec!["@c".into()],
            ..Default::default()
        });
        assert!(again.is_empty());
        assert_eq!(names(book.woken_by(&Changes::ephemeral(1, &["!s"], &[]))), ["@b"]);
        assert!(
            book.is_empty()
                && book.by_room.is_empty()
                && book.by_user.is_empty()
                && book.deadlines.is_empty()
        );
    }

    #[test]
    fn a_request_parked_behind_an_announced_change_is_handed_back() {
        let (log, _rx) = channel();
        let mut book = Book::new();
        book.woken_by(&Changes { pos: 10, ephemeral: 3, users: vec!["@x".into()], ..Default::default() });
        let mut late = probe("late", "@a", &[], 60_000, &log);
        late.seen = (9, 3);
        assert!(book.park(late).is_some(), "it missed position 10");
        let mut eph = probe("eph", "@a", &[], 60_000, &log);
        eph.seen = (10, 2);
        assert!(book.park(eph).is_some(), "it missed ephemeral serial 3");
        let mut current = probe("current", "@a", &[], 60_000, &log);
        current.seen = (10, 3);
        assert!(book.park(current).is_none());
    }

    #[test]
    fn deadlines_and_gone_clients_come_out_in_order() {
        let (log, _rx) = channel();
        let mut book = Book::new();
        book.park(probe("late", "@late", &["!r"], 60_000, &log));
        book.park(probe("soon", "@soon", &["!r"], 0, &log));
        let mut gone = probe("gone", "@gone", &["!r"], 60_000, &log);
        gone.gone = true;
        book.park(gone);
        assert_eq!(names(book.expired(Instant::now())), ["@soon"]);
        assert_eq!(names(book.gone()), ["@gone"]);
        assert!(book.next_deadline().is_some_and(|d| d > Instant::now()));
        assert_eq!(
            names(book.woken_by(&Changes { pos: 1, rooms: vec!["!r".into()], ..Default::default() })),
            ["@late"]
        );
        assert!(book.next_deadline().is_none());
    }

    #[test]
    fn the_running_hub_answers_woken_and_expired_requests() {
        let hub = Arc::new(Hub::new(2));
        let (log, rx) = channel();
        // Not running: parking is refused, so the caller answers at once.
        assert!(hub.park(probe("early", "@a", &[], 60_000, &log)).is_err());
        hub.start();
        assert!(hub.park(probe("woken", "@a", &["!r"], 60_000, &log)).is_ok());
        assert!(hub.park(probe("expiring", "@b", &[], 10, &log)).is_ok());
        assert!(hub.park(probe("over", "@c", &[], 60_000, &log)).is_err(), "max_parked is 2");
        let wait = Duration::from_secs(10);
        assert_eq!(rx.recv_timeout(wait).unwrap(), "expire expiring");
        // The change may reach the hub before the parking does: both orders
        // end in one recheck (parked behind it, or woken by it).
        hub.notify(Changes { pos: 1, rooms: vec!["!r".into()], ..Default::default() });
        assert_eq!(rx.recv_timeout(wait).unwrap(), "recheck woken");
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = seen.clone();
        hub.subscribe(Box::new(move |c| {
            counter.fetch_add(c.pos as usize, Ordering::SeqCst);
        }));
        hub.notify(Changes { pos: 5, users: vec!["@z".into()], ..Default::default() });
        assert_eq!(seen.load(Ordering::SeqCst), 5, "subscribers hear every change");
        let deadline = Instant::now() + wait;
        while hub.parked() != 0 {
            assert!(Instant::now() < deadline, "parked count stays at {}", hub.parked());
            std::thread::yield_now();
        }
    }
}
