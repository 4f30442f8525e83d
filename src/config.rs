//! Server configuration: turns the TOML file, the `HEARTH_*` environment and
//! command-line overrides into one plain, validated `Config`.
//!
//! This module owns the list of configuration keys (`KEYS`), their defaults,
//! their limits, the precedence rule (flag > environment > file > default) and
//! the commented example file (`example()`, kept equal to
//! `contrib/hearth.toml` by a test).
//!
//! **Architecture Invariant:** this module depends on no other module of the
//! crate. It reads the one file it is given and nothing else: it does not
//! parse `argv` (that is `cli`), read the process environment directly (the
//! caller passes a lookup function), open the database or bind sockets.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

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
    /// Outbound requests (push gateways; federation next) may go to
    /// private, loopback and link-local addresses, and over plain HTTP.
    pub outbound_allow_private: bool,
    /// Extra PEM roots trusted by outbound requests, besides the web roots.
    pub outbound_ca_file: Option<PathBuf>,
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

/// Everything known about one key. `KEYS` is derived from `SPECS`, so the
/// two cannot disagree.
struct Spec {
    key: &'static str,
    /// One line, shown in `--help` and above the key in the example.
    summary: &'static str,
    /// The default as a person reads it.
    default: &'static str,
    /// The TOML value written (commented out) in the example. For keys with
    /// a plain default it is that default; for optional keys it is an
    /// example value.
    example: &'static str,
    /// Further lines of explanation for the example file.
    notes: &'static [&'static str],
}

const SPEC_COUNT: usize = 36;

const SPECS: [Spec; SPEC_COUNT] = [
    Spec {
        key: "listen",
        summary: "IP address and port the HTTP listener binds to.",
        default: LISTEN_DEFAULT,
        example: "\"127.0.0.1:8008\"",
        notes: &[
            "Use \"[::]:8008\" or \"0.0.0.0:8008\" to listen on every interface.",
            "Hearth speaks plain HTTP: put a reverse proxy that terminates TLS",
            "in front of it for clients (443) and federation (8448).",
        ],
    },
    Spec {
        key: "server_name",
        summary: "The server name in user IDs (@alice:SERVER_NAME); never change it later.",
        default: SERVER_NAME_DEFAULT,
        example: "\"localhost\"",
        notes: &[
            "A hostname, an IPv4 address or a bracketed IPv6 address, with an",
            "optional :port, e.g. \"example.org\". It is part of every user and",
            "room ID, so changing it later orphans all existing data.",
        ],
    },
    Spec {
        key: "database",
        summary: "Path of the SQLite database file, created if missing.",
        default: DATABASE_DEFAULT,
        example: "\"./hearth.db\"",
        notes: &[
            "A relative path is relative to the working directory. Under the",
            "systemd unit in contrib/ use a path in the state directory, e.g.",
            "\"/var/lib/hearth/hearth.db\".",
        ],
    },
    Spec {
        key: "registration",
        summary: "Who may register: closed, token or open.",
        default: "token",
        example: "\"token\"",
        notes: &[
            "closed: only `hearth user add` creates accounts.",
            "token: registration needs a token from `hearth token create`.",
            "open: anyone who can reach the server may register.",
        ],
    },
    Spec {
        key: "public_baseurl",
        summary: "Client base URL advertised in /.well-known/matrix/client.",
        default: "unset, derived from listen",
        example: "\"https://matrix.example.org\"",
        notes: &[
            "Unset by default, which advertises http:// + listen (or the host of",
            "server_name with the listening port when listen is a wildcard",
            "address). Set it to the public https:// URL of your reverse proxy.",
            "Must start with http:// or https://.",
        ],
    },
    Spec {
        key: "well_known_server",
        summary: "Federation delegation (m.server) advertised in /.well-known/matrix/server.",
        default: "unset, server_name with port 8448",
        example: "\"matrix.example.org:443\"",
        notes: &[
            "Unset by default, which advertises server_name with port 8448",
            "added unless server_name already names a port. Set it when",
            "federation traffic reaches this server through another host or port.",
        ],
    },
    Spec {
        key: "workers",
        summary: "Number of HTTP worker threads (1 to 256).",
        default: "twice the number of CPUs, at least 4",
        example: "4",
        notes: &[
            "The default is twice the number of CPUs, at least 4 and at most",
            "256; the 4 shown is the default on a machine with one or two CPUs.",
            "Each worker holds one request at a time, long-polling /sync included.",
        ],
    },
    Spec {
        key: "log_level",
        summary: "Least severe messages logged: error, warn, info, debug or trace.",
        default: "info",
        example: "\"info\"",
        notes: &[],
    },
    Spec {
        key: "rate_limit_per_second",
        summary: "Sustained requests per second allowed per client for rate-limited actions.",
        default: "0.5",
        example: "0.5",
        notes: &["Must be greater than 0. Whole numbers are accepted too."],
    },
    Spec {
        key: "rate_limit_burst",
        summary: "Rate-limited actions a client may make in a burst before being slowed.",
        default: "10",
        example: "10",
        notes: &["Must be at least 1."],
    },
    Spec {
        key: "max_body_bytes",
        summary: "Largest request body accepted, in bytes (1024 to 67108864).",
        default: "1048576",
        example: "1048576",
        notes: &["Larger requests are refused with M_TOO_LARGE."],
    },
    Spec {
        key: "max_upload_bytes",
        summary: "Largest media upload accepted, in bytes (1024 to 4294967296).",
        default: "52428800 (50 MiB)",
        example: "52428800",
        notes: &[
            "Larger uploads are refused with M_TOO_LARGE; clients learn the limit",
            "from /media/config. Uploads stream into the database in chunks, so",
            "the limit bounds disk use, not memory.",
        ],
    },
    Spec {
        key: "media_quota_bytes",
        summary: "Total bytes of media each user may upload; 0 means no quota.",
        default: "0 (no quota)",
        example: "0",
        notes: &["An upload past the quota is refused with M_FORBIDDEN."],
    },
    Spec {
        key: "unauthenticated_media_before_ms",
        summary: "Media uploaded before this time stays on the deprecated unauthenticated endpoints.",
        default: "0 (all media needs authentication)",
        example: "0",
        notes: &[
            "Milliseconds since the Unix epoch: the spec's \"freeze\" of",
            "/_matrix/media/v3/download and /thumbnail. Media uploaded at or after",
            "it is served only by the authenticated /_matrix/client/v1/media",
            "endpoints. Set it to the time of your upgrade to keep older links",
            "working for clients that lack authenticated media.",
        ],
    },
    Spec {
        key: "access_token_lifetime_ms",
        summary: "Lifetime of access tokens issued with a refresh token, in milliseconds.",
        default: "86400000 (24 hours)",
        example: "86400000",
        notes: &[
            "At least 60000 (one minute), at most 31536000000 (365 days).",
            "Clients that do not ask for a refresh token get tokens that do",
            "not expire.",
        ],
    },
    Spec {
        key: "sync_timeout_max_ms",
        summary: "Longest a long-poll (/sync, /events) may wait, in milliseconds.",
        default: "60000",
        example: "60000",
        notes: &["Longer client timeouts are cut to this; 1000 to 600000."],
    },
    Spec {
        key: "max_parked_requests",
        summary: "Most long-polls parked at once; past it they are answered at once.",
        default: "1500",
        example: "1500",
        notes: &["Each parked request holds its connection; 1 to 100000."],
    },
    Spec {
        key: "max_connections",
        summary: "Most client connections open at once; more get a 503 and are closed.",
        default: "16384",
        example: "16384",
        notes: &[
            "An idle connection costs a descriptor and well under 1 KiB; capped",
            "by the open-files limit. Keep it above max_parked_requests. 16 to 100000.",
        ],
    },
    Spec {
        key: "presence",
        summary: "Track and share presence (online, unavailable, offline).",
        default: "true",
        example: "true",
        notes: &["false saves work on small hosts: everyone then appears offline."],
    },
    Spec {
        key: "user_directory_search_all_users",
        summary: "The user directory finds every local user, not only those sharing a room.",
        default: "false",
        example: "false",
        notes: &[
            "false: a search finds users who share a room with the searcher or",
            "are in a public room. true: every active local user as well, as on",
            "a server where everyone knows each other.",
        ],
    },
    Spec {
        key: "allow_guest_access",
        summary: "Guest accounts may be registered (register?kind=guest).",
        default: "false",
        example: "false",
        notes: &[
            "A guest has no password; it may read and join rooms whose",
            "m.room.guest_access is can_join, send messages there, and upgrade",
            "to a full account by registering with its guest_access_token.",
        ],
    },
    Spec {
        key: "turn_uris",
        summary: "TURN server URIs handed to clients for calls, comma-separated.",
        default: "unset (no TURN server)",
        example: "\"turn:turn.example.org:3478?transport=udp,turn:turn.example.org:3478?transport=tcp\"",
        notes: &["Used with turn_shared_secret; /voip/turnServer answers {} without them."],
    },
    Spec {
        key: "turn_shared_secret",
        summary: "Secret shared with the TURN server for time-limited credentials.",
        default: "unset",
        example: "\"a long random string\"",
        notes: &["The TURN server's static-auth-secret (coturn: use-auth-secret)."],
    },
    Spec {
        key: "turn_user_lifetime_ms",
        summary: "How long TURN credentials stay valid, in milliseconds.",
        default: "86400000 (24 hours)",
        example: "86400000",
        notes: &["60000 to 604800000 (7 days)."],
    },
    Spec {
        key: "tls_listen",
        summary: "IP address and port for HTTPS (clients and federation), e.g. [::]:8448.",
        default: "unset (no HTTPS)",
        example: "\"[::]:8448\"",
        notes: &[
            "Needs tls_cert and tls_key, or acme_enabled. The plain HTTP `listen`",
            "stays available for loopback and reverse proxies. In the file this",
            "may also be written as `listen` in a [tls] table (likewise the",
            "other tls_ and acme_ keys).",
        ],
    },
    Spec {
        key: "tls_cert",
        summary: "PEM file of the certificate chain served on tls_listen.",
        default: "unset",
        example: "\"/etc/hearth/fullchain.pem\"",
        notes: &["Re-read when it changes and on SIGHUP, without a restart."],
    },
    Spec {
        key: "tls_key",
        summary: "PEM file of the private key of tls_cert (PKCS#8, PKCS#1 or SEC1).",
        default: "unset",
        example: "\"/etc/hearth/privkey.pem\"",
        notes: &["Re-read together with tls_cert."],
    },
    Spec {
        key: "trusted_proxies",
        summary: "Reverse proxies whose X-Forwarded-For names the client, comma-separated.",
        default: "unset (X-Forwarded-For is ignored)",
        example: "\"127.0.0.1,::1\"",
        notes: &[
            "Addresses or blocks such as 10.0.0.0/8. Used for rate limits; a",
            "header from any other peer is ignored. Connections that Hearth's own",
            "HTTPS listener relays always count as their real client.",
        ],
    },
    Spec {
        key: "acme_enabled",
        summary: "Obtain and renew the HTTPS certificate by ACME (Let's Encrypt).",
        default: "false",
        example: "false",
        notes: &[
            "Needs tls_listen; replaces tls_cert and tls_key. The account key and",
            "certificate are kept in the database; renewal starts at 2/3 of the",
            "certificate's lifetime and failures are retried with backoff while",
            "the old certificate keeps serving.",
        ],
    },
    Spec {
        key: "acme_domains",
        summary: "Names the certificate is for, comma-separated.",
        default: "unset (the host of server_name)",
        example: "\"example.org,matrix.example.org\"",
        notes: &[],
    },
    Spec {
        key: "acme_email",
        summary: "Contact address given to the ACME server (expiry warnings).",
        default: "unset",
        example: "\"admin@example.org\"",
        notes: &[],
    },
    Spec {
        key: "acme_directory",
        summary: "ACME directory URL; \"letsencrypt\" or \"staging\" name Let's Encrypt's.",
        default: "letsencrypt (production)",
        example: "\"letsencrypt\"",
        notes: &["Try \"staging\" first: production has strict rate limits."],
    },
    Spec {
        key: "acme_http01_listen",
        summary: "Where to answer HTTP-01 challenges, e.g. [::]:80.",
        default: "unset (TLS-ALPN-01 on tls_listen)",
        example: "\"[::]:80\"",
        notes: &[
            "The ACME server checks port 80 (HTTP-01) or port 443 (TLS-ALPN-01) of",
            "each name: with neither bound directly, forward one of them here.",
            "Other requests to this port are redirected to https://.",
        ],
    },
    Spec {
        key: "acme_ca_file",
        summary: "Extra PEM root certificates trusted for the ACME directory.",
        default: "unset (the built-in web roots)",
        example: "\"/etc/hearth/acme-ca.pem\"",
        notes: &["For a private or test ACME server such as pebble."],
    },
    Spec {
        key: "outbound_allow_private",
        summary: "Outbound requests may reach private addresses and use plain http://.",
        default: "false",
        example: "false",
        notes: &[
            "Outbound requests (push gateways; federation and appservices",
            "later) go only to public addresses: loopback, private, link-local,",
            "CGNAT, unique-local, multicast and documentation addresses are",
            "refused, checked on the address connected to. true allows them,",
            "and http:// URLs, for a gateway on a LAN or for tests.",
        ],
    },
    Spec {
        key: "outbound_ca_file",
        summary: "Extra PEM root certificates trusted for outbound HTTPS.",
        default: "unset (the built-in web roots)",
        example: "\"/etc/hearth/outbound-ca.pem\"",
        notes: &["Added to the web roots, e.g. for a private CA or a test setup."],
    },
];

const fn key_summaries<const N: usize>(specs: &[Spec; N]) -> [(&'static str, &'static str); N] {
    let mut out = [("", ""); N];
    let mut i = 0;
    while i < N {
        out[i] = (specs[i].key, specs[i].summary);
        i += 1;
    }
    out
}

/// Every configuration key with a one-line description, in the order of the
/// example file.
pub const KEYS: &[(&str, &str)] = &key_summaries(&SPECS);

fn spec(key: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|spec| spec.key == key)
}

/// The environment variable of `key`, e.g. `HEARTH_SERVER_NAME`.
pub fn env_var(key: &str) -> String {
    format!("{}{}", ENV_PREFIX, key.to_ascii_uppercase())
}

/// The default of `key` as a person reads it, for help text; `None` for an
/// unknown key.
pub fn default_text(key: &str) -> Option<&'static str> {
    spec(key).map(|spec| spec.default)
}

/// The configuration file to read: the `config` flag, else `HEARTH_CONFIG`,
/// else none. An empty value counts as unset.
pub fn config_path(
    flags: &BTreeMap<String, String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<PathBuf> {
    if let Some(path) = flags.get(CONFIG_FLAG).filter(|path| !path.is_empty()) {
        return Some(PathBuf::from(path));
    }
    env(CONFIG_ENV).filter(|path| !path.is_empty()).map(PathBuf::from)
}

/// Builds the configuration. For each key the first of these that is set
/// wins: `flags` (keyed by config key; `config` itself is ignored here),
/// `env("HEARTH_<KEY>")` (an empty value counts as unset), the TOML `file`,
/// the default. A `file` that cannot be read is an error, as is any unknown
/// key in the file or in `flags`.
pub fn load(
    file: Option<&Path>,
    flags: &BTreeMap<String, String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let file = match file {
        Some(path) => Some((path.display().to_string(), read_file(path)?)),
        None => None,
    };
    let file = file.as_ref().map(|(name, text)| (name.as_str(), text.as_str()));
    load_text(file, flags, env, available_cpus())
}

/// A configuration file as text, named for error messages.
type FileText<'a> = Option<(&'a str, &'a str)>;

fn load_text(
    file: FileText<'_>,
    flags: &BTreeMap<String, String>,
    env: &dyn Fn(&str) -> Option<String>,
    cpus: usize,
) -> Result<Config, ConfigError> {
    for key in flags.keys() {
        if key != CONFIG_FLAG && spec(key).is_none() {
            return Err(ConfigError::for_key(key, format!("unknown option{}", suggestion(key))));
        }
    }
    let table = match file {
        Some((name, text)) => parse_file(name, text)?,
        None => toml::Table::new(),
    };
    let file_name = file.map(|(name, _)| name).unwrap_or_default();

    let mut config = Config::defaults(cpus);
    for spec in &SPECS {
        let env_name = env_var(spec.key);
        let (value, origin) = if let Some(text) = flags.get(spec.key) {
            (Raw::Text(text.clone()), format!("--{}", spec.key.replace('_', "-")))
        } else if let Some(text) = env(&env_name).filter(|text| !text.is_empty()) {
            (Raw::Text(text), env_name)
        } else if let Some(value) = table.get(spec.key) {
            (Raw::Toml(value), format!("config file {}", file_name))
        } else {
            continue;
        };
        apply(&mut config, spec.key, &value)
            .map_err(|message| ConfigError::for_key(spec.key, format!("{message} (from {origin})")))?;
    }
    check_tls(&config)?;
    Ok(config)
}

/// The TLS and ACME keys that only make sense together.
fn check_tls(config: &Config) -> Result<(), ConfigError> {
    let files = match (&config.tls_cert, &config.tls_key) {
        (Some(_), Some(_)) => true,
        (None, None) => false,
        (Some(_), None) => return Err(ConfigError::for_key("tls_key", "tls_cert needs tls_key".to_owned())),
        (None, Some(_)) => return Err(ConfigError::for_key("tls_cert", "tls_key needs tls_cert".to_owned())),
    };
    if config.acme_enabled && files {
        let why = "acme_enabled provides the certificate: unset tls_cert and tls_key, or acme_enabled";
        return Err(ConfigError::for_key("acme_enabled", why.to_owned()));
    }
    if config.acme_enabled && config.tls_listen.is_none() {
        return Err(ConfigError::for_key("acme_enabled", "needs tls_listen".to_owned()));
    }
    if config.tls_listen.is_some() && !files && !config.acme_enabled {
        let why = "needs tls_cert and tls_key, or acme_enabled = true";
        return Err(ConfigError::for_key("tls_listen", why.to_owned()));
    }
    Ok(())
}

fn read_file(path: &Path) -> Result<String, ConfigError> {
    let cannot =
        |why: String| ConfigError::general(format!("cannot read config file {}: {}", path.display(), why));
    let file = std::fs::File::open(path).map_err(|e| cannot(e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(CONFIG_FILE_BYTES_MAX + 1).read_to_end(&mut bytes).map_err(|e| cannot(e.to_string()))?;
    if bytes.len() as u64 > CONFIG_FILE_BYTES_MAX {
        return Err(cannot(format!("larger than {} bytes", CONFIG_FILE_BYTES_MAX)));
    }
    String::from_utf8(bytes).map_err(|_| cannot("not valid UTF-8".to_owned()))
}

fn parse_file(name: &str, text: &str) -> Result<toml::Table, ConfigError> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        ConfigError::general(format!("config file {} is not valid TOML: {}", name, e.to_string().trim_end()))
    })?;
    let table = flatten_sections(name, table)?;
    for key in table.keys() {
        if spec(key).is_none() {
            return Err(ConfigError::for_key(
                key,
                format!("unknown key in config file {}{}", name, suggestion(key)),
            ));
        }
    }
    Ok(table)
}

/// Rewrites `[tls] listen = …` as `tls_listen = …` (for each of
/// `SECTIONS`); a key given in both forms is an error.
fn flatten_sections(name: &str, table: toml::Table) -> Result<toml::Table, ConfigError> {
    let mut flat = toml::Table::new();
    for (key, value) in table {
        let entries: Vec<(String, toml::Value)> = match value {
            toml::Value::Table(sub) if SECTIONS.contains(&key.as_str()) => {
                sub.into_iter().map(|(k, v)| (format!("{key}_{k}"), v)).collect()
            }
            other => vec![(key, other)],
        };
        for (key, value) in entries {
            if flat.contains_key(&key) {
                return Err(ConfigError::for_key(&key, format!("set twice in config file {name}")));
            }
            flat.insert(key, value);
        }
    }
    Ok(flat)
}

/// Suggests the known key closest to a misspelt one, as text to append to an
/// error message, or nothing when no key is close.
fn suggestion(unknown: &str) -> String {
    /// Keys further than this many edits away are not suggested.
    const SUGGESTION_DISTANCE_MAX: usize = 3;
    let wanted = unknown.replace('-', "_").to_ascii_lowercase();
    SPECS
        .iter()
        .map(|spec| (edit_distance(&wanted, spec.key), spec.key))
        .filter(|(distance, _)| *distance <= SUGGESTION_DISTANCE_MAX)
        .min()
        .map(|(_, key)| format!("; did you mean \"{key}\"?"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            let delete = previous[j + 1] + 1;
            let insert = current[j] + 1;
            current.push(substitute.min(delete).min(insert));
        }
        previous = current;
    }
    previous[b.len()]
}

/// One value before it is interpreted: text from a flag or the environment,
/// or a typed value from the file.
enum Raw<'a> {
    Text(String),
    Toml(&'a toml::Value),
}

impl Raw<'_> {
    fn string(&self) -> Result<String, String> {
        match self {
            Raw::Text(text) => Ok(text.clone()),
            Raw::Toml(toml::Value::String(text)) => Ok(text.clone()),
            Raw::Toml(other) => Err(format!("expected a string, found {}", other.type_str())),
        }
    }

    fn unsigned(&self) -> Result<u64, String> {
        match self {
            Raw::Text(text) => {
                text.trim().parse::<u64>().map_err(|_| format!("expected a whole number, got \"{text}\""))
            }
            Raw::Toml(toml::Value::Integer(n)) => {
                u64::try_from(*n).map_err(|_| format!("must not be negative, got {n}"))
            }
            Raw::Toml(other) => Err(format!("expected an integer, found {}", other.type_str())),
        }
    }

    fn float(&self) -> Result<f64, String> {
        match self {
            Raw::Text(text) => {
                text.trim().parse::<f64>().map_err(|_| format!("expected a number, got \"{text}\""))
            }
            Raw::Toml(toml::Value::Float(x)) => Ok(*x),
            // The conversion is exact for every sensible rate.
            Raw::Toml(toml::Value::Integer(n)) => Ok(*n as f64),
            Raw::Toml(other) => Err(format!("expected a number, found {}", other.type_str())),
        }
    }
}

impl Raw<'_> {
    fn boolean(&self) -> Result<bool, String> {
        match self {
            Raw::Text(text) => match text.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                _ => Err(format!("expected true, false, 1, 0, yes or no, got \"{text}\"")),
            },
            Raw::Toml(toml::Value::Boolean(b)) => Ok(*b),
            Raw::Toml(other) => Err(format!("expected true or false, found {}", other.type_str())),
        }
    }
}

fn in_range<T: PartialOrd + fmt::Display>(value: T, min: T, max: T) -> Result<T, String> {
    if value < min || value > max {
        return Err(format!("must be between {min} and {max}, got {value}"));
    }
    Ok(value)
}

/// Interprets `value` for `key` and stores it in `config`; the error is a
/// message without the key, which the caller adds.
fn apply(config: &mut Config, key: &str, value: &Raw<'_>) -> Result<(), String> {
    match key {
        "listen" => {
            let text = value.string()?;
            config.listen = text.trim().parse().map_err(|_| {
                format!("expected IP:PORT such as 127.0.0.1:8008 or [::]:8008, got \"{text}\"")
            })?;
        }
        "server_name" => {
            let name = value.string()?;
            validate_server_name(&name)?;
            config.server_name = name;
        }
        "database" => {
            let path = value.string()?;
            if path.is_empty() {
                return Err("must not be empty".to_owned());
            }
            config.database = PathBuf::from(path);
        }
        "registration" => {
            let text = value.string()?;
            config.registration = Registration::parse(text.trim())
                .ok_or_else(|| format!("expected closed, token or open, got \"{text}\""))?;
        }
        "public_baseurl" => {
            let url = value.string()?;
            config.public_baseurl = if url.is_empty() { None } else { Some(validate_base_url(&url)?) };
        }
        "well_known_server" => {
            let server = value.string()?;
            config.well_known_server = if server.is_empty() {
                None
            } else {
                validate_server_name(&server)?;
                Some(server)
            };
        }
        "workers" => {
            let n = in_range(value.unsigned()?, WORKERS_MIN as u64, WORKERS_MAX as u64)?;
            config.workers = usize::try_from(n).map_err(|_| "too large".to_owned())?;
        }
        "log_level" => {
            let text = value.string()?;
            config.log_level = LogLevel::parse(text.trim())
                .ok_or_else(|| format!("expected error, warn, info, debug or trace, got \"{text}\""))?;
        }
        "rate_limit_per_second" => {
            let rate = value.float()?;
            if !rate.is_finite() || rate <= 0.0 {
                return Err(format!("must be a finite number greater than 0, got {rate}"));
            }
            config.rate_limit_per_second = rate;
        }
        "rate_limit_burst" => {
            let burst = in_range(value.unsigned()?, u64::from(RATE_LIMIT_BURST_MIN), u64::from(u32::MAX))?;
            config.rate_limit_burst = u32::try_from(burst).map_err(|_| "too large".to_owned())?;
        }
        "max_body_bytes" => {
            let n = in_range(value.unsigned()?, MAX_BODY_BYTES_MIN as u64, MAX_BODY_BYTES_MAX as u64)?;
            config.max_body_bytes = usize::try_from(n).map_err(|_| "too large".to_owned())?;
        }
        "max_upload_bytes" => {
            config.max_upload_bytes =
                in_range(value.unsigned()?, MAX_UPLOAD_BYTES_MIN, MAX_UPLOAD_BYTES_MAX)?;
        }
        "media_quota_bytes" => config.media_quota_bytes = value.unsigned()?,
        "unauthenticated_media_before_ms" => {
            config.unauthenticated_media_before_ms = in_range(value.unsigned()?, 0, i64::MAX as u64)?;
        }
        "access_token_lifetime_ms" => {
            config.access_token_lifetime_ms =
                in_range(value.unsigned()?, ACCESS_TOKEN_LIFETIME_MS_MIN, ACCESS_TOKEN_LIFETIME_MS_MAX)?;
        }
        "sync_timeout_max_ms" => {
            config.sync_timeout_max_ms =
                in_range(value.unsigned()?, SYNC_TIMEOUT_MAX_MS_MIN, SYNC_TIMEOUT_MAX_MS_MAX)?;
        }
        "presence" => config.presence = value.boolean()?,
        "user_directory_search_all_users" => config.user_directory_search_all_users = value.boolean()?,
        "allow_guest_access" => config.allow_guest_access = value.boolean()?,
        "outbound_allow_private" => config.outbound_allow_private = value.boolean()?,
        "turn_uris" => {
            let uris = value.string()?;
            config.turn_uris =
                uris.split(',').map(str::trim).filter(|u| !u.is_empty()).map(str::to_owned).collect();
            if let Some(bad) =
                config.turn_uris.iter().find(|u| !(u.starts_with("turn:") || u.starts_with("turns:")))
            {
                return Err(format!("{bad:?} is not a turn: or turns: URI"));
            }
        }
        "turn_shared_secret" => {
            let secret = value.string()?;
            config.turn_shared_secret = if secret.is_empty() { None } else { Some(secret) };
        }
        "turn_user_lifetime_ms" => {
            config.turn_user_lifetime_ms = in_range(value.unsigned()?, 60_000, 7 * 86_400_000)?;
        }
        "max_connections" => {
            let n = in_range(value.unsigned()?, 16, MAX_CONNECTIONS_MAX as u64)?;
            config.max_connections = usize::try_from(n).map_err(|_| "too large".to_owned())?;
        }
        "max_parked_requests" => {
            let n = in_range(value.unsigned()?, 1, MAX_PARKED_REQUESTS_MAX as u64)?;
            config.max_parked_requests = usize::try_from(n).map_err(|_| "too large".to_owned())?;
        }
        "tls_listen" | "acme_http01_listen" => {
            let text = value.string()?;
            let addr = if text.trim().is_empty() {
                None
            } else {
                Some(text.trim().parse().map_err(|_| {
                    format!("expected IP:PORT such as [::]:8448 or 0.0.0.0:443, got \"{text}\"")
                })?)
            };
            if key == "tls_listen" {
                config.tls_listen = addr;
            } else {
                config.acme_http01_listen = addr;
            }
        }
        "tls_cert" | "tls_key" | "acme_ca_file" | "outbound_ca_file" => {
            let path = value.string()?;
            let path = (!path.is_empty()).then(|| PathBuf::from(path));
            match key {
                "tls_cert" => config.tls_cert = path,
                "tls_key" => config.tls_key = path,
                "outbound_ca_file" => config.outbound_ca_file = path,
                _ => config.acme_ca_file = path,
            }
        }
        "trusted_proxies" => {
            let text = value.string()?;
            config.trusted_proxies = text
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| {
                    IpNet::parse(p).ok_or_else(|| format!("{p:?} is not an IP address or ADDR/PREFIX block"))
                })
                .collect::<Result<_, _>>()?;
        }
        "acme_enabled" => config.acme_enabled = value.boolean()?,
        "acme_domains" => {
            let text = value.string()?;
            let names: Vec<String> =
                text.split(',').map(str::trim).filter(|d| !d.is_empty()).map(str::to_owned).collect();
            for name in &names {
                if name.contains(':') || name.starts_with('[') {
                    return Err(format!("{name:?}: a domain name without a port"));
                }
                validate_host(name)?;
            }
            config.acme_domains = names;
        }
        "acme_email" => {
            let email = value.string()?;
            if !email.is_empty() && (!email.contains('@') || email.contains(char::is_whitespace)) {
                return Err(format!("{email:?} is not an email address"));
            }
            config.acme_email = (!email.is_empty()).then_some(email);
        }
        "acme_directory" => {
            let text = value.string()?;
            config.acme_directory = match text.trim() {
                "" | "letsencrypt" => ACME_DIRECTORY_LETSENCRYPT.to_owned(),
                "staging" | "letsencrypt-staging" => ACME_DIRECTORY_STAGING.to_owned(),
                url if url.starts_with("https://") => validate_base_url(url)
                    .map(|_| url.to_owned())
                    .map_err(|_| format!("{url:?} is not a valid https:// URL"))?,
                other => {
                    return Err(format!("expected an https:// URL, letsencrypt or staging, got \"{other}\""))
                }
            };
        }
        // SPECS and this match list the same keys; a test checks it.
        _ => return Err("unknown key".to_owned()),
    }
    Ok(())
}

fn available_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn default_workers(cpus: usize) -> usize {
    cpus.saturating_mul(WORKERS_PER_CPU).clamp(WORKERS_DEFAULT_MIN, WORKERS_MAX)
}

/// Splits a server name into its host and optional port, checking both
/// against the Matrix server name grammar: a DNS name, an IPv4 address or a
/// bracketed IPv6 address, then an optional `:port`.
fn split_host_port(name: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if name.starts_with('[') {
        let end = name.find(']').ok_or_else(|| "an IPv6 address must end with ']'".to_owned())?;
        let inner = &name[1..end];
        if inner.parse::<Ipv6Addr>().is_err() {
            return Err(format!("\"{inner}\" is not a valid IPv6 address"));
        }
        let rest = &name[end + 1..];
        match rest.strip_prefix(':') {
            Some(port) => (&name[..=end], Some(port)),
            None if rest.is_empty() => (&name[..=end], None),
            None => return Err(format!("unexpected \"{rest}\" after the IPv6 address")),
        }
    } else {
        let (host, port) = match name.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (name, None),
        };
        if port.is_some_and(|port| port.contains(':')) {
            return Err("an IPv6 address must be written in brackets, e.g. [::1]".to_owned());
        }
        validate_host(host)?;
        (host, port)
    };
    let port = match port {
        None => None,
        Some(text) => Some(parse_port(text)?),
    };
    Ok((host, port))
}

fn parse_port(text: &str) -> Result<u16, String> {
    /// The grammar allows at most five digits.
    const PORT_DIGITS_MAX: usize = 5;
    let digits_ok =
        !text.is_empty() && text.len() <= PORT_DIGITS_MAX && text.bytes().all(|b| b.is_ascii_digit());
    match text.parse::<u16>() {
        Ok(port) if digits_ok && port != 0 => Ok(port),
        _ => Err(format!("\"{text}\" is not a valid port (1 to 65535)")),
    }
}

/// Checks a host that is not a bracketed IPv6 address: an IPv4 address or a
/// DNS name of non-empty labels of letters, digits and inner hyphens.
fn validate_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("the host name is empty".to_owned());
    }
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return match host.parse::<Ipv4Addr>() {
            Ok(_) => Ok(()),
            Err(_) => Err(format!("\"{host}\" is not a valid IPv4 address")),
        };
    }
    for label in host.split('.') {
        if label.is_empty() || label.len() > DNS_LABEL_LEN_MAX {
            return Err(format!(
                "\"{host}\" is not a valid host name: each dot-separated part must have 1 to {DNS_LABEL_LEN_MAX} characters"
            ));
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(format!(
                "\"{host}\" is not a valid host name: only letters, digits, '-' and '.' are allowed"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("\"{host}\" is not a valid host name: a part may not start or end with '-'"));
        }
    }
    Ok(())
}

fn validate_server_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if name.len() > SERVER_NAME_LEN_MAX {
        return Err(format!("must be at most {SERVER_NAME_LEN_MAX} bytes long"));
    }
    split_host_port(name).map(|_| ())
}

/// Checks a public base URL and returns it without trailing slashes.
fn validate_base_url(url: &str) -> Result<String, String> {
    if url.len() > PUBLIC_BASEURL_LEN_MAX {
        return Err(format!("must be at most {PUBLIC_BASEURL_LEN_MAX} bytes long"));
    }
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("must start with http:// or https://, got \"{url}\""))?;
    if url.chars().any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#') {
        return Err(format!("must not contain spaces, control characters, '?' or '#', got \"{url}\""));
    }
    let authority = rest.split('/').next().unwrap_or_default();
    split_host_port(authority).map_err(|why| format!("bad host in \"{url}\": {why}"))?;
    Ok(url.trim_end_matches('/').to_owned())
}

/// The commented example configuration: every key, commented out, with its
/// default (or, for optional keys, an example value) and an explanation.
/// `contrib/hearth.toml` holds exactly this text.
pub fn example() -> String {
    let mut out = String::from(
        "# Hearth configuration file (TOML).\n\
         #\n\
         # Every key is shown commented out with its default value; uncomment a\n\
         # line to change it. An unknown key is an error, so typos are caught.\n\
         #\n\
         # Each key can also be set by an environment variable (HEARTH_ + the key\n\
         # in upper case) or a command-line flag (-- + the key with '-' for '_').\n\
         # A flag beats the environment, which beats this file, which beats the\n\
         # default. Start the server with this file by\n\
         #   hearth serve --config /etc/hearth/hearth.toml\n\
         # or by setting HEARTH_CONFIG=/etc/hearth/hearth.toml.\n\
         # `hearth config example` prints this file.\n",
    );
    for spec in &SPECS {
        out.push('\n');
        out.push_str(&format!("# {}\n", spec.summary));
        for note in spec.notes {
            out.push_str(&format!("# {note}\n"));
        }
        out.push_str(&format!(
            "# Environment: {}. Flag: --{}.\n",
            env_var(spec.key),
            spec.key.replace('_', "-")
        ));
        out.push_str(&format!("# {} = {}\n", spec.key, spec.example));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn flags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn from_file(text: &str) -> Result<Config, ConfigError> {
        load_text(Some(("test.toml", text)), &BTreeMap::new(), &no_env, 2)
    }

    fn from_flag(key: &str, value: &str) -> Result<Config, ConfigError> {
        load_text(None, &flags(&[(key, value)]), &no_env, 2)
    }

    #[test]
    fn defaults_when_nothing_is_set() {
        let config = load_text(None, &BTreeMap::new(), &no_env, 2).expect("defaults load");
        assert_eq!(config, Config::defaults(2));
        assert_eq!(config.listen.to_string(), LISTEN_DEFAULT);
        assert_eq!(config.server_name, "localhost");
        assert_eq!(config.database, PathBuf::from("./hearth.db"));
        assert_eq!(config.registration, Registration::Token);
        assert_eq!(config.public_baseurl, None);
        assert_eq!(config.well_known_server, None);
        assert_eq!(config.workers, 4);
        assert_eq!(config.log_level, LogLevel::Info);
        assert_eq!(config.rate_limit_per_second, 0.5);
        assert_eq!(config.rate_limit_burst, 10);
        assert_eq!(config.max_body_bytes, 1_048_576);
        assert_eq!(config.access_token_lifetime_ms, 86_400_000);
        assert_eq!(config.sync_timeout_max_ms, 60_000);
        assert_eq!(config.max_parked_requests, 1_500);
        assert_eq!(config.max_connections, 16_384);
    }

    #[test]
    fn default_workers_scale_with_cpus_within_bounds() {
        assert_eq!(default_workers(0), 4);
        assert_eq!(default_workers(1), 4);
        assert_eq!(default_workers(2), 4);
        assert_eq!(default_workers(3), 6);
        assert_eq!(default_workers(16), 32);
        assert_eq!(default_workers(1000), WORKERS_MAX);
        assert_eq!(default_workers(usize::MAX), WORKERS_MAX);
        let config = Config::default();
        assert!((WORKERS_MIN..=WORKERS_MAX).contains(&config.workers));
    }

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        let file = "server_name = \"file.example\"\nworkers = 7\nlog_level = \"debug\"\n";
        let env = |name: &str| match name {
            "HEARTH_SERVER_NAME" => Some("env.example".to_owned()),
            "HEARTH_WORKERS" => Some("9".to_owned()),
            _ => None,
        };
        let flags = flags(&[("server_name", "flag.example")]);
        let config = load_text(Some(("f.toml", file)), &flags, &env, 2).expect("loads");
        assert_eq!(config.server_name, "flag.example");
        assert_eq!(config.workers, 9);
        assert_eq!(config.log_level, LogLevel::Debug);
        assert_eq!(config.rate_limit_burst, RATE_LIMIT_BURST_DEFAULT);
    }

    #[test]
    fn empty_env_var_counts_as_unset() {
        let env = |name: &str| (name == "HEARTH_WORKERS").then(String::new);
        let config = load_text(Some(("f.toml", "workers = 7")), &BTreeMap::new(), &env, 2).expect("loads");
        assert_eq!(config.workers, 7);
    }

    #[test]
    fn every_key_has_an_env_var_that_is_read() {
        let values: &[(&str, &str)] = &[
            ("listen", "[::1]:9000"),
            ("server_name", "example.org"),
            ("database", "/var/lib/hearth/h.db"),
            ("registration", "open"),
            ("public_baseurl", "https://m.example.org/"),
            ("well_known_server", "m.example.org:443"),
            ("workers", "12"),
            ("log_level", "TRACE"),
            ("rate_limit_per_second", "2.5"),
            ("rate_limit_burst", "3"),
            ("max_body_bytes", "2048"),
            ("max_upload_bytes", "4096"),
            ("media_quota_bytes", "100000"),
            ("unauthenticated_media_before_ms", "1700000000000"),
            ("access_token_lifetime_ms", "60000"),
            ("sync_timeout_max_ms", "30000"),
            ("max_parked_requests", "100"),
            ("max_connections", "200"),
            ("presence", "no"),
            ("user_directory_search_all_users", "yes"),
            ("allow_guest_access", "yes"),
            ("turn_uris", "turn:t.example.org:3478"),
            ("turn_shared_secret", "s3cret"),
            ("turn_user_lifetime_ms", "60000"),
            ("tls_listen", "[::]:8448"),
            ("tls_cert", "/c.pem"),
            ("tls_key", "/k.pem"),
            ("trusted_proxies", "127.0.0.1, 10.0.0.0/8"),
            ("acme_enabled", "no"),
            ("acme_domains", "example.org,m.example.org"),
            ("acme_email", "a@example.org"),
            ("acme_directory", "staging"),
            ("acme_http01_listen", "0.0.0.0:80"),
            ("acme_ca_file", "/ca.pem"),
            ("outbound_allow_private", "yes"),
            ("outbound_ca_file", "/out-ca.pem"),
        ];
        assert_eq!(values.len(), KEYS.len());
        for ((key, _), (value_key, _)) in KEYS.iter().zip(values) {
            assert_eq!(key, value_key);
        }
        let env = |name: &str| {
            values.iter().find(|(key, _)| env_var(key) == name).map(|(_, value)| value.to_string())
        };
        let config = load_text(None, &BTreeMap::new(), &env, 2).expect("loads");
        let expected = Config {
            listen: "[::1]:9000".parse().expect("valid address"),
            server_name: "example.org".to_owned(),
            database: PathBuf::from("/var/lib/hearth/h.db"),
            registration: Registration::Open,
            public_baseurl: Some("https://m.example.org".to_owned()),
            well_known_server: Some("m.example.org:443".to_owned()),
            workers: 12,
            log_level: LogLevel::Trace,
            rate_limit_per_second: 2.5,
            rate_limit_burst: 3,
            max_body_bytes: 2048,
            max_upload_bytes: 4096,
            media_quota_bytes: 100_000,
            unauthenticated_media_before_ms: 1_700_000_000_000,
            access_token_lifetime_ms: 60_000,
            sync_timeout_max_ms: 30_000,
            max_parked_requests: 100,
            max_connections: 200,
            presence: false,
            user_directory_search_all_users: true,
            allow_guest_access: true,
            turn_uris: vec!["turn:t.example.org:3478".to_owned()],
            turn_shared_secret: Some("s3cret".to_owned()),
            turn_user_lifetime_ms: 60_000,
            tls_listen: Some("[::]:8448".parse().expect("valid address")),
            tls_cert: Some(PathBuf::from("/c.pem")),
            tls_key: Some(PathBuf::from("/k.pem")),
            trusted_proxies: vec![
                IpNet::parse("127.0.0.1").expect("ip"),
                IpNet::parse("10.0.0.0/8").expect("block"),
            ],
            acme_enabled: false,
            acme_domains: vec!["example.org".to_owned(), "m.example.org".to_owned()],
            acme_email: Some("a@example.org".to_owned()),
            acme_directory: ACME_DIRECTORY_STAGING.to_owned(),
            acme_http01_listen: Some("0.0.0.0:80".parse().expect("valid address")),
            acme_ca_file: Some(PathBuf::from("/ca.pem")),
            outbound_allow_private: true,
            outbound_ca_file: Some(PathBuf::from("/out-ca.pem")),
        };
        assert_eq!(config, expected);
        // The same values given as flags give the same result.
        let flags: BTreeMap<String, String> =
            values.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let config = load_text(None, &flags, &no_env, 2).expect("loads");
        assert_eq!(config, expected);
    }

    #[test]
    fn env_var_names() {
        assert_eq!(env_var("server_name"), "HEARTH_SERVER_NAME");
        assert_eq!(env_var("rate_limit_per_second"), "HEARTH_RATE_LIMIT_PER_SECOND");
        assert_eq!(env_var("rate_limit_burst"), "HEARTH_RATE_LIMIT_BURST");
    }

    #[test]
    fn file_values_are_typed() {
        let config = from_file(
            "listen = \"0.0.0.0:80\"\nworkers = 3\nrate_limit_per_second = 2\n\
             registration = \"closed\"\n",
        )
        .expect("loads");
        assert_eq!(config.listen.port(), 80);
        assert_eq!(config.workers, 3);
        assert_eq!(config.rate_limit_per_second, 2.0);
        assert_eq!(config.registration, Registration::Closed);

        let err = from_file("workers = \"3\"").expect_err("string for integer");
        assert_eq!(err.key.as_deref(), Some("workers"));
        assert!(err.message.contains("expected an integer"), "{err}");
        let err = from_file("workers = 3.0").expect_err("float for integer");
        assert_eq!(err.key.as_deref(), Some("workers"));
        let err = from_file("listen = 8008").expect_err("integer for string");
        assert_eq!(err.key.as_deref(), Some("listen"));
        let err = from_file("workers = -1").expect_err("negative");
        assert!(err.message.contains("negative"), "{err}");
        let err = from_file("rate_limit_per_second = \"fast\"").expect_err("string for float");
        assert_eq!(err.key.as_deref(), Some("rate_limit_per_second"));
    }

    #[test]
    fn unknown_file_key_is_an_error_naming_it() {
        let err = from_file("workerz = 4").expect_err("typo");
        assert_eq!(err.key.as_deref(), Some("workerz"));
        assert!(err.message.contains("did you mean \"workers\""), "{err}");
        let err = from_file("[server]\nname = \"x\"").expect_err("table");
        assert_eq!(err.key.as_deref(), Some("server"));
        let err = from_file("completely_unrelated_setting = 1").expect_err("unknown");
        assert!(!err.message.contains("did you mean"), "{err}");
    }

    #[test]
    fn unknown_flag_key_is_an_error() {
        let err = from_flag("colour", "red").expect_err("unknown flag");
        assert_eq!(err.key.as_deref(), Some("colour"));
        // The `config` flag names the file and is not a setting.
        from_flag("config", "/nonexistent").expect("config flag is ignored by load_text");
    }

    #[test]
    fn invalid_toml_is_an_error() {
        let err = from_file("workers = ").expect_err("syntax");
        assert_eq!(err.key, None);
        assert!(err.message.contains("not valid TOML"), "{err}");
        let err = from_file("workers = 1\nworkers = 2").expect_err("duplicate");
        assert_eq!(err.key, None);
    }

    #[test]
    fn missing_file_is_an_error() {
        let path =
            std::env::temp_dir().join(format!("hearth-config-test-missing-{}.toml", std::process::id()));
        let err = load(Some(&path), &BTreeMap::new(), &no_env).expect_err("missing");
        assert_eq!(err.key, None);
        assert!(err.message.contains("cannot read config file"), "{err}");
    }

    #[test]
    fn reads_a_real_file() {
        let path = std::env::temp_dir().join(format!("hearth-config-test-read-{}.toml", std::process::id()));
        std::fs::write(&path, "server_name = \"file.example\"\n").expect("write temp file");
        let result = load(Some(&path), &BTreeMap::new(), &no_env);
        let _ = std::fs::remove_file(&path);
        assert_eq!(result.expect("loads").server_name, "file.example");
    }

    #[test]
    fn oversized_file_is_refused() {
        let path = std::env::temp_dir().join(format!("hearth-config-test-big-{}.toml", std::process::id()));
        let text = "#".repeat(CONFIG_FILE_BYTES_MAX as usize + 1);
        std::fs::write(&path, text).expect("write temp file");
        let result = load(Some(&path), &BTreeMap::new(), &no_env);
        let _ = std::fs::remove_file(&path);
        let err = result.expect_err("too big");
        assert!(err.message.contains("larger than"), "{err}");
    }

    #[test]
    fn error_display_names_the_key() {
        let err = from_flag("workers", "0").expect_err("zero workers");
        assert_eq!(
            err.to_string(),
            "config key \"workers\": must be between 1 and 256, got 0 (from --workers)"
        );
        let env = |name: &str| (name == "HEARTH_WORKERS").then(|| "300".to_owned());
        let err = load_text(None, &BTreeMap::new(), &env, 2).expect_err("too many");
        assert_eq!(
            err.to_string(),
            "config key \"workers\": must be between 1 and 256, got 300 (from HEARTH_WORKERS)"
        );
        let err = from_file("workers = 0").expect_err("zero");
        assert!(err.to_string().ends_with("(from config file test.toml)"), "{err}");
        let general = ConfigError::general("oops".to_owned());
        assert_eq!(general.to_string(), "config: oops");
    }

    #[test]
    fn server_name_grammar() {
        for good in [
            "localhost",
            "example.org",
            "matrix.example.org:8448",
            "a-b.example",
            "1.2.3.4",
            "1.2.3.4:1234",
            "[::1]",
            "[2001:db8::1]:8448",
            "EXAMPLE.org",
            "xn--bcher-kva.example",
        ] {
            from_flag("server_name", good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "",
            "exa mple.org",
            "example.org:",
            "example.org:0",
            "example.org:65536",
            "example.org:123456",
            "example.org:80a",
            "example..org",
            "example.org.",
            ".example.org",
            "-example.org",
            "example-.org",
            "exam_ple.org",
            "1.2.3",
            "1.2.3.256",
            "::1",
            "[::1",
            "[::g]",
            "[::1]x",
            "[::1]:",
            "@alice:example.org",
            "https://example.org",
            "ex\u{e4}mple.org",
        ] {
            let err = from_flag("server_name", bad).expect_err(bad);
            assert_eq!(err.key.as_deref(), Some("server_name"), "{bad}");
        }
        let long_label = "a".repeat(DNS_LABEL_LEN_MAX + 1);
        from_flag("server_name", &long_label).expect_err("long label");
        let long_name = vec!["a".repeat(50); 6].join(".");
        assert!(long_name.len() > SERVER_NAME_LEN_MAX);
        from_flag("server_name", &long_name).expect_err("long name");
    }

    #[test]
    fn well_known_server_uses_the_same_grammar() {
        from_flag("well_known_server", "m.example.org:443").expect("valid");
        from_flag("well_known_server", "m example").expect_err("space");
        let config = from_flag("well_known_server", "").expect("empty means unset");
        assert_eq!(config.well_known_server, None);
    }

    #[test]
    fn public_baseurl_validation() {
        let config = from_flag("public_baseurl", "https://m.example.org/").expect("valid");
        assert_eq!(config.public_baseurl.as_deref(), Some("https://m.example.org"));
        let config = from_flag("public_baseurl", "http://[::1]:8008/matrix").expect("valid");
        assert_eq!(config.public_baseurl.as_deref(), Some("http://[::1]:8008/matrix"));
        for bad in [
            "m.example.org",
            "ftp://m.example.org",
            "https://",
            "https:///path",
            "https://m.example.org?x=1",
            "https://m.example.org/#frag",
            "https://m example.org",
        ] {
            let err = from_flag("public_baseurl", bad).expect_err(bad);
            assert_eq!(err.key.as_deref(), Some("public_baseurl"));
        }
        let too_long = format!("https://example.org/{}", "a".repeat(PUBLIC_BASEURL_LEN_MAX));
        from_flag("public_baseurl", &too_long).expect_err("too long");
    }

    #[test]
    fn numeric_limits() {
        from_flag("workers", "1").expect("min");
        from_flag("workers", "256").expect("max");
        from_flag("workers", "257").expect_err("over max");
        from_flag("workers", "-1").expect_err("negative");
        from_flag("workers", "four").expect_err("word");
        from_flag("workers", " 8 ").expect("spaces are trimmed");

        from_flag("rate_limit_per_second", "0.001").expect("small");
        from_flag("rate_limit_per_second", "3").expect("integer text");
        for bad in ["0", "-1", "NaN", "inf", "", "x"] {
            from_flag("rate_limit_per_second", bad).expect_err(bad);
        }
        from_file("rate_limit_per_second = 0").expect_err("zero in file");
        from_file("rate_limit_per_second = inf").expect_err("inf in file");
        from_file("rate_limit_per_second = nan").expect_err("nan in file");

        from_flag("rate_limit_burst", "1").expect("min");
        from_flag("rate_limit_burst", "0").expect_err("zero");
        from_flag("rate_limit_burst", "4294967295").expect("u32 max");
        from_flag("rate_limit_burst", "4294967296").expect_err("over u32");

        from_flag("max_body_bytes", "1024").expect("min");
        from_flag("max_body_bytes", "1023").expect_err("under min");
        from_flag("max_body_bytes", "67108864").expect("max");
        from_flag("max_body_bytes", "67108865").expect_err("over max");

        from_flag("access_token_lifetime_ms", "60000").expect("min");
        from_flag("access_token_lifetime_ms", "59999").expect_err("under min");
        from_flag("access_token_lifetime_ms", "31536000000").expect("max");
        from_flag("access_token_lifetime_ms", "31536000001").expect_err("over max");
        from_flag("access_token_lifetime_ms", "18446744073709551616").expect_err("over u64");
    }

    #[test]
    fn other_values() {
        from_flag("listen", "127.0.0.1").expect_err("no port");
        from_flag("listen", "localhost:8008").expect_err("not an IP");
        assert_eq!(from_flag("listen", "[::]:8448").expect("v6").listen.port(), 8448);
        from_flag("database", "").expect_err("empty path");
        from_flag("registration", "invite").expect_err("unknown mode");
        from_flag("log_level", "loud").expect_err("unknown level");
        from_flag("sync_timeout_max_ms", "999").expect_err("under min");
        assert_eq!(from_flag("sync_timeout_max_ms", "600000").expect("max").sync_timeout_max_ms, 600_000);
        from_flag("max_parked_requests", "0").expect_err("none");
        from_flag("max_parked_requests", "100001").expect_err("over max");
        for yes in ["true", "1", "yes", "TRUE"] {
            assert!(from_flag("presence", yes).expect(yes).presence);
        }
        for no in ["false", "0", "no", "False"] {
            assert!(!from_flag("presence", no).expect(no).presence);
        }
        from_flag("presence", "maybe").expect_err("not a bool");
        from_flag("turn_uris", "http://x").expect_err("not turn");
    }

    #[test]
    fn registration_and_log_level_parse() {
        for mode in [Registration::Closed, Registration::Token, Registration::Open] {
            assert_eq!(Registration::parse(mode.as_str()), Some(mode));
        }
        assert_eq!(Registration::parse("OPEN"), Some(Registration::Open));
        assert_eq!(Registration::parse("invite"), None);
        let levels = [LogLevel::Error, LogLevel::Warn, LogLevel::Info, LogLevel::Debug, LogLevel::Trace];
        for level in levels {
            assert_eq!(LogLevel::parse(level.as_str()), Some(level));
            assert_eq!(LogLevel::parse(&level.as_str().to_ascii_uppercase()), Some(level));
        }
        assert!(levels.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(LogLevel::Debug > LogLevel::Info);
        assert_eq!(LogLevel::parse("Warning"), Some(LogLevel::Warn));
        assert_eq!(LogLevel::parse("verbose"), None);
    }

    #[test]
    fn base_url_derivation() {
        let mut config = Config::defaults(2);
        assert_eq!(config.base_url(), "http://127.0.0.1:8008");
        config.listen = "[::1]:8080".parse().expect("valid");
        assert_eq!(config.base_url(), "http://[::1]:8080");
        config.listen = "0.0.0.0:8008".parse().expect("valid");
        config.server_name = "example.org:8448".to_owned();
        assert_eq!(config.base_url(), "http://example.org:8008");
        config.listen = "[::]:8008".parse().expect("valid");
        config.server_name = "[2001:db8::1]".to_owned();
        assert_eq!(config.base_url(), "http://[2001:db8::1]:8008");
        config.public_baseurl = Some("https://m.example.org".to_owned());
        assert_eq!(config.base_url(), "https://m.example.org");
    }

    #[test]
    fn server_delegation_derivation() {
        let mut config = Config::defaults(2);
        assert_eq!(config.server_delegation(), "localhost:8448");
        config.server_name = "example.org:443".to_owned();
        assert_eq!(config.server_delegation(), "example.org:443");
        config.server_name = "[::1]".to_owned();
        assert_eq!(config.server_delegation(), "[::1]:8448");
        config.server_name = "[::1]:9000".to_owned();
        assert_eq!(config.server_delegation(), "[::1]:9000");
        config.well_known_server = Some("m.example.org:443".to_owned());
        assert_eq!(config.server_delegation(), "m.example.org:443");
    }

    #[test]
    fn config_path_precedence() {
        let env = |name: &str| (name == CONFIG_ENV).then(|| "/env.toml".to_owned());
        assert_eq!(config_path(&BTreeMap::new(), &no_env), None);
        assert_eq!(config_path(&BTreeMap::new(), &env), Some(PathBuf::from("/env.toml")));
        assert_eq!(config_path(&flags(&[("config", "/flag.toml")]), &env), Some(PathBuf::from("/flag.toml")));
        let empty_env = |name: &str| (name == CONFIG_ENV).then(String::new);
        assert_eq!(config_path(&BTreeMap::new(), &empty_env), None);
    }

    #[test]
    fn keys_are_unique_and_all_handled() {
        let mut seen = std::collections::BTreeSet::new();
        for (key, summary) in KEYS {
            assert!(seen.insert(*key), "duplicate key {key}");
            assert!(!summary.is_empty() && !summary.contains('\n'), "{key}");
            assert!(default_text(key).is_some(), "{key}");
            // Digits only as in the protocol name `acme_http01_listen`.
            assert!(key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "{key}");
            // Every key is understood by `apply`, with its example value.
            let spec = spec(key).expect("spec for key");
            let value: toml::Table =
                format!("{key} = {}", spec.example).parse().expect("example value is TOML");
            let mut config = Config::defaults(2);
            apply(&mut config, key, &Raw::Toml(&value[*key])).expect("example value applies");
        }
        assert_eq!(default_text("nope"), None);
    }

    #[test]
    fn contrib_example_matches() {
        assert_eq!(include_str!("../contrib/hearth.toml"), example());
    }

    /// Uncommenting every setting of the example gives the defaults, except
    /// the optional keys, which show example values.
    #[test]
    fn example_uncommented_parses_to_defaults() {
        let text = example();
        let mut uncommented = String::new();
        let mut found = Vec::new();
        for line in text.lines() {
            let setting = KEYS.iter().find_map(|(key, _)| {
                line.strip_prefix("# ")
                    .filter(|rest| rest.starts_with(&format!("{key} = ")))
                    .map(|rest| (*key, rest))
            });
            match setting {
                Some((key, rest)) => {
                    found.push(key);
                    uncommented.push_str(rest);
                    uncommented.push('\n');
                }
                None => assert!(line.is_empty() || line.starts_with('#'), "{line}"),
            }
        }
        let keys: Vec<&str> = KEYS.iter().map(|(key, _)| *key).collect();
        assert_eq!(found, keys, "every key appears once, in order");

        // Two CPUs give the 4 workers the example shows.
        let config = from_file(&uncommented).expect("example parses");
        let mut expected = Config::defaults(2);
        expected.public_baseurl = Some("https://matrix.example.org".to_owned());
        expected.well_known_server = Some("matrix.example.org:443".to_owned());
        expected.turn_uris = vec![
            "turn:turn.example.org:3478?transport=udp".to_owned(),
            "turn:turn.example.org:3478?transport=tcp".to_owned(),
        ];
        expected.turn_shared_secret = Some("a long random string".to_owned());
        expected.tls_listen = Some("[::]:8448".parse().expect("valid address"));
        expected.tls_cert = Some(PathBuf::from("/etc/hearth/fullchain.pem"));
        expected.tls_key = Some(PathBuf::from("/etc/hearth/privkey.pem"));
        expected.trusted_proxies =
            vec![IpNet::parse("127.0.0.1").expect("ip"), IpNet::parse("::1").expect("ip")];
        expected.acme_domains = vec!["example.org".to_owned(), "matrix.example.org".to_owned()];
        expected.acme_email = Some("admin@example.org".to_owned());
        expected.acme_http01_listen = Some("[::]:80".parse().expect("valid address"));
        expected.acme_ca_file = Some(PathBuf::from("/etc/hearth/acme-ca.pem"));
        expected.outbound_ca_file = Some(PathBuf::from("/etc/hearth/outbound-ca.pem"));
        assert_eq!(config, expected);
        // The commented example is itself valid and sets nothing.
        assert_eq!(from_file(&text).expect("comments only"), Config::defaults(2));
    }

    #[test]
    fn tls_sections_and_combinations() {
        let config = from_file("[tls]\nlisten = \"127.0.0.1:8448\"\ncert = \"/c\"\nkey = \"/k\"\n")
            .expect("dotted form");
        assert_eq!(config.tls_listen, Some("127.0.0.1:8448".parse().expect("addr")));
        assert_eq!(config.tls_key, Some(PathBuf::from("/k")));
        let both = from_file("tls_cert = \"/a\"\ntls_key = \"/k\"\n[tls]\ncert = \"/c\"\n");
        assert_eq!(both.expect_err("twice").key.as_deref(), Some("tls_cert"));
        let unknown = from_file("[tls]\nlisten_on = \"x\"\n").expect_err("unknown");
        assert_eq!(unknown.key.as_deref(), Some("tls_listen_on"));
        let config =
            from_file("[acme]\nenabled = true\ndomains = \"a.example\"\n[tls]\nlisten = \"[::]:443\"\n")
                .expect("acme");
        assert!(config.acme_enabled);
        assert_eq!(config.acme_names(), ["a.example"]);
        assert_eq!(Config::defaults(2).acme_names(), ["localhost"]);
        assert_eq!(
            from_flag("tls_listen", "[::]:8448").expect_err("no cert").key.as_deref(),
            Some("tls_listen")
        );
        assert_eq!(
            from_flag("acme_enabled", "true").expect_err("no listen").key.as_deref(),
            Some("acme_enabled")
        );
        assert_eq!(from_flag("tls_cert", "/c").expect_err("no key").key.as_deref(), Some("tls_key"));
        assert!(from_flag("acme_directory", "http://insecure.example/dir").is_err());
        assert!(from_flag("acme_domains", "example.org:443").is_err());
        assert!(from_flag("trusted_proxies", "10.0.0.0/33").is_err());
    }

    #[test]
    fn ip_blocks() {
        let net = IpNet::parse("10.1.0.0/16").expect("block");
        assert!(net.contains("10.1.200.3".parse().expect("ip")));
        assert!(!net.contains("10.2.0.1".parse().expect("ip")));
        assert!(net.contains("::ffff:10.1.0.9".parse().expect("mapped")));
        let one = IpNet::parse("::1").expect("ip");
        assert!(one.contains("::1".parse().expect("ip")) && !one.contains("::2".parse().expect("ip")));
        assert!(IpNet::parse("0.0.0.0/0").expect("all").contains("192.0.2.1".parse().expect("ip")));
        assert_eq!(IpNet::parse("fe80::/10").expect("v6").to_string(), "fe80::/10");
        assert!(IpNet::parse("nope").is_none());
    }
}
