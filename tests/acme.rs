//! ACME against a real ACME server: Let's Encrypt's test server `pebble`
//! (Debian package `pebble`, installed by .ci/run) on loopback. Hearth
//! obtains a certificate with HTTP-01, serves it, renews it when forced
//! (the stored certificate made due, then SIGHUP), and renews again with
//! TLS-ALPN-01 on its TLS port after a restart that served the stored one.
//!
//! Without pebble the test fails: it must not pass by doing nothing.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Server, TempDir};
use rustls::pki_types::{CertificateDer, ServerName};

/// Issuing one certificate (pebble validates at once) takes far less.
const ISSUE_WAIT: Duration = Duration::from_secs(90);

/// A free loopback port (bound, released, then used by someone else: a
/// small race that a test on loopback can afford).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A running pebble, killed on drop.
struct Pebble {
    child: Child,
    directory: String,
    management: u16,
    log: Arc<Mutex<String>>,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a CA and a `localhost` certificate it signed (pebble's HTTPS
/// identity); returns the CA's PEM path.
fn pebble_identity(dir: &Path) -> std::path::PathBuf {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "hearth test CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let key = rcgen::KeyPair::generate().expect("key");
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("params");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("leaf");
    std::fs::write(dir.join("pebble-cert.pem"), cert.pem()).expect("write");
    std::fs::write(dir.join("pebble-key.pem"), key.serialize_pem()).expect("write");
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write");
    dir.join("ca.pem")
}

fn start_pebble(dir: &Path, http_port: u16, tls_port: u16) -> Pebble {
    let (listen, management) = (free_port(), free_port());
    let config = serde_json::json!({"pebble": {
        "listenAddress": format!("127.0.0.1:{listen}"),
        "managementListenAddress": format!("127.0.0.1:{management}"),
        "certificate": dir.join("pebble-cert.pem"),
        "privateKey": dir.join("pebble-key.pem"),
        "httpPort": http_port,
        "tlsPort": tls_port,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": false,
    }});
    std::fs::write(dir.join("pebble.json"), config.to_string()).expect("write");
    let spawned = Command::new("pebble")
        .arg("-config")
        .arg(dir.join("pebble.json"))
        // Validate at once, and never reuse an authorization: each order
        // really runs its challenge.
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_AUTHZREUSE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => panic!("cannot run pebble ({e}): install it with `apt-get install pebble` (.ci/run does)"),
    };
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ] {
        let (log, tx) = (log.clone(), tx.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let ready = line.contains("Listening on");
                log.lock().unwrap_or_else(|p| p.into_inner()).push_str(&format!("{line}\n"));
                if ready {
                    let _ = tx.send(());
                }
            }
        });
    }
    let pebble = Pebble { child, directory: format!("https://127.0.0.1:{listen}/dir"), management, log };
    if rx.recv_timeout(Duration::from_secs(30)).is_err() {
        panic!("pebble did not start:\n{}", pebble.log.lock().unwrap_or_else(|p| p.into_inner()));
    }
    pebble
}

fn tls_config(roots_pem: &[u8]) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(roots_pem) {
        roots.add(cert.expect("pem")).expect("root");
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Pebble's issuing root, generated at its start.
fn pebble_root(pebble: &Pebble, ca: &Path) -> Vec<u8> {
    let agent = ureq::AgentBuilder::new().tls_config(tls_config(&std::fs::read(ca).expect("ca"))).build();
    let url = format!("https://127.0.0.1:{}/roots/0", pebble.management);
    let mut body = Vec::new();
    agent.get(&url).call().expect("pebble root").into_reader().read_to_end(&mut body).expect("read");
    body
}

/// GET /versions over HTTPS as `localhost`; returns the served leaf
/// certificate and the answer.
fn versions(config: &Arc<rustls::ClientConfig>, port: u16) -> (Vec<u8>, String) {
    let mut sock = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let conn =
        rustls::ClientConnection::new(config.clone(), ServerName::try_from("localhost").expect("name"))
            .expect("client");
    let mut tls = rustls::StreamOwned::new(conn, &mut sock);
    tls.write_all(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("request over TLS");
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer);
    let leaf = tls.conn.peer_certificates().and_then(|c| c.first()).expect("a certificate").to_vec();
    (leaf, String::from_utf8_lossy(&answer).into_owned())
}

/// Waits until the server's log holds `count` lines containing `needle`.
fn wait_log(s: &Server, pebble: &Pebble, needle: &str, count: usize) {
    let deadline = Instant::now() + ISSUE_WAIT;
    while s.log_text().matches(needle).count() < count {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} x{count} within {ISSUE_WAIT:?}\nhearth:\n{}\npebble:\n{}",
            s.log_text(),
            pebble.log.lock().unwrap_or_else(|p| p.into_inner())
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Makes the stored certificate due for renewal, then tells the server.
fn force_renewal(s: &Server, db: &Path) {
    let db = rusqlite::Connection::open(db).expect("open db");
    db.busy_timeout(Duration::from_secs(10)).expect("busy timeout");
    let n = db.execute("UPDATE acme_certs SET not_before_ms = 0, not_after_ms = 3", []).expect("update");
    assert_eq!(n, 1, "one stored certificate");
    drop(db);
    s.signal(libc::SIGHUP);
}

#[test]
fn issue_serve_and_renew_against_pebble() {
    let dir = TempDir::new();
    let ca = pebble_identity(dir.path());
    let (http_port, tls_port) = (free_port(), free_port());
    let pebble = start_pebble(dir.path(), http_port, tls_port);
    let tls_listen = format!("127.0.0.1:{tls_port}");
    let http01 = format!("127.0.0.1:{http_port}");
    let ca_file = ca.display().to_string();
    let acme = [
        "--tls-listen",
        &tls_listen,
        "--acme-enabled",
        "true",
        "--acme-domains",
        "localhost",
        "--acme-email",
        "admin@example.org",
        "--acme-directory",
        &pebble.directory,
        "--acme-ca-file",
        &ca_file,
    ];
    let installed = "acme: new certificate for localhost installed";

    // Issue with HTTP-01 and serve.
    let mut args = acme.to_vec();
    args.extend(["--acme-http01-listen", &http01]);
    let mut s = Server::start_with(&args, &[]);
    wait_log(&s, &pebble, installed, 1);
    let client = tls_config(&pebble_root(&pebble, &ca));
    let (first, answer) = versions(&client, tls_port);
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("\"versions\""), "{answer}");

    // Forced renewal: a new certificate replaces the old one live.
    force_renewal(&s, &s.db());
    wait_log(&s, &pebble, installed, 2);
    let (second, _) = versions(&client, tls_port);
    assert_ne!(first, second, "the renewed certificate is served");
    assert!(s.terminate().success());

    // Restart without HTTP-01: the stored certificate serves at once, and
    // the next renewal proves control with TLS-ALPN-01 on the TLS port.
    let db = s.db().display().to_string();
    let mut args = acme.to_vec();
    args.extend(["--database", &db]);
    let mut s2 = Server::start_with(&args, &[]);
    assert!(s2.log_text().contains("acme: serving the stored certificate"), "{}", s2.log_text());
    let (served, _) = versions(&client, tls_port);
    assert_eq!(served, second, "the stored certificate serves after a restart");
    assert!(!s2.log_text().contains("ordering"), "no order while the stored one is fresh");
    force_renewal(&s2, &s.db());
    wait_log(&s2, &pebble, installed, 1);
    assert!(s2.log_text().contains("TLS-ALPN-01"), "{}", s2.log_text());
    let (third, answer) = versions(&client, tls_port);
    assert_ne!(third, second);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(s2.terminate().success());
}
