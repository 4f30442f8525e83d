//! The grammar checks of values: server names, hosts, ports, base URLs,
//! and the default worker count.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;

pub(super) fn available_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

pub(super) fn default_workers(cpus: usize) -> usize {
    cpus.saturating_mul(WORKERS_PER_CPU).clamp(WORKERS_DEFAULT_MIN, WORKERS_MAX)
}

/// Splits a server name into its host and optional port, checking both
/// against the Matrix server name grammar: a DNS name, an IPv4 address or a
/// bracketed IPv6 address, then an optional `:port`.
pub(super) fn split_host_port(name: &str) -> Result<(&str, Option<u16>), String> {
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

pub(super) fn parse_port(text: &str) -> Result<u16, String> {
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
pub(super) fn validate_host(host: &str) -> Result<(), String> {
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

pub(super) fn validate_server_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if name.len() > SERVER_NAME_LEN_MAX {
        return Err(format!("must be at most {SERVER_NAME_LEN_MAX} bytes long"));
    }
    split_host_port(name).map(|_| ())
}

/// Checks a public base URL and returns it without trailing slashes.
pub(super) fn validate_base_url(url: &str) -> Result<String, String> {
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
