//! HTTPS: Hearth's own TLS listener (rustls 0.23, `ring` provider).
//!
//! TLS connections live on the HTTP connection reactor beside plain ones
//! (`http::reactor`): it reads the ClientHello, asks [`Tls::config_for`]
//! which configuration answers it, and runs rustls without blocking. This
//! module holds the certificates: the one in force is one `ServerConfig`
//! behind a lock, swapped whole when the PEM files change, on SIGHUP, or
//! when ACME installs a new one; a connection keeps the configuration it
//! started with. TLS-ALPN-01 challenge certificates (ACME) are served to a
//! ClientHello that asks for `acme-tls/1`.
//!
//! `start_https` wires it up from the configuration: certificate files
//! (watched), or ACME (`acme::start`, which installs what it obtains).
//! This module does not know tiny_http, the database or the ACME protocol.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::log;
use crate::util::lock;

/// From accept to a finished TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The ALPN protocol of TLS-ALPN-01 (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";
/// How often the certificate files are checked for changes.
const FILE_POLL: Duration = Duration::from_secs(5);
/// Largest certificate or key file read.
const PEM_FILE_BYTES_MAX: u64 = 1024 * 1024;

/// The certificates served: the current one and ACME challenge ones.
pub struct Tls {
    provider: Arc<CryptoProvider>,
    current: RwLock<Option<Arc<ServerConfig>>>,
    challenges: Mutex<HashMap<String, Arc<ServerConfig>>>,
}

impl Tls {
    /// No certificate yet: connections are closed after their ClientHello
    /// until one is installed.
    pub fn new() -> Arc<Tls> {
        Arc::new(Tls {
            provider: provider(),
            current: RwLock::new(None),
            challenges: Mutex::new(HashMap::new()),
        })
    }

    /// Parses a PEM chain (leaf first) and its PEM key and serves them from
    /// now on. On error the previous certificate stays.
    pub fn install_pem(&self, chain_pem: &[u8], key_pem: &[u8]) -> Result<(), String> {
        let (chain, key) = parse_pem(chain_pem, key_pem)?;
        let config = self.server_config(chain, key)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(config);
        Ok(())
    }

    /// Whether a certificate is being served.
    pub fn has_cert(&self) -> bool {
        self.current.read().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// Serves `cert_der` (with its PKCS#8 key) to TLS-ALPN-01 validations
    /// of `name` until `clear_challenge`.
    pub fn set_challenge(&self, name: &str, cert_der: Vec<u8>, key_pkcs8: Vec<u8>) -> Result<(), String> {
        // Not `with_single_cert`: its check that the key fits the
        // certificate parses the certificate with webpki, which refuses the
        // critical acmeIdentifier extension such a certificate must carry.
        let key = PrivateKeyDer::Pkcs8(key_pkcs8.into());
        let signing_key =
            self.provider.key_provider.load_private_key(key).map_err(|e| format!("challenge key: {e}"))?;
        let certified = CertifiedKey::new(vec![CertificateDer::from(cert_der)], signing_key);
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(OneCert(Arc::new(certified))));
        config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
        lock(&self.challenges).insert(name.to_ascii_lowercase(), Arc::new(config));
        Ok(())
    }

    pub fn clear_challenge(&self, name: &str) {
        lock(&self.challenges).remove(&name.to_ascii_lowercase());
    }

    /// The configuration that answers this ClientHello, and whether it is
    /// a TLS-ALPN-01 validation (which needs the handshake only). `None`:
    /// nothing to serve (no certificate yet, or no challenge for the name).
    pub fn config_for(&self, hello: &ClientHello<'_>) -> Option<(Arc<ServerConfig>, bool)> {
        let acme = hello.alpn().is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        let config =
            if acme { hello.server_name().and_then(|name| self.challenge(name)) } else { self.current() };
        config.map(|c| (c, acme))
    }

    fn current(&self) -> Option<Arc<ServerConfig>> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn challenge(&self, name: &str) -> Option<Arc<ServerConfig>> {
        lock(&self.challenges).get(&name.to_ascii_lowercase()).cloned()
    }

    fn server_config(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Arc<ServerConfig>, String> {
        let config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| format!("certificate and key: {e}"))?;
        Ok(Arc::new(config))
    }
}

/// Serves one certificate to every ClientHello.
#[derive(Debug)]
struct OneCert(Arc<CertifiedKey>);

impl ResolvesServerCert for OneCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// The crypto provider of every TLS configuration: rustls on `ring`.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses a PEM certificate chain and private key (PKCS#8, PKCS#1 or SEC1).
pub fn parse_pem(
    chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate PEM: {e}"))?;
    if chain.is_empty() {
        return Err("no certificate in the certificate PEM".to_owned());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("private key PEM: {e}"))?;
    Ok((chain, key))
}

/// Loads the certificate files once; an error names the file.
pub fn load_files(tls: &Tls, cert: &Path, key: &Path) -> Result<(), String> {
    let chain = read_bounded(cert)?;
    let key_pem = read_bounded(key)?;
    tls.install_pem(&chain, &key_pem).map_err(|e| format!("{} / {}: {e}", cert.display(), key.display()))
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(PEM_FILE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > PEM_FILE_BYTES_MAX {
        return Err(format!("{} is larger than {PEM_FILE_BYTES_MAX} bytes", path.display()));
    }
    Ok(bytes)
}

/// Watches the certificate files: reloads them when their size or
/// modification time changes, and on SIGHUP (`request_reload`). A failed
/// reload is logged and the old certificate keeps serving.
pub fn watch_files(tls: Arc<Tls>, cert: PathBuf, key: PathBuf) {
    let stamp = move |paths: [&Path; 2]| -> Vec<Option<(SystemTime, u64)>> {
        paths
            .iter()
            .map(|p| std::fs::metadata(p).ok().and_then(|m| Some((m.modified().ok()?, m.len()))))
            .collect()
    };
    std::thread::Builder::new()
        .name("tls-files".into())
        .spawn(move || {
            let mut seen = stamp([&cert, &key]);
            let mut generation = reload_generation();
            loop {
                let signalled = wait_reload(&mut generation, FILE_POLL);
                let now = stamp([&cert, &key]);
                if !signalled && now == seen {
                    continue;
                }
                seen = now;
                match load_files(&tls, &cert, &key) {
                    Ok(()) => log::info(format_args!("tls: certificate reloaded from {}", cert.display())),
                    Err(e) => log::warn(format_args!("tls: reload failed, the old certificate stays: {e}")),
                }
            }
        })
        .expect("spawning the certificate watcher");
}

/// SIGHUP: count of reload requests, and a wake-up for the threads that
/// wait for one (the file watcher, ACME).
fn reload_signal() -> &'static (Mutex<u64>, Condvar) {
    static SIGNAL: OnceLock<(Mutex<u64>, Condvar)> = OnceLock::new();
    SIGNAL.get_or_init(|| (Mutex::new(0), Condvar::new()))
}

/// Asks the certificate watcher and ACME to look again now (SIGHUP).
pub fn request_reload() {
    let (count, wake) = reload_signal();
    *lock(count) += 1;
    wake.notify_all();
}

/// The number of reload requests so far, for `wait_reload`.
pub fn reload_generation() -> u64 {
    *lock(&reload_signal().0)
}

/// Waits up to `timeout` for a reload request newer than `*seen`; returns
/// whether one came (and records it in `*seen`).
pub fn wait_reload(seen: &mut u64, timeout: Duration) -> bool {
    let (count, wake) = reload_signal();
    let guard = lock(count);
    let (guard, _) =
        wake.wait_timeout_while(guard, timeout, |n| *n == *seen).unwrap_or_else(|p| p.into_inner());
    let signalled = *guard != *seen;
    *seen = *guard;
    signalled
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn installs_pem_and_refuses_garbage() {
        let tls = Tls::new();
        assert!(!tls.has_cert());
        let (cert, key) = self_signed("a.example");
        tls.install_pem(cert.as_bytes(), key.as_bytes()).expect("valid pair");
        assert!(tls.has_cert());
        assert!(tls.install_pem(b"not pem", key.as_bytes()).is_err());
        assert!(tls.install_pem(cert.as_bytes(), b"").is_err());
        // A key that is not the certificate's is refused.
        let (_, other_key) = self_signed("b.example");
        assert!(tls.install_pem(cert.as_bytes(), other_key.as_bytes()).is_err());
        assert!(tls.has_cert(), "the old certificate stays");
    }

    #[test]
    fn reload_requests_wake_waiters() {
        let mut seen = reload_generation();
        assert!(!wait_reload(&mut seen, Duration::from_millis(1)));
        request_reload();
        assert!(wait_reload(&mut seen, Duration::from_secs(5)));
        assert!(!wait_reload(&mut seen, Duration::from_millis(1)));
    }
}
