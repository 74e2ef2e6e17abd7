use std::sync::Arc;

use async_trait::async_trait;
use tidings::transport::Transport;

/// What a transport's test provides to the conformance suite.
#[async_trait]
pub trait Harness: Send + Sync + 'static {
    /// A connected transport. May be called more than once in a test (e.g. to simulate a
    /// second process); all returned transports reach the same broker.
    async fn transport(&self) -> Arc<dyn Transport>;

    /// Stops and starts the broker, returning once it accepts connections again. Returns
    /// `false` when the harness cannot restart its broker (the case is then not applicable).
    async fn restart_broker(&self) -> bool {
        false
    }

    /// Publishes bytes that are not an envelope under `topic`, the way a broken producer
    /// would. Returns `false` when the transport carries envelopes, not bytes.
    async fn publish_raw(&self, topic: &str, bytes: &[u8]) -> bool {
        let _ = (topic, bytes);
        false
    }

    /// Whether the broker may, on rare occasions, hand one message to two competing
    /// consumers of a subscription, as SQS standard queues say they may ("at-least-once
    /// delivery"). The competing-consumers rule then asks for every event at least once and
    /// leaves the copies to the inbox, which removes them above the transport. `false`:
    /// each event goes to exactly one of them.
    fn competing_consumers_may_share(&self) -> bool {
        false
    }
}

/// A random prefix that keeps one case's topics and subscriptions apart from every other's.
#[derive(Debug, Clone)]
pub struct Namespace(String);

impl Namespace {
    /// A fresh namespace.
    pub fn new() -> Self {
        Self(format!("t{:08x}", fastrand::u32(..)))
    }

    /// A topic inside the namespace: `<ns>.<suffix>`.
    pub fn topic(&self, suffix: &str) -> String {
        if suffix.is_empty() {
            self.0.clone()
        } else {
            format!("{}.{suffix}", self.0)
        }
    }

    /// A subscription name inside the namespace: `<ns>-<name>`.
    pub fn subscription(&self, name: &str) -> String {
        format!("{}-{name}", self.0)
    }

    /// The prefix itself.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Namespace {
    fn default() -> Self {
        Self::new()
    }
}
