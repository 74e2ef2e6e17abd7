//! Topics as NATS subjects, and patterns as consumer filters.
//!
//! A topic's words become the tokens of a subject under a prefix: `order.created` is
//! published to `tidings.order.created`. NATS tokens may not be empty nor contain spaces,
//! `*` or `>`, which topic words may: an empty word is written `%`, and `%`, `*`, `>` and
//! whitespace inside a word are percent-encoded. The mapping is one-to-one, so a subject
//! reads back as the topic it came from.
//!
//! Patterns translate as DESIGN.md says: `*` is `*`, a trailing `#` is `>`. Two things NATS
//! cannot say are filtered on the client after the widest subject the server can filter on:
//! `#` matching zero words (`a.#` matches `a`, which `a.>` does not), and `#` anywhere but
//! at the end. A consumer also has one filter subject before NATS 2.10, so a subscription
//! with several patterns filters on the widest subject covering them all. The exact rule is
//! always [`Pattern::matches`](tidings_core::topic::Pattern::matches), applied to every
//! message the server hands out.

use std::fmt::Write as _;

use tidings_core::topic::{Pattern, words};

/// How topics map to subjects under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subjects {
    prefix: String,
}

/// Characters a NATS token cannot hold as they are.
fn reserved(c: char) -> bool {
    matches!(c, '%' | '*' | '>' | '.') || c.is_whitespace() || c.is_control()
}

fn encode_word(word: &str, out: &mut String) {
    if word.is_empty() {
        out.push('%');
        return;
    }
    for c in word.chars() {
        if reserved(c) {
            let mut buf = [0u8; 4];
            for byte in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "%{byte:02X}");
            }
        } else {
            out.push(c);
        }
    }
}

/// Whether `topic` is its subject's tokens as it stands: not empty, no empty word, and
/// nothing [`encode_word`] would escape (printable ASCII but `%`, `*` and `>`). Most topics
/// are (`order.created`), and are then copied instead of read a character at a time.
fn is_plain(topic: &str) -> bool {
    let bytes = topic.as_bytes();
    !bytes.is_empty()
        && bytes.first() != Some(&b'.')
        && bytes.last() != Some(&b'.')
        && !topic.contains("..")
        && bytes
            .iter()
            .all(|&b| b.is_ascii_graphic() && !matches!(b, b'%' | b'*' | b'>'))
}

/// Appends `topic`'s words to `out`, each as a token after a `.`.
fn push_tokens(topic: &str, out: &mut String) {
    for word in words(topic) {
        out.push('.');
        encode_word(word, out);
    }
}

/// `word` as one subject token.
pub(crate) fn token(word: &str) -> String {
    let mut out = String::with_capacity(word.len() + 2);
    encode_word(word, &mut out);
    out
}

fn decode_token(token: &str) -> Option<String> {
    if token == "%" {
        return Some(String::new());
    }
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let byte = u8::from_str_radix(token.get(i + 1..i + 3)?, 16).ok()?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl Subjects {
    /// Topics under `prefix` (a valid subject, e.g. `tidings`).
    pub(crate) fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The subjects a stream must capture: the prefix itself (the empty topic) and
    /// everything below it.
    pub(crate) fn stream_subjects(&self) -> Vec<String> {
        vec![self.prefix.clone(), format!("{}.>", self.prefix)]
    }

    /// The subject of `topic`.
    pub(crate) fn subject(&self, topic: &str) -> String {
        let mut out = String::with_capacity(self.prefix.len() + topic.len() + 8);
        out.push_str(&self.prefix);
        if is_plain(topic) {
            // Every word is its own token: the topic is the rest of the subject as it is.
            out.push('.');
            out.push_str(topic);
        } else {
            push_tokens(topic, &mut out);
        }
        out
    }

    /// The topic a subject of this prefix stands for; `None` for a subject that is not one.
    pub(crate) fn topic(&self, subject: &str) -> Option<String> {
        let rest = subject.strip_prefix(&self.prefix)?;
        if rest.is_empty() {
            return Some(String::new());
        }
        let rest = rest.strip_prefix('.')?;
        if !rest.contains('%') {
            // Nothing escaped (the usual case): the tokens are the words.
            return Some(rest.to_owned());
        }
        let decoded: Option<Vec<String>> = rest.split('.').map(decode_token).collect();
        Some(decoded?.join("."))
    }

    /// The narrowest filter subject the server can apply that lets through every subject
    /// matching any of `patterns`; `None` for no filter (everything in the stream).
    pub(crate) fn filter(&self, patterns: &[Pattern]) -> Option<String> {
        let filters: Vec<String> = patterns
            .iter()
            .map(|p| self.pattern_filter(p))
            .collect::<Option<_>>()?;
        let (first, others) = filters.split_first()?;
        if others.iter().all(|f| f == first) {
            return Some(first.clone());
        }
        // Several filters: `common.>`, where `common` is the literal tokens they all start
        // with; one level up if a filter is no longer than that (`>` needs a token more).
        let tokens: Vec<Vec<&str>> = filters.iter().map(|f| f.split('.').collect()).collect();
        let mut common: Vec<&str> = tokens[0].clone();
        for other in &tokens[1..] {
            let same = common
                .iter()
                .zip(other)
                .take_while(|(a, b)| a == b && !matches!(**a, "*" | ">"))
                .count();
            common.truncate(same);
        }
        if tokens.iter().any(|t| t.len() <= common.len()) {
            common.pop();
        }
        if common.len() < self.prefix.split('.').count() {
            return None;
        }
        Some(format!("{}.>", common.join(".")))
    }

    /// One pattern's server-side filter: exact without `#`; with one, the tokens before it
    /// but the last, then `>`, because `#` also matches zero words (`a.b.#` matches `a.b`,
    /// which `a.b.>` does not, and `a.>` lets both through). `None` when the pattern starts
    /// with `#`: it may match anything, the empty topic included.
    fn pattern_filter(&self, pattern: &Pattern) -> Option<String> {
        let words: Vec<&str> = words(pattern.as_str()).collect();
        let hash = words.iter().position(|w| *w == "#");
        let fixed = match hash {
            Some(0) => return None,
            Some(at) => &words[..at - 1],
            None => &words[..],
        };
        let mut out = self.prefix.clone();
        for word in fixed {
            out.push('.');
            match *word {
                "*" => out.push('*'),
                literal => encode_word(literal, &mut out),
            }
        }
        if hash.is_some() {
            out.push_str(".>");
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// NATS subject matching: `*` one token, `>` one or more tokens at the end.
    fn nats_matches(filter: &str, subject: &str) -> bool {
        let f: Vec<&str> = filter.split('.').collect();
        let s: Vec<&str> = subject.split('.').collect();
        for (i, token) in f.iter().enumerate() {
            match *token {
                ">" => return s.len() > i,
                "*" if i < s.len() => {}
                literal if s.get(i) == Some(&literal) => {}
                _ => return false,
            }
        }
        f.len() == s.len()
    }

    fn subjects() -> Subjects {
        Subjects::new("tidings")
    }

    #[test]
    fn topics_round_trip_through_subjects_even_with_empty_words() {
        let s = subjects();
        for topic in ["", "order.created", "a..b", ".", "x y.*.>.%", "ünïcödé.ok"] {
            let subject = s.subject(topic);
            assert!(
                subject
                    .split('.')
                    .all(|t| !t.is_empty() && !t.contains([' ', '*', '>'])),
                "{subject}"
            );
            assert_eq!(s.topic(&subject).as_deref(), Some(topic), "{subject}");
        }
        assert_eq!(s.subject("order.created"), "tidings.order.created");
        assert_eq!(s.subject(""), "tidings");
        assert_eq!(s.subject("a..b"), "tidings.a.%.b");
        assert_eq!(s.topic("other.order"), None);
    }

    #[test]
    fn patterns_translate_as_the_design_says() {
        let s = subjects();
        let filter = |p: &str| s.filter(&[Pattern::parse(p).unwrap()]);
        assert_eq!(filter("order.*").as_deref(), Some("tidings.order.*"));
        assert_eq!(
            filter("order.created").as_deref(),
            Some("tidings.order.created")
        );
        // Trailing `#`: `>`, one level up, because `#` also matches zero words.
        assert_eq!(filter("t1.order.#").as_deref(), Some("tidings.t1.>"));
        assert_eq!(filter("#"), None);
        assert_eq!(filter("#.created"), None);
        assert_eq!(filter("order.#").as_deref(), Some("tidings.>"));
        assert_eq!(filter("t1.#.created").as_deref(), Some("tidings.>"));
        assert_eq!(filter("t1.a.#.created").as_deref(), Some("tidings.t1.>"));
        let several = s.filter(&[
            Pattern::parse("t1.order.*").unwrap(),
            Pattern::parse("t1.payment.*").unwrap(),
        ]);
        assert_eq!(several.as_deref(), Some("tidings.t1.>"));
    }

    fn word() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just("a".to_owned()),
            Just("b".to_owned()),
            Just("*".to_owned()),
            Just("#".to_owned()),
            Just("a b".to_owned()),
        ]
    }

    fn text() -> impl Strategy<Value = String> {
        prop::collection::vec(word(), 0..5).prop_map(|w| w.join("."))
    }

    /// The subject written word by word, every word through [`encode_word`].
    fn subject_word_by_word(s: &Subjects, topic: &str) -> String {
        let mut out = s.prefix.clone();
        push_tokens(topic, &mut out);
        out
    }

    fn any_topic() -> impl Strategy<Value = String> {
        prop_oneof![
            text(),
            "[a-z.]{0,12}",
            "[ -~]{0,12}",
            any::<String>(),
            prop::collection::vec(any::<char>(), 0..12).prop_map(String::from_iter),
            prop::collection::vec("[a-z0-9_-]{0,6}", 0..5).prop_map(|w| w.join(".")),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// A topic copied whole makes the subject that encoding it word by word makes.
        #[test]
        fn a_plain_topic_copied_whole_is_the_subject_written_word_by_word(topic in any_topic()) {
            let s = subjects();
            prop_assert_eq!(s.subject(&topic), subject_word_by_word(&s, &topic));
        }

        /// The server-side filter never drops a subject the pattern matches: whatever the
        /// client then filters, nothing is lost.
        #[test]
        fn the_server_filter_lets_through_every_matching_topic(
            patterns in prop::collection::vec(text(), 1..4),
            key in text(),
        ) {
            let s = subjects();
            let patterns: Vec<Pattern> = patterns.iter().map(|p| Pattern::parse(p).unwrap()).collect();
            if patterns.iter().any(|p| p.matches(&key)) {
                let subject = s.subject(&key);
                if let Some(filter) = s.filter(&patterns) {
                    prop_assert!(nats_matches(&filter, &subject), "{filter} drops {subject}");
                }
            }
        }
    }
}
