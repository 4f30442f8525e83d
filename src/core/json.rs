//! How deeply JSON nests: the one limit on the nesting of what Hearth
//! stores, and a scanner that measures nesting in one pass over the text,
//! without parsing it (and so without recursion).
//!
//! The limit is applied twice, to the same number: to every request body
//! before it is parsed (`api::parse_json`), and to every event as it will be
//! stored, its whole PDU (`core::event`, for events built here and events
//! received). Everything stored is then readable again by serde_json,
//! whose parser refuses input nested 128 levels deep or more, even inside
//! the larger documents it is served in.

/// The deepest nesting of arrays and objects accepted in a request body
/// and in an event's PDU, counting the outermost object as 1: `{}` is 1,
/// `{"a":[1]}` is 2.
///
/// Why 64: serde_json, and with it ruma and matrix-rust-sdk, refuses any
/// document nested 128 levels deep (127 is its last good depth: its
/// recursion limit is 128), and stored JSON is served inside
/// other documents. An event sits 6 levels down in `/sync`
/// (`rooms.join.{id}.timeline.events[i]`); its client form carries the
/// previous state's content one level below its own content
/// (`unsigned.prev_content`) and a redaction event two levels below
/// (`unsigned.redacted_because.content`), so an event of depth 64 is at
/// most 6 + 64 + 2 = 72 deep in a sync answer; account data and to-device
/// content sit 4 to 6 levels down. That leaves more than 50 levels for
/// envelopes not yet built (federation transactions, `/search` results,
/// relation aggregations) while being far beyond what any real event or
/// account data needs (a few levels). Bodies and PDUs share the number:
/// an event's content is one level inside its PDU, so the largest content
/// a client can send is 63 deep, and a body at exactly 64 passes the body
/// check but makes a PDU one too deep, which is refused too.
pub const DEPTH_MAX: usize = 64;

/// The deepest nesting of `[` and `{` in JSON text, outside strings (a
/// backslash escapes the next byte inside a string). Linear in the length;
/// it validates nothing else, so malformed text still gets a number, and
/// closing brackets beyond the opening ones count as nothing.
pub fn depth(text: &[u8]) -> usize {
    let mut deepest = 0;
    let mut open = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in text {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                open += 1;
                deepest = deepest.max(open);
            }
            b']' | b'}' => open = open.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// True if `text` nests deeper than [`DEPTH_MAX`].
pub fn too_deep(text: &[u8]) -> bool {
    depth(text) > DEPTH_MAX
}

/// Why a text is not accepted as a JSON document.
#[derive(Debug, Clone, PartialEq)]
pub enum ParseError {
    /// It nests deeper than [`DEPTH_MAX`] (this deep).
    TooDeep(usize),
    /// It is not JSON at all.
    NotJson,
}

/// Parses a JSON document whose nesting is checked first (a linear scan),
/// so that whatever is stored from it can be read back inside larger
/// documents and the parser never recurses past the limit.
pub fn parse(text: &[u8]) -> Result<serde_json::Value, ParseError> {
    let depth = depth(text);
    if depth > DEPTH_MAX {
        return Err(ParseError::TooDeep(depth));
    }
    serde_json::from_slice(text).map_err(|_| ParseError::NotJson)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// `levels` objects, one inside the other: `{"a":{"a":…1}}`.
    fn nested(levels: usize) -> String {
        format!("{}1{}", "{\"a\":".repeat(levels), "}".repeat(levels))
    }

    #[test]
    fn scalars_and_flat_documents() {
        for (text, expected) in [
            ("", 0),
            ("1", 0),
            ("\"x\"", 0),
            ("null", 0),
            ("{}", 1),
            ("[]", 1),
            ("{\"a\":1,\"b\":[]}", 2),
            ("[[],[],{}]", 2),
            ("[[[]],[]]", 3),
            (" { \"a\" : [ { } ] } ", 3),
        ] {
            assert_eq!(depth(text.as_bytes()), expected, "{text}");
        }
    }

    #[test]
    fn nesting_counts_objects_and_arrays() {
        assert_eq!(depth(nested(1).as_bytes()), 1);
        assert_eq!(depth(nested(127).as_bytes()), 127);
        let arrays = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(depth(arrays.as_bytes()), 200);
        let mixed = "{\"a\":[{\"b\":[[1]]}]}";
        assert_eq!(depth(mixed.as_bytes()), 5);
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        assert_eq!(depth(br#"{"a":"[[[{{{"}"#), 1);
        assert_eq!(depth(br#"["]]]]", ["x"]]"#), 2);
        assert_eq!(depth(br#"{"[{":"}]"}"#), 1);
    }

    #[test]
    fn escaped_quotes_do_not_end_strings() {
        // `\"` stays inside the string, so the brackets after it are text.
        assert_eq!(depth(br#"{"a":"\"[[[["}"#), 1);
        // `\\` is a whole escape: the quote after it does end the string.
        assert_eq!(depth(br#"{"a":"\\",  "b":[[1]]}"#), 3);
        assert_eq!(depth(br#"["\\\"[[", [[]]]"#), 3);
        // A unicode escape is just text.
        assert_eq!(depth(br#"{"\u005b":"\u007b"}"#), 1);
    }

    #[test]
    fn agrees_with_serde_json_on_what_it_writes() {
        let docs = [
            json!({"a": [1, {"b": "[{\"}"}], "c": {"d": {"e": []}}}),
            json!([["\\"], {"x": "\\\"]"}, [[[null]]]]),
            json!({"body": "quote \" and backslash \\ and brackets ]}[{"}),
        ];
        fn value_depth(v: &Value) -> usize {
            match v {
                Value::Array(items) => 1 + items.iter().map(value_depth).max().unwrap_or(0),
                Value::Object(map) => 1 + map.values().map(value_depth).max().unwrap_or(0),
                _ => 0,
            }
        }
        for doc in docs {
            let text = serde_json::to_string(&doc).expect("serialisable");
            assert_eq!(depth(text.as_bytes()), value_depth(&doc), "{text}");
        }
    }

    #[test]
    fn malformed_text_still_gets_a_number() {
        assert_eq!(depth(b"]]]}}}"), 0);
        assert_eq!(depth(b"]]][[["), 3);
        assert_eq!(depth(b"{\"unterminated"), 1);
        assert_eq!(depth(&[0xff, b'[', 0xc3, 0xa9, b'[']), 2);
    }

    #[test]
    fn the_limit() {
        assert!(!too_deep(nested(DEPTH_MAX).as_bytes()));
        assert!(too_deep(nested(DEPTH_MAX + 1).as_bytes()));
        // What serde_json reads back: the limit leaves it room.
        let at_limit = nested(DEPTH_MAX);
        assert!(serde_json::from_str::<Value>(&at_limit).is_ok());
        // And its own limit is where the doc comment says it is.
        assert!(serde_json::from_str::<Value>(&nested(127)).is_ok());
        assert!(serde_json::from_str::<Value>(&nested(128)).is_err());
    }
}
