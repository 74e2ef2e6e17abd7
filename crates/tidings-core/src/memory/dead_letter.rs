use std::sync::Arc;

use async_trait::async_trait;

use super::MemoryTransport;
use super::queue::Message;
use crate::dead_letter::{DeadLetter, Original, Page, ReplayTarget};
use crate::transport::{DeadLetters, TransportError};

#[async_trait]
impl DeadLetters for MemoryTransport {
    async fn list(
        &self,
        subscription: &str,
        page: Page,
    ) -> Result<Vec<DeadLetter>, TransportError> {
        let Some(queue) = self.shared.queue(subscription) else {
            return Ok(Vec::new());
        };
        let dead = queue.dead.lock().expect("dead letters lock");
        Ok(dead
            .iter()
            .skip(page.offset)
            .take(page.limit)
            .cloned()
            .collect())
    }

    async fn count(&self, subscription: &str) -> Result<u64, TransportError> {
        Ok(self.shared.queue(subscription).map_or(0, |q| {
            q.dead.lock().expect("dead letters lock").len() as u64
        }))
    }

    async fn get(
        &self,
        subscription: &str,
        id: &str,
    ) -> Result<Option<DeadLetter>, TransportError> {
        Ok(self.shared.queue(subscription).and_then(|q| {
            q.dead
                .lock()
                .expect("dead letters lock")
                .iter()
                .find(|d| d.id == id)
                .cloned()
        }))
    }

    async fn replay(
        &self,
        subscription: &str,
        id: &str,
        target: ReplayTarget,
    ) -> Result<(), TransportError> {
        let not_found = || TransportError::NotFound(format!("dead letter {id} of {subscription}"));
        let queue = self.shared.queue(subscription).ok_or_else(not_found)?;
        let letter = {
            let dead = queue.dead.lock().expect("dead letters lock");
            dead.iter()
                .find(|d| d.id == id)
                .cloned()
                .ok_or_else(not_found)?
        };
        let Original::Envelope(envelope) = letter.original else {
            return Err(TransportError::Refused(
                "an undecodable message cannot be replayed; inspect and purge it".into(),
            ));
        };
        let envelope: Arc<crate::envelope::Envelope> = Arc::from(envelope);
        match target {
            ReplayTarget::Subscription => {
                queue.reserve().await?;
                queue.push_all([Message::fresh(envelope.ty.as_str().into(), envelope)]);
            }
            ReplayTarget::Topic(topic) => self.route_to(&topic, envelope).await?,
        }
        queue
            .dead
            .lock()
            .expect("dead letters lock")
            .retain(|d| d.id != id);
        Ok(())
    }

    async fn purge(&self, subscription: &str) -> Result<u64, TransportError> {
        Ok(self.shared.queue(subscription).map_or(0, |q| {
            let mut dead = q.dead.lock().expect("dead letters lock");
            let n = dead.len() as u64;
            dead.clear();
            n
        }))
    }
}
