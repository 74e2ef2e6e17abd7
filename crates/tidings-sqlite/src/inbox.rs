//! The inbox on SQLite.

use async_trait::async_trait;
use sqlx::{SqliteConnection, SqlitePool};
use tidings_core::envelope::Envelope;
use tidings_core::inbox::{Inbox, InboxError, InboxKey};

use crate::error::Result;
use crate::store::{migrate, now_ms, outbox_migrator};

/// Handled events, keyed by (subscription, source, id), in a SQLite table.
///
/// Give it to the bus (`BusBuilder::inbox`) and every subscription skips events it handled
/// before, whatever the gap between the duplicates. A handler that writes to the same
/// database can also [`record`](SqliteInbox::record) the event in its own transaction, so that
/// its work and the de-duplication commit together:
///
/// ```
/// use sqlx::sqlite::SqlitePoolOptions;
/// use tidings_core::envelope::Envelope;
/// use tidings_sqlite::SqliteInbox;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = SqlitePoolOptions::new().max_connections(1).connect("sqlite::memory:").await?;
/// let inbox = SqliteInbox::new(pool.clone()).await?;
/// let event = Envelope::new("oms", "order.created");
///
/// for _ in 0..2 {
///     let mut tx = pool.begin().await?;
///     if !inbox.record(&mut tx, "billing", &event).await? {
///         continue; // handled before: the duplicate does nothing
///     }
///     // ... the handler's own writes on `tx` ...
///     tx.commit().await?;
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct SqliteInbox {
    pool: SqlitePool,
}

impl SqliteInbox {
    /// An inbox in the database behind `pool`, creating its table if needed.
    pub async fn new(pool: SqlitePool) -> Result<Self> {
        let mut conn = pool.acquire().await?;
        migrate(
            &outbox_migrator(),
            &mut conn,
            std::path::Path::new("the inbox database"),
        )
        .await?;
        Ok(Self { pool })
    }

    /// Records `envelope` as handled by `subscription` in the caller's transaction (pass
    /// `&mut tx`). Returns `false` when it was recorded before: a duplicate to skip.
    pub async fn record(
        &self,
        conn: &mut SqliteConnection,
        subscription: &str,
        envelope: &Envelope,
    ) -> Result<bool> {
        insert(conn, subscription, &envelope.source, &envelope.id).await
    }

    /// Forgets events handled before `cutoff`; returns how many. Duplicates arriving after
    /// that are no longer caught.
    pub async fn forget_before(&self, cutoff: chrono::DateTime<chrono::Utc>) -> Result<u64> {
        Ok(
            sqlx::query("DELETE FROM tidings_inbox WHERE handled_at < ?")
                .bind(cutoff.timestamp_millis())
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }
}

async fn insert(
    conn: &mut SqliteConnection,
    subscription: &str,
    source: &str,
    id: &str,
) -> Result<bool> {
    let done = sqlx::query(
        "INSERT OR IGNORE INTO tidings_inbox (subscription, source, id, handled_at) \
         VALUES (?, ?, ?, ?)",
    )
    .bind(subscription)
    .bind(source)
    .bind(id)
    .bind(now_ms())
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

#[async_trait]
impl Inbox for SqliteInbox {
    async fn contains(&self, key: InboxKey<'_>) -> Result<bool, InboxError> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM tidings_inbox WHERE subscription = ? AND source = ? AND id = ?",
        )
        .bind(key.subscription)
        .bind(key.source)
        .bind(key.id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| InboxError(Box::new(e)))?;
        Ok(found.is_some())
    }

    async fn insert(&self, key: InboxKey<'_>) -> Result<(), InboxError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| InboxError(Box::new(e)))?;
        insert(&mut conn, key.subscription, key.source, key.id)
            .await
            .map_err(|e| InboxError(Box::new(e)))?;
        Ok(())
    }
}
