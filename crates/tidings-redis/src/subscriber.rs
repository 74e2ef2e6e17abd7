//! Consuming a subscription's stream through its consumer group.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use futures::StreamExt;
use redis::aio::ConnectionManager;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamPendingCountReply, StreamReadReply};
use tidings_core::dead_letter::{DeadLetter, Original, Reason, ReasonKind};
use tidings_core::topic::Pattern;
use tidings_core::transport::{
    Delivery, DeliveryStream, Subscriber, SubscriptionSpec, TransportError,
};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::acks::Acks;
use crate::delivery::{Fields, RedisDelivery, Subscription, keep_leases};
use crate::error::Error;
use crate::keys::GROUP;
use crate::{Inner, RedisTransport, scripts};

type Item = Result<Box<dyn Delivery>, TransportError>;

/// How often a stream looks for retries due and entries to claim when nothing nudged it
/// (another process may have scheduled or released them).
const LOOK_EVERY: Duration = Duration::from_secs(1);

#[async_trait]
impl Subscriber for RedisTransport {
    /// Binds the subscription's patterns, creates its stream and consumer group if needed,
    /// and reads from it as a new consumer of the group.
    async fn subscribe(&self, spec: &SubscriptionSpec) -> Result<DeliveryStream, TransportError> {
        let inner = self.inner.clone();
        if inner.closed.is_cancelled() {
            return Err(TransportError::Closed);
        }
        inner.declare(&spec.name, &spec.patterns).await?;
        let key = inner.keys.stream(&spec.name);
        let held = Arc::new(Mutex::new(HashMap::new()));
        let consumer = uuid::Uuid::now_v7().to_string();
        tokio::spawn(keep_leases(
            inner.clone(),
            key.clone(),
            consumer.clone(),
            Arc::downgrade(&held),
            inner.config.lease / 3,
        ));
        let reader = inner.blocking_connection().await?;
        let consuming = Consuming {
            subscription: Arc::new(Subscription {
                acks: Acks::new(inner.clone(), key.clone()),
                inner,
                name: spec.name.clone(),
                key,
                consumer,
                held,
                nudge: Arc::new(AtomicBool::new(true)),
            }),
            patterns: spec.patterns.clone(),
            reader,
            permits: Arc::new(Semaphore::new(spec.prefetch.max(1))),
            buffer: VecDeque::new(),
            next_look: Instant::now(),
            failures: 0,
        };
        Ok(
            futures::stream::unfold(consuming, |mut consuming| async move {
                let item = consuming.next().await?;
                Some((item, consuming))
            })
            .boxed(),
        )
    }
}

impl Inner {
    /// Creates the stream and its group, then binds `patterns` (idempotent). In that order:
    /// publishers add to a stream only where it exists (`NOMKSTREAM`, so that a stale route
    /// cannot bring back a removed subscription's), so it must be there once it is bound.
    pub(crate) async fn declare(
        &self,
        subscription: &str,
        patterns: &[Pattern],
    ) -> Result<(), Error> {
        let mut conn = self.conn.clone();
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.keys.stream(subscription))
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match created {
            Err(e) if e.code() != Some("BUSYGROUP") => {
                return Err(self.error(&e, "creating a consumer group"));
            }
            _ => {}
        }
        self.bind(subscription, patterns).await
    }
}

/// The state of one delivery stream. Dropping it stops reading; what it read but did not
/// hand out is claimed again after the lease, and deliveries handed out release themselves
/// when dropped unsettled.
struct Consuming {
    subscription: Arc<Subscription>,
    patterns: Vec<Pattern>,
    /// A connection of its own: reads block on it.
    reader: ConnectionManager,
    /// Deliveries this stream may hold unsettled.
    permits: Arc<Semaphore>,
    buffer: VecDeque<Box<dyn Delivery>>,
    /// When to look for due retries and entries to claim, nudged or not.
    next_look: Instant,
    failures: u32,
}

impl Consuming {
    async fn next(&mut self) -> Option<Item> {
        let inner = self.subscription.inner.clone();
        loop {
            if let Some(delivery) = self.buffer.pop_front() {
                return Some(Ok(delivery));
            }
            if inner.closed.is_cancelled() {
                return None;
            }
            // Room for at least one more delivery.
            let room = tokio::select! {
                () = inner.closed.cancelled() => return None,
                permit = self.permits.clone().acquire_owned() => permit.expect("never closed"),
            };
            drop(room);
            match self.fill().await {
                Ok(()) => self.failures = 0,
                Err(Error::Closed) => return None,
                Err(error) if error.is_transient() => {
                    self.failures += 1;
                    tracing::debug!(%error, subscription = %self.subscription.name, "cannot read yet");
                    let pause = Duration::from_millis(100 * u64::from(self.failures.min(20)));
                    tokio::select! {
                        () = inner.closed.cancelled() => return None,
                        () = tokio::time::sleep(pause) => {}
                    }
                }
                Err(error) => {
                    self.failures += 1;
                    tracing::warn!(%error, subscription = %self.subscription.name, "cannot read");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    return Some(Err(error.into()));
                }
            }
        }
    }

    /// Moves due retries, claims what dead consumers held, then reads new entries, into the
    /// buffer (as many as there are permits).
    async fn fill(&mut self) -> Result<(), Error> {
        let sub = self.subscription.clone();
        let nudged = sub.nudge.swap(false, Ordering::Relaxed);
        if nudged || Instant::now() >= self.next_look {
            self.next_look = Instant::now() + LOOK_EVERY;
            self.move_due().await?;
            self.claim().await?;
            if !self.buffer.is_empty() {
                return Ok(());
            }
        }
        let room = self.permits.available_permits().max(1);
        let block = self
            .next_look
            .saturating_duration_since(Instant::now())
            .min(sub.inner.config.block)
            .max(Duration::from_millis(1));
        let read: redis::RedisResult<Option<StreamReadReply>> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(&sub.consumer)
            .arg("COUNT")
            .arg(room)
            .arg("BLOCK")
            .arg(u64::try_from(block.as_millis()).unwrap_or(1000))
            .arg("STREAMS")
            .arg(&sub.key)
            .arg(">")
            .query_async(&mut self.reader)
            .await;
        let reply = match read {
            Ok(reply) => reply,
            // The group is gone (a Redis restarted without persistence): declare again.
            Err(e) if e.code() == Some("NOGROUP") => {
                tracing::warn!(subscription = %sub.name, "the consumer group is gone; declaring it again");
                sub.inner.declare(&sub.name, &self.patterns).await?;
                return Ok(());
            }
            Err(e) => return Err(sub.inner.error(&e, "reading")),
        };
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            for entry in key.ids {
                self.admit(entry, 0).await;
            }
        }
        Ok(())
    }

    /// Moves this subscription's retries that are due back into its stream.
    async fn move_due(&mut self) -> Result<(), Error> {
        let sub = &self.subscription;
        let keys = &sub.inner.keys;
        let mut conn = sub.inner.conn.clone();
        let (moved, next_due): (i64, i64) = scripts::MOVE_DUE
            .key(keys.delayed(&sub.name))
            .key(&sub.key)
            .arg(Utc::now().timestamp_millis())
            .arg(1000)
            .arg(keys.retries(&sub.name))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| sub.inner.error(&e, "moving due retries"))?;
        if moved > 0 {
            tracing::trace!(moved, subscription = %sub.name, "retries moved back");
        }
        if next_due >= 0 {
            let wait = u64::try_from(next_due - Utc::now().timestamp_millis()).unwrap_or(0);
            let due = Instant::now() + Duration::from_millis(wait);
            self.next_look = self.next_look.min(due);
        }
        Ok(())
    }

    /// Claims entries other consumers held longer than the lease (dead, or released).
    async fn claim(&mut self) -> Result<(), Error> {
        let sub = self.subscription.clone();
        let room = self.permits.available_permits().max(1);
        let min_idle = u64::try_from(sub.inner.config.lease.as_millis()).unwrap_or(u64::MAX);
        let mut conn = sub.inner.conn.clone();
        let claimed: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(&sub.key)
            .arg(GROUP)
            .arg(&sub.consumer)
            .arg(min_idle)
            .arg("0-0")
            .arg("COUNT")
            .arg(room)
            .query_async(&mut conn)
            .await
            .map_err(|e| sub.inner.error(&e, "claiming"))?;
        for entry in claimed.claimed {
            // How often it was delivered: the pending list knows.
            let pending: StreamPendingCountReply = redis::cmd("XPENDING")
                .arg(&sub.key)
                .arg(GROUP)
                .arg(&entry.id)
                .arg(&entry.id)
                .arg(1)
                .query_async(&mut conn)
                .await
                .map_err(|e| sub.inner.error(&e, "reading a delivery count"))?;
            let delivered = pending.ids.first().map_or(1, |p| p.times_delivered);
            let redeliveries = u32::try_from(delivered.saturating_sub(1)).unwrap_or(u32::MAX);
            self.admit(entry, redeliveries).await;
        }
        Ok(())
    }

    /// Turns an entry into a delivery in the buffer, or settles it here: entries tidings did
    /// not write are dropped, entries past the delivery limit dead-lettered.
    async fn admit(&mut self, mut entry: StreamId, redeliveries: u32) {
        let sub = self.subscription.clone();
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            // Read beyond the room there is: it stays pending, claimed after the lease.
            return;
        };
        let Some(fields) = Fields::take(&mut entry) else {
            tracing::warn!(id = %entry.id, subscription = %sub.name, "an entry without a body; removed");
            let _ = sub.acks.ack(entry.id).await;
            return;
        };
        let delivery = RedisDelivery::new(entry.id, fields, redeliveries, sub.clone(), permit);
        let limit = sub.inner.config.delivery_limit;
        let attempt = delivery.attempt();
        if attempt <= limit {
            self.buffer.push_back(Box::new(delivery));
            return;
        }
        // Delivered again and again without being settled: it takes its consumers down.
        let original = match delivery.envelope() {
            Ok(envelope) => Original::Envelope(Box::new((**envelope).clone())),
            Err(undecodable) => Original::Undecodable {
                body: undecodable.body.clone(),
                content_type: undecodable.content_type.clone(),
            },
        };
        let first = delivery.failures().first_failure_at;
        let letter = DeadLetter::new(
            sub.name.clone(),
            original,
            Reason::new(
                ReasonKind::RetriesExhausted,
                format!(
                    "delivered {attempt} times without being settled (delivery limit {limit}): \
                     its consumers kept stopping before they could settle it"
                ),
            ),
        )
        .with_attempts(attempt, first);
        if let Err(error) = Box::new(delivery).dead_letter(letter).await {
            tracing::warn!(%error, "could not dead-letter an entry past the delivery limit");
        }
    }
}
