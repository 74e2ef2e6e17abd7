use std::sync::Arc;
use std::time::Duration;

use tidings_core::dead_letter::{DeadLetter, Page, ReplayTarget};
use tidings_core::transport::Transport;

use crate::Result;

/// The dead-letter queues of a bus's transport: list, inspect, replay, purge.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> tidings::Result<()> {
/// use tidings::dead_letter::Page;
/// use tidings::{Bus, ReplayRate};
///
/// let bus = Bus::builder(tidings::memory::MemoryTransport::new()).build()?;
/// let dlq = bus.dead_letters();
/// for letter in dlq.list("notification", Page::first(10)).await? {
///     println!("{} failed {} times: {}", letter.id, letter.attempts, letter.reason);
/// }
/// let replayed = dlq.replay_all("notification", ReplayRate::per_second(50)).await?;
/// assert_eq!(replayed, 0);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct DeadLetterQueue {
    transport: Arc<dyn Transport>,
}

/// How fast a bulk replay sends events back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayRate {
    interval: Duration,
}

impl ReplayRate {
    /// At most `n` events a second (at least 1).
    pub fn per_second(n: u32) -> Self {
        Self {
            interval: Duration::from_secs(1) / n.max(1),
        }
    }

    /// As fast as the transport takes them.
    pub fn unlimited() -> Self {
        Self {
            interval: Duration::ZERO,
        }
    }
}

impl DeadLetterQueue {
    pub(crate) fn new(transport: Arc<dyn Transport>) -> Self {
        Self { transport }
    }

    /// Dead letters of `subscription`, oldest first.
    pub async fn list(&self, subscription: &str, page: Page) -> Result<Vec<DeadLetter>> {
        Ok(self.transport.list(subscription, page).await?)
    }

    /// How many dead letters `subscription` has.
    pub async fn count(&self, subscription: &str) -> Result<u64> {
        Ok(self.transport.count(subscription).await?)
    }

    /// One dead letter.
    pub async fn get(&self, subscription: &str, id: &str) -> Result<Option<DeadLetter>> {
        Ok(self.transport.get(subscription, id).await?)
    }

    /// Sends one dead letter back to its subscription, with a fresh attempt count.
    pub async fn replay(&self, subscription: &str, id: &str) -> Result<()> {
        Ok(self
            .transport
            .replay(subscription, id, ReplayTarget::Subscription)
            .await?)
    }

    /// Publishes one dead letter under another topic.
    pub async fn replay_to(&self, subscription: &str, id: &str, topic: &str) -> Result<()> {
        Ok(self
            .transport
            .replay(subscription, id, ReplayTarget::Topic(topic.to_owned()))
            .await?)
    }

    /// Replays every dead letter present when called (not those that fail again meanwhile),
    /// at most at `rate`. Returns how many were replayed.
    pub async fn replay_all(&self, subscription: &str, rate: ReplayRate) -> Result<u64> {
        let mut ids = Vec::new();
        let mut offset = 0;
        loop {
            let page = self
                .transport
                .list(subscription, Page { offset, limit: 500 })
                .await?;
            if page.is_empty() {
                break;
            }
            offset += page.len();
            ids.extend(page.into_iter().map(|d| d.id));
        }
        let mut ticker = (!rate.interval.is_zero()).then(|| tokio::time::interval(rate.interval));
        let mut replayed = 0;
        for id in ids {
            if let Some(ticker) = ticker.as_mut() {
                ticker.tick().await;
            }
            self.replay(subscription, &id).await?;
            replayed += 1;
        }
        Ok(replayed)
    }

    /// Deletes every dead letter of `subscription`; returns how many.
    pub async fn purge(&self, subscription: &str) -> Result<u64> {
        Ok(self.transport.purge(subscription).await?)
    }
}
