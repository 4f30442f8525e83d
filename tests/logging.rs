//! Dependencies' `log` records reach the server log through Hearth's
//! logger (`hearth::log::install`), in its format and rate-limited per
//! crate. The trigger is real: a TLS record that is not a ClientHello,
//! sent to Hearth's TLS listener, makes rustls warn.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{wait_until, Server};

/// How long a log line may take to show.
const LOG_WAIT: Duration = Duration::from_secs(20);

/// The line rustls writes for our record (`rustls::check`, at warn).
const RUSTLS_WARNING: &str = "Received a Alert message while expecting [Handshake]";

/// A TLS server on an ephemeral port with a self-signed certificate; its
/// port from the "tls: listening on https://ADDR" log line.
fn tls_server() -> (Server, u16, common::TempDir) {
    let dir = common::TempDir::new();
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    std::fs::write(dir.join("cert.pem"), cert.pem()).expect("cert.pem");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("key.pem");
    let (cert, key) = (dir.join("cert.pem").display().to_string(), dir.join("key.pem").display().to_string());
    let s = Server::start_with(&["--tls-listen", "127.0.0.1:0", "--tls-cert", &cert, "--tls-key", &key], &[]);
    let log = s.log_text();
    let line = log.lines().find(|l| l.contains("tls: listening on https://")).expect("tls listening line");
    let addr = line.split("https://").nth(1).and_then(|r| r.split(',').next()).expect("address");
    let port = addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).expect("port");
    (s, port, dir)
}

/// Sends a plaintext TLS alert record (warning, unrecognized_name) where a
/// ClientHello belongs, and waits for the server to close the connection.
fn send_alert_instead_of_hello(port: u16) {
    let mut sock = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    sock.set_read_timeout(Some(LOG_WAIT)).expect("timeout");
    sock.write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x70]).expect("send");
    // The server answers with an alert of its own, or nothing, and closes.
    let mut rest = Vec::new();
    let _ = sock.read_to_end(&mut rest);
}

#[test]
fn a_rustls_warning_reaches_the_server_log_rate_limited() {
    let (s, port, _dir) = tls_server();
    let start = Instant::now();
    send_alert_instead_of_hello(port);
    wait_until(&s, "the rustls warning", || s.log_text().contains(RUSTLS_WARNING));
    let log = s.log_text();
    let line = log.lines().find(|l| l.contains(RUSTLS_WARNING)).expect("the line");
    // Hearth's format: timestamp, level, the record's target, the message.
    let mut words = line.split_whitespace();
    let stamp = words.next().expect("timestamp");
    assert!(stamp.len() == 24 && stamp.ends_with('Z'), "{line}");
    assert_eq!(words.next(), Some("WARN"), "{line}");
    assert!(words.next().is_some_and(|t| t.starts_with("rustls") && t.ends_with(':')), "{line}");

    // A flood: every record makes the warning, the log keeps a few per
    // minute and says the rest were suppressed.
    let max = hearth::log::DEP_LINES_PER_WINDOW as usize;
    for _ in 0..max * 3 {
        send_alert_instead_of_hello(port);
    }
    wait_until(&s, "the suppression notice", || s.log_text().contains("suppressing the rest"));
    // Every record has been handled once each connection was closed; any
    // late line would only be suppressed.
    // A slow run may span two windows of the rate limit.
    let log = s.log_text();
    let windows = 1 + start.elapsed().as_millis() as usize / hearth::log::DEP_WINDOW_MS as usize;
    let warnings = log.lines().filter(|l| l.contains(RUSTLS_WARNING)).count();
    assert!(warnings <= max * windows, "{warnings} rustls warnings, at most {max} a window:\n{log}");
    let notices = log.lines().filter(|l| l.contains("suppressing the rest")).count();
    assert!((1..=windows).contains(&notices), "{log}");
}
