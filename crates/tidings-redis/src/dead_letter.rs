//! A subscription's dead-letter stream: list, inspect, replay, purge.
//!
//! Each dead letter is an entry of `{p}:dlq:<sub>` with the original topic, content type and
//! body, untouched, and the failure's details as JSON.

use async_trait::async_trait;
use redis::streams::{StreamId, StreamRangeReply};
use tidings_core::codec::decode_json;
use tidings_core::dead_letter::{DeadLetter, Details, Original, Page, ReasonKind, ReplayTarget};
use tidings_core::transport::{DeadLetters, TransportError};

use crate::delivery::Fields;
use crate::keys::field;
use crate::routes::Entry;
use crate::{Inner, RedisTransport};

/// The dead letter an entry is, with its topic.
fn letter(subscription: &str, mut entry: StreamId) -> (DeadLetter, Fields) {
    let fields = Fields::take(&mut entry).unwrap_or(Fields {
        topic: String::new(),
        content_type: None,
        body: bytes::Bytes::new(),
        attempt: 1,
        failures: Default::default(),
    });
    let details = entry
        .get::<String>(field::DETAILS)
        .and_then(|text| Details::from_json(&text))
        .unwrap_or_else(|| Details {
            id: entry.id.clone(),
            subscription: subscription.to_owned(),
            handler: None,
            reason_kind: ReasonKind::Rejected.as_str().to_owned(),
            reason: "written to the dead-letter stream without tidings' details".to_owned(),
            attempts: 1,
            first_failure_ms: 0,
            last_failure_ms: 0,
            topic: fields.topic.clone(),
        });
    let original = match decode_json(&fields.body) {
        Ok(envelope) => Original::Envelope(Box::new(envelope)),
        Err(_) => Original::Undecodable {
            body: fields.body.clone(),
            content_type: fields.content_type.clone(),
        },
    };
    (details.into_letter(original), fields)
}

impl Inner {
    /// The first `count` dead letters of `subscription` (all with `None`), oldest first.
    async fn letters(
        &self,
        subscription: &str,
        count: Option<usize>,
    ) -> Result<Vec<StreamId>, TransportError> {
        let mut conn = self.conn.clone();
        let mut range = redis::cmd("XRANGE");
        range
            .arg(self.keys.dead_letters(subscription))
            .arg("-")
            .arg("+");
        if let Some(count) = count {
            range.arg("COUNT").arg(count);
        }
        let range: StreamRangeReply = range
            .query_async(&mut conn)
            .await
            .map_err(|e| TransportError::from(self.error(&e, "reading dead letters")))?;
        Ok(range.ids)
    }

    async fn find(
        &self,
        subscription: &str,
        id: &str,
    ) -> Result<Option<(DeadLetter, Fields, String)>, TransportError> {
        Ok(self
            .letters(subscription, None)
            .await?
            .into_iter()
            .map(|entry| {
                let id = entry.id.clone();
                let (letter, fields) = letter(subscription, entry);
                (letter, fields, id)
            })
            .find(|(letter, _, _)| letter.id == id))
    }
}

#[async_trait]
impl DeadLetters for RedisTransport {
    async fn list(
        &self,
        subscription: &str,
        page: Page,
    ) -> Result<Vec<DeadLetter>, TransportError> {
        let entries = self
            .inner
            .letters(subscription, Some(page.offset.saturating_add(page.limit)))
            .await?;
        Ok(entries
            .into_iter()
            .skip(page.offset)
            .map(|entry| letter(subscription, entry).0)
            .collect())
    }

    async fn count(&self, subscription: &str) -> Result<u64, TransportError> {
        let mut conn = self.inner.conn.clone();
        redis::cmd("XLEN")
            .arg(self.inner.keys.dead_letters(subscription))
            .query_async(&mut conn)
            .await
            .map_err(|e| self.inner.error(&e, "counting dead letters").into())
    }

    async fn get(
        &self,
        subscription: &str,
        id: &str,
    ) -> Result<Option<DeadLetter>, TransportError> {
        Ok(self
            .inner
            .find(subscription, id)
            .await?
            .map(|(letter, _, _)| letter))
    }

    async fn replay(
        &self,
        subscription: &str,
        id: &str,
        target: ReplayTarget,
    ) -> Result<(), TransportError> {
        let inner = &self.inner;
        let Some((_, fields, entry_id)) = inner.find(subscription, id).await? else {
            return Err(TransportError::NotFound(format!(
                "dead letter `{id}` of `{subscription}`"
            )));
        };
        let dlq = inner.keys.dead_letters(subscription);
        let content_type = fields.content_type.unwrap_or_default();
        match target {
            ReplayTarget::Topic(topic) => {
                inner
                    .route(vec![Entry {
                        topic: &topic,
                        content_type: &content_type,
                        body: fields.body.to_vec(),
                    }])
                    .await?;
                let mut conn = inner.conn.clone();
                redis::cmd("XDEL")
                    .arg(&dlq)
                    .arg(&entry_id)
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(|e| {
                        TransportError::from(inner.error(&e, "removing a replayed dead letter"))
                    })?;
            }
            _ => {
                // Straight into the subscription's own stream, and out of its dead letters,
                // together.
                let mut conn = inner.conn.clone();
                redis::pipe()
                    .atomic()
                    .cmd("XADD")
                    .arg(inner.keys.stream(subscription))
                    .arg("*")
                    .arg(field::TOPIC)
                    .arg(&fields.topic)
                    .arg(field::CONTENT_TYPE)
                    .arg(&content_type)
                    .arg(field::BODY)
                    .arg(&fields.body[..])
                    .ignore()
                    .cmd("XDEL")
                    .arg(&dlq)
                    .arg(&entry_id)
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(|e| {
                        TransportError::from(inner.error(&e, "replaying a dead letter"))
                    })?;
            }
        }
        Ok(())
    }

    async fn purge(&self, subscription: &str) -> Result<u64, TransportError> {
        let mut conn = self.inner.conn.clone();
        let key = self.inner.keys.dead_letters(subscription);
        let (count, _): (u64, i64) = redis::pipe()
            .atomic()
            .cmd("XLEN")
            .arg(&key)
            .cmd("DEL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .map_err(|e| TransportError::from(self.inner.error(&e, "purging dead letters")))?;
        Ok(count)
    }
}
