use async_trait::async_trait;
use tidings_core::codec::{Codec, StructuredJson};
use tidings_core::envelope::Envelope;
use tidings_core::transport::{Publisher, TransportError};

use crate::SqliteTransport;
use crate::error::{Error, Result};
use crate::store::now_ms;
use crate::writer::Batch;

/// One message to store: the topic it goes under, and its encoded form.
pub(crate) struct Outgoing {
    pub(crate) topic: String,
    pub(crate) content_type: Option<String>,
    pub(crate) body: Vec<u8>,
}

impl Outgoing {
    pub(crate) fn encode(envelope: &Envelope) -> Result<Self, TransportError> {
        Ok(Self {
            topic: envelope.topic().to_owned(),
            content_type: Some(StructuredJson.content_type().to_owned()),
            body: StructuredJson.encode(envelope)?,
        })
    }
}

/// Stores `message` in every subscription bound to its topic.
pub(crate) async fn enqueue(batch: &mut Batch, message: &Outgoing, now: i64) -> Result<usize> {
    let subscriptions = batch.route(&message.topic).await?;
    if subscriptions.is_empty() && batch.require_route {
        return Err(Error::Unroutable(message.topic.clone()));
    }
    for subscription in &subscriptions {
        enqueue_to(batch, subscription, message, now).await?;
    }
    Ok(subscriptions.len())
}

/// Stores `message` in `subscription` only.
pub(crate) async fn enqueue_to(
    batch: &mut Batch,
    subscription: &str,
    message: &Outgoing,
    now: i64,
) -> Result<()> {
    if batch.full {
        return Err(Error::Full);
    }
    let inserted = sqlx::query(
        "INSERT INTO tidings_messages \
         (subscription, topic, content_type, body, published_at, visible_at) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(subscription)
    .bind(&message.topic)
    .bind(message.content_type.as_deref())
    .bind(&message.body)
    .bind(now)
    .bind(now)
    .execute(&mut batch.conn)
    .await;
    if let Err(error) = inserted {
        let error = Error::from(error);
        if matches!(error, Error::Full) {
            batch.hit_full = true;
        }
        return Err(error);
    }
    batch.wake(subscription);
    Ok(())
}

impl SqliteTransport {
    /// Stores already-encoded messages, committed together (all or none).
    pub(crate) async fn store(&self, messages: Vec<Outgoing>) -> Result<(), TransportError> {
        if self.shared.closed.is_cancelled() {
            return Err(TransportError::Closed);
        }
        self.shared
            .writer
            .submit(move |batch| {
                Box::pin(async move {
                    let now = now_ms();
                    for message in &messages {
                        enqueue(batch, message, now).await?;
                    }
                    Ok(())
                })
            })
            .await
            .map_err(TransportError::from)
    }

    /// Publishes bytes as they are, for producers that bring their own encoding (the legacy
    /// flat envelope is read back by its `application/json` content type). Bytes that are not
    /// an event are dead-lettered by the consuming bus, once.
    pub async fn publish_encoded(
        &self,
        topic: &str,
        body: impl Into<Vec<u8>>,
        content_type: Option<&str>,
    ) -> Result<(), TransportError> {
        self.store(vec![Outgoing {
            topic: topic.to_owned(),
            content_type: content_type.map(str::to_owned),
            body: body.into(),
        }])
        .await
    }
}

#[async_trait]
impl Publisher for SqliteTransport {
    async fn publish_batch(&self, envelopes: &[Envelope]) -> Result<(), TransportError> {
        let messages = envelopes
            .iter()
            .map(Outgoing::encode)
            .collect::<Result<Vec<_>, _>>()?;
        self.store(messages).await
    }

    async fn close(&self) -> Result<(), TransportError> {
        self.shared.closed.cancel();
        self.shared.signals.wake_all();
        Ok(())
    }
}
