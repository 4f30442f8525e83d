//! Certificates by ACME (RFC 8555): Let's Encrypt by default, any ACME
//! directory by configuration.
//!
//! One thread (`acme`) owns the work: at start it serves the stored
//! certificate at once, then checks whether it is due (missing, for other
//! names, or past 2/3 of its lifetime) and, if so, orders a new one
//! (`client.rs`), proving control with HTTP-01 (`http01.rs`, on
//! `acme_http01_listen`) or TLS-ALPN-01 (a challenge certificate served by
//! `tls` on the TLS port). The account key and the certificate are kept in
//! the database (`storage::acme`). A failure is logged and retried with
//! doubling backoff while the old certificate keeps serving; SIGHUP makes
//! the thread look again at once.
//!
//! No network I/O happens inside a database transaction: the order runs
//! first, its result is stored in one short write.

mod client;
mod http01;
mod x509;

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::app::App;
use crate::storage::{self, acme as store};
use crate::tls::{self, Tls};
use crate::{config::Config, log};

pub use client::Method;

/// The first retry after a failure waits this long, doubling after each
/// further failure ...
const BACKOFF_FIRST: Duration = Duration::from_secs(60);
/// ... up to this.
const BACKOFF_MAX: Duration = Duration::from_secs(24 * 3600);
/// The thread looks again at least this often (and on SIGHUP).
const CHECK_INTERVAL_MAX: Duration = Duration::from_secs(3600);
/// HTTP-01 tokens and TLS-ALPN-01 certificates pending at once.
const CHALLENGES_MAX: usize = 64;

/// Challenge answers in force while an order is being validated.
#[derive(Default)]
pub struct Challenges {
    http: Mutex<HashMap<String, String>>,
    tls: Option<Arc<Tls>>,
}

impl Challenges {
    /// The key authorization of an HTTP-01 token, if one is pending.
    pub fn http_token(&self, token: &str) -> Option<String> {
        self.http.lock().unwrap_or_else(|p| p.into_inner()).get(token).cloned()
    }

    /// Publishes the answer to one challenge until the returned guard drops.
    fn answer(&self, method: Method, name: &str, token: &str, key_auth: &str) -> Result<Answer<'_>, String> {
        match method {
            Method::Http01 => {
                let mut http = self.http.lock().unwrap_or_else(|p| p.into_inner());
                if http.len() >= CHALLENGES_MAX {
                    return Err("too many pending HTTP-01 challenges".to_owned());
                }
                http.insert(token.to_owned(), key_auth.to_owned());
            }
            Method::TlsAlpn01 => {
                let tls = self.tls.as_ref().ok_or("TLS-ALPN-01 needs tls_listen")?;
                let (cert, key) = alpn_certificate(name, key_auth)?;
                tls.set_challenge(name, cert, key)?;
            }
        }
        Ok(Answer { challenges: self, method, name: name.to_owned(), token: token.to_owned() })
    }
}

/// A published challenge answer, withdrawn on drop.
struct Answer<'a> {
    challenges: &'a Challenges,
    method: Method,
    name: String,
    token: String,
}

impl Drop for Answer<'_> {
    fn drop(&mut self) {
        match self.method {
            Method::Http01 => {
                self.challenges.http.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.token);
            }
            Method::TlsAlpn01 => {
                if let Some(tls) = &self.challenges.tls {
                    tls.clear_challenge(&self.name);
                }
            }
        }
    }
}

/// The self-signed certificate of a TLS-ALPN-01 answer (RFC 8737): the
/// name, and the SHA-256 of the key authorization in a critical
/// acmeIdentifier extension. Returns DER certificate and PKCS#8 key.
fn alpn_certificate(name: &str, key_auth: &str) -> Result<(Vec<u8>, Vec<u8>), String> {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(key_auth.as_bytes());
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(|e| e.to_string())?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(&digest)];
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    Ok((cert.der().to_vec(), key.serialize_der()))
}

/// Starts ACME: binds the HTTP-01 listener if configured, serves the stored
/// certificate if there is one, and starts the renewal thread. Errors are
/// configuration problems (a port that cannot be bound, an unreadable CA
/// file) and stop the server from starting.
pub fn start(app: Arc<App>, tls: Arc<Tls>) -> Result<(), String> {
    let config = &app.config;
    let challenges = Arc::new(Challenges { http: Mutex::new(HashMap::new()), tls: Some(tls.clone()) });
    let method = match config.acme_http01_listen {
        Some(addr) => {
            let listener =
                TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr} for HTTP-01: {e}"))?;
            http01::start(listener, challenges.clone());
            log::info(format_args!("acme: answering HTTP-01 challenges on http://{addr}"));
            Method::Http01
        }
        None => Method::TlsAlpn01,
    };
    let roots = match &config.acme_ca_file {
        Some(path) => Some(std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?),
        None => None,
    };
    if let Some(cert) = stored(&app)? {
        match tls.install_pem(cert.chain_pem.as_bytes(), cert.key_pem.as_bytes()) {
            Ok(()) => log::info(format_args!(
                "acme: serving the stored certificate for {} (valid until {})",
                names_key(config),
                log::timestamp(cert.not_after_ms)
            )),
            Err(e) => log::warn(format_args!("acme: the stored certificate is unusable: {e}")),
        }
    }
    std::thread::Builder::new()
        .name("acme".into())
        .spawn(move || run(&app, &tls, &challenges, method, roots.as_deref()))
        .map_err(|e| format!("cannot start the ACME thread: {e}"))?;
    Ok(())
}

/// The renewal loop; see the module comment.
fn run(app: &App, tls: &Tls, challenges: &Challenges, method: Method, roots: Option<&[u8]>) {
    let mut failures: u32 = 0;
    let mut retry_at_ms: i64 = 0;
    let mut generation = tls::reload_generation();
    while !app.shutdown.load(Ordering::Relaxed) {
        let now = storage::now_ms();
        let current = stored(app).unwrap_or_else(|e| {
            log::warn(format_args!("acme: {e}"));
            None
        });
        let renew_at = current.as_ref().map_or(now, renew_at_ms);
        let mut wait_ms = renew_at.saturating_sub(now);
        if renew_at <= now && now >= retry_at_ms {
            match obtain(app, challenges, method, roots) {
                Ok(cert) => {
                    failures = 0;
                    match tls.install_pem(cert.chain_pem.as_bytes(), cert.key_pem.as_bytes()) {
                        Ok(()) => log::info(format_args!(
                            "acme: new certificate for {} installed (valid until {}, renewal from {})",
                            names_key(&app.config),
                            log::timestamp(cert.not_after_ms),
                            log::timestamp(renew_at_ms(&cert))
                        )),
                        Err(e) => log::error(format_args!("acme: the new certificate is unusable: {e}")),
                    }
                    continue;
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let backoff = backoff(failures);
                    retry_at_ms = now + backoff.as_millis() as i64;
                    log::warn(format_args!(
                        "acme: obtaining a certificate failed (attempt {failures}), retrying in {}s{}: {e}",
                        backoff.as_secs(),
                        if tls.has_cert() { "; the current certificate keeps serving" } else { "" }
                    ));
                }
            }
        }
        if renew_at <= now {
            wait_ms = retry_at_ms.saturating_sub(now);
        }
        let wait = Duration::from_millis(wait_ms.max(0) as u64).min(CHECK_INTERVAL_MAX);
        if tls::wait_reload(&mut generation, wait) {
            // SIGHUP: look again now, skipping any backoff.
            retry_at_ms = 0;
        }
    }
}

/// Runs one order and stores its result.
fn obtain(
    app: &App,
    challenges: &Challenges,
    method: Method,
    roots: Option<&[u8]>,
) -> Result<store::StoredCert, String> {
    let config = &app.config;
    let directory = config.acme_directory.as_str();
    let names = config.acme_names();
    log::info(format_args!(
        "acme: ordering a certificate for {} from {directory} ({})",
        names.join(", "),
        match method {
            Method::Http01 => "HTTP-01",
            Method::TlsAlpn01 => "TLS-ALPN-01",
        }
    ));
    let (pkcs8, kid) = account(app)?;
    let key = client::AccountKey::from_pkcs8(&pkcs8)?;
    let mut client = client::Client::new(directory, key, roots)?;
    let registered = client.account(kid.as_deref(), config.acme_email.as_deref())?;
    if kid.as_deref() != Some(registered.as_str()) {
        app.db
            .write(|tx| store::set_account_url(tx, directory, &registered))
            .map_err(|e| format!("storing the account: {}", e.message))?;
    }
    let (chain_pem, key_pem) = client.issue(&names, method, challenges)?;
    let leaf = {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .next()
            .and_then(Result::ok)
            .ok_or("the issued chain holds no certificate")?
    };
    let (not_before_ms, not_after_ms) =
        x509::validity_ms(&leaf).ok_or("cannot read the certificate's validity")?;
    let cert = store::StoredCert { chain_pem, key_pem, not_before_ms, not_after_ms };
    app.db
        .write(|tx| store::put_cert(tx, directory, &names_key(config), &cert, storage::now_ms()))
        .map_err(|e| format!("storing the certificate: {}", e.message))?;
    Ok(cert)
}

/// The account key of the directory (made and stored on first use) and
/// its URL once registered.
fn account(app: &App) -> Result<(Vec<u8>, Option<String>), String> {
    let directory = app.config.acme_directory.as_str();
    let fresh = client::AccountKey::generate()?;
    app.db
        .write(|tx| {
            store::insert_account(tx, directory, &fresh, storage::now_ms())?;
            store::account(tx, directory)
        })
        .map_err(|e| format!("the account key: {}", e.message))?
        .ok_or_else(|| "the account key vanished".to_owned())
}

fn stored(app: &App) -> Result<Option<store::StoredCert>, String> {
    let directory = app.config.acme_directory.as_str();
    let names = names_key(&app.config);
    app.db
        .read(|tx| store::cert(tx, directory, &names))
        .map_err(|e| format!("reading the certificate: {}", e.message))
}

/// The names of the certificate as stored: sorted, lower case, joined.
fn names_key(config: &Config) -> String {
    let mut names: Vec<String> = config.acme_names().iter().map(|n| n.to_ascii_lowercase()).collect();
    names.sort();
    names.dedup();
    names.join(",")
}

/// When a certificate is due: 2/3 into its lifetime.
fn renew_at_ms(cert: &store::StoredCert) -> i64 {
    let lifetime = cert.not_after_ms.saturating_sub(cert.not_before_ms).max(0);
    cert.not_before_ms + lifetime / 3 * 2
}

fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    BACKOFF_FIRST.saturating_mul(1 << doublings).min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_at_two_thirds_and_backoff() {
        let cert = store::StoredCert {
            chain_pem: String::new(),
            key_pem: String::new(),
            not_before_ms: 0,
            not_after_ms: 90,
        };
        assert_eq!(renew_at_ms(&cert), 60);
        assert_eq!(backoff(1), BACKOFF_FIRST);
        assert_eq!(backoff(2), BACKOFF_FIRST * 2);
        assert_eq!(backoff(100), BACKOFF_MAX);
    }

    #[test]
    fn alpn_certificate_carries_the_digest() {
        let (der, key) = alpn_certificate("a.example", "tok.thumb").expect("cert");
        assert!(!key.is_empty());
        use sha2::Digest;
        let digest = sha2::Sha256::digest(b"tok.thumb");
        // The extension value is an OCTET STRING of the 32-byte digest.
        let wanted = [&[0x04, 0x20][..], &digest[..]].concat();
        assert!(der.windows(wanted.len()).any(|w| w == wanted.as_slice()));
    }
}
