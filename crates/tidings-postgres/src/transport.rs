//! [`PgTransport`]: connecting, the schema, readiness and backlog.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgPool;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::PgPoolOptions;
use tidings_core::transport::{Backlog, Capabilities, Transport, TransportError};
use tokio_util::sync::CancellationToken;

use crate::config::PgConfig;
use crate::error::{Error, Result};
use crate::routes::Routes;
use crate::wakeup::{self, Wakeups};

/// The queue's schema, tracked apart from the outbox's and the application's migrations.
fn queue_migrator() -> Migrator {
    let mut migrator = sqlx::migrate!("./migrations/queue");
    migrator.dangerous_set_table_name("_tidings_queue_migrations");
    migrator
}

/// A durable queue in PostgreSQL, for teams whose one shared piece of infrastructure is their
/// database.
///
/// - **Fan-out and competing consumers**: a publish stores one row per subscription bound to
///   its topic (bindings live in the database, so every process routes alike); streams of
///   one subscription share its rows, claimed with `FOR UPDATE SKIP LOCKED`.
/// - **Leases**: a claim reserves rows for [`PgConfig::lease`], renewed while the consumer
///   lives; rows of a consumer that died come back when the lease runs out.
/// - **Delayed redelivery** by a visible-at time; a dead-letter table with replay.
/// - **Wake-ups** by `LISTEN`/`NOTIFY`, so an idle consumer (in any process) gets a publish
///   at once; polling every [`PgConfig::poll_interval`] covers a lost listener.
/// - Per-subscription order with one consumer; publishes are committed when `publish` returns.
///
/// Acked rows are deleted. Events published to a topic no subscription is bound to are
/// dropped, as an exchange with no queue would.
///
/// ```no_run
/// use futures::StreamExt;
/// use tidings_core::envelope::Envelope;
/// use tidings_core::topic::Pattern;
/// use tidings_core::transport::{Publisher, Subscriber, SubscriptionSpec};
/// use tidings_postgres::{PgConfig, PgTransport};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let transport = PgTransport::connect(PgConfig::new("postgres://postgres@127.0.0.1/test")).await?;
/// let spec = SubscriptionSpec::new("notification", [Pattern::parse("order.*")?]);
/// let mut deliveries = transport.subscribe(&spec).await?;
///
/// transport.publish(&Envelope::new("oms", "order.created")).await?;
/// let delivery = deliveries.next().await.unwrap()?;
/// assert_eq!(delivery.envelope().unwrap().ty, "order.created");
/// delivery.ack().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct PgTransport {
    pub(crate) shared: Arc<Shared>,
}

/// Everything the handles of one transport share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: PgConfig,
    pub(crate) pool: PgPool,
    /// Acks waiting to be deleted together.
    pub(crate) acks: Arc<crate::acks::Acks>,
    pub(crate) routes: tokio::sync::Mutex<Routes>,
    pub(crate) wakeups: Arc<Wakeups>,
    pub(crate) closed: CancellationToken,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.closed.cancel();
    }
}

impl PgTransport {
    /// Connects to the database `config` names and creates the queue's tables if needed
    /// (migrations tracked in `_tidings_queue_migrations`).
    pub async fn connect(config: PgConfig) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.connect_timeout)
            .connect(config.url.expose())
            .await
            .map_err(|cause| Error::Connect {
                url: config.url.redacted(),
                cause,
            })?;
        Self::with_pool(pool, config).await
    }

    /// The queue in the database behind the application's own `pool`; `config` gives the
    /// lease and polling (its URL and pool size are not used).
    pub async fn with_pool(pool: PgPool, config: PgConfig) -> Result<Self> {
        let mut conn = pool.acquire().await?;
        queue_migrator()
            .run_direct(None, &mut *conn, false)
            .await
            .map_err(|e| match e {
                MigrateError::VersionMissing(version) => Error::NewerSchema(version),
                other => Error::Migrate(other),
            })?;
        drop(conn);
        let wakeups = Arc::new(Wakeups::default());
        let closed = CancellationToken::new();
        tokio::spawn(wakeup::listen(
            pool.clone(),
            wakeups.clone(),
            closed.clone(),
        ));
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                pool,
                acks: Arc::default(),
                routes: tokio::sync::Mutex::new(Routes::default()),
                wakeups,
                closed,
            }),
        })
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &PgConfig {
        &self.shared.config
    }

    pub(crate) fn check_open(&self) -> Result<(), TransportError> {
        if self.shared.closed.is_cancelled() {
            Err(TransportError::Closed)
        } else {
            Ok(())
        }
    }
}

/// A duration the server computed in seconds (may be negative), as a `Duration`.
pub(crate) fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value.max(0.0)).unwrap_or(Duration::MAX)
}

#[async_trait]
impl Transport for PgTransport {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with_ordering(true)
            .with_consumer_groups(true)
            .with_persistence(true)
            .with_native_delay(true)
    }

    /// Deletes the subscription, its bindings, its events and its dead letters in one
    /// transaction; publishers (in any process) stop routing to it at their next publish.
    async fn remove_subscription(&self, name: &str) -> Result<(), TransportError> {
        let mut tx = self.shared.pool.begin().await.map_err(Error::from)?;
        let removed = sqlx::query("DELETE FROM tidings_subscriptions WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(Error::from)?
            .rows_affected();
        for table in [
            "tidings_bindings",
            "tidings_messages",
            "tidings_dead_letters",
        ] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE subscription = $1"
            )))
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(Error::from)?;
        }
        if removed > 0 {
            sqlx::query(
                "UPDATE tidings_queue_meta SET value = value + 1 \
                 WHERE key = 'bindings_version'",
            )
            .execute(&mut *tx)
            .await
            .map_err(Error::from)?;
        }
        tx.commit().await.map_err(Error::from)?;
        Ok(())
    }

    /// Ready while open and the database answers a query within a second.
    async fn ready(&self) -> Result<(), TransportError> {
        self.check_open()?;
        let probe = sqlx::query("SELECT 1").execute(&self.shared.pool);
        match tokio::time::timeout(Duration::from_secs(1), probe).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(TransportError::Connection(Box::new(error))),
            Err(_) => Err(TransportError::Timeout(Duration::from_secs(1))),
        }
    }

    /// Every event of the subscription not acked yet (waiting, leased, or delayed for a
    /// retry), and the age of the oldest since it was published.
    async fn backlog(&self, subscription: &str) -> Result<Option<Backlog>, TransportError> {
        let (depth, oldest): (i64, Option<f64>) = sqlx::query_as(
            "SELECT COUNT(*), EXTRACT(EPOCH FROM now() - MIN(published_at))::float8 \
             FROM tidings_messages WHERE subscription = $1",
        )
        .bind(subscription)
        .fetch_one(&self.shared.pool)
        .await
        .map_err(Error::from)?;
        Ok(Some(Backlog::new(
            u64::try_from(depth).unwrap_or(0),
            oldest.map(seconds),
        )))
    }
}
