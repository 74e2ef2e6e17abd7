//! The inbox: which events a subscription has already handled, keyed by
//! (subscription, source, id), so that redeliveries and duplicate publishes run once.
//!
//! Brokers redeliver (at-least-once) and publishers resend after a lost confirm without any
//! `redelivered` flag, so the inbox is the only de-duplication that holds. This crate ships a
//! bounded in-memory window; the SQL stores keep it in a table that a handler can write in its
//! own transaction.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::outcome::BoxError;

/// Identity of one event within one subscription.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InboxKey {
    /// The subscription.
    pub subscription: String,
    /// The event's `source`.
    pub source: String,
    /// The event's `id`.
    pub id: String,
}

/// Records of handled events.
#[async_trait]
pub trait Inbox: Send + Sync + 'static {
    /// Whether the event was handled already.
    async fn contains(&self, key: &InboxKey) -> Result<bool, InboxError>;

    /// Records the event as handled. Recording twice is not an error.
    ///
    /// Takes the key by value: the caller is done with it, and an inbox that keeps keys
    /// (as [`MemoryInbox`] does) keeps this one instead of a copy.
    async fn insert(&self, key: InboxKey) -> Result<(), InboxError>;
}

/// The inbox could not be read or written; handling is retried.
#[derive(Debug, thiserror::Error)]
#[error("inbox unavailable: {0}")]
pub struct InboxError(#[source] pub BoxError);

#[async_trait]
impl<I: Inbox + ?Sized> Inbox for std::sync::Arc<I> {
    async fn contains(&self, key: &InboxKey) -> Result<bool, InboxError> {
        (**self).contains(key).await
    }

    async fn insert(&self, key: InboxKey) -> Result<(), InboxError> {
        (**self).insert(key).await
    }
}

/// Remembers the last `capacity` handled events, in memory.
///
/// Duplicates that arrive further apart than the window are not caught; use a SQL inbox when
/// that matters.
#[derive(Debug)]
pub struct MemoryInbox {
    capacity: usize,
    state: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    /// The keys, each shared with its place in `order` rather than copied there. Hashed with
    /// aHash, randomly keyed per process as SipHash is (ids come from the wire, so the hash
    /// must resist chosen collisions) at a fraction of SipHash's cost per event.
    keys: HashSet<Arc<InboxKey>, ahash::RandomState>,
    order: VecDeque<Arc<InboxKey>>,
}

impl MemoryInbox {
    /// An inbox remembering the last `capacity` events.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            state: Mutex::default(),
        }
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
    async fn contains(&self, key: &InboxKey) -> Result<bool, InboxError> {
        Ok(self.state.lock().expect("inbox lock").keys.contains(key))
    }

    async fn insert(&self, key: InboxKey) -> Result<(), InboxError> {
        let key = Arc::new(key);
        let mut state = self.state.lock().expect("inbox lock");
        if state.keys.insert(key.clone()) {
            state.order.push_back(key);
            while state.order.len() > self.capacity {
                if let Some(old) = state.order.pop_front() {
                    state.keys.remove(&old);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> InboxKey {
        InboxKey {
            subscription: "s".into(),
            source: "src".into(),
            id: id.into(),
        }
    }

    #[tokio::test]
    async fn memory_inbox_forgets_beyond_its_window() {
        let inbox = MemoryInbox::new(2);
        for id in ["a", "b", "a", "c"] {
            inbox.insert(key(id)).await.unwrap();
        }
        assert!(!inbox.contains(&key("a")).await.unwrap());
        assert!(inbox.contains(&key("b")).await.unwrap());
        assert!(inbox.contains(&key("c")).await.unwrap());
    }

    #[tokio::test]
    async fn inbox_keys_include_the_subscription() {
        let inbox = MemoryInbox::default();
        inbox.insert(key("a")).await.unwrap();
        let other = InboxKey {
            subscription: "t".into(),
            ..key("a")
        };
        assert!(!inbox.contains(&other).await.unwrap());
    }
}
