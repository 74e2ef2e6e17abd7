use async_trait::async_trait;
use tidings_core::dead_letter::{DeadLetter, Original, Page, Reason, ReasonKind, ReplayTarget};
use tidings_core::transport::{DeadLetters, TransportError};

use crate::SqliteTransport;
use crate::error::{Error, Result};
use crate::publisher::{Outgoing, enqueue, enqueue_to};
use crate::store::{now_ms, time_of};
use crate::writer::Batch;

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
    attempts: i64,
    first_failure_at: i64,
    last_failure_at: i64,
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
            Some(time_of(self.first_failure_at)),
        );
        letter.id = self.id;
        letter.handler = self.handler;
        letter.last_failure_at = time_of(self.last_failure_at);
        letter
    }
}

/// Stores `letter`, which arrived under `topic`.
pub(crate) async fn insert(batch: &mut Batch, topic: &str, letter: &DeadLetter) -> Result<()> {
    let (body, content_type, decodable) = letter.original.to_stored();
    sqlx::query(
        "INSERT INTO tidings_dead_letters (id, subscription, handler, topic, content_type, body, \
         decodable, reason_kind, reason_message, attempts, first_failure_at, last_failure_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&letter.id)
    .bind(&letter.subscription)
    .bind(letter.handler.as_deref())
    .bind(topic)
    .bind(content_type)
    .bind(body)
    .bind(decodable)
    .bind(letter.reason.kind.as_str())
    .bind(&letter.reason.message)
    .bind(i64::from(letter.attempts))
    .bind(letter.first_failure_at.timestamp_millis())
    .bind(letter.last_failure_at.timestamp_millis())
    .execute(&mut batch.conn)
    .await?;
    Ok(())
}

#[async_trait]
impl DeadLetters for SqliteTransport {
    async fn list(
        &self,
        subscription: &str,
        page: Page,
    ) -> Result<Vec<DeadLetter>, TransportError> {
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM tidings_dead_letters WHERE subscription = ? \
             ORDER BY seq LIMIT ? OFFSET ?"
        )))
        .bind(subscription)
        .bind(i64::try_from(page.limit).unwrap_or(i64::MAX))
        .bind(i64::try_from(page.offset).unwrap_or(i64::MAX))
        .fetch_all(&self.shared.reader)
        .await
        .map_err(Error::from)?;
        Ok(rows.into_iter().map(Row::into_letter).collect())
    }

    async fn count(&self, subscription: &str) -> Result<u64, TransportError> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM tidings_dead_letters WHERE subscription = ?")
                .bind(subscription)
                .fetch_one(&self.shared.reader)
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
            "SELECT {COLUMNS} FROM tidings_dead_letters WHERE subscription = ? AND id = ?"
        )))
        .bind(subscription)
        .bind(id)
        .fetch_optional(&self.shared.reader)
        .await
        .map_err(Error::from)?;
        Ok(row.map(Row::into_letter))
    }

    async fn replay(
        &self,
        subscription: &str,
        id: &str,
        target: ReplayTarget,
    ) -> Result<(), TransportError> {
        let what = format!("dead letter {id} of {subscription}");
        let (subscription, id) = (subscription.to_owned(), id.to_owned());
        let replayed = self
            .shared
            .writer
            .submit(move |batch| {
                Box::pin(async move {
                    let found: Option<(String, Option<String>, Vec<u8>, bool)> = sqlx::query_as(
                        "SELECT topic, content_type, body, decodable FROM tidings_dead_letters \
                         WHERE subscription = ? AND id = ?",
                    )
                    .bind(&subscription)
                    .bind(&id)
                    .fetch_optional(&mut batch.conn)
                    .await?;
                    let Some((topic, content_type, body, decodable)) = found else {
                        return Ok(Replayed::NotFound);
                    };
                    if !decodable {
                        return Ok(Replayed::Undecodable);
                    }
                    let now = now_ms();
                    match target {
                        ReplayTarget::Subscription => {
                            let message = Outgoing {
                                topic,
                                content_type,
                                body,
                            };
                            enqueue_to(batch, &subscription, &message, now).await?;
                        }
                        ReplayTarget::Topic(topic) => {
                            let message = Outgoing {
                                topic,
                                content_type,
                                body,
                            };
                            enqueue(batch, &message, now).await?;
                        }
                        _ => return Ok(Replayed::UnknownTarget),
                    }
                    sqlx::query(
                        "DELETE FROM tidings_dead_letters WHERE subscription = ? AND id = ?",
                    )
                    .bind(&subscription)
                    .bind(&id)
                    .execute(&mut batch.conn)
                    .await?;
                    Ok(Replayed::Done)
                })
            })
            .await?;
        match replayed {
            Replayed::Done => Ok(()),
            Replayed::NotFound => Err(TransportError::NotFound(what)),
            Replayed::Undecodable => Err(TransportError::Refused(format!(
                "{what} is undecodable and cannot be replayed; inspect and purge it"
            ))),
            Replayed::UnknownTarget => Err(TransportError::Refused(format!(
                "{what}: unsupported replay target"
            ))),
        }
    }

    async fn purge(&self, subscription: &str) -> Result<u64, TransportError> {
        let subscription = subscription.to_owned();
        self.shared
            .writer
            .submit(move |batch| {
                Box::pin(async move {
                    Ok(
                        sqlx::query("DELETE FROM tidings_dead_letters WHERE subscription = ?")
                            .bind(&subscription)
                            .execute(&mut batch.conn)
                            .await?
                            .rows_affected(),
                    )
                })
            })
            .await
            .map_err(TransportError::from)
    }
}

enum Replayed {
    Done,
    NotFound,
    Undecodable,
    UnknownTarget,
}
