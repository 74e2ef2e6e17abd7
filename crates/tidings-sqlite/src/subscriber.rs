use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use tidings_core::transport::{
    Delivery, DeliveryStream, Subscriber, SubscriptionSpec, TransportError,
};
use tokio::sync::{Notify, Semaphore};

use crate::SqliteTransport;
use crate::delivery::{Claimed, SqliteDelivery};
use crate::error::Result;
use crate::store::{Shared, ms, now_ms};

/// Leases up to `?5` ready messages of subscription `?3`, oldest first, for token `?1` until
/// `?2` (`?4` is now).
///
/// It walks the pending index in id order and stops at the limit. Left to itself, the
/// planner takes the (subscription, visible_at) index and sorts every ready row by id for
/// each claim: a backlog of 1,000,000 then drains in time quadratic in its size.
const CLAIM: &str = "UPDATE tidings_messages \
     SET lease_token = ?1, visible_at = ?2, attempts = attempts + 1 \
     WHERE id IN (SELECT id FROM tidings_messages INDEXED BY tidings_messages_pending \
         WHERE subscription = ?3 AND acked_at IS NULL AND visible_at <= ?4 \
         ORDER BY id LIMIT ?5) \
     RETURNING id, topic, content_type, body, attempts, first_failure_at, last_error";

#[async_trait]
impl Subscriber for SqliteTransport {
    async fn subscribe(&self, spec: &SubscriptionSpec) -> Result<DeliveryStream, TransportError> {
        if self.shared.closed.is_cancelled() {
            return Err(TransportError::Closed);
        }
        self.declare(spec).await?;
        let lease = Arc::new(Lease {
            shared: self.shared.clone(),
            token: fastrand::i64(1..),
        });
        tokio::spawn(renew(Arc::downgrade(&lease), self.shared.config.lease));
        let consumer = Consumer {
            signal: self.shared.signals.subscription(&spec.name),
            shared: self.shared.clone(),
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

impl SqliteTransport {
    /// Records the subscription and its bindings (bindings accumulate, as on a broker).
    async fn declare(&self, spec: &SubscriptionSpec) -> Result<(), TransportError> {
        let name = spec.name.clone();
        let patterns: Vec<String> = spec
            .patterns
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect();
        self.shared
            .writer
            .submit(move |batch| {
                Box::pin(async move {
                    let mut changed = sqlx::query(
                        "INSERT OR IGNORE INTO tidings_subscriptions (name, created_at) \
                         VALUES (?, ?)",
                    )
                    .bind(&name)
                    .bind(now_ms())
                    .execute(&mut batch.conn)
                    .await?
                    .rows_affected();
                    for pattern in &patterns {
                        changed += sqlx::query(
                            "INSERT OR IGNORE INTO tidings_bindings (subscription, pattern) \
                             VALUES (?, ?)",
                        )
                        .bind(&name)
                        .bind(pattern)
                        .execute(&mut batch.conn)
                        .await?
                        .rows_affected();
                    }
                    if changed > 0 {
                        sqlx::query(
                            "UPDATE tidings_meta SET value = value + 1 \
                             WHERE key = 'bindings_version'",
                        )
                        .execute(&mut batch.conn)
                        .await?;
                        batch.routes.invalidate();
                    }
                    Ok(())
                })
            })
            .await
            .map_err(TransportError::from)
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
        let token = lease.token;
        let until = now_ms() + ms(length);
        let renewed = lease
            .shared
            .writer
            .submit(move |batch| {
                Box::pin(async move {
                    sqlx::query(
                        "UPDATE tidings_messages SET visible_at = ? \
                         WHERE lease_token = ? AND acked_at IS NULL",
                    )
                    .bind(until)
                    .bind(token)
                    .execute(&mut batch.conn)
                    .await?;
                    Ok(())
                })
            })
            .await;
        if let Err(error) = renewed {
            tracing::warn!(%error, "renewing delivery leases failed");
        }
    }
}

struct Consumer {
    shared: Arc<Shared>,
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
    /// When the next message of the subscription becomes visible, if none is ready now.
    next_visible: Option<i64>,
}

impl Consumer {
    async fn next(&mut self) -> Option<Result<Box<dyn Delivery>, TransportError>> {
        let closed = self.shared.closed.clone();
        let slot = tokio::select! {
            slot = self.prefetch.clone().acquire_owned() => slot.ok()?,
            () = closed.cancelled() => return None,
        };
        loop {
            if let Some(row) = self.buffer.pop_front() {
                return Some(Ok(Box::new(SqliteDelivery::new(
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
                Err(error) => return Some(Err(error.into())),
            };
            if !found.rows.is_empty() {
                self.buffer.extend(found.rows);
                continue;
            }
            let mut wait = self.shared.config.poll_interval;
            if let Some(at) = found.next_visible {
                let until = Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0));
                wait = wait.min(until);
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(wait) => {}
                () = closed.cancelled() => return None,
            }
        }
    }

    /// Leases up to `limit` ready messages, oldest first.
    async fn claim(&self, limit: usize) -> Result<Found> {
        let subscription = self.subscription.clone();
        let token = self.lease.token;
        let lease = ms(self.shared.config.lease);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.shared
            .writer
            .submit(move |batch| {
                Box::pin(async move {
                    let now = now_ms();
                    let mut rows: Vec<Claimed> = sqlx::query_as(CLAIM)
                        .bind(token)
                        .bind(now + lease)
                        .bind(&*subscription)
                        .bind(now)
                        .bind(limit)
                        .fetch_all(&mut batch.conn)
                        .await?;
                    rows.sort_by_key(|r| r.id);
                    let next_visible = if rows.is_empty() {
                        sqlx::query_scalar(
                            "SELECT MIN(visible_at) FROM tidings_messages \
                             WHERE subscription = ? AND acked_at IS NULL",
                        )
                        .bind(&*subscription)
                        .fetch_one(&mut batch.conn)
                        .await?
                    } else {
                        None
                    };
                    Ok(Found { rows, next_visible })
                })
            })
            .await
    }
}

impl Drop for Consumer {
    /// Rows claimed but never handed out go back at once, their attempt not counted.
    fn drop(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let ids: Vec<i64> = self.buffer.drain(..).map(|r| r.id).collect();
        let token = self.lease.token;
        let subscription = self.subscription.clone();
        self.shared.writer.detach(move |batch| {
            Box::pin(async move {
                for id in ids {
                    sqlx::query(
                        "UPDATE tidings_messages \
                         SET lease_token = NULL, visible_at = ?, attempts = attempts - 1 \
                         WHERE id = ? AND lease_token = ?",
                    )
                    .bind(now_ms())
                    .bind(id)
                    .bind(token)
                    .execute(&mut batch.conn)
                    .await?;
                }
                batch.wake(&subscription);
                Ok(())
            })
        });
    }
}

#[cfg(test)]
mod tests {
    use sqlx::{ConnectOptions as _, sqlite::SqliteConnectOptions};

    use super::CLAIM;
    use crate::{SqliteConfig, SqliteTransport};

    #[tokio::test]
    async fn a_claim_walks_the_pending_index_in_id_order_without_sorting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let store = SqliteTransport::open(SqliteConfig::new(&path))
            .await
            .unwrap();
        drop(store);
        let mut conn = SqliteConnectOptions::new()
            .filename(&path)
            .connect()
            .await
            .unwrap();
        let plan: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {CLAIM}")))
                .bind(1)
                .bind(2)
                .bind("s")
                .bind(0)
                .bind(256)
                .fetch_all(&mut conn)
                .await
                .unwrap();
        let steps: Vec<&str> = plan.iter().map(|(_, _, _, step)| step.as_str()).collect();
        assert!(
            steps.iter().any(|s| s.contains("tidings_messages_pending")),
            "{steps:?}"
        );
        assert!(
            !steps.iter().any(|s| s.contains("TEMP B-TREE")),
            "{steps:?}"
        );
    }
}
