//! The embedded durable store of tidings: a queue in one SQLite file, the transactional
//! outbox and inbox, and the failover publisher.
//!
//! - [`SqliteTransport`]: a durable [`Transport`](tidings_core::transport::Transport) in one
//!   SQLite file (WAL, `synchronous=FULL` by default). Fan-out between subscriptions, competing
//!   consumers within one, leases with a visibility timeout (a consumer killed mid-handler gives
//!   its messages back when the lease runs out), delayed redelivery by a visible-at time,
//!   dead-letter table, per-subscription order with one consumer, configurable retention of
//!   acked messages. Writes are group-committed: one fsync serves every publish, claim and ack
//!   that arrived while the previous commit was on its way to disk.
//! - [`SqliteOutbox`]: stage events in the application's own SQLite transaction; a
//!   `tidings::outbox::Relay` publishes them.
//! - [`SqliteInbox`]: de-duplication by (subscription, source, id), optionally in the handler's
//!   own transaction.
//! - [`FailoverPublisher`]: wraps any publisher; while its broker is unreachable, events wait
//!   in this store and are forwarded in order when it returns.
//!
//! Schemas are versioned sqlx migrations applied on open, tracked in tables of their own
//! (`_tidings_store_migrations`, `_tidings_outbox_migrations`) so that they never collide with
//! an application's migrations.
//!
//! ```
//! use futures::StreamExt;
//! use tidings_core::envelope::Envelope;
//! use tidings_core::topic::Pattern;
//! use tidings_core::transport::{Publisher, Subscriber, SubscriptionSpec};
//! use tidings_sqlite::{SqliteConfig, SqliteTransport};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let transport = SqliteTransport::open(SqliteConfig::new(dir.path().join("events.db"))).await?;
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

mod acks;
mod config;
mod dead_letter;
mod delivery;
mod error;
mod failover;
mod inbox;
mod outbox;
mod publisher;
mod reserve;
mod routes;
mod signal;
mod store;
mod subscriber;
mod writer;

pub use config::{Durability, SqliteConfig};
pub use error::{Error, Result};
pub use failover::FailoverPublisher;
pub use inbox::SqliteInbox;
pub use outbox::SqliteOutbox;

use std::sync::Arc;

use tidings_core::transport::{Capabilities, Transport, TransportError};

use store::Shared;

/// The durable queue in one SQLite file. Clones share one writer and one read pool; another
/// process may open the same file.
#[derive(Clone, Debug)]
pub struct SqliteTransport {
    shared: Arc<Shared>,
}

impl SqliteTransport {
    /// Opens (creating if missing) the store described by `config`, applying migrations.
    ///
    /// Fails with a typed [`Error`] and leaves the file untouched when it is not a SQLite
    /// database ([`Error::NotADatabase`]), belongs to another application ([`Error::Foreign`]),
    /// was written by a newer tidings ([`Error::NewerSchema`]), or cannot be written
    /// ([`Error::ReadOnly`]).
    pub async fn open(config: SqliteConfig) -> Result<Self> {
        Ok(Self {
            shared: Arc::new(store::open(config).await?),
        })
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &SqliteConfig {
        &self.shared.config
    }

    /// Messages of `subscription` not yet acked (ready, delayed and leased).
    pub async fn depth(&self, subscription: &str) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM tidings_messages WHERE subscription = ? AND acked_at IS NULL",
        )
        .bind(subscription)
        .fetch_one(&self.shared.reader)
        .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

#[async_trait::async_trait]
impl Transport for SqliteTransport {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with_ordering(true)
            .with_consumer_groups(true)
            .with_persistence(true)
            .with_native_delay(true)
    }

    /// Every event of the subscription not acked yet (waiting, leased, or delayed for a
    /// retry), and the age of the oldest since it was published.
    async fn backlog(
        &self,
        subscription: &str,
    ) -> std::result::Result<Option<tidings_core::transport::Backlog>, TransportError> {
        let (depth, oldest): (i64, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(*), MIN(published_at) FROM tidings_messages \
             WHERE subscription = ? AND acked_at IS NULL",
        )
        .bind(subscription)
        .fetch_one(&self.shared.reader)
        .await
        .map_err(Error::from)?;
        let now = chrono::Utc::now().timestamp_millis();
        let age = oldest.map(|published| {
            std::time::Duration::from_millis(u64::try_from(now - published).unwrap_or(0))
        });
        Ok(Some(tidings_core::transport::Backlog::new(
            u64::try_from(depth).unwrap_or(0),
            age,
        )))
    }

    /// Deletes the subscription, its bindings, its events and its dead letters in one
    /// transaction; publishers (in any process) stop routing to it at their next batch.
    async fn remove_subscription(&self, name: &str) -> std::result::Result<(), TransportError> {
        let name = name.to_owned();
        self.shared
            .writer
            .submit(move |batch| {
                Box::pin(async move {
                    let removed = sqlx::query("DELETE FROM tidings_subscriptions WHERE name = ?")
                        .bind(&name)
                        .execute(&mut batch.conn)
                        .await?
                        .rows_affected();
                    for table in [
                        "tidings_bindings",
                        "tidings_messages",
                        "tidings_dead_letters",
                    ] {
                        sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DELETE FROM {table} WHERE subscription = ?"
                        )))
                        .bind(&name)
                        .execute(&mut batch.conn)
                        .await?;
                    }
                    if removed > 0 {
                        sqlx::query(
                            "UPDATE tidings_meta SET value = value + 1 \
                             WHERE key = 'bindings_version'",
                        )
                        .execute(&mut batch.conn)
                        .await?;
                        batch.routes.invalidate();
                    }
                    Ok(())
                })
            })
            .await
            .map_err(TransportError::from)
    }

    /// Ready while open and the file answers a query.
    async fn ready(&self) -> std::result::Result<(), TransportError> {
        if self.shared.closed.is_cancelled() {
            return Err(TransportError::Closed);
        }
        let probe = sqlx::query("SELECT 1").execute(&self.shared.reader);
        match tokio::time::timeout(std::time::Duration::from_secs(1), probe).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(TransportError::Connection(Box::new(error))),
            Err(_) => Err(TransportError::Timeout(std::time::Duration::from_secs(1))),
        }
    }
}
