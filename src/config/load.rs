//! Loading: the file (TOML, sections flattened), the environment and the
//! flags in their precedence, unknown keys with suggestions, and each
//! value parsed and bounded into `Config`.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::*;

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
pub(super) type FileText<'a> = Option<(&'a str, &'a str)>;

pub(super) fn load_text(
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
    if config.federation_retry_min_ms > config.federation_retry_max_ms {
        let why = "must not be above federation_retry_max_ms".to_owned();
        return Err(ConfigError::for_key("federation_retry_min_ms", why));
    }
    Ok(config)
}

/// The TLS and ACME keys that only make sense together.
pub(super) fn check_tls(config: &Config) -> Result<(), ConfigError> {
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

pub(super) fn read_file(path: &Path) -> Result<String, ConfigError> {
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

pub(super) fn parse_file(name: &str, text: &str) -> Result<toml::Table, ConfigError> {
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
pub(super) fn flatten_sections(name: &str, table: toml::Table) -> Result<toml::Table, ConfigError> {
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
pub(super) fn suggestion(unknown: &str) -> String {
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

pub(super) fn edit_distance(a: &str, b: &str) -> usize {
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
pub(super) enum Raw<'a> {
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

pub(super) fn in_range<T: PartialOrd + fmt::Display>(value: T, min: T, max: T) -> Result<T, String> {
    if value < min || value > max {
        return Err(format!("must be between {min} and {max}, got {value}"));
    }
    Ok(value)
}

/// Interprets `value` for `key` and stores it in `config`; the error is a
/// message without the key, which the caller adds.
pub(super) fn apply(config: &mut Config, key: &str, value: &Raw<'_>) -> Result<(), String> {
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
        "federation" => config.federation = value.boolean()?,
        "federation_domain_allowlist" | "trusted_key_servers" => {
            let text = value.string()?;
            let names: Vec<String> =
                text.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned).collect();
            for name in &names {
                validate_server_name(name)?;
            }
            if key == "trusted_key_servers" {
                config.trusted_key_servers = names;
            } else {
                config.federation_domain_allowlist = Some(names);
            }
        }
        "appservice_config_files" => {
            config.appservice_config_files = value
                .string()?
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect();
        }
        "federation_retry_min_ms" | "federation_retry_max_ms" => {
            let ms = in_range(value.unsigned()?, FEDERATION_RETRY_MS_MIN, FEDERATION_RETRY_MS_MAX)?;
            if key == "federation_retry_min_ms" {
                config.federation_retry_min_ms = ms;
            } else {
                config.federation_retry_max_ms = ms;
            }
        }
        "remote_media_cache_bytes" => config.remote_media_cache_bytes = value.unsigned()?,
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
