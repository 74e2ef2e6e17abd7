use std::collections::HashMap;

use smallvec::SmallVec;

use super::{Pattern, Word, words};

/// Identifies a pattern inserted into a [`Matcher`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryId(usize);

/// Many patterns in a trie: which of them match a key, without testing each one.
///
/// Patterns share their common prefixes, so a lookup costs in the order of the key's length
/// times the number of `#` branches taken, not the number of patterns. Results come back in
/// insertion order, each entry once.
///
/// ```
/// use tidings_core::topic::{Matcher, Pattern};
///
/// let mut matcher = Matcher::new();
/// matcher.insert(Pattern::parse("order.*").unwrap(), "notification");
/// matcher.insert(Pattern::parse("#").unwrap(), "audit");
/// matcher.insert(Pattern::parse("payment.#").unwrap(), "ledger");
/// let hits: Vec<_> = matcher.matches("order.created").map(|(_, v)| *v).collect();
/// assert_eq!(hits, ["notification", "audit"]);
/// ```
#[derive(Debug, Clone)]
pub struct Matcher<T> {
    nodes: Vec<Node>,
    entries: Vec<Option<(Pattern, T)>>,
    /// The entries of patterns without wildcards, by their text: while every pattern is one
    /// (the usual case, a typed handler's pattern is its event's name), a key's matches are
    /// one lookup of the whole key, not one per word in the trie.
    exact: HashMap<Box<str>, SmallVec<[usize; 1]>, ahash::RandomState>,
    /// How many entries have a wildcard. While none has, the trie is not walked.
    wildcards: usize,
    /// Whether any pattern inserted has a `#`.
    has_hash: bool,
}

#[derive(Debug, Clone, Default)]
struct Node {
    /// Hashed with aHash: a lookup per word of every topic published and delivered, and
    /// topics come from the wire, so the hash is keyed per process as SipHash is, at a
    /// fraction of its cost.
    literal: HashMap<Box<str>, usize, ahash::RandomState>,
    star: Option<usize>,
    hash: Option<usize>,
    terminal: Vec<usize>,
}

impl<T> Default for Matcher<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Matcher<T> {
    /// An empty matcher.
    pub fn new() -> Self {
        Self {
            nodes: vec![Node::default()],
            entries: Vec::new(),
            exact: HashMap::default(),
            wildcards: 0,
            has_hash: false,
        }
    }

    /// Adds a pattern with its value.
    pub fn insert(&mut self, pattern: Pattern, value: T) -> EntryId {
        let mut node = 0;
        for word in pattern.words() {
            let next = self.nodes.len();
            let child = match word {
                Word::Literal(w) => *self.nodes[node].literal.entry(w.clone()).or_insert(next),
                Word::Star => *self.nodes[node].star.get_or_insert(next),
                Word::Hash => {
                    self.has_hash = true;
                    *self.nodes[node].hash.get_or_insert(next)
                }
            };
            if child == next {
                self.nodes.push(Node::default());
            }
            node = child;
        }
        let id = self.entries.len();
        if pattern.is_exact() {
            // Ids only grow, so each list stays in insertion order.
            self.exact
                .entry(pattern.as_str().into())
                .or_default()
                .push(id);
        } else {
            self.wildcards += 1;
        }
        self.entries.push(Some((pattern, value)));
        self.nodes[node].terminal.push(id);
        EntryId(id)
    }

    /// Removes an entry, returning its value. Trie nodes are kept for reuse.
    pub fn remove(&mut self, id: EntryId) -> Option<T> {
        let (pattern, value) = self.entries.get_mut(id.0)?.take()?;
        let mut node = 0;
        for word in pattern.words() {
            node = match word {
                Word::Literal(w) => self.nodes[node].literal[w],
                Word::Star => self.nodes[node].star.expect("inserted path"),
                Word::Hash => self.nodes[node].hash.expect("inserted path"),
            };
        }
        self.nodes[node].terminal.retain(|&e| e != id.0);
        if pattern.is_exact() {
            if let Some(ids) = self.exact.get_mut(pattern.as_str()) {
                ids.retain(|e| *e != id.0);
                if ids.is_empty() {
                    self.exact.remove(pattern.as_str());
                }
            }
        } else {
            self.wildcards -= 1;
        }
        Some(value)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.iter().filter(|e| e.is_some()).count()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every entry, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&Pattern, &T)> {
        self.entries.iter().flatten().map(|(p, v)| (p, v))
    }

    /// The distinct values of the entries matching `key`: the subscriptions a topic routes
    /// to, each once however many of its patterns match.
    ///
    /// ```
    /// use tidings_core::topic::{Matcher, Pattern};
    ///
    /// let mut routes = Matcher::new();
    /// routes.insert(Pattern::parse("order.*")?, "billing");
    /// routes.insert(Pattern::parse("order.#")?, "billing");
    /// routes.insert(Pattern::parse("#")?, "audit");
    /// assert_eq!(routes.values_matching("order.paid"), ["billing", "audit"]);
    /// # Ok::<(), tidings_core::topic::PatternError>(())
    /// ```
    pub fn values_matching(&self, key: &str) -> Vec<T>
    where
        T: Clone + PartialEq,
    {
        let mut found: Vec<T> = Vec::new();
        for (_, value) in self.matches(key) {
            if !found.contains(value) {
                found.push(value.clone());
            }
        }
        found
    }

    /// The entries whose pattern matches `key`, in insertion order, each once.
    pub fn matches(&self, key: &str) -> impl Iterator<Item = (EntryId, &T)> {
        // Runs once per delivery and per publish.
        let hits = if self.wildcards == 0 {
            // A pattern without wildcards matches the one key spelled as it is: words are
            // split on `.` and joined back the same way, and only the empty key has none.
            self.exact.get(key).cloned().unwrap_or_default()
        } else {
            self.walk(key)
        };
        hits.into_iter().filter_map(move |id| {
            self.entries[id]
                .as_ref()
                .map(|(_, value)| (EntryId(id), value))
        })
    }

    /// The ids of the entries matching `key`, in insertion order, found in the trie.
    fn walk(&self, key: &str) -> SmallVec<[usize; 1]> {
        // Topics are short, so the work lists live on the stack, and the visited set is
        // needed only where a `#` can reach a node by two paths (without one, each node sits
        // at one depth and is reached once).
        let words: SmallVec<[&str; 8]> = words(key).collect();
        let n = words.len();
        let mut seen = if self.has_hash {
            vec![false; self.nodes.len() * (n + 1)]
        } else {
            Vec::new()
        };
        let mut stack: SmallVec<[(usize, usize); 16]> = SmallVec::new();
        stack.push((0, 0));
        let mut hits: SmallVec<[usize; 1]> = SmallVec::new();
        while let Some((node, pos)) = stack.pop() {
            if self.has_hash && std::mem::replace(&mut seen[node * (n + 1) + pos], true) {
                continue;
            }
            let current = &self.nodes[node];
            if pos == n {
                hits.extend_from_slice(&current.terminal);
            } else {
                if let Some(&child) = current.literal.get(words[pos]) {
                    stack.push((child, pos + 1));
                }
                if let Some(child) = current.star {
                    stack.push((child, pos + 1));
                }
            }
            if let Some(child) = current.hash {
                stack.extend((pos..=n).map(|p| (child, p)));
            }
        }
        hits.sort_unstable();
        hits.dedup();
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::super::reference;
    use super::super::tests::{key_text, pattern_text};
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn overlapping_hashes_report_an_entry_once() {
        let mut matcher = Matcher::new();
        matcher.insert(Pattern::parse("#.#.#").unwrap(), 1);
        matcher.insert(Pattern::parse("#.a.#").unwrap(), 2);
        let hits: Vec<_> = matcher.matches("a.a.a").map(|(_, v)| *v).collect();
        assert_eq!(hits, [1, 2]);
    }

    #[test]
    fn removed_entries_no_longer_match() {
        let mut matcher = Matcher::new();
        let a = matcher.insert(Pattern::parse("order.*").unwrap(), "a");
        matcher.insert(Pattern::parse("order.*").unwrap(), "b");
        assert_eq!(matcher.remove(a), Some("a"));
        assert_eq!(matcher.remove(a), None);
        let hits: Vec<_> = matcher.matches("order.paid").map(|(_, v)| *v).collect();
        assert_eq!(hits, ["b"]);
        assert_eq!(matcher.len(), 1);
    }

    #[test]
    fn exact_patterns_match_their_own_key_only_and_in_insertion_order() {
        let mut matcher = Matcher::new();
        matcher.insert(Pattern::parse("order.created").unwrap(), 1);
        matcher.insert(Pattern::parse("order").unwrap(), 2);
        matcher.insert(Pattern::parse("order.created").unwrap(), 3);
        matcher.insert(Pattern::parse("").unwrap(), 4);
        let hits = |key| matcher.matches(key).map(|(_, v)| *v).collect::<Vec<_>>();
        assert_eq!(hits("order.created"), [1, 3]);
        assert_eq!(hits("order"), [2]);
        assert_eq!(hits(""), [4]);
        assert!(hits("order.created.").is_empty());
        assert!(hits("order..created").is_empty());
    }

    #[test]
    fn removing_the_last_wildcard_leaves_the_exact_entries_matching_as_before() {
        let mut matcher = Matcher::new();
        let wild = matcher.insert(Pattern::parse("order.*").unwrap(), "wild");
        let a = matcher.insert(Pattern::parse("order.paid").unwrap(), "a");
        matcher.insert(Pattern::parse("order.paid").unwrap(), "b");
        let hits = |m: &Matcher<&'static str>| {
            m.matches("order.paid").map(|(_, v)| *v).collect::<Vec<_>>()
        };
        assert_eq!(hits(&matcher), ["wild", "a", "b"]);
        matcher.remove(wild);
        assert_eq!(hits(&matcher), ["a", "b"]);
        matcher.remove(a);
        assert_eq!(hits(&matcher), ["b"]);
        matcher.insert(Pattern::parse("#").unwrap(), "all");
        assert_eq!(hits(&matcher), ["b", "all"]);
    }

    /// Fails unless a matcher of `patterns` (entry `i` for `patterns[i]`) finds for each of
    /// `keys` the entries whose pattern matches it on its own, in order.
    fn agrees_with_the_reference<'a>(
        patterns: &[String],
        keys: impl IntoIterator<Item = &'a String>,
    ) -> Result<(), TestCaseError> {
        let mut matcher = Matcher::new();
        for (i, p) in patterns.iter().enumerate() {
            matcher.insert(Pattern::parse(p).unwrap(), i);
        }
        for key in keys {
            let got: Vec<usize> = matcher.matches(key).map(|(_, v)| *v).collect();
            let want: Vec<usize> = patterns
                .iter()
                .enumerate()
                .filter(|(_, p)| reference::matches(p, key))
                .map(|(i, _)| i)
                .collect();
            prop_assert_eq!(got, want, "key {:?}", key);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn a_matcher_of_exact_patterns_agrees_with_the_reference(
            patterns in prop::collection::vec(
                prop::collection::vec(prop::sample::select(vec!["a", "b", ""]), 0..5)
                    .prop_map(|w| w.join(".")),
                1..12,
            ),
            keys in prop::collection::vec(key_text(), 1..8),
        ) {
            agrees_with_the_reference(&patterns, keys.iter().chain(&patterns))?;
        }

        #[test]
        fn matcher_agrees_with_the_reference(
            patterns in prop::collection::vec(pattern_text(), 1..12),
            keys in prop::collection::vec(key_text(), 1..8),
        ) {
            agrees_with_the_reference(&patterns, &keys)?;
        }
    }
}
