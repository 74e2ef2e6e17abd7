//! One message received from a subscription's queue, and how it is settled.
//!
//! - ack: coalesced `basic.ack` ([`Acks`]).
//! - retry: the message, untouched but for tidings' headers (attempt, first failure, last
//!   error, topic), is published to the subscription's retry queue for the delay; when it
//!   expires there the broker dead-letters it back into the work queue. Only then is the
//!   original acked: a crash in between leaves a duplicate, never a loss.
//! - dead letter: published the same way to the dead-letter exchange, with the failure's
//!   details in headers, then acked.
//! - dropped unsettled: returned to the queue at once (`basic.nack(requeue)`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::Utc;
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use tidings_core::dead_letter::DeadLetter;
use tidings_core::envelope::Envelope;
use tidings_core::transport::{Delivery, FailureHistory, Received, TransportError, Undecodable};

use crate::acks::Acks;
use crate::binding::{self, header};
use crate::publisher::Message;
use crate::topology::{self, QueueNames};

/// Headers the broker adds on redelivery and dead-lettering; a republished copy starts
/// without them.
pub(crate) const BROKER_HEADERS: [&str; 8] = [
    header::DELIVERY_COUNT,
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
];

/// Longest error text carried in a header.
const MAX_ERROR_LEN: usize = 4096;

/// What the deliveries of one subscription share.
pub(crate) struct Subscription {
    pub(crate) inner: Arc<crate::Inner>,
    pub(crate) names: QueueNames,
}

/// A message of a subscription's queue.
pub(crate) struct AmqpDelivery {
    /// The body, read into an envelope when first asked (at once in binary mode).
    received: Received,
    topic: String,
    attempt: u32,
    failures: FailureHistory,
    tag: u64,
    properties: BasicProperties,
    body: Bytes,
    acks: Arc<Acks>,
    subscription: Arc<Subscription>,
    settled: bool,
}

impl std::fmt::Debug for AmqpDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpDelivery")
            .field("queue", &self.subscription.names.queue)
            .field("tag", &self.tag)
            .field("topic", &self.topic)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl AmqpDelivery {
    pub(crate) fn new(
        raw: lapin::message::Delivery,
        acks: Arc<Acks>,
        subscription: Arc<Subscription>,
    ) -> Self {
        let headers = raw.properties.headers().as_ref();
        let topic =
            binding::string(headers, header::TOPIC).unwrap_or_else(|| raw.routing_key.to_string());
        let first = binding::integer(headers, header::ATTEMPT)
            .and_then(|a| u32::try_from(a).ok())
            .unwrap_or(1)
            .max(1);
        // Quorum queues count returned deliveries; classic ones only flag a redelivery.
        let returned = binding::integer(headers, header::DELIVERY_COUNT)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0)
            .max(u32::from(raw.redelivered));
        let failures = FailureHistory {
            first_failure_at: binding::time(headers, header::FIRST_FAILURE),
            last_error: binding::string(headers, header::LAST_ERROR),
        };
        let body = Bytes::from(raw.data);
        let received = binding::receive(&raw.properties, &body);
        Self {
            received,
            topic,
            attempt: first.saturating_add(returned),
            failures,
            tag: raw.delivery_tag,
            properties: raw.properties,
            body,
            acks,
            subscription,
            settled: false,
        }
    }

    /// This message's properties for a republished copy: the broker's redelivery headers
    /// removed, tidings' topic kept, `changes` applied.
    fn republished(&self, changes: impl FnOnce(&mut FieldTable)) -> BasicProperties {
        binding::with_headers(&self.properties, |headers| {
            let mut kept = FieldTable::default();
            for (name, value) in headers.inner() {
                if !BROKER_HEADERS.contains(&name.as_str()) {
                    kept.insert(name.clone(), value.clone());
                }
            }
            kept.insert(header::TOPIC.into(), binding::text(self.topic.as_str()));
            changes(&mut kept);
            *headers = kept;
        })
    }

    async fn settle(mut self: Box<Self>) -> Result<(), TransportError> {
        self.settled = true;
        self.acks.ack(self.tag).await.map_err(TransportError::from)
    }
}

fn truncated(text: &str) -> &str {
    if text.len() <= MAX_ERROR_LEN {
        return text;
    }
    let mut end = MAX_ERROR_LEN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn millis(time: chrono::DateTime<Utc>) -> AMQPValue {
    AMQPValue::LongLongInt(time.timestamp_millis())
}

#[async_trait]
impl Delivery for AmqpDelivery {
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

    async fn ack(self: Box<Self>) -> Result<(), TransportError> {
        self.settle().await
    }

    async fn retry(self: Box<Self>, after: Duration, error: &str) -> Result<(), TransportError> {
        let first_failure = self.failures.first_failure_at.unwrap_or_else(Utc::now);
        let properties = self.republished(|h| {
            h.insert(
                header::ATTEMPT.into(),
                AMQPValue::LongLongInt(i64::from(self.attempt.saturating_add(1))),
            );
            h.insert(header::FIRST_FAILURE.into(), millis(first_failure));
            h.insert(header::LAST_ERROR.into(), binding::text(truncated(error)));
        });
        let inner = &self.subscription.inner;
        let names = &self.subscription.names;
        let bucket = topology::delay_bucket(after);
        let routing_key = if bucket == 0 {
            names.queue.clone()
        } else {
            inner.retry_queue(names, bucket, false).await?;
            names.retry(bucket)
        };
        let message = || Message::new("", &routing_key, properties.clone(), self.body.to_vec());
        match inner.publish_messages(vec![message()?], true, false).await {
            // The retry queue expired since it was declared here: declare it again.
            Err(TransportError::Unroutable { .. }) if bucket > 0 => {
                inner.retry_queue(names, bucket, true).await?;
                inner
                    .publish_messages(vec![message()?], true, false)
                    .await?;
            }
            other => other?,
        }
        self.settle().await
    }

    async fn dead_letter(self: Box<Self>, letter: DeadLetter) -> Result<(), TransportError> {
        let properties = self.republished(|h| {
            for name in [header::ATTEMPT, header::LAST_ERROR] {
                remove(h, name);
            }
            h.insert(
                header::DEAD_LETTER_ID.into(),
                binding::text(letter.id.as_str()),
            );
            h.insert(
                header::SUBSCRIPTION.into(),
                binding::text(letter.subscription.as_str()),
            );
            if let Some(handler) = &letter.handler {
                h.insert(header::HANDLER.into(), binding::text(handler.as_str()));
            }
            h.insert(
                header::REASON_KIND.into(),
                binding::text(letter.reason.kind.as_str()),
            );
            h.insert(
                header::REASON.into(),
                binding::text(truncated(&letter.reason.message)),
            );
            h.insert(
                header::ATTEMPTS.into(),
                AMQPValue::LongLongInt(i64::from(letter.attempts)),
            );
            h.insert(
                header::FIRST_FAILURE.into(),
                millis(letter.first_failure_at),
            );
            h.insert(header::LAST_FAILURE.into(), millis(letter.last_failure_at));
        });
        let inner = &self.subscription.inner;
        let message = Message::new(
            &inner.config.dead_letter_exchange,
            &self.subscription.names.queue,
            properties,
            self.body.to_vec(),
        )?;
        inner.publish_messages(vec![message], true, false).await?;
        self.settle().await
    }
}

/// Removes header `name`.
pub(crate) fn remove(headers: &mut FieldTable, name: &str) {
    if headers.contains_key(name) {
        let mut kept = FieldTable::default();
        for (key, value) in headers.inner() {
            if key.as_str() != name {
                kept.insert(ShortString::from(key.as_str()), value.clone());
            }
        }
        *headers = kept;
    }
}

impl Drop for AmqpDelivery {
    fn drop(&mut self) {
        if !self.settled {
            self.acks.requeue(self.tag);
        }
    }
}
