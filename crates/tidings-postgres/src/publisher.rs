//! Publishing: one row per subscription bound to the topic, one statement per batch.

use async_trait::async_trait;
use sqlx::PgConnection;
use tidings_core::codec::{Codec, StructuredJson};
use tidings_core::envelope::Envelope;
use tidings_core::transport::{Publisher, TransportError};

use crate::error::Result;
use crate::routes::Routes;
use crate::transport::PgTransport;
use crate::wakeup::QUEUE_CHANNEL;

/// One message to store: the topic it goes under, and its encoded form.
pub(crate) struct Outgoing {
    pub(crate) topic: String,
    pub(crate) content_type: Option<String>,
    pub(crate) body: Vec<u8>,
}

impl Outgoing {
    fn encode(envelope: &Envelope) -> Result<Self, TransportError> {
        Ok(Self {
            topic: envelope.topic().to_owned(),
            content_type: Some(StructuredJson.content_type().to_owned()),
            body: StructuredJson.encode(envelope)?,
        })
    }
}

/// Rows to insert, column by column (the statement takes them as arrays).
#[derive(Default)]
pub(crate) struct Rows {
    subscriptions: Vec<String>,
    topics: Vec<String>,
    content_types: Vec<Option<String>>,
    bodies: Vec<Vec<u8>>,
}

impl Rows {
    /// Adds `message` for `subscription`.
    pub(crate) fn push(&mut self, subscription: &str, message: &Outgoing) {
        self.subscriptions.push(subscription.to_owned());
        self.topics.push(message.topic.clone());
        self.content_types.push(message.content_type.clone());
        self.bodies.push(message.body.clone());
    }

    /// Adds `message` for every subscription bound to its topic.
    pub(crate) fn route(&mut self, routes: &Routes, message: &Outgoing) {
        for subscription in routes.matching(&message.topic) {
            self.push(&subscription, message);
        }
    }

    /// Inserts the rows, in order, and notifies each subscription's consumers on commit.
    pub(crate) async fn insert(self, conn: &mut PgConnection) -> Result<()> {
        if self.subscriptions.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "WITH stored AS ( \
                 INSERT INTO tidings_messages (subscription, topic, content_type, body) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[]) \
                 RETURNING subscription) \
             SELECT pg_notify($5, subscription) FROM (SELECT DISTINCT subscription FROM stored) s",
        )
        .bind(self.subscriptions)
        .bind(self.topics)
        .bind(self.content_types)
        .bind(self.bodies)
        .bind(QUEUE_CHANNEL)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

impl PgTransport {
    /// Stores already-encoded messages in every subscription bound to their topics, committed
    /// together (all or none).
    async fn store(&self, messages: &[Outgoing]) -> Result<(), TransportError> {
        self.check_open()?;
        let mut tx = self.shared.pool.begin().await.map_err(crate::Error::from)?;
        let mut rows = Rows::default();
        let version = Routes::version(&mut tx).await?;
        {
            let mut routes = self.shared.routes.lock().await;
            routes.refresh(version, &mut tx).await?;
            for message in messages {
                rows.route(&routes, message);
            }
        }
        rows.insert(&mut tx).await?;
        tx.commit().await.map_err(crate::Error::from)?;
        Ok(())
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
        self.store(&[Outgoing {
            topic: topic.to_owned(),
            content_type: content_type.map(str::to_owned),
            body: body.into(),
        }])
        .await
    }
}

#[async_trait]
impl Publisher for PgTransport {
    async fn publish_batch(&self, envelopes: &[Envelope]) -> Result<(), TransportError> {
        let messages = envelopes
            .iter()
            .map(Outgoing::encode)
            .collect::<Result<Vec<_>, _>>()?;
        self.store(&messages).await
    }

    /// Stops publishing and ends every delivery stream; deliveries already handed out can
    /// still be settled.
    async fn close(&self) -> Result<(), TransportError> {
        self.shared.closed.cancel();
        self.shared.wakeups.wake_all();
        Ok(())
    }
}
