//! The dead-letter table: list, inspect, replay and purge.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tidings_core::dead_letter::{DeadLetter, Original, Page, Reason, ReasonKind, ReplayTarget};
use tidings_core::transport::{DeadLetters, TransportError};

use crate::error::Error;
use crate::publisher::{Outgoing, Rows};
use crate::transport::PgTransport;

const COLUMNS: &str = "id, subscription, handler, content_type, body, decodable, \
     reason_kind, reason_message, attempts, first_failure_at, last_failure_at";

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    subscription: String,
    handler: Option<String>,
    content_type: Option<String>,
    body: Vec<u8>,
    decodable: bool,
    reason_kind: String,
    reason_message: String,
    attempts: i32,
    first_failure_at: DateTime<Utc>,
    last_failure_at: DateTime<Utc>,
}

impl Row {
    fn into_letter(self) -> DeadLetter {
        let original = Original::from_stored(self.body, self.content_type, self.decodable);
        let kind = ReasonKind::parse(&self.reason_kind).unwrap_or(ReasonKind::Rejected);
        let mut letter = DeadLetter::new(
            self.subscription,
            original,
            Reason::new(kind, self.reason_message),
        )
        .with_attempts(
            u32::try_from(self.attempts).unwrap_or(u32::MAX),
            Some(self.first_failure_at),
        );
        letter.id = self.id;
        letter.handler = self.handler;
        letter.last_failure_at = self.last_failure_at;
        letter
    }
}

#[async_trait]
impl DeadLetters for PgTransport {
    async fn list(
        &self,
        subscription: &str,
        page: Page,
    ) -> Result<Vec<DeadLetter>, TransportError> {
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM tidings_dead_letters WHERE subscription = $1 \
             ORDER BY seq LIMIT $2 OFFSET $3"
        )))
        .bind(subscription)
        .bind(i64::try_from(page.limit).unwrap_or(i64::MAX))
        .bind(i64::try_from(page.offset).unwrap_or(i64::MAX))
        .fetch_all(&self.shared.pool)
        .await
        .map_err(Error::from)?;
        Ok(rows.into_iter().map(Row::into_letter).collect())
    }

    async fn count(&self, subscription: &str) -> Result<u64, TransportError> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM tidings_dead_letters WHERE subscription = $1")
                .bind(subscription)
                .fetch_one(&self.shared.pool)
                .await
                .map_err(Error::from)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn get(
        &self,
        subscription: &str,
        id: &str,
    ) -> Result<Option<DeadLetter>, TransportError> {
        let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM tidings_dead_letters WHERE subscription = $1 AND id = $2"
        )))
        .bind(subscription)
        .bind(id)
        .fetch_optional(&self.shared.pool)
        .await
        .map_err(Error::from)?;
        Ok(row.map(Row::into_letter))
    }

    /// Deletes the dead letter and stores it again in the same transaction, so that a replay
    /// interrupted half-way leaves it in exactly one place.
    async fn replay(
        &self,
        subscription: &str,
        id: &str,
        target: ReplayTarget,
    ) -> Result<(), TransportError> {
        self.check_open()?;
        let what = format!("dead letter {id} of {subscription}");
        let mut tx = self.shared.pool.begin().await.map_err(Error::from)?;
        let found: Option<(String, Option<String>, Vec<u8>, bool)> = sqlx::query_as(
            "SELECT topic, content_type, body, decodable FROM tidings_dead_letters \
             WHERE subscription = $1 AND id = $2 FOR UPDATE",
        )
        .bind(subscription)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(Error::from)?;
        let Some((topic, content_type, body, decodable)) = found else {
            return Err(TransportError::NotFound(what));
        };
        if !decodable {
            return Err(TransportError::Refused(format!(
                "{what} is undecodable and cannot be replayed; inspect and purge it"
            )));
        }
        let mut rows = Rows::default();
        match target {
            ReplayTarget::Subscription => rows.push(
                subscription,
                &Outgoing {
                    topic,
                    content_type,
                    body,
                },
            ),
            ReplayTarget::Topic(topic) => {
                let version = crate::routes::Routes::version(&mut tx).await?;
                let mut routes = self.shared.routes.lock().await;
                routes.refresh(version, &mut tx).await?;
                rows.route(
                    &routes,
                    &Outgoing {
                        topic,
                        content_type,
                        body,
                    },
                );
            }
            _ => {
                return Err(TransportError::Refused(format!(
                    "{what}: unsupported replay target"
                )));
            }
        }
        rows.insert(&mut tx).await?;
        sqlx::query("DELETE FROM tidings_dead_letters WHERE subscription = $1 AND id = $2")
            .bind(subscription)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(Error::from)?;
        tx.commit().await.map_err(Error::from)?;
        Ok(())
    }

    async fn purge(&self, subscription: &str) -> Result<u64, TransportError> {
        let purged = sqlx::query("DELETE FROM tidings_dead_letters WHERE subscription = $1")
            .bind(subscription)
            .execute(&self.shared.pool)
            .await
            .map_err(Error::from)?;
        Ok(purged.rows_affected())
    }
}
