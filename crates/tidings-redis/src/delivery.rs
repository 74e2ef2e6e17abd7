//! One entry of a subscription's stream, and how it is settled.
//!
//! - ack: `XACK` and `XDEL`, batched ([`Acks`]).
//! - retry: in one `MULTI`, the entry (with the attempt, first failure and last error) is
//!   written to a retry hash, scheduled in the subscription's delayed set, and acked and
//!   deleted from the stream; a consumer moves it back when it is due.
//! - dead letter: in one `MULTI`, added to the dead-letter stream with the failure's
//!   details, and acked and deleted.
//! - dropped unsettled: marked idle for a whole lease (`XCLAIM ... IDLE`), so that the next
//!   `XAUTOCLAIM` hands it out again at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::Utc;
use tidings_core::dead_letter::{DeadLetter, Details};
use tidings_core::envelope::Envelope;
use tidings_core::transport::{Delivery, FailureHistory, Received, TransportError, Undecodable};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use crate::Inner;
use crate::acks::Acks;
use crate::keys::{GROUP, field};

/// What the deliveries of one subscription stream share.
pub(crate) struct Subscription {
    pub(crate) inner: Arc<Inner>,
    pub(crate) name: String,
    /// The stream's key.
    pub(crate) key: String,
    /// This stream's consumer name in the group.
    pub(crate) consumer: String,
    pub(crate) acks: Acks,
    /// Entries held, and when their idle time was last reset.
    pub(crate) held: Arc<Mutex<HashMap<String, Instant>>>,
    /// Tells the stream to look at once for released entries and due retries, rather than
    /// at its next periodic look.
    pub(crate) nudge: Arc<AtomicBool>,
}

impl Subscription {
    fn release(&self, id: &str) {
        self.held.lock().expect("never poisoned").remove(id);
    }
}

/// Keeps the leases of held entries: every `every`, `XCLAIM ... JUSTID` to this consumer
/// for the ones idle that long, which resets their idle time. Ends when the stream and its
/// deliveries are gone.
pub(crate) async fn keep_leases(
    inner: Arc<Inner>,
    key: String,
    consumer: String,
    held: Weak<Mutex<HashMap<String, Instant>>>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(held) = held.upgrade() else { return };
        let due: Vec<String> = {
            let mut held = held.lock().expect("never poisoned");
            let now = Instant::now();
            held.iter_mut()
                .filter(|(_, since)| now.duration_since(**since) >= every)
                .map(|(id, since)| {
                    *since = now;
                    id.clone()
                })
                .collect()
        };
        drop(held);
        if due.is_empty() {
            continue;
        }
        let mut conn = inner.conn.clone();
        let renewed: redis::RedisResult<Vec<String>> = redis::cmd("XCLAIM")
            .arg(&key)
            .arg(GROUP)
            .arg(&consumer)
            .arg(0)
            .arg(&due)
            .arg("JUSTID")
            .query_async(&mut conn)
            .await;
        if let Err(error) = renewed {
            tracing::debug!(%error, "leases not renewed");
        }
    }
}

/// An entry of a subscription's stream.
pub(crate) struct RedisDelivery {
    id: String,
    /// The body and its content type, read into an envelope when first asked.
    received: Received,
    topic: String,
    attempt: u32,
    failures: FailureHistory,
    subscription: Arc<Subscription>,
    settled: bool,
    _permit: OwnedSemaphorePermit,
}

impl std::fmt::Debug for RedisDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisDelivery")
            .field("subscription", &self.subscription.name)
            .field("id", &self.id)
            .field("topic", &self.topic)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

/// The fields of a stream entry, as read.
pub(crate) struct Fields {
    pub(crate) topic: String,
    pub(crate) content_type: Option<String>,
    pub(crate) body: Bytes,
    pub(crate) attempt: u32,
    pub(crate) failures: FailureHistory,
}

impl Fields {
    /// Takes an entry's fields out of it, moving the body rather than copying it; `None`
    /// when it has no body (not an entry tidings wrote). Fields tidings does not read here
    /// stay in the entry.
    pub(crate) fn take(entry: &mut redis::streams::StreamId) -> Option<Self> {
        // An entry has a handful of fields: walking them costs less than hashing each name
        // looked up.
        let (mut body, mut topic, mut content_type) = (None, None, None);
        let (mut attempt, mut first_failure, mut last_error) = (None, None, None);
        entry.map.retain(|name, value| {
            let slot = match name.as_str() {
                field::BODY => &mut body,
                field::TOPIC => &mut topic,
                field::CONTENT_TYPE => &mut content_type,
                field::ATTEMPT => &mut attempt,
                field::FIRST_FAILURE => &mut first_failure,
                field::LAST_ERROR => &mut last_error,
                _ => return true,
            };
            *slot = Some(std::mem::replace(value, redis::Value::Nil));
            false
        });
        let text = |value| parsed::<String>(value).filter(|s| !s.is_empty());
        Some(Self {
            body: match body? {
                redis::Value::BulkString(bytes) => Bytes::from(bytes),
                other => Bytes::from(redis::from_redis_value::<Vec<u8>>(other).ok()?),
            },
            topic: text(topic).unwrap_or_default(),
            content_type: text(content_type),
            attempt: parsed(attempt).unwrap_or(1u32).max(1),
            failures: FailureHistory {
                first_failure_at: parsed(first_failure)
                    .and_then(chrono::DateTime::from_timestamp_millis),
                last_error: text(last_error),
            },
        })
    }
}

/// A field's value read as a `T`, if it is one.
fn parsed<T: redis::FromRedisValue>(value: Option<redis::Value>) -> Option<T> {
    value.and_then(|v| redis::from_redis_value(v).ok())
}

impl RedisDelivery {
    /// Entry `id`, delivered `redeliveries` times before this one.
    pub(crate) fn new(
        id: String,
        fields: Fields,
        redeliveries: u32,
        subscription: Arc<Subscription>,
        permit: OwnedSemaphorePermit,
    ) -> Self {
        subscription
            .held
            .lock()
            .expect("never poisoned")
            .insert(id.clone(), Instant::now());
        Self {
            id,
            received: Received::json(fields.body, fields.content_type),
            topic: fields.topic,
            attempt: fields.attempt.saturating_add(redeliveries),
            failures: fields.failures,
            subscription,
            settled: false,
            _permit: permit,
        }
    }

    /// Runs `pipe` (which must end by acking and deleting this entry) atomically.
    async fn settle_with(
        mut self: Box<Self>,
        pipe: &mut redis::Pipeline,
        what: &str,
    ) -> Result<(), TransportError> {
        let sub = self.subscription.clone();
        pipe.cmd("XACK")
            .arg(&sub.key)
            .arg(GROUP)
            .arg(&self.id)
            .ignore()
            .cmd("XDEL")
            .arg(&sub.key)
            .arg(&self.id)
            .ignore();
        let mut conn = sub.inner.conn.clone();
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(|e| TransportError::from(sub.inner.error(&e, what)))?;
        self.settled = true;
        sub.release(&self.id);
        Ok(())
    }
}

fn millis(time: chrono::DateTime<Utc>) -> i64 {
    time.timestamp_millis()
}

#[async_trait]
impl Delivery for RedisDelivery {
    fn envelope(&self) -> Result<&Arc<Envelope>, &Undecodable> {
        self.received.envelope()
    }

    fn received(&self) -> Option<&Received> {
        Some(&self.received)
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

    async fn ack(mut self: Box<Self>) -> Result<(), TransportError> {
        let sub = self.subscription.clone();
        sub.acks.ack(self.id.clone()).await?;
        self.settled = true;
        sub.release(&self.id);
        Ok(())
    }

    async fn retry(self: Box<Self>, after: Duration, error: &str) -> Result<(), TransportError> {
        let sub = self.subscription.clone();
        let retry_id = uuid::Uuid::now_v7().to_string();
        let due = Utc::now().timestamp_millis()
            + i64::try_from(after.as_millis()).unwrap_or(i64::MAX / 2);
        let first = self.failures.first_failure_at.unwrap_or_else(Utc::now);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HSET")
            .arg(format!("{}{retry_id}", sub.inner.keys.retries(&sub.name)))
            .arg(field::TOPIC)
            .arg(&self.topic)
            .arg(field::CONTENT_TYPE)
            .arg(self.received.content_type().unwrap_or(""))
            .arg(field::BODY)
            .arg(&self.received.body()[..])
            .arg(field::ATTEMPT)
            .arg(self.attempt.saturating_add(1))
            .arg(field::FIRST_FAILURE)
            .arg(millis(first))
            .arg(field::LAST_ERROR)
            .arg(error)
            .ignore()
            .cmd("ZADD")
            .arg(sub.inner.keys.delayed(&sub.name))
            .arg(due)
            .arg(&retry_id)
            .ignore();
        self.settle_with(&mut pipe, "scheduling a retry").await?;
        // This stream looks at the delayed set again soon.
        sub.nudge.store(true, Ordering::Relaxed);
        Ok(())
    }

    async fn dead_letter(self: Box<Self>, letter: DeadLetter) -> Result<(), TransportError> {
        let sub = self.subscription.clone();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("XADD")
            .arg(sub.inner.keys.dead_letters(&sub.name))
            .arg("*")
            .arg(field::TOPIC)
            .arg(&self.topic)
            .arg(field::CONTENT_TYPE)
            .arg(self.received.content_type().unwrap_or(""))
            .arg(field::BODY)
            .arg(&self.received.body()[..])
            .arg(field::DETAILS)
            .arg(Details::of(&letter, &self.topic).to_json())
            .ignore();
        self.settle_with(&mut pipe, "dead-lettering").await
    }
}

impl Drop for RedisDelivery {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let sub = self.subscription.clone();
        sub.release(&self.id);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let id = self.id.clone();
        runtime.spawn(async move {
            let idle = u64::try_from(sub.inner.config.lease.as_millis()).unwrap_or(u64::MAX);
            let mut conn = sub.inner.conn.clone();
            let released: redis::RedisResult<Vec<String>> = redis::cmd("XCLAIM")
                .arg(&sub.key)
                .arg(GROUP)
                .arg(&sub.consumer)
                .arg(0)
                .arg(&id)
                .arg("IDLE")
                .arg(idle)
                .arg("JUSTID")
                .query_async(&mut conn)
                .await;
            if let Err(error) = released {
                tracing::debug!(%error, "a dropped delivery was not released; it comes back after the lease");
            }
            sub.nudge.store(true, Ordering::Relaxed);
        });
    }
}
