//! The transactional outbox on SQLite.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::{SqliteConnection, SqlitePool};
use tidings_core::codec::{Codec, StructuredJson};
use tidings_core::envelope::Envelope;
use tidings_core::outbox::{OutboxError, OutboxStore, Staged};

use crate::error::{Error, Result};
use crate::store::{migrate, ms, now_ms, outbox_migrator};

/// Stages events in the application's own SQLite transaction, for a
/// [`Relay`](tidings_core::outbox::Relay) to publish.
///
/// Events of one subject (aggregate) are published in the order they were staged; several
/// relays may drain one outbox. Published rows are deleted.
///
/// ```
/// use std::sync::Arc;
/// use sqlx::sqlite::SqlitePoolOptions;
/// use tidings_core::envelope::Envelope;
/// use tidings_core::outbox::Relay;
/// use tidings_sqlite::SqliteOutbox;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = SqlitePoolOptions::new().connect("sqlite::memory:").await?;
/// let outbox = SqliteOutbox::new(pool.clone()).await?;
///
/// let mut tx = pool.begin().await?;
/// // ... the application's own writes on `tx` ...
/// outbox.stage(&mut tx, &Envelope::new("oms", "order.created").with_subject("o-1")).await?;
/// tx.commit().await?;
///
/// let transport = tidings_core::memory::MemoryTransport::new();
/// let relay = Relay::new(Arc::new(outbox), Arc::new(transport));
/// assert_eq!(relay.run_once().await?, 1);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct SqliteOutbox {
    pool: SqlitePool,
    poll_interval: Duration,
}

impl SqliteOutbox {
    /// An outbox in the database behind `pool`, creating its tables if needed (migrations
    /// tracked in `_tidings_outbox_migrations`, apart from the application's own).
    pub async fn new(pool: SqlitePool) -> Result<Self> {
        let mut conn = pool.acquire().await?;
        migrate(
            &outbox_migrator(),
            &mut conn,
            std::path::Path::new("the outbox database"),
        )
        .await?;
        Ok(Self {
            pool,
            poll_interval: Duration::from_millis(100),
        })
    }

    /// How often an idle relay looks for new rows. SQLite cannot tell another connection
    /// that something was committed, so relays poll; the query is one index lookup.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Stages `envelope` in the caller's transaction (pass `&mut tx`), ordered by its
    /// subject. Returns its position.
    pub async fn stage(&self, conn: &mut SqliteConnection, envelope: &Envelope) -> Result<i64> {
        stage(conn, envelope.subject.as_deref(), envelope).await
    }

    /// Stages `envelope` ordered by `key` instead of its subject (`None`: no order kept).
    pub async fn stage_with_key(
        &self,
        conn: &mut SqliteConnection,
        key: Option<&str>,
        envelope: &Envelope,
    ) -> Result<i64> {
        stage(conn, key, envelope).await
    }

    async fn write<T, F>(&self, work: F) -> Result<T>
    where
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> futures::future::BoxFuture<'c, Result<T>>,
    {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let out = work(&mut tx).await?;
        tx.commit().await?;
        Ok(out)
    }
}

#[async_trait]
impl OutboxStore for SqliteOutbox {
    async fn claim(&self, limit: usize, lease: Duration) -> Result<Vec<Staged>, OutboxError> {
        self.write(|conn| Box::pin(claim(conn, limit, lease)))
            .await
            .map_err(OutboxError::new)
    }

    async fn mark_sent(&self, positions: &[i64]) -> Result<(), OutboxError> {
        let positions = positions.to_vec();
        self.write(|conn| Box::pin(async move { mark_sent(conn, &positions).await }))
            .await
            .map_err(OutboxError::new)
    }

    async fn release(
        &self,
        positions: &[i64],
        after: Duration,
        error: &str,
    ) -> Result<(), OutboxError> {
        let (positions, error) = (positions.to_vec(), error.to_owned());
        self.write(|conn| Box::pin(async move { release(conn, &positions, after, &error).await }))
            .await
            .map_err(OutboxError::new)
    }

    async fn wait(&self, timeout: Duration) {
        tokio::time::sleep(timeout.min(self.poll_interval)).await;
    }

    async fn pending(&self) -> Result<u64, OutboxError> {
        let mut conn = self.pool.acquire().await.map_err(OutboxError::new)?;
        pending(&mut conn).await.map_err(OutboxError::new)
    }
}

// The statements, shared by `SqliteOutbox` (on an application's pool) and the failover
// publisher's spool (on the store's writer).

pub(crate) async fn stage(
    conn: &mut SqliteConnection,
    key: Option<&str>,
    envelope: &Envelope,
) -> Result<i64> {
    let body = StructuredJson
        .encode(envelope)
        .map_err(|e| Error::Malformed(e.to_string()))?;
    let position = sqlx::query_scalar(
        "INSERT INTO tidings_outbox (ordering_key, topic, body, staged_at) VALUES (?, ?, ?, ?) \
         RETURNING position",
    )
    .bind(key)
    .bind(envelope.topic())
    .bind(body)
    .bind(now_ms())
    .fetch_one(&mut *conn)
    .await?;
    Ok(position)
}

/// Leases the runs of the oldest unsent rows of each free ordering key (see
/// [`tidings_core::outbox`]). A row with no key is a run of its own.
pub(crate) async fn claim(
    conn: &mut SqliteConnection,
    limit: usize,
    lease: Duration,
) -> Result<Vec<Staged>> {
    let now = now_ms();
    let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
        "WITH heads AS ( \
             SELECT o.position, o.ordering_key FROM tidings_outbox o \
             WHERE o.sent_at IS NULL AND (o.leased_until IS NULL OR o.leased_until <= ?1) \
               AND (o.ordering_key IS NULL OR NOT EXISTS ( \
                   SELECT 1 FROM tidings_outbox p \
                   WHERE p.ordering_key = o.ordering_key AND p.sent_at IS NULL \
                     AND p.position < o.position)) \
             ORDER BY o.position LIMIT ?3) \
         UPDATE tidings_outbox SET leased_until = ?2, attempts = attempts + 1 \
         WHERE position IN ( \
             SELECT r.position FROM tidings_outbox r \
             WHERE r.sent_at IS NULL AND ( \
                 r.position IN (SELECT position FROM heads) \
                 OR r.ordering_key IN \
                     (SELECT ordering_key FROM heads WHERE ordering_key IS NOT NULL)) \
             ORDER BY r.position LIMIT ?3) \
         RETURNING position, body",
    )
    .bind(now)
    .bind(now + ms(lease))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(&mut *conn)
    .await?;
    let mut staged = Vec::with_capacity(rows.len());
    for (position, body) in rows {
        let envelope = tidings_core::transport::decode_stored(body, None).map_err(|u| {
            Error::Malformed(format!(
                "outbox row {position} is not an envelope: {}",
                u.error
            ))
        })?;
        staged.push(Staged::new(position, envelope));
    }
    staged.sort_by_key(|s| s.position);
    Ok(staged)
}

fn positions_json(positions: &[i64]) -> String {
    serde_json::to_string(positions).unwrap_or_else(|_| "[]".into())
}

pub(crate) async fn mark_sent(conn: &mut SqliteConnection, positions: &[i64]) -> Result<()> {
    sqlx::query("DELETE FROM tidings_outbox WHERE position IN (SELECT value FROM json_each(?))")
        .bind(positions_json(positions))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub(crate) async fn release(
    conn: &mut SqliteConnection,
    positions: &[i64],
    after: Duration,
    error: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE tidings_outbox SET leased_until = ?, last_error = ? \
         WHERE position IN (SELECT value FROM json_each(?))",
    )
    .bind(now_ms() + ms(after))
    .bind(error)
    .bind(positions_json(positions))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(crate) async fn pending(conn: &mut SqliteConnection) -> Result<u64> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tidings_outbox WHERE sent_at IS NULL")
        .fetch_one(&mut *conn)
        .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}
