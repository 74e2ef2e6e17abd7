//! One message of a subscription's consumer, and how it is settled.
//!
//! - ack: `+ACK`.
//! - retry: the failure is recorded (first failure, last error), then `-NAK` with the delay:
//!   the server redelivers the same message after it, counting the delivery.
//! - dead letter: the message, headers and payload untouched, is published to the dead-letter
//!   stream with the failure's details, then acked.
//! - dropped unsettled: `-NAK` at once, so the server redelivers it now rather than after the
//!   ack wait.
//!
//! While a delivery is held, its subscription's lease keeper sends `+WPI` (in progress) every
//! third of the ack wait, so handlers may take longer than it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::{self, AckKind};
use async_trait::async_trait;
use bytes::Bytes;
use chrono::Utc;
use tidings_core::dead_letter::{DeadLetter, Details};
use tidings_core::envelope::Envelope;
use tidings_core::transport::{Delivery, FailureHistory, Received, TransportError, Undecodable};
use tokio::time::Instant;

use crate::Inner;
use crate::binding;

/// What the deliveries of one subscription stream share.
pub(crate) struct Subscription {
    pub(crate) inner: Arc<Inner>,
    /// The subscription's name.
    pub(crate) name: String,
    /// Its durable consumer.
    pub(crate) consumer: String,
    /// Deliveries held, by stream sequence: their reply subject and when the server last
    /// heard of them.
    pub(crate) held: Arc<Mutex<HashMap<u64, (async_nats::Subject, Instant)>>>,
}

impl Subscription {
    fn hold(&self, sequence: u64, reply: Option<&async_nats::Subject>) {
        if let Some(reply) = reply {
            self.held
                .lock()
                .expect("never poisoned")
                .insert(sequence, (reply.clone(), Instant::now()));
        }
    }

    fn release(&self, sequence: u64) {
        self.held.lock().expect("never poisoned").remove(&sequence);
    }
}

/// Keeps the leases of held deliveries: every `every`, `+WPI` for each one the server has not
/// heard of for that long. Ends when the subscription stream and its deliveries are gone.
pub(crate) async fn keep_leases(
    client: async_nats::Client,
    held: Weak<Mutex<HashMap<u64, (async_nats::Subject, Instant)>>>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(held) = held.upgrade() else { return };
        let due: Vec<async_nats::Subject> = {
            let mut held = held.lock().expect("never poisoned");
            let now = Instant::now();
            held.values_mut()
                .filter(|(_, since)| now.duration_since(*since) >= every)
                .map(|(reply, since)| {
                    *since = now;
                    reply.clone()
                })
                .collect()
        };
        for reply in due {
            if let Err(error) = client.publish(reply, AckKind::Progress.into()).await {
                tracing::debug!(%error, "in-progress ack not sent");
            }
        }
    }
}

/// A message of a subscription's consumer.
pub(crate) struct NatsDelivery {
    message: jetstream::Message,
    /// The payload, read into an envelope when first asked (at once in binary mode).
    received: Received,
    topic: String,
    attempt: u32,
    sequence: u64,
    failures: FailureHistory,
    subscription: Arc<Subscription>,
    settled: bool,
}

impl std::fmt::Debug for NatsDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsDelivery")
            .field("subscription", &self.subscription.name)
            .field("sequence", &self.sequence)
            .field("topic", &self.topic)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl NatsDelivery {
    pub(crate) fn new(
        message: jetstream::Message,
        attributes: binding::Attributes,
        topic: String,
        attempt: u32,
        sequence: u64,
        failures: FailureHistory,
        subscription: Arc<Subscription>,
    ) -> Self {
        let received = binding::receive(attributes, &message.payload);
        subscription.hold(sequence, message.reply.as_ref());
        Self {
            received,
            topic,
            attempt,
            sequence,
            failures,
            subscription,
            settled: false,
            message,
        }
    }

    fn failed(&self, what: &str, error: impl std::fmt::Display) -> TransportError {
        self.subscription.inner.error(what, error, true).into()
    }

    /// Settles for good: the server forgets the message for this consumer, and its failure
    /// history goes with it.
    async fn finish(mut self: Box<Self>) -> Result<(), TransportError> {
        self.settled = true;
        self.subscription.release(self.sequence);
        self.message
            .ack()
            .await
            .map_err(|e| self.failed("acking", e))?;
        if self.attempt > 1 {
            let sub = &self.subscription;
            sub.inner
                .forget_failures(&sub.consumer, self.sequence)
                .await;
        }
        Ok(())
    }
}

/// `headers` without the ones named.
pub(crate) fn without(headers: Option<&HeaderMap>, names: &[&str]) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, values) in headers.into_iter().flat_map(HeaderMap::iter) {
        let name_text: &str = name.as_ref();
        if names.iter().any(|n| name_text.eq_ignore_ascii_case(n)) {
            continue;
        }
        for value in values {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

#[async_trait]
impl Delivery for NatsDelivery {
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
        self.finish().await
    }

    async fn retry(
        mut self: Box<Self>,
        after: Duration,
        error: &str,
    ) -> Result<(), TransportError> {
        let sub = self.subscription.clone();
        let first = self.failures.first_failure_at.unwrap_or_else(Utc::now);
        sub.inner
            .record_failure(&sub.consumer, self.sequence, first, error)
            .await?;
        self.settled = true;
        sub.release(self.sequence);
        self.message
            .ack_with(AckKind::Nak(Some(after)))
            .await
            .map_err(|e| self.failed("naking", e))
    }

    async fn dead_letter(self: Box<Self>, letter: DeadLetter) -> Result<(), TransportError> {
        let inner = &self.subscription.inner;
        let mut headers = without(
            self.message.headers.as_ref(),
            &[
                NATS_MESSAGE_ID.as_ref(),
                binding::DEAD_LETTER,
                binding::TARGET,
            ],
        );
        let details = Details::of(&letter, &self.topic);
        headers.insert(binding::DEAD_LETTER, details.to_json());
        // The letter's own id: a repeat of this publish (a crash before the ack below) is
        // dropped by the server.
        headers.insert(NATS_MESSAGE_ID, letter.id.as_str());
        let ack = inner
            .js
            .publish_with_headers(
                inner.dead_letter_subject(&self.subscription.name),
                headers,
                Bytes::clone(&self.message.payload),
            )
            .await
            .map_err(|e| inner.publish_error(&e))?;
        ack.await.map_err(|e| inner.publish_error(&e))?;
        self.finish().await
    }
}

impl Drop for NatsDelivery {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        self.subscription.release(self.sequence);
        let (Some(reply), Ok(runtime)) = (
            self.message.reply.clone(),
            tokio::runtime::Handle::try_current(),
        ) else {
            return;
        };
        let client = self.subscription.inner.client.clone();
        runtime.spawn(async move {
            let _ = client.publish(reply, AckKind::Nak(None).into()).await;
        });
    }
}
