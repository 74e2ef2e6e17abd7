//! Publishing: events routed into the matching subscriptions' streams.

use async_trait::async_trait;
use tidings_core::codec::{Codec, STRUCTURED_CONTENT_TYPE, StructuredJson};
use tidings_core::envelope::Envelope;
use tidings_core::transport::{Publisher, TransportError};

use crate::RedisTransport;
use crate::routes::Entry;

#[async_trait]
impl Publisher for RedisTransport {
    /// Adds each event to the stream of every subscription whose patterns match its topic,
    /// in one transaction per 500 events. `Ok` means Redis has them; whether
    /// they survive a Redis restart depends on its persistence (see `RedisConfig`).
    async fn publish_batch(&self, envelopes: &[Envelope]) -> Result<(), TransportError> {
        let entries = envelopes
            .iter()
            .map(|envelope| {
                Ok(Entry {
                    topic: envelope.topic(),
                    content_type: STRUCTURED_CONTENT_TYPE,
                    body: StructuredJson.encode(envelope)?,
                })
            })
            .collect::<Result<Vec<_>, TransportError>>()?;
        self.inner.route(entries).await
    }

    /// Stops publishing and consuming. Deliveries not yet acked are claimed by another
    /// consumer once their lease runs out.
    async fn close(&self) -> Result<(), TransportError> {
        self.inner.closed.cancel();
        Ok(())
    }
}
