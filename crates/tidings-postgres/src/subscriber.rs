//! Subscribing: declaring the subscription, claiming rows, and keeping their leases.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use tidings_core::transport::{
    Delivery, DeliveryStream, Subscriber, SubscriptionSpec, TransportError,
};
use tokio::sync::{Notify, Semaphore};

use crate::delivery::{Claimed, PgDelivery};
use crate::error::Result;
use crate::transport::{PgTransport, Shared, seconds};

#[async_trait]
impl Subscriber for PgTransport {
    async fn subscribe(&self, spec: &SubscriptionSpec) -> Result<DeliveryStream, TransportError> {
        self.check_open()?;
        self.declare(spec).await?;
        let lease = Arc::new(Lease {
            shared: self.shared.clone(),
            token: fastrand::i64(1..),
        });
        tokio::spawn(renew(Arc::downgrade(&lease), self.shared.config.lease));
        let consumer = Consumer {
            signal: self.shared.wakeups.subscription(&spec.name),
            subscription: spec.name.as_str().into(),
            prefetch: Arc::new(Semaphore::new(spec.prefetch.max(1))),
            buffer: VecDeque::new(),
            lease,
        };
        Ok(Box::pin(futures::stream::unfold(
            consumer,
            |mut consumer| async move {
                let next = consumer.next().await?;
                Some((next, consumer))
            },
        )))
    }
}

impl PgTransport {
    /// Records the subscription and its bindings (bindings accumulate, as on a broker).
    async fn declare(&self, spec: &SubscriptionSpec) -> Result<()> {
        let mut tx = self.shared.pool.begin().await?;
        let mut changed = sqlx::query(
            "INSERT INTO tidings_subscriptions (name) VALUES ($1) ON CONFLICT DO NOTHING",
        )
        .bind(&spec.name)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let patterns: Vec<&str> = spec.patterns.iter().map(|p| p.as_str()).collect();
        changed += sqlx::query(
            "INSERT INTO tidings_bindings (subscription, pattern) \
             SELECT $1, pattern FROM unnest($2::text[]) AS p(pattern) ON CONFLICT DO NOTHING",
        )
        .bind(&spec.name)
        .bind(&patterns)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed > 0 {
            sqlx::query(
                "UPDATE tidings_queue_meta SET value = value + 1 WHERE key = 'bindings_version'",
            )
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// The lease of one stream: every row it holds carries its token. While the stream or any of
/// its deliveries is alive, a task pushes the lease's end forward; when the process dies, the
/// rows become ready again once the lease runs out.
#[derive(Debug)]
pub(crate) struct Lease {
    pub(crate) shared: Arc<Shared>,
    pub(crate) token: i64,
}

async fn renew(lease: Weak<Lease>, length: Duration) {
    loop {
        tokio::time::sleep(length / 3).await;
        let Some(lease) = lease.upgrade() else { return };
        let renewed = sqlx::query(
            "UPDATE tidings_messages SET visible_at = now() + make_interval(secs => $1) \
             WHERE lease_token = $2",
        )
        .bind(length.as_secs_f64())
        .bind(lease.token)
        .execute(&lease.shared.pool)
        .await;
        if let Err(error) = renewed {
            tracing::warn!(%error, "renewing delivery leases failed");
        }
    }
}

struct Consumer {
    subscription: Arc<str>,
    signal: Arc<Notify>,
    /// Unsettled deliveries this stream may hold; claimed-but-not-handed-out rows count too.
    prefetch: Arc<Semaphore>,
    buffer: VecDeque<Claimed>,
    lease: Arc<Lease>,
}

/// What a claim found.
struct Found {
    rows: Vec<Claimed>,
    /// How long until the next message of the subscription becomes visible, if none is
    /// ready now.
    next_visible: Option<Duration>,
}

impl Consumer {
    async fn next(&mut self) -> Option<Result<Box<dyn Delivery>, TransportError>> {
        let closed = self.lease.shared.closed.clone();
        let slot = tokio::select! {
            slot = self.prefetch.clone().acquire_owned() => slot.ok()?,
            () = closed.cancelled() => return None,
        };
        loop {
            if let Some(row) = self.buffer.pop_front() {
                return Some(Ok(Box::new(PgDelivery::new(
                    self.lease.clone(),
                    self.subscription.clone(),
                    row,
                    slot,
                ))));
            }
            let signal = self.signal.clone();
            let notified = signal.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if closed.is_cancelled() {
                return None;
            }
            let limit = 1 + self.prefetch.available_permits();
            let found = match self.claim(limit).await {
                Ok(found) => found,
                Err(error) => {
                    // A lost connection is not the stream's end: report it, then claim again
                    // after a pause (the pool reconnects).
                    let transient = error.is_transient();
                    let error = TransportError::from(error);
                    if transient {
                        tracing::warn!(subscription = %self.subscription, %error, "claiming failed; trying again");
                        tokio::select! {
                            () = tokio::time::sleep(self.lease.shared.config.poll_interval) => continue,
                            () = closed.cancelled() => return None,
                        }
                    }
                    return Some(Err(error));
                }
            };
            if !found.rows.is_empty() {
                self.buffer.extend(found.rows);
                continue;
            }
            let mut wait = self.lease.shared.config.poll_interval;
            if let Some(until) = found.next_visible {
                wait = wait.min(until);
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(wait) => {}
                () = closed.cancelled() => return None,
            }
        }
    }

    /// Leases up to `limit` ready messages, oldest first, through `tidings_claim`
    /// (migration `0002_claim.sql`): a function, so that its statement is planned without
    /// sorts whatever the statistics say.
    async fn claim(&self, limit: usize) -> Result<Found> {
        let shared = &self.lease.shared;
        let mut rows: Vec<Claimed> = sqlx::query_as(
            "SELECT id, topic, content_type, body, attempts, first_failure_at, last_error \
             FROM tidings_claim($1, $2, $3, $4)",
        )
        .bind(self.lease.token)
        .bind(shared.config.lease.as_secs_f64())
        .bind(&*self.subscription)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&shared.pool)
        .await?;
        rows.sort_by_key(|r| r.id);
        let next_visible = if rows.is_empty() {
            let until: Option<f64> = sqlx::query_scalar(
                "SELECT EXTRACT(EPOCH FROM MIN(visible_at) - now())::float8 \
                 FROM tidings_messages WHERE subscription = $1",
            )
            .bind(&*self.subscription)
            .fetch_one(&shared.pool)
            .await?;
            until.map(seconds)
        } else {
            None
        };
        Ok(Found { rows, next_visible })
    }
}

impl Drop for Consumer {
    /// Rows claimed but never handed out go back at once, their attempt not counted.
    fn drop(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let ids: Vec<i64> = self.buffer.drain(..).map(|r| r.id).collect();
        let lease = self.lease.clone();
        let subscription = self.subscription.clone();
        crate::delivery::in_background(async move {
            sqlx::query(
                "UPDATE tidings_messages \
                 SET lease_token = NULL, visible_at = now(), attempts = attempts - 1 \
                 WHERE id = ANY($1) AND lease_token = $2",
            )
            .bind(&ids)
            .bind(lease.token)
            .execute(&lease.shared.pool)
            .await?;
            lease.shared.wakeups.wake(&subscription);
            Ok(())
        });
    }
}
