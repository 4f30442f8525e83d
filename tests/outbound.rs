//! The shared outbound machinery through the real server (issue 13): a
//! push gateway gets many pushes over one kept connection, and a gateway
//! whose name resolves to a private address is never connected to unless
//! `outbound_allow_private`, and an HTTPS gateway with a certificate from
//! a throwaway CA is trusted once `outbound_ca_file` names that CA.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{room_path, Server, User, V3};
use serde_json::{json, Value};

const PW: &str = "outbound-test-password";
/// How long the pushes may take to arrive.
const PUSH_WAIT: Duration = Duration::from_secs(20);

/// A push gateway on 127.0.0.1 that keeps connections open (HTTP/1.1
/// keep-alive) and counts the connections it accepted.
struct KeepAliveGateway {
    port: u16,
    https: bool,
    connections: Arc<AtomicUsize>,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl KeepAliveGateway {
    fn start() -> KeepAliveGateway {
        KeepAliveGateway::start_with(None)
    }

    /// Over TLS with this configuration when given.
    fn start_with(tls: Option<Arc<rustls::ServerConfig>>) -> KeepAliveGateway {
        let tls_present = tls.is_some();
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the gateway");
        let port = listener.local_addr().expect("gateway address").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let (c, b) = (connections.clone(), bodies.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                c.fetch_add(1, Ordering::SeqCst);
                let b = b.clone();
                let tls = tls.clone();
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                    let _ = stream.set_nodelay(true);
                    match tls {
                        None => serve(stream, &b),
                        Some(config) => match rustls::ServerConnection::new(config) {
                            Ok(conn) => serve(rustls::StreamOwned::new(conn, stream), &b),
                            Err(e) => Err(std::io::Error::other(e)),
                        },
                    }
                });
            }
        });
        KeepAliveGateway { port, connections, bodies, https: tls_present }
    }

    fn url(&self) -> String {
        match self.https {
            true => format!("https://localhost:{}/_matrix/push/v1/notify", self.port),
            false => format!("http://127.0.0.1:{}/_matrix/push/v1/notify", self.port),
        }
    }

    #[track_caller]
    fn wait_for(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + PUSH_WAIT;
        loop {
            let got = self.bodies.lock().unwrap().clone();
            if got.len() >= n {
                return got;
            }
            assert!(Instant::now() < deadline, "the gateway got {} pushes, expected {n}", got.len());
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Answers requests on one connection until the client closes it.
fn serve<S: Read + Write>(stream: S, bodies: &Mutex<Vec<Value>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        assert!(request_line.starts_with("POST /_matrix/push/v1/notify "), "{request_line}");
        bodies.lock().unwrap().push(serde_json::from_slice(&body).unwrap_or(Value::Null));
        let answer = r#"{"rejected":[]}"#;
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        let writer = reader.get_mut();
        writer.write_all(response.as_bytes())?;
        writer.flush()?;
    }
}

/// Alice's room with bob in it; bob's pusher at `url`.
fn room_with_pusher(s: &Server, url: &str) -> (User, String) {
    let (alice, bob) = (s.user("alice", PW), s.user("bob", PW));
    let (status, r) =
        s.post(&format!("{V3}/createRoom"), Some(&alice.token), json!({ "preset": "public_chat" }));
    assert_eq!(status, 200, "createRoom: {r}");
    let room = r["room_id"].as_str().expect("room_id").to_owned();
    let (status, r) = s.post(&room_path(&room, "join"), Some(&bob.token), json!({}));
    assert_eq!(status, 200, "join: {r}");
    let (status, r) = s.post(
        &format!("{V3}/pushers/set"),
        Some(&bob.token),
        json!({
            "kind": "http", "app_id": "org.example.app", "pushkey": "BOBKEY",
            "app_display_name": "Example", "device_display_name": "Phone", "lang": "en",
            "data": { "url": url, "format": "event_id_only" },
        }),
    );
    assert_eq!(status, 200, "pushers/set: {r}");
    (alice, room)
}

#[track_caller]
fn send(s: &Server, who: &User, room: &str, n: usize) -> String {
    let (status, r) = s.put(
        &room_path(room, &format!("send/m.room.message/t{n}")),
        Some(&who.token),
        json!({ "msgtype": "m.text", "body": format!("message {n}") }),
    );
    assert_eq!(status, 200, "send: {r}");
    r["event_id"].as_str().expect("event_id").to_owned()
}

/// N pushes to one gateway travel over one connection, in order, not one
/// connection each.
#[test]
fn pushes_to_a_gateway_reuse_one_connection() {
    const PUSHES: usize = 12;
    let s = Server::start_with(&[], &[("HEARTH_OUTBOUND_ALLOW_PRIVATE", "true")]);
    let gateway = KeepAliveGateway::start();
    let (alice, room) = room_with_pusher(&s, &gateway.url());
    let sent: Vec<String> = (0..PUSHES).map(|n| send(&s, &alice, &room, n)).collect();
    let got = gateway.wait_for(PUSHES);
    let pushed: Vec<&str> =
        got.iter().map(|b| b["notification"]["event_id"].as_str().expect("event_id")).collect();
    assert_eq!(pushed, sent, "each message pushed once, in order");
    assert_eq!(gateway.connections.load(Ordering::SeqCst), 1, "{PUSHES} pushes over one connection");
}

/// Without `outbound_allow_private`, a gateway named by a host that
/// resolves to loopback passes the URL check but is never connected to:
/// the resolver drops the address, the push fails and is retried later.
#[test]
fn a_private_address_is_refused_where_it_is_connected() {
    let s = Server::start();
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding");
    let port = listener.local_addr().expect("address").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    {
        let accepted = accepted.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stream.is_ok() {
                    accepted.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
    }
    let (alice, room) = room_with_pusher(&s, &format!("https://localhost:{port}/_matrix/push/v1/notify"));
    send(&s, &alice, &room, 0);
    common::wait_for_log(&s, "attempt 1 failed", 1);
    let log = s.log_text();
    let line = log.lines().find(|l| l.contains("attempt 1 failed")).expect("the line");
    assert!(line.contains("no public address"), "{line}");
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "nothing connected to the loopback gateway");
}

/// A throwaway CA and a `localhost` certificate it signed: the CA's PEM and
/// the gateway's TLS configuration.
fn throwaway_ca() -> (String, Arc<rustls::ServerConfig>) {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "hearth outbound test CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("leaf");
    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key_der)
            .expect("server config");
    (ca.pem(), Arc::new(config))
}

/// An HTTPS gateway whose certificate a throwaway CA signed: refused with
/// the web roots alone, trusted with `outbound_ca_file`, and its
/// connection (TLS session and all) kept for the next push.
#[test]
fn outbound_ca_file_adds_trusted_roots() {
    let (ca_pem, tls) = throwaway_ca();
    let dir = common::TempDir::new();
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca_pem).expect("writing the CA");

    // Without the CA the certificate is not trusted: the push fails.
    let s = Server::start_with(&[], &[("HEARTH_OUTBOUND_ALLOW_PRIVATE", "true")]);
    let gateway = KeepAliveGateway::start_with(Some(tls.clone()));
    let (alice, room) = room_with_pusher(&s, &gateway.url());
    send(&s, &alice, &room, 0);
    common::wait_for_log(&s, "attempt 1 failed", 1);
    let log = s.log_text();
    let line = log.lines().find(|l| l.contains("attempt 1 failed")).expect("the line");
    assert!(line.contains("certificate"), "{line}");
    assert!(gateway.bodies.lock().unwrap().is_empty());
    drop(s);

    let ca = ca_path.to_str().expect("path");
    let s = Server::start_with(
        &[],
        &[("HEARTH_OUTBOUND_ALLOW_PRIVATE", "true"), ("HEARTH_OUTBOUND_CA_FILE", ca)],
    );
    let gateway = KeepAliveGateway::start_with(Some(tls));
    let (alice, room) = room_with_pusher(&s, &gateway.url());
    let sent: Vec<String> = (0..3).map(|n| send(&s, &alice, &room, n)).collect();
    let got = gateway.wait_for(3);
    let pushed: Vec<&str> =
        got.iter().map(|b| b["notification"]["event_id"].as_str().expect("event_id")).collect();
    assert_eq!(pushed, sent);
    assert_eq!(gateway.connections.load(Ordering::SeqCst), 1, "one TLS connection for three pushes");
}
