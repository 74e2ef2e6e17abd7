//! Any subscription patterns and topics (patterns come from configuration and the gateway,
//! topics from the wire): parsing never panics, and the compiled trie that routes deliveries
//! agrees with each pattern matched on its own.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use tidings_core::topic::{Matcher, Pattern};

#[derive(Debug, Arbitrary)]
struct Routing {
    patterns: Vec<String>,
    keys: Vec<String>,
    /// Which entries to remove before matching, by index.
    removed: Vec<u8>,
}

fuzz_target!(|routing: Routing| {
    let mut matcher = Matcher::new();
    let mut entries = Vec::new();
    for (i, text) in routing.patterns.iter().take(16).enumerate() {
        if let Ok(pattern) = Pattern::parse(text) {
            assert_eq!(pattern.as_str(), text, "a pattern keeps its text");
            let id = matcher.insert(pattern.clone(), i);
            entries.push(Some((id, pattern, i)));
        }
    }
    for &r in &routing.removed {
        if let Some(slot) = entries.get_mut(usize::from(r))
            && let Some((id, _, value)) = slot.take()
        {
            assert_eq!(matcher.remove(id), Some(value));
        }
    }
    for key in routing.keys.iter().take(8) {
        let got: Vec<usize> = matcher.matches(key).map(|(_, v)| *v).collect();
        let want: Vec<usize> = entries
            .iter()
            .flatten()
            .filter(|(_, pattern, _)| pattern.matches(key))
            .map(|(_, _, v)| *v)
            .collect();
        assert_eq!(got, want, "key {key:?}");
    }
});
