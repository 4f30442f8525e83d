//! Matrix canonical JSON, as defined in the spec appendix "Canonical JSON".
//!
//! This module owns the exact byte form that signatures and hashes are
//! computed over: object keys sorted by codepoint, no insignificant
//! whitespace, UTF-8 left unescaped except for `"`, `\` and control
//! characters, and numbers restricted to integers in the interoperable range.
//! It only writes JSON; parsing is left to `serde_json`.

use std::fmt::{self, Write as _};

use serde_json::{Map, Number, Value};

/// The largest integer canonical JSON allows, 2^53 - 1.
pub const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// The smallest integer canonical JSON allows, -(2^53) + 1.
pub const MIN_SAFE_INTEGER: i64 = -MAX_SAFE_INTEGER;

/// Why a value has no canonical form, or cannot be signed or hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CanonicalError {
    /// An integer lies outside [-(2^53)+1, 2^53-1].
    IntegerOutOfRange,
    /// A number has a fractional part, or is not finite.
    NonIntegralNumber,
    /// The operation needs a JSON object, such as a signed object or an event.
    NotAnObject,
}

impl fmt::Display for CanonicalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CanonicalError::IntegerOutOfRange => {
                "integer outside the canonical JSON range of -(2^53)+1 to 2^53-1"
            }
            CanonicalError::NonIntegralNumber => "canonical JSON allows only integer numbers",
            CanonicalError::NotAnObject => "expected a JSON object",
        })
    }
}

impl std::error::Error for CanonicalError {}

/// Returns the canonical JSON text of `v`.
pub fn to_canonical(v: &Value) -> Result<String, CanonicalError> {
    to_canonical_excluding(v, &[])
}

/// Returns the canonical JSON of `v` as UTF-8 bytes, ready to sign or hash.
pub fn to_canonical_bytes(v: &Value) -> Result<Vec<u8>, CanonicalError> {
    to_canonical(v).map(String::into_bytes)
}

/// Returns the canonical JSON text of `v` as if the top-level keys in `skip`
/// were absent.
///
/// Signing and hashing both work on an object with a few top-level keys
/// removed (`signatures`, `unsigned`, `hashes`); skipping them while writing
/// avoids copying the whole object first. Keys are only skipped at the top
/// level, and only when `v` is an object.
pub fn to_canonical_excluding(v: &Value, skip: &[&str]) -> Result<String, CanonicalError> {
    let mut out = String::new();
    match v {
        Value::Object(map) => write_object(map, skip, &mut out)?,
        other => write_value(other, &mut out)?,
    }
    Ok(out)
}

/// Appends the canonical form of any value.
///
/// Recursion depth follows the nesting of `v`; values parsed by `serde_json`
/// are limited to 128 levels, which bounds the stack used here.
fn write_value(v: &Value, out: &mut String) -> Result<(), CanonicalError> {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(n, out)?,
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out)?;
            }
            out.push(']');
        }
        Value::Object(map) => write_object(map, &[], out)?,
    }
    Ok(())
}

/// Appends an object with its keys in codepoint order, leaving out `skip`.
fn write_object(map: &Map<String, Value>, skip: &[&str], out: &mut String) -> Result<(), CanonicalError> {
    // The map is usually already sorted, but serde_json's `preserve_order`
    // feature can be switched on by any crate in the build, so sort here.
    // Byte order of UTF-8 strings equals codepoint order.
    let mut entries: Vec<(&String, &Value)> =
        map.iter().filter(|(k, _)| !skip.contains(&k.as_str())).collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push('{');
    for (i, (key, value)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(key, out);
        out.push(':');
        write_value(value, out)?;
    }
    out.push('}');
    Ok(())
}

/// Appends a number, which must be an integer in the safe range.
///
/// A float with an integral value, such as `1e10` or `-0.0`, is written as
/// that integer, as the spec's examples require.
fn write_number(n: &Number, out: &mut String) -> Result<(), CanonicalError> {
    let i = if let Some(i) = n.as_i64() {
        i
    } else if n.is_u64() {
        // Only values above i64::MAX are not also i64, so it is too large.
        return Err(CanonicalError::IntegerOutOfRange);
    } else {
        let f = n.as_f64().ok_or(CanonicalError::NonIntegralNumber)?;
        if !f.is_finite() || f.fract() != 0.0 {
            return Err(CanonicalError::NonIntegralNumber);
        }
        if f.abs() > MAX_SAFE_INTEGER as f64 {
            return Err(CanonicalError::IntegerOutOfRange);
        }
        // The value is integral and within 2^53, so the cast is exact.
        f as i64
    };
    if !(MIN_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&i) {
        return Err(CanonicalError::IntegerOutOfRange);
    }
    // Writing to a String cannot fail.
    let _ = write!(out, "{i}");
    Ok(())
}

/// Appends a quoted string with the minimal escaping canonical JSON allows.
fn write_string(s: &str, out: &mut String) {
    out.push('"');
    // Every byte that needs escaping is ASCII, and ASCII bytes never occur
    // inside a multi-byte UTF-8 sequence, so scanning bytes and copying the
    // runs between escapes keeps the UTF-8 intact.
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            0x0c => "\\f",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{:04x}", b);
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const VECTORS: &str = include_str!("../../tests/data/spec-vectors.json");

    #[test]
    fn spec_canonical_json_vectors() {
        let v: Value = serde_json::from_str(VECTORS).expect("the spec vectors file is valid JSON");
        let cases = v["canonical_json"].as_array().expect("a list of cases");
        assert!(!cases.is_empty());
        for case in cases {
            let text = case["input_text"].as_str().expect("input_text is a string");
            let expected = case["canonical"].as_str().expect("canonical is a string");
            let parsed: Value = serde_json::from_str(text).expect("input_text is valid JSON");
            assert_eq!(to_canonical(&parsed).as_deref(), Ok(expected), "input: {text}");
            assert_eq!(to_canonical_bytes(&parsed), Ok(expected.as_bytes().to_vec()));
        }
    }

    #[test]
    fn integer_bounds() {
        assert_eq!(to_canonical(&json!(MAX_SAFE_INTEGER)).as_deref(), Ok("9007199254740991"));
        assert_eq!(to_canonical(&json!(MIN_SAFE_INTEGER)).as_deref(), Ok("-9007199254740991"));
        for bad in ["9007199254740992", "-9007199254740992", "18446744073709551615", "1e300"] {
            let v: Value = serde_json::from_str(bad).expect("valid JSON");
            assert_eq!(to_canonical(&v), Err(CanonicalError::IntegerOutOfRange), "{bad}");
        }
        let nested = json!({"a": [{"b": u64::MAX}]});
        assert_eq!(to_canonical(&nested), Err(CanonicalError::IntegerOutOfRange));
    }

    #[test]
    fn floats() {
        for (text, canonical) in [("1e10", "10000000000"), ("-0.0", "0"), ("2.0", "2"), ("-3e2", "-300")] {
            let v: Value = serde_json::from_str(text).expect("valid JSON");
            assert_eq!(to_canonical(&v).as_deref(), Ok(canonical), "{text}");
        }
        for bad in ["1.5", "-0.25", "1e-3", "{\"a\":[0.1]}"] {
            let v: Value = serde_json::from_str(bad).expect("valid JSON");
            assert_eq!(to_canonical(&v), Err(CanonicalError::NonIntegralNumber), "{bad}");
        }
    }

    #[test]
    fn escaping() {
        let v = json!({"k": "a\"b\\c\u{8}\u{c}\n\r\t\u{0}\u{1f}\u{7f}é日/"});
        assert_eq!(
            to_canonical(&v).as_deref(),
            Ok("{\"k\":\"a\\\"b\\\\c\\b\\f\\n\\r\\t\\u0000\\u001f\u{7f}é日/\"}")
        );
        let key = json!({"\u{1}\"": 1});
        assert_eq!(to_canonical(&key).as_deref(), Ok("{\"\\u0001\\\"\":1}"));
        // Every control character is escaped, never passed through.
        for c in 0u8..0x20 {
            let s = to_canonical(&Value::String(char::from(c).to_string())).expect("a string");
            assert!(s.bytes().all(|b| b >= 0x20), "control {c:#x} leaked: {s:?}");
        }
    }

    #[test]
    fn keys_sort_by_codepoint_and_nesting_is_kept() {
        let v = json!({"b": [3, {"z": null, "a": true}], "B": false, "a": {}, "\u{e9}": 1, "\u{1f600}": 2, "\u{ffff}": 3});
        assert_eq!(
            to_canonical(&v).as_deref(),
            Ok("{\"B\":false,\"a\":{},\"b\":[3,{\"a\":true,\"z\":null}],\"\u{e9}\":1,\"\u{ffff}\":3,\"\u{1f600}\":2}")
        );
    }

    #[test]
    fn scalars_and_exclusions() {
        assert_eq!(to_canonical(&json!("x")).as_deref(), Ok("\"x\""));
        assert_eq!(to_canonical(&json!([])).as_deref(), Ok("[]"));
        let v = json!({"signatures": {}, "unsigned": {"age": 1}, "a": {"unsigned": 1}});
        assert_eq!(
            to_canonical_excluding(&v, &["signatures", "unsigned"]).as_deref(),
            Ok("{\"a\":{\"unsigned\":1}}")
        );
    }
}
