use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tidings::envelope::Envelope;
use tidings::topic::Pattern;

use super::{QUIET, WAIT, observed_bus, seq_of};
use crate::{Harness, Namespace, Probe};

/// Patterns over a small alphabet so that wildcards, empty words and overlaps are frequent.
fn generated_patterns(rng: &mut fastrand::Rng, n: usize) -> Vec<String> {
    let words = ["a", "b", "", "*", "#", "*", "#"];
    let mut patterns = BTreeSet::new();
    while patterns.len() < n {
        let len = rng.usize(0..5);
        let p: Vec<&str> = (0..len).map(|_| words[rng.usize(..words.len())]).collect();
        patterns.insert(p.join("."));
    }
    patterns.into_iter().collect()
}

fn generated_keys(rng: &mut fastrand::Rng, n: usize) -> Vec<String> {
    let words = ["a", "b", "", "ab"];
    let mut keys = BTreeSet::new();
    while keys.len() < n {
        let len = rng.usize(0..5);
        let k: Vec<&str> = (0..len).map(|_| words[rng.usize(..words.len())]).collect();
        keys.insert(k.join("."));
    }
    keys.into_iter().collect()
}

/// The transport routes exactly as [`Pattern::matches`]: every generated (pattern, key) pair
/// delivers if and only if the pattern matches.
pub async fn pattern_routing_matches_the_reference_matcher(harness: &impl Harness) {
    let ns = Namespace::new();
    let (bus, _) = observed_bus(&ns, harness.transport().await);
    let mut rng = fastrand::Rng::with_seed(0x7469_6469);
    // Patterns and keys sit under the namespace's first word, so that other cases' traffic on
    // a shared broker never matches them.
    let full = |suffix: &str| {
        if suffix.is_empty() {
            ns.topic("")
        } else {
            ns.topic(suffix)
        }
    };
    let patterns = generated_patterns(&mut rng, 24);
    let keys = generated_keys(&mut rng, 30);
    let probe: Arc<Probe<(usize, u64)>> = Probe::new();
    for (i, pattern) in patterns.iter().enumerate() {
        let seen = probe.clone();
        bus.subscribe_pattern(
            ns.subscription(&format!("p{i}")),
            &full(pattern),
            move |e: Arc<Envelope>| {
                let seen = seen.clone();
                async move {
                    seen.push((i, seq_of(&e)));
                    Ok(())
                }
            },
        )
        .await
        .expect("subscribe");
    }
    let mut expected = BTreeMap::<usize, BTreeSet<u64>>::new();
    let mut total = 0;
    for (k, key) in keys.iter().enumerate() {
        let topic = full(key);
        for (i, pattern) in patterns.iter().enumerate() {
            if Pattern::parse(&full(pattern))
                .expect("pattern")
                .matches(&topic)
            {
                expected.entry(i).or_default().insert(k as u64);
                total += 1;
            }
        }
        let e = Envelope::new(ns.as_str(), topic)
            .with_json_data(&serde_json::json!({ "seq": k }))
            .expect("json");
        bus.publish_envelope(e).await.expect("publish");
    }
    probe.wait_for(total, WAIT).await;
    tokio::time::sleep(QUIET).await;
    let mut got = BTreeMap::<usize, BTreeSet<u64>>::new();
    for (i, k) in probe.items() {
        assert!(got.entry(i).or_default().insert(k), "duplicate delivery");
    }
    for (i, pattern) in patterns.iter().enumerate() {
        let want = expected.remove(&i).unwrap_or_default();
        let have = got.remove(&i).unwrap_or_default();
        assert_eq!(
            have,
            want,
            "pattern {:?}: keys {:?}",
            full(pattern),
            have.symmetric_difference(&want)
                .map(|k| full(&keys[*k as usize]))
                .collect::<Vec<_>>()
        );
    }
    bus.shutdown().await.expect("shutdown");
}
