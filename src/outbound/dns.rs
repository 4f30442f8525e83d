//! SRV lookups (RFC 2782) without a resolver crate: a small synchronous
//! DNS client, bounded everywhere, for server discovery's
//! `_matrix-fed._tcp.<host>` records. The addresses of names are still
//! found by the system resolver (`ToSocketAddrs`, in `client`); only SRV,
//! which the standard library cannot ask for, is asked here.
//!
//! The nameservers are the first `NAMESERVERS_MAX` of `/etc/resolv.conf`
//! (none → the lookup fails, it does not guess one). One question is sent
//! over UDP with a random 16-bit ID and recursion desired; an attempt
//! waits `SERVER_TIMEOUT`, and at most `ATTEMPTS_MAX` attempts are made,
//! taking the servers in turn. A datagram that is not the answer to this
//! question (another ID, another question, not a response) is dropped and
//! the wait goes on (at most `DATAGRAMS_MAX` of them). An answer with the
//! TC bit is asked again over TCP, once, within `TCP_TIMEOUT`. No EDNS:
//! answers over 512 bytes come by TCP.
//!
//! Parsing is bounded: names follow at most `POINTER_HOPS_MAX`
//! compression pointers and are at most `NAME_BYTES_MAX` long, at most
//! `RECORDS_MAX` records are kept, and every length is checked against
//! the packet, so a hostile or broken packet is an error, never a panic
//! or a loop. SRV records are kept for the name asked and for the names
//! a CNAME in the same answer leads to (at most `CNAME_HOPS_MAX`).
//!
//! Results: NXDOMAIN or no SRV record → an empty list; a record whose
//! target is `.` ("decidedly not available", RFC 2782) → an empty list;
//! otherwise the records sorted by priority (lowest first), then weight
//! (highest first). RFC 2782's random choice weighted among records of
//! one priority is not made: a caller trying them in order reaches the
//! heaviest first, the same one every time, which for federation (one
//! request at a time per destination) is what matters. A failure (no
//! nameserver, every attempt timed out, SERVFAIL, a malformed answer) is
//! an error, so a caller can tell "no record" from "could not ask".

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};

/// Where the nameservers are read from.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";
/// Nameservers used at most (as the C library's `MAXNS`).
pub const NAMESERVERS_MAX: usize = 3;
/// How long one UDP attempt waits for its answer.
pub const SERVER_TIMEOUT: Duration = Duration::from_secs(2);
/// Attempts made at most, over all nameservers in turn.
pub const ATTEMPTS_MAX: usize = 4;
/// Bound on the one TCP exchange after a truncated answer.
pub const TCP_TIMEOUT: Duration = Duration::from_secs(4);
/// Datagrams that are not the answer dropped at most per attempt.
pub const DATAGRAMS_MAX: usize = 16;
/// Compression pointers followed at most in one name.
pub const POINTER_HOPS_MAX: usize = 16;
/// A name's length at most, on the wire (RFC 1035).
pub const NAME_BYTES_MAX: usize = 255;
/// A label's length at most (RFC 1035).
const LABEL_BYTES_MAX: usize = 63;
/// SRV records kept at most from one answer.
pub const RECORDS_MAX: usize = 32;
/// CNAMEs followed at most within one answer.
pub const CNAME_HOPS_MAX: usize = 8;
/// The most of `/etc/resolv.conf` read.
const RESOLV_CONF_BYTES_MAX: u64 = 64 * 1024;
/// The receive buffer: 512 bytes is all a server sends without EDNS;
/// more is read (and parsed) if a server sends it anyway.
const UDP_BUFFER_BYTES: usize = 4096;

const TYPE_CNAME: u16 = 5;
const TYPE_SRV: u16 = 33;
const CLASS_IN: u16 = 1;
const FLAG_QR: u16 = 0x8000;
const FLAG_TC: u16 = 0x0200;
const FLAG_RD: u16 = 0x0100;
const RCODE_NXDOMAIN: u16 = 3;

/// One SRV record: connect to `target:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// A host name, in lower case, without the final dot.
    pub target: String,
}

/// The SRV records of `name`, asking the nameservers of `/etc/resolv.conf`.
pub fn srv(name: &str) -> Result<Vec<SrvRecord>> {
    srv_with(name, &nameservers())
}

/// The SRV records of `name`, asking `servers` (see the module
/// documentation for the attempts and the result).
pub fn srv_with(name: &str, servers: &[SocketAddr]) -> Result<Vec<SrvRecord>> {
    lookup(name, servers, SERVER_TIMEOUT)
}

/// The first `NAMESERVERS_MAX` nameservers of `/etc/resolv.conf`; none if
/// it cannot be read.
pub fn nameservers() -> Vec<SocketAddr> {
    let Ok(file) = std::fs::File::open(RESOLV_CONF) else { return Vec::new() };
    let mut text = String::new();
    if file.take(RESOLV_CONF_BYTES_MAX).read_to_string(&mut text).is_err() {
        return Vec::new();
    }
    parse_resolv_conf(&text)
}

/// The `nameserver` lines of a resolv.conf, port 53, the first
/// `NAMESERVERS_MAX`. An IPv6 address with a zone (`fe80::1%eth0`) is
/// skipped: the standard library cannot name its interface.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let line = line.split(['#', ';']).next().unwrap_or_default();
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("nameserver"), Some(address)) => address.parse::<IpAddr>().ok(),
                _ => None,
            }
        })
        .map(|ip| SocketAddr::new(ip, 53))
        .take(NAMESERVERS_MAX)
        .collect()
}

fn dns_error(message: String) -> Error {
    Error::new(ErrorKind::Unknown, message)
}

fn lookup(name: &str, servers: &[SocketAddr], timeout: Duration) -> Result<Vec<SrvRecord>> {
    if servers.is_empty() {
        return Err(dns_error(format!("SRV {name}: no nameserver (none in {RESOLV_CONF})")));
    }
    let question = encode_name(name)?;
    let mut last = String::new();
    for attempt in 0..ATTEMPTS_MAX {
        let server = servers[attempt % servers.len()];
        let id = random_id()?;
        let query = query_packet(id, &question);
        let outcome = match ask_udp(server, &query, id, name, timeout) {
            Ok(Reply::Truncated) => ask_tcp(server, &query, id, name),
            other => other,
        };
        match outcome {
            Ok(Reply::Records(mut records)) => {
                records.sort_by(|a, b| {
                    (a.priority, b.weight, &a.target, a.port).cmp(&(b.priority, a.weight, &b.target, b.port))
                });
                return Ok(records);
            }
            Ok(Reply::Truncated) => last = format!("{server}: truncated over TCP"),
            Err(e) => last = format!("{server}: {e}"),
        }
    }
    Err(dns_error(format!("SRV {name}: no answer ({last})")))
}

fn random_id() -> Result<u16> {
    let mut id = [0u8; 2];
    getrandom::getrandom(&mut id).map_err(|e| Error::internal(format!("random DNS query ID: {e}")))?;
    Ok(u16::from_be_bytes(id))
}

/// What one exchange gave.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Records(Vec<SrvRecord>),
    Truncated,
}

/// Why a packet gave no reply.
#[derive(Debug, PartialEq, Eq)]
enum Fault {
    /// Not the answer to this question: dropped, the wait goes on.
    NotOurs,
    /// The answer, but unusable (malformed, or the server failed).
    Failed(String),
}

fn ask_udp(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    name: &str,
    timeout: Duration,
) -> Result<Reply, String> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).map_err(|e| format!("binding: {e}"))?;
    // Connected: the kernel drops datagrams from any other address.
    socket.connect(server).map_err(|e| format!("connecting: {e}"))?;
    socket.send(query).map_err(|e| format!("sending: {e}"))?;
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; UDP_BUFFER_BYTES];
    for _ in 0..DATAGRAMS_MAX {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        socket.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                break;
            }
            Err(e) => return Err(format!("receiving: {e}")),
        };
        match parse_reply(&buf[..n], id, name) {
            Ok(reply) => return Ok(reply),
            Err(Fault::NotOurs) => continue,
            Err(Fault::Failed(why)) => return Err(why),
        }
    }
    Err(format!("no answer within {timeout:?}"))
}

fn ask_tcp(server: SocketAddr, query: &[u8], id: u16, name: &str) -> Result<Reply, String> {
    let deadline = Instant::now() + TCP_TIMEOUT;
    let mut stream =
        TcpStream::connect_timeout(&server, TCP_TIMEOUT).map_err(|e| format!("connecting over TCP: {e}"))?;
    stream.set_write_timeout(Some(TCP_TIMEOUT)).map_err(|e| e.to_string())?;
    let length = u16::try_from(query.len()).map_err(|_| "query too long".to_owned())?;
    let mut framed = length.to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    stream.write_all(&framed).map_err(|e| format!("sending over TCP: {e}"))?;
    let mut length = [0u8; 2];
    read_exact_by(&mut stream, &mut length, deadline)?;
    let mut packet = vec![0u8; usize::from(u16::from_be_bytes(length))];
    read_exact_by(&mut stream, &mut packet, deadline)?;
    match parse_reply(&packet, id, name) {
        Ok(reply) => Ok(reply),
        Err(Fault::NotOurs) => Err("the TCP answer is not for this question".to_owned()),
        Err(Fault::Failed(why)) => Err(why),
    }
}

/// `read_exact`, but all of it before `deadline`.
fn read_exact_by(stream: &mut TcpStream, mut buf: &mut [u8], deadline: Instant) -> Result<(), String> {
    while !buf.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("no TCP answer within {TCP_TIMEOUT:?}"));
        }
        stream.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
        match stream.read(buf) {
            Ok(0) => return Err("the TCP answer was cut off".to_owned()),
            Ok(n) => buf = &mut buf[n..],
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("receiving over TCP: {e}")),
        }
    }
    Ok(())
}

/// `name` in wire form (labels, then the zero byte). Labels are letters,
/// digits, `-` and `_`; one final dot is allowed.
fn encode_name(name: &str) -> Result<Vec<u8>> {
    let bad = |why: &str| Error::invalid_param(format!("cannot look up {name:?}: {why}"));
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() {
        return Err(bad("empty name"));
    }
    let mut wire = Vec::with_capacity(trimmed.len() + 2);
    for label in trimmed.split('.') {
        if label.is_empty() || label.len() > LABEL_BYTES_MAX {
            return Err(bad("a label is empty or longer than 63 bytes"));
        }
        if !label.bytes().all(is_name_byte) {
            return Err(bad("a label holds a character not allowed in a host name"));
        }
        wire.push(label.len() as u8);
        wire.extend_from_slice(label.as_bytes());
    }
    wire.push(0);
    if wire.len() > NAME_BYTES_MAX {
        return Err(bad("longer than 255 bytes"));
    }
    Ok(wire)
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// A query: the header (ID, RD, one question) and the question (SRV, IN).
fn query_packet(id: u16, question: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + question.len() + 4);
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&FLAG_RD.to_be_bytes());
    p.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // QD 1, AN 0, NS 0, AR 0
    p.extend_from_slice(question);
    p.extend_from_slice(&TYPE_SRV.to_be_bytes());
    p.extend_from_slice(&CLASS_IN.to_be_bytes());
    p
}

fn failed(why: &str) -> Fault {
    Fault::Failed(why.to_owned())
}

fn u16_at(p: &[u8], at: usize) -> Result<u16, Fault> {
    match p.get(at..at + 2) {
        Some(&[a, b]) => Ok(u16::from_be_bytes([a, b])),
        _ => Err(failed("the answer is cut short")),
    }
}

/// The name at `at`: in lower case, labels joined by dots, `""` for the
/// root; and where the bytes after it start. Compression pointers are
/// followed at most `POINTER_HOPS_MAX` times.
fn read_name(p: &[u8], mut at: usize) -> Result<(String, usize), Fault> {
    let mut name = String::new();
    let mut wire_len = 1; // the final zero byte
    let mut after = None;
    let mut hops = 0;
    loop {
        let len = *p.get(at).ok_or_else(|| failed("a name is cut short"))?;
        match len & 0xC0 {
            0x00 if len == 0 => {
                let end = after.unwrap_or(at + 1);
                return Ok((name, end));
            }
            0x00 => {
                let len = usize::from(len);
                let label = p.get(at + 1..at + 1 + len).ok_or_else(|| failed("a label is cut short"))?;
                wire_len += len + 1;
                if wire_len > NAME_BYTES_MAX {
                    return Err(failed("a name is longer than 255 bytes"));
                }
                if !label.iter().all(|&b| is_name_byte(b)) {
                    return Err(failed("a name holds a character not allowed in a host name"));
                }
                if !name.is_empty() {
                    name.push('.');
                }
                name.extend(label.iter().map(|&b| char::from(b.to_ascii_lowercase())));
                at += 1 + len;
            }
            0xC0 => {
                let low = *p.get(at + 1).ok_or_else(|| failed("a pointer is cut short"))?;
                hops += 1;
                if hops > POINTER_HOPS_MAX {
                    return Err(failed("too many compression pointers (a loop?)"));
                }
                after.get_or_insert(at + 2);
                at = (usize::from(len & 0x3F) << 8) | usize::from(low);
            }
            _ => return Err(failed("an unknown label type")),
        }
    }
}

/// The answer in `p` to the SRV question for `name` with `id`.
fn parse_reply(p: &[u8], id: u16, name: &str) -> Result<Reply, Fault> {
    if p.len() < 12 || u16_at(p, 0)? != id {
        return Err(Fault::NotOurs);
    }
    let flags = u16_at(p, 2)?;
    if flags & FLAG_QR == 0 || u16_at(p, 4)? != 1 {
        return Err(Fault::NotOurs);
    }
    let (asked, at) = read_name(p, 12).map_err(|_| Fault::NotOurs)?;
    let wanted = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if asked != wanted || u16_at(p, at).ok() != Some(TYPE_SRV) || u16_at(p, at + 2).ok() != Some(CLASS_IN) {
        return Err(Fault::NotOurs);
    }
    if flags & FLAG_TC != 0 {
        return Ok(Reply::Truncated);
    }
    match flags & 0x000F {
        0 => {}
        RCODE_NXDOMAIN => return Ok(Reply::Records(Vec::new())),
        rcode => return Err(Fault::Failed(format!("the server answered with error code {rcode}"))),
    }
    let answers = u16_at(p, 6)?;
    let mut at = at + 4;
    let mut cnames: Vec<(String, String)> = Vec::new();
    let mut srvs: Vec<(String, SrvRecord)> = Vec::new();
    for _ in 0..answers {
        let (owner, next) = read_name(p, at)?;
        let rtype = u16_at(p, next)?;
        let class = u16_at(p, next + 2)?;
        let rdlen = usize::from(u16_at(p, next + 8)?);
        let start = next + 10;
        let end = start + rdlen;
        if end > p.len() {
            return Err(failed("a record is cut short"));
        }
        at = end;
        if class != CLASS_IN {
            continue;
        }
        match rtype {
            TYPE_CNAME if cnames.len() < CNAME_HOPS_MAX => {
                let (target, after) = read_name(p, start)?;
                if after > end {
                    return Err(failed("a CNAME overruns its record"));
                }
                cnames.push((owner, target));
            }
            TYPE_SRV if srvs.len() < RECORDS_MAX => {
                if rdlen < 7 {
                    return Err(failed("an SRV record is too short"));
                }
                // RFC 2782 forbids compressing the target; servers do it
                // anyway, so pointers are followed.
                let (target, after) = read_name(p, start + 6)?;
                if after > end {
                    return Err(failed("an SRV target overruns its record"));
                }
                let record = SrvRecord {
                    priority: u16_at(p, start)?,
                    weight: u16_at(p, start + 2)?,
                    port: u16_at(p, start + 4)?,
                    target,
                };
                srvs.push((owner, record));
            }
            _ => {}
        }
    }
    // The names this answer is about: the one asked, and where its CNAMEs
    // lead.
    let mut names = vec![wanted];
    for _ in 0..CNAME_HOPS_MAX {
        let before = names.len();
        for (owner, target) in &cnames {
            if names.contains(owner) && !names.contains(target) {
                names.push(target.clone());
            }
        }
        if names.len() == before {
            break;
        }
    }
    let records: Vec<SrvRecord> =
        srvs.into_iter().filter(|(owner, _)| names.contains(owner)).map(|(_, r)| r).collect();
    if records.iter().any(|r| r.target.is_empty()) {
        return Ok(Reply::Records(Vec::new())); // "." : no service here
    }
    Ok(Reply::Records(records))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    const NAME: &str = "_matrix-fed._tcp.example.org";

    /// A response to `query` (its ID and question) with these flags and
    /// answer records.
    fn response(query: &[u8], flags: u16, answers: &[Vec<u8>]) -> Vec<u8> {
        let mut p = query[..2].to_vec();
        p.extend_from_slice(&(FLAG_QR | FLAG_RD | 0x0080 | flags).to_be_bytes());
        p.extend_from_slice(&[0, 1]);
        p.extend_from_slice(&(answers.len() as u16).to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0]);
        p.extend_from_slice(&query[12..]);
        for a in answers {
            p.extend_from_slice(a);
        }
        p
    }

    /// An SRV record owned by the name at offset 12 (the question's name,
    /// by a pointer) with this target in wire form.
    fn srv_rr(priority: u16, weight: u16, port: u16, target: &[u8]) -> Vec<u8> {
        rr(
            &[0xC0, 12],
            TYPE_SRV,
            &[&priority.to_be_bytes()[..], &weight.to_be_bytes(), &port.to_be_bytes(), target].concat(),
        )
    }

    fn rr(owner: &[u8], rtype: u16, rdata: &[u8]) -> Vec<u8> {
        let mut r = owner.to_vec();
        r.extend_from_slice(&rtype.to_be_bytes());
        r.extend_from_slice(&CLASS_IN.to_be_bytes());
        r.extend_from_slice(&300u32.to_be_bytes());
        r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        r.extend_from_slice(rdata);
        r
    }

    fn wire(name: &str) -> Vec<u8> {
        encode_name(name).expect("a valid name")
    }

    fn query(id: u16) -> Vec<u8> {
        query_packet(id, &wire(NAME))
    }

    fn record(priority: u16, weight: u16, port: u16, target: &str) -> SrvRecord {
        SrvRecord { priority, weight, port, target: target.to_owned() }
    }

    #[test]
    fn a_query_is_one_srv_question_with_recursion_desired() {
        let q = query(0xBEEF);
        assert_eq!(&q[..12], &[0xBE, 0xEF, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&q[12..], [&wire(NAME)[..], &[0, 33, 0, 1]].concat());
        assert_eq!(wire("a.b."), b"\x01a\x01b\x00");
        for bad in ["", ".", "a..b", "a b.c", "é.org", &format!("{}.org", "x".repeat(64))] {
            assert!(encode_name(bad).is_err(), "{bad:?}");
        }
        let long = vec!["abcdefghi"; 26].join("."); // 26 * 10 + 1 > 255
        assert!(encode_name(&long).is_err());
    }

    #[test]
    fn an_answer_with_a_compressed_target_is_read() {
        let q = query(7);
        // The first target is written out; the second points into the
        // question ("example.org" at offset 12 + 1 + 11 + 1 + 4).
        let suffix = 12 + 1 + "_matrix-fed".len() + 1 + "_tcp".len();
        let compressed = [&b"\x02hs"[..], &[0xC0, suffix as u8]].concat();
        let p = response(
            &q,
            0,
            &[srv_rr(10, 5, 8448, &wire("Matrix.Example.org")), srv_rr(10, 50, 443, &compressed)],
        );
        let Ok(Reply::Records(mut got)) = parse_reply(&p, 7, NAME) else { panic!("records expected") };
        got.sort_by_key(|r| r.port);
        assert_eq!(got, [record(10, 50, 443, "hs.example.org"), record(10, 5, 8448, "matrix.example.org")]);
    }

    #[test]
    fn nxdomain_no_records_and_the_root_target_are_no_service() {
        let q = query(1);
        assert_eq!(parse_reply(&response(&q, RCODE_NXDOMAIN, &[]), 1, NAME), Ok(Reply::Records(vec![])));
        assert_eq!(parse_reply(&response(&q, 0, &[]), 1, NAME), Ok(Reply::Records(vec![])));
        let dot = response(&q, 0, &[srv_rr(0, 0, 0, b"\x00")]);
        assert_eq!(parse_reply(&dot, 1, NAME), Ok(Reply::Records(vec![])));
        let servfail = response(&q, 2, &[]);
        assert!(matches!(parse_reply(&servfail, 1, NAME), Err(Fault::Failed(_))));
    }

    #[test]
    fn records_for_other_names_are_dropped_unless_a_cname_leads_there() {
        let q = query(3);
        let other =
            rr(&wire("other.example"), TYPE_SRV, &[&[0, 1, 0, 1, 0, 80][..], &wire("evil.example")].concat());
        let p = response(&q, 0, std::slice::from_ref(&other));
        assert_eq!(parse_reply(&p, 3, NAME), Ok(Reply::Records(vec![])));
        let cname = rr(&[0xC0, 12], TYPE_CNAME, &wire("other.example"));
        let p = response(&q, 0, &[cname, other]);
        assert_eq!(parse_reply(&p, 3, NAME), Ok(Reply::Records(vec![record(1, 1, 80, "evil.example")])));
    }

    #[test]
    fn the_tc_bit_means_truncated() {
        let q = query(9);
        assert_eq!(parse_reply(&response(&q, FLAG_TC, &[]), 9, NAME), Ok(Reply::Truncated));
    }

    #[test]
    fn packets_not_answering_this_question_are_not_ours() {
        let q = query(5);
        let good = response(&q, 0, &[]);
        assert_eq!(parse_reply(&good, 6, NAME), Err(Fault::NotOurs), "another ID");
        assert_eq!(parse_reply(&good, 5, "_matrix._tcp.example.org"), Err(Fault::NotOurs), "another name");
        assert_eq!(parse_reply(&q, 5, NAME), Err(Fault::NotOurs), "a query, not a response");
        assert_eq!(parse_reply(&good[..11], 5, NAME), Err(Fault::NotOurs), "shorter than a header");
        let mut other_type = good.clone();
        let at = other_type.len() - 4;
        other_type[at + 1] = 1; // type A
        assert_eq!(parse_reply(&other_type, 5, NAME), Err(Fault::NotOurs), "another type");
        // The name is compared without case and without a final dot.
        assert!(parse_reply(&good, 5, "_MATRIX-FED._tcp.Example.org.").is_ok());
    }

    #[test]
    fn pointer_loops_and_bad_pointers_are_errors() {
        let q = query(2);
        let at = response(&q, 0, &[]).len(); // where the answer starts
                                             // An owner name pointing at itself.
        let looping = response(&q, 0, &[rr(&[0xC0, at as u8], TYPE_SRV, &[0; 7])]);
        assert!(matches!(parse_reply(&looping, 2, NAME), Err(Fault::Failed(_))));
        // Two pointers pointing at each other, in a target.
        let rdata_at = at + 2 + 10 + 6;
        let ping_pong = [0xC0, (rdata_at + 2) as u8, 0xC0, rdata_at as u8];
        let p =
            response(&q, 0, &[rr(&[0xC0, 12], TYPE_SRV, &[&[0, 1, 0, 1, 0, 80][..], &ping_pong].concat())]);
        assert!(matches!(parse_reply(&p, 2, NAME), Err(Fault::Failed(_))));
        // A pointer past the end, and the reserved label types.
        for owner in [[0xC0, 0xFF], [0x80, 0x00], [0x40, 0x00]] {
            let p = response(&q, 0, &[rr(&owner, TYPE_SRV, &[0; 7])]);
            assert!(matches!(parse_reply(&p, 2, NAME), Err(Fault::Failed(_))), "{owner:?}");
        }
        // A name longer than 255 bytes through pointers: a 63-byte label
        // that points back to its own start is followed at most
        // POINTER_HOPS_MAX times, and the length check stops it first.
        let label_at = at;
        let mut long = vec![63];
        long.extend_from_slice(&[b'a'; 63]);
        long.extend_from_slice(&[0xC0, label_at as u8]);
        let p = response(&q, 0, &[rr(&long, TYPE_SRV, &[0; 7])]);
        let Err(Fault::Failed(why)) = parse_reply(&p, 2, NAME) else { panic!("an error expected") };
        assert!(why.contains("255"), "{why}");
    }

    #[test]
    fn a_packet_cut_anywhere_is_an_error_not_a_panic() {
        let q = query(4);
        let full =
            response(&q, 0, &[srv_rr(1, 2, 8448, &wire("hs.example.org")), srv_rr(1, 3, 8449, &[0xC0, 12])]);
        assert!(matches!(parse_reply(&full, 4, NAME), Ok(Reply::Records(r)) if r.len() == 2));
        for cut in 0..full.len() {
            assert!(parse_reply(&full[..cut], 4, NAME).is_err(), "cut at {cut}");
        }
        // An SRV record whose rdata is too short for its fields.
        let short = response(&q, 0, &[rr(&[0xC0, 12], TYPE_SRV, &[0, 1, 0, 1, 0])]);
        assert!(matches!(parse_reply(&short, 4, NAME), Err(Fault::Failed(_))));
        // A target running past its record's length.
        let over =
            response(&q, 0, &[rr(&[0xC0, 12], TYPE_SRV, &[&[0, 1, 0, 1, 0, 80][..], b"\x05abc"].concat())]);
        assert!(parse_reply(&over, 4, NAME).is_err());
    }

    #[test]
    fn resolv_conf_gives_the_first_three_nameservers() {
        let text = "# comment\nsearch example.org\nnameserver 10.0.0.1 # home\n\
                    nameserver ::1\nnameserver fe80::1%eth0\nnameserver bogus\n\
                    nameserver 9.9.9.9\nnameserver 8.8.8.8\n";
        let got = parse_resolv_conf(text);
        let want: Vec<SocketAddr> =
            ["10.0.0.1:53", "[::1]:53", "9.9.9.9:53"].iter().map(|s| s.parse().expect("addr")).collect();
        assert_eq!(got, want);
        assert!(parse_resolv_conf("").is_empty());
    }

    #[test]
    fn no_nameserver_fails_cleanly() {
        let e = srv_with(NAME, &[]).expect_err("no nameserver");
        assert!(e.message.contains("no nameserver"), "{}", e.message);
    }

    /// A DNS server on 127.0.0.1 answering each query with `answer`
    /// (given the query), after `noise` datagrams that are not answers.
    fn fake_udp(answer: impl Fn(&[u8]) -> Vec<u8> + Send + 'static, noise: bool) -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("binding");
        let addr = socket.local_addr().expect("address");
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = socket.recv_from(&mut buf) {
                let q = &buf[..n];
                if noise {
                    // Another ID, then a query echoed back: both dropped.
                    let mut wrong = answer(q);
                    wrong[0] ^= 0xFF;
                    let _ = socket.send_to(&wrong, from);
                    let _ = socket.send_to(q, from);
                }
                let _ = socket.send_to(&answer(q), from);
            }
        });
        addr
    }

    #[test]
    fn a_lookup_against_a_fake_server_sorts_the_records() {
        let server = fake_udp(
            |q| {
                response(
                    q,
                    0,
                    &[
                        srv_rr(20, 0, 1, &wire("backup.example.org")),
                        srv_rr(10, 10, 2, &wire("light.example.org")),
                        srv_rr(10, 90, 3, &wire("heavy.example.org")),
                    ],
                )
            },
            true,
        );
        let got = srv_with(NAME, &[server]).expect("answer");
        assert_eq!(
            got,
            [
                record(10, 90, 3, "heavy.example.org"),
                record(10, 10, 2, "light.example.org"),
                record(20, 0, 1, "backup.example.org"),
            ]
        );
    }

    #[test]
    fn a_silent_server_is_passed_over_for_the_next() {
        let silent = UdpSocket::bind("127.0.0.1:0").expect("binding");
        let answering = fake_udp(|q| response(q, RCODE_NXDOMAIN, &[]), false);
        let servers = [silent.local_addr().expect("address"), answering];
        assert_eq!(lookup(NAME, &servers, Duration::from_millis(100)).expect("the second answers"), []);
        let e = lookup(NAME, &servers[..1], Duration::from_millis(50)).expect_err("nobody answers");
        assert!(e.message.contains("no answer"), "{}", e.message);
    }

    #[test]
    fn a_truncated_answer_is_asked_again_over_tcp() {
        // UDP and TCP on the same port of 127.0.0.1.
        let (listener, udp) = (0..20)
            .find_map(|_| {
                let listener = TcpListener::bind("127.0.0.1:0").ok()?;
                let port = listener.local_addr().ok()?.port();
                Some((listener, UdpSocket::bind(("127.0.0.1", port)).ok()?))
            })
            .expect("a port free for both");
        let addr = udp.local_addr().expect("address");
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = udp.recv_from(&mut buf) {
                let _ = udp.send_to(&response(&buf[..n], FLAG_TC, &[]), from);
            }
        });
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut length = [0u8; 2];
                if stream.read_exact(&mut length).is_err() {
                    continue;
                }
                let mut q = vec![0u8; usize::from(u16::from_be_bytes(length))];
                if stream.read_exact(&mut q).is_err() {
                    continue;
                }
                let answers: Vec<Vec<u8>> =
                    (0..40).map(|i| srv_rr(0, i, 8000 + i, &wire(&format!("hs{i}.example.org")))).collect();
                let p = response(&q, 0, &answers);
                let _ = stream.write_all(&[&(p.len() as u16).to_be_bytes()[..], &p].concat());
            }
        });
        let got = srv_with(NAME, &[addr]).expect("answer over TCP");
        assert_eq!(got.len(), RECORDS_MAX, "40 records, at most RECORDS_MAX kept");
        assert_eq!(
            got[0],
            record(0, RECORDS_MAX as u16 - 1, 8000 + RECORDS_MAX as u16 - 1, "hs31.example.org")
        );
    }
}
