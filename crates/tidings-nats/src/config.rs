//! Settings of a [`NatsTransport`](crate::NatsTransport).

use std::path::PathBuf;
use std::time::Duration;

pub use tidings_core::broker_url::BrokerUrl;

use crate::error::{Error, Result};

/// How an envelope is carried in a NATS message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ContentMode {
    /// CloudEvents structured mode: the whole event as `application/cloudevents+json`. The
    /// default.
    #[default]
    Structured,
    /// CloudEvents binary mode: attributes as `ce-` headers, the data as the payload.
    Binary,
}

/// When JetStream deletes stored events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Retention {
    /// Once every subscription (consumer) has acked them, or at `max_age`. The default: a
    /// bus keeps what someone still has to handle, like a broker's queues.
    #[default]
    Interest,
    /// At `max_age` or the size limits only, acked or not: the stream is also a log that
    /// new subscriptions can read from its start.
    Limits,
}

/// TLS settings for `tls://` URLs or servers that require TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsConfig {
    /// A PEM file of CA certificates to trust instead of the platform's.
    pub ca_file: Option<PathBuf>,
    /// A client certificate chain and its key, PEM files.
    pub client_certificate: Option<(PathBuf, PathBuf)>,
    /// Use TLS even if the URL says `nats://`.
    pub required: bool,
}

impl TlsConfig {
    /// Trusts the CA certificates in `path` (PEM).
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self.required = true;
        self
    }

    /// Presents a client certificate.
    pub fn with_client_certificate(
        mut self,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.client_certificate = Some((cert.into(), key.into()));
        self
    }
}

/// Settings of a [`NatsTransport`](crate::NatsTransport).
///
/// Events go to one JetStream stream (`TIDINGS`, subjects `tidings` and `tidings.>`), dead
/// letters to a second (`TIDINGS_DLQ`), the failure history of messages being retried to a
/// third (`TIDINGS_FAILURES`). File storage is the default.
///
/// **Durability.** JetStream acknowledges a publish once the message is written to its file,
/// but by default syncs files to disk only every two minutes: a power loss (not a crash of
/// the server process) can lose what was acknowledged since. Servers that must not lose
/// acknowledged events set `sync_interval: always` in their `jetstream {}` block (NATS 2.10
/// and later) or run a cluster with `replicas(3)`.
///
/// ```
/// use std::time::Duration;
/// use tidings_nats::NatsConfig;
///
/// let config = NatsConfig::new("nats://app:s3cr3t@127.0.0.1:4222")
///     .stream("ORDERS", "orders")
///     .max_age(Duration::from_secs(7 * 24 * 3600))
///     .ack_wait(Duration::from_secs(60));
/// assert!(!format!("{config:?}").contains("s3cr3t"));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NatsConfig {
    pub(crate) url: BrokerUrl,
    pub(crate) name: String,
    pub(crate) tls: TlsConfig,
    pub(crate) stream: String,
    pub(crate) prefix: String,
    pub(crate) retention: Retention,
    pub(crate) replicas: usize,
    pub(crate) max_age: Duration,
    pub(crate) duplicate_window: Duration,
    pub(crate) dead_letter_stream: String,
    pub(crate) dead_letter_prefix: String,
    pub(crate) failures_stream: String,
    pub(crate) ack_wait: Duration,
    pub(crate) delivery_limit: u32,
    pub(crate) max_ack_pending: i64,
    pub(crate) content_mode: ContentMode,
    pub(crate) publish_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) inactive_threshold: Option<Duration>,
}

impl NatsConfig {
    /// The machine's NATS when nothing else is said.
    pub const DEFAULT_URL: &'static str = "nats://127.0.0.1:4222";

    /// A transport on the server at `url` (`nats://[user:password@]host:port`), with the
    /// defaults.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: BrokerUrl::new(url),
            name: "tidings".to_owned(),
            tls: TlsConfig::default(),
            stream: "TIDINGS".to_owned(),
            prefix: "tidings".to_owned(),
            retention: Retention::Interest,
            replicas: 1,
            max_age: Duration::from_secs(7 * 24 * 3600),
            duplicate_window: Duration::from_secs(120),
            dead_letter_stream: "TIDINGS_DLQ".to_owned(),
            dead_letter_prefix: "tidings-dlq".to_owned(),
            failures_stream: "TIDINGS_FAILURES".to_owned(),
            ack_wait: Duration::from_secs(30),
            delivery_limit: 20,
            max_ack_pending: 10_000,
            content_mode: ContentMode::Structured,
            publish_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            inactive_threshold: None,
        }
    }

    /// The settings from `NATS_URL` (default [`DEFAULT_URL`](Self::DEFAULT_URL)).
    pub fn from_env() -> Self {
        Self::new(std::env::var("NATS_URL").unwrap_or_else(|_| Self::DEFAULT_URL.to_owned()))
    }

    /// The server URL, printable (password redacted).
    pub fn url(&self) -> &BrokerUrl {
        &self.url
    }

    /// The name the server shows for this client.
    pub fn client_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// TLS settings.
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = tls;
        self
    }

    /// The events' stream and the subject prefix it captures (`TIDINGS`, `tidings`).
    pub fn stream(mut self, name: impl Into<String>, prefix: impl Into<String>) -> Self {
        self.stream = name.into();
        self.prefix = prefix.into();
        self
    }

    /// When stored events are deleted (default [`Retention::Interest`]).
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// Copies of each stream in a cluster (default 1).
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas.max(1);
        self
    }

    /// Events older than this are deleted whatever their state (default 7 days).
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = age;
        self
    }

    /// How long the server remembers event ids to drop duplicate publishes (default 2 min).
    pub fn duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window = window;
        self
    }

    /// The dead letters' stream and subject prefix (`TIDINGS_DLQ`, `tidings-dlq`).
    pub fn dead_letter_stream(
        mut self,
        name: impl Into<String>,
        prefix: impl Into<String>,
    ) -> Self {
        self.dead_letter_stream = name.into();
        self.dead_letter_prefix = prefix.into();
        self
    }

    /// How long a delivery stays reserved for its consumer before the server redelivers it
    /// (`AckWait`, default 30 s). A live consumer tells the server it is still working every
    /// third of this, so handlers may take longer.
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.ack_wait = wait.max(Duration::from_millis(300));
        self
    }

    /// Deliveries of one message after which the transport dead-letters it without handing
    /// it out (a message that keeps taking its consumers down). Default 20.
    pub fn delivery_limit(mut self, limit: u32) -> Self {
        self.delivery_limit = limit.max(1);
        self
    }

    /// Unacked messages a subscription (all its workers together) may hold (default 10,000).
    pub fn max_ack_pending(mut self, n: i64) -> Self {
        self.max_ack_pending = n.max(1);
        self
    }

    /// How envelopes are carried (default [`ContentMode::Structured`]).
    pub fn content_mode(mut self, mode: ContentMode) -> Self {
        self.content_mode = mode;
        self
    }

    /// How long a publish waits for the server's acknowledgement before it fails with a
    /// transient error, which the failover publisher catches (default 5 s).
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = timeout;
        self
    }

    /// How long one connection attempt may take (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Deletes a subscription's consumer after it has had no client for this long: for
    /// short-lived subscriptions and tests. Default: never.
    pub fn inactive_threshold(mut self, after: Duration) -> Self {
        self.inactive_threshold = Some(after);
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let bad_name = |name: &str| {
            name.is_empty()
                || name
                    .chars()
                    .any(|c| matches!(c, '.' | '*' | '>' | '/' | '\\') || c.is_whitespace())
        };
        for name in [
            &self.stream,
            &self.dead_letter_stream,
            &self.failures_stream,
        ] {
            if bad_name(name) {
                return Err(Error::Config(format!(
                    "`{name}` is not a stream name (no spaces, `.`, `*`, `>` or slashes)"
                )));
            }
        }
        for prefix in [&self.prefix, &self.dead_letter_prefix] {
            if prefix.is_empty()
                || prefix.split('.').any(|t| {
                    t.is_empty() || t.contains(['*', '>']) || t.contains(char::is_whitespace)
                })
            {
                return Err(Error::Config(format!(
                    "`{prefix}` is not a subject prefix (dot-separated tokens, no wildcards)"
                )));
            }
        }
        Ok(())
    }
}

impl Default for NatsConfig {
    /// [`DEFAULT_URL`](Self::DEFAULT_URL) with the defaults.
    fn default() -> Self {
        Self::new(Self::DEFAULT_URL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_server_would_refuse_are_refused_here() {
        assert!(NatsConfig::default().validate().is_ok());
        assert!(
            NatsConfig::default()
                .stream("my.events", "events")
                .validate()
                .is_err()
        );
        assert!(
            NatsConfig::default()
                .stream("EVENTS", "events.*")
                .validate()
                .is_err()
        );
        assert!(
            NatsConfig::default()
                .stream("EVENTS", "a..b")
                .validate()
                .is_err()
        );
    }
}
