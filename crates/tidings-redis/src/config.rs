//! Settings of a [`RedisTransport`](crate::RedisTransport).

use std::time::Duration;

pub use tidings_core::broker_url::BrokerUrl;

/// How a subscription's stream is kept short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Trim {
    /// `MAXLEN ~ n` on every add. Entries beyond it are dropped, **consumed or not**: a
    /// subscription that falls that far behind loses events.
    MaxLen(u64),
    /// `MINID ~ <now - age>` on every add: entries older than `age` are dropped, consumed or
    /// not.
    MaxAge(Duration),
}

/// Settings of a [`RedisTransport`](crate::RedisTransport).
///
/// **Durability.** Redis keeps streams in memory. An event counts as published when Redis
/// answered, but it survives a Redis restart only with AOF (`appendonly yes`), and a
/// crash of the machine only with `appendfsync always`. A Redis restarted without
/// persistence comes back empty: every event not yet handled, every pending retry and
/// dead letter, and the subscriptions' bindings are gone (consumers declare theirs again
/// when they notice).
///
/// ```
/// use std::time::Duration;
/// use tidings_redis::RedisConfig;
///
/// let config = RedisConfig::new("redis://:s3cr3t@127.0.0.1:6379/0")
///     .prefix("shop")
///     .lease(Duration::from_secs(60));
/// assert!(!format!("{config:?}").contains("s3cr3t"));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisConfig {
    pub(crate) url: BrokerUrl,
    pub(crate) ca_pem: Option<Vec<u8>>,
    pub(crate) prefix: String,
    pub(crate) lease: Duration,
    pub(crate) block: Duration,
    pub(crate) trim: Option<Trim>,
    pub(crate) delivery_limit: u32,
    pub(crate) require_route: bool,
    pub(crate) response_timeout: Duration,
    pub(crate) connect_timeout: Duration,
}

impl RedisConfig {
    /// The machine's Redis when nothing else is said.
    pub const DEFAULT_URL: &'static str = "redis://127.0.0.1:6379/0";

    /// A transport on the server at `url` (`redis://[user:password@]host:port/db`, or
    /// `rediss://` for TLS), with the defaults.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: BrokerUrl::new(url),
            ca_pem: None,
            prefix: "tidings".to_owned(),
            lease: Duration::from_secs(30),
            block: Duration::from_secs(1),
            trim: None,
            delivery_limit: 20,
            require_route: false,
            response_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// The settings from `REDIS_URL` (default [`DEFAULT_URL`](Self::DEFAULT_URL)).
    pub fn from_env() -> Self {
        Self::new(std::env::var("REDIS_URL").unwrap_or_else(|_| Self::DEFAULT_URL.to_owned()))
    }

    /// The server URL, printable (password redacted).
    pub fn url(&self) -> &BrokerUrl {
        &self.url
    }

    /// Trusts the CA certificates in `pem` (for `rediss://`) instead of the platform's.
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// The prefix of every key (default `tidings`). Keys carry it as a hash tag
    /// (`{tidings}:...`), so that on a Redis Cluster they share a slot, as the scripts that
    /// route and move events need.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a delivery stays reserved for its consumer (default 30 s). A live consumer
    /// renews what it holds every third of this; what a dead consumer held is claimed by
    /// another (`XAUTOCLAIM`) once it has been idle this long.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(300));
        self
    }

    /// How long a read waits on the server for new entries (default 1 s).
    pub fn block(mut self, block: Duration) -> Self {
        self.block = block.max(Duration::from_millis(10));
        self
    }

    /// Trims the subscriptions' streams on every add. Default none: an entry is deleted
    /// when it is acked, dead-lettered or moved to a retry.
    pub fn trim(mut self, trim: Trim) -> Self {
        self.trim = Some(trim);
        self
    }

    /// Deliveries of one entry after which the transport dead-letters it without handing it
    /// out (an entry that keeps taking its consumers down). Default 20.
    pub fn delivery_limit(mut self, limit: u32) -> Self {
        self.delivery_limit = limit.max(1);
        self
    }

    /// Fail publishes that no subscription is bound to instead of dropping them.
    pub fn require_route(mut self, yes: bool) -> Self {
        self.require_route = yes;
        self
    }

    /// How long a command waits for Redis before it fails with a transient error (default
    /// 5 s).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// How long one connection attempt may take (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
}

impl Default for RedisConfig {
    /// [`DEFAULT_URL`](Self::DEFAULT_URL) with the defaults.
    fn default() -> Self {
        Self::new(Self::DEFAULT_URL)
    }
}
