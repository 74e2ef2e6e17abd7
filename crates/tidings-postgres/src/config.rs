use std::time::Duration;

use tidings_core::broker_url::BrokerUrl;

/// Settings of a [`PgTransport`](crate::PgTransport).
///
/// ```
/// use std::time::Duration;
/// use tidings_postgres::PgConfig;
///
/// let config = PgConfig::new("postgres://svc:s3cr3t@db.internal/orders")
///     .lease(Duration::from_secs(60))
///     .max_connections(16);
/// assert_eq!(config.url().to_string(), "postgres://svc:***@db.internal/orders");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PgConfig {
    pub(crate) url: BrokerUrl,
    pub(crate) max_connections: u32,
    pub(crate) connect_timeout: Duration,
    pub(crate) lease: Duration,
    pub(crate) poll_interval: Duration,
}

impl PgConfig {
    /// The queue in the database `url` names (`postgres://user:password@host:port/db`, with
    /// any option libpq-style URLs take, e.g. `?sslmode=require` or
    /// `?options=-csearch_path%3Devents`), with defaults: 8 connections, a 30 s lease.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: BrokerUrl::new(url),
            max_connections: 8,
            connect_timeout: Duration::from_secs(5),
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
        }
    }

    /// The database URL (its password prints as `***`).
    pub fn url(&self) -> &BrokerUrl {
        &self.url
    }

    /// Connections in the pool (at least 2: consumers claim while publishers insert).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(2);
        self
    }

    /// How long connecting (and waiting for a free pooled connection) may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a delivery stays reserved for its consumer (the visibility timeout). A live
    /// consumer renews the lease of what it holds every third of this; a consumer that dies
    /// (even by `kill -9`) lets its deliveries come back after at most this long.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(300));
        self
    }

    /// How often an idle consumer looks for work when no notification woke it. Publishes
    /// (from any process) wake consumers at once through `LISTEN`/`NOTIFY`; polling covers a
    /// lost listener connection and delayed retries coming due.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(10));
        self
    }
}
