//! The inbox on Postgres.

use async_trait::async_trait;
use sqlx::PgConnection;
use sqlx::postgres::PgPool;
use tidings_core::envelope::Envelope;
use tidings_core::inbox::{Inbox, InboxError, InboxKey};

use crate::error::Result;
use crate::migrate;

/// Handled events, keyed by (subscription, source, id), in a Postgres table.
///
/// Give it to the bus (`BusBuilder::inbox`) and every subscription skips events it handled
/// before. A handler that writes to the same database can [`record`](PgInbox::record) the
/// event in its own transaction, so that its work and the de-duplication commit together.
///
/// ```no_run
/// # async fn handle(pool: sqlx::PgPool, inbox: tidings_postgres::PgInbox,
/// #     event: tidings_core::envelope::Envelope) -> Result<(), Box<dyn std::error::Error>> {
/// let mut tx = pool.begin().await?;
/// if inbox.record(&mut tx, "billing", &event).await? {
///     sqlx::query("UPDATE accounts SET balance = balance - 10 WHERE id = 1")
///         .execute(&mut *tx)
///         .await?;
/// }
/// tx.commit().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct PgInbox {
    pool: PgPool,
}

impl PgInbox {
    /// An inbox in the database behind `pool`, creating its table if needed.
    pub async fn new(pool: PgPool) -> Result<Self> {
        let mut conn = pool.acquire().await?;
        migrate(&mut conn).await?;
        Ok(Self { pool })
    }

    /// Records `envelope` as handled by `subscription` in the caller's transaction (pass
    /// `&mut tx`). Returns `false` when it was recorded before: a duplicate to skip. A
    /// concurrent transaction recording the same event waits for this one, then gets `false`.
    pub async fn record(
        &self,
        conn: &mut PgConnection,
        subscription: &str,
        envelope: &Envelope,
    ) -> Result<bool> {
        insert(conn, subscription, &envelope.source, &envelope.id).await
    }

    /// Forgets events handled before `cutoff`; returns how many. Duplicates arriving after
    /// that are no longer caught.
    pub async fn forget_before(&self, cutoff: chrono::DateTime<chrono::Utc>) -> Result<u64> {
        #[allow(clippy::cast_precision_loss)] // milliseconds since 1970 fit an f64 exactly
        let seconds = cutoff.timestamp_millis() as f64 / 1000.0;
        Ok(
            sqlx::query("DELETE FROM tidings_inbox WHERE handled_at < to_timestamp($1)")
                .bind(seconds)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }
}

async fn insert(
    conn: &mut PgConnection,
    subscription: &str,
    source: &str,
    id: &str,
) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO tidings_inbox (subscription, source, id) VALUES ($1, $2, $3) \
         ON CONFLICT DO NOTHING",
    )
    .bind(subscription)
    .bind(source)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

#[async_trait]
impl Inbox for PgInbox {
    async fn contains(&self, key: InboxKey<'_>) -> Result<bool, InboxError> {
        let found: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM tidings_inbox WHERE subscription = $1 AND source = $2 AND id = $3",
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
