//! The transport contract: what every broker adapter implements.
//!
//! - [`Publisher`]: publish envelopes; `Ok` means the broker confirmed them.
//! - [`Subscriber`]: open a stream of [`Delivery`]s for a durable subscription.
//! - [`Delivery`]: one received message, settled exactly once by [`ack`](Delivery::ack),
//!   [`retry`](Delivery::retry) (real delayed redelivery on the broker) or
//!   [`dead_letter`](Delivery::dead_letter). A delivery dropped unsettled is redelivered.
//! - [`DeadLetters`]: list, inspect, replay and purge a subscription's dead-letter queue.
//!
//! A subscription is a durable name plus topic patterns. Subscriptions with different names
//! each get every matching event (fan-out); streams opened on the same name compete for them
//! (consumer group).

mod capabilities;
mod error;
mod received;

pub use capabilities::Capabilities;
pub use error::TransportError;
pub use received::Received;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;

use crate::codec::DecodeError;
use crate::dead_letter::{DeadLetter, Page, ReplayTarget};
use crate::envelope::Envelope;
use crate::topic::Pattern;

/// Publishes envelopes, each under its topic ([`Envelope::topic`]).
#[async_trait]
pub trait Publisher: Send + Sync + 'static {
    /// Publishes one envelope and waits for the broker's confirmation.
    async fn publish(&self, envelope: &Envelope) -> Result<(), TransportError> {
        self.publish_batch(std::slice::from_ref(envelope)).await
    }

    /// Publishes several envelopes, pipelining confirmations where the broker allows it.
    /// On error, some of the batch may have been published.
    async fn publish_batch(&self, envelopes: &[Envelope]) -> Result<(), TransportError>;

    /// Stops accepting publishes; later calls fail with [`TransportError::Closed`].
    async fn close(&self) -> Result<(), TransportError>;
}

/// Opens delivery streams for subscriptions.
#[async_trait]
pub trait Subscriber: Send + Sync + 'static {
    /// Declares the subscription if needed (queue, bindings, dead-letter queue) and starts
    /// consuming from it. Several streams on one subscription compete for its messages.
    async fn subscribe(&self, spec: &SubscriptionSpec) -> Result<DeliveryStream, TransportError>;
}

/// Deliveries of one subscription, as a stream. The stream ends when the transport closes.
pub type DeliveryStream = BoxStream<'static, Result<Box<dyn Delivery>, TransportError>>;

/// What a subscription consumes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscriptionSpec {
    /// Durable name, e.g. the consuming service: `notification`.
    pub name: String,
    /// Topics it receives.
    pub patterns: Vec<Pattern>,
    /// Unsettled deliveries this stream may hold at once.
    pub prefetch: usize,
    /// Set for a temporary subscription: how long it may go unread before the broker
    /// removes it ([`SubscriptionSpec::expire_when_idle`]).
    pub idle_expiry: Option<Duration>,
}

impl SubscriptionSpec {
    /// A subscription named `name` to `patterns`, with a prefetch of 32.
    pub fn new(name: impl Into<String>, patterns: impl IntoIterator<Item = Pattern>) -> Self {
        Self {
            name: name.into(),
            patterns: patterns.into_iter().collect(),
            prefetch: 32,
            idle_expiry: None,
        }
    }

    /// Makes it temporary: the broker removes it (its queues, or its consumer) once no
    /// stream has read it for `after`, so that a consumer killed before it could call
    /// [`Transport::remove_subscription`] leaves nothing behind. For `tidings tail`.
    ///
    /// RabbitMQ (the queues' `x-expires`; a live stream keeps its dead-letter queue, which
    /// has no consumer, declared) and NATS (the consumer's `inactive_threshold`) honour it.
    /// The other transports keep the subscription until it is removed.
    pub fn expire_when_idle(mut self, after: Duration) -> Self {
        self.idle_expiry = Some(after);
        self
    }

    /// Sets the prefetch (at least 1).
    pub fn with_prefetch(mut self, prefetch: usize) -> Self {
        self.prefetch = prefetch.max(1);
        self
    }
}

/// Decodes a body stored with its content type, as the database-backed queues keep them:
/// the legacy flat envelope under `application/json`, CloudEvents structured JSON otherwise.
///
/// ```
/// use tidings_core::transport::decode_stored;
///
/// let body = br#"{"specversion":"1.0","id":"1","source":"oms","type":"order.created"}"#;
/// assert_eq!(decode_stored(body.to_vec(), None).unwrap().ty, "order.created");
/// let junk = decode_stored(b"\xff".to_vec(), Some("text/plain".into())).unwrap_err();
/// assert_eq!(junk.content_type.as_deref(), Some("text/plain"));
/// ```
pub fn decode_stored(body: Vec<u8>, content_type: Option<String>) -> Result<Envelope, Undecodable> {
    use crate::codec::{Codec, Legacy, StructuredJson};
    let result = match content_type.as_deref() {
        Some(t) if t == Legacy.content_type() => Legacy.decode(&body),
        _ => StructuredJson.decode(&body),
    };
    result.map_err(|error| Undecodable {
        error,
        body: Bytes::from(body),
        content_type,
    })
}

/// Bytes that arrived but are not an event.
#[derive(Debug)]
pub struct Undecodable {
    /// Why they are not.
    pub error: DecodeError,
    /// The raw body.
    pub body: Bytes,
    /// Its declared media type.
    pub content_type: Option<String>,
}

/// The failures a message went through before this delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailureHistory {
    /// When its first delivery failed.
    pub first_failure_at: Option<DateTime<Utc>>,
    /// The error of its last failed delivery.
    pub last_error: Option<String>,
}

/// One received message, to be settled exactly once.
#[async_trait]
pub trait Delivery: Send + Sync + std::fmt::Debug + 'static {
    /// The event, or the bytes that failed to decode.
    fn envelope(&self) -> Result<&Arc<Envelope>, &Undecodable>;

    /// The body the envelope is read from, for a typed handler to read the envelope and
    /// its data in one pass ([`Received::read_with_data`]) before anything asks for the
    /// [`envelope`](Delivery::envelope). `None` (the default) when the envelope does not
    /// come from a body kept as it arrived.
    fn received(&self) -> Option<&Received> {
        None
    }

    /// The topic (routing key) it was published under: its type, unless it was replayed or
    /// forwarded under another topic.
    fn topic(&self) -> &str;

    /// Which delivery of this message this is, from 1.
    fn attempt(&self) -> u32;

    /// Failures before this delivery.
    fn failures(&self) -> &FailureHistory;

    /// Done: the message will not be delivered again.
    async fn ack(self: Box<Self>) -> Result<(), TransportError>;

    /// Failed transiently: redeliver after `after`, without holding anything in this process
    /// meanwhile, with the attempt count raised and `error` recorded.
    async fn retry(self: Box<Self>, after: Duration, error: &str) -> Result<(), TransportError>;

    /// Failed for good: move to the subscription's dead-letter queue.
    async fn dead_letter(self: Box<Self>, letter: DeadLetter) -> Result<(), TransportError>;
}

/// The dead-letter queues of a transport's subscriptions.
#[async_trait]
pub trait DeadLetters: Send + Sync + 'static {
    /// Dead letters of `subscription`, oldest first.
    async fn list(&self, subscription: &str, page: Page)
    -> Result<Vec<DeadLetter>, TransportError>;

    /// Number of dead letters of `subscription`.
    async fn count(&self, subscription: &str) -> Result<u64, TransportError>;

    /// One dead letter by id.
    async fn get(&self, subscription: &str, id: &str)
    -> Result<Option<DeadLetter>, TransportError>;

    /// Sends a dead letter back ([`ReplayTarget`]) and removes it from the queue, with a fresh
    /// attempt count. Fails with [`TransportError::NotFound`] for an unknown id.
    async fn replay(
        &self,
        subscription: &str,
        id: &str,
        target: ReplayTarget,
    ) -> Result<(), TransportError>;

    /// Deletes every dead letter of `subscription`; returns how many.
    async fn purge(&self, subscription: &str) -> Result<u64, TransportError>;
}

/// A whole transport: publish, subscribe, dead letters, and what it can promise.
#[async_trait]
pub trait Transport: Publisher + Subscriber + DeadLetters {
    /// Short name for logs and metrics: `memory`, `sqlite`, `amqp`, ...
    fn name(&self) -> &'static str;

    /// What this transport promises.
    fn capabilities(&self) -> Capabilities;

    /// Whether it can take work now: connected to its broker, or its store answering.
    /// `Err` says why not ([`TransportError::Closed`] once closed). For readiness probes
    /// (`tidings serve`'s `/readyz`): it returns within about a second.
    async fn ready(&self) -> Result<(), TransportError>;

    /// Removes subscription `name` from the broker: its bindings, its queue with whatever
    /// waits in it, and its dead letters. End its streams first: one still open may receive
    /// nothing more or, where consumers recover from broker failures, declare it again.
    /// Removing a subscription that does not exist succeeds. For temporary subscriptions
    /// (`tidings tail`) and for retiring a consumer for good.
    ///
    /// The default refuses: a transport that cannot remove subscriptions says so.
    async fn remove_subscription(&self, name: &str) -> Result<(), TransportError> {
        Err(TransportError::Refused(format!(
            "the {} transport cannot remove subscription `{name}`",
            self.name()
        )))
    }

    /// What waits in `subscription`'s queue, for dashboards and alerts on lag; `None` when
    /// this transport cannot tell (the default). Each transport documents what it counts.
    async fn backlog(&self, subscription: &str) -> Result<Option<Backlog>, TransportError> {
        let _ = subscription;
        Ok(None)
    }
}

/// What waits in a subscription's queue ([`Transport::backlog`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Backlog {
    /// Events the subscription has not settled yet.
    pub depth: u64,
    /// How long ago the oldest of them was published, when the transport knows.
    pub oldest_age: Option<Duration>,
}

impl Backlog {
    /// `depth` events waiting, the oldest published `oldest_age` ago.
    pub fn new(depth: u64, oldest_age: Option<Duration>) -> Self {
        Self { depth, oldest_age }
    }
}
