//! Redis Streams for tidings: a stream per subscription, consumer groups, leases reclaimed
//! with `XAUTOCLAIM`, delayed retries through a sorted set, a dead-letter stream.
//!
//! [`RedisTransport`] implements the tidings transport contract on Redis (with the
//! [redis] crate):
//!
//! - **One stream per subscription**, not per topic. Redis has no routing of its own, so
//!   an event is routed when it is published: the publisher matches its topic against every
//!   subscription's patterns, with the same [`Matcher`](tidings_core::topic::Matcher) as the
//!   in-memory transport, and adds it to each matching subscription's stream. A Lua script
//!   does the adding, atomically and only if the bindings have not changed since the routes
//!   were computed, so that a subscription bound a moment ago never misses an event. With a
//!   stream per topic, every consumer would have to discover and read every topic stream its
//!   patterns might match, now and later; with one per subscription, a consumer reads one
//!   stream, and its group's pending list is exactly its unsettled work.
//! - **Consumer groups**: streams on one subscription share its group (competing
//!   consumers); an entry is acked (`XACK`, batched) and deleted when handled.
//! - **Leases**: what a consumer holds is renewed every third of the lease; what a dead
//!   consumer held is claimed by another (`XAUTOCLAIM`) once idle for the lease.
//! - **Retries**: the entry moves, atomically, into a sorted set scored by when it is due;
//!   consumers move due entries back into the stream (a Lua script) with the attempt count,
//!   first failure and last error as fields.
//! - **Dead letters**: a stream per subscription with the failure's details; listed,
//!   replayed and purged through [`DeadLetters`](tidings_core::transport::DeadLetters).
//!
//! See [`RedisConfig`] for what survives a Redis restart: only what AOF kept.
//!
//! ```no_run
//! use futures::StreamExt;
//! use tidings_core::envelope::Envelope;
//! use tidings_core::topic::Pattern;
//! use tidings_core::transport::{Publisher, Subscriber, SubscriptionSpec};
//! use tidings_redis::{RedisConfig, RedisTransport};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let transport = RedisTransport::connect(RedisConfig::from_env()).await?;
//! let spec = SubscriptionSpec::new("notification", [Pattern::parse("order.*")?]);
//! let mut deliveries = transport.subscribe(&spec).await?;
//!
//! transport.publish(&Envelope::new("oms", "order.created")).await?;
//! let delivery = deliveries.next().await.unwrap()?;
//! delivery.ack().await?;
//! # Ok(())
//! # }
//! ```
//!
//! [redis]: https://docs.rs/redis

mod acks;
mod config;
mod dead_letter;
mod delivery;
mod error;
mod keys;
mod publisher;
mod routes;
mod scripts;
mod subscriber;

pub use config::{BrokerUrl, RedisConfig, Trim};
pub use error::{Error, Result};

use std::sync::Arc;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tidings_core::transport::{Capabilities, Transport};
use tokio_util::sync::CancellationToken;

use keys::Keys;
use routes::Routes;

/// The Redis Streams transport. Clones share one connection.
#[derive(Clone, Debug)]
pub struct RedisTransport {
    inner: Arc<Inner>,
}

/// What clones share.
pub(crate) struct Inner {
    pub(crate) config: RedisConfig,
    /// The server, password redacted, for messages.
    pub(crate) url: String,
    client: redis::Client,
    /// Commands that do not block.
    pub(crate) conn: ConnectionManager,
    pub(crate) keys: Keys,
    pub(crate) routes: Routes,
    pub(crate) closed: CancellationToken,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("url", &self.url)
            .field("prefix", &self.config.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisTransport {
    /// Connects. Fails at once when the server is unreachable or refuses the credentials or
    /// the certificate; once connected, lost connections are re-established on their own.
    pub async fn connect(config: RedisConfig) -> Result<Self> {
        let url = config.url.redacted();
        let client = match &config.ca_pem {
            Some(pem) => {
                // rustls needs a process-wide crypto provider; another crate may have set one.
                let _ = rustls::crypto::ring::default_provider().install_default();
                redis::Client::build_with_tls(
                    config.url.expose(),
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem.clone()),
                    },
                )
            }
            None => {
                if config.url.scheme() == Some("rediss") {
                    let _ = rustls::crypto::ring::default_provider().install_default();
                }
                redis::Client::open(config.url.expose())
            }
        }
        .map_err(|e| Error::from_redis(&e, &url, "reading the URL"))?;
        let conn = manager(&client, &config, config.response_timeout)
            .await
            .map_err(|e| Error::from_redis(&e, &url, "connecting"))?;
        tracing::debug!(server = %url, "connected to Redis");
        let inner = Inner {
            conn,
            client,
            keys: Keys::new(&config.prefix),
            routes: Routes::default(),
            url,
            config,
            closed: CancellationToken::new(),
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// Publishes `body` as it is under `topic`: for tools, tests and producers that are not
    /// tidings. Nothing checks that it is an event.
    pub async fn publish_bytes(
        &self,
        topic: &str,
        body: Vec<u8>,
    ) -> std::result::Result<(), tidings_core::transport::TransportError> {
        self.inner
            .route(vec![routes::Entry {
                topic,
                content_type: "",
                body,
            }])
            .await
    }

    /// Events waiting in `subscription`'s stream, handed out or not.
    pub async fn depth(&self, subscription: &str) -> Result<u64> {
        let mut conn = self.inner.conn.clone();
        redis::cmd("XLEN")
            .arg(self.inner.keys.stream(subscription))
            .query_async(&mut conn)
            .await
            .map_err(|e| self.inner.error(&e, "reading a stream's length"))
    }
}

/// A reconnecting connection whose commands wait `response_timeout` at most.
async fn manager(
    client: &redis::Client,
    config: &RedisConfig,
    response_timeout: std::time::Duration,
) -> redis::RedisResult<ConnectionManager> {
    let options = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.connect_timeout))
        .set_response_timeout(Some(response_timeout))
        .set_number_of_retries(3)
        .set_min_delay(std::time::Duration::from_millis(100))
        .set_max_delay(std::time::Duration::from_secs(2));
    client.get_connection_manager_with_config(options).await
}

impl Inner {
    /// Classifies a client error for `operation`.
    pub(crate) fn error(&self, error: &redis::RedisError, operation: &str) -> Error {
        Error::from_redis(error, &self.url, operation)
    }

    /// A connection of its own, for reads that block on the server for up to `block`.
    pub(crate) async fn blocking_connection(&self) -> Result<ConnectionManager> {
        let timeout = self.config.block + self.config.response_timeout;
        manager(&self.client, &self.config, timeout)
            .await
            .map_err(|e| self.error(&e, "connecting"))
    }
}

#[async_trait::async_trait]
impl Transport for RedisTransport {
    fn name(&self) -> &'static str {
        "redis"
    }

    /// Deletes the subscription's binding, stream (with what waits in it), waiting retries
    /// and dead letters, in one script.
    async fn remove_subscription(
        &self,
        name: &str,
    ) -> std::result::Result<(), tidings_core::transport::TransportError> {
        Ok(self.inner.unbind(name).await?)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with_ordering(true)
            .with_consumer_groups(true)
            // Only with AOF: see `RedisConfig`.
            .with_persistence(true)
            .with_native_delay(true)
    }

    /// The subscription's stream (acked entries are deleted from it, so what is there is
    /// waiting or handed out) plus its retries waiting for their time. The oldest age is the
    /// first stream entry's id, the time Redis appended it (a retry is appended again when
    /// its time comes).
    async fn backlog(
        &self,
        subscription: &str,
    ) -> std::result::Result<
        Option<tidings_core::transport::Backlog>,
        tidings_core::transport::TransportError,
    > {
        let inner = &self.inner;
        let stream = inner.keys.stream(subscription);
        let mut conn = inner.conn.clone();
        let (waiting, delayed, first): (u64, u64, redis::streams::StreamRangeReply) = redis::pipe()
            .cmd("XLEN")
            .arg(&stream)
            .cmd("ZCARD")
            .arg(inner.keys.delayed(subscription))
            .cmd("XRANGE")
            .arg(&stream)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await
            .map_err(|e| inner.error(&e, "reading a subscription's backlog"))?;
        let now = chrono::Utc::now().timestamp_millis();
        let oldest_age = first
            .ids
            .first()
            .and_then(|entry| entry.id.split('-').next()?.parse::<i64>().ok())
            .map(|appended| {
                std::time::Duration::from_millis(u64::try_from(now - appended).unwrap_or(0))
            });
        Ok(Some(tidings_core::transport::Backlog::new(
            waiting + delayed,
            oldest_age,
        )))
    }

    /// Ready while Redis answers `PING` within a second.
    async fn ready(&self) -> std::result::Result<(), tidings_core::transport::TransportError> {
        use tidings_core::transport::TransportError;
        if self.inner.closed.is_cancelled() {
            return Err(TransportError::Closed);
        }
        let mut conn = self.inner.conn.clone();
        let command = redis::cmd("PING");
        let ping = command.query_async::<String>(&mut conn);
        match tokio::time::timeout(std::time::Duration::from_secs(1), ping).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(self.inner.error(&error, "PING").into()),
            Err(_) => Err(TransportError::Timeout(std::time::Duration::from_secs(1))),
        }
    }
}
