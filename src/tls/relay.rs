//! The TLS acceptor and the per-connection relay.
//!
//! One thread accepts; each connection gets a thread that completes the
//! handshake (bounded by `Limits::handshake`), opens a TCP connection to
//! the plain HTTP listener, records it in the peer map, and then moves
//! bytes both ways with `poll(2)` until either side closes or nothing moves
//! for `Limits::idle`. tiny_http keeps a thread per connection too, so a
//! relayed connection costs two threads and two sockets.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::server::Acceptor;
use rustls::ServerConnection;

use super::{lock, peers, Tls, ACME_TLS_ALPN};
use crate::log;

/// Connecting to the plain listener (on this host) takes at most this.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A write to either side that makes no progress for this long ends the
/// connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes moved per read.
const RELAY_BUF_BYTES: usize = 16 * 1024;
/// Stack of a connection thread (the relay buffer and rustls' handshake
/// need far less; the default 2 MiB would only be reserved, never used).
const CONNECTION_STACK_BYTES: usize = 256 * 1024;
/// After a failed `accept` (e.g. out of descriptors), wait before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The bounds of the TLS listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open TLS connections at most; more are closed at once.
    pub connections: usize,
    /// From accept to a finished handshake.
    pub handshake: Duration,
    /// A connection on which nothing moves for this long is closed. Must
    /// exceed the longest long-poll.
    pub idle: Duration,
}

/// Starts the acceptor thread on `listener`, relaying to `upstream` (the
/// plain listener's address as seen from this host).
pub fn start(listener: TcpListener, upstream: SocketAddr, tls: Arc<Tls>, limits: Limits) {
    let open = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("tls-accept".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let sock = match stream {
                    Ok(sock) => sock,
                    Err(e) => {
                        log::warn(format_args!("tls: accept failed: {e}"));
                        std::thread::sleep(ACCEPT_BACKOFF);
                        continue;
                    }
                };
                if open.fetch_add(1, Ordering::SeqCst) >= limits.connections {
                    open.fetch_sub(1, Ordering::SeqCst);
                    log::debug(format_args!("tls: {} connections open, refusing one", limits.connections));
                    continue;
                }
                let guard = Slot(open.clone());
                let tls = tls.clone();
                let spawned = std::thread::Builder::new()
                    .name("tls-conn".into())
                    .stack_size(CONNECTION_STACK_BYTES)
                    .spawn(move || {
                        let _guard = guard;
                        let peer = sock.peer_addr().ok();
                        if let Err(e) = serve(sock, upstream, &tls, limits) {
                            if let Some(peer) = peer {
                                log::debug(format_args!("tls: {peer}: {e}"));
                            }
                        }
                    });
                if let Err(e) = spawned {
                    log::warn(format_args!("tls: cannot start a connection thread: {e}"));
                }
            }
        })
        .expect("spawning the TLS acceptor");
}

/// One open connection, counted until dropped.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The peer-map entry of one relayed connection, removed when dropped.
struct PeerEntry(SocketAddr);

impl PeerEntry {
    fn new(relay_side: SocketAddr, client: SocketAddr) -> PeerEntry {
        lock(peers()).insert(relay_side, client);
        PeerEntry(relay_side)
    }
}

impl Drop for PeerEntry {
    fn drop(&mut self) {
        lock(peers()).remove(&self.0);
    }
}

fn serve(mut sock: TcpStream, upstream: SocketAddr, tls: &Tls, limits: Limits) -> Result<(), String> {
    let peer = sock.peer_addr().map_err(|e| e.to_string())?;
    let _ = sock.set_nodelay(true);
    sock.set_write_timeout(Some(WRITE_TIMEOUT)).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + limits.handshake;
    let Some((mut conn, acme)) = handshake(&mut sock, tls, deadline)? else {
        return Ok(());
    };
    if acme {
        // A TLS-ALPN-01 validation needs the handshake only.
        conn.send_close_notify();
        let _ = conn.write_tls(&mut sock);
        return Ok(());
    }
    let mut up = TcpStream::connect_timeout(&upstream, UPSTREAM_CONNECT_TIMEOUT)
        .map_err(|e| format!("cannot reach the HTTP listener {upstream}: {e}"))?;
    let _ = up.set_nodelay(true);
    up.set_write_timeout(Some(WRITE_TIMEOUT)).map_err(|e| e.to_string())?;
    let relay_side = up.local_addr().map_err(|e| e.to_string())?;
    let _entry = PeerEntry::new(relay_side, peer);
    log::debug(format_args!("tls: {peer} connected, relayed from {relay_side}"));
    sock.set_read_timeout(None).map_err(|e| e.to_string())?;
    relay(&mut sock, &mut up, &mut conn, limits.idle)
}

/// Reads the ClientHello, picks the configuration (the current certificate
/// or a TLS-ALPN-01 challenge) and completes the handshake before
/// `deadline`. `None`: nothing to serve this client (no certificate yet).
fn handshake(
    sock: &mut TcpStream,
    tls: &Tls,
    deadline: Instant,
) -> Result<Option<(ServerConnection, bool)>, String> {
    let mut acceptor = Acceptor::default();
    let accepted = loop {
        read_before(sock, deadline, |s| acceptor.read_tls(s))?;
        match acceptor.accept() {
            Ok(Some(accepted)) => break accepted,
            Ok(None) => {}
            Err((e, mut alert)) => {
                let _ = alert.write_all(sock);
                return Err(format!("bad ClientHello: {e}"));
            }
        }
    };
    let hello = accepted.client_hello();
    let acme = hello.alpn().is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
    let config = if acme { hello.server_name().and_then(|name| tls.challenge(name)) } else { tls.current() };
    let Some(config) = config else { return Ok(None) };
    let mut conn = match accepted.into_connection(config) {
        Ok(conn) => conn,
        Err((e, mut alert)) => {
            let _ = alert.write_all(sock);
            return Err(format!("handshake: {e}"));
        }
    };
    while conn.is_handshaking() {
        while conn.wants_write() {
            conn.write_tls(sock).map_err(|e| format!("handshake write: {e}"))?;
        }
        if !conn.is_handshaking() {
            break;
        }
        read_before(sock, deadline, |s| conn.read_tls(s))?;
        if let Err(e) = conn.process_new_packets() {
            let _ = conn.write_tls(sock);
            return Err(format!("handshake: {e}"));
        }
    }
    while conn.wants_write() {
        conn.write_tls(sock).map_err(|e| format!("handshake write: {e}"))?;
    }
    Ok(Some((conn, acme)))
}

/// One read of TLS records, bounded by what is left until `deadline`.
fn read_before(
    sock: &mut TcpStream,
    deadline: Instant,
    read: impl FnOnce(&mut TcpStream) -> std::io::Result<usize>,
) -> Result<(), String> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err("handshake timed out".to_owned());
    }
    sock.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
    match read(sock) {
        Ok(0) => Err("closed during the handshake".to_owned()),
        Ok(_) => Ok(()),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            Err("handshake timed out".to_owned())
        }
        Err(e) => Err(format!("handshake read: {e}")),
    }
}

/// Moves plaintext between the TLS client and the plain listener until one
/// side closes, an error, or `idle` without traffic.
fn relay(
    sock: &mut TcpStream,
    up: &mut TcpStream,
    conn: &mut ServerConnection,
    idle: Duration,
) -> Result<(), String> {
    let mut buf = vec![0u8; RELAY_BUF_BYTES];
    let idle_ms = libc::c_int::try_from(idle.as_millis()).unwrap_or(libc::c_int::MAX);
    let mut client_open = true;
    loop {
        flush_tls(conn, sock)?;
        let mut fds = [
            libc::pollfd {
                fd: if client_open { sock.as_raw_fd() } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd { fd: up.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        ];
        // SAFETY: `fds` is a valid array of two pollfd for the call's duration.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 2, idle_ms) };
        if ready < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("poll: {e}"));
        }
        if ready == 0 {
            return Err("idle timeout".to_owned());
        }
        let wake = libc::POLLIN | libc::POLLHUP | libc::POLLERR;
        if client_open && fds[0].revents & wake != 0 {
            client_open = from_client(sock, up, conn, &mut buf)?;
            if !client_open {
                // The request side is done; answers may still come.
                let _ = up.shutdown(Shutdown::Write);
            }
        }
        if fds[1].revents & wake != 0 {
            let n = match up.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => 0,
            };
            if n == 0 {
                conn.send_close_notify();
                let _ = flush_tls(conn, sock);
                return Ok(());
            }
            let mut rest = &buf[..n];
            while !rest.is_empty() {
                let written = conn.writer().write(rest).map_err(|e| e.to_string())?;
                rest = &rest[written..];
                flush_tls(conn, sock)?;
            }
        }
    }
}

/// Reads TLS records from the client and writes their plaintext upstream;
/// `false` once the client has closed its side.
fn from_client(
    sock: &mut TcpStream,
    up: &mut TcpStream,
    conn: &mut ServerConnection,
    buf: &mut [u8],
) -> Result<bool, String> {
    match conn.read_tls(sock) {
        Ok(0) => return Ok(false),
        Ok(_) => {}
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => return Ok(true),
        Err(e) => return Err(format!("read: {e}")),
    }
    if let Err(e) = conn.process_new_packets() {
        let _ = conn.write_tls(sock);
        return Err(format!("TLS: {e}"));
    }
    loop {
        match conn.reader().read(buf) {
            Ok(0) => return Ok(false),
            Ok(n) => up.write_all(&buf[..n]).map_err(|e| format!("to the HTTP listener: {e}"))?,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
            Err(_) => return Ok(false),
        }
    }
}

fn flush_tls(conn: &mut ServerConnection, sock: &mut TcpStream) -> Result<(), String> {
    while conn.wants_write() {
        conn.write_tls(sock).map_err(|e| format!("write: {e}"))?;
    }
    Ok(())
}
