//! Pagination tokens: points *between* the events of the global stream,
//! as Synapse's tokens are and as clients assume (paging back and then
//! forward from the same token sees every event exactly once).
//!
//! - A plain `s{p}` is the point just before stream position `p`: the
//!   events at positions `< p` lie behind it, those `>= p` ahead. This is
//!   what `/messages`, `/context`, the initial syncs' `start` and sync's
//!   `prev_batch` (`s{first.pos}`) hand out.
//! - A sync token `s{p}_{…}` (`next_batch`, `end` of the initial syncs) is
//!   the point just after `p`: "everything through `p`".
//!
//! [`point`] reads both as the position the point follows ("everything
//! through it"), so callers compare with one rule: behind the point are
//! the positions `<= point(t)`, ahead those `> point(t)`. Before there were
//! points, a plain `s{p}` excluded event `p` both ways; read now, such an
//! old token is the point before `p`, which is what it meant going
//! backwards (the way clients use a `prev_batch` or a backward `end`).

/// `s{pos}`: as a plain token, the point just before position `pos`;
/// followed by `_…` (a sync token), the point just after it.
pub fn at(pos: i64) -> String {
    format!("s{pos}")
}

/// The plain token for the point just before position `pos`.
pub fn before(pos: i64) -> String {
    at(pos)
}

/// The plain token for the point just after position `pos` (the point
/// before the next one).
pub fn after(pos: i64) -> String {
    at(pos.saturating_add(1))
}

/// The stream position a token's digits name (`s{pos}` or `s{pos}_…`),
/// or `None` if it is not a token. This is the number only: what it means
/// depends on the form, which [`point`] applies.
pub fn parse(token: &str) -> Option<i64> {
    let digits = token.strip_prefix('s')?;
    let digits = digits.split('_').next()?;
    // History that arrived by backfill sits at negative positions.
    let unsigned = digits.strip_prefix('-').unwrap_or(digits);
    if unsigned.is_empty() || unsigned.len() > 18 || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The position a token's point follows: everything through it is behind
/// the point, everything past it ahead. A plain `s{p}` gives `p - 1`, a
/// sync token `s{p}_…` gives `p`. `None` if it is not a token.
pub fn point(token: &str) -> Option<i64> {
    let pos = parse(token)?;
    Some(if token.contains('_') { pos } else { pos - 1 })
}

#[cfg(test)]
mod tests {
    use super::{after, before, parse, point};

    #[test]
    fn points_round_trip_and_garbage() {
        assert_eq!(point(&before(42)), Some(41));
        assert_eq!(point(&after(42)), Some(42));
        assert_eq!(point("s0"), Some(-1));
        assert_eq!(point("s7_1_2"), Some(7));
        assert_eq!(parse("s7_1_2"), Some(7));
        assert_eq!(parse("s7"), Some(7));
        assert_eq!(parse("s-12"), Some(-12), "backfilled history");
        for bad in ["", "s", "42", "s-", "s--1", "s+1", "sx", "s_1", "s99999999999999999999"] {
            assert_eq!(parse(bad), None, "{bad}");
            assert_eq!(point(bad), None, "{bad}");
        }
    }
}
