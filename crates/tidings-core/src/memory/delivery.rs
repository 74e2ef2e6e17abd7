use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use tokio::sync::OwnedSemaphorePermit;

use super::queue::{Message, Queue};
use crate::dead_letter::DeadLetter;
use crate::envelope::Envelope;
use crate::transport::{Delivery, FailureHistory, TransportError, Undecodable};

/// A message handed to a consumer. Dropped unsettled, it goes back to the head of its queue.
pub(super) struct MemoryDelivery {
    queue: Arc<Queue>,
    /// `None` once settled.
    message: Option<Message>,
    envelope: Arc<Envelope>,
    topic: Arc<str>,
    attempt: u32,
    failures: FailureHistory,
    /// The consumer's prefetch slot, freed when this delivery is settled or dropped.
    _slot: OwnedSemaphorePermit,
}

impl MemoryDelivery {
    pub(super) fn new(queue: Arc<Queue>, message: Message, slot: OwnedSemaphorePermit) -> Self {
        Self {
            envelope: message.envelope.clone(),
            topic: message.topic.clone(),
            attempt: message.deliveries,
            failures: message.failures.clone(),
            queue,
            message: Some(message),
            _slot: slot,
        }
    }

    fn take(&mut self) -> Message {
        self.message.take().expect("a delivery is settled once")
    }
}

impl fmt::Debug for MemoryDelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryDelivery")
            .field("subscription", &self.queue.name())
            .field("id", &self.envelope.id)
            .field("type", &self.envelope.ty)
            .field("attempt", &self.attempt)
            .finish()
    }
}

#[async_trait]
impl Delivery for MemoryDelivery {
    fn envelope(&self) -> Result<&Arc<Envelope>, &Undecodable> {
        Ok(&self.envelope)
    }

    fn topic(&self) -> &str {
        &self.topic
    }

    fn attempt(&self) -> u32 {
        self.attempt
    }

    fn failures(&self) -> &FailureHistory {
        &self.failures
    }

    async fn ack(mut self: Box<Self>) -> Result<(), TransportError> {
        self.take();
        self.queue.settled();
        self.queue.release();
        Ok(())
    }

    async fn retry(
        mut self: Box<Self>,
        after: Duration,
        error: &str,
    ) -> Result<(), TransportError> {
        let mut message = self.take();
        message
            .failures
            .first_failure_at
            .get_or_insert_with(Utc::now);
        message.failures.last_error = Some(error.to_owned());
        self.queue.schedule(message, after);
        Ok(())
    }

    async fn dead_letter(mut self: Box<Self>, letter: DeadLetter) -> Result<(), TransportError> {
        self.take();
        self.queue
            .dead
            .lock()
            .expect("dead letters lock")
            .push(letter);
        self.queue.settled();
        self.queue.release();
        Ok(())
    }
}

impl Drop for MemoryDelivery {
    fn drop(&mut self) {
        if let Some(message) = self.message.take() {
            self.queue.requeue(message);
        }
    }
}
