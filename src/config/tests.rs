//! Unit tests of `config`.

use super::keys::*;
use super::load::*;
use super::validate::*;
use super::*;
use std::collections::BTreeMap;
use std::path::PathBuf;

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
        ("federation", "no"),
        ("federation_domain_allowlist", "a.example, 127.0.0.1:8481"),
        ("trusted_key_servers", "matrix.org"),
        ("federation_retry_min_ms", "500"),
        ("federation_retry_max_ms", "60000"),
        ("appservice_config_files", "/a.yaml, /b.yaml"),
        ("remote_media_cache_bytes", "1000"),
    ];
    assert_eq!(values.len(), KEYS.len());
    for ((key, _), (value_key, _)) in KEYS.iter().zip(values) {
        assert_eq!(key, value_key);
    }
    let env =
        |name: &str| values.iter().find(|(key, _)| env_var(key) == name).map(|(_, value)| value.to_string());
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
        federation: false,
        federation_domain_allowlist: Some(vec!["a.example".to_owned(), "127.0.0.1:8481".to_owned()]),
        trusted_key_servers: vec!["matrix.org".to_owned()],
        federation_retry_min_ms: 500,
        federation_retry_max_ms: 60000,
        appservice_config_files: vec!["/a.yaml".to_owned(), "/b.yaml".to_owned()],
        remote_media_cache_bytes: 1000,
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
    let path = std::env::temp_dir().join(format!("hearth-config-test-missing-{}.toml", std::process::id()));
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
    assert_eq!(err.to_string(), "config key \"workers\": must be between 1 and 256, got 0 (from --workers)");
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
        let value: toml::Table = format!("{key} = {}", spec.example).parse().expect("example value is TOML");
        let mut config = Config::defaults(2);
        apply(&mut config, key, &Raw::Toml(&value[*key])).expect("example value applies");
    }
    assert_eq!(default_text("nope"), None);
}

#[test]
fn contrib_example_matches() {
    assert_eq!(include_str!("../../contrib/hearth.toml"), example());
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
    expected.trusted_proxies = vec![IpNet::parse("127.0.0.1").expect("ip"), IpNet::parse("::1").expect("ip")];
    expected.acme_domains = vec!["example.org".to_owned(), "matrix.example.org".to_owned()];
    expected.acme_email = Some("admin@example.org".to_owned());
    expected.acme_http01_listen = Some("[::]:80".parse().expect("valid address"));
    expected.acme_ca_file = Some(PathBuf::from("/etc/hearth/acme-ca.pem"));
    expected.outbound_ca_file = Some(PathBuf::from("/etc/hearth/outbound-ca.pem"));
    expected.federation_domain_allowlist =
        Some(vec!["example.org".to_owned(), "matrix.example.net".to_owned()]);
    expected.trusted_key_servers = vec!["matrix.org".to_owned()];
    expected.appservice_config_files =
        vec!["/etc/hearth/whatsapp.yaml".to_owned(), "/etc/hearth/signal.yaml".to_owned()];
    assert_eq!(config, expected);
    // The commented example is itself valid and sets nothing.
    assert_eq!(from_file(&text).expect("comments only"), Config::defaults(2));
}

#[test]
fn tls_sections_and_combinations() {
    let config =
        from_file("[tls]\nlisten = \"127.0.0.1:8448\"\ncert = \"/c\"\nkey = \"/k\"\n").expect("dotted form");
    assert_eq!(config.tls_listen, Some("127.0.0.1:8448".parse().expect("addr")));
    assert_eq!(config.tls_key, Some(PathBuf::from("/k")));
    let both = from_file("tls_cert = \"/a\"\ntls_key = \"/k\"\n[tls]\ncert = \"/c\"\n");
    assert_eq!(both.expect_err("twice").key.as_deref(), Some("tls_cert"));
    let unknown = from_file("[tls]\nlisten_on = \"x\"\n").expect_err("unknown");
    assert_eq!(unknown.key.as_deref(), Some("tls_listen_on"));
    let config = from_file("[acme]\nenabled = true\ndomains = \"a.example\"\n[tls]\nlisten = \"[::]:443\"\n")
        .expect("acme");
    assert!(config.acme_enabled);
    assert_eq!(config.acme_names(), ["a.example"]);
    assert_eq!(Config::defaults(2).acme_names(), ["localhost"]);
    assert_eq!(from_flag("tls_listen", "[::]:8448").expect_err("no cert").key.as_deref(), Some("tls_listen"));
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
