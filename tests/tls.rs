//! HTTPS through Hearth's own TLS listener: `/versions` over TLS, the real
//! client address (log and rate limits), certificate
//! reload on SIGHUP and on file change, and `X-Forwarded-For` honoured only
//! from configured trusted proxies.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::FromRawFd;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{password_login, Server, V3};
use rustls::pki_types::{CertificateDer, ServerName};

/// How long a reload may take to show.
const RELOAD_WAIT: Duration = Duration::from_secs(20);

/// A self-signed certificate for `localhost` and 127.0.0.1: (cert PEM, key PEM).
fn self_signed() -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("params");
    let cert = params.self_signed(&key).expect("cert");
    (cert.pem(), key.serialize_pem())
}

fn write_pair(dir: &Path, (cert, key): &(String, String)) {
    // Write beside and rename, as certbot and friends do: a reload never
    // sees half a file.
    for (name, text) in [("cert.pem", cert), ("key.pem", key)] {
        let tmp = dir.join(format!("{name}.tmp"));
        std::fs::write(&tmp, text).expect("write pem");
        std::fs::rename(&tmp, dir.join(name)).expect("rename pem");
    }
}

/// The HTTPS port from the "tls: listening on https://ADDR" log line.
fn tls_port(s: &Server) -> u16 {
    let log = s.log_text();
    let line = log.lines().find(|l| l.contains("tls: listening on https://")).expect("tls listening line");
    let addr = line.split("https://").nth(1).and_then(|r| r.split(',').next()).expect("address");
    addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).expect("port")
}

fn client_config(cert_pem: &str) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(cert_pem.as_bytes()).expect("pem")).expect("root");
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// A TCP connection from `source` (any loopback address) to `port`.
fn connect_from(source: [u8; 4], port: u16) -> TcpStream {
    // SAFETY: plain socket calls on a descriptor we own; on success it is
    // handed to TcpStream, which closes it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket");
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from_ne_bytes(source);
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        assert_eq!(libc::bind(fd, &addr as *const _ as *const libc::sockaddr, len), 0, "bind");
        addr.sin_port = port.to_be();
        addr.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        assert_eq!(libc::connect(fd, &addr as *const _ as *const libc::sockaddr, len), 0, "connect");
        TcpStream::from_raw_fd(fd)
    }
}

/// One HTTPS request on a fresh connection from `source`; returns the
/// client's own address and the raw answer, or the TLS error.
fn https(
    config: &Arc<rustls::ClientConfig>,
    source: [u8; 4],
    port: u16,
    request: &str,
) -> Result<(SocketAddr, String), String> {
    let mut sock = connect_from(source, port);
    sock.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let local = sock.local_addr().expect("local addr");
    let name = ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(config.clone(), name).expect("client");
    let mut tls = rustls::StreamOwned::new(conn, &mut sock);
    tls.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    match tls.read_to_end(&mut answer) {
        Ok(_) => {}
        // Some servers close without close_notify; the answer is complete.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => {}
        Err(e) => return Err(e.to_string()),
    }
    Ok((local, String::from_utf8_lossy(&answer).into_owned()))
}

fn get_versions(config: &Arc<rustls::ClientConfig>, port: u16) -> Result<(SocketAddr, String), String> {
    https(
        config,
        [127, 0, 0, 1],
        port,
        "GET /_matrix/client/versions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + RELOAD_WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "{what} within {RELOAD_WAIT:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn versions_over_https_with_the_real_peer_and_reload() {
    let dir = common::TempDir::new();
    let first = self_signed();
    write_pair(dir.path(), &first);
    let cert = dir.join("cert.pem").display().to_string();
    let key = dir.join("key.pem").display().to_string();
    let mut s = Server::start_with(
        &["--tls-listen", "127.0.0.1:0", "--tls-cert", &cert, "--tls-key", &key, "--log-level", "debug"],
        &[],
    );
    let port = tls_port(&s);
    let trust_first = client_config(&first.0);

    let (local, answer) = get_versions(&trust_first, port).expect("https works");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"versions\""), "{answer}");
    // The log names the real client.
    wait_for("the connection log line", || s.log_text().contains(&format!("tls: {local} connected")));
    // Plain HTTP keeps working beside HTTPS.
    assert_eq!(s.get("/_matrix/client/versions", None).0, 200);
    // A client that does not trust the certificate is refused.
    let other = client_config(&self_signed().0);
    assert!(get_versions(&other, port).is_err());

    // SIGHUP: the new certificate serves; the old one no longer does.
    let second = self_signed();
    write_pair(dir.path(), &second);
    s.signal(libc::SIGHUP);
    let trust_second = client_config(&second.0);
    wait_for("the SIGHUP reload", || get_versions(&trust_second, port).is_ok());
    // The file watcher may reload first; the signal is still seen.
    wait_for("the SIGHUP log line", || s.log_text().contains("SIGHUP received"));
    assert!(get_versions(&trust_first, port).is_err());

    // A changed file is picked up without a signal.
    let third = self_signed();
    write_pair(dir.path(), &third);
    let trust_third = client_config(&third.0);
    wait_for("the file-change reload", || get_versions(&trust_third, port).is_ok());

    // A broken file is refused and the current certificate keeps serving.
    std::fs::write(dir.join("cert.pem"), "garbage").expect("write");
    s.signal(libc::SIGHUP);
    wait_for("the failed reload to be logged", || s.log_text().contains("reload failed"));
    assert!(get_versions(&trust_third, port).is_ok());
    assert!(s.terminate().success());
}

/// Rate limits see the TLS client's own address: exhausting the login
/// bucket from 127.0.0.2 over HTTPS leaves 127.0.0.1 (the relay's address)
/// untouched.
#[test]
fn rate_limits_see_the_real_peer() {
    let dir = common::TempDir::new();
    let pair = self_signed();
    write_pair(dir.path(), &pair);
    let cert = dir.join("cert.pem").display().to_string();
    let key = dir.join("key.pem").display().to_string();
    let s = Server::start_with(
        &["--tls-listen", "127.0.0.1:0", "--tls-cert", &cert, "--tls-key", &key],
        &[("HEARTH_RATE_LIMIT_PER_SECOND", "0.01"), ("HEARTH_RATE_LIMIT_BURST", "2")],
    );
    let port = tls_port(&s);
    let config = client_config(&pair.0);
    let body = password_login("nobody", "wrong").to_string();
    let login = format!(
        "POST {V3}/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut limited = false;
    for _ in 0..5 {
        let (_, answer) = https(&config, [127, 0, 0, 2], port, &login).expect("https login");
        limited |= answer.starts_with("HTTP/1.1 429");
    }
    assert!(limited, "the HTTPS client from 127.0.0.2 is rate limited");
    // Plain HTTP from 127.0.0.1 has its own, untouched bucket.
    let (status, body) = s.post(&format!("{V3}/login"), None, password_login("nobody", "wrong"));
    assert_eq!(status, 403, "{body}");
}

/// Without `trusted_proxies`, X-Forwarded-For is ignored even from loopback.
#[test]
fn forwarded_for_only_from_trusted_proxies() {
    let s = Server::start_with(
        &[],
        &[("HEARTH_RATE_LIMIT_PER_SECOND", "0.01"), ("HEARTH_RATE_LIMIT_BURST", "2")],
    );
    let body = password_login("nobody", "wrong").to_string();
    let login = |ip: &str| {
        s.raw(
            "POST",
            &format!("{V3}/login"),
            &[("Content-Type", "application/json"), ("X-Forwarded-For", ip)],
            Some(body.as_bytes()),
        )
        .status
    };
    let statuses: Vec<u16> =
        ["203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4"].iter().map(|ip| login(ip)).collect();
    assert!(statuses.contains(&429), "one bucket for all: {statuses:?}");
}

/// A configuration asking for HTTPS without a certificate is refused.
#[test]
fn tls_without_certificate_is_a_config_error() {
    let (code, _, err) = common::hearth(&["serve", "--tls-listen", "127.0.0.1:0"], "");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("tls_listen"), "{err}");
}

/// Issue 11: TLS connections live on the connection reactor: hundreds of
/// idle ones (plain and TLS, some mid-handshake) add no thread, and a TLS
/// connection carries several requests.
#[test]
fn idle_connections_cost_no_threads_and_tls_keeps_alive() {
    let dir = common::TempDir::new();
    let pair = self_signed();
    write_pair(dir.path(), &pair);
    let cert = dir.join("cert.pem").display().to_string();
    let key = dir.join("key.pem").display().to_string();
    let s = Server::start_with(&["--tls-listen", "127.0.0.1:0", "--tls-cert", &cert, "--tls-key", &key], &[]);
    let port = tls_port(&s);
    let config = client_config(&pair.0);
    // Every thread the server starts lazily is running once it has served.
    get_versions(&config, port).expect("https works");
    assert_eq!(s.get("/_matrix/client/versions", None).0, 200);
    let before = common::proc_status(s.pid(), "Threads");
    let plain: Vec<TcpStream> =
        (0..200).map(|_| TcpStream::connect(("127.0.0.1", s.port)).expect("plain")).collect();
    let raw_tls: Vec<TcpStream> =
        (0..100).map(|_| TcpStream::connect(("127.0.0.1", port)).expect("tls")).collect();
    // Handshaken TLS connections, idle after one request each.
    let name = ServerName::try_from("localhost").expect("name");
    let mut open_tls = Vec::new();
    for _ in 0..50 {
        let sock = TcpStream::connect(("127.0.0.1", port)).expect("tls");
        sock.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        let conn = rustls::ClientConnection::new(config.clone(), name.clone()).expect("client");
        let mut tls = rustls::StreamOwned::new(conn, sock);
        tls.write_all(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("send");
        let answer = read_one(&mut tls);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        open_tls.push(tls);
    }
    // Each TLS connection carries another request.
    for tls in &mut open_tls {
        tls.write_all(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("send");
        assert!(read_one(tls).starts_with("HTTP/1.1 200"));
    }
    assert_eq!(s.get("/_matrix/client/versions", None).0, 200);
    let during = common::proc_status(s.pid(), "Threads");
    assert_eq!(during, before, "threads grew with 350 open connections");
    drop((plain, raw_tls, open_tls));
}

/// Reads one HTTP answer with a Content-Length from a TLS stream.
fn read_one(tls: &mut impl Read) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tls.read_exact(&mut byte).expect("answer head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
        .and_then(|v| v.parse().ok())
        .expect("content-length");
    let mut body = vec![0u8; len];
    tls.read_exact(&mut body).expect("answer body");
    head + &String::from_utf8_lossy(&body)
}
