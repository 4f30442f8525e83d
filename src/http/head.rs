//! The request head: finding where it ends in the bytes a connection has
//! sent, and parsing it, within named limits. Pure: bytes in, a parsed head
//! or the status to refuse it with out.
//!
//! The limits are what an attacker meets first, before any handler runs:
//! a request line longer than `REQUEST_LINE_BYTES_MAX` is a 414, a header
//! line longer than `HEADER_LINE_BYTES_MAX`, a head longer than
//! `HEAD_BYTES_MAX` or more than `HEADERS_MAX` headers is a 431. The scan is
//! incremental (`Scan` remembers where it stopped), so a head that trickles
//! in a byte at a time costs linear time, not quadratic.
//!
//! A header whose value is not ASCII (a legitimate UTF-8 `User-Agent:
//! café`) is left out: the request is still answered, and a header Hearth
//! reads that is left out this way is simply missing (an `Authorization`
//! becomes a 401).

use tiny_http::{HTTPVersion, Header, Method};

/// Longest request line (method, target, version), in bytes.
pub const REQUEST_LINE_BYTES_MAX: usize = 8 * 1024;
/// Longest header line, in bytes.
pub const HEADER_LINE_BYTES_MAX: usize = 8 * 1024;
/// Longest head (request line and headers), in bytes.
pub const HEAD_BYTES_MAX: usize = 64 * 1024;
/// Most header lines in one head.
pub const HEADERS_MAX: usize = 100;

/// Why a head is refused: the status and the message of the JSON error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub errcode: &'static str,
    pub message: &'static str,
}

const LINE_TOO_LONG: Refusal =
    Refusal { status: 414, errcode: "M_TOO_LARGE", message: "The request line is too long" };
const HEADER_TOO_LONG: Refusal =
    Refusal { status: 431, errcode: "M_TOO_LARGE", message: "A request header is too long" };
const HEAD_TOO_LARGE: Refusal =
    Refusal { status: 431, errcode: "M_TOO_LARGE", message: "The request headers are too large" };
const TOO_MANY_HEADERS: Refusal =
    Refusal { status: 431, errcode: "M_TOO_LARGE", message: "Too many request headers" };
const MALFORMED: Refusal =
    Refusal { status: 400, errcode: "M_UNRECOGNIZED", message: "Malformed HTTP request" };
const BAD_LENGTH: Refusal =
    Refusal { status: 400, errcode: "M_UNRECOGNIZED", message: "Invalid Content-Length" };
const BAD_FRAMING: Refusal = Refusal {
    status: 400,
    errcode: "M_UNRECOGNIZED",
    message: "Content-Length and Transfer-Encoding together, or an unknown transfer coding",
};
const BAD_VERSION: Refusal =
    Refusal { status: 505, errcode: "M_UNRECOGNIZED", message: "Only HTTP/1.0 and HTTP/1.1 are served" };
const BAD_EXPECT: Refusal =
    Refusal { status: 417, errcode: "M_UNRECOGNIZED", message: "Only Expect: 100-continue is understood" };

/// Where the scan of a connection's buffer stopped.
#[derive(Debug, Default, Clone)]
pub struct Scan {
    /// Bytes examined so far.
    pos: usize,
    /// Start of the line being scanned.
    line_start: usize,
    /// Complete lines seen (the request line included).
    lines: usize,
}

impl Scan {
    /// Looks at what arrived since the last call: `Ok(Some(n))` when the
    /// head is complete and is the first `n` bytes of `buf`, `Ok(None)` when
    /// more is needed, or the refusal once a limit is passed. Empty lines
    /// before the request line are skipped (RFC 9112 §2.2).
    pub fn advance(&mut self, buf: &[u8]) -> Result<Option<usize>, Refusal> {
        while self.pos < buf.len() {
            let Some(nl) = buf[self.pos..].iter().position(|&b| b == b'\n') else {
                self.pos = buf.len();
                break;
            };
            let end = self.pos + nl;
            let line = strip_cr(&buf[self.line_start..end]);
            self.pos = end + 1;
            if self.pos > HEAD_BYTES_MAX {
                return Err(HEAD_TOO_LARGE);
            }
            if line.is_empty() {
                if self.lines == 0 {
                    // Stray CRLF before the request line.
                    self.line_start = self.pos;
                    continue;
                }
                return Ok(Some(self.pos));
            }
            self.check_line(line.len())?;
            self.line_start = self.pos;
            self.lines += 1;
        }
        // The line still open counts against the limits too.
        let open = strip_cr(&buf[self.line_start..self.pos]);
        if !open.is_empty() {
            self.check_line(open.len())?;
        }
        if self.pos > HEAD_BYTES_MAX {
            return Err(HEAD_TOO_LARGE);
        }
        Ok(None)
    }

    /// Checks one line of content (not the empty line ending the head)
    /// that would be line number `self.lines` (0: the request line).
    fn check_line(&self, len: usize) -> Result<(), Refusal> {
        if self.lines == 0 && len > REQUEST_LINE_BYTES_MAX {
            return Err(LINE_TOO_LONG);
        }
        if self.lines > 0 && len > HEADER_LINE_BYTES_MAX {
            return Err(HEADER_TOO_LONG);
        }
        if self.lines > HEADERS_MAX {
            return Err(TOO_MANY_HEADERS);
        }
        Ok(())
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// How the body of a request is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// No body, or `Content-Length: 0`.
    None,
    Length(u64),
    Chunked,
}

/// A parsed request head.
#[derive(Debug)]
pub struct Head {
    pub method: Method,
    pub target: String,
    pub version: HTTPVersion,
    /// The headers, in order, those with non-ASCII values left out.
    pub headers: Vec<Header>,
    pub body: Body,
    /// The client sent `Expect: 100-continue`.
    pub expects_continue: bool,
    /// Another request may follow on this connection.
    pub keep_alive: bool,
}

/// Parses a complete head (as delimited by [`Scan::advance`]).
pub fn parse(head: &[u8]) -> Result<Head, Refusal> {
    let mut lines = head.split(|&b| b == b'\n').map(strip_cr).skip_while(|l| l.is_empty());
    let request_line = lines.next().ok_or(MALFORMED)?;
    let (method, target, version) = parse_request_line(request_line)?;
    let mut headers = Vec::new();
    for line in lines.take_while(|l| !l.is_empty()) {
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            // Obsolete line folding: refused, as RFC 9112 §5.2 allows.
            return Err(MALFORMED);
        }
        let colon = line.iter().position(|&b| b == b':').ok_or(MALFORMED)?;
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.is_empty() || !name.iter().all(|&b| is_token(b)) {
            return Err(MALFORMED);
        }
        if !value.is_ascii() {
            continue;
        }
        headers.push(Header::from_bytes(name, value).map_err(|()| MALFORMED)?);
    }
    let find = |name: &'static str| headers.iter().filter(move |h| h.field.equiv(name));
    let mut length: Option<u64> = None;
    for h in find("Content-Length") {
        let s = h.value.as_str();
        let n = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse::<u64>().map_err(|_| BAD_LENGTH)?
        } else {
            return Err(BAD_LENGTH);
        };
        if length.is_some_and(|m| m != n) {
            return Err(BAD_LENGTH);
        }
        length = Some(n);
    }
    let mut transfer = find("Transfer-Encoding").peekable();
    let chunked = if transfer.peek().is_some() {
        // Only `chunked` alone is understood; a length beside it is a
        // request-smuggling shape and refused.
        let all_chunked = transfer.all(|h| h.value.as_str().trim().eq_ignore_ascii_case("chunked"));
        if !all_chunked || length.is_some() || find("Transfer-Encoding").count() > 1 {
            return Err(BAD_FRAMING);
        }
        true
    } else {
        false
    };
    let body = match (chunked, length) {
        (true, _) => Body::Chunked,
        (false, None | Some(0)) => Body::None,
        (false, Some(n)) => Body::Length(n),
    };
    let expects_continue = match find("Expect").next() {
        None => false,
        Some(h) if h.value.as_str().eq_ignore_ascii_case("100-continue") => true,
        Some(_) => return Err(BAD_EXPECT),
    };
    let connection = find("Connection").map(|h| h.value.as_str().to_ascii_lowercase()).collect::<Vec<_>>();
    let says = |token: &str| connection.iter().any(|v| v.split(',').any(|t| t.trim() == token));
    let keep_alive = if says("close") || says("upgrade") {
        false
    } else if version == HTTPVersion(1, 0) {
        says("keep-alive")
    } else {
        true
    };
    Ok(Head { method, target, version, headers, body, expects_continue, keep_alive })
}

fn parse_request_line(line: &[u8]) -> Result<(Method, String, HTTPVersion), Refusal> {
    let line = std::str::from_utf8(line).map_err(|_| MALFORMED)?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(MALFORMED);
    };
    if method.is_empty() || !method.bytes().all(is_token) || target.is_empty() {
        return Err(MALFORMED);
    }
    let method: Method = method.parse().map_err(|_| MALFORMED)?;
    let version = match version {
        "HTTP/1.1" => HTTPVersion(1, 1),
        "HTTP/1.0" => HTTPVersion(1, 0),
        v if v.starts_with("HTTP/") => return Err(BAD_VERSION),
        _ => return Err(MALFORMED),
    };
    Ok((method, target.to_owned(), version))
}

/// RFC 9110 `tchar`.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(bytes: &[u8]) -> Result<Option<usize>, Refusal> {
        Scan::default().advance(bytes)
    }

    #[test]
    fn finds_the_end_incrementally() {
        let req = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nrest";
        let mut scan = Scan::default();
        for i in 1..req.len() {
            let got = scan.advance(&req[..i]).expect("within limits");
            if i < 28 {
                assert_eq!(got, None, "at {i}");
            } else {
                assert_eq!(got, Some(28));
                break;
            }
        }
        assert_eq!(scan_all(b"\r\n\r\nGET / HTTP/1.1\n\n"), Ok(Some(20)));
    }

    #[test]
    fn limits() {
        let long_line = [b"GET /".as_slice(), &vec![b'a'; REQUEST_LINE_BYTES_MAX]].concat();
        assert_eq!(scan_all(&long_line).unwrap_err().status, 414);
        let long_header = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &vec![b'a'; HEADER_LINE_BYTES_MAX]].concat();
        assert_eq!(scan_all(&long_header).unwrap_err().status, 431);
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=HEADERS_MAX {
            many.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
        }
        assert_eq!(scan_all(&many).unwrap_err(), TOO_MANY_HEADERS);
        let mut big = b"GET / HTTP/1.1\r\n".to_vec();
        while big.len() <= HEAD_BYTES_MAX {
            big.extend_from_slice(format!("X: {}\r\n", "b".repeat(4000)).as_bytes());
        }
        // Fewer than HEADERS_MAX lines, each within its limit, too much in all.
        assert_eq!(scan_all(&big).unwrap_err(), HEAD_TOO_LARGE);
        // Exactly at the limits is fine.
        let at =
            [b"GET /".as_slice(), &vec![b'a'; REQUEST_LINE_BYTES_MAX - 14], b" HTTP/1.1\r\n\r\n"].concat();
        assert!(matches!(scan_all(&at), Ok(Some(_))));
    }

    #[test]
    fn parses_and_frames() {
        let h =
            parse(b"POST /x?y=1 HTTP/1.1\r\nContent-Length: 12\r\nUser-Agent: caf\xc3\xa9\r\nA:  b \r\n\r\n")
                .expect("valid");
        assert_eq!(h.method, Method::Post);
        assert_eq!(h.target, "/x?y=1");
        assert_eq!(h.body, Body::Length(12));
        assert!(h.keep_alive);
        assert!(!h.headers.iter().any(|h| h.field.equiv("User-Agent")), "non-ASCII header left out");
        assert_eq!(h.headers.iter().find(|h| h.field.equiv("A")).map(|h| h.value.as_str()), Some("b"));
        let h = parse(b"GET / HTTP/1.0\r\n\r\n").expect("valid");
        assert!(!h.keep_alive);
        let h = parse(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").expect("valid");
        assert!(h.keep_alive);
        let h = parse(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").expect("valid");
        assert!(!h.keep_alive);
        let h = parse(b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n")
            .expect("ok");
        assert_eq!(h.body, Body::Chunked);
        assert!(h.expects_continue);
    }

    #[test]
    fn refuses_bad_heads() {
        for bad in [
            &b"GET /\r\n\r\n"[..],
            b"GET  / HTTP/1.1\r\n\r\n",
            b"G(T / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nNo colon\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad name: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"GET /\xff HTTP/1.1\r\n\r\n",
        ] {
            let got = parse(bad);
            assert!(got.is_err(), "{:?} accepted", String::from_utf8_lossy(bad));
            assert_eq!(got.unwrap_err().status, 400, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse(b"GET / HTTP/2.0\r\n\r\n").unwrap_err().status, 505);
        assert_eq!(parse(b"GET / HTTP/1.1\r\nExpect: magic\r\n\r\n").unwrap_err().status, 417);
    }
}
