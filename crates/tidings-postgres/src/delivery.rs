//! A claimed row, settled by deleting it, delaying it, or moving it to the dead letters.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tidings_core::dead_letter::DeadLetter;
use tidings_core::envelope::Envelope;
use tidings_core::transport::{Delivery, FailureHistory, Received, TransportError, Undecodable};
use tokio::sync::OwnedSemaphorePermit;

use crate::error::Result;
use crate::subscriber::Lease;

/// A row leased by a claim.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Claimed {
    pub(crate) id: i64,
    topic: String,
    content_type: Option<String>,
    body: Vec<u8>,
    attempts: i32,
    first_failure_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
}

/// Runs database work that nothing waits for (giving rows back on drop), logging failures:
/// a row that could not be given back returns when its lease runs out.
pub(crate) fn in_background(work: impl Future<Output = Result<()>> + Send + 'static) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            if let Err(error) = work.await {
                tracing::debug!(%error, "giving deliveries back failed; their lease will expire");
            }
        });
    }
}

/// A leased message. Dropped unsettled, it is made ready again at once.
pub(crate) struct PgDelivery {
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

impl PgDelivery {
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
                first_failure_at: row.first_failure_at,
                last_error: row.last_error,
            },
            settled: false,
            _slot: slot,
        }
    }

    /// Marks the delivery settled once `changed` came back; on failure it stays unsettled,
    /// and dropping it gives the row back.
    fn settled(&mut self, changed: sqlx::Result<u64>) -> Result<(), TransportError> {
        let changed = changed.map_err(crate::Error::from)?;
        self.settled = true;
        if changed == 0 {
            tracing::debug!(
                subscription = %self.subscription,
                id = self.id,
                "settled after the lease ran out; the message is (or was) delivered again"
            );
        }
        Ok(())
    }
}

impl fmt::Debug for PgDelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgDelivery")
            .field("subscription", &self.subscription)
            .field("row", &self.id)
            .field("topic", &self.topic)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Delivery for PgDelivery {
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

    /// Deleted with the acks queued beside it, in one statement
    /// ([`Acks`](crate::acks::Acks)).
    async fn ack(mut self: Box<Self>) -> Result<(), TransportError> {
        let shared = &self.lease.shared;
        let deleted = shared
            .acks
            .ack(&shared.pool, self.id, self.lease.token)
            .await;
        self.settled(deleted)
    }

    async fn retry(
        mut self: Box<Self>,
        after: Duration,
        error: &str,
    ) -> Result<(), TransportError> {
        let released = sqlx::query(
            "UPDATE tidings_messages \
             SET lease_token = NULL, visible_at = now() + make_interval(secs => $1), \
                 first_failure_at = COALESCE(first_failure_at, now()), last_error = $2 \
             WHERE id = $3 AND lease_token = $4",
        )
        .bind(after.as_secs_f64())
        .bind(error)
        .bind(self.id)
        .bind(self.lease.token)
        .execute(&self.lease.shared.pool)
        .await
        .map(|done| done.rows_affected());
        self.settled(released)?;
        self.lease.shared.wakeups.wake(&self.subscription);
        Ok(())
    }

    async fn dead_letter(mut self: Box<Self>, letter: DeadLetter) -> Result<(), TransportError> {
        let (body, content_type, decodable) = letter.original.to_stored();
        let moved = sqlx::query(
            "WITH gone AS ( \
                 DELETE FROM tidings_messages WHERE id = $1 AND lease_token = $2 RETURNING id) \
             INSERT INTO tidings_dead_letters (id, subscription, handler, topic, content_type, \
                 body, decodable, reason_kind, reason_message, attempts, first_failure_at, \
                 last_failure_at) \
             SELECT $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14 FROM gone",
        )
        .bind(self.id)
        .bind(self.lease.token)
        .bind(&letter.id)
        .bind(&letter.subscription)
        .bind(letter.handler.as_deref())
        .bind(&self.topic)
        .bind(content_type)
        .bind(body)
        .bind(decodable)
        .bind(letter.reason.kind.as_str())
        .bind(&letter.reason.message)
        .bind(i32::try_from(letter.attempts).unwrap_or(i32::MAX))
        .bind(letter.first_failure_at)
        .bind(letter.last_failure_at)
        .execute(&self.lease.shared.pool)
        .await
        .map(|done| done.rows_affected());
        self.settled(moved)
    }
}

impl Drop for PgDelivery {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let (id, lease) = (self.id, self.lease.clone());
        let subscription = self.subscription.clone();
        in_background(async move {
            sqlx::query(
                "UPDATE tidings_messages SET lease_token = NULL, visible_at = now() \
                 WHERE id = $1 AND lease_token = $2",
            )
            .bind(id)
            .bind(lease.token)
            .execute(&lease.shared.pool)
            .await?;
            lease.shared.wakeups.wake(&subscription);
            Ok(())
        });
    }
}
