//! The federation test bed: Hearth servers on 127.0.0.1 named by IP
//! literal (`127.0.0.1:PORT`), serving HTTPS on that port with a
//! certificate from the test's throwaway CA, trusting that CA for their
//! outbound requests and allowed to reach loopback — only the config keys
//! the issue names (`outbound_allow_private`, `outbound_ca_file`) plus
//! short retry bounds. The harness signs requests as a server too
//! (`signed`), with any key, to test what a receiver accepts.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::ca::TestCa;
use super::Server;

/// A Hearth server on the bed.
pub struct Peer {
    pub server: Server,
    /// `127.0.0.1:PORT`, its server name and HTTPS address.
    pub name: String,
    pub tls_port: u16,
}

pub use super::free_port;

impl Peer {
    /// Starts a Hearth on the bed with extra `args` and `envs`.
    pub fn start(ca: &TestCa, args: &[&str], envs: &[(&str, &str)]) -> Peer {
        let tls_port = free_port();
        let name = format!("127.0.0.1:{tls_port}");
        let tls_listen = name.clone();
        let (cert, key) = ca.issue(ca.pem_path().parent().expect("the CA's directory"), "127.0.0.1");
        let (cert, key) = (cert.display().to_string(), key.display().to_string());
        let ca_file = ca.pem_path().display().to_string();
        let mut all: Vec<&str> = vec![
            "--server-name",
            &name,
            "--tls-listen",
            &tls_listen,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--outbound-allow-private",
            "true",
            "--outbound-ca-file",
            &ca_file,
            "--federation-retry-min-ms",
            "200",
            "--federation-retry-max-ms",
            "2000",
        ];
        all.extend_from_slice(args);
        let server = Server::start_with(&all, envs);
        Peer { server, name, tls_port }
    }

    /// The server's own signing key, read from its database.
    pub fn signing_key(&self) -> hearth::crypto::sign::ServerKey {
        signing_key_of(&self.server.db())
    }
}

/// The current signing key stored in a Hearth database.
pub fn signing_key_of(db: &Path) -> hearth::crypto::sign::ServerKey {
    let conn = rusqlite::Connection::open(db).expect("opening the database");
    let (id, seed): (String, Vec<u8>) = conn
        .query_row(
            "SELECT key_id, seed FROM server_keys WHERE expired_ts IS NULL ORDER BY created_ts DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("a signing key");
    hearth::crypto::sign::ServerKey::from_seed(&id, &seed.try_into().expect("32 bytes"))
}

/// An HTTPS agent trusting the CA only.
pub fn agent(ca: &TestCa) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .tls_config(ca.client_config())
        .timeout(Duration::from_secs(60))
        .redirects(0)
        .build()
}

/// A request over HTTPS to `server` (`127.0.0.1:PORT`) with the given
/// Authorization header values; (status, JSON body or null).
pub fn call(
    agent: &ureq::Agent,
    method: &str,
    server: &str,
    uri: &str,
    authorization: &[String],
    body: Option<&Value>,
) -> (u16, Value) {
    let mut rq = agent.request(method, &format!("https://{server}{uri}"));
    for a in authorization {
        rq = rq.set("Authorization", a);
    }
    let result = match body {
        Some(b) => rq.send_json(b.clone()),
        None => rq.call(),
    };
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {uri} on {server}: {e}"),
    };
    let status = response.status();
    let text = response.into_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A request to `destination` signed as `origin` with `key`.
pub fn signed(
    agent: &ureq::Agent,
    key: &hearth::crypto::sign::ServerKey,
    origin: &str,
    destination: &str,
    method: &str,
    uri: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let auth = hearth::federation::xmatrix::authorization(key, origin, destination, method, uri, body)
        .expect("signing");
    call(agent, method, destination, uri, &[auth], body)
}

/// Shared for tests that need one CA across servers.
pub fn new_ca(dir: &Path) -> Arc<TestCa> {
    Arc::new(TestCa::new(dir))
}
