//! RabbitMQ for tidings: topic exchanges, quorum queues, delayed retries without plugins,
//! dead-letter queues you can browse and replay, and a connection that survives the broker
//! restarting.
//!
//! [`AmqpTransport`] implements the tidings transport contract on RabbitMQ (AMQP 0-9-1, with
//! [lapin]):
//!
//! - **Publishing**: to a topic exchange (one shared, or one per domain: [`Exchanges`]),
//!   persistent, with publisher confirms and `mandatory`, so that an event no queue is bound
//!   to fails with `Unroutable` instead of vanishing. Batches are written before any
//!   confirmation is awaited. CloudEvents AMQP binding in structured or binary mode, or the
//!   legacy flat envelope ([`ContentMode`]). Messages over [`AmqpConfig::max_message_size`]
//!   fail before they are sent: the broker would close the channel, and every unconfirmed
//!   publish on it with it.
//! - **Subscribing**: one durable queue per subscription (quorum by default), bound with the
//!   subscription's patterns; streams on one subscription compete; prefetch per stream;
//!   acks only after the handler succeeded, coalesced with `multiple`.
//! - **Retries**: per-delay queues (`<queue>.retry.<ms>`) whose messages expire back into the
//!   work queue, with the attempt count, first failure and last error in headers; no plugin.
//! - **Dead letters**: `<queue>.dlq`, fed through a dead-letter exchange by tidings (with the
//!   failure's details) and by the broker (a quorum queue's delivery limit, a TTL), listed,
//!   replayed and purged through [`DeadLetters`](tidings_core::transport::DeadLetters).
//! - **Recovery**: a lost connection is re-established with backoff; consumers declare again
//!   and resume; publishes wait up to [`AmqpConfig::publish_timeout`] and then fail with a
//!   transient error that the failover publisher of `tidings-sqlite` catches.
//! - **Topology as code**: [`Topology`] files, planned and applied idempotently.
//! - **TLS** with rustls for `amqps://` URLs ([`TlsConfig`]); passwords never appear in logs,
//!   errors or `Debug` output ([`BrokerUrl`]).
//!
//! ```no_run
//! use futures::StreamExt;
//! use tidings_amqp::{AmqpConfig, AmqpTransport};
//! use tidings_core::envelope::Envelope;
//! use tidings_core::topic::Pattern;
//! use tidings_core::transport::{Publisher, Subscriber, SubscriptionSpec};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let transport = AmqpTransport::connect(AmqpConfig::from_env()?).await?;
//! let spec = SubscriptionSpec::new("notification", [Pattern::parse("order.*")?]);
//! let mut deliveries = transport.subscribe(&spec).await?;
//!
//! transport.publish(&Envelope::new("oms", "order.created")).await?;
//! let delivery = deliveries.next().await.unwrap()?;
//! assert_eq!(delivery.envelope().unwrap().ty, "order.created");
//! delivery.ack().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Durability
//!
//! An event is published when the broker confirmed it: persistent, on durable queues. Quorum
//! queues replicate it and dead-letter at-least-once (`x-dead-letter-strategy`,
//! `x-overflow=reject-publish`); classic queues ([`QueueType::Classic`]) are cheaper, but the
//! broker's own dead-lettering out of them (retry hops, TTLs) is at-most-once.
//!
//! [lapin]: https://docs.rs/lapin

mod acks;
mod binding;
mod config;
mod connection;
mod dead_letter;
mod delivery;
mod error;
mod publisher;
mod subscriber;
pub mod topology;

pub use config::{AmqpConfig, BrokerUrl, ContentMode, Exchanges, QueueType, TlsConfig};
pub use error::{Error, Result};
pub use topology::{Plan, Topology};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use lapin::BasicProperties;
use lapin::types::ShortString;
use tidings_core::transport::{Capabilities, Transport, TransportError};
use tokio::sync::Mutex;

use connection::Connector;
use publisher::{Channels, Message};
use topology::QueueNames;

/// The RabbitMQ transport. Clones share one connection.
#[derive(Clone, Debug)]
pub struct AmqpTransport {
    inner: Arc<Inner>,
}

/// What clones share.
pub(crate) struct Inner {
    pub(crate) config: Arc<AmqpConfig>,
    pub(crate) connector: Arc<Connector>,
    pub(crate) publishing: Channels,
    /// Retry queues declared, and when: they are declared again well before they could
    /// expire unused.
    retry_queues: Mutex<HashMap<String, Instant>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AmqpTransport {
    /// Connects to the broker. Fails at once, with a typed [`Error`], when it is unreachable
    /// or refuses the credentials or the certificate; once connected, a lost connection is
    /// re-established on its own.
    pub async fn connect(config: AmqpConfig) -> Result<Self> {
        let config = Arc::new(config);
        let connector = Arc::new(Connector::new(config.clone()));
        connector.connect_now().await?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                connector,
                publishing: Channels::new(),
                retry_queues: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &AmqpConfig {
        &self.inner.config
    }

    /// What applying `topology` would change on the broker, without changing anything.
    pub async fn plan(&self, topology: &Topology) -> Result<Plan> {
        let declarations = topology.declarations(&self.inner.config)?;
        topology::plan(&self.inner.connector, declarations).await
    }

    /// Declares what `topology` needs and the broker lacks. Declarations that conflict with
    /// what exists are left alone and reported in the returned plan.
    pub async fn apply(&self, topology: &Topology) -> Result<Plan> {
        let declarations = topology.declarations(&self.inner.config)?;
        topology::apply(&self.inner.connector, declarations).await
    }

    /// Publishes `body` as it is, under `topic`, with confirms: for tools, tests and
    /// producers that are not tidings. Nothing checks that it is an event.
    pub async fn publish_bytes(
        &self,
        topic: &str,
        body: Vec<u8>,
        content_type: Option<&str>,
    ) -> Result<(), TransportError> {
        let mut properties = BasicProperties::default().with_delivery_mode(2);
        if let Some(ty) = content_type.and_then(|t| ShortString::try_new(t).ok()) {
            properties = properties.with_content_type(ty);
        }
        let message = Message::new(
            self.inner.config.exchanges.for_topic(topic),
            topic,
            properties,
            body,
        )?;
        self.inner
            .publish_messages(vec![message], self.inner.config.mandatory, true)
            .await
    }

    /// Messages waiting in `subscription`'s queue (not counting those delivered and not yet
    /// acked).
    pub async fn depth(&self, subscription: &str) -> Result<u64> {
        let queue = self.inner.config.queue_name(subscription);
        let conn = self
            .inner
            .connector
            .connection(Some(self.inner.config.publish_timeout))
            .await?;
        let channel = conn
            .create_channel()
            .await
            .map_err(|e| self.inner.connector.error(&e, "opening a channel"))?;
        let declared = channel
            .queue_declare(
                queue.as_str().into(),
                lapin::options::QueueDeclareOptions::default().passive(),
                lapin::types::FieldTable::default(),
            )
            .await
            .map_err(|e| {
                self.inner
                    .connector
                    .error(&e, &format!("inspecting queue `{queue}`"))
            })?;
        let _ = channel.close(200, "inspected".into()).await;
        Ok(u64::from(declared.message_count()))
    }
}

impl Inner {
    /// Declares the retry queue of `names` for `delay_ms` if it was not declared recently
    /// (or `again`).
    pub(crate) async fn retry_queue(
        &self,
        names: &QueueNames,
        delay_ms: u64,
        again: bool,
    ) -> Result<(), TransportError> {
        let name = names.retry(delay_ms);
        let fresh_for = topology::retry_queue_expiry(delay_ms) / 2;
        let mut declared = self.retry_queues.lock().await;
        if !again
            && declared
                .get(&name)
                .is_some_and(|at| at.elapsed() < fresh_for)
        {
            return Ok(());
        }
        let declaration = topology::retry_queue(&self.config, names, delay_ms);
        tokio::time::timeout(
            self.config.publish_timeout,
            topology::declare_all(&self.connector, std::slice::from_ref(&declaration)),
        )
        .await
        .map_err(|_| TransportError::Timeout(self.config.publish_timeout))??;
        declared.insert(name, Instant::now());
        Ok(())
    }
}

#[async_trait::async_trait]
impl Transport for AmqpTransport {
    fn name(&self) -> &'static str {
        "amqp"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with_ordering(true)
            .with_consumer_groups(true)
            .with_persistence(true)
            .with_native_delay(true)
    }

    /// The messages ready in the subscription's queue (RabbitMQ's count leaves out those
    /// delivered and not yet acked). No age: AMQP shows a message, and its timestamp, only
    /// to a consumer, and taking one to look at it would count as a delivery. `None` for a
    /// queue not declared.
    async fn backlog(
        &self,
        subscription: &str,
    ) -> std::result::Result<Option<tidings_core::transport::Backlog>, TransportError> {
        match self.depth(subscription).await {
            Ok(depth) => Ok(Some(tidings_core::transport::Backlog::new(depth, None))),
            Err(Error::NotFound(_)) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Deletes the subscription's queue and its dead-letter queue (with their bindings and
    /// messages). Its retry queues, if any, expire on their own.
    async fn remove_subscription(&self, name: &str) -> std::result::Result<(), TransportError> {
        let names = topology::QueueNames::new(&self.inner.config, name);
        let conn = self
            .inner
            .connector
            .connection(Some(self.inner.config.publish_timeout))
            .await?;
        let channel = conn
            .create_channel()
            .await
            .map_err(|e| self.inner.connector.error(&e, "opening a channel"))?;
        for queue in [&names.queue, &names.dead_letters] {
            let deleting = channel.queue_delete(
                queue.as_str().into(),
                lapin::options::QueueDeleteOptions::default(),
            );
            tokio::time::timeout(self.inner.config.publish_timeout, deleting)
                .await
                .map_err(|_| TransportError::Timeout(self.inner.config.publish_timeout))?
                .map_err(|e| {
                    self.inner
                        .connector
                        .error(&e, &format!("deleting queue `{queue}`"))
                })?;
        }
        let _ = channel.close(200, "removed".into()).await;
        Ok(())
    }

    /// Ready while connected to RabbitMQ; when not, tries to reconnect for half a second.
    async fn ready(&self) -> std::result::Result<(), tidings_core::transport::TransportError> {
        self.inner
            .connector
            .connection(Some(std::time::Duration::from_millis(500)))
            .await?;
        Ok(())
    }
}
