//! Where outbound requests may go: the address policy and the URL check.
//! Pure: no I/O, no clock.
//!
//! Requests made on behalf of users (a pusher's gateway URL, later a
//! remote server name or an appservice URL) must not reach the server's
//! own network: loopback, private and link-local ranges, shared (CGNAT)
//! space, unique-local IPv6, multicast, unspecified and documentation
//! addresses, and IPv6 forms that embed an IPv4 address (v4-mapped,
//! v4-compatible, NAT64, 6to4), which are judged by that IPv4 address.
//! `outbound_allow_private = true` lifts the policy (and allows plain
//! `http://`) for gateways on a LAN and for tests.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// True for addresses on the public internet, the only ones outbound
/// requests may connect to unless private addresses are allowed.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(v4: Ipv4Addr) -> bool {
    let o = v4.octets();
    !(o[0] == 0 // "this network", 0.0.0.0 included
        || v4.is_private() // 10/8, 172.16/12, 192.168/16
        || v4.is_loopback() // 127/8
        || v4.is_link_local() // 169.254/16
        || v4.is_broadcast()
        || v4.is_multicast() // 224/4
        || v4.is_documentation() // 192.0.2/24, 198.51.100/24, 203.0.113/24
        || (o[0] == 100 && (64..128).contains(&o[1])) // shared address space (CGNAT), 100.64/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments, 192.0.0/24
        || (o[0] == 198 && (18..20).contains(&o[1])) // benchmarking, 198.18/15
        || o[0] >= 240) // reserved, 240/4
}

fn is_public_v6(v6: Ipv6Addr) -> bool {
    let s = v6.segments();
    // Forms that carry an IPv4 address are as public as that address.
    if let Some(v4) = v6.to_ipv4_mapped() {
        return is_public_v4(v4); // ::ffff:a.b.c.d
    }
    if s[..6] == [0; 6] {
        return false; // ::, ::1 and the deprecated v4-compatible ::a.b.c.d
    }
    let low_v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_public_v4(low_v4); // NAT64, 64:ff9b::/96
    }
    if s[0] == 0x2002 {
        // 6to4, 2002::/16: the IPv4 address follows the prefix.
        let v4 = Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
        return is_public_v4(v4);
    }
    !(v6.is_multicast() // ff00::/8
        || (s[0] & 0xfe00) == 0xfc00 // unique local, fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local, fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated), fec0::/10
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation, 2001:db8::/32
        || (s[0] == 0x3fff && s[1] < 0x1000) // documentation, 3fff::/20
        || (s[0] == 0x0100 && s[1..4] == [0, 0, 0]) // discard, 100::/64
        || (s[0] == 0x2001 && s[1] == 0)) // Teredo, 2001::/32
}

/// Why a URL was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not `https://` (or `http://` when private addresses are allowed).
    Scheme,
    /// No host, or one with user info or spaces.
    Host,
    /// The host is an IP address that is not public.
    Address,
}

impl Refusal {
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Scheme => "must be an https:// URL",
            Refusal::Host => "has no valid host",
            Refusal::Address => "must be at a public address",
        }
    }
}

/// The parts of an outbound URL the policy looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    /// The host and optional port as written (`host`, `host:port`, `[v6]:port`).
    pub authority: &'a str,
    /// The path and query, `""` or starting with `/`.
    pub path: &'a str,
}

/// Checks a URL before anything is sent to it: `https://` (or `http://`
/// when `allow_private`), a host without user info, and, for a host given
/// as an IP address, a public one unless `allow_private`. A host given by
/// name is checked again where it matters, on every address it resolves
/// to (`client::Client`).
pub fn check_url(url: &str, allow_private: bool) -> Result<Target<'_>, Refusal> {
    let rest = if let Some(r) = url.strip_prefix("https://") {
        r
    } else if let Some(r) = url.strip_prefix("http://").filter(|_| allow_private) {
        r
    } else {
        return Err(Refusal::Scheme);
    };
    let (authority, path) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    if authority.is_empty()
        || authority.contains('@')
        || authority.contains(|c: char| c.is_whitespace() || c.is_control())
    {
        return Err(Refusal::Host);
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, _)) => h,
            None => return Err(Refusal::Host),
        }
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    if host.is_empty() {
        return Err(Refusal::Host);
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        if !allow_private && !is_public(ip) {
            return Err(Refusal::Address);
        }
    }
    Ok(Target { authority, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(ip: &str) -> bool {
        is_public(ip.parse().unwrap_or_else(|_| panic!("{ip} parses")))
    }

    #[test]
    fn every_refused_range_is_refused() {
        for ip in [
            // IPv4: this network, private, loopback, link-local, CGNAT,
            // IETF, benchmarking, documentation, multicast, reserved,
            // broadcast, unspecified.
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.254",
            "192.168.1.1",
            "127.0.0.1",
            "127.8.9.10",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "192.0.0.8",
            "198.18.0.1",
            "198.19.255.255",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            // IPv6: unspecified, loopback, v4-compatible, link-local,
            // site-local, unique local, multicast, documentation, discard,
            // Teredo.
            "::",
            "::1",
            "::10.0.0.1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "ff0e::1",
            "2001:db8::1",
            "3fff::1",
            "3fff:fff::1",
            "100::1",
            "2001::1",
            // IPv4 inside IPv6: mapped, NAT64, 6to4.
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "::ffff:100.64.0.1",
            "64:ff9b::10.0.0.1",
            "64:ff9b::7f00:1",
            "2002:c0a8:0101::1",
            "2002:7f00:0001::1",
        ] {
            assert!(!public(ip), "{ip} must be refused");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.0.1.1",
            "198.17.255.255",
            "198.20.0.1",
            "223.255.255.254",
            "2a00:1450:4001::1",
            "2606:4700::1111",
            "2001:4860:4860::8888",
            "3ffe::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:0808:0808::1",
        ] {
            assert!(public(ip), "{ip} must be allowed");
        }
    }

    #[test]
    fn urls() {
        fn ok(u: &str, allow: bool) -> Result<Target<'_>, Refusal> {
            check_url(u, allow)
        }
        assert_eq!(
            ok("https://push.example.org:8443/_matrix/push/v1/notify", false),
            Ok(Target { authority: "push.example.org:8443", path: "/_matrix/push/v1/notify" })
        );
        assert_eq!(ok("https://h", false), Ok(Target { authority: "h", path: "" }));
        assert_eq!(ok("http://push.example.org/x", false), Err(Refusal::Scheme));
        assert!(ok("http://127.0.0.1:9/x", true).is_ok());
        assert_eq!(ok("ftp://x/y", true), Err(Refusal::Scheme));
        assert_eq!(ok("https://127.0.0.1/x", false), Err(Refusal::Address));
        assert_eq!(ok("https://[::1]:80/x", false), Err(Refusal::Address));
        assert_eq!(ok("https://[::ffff:10.0.0.1]/x", false), Err(Refusal::Address));
        assert_eq!(ok("https://10.1.2.3/x", false), Err(Refusal::Address));
        assert!(ok("https://[2a00:1450::1]:443/x", false).is_ok());
        assert_eq!(ok("https://user@host/x", false), Err(Refusal::Host));
        assert_eq!(ok("https:///x", false), Err(Refusal::Host));
        assert_eq!(ok("https://[::1/x", false), Err(Refusal::Host));
        assert_eq!(ok("https://ho st/x", false), Err(Refusal::Host));
        assert_eq!(ok("https://:443/x", false), Err(Refusal::Host));
    }
}
