use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tidings_core::dead_letter::DeadLetter;
use tidings_core::envelope::Envelope;
use tidings_core::transport::{Delivery, FailureHistory, Received, TransportError, Undecodable};
use tokio::sync::OwnedSemaphorePermit;

use crate::store::{ms, now_ms, time_of};
use crate::subscriber::Lease;
use crate::writer::Batch;

/// A row leased by a claim.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Claimed {
    pub(crate) id: i64,
    topic: String,
    content_type: Option<String>,
    body: Vec<u8>,
    attempts: i64,
    first_failure_at: Option<i64>,
    last_error: Option<String>,
}

/// A leased message. Dropped unsettled, it is made ready again at once.
pub(crate) struct SqliteDelivery {
    lease: Arc<Lease>,
    subscription: Arc<str>,
    id: i64,
    topic: String,
    /// The stored body, read into an envelope when first asked.
    content: Received,
    attempt: u32,
    failures: FailureHistory,
    settled: bool,
    _slot: OwnedSemaphorePermit,
}

impl SqliteDelivery {
    pub(crate) fn new(
        lease: Arc<Lease>,
        subscription: Arc<str>,
        row: Claimed,
        slot: OwnedSemaphorePermit,
    ) -> Self {
        Self {
            lease,
            subscription,
            id: row.id,
            content: Received::stored(row.body.into(), row.content_type),
            topic: row.topic,
            attempt: u32::try_from(row.attempts).unwrap_or(u32::MAX).max(1),
            failures: FailureHistory {
                first_failure_at: row.first_failure_at.map(time_of),
                last_error: row.last_error,
            },
            settled: false,
            _slot: slot,
        }
    }

    /// Runs `work` on this delivery's row in the next batch and waits for the commit.
    async fn settle<F>(mut self: Box<Self>, work: F) -> Result<(), TransportError>
    where
        F: for<'c> FnOnce(
                &'c mut Batch,
                i64,
                i64,
            ) -> futures::future::BoxFuture<'c, crate::Result<u64>>
            + Send
            + 'static,
    {
        let (id, token) = (self.id, self.lease.token);
        // On failure the delivery stays unsettled, and dropping it gives the row back.
        let changed = self
            .lease
            .shared
            .writer
            .submit(move |batch| work(batch, id, token))
            .await?;
        self.settled = true;
        if changed == 0 {
            self.lease_lost();
        }
        Ok(())
    }

    fn lease_lost(&self) {
        tracing::debug!(
            subscription = %self.subscription,
            id = self.id,
            "settled after the lease ran out; the message is (or was) delivered again"
        );
    }
}

impl fmt::Debug for SqliteDelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteDelivery")
            .field("subscription", &self.subscription)
            .field("row", &self.id)
            .field("topic", &self.topic)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Delivery for SqliteDelivery {
    fn envelope(&self) -> Result<&Arc<Envelope>, &Undecodable> {
        self.content.envelope()
    }

    fn received(&self) -> Option<&Received> {
        Some(&self.content)
    }

    fn topic(&self) -> &str {
        &self.topic
    }

    fn attempt(&self) -> u32 {
        self.attempt
    }

    fn failures(&self) -> &FailureHistory {
        &self.failures
    }

    /// Settled with the other acks of the same writer batch, in one statement
    /// ([`Acks`](crate::acks::Acks)).
    async fn ack(mut self: Box<Self>) -> Result<(), TransportError> {
        let shared = &self.lease.shared;
        let retain = !shared.config.retention.is_zero();
        let held = shared
            .acks
            .ack(&shared.writer, retain, self.id, self.lease.token)
            .await?;
        self.settled = true;
        if !held {
            self.lease_lost();
        }
        Ok(())
    }

    async fn retry(self: Box<Self>, after: Duration, error: &str) -> Result<(), TransportError> {
        let error = error.to_owned();
        let subscription = self.subscription.clone();
        self.settle(move |batch, id, token| {
            Box::pin(async move {
                let now = now_ms();
                let changed = sqlx::query(
                    "UPDATE tidings_messages SET lease_token = NULL, visible_at = ?, \
                     last_error = ?, first_failure_at = COALESCE(first_failure_at, ?) \
                     WHERE id = ? AND lease_token = ?",
                )
                .bind(now + ms(after))
                .bind(&error)
                .bind(now)
                .bind(id)
                .bind(token)
                .execute(&mut batch.conn)
                .await?
                .rows_affected();
                batch.wake(&subscription);
                Ok(changed)
            })
        })
        .await
    }

    async fn dead_letter(self: Box<Self>, letter: DeadLetter) -> Result<(), TransportError> {
        let topic = self.topic.clone();
        self.settle(move |batch, id, token| {
            Box::pin(async move {
                let removed =
                    sqlx::query("DELETE FROM tidings_messages WHERE id = ? AND lease_token = ?")
                        .bind(id)
                        .bind(token)
                        .execute(&mut batch.conn)
                        .await?
                        .rows_affected();
                if removed > 0 {
                    crate::dead_letter::insert(batch, &topic, &letter).await?;
                }
                Ok(removed)
            })
        })
        .await
    }
}

impl Drop for SqliteDelivery {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let (id, token) = (self.id, self.lease.token);
        let subscription = self.subscription.clone();
        self.lease.shared.writer.detach(move |batch| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE tidings_messages SET lease_token = NULL, visible_at = ? \
                     WHERE id = ? AND lease_token = ?",
                )
                .bind(now_ms())
                .bind(id)
                .bind(token)
                .execute(&mut batch.conn)
                .await?;
                batch.wake(&subscription);
                Ok(())
            })
        });
    }
}
