//! The connection reactor: one thread (`http-conn`) on `mio` (epoll) holds
//! every client connection that has no request out: new, idle between
//! requests, or half-way through a request head or a small body. Only a
//! complete request reaches the worker pool (as a `tiny_http::Request`, over
//! a [`Lease`]), so an idle or slow connection costs a socket and a few
//! hundred bytes here, never a thread.
//!
//! Plain and TLS connections live side by side: for TLS the reactor reads
//! the ClientHello, picks the certificate (`tls::Tls::config_for`, which
//! also serves ACME's TLS-ALPN-01), and runs the handshake without
//! blocking; workers then read and write through rustls on the lent socket.
//!
//! Bounds, all named below: open connections (`Front::start`'s cap; past
//! it a connection gets a 503 `M_LIMIT_EXCEEDED` with `Retry-After` and is
//! closed, logged at most every `LOG_EVERY`), the head (`head.rs`), the time
//! for a head (`HEAD_TIMEOUT`), a TLS handshake (`tls::HANDSHAKE_TIMEOUT`),
//! an idle connection (`IDLE_TIMEOUT`), a body (`conn::BODY_GRACE` +
//! `conn::BODY_RATE_MIN`), bytes buffered per connection and in all
//! (`BUFFERED_BYTES_MAX`), requests waiting for a worker (`QUEUE_MAX`).
//! A refused request is answered with a JSON error and the connection is
//! closed after a short linger that reads off what the client still sends,
//! so the client sees the answer rather than a reset.
//!
//! A connection whose request is out stays registered: if its client
//! closes meanwhile, the request's `peer_gone` flag is set, which the hub
//! uses to drop a parked long-poll whose client left.

use std::collections::VecDeque;
use std::io::{self, Cursor, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use rustls::server::Acceptor;

use super::conn::{
    self, BodyFloor, BodyLeft, BodyReader, Lease, ResponseWriter, ReturnPath, Returned, Transport,
};
use super::head::{self, Body, Head, Refusal, Scan};
use crate::log;
use crate::tls::Tls;

/// From the first byte of a request head to its end.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with no request in progress is closed after this.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// Bodies up to this size are read here before the request goes to a
/// worker (almost every JSON body); larger ones, chunked ones and those
/// that wait for `100 Continue` are streamed by the worker.
pub const BODY_BUFFER_BYTES_MAX: u64 = 64 * 1024;
/// Bytes held in all connections' read buffers together; a connection that
/// would pass it is refused with a 503.
pub const BUFFERED_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Complete requests waiting for a worker; past it a request is refused
/// with a 503.
pub const QUEUE_MAX: usize = 1024;
/// A refused connection is read off for at most this long ...
const LINGER: Duration = Duration::from_secs(2);
/// ... and at most this many bytes before it is closed.
const LINGER_BYTES_MAX: usize = 1024 * 1024;
/// How often deadlines are looked at.
const SWEEP: Duration = Duration::from_millis(500);
/// After a failed accept (out of file descriptors), wait before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// The `Retry-After` of a connection refused over the cap, in seconds.
const RETRY_AFTER_SECS: u64 = 5;
/// Refusals and accept failures are logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// Readiness events taken per poll.
const EVENTS_CAPACITY: usize = 1024;
/// One read from a socket.
const SCRATCH_BYTES: usize = 16 * 1024;
/// Connections the kernel queues for `accept` (the standard library's
/// 128 drops SYNs in a burst of new connections; the kernel caps it at
/// `net.core.somaxconn`).
const LISTEN_BACKLOG: libc::c_int = 1024;

const WAKER: Token = Token(usize::MAX);
/// Tokens below this are listeners; a connection's token is this plus its
/// slot.
const CONN_BASE: usize = 16;

/// A socket to accept connections on; with `tls`, they speak TLS.
pub struct Listener {
    pub sock: TcpListener,
    pub tls: Option<Arc<Tls>>,
}

/// What the worker pool sees: complete requests, in arrival order.
pub struct Front {
    jobs: Mutex<Receiver<tiny_http::Request>>,
    queued: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
}

impl Front {
    /// Starts the reactor thread on `listeners`, holding at most
    /// `connections` connections at once.
    pub fn start(listeners: Vec<Listener>, connections: usize) -> io::Result<Arc<Front>> {
        let poll = Poll::new()?;
        for (i, l) in listeners.iter().enumerate() {
            // SAFETY: listen(2) on a socket we own that is already
            // listening only changes its backlog.
            unsafe { libc::listen(l.sock.as_raw_fd(), LISTEN_BACKLOG) };
            l.sock.set_nonblocking(true)?;
            poll.registry().register(&mut SourceFd(&l.sock.as_raw_fd()), Token(i), Interest::READABLE)?;
        }
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (jobs_tx, jobs_rx) = channel();
        let (back_tx, back_rx) = channel();
        let front = Arc::new(Front {
            jobs: Mutex::new(jobs_rx),
            queued: Arc::new(AtomicUsize::new(0)),
            open: Arc::new(AtomicUsize::new(0)),
        });
        let mut reactor = Reactor {
            poll,
            listeners,
            slots: Vec::new(),
            free: Vec::new(),
            open: front.open.clone(),
            cap: connections,
            back: ReturnPath { tx: back_tx, waker },
            returns: back_rx,
            jobs: jobs_tx,
            queued: front.queued.clone(),
            scratch: vec![0; SCRATCH_BYTES],
            buffered: 0,
            accept_paused: None,
            refused: RateLog::default(),
            accept_failed: RateLog::default(),
        };
        std::thread::Builder::new().name("http-conn".into()).spawn(move || reactor.run())?;
        Ok(front)
    }

    /// The next complete request, or `None` after `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<tiny_http::Request> {
        let rq = crate::storage::lock(&self.jobs).recv_timeout(timeout).ok()?;
        self.queued.fetch_sub(1, Ordering::Relaxed);
        Some(rq)
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// Counts events and logs the first of each `LOG_EVERY`.
#[derive(Default)]
struct RateLog {
    last: Option<Instant>,
    count: u64,
}

impl RateLog {
    fn hit(&mut self, what: impl FnOnce(u64) -> String) {
        self.count += 1;
        if self.last.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            log::warn(format_args!("{}", what(self.count)));
            self.last = Some(Instant::now());
            self.count = 0;
        }
    }
}

struct Slot {
    peer: SocketAddr,
    fd: RawFd,
    state: State,
}

enum State {
    /// TLS: reading the ClientHello.
    Hello { sock: TcpStream, acceptor: Box<Acceptor>, since: Instant },
    /// Reading a request: its head, then a small body.
    Reading(Box<Reading>),
    /// A request is out, with a worker or parked in the hub.
    Out { gone: Arc<AtomicBool> },
    /// A refusal was written: reading off what the client still sends.
    Lingering { sock: TcpStream, until: Instant, drained: usize },
}

struct Reading {
    transport: Transport,
    buf: Vec<u8>,
    scan: Scan,
    head: Option<(Head, usize)>,
    /// When the connection became idle (accepted, or its last answer went).
    idle_since: Instant,
    /// When the first byte of the current head arrived.
    head_since: Option<Instant>,
    /// When the head was complete.
    head_done: Option<Instant>,
    /// A TLS-ALPN-01 validation: closed once the handshake is done.
    acme: bool,
}

impl Reading {
    fn new(transport: Transport, buf: Vec<u8>, now: Instant) -> Reading {
        let head_since = (!buf.is_empty()).then_some(now);
        Reading {
            transport,
            buf,
            scan: Scan::default(),
            head: None,
            idle_since: now,
            head_since,
            head_done: None,
            acme: false,
        }
    }

    /// When this connection must have made its next step, and whether
    /// passing it leaves a request half-read (answered with a 408).
    fn deadline(&self) -> (Instant, bool) {
        if let (Some((h, _)), Some(done)) = (&self.head, self.head_done) {
            let len = match h.body {
                Body::Length(n) => n,
                _ => 0,
            };
            return (done + conn::BODY_GRACE + Duration::from_millis(len * 1000 / conn::BODY_RATE_MIN), true);
        }
        if let Some(since) = self.head_since {
            return (since + HEAD_TIMEOUT, true);
        }
        if self.transport.tls.as_ref().is_some_and(|t| t.is_handshaking()) {
            return (self.idle_since + crate::tls::HANDSHAKE_TIMEOUT, false);
        }
        (self.idle_since + IDLE_TIMEOUT, false)
    }
}

/// What reading a connection came to.
enum Step {
    /// Wait for more bytes.
    Wait(Box<Reading>),
    /// A complete request went out.
    Out(Arc<AtomicBool>),
    /// Answer this refusal and close.
    Refuse(Box<Reading>, Refusal),
    Close,
}

struct Reactor {
    poll: Poll,
    listeners: Vec<Listener>,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    open: Arc<AtomicUsize>,
    cap: usize,
    back: ReturnPath,
    returns: Receiver<(usize, Returned)>,
    jobs: Sender<tiny_http::Request>,
    queued: Arc<AtomicUsize>,
    scratch: Vec<u8>,
    /// Bytes in all `Reading` buffers.
    buffered: usize,
    accept_paused: Option<Instant>,
    refused: RateLog,
    accept_failed: RateLog,
}

impl Reactor {
    fn run(&mut self) {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        let mut next_sweep = Instant::now() + SWEEP;
        loop {
            let now = Instant::now();
            let mut timeout = next_sweep.saturating_duration_since(now);
            if let Some(until) = self.accept_paused {
                timeout = timeout.min(until.saturating_duration_since(now));
            }
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error(format_args!("connection poll failed: {e}"));
                    std::thread::sleep(ACCEPT_BACKOFF);
                }
                continue;
            }
            for ev in events.iter() {
                // A bug in handling one connection must not stop the thread
                // that holds all of them: that connection is dropped.
                let handled = catch_unwind(AssertUnwindSafe(|| match ev.token() {
                    WAKER => self.take_returns(),
                    Token(i) if i < CONN_BASE => self.accept(i),
                    Token(t) => {
                        let idx = t - CONN_BASE;
                        let closed = ev.is_read_closed() || ev.is_error();
                        self.on_ready(idx, closed);
                    }
                }));
                if handled.is_err() {
                    log::error(format_args!("connection reactor: a panic while handling {:?}", ev.token()));
                    self.forget_broken(ev.token());
                }
            }
            let now = Instant::now();
            if self.accept_paused.is_some_and(|until| now >= until) {
                self.accept_paused = None;
                for i in 0..self.listeners.len() {
                    self.accept(i);
                }
            }
            if now >= next_sweep {
                if catch_unwind(AssertUnwindSafe(|| self.sweep(now))).is_err() {
                    log::error(format_args!("connection reactor: a panic while sweeping deadlines"));
                }
                next_sweep = now + SWEEP;
            }
        }
    }

    fn accept(&mut self, li: usize) {
        if self.accept_paused.is_some() {
            return;
        }
        loop {
            let (sock, peer) = match self.listeners[li].sock.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                    ) =>
                {
                    self.accept_failed.hit(|n| format!("accept failed ({n} times): {e}; retrying shortly"));
                    self.accept_paused = Some(Instant::now() + ACCEPT_BACKOFF);
                    return;
                }
                // A connection that failed before it was accepted.
                Err(_) => continue,
            };
            let tls = self.listeners[li].tls.clone();
            if self.open.load(Ordering::Relaxed) >= self.cap {
                let cap = self.cap;
                self.refused.hit(|n| format!("{cap} connections open: refused {n} connection(s)"));
                if tls.is_none() {
                    refuse_at_once(sock);
                }
                continue;
            }
            if let Err(e) = self.admit(sock, peer, tls) {
                log::debug(format_args!("connection from {peer} dropped: {e}"));
            }
        }
    }

    fn admit(&mut self, sock: TcpStream, peer: SocketAddr, tls: Option<Arc<Tls>>) -> io::Result<()> {
        sock.set_nonblocking(true)?;
        sock.set_nodelay(true)?;
        sock.set_read_timeout(Some(conn::READ_TIMEOUT))?;
        sock.set_write_timeout(Some(conn::WRITE_TIMEOUT))?;
        let fd = sock.as_raw_fd();
        let idx = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        let interest =
            if tls.is_some() { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
        if let Err(e) = self.poll.registry().register(&mut SourceFd(&fd), Token(CONN_BASE + idx), interest) {
            self.free.push(idx);
            return Err(e);
        }
        let now = Instant::now();
        let state = match tls {
            Some(_) => State::Hello { sock, acceptor: Box::default(), since: now },
            None => State::Reading(Box::new(Reading::new(Transport { sock, tls: None }, Vec::new(), now))),
        };
        self.slots[idx] = Some(Slot { peer, fd, state });
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The certificates of TLS connections (there is one TLS listener).
    fn tls(&self) -> Option<Arc<Tls>> {
        self.listeners.iter().find_map(|l| l.tls.clone())
    }

    fn on_ready(&mut self, idx: usize, closed: bool) {
        let Some(Some(slot)) = self.slots.get_mut(idx) else { return };
        if let State::Out { gone } = &slot.state {
            if closed {
                gone.store(true, Ordering::Relaxed);
            }
            return;
        }
        self.progress(idx);
    }

    /// Moves a connection on as far as its bytes allow.
    fn progress(&mut self, idx: usize) {
        let Some(mut slot) = self.slots[idx].take() else { return };
        let state = std::mem::replace(&mut slot.state, State::Out { gone: Arc::default() });
        let next = match state {
            State::Hello { sock, acceptor, since } => match self.hello(sock, acceptor, since, slot.peer) {
                Some(State::Reading(r)) => self.read(idx, slot.peer, r),
                Some(other) => {
                    slot.state = other;
                    self.slots[idx] = Some(slot);
                    return;
                }
                None => Step::Close,
            },
            State::Reading(r) => self.read(idx, slot.peer, r),
            State::Lingering { mut sock, until, mut drained } => {
                let done = loop {
                    match sock.read(&mut self.scratch) {
                        Ok(0) => break true,
                        Ok(n) => {
                            drained += n;
                            if drained > LINGER_BYTES_MAX {
                                break true;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => break true,
                    }
                };
                if done {
                    Step::Close
                } else {
                    slot.state = State::Lingering { sock, until, drained };
                    self.slots[idx] = Some(slot);
                    return;
                }
            }
            State::Out { gone } => Step::Out(gone),
        };
        match next {
            Step::Wait(r) => {
                slot.state = State::Reading(r);
                self.slots[idx] = Some(slot);
            }
            Step::Out(gone) => {
                slot.state = State::Out { gone };
                self.slots[idx] = Some(slot);
            }
            Step::Refuse(r, refusal) => {
                self.buffered = self.buffered.saturating_sub(r.buf.len());
                let sock = answer_and_shut(r.transport, refusal);
                slot.state = State::Lingering { sock, until: Instant::now() + LINGER, drained: 0 };
                self.slots[idx] = Some(slot);
            }
            Step::Close => self.release(idx, slot.fd),
        }
    }

    /// Reads the ClientHello; `Reading` once a configuration is chosen,
    /// `Hello` while more is needed, `None` to close.
    fn hello(
        &mut self,
        mut sock: TcpStream,
        mut acceptor: Box<Acceptor>,
        since: Instant,
        peer: SocketAddr,
    ) -> Option<State> {
        loop {
            match acceptor.read_tls(&mut sock) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Some(State::Hello { sock, acceptor, since });
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return None,
            }
            match acceptor.accept() {
                Ok(None) => {}
                Ok(Some(accepted)) => {
                    let tls = self.tls()?;
                    let (config, acme) = tls.config_for(&accepted.client_hello())?;
                    let conn = match accepted.into_connection(config) {
                        Ok(c) => c,
                        Err((_, mut alert)) => {
                            let _ = alert.write_all(&mut sock);
                            return None;
                        }
                    };
                    log::debug(format_args!("tls: {peer} connected"));
                    let mut r =
                        Reading::new(Transport { sock, tls: Some(Box::new(conn)) }, Vec::new(), since);
                    r.acme = acme;
                    return Some(State::Reading(Box::new(r)));
                }
                Err((_, mut alert)) => {
                    let _ = alert.write_all(&mut sock);
                    return None;
                }
            }
        }
    }

    /// Reads what has arrived and sends out a request once it is complete.
    fn read(&mut self, idx: usize, peer: SocketAddr, mut r: Box<Reading>) -> Step {
        loop {
            if let Some(tls) = &mut r.transport.tls {
                match flush_tls(tls, &mut r.transport.sock) {
                    Ok(flushed) => {
                        if r.acme && flushed && !tls.is_handshaking() {
                            // TLS-ALPN-01 needs the handshake only.
                            tls.send_close_notify();
                            let _ = flush_tls(tls, &mut r.transport.sock);
                            self.buffered = self.buffered.saturating_sub(r.buf.len());
                            return Step::Close;
                        }
                    }
                    Err(_) => {
                        self.buffered = self.buffered.saturating_sub(r.buf.len());
                        return Step::Close;
                    }
                }
            }
            match self.complete(idx, peer, r) {
                Ok(step) => return step,
                Err(back) => r = back,
            }
            let before = r.buf.len();
            let got = read_plain(&mut r.transport, &mut self.scratch, &mut r.buf);
            let added = r.buf.len() - before;
            self.buffered += added;
            match got {
                Ok(true) => {
                    if before == 0 && added > 0 && r.head.is_none() {
                        r.head_since = Some(Instant::now());
                    }
                    if self.buffered > BUFFERED_BYTES_MAX {
                        return Step::Refuse(r, OVERLOADED);
                    }
                }
                Ok(false) => {
                    self.buffered = self.buffered.saturating_sub(r.buf.len());
                    return Step::Close;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Step::Wait(r);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.buffered = self.buffered.saturating_sub(r.buf.len());
                    return Step::Close;
                }
            }
        }
    }

    /// Sends the request out if its head (and a buffered body) is complete;
    /// gives the connection back when more bytes are needed.
    fn complete(&mut self, idx: usize, peer: SocketAddr, mut r: Box<Reading>) -> Result<Step, Box<Reading>> {
        if r.head.is_none() {
            match r.scan.advance(&r.buf) {
                Err(refusal) => return Ok(Step::Refuse(r, refusal)),
                Ok(None) => return Err(r),
                Ok(Some(n)) => match head::parse(&r.buf[..n]) {
                    Err(refusal) => return Ok(Step::Refuse(r, refusal)),
                    Ok(h) => {
                        r.head = Some((h, n));
                        r.head_done = Some(Instant::now());
                    }
                },
            }
        }
        let Some((h, n)) = &r.head else { return Err(r) };
        let n = *n;
        let buffered_body = match h.body {
            Body::None => Some(0),
            Body::Length(len) if len <= BODY_BUFFER_BYTES_MAX && !h.expects_continue => Some(len as usize),
            _ => None,
        };
        if let Some(len) = buffered_body {
            if r.buf.len() < n + len {
                return Err(r);
            }
        }
        if self.queued.load(Ordering::Relaxed) >= QUEUE_MAX {
            return Ok(Step::Refuse(r, OVERLOADED));
        }
        self.buffered = self.buffered.saturating_sub(r.buf.len());
        let Reading { transport, mut buf, head, .. } = *r;
        let Some((h, _)) = head else { return Ok(Step::Close) };
        if transport.sock.set_nonblocking(false).is_err() {
            return Ok(Step::Close);
        }
        let secure = transport.secure();
        let gone = Arc::new(AtomicBool::new(false));
        let (reader, lease): (Box<dyn Read + Send>, Arc<Lease>) = match buffered_body {
            Some(len) => {
                let body = buf[n..n + len].to_vec();
                let rest = buf.split_off(n + len);
                let lease = Lease::new(
                    idx,
                    transport,
                    rest,
                    h.keep_alive,
                    BodyLeft::Bytes(0),
                    self.back.clone(),
                    gone.clone(),
                );
                (Box::new(Cursor::new(body)), lease)
            }
            None => {
                let rest = buf.split_off(n);
                let left = match h.body {
                    Body::Length(len) => BodyLeft::Bytes(len),
                    Body::None => BodyLeft::Bytes(0),
                    Body::Chunked => BodyLeft::Unknown,
                };
                let lease =
                    Lease::new(idx, transport, rest, h.keep_alive, left, self.back.clone(), gone.clone());
                let floor = BodyFloor::new(Instant::now());
                (Box::new(BodyReader::new(lease.clone(), floor)), lease)
            }
        };
        let writer = ResponseWriter::new(lease);
        let built = tiny_http::new_request(
            secure,
            h.method,
            h.target,
            h.version,
            h.headers,
            Some(peer),
            reader,
            writer,
        );
        match built {
            Ok(rq) => {
                self.queued.fetch_add(1, Ordering::Relaxed);
                // The pool is gone only at shutdown: the request is dropped.
                let _ = self.jobs.send(rq.with_peer_gone(gone.clone()));
            }
            Err(_) => {
                // Cannot happen for heads `head::parse` accepted; the lease
                // comes back and is closed.
                gone.store(true, Ordering::Relaxed);
            }
        }
        Ok(Step::Out(gone))
    }

    /// Connections coming back from workers: closed, or read on.
    fn take_returns(&mut self) {
        let mut back = VecDeque::new();
        while let Ok(item) = self.returns.try_recv() {
            back.push_back(item);
        }
        for (idx, ret) in back {
            let Some(Some(slot)) = self.slots.get(idx) else { continue };
            if !matches!(slot.state, State::Out { .. }) {
                continue;
            }
            let fd = slot.fd;
            if ret.transport.sock.set_nonblocking(true).is_err() {
                self.release(idx, fd);
                drop(ret);
                continue;
            }
            if !ret.keep_alive {
                // The client may still be sending (a body left unread):
                // read it off for a moment, so it sees the answer rather
                // than a reset.
                let mut sock = ret.transport.sock;
                if let Some(mut tls) = ret.transport.tls {
                    tls.send_close_notify();
                    let _ = flush_tls(&mut tls, &mut sock);
                }
                let _ = sock.shutdown(Shutdown::Write);
                if let Some(Some(slot)) = self.slots.get_mut(idx) {
                    slot.state = State::Lingering { sock, until: Instant::now() + LINGER, drained: 0 };
                }
                self.progress(idx);
                continue;
            }
            self.buffered += ret.pending.len();
            let r = Reading::new(ret.transport, ret.pending, Instant::now());
            if let Some(Some(slot)) = self.slots.get_mut(idx) {
                slot.state = State::Reading(Box::new(r));
            }
            self.progress(idx);
        }
    }

    /// Closes what passed its deadline.
    fn sweep(&mut self, now: Instant) {
        for idx in 0..self.slots.len() {
            let Some(slot) = &self.slots[idx] else { continue };
            let (deadline, half_read) = match &slot.state {
                State::Hello { since, .. } => (*since + crate::tls::HANDSHAKE_TIMEOUT, false),
                State::Reading(r) => r.deadline(),
                State::Lingering { until, .. } => (*until, false),
                State::Out { .. } => continue,
            };
            if now < deadline {
                continue;
            }
            let Some(mut slot) = self.slots[idx].take() else { continue };
            match std::mem::replace(&mut slot.state, State::Out { gone: Arc::default() }) {
                State::Reading(r) if half_read => {
                    self.buffered = self.buffered.saturating_sub(r.buf.len());
                    let sock = answer_and_shut(r.transport, TIMED_OUT);
                    slot.state = State::Lingering { sock, until: now + LINGER, drained: 0 };
                    self.slots[idx] = Some(slot);
                }
                State::Reading(r) => {
                    self.buffered = self.buffered.saturating_sub(r.buf.len());
                    self.release(idx, slot.fd);
                }
                _ => self.release(idx, slot.fd),
            }
        }
    }

    /// After a panic: a slot left empty mid-step (its socket already
    /// dropped by the unwinding) is counted free again.
    fn forget_broken(&mut self, token: Token) {
        let Some(idx) = token.0.checked_sub(CONN_BASE) else { return };
        if idx < self.slots.len() && self.slots[idx].is_none() && !self.free.contains(&idx) {
            self.free.push(idx);
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Forgets a connection whose socket is dropped by the caller.
    fn release(&mut self, idx: usize, fd: RawFd) {
        self.slots[idx] = None;
        self.release_fd(idx, fd);
    }

    fn release_fd(&mut self, idx: usize, fd: RawFd) {
        // Deregistering before the socket closes; a closed descriptor
        // leaves epoll by itself, so a failure here is harmless.
        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        self.free.push(idx);
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

const TIMED_OUT: Refusal =
    Refusal { status: 408, errcode: "M_UNKNOWN", message: "The request took too long to arrive" };
const OVERLOADED: Refusal =
    Refusal { status: 503, errcode: "M_LIMIT_EXCEEDED", message: "The server is busy; try again shortly" };

/// Reads what a connection has sent (decrypted, for TLS) into `out`.
/// `Ok(true)`: bytes were added; `Ok(false)`: the client closed;
/// `WouldBlock`: nothing more now.
fn read_plain(t: &mut Transport, scratch: &mut [u8], out: &mut Vec<u8>) -> io::Result<bool> {
    let Some(tls) = &mut t.tls else {
        let n = t.sock.read(scratch)?;
        out.extend_from_slice(&scratch[..n]);
        return Ok(n > 0);
    };
    loop {
        match tls.reader().read(scratch) {
            Ok(0) => return Ok(false),
            Ok(n) => {
                out.extend_from_slice(&scratch[..n]);
                return Ok(true);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return Ok(false),
        }
        if tls.read_tls(&mut t.sock)? == 0 {
            return Ok(false);
        }
        if let Err(e) = tls.process_new_packets() {
            let _ = tls.write_tls(&mut t.sock);
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        flush_tls(tls, &mut t.sock)?;
    }
}

/// Writes what rustls has to send without blocking; `true` when all of it
/// went.
fn flush_tls(tls: &mut rustls::ServerConnection, sock: &mut TcpStream) -> io::Result<bool> {
    while tls.wants_write() {
        match tls.write_tls(sock) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// The bytes of a JSON error answer that closes the connection.
fn error_answer(refusal: Refusal) -> Vec<u8> {
    let body = serde_json::json!({ "errcode": refusal.errcode, "error": refusal.message });
    let body = match refusal.status {
        503 => {
            let mut b = body;
            b["retry_after_ms"] = serde_json::json!(RETRY_AFTER_SECS * 1000);
            b.to_string()
        }
        _ => body.to_string(),
    };
    let reason = tiny_http::StatusCode(refusal.status).default_reason_phrase();
    let retry =
        if refusal.status == 503 { format!("Retry-After: {RETRY_AFTER_SECS}\r\n") } else { String::new() };
    format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\
         Server: {}\r\nAccess-Control-Allow-Origin: *\r\n{retry}\r\n{body}",
        refusal.status,
        body.len(),
        super::SERVER_NAME,
    )
    .into_bytes()
}

/// Writes a refusal without blocking (what does not fit in the socket
/// buffer is lost: these answers are small), closes the sending side, and
/// returns the socket for lingering.
fn answer_and_shut(mut t: Transport, refusal: Refusal) -> TcpStream {
    let bytes = error_answer(refusal);
    match &mut t.tls {
        None => {
            let _ = t.sock.write(&bytes);
        }
        Some(tls) if !tls.is_handshaking() => {
            let _ = tls.writer().write_all(&bytes);
            tls.send_close_notify();
            let _ = flush_tls(tls, &mut t.sock);
        }
        Some(_) => {}
    }
    let _ = t.sock.shutdown(Shutdown::Write);
    t.sock
}

/// Answers a plain connection refused over the cap and closes it.
fn refuse_at_once(sock: TcpStream) {
    if sock.set_nonblocking(true).is_ok() {
        let mut sock = sock;
        let _ = sock.write(&error_answer(CAP_REACHED));
        let _ = sock.shutdown(Shutdown::Write);
    }
}

const CAP_REACHED: Refusal =
    Refusal { status: 503, errcode: "M_LIMIT_EXCEEDED", message: "Too many connections; try again shortly" };

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_answers_are_json_with_their_status() {
        let bytes = error_answer(CAP_REACHED);
        let text = String::from_utf8(bytes).expect("ASCII");
        assert!(text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{text}");
        assert!(text.contains("\r\nRetry-After: 5\r\n"));
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(json["errcode"], "M_LIMIT_EXCEEDED");
        assert_eq!(json["retry_after_ms"], 5000);
        let text = String::from_utf8(error_answer(TIMED_OUT)).expect("ASCII");
        assert!(text.starts_with("HTTP/1.1 408 "));
        assert!(!text.contains("Retry-After"));
    }
}
