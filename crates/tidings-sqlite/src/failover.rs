//! The failover publisher: a broker outage is absorbed by the local store.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tidings_core::envelope::Envelope;
use tidings_core::outbox::{OutboxError, OutboxStore, Relay, RelayHandle, Staged};
use tidings_core::retry::RetryPolicy;
use tidings_core::transport::{Publisher, TransportError};
use tokio::sync::{Mutex, RwLock};

use crate::SqliteTransport;
use crate::error::Result;
use crate::outbox;
use crate::store::Shared;

/// Every spooled event shares one ordering key: the spool is forwarded in the order it was
/// written, across subjects.
const SPOOL_KEY: &str = "tidings.failover";

/// Wraps a publisher (usually a broker's) so that publishing keeps working while the broker is
/// unreachable.
///
/// A publish goes straight to the broker while it answers. When it fails with a transient
/// error (connection lost, time-out), the events are written to the local SQLite store
/// instead, and `publish` returns `Ok`: the events are durable, and will be forwarded. From
/// then on every publish joins the spool, behind the earlier ones, until a forwarder has
/// delivered all of it to the broker; then publishing goes direct again. Events therefore
/// reach the broker in the order they were published, and none is lost; a forward interrupted
/// between the broker's confirm and the spool's update is sent again (the inbox removes the
/// duplicate). Errors that are not transient (a refusal, a size limit) are returned as they
/// are.
///
/// The spool survives restarts: a publisher opened on a store with spooled events starts in
/// spooling mode and forwards them.
///
/// ```
/// use tidings_core::envelope::Envelope;
/// use tidings_core::memory::MemoryTransport;
/// use tidings_core::transport::Publisher;
/// use tidings_sqlite::{FailoverPublisher, SqliteConfig, SqliteTransport};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let local = SqliteTransport::open(SqliteConfig::new(dir.path().join("spool.db"))).await?;
/// let broker = MemoryTransport::new(); // in production: the AMQP, NATS, ... publisher
/// let publisher = FailoverPublisher::new(broker, &local).await?;
/// publisher.publish(&Envelope::new("oms", "order.created")).await?;
/// publisher.close().await?;
/// # Ok(())
/// # }
/// ```
pub struct FailoverPublisher {
    inner: Arc<dyn Publisher>,
    spool: Arc<Spool>,
    forwarder: Mutex<Option<RelayHandle>>,
}

impl std::fmt::Debug for FailoverPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailoverPublisher").finish_non_exhaustive()
    }
}

/// The spool: `tidings_outbox` rows of the local store, written through its writer.
struct Spool {
    shared: Arc<Shared>,
    /// Whether publishes go to the spool. Readers publish; switching takes the write lock,
    /// so that no direct publish overtakes the spool while it drains.
    spooling: RwLock<bool>,
}

impl FailoverPublisher {
    /// Wraps `inner`, spooling to `local` when it is unreachable. Forwarding backs off from
    /// 100 ms to 10 s between failed attempts.
    pub async fn new(inner: impl Publisher, local: &SqliteTransport) -> Result<Self> {
        Self::with_backoff(
            inner,
            local,
            RetryPolicy::exponential(Duration::from_millis(100))
                .with_max_delay(Duration::from_secs(10)),
        )
        .await
    }

    /// Like [`new`](Self::new), with the forwarder's backoff between failed attempts.
    pub async fn with_backoff(
        inner: impl Publisher,
        local: &SqliteTransport,
        backoff: RetryPolicy,
    ) -> Result<Self> {
        let inner: Arc<dyn Publisher> = Arc::new(inner);
        let waiting = pending(&local.shared).await?;
        let spool = Arc::new(Spool {
            shared: local.shared.clone(),
            spooling: RwLock::new(waiting > 0),
        });
        if waiting > 0 {
            tracing::info!(
                waiting,
                "failover spool holds events from before; forwarding"
            );
        }
        let forwarder = Relay::new(spool.clone(), inner.clone())
            .batch_size(256)
            .backoff(backoff)
            .poll_interval(Duration::from_secs(1))
            .spawn();
        Ok(Self {
            inner,
            spool,
            forwarder: Mutex::new(Some(forwarder)),
        })
    }

    /// Events waiting in the spool.
    pub async fn spooled(&self) -> Result<u64> {
        pending(&self.spool.shared).await
    }

    /// Whether publishes currently go to the spool.
    pub async fn is_spooling(&self) -> bool {
        *self.spool.spooling.read().await
    }
}

async fn pending(shared: &Shared) -> Result<u64> {
    shared
        .writer
        .submit(|batch| Box::pin(outbox::pending(&mut batch.conn)))
        .await
}

impl Spool {
    async fn append(&self, envelopes: &[Envelope]) -> Result<(), TransportError> {
        let envelopes = envelopes.to_vec();
        self.shared
            .writer
            .submit(move |batch| {
                Box::pin(async move {
                    for envelope in &envelopes {
                        outbox::stage(&mut batch.conn, Some(SPOOL_KEY), envelope).await?;
                    }
                    batch.outbox_changed = true;
                    Ok(())
                })
            })
            .await
            .map_err(TransportError::from)
    }
}

#[async_trait]
impl Publisher for FailoverPublisher {
    async fn publish_batch(&self, envelopes: &[Envelope]) -> Result<(), TransportError> {
        {
            let spooling = self.spool.spooling.read().await;
            if *spooling {
                return self.spool.append(envelopes).await;
            }
            match self.inner.publish_batch(envelopes).await {
                Ok(()) => return Ok(()),
                Err(error) if !error.is_transient() => return Err(error),
                Err(error) => {
                    tracing::warn!(%error, count = envelopes.len(), "broker unreachable; spooling");
                }
            }
        }
        let mut spooling = self.spool.spooling.write().await;
        *spooling = true;
        self.spool.append(envelopes).await
    }

    /// Stops forwarding (what is still spooled is forwarded by the next publisher opened on
    /// the store) and closes the wrapped publisher.
    async fn close(&self) -> Result<(), TransportError> {
        if let Some(forwarder) = self.forwarder.lock().await.take() {
            forwarder.stop().await;
        }
        self.inner.close().await
    }
}

#[async_trait]
impl OutboxStore for Spool {
    async fn claim(&self, limit: usize, lease: Duration) -> Result<Vec<Staged>, OutboxError> {
        let claim = |shared: Arc<Shared>| async move {
            shared
                .writer
                .submit(move |batch| Box::pin(outbox::claim(&mut batch.conn, limit, lease)))
                .await
                .map_err(OutboxError::new)
        };
        let staged = claim(self.shared.clone()).await?;
        if !staged.is_empty() || !*self.spooling.read().await {
            return Ok(staged);
        }
        // Drained: switch back to direct publishing, unless a publish spooled meanwhile.
        let mut spooling = self.spooling.write().await;
        let staged = claim(self.shared.clone()).await?;
        if staged.is_empty() && pending(&self.shared).await.map_err(OutboxError::new)? == 0 {
            *spooling = false;
            tracing::info!("failover spool drained; publishing directly again");
        }
        Ok(staged)
    }

    async fn mark_sent(&self, positions: &[i64]) -> Result<(), OutboxError> {
        let positions = positions.to_vec();
        self.shared
            .writer
            .submit(move |batch| {
                Box::pin(async move { outbox::mark_sent(&mut batch.conn, &positions).await })
            })
            .await
            .map_err(OutboxError::new)
    }

    async fn release(
        &self,
        positions: &[i64],
        after: Duration,
        error: &str,
    ) -> Result<(), OutboxError> {
        let (positions, error) = (positions.to_vec(), error.to_owned());
        self.shared
            .writer
            .submit(move |batch| {
                Box::pin(async move {
                    outbox::release(&mut batch.conn, &positions, after, &error).await
                })
            })
            .await
            .map_err(OutboxError::new)
    }

    async fn wait(&self, timeout: Duration) {
        let signal = self.shared.signals.outbox().notified();
        tokio::select! {
            () = signal => {}
            () = tokio::time::sleep(timeout) => {}
        }
    }

    async fn pending(&self) -> Result<u64, OutboxError> {
        pending(&self.shared).await.map_err(OutboxError::new)
    }
}
