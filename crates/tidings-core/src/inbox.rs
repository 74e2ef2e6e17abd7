//! The inbox: which events a subscription has already handled, keyed by
//! (subscription, source, id), so that redeliveries and duplicate publishes run once.
//!
//! Brokers redeliver (at-least-once) and publishers resend after a lost confirm without any
//! `redelivered` flag, so the inbox is the only de-duplication that holds. This crate ships a
//! bounded in-memory window; the SQL stores keep it in a table that a handler can write in its
//! own transaction.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::outcome::BoxError;

/// Identity of one event within one subscription, borrowed from the event it names.
///
/// ```
/// use tidings_core::inbox::InboxKey;
///
/// let key = InboxKey::new("billing", "oms-service", "0190f1c2-7d3e-7a1b-9c4d-5e6f7a8b9c0d");
/// assert_eq!(key.subscription, "billing");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InboxKey<'a> {
    /// The subscription.
    pub subscription: &'a str,
    /// The event's `source`.
    pub source: &'a str,
    /// The event's `id`.
    pub id: &'a str,
}

impl<'a> InboxKey<'a> {
    /// The key of event `id` from `source` in `subscription`.
    pub fn new(subscription: &'a str, source: &'a str, id: &'a str) -> Self {
        Self {
            subscription,
            source,
            id,
        }
    }
}

/// Records of handled events.
#[async_trait]
pub trait Inbox: Send + Sync + 'static {
    /// Whether the event was handled already.
    async fn contains(&self, key: InboxKey<'_>) -> Result<bool, InboxError>;

    /// Records the event as handled. Recording twice is not an error.
    async fn insert(&self, key: InboxKey<'_>) -> Result<(), InboxError>;
}

/// The inbox could not be read or written; handling is retried.
#[derive(Debug, thiserror::Error)]
#[error("inbox unavailable: {0}")]
pub struct InboxError(#[source] pub BoxError);

#[async_trait]
impl<I: Inbox + ?Sized> Inbox for std::sync::Arc<I> {
    async fn contains(&self, key: InboxKey<'_>) -> Result<bool, InboxError> {
        (**self).contains(key).await
    }

    async fn insert(&self, key: InboxKey<'_>) -> Result<(), InboxError> {
        (**self).insert(key).await
    }
}

/// The last `capacity` handled events, in memory: a window against the redeliveries and
/// resends of a running process. It forgets on restart; use a SQL store's inbox for more.
///
/// It keeps a 128-bit fingerprint of each key rather than the key: 16 bytes an event
/// whatever the length of its ids, and no copy of them. The fingerprint is hashed with keys
/// drawn at random for each inbox, so nobody can make up ids that collide on purpose; two
/// different events share one by chance with a probability of about n²/2¹²⁹ for a window of
/// n, under 10⁻²⁸ for the default 100,000.
#[derive(Debug)]
pub struct MemoryInbox {
    capacity: usize,
    /// Two independently keyed 64-bit hashes, making up the fingerprint.
    fingerprint: (ahash::RandomState, ahash::RandomState),
    state: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    fingerprints: HashSet<u128, ahash::RandomState>,
    order: VecDeque<u128>,
}

impl MemoryInbox {
    /// A window of the last `capacity` events (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            fingerprint: (ahash::RandomState::new(), ahash::RandomState::new()),
            state: Mutex::default(),
        }
    }

    fn fingerprint(&self, key: InboxKey<'_>) -> u128 {
        let (high, low) = &self.fingerprint;
        (u128::from(high.hash_one(key)) << 64) | u128::from(low.hash_one(key))
    }
}

impl Default for MemoryInbox {
    /// A window of 100,000 events.
    fn default() -> Self {
        Self::new(100_000)
    }
}

#[async_trait]
impl Inbox for MemoryInbox {
    async fn contains(&self, key: InboxKey<'_>) -> Result<bool, InboxError> {
        let fingerprint = self.fingerprint(key);
        let state = self.state.lock().expect("inbox lock");
        Ok(state.fingerprints.contains(&fingerprint))
    }

    async fn insert(&self, key: InboxKey<'_>) -> Result<(), InboxError> {
        let fingerprint = self.fingerprint(key);
        let mut state = self.state.lock().expect("inbox lock");
        if state.fingerprints.insert(fingerprint) {
            state.order.push_back(fingerprint);
            while state.order.len() > self.capacity {
                if let Some(old) = state.order.pop_front() {
                    state.fingerprints.remove(&old);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> InboxKey<'_> {
        InboxKey::new("s", "src", id)
    }

    #[tokio::test]
    async fn memory_inbox_forgets_beyond_its_window() {
        let inbox = MemoryInbox::new(2);
        for id in ["a", "b", "a", "c"] {
            inbox.insert(key(id)).await.unwrap();
        }
        assert!(!inbox.contains(key("a")).await.unwrap());
        assert!(inbox.contains(key("b")).await.unwrap());
        assert!(inbox.contains(key("c")).await.unwrap());
    }

    #[tokio::test]
    async fn inbox_keys_include_the_subscription() {
        let inbox = MemoryInbox::default();
        inbox.insert(key("a")).await.unwrap();
        let other = InboxKey {
            subscription: "t",
            ..key("a")
        };
        assert!(!inbox.contains(other).await.unwrap());
    }

    #[tokio::test]
    async fn keys_whose_parts_join_to_the_same_text_are_different_events() {
        let inbox = MemoryInbox::default();
        inbox
            .insert(InboxKey::new("s", "src-a", "1"))
            .await
            .unwrap();
        for other in [
            InboxKey::new("s", "src-", "a1"),
            InboxKey::new("s", "src", "-a1"),
            InboxKey::new("ssrc-a", "", "1"),
        ] {
            assert!(!inbox.contains(other).await.unwrap(), "{other:?}");
        }
        assert!(
            inbox
                .contains(InboxKey::new("s", "src-a", "1"))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn two_memory_inboxes_fingerprint_the_same_key_differently_yet_each_finds_it() {
        let (one, two) = (MemoryInbox::default(), MemoryInbox::default());
        assert_ne!(one.fingerprint(key("a")), two.fingerprint(key("a")));
        for inbox in [&one, &two] {
            inbox.insert(key("a")).await.unwrap();
            assert!(inbox.contains(key("a")).await.unwrap());
        }
    }
}
