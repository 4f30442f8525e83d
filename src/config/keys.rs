//! The key table: every configuration key once, with its summary, default,
//! example and notes; `KEYS`, the environment names, and the commented
//! example file derived from it.

use super::*;

/// Everything known about one key. `KEYS` is derived from `SPECS`, so the
/// two cannot disagree.
pub(super) struct Spec {
    pub(super) key: &'static str,
    /// One line, shown in `--help` and above the key in the example.
    pub(super) summary: &'static str,
    /// The default as a person reads it.
    pub(super) default: &'static str,
    /// The TOML value written (commented out) in the example. For keys with
    /// a plain default it is that default; for optional keys it is an
    /// example value.
    pub(super) example: &'static str,
    /// Further lines of explanation for the example file.
    pub(super) notes: &'static [&'static str],
}

pub(super) const SPEC_COUNT: usize = 43;

pub(super) const SPECS: [Spec; SPEC_COUNT] = [
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
    Spec {
        key: "federation",
        summary: "Serve the federation API and talk to other Matrix servers.",
        default: "true",
        example: "true",
        notes: &[
            "The federation API (/_matrix/federation, /_matrix/key) is served on",
            "every listener; put a TLS proxy in front of listen on 8448, or use",
            "tls_listen. false: a server for local users only.",
        ],
    },
    Spec {
        key: "federation_domain_allowlist",
        summary: "Federate only with these servers (comma-separated server names).",
        default: "unset (every server)",
        example: "\"example.org, matrix.example.net\"",
        notes: &["Requests from other servers are refused with 403 M_FORBIDDEN."],
    },
    Spec {
        key: "trusted_key_servers",
        summary: "Notary servers asked for keys an origin does not serve itself.",
        default: "none",
        example: "\"matrix.org\"",
        notes: &[
            "Comma-separated server names. Keys are always asked of their",
            "origin first; a notary's answer must be signed by the origin and by",
            "the notary.",
        ],
    },
    Spec {
        key: "federation_retry_min_ms",
        summary: "First wait before retrying an unreachable server (ms).",
        default: "2000",
        example: "2000",
        notes: &["Each further failure doubles the wait, up to federation_retry_max_ms. 100 to 604800000."],
    },
    Spec {
        key: "federation_retry_max_ms",
        summary: "Longest wait between retries of an unreachable server (ms).",
        default: "3600000 (one hour)",
        example: "3600000",
        notes: &["A request from that server resets its wait. 100 to 604800000."],
    },
    Spec {
        key: "appservice_config_files",
        summary: "Application service (bridge) registration files (comma-separated paths).",
        default: "none",
        example: "\"/etc/hearth/whatsapp.yaml, /etc/hearth/signal.yaml\"",
        notes: &[
            "The YAML files bridges generate. A bad file stops the start, naming",
            "the file and the key; re-read on SIGHUP (a bad file then keeps the",
            "old set). An appservice's url may be on this host or network: only",
            "that address is opened to it, not outbound_allow_private's rest.",
        ],
    },
    Spec {
        key: "remote_media_cache_bytes",
        summary: "Most bytes of other servers' media cached in the database.",
        default: "536870912 (512 MiB)",
        example: "536870912",
        notes: &[
            "Past it, the least recently used remote media are dropped (they are",
            "fetched again when asked for). 0: remote media are streamed, not kept.",
        ],
    },
];

pub(super) const fn key_summaries<const N: usize>(specs: &[Spec; N]) -> [(&'static str, &'static str); N] {
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

pub(super) fn spec(key: &str) -> Option<&'static Spec> {
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
