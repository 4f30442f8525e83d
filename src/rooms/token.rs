//! Pagination tokens. A token names a position of the global stream:
//! `s{pos}`. Sync tokens (which carry several streams) start with the same
//! `s{pos}` part, so `/messages` accepts a sync token as `from` too.

/// The token for a stream position.
pub fn at(pos: i64) -> String {
    format!("s{pos}")
}

/// The stream position a token names, or `None` if it is not a token.
pub fn parse(token: &str) -> Option<i64> {
    let digits = token.strip_prefix('s')?;
    let digits = digits.split('_').next()?;
    if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip_and_garbage() {
        assert_eq!(super::parse(&super::at(42)), Some(42));
        assert_eq!(super::parse("s7_1_2"), Some(7));
        for bad in ["", "s", "42", "s-1", "sx", "s99999999999999999999"] {
            assert_eq!(super::parse(bad), None, "{bad}");
        }
    }
}
