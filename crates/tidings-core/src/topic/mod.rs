//! Topic patterns with RabbitMQ topic-exchange semantics, the same on every transport.
//!
//! A topic (routing key) is a list of words separated by `.`. In a pattern, the word `*`
//! matches exactly one word and `#` matches zero or more words; any other word, including
//! `a*` or `#b`, matches itself only. Empty words are words (`a..b` has three), and the empty
//! key has none, so `#` matches it and `*` does not.
//!
//! ```
//! use tidings_core::topic::Pattern;
//!
//! let pattern = Pattern::parse("order.*").unwrap();
//! assert!(pattern.matches("order.created"));
//! assert!(!pattern.matches("order.stock.low"));
//! assert!(Pattern::parse("product.#").unwrap().matches("product"));
//! assert!(Pattern::parse("a.*.b").unwrap().matches("a..b"));
//! ```
//!
//! [`Matcher`] holds many patterns in a trie and answers which of them match a key without
//! looking at each.

mod matcher;

pub use matcher::{EntryId, Matcher};

use std::fmt;
use std::str::FromStr;

/// The longest pattern or topic accepted: AMQP short strings hold 255 bytes.
pub const MAX_LEN: usize = 255;

/// One word of a pattern.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Word {
    Literal(Box<str>),
    /// `*`: exactly one word.
    Star,
    /// `#`: zero or more words.
    Hash,
}

/// A compiled topic pattern such as `order.*` or `product.#`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Pattern {
    text: Box<str>,
    words: Box<[Word]>,
}

impl Pattern {
    /// Parses a pattern. Every string of at most 255 bytes is a pattern, as on RabbitMQ.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        if text.len() > MAX_LEN {
            return Err(PatternError::TooLong { len: text.len() });
        }
        let words = words(text)
            .map(|w| match w {
                "*" => Word::Star,
                "#" => Word::Hash,
                w => Word::Literal(w.into()),
            })
            .collect();
        Ok(Self {
            text: text.into(),
            words,
        })
    }

    /// A pattern that matches exactly `topic` and nothing else, for typed subscriptions.
    ///
    /// Fails when the topic contains a `*` or `#` word, which would make it a wildcard.
    pub fn exact(topic: &str) -> Result<Self, PatternError> {
        let pattern = Self::parse(topic)?;
        if pattern.is_exact() {
            Ok(pattern)
        } else {
            Err(PatternError::WildcardInTopic(topic.to_owned()))
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern has no wildcard, so it matches one key only.
    pub fn is_exact(&self) -> bool {
        self.words.iter().all(|w| matches!(w, Word::Literal(_)))
    }

    pub(crate) fn words(&self) -> &[Word] {
        &self.words
    }

    /// Whether `key` matches.
    ///
    /// Runs in O(words in pattern × words in key), whatever the number of `#`.
    pub fn matches(&self, key: &str) -> bool {
        let key: Vec<&str> = words(key).collect();
        // reachable[j]: the pattern words seen so far can consume exactly key[..j].
        let mut reachable = vec![false; key.len() + 1];
        reachable[0] = true;
        for word in self.words.iter() {
            match word {
                Word::Hash => {
                    let mut any = false;
                    for r in reachable.iter_mut() {
                        any |= *r;
                        *r = any;
                    }
                }
                Word::Star => {
                    for j in (1..=key.len()).rev() {
                        reachable[j] = reachable[j - 1];
                    }
                    reachable[0] = false;
                }
                Word::Literal(lit) => {
                    for j in (1..=key.len()).rev() {
                        reachable[j] = reachable[j - 1] && key[j - 1] == &**lit;
                    }
                    reachable[0] = false;
                }
            }
        }
        reachable[key.len()]
    }
}

/// The words of a key or pattern: none for the empty string, otherwise split on `.` (so
/// `a..b` has three and `.` has two empty ones). Transports that translate patterns into
/// their broker's syntax split with this, so that they agree with [`Pattern`].
///
/// ```
/// use tidings_core::topic::words;
///
/// assert_eq!(words("").count(), 0);
/// assert_eq!(words("a..b").collect::<Vec<_>>(), ["a", "", "b"]);
/// ```
pub fn words(text: &str) -> impl Iterator<Item = &str> {
    let empty = text.is_empty();
    text.split('.').filter(move |_| !empty)
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.text)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Pattern {
    type Err = PatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<&str> for Pattern {
    type Error = PatternError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// Longer than [`MAX_LEN`] bytes.
    #[error("pattern is {len} bytes long; the limit is 255")]
    TooLong {
        /// The length found.
        len: usize,
    },
    /// A topic (not a pattern) was expected.
    #[error("`{0}` contains a `*` or `#` word, so it is a pattern, not a topic")]
    WildcardInTopic(String),
}

#[cfg(test)]
pub(crate) mod reference {
    //! The obvious recursive definition, against which the fast paths are checked.

    pub(crate) fn matches(pattern: &str, key: &str) -> bool {
        let p: Vec<&str> = super::words(pattern).collect();
        let k: Vec<&str> = super::words(key).collect();
        go(&p, &k)
    }

    fn go(p: &[&str], k: &[&str]) -> bool {
        match p.split_first() {
            None => k.is_empty(),
            Some((&"#", rest)) => (0..=k.len()).any(|i| go(rest, &k[i..])),
            Some((&"*", rest)) => !k.is_empty() && go(rest, &k[1..]),
            Some((word, rest)) => k.first() == Some(word) && go(rest, &k[1..]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(p: &str, k: &str) -> bool {
        Pattern::parse(p).unwrap().matches(k)
    }

    #[test]
    fn star_matches_exactly_one_word() {
        assert!(m("order.*", "order.created"));
        assert!(!m("order.*", "order"));
        assert!(!m("order.*", "order.stock.low"));
        assert!(m("*", "order"));
        assert!(!m("*", ""));
        assert!(!m("*", "."));
        assert!(m("*.*", "."));
    }

    #[test]
    fn hash_matches_zero_or_more_words() {
        assert!(m("#", ""));
        assert!(m("#", "a"));
        assert!(m("#", "a.b.c"));
        assert!(m("product.#", "product"));
        assert!(m("product.#", "product.stock.low"));
        assert!(m("#.low", "low"));
        assert!(m("#.low", "product.stock.low"));
        assert!(m("a.#.b", "a.b"));
        assert!(m("a.#.b", "a.x.y.b"));
        assert!(!m("a.#.b", "a.x.y"));
        assert!(m("#.#", ""));
    }

    #[test]
    fn empty_words_are_words() {
        assert!(m("a.*.b", "a..b"));
        assert!(m("a..b", "a..b"));
        assert!(!m("a.b", "a..b"));
        assert!(m("*.*", "."));
        assert!(m("a.*", "a."));
        assert!(!m("a", "a."));
        assert!(m("", ""));
        assert!(!m("", "a"));
        assert!(!m("a", ""));
    }

    #[test]
    fn wildcards_are_whole_words_only() {
        assert!(m("a*", "a*"));
        assert!(!m("a*", "ab"));
        assert!(m("#b", "#b"));
        assert!(!m("#b", "b"));
    }

    #[test]
    fn length_is_limited_like_amqp_short_strings() {
        assert!(Pattern::parse(&"a".repeat(255)).is_ok());
        assert_eq!(
            Pattern::parse(&"a".repeat(256)),
            Err(PatternError::TooLong { len: 256 })
        );
    }

    #[test]
    fn exact_patterns_refuse_wildcards() {
        assert!(Pattern::exact("order.created").is_ok());
        assert!(Pattern::exact("order.*").is_err());
        assert!(Pattern::exact("#").is_err());
    }

    #[test]
    fn many_hashes_stay_fast() {
        let pattern = Pattern::parse(&"#.a.".repeat(40)).unwrap();
        let key = "a.".repeat(100);
        assert_eq!(
            pattern.matches(&key),
            reference::matches(pattern.as_str(), &key)
        );
    }

    /// Words drawn from a small alphabet so that collisions, empty words and wildcards are
    /// frequent.
    pub(crate) fn word() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["a", "b", "", "ab"])
    }

    pub(crate) fn pattern_text() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop::sample::select(vec!["a", "b", "", "*", "#", "*", "#"]),
            0..6,
        )
        .prop_map(|w| w.join("."))
    }

    pub(crate) fn key_text() -> impl Strategy<Value = String> {
        prop::collection::vec(word(), 0..7).prop_map(|w| w.join("."))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn pattern_agrees_with_the_reference(p in pattern_text(), k in key_text()) {
            prop_assert_eq!(m(&p, &k), reference::matches(&p, &k), "pattern {:?} key {:?}", p, k);
        }
    }
}
