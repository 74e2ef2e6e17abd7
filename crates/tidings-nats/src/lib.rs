//! NATS JetStream for tidings: streams created from configuration, durable pull consumers,
//! retries by `nak` with a delay, a dead-letter stream, de-duplication by the server.
//!
//! [`NatsTransport`] implements the tidings transport contract on JetStream (with
//! [async-nats]):
//!
//! - **Publishing**: to one stream (`TIDINGS`, subjects `tidings.>`), each event under the
//!   subject of its topic ([subjects](#subjects)), acknowledged by the server, with
//!   `Nats-Msg-Id` set from the event's source and id so that the server drops a repeat
//!   within its duplicate window. CloudEvents NATS binding, structured or binary (`ce-`
//!   headers).
//! - **Subscribing**: one durable pull consumer per subscription; streams on one
//!   subscription share it (competing workers). `AckWait` is the lease, extended with
//!   in-progress acks while a handler runs; acks only after success.
//! - **Retries**: `nak` with the delay; the attempt count is the server's delivery count.
//!   The first failure time and last error of a message being retried are kept in a small
//!   stream of their own (`TIDINGS_FAILURES`).
//! - **Dead letters**: JetStream has no dead-letter queue of its own; tidings writes one
//!   (`TIDINGS_DLQ`, a subject per subscription) with the failure's details, and lists,
//!   replays and purges it. A message delivered more than [`NatsConfig::delivery_limit`]
//!   times without being settled (it keeps taking its consumer down) is dead-lettered too.
//!
//! # Subjects
//! A topic's words are a subject's tokens under the stream's prefix: `order.created` is
//! `tidings.order.created`. Empty words (`a..b`) and `*`, `>` or spaces inside a word are
//! escaped, so every topic has a subject and back. Patterns translate as `*` → `*` and a
//! trailing `#` → `>`; what NATS cannot say (`#` matching zero words, `#` in the middle,
//! several patterns on a server with one filter subject per consumer) is filtered exactly on
//! the client after the widest subject the server can filter on.
//!
//! ```no_run
//! use futures::StreamExt;
//! use tidings_core::envelope::Envelope;
//! use tidings_core::topic::Pattern;
//! use tidings_core::transport::{Publisher, Subscriber, SubscriptionSpec};
//! use tidings_nats::{NatsConfig, NatsTransport};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let transport = NatsTransport::connect(NatsConfig::from_env()).await?;
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
//! [async-nats]: https://docs.rs/async-nats

mod ack_subject;
mod binding;
mod config;
mod dead_letter;
mod delivery;
mod error;
mod failures;
mod publisher;
mod subject;
mod subscriber;

pub use config::{BrokerUrl, ContentMode, NatsConfig, Retention, TlsConfig};
pub use error::{Error, Result};

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::{ConnectErrorKind, ConnectOptions, Event};
use tidings_core::transport::{Capabilities, DeadLetters, Transport, TransportError};
use tokio_util::sync::CancellationToken;

use subject::Subjects;

/// The NATS JetStream transport. Clones share one connection.
#[derive(Clone, Debug)]
pub struct NatsTransport {
    inner: Arc<Inner>,
}

/// What clones share.
pub(crate) struct Inner {
    pub(crate) config: NatsConfig,
    /// The server, password redacted, for messages.
    pub(crate) url: String,
    pub(crate) client: async_nats::Client,
    pub(crate) js: jetstream::Context,
    pub(crate) subjects: Subjects,
    pub(crate) closed: CancellationToken,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("url", &self.url)
            .field("stream", &self.config.stream)
            .finish_non_exhaustive()
    }
}

impl NatsTransport {
    /// Connects and creates (or updates) the streams. Fails at once when the server is
    /// unreachable, refuses the credentials or has no JetStream; once connected, the client
    /// reconnects by itself and consumers resume.
    pub async fn connect(config: NatsConfig) -> Result<Self> {
        config.validate()?;
        let url = config.url.redacted();
        let mut options = match config.url.credentials() {
            Some((user, Some(password))) => ConnectOptions::with_user_and_password(user, password),
            // `nats://token@host`: NATS reads a lone user as a token.
            Some((token, None)) => ConnectOptions::with_token(token),
            None => ConnectOptions::new(),
        };
        let events_url = url.clone();
        options = options
            .name(&config.name)
            .connection_timeout(config.connect_timeout)
            .max_reconnects(None)
            .event_callback(move |event| {
                let url = events_url.clone();
                async move {
                    match event {
                        Event::Disconnected => {
                            tracing::warn!(server = %url, "NATS connection lost; reconnecting")
                        }
                        Event::Connected => tracing::info!(server = %url, "connected to NATS"),
                        other => tracing::debug!(server = %url, event = %other, "NATS event"),
                    }
                }
            });
        let tls = &config.tls;
        if tls.required {
            options = options.require_tls(true);
        }
        if let Some(ca) = &tls.ca_file {
            options = options.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &tls.client_certificate {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        // `nats://a:4222,nats://b:4222`: several servers of a cluster.
        let servers = config
            .url
            .without_credentials()
            .split(',')
            .map(|server| server.trim().parse::<async_nats::ServerAddr>())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Config(format!("{url}: {e}")))?;
        let client = options.connect(servers).await.map_err(|e| match e.kind() {
            ConnectErrorKind::Authentication | ConnectErrorKind::AuthorizationViolation => {
                Error::AccessRefused {
                    url: url.clone(),
                    reason: e.to_string(),
                }
            }
            ConnectErrorKind::Tls => Error::Tls(e.to_string()),
            // The handshake's verdict arrives as an IO error; retrying cannot change it.
            ConnectErrorKind::Io if e.to_string().contains("certificate") => {
                Error::Tls(e.to_string())
            }
            ConnectErrorKind::ServerParse => Error::Config(format!("{url}: {e}")),
            _ => Error::Unreachable {
                url: url.clone(),
                reason: e.to_string(),
            },
        })?;
        if !client.server_info().jetstream {
            return Err(Error::NoJetStream(url));
        }
        let js = jetstream::ContextBuilder::new()
            .timeout(config.publish_timeout)
            .build(client.clone());
        let inner = Inner {
            subjects: Subjects::new(config.prefix.clone()),
            config,
            url,
            client,
            js,
            closed: CancellationToken::new(),
        };
        inner.ensure_streams().await?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &NatsConfig {
        &self.inner.config
    }

    /// Publishes `payload` as it is under `topic`, acknowledged by the server: for tools,
    /// tests and producers that are not tidings. Nothing checks that it is an event.
    pub async fn publish_bytes(
        &self,
        topic: &str,
        payload: Vec<u8>,
    ) -> std::result::Result<(), tidings_core::transport::TransportError> {
        let subject = self.inner.subjects.subject(topic);
        let ack = self
            .inner
            .js
            .publish(subject, payload.into())
            .await
            .map_err(|e| self.inner.publish_error(&e))?;
        ack.await.map_err(|e| self.inner.publish_error(&e))?;
        Ok(())
    }
}

impl Inner {
    /// Classifies a client error for `operation`: transient, or a refusal.
    pub(crate) fn error(
        &self,
        operation: &str,
        error: impl std::fmt::Display,
        transient: bool,
    ) -> Error {
        if transient {
            Error::Unreachable {
                url: self.url.clone(),
                reason: format!("{operation}: {error}"),
            }
        } else {
            Error::refused(operation, error)
        }
    }

    /// How long the oldest message a consumer has not acked has been in the stream: the
    /// first one past its ack floor on its filter subject. `None` when there is none (all
    /// acked meanwhile).
    async fn oldest_unacked_age(
        &self,
        stream: &stream::Stream<()>,
        info: &jetstream::consumer::Info,
    ) -> Result<Option<Duration>> {
        let filter = match info.config.filter_subject.as_str() {
            "" => ">",
            filter => filter,
        };
        let first = stream
            .get_first_raw_message_by_subject(filter, info.ack_floor.stream_sequence + 1)
            .await;
        let message = match first {
            Ok(message) => message,
            Err(e) if matches!(e.kind(), stream::LastRawMessageErrorKind::NoMessageFound) => {
                return Ok(None);
            }
            Err(e) => return Err(self.error("reading the oldest unacked message", e, true)),
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let stored = u128::try_from(message.time.unix_timestamp_nanos()).unwrap_or(0);
        Ok(Some(Duration::from_nanos(
            u64::try_from(now.saturating_sub(stored)).unwrap_or(u64::MAX),
        )))
    }

    fn stream_config(&self, name: &str, subjects: Vec<String>) -> stream::Config {
        stream::Config {
            name: name.to_owned(),
            subjects,
            storage: stream::StorageType::File,
            num_replicas: self.config.replicas,
            allow_direct: true,
            ..Default::default()
        }
    }

    /// Creates the events', dead letters' and failures' streams, or updates them to the
    /// configuration.
    pub(crate) async fn ensure_streams(&self) -> Result<()> {
        let config = &self.config;
        let events = stream::Config {
            retention: match config.retention {
                Retention::Interest => stream::RetentionPolicy::Interest,
                Retention::Limits => stream::RetentionPolicy::Limits,
            },
            max_age: config.max_age,
            duplicate_window: config.duplicate_window,
            discard: stream::DiscardPolicy::Old,
            ..self.stream_config(&config.stream, self.subjects.stream_subjects())
        };
        let dead_letters = self.stream_config(
            &config.dead_letter_stream,
            vec![format!("{}.>", config.dead_letter_prefix)],
        );
        let failures = stream::Config {
            max_messages_per_subject: 1,
            max_age: Duration::from_secs(7 * 24 * 3600),
            ..self.stream_config(&config.failures_stream, vec![failures::subjects(config)])
        };
        for stream in [events, dead_letters, failures] {
            let name = stream.name.clone();
            self.js.create_or_update_stream(stream).await.map_err(|e| {
                use async_nats::jetstream::context::CreateStreamErrorKind as Kind;
                match e.kind() {
                    Kind::JetStream(reason) => Error::Conflict {
                        what: format!("stream `{name}`"),
                        reason: reason.to_string(),
                    },
                    Kind::TimedOut | Kind::JetStreamUnavailable | Kind::Response => {
                        self.error(&format!("creating stream `{name}`"), &e, true)
                    }
                    _ => self.error(&format!("creating stream `{name}`"), &e, false),
                }
            })?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Transport for NatsTransport {
    fn name(&self) -> &'static str {
        "nats"
    }

    /// Deletes the subscription's durable consumer and its dead letters. The events it
    /// had not consumed stay in the stream for the other subscriptions, as JetStream keeps
    /// one copy for all.
    async fn remove_subscription(&self, name: &str) -> std::result::Result<(), TransportError> {
        use async_nats::jetstream::ErrorCode;
        use async_nats::jetstream::stream::ConsumerErrorKind as Kind;
        let inner = &self.inner;
        let stream = inner
            .js
            .get_stream_no_info(&inner.config.stream)
            .await
            .map_err(|e| {
                TransportError::from(inner.error("opening the events' stream", e, false))
            })?;
        let consumer = subscriber::consumer_name(name);
        match stream.delete_consumer(&consumer).await {
            Ok(_) => {}
            Err(e) if matches!(e.kind(), Kind::JetStream(ref j) if j.error_code() == ErrorCode::CONSUMER_NOT_FOUND) =>
                {}
            Err(e) => {
                return Err(inner
                    .error(&format!("deleting consumer `{consumer}`"), e, true)
                    .into());
            }
        }
        DeadLetters::purge(self, name).await?;
        Ok(())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with_ordering(true)
            .with_consumer_groups(true)
            .with_persistence(true)
            .with_native_delay(true)
    }

    /// What the subscription's durable consumer has not settled: the stream messages it has
    /// not delivered yet (`num_pending`, counted on its server-side filter, so including
    /// events the client-side filter will drop) and those delivered and not acked
    /// (`num_ack_pending`). The oldest's age is that of the first stream message past the
    /// consumer's ack floor on its filter subject: the oldest it has not acked. `None`
    /// before the subscription's first `subscribe`.
    async fn backlog(
        &self,
        subscription: &str,
    ) -> std::result::Result<
        Option<tidings_core::transport::Backlog>,
        tidings_core::transport::TransportError,
    > {
        use async_nats::jetstream::context::ConsumerInfoErrorKind;
        let inner = &self.inner;
        let stream = inner
            .js
            .get_stream_no_info(&inner.config.stream)
            .await
            .map_err(|e| inner.error("opening the events' stream", e, true))?;
        match stream
            .consumer_info(subscriber::consumer_name(subscription))
            .await
        {
            Ok(info) => {
                let depth = info.num_pending + info.num_ack_pending as u64;
                let oldest_age = if depth == 0 {
                    None
                } else {
                    inner.oldest_unacked_age(&stream, &info).await?
                };
                Ok(Some(tidings_core::transport::Backlog::new(
                    depth, oldest_age,
                )))
            }
            Err(e) if matches!(e.kind(), ConsumerInfoErrorKind::NotFound) => Ok(None),
            Err(e) => Err(inner.error("reading a consumer's state", e, true).into()),
        }
    }

    /// Ready while the client is connected to a server (async-nats reconnects by itself).
    async fn ready(&self) -> std::result::Result<(), tidings_core::transport::TransportError> {
        use tidings_core::transport::TransportError;
        if self.inner.closed.is_cancelled() {
            return Err(TransportError::Closed);
        }
        match self.inner.client.connection_state() {
            async_nats::connection::State::Connected => Ok(()),
            state => Err(TransportError::Connection(
                format!("NATS at {} is {state}", self.inner.url).into(),
            )),
        }
    }
}
