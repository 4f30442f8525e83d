//! The `X-Matrix` Authorization scheme of federation requests (the
//! Server-Server API, "Request Authentication"). Pure: no I/O, no clock.
//!
//! A request is signed by wrapping its method, target (path and query as
//! sent, starting with `/_matrix/`), origin, destination and JSON body (if
//! any) in an object and signing that with the JSON signing algorithm;
//! the signature travels in the header:
//!
//! ```text
//! Authorization: X-Matrix origin="a.example",destination="b.example",key="ed25519:k",sig="…"
//! ```
//!
//! The header's syntax is RFC 9110's `auth-param` list: `name=value`
//! pairs separated by commas with optional whitespace, each value a token
//! or a quoted string (with `\` escapes). Names are case-insensitive;
//! unknown ones are ignored; a name given twice is refused (which one
//! counts would be a guess).

use serde_json::{json, Value};

use crate::crypto::sign::{verify_json, ServerKey};

/// The longest header value considered at all.
pub const HEADER_BYTES_MAX: usize = 4096;

/// The parsed credentials of one `X-Matrix` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub origin: String,
    /// Absent in requests of servers older than spec v1.3.
    pub destination: Option<String>,
    pub key: String,
    pub sig: String,
}

/// Why a header was not understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Another scheme, or no parameters at all.
    Scheme,
    /// Not an `auth-param` list.
    Syntax(&'static str),
    /// A parameter given twice.
    Repeated(String),
    /// `origin`, `key` or `sig` missing.
    Missing(&'static str),
    TooLong,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::Scheme => write!(f, "the Authorization header is not of the X-Matrix scheme"),
            ParseError::Syntax(what) => write!(f, "the X-Matrix header is malformed: {what}"),
            ParseError::Repeated(name) => write!(f, "the X-Matrix header gives `{name}` twice"),
            ParseError::Missing(name) => write!(f, "the X-Matrix header has no `{name}`"),
            ParseError::TooLong => write!(f, "the X-Matrix header is too long"),
        }
    }
}

/// RFC 9110 `tchar`.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// Parses an Authorization header value of the `X-Matrix` scheme.
pub fn parse(value: &str) -> Result<Credentials, ParseError> {
    if value.len() > HEADER_BYTES_MAX {
        return Err(ParseError::TooLong);
    }
    let v = value.trim_matches([' ', '\t']);
    let (scheme, rest) = v.split_once([' ', '\t']).ok_or(ParseError::Scheme)?;
    if !scheme.eq_ignore_ascii_case("X-Matrix") {
        return Err(ParseError::Scheme);
    }
    let b = rest.as_bytes();
    let mut i = 0;
    let (mut origin, mut destination, mut key, mut sig) = (None, None, None, None);
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t') {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        // Empty list elements (`a=1,,b=2`) are allowed by the list rule.
        if i < b.len() && b[i] == b',' {
            i += 1;
            continue;
        }
        if i >= b.len() {
            break;
        }
        let start = i;
        while i < b.len() && is_tchar(b[i]) {
            i += 1;
        }
        if i == start {
            return Err(ParseError::Syntax("a parameter name is missing"));
        }
        let name = rest[start..i].to_ascii_lowercase();
        skip_ws(&mut i);
        if i >= b.len() || b[i] != b'=' {
            return Err(ParseError::Syntax("a parameter has no `=`"));
        }
        i += 1;
        skip_ws(&mut i);
        let value = if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut out = Vec::new();
            loop {
                match b.get(i) {
                    None => return Err(ParseError::Syntax("a quoted value is not closed")),
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') => match b.get(i + 1) {
                        Some(&c) if c == b'\t' || c == b' ' || (0x21..0x7f).contains(&c) || c >= 0x80 => {
                            out.push(c);
                            i += 2;
                        }
                        _ => return Err(ParseError::Syntax("a bad escape in a quoted value")),
                    },
                    Some(&c) if c == b'\t' || c == b' ' || (0x21..0x7f).contains(&c) || c >= 0x80 => {
                        out.push(c);
                        i += 1;
                    }
                    Some(_) => return Err(ParseError::Syntax("a control character in a quoted value")),
                }
            }
            String::from_utf8(out).map_err(|_| ParseError::Syntax("a quoted value is not UTF-8"))?
        } else {
            let start = i;
            // Unquoted: a token (base64 signatures and `ed25519:k` key
            // IDs are not tokens, so `:`, `/` and `=` are taken too, as
            // servers send them unquoted in practice).
            while i < b.len() && (is_tchar(b[i]) || b":/=".contains(&b[i])) {
                i += 1;
            }
            if i == start {
                return Err(ParseError::Syntax("a parameter has an empty value"));
            }
            rest[start..i].to_owned()
        };
        let slot = match name.as_str() {
            "origin" => Some(&mut origin),
            "destination" => Some(&mut destination),
            "key" => Some(&mut key),
            "sig" => Some(&mut sig),
            _ => None,
        };
        if let Some(slot) = slot {
            if slot.is_some() {
                return Err(ParseError::Repeated(name));
            }
            *slot = Some(value);
        }
        skip_ws(&mut i);
        match b.get(i) {
            None => break,
            Some(b',') => i += 1,
            Some(_) => return Err(ParseError::Syntax("parameters must be separated by commas")),
        }
    }
    Ok(Credentials {
        origin: origin.ok_or(ParseError::Missing("origin"))?,
        destination,
        key: key.ok_or(ParseError::Missing("key"))?,
        sig: sig.ok_or(ParseError::Missing("sig"))?,
    })
}

/// The object whose signature is the request's: method, target, origin,
/// destination and, when the request has a body, its JSON `content`.
pub fn signed_object(
    method: &str,
    uri: &str,
    origin: &str,
    destination: &str,
    content: Option<&Value>,
) -> Value {
    let mut v = json!({ "method": method, "uri": uri, "origin": origin, "destination": destination });
    if let Some(c) = content {
        v["content"] = c.clone();
    }
    v
}

/// Quotes a parameter value (escaping `"` and `\`).
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The Authorization header value signing a request from `origin` (with
/// `key`) to `destination`.
pub fn authorization(
    key: &ServerKey,
    origin: &str,
    destination: &str,
    method: &str,
    uri: &str,
    content: Option<&Value>,
) -> Result<String, crate::crypto::canonical::CanonicalError> {
    let sig = key.sign_detached(&signed_object(method, uri, origin, destination, content))?;
    Ok(format!(
        "X-Matrix origin={},destination={},key={},sig={}",
        quoted(origin),
        quoted(destination),
        quoted(key.key_id()),
        quoted(&sig)
    ))
}

/// Verifies `creds` for a request received by `destination` (ours; the
/// caller has checked a `destination` the sender named is ours too)
/// against the origin's ed25519 public key.
pub fn verify(
    creds: &Credentials,
    public_key: &[u8; 32],
    destination: &str,
    method: &str,
    uri: &str,
    content: Option<&Value>,
) -> bool {
    let mut obj = signed_object(method, uri, &creds.origin, destination, content);
    obj["signatures"] = json!({ &creds.origin: { &creds.key: &creds.sig } });
    verify_json(&obj, &creds.origin, &creds.key, public_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(origin: &str, destination: Option<&str>, key: &str, sig: &str) -> Credentials {
        Credentials {
            origin: origin.to_owned(),
            destination: destination.map(str::to_owned),
            key: key.to_owned(),
            sig: sig.to_owned(),
        }
    }

    #[test]
    fn the_specs_example_header_parses() {
        let h = r#"X-Matrix origin="origin.hs.example.com",destination="destination.hs.example.com",key="ed25519:key1",sig="ABCDEF...""#;
        assert_eq!(
            parse(h),
            Ok(creds(
                "origin.hs.example.com",
                Some("destination.hs.example.com"),
                "ed25519:key1",
                "ABCDEF..."
            ))
        );
    }

    #[test]
    fn header_edge_cases() {
        // Unquoted values, spaces around `=` and `,`, any case of names
        // and scheme, unknown parameters, no destination (pre-v1.3).
        let h = "x-matrix  Origin = a.example:8448 , KEY=ed25519:k1,sig=abc/+def=,extra=\"x\"";
        assert_eq!(parse(h), Ok(creds("a.example:8448", None, "ed25519:k1", "abc/+def=")));
        // Escapes inside quotes.
        let h = r#"X-Matrix origin="a\"b",key="k\\1",sig="s""#;
        assert_eq!(parse(h), Ok(creds("a\"b", None, "k\\1", "s")));
        // Empty list elements are skipped.
        assert!(parse("X-Matrix ,origin=a,,key=k,sig=s,").is_ok());
        // IPv6 literal origins are quoted (`[` is not a token character).
        assert_eq!(parse(r#"X-Matrix origin="[::1]:8448",key=k,sig=s"#).unwrap().origin, "[::1]:8448");
        for bad in [
            "Bearer abc",
            "X-Matrix",
            "X-Matrixorigin=a",
            "X-Matrix origin=\"a,key=k,sig=s",
            "X-Matrix origin=a key=k sig=s",
            "X-Matrix origin=,key=k,sig=s",
            "X-Matrix =a,key=k,sig=s",
            "X-Matrix origin=a,key=k",
            "X-Matrix key=k,sig=s",
            "X-Matrix origin=a,origin=b,key=k,sig=s",
            "X-Matrix origin=\"a\u{1}\",key=k,sig=s",
            "X-Matrix origin=\"a\\\u{1}\",key=k,sig=s",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} must be refused");
        }
        assert_eq!(parse(&format!("X-Matrix origin={}", "a".repeat(5000))), Err(ParseError::TooLong));
    }

    #[test]
    fn a_signed_request_verifies_and_a_changed_one_does_not() {
        let key = ServerKey::from_seed("ed25519:1", &[7; 32]);
        let body = json!({ "pdus": [], "edus": [] });
        let h = authorization(
            &key,
            "a.example",
            "b.example",
            "PUT",
            "/_matrix/federation/v1/send/1",
            Some(&body),
        )
        .expect("signed");
        let c = parse(&h).expect("our own header parses");
        assert_eq!(c.destination.as_deref(), Some("b.example"));
        let pk = key.public_key();
        assert!(verify(&c, &pk, "b.example", "PUT", "/_matrix/federation/v1/send/1", Some(&body)));
        assert!(!verify(&c, &pk, "c.example", "PUT", "/_matrix/federation/v1/send/1", Some(&body)));
        assert!(!verify(&c, &pk, "b.example", "POST", "/_matrix/federation/v1/send/1", Some(&body)));
        assert!(!verify(&c, &pk, "b.example", "PUT", "/_matrix/federation/v1/send/2", Some(&body)));
        assert!(!verify(&c, &pk, "b.example", "PUT", "/_matrix/federation/v1/send/1", None));
        assert!(!verify(&c, &pk, "b.example", "PUT", "/_matrix/federation/v1/send/1", Some(&json!({}))));
        let other = ServerKey::from_seed("ed25519:1", &[8; 32]);
        assert!(!verify(
            &c,
            &other.public_key(),
            "b.example",
            "PUT",
            "/_matrix/federation/v1/send/1",
            Some(&body)
        ));
        // A GET has no content member at all.
        let h = authorization(&key, "a.example", "b.example", "GET", "/_matrix/federation/v1/version", None)
            .unwrap();
        assert!(verify(&parse(&h).unwrap(), &pk, "b.example", "GET", "/_matrix/federation/v1/version", None));
    }

    #[test]
    fn the_signed_object_is_the_specs() {
        let v = signed_object(
            "POST",
            "/target",
            "origin.hs.example.com",
            "destination.hs.example.com",
            Some(&json!({"signed": "json"})),
        );
        assert_eq!(
            v,
            json!({"method": "POST", "uri": "/target", "origin": "origin.hs.example.com",
                   "destination": "destination.hs.example.com", "content": {"signed": "json"}})
        );
    }
}
