//! Settings of an [`AmqpTransport`](crate::AmqpTransport).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use tidings_core::broker_url::BrokerUrl;
use tidings_core::retry::RetryPolicy;

use crate::error::{Error, Result};

/// The kind of queue a subscription gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum QueueType {
    /// Replicated, durable, poison-message handling (`x-delivery-limit`) and at-least-once
    /// dead-lettering. The default.
    #[default]
    Quorum,
    /// A classic durable queue: cheaper, not replicated, and the broker's own dead-lettering
    /// out of it is at-most-once.
    Classic,
}

impl QueueType {
    /// The `x-queue-type` argument.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueType::Quorum => "quorum",
            QueueType::Classic => "classic",
        }
    }
}

/// How an envelope is carried in an AMQP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ContentMode {
    /// CloudEvents structured mode: the whole event as `application/cloudevents+json`. The
    /// default.
    #[default]
    Structured,
    /// CloudEvents binary mode: attributes as `cloudEvents:`-prefixed application properties,
    /// the data as the body with its own content type.
    Binary,
    /// The flat JSON envelope existing producers send (`id, type, source, timestamp,
    /// tenant_id, ...`), for consumers that have not moved to CloudEvents yet.
    Legacy,
}

/// Which topic exchange an event is published to.
///
/// One shared exchange by default. Teams that already run one exchange per domain (`orders`,
/// `products`, ...) map the first word of the topic to it; topics whose first word is not
/// mapped go to the default exchange. A subscription binds each of its patterns to every
/// exchange that can carry a matching topic.
///
/// ```
/// use tidings_amqp::Exchanges;
///
/// let exchanges = Exchanges::shared("events").domain("order", "orders").domain("product", "products");
/// assert_eq!(exchanges.for_topic("order.created"), "orders");
/// assert_eq!(exchanges.for_topic("customer.created"), "events");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Exchanges {
    /// The exchange of every topic whose first word is not mapped.
    pub default: String,
    /// First word of a topic → its exchange.
    #[serde(default)]
    pub domains: BTreeMap<String, String>,
}

impl Exchanges {
    /// Every event through the one exchange `name`.
    pub fn shared(name: impl Into<String>) -> Self {
        Self {
            default: name.into(),
            domains: BTreeMap::new(),
        }
    }

    /// Topics starting with `first_word.` go to `exchange`.
    pub fn domain(mut self, first_word: impl Into<String>, exchange: impl Into<String>) -> Self {
        self.domains.insert(first_word.into(), exchange.into());
        self
    }

    /// The exchange `topic` is published to.
    pub fn for_topic(&self, topic: &str) -> &str {
        let first = topic.split('.').next().unwrap_or_default();
        self.domains
            .get(first)
            .map_or(self.default.as_str(), String::as_str)
    }

    /// Every exchange, default first, without repeats.
    pub fn all(&self) -> Vec<&str> {
        let mut all = vec![self.default.as_str()];
        for exchange in self.domains.values() {
            if !all.contains(&exchange.as_str()) {
                all.push(exchange);
            }
        }
        all
    }
}

impl Default for Exchanges {
    /// One shared exchange, `tidings.events`.
    fn default() -> Self {
        Self::shared("tidings.events")
    }
}

/// TLS settings for `amqps://` URLs. The platform's trusted roots are always used; these add
/// to them.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsConfig {
    /// Extra trusted CA certificates, PEM.
    pub ca_pem: Option<String>,
    /// A client certificate chain and its PKCS#8 key, PEM, for brokers that require one.
    pub client_identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl TlsConfig {
    /// Trusts the CA certificates in `pem` besides the platform's.
    pub fn with_ca_pem(mut self, pem: impl Into<String>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// Reads extra CA certificates from a PEM file.
    pub fn with_ca_file(self, path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let pem = std::fs::read_to_string(&path).map_err(|source| Error::Tls {
            reason: format!("cannot read CA file `{}`: {source}", path.display()),
        })?;
        Ok(self.with_ca_pem(pem))
    }

    /// Presents a client certificate (PEM chain, PKCS#8 PEM key).
    pub fn with_client_identity(mut self, cert_pem: Vec<u8>, key_pem: Vec<u8>) -> Self {
        self.client_identity = Some((cert_pem, key_pem));
        self
    }
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "<pem>"))
            .field(
                "client_identity",
                &self.client_identity.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Settings of an [`AmqpTransport`](crate::AmqpTransport).
///
/// The defaults are the durable ones: quorum queues, persistent messages, publisher confirms,
/// `mandatory` publishes (an event no queue is bound to is an error, not a silent drop).
///
/// ```
/// use std::time::Duration;
/// use tidings_amqp::{AmqpConfig, ContentMode, QueueType};
///
/// let config = AmqpConfig::new("amqp://guest:guest@127.0.0.1:5672/%2f")
///     .content_mode(ContentMode::Binary)
///     .queue_type(QueueType::Quorum)
///     .publish_timeout(Duration::from_secs(2));
/// assert!(!format!("{config:?}").contains("guest:guest"));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AmqpConfig {
    pub(crate) url: BrokerUrl,
    pub(crate) connection_name: String,
    pub(crate) tls: TlsConfig,
    pub(crate) exchanges: Exchanges,
    pub(crate) dead_letter_exchange: String,
    pub(crate) queue_prefix: String,
    pub(crate) queue_type: QueueType,
    pub(crate) dead_letter_queue_type: QueueType,
    pub(crate) queue_expires: Option<Duration>,
    pub(crate) delivery_limit: Option<u32>,
    pub(crate) dead_letter_ttl: Option<Duration>,
    pub(crate) prefetch: Option<u16>,
    pub(crate) content_mode: ContentMode,
    pub(crate) mandatory: bool,
    pub(crate) max_message_size: usize,
    pub(crate) publish_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) reconnect: RetryPolicy,
    pub(crate) retry_policy: Option<RetryPolicy>,
}

impl AmqpConfig {
    /// The URL of the machine's RabbitMQ when nothing else is said.
    pub const DEFAULT_URL: &'static str = "amqp://guest:guest@127.0.0.1:5672/%2f";

    /// A transport on the broker at `url`, with the defaults.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: BrokerUrl::new(url),
            connection_name: "tidings".to_owned(),
            tls: TlsConfig::default(),
            exchanges: Exchanges::default(),
            dead_letter_exchange: "tidings.dead-letter".to_owned(),
            queue_prefix: String::new(),
            queue_type: QueueType::Quorum,
            dead_letter_queue_type: QueueType::Classic,
            queue_expires: None,
            delivery_limit: Some(20),
            dead_letter_ttl: None,
            prefetch: None,
            content_mode: ContentMode::Structured,
            mandatory: true,
            max_message_size: 16 * 1024 * 1024,
            publish_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            reconnect: RetryPolicy::exponential(Duration::from_millis(100))
                .with_max_delay(Duration::from_secs(5)),
            retry_policy: None,
        }
    }

    /// The settings from the environment variables teams already use:
    ///
    /// | variable | meaning | default |
    /// |---|---|---|
    /// | `RABBITMQ_URL` | broker URL | [`DEFAULT_URL`](Self::DEFAULT_URL) |
    /// | `RABBITMQ_PREFETCH` | unacked deliveries per consumer | the subscription's |
    /// | `RABBITMQ_RETRY_COUNT` | retries after the first failure | the bus's policy |
    /// | `RABBITMQ_RETRY_DELAY` | first retry delay (`5s`, `500ms`) | the bus's policy |
    /// | `RABBITMQ_DLQ_TTL` | dead letters expire after this many milliseconds | never |
    ///
    /// The retry variables give [`retry_policy`](Self::retry_policy), for the bus.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub(crate) fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let invalid = |name: &str, value: &str, expected: &str| Error::Config {
            reason: format!("{name}=`{value}` is not {expected}"),
        };
        let mut config =
            Self::new(lookup("RABBITMQ_URL").unwrap_or_else(|| Self::DEFAULT_URL.into()));
        if let Some(v) = lookup("RABBITMQ_PREFETCH") {
            let n: u16 = v
                .trim()
                .parse()
                .map_err(|_| invalid("RABBITMQ_PREFETCH", &v, "a number from 1 to 65535"))?;
            config = config.prefetch(n);
        }
        if let Some(v) = lookup("RABBITMQ_DLQ_TTL") {
            let ms: u64 = v
                .trim()
                .parse()
                .map_err(|_| invalid("RABBITMQ_DLQ_TTL", &v, "a number of milliseconds"))?;
            config = config.dead_letter_ttl(Duration::from_millis(ms));
        }
        let count = lookup("RABBITMQ_RETRY_COUNT")
            .map(|v| {
                v.trim()
                    .parse::<u32>()
                    .map_err(|_| invalid("RABBITMQ_RETRY_COUNT", &v, "a number of retries"))
            })
            .transpose()?;
        let delay = lookup("RABBITMQ_RETRY_DELAY")
            .map(|v| {
                humantime::parse_duration(v.trim())
                    .map_err(|_| invalid("RABBITMQ_RETRY_DELAY", &v, "a duration like `5s`"))
            })
            .transpose()?;
        if count.is_some() || delay.is_some() {
            let base = RetryPolicy::default();
            let mut policy = RetryPolicy::exponential(delay.unwrap_or(base.initial_delay));
            if let Some(retries) = count {
                policy = policy.with_max_attempts(retries.saturating_add(1));
            }
            config.retry_policy = Some(policy);
        }
        Ok(config)
    }

    /// The same settings on another broker: for a URL given on the command line while the
    /// `RABBITMQ_*` tuning variables still apply (`AmqpConfig::from_env()?.with_url(url)`).
    pub fn with_url(mut self, url: impl Into<String>) -> Self {
        self.url = BrokerUrl::new(url);
        self
    }

    /// The broker URL, printable (password redacted).
    pub fn url(&self) -> &BrokerUrl {
        &self.url
    }

    /// The retry policy the environment asked for (`RABBITMQ_RETRY_COUNT`,
    /// `RABBITMQ_RETRY_DELAY`), to give to the bus.
    pub fn retry_policy(&self) -> Option<RetryPolicy> {
        self.retry_policy
    }

    /// The name the broker shows for this client's connections.
    pub fn connection_name(mut self, name: impl Into<String>) -> Self {
        self.connection_name = name.into();
        self
    }

    /// TLS settings for `amqps://` URLs.
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = tls;
        self
    }

    /// The topic exchanges events are published to.
    pub fn exchanges(mut self, exchanges: Exchanges) -> Self {
        self.exchanges = exchanges;
        self
    }

    /// The direct exchange dead letters go through (default `tidings.dead-letter`).
    pub fn dead_letter_exchange(mut self, name: impl Into<String>) -> Self {
        self.dead_letter_exchange = name.into();
        self
    }

    /// Prefix of every queue name (default none: subscription `notification` consumes from
    /// queue `notification`).
    pub fn queue_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.queue_prefix = prefix.into();
        self
    }

    /// The kind of the subscriptions' queues (default [`QueueType::Quorum`]).
    pub fn queue_type(mut self, queue_type: QueueType) -> Self {
        self.queue_type = queue_type;
        self
    }

    /// The kind of the dead-letter queues (default [`QueueType::Classic`]: they are browsed
    /// by reading and returning messages, which a quorum queue counts as deliveries).
    pub fn dead_letter_queue_type(mut self, queue_type: QueueType) -> Self {
        self.dead_letter_queue_type = queue_type;
        self
    }

    /// Deletes a subscription's queues after they have had no consumer for this long
    /// (`x-expires`): for short-lived subscriptions and tests. Default: never.
    pub fn queue_expires(mut self, after: Duration) -> Self {
        self.queue_expires = Some(after);
        self
    }

    /// Deliveries a quorum queue allows per message before the broker dead-letters it
    /// (`x-delivery-limit`), the guard against a message that crashes every consumer before
    /// it can settle. Default 20; `None` for no limit.
    pub fn delivery_limit(mut self, limit: Option<u32>) -> Self {
        self.delivery_limit = limit;
        self
    }

    /// Dead letters expire after this long (`x-message-ttl` on the dead-letter queues).
    /// Default: kept until replayed or purged.
    pub fn dead_letter_ttl(mut self, ttl: Duration) -> Self {
        self.dead_letter_ttl = Some(ttl);
        self
    }

    /// Unacked deliveries per consumer for every subscription, instead of each
    /// subscription's own prefetch.
    pub fn prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = Some(prefetch.max(1));
        self
    }

    /// How envelopes are carried (default [`ContentMode::Structured`]).
    pub fn content_mode(mut self, mode: ContentMode) -> Self {
        self.content_mode = mode;
        self
    }

    /// Whether a publish no queue is bound to fails ([`TransportError::Unroutable`]), the
    /// default, or is dropped by the broker as a plain topic exchange would.
    ///
    /// [`TransportError::Unroutable`]: tidings_core::transport::TransportError::Unroutable
    pub fn mandatory(mut self, yes: bool) -> Self {
        self.mandatory = yes;
        self
    }

    /// The largest message sent (default 16 MiB, RabbitMQ 4's `max_message_size`). Larger
    /// ones fail before they are sent: the broker would close the channel, and every
    /// unconfirmed publish on it with it.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// How long a publish waits for the broker (a reconnection, a confirm) before it fails
    /// with a transient error, which the failover publisher catches. Default 5 s.
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = timeout;
        self
    }

    /// How long one connection attempt may take. Default 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Backoff between reconnection attempts (default 100 ms doubling up to 5 s, jittered).
    pub fn reconnect_backoff(mut self, policy: RetryPolicy) -> Self {
        self.reconnect = policy;
        self
    }

    /// The queue of subscription `name`.
    pub(crate) fn queue_name(&self, subscription: &str) -> String {
        format!("{}{subscription}", self.queue_prefix)
    }
}

impl Default for AmqpConfig {
    /// [`DEFAULT_URL`](Self::DEFAULT_URL) with the defaults.
    fn default() -> Self {
        Self::new(Self::DEFAULT_URL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_variables_users_already_set_are_read() {
        let env = |name: &str| {
            Some(
                match name {
                    "RABBITMQ_URL" => "amqp://app:pw@10.0.0.5:5672/shop",
                    "RABBITMQ_PREFETCH" => "10",
                    "RABBITMQ_RETRY_COUNT" => "3",
                    "RABBITMQ_RETRY_DELAY" => "5s",
                    "RABBITMQ_DLQ_TTL" => "86400000",
                    _ => return None,
                }
                .to_owned(),
            )
        };
        let config = AmqpConfig::from_lookup(env).unwrap();
        assert_eq!(config.url.expose(), "amqp://app:pw@10.0.0.5:5672/shop");
        assert_eq!(config.prefetch, Some(10));
        assert_eq!(config.dead_letter_ttl, Some(Duration::from_secs(86_400)));
        let policy = config.retry_policy().unwrap();
        assert_eq!(
            policy.max_attempts, 4,
            "three retries after the first attempt"
        );
        assert_eq!(policy.initial_delay, Duration::from_secs(5));
    }

    #[test]
    fn a_url_given_elsewhere_keeps_the_tuning_variables() {
        let env = |name: &str| (name == "RABBITMQ_PREFETCH").then(|| "25".to_owned());
        let config = AmqpConfig::from_lookup(env)
            .unwrap()
            .with_url("amqp://guest:guest@broker:5672/%2f");
        assert_eq!(config.url.expose(), "amqp://guest:guest@broker:5672/%2f");
        assert_eq!(config.prefetch, Some(25));
    }

    #[test]
    fn a_malformed_variable_is_a_clear_error() {
        let env = |name: &str| (name == "RABBITMQ_PREFETCH").then(|| "lots".to_owned());
        let err = AmqpConfig::from_lookup(env).unwrap_err().to_string();
        assert!(
            err.contains("RABBITMQ_PREFETCH") && err.contains("lots"),
            "{err}"
        );
    }

    #[test]
    fn patterns_bind_to_the_exchanges_that_can_carry_them() {
        let exchanges = Exchanges::shared("events")
            .domain("order", "orders")
            .domain("refund", "orders");
        assert_eq!(exchanges.all(), ["events", "orders"]);
        assert_eq!(exchanges.for_topic("refund.issued"), "orders");
        assert_eq!(exchanges.for_topic(""), "events");
    }
}
