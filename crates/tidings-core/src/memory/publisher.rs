use std::sync::Arc;

use async_trait::async_trait;

use super::MemoryTransport;
use super::queue::Message;
use crate::envelope::Envelope;
use crate::transport::{Publisher, TransportError};

#[async_trait]
impl Publisher for MemoryTransport {
    async fn publish_batch(&self, envelopes: &[Envelope]) -> Result<(), TransportError> {
        for envelope in envelopes {
            self.route_to(envelope.topic(), Arc::new(envelope.clone()))
                .await?;
        }
        Ok(())
    }

    async fn close(&self) -> Result<(), TransportError> {
        self.shared.closed.cancel();
        let routes = self.shared.routes.read().expect("routes lock");
        for queue in routes.queues.values() {
            queue.close();
        }
        Ok(())
    }
}

impl MemoryTransport {
    /// Enqueues `envelope` in every subscription bound to `topic`, waiting for room in each.
    pub(super) async fn route_to(
        &self,
        topic: &str,
        envelope: Arc<Envelope>,
    ) -> Result<(), TransportError> {
        if self.shared.closed.is_cancelled() {
            return Err(TransportError::Closed);
        }
        let queues = self.shared.route(topic);
        if queues.is_empty() && self.shared.config.require_route {
            return Err(TransportError::Unroutable {
                topic: topic.to_owned(),
            });
        }
        let topic: Arc<str> = topic.into();
        for queue in queues {
            queue.reserve().await?;
            queue.push(Message::fresh(topic.clone(), envelope.clone()));
        }
        Ok(())
    }
}
