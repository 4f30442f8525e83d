//! The HTTP-01 responder: a minimal HTTP/1.1 listener (usually port 80)
//! that answers `GET /.well-known/acme-challenge/TOKEN` with the key
//! authorization and redirects everything else to `https://`. It reads at
//! most one bounded request head per connection, with a timeout.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::Challenges;
use crate::log;

/// A request head larger than this is refused.
const HEAD_BYTES_MAX: usize = 8 * 1024;
/// A client has this long to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections handled at once; more are closed.
const CONNECTIONS_MAX: usize = 64;
const PREFIX: &str = "/.well-known/acme-challenge/";

/// Starts the responder thread on `listener`.
pub fn start(listener: TcpListener, challenges: Arc<Challenges>) {
    let open = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("acme-http01".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(sock) = stream else {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                };
                if open.fetch_add(1, Ordering::SeqCst) >= CONNECTIONS_MAX {
                    open.fetch_sub(1, Ordering::SeqCst);
                    continue;
                }
                let (open, challenges) = (open.clone(), challenges.clone());
                let spawned = std::thread::Builder::new()
                    .name("acme-http01-conn".into())
                    .stack_size(64 * 1024)
                    .spawn(move || {
                        answer(sock, &challenges);
                        open.fetch_sub(1, Ordering::SeqCst);
                    });
                if spawned.is_err() {
                    log::warn(format_args!("acme: cannot start an HTTP-01 connection thread"));
                }
            }
        })
        .expect("spawning the HTTP-01 responder");
}

fn answer(mut sock: TcpStream, challenges: &Challenges) {
    let _ = sock.set_read_timeout(Some(READ_TIMEOUT));
    let _ = sock.set_write_timeout(Some(READ_TIMEOUT));
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match sock.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > HEAD_BYTES_MAX {
            let _ = sock.write_all(&response("431 Request Header Fields Too Large", &[], ""));
            return;
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.split("\r\n");
    let request = lines.next().unwrap_or("");
    let mut parts = request.split(' ');
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let host = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.trim().to_owned());
    let reply = match path.strip_prefix(PREFIX) {
        Some(token) if method == "GET" || method == "HEAD" => match challenges.http_token(token) {
            Some(key_auth) => response("200 OK", &[("Content-Type", "application/octet-stream")], &key_auth),
            None => response("404 Not Found", &[], ""),
        },
        _ => match host.as_deref().and_then(https_host) {
            Some(host) if path.starts_with('/') && path.bytes().all(|b| b.is_ascii_graphic()) => {
                response("301 Moved Permanently", &[("Location", &format!("https://{host}{path}"))], "")
            }
            _ => response("404 Not Found", &[], ""),
        },
    };
    let _ = sock.write_all(&reply);
}

/// The host of a `Host` header without its port, if it is a plain name.
fn https_host(host: &str) -> Option<&str> {
    let name =
        if host.starts_with('[') { host.split_inclusive(']').next()? } else { host.split(':').next()? };
    let ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b".-[]:".contains(&b));
    ok.then_some(name)
}

fn response(status: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_for_redirects() {
        assert_eq!(https_host("example.org:80"), Some("example.org"));
        assert_eq!(https_host("[::1]:80"), Some("[::1]"));
        assert_eq!(https_host("evil\r\nx"), None);
        assert_eq!(https_host(""), None);
    }
}
