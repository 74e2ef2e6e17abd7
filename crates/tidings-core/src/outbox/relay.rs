//! [`Relay`]: claim, publish with confirms, mark sent.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{OutboxError, OutboxStore};
use crate::retry::RetryPolicy;
use crate::transport::{Publisher, TransportError};

/// Moves staged events from an [`OutboxStore`] to a [`Publisher`].
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use tidings_core::outbox::{OutboxStore, Relay};
///
/// # async fn run(store: Arc<dyn OutboxStore>, transport: tidings_core::memory::MemoryTransport) {
/// let relay = Relay::new(store, Arc::new(transport))
///     .batch_size(256)
///     .poll_interval(Duration::from_secs(1))
///     .spawn();
/// // ... on shutdown:
/// relay.stop().await;
/// # }
/// ```
#[derive(Clone)]
pub struct Relay {
    store: Arc<dyn OutboxStore>,
    publisher: Arc<dyn Publisher>,
    batch_size: usize,
    lease: Duration,
    poll_interval: Duration,
    backoff: RetryPolicy,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("batch_size", &self.batch_size)
            .field("lease", &self.lease)
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

/// A relay round failed; the claimed events were given back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// The outbox could not be read or written.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    /// Publishing failed; the events will be claimed again.
    #[error("publishing {count} staged event(s) failed: {source}")]
    Publish {
        /// Events in the failed batch.
        count: usize,
        /// The transport's error.
        source: TransportError,
    },
}

impl Relay {
    /// A relay with batches of 256, a 30 s lease, and a 1 s poll when the store cannot wake it.
    pub fn new(store: Arc<dyn OutboxStore>, publisher: Arc<dyn Publisher>) -> Self {
        Self {
            store,
            publisher,
            batch_size: 256,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            backoff: RetryPolicy::exponential(Duration::from_millis(100))
                .with_max_delay(Duration::from_secs(30)),
        }
    }

    /// Events claimed and published at once (at least 1).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// How long claimed events stay reserved for this relay. A relay that dies holding them
    /// delays them by this much; another relay then publishes them again. Keep it well above
    /// the time one batch takes to publish.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How often an idle relay looks for new events when the store cannot wake it.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Backoff between failed rounds (the broker is down, the database is busy).
    pub fn backoff(mut self, policy: RetryPolicy) -> Self {
        self.backoff = policy;
        self
    }

    /// Runs one round: claim, publish, mark. Returns how many events were published (0 when
    /// nothing was waiting).
    pub async fn run_once(&self) -> Result<usize, RelayError> {
        let staged = self.store.claim(self.batch_size, self.lease).await?;
        if staged.is_empty() {
            return Ok(0);
        }
        let positions: Vec<i64> = staged.iter().map(|s| s.position).collect();
        let envelopes: Vec<_> = staged.into_iter().map(|s| s.envelope).collect();
        if let Err(source) = self.publisher.publish_batch(&envelopes).await {
            let delay = if source.is_transient() {
                self.backoff.ceiling(1)
            } else {
                self.poll_interval
            };
            self.store
                .release(&positions, delay, &source.to_string())
                .await?;
            return Err(RelayError::Publish {
                count: positions.len(),
                source,
            });
        }
        self.store.mark_sent(&positions).await?;
        tracing::debug!(count = positions.len(), "outbox events published");
        Ok(positions.len())
    }

    /// Runs until `stop` is cancelled: rounds back to back while events are waiting, then
    /// waiting for the store's signal or the poll interval; failed rounds back off.
    pub async fn run(&self, stop: CancellationToken) {
        let mut failures = 0u32;
        while !stop.is_cancelled() {
            let pause = match self.run_once().await {
                Ok(0) => {
                    failures = 0;
                    tokio::select! {
                        () = self.store.wait(self.poll_interval) => {}
                        () = stop.cancelled() => {}
                    }
                    continue;
                }
                Ok(_) => {
                    failures = 0;
                    continue;
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let pause = self.backoff.jittered(failures, &mut fastrand::Rng::new());
                    tracing::warn!(%error, ?pause, "outbox relay round failed");
                    pause
                }
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = stop.cancelled() => {}
            }
        }
    }

    /// Runs the relay on a task until [`RelayHandle::stop`].
    pub fn spawn(self) -> RelayHandle {
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move { self.run(token).await });
        RelayHandle { stop, task }
    }
}

/// A relay running on a task.
#[derive(Debug)]
pub struct RelayHandle {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl RelayHandle {
    /// Stops after the current round (a batch being published is finished and marked).
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }

    /// Stops at once, the way a crash would: claimed events stay leased until their lease
    /// expires, then another relay publishes them again.
    pub fn abort(self) {
        self.task.abort();
    }
}
