//! Consuming a subscription: its durable pull consumer, filtered exactly on the client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::consumer::{AckPolicy, Consumer, DeliverPolicy, pull};
use async_trait::async_trait;
use futures::StreamExt;
use tidings_core::dead_letter::{DeadLetter, Original, Reason, ReasonKind};
use tidings_core::topic::Matcher;
use tidings_core::transport::{
    Delivery, DeliveryStream, FailureHistory, Subscriber, SubscriptionSpec, TransportError,
};

use crate::ack_subject::{self, Position};
use crate::delivery::{NatsDelivery, Subscription, keep_leases};
use crate::error::Error;
use crate::{Inner, NatsTransport, binding};

type Item = Result<Box<dyn Delivery>, TransportError>;

/// How long the server may go quiet before a pull is considered lost.
const HEARTBEAT: Duration = Duration::from_secs(2);
/// How long one pull request waits on the server. Short, because a request outlives a
/// dropped stream by this much, and what the server sends it meanwhile waits out the ack
/// wait before it is redelivered.
const PULL_EXPIRES: Duration = Duration::from_secs(5);

/// A consumer name for `subscription`: consumer names cannot hold `.`, `*`, `>`, slashes or
/// whitespace, which are written `_XX` (hex), and so is `_`, which keeps names apart.
pub(crate) fn consumer_name(subscription: &str) -> String {
    let mut out = String::with_capacity(subscription.len());
    for c in subscription.chars() {
        if matches!(c, '.' | '*' | '>' | '/' | '\\' | '_') || c.is_whitespace() || c.is_control() {
            let mut buf = [0u8; 4];
            for byte in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("_{byte:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[async_trait]
impl Subscriber for NatsTransport {
    /// Creates (or updates) the subscription's durable consumer, filtered on the widest
    /// subject covering its patterns, and pulls from it. Events are filtered exactly by the
    /// patterns on the client; the stream survives server restarts (the client reconnects
    /// and the pull resumes).
    async fn subscribe(&self, spec: &SubscriptionSpec) -> Result<DeliveryStream, TransportError> {
        let inner = self.inner.clone();
        if inner.closed.is_cancelled() {
            return Err(TransportError::Closed);
        }
        let mut matcher = Matcher::new();
        for pattern in &spec.patterns {
            matcher.insert(pattern.clone(), ());
        }
        let config = pull::Config {
            durable_name: Some(consumer_name(&spec.name)),
            filter_subject: inner.subjects.filter(&spec.patterns).unwrap_or_default(),
            ack_policy: AckPolicy::Explicit,
            ack_wait: inner.config.ack_wait,
            // tidings dead-letters a message delivered more than the delivery limit, on that
            // delivery; the server stops one later, should that consumer die too (a message
            // past MaxDeliver stays in the stream, with only an advisory to say so).
            max_deliver: i64::from(inner.config.delivery_limit) + 1,
            max_ack_pending: inner.config.max_ack_pending,
            // Like a queue bound now: events published from now on.
            deliver_policy: DeliverPolicy::New,
            inactive_threshold: spec
                .idle_expiry
                .or(inner.config.inactive_threshold)
                .unwrap_or_default(),
            ..Default::default()
        };
        let consumer = inner.consumer(&config).await?;
        let held = Arc::new(Mutex::new(HashMap::new()));
        tokio::spawn(keep_leases(
            inner.client.clone(),
            Arc::downgrade(&held),
            inner.config.ack_wait / 3,
        ));
        let mut consuming = Consuming {
            subscription: Arc::new(Subscription {
                inner: inner.clone(),
                name: spec.name.clone(),
                consumer: config.durable_name.clone().unwrap_or_default(),
                held,
            }),
            config,
            matcher,
            prefetch: spec.prefetch.max(1),
            messages: None,
        };
        consuming.messages = Some(consuming.pull(&consumer).await?);
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
    /// Creates the durable consumer, or updates it to `config`.
    async fn consumer(&self, config: &pull::Config) -> Result<Consumer<pull::Config>, Error> {
        let name = config.durable_name.clone().unwrap_or_default();
        let stream = self
            .js
            .get_stream_no_info(&self.config.stream)
            .await
            .map_err(|e| self.error("opening the events' stream", e, false))?;
        stream.create_consumer(config.clone()).await.map_err(|e| {
            use async_nats::jetstream::stream::ConsumerErrorKind as Kind;
            match e.kind() {
                Kind::JetStream(reason) => Error::Conflict {
                    what: format!("consumer `{name}`"),
                    reason: reason.to_string(),
                },
                Kind::TimedOut | Kind::Request => {
                    self.error(&format!("creating consumer `{name}`"), e, true)
                }
                _ => self.error(&format!("creating consumer `{name}`"), e, false),
            }
        })
    }
}

/// The state of one delivery stream. Dropping it stops pulling; what it pulled but did not
/// hand out is redelivered after the ack wait, and deliveries handed out nak themselves when
/// dropped unsettled.
struct Consuming {
    subscription: Arc<Subscription>,
    config: pull::Config,
    matcher: Matcher<()>,
    prefetch: usize,
    messages: Option<pull::Stream>,
}

impl Consuming {
    async fn pull(&self, consumer: &Consumer<pull::Config>) -> Result<pull::Stream, Error> {
        consumer
            .stream()
            .max_messages_per_batch(self.prefetch)
            .heartbeat(HEARTBEAT)
            .expires(PULL_EXPIRES)
            .messages()
            .await
            .map_err(|e| self.subscription.inner.error("pulling", e, true))
    }

    /// The next delivery for this subscription; `None` once the transport is closed.
    async fn next(&mut self) -> Option<Item> {
        let inner = self.subscription.inner.clone();
        let mut failures = 0u32;
        loop {
            if inner.closed.is_cancelled() {
                return None;
            }
            let Some(messages) = &mut self.messages else {
                // The consumer went away (deleted, or the server lost it): make it again.
                match inner.consumer(&self.config).await {
                    Ok(consumer) => match self.pull(&consumer).await {
                        Ok(messages) => self.messages = Some(messages),
                        Err(error) => tracing::debug!(%error, "pull not started yet"),
                    },
                    Err(error) if error.is_transient() => {
                        tracing::debug!(%error, "consumer not created yet");
                    }
                    Err(error) => return Some(Err(error.into())),
                }
                if self.messages.is_none() {
                    failures += 1;
                    let pause = Duration::from_millis(100 * u64::from(failures.min(50)));
                    tokio::select! {
                        () = inner.closed.cancelled() => return None,
                        () = tokio::time::sleep(pause) => {}
                    }
                }
                continue;
            };
            let next = tokio::select! {
                biased;
                () = inner.closed.cancelled() => return None,
                next = messages.next() => next,
            };
            let message = match next {
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    match error.kind() {
                        pull::MessagesErrorKind::ConsumerDeleted
                        | pull::MessagesErrorKind::PushBasedConsumer => {
                            tracing::warn!(%error, consumer = %self.subscription.consumer, "consumer lost; creating it again");
                            self.messages = None;
                        }
                        // Heartbeats missed while the server is away: the client reconnects
                        // and the pull resumes.
                        _ => {
                            tracing::debug!(%error, consumer = %self.subscription.consumer, "pull interrupted")
                        }
                    }
                    continue;
                }
                None => {
                    self.messages = None;
                    continue;
                }
            };
            failures = 0;
            if let Some(delivery) = self.admit(message).await {
                return Some(Ok(delivery));
            }
        }
    }

    /// The delivery `message` is for this subscription, or `None` when it is not (filtered
    /// out, meant for another subscription, or dead-lettered at the delivery limit): those
    /// are settled here.
    async fn admit(&self, message: jetstream::Message) -> Option<Box<dyn Delivery>> {
        let sub = &self.subscription;
        let inner = &sub.inner;
        let position = message.reply.as_deref().and_then(ack_subject::position);
        let Some(Position {
            stream_sequence: sequence,
            delivered,
        }) = position
        else {
            tracing::warn!(reply = ?message.reply, "a message without JetStream metadata; skipped");
            return None;
        };
        let topic = inner.subjects.topic(&message.subject);
        let attributes = binding::Attributes::of(message.headers.as_ref());
        let ours = match (&topic, &attributes.target) {
            (None, _) => false,
            (Some(_), Some(target)) => *target == sub.name,
            (Some(topic), None) => self.matcher.matches(topic).next().is_some(),
        };
        if !ours {
            if let Err(error) = message.ack().await {
                tracing::debug!(%error, "skipped message not acked");
            }
            return None;
        }
        let topic = topic.expect("ours has a topic");
        let attempt = u32::try_from(delivered).unwrap_or(u32::MAX).max(1);
        let failures = if attempt > 1 {
            inner.failure_history(&sub.consumer, sequence).await
        } else {
            FailureHistory::default()
        };
        let delivery = NatsDelivery::new(
            message,
            attributes,
            topic,
            attempt,
            sequence,
            failures,
            sub.clone(),
        );
        let limit = inner.config.delivery_limit;
        if attempt <= limit {
            return Some(Box::new(delivery));
        }
        // Delivered again and again without ever being settled: it takes its consumers down.
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
            tracing::warn!(%error, "could not dead-letter a message past the delivery limit");
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_names_keep_subscriptions_apart() {
        assert_eq!(consumer_name("notification"), "notification");
        assert_eq!(consumer_name("t1a2b-billing"), "t1a2b-billing");
        assert_eq!(consumer_name("svc.orders v2"), "svc_2Eorders_20v2");
        assert_ne!(consumer_name("a_2E"), consumer_name("a."));
    }
}
