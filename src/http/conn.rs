//! One client connection while a request of it is out of the reactor: the
//! socket (plain or TLS) lent to a worker, the body reader and response
//! writer tiny_http's `Request` is built with, and the way back.
//!
//! The reactor (`reactor.rs`) owns idle and half-read connections. Once a
//! request head (and a small body) is complete it builds the `Request`
//! over a [`Lease`]: the reader and the writer share it, and when both are
//! dropped (the response is written, or the request was dropped) the
//! connection goes back to the reactor, with the bytes it read past the
//! body (a pipelined request), and whether it may carry another request.
//!
//! While lent, the socket is in blocking mode with the socket timeouts the
//! reactor set (`READ_TIMEOUT`, `WRITE_TIMEOUT`); a body streamed by a
//! worker must also keep up a minimum rate (`BodyFloor`), so a slow client
//! cannot hold a worker for long.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::ServerConnection;

/// A read of a lent socket that gets nothing for this long fails.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A write of a lent socket that makes no progress for this long fails.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// A body gets this long before it must keep up `BODY_RATE_MIN`.
pub const BODY_GRACE: Duration = Duration::from_secs(10);
/// Slowest accepted body upload, in bytes per second, averaged from the
/// end of the head (after `BODY_GRACE`).
pub const BODY_RATE_MIN: u64 = 8 * 1024;
/// A response is written to the socket in pieces of at most this size;
/// smaller writes (tiny_http writes each header line on its own) are
/// gathered first.
const WRITE_BUF_BYTES: usize = 16 * 1024;

/// A connection's byte stream: TCP, and TLS over it when served on the TLS
/// listener.
pub struct Transport {
    pub sock: TcpStream,
    pub tls: Option<Box<ServerConnection>>,
}

impl Transport {
    pub fn secure(&self) -> bool {
        self.tls.is_some()
    }
}

/// Blocking reads (the socket must be in blocking mode).
impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.tls {
            None => self.sock.read(buf),
            Some(tls) => rustls::Stream::new(&mut **tls, &mut self.sock).read(buf),
        }
    }
}

/// Blocking writes (the socket must be in blocking mode).
impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.tls {
            None => self.sock.write(buf),
            Some(tls) => rustls::Stream::new(&mut **tls, &mut self.sock).write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.tls {
            None => self.sock.flush(),
            Some(tls) => {
                while tls.wants_write() {
                    tls.write_tls(&mut self.sock)?;
                }
                self.sock.flush()
            }
        }
    }
}

/// What a connection carries back to the reactor.
pub struct Returned {
    pub transport: Transport,
    /// Bytes read past this request (the start of the next), in order.
    pub pending: Vec<u8>,
    /// False when the connection must be closed: the client asked, the
    /// body was not read to its end, an I/O error, or the client is gone.
    pub keep_alive: bool,
}

/// The way back to the reactor: a channel and its wake-up.
#[derive(Clone)]
pub struct ReturnPath {
    pub tx: Sender<(usize, Returned)>,
    pub waker: Arc<mio::Waker>,
}

/// How much of the body is still unread.
#[derive(Debug, Clone, Copy)]
pub enum BodyLeft {
    Bytes(u64),
    /// Chunked: its end is not tracked here, so the connection is closed
    /// after the request.
    Unknown,
}

struct Parts {
    transport: Transport,
    pending: Vec<u8>,
    pending_pos: usize,
    keep_alive: bool,
    body_left: BodyLeft,
}

/// The connection while a request of it is out: shared by the request's
/// body reader and response writer, returned to the reactor when the last
/// of them is dropped.
pub struct Lease {
    token: usize,
    parts: Mutex<Option<Parts>>,
    back: ReturnPath,
    gone: Arc<AtomicBool>,
}

impl Lease {
    /// `pending`: bytes already read that follow the head (the body's
    /// start when it is streamed, or what follows a buffered body).
    pub fn new(
        token: usize,
        transport: Transport,
        pending: Vec<u8>,
        keep_alive: bool,
        body_left: BodyLeft,
        back: ReturnPath,
        gone: Arc<AtomicBool>,
    ) -> Arc<Lease> {
        let keep_alive = keep_alive && matches!(body_left, BodyLeft::Bytes(_));
        let parts = Parts { transport, pending, pending_pos: 0, keep_alive, body_left };
        Arc::new(Lease { token, parts: Mutex::new(Some(parts)), back, gone })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Parts) -> io::Result<T>) -> io::Result<T> {
        let mut guard = self.parts.lock().unwrap_or_else(|p| p.into_inner());
        let parts = guard.as_mut().ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "returned"))?;
        let result = f(parts);
        if result.is_err() {
            parts.keep_alive = false;
        }
        result
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(p) = self.parts.get_mut().unwrap_or_else(|p| p.into_inner()).take() else { return };
        let body_done = matches!(p.body_left, BodyLeft::Bytes(0));
        let keep_alive = p.keep_alive && body_done && !self.gone.load(Ordering::Relaxed);
        let pending = if p.pending_pos == 0 { p.pending } else { p.pending[p.pending_pos..].to_vec() };
        let returned = Returned { transport: p.transport, pending, keep_alive };
        // A reactor that is gone (shutting down) drops the connection.
        if self.back.tx.send((self.token, returned)).is_ok() {
            let _ = self.back.waker.wake();
        }
    }
}

/// Enforces `BODY_RATE_MIN` on a body a worker streams.
pub struct BodyFloor {
    since: Instant,
    read: u64,
}

impl BodyFloor {
    pub fn new(since: Instant) -> BodyFloor {
        BodyFloor { since, read: 0 }
    }

    fn check(&mut self, n: usize) -> io::Result<()> {
        self.read += n as u64;
        let allowed = BODY_GRACE + Duration::from_millis(self.read.saturating_mul(1000) / BODY_RATE_MIN);
        if self.since.elapsed() > allowed {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "request body too slow"));
        }
        Ok(())
    }
}

/// The body of a request read by a worker: what the reactor already read,
/// then the socket. tiny_http wraps it to the declared length (or the
/// chunked decoder), so it never reads past the body.
pub struct BodyReader {
    lease: Arc<Lease>,
    floor: BodyFloor,
}

impl BodyReader {
    pub fn new(lease: Arc<Lease>, floor: BodyFloor) -> BodyReader {
        BodyReader { lease, floor }
    }
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.lease.with(|p| {
            let want = match p.body_left {
                BodyLeft::Bytes(0) => return Ok(0),
                BodyLeft::Bytes(left) => buf.len().min(usize::try_from(left).unwrap_or(usize::MAX)),
                BodyLeft::Unknown => buf.len(),
            };
            let n = if p.pending_pos < p.pending.len() {
                let from = &p.pending[p.pending_pos..];
                let n = want.min(from.len());
                buf[..n].copy_from_slice(&from[..n]);
                p.pending_pos += n;
                n
            } else {
                p.transport.read(&mut buf[..want])?
            };
            if let BodyLeft::Bytes(left) = &mut p.body_left {
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "body ended early"));
                }
                *left -= n as u64;
            }
            Ok(n)
        })?;
        self.floor.check(n)?;
        Ok(n)
    }
}

/// The response side: gathers small writes and sends them in pieces. No
/// memory is held until the first write (a parked long-poll costs none).
///
/// When the connection will close after this answer (the client asked, or
/// the body was not read to its end), the answer says so with
/// `Connection: close`, so a client does not send its next request into a
/// closing connection. tiny_http does not let a response set that header,
/// so it goes into the head here, as the head leaves.
pub struct ResponseWriter {
    lease: Arc<Lease>,
    buf: Vec<u8>,
    head_sent: bool,
}

impl ResponseWriter {
    pub fn new(lease: Arc<Lease>) -> ResponseWriter {
        ResponseWriter { lease, buf: Vec::new(), head_sent: false }
    }

    /// Adds `Connection: close` to the final head in `buf` if the
    /// connection will not carry another request (and then makes sure it
    /// does not).
    fn mark_close(&mut self) -> io::Result<()> {
        let interim = self.buf.get(..10).is_some_and(|s| s.starts_with(b"HTTP/1.") && s[9] == b'1');
        if interim {
            return Ok(());
        }
        self.head_sent = true;
        let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else { return Ok(()) };
        let gone = self.lease.gone.load(Ordering::Relaxed);
        let close = self.lease.with(|p| {
            let close = !p.keep_alive || !matches!(p.body_left, BodyLeft::Bytes(0)) || gone;
            if close {
                p.keep_alive = false;
            }
            Ok(close)
        })?;
        if close {
            self.buf.splice(end + 2..end + 2, b"Connection: close\r\n".iter().copied());
        }
        Ok(())
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if !self.head_sent {
            self.mark_close()?;
        }
        let buf = &self.buf;
        let result = self.lease.with(|p| p.transport.write_all(buf));
        self.buf.clear();
        result
    }
}

impl Write for ResponseWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > WRITE_BUF_BYTES {
            self.send()?;
            if data.len() >= WRITE_BUF_BYTES {
                return self.lease.with(|p| p.transport.write_all(data)).map(|()| data.len());
            }
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()?;
        self.lease.with(|p| p.transport.flush())
    }
}

impl Drop for ResponseWriter {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_floor() {
        let mut floor = BodyFloor::new(Instant::now());
        assert!(floor.check(1024).is_ok(), "within the grace");
        let mut late = BodyFloor::new(Instant::now() - BODY_GRACE - Duration::from_secs(2));
        // 2 s past the grace: 16 KiB must have arrived.
        assert!(late.check(1024).is_err());
        let mut late = BodyFloor::new(Instant::now() - BODY_GRACE - Duration::from_secs(2));
        assert!(late.check(3 * BODY_RATE_MIN as usize).is_ok());
    }
}
