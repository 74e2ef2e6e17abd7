//! A subscription's dead-letter queue: list, inspect, replay, purge.
//!
//! AMQP 0-9-1 has no way to read a queue without taking messages from it, so browsing takes
//! messages with `basic.get` on a channel of its own and never acks them: closing the
//! channel puts every one back where it was (classic queues keep their positions). A replay
//! publishes the chosen letter with confirms and acks only that one. Listing and finding one
//! letter read the queue up to it: cheap for the dead-letter queues of a healthy system,
//! linear in the queue's length for a large one.

use std::hash::{Hash, Hasher};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions, QueuePurgeOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};
use tidings_core::dead_letter::{DeadLetter, Original, Page, Reason, ReasonKind, ReplayTarget};
use tidings_core::transport::{DeadLetters, TransportError};

use crate::binding::{self, header};
use crate::delivery::{BROKER_HEADERS, remove};
use crate::error::{Error, Result};
use crate::publisher::Message;
use crate::topology::QueueNames;
use crate::{AmqpTransport, Inner};

/// Headers of a dead letter that a replayed copy does not carry, besides the broker's.
const FAILURE_HEADERS: [&str; 10] = [
    header::ATTEMPT,
    header::FIRST_FAILURE,
    header::LAST_ERROR,
    header::DEAD_LETTER_ID,
    header::SUBSCRIPTION,
    header::HANDLER,
    header::REASON_KIND,
    header::REASON,
    header::ATTEMPTS,
    header::LAST_FAILURE,
];

/// A browsing channel over one dead-letter queue.
struct Browser<'a> {
    inner: &'a Inner,
    channel: Channel,
    queue: String,
}

impl<'a> Browser<'a> {
    async fn open(inner: &'a Inner, subscription: &str) -> Result<Self> {
        let connector = &inner.connector;
        let conn = connector
            .connection(Some(inner.config.publish_timeout))
            .await?;
        let channel = conn
            .create_channel()
            .await
            .map_err(|e| connector.error(&e, "opening a channel"))?;
        Ok(Self {
            inner,
            channel,
            queue: QueueNames::new(&inner.config, subscription).dead_letters,
        })
    }

    /// The next message, unacked; `None` at the end (or when the queue does not exist).
    async fn next(&self) -> Result<Option<lapin::message::BasicGetMessage>> {
        match self
            .channel
            .basic_get(
                self.queue.as_str().into(),
                BasicGetOptions { no_ack: false },
            )
            .await
        {
            Ok(message) => Ok(message),
            Err(e) => match self
                .inner
                .connector
                .error(&e, &format!("reading queue `{}`", self.queue))
            {
                Error::NotFound(_) => Ok(None),
                other => Err(other),
            },
        }
    }

    /// Puts back everything taken and not acked.
    async fn close(self) {
        let _ = self.channel.close(200, "browsed".into()).await;
    }
}

/// An id for a letter the broker dead-lettered by itself (no tidings headers): the event's
/// id, or a digest of the body.
fn fallback_id(properties: &BasicProperties, body: &[u8]) -> String {
    if let Some(id) = properties.message_id() {
        return format!("broker-{id}");
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut hasher);
    format!("broker-{:016x}", hasher.finish())
}

/// Why the broker dead-lettered a message by itself, from its `x-death` header.
fn broker_reason(properties: &BasicProperties) -> Reason {
    let reason = binding::string(properties.headers().as_ref(), "x-first-death-reason")
        .unwrap_or_else(|| "unknown".to_owned());
    match reason.as_str() {
        "expired" => Reason::new(
            ReasonKind::Expired,
            "the broker dead-lettered it: not consumed within the queue's message TTL",
        ),
        "delivery_limit" => Reason::new(
            ReasonKind::RetriesExhausted,
            "the broker dead-lettered it at the queue's delivery limit: consumers kept stopping \
             before settling it",
        ),
        other => Reason::new(
            ReasonKind::Rejected,
            format!("the broker dead-lettered it ({other})"),
        ),
    }
}

fn time_or(properties: &BasicProperties, name: &str) -> DateTime<Utc> {
    binding::time(properties.headers().as_ref(), name)
        .or_else(|| {
            properties
                .timestamp()
                .and_then(|s| i64::try_from(s).ok())
                .and_then(|s| DateTime::from_timestamp(s, 0))
        })
        .unwrap_or_else(Utc::now)
}

/// Reads a dead letter back from its message.
fn letter(subscription: &str, properties: &BasicProperties, body: &[u8]) -> DeadLetter {
    let headers = properties.headers().as_ref();
    let original = match binding::decode(properties, body) {
        Ok(envelope) => Original::Envelope(Box::new(envelope)),
        Err(_) => Original::Undecodable {
            body: bytes::Bytes::copy_from_slice(body),
            content_type: properties
                .content_type()
                .as_ref()
                .map(|t| t.as_str().to_owned()),
        },
    };
    let reason =
        match binding::string(headers, header::REASON_KIND).and_then(|k| ReasonKind::parse(&k)) {
            Some(kind) => Reason::new(
                kind,
                binding::string(headers, header::REASON).unwrap_or_default(),
            ),
            None => broker_reason(properties),
        };
    let attempts = binding::integer(headers, header::ATTEMPTS)
        .or_else(|| binding::integer(headers, header::DELIVERY_COUNT).map(|n| n + 1))
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(1);
    let mut letter = DeadLetter::new(
        binding::string(headers, header::SUBSCRIPTION).unwrap_or_else(|| subscription.to_owned()),
        original,
        reason,
    )
    .with_attempts(attempts, Some(time_or(properties, header::FIRST_FAILURE)));
    letter.id = binding::string(headers, header::DEAD_LETTER_ID)
        .unwrap_or_else(|| fallback_id(properties, body));
    letter.handler = binding::string(headers, header::HANDLER);
    letter.last_failure_at = time_or(properties, header::LAST_FAILURE);
    letter
}

/// The topic a dead letter was published under.
fn original_topic(properties: &BasicProperties, body: &[u8]) -> Option<String> {
    binding::string(properties.headers().as_ref(), header::TOPIC)
        .or_else(|| binding::decode(properties, body).ok().map(|e| e.ty))
}

impl Inner {
    async fn find<T>(
        &self,
        subscription: &str,
        id: &str,
        found: impl AsyncFnOnce(
            &Browser<'_>,
            &lapin::message::BasicGetMessage,
        ) -> Result<T, TransportError>,
    ) -> Result<Option<T>, TransportError> {
        let browser = Browser::open(self, subscription).await?;
        let result = async {
            while let Some(message) = browser.next().await? {
                let this = letter(
                    subscription,
                    &message.delivery.properties,
                    &message.delivery.data,
                );
                if this.id == id {
                    return Ok(Some(found(&browser, &message).await?));
                }
            }
            Ok(None)
        }
        .await;
        browser.close().await;
        result
    }

    async fn replay_one(
        &self,
        subscription: &str,
        id: &str,
        target: ReplayTarget,
    ) -> Result<(), TransportError> {
        let replayed = self
            .find(subscription, id, async |browser, message| {
                let delivery = &message.delivery;
                let topic = original_topic(&delivery.properties, &delivery.data);
                let properties = binding::with_headers(&delivery.properties, |h| {
                    for name in FAILURE_HEADERS.iter().chain(&BROKER_HEADERS) {
                        remove(h, name);
                    }
                    remove(h, header::TOPIC);
                });
                let (exchange, routing_key, properties) = match &target {
                    ReplayTarget::Topic(topic) => (
                        self.config.exchanges.for_topic(topic).to_owned(),
                        topic.clone(),
                        properties,
                    ),
                    _ => {
                        let topic = topic.ok_or_else(|| {
                            TransportError::Refused(format!(
                                "dead letter `{id}` does not say which topic it came from"
                            ))
                        })?;
                        (
                            String::new(),
                            QueueNames::new(&self.config, subscription).queue,
                            binding::with_headers(&properties, |h| {
                                h.insert(header::TOPIC.into(), AMQPValue::LongString(topic.into()));
                            }),
                        )
                    }
                };
                let to_topic = !exchange.is_empty();
                let mandatory = !to_topic || self.config.mandatory;
                self.publish_messages(
                    vec![Message::new(
                        &exchange,
                        &routing_key,
                        properties,
                        delivery.data.clone(),
                    )?],
                    mandatory,
                    to_topic,
                )
                .await?;
                browser
                    .channel
                    .basic_ack(delivery.delivery_tag, BasicAckOptions { multiple: false })
                    .await
                    .map_err(|e| {
                        self.connector
                            .error(&e, "removing the replayed dead letter")
                            .into()
                    })
            })
            .await?;
        replayed.ok_or_else(|| {
            TransportError::NotFound(format!("dead letter `{id}` of `{subscription}`"))
        })
    }

    async fn on_dead_letter_queue<T: Default>(
        &self,
        subscription: &str,
        what: &str,
        run: impl AsyncFnOnce(&Channel, &str) -> std::result::Result<T, lapin::Error>,
    ) -> Result<T> {
        let browser = Browser::open(self, subscription).await?;
        let result = match run(&browser.channel, &browser.queue).await {
            Ok(value) => Ok(value),
            Err(e) => match self.connector.error(&e, what) {
                Error::NotFound(_) => Ok(T::default()),
                other => Err(other),
            },
        };
        browser.close().await;
        result
    }
}

#[async_trait]
impl DeadLetters for AmqpTransport {
    async fn list(
        &self,
        subscription: &str,
        page: Page,
    ) -> Result<Vec<DeadLetter>, TransportError> {
        let browser = Browser::open(&self.inner, subscription).await?;
        let result = async {
            let mut letters = Vec::new();
            let mut seen = 0;
            while letters.len() < page.limit {
                let Some(message) = browser.next().await? else {
                    break;
                };
                seen += 1;
                if seen > page.offset {
                    letters.push(letter(
                        subscription,
                        &message.delivery.properties,
                        &message.delivery.data,
                    ));
                }
            }
            Ok::<_, Error>(letters)
        }
        .await;
        browser.close().await;
        Ok(result?)
    }

    async fn count(&self, subscription: &str) -> Result<u64, TransportError> {
        let count = self
            .inner
            .on_dead_letter_queue(
                subscription,
                "counting dead letters",
                async |channel, queue| {
                    channel
                        .queue_declare(
                            queue.into(),
                            QueueDeclareOptions::default().passive(),
                            FieldTable::default(),
                        )
                        .await
                        .map(|q| u64::from(q.message_count()))
                },
            )
            .await?;
        Ok(count)
    }

    async fn get(
        &self,
        subscription: &str,
        id: &str,
    ) -> Result<Option<DeadLetter>, TransportError> {
        self.inner
            .find(subscription, id, async |_, message| {
                Ok(letter(
                    subscription,
                    &message.delivery.properties,
                    &message.delivery.data,
                ))
            })
            .await
    }

    async fn replay(
        &self,
        subscription: &str,
        id: &str,
        target: ReplayTarget,
    ) -> Result<(), TransportError> {
        self.inner.replay_one(subscription, id, target).await
    }

    async fn purge(&self, subscription: &str) -> Result<u64, TransportError> {
        let purged = self
            .inner
            .on_dead_letter_queue(
                subscription,
                "purging dead letters",
                async |channel, queue| {
                    channel
                        .queue_purge(queue.into(), QueuePurgeOptions::default())
                        .await
                        .map(u64::from)
                },
            )
            .await?;
        Ok(purged)
    }
}
