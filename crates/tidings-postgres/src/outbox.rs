//! The transactional outbox on Postgres.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgConnection;
use sqlx::postgres::{PgListener, PgPool};
use tidings_core::codec::{Codec, StructuredJson};
use tidings_core::envelope::Envelope;
use tidings_core::outbox::{OutboxError, OutboxStore, Staged};
use tokio::sync::Mutex;

use crate::error::{Error, Result};
use crate::migrate;

/// The channel staging notifies; relays `LISTEN` on it.
pub const CHANNEL: &str = "tidings_outbox";

/// Stages events in the application's own Postgres transaction, for a
/// [`Relay`](tidings_core::outbox::Relay) to publish.
///
/// Several relays (in one process or many) may drain one outbox: a claim locks the oldest
/// unsent row of each ordering key with `FOR UPDATE SKIP LOCKED`, so that relays share the keys
/// without waiting on each other, and takes that key's following rows with it. Idle relays wait
/// on `LISTEN tidings_outbox`; staging sends `NOTIFY`, which Postgres delivers when (and only
/// if) the transaction commits. If the listening connection breaks, relays fall back to
/// polling until it is back.
///
/// Per-subject order is the staging order. It matches the order of the application's
/// transactions on an aggregate as long as those are serialized, as they are when each one
/// updates (and so locks) the aggregate's row.
///
/// ```no_run
/// use std::sync::Arc;
/// use tidings_core::envelope::Envelope;
/// use tidings_core::outbox::Relay;
/// use tidings_postgres::PgOutbox;
///
/// # async fn run(pool: sqlx::PgPool, transport: tidings_core::memory::MemoryTransport)
/// # -> Result<(), Box<dyn std::error::Error>> {
/// let outbox = PgOutbox::new(pool.clone()).await?;
///
/// let mut tx = pool.begin().await?;
/// sqlx::query("UPDATE orders SET status = 'paid' WHERE id = $1").bind("o-1").execute(&mut *tx).await?;
/// outbox.stage(&mut tx, &Envelope::new("oms", "order.paid").with_subject("o-1")).await?;
/// tx.commit().await?;
///
/// let relay = Relay::new(Arc::new(outbox), Arc::new(transport)).spawn();
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct PgOutbox {
    pool: PgPool,
    listener: Mutex<Option<PgListener>>,
}

impl PgOutbox {
    /// An outbox in the database behind `pool`, creating its tables if needed (migrations
    /// tracked in `_tidings_outbox_migrations`, apart from the application's own).
    pub async fn new(pool: PgPool) -> Result<Self> {
        let mut conn = pool.acquire().await?;
        migrate(&mut conn).await?;
        Ok(Self {
            pool,
            listener: Mutex::new(None),
        })
    }

    /// Stages `envelope` in the caller's transaction (pass `&mut tx`), ordered by its
    /// subject. Returns its position.
    pub async fn stage(&self, conn: &mut PgConnection, envelope: &Envelope) -> Result<i64> {
        self.stage_with_key(conn, envelope.subject.as_deref(), envelope)
            .await
    }

    /// Stages `envelope` ordered by `key` instead of its subject (`None`: no order kept).
    pub async fn stage_with_key(
        &self,
        conn: &mut PgConnection,
        key: Option<&str>,
        envelope: &Envelope,
    ) -> Result<i64> {
        let body = StructuredJson
            .encode(envelope)
            .map_err(|e| Error::Malformed(e.to_string()))?;
        let position = sqlx::query_scalar(
            "INSERT INTO tidings_outbox (ordering_key, topic, body) VALUES ($1, $2, $3) \
             RETURNING position",
        )
        .bind(key)
        .bind(envelope.topic())
        .bind(body)
        .fetch_one(&mut *conn)
        .await?;
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(CHANNEL)
            .execute(&mut *conn)
            .await?;
        Ok(position)
    }

    async fn claim_rows(&self, limit: usize, lease: Duration) -> Result<Vec<Staged>> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "WITH heads AS ( \
                 SELECT o.position, o.ordering_key FROM tidings_outbox o \
                 WHERE o.sent_at IS NULL AND (o.leased_until IS NULL OR o.leased_until <= now()) \
                   AND (o.ordering_key IS NULL OR NOT EXISTS ( \
                       SELECT 1 FROM tidings_outbox p \
                       WHERE p.ordering_key = o.ordering_key AND p.sent_at IS NULL \
                         AND p.position < o.position)) \
                 ORDER BY o.position LIMIT $1 \
                 FOR UPDATE SKIP LOCKED), \
             run AS ( \
                 SELECT r.position FROM tidings_outbox r \
                 WHERE r.sent_at IS NULL AND ( \
                     r.position IN (SELECT position FROM heads) \
                     OR r.ordering_key IN \
                         (SELECT ordering_key FROM heads WHERE ordering_key IS NOT NULL)) \
                 ORDER BY r.position LIMIT $1 \
                 FOR UPDATE) \
             UPDATE tidings_outbox t \
             SET leased_until = now() + make_interval(secs => $2), attempts = t.attempts + 1 \
             FROM run WHERE t.position = run.position \
             RETURNING t.position, t.body",
        )
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(lease.as_secs_f64())
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut staged = Vec::with_capacity(rows.len());
        for (position, body) in rows {
            let envelope = StructuredJson.decode(&body).map_err(|e| {
                Error::Malformed(format!("outbox row {position} is not an envelope: {e}"))
            })?;
            staged.push(Staged::new(position, envelope));
        }
        staged.sort_by_key(|s| s.position);
        Ok(staged)
    }

    /// Waits for a notification on [`CHANNEL`], connecting the listener if needed. Returns
    /// `false` when the listener is unavailable (the caller then polls).
    async fn listen(&self, timeout: Duration) -> bool {
        let mut guard = self.listener.lock().await;
        if guard.is_none() {
            match PgListener::connect_with(&self.pool).await {
                Ok(mut listener) => match listener.listen(CHANNEL).await {
                    Ok(()) => *guard = Some(listener),
                    Err(error) => {
                        tracing::warn!(%error, "LISTEN failed; the relay polls");
                        return false;
                    }
                },
                Err(error) => {
                    tracing::warn!(%error, "outbox listener cannot connect; the relay polls");
                    return false;
                }
            }
        }
        let listener = guard.as_mut().expect("connected above");
        match tokio::time::timeout(timeout, listener.try_recv()).await {
            Err(_elapsed) => true,
            Ok(Ok(Some(_))) => {
                // Drain what else arrived, so that a burst of commits wakes the relay once.
                while let Ok(Ok(Some(_))) =
                    tokio::time::timeout(Duration::ZERO, listener.try_recv()).await
                {
                }
                true
            }
            // The connection was lost (and notifications with it): poll once, reconnect next.
            Ok(Ok(None)) => true,
            Ok(Err(error)) => {
                tracing::warn!(%error, "outbox listener failed; reconnecting");
                *guard = None;
                false
            }
        }
    }
}

#[async_trait]
impl OutboxStore for PgOutbox {
    async fn claim(&self, limit: usize, lease: Duration) -> Result<Vec<Staged>, OutboxError> {
        self.claim_rows(limit, lease)
            .await
            .map_err(OutboxError::new)
    }

    async fn mark_sent(&self, positions: &[i64]) -> Result<(), OutboxError> {
        sqlx::query("DELETE FROM tidings_outbox WHERE position = ANY($1)")
            .bind(positions)
            .execute(&self.pool)
            .await
            .map_err(OutboxError::new)?;
        Ok(())
    }

    async fn release(
        &self,
        positions: &[i64],
        after: Duration,
        error: &str,
    ) -> Result<(), OutboxError> {
        sqlx::query(
            "UPDATE tidings_outbox SET leased_until = now() + make_interval(secs => $2), \
             last_error = $3 WHERE position = ANY($1)",
        )
        .bind(positions)
        .bind(after.as_secs_f64())
        .bind(error)
        .execute(&self.pool)
        .await
        .map_err(OutboxError::new)?;
        Ok(())
    }

    async fn wait(&self, timeout: Duration) {
        if !self.listen(timeout).await {
            tokio::time::sleep(timeout).await;
        }
    }

    async fn pending(&self) -> Result<u64, OutboxError> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM tidings_outbox WHERE sent_at IS NULL")
                .fetch_one(&self.pool)
                .await
                .map_err(OutboxError::new)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
