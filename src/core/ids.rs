//! Identifier grammar from the spec appendix: user IDs and their localparts,
//! server names, device IDs.

/// A whole user ID, sigil and server name included, is at most this long.
pub const USER_ID_MAX_BYTES: usize = 255;
/// Device IDs are chosen by clients; bound them like other identifiers.
pub const DEVICE_ID_MAX_BYTES: usize = 255;

/// True if `localpart` fits the grammar for *new* user IDs:
/// lowercase letters, digits, and `._=-/+`.
pub fn is_valid_localpart(localpart: &str) -> bool {
    !localpart.is_empty()
        && localpart
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'=' | b'-' | b'/' | b'+'))
}

/// Builds `@localpart:server`.
pub fn user_id(localpart: &str, server_name: &str) -> String {
    format!("@{localpart}:{server_name}")
}

/// Splits a user ID into localpart and server name. Accepts the historical
/// grammar (any printable ASCII but `:` in the localpart) so IDs from other
/// servers parse; rejects empty parts and IDs over the length limit.
pub fn parse_user_id(s: &str) -> Option<(&str, &str)> {
    if s.len() > USER_ID_MAX_BYTES {
        return None;
    }
    let rest = s.strip_prefix('@')?;
    let (local, server) = rest.split_once(':')?;
    let local_ok = !local.is_empty() && local.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b':');
    (local_ok && is_valid_server_name(server)).then_some((local, server))
}

/// Server name grammar: a DNS name, IPv4 literal or `[IPv6]` literal, with
/// an optional `:port`.
pub fn is_valid_server_name(s: &str) -> bool {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else { return false };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => ("", Some(port)),
                None => return false,
            },
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    if s.starts_with('[') {
        return true;
    }
    !host.is_empty()
        && host.len() <= 255
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Device IDs: non-empty, bounded, printable (no control characters).
pub fn is_valid_device_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= DEVICE_ID_MAX_BYTES && !s.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localparts() {
        for ok in ["alice", "a.b_c=d-e/f+g", "0123"] {
            assert!(is_valid_localpart(ok), "{ok}");
        }
        for bad in ["", "Alice", "al ice", "al:ice", "é", "a@b"] {
            assert!(!is_valid_localpart(bad), "{bad}");
        }
    }

    #[test]
    fn user_ids() {
        assert_eq!(parse_user_id("@alice:example.org"), Some(("alice", "example.org")));
        assert_eq!(parse_user_id("@Bob:[::1]:8448"), Some(("Bob", "[::1]:8448")));
        assert_eq!(parse_user_id("@a:127.0.0.1:80"), Some(("a", "127.0.0.1:80")));
        for bad in ["alice", "@alice", "@:x", "@a:", "@a b:x", "@a:ex ample", "@a:x:99999999"] {
            assert_eq!(parse_user_id(bad), None, "{bad}");
        }
        let long = format!("@{}:x", "a".repeat(USER_ID_MAX_BYTES));
        assert_eq!(parse_user_id(&long), None);
    }

    #[test]
    fn server_names() {
        for ok in ["localhost", "matrix.org:8448", "1.2.3.4", "[1234:5678::abcd]", "[::1]:80"] {
            assert!(is_valid_server_name(ok), "{ok}");
        }
        for bad in ["", "a b", "host:", "host:port", "[::1", "[zz]", "x:123456"] {
            assert!(!is_valid_server_name(bad), "{bad}");
        }
    }
}
