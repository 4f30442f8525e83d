//! Server configuration: turns the TOML file, the `HEARTH_*` environment and
//! command-line overrides into one plain, validated `Config`.
//!
//! This module owns the list of configuration keys (`KEYS`), their defaults,
//! their limits, the precedence rule (flag > environment > file > default) and
//! the commented example file (`example()`, kept equal to
//! `contrib/hearth.toml` by a test).
//!
//! `mod.rs` holds `Config` and its types; `keys.rs` the key table and what
//! is derived from it (help summaries, environment names, the example);
//! `load.rs` loading and precedence (file, sections, environment, flags,
//! suggestions for unknown keys, each value parsed and bounded);
//! `validate.rs` the grammar of server names, hosts, ports and URLs.
//!
//! **Architecture Invariant:** this module depends on no other module of the
//! crate. It reads the one file it is given and nothing else: it does not
//! parse `argv` (that is `cli`), read the process environment directly (the
//! caller passes a lookup function), open the database or bind sockets.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

/// Prefix of the environment variable of every key: `HEARTH_` + key in
/// upper case.
pub const ENV_PREFIX: &str = "HEARTH_";
/// The flag key (`--config`) that names the configuration file.
pub const CONFIG_FLAG: &str = "config";
/// The environment variable that names the configuration file when no
/// `--config` flag is given.
pub const CONFIG_ENV: &str = "HEARTH_CONFIG";
/// A configuration file larger than this is refused rather than read.
pub const CONFIG_FILE_BYTES_MAX: u64 = 1024 * 1024;

/// Default `listen`.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:8008";
/// Default `server_name`.
pub const SERVER_NAME_DEFAULT: &str = "localhost";
/// Longest accepted `server_name` (and `well_known_server`), in bytes.
pub const SERVER_NAME_LEN_MAX: usize = 255;
/// Longest accepted label of a DNS name, in bytes.
pub const DNS_LABEL_LEN_MAX: usize = 63;
/// Port that federation uses when a server name carries none.
pub const FEDERATION_PORT_DEFAULT: u16 = 8448;
/// Default `database`.
pub const DATABASE_DEFAULT: &str = "./hearth.db";
/// Longest accepted `public_baseurl`, in bytes.
pub const PUBLIC_BASEURL_LEN_MAX: usize = 2048;
/// Default `workers` is this many per available CPU ...
pub const WORKERS_PER_CPU: usize = 2;
/// ... but never fewer than this.
pub const WORKERS_DEFAULT_MIN: usize = 4;
/// Smallest accepted `workers`.
pub const WORKERS_MIN: usize = 1;
/// Largest accepted `workers`.
pub const WORKERS_MAX: usize = 256;
/// Default `rate_limit_per_second`.
pub const RATE_LIMIT_PER_SECOND_DEFAULT: f64 = 0.5;
/// Default `rate_limit_burst`.
pub const RATE_LIMIT_BURST_DEFAULT: u32 = 10;
/// Smallest accepted `rate_limit_burst`.
pub const RATE_LIMIT_BURST_MIN: u32 = 1;
/// Default `max_body_bytes`.
pub const MAX_BODY_BYTES_DEFAULT: usize = 1_048_576;
/// Smallest accepted `max_body_bytes`.
pub const MAX_BODY_BYTES_MIN: usize = 1024;
/// Largest accepted `max_body_bytes` (64 MiB).
pub const MAX_BODY_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Default `max_upload_bytes` (50 MiB).
pub const MAX_UPLOAD_BYTES_DEFAULT: u64 = 50 * 1024 * 1024;
/// Smallest and largest accepted `max_upload_bytes` (1 KiB to 4 GiB).
pub const MAX_UPLOAD_BYTES_MIN: u64 = 1024;
pub const MAX_UPLOAD_BYTES_MAX: u64 = 4 * 1024 * 1024 * 1024;
/// Default, smallest and largest `sync_timeout_max_ms`.
pub const SYNC_TIMEOUT_MAX_MS_DEFAULT: u64 = 60_000;
pub const SYNC_TIMEOUT_MAX_MS_MIN: u64 = 1_000;
pub const SYNC_TIMEOUT_MAX_MS_MAX: u64 = 600_000;
/// Default and largest `max_parked_requests`.
pub const MAX_PARKED_REQUESTS_DEFAULT: usize = 1_500;
/// Default and largest `max_connections`.
pub const MAX_CONNECTIONS_DEFAULT: usize = 16_384;
pub const MAX_CONNECTIONS_MAX: usize = 100_000;
pub const MAX_PARKED_REQUESTS_MAX: usize = 100_000;
/// Default `federation_retry_min_ms` and `federation_retry_max_ms`, and
/// the bounds both must stay within.
pub const FEDERATION_RETRY_MIN_MS_DEFAULT: u64 = 2_000;
pub const FEDERATION_RETRY_MAX_MS_DEFAULT: u64 = 3_600_000;
pub const FEDERATION_RETRY_MS_MIN: u64 = 100;
pub const FEDERATION_RETRY_MS_MAX: u64 = 7 * 86_400_000;
/// Default `remote_media_cache_bytes` (512 MiB).
pub const REMOTE_MEDIA_CACHE_BYTES_DEFAULT: u64 = 512 * 1024 * 1024;

/// Default `access_token_lifetime_ms` (24 hours).
pub const ACCESS_TOKEN_LIFETIME_MS_DEFAULT: u64 = 86_400_000;
/// Smallest accepted `access_token_lifetime_ms` (one minute).
pub const ACCESS_TOKEN_LIFETIME_MS_MIN: u64 = 60_000;
/// Largest accepted `access_token_lifetime_ms` (365 days); it keeps
/// `now + lifetime` far from overflow.
pub const ACCESS_TOKEN_LIFETIME_MS_MAX: u64 = 365 * 86_400_000;

/// Who may create an account through the client API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// Nobody; accounts are made with `hearth user add`.
    Closed,
    /// Anyone holding a registration token (`hearth token create`).
    Token,
    /// Anyone at all.
    Open,
}

impl Registration {
    /// Parses `closed`, `token` or `open`, ignoring ASCII case.
    pub fn parse(text: &str) -> Option<Registration> {
        match text.to_ascii_lowercase().as_str() {
            "closed" => Some(Registration::Closed),
            "token" => Some(Registration::Token),
            "open" => Some(Registration::Open),
            _ => None,
        }
    }

    /// The name as written in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Registration::Closed => "closed",
            Registration::Token => "token",
            Registration::Open => "open",
        }
    }
}

/// How much the server logs; each level includes the ones before it, so
/// `Error < Warn < Info < Debug < Trace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// Parses `error`, `warn` (or `warning`), `info`, `debug` or `trace`,
    /// ignoring ASCII case.
    pub fn parse(text: &str) -> Option<LogLevel> {
        match text.to_ascii_lowercase().as_str() {
            "error" => Some(LogLevel::Error),
            "warn" | "warning" => Some(LogLevel::Warn),
            "info" => Some(LogLevel::Info),
            "debug" => Some(LogLevel::Debug),
            "trace" => Some(LogLevel::Trace),
            _ => None,
        }
    }

    /// The name as written in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// The whole server configuration, validated. Each field is one key of
/// `KEYS`; see there and `example()` for what it means.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen: SocketAddr,
    pub server_name: String,
    pub database: PathBuf,
    pub registration: Registration,
    /// Without a trailing slash.
    pub public_baseurl: Option<String>,
    pub well_known_server: Option<String>,
    pub workers: usize,
    pub log_level: LogLevel,
    pub rate_limit_per_second: f64,
    pub rate_limit_burst: u32,
    pub max_body_bytes: usize,
    /// Media (issue 6): largest upload; per-user total (0: none); media
    /// uploaded before this time (ms) stays on the unauthenticated
    /// endpoints (0: none does).
    pub max_upload_bytes: u64,
    pub media_quota_bytes: u64,
    pub unauthenticated_media_before_ms: u64,
    pub access_token_lifetime_ms: u64,
    pub sync_timeout_max_ms: u64,
    pub max_parked_requests: usize,
    pub max_connections: usize,
    pub presence: bool,
    /// The user directory searches every local user, not only those
    /// sharing a room with the searcher or in a public room.
    pub user_directory_search_all_users: bool,
    /// Guest accounts (`register?kind=guest`) may be made, with the small
    /// part of the API the spec allows them.
    pub allow_guest_access: bool,
    pub turn_uris: Vec<String>,
    pub turn_shared_secret: Option<String>,
    pub turn_user_lifetime_ms: u64,
    /// HTTPS (issue 8): where the TLS relay listens, and the PEM files it
    /// serves unless ACME provides the certificate.
    pub tls_listen: Option<SocketAddr>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    pub acme_enabled: bool,
    /// Empty: the host of `server_name`.
    pub acme_domains: Vec<String>,
    pub acme_email: Option<String>,
    pub acme_directory: String,
    pub acme_http01_listen: Option<SocketAddr>,
    pub acme_ca_file: Option<PathBuf>,
    /// Outbound requests (push gateways, federation) may go to
    /// private, loopback and link-local addresses, and over plain HTTP.
    pub outbound_allow_private: bool,
    /// Extra PEM roots trusted by outbound requests, besides the web roots.
    pub outbound_ca_file: Option<PathBuf>,
    /// The federation API is served and other servers are talked to.
    pub federation: bool,
    /// When set, the only servers federated with (server names).
    pub federation_domain_allowlist: Option<Vec<String>>,
    /// Notaries asked for keys an origin does not give itself.
    pub trusted_key_servers: Vec<String>,
    /// Application service registration files, in order.
    pub appservice_config_files: Vec<String>,
    /// Backoff bounds for an unreachable server.
    pub federation_retry_min_ms: u64,
    pub federation_retry_max_ms: u64,
    /// Other servers' media kept in the database, at most (bytes).
    pub remote_media_cache_bytes: u64,
}

/// An address block, `10.0.0.0/8` or one address (`::1` = `::1/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    pub addr: std::net::IpAddr,
    pub prefix: u8,
}

impl IpNet {
    /// Parses `ADDR` or `ADDR/PREFIX`.
    pub fn parse(text: &str) -> Option<IpNet> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: std::net::IpAddr = addr.trim().parse().ok()?;
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= bits)?,
            None => bits,
        };
        Some(IpNet { addr, prefix })
    }

    /// Whether `ip` lies in this block; an IPv4-mapped IPv6 address counts
    /// as its IPv4 address.
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr::{V4, V6};
        let ip = match ip {
            V6(v6) => v6.to_ipv4_mapped().map(V4).unwrap_or(V6(v6)),
            v4 => v4,
        };
        let mask = |bits: u32, width: u32| if bits == 0 { 0 } else { u128::MAX << (width - bits) };
        match (self.addr, ip) {
            (V4(net), V4(ip)) => {
                let m = mask(u32::from(self.prefix), 32) as u32;
                u32::from(net) & m == u32::from(ip) & m
            }
            (V6(net), V6(ip)) => {
                let m = mask(u32::from(self.prefix), 128);
                u128::from(net) & m == u128::from(ip) & m
            }
            _ => false,
        }
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Let's Encrypt's production ACME directory, the default `acme_directory`.
pub const ACME_DIRECTORY_LETSENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (`acme_directory = "staging"`).
pub const ACME_DIRECTORY_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";
/// Tables of the config file whose keys are read as `TABLE_KEY`
/// (`[tls] listen = …` is `tls_listen`).
const SECTIONS: &[&str] = &["tls", "acme"];

impl Config {
    /// The names the ACME certificate is for: `acme_domains`, or else the
    /// host of `server_name`.
    pub fn acme_names(&self) -> Vec<String> {
        if !self.acme_domains.is_empty() {
            return self.acme_domains.clone();
        }
        let host = split_host_port(&self.server_name).map(|(h, _)| h).unwrap_or(&self.server_name);
        vec![host.to_owned()]
    }
}

impl Default for Config {
    /// The configuration used when nothing is set anywhere.
    fn default() -> Config {
        Config::defaults(available_cpus())
    }
}

impl Config {
    fn defaults(cpus: usize) -> Config {
        Config {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8008)),
            server_name: SERVER_NAME_DEFAULT.to_owned(),
            database: PathBuf::from(DATABASE_DEFAULT),
            registration: Registration::Token,
            public_baseurl: None,
            well_known_server: None,
            workers: default_workers(cpus),
            log_level: LogLevel::Info,
            rate_limit_per_second: RATE_LIMIT_PER_SECOND_DEFAULT,
            rate_limit_burst: RATE_LIMIT_BURST_DEFAULT,
            max_body_bytes: MAX_BODY_BYTES_DEFAULT,
            max_upload_bytes: MAX_UPLOAD_BYTES_DEFAULT,
            media_quota_bytes: 0,
            unauthenticated_media_before_ms: 0,
            access_token_lifetime_ms: ACCESS_TOKEN_LIFETIME_MS_DEFAULT,
            sync_timeout_max_ms: SYNC_TIMEOUT_MAX_MS_DEFAULT,
            max_parked_requests: MAX_PARKED_REQUESTS_DEFAULT,
            max_connections: MAX_CONNECTIONS_DEFAULT,
            presence: true,
            user_directory_search_all_users: false,
            allow_guest_access: false,
            turn_uris: Vec::new(),
            turn_shared_secret: None,
            turn_user_lifetime_ms: 86_400_000,
            tls_listen: None,
            tls_cert: None,
            tls_key: None,
            trusted_proxies: Vec::new(),
            acme_enabled: false,
            acme_domains: Vec::new(),
            acme_email: None,
            acme_directory: ACME_DIRECTORY_LETSENCRYPT.to_owned(),
            acme_http01_listen: None,
            acme_ca_file: None,
            outbound_allow_private: false,
            outbound_ca_file: None,
            federation: true,
            federation_domain_allowlist: None,
            trusted_key_servers: Vec::new(),
            appservice_config_files: Vec::new(),
            federation_retry_min_ms: FEDERATION_RETRY_MIN_MS_DEFAULT,
            federation_retry_max_ms: FEDERATION_RETRY_MAX_MS_DEFAULT,
            remote_media_cache_bytes: REMOTE_MEDIA_CACHE_BYTES_DEFAULT,
        }
    }

    /// The client-server base URL that `/.well-known/matrix/client`
    /// advertises: `public_baseurl` when set, else `http://` + `listen`.
    /// When `listen` is a wildcard address (`0.0.0.0`, `[::]`), which no
    /// client can connect to, the host of `server_name` is used with the
    /// listening port instead.
    pub fn base_url(&self) -> String {
        if let Some(url) = &self.public_baseurl {
            return url.clone();
        }
        if self.listen.ip().is_unspecified() {
            let (host, _port) =
                split_host_port(&self.server_name).unwrap_or((self.server_name.as_str(), None));
            return format!("http://{}:{}", host, self.listen.port());
        }
        format!("http://{}", self.listen)
    }

    /// The `m.server` delegation that `/.well-known/matrix/server`
    /// advertises: `well_known_server` when set, else `server_name` with
    /// port 8448 added unless it already names a port.
    pub fn server_delegation(&self) -> String {
        if let Some(server) = &self.well_known_server {
            return server.clone();
        }
        match split_host_port(&self.server_name) {
            Ok((_, Some(_))) => self.server_name.clone(),
            _ => format!("{}:{}", self.server_name, FEDERATION_PORT_DEFAULT),
        }
    }
}

/// Why the configuration was refused. `key` names the offending key when
/// there is one; the caller exits with status 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: Option<String>,
    pub message: String,
}

impl ConfigError {
    fn general(message: String) -> ConfigError {
        ConfigError { key: None, message }
    }

    fn for_key(key: &str, message: String) -> ConfigError {
        ConfigError { key: Some(key.to_owned()), message }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(f, "config key \"{}\": {}", key, self.message),
            None => write!(f, "config: {}", self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

mod keys;
mod load;
#[cfg(test)]
mod tests;
mod validate;

use keys::*;
pub use keys::{default_text, env_var, example, KEYS};
pub use load::{config_path, load};
use validate::*;
