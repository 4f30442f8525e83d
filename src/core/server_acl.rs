//! Server access control lists (`m.room.server_acl`, the spec's "Server
//! Access Control Lists"): whether a room's ACL lets a server take part.
//! Every federation endpoint that touches a room asks [`allowed`] with the
//! content of the room's current ACL event; a room with no such event
//! allows every server (the caller's case, before it gets here).
//!
//! The rules, in the spec's order: a server name that is an IP literal is
//! denied when `allow_ip_literals` is `false` (any other value, or none,
//! counts as `true`); then a match in `deny` denies; then a match in
//! `allow` allows; anything else is denied, so a missing `allow` denies
//! every server. Patterns are the appendix's case-insensitive globs (`*`,
//! `?`; `push::glob` implements them) and are matched against the name
//! without its port. A list that is not an array counts as empty and an
//! entry that is not a string is skipped, so a malformed ACL denies more,
//! never less, than a well-formed one would.
//!
//! Pure: no I/O.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde_json::Value;

use crate::push::glob::{fold, Glob};

/// Whether an ACL with `acl_content` lets `server_name` (which may carry a
/// port) take part in the room.
pub fn allowed(acl_content: &Value, server_name: &str) -> bool {
    let host = host_of(server_name);
    let ip_literals = acl_content.get("allow_ip_literals").and_then(Value::as_bool).unwrap_or(true);
    if !ip_literals && is_ip_literal(host) {
        return false;
    }
    let folded = fold(host);
    let matches_any = |list: &str| {
        acl_content.get(list).and_then(Value::as_array).is_some_and(|patterns| {
            patterns.iter().filter_map(Value::as_str).any(|p| Glob::new(p).matches_folded(&folded))
        })
    };
    if matches_any("deny") {
        return false;
    }
    matches_any("allow")
}

/// The server name without its port: `[v6]` keeps its brackets, as the
/// name is written; a bare IPv6 address (not a valid server name, but
/// seen) stays whole.
fn host_of(server_name: &str) -> &str {
    if server_name.starts_with('[') {
        return match server_name.find(']') {
            Some(end) => &server_name[..=end],
            None => server_name,
        };
    }
    if server_name.parse::<Ipv6Addr>().is_ok() {
        return server_name;
    }
    match server_name.rsplit_once(':') {
        Some((host, _port)) => host,
        None => server_name,
    }
}

/// An IPv4 literal, or an IPv6 one with or without brackets.
fn is_ip_literal(host: &str) -> bool {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    bare.parse::<Ipv4Addr>().is_ok() || bare.parse::<Ipv6Addr>().is_ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn deny_wins_over_allow() {
        let acl = json!({ "allow": ["*"], "deny": ["evil.com", "*.evil.com"] });
        assert!(allowed(&acl, "good.org"));
        assert!(!allowed(&acl, "evil.com"));
        assert!(!allowed(&acl, "sub.evil.com"));
        assert!(allowed(&acl, "notevil.com"), "`*.evil.com` needs the dot");
    }

    #[test]
    fn no_allow_denies_everyone() {
        assert!(!allowed(&json!({}), "example.org"));
        assert!(!allowed(&json!({ "deny": [] }), "example.org"));
        assert!(!allowed(&json!({ "allow": [] }), "example.org"));
        assert!(!allowed(&json!({ "allow": "*" }), "example.org"), "not an array: empty");
        assert!(!allowed(&json!("not an object"), "example.org"));
    }

    #[test]
    fn only_listed_servers_when_allow_is_narrow() {
        let acl = json!({ "allow": ["*.example.org", "matrix.org"] });
        assert!(allowed(&acl, "chat.example.org"));
        assert!(allowed(&acl, "matrix.org"));
        assert!(!allowed(&acl, "example.org"));
        assert!(!allowed(&acl, "matrix.org.evil.com"), "the whole name must match");
    }

    #[test]
    fn the_port_is_not_considered() {
        let acl = json!({ "allow": ["*"], "deny": ["evil.com"] });
        for name in ["evil.com", "evil.com:8448", "evil.com:1234"] {
            assert!(!allowed(&acl, name), "{name}");
        }
        let acl = json!({ "allow": ["good.org"] });
        assert!(allowed(&acl, "good.org:8448"));
        assert!(
            !allowed(&json!({ "allow": ["good.org:8448"] }), "good.org:8448"),
            "ports in patterns never match"
        );
    }

    #[test]
    fn globs_are_case_insensitive_with_star_and_question_mark() {
        let acl = json!({ "allow": ["Matrix.ORG", "s?.example.org", "a*b.net"] });
        assert!(allowed(&acl, "matrix.org"));
        assert!(allowed(&acl, "MATRIX.org"));
        assert!(allowed(&acl, "s1.example.org"));
        assert!(!allowed(&acl, "s12.example.org"), "? is exactly one character");
        assert!(!allowed(&acl, "s.example.org"));
        assert!(allowed(&acl, "ab.net"), "* may be empty");
        assert!(allowed(&acl, "axxxb.net"));
        let acl = json!({ "allow": ["*"], "deny": ["EVIL.*"] });
        assert!(!allowed(&acl, "evil.com"));
    }

    #[test]
    fn ip_literals_denied_only_when_false() {
        let open = json!({ "allow": ["*"] });
        let closed = json!({ "allow": ["*"], "allow_ip_literals": false });
        let not_bool = json!({ "allow": ["*"], "allow_ip_literals": "false" });
        for name in ["1.2.3.4", "1.2.3.4:8448", "[::1]", "[2001:db8::1]:8448"] {
            assert!(allowed(&open, name), "{name}: missing means true");
            assert!(!allowed(&closed, name), "{name}");
            assert!(allowed(&not_bool, name), "{name}: not a boolean means true");
        }
        assert!(allowed(&closed, "example.org"));
        assert!(allowed(&closed, "1.2.3.4.example.org"), "a DNS name that starts with digits");
        assert!(allowed(&json!({ "allow": ["*"], "allow_ip_literals": true }), "10.0.0.1"));
    }

    #[test]
    fn ip_literals_match_patterns_as_written() {
        let acl = json!({ "allow": ["*"], "deny": ["127.0.0.*", "[::1]"] });
        assert!(!allowed(&acl, "127.0.0.1:8448"));
        assert!(!allowed(&acl, "[::1]:8448"));
        assert!(allowed(&acl, "127.0.1.1"));
    }

    #[test]
    fn entries_that_are_not_strings_are_skipped() {
        let acl = json!({ "allow": [1, null, {"a": 1}, "ok.org"], "deny": [true] });
        assert!(allowed(&acl, "ok.org"));
        assert!(!allowed(&acl, "other.org"));
    }

    #[test]
    fn hosts_lose_their_port_only() {
        assert_eq!(host_of("example.org"), "example.org");
        assert_eq!(host_of("example.org:8448"), "example.org");
        assert_eq!(host_of("[::1]:8448"), "[::1]");
        assert_eq!(host_of("[::1]"), "[::1]");
        assert_eq!(host_of("::1"), "::1");
        assert_eq!(host_of("1.2.3.4:80"), "1.2.3.4");
    }
}
