//! Pagination tokens: points *between* events, as Synapse's tokens are and
//! as clients assume (paging back and then forward from the same token
//! sees every event exactly once).
//!
//! Two orders meet here. `/sync` goes by the global stream position `pos`
//! (what arrived when; history that arrived by backfill sits at negative
//! positions, so it is never "new"). `/messages` and `/context` go by the
//! room's topological order, the key `(depth, pos)` ([`Key`]): an event's
//! depth, then its position among events of the same depth. In a linear
//! room the two orders agree; after a partition heals, the other side's
//! events arrive late (high `pos`) at their own, lower depths.
//!
//! **Stream tokens** (sync reads these and nothing else):
//!
//! - A plain `s{p}` is the point just before stream position `p`: the
//!   events at positions `< p` lie behind it, those `>= p` ahead. Sync's
//!   `prev_batch` (`s{first.pos}`) and the initial syncs' `start` are
//!   these.
//! - A sync token `s{p}_{…}` (`next_batch`, `end` of the initial syncs) is
//!   the point just after `p`: "everything through `p`".
//!
//! [`point`] reads both as the position the point follows ("everything
//! through it"). Before there were points, a plain `s{p}` excluded event
//! `p` both ways; read now, such an old token is the point before `p`,
//! which is what it meant going backwards.
//!
//! **Topological tokens** (`/messages` and `/context` hand these out and
//! take both kinds; [`Point`]). A point is the set of events *behind* it;
//! every other event is ahead. Going backwards a page lists the events
//! behind the point, newest key first; forwards those ahead, oldest key
//! first. Each page moves the point past the events it looked at, so the
//! events behind the new point are exactly those behind the old one less
//! (backwards) or plus (forwards) that page: nothing is lost or shown twice,
//! whatever the two orders do. The sets that arise are all of one shape,
//! "key at most `lo`, or key at most `hi` and position at most `q`":
//!
//! - `t{d}-{p}`: the point just after key `(d, p)` (`lo = hi`): the events
//!   with keys `<= (d, p)` are behind it. `/context`'s `start` and `end`,
//!   the `end` of pages from such a point, and of a forward page that
//!   passed `H` (below).
//! - `t{d}-{p}_{q}`: behind are the events with key `<= (d, p)` *and*
//!   position `<= q` (no `lo`). A backward page from a stream token ends
//!   here: paging back from a sync's `prev_batch` keeps to what that sync
//!   had not shown (positions before its timeline) all the way down, even
//!   where the timeline holds events of lower depth (a healed partition),
//!   and an event that arrives later with a low depth comes in the next
//!   sync, not in that pagination as well.
//! - `t{H}_{q}_{L}` (`H` is `{d}-{p}` or empty for no limit, `L` is
//!   `{d}-{p}` below `H`): behind are the events with key `<= L`, and those
//!   with key `<= H` and position `<= q`. A forward page from a stream or
//!   `_{q}` token ends here while the events it passed lie below `H`.
//! - A stream token is the point "position `<= q`" with no key limits.
//!
//! So a backward page from a stream token takes the events behind the
//! stream point in topological order (in a linear room: the same events,
//! in the same order, as paging by position did), and the bound on
//! positions stays in its tokens until a forward page passes `H`, where
//! the point becomes a plain `t{d}-{p}`. Synapse bounds only the first page
//! by position and then pages by `(depth, stream)` alone, which shows an
//! event twice when a sync timeline holds events of lower depth than the
//! history behind it; the extra parts here are what that costs.
//!
//! `/messages` without `from` starts backwards at the stream point of the
//! newest position (its `start` is that stream token) and forwards at
//! [`Point::START`]. A `to` is a point too: a page keeps to the events on
//! its near side.
//!
//! Depths are never negative (`core::event::check`), so [`Point::START`]
//! (before every event, the start of a forward read) is `t-1-0`.

use std::fmt;

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

/// Most digits of one number in a token: any more could overflow.
const DIGITS_MAX: usize = 18;

/// A signed decimal of at most [`DIGITS_MAX`] digits, nothing else.
fn integer(text: &str) -> Option<i64> {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    if unsigned.is_empty() || unsigned.len() > DIGITS_MAX || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The stream position a stream token's digits name (`s{pos}` or
/// `s{pos}_…`), or `None` if it is not one. This is the number only: what
/// it means depends on the form, which [`point`] applies.
pub fn parse(token: &str) -> Option<i64> {
    let digits = token.strip_prefix('s')?;
    // History that arrived by backfill sits at negative positions.
    integer(digits.split('_').next()?)
}

/// The position a stream token's point follows: everything through it is
/// behind the point, everything past it ahead. A plain `s{p}` gives
/// `p - 1`, a sync token `s{p}_…` gives `p`. `None` if it is not a stream
/// token (a topological one included: sync takes only these).
pub fn point(token: &str) -> Option<i64> {
    let pos = parse(token)?;
    Some(if token.contains('_') { pos } else { pos - 1 })
}

/// An event's place in the room's topological order: its depth, then its
/// stream position (unique, so no two events share a key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub depth: i64,
    pub pos: i64,
}

impl Key {
    /// Below every key.
    pub const MIN: Key = Key { depth: i64::MIN, pos: i64::MIN };
    /// Above every key.
    pub const MAX: Key = Key { depth: i64::MAX, pos: i64::MAX };

    pub fn new(depth: i64, pos: i64) -> Key {
        Key { depth, pos }
    }

    /// The greatest key below this one (positions are integers, so the
    /// keys `< self` are the keys `<= self.below()`).
    pub fn below(self) -> Key {
        Key { depth: self.depth, pos: self.pos.saturating_sub(1) }
    }

    /// The least key above this one.
    pub fn above(self) -> Key {
        Key { depth: self.depth, pos: self.pos.saturating_add(1) }
    }

    /// `{depth}-{pos}`.
    fn parse(text: &str) -> Option<Key> {
        // The depth may carry a sign; the separator is the first `-` after
        // its first digit.
        let split = text.bytes().skip(1).position(|b| b == b'-')? + 1;
        Some(Key { depth: integer(&text[..split])?, pos: integer(&text[split + 1..])? })
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.depth, self.pos)
    }
}

/// A point between a room's events, as a `/messages` token names it (the
/// module doc): behind it are the events with key `<= lo`, and those with
/// key `<= hi` (no limit if `None`) and position `<= through`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    lo: Option<Key>,
    hi: Option<Key>,
    through: i64,
}

impl Point {
    /// Before every event.
    pub const START: Point = Point::topological(Key { depth: -1, pos: 0 });

    /// The point just after key `k` in topological order.
    pub const fn topological(k: Key) -> Point {
        Point { lo: Some(k), hi: Some(k), through: i64::MAX }
    }

    /// The point just after stream position `through`: behind it is what
    /// arrived through it.
    pub fn stream(through: i64) -> Point {
        Point { lo: None, hi: None, through }
    }

    /// Reads a token of either kind; `None` if it is neither.
    pub fn parse(token: &str) -> Option<Point> {
        let Some(rest) = token.strip_prefix('t') else {
            return point(token).map(Point::stream);
        };
        let mut parts = rest.split('_');
        let hi = parts.next()?;
        let Some(through) = parts.next() else {
            return Key::parse(hi).map(Point::topological);
        };
        let hi = if hi.is_empty() { None } else { Some(Key::parse(hi)?) };
        let through = integer(through)?;
        let lo = parts.next().map(Key::parse);
        if parts.next().is_some() {
            return None;
        }
        let lo = match lo {
            None => None,
            Some(None) => return None,
            Some(Some(l)) if hi.is_some_and(|h| l > h) => return None,
            Some(Some(l)) if hi == Some(l) => return Some(Point::topological(l)),
            Some(Some(l)) => Some(l),
        };
        Some(Point { lo, hi, through })
    }

    /// The token for this point.
    pub fn token(&self) -> String {
        match (self.lo, self.hi) {
            (Some(l), Some(h)) if l == h => format!("t{l}"),
            (None, None) => after(self.through),
            (lo, hi) => {
                let hi = hi.map(|h| h.to_string()).unwrap_or_default();
                match lo {
                    Some(l) => format!("t{hi}_{}_{l}", self.through),
                    None => format!("t{hi}_{}", self.through),
                }
            }
        }
    }

    /// Is the event at `key` (stream position `key.pos`) behind the point?
    pub fn behind(&self, key: Key) -> bool {
        self.lo.is_some_and(|l| key <= l) || (self.hi.is_none_or(|h| key <= h) && key.pos <= self.through)
    }

    /// The exclusive key to start reading from in direction `backward` (or
    /// forward): every event behind the point has a key below the first,
    /// every event ahead a key above the second.
    pub fn cursor(&self, backward: bool) -> Key {
        if backward {
            self.hi.map_or(Key::MAX, Key::above)
        } else {
            self.lo.unwrap_or(Key::MIN)
        }
    }

    /// Which events are on the side of the point a read in direction
    /// `backward` (or forward) lists, once it reads from [`Point::cursor`]
    /// on: backwards those with key `<= .0` or position `<= .1` (behind),
    /// forwards those with key `> .0` or position `> .1` (ahead).
    pub fn side(&self, backward: bool) -> (Key, i64) {
        if backward {
            (self.lo.unwrap_or(Key::MIN), self.through)
        } else {
            (self.hi.unwrap_or(Key::MAX), self.through)
        }
    }

    /// The point once a backward read looked at the event at `key` (read
    /// from [`Point::cursor`] down): the events behind this point that
    /// are below `key`.
    pub fn back_past(self, key: Key) -> Point {
        match self.lo {
            Some(l) if key <= l => Point::topological(key.below()),
            Some(l) if key.below() == l => Point::topological(l),
            lo => Point { lo, hi: Some(key.below()), through: self.through },
        }
    }

    /// The point once a forward read looked at the event at `key` (read
    /// from [`Point::cursor`] up): the events behind this point and all
    /// those at or below `key`.
    pub fn forward_past(self, key: Key) -> Point {
        match self.hi {
            Some(h) if key >= h => Point::topological(key),
            hi => Point { lo: Some(key), hi, through: self.through },
        }
    }

    /// Does reading on past `key` in the direction (backward or not) only
    /// meet events on this point's own side? Backwards: every key `<= lo`
    /// is behind; forwards: no key above `hi` is.
    pub fn beyond(&self, key: Key, backward: bool) -> bool {
        if backward {
            self.lo.is_some_and(|l| key <= l)
        } else {
            self.hi.is_some_and(|h| key > h)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{after, before, parse, point, Key, Point};

    #[test]
    fn points_round_trip_and_garbage() {
        assert_eq!(point(&before(42)), Some(41));
        assert_eq!(point(&after(42)), Some(42));
        assert_eq!(point("s0"), Some(-1));
        assert_eq!(point("s7_1_2"), Some(7));
        assert_eq!(parse("s7_1_2"), Some(7));
        assert_eq!(parse("s7"), Some(7));
        assert_eq!(parse("s-12"), Some(-12), "backfilled history");
        for bad in ["", "s", "42", "s-", "s--1", "s+1", "sx", "s_1", "s99999999999999999999", "t3-4"] {
            assert_eq!(parse(bad), None, "{bad}");
            assert_eq!(point(bad), None, "{bad}");
        }
    }

    #[test]
    fn topological_tokens_round_trip_and_garbage() {
        let k = |d, p| Key::new(d, p);
        for token in ["t3-4", "t5--12", "t3-4_9", "t3-4_9_2-7", "t_9_2-7", "t-1-0", "s10"] {
            let p = Point::parse(token).unwrap_or_else(|| panic!("{token}"));
            assert_eq!(p.token(), token);
        }
        assert_eq!(Point::START.token(), "t-1-0");
        assert_eq!(Point::parse("s10"), Some(Point::stream(9)));
        assert_eq!(Point::parse("s10_3"), Some(Point::stream(10)));
        assert_eq!(Point::parse("t_9"), Some(Point::stream(9)));
        assert_eq!(Point::parse("t3-4_9_3-4"), Some(Point::topological(k(3, 4))));
        assert_eq!(Point::parse("t5--12"), Some(Point::topological(k(5, -12))));
        for bad in [
            "t",
            "t3",
            "t3-",
            "t-3",
            "t-",
            "tx-1",
            "t3-4x",
            "t3-4_",
            "t3-4_x",
            "t3-4_9_",
            "t3-4_9_2",
            "t3-4_9_5-1",
            "t3-4_9_2-7_1",
            "t_9_",
            "t+3-4",
            "t3-+4",
            "t999999999999999999999-1",
            "T3-4",
            "t3-4 ",
        ] {
            assert_eq!(Point::parse(bad), None, "{bad}");
        }
    }

    /// A room's events as keys, and a read of it as `/messages` does one
    /// (without filters): the keys of the page and the point after it.
    fn page(room: &[Key], from: Point, backward: bool, limit: usize) -> (Vec<Key>, Point) {
        let mut sorted = room.to_vec();
        sorted.sort();
        if backward {
            sorted.reverse();
        }
        let cursor = from.cursor(backward);
        let mut at = from;
        let mut out = Vec::new();
        let (edge, through) = from.side(backward);
        let on_side =
            |k: Key| if backward { k <= edge || k.pos <= through } else { k > edge || k.pos > through };
        for k in sorted.into_iter().filter(|&k| if backward { k < cursor } else { k > cursor }) {
            if out.len() == limit {
                break;
            }
            // What storage hands out (the SQL of `room_events_by_key`).
            if !on_side(k) {
                continue;
            }
            assert_eq!(from.behind(k), backward, "{k:?} from {}", from.token());
            out.push(k);
            at = if backward { at.back_past(k) } else { at.forward_past(k) };
        }
        (out, at)
    }

    /// Pages from `from` to the end in one direction, through tokens.
    fn all_pages(
        room: &[Key],
        from: Point,
        backward: bool,
        limit: usize,
        tokens: &mut Vec<Point>,
    ) -> Vec<Key> {
        let mut out = Vec::new();
        let mut at = from;
        for _ in 0..room.len() + 2 {
            let (got, next) = page(room, at, backward, limit);
            tokens.push(next);
            if got.is_empty() {
                return out;
            }
            out.extend(got);
            at = Point::parse(&next.token()).expect("a token read back");
        }
        panic!("paging did not end");
    }

    /// From any point reached by paging (from stream points, as a sync's
    /// `prev_batch`, and from topological ones), paging back lists exactly
    /// the events behind it and paging forward the others, each once, in
    /// key order; in a linear room the events behind a stream point are
    /// those before it in the stream.
    #[test]
    fn paging_back_and_forth_sees_each_event_once() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n) as i64
        };
        for round in 0..300 {
            let n = 1 + next(14) as usize;
            let linear = round % 3 == 0;
            // Positions 1..=n arrive in order, at random depths (or depth
            // = position, a linear room); some history was backfilled.
            let room: Vec<Key> = (1..=n as i64)
                .map(|p| {
                    let pos = if next(5) == 0 { -p } else { p };
                    Key::new(if linear { pos + 100 } else { next(6) }, pos)
                })
                .collect();
            let mut starts = vec![Point::START, Point::topological(Key::MAX)];
            starts.extend((-(n as i64)..=n as i64 + 1).map(Point::stream));
            let mut seen = 0;
            while seen < starts.len() && starts.len() < 400 {
                let from = starts[seen];
                seen += 1;
                for limit in [1, 2, 5] {
                    let mut tokens = Vec::new();
                    let back = all_pages(&room, from, true, limit, &mut tokens);
                    let fwd = all_pages(&room, from, false, limit, &mut tokens);
                    let mut want_back: Vec<Key> = room.iter().copied().filter(|&k| from.behind(k)).collect();
                    want_back.sort();
                    want_back.reverse();
                    let mut want_fwd: Vec<Key> = room.iter().copied().filter(|&k| !from.behind(k)).collect();
                    want_fwd.sort();
                    assert_eq!(back, want_back, "back from {} in {room:?}", from.token());
                    assert_eq!(fwd, want_fwd, "forward from {} in {room:?}", from.token());
                    if linear && from.lo.is_none() && from.hi.is_none() {
                        let mut by_pos: Vec<Key> =
                            room.iter().copied().filter(|k| k.pos <= from.through).collect();
                        by_pos.sort_by_key(|k| std::cmp::Reverse(k.pos));
                        assert_eq!(back, by_pos, "linear: the stream's order");
                    }
                    if limit == 2 {
                        starts.extend(tokens);
                    }
                }
            }
        }
    }
}
