//! The hub: the one worker thread that holds parked long-polls (`/sync`, the
//! original specification's `/events`) and wakes them when something they
//! may see happens.
//!
//! A long-poll that finds nothing new is not left on an HTTP worker: the
//! HTTP layer hands its `tiny_http::Request` and its [`Waiter`] to the hub
//! and the worker goes back to serving. Handlers that change something call
//! [`Hub::notify`] after their commit, naming the rooms and users touched.
//! The hub thread only does bookkeeping: it never touches the database or a
//! socket. Waking a waiter means handing it to a small pool of responder
//! threads, which recompute the answer (a read-only query) and write it; if
//! there is still nothing for that client, it is parked again. At its
//! deadline a waiter is answered with its empty response.
//!
//! Lost wake-ups are impossible: every waiter carries the stream positions
//! its last answer covered, and the hub remembers the newest positions it
//! was notified of; a waiter parked behind them is rechecked at once.
//!
//! Limits: at most `max_parked` waiters (past that a long-poll is answered
//! at once), the hub's inbox and the responders' queue are bounded, and
//! every waiter has a deadline (the client's timeout, clamped).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::api::Response;
use crate::app::App;
use crate::error::Result;
use crate::log;

/// Messages the hub's inbox holds before senders wait.
const INBOX_CAPACITY: usize = 4096;
/// Responder threads that recompute and answer woken long-polls.
const RESPONDERS: usize = 2;
/// How often expired typing and decayed presence are looked for.
const TICK: Duration = Duration::from_secs(1);
/// Jobs queued for the responders before the hub answers cheaply itself.
const RESPONDER_QUEUE: usize = 4096;
/// How often parked requests are looked at for clients that went away.
const GONE_SWEEP: Duration = Duration::from_secs(1);

/// What a parked long-poll waits for, and how to answer it.
pub trait Waiter: Send {
    /// The user whose changes (invites, account data, presence of people
    /// they share rooms with...) wake this waiter.
    fn user_id(&self) -> &str;
    /// The rooms whose events wake this waiter.
    fn rooms(&self) -> &HashSet<String>;
    /// The stream positions (`pos`, ephemeral serial) the last answer covered.
    fn seen(&self) -> (i64, u64);
    /// Computes the answer if there is something new; `None` to keep
    /// waiting. May refresh the rooms and positions it watches.
    fn poll(&mut self, app: &App) -> Result<Option<Response>>;
    /// The answer at the deadline (nothing new).
    fn timeout_response(&mut self, app: &App) -> Result<Response>;
}

/// A change that may wake waiters.
#[derive(Debug, Default, Clone)]
pub struct Notify {
    /// The stream position reached (0 if only ephemeral data changed).
    pub pos: i64,
    /// The ephemeral serial reached (typing, presence), if it changed.
    pub ephemeral: u64,
    pub rooms: Vec<String>,
    pub users: Vec<String>,
}

/// Changes recorded while a request runs, announced to the hub by the HTTP
/// layer once the handler has succeeded (and so its writes committed).
/// Recording happens where the change is made (the room service), so no
/// endpoint can forget to wake the long-polls its change concerns.
pub mod pending {
    use std::cell::RefCell;

    use super::Notify;

    thread_local! {
        static PENDING: RefCell<Notify> = RefCell::new(Notify::default());
    }

    /// Notes a change made by the current request.
    pub fn record(pos: i64, rooms: &[&str], users: &[&str]) {
        PENDING.with(|p| {
            let mut p = p.borrow_mut();
            p.pos = p.pos.max(pos);
            p.rooms.extend(rooms.iter().map(|r| r.to_string()));
            p.users.extend(users.iter().map(|u| u.to_string()));
        });
    }

    /// Notes an ephemeral change (typing, presence) of the current request.
    pub fn record_ephemeral(serial: u64, rooms: &[&str], users: &[&str]) {
        PENDING.with(|p| p.borrow_mut().ephemeral = serial);
        record(0, rooms, users);
    }

    /// Takes what the current request recorded.
    pub fn take() -> Notify {
        PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()))
    }
}

/// A request the HTTP layer parked, with what it waits for.
pub struct Parked {
    pub request: tiny_http::Request,
    pub waiter: Box<dyn Waiter>,
    pub deadline: Instant,
    /// When the request arrived, for the access log.
    pub started: Instant,
}

enum Msg {
    Park(Parked),
    Notify(Notify),
}

/// The handle other threads use.
pub struct Hub {
    inbox: SyncSender<Msg>,
    parked: Arc<AtomicUsize>,
    ephemeral: AtomicU64,
    max_parked: usize,
    /// Filled in when the threads start; the hub needs the `App` to answer.
    start: Mutex<Option<(Receiver<Msg>, SyncSender<Msg>)>>,
    /// The push outbox's senders, woken after each commit (issue 7).
    pub push: crate::outbound::queue::Queue,
}

impl Hub {
    pub fn new(max_parked: usize) -> Hub {
        let (tx, rx) = sync_channel(INBOX_CAPACITY);
        Hub {
            inbox: tx.clone(),
            parked: Arc::new(AtomicUsize::new(0)),
            ephemeral: AtomicU64::new(0),
            max_parked,
            start: Mutex::new(Some((rx, tx))),
            push: crate::outbound::queue::Queue::new(),
        }
    }

    /// Starts the hub thread and its responders. Called once by the server.
    pub fn start(app: Arc<App>) {
        let Some((rx, tx)) = crate::storage::lock(&app.hub.start).take() else { return };
        let (jobs_tx, jobs_rx) = sync_channel::<Job>(RESPONDER_QUEUE);
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        for i in 0..RESPONDERS {
            let app = app.clone();
            let jobs = jobs_rx.clone();
            let back = tx.clone();
            std::thread::Builder::new()
                .name(format!("hub-responder-{i}"))
                .spawn(move || responder(&app, &jobs, &back))
                .expect("spawning a hub responder thread");
        }
        // Typing runs out and presence decays with the clock, not with a
        // request: a tick announces those changes to parked syncs.
        {
            let app = app.clone();
            std::thread::Builder::new()
                .name("hub-tick".into())
                .spawn(move || loop {
                    std::thread::sleep(TICK);
                    if let Err(e) = app.db.read(|c| crate::ephemeral::refresh(&app, c)) {
                        log::warn(format_args!("expiring typing and presence failed: {}", e.message));
                    }
                })
                .expect("spawning the hub tick thread");
        }
        crate::push::sender::start(app.clone());
        let parked = app.hub.parked.clone();
        std::thread::Builder::new()
            .name("hub".into())
            .spawn(move || run(rx, jobs_tx, parked))
            .expect("spawning the hub thread");
    }

    /// Tells the hub something changed (after the change committed).
    pub fn notify(&self, n: Notify) {
        if n.pos > 0 {
            // The commit may have queued pushes (issue 7).
            self.push.poke();
        }
        // A full inbox means the hub is far behind; waiting here keeps the
        // wake-up (and bounds memory) at the cost of this request's latency.
        let _ = self.inbox.send(Msg::Notify(n));
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

    /// Parks a long-poll. If the hub is full or gone, the request comes back
    /// (boxed: it is large) for the caller to answer at once.
    pub fn park(&self, p: Parked) -> std::result::Result<(), Box<Parked>> {
        if !self.has_room() {
            return Err(Box::new(p));
        }
        self.parked.fetch_add(1, Ordering::Relaxed);
        match self.inbox.try_send(Msg::Park(p)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(Msg::Park(p)) | TrySendError::Disconnected(Msg::Park(p))) => {
                self.parked.fetch_sub(1, Ordering::Relaxed);
                Err(Box::new(p))
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
    Recheck(Parked),
    /// The deadline passed: answer with the empty response.
    Expire(Parked),
}

/// The hub thread: parked waiters indexed by user and room, deadlines.
fn run(rx: Receiver<Msg>, jobs: SyncSender<Job>, parked_count: Arc<AtomicUsize>) {
    let mut next_id: u64 = 0;
    let mut waiting: HashMap<u64, Parked> = HashMap::new();
    let mut by_user: HashMap<String, HashSet<u64>> = HashMap::new();
    let mut by_room: HashMap<String, HashSet<u64>> = HashMap::new();
    let mut deadlines: BTreeMap<(Instant, u64), ()> = BTreeMap::new();
    let mut latest: (i64, u64) = (0, 0);

    let dispatch = |job: Job, parked_count: &AtomicUsize| {
        parked_count.fetch_sub(1, Ordering::Relaxed);
        if let Err(e) = jobs.try_send(job) {
            // The responders are swamped: answer with the empty response
            // rather than let the queue grow. (Cannot happen while the
            // queue is larger than max_parked.)
            let (TrySendError::Full(job) | TrySendError::Disconnected(job)) = e;
            let p = match job {
                Job::Recheck(p) | Job::Expire(p) => p,
            };
            let _ = p.request.respond(tiny_http::Response::empty(503));
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
            let gone: Vec<u64> =
                waiting.iter().filter(|(_, p)| p.request.peer_gone()).map(|(id, _)| *id).collect();
            for id in gone {
                if let Some(p) = waiting.remove(&id) {
                    unindex(id, &p, &mut by_user, &mut by_room, &mut deadlines);
                    dispatch(Job::Expire(p), &parked_count);
                }
            }
        }
        // Answer everything whose deadline has passed.
        while let Some((&(deadline, id), _)) = deadlines.iter().next() {
            if deadline > now {
                break;
            }
            if let Some(p) = waiting.remove(&id) {
                unindex(id, &p, &mut by_user, &mut by_room, &mut deadlines);
                dispatch(Job::Expire(p), &parked_count);
            } else {
                deadlines.remove(&(deadline, id));
            }
        }
        let mut wait = deadlines
            .keys()
            .next()
            .map_or(Duration::from_secs(60), |(d, _)| d.saturating_duration_since(now));
        if !waiting.is_empty() {
            wait = wait.min(next_gone_sweep.saturating_duration_since(now));
        }
        let msg = match rx.recv_timeout(wait) {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        match msg {
            Msg::Park(p) => {
                let (pos, eph) = p.waiter.seen();
                if pos < latest.0 || eph < latest.1 {
                    // Something happened between its answer and its parking.
                    dispatch(Job::Recheck(p), &parked_count);
                    continue;
                }
                let id = next_id;
                next_id += 1;
                by_user.entry(p.waiter.user_id().to_owned()).or_default().insert(id);
                for room in p.waiter.rooms() {
                    by_room.entry(room.clone()).or_default().insert(id);
                }
                deadlines.insert((p.deadline, id), ());
                log::debug(format_args!(
                    "long-poll of {} parked ({} parked)",
                    p.waiter.user_id(),
                    parked_count.load(Ordering::Relaxed)
                ));
                waiting.insert(id, p);
            }
            Msg::Notify(n) => {
                latest = (latest.0.max(n.pos), latest.1.max(n.ephemeral));
                let mut woken: HashSet<u64> = HashSet::new();
                for room in &n.rooms {
                    if let Some(ids) = by_room.get(room) {
                        woken.extend(ids);
                    }
                }
                for user in &n.users {
                    if let Some(ids) = by_user.get(user) {
                        woken.extend(ids);
                    }
                }
                for id in woken {
                    if let Some(p) = waiting.remove(&id) {
                        unindex(id, &p, &mut by_user, &mut by_room, &mut deadlines);
                        dispatch(Job::Recheck(p), &parked_count);
                    }
                }
            }
        }
    }
}

/// Removes a waiter from the indexes.
fn unindex(
    id: u64,
    p: &Parked,
    by_user: &mut HashMap<String, HashSet<u64>>,
    by_room: &mut HashMap<String, HashSet<u64>>,
    deadlines: &mut BTreeMap<(Instant, u64), ()>,
) {
    if let Some(set) = by_user.get_mut(p.waiter.user_id()) {
        set.remove(&id);
        if set.is_empty() {
            by_user.remove(p.waiter.user_id());
        }
    }
    for room in p.waiter.rooms() {
        if let Some(set) = by_room.get_mut(room) {
            set.remove(&id);
            if set.is_empty() {
                by_room.remove(room);
            }
        }
    }
    deadlines.remove(&(p.deadline, id));
}

/// A responder thread: recomputes woken waiters and answers them, or parks
/// them again when there is still nothing new.
fn responder(app: &App, jobs: &Mutex<Receiver<Job>>, back: &SyncSender<Msg>) {
    loop {
        let job = match crate::storage::lock(jobs).recv() {
            Ok(j) => j,
            Err(_) => return,
        };
        let (mut p, expired) = match job {
            Job::Recheck(p) => (p, false),
            Job::Expire(p) => (p, true),
        };
        let outcome = if expired || Instant::now() >= p.deadline {
            p.waiter.timeout_response(app).map(Some)
        } else {
            p.waiter.poll(app)
        };
        match outcome {
            Ok(Some(resp)) => crate::http::respond_since(p.request, Ok(resp), p.started),
            Ok(None) => {
                // Parked again only within max_parked (others may have
                // taken the places meanwhile): else answered now, as a
                // long-poll past the limit is.
                if !app.hub.has_room() {
                    let resp = p.waiter.timeout_response(app);
                    crate::http::respond_since(p.request, resp, p.started);
                    continue;
                }
                app.hub.parked.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = back.try_send(Msg::Park(p)) {
                    app.hub.parked.fetch_sub(1, Ordering::Relaxed);
                    let (TrySendError::Full(Msg::Park(mut p)) | TrySendError::Disconnected(Msg::Park(mut p))) =
                        e
                    else {
                        continue;
                    };
                    let resp = p.waiter.timeout_response(app);
                    crate::http::respond_since(p.request, resp, p.started);
                }
            }
            Err(e) => {
                log::warn(format_args!("long-poll answer failed: {}", e.message));
                crate::http::respond_since(p.request, Err(e), p.started);
            }
        }
    }
}
