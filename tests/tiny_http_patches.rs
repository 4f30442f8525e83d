//! The patches Hearth made to its vendored tiny_http
//! (`contrib/vendor/tiny_http/PATCHES.md`), each shown on a bare tiny_http
//! server on loopback, talked to with a raw TCP client. Hearth itself
//! serves through its own reactor and uses only tiny_http's `Request` and
//! `Response` (patch 7); the server loop (patches 2–4) stays in the crate,
//! and these tests keep it honest.
//!
//! Not shown: patch 2's "a failed accept no longer stops the server" (it
//! needs the process out of descriptors, which the other tests of this
//! binary share).

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The connection cap set for every server of this binary
/// (`tiny_http::CONNECTIONS_MAX` is one per process).
const CONNECTIONS: usize = 8;
/// How long any awaited fact may take.
const WAIT: Duration = Duration::from_secs(20);

/// A bare tiny_http server on an ephemeral loopback port whose one handler
/// thread answers every request with `path <url>` and never reads the body.
fn server() -> SocketAddr {
    tiny_http::CONNECTIONS_MAX.store(CONNECTIONS, Ordering::Relaxed);
    let server = tiny_http::Server::http("127.0.0.1:0").expect("bind");
    let addr = server.server_addr().to_ip().expect("an IP address");
    std::thread::spawn(move || {
        for rq in server.incoming_requests() {
            let body = format!("path {}", rq.url());
            let _ = rq.respond(tiny_http::Response::from_string(body));
        }
    });
    addr
}

fn connect(addr: SocketAddr) -> TcpStream {
    let sock = TcpStream::connect(addr).expect("connect");
    sock.set_read_timeout(Some(WAIT)).expect("read timeout");
    sock
}

/// One response: head and `Content-Length` body. `None`: the server
/// closed (or reset) the connection before a complete one.
fn read_response(reader: &mut impl BufRead) -> Option<String> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let len: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).ok()?;
    Some(head + &String::from_utf8_lossy(&body))
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")
}

/// Polls `check` until it holds, at most `WAIT`.
fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "{what} within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Patches 1 and 5: a request declaring a huge `Content-Length` whose body
/// is never read is answered (upstream allocated the whole declared length
/// to discard it and aborted the process), and the undeclared rest is left
/// unread: the next request on the connection is answered at once instead
/// of being swallowed as body.
#[test]
fn a_huge_unread_body_is_neither_allocated_nor_drained() {
    let addr = server();
    let mut sock = connect(addr);
    let mut reader = BufReader::new(sock.try_clone().expect("clone"));
    sock.write_all(b"POST /huge HTTP/1.1\r\nHost: x\r\nContent-Length: 1152921504606846976\r\n\r\n")
        .expect("send");
    let first = read_response(&mut reader).expect("the huge request is answered");
    assert!(first.starts_with("HTTP/1.1 200") && first.ends_with("path /huge"), "{first}");
    sock.write_all(get("/next").as_bytes()).expect("send");
    let next = read_response(&mut reader).expect("the next request is answered");
    assert!(next.ends_with("path /next"), "{next}");
}

/// Patch 1: a rest of at most 256 KiB is read off (through a fixed buffer)
/// and thrown away, so the pipelined request after it is answered.
#[test]
fn a_small_unread_body_is_discarded_and_the_connection_goes_on() {
    let addr = server();
    let mut sock = connect(addr);
    let mut reader = BufReader::new(sock.try_clone().expect("clone"));
    let body = vec![b'x'; 200 * 1024];
    let mut all =
        format!("POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    all.extend_from_slice(&body);
    all.extend_from_slice(get("/after").as_bytes());
    sock.write_all(&all).expect("send");
    let first = read_response(&mut reader).expect("answered");
    assert!(first.ends_with("path /small"), "{first}");
    let after = read_response(&mut reader).expect("the pipelined request is answered");
    assert!(after.starts_with("HTTP/1.1 200") && after.ends_with("path /after"), "{after}");
}

/// The sockets of this process whose peer is `peer`: the server's side of
/// a connection the test made (tiny_http holds a few clones of it).
fn server_side_fds(peer: SocketAddr) -> Vec<libc::c_int> {
    let mut fds = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd").flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<libc::c_int>().ok()) else {
            continue;
        };
        // SAFETY: getpeername writes at most `len` bytes into `addr`.
        let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let ok = unsafe { libc::getpeername(fd, (&mut addr as *mut libc::sockaddr_in).cast(), &mut len) };
        if ok != 0 || i32::from(addr.sin_family) != libc::AF_INET {
            continue;
        }
        let ip = Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr));
        if SocketAddr::from((ip, u16::from_be(addr.sin_port))) == peer {
            fds.push(fd);
        }
    }
    fds
}

/// Patches 2 and 3: every accepted socket gets `READ_TIMEOUT` as its read
/// timeout (an idle or stalled client cannot hold its thread forever) and
/// `TCP_NODELAY` (no 40 ms wait for a delayed ACK). Read on the server's
/// own socket, which lives in this process.
#[test]
fn accepted_sockets_get_a_read_timeout_and_nodelay() {
    let addr = server();
    let mut sock = connect(addr);
    sock.write_all(get("/opts").as_bytes()).expect("send");
    // Answered: the server has accepted and configured its socket.
    read_response(&mut BufReader::new(sock.try_clone().expect("clone"))).expect("answered");
    let fds = server_side_fds(sock.local_addr().expect("local address"));
    assert!(!fds.is_empty(), "the server's socket of this connection");
    for fd in fds {
        let mut nodelay: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into the value.
        let ok = unsafe {
            libc::getsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&mut nodelay as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(ok, 0);
        assert_ne!(nodelay, 0, "TCP_NODELAY on fd {fd}");
        let mut timeout: libc::timeval = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
        // SAFETY: as above.
        let ok = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&mut timeout as *mut libc::timeval).cast(),
                &mut len,
            )
        };
        assert_eq!(ok, 0);
        let got = Duration::new(timeout.tv_sec as u64, timeout.tv_usec as u32 * 1000);
        assert_eq!(got, tiny_http::READ_TIMEOUT, "SO_RCVTIMEO on fd {fd}");
    }
}

/// Patch 2: at most `CONNECTIONS_MAX` connections are open at once; one
/// past it is closed unanswered, and once a connection closes a new one is
/// served again.
#[test]
fn connections_are_bounded_and_the_bound_frees_up() {
    let addr = server();
    let mut open: Vec<(TcpStream, BufReader<TcpStream>)> = Vec::new();
    for i in 0..CONNECTIONS {
        let mut sock = connect(addr);
        let mut reader = BufReader::new(sock.try_clone().expect("clone"));
        sock.write_all(get(&format!("/{i}")).as_bytes()).expect("send");
        assert!(read_response(&mut reader).is_some(), "connection {i} within the bound is served");
        open.push((sock, reader));
    }
    // The kernel completes the handshake; tiny_http accepts and closes it.
    let mut over = connect(addr);
    let _ = over.write_all(get("/over").as_bytes());
    assert_eq!(read_response(&mut BufReader::new(over)), None, "a connection past the bound is refused");
    // The open ones are still served.
    let (sock, reader) = &mut open[0];
    sock.write_all(get("/still").as_bytes()).expect("send");
    assert!(read_response(reader).expect("served").ends_with("path /still"));
    // One closes; soon a new connection is served again.
    drop(open.pop());
    wait_for("a new connection served after one closed", || {
        let mut sock = connect(addr);
        let _ = sock.write_all(get("/again").as_bytes());
        read_response(&mut BufReader::new(sock)).is_some_and(|r| r.ends_with("path /again"))
    });
}

/// Patch 4: connections arriving together each get a thread. Upstream
/// queued a new connection whenever any thread was idle, so with the pool's
/// four idle threads, the fifth and sixth of six keep-alive connections
/// waited for one of the others to close.
#[test]
fn connections_arriving_together_are_all_served() {
    let addr = server();
    let mut socks: Vec<TcpStream> = (0..6).map(|_| connect(addr)).collect();
    for (i, sock) in socks.iter_mut().enumerate() {
        sock.write_all(get(&format!("/together{i}")).as_bytes()).expect("send");
    }
    // None of them closes; each must still be answered.
    for (i, sock) in socks.iter().enumerate() {
        let answer = read_response(&mut BufReader::new(sock.try_clone().expect("clone")));
        assert!(answer.is_some_and(|a| a.ends_with(&format!("path /together{i}"))), "connection {i} served");
    }
}

/// Patch 6: tiny_http adds no `Server` header of its own.
#[test]
fn no_server_header_of_its_own() {
    let addr = server();
    let mut sock = connect(addr);
    sock.write_all(get("/hdr").as_bytes()).expect("send");
    let answer = read_response(&mut BufReader::new(sock.try_clone().expect("clone"))).expect("answered");
    let head = answer.split("\r\n\r\n").next().expect("head");
    assert!(head.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(!head.lines().any(|l| l.to_ascii_lowercase().starts_with("server:")), "{head}");
}

/// Patch 7: `new_request` is public, so an embedding server builds requests
/// over connections it holds itself (here: a socket this test accepted and
/// whose head it read), and a request carries a `peer_gone` flag that the
/// embedder sets when the client closes its side.
#[test]
fn new_request_over_an_own_connection_and_peer_gone() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut client = connect(listener.local_addr().expect("address"));
    client.write_all(b"POST /own HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello").expect("send");
    let (sock, peer) = listener.accept().expect("accept");
    sock.set_read_timeout(Some(WAIT)).expect("read timeout");
    // The embedder reads the head itself, a byte at a time so that no byte
    // of the body is taken with it.
    let mut body_source = sock.try_clone().expect("clone");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        std::io::Read::read_exact(&mut body_source, &mut byte).expect("head");
        head.push(byte[0]);
    }
    let headers = vec![tiny_http::Header::from_bytes("Content-Length", "5").expect("header")];
    let gone = Arc::new(AtomicBool::new(false));
    let mut rq = tiny_http::new_request(
        false,
        tiny_http::Method::Post,
        "/own".to_owned(),
        tiny_http::HTTPVersion(1, 1),
        headers,
        Some(peer),
        body_source,
        sock.try_clone().expect("clone"),
    )
    .expect("a request")
    .with_peer_gone(gone.clone());
    assert_eq!(rq.url(), "/own");
    assert_eq!(rq.remote_addr(), Some(&peer));
    let mut body = String::new();
    rq.as_reader().read_to_string(&mut body).expect("body");
    assert_eq!(body, "hello");
    assert!(!rq.peer_gone());
    // The embedder's watcher: the client's close shows as end of stream.
    let watcher = {
        let (sock, gone) = (sock.try_clone().expect("clone"), gone.clone());
        std::thread::spawn(move || {
            let mut byte = [0u8; 1];
            if matches!(sock.peek(&mut byte), Ok(0)) {
                gone.store(true, Ordering::Relaxed);
            }
        })
    };
    client.shutdown(std::net::Shutdown::Write).expect("shutdown");
    wait_for("peer_gone once the client closed", || rq.peer_gone());
    watcher.join().expect("watcher");
    // The request still answers on the embedder's writer.
    rq.respond(tiny_http::Response::from_string("bye")).expect("respond");
    let answer = read_response(&mut BufReader::new(client)).expect("answered");
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("bye"), "{answer}");
}
