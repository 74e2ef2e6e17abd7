//! What a benchmark drives: one way of moving orders through one broker, tidings' or a raw
//! client's, behind the same four operations so that both are timed alike.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::task::JoinHandle;

use super::event::Orders;
use super::tally::Tally;

/// Unacknowledged deliveries a consumer may hold: the prefetch of every side.
pub(crate) const PREFETCH: u16 = 256;
/// Handlers the tidings consumer runs at once.
pub(crate) const CONCURRENCY: usize = 64;

/// One way of publishing and consuming orders on a broker.
#[async_trait]
pub(crate) trait Side: Send + Sync {
    /// Publishes `orders[range]` as one batch, returning once the broker confirmed every one
    /// durably.
    async fn publish(&self, orders: &Orders, range: Range<usize>) -> anyhow::Result<()>;

    /// Starts consuming: each event handled is counted on `tally`, then acknowledged. The
    /// consumer is subscribed when this returns, and stops once the tally is complete and its
    /// acknowledgements are confirmed.
    async fn consume(&self, tally: Arc<Tally>) -> anyhow::Result<Consumer>;

    /// Does what the broker's own housekeeping would have done by now, before the first
    /// measured case, so that an earlier run's leftovers do not weigh on this one. Nothing,
    /// but on PostgreSQL where autovacuum is off (as on the CI machine): a queue deletes
    /// every row it delivers, and every claim then wades through the dead ones.
    async fn tidy(&self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// A running consumer.
#[derive(Debug)]
pub(crate) struct Consumer(JoinHandle<anyhow::Result<()>>);

impl Consumer {
    /// A consumer running `work`.
    pub(crate) fn spawn(work: impl Future<Output = anyhow::Result<()>> + Send + 'static) -> Self {
        Self(tokio::spawn(work))
    }

    /// Waits for the consumer to have handled and acknowledged everything.
    pub(crate) async fn finish(self) -> anyhow::Result<()> {
        self.0.await?
    }
}

/// The raw client's side and tidings', on one broker.
pub(crate) struct Pair {
    /// What the report calls the transport: `amqp`, `nats`, ...
    pub(crate) transport: &'static str,
    /// The URL, redacted.
    pub(crate) url: String,
    /// What the raw side is (`lapin 4`, ...).
    pub(crate) raw_client: &'static str,
    pub(crate) raw: Arc<dyn Side>,
    pub(crate) tidings: Arc<dyn Side>,
    /// The URL a second process opens the same queues with (the consumer memory run).
    pub(crate) reopen: String,
}
