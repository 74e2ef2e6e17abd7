use std::sync::Arc;

use async_trait::async_trait;

use super::MemoryTransport;
use super::queue::Message;
use crate::envelope::Envelope;
use crate::transport::{Publisher, TransportError};

#[async_trait]
impl Publisher for MemoryTransport {
    async fn publish_batch(&self, envelopes: &[Envelope]) -> Result<(), TransportError> {
        // A batch is mostly of one type: routed once per run of the same topic.
        for run in envelopes.chunk_by(|a, b| a.topic() == b.topic()) {
            let shared: Vec<Arc<Envelope>> = run.iter().cloned().map(Arc::new).collect();
            self.route_all(run[0].topic(), &shared).await?;
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
        self.route_all(topic, &[envelope]).await
    }

    /// Enqueues `envelopes`, in order, in every subscription bound to `topic`, waiting for
    /// room in each.
    pub(super) async fn route_all(
        &self,
        topic: &str,
        envelopes: &[Arc<Envelope>],
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
        let messages = || {
            envelopes
                .iter()
                .map(|envelope| Message::fresh(topic.clone(), envelope.clone()))
        };
        for queue in queues {
            if queue.try_reserve(envelopes.len()) {
                queue.push_all(messages());
                continue;
            }
            // Not room for all at once: one by one, each waiting for its room.
            for message in messages() {
                queue.reserve().await?;
                queue.push_all([message]);
            }
        }
        Ok(())
    }
}
