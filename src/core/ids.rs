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

/// Longest registration token (the spec's grammar: 1 to 64 characters).
pub const REGISTRATION_TOKEN_MAX_LEN: usize = 64;

/// Registration token grammar: 1 to 64 of `A-Z a-z 0-9 . _ ~ -`.
pub fn is_valid_registration_token(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= REGISTRATION_TOKEN_MAX_LEN
        && t.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
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

/// Room aliases, room IDs and event IDs are at most this long.
pub const ID_MAX_BYTES: usize = 255;

/// `#localpart:server`: a non-empty localpart without `:` and a valid
/// server name.
pub fn parse_room_alias(s: &str) -> Option<(&str, &str)> {
    if s.len() > ID_MAX_BYTES {
        return None;
    }
    let (local, server) = s.strip_prefix('#')?.split_once(':')?;
    let local_ok = !local.is_empty() && !local.chars().any(|c| c.is_control() || c.is_whitespace());
    (local_ok && is_valid_server_name(server)).then_some((local, server))
}

/// `!opaque:server` (rooms before v12) or `!hash` (v12, no server part).
pub fn is_valid_room_id(s: &str) -> bool {
    s.len() <= ID_MAX_BYTES
        && s.strip_prefix('!').is_some_and(|rest| {
            let opaque = match rest.split_once(':') {
                Some((o, server)) => {
                    if !is_valid_server_name(server) {
                        return false;
                    }
                    o
                }
                None => rest,
            };
            !opaque.is_empty() && opaque.bytes().all(|b| b.is_ascii_graphic())
        })
}

/// `$` followed by printable ASCII (a reference hash from room v4 on, an
/// opaque ID with a server part before that).
pub fn is_valid_event_id(s: &str) -> bool {
    s.len() <= ID_MAX_BYTES
        && s.strip_prefix('$')
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_graphic()))
}

/// Event types: non-empty, bounded, no control characters.
pub fn is_valid_event_type(s: &str) -> bool {
    !s.is_empty() && s.len() <= ID_MAX_BYTES && !s.chars().any(char::is_control)
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
    fn rooms_aliases_events() {
        assert_eq!(parse_room_alias("#family:example.org"), Some(("family", "example.org")));
        for bad in ["family", "#:x", "#a b:x", "#a:", "#a:bad host"] {
            assert_eq!(parse_room_alias(bad), None, "{bad}");
        }
        for ok in ["!abc:example.org", "!31hneApxJ_1o-63DmFrpeqnkFfWppnzWso1JvH3ogLM"] {
            assert!(is_valid_room_id(ok), "{ok}");
        }
        for bad in ["", "!", "abc:x", "!a b:x", "!:x", "!a:b c"] {
            assert!(!is_valid_room_id(bad), "{bad}");
        }
        assert!(is_valid_event_id("$acR1l0raoZnm60CBwAVgqbZqoO_mYU81xysh1u7XcJk"));
        assert!(!is_valid_event_id("$") && !is_valid_event_id("x") && !is_valid_event_id("$a b"));
        assert!(is_valid_event_type("m.room.message") && !is_valid_event_type(""));
    }

    #[test]
    fn registration_tokens() {
        assert!(is_valid_registration_token("a.b_c~d-E9"));
        assert!(is_valid_registration_token(&"x".repeat(REGISTRATION_TOKEN_MAX_LEN)));
        for bad in ["", "sp ace", "slash/", "ü", &"x".repeat(REGISTRATION_TOKEN_MAX_LEN + 1)] {
            assert!(!is_valid_registration_token(bad), "{bad:?}");
        }
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
