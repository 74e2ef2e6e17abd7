//! Publishing with confirms: persistent messages, `mandatory`, pipelined confirmations.
//!
//! Publishes go through a small pool of confirm-mode channels, each used by one caller at a
//! time. Within a caller's batch every message is written before any confirmation is awaited
//! (pipelining), and callers on different channels overlap. One caller per channel is what
//! makes a returned message (`basic.return`, no queue bound) attributable: lapin hands it to
//! one of the confirmations completed with it, which on a shared channel could belong to
//! another caller.

use std::collections::HashSet;

use async_trait::async_trait;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, ExchangeKind};
use tidings_core::envelope::Envelope;
use tidings_core::transport::{Publisher, TransportError};
use tokio::sync::{Mutex, Semaphore};

use crate::AmqpTransport;
use crate::binding;
use crate::connection::{Connector, Link};
use crate::error::{Error, Result};

/// Confirm channels open at once for publishing.
const CHANNELS: usize = 8;

/// One message ready to go.
pub(crate) struct Message {
    /// Exchange (`""` for the default exchange, which routes by queue name).
    exchange: ShortString,
    routing_key: ShortString,
    properties: BasicProperties,
    body: Vec<u8>,
}

impl Message {
    /// A message for `exchange` with `routing_key`; fails when a name is longer than AMQP
    /// allows.
    pub(crate) fn new(
        exchange: &str,
        routing_key: &str,
        properties: BasicProperties,
        body: Vec<u8>,
    ) -> Result<Self> {
        Ok(Self {
            exchange: short(exchange, "exchange name")?,
            routing_key: short(routing_key, "topic")?,
            properties,
            body,
        })
    }
}

/// A confirm-mode channel and the exchanges already declared through it.
struct Open {
    conn: Link,
    channel: Channel,
    exchanges: HashSet<String>,
}

impl Open {
    fn usable(&self) -> bool {
        self.conn.usable() && self.channel.status().connected()
    }
}

/// The pool of publishing channels.
pub(crate) struct Channels {
    idle: Mutex<Vec<Open>>,
    permits: Semaphore,
}

impl Channels {
    pub(crate) fn new() -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(CHANNELS),
        }
    }

    pub(crate) async fn clear(&self) {
        self.idle.lock().await.clear();
    }
}

fn short(value: &str, what: &str) -> Result<ShortString> {
    ShortString::try_new(value).map_err(|_| Error::Config {
        reason: format!("{what} `{value}` is longer than the 255 bytes AMQP allows"),
    })
}

impl crate::Inner {
    /// Publishes `messages` and waits for every confirmation. `Ok` means the broker has them
    /// all; with `mandatory`, one that no queue took fails the call with `Unroutable`.
    pub(crate) async fn publish_messages(
        &self,
        messages: Vec<Message>,
        mandatory: bool,
        declare_exchanges: bool,
    ) -> Result<(), TransportError> {
        if self.connector.closed.is_cancelled() {
            return Err(TransportError::Closed);
        }
        let limit = self.config.max_message_size;
        if let Some(big) = messages.iter().find(|m| m.body.len() > limit) {
            return Err(TransportError::TooLarge {
                size: big.body.len(),
                limit,
            });
        }
        let timeout = self.config.publish_timeout;
        let used = std::sync::Mutex::new(None);
        match tokio::time::timeout(
            timeout,
            self.publish_on_a_channel(messages, mandatory, declare_exchanges, &used),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => {
                // No answer for the whole publish timeout: the connection is taken for dead
                // (see `connection`), and the next publish opens another.
                if let Some(link) = used.lock().expect("not poisoned").take() {
                    self.connector.discard(&link);
                }
                Err(TransportError::Timeout(timeout))
            }
        }
    }

    async fn publish_on_a_channel(
        &self,
        messages: Vec<Message>,
        mandatory: bool,
        declare_exchanges: bool,
        used: &std::sync::Mutex<Option<Link>>,
    ) -> Result<(), TransportError> {
        let channels = &self.publishing;
        let _permit = channels.permits.acquire().await.expect("never closed");
        let mut open = loop {
            let candidate = channels.idle.lock().await.pop();
            match candidate {
                Some(open) if open.usable() => break open,
                Some(_) => continue,
                None => break open_channel(&self.connector, self.config.publish_timeout).await?,
            }
        };
        *used.lock().expect("not poisoned") = Some(open.conn.clone());
        let result = send(
            &self.connector,
            &mut open,
            messages,
            mandatory,
            declare_exchanges,
        )
        .await;
        if open.usable() {
            channels.idle.lock().await.push(open);
        }
        result
    }
}

async fn open_channel(connector: &Connector, patience: std::time::Duration) -> Result<Open> {
    let conn = connector.connection(Some(patience)).await?;
    let channel = conn
        .create_channel()
        .await
        .map_err(|e| connector.error(&e, "opening a channel"))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| connector.error(&e, "enabling publisher confirms"))?;
    Ok(Open {
        conn,
        channel,
        exchanges: HashSet::new(),
    })
}

async fn send(
    connector: &Connector,
    open: &mut Open,
    messages: Vec<Message>,
    mandatory: bool,
    declare_exchanges: bool,
) -> Result<(), TransportError> {
    if declare_exchanges {
        for message in &messages {
            let exchange = message.exchange.as_str();
            if exchange.is_empty() || open.exchanges.contains(exchange) {
                continue;
            }
            open.channel
                .exchange_declare(
                    message.exchange.clone(),
                    ExchangeKind::Topic,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..ExchangeDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(|e| connector.error(&e, &format!("declaring exchange `{exchange}`")))?;
            open.exchanges.insert(exchange.to_owned());
        }
    }
    let mut confirms = Vec::with_capacity(messages.len());
    for message in messages {
        let confirm = open
            .channel
            .basic_publish(
                message.exchange,
                message.routing_key,
                BasicPublishOptions {
                    mandatory,
                    ..BasicPublishOptions::default()
                },
                &message.body,
                message.properties,
            )
            .await
            .map_err(|e| connector.error(&e, "publishing"))?;
        confirms.push(confirm);
    }
    let mut outcome = Ok(());
    for confirm in confirms {
        let confirmation = confirm
            .await
            .map_err(|e| connector.error(&e, "waiting for a publisher confirm"))?;
        let failure = match confirmation {
            Confirmation::Ack(None) | Confirmation::NotRequested => continue,
            Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
                TransportError::Unroutable {
                    topic: binding::string(
                        returned.properties.headers().as_ref(),
                        binding::header::TOPIC,
                    )
                    .unwrap_or_else(|| returned.routing_key.to_string()),
                }
            }
            Confirmation::Nack(None) => TransportError::Refused(
                "the broker did not accept the message (nack): a queue is full or failing"
                    .to_owned(),
            ),
        };
        // Every confirmation is awaited, so none is left to a later caller of this channel.
        if outcome.is_ok() {
            outcome = Err(failure);
        }
    }
    outcome
}

#[async_trait]
impl Publisher for AmqpTransport {
    async fn publish_batch(&self, envelopes: &[Envelope]) -> Result<(), TransportError> {
        let inner = &self.inner;
        let messages = envelopes
            .iter()
            .map(|envelope| {
                let encoded = binding::encode(envelope, inner.config.content_mode)?;
                let topic = envelope.topic();
                Ok(Message::new(
                    inner.config.exchanges.for_topic(topic),
                    topic,
                    encoded.properties,
                    encoded.body,
                )?)
            })
            .collect::<Result<Vec<_>, TransportError>>()?;
        inner
            .publish_messages(messages, inner.config.mandatory, true)
            .await
    }

    /// Stops publishing and consuming, and closes the connection. Deliveries not yet
    /// acked are redelivered by the broker.
    async fn close(&self) -> Result<(), TransportError> {
        self.inner.connector.closed.cancel();
        self.inner.publishing.clear().await;
        self.inner.connector.close().await;
        Ok(())
    }
}
