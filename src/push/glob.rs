//! Glob-style matching as push rules use it (the spec's appendix): `*`
//! matches zero or more characters, `?` exactly one, everything else
//! itself, case-insensitively. Two uses:
//!
//! - [`Glob::matches`]: the pattern must match the whole value
//!   (`event_match` on every key but `content.body`);
//! - [`Glob::matches_words`]: the pattern must match some substring that
//!   starts and ends at a word boundary (`content.body`, content rules,
//!   display names).
//!
//! A word boundary lies at the start and end of the value and between two
//! characters unless both are word characters (`[A-Za-z0-9_]`): so `@room`
//! is found in `hi @room!` and in `hi@room`, `cake` in `cake-lie` but not in
//! `cakes`.
//!
//! Both run in time proportional to value length × pattern length (no
//! backtracking blow-up), and patterns without wildcards take a plain
//! substring search. Pure: no I/O.

/// Longest pattern compiled, in characters; longer ones never match (they
/// could only come from a user's own rules, which are bounded on input).
pub const PATTERN_MAX_CHARS: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Char(char),
    /// `?`
    One,
    /// `*`
    Any,
}

/// A compiled, lower-cased pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    tokens: Vec<Token>,
    /// The pattern has no wildcard: its characters, for substring search.
    literal: Option<Vec<char>>,
}

/// Lower-cases a value for matching, as a character vector.
pub fn fold(s: &str) -> Vec<char> {
    s.chars().flat_map(char::to_lowercase).collect()
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// True if a match may start (or end) between `text[i - 1]` and `text[i]`.
fn boundary(text: &[char], i: usize) -> bool {
    if i == 0 || i >= text.len() {
        return true;
    }
    !(is_word(text[i - 1]) && is_word(text[i]))
}

/// The (folded) text contains the (folded) literal `needle` between word
/// boundaries. An empty needle is never found.
pub fn contains_words(text: &[char], needle: &[char]) -> bool {
    if needle.is_empty() {
        return false;
    }
    text.windows(needle.len())
        .enumerate()
        .any(|(i, w)| w == needle && boundary(text, i) && boundary(text, i + needle.len()))
}

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        let mut tokens = Vec::new();
        for c in pattern.chars().flat_map(char::to_lowercase) {
            let t = match c {
                '*' => Token::Any,
                '?' => Token::One,
                c => Token::Char(c),
            };
            // `**` is `*`.
            if !(t == Token::Any && tokens.last() == Some(&Token::Any)) {
                tokens.push(t);
            }
        }
        let literal = tokens
            .iter()
            .map(|t| match t {
                Token::Char(c) => Some(*c),
                _ => None,
            })
            .collect::<Option<Vec<char>>>();
        Glob { tokens, literal }
    }

    fn too_long(&self) -> bool {
        self.tokens.len() > PATTERN_MAX_CHARS
    }

    /// The whole (already folded) value matches.
    pub fn matches_folded(&self, text: &[char]) -> bool {
        if self.too_long() {
            return false;
        }
        if let Some(lit) = &self.literal {
            return lit.as_slice() == text;
        }
        self.run(text, false)
    }

    /// The whole value matches, case-insensitively.
    pub fn matches(&self, value: &str) -> bool {
        self.matches_folded(&fold(value))
    }

    /// Some substring of the (already folded) value between word
    /// boundaries matches.
    pub fn matches_words(&self, text: &[char]) -> bool {
        if self.too_long() {
            return false;
        }
        if let Some(lit) = &self.literal {
            return contains_words(text, lit);
        }
        self.run(text, true)
    }

    /// Simulates the pattern as an automaton whose states are positions in
    /// the token list. `words`: a match may start at any word boundary and
    /// must end at one; otherwise it spans the whole text.
    fn run(&self, text: &[char], words: bool) -> bool {
        let n = self.tokens.len();
        let mut cur = vec![false; n + 1];
        let mut next = vec![false; n + 1];
        // Adds state `s` and, across `*`, the states after it.
        fn add(set: &mut [bool], tokens: &[Token], mut s: usize) {
            loop {
                set[s] = true;
                if s < tokens.len() && tokens[s] == Token::Any {
                    s += 1;
                } else {
                    return;
                }
            }
        }
        add(&mut cur, &self.tokens, 0);
        for i in 0..=text.len() {
            if cur[n] && (!words || boundary(text, i)) && (words || i == text.len()) {
                // For `words`, a match of the empty pattern does not count.
                if !words || n > 0 {
                    return true;
                }
            }
            if i == text.len() {
                break;
            }
            let c = text[i];
            next.iter_mut().for_each(|s| *s = false);
            for (s, token) in self.tokens.iter().enumerate() {
                if !cur[s] {
                    continue;
                }
                match *token {
                    Token::Any => add(&mut next, &self.tokens, s),
                    Token::One => add(&mut next, &self.tokens, s + 1),
                    Token::Char(p) if p == c => add(&mut next, &self.tokens, s + 1),
                    Token::Char(_) => {}
                }
            }
            if words && boundary(text, i + 1) {
                add(&mut next, &self.tokens, 0);
            }
            std::mem::swap(&mut cur, &mut next);
            if !words && !cur.iter().any(|&s| s) {
                return false;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(p: &str, v: &str) -> bool {
        Glob::new(p).matches(v)
    }

    fn words(p: &str, v: &str) -> bool {
        Glob::new(p).matches_words(&fold(v))
    }

    #[test]
    fn whole_value_matching() {
        // The spec's examples for `lunc?*`.
        assert!(whole("lunc?*", "Lunch plans"));
        assert!(whole("lunc?*", "LUNCH"));
        assert!(!whole("lunc?*", " lunch"));
        assert!(!whole("lunc?*", "lunc"));
        assert!(whole("m.room.message", "m.room.message"));
        assert!(!whole("m.room.message", "m.room.messages"));
        assert!(whole("*", ""));
        assert!(whole("", ""));
        assert!(!whole("", "x"));
        assert!(whole("a*b*c", "aXXbYYc"));
        assert!(!whole("a*b*c", "aXXbYY"));
        assert!(whole("@alice:example.org", "@ALICE:example.org"));
    }

    #[test]
    fn word_boundary_matching() {
        // The spec's examples for `ex*ple`.
        assert!(words("ex*ple", "An example event."));
        assert!(words("ex*ple", "exple"));
        assert!(words("ex*ple", "An exciting triple-whammy"));
        assert!(words("cake", "I like cake."));
        assert!(words("cake", "cake-lie"));
        assert!(!words("cake", "cakes"));
        assert!(!words("cake", "pancake"));
        assert!(words("@room", "hi @room!"));
        assert!(words("@room", "@room"));
        assert!(words("@room", "hi@room"));
        assert!(!words("@room", "@roomy"));
        assert!(words("alice", "Hey ALICE, dinner?"));
        assert!(words("Alice Smith", "hey alice smith"));
        assert!(!words("alice", "malice"));
        assert!(words("c?ke", "the cake is a lie"));
        assert!(!words("", "anything"));
        assert!(words("*", "anything"));
        assert!(!words("x", ""));
    }

    #[test]
    fn long_inputs_stay_linear() {
        let text: String = "a".repeat(20_000);
        let p = format!("{}b", "a*".repeat(50));
        assert!(!Glob::new(&p).matches(&text));
        assert!(!Glob::new(&p).matches_words(&fold(&text)));
        assert!(!Glob::new(&"x".repeat(PATTERN_MAX_CHARS + 1)).matches(&"x".repeat(PATTERN_MAX_CHARS + 1)));
    }
}
