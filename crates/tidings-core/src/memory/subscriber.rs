use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::Semaphore;

use super::delivery::MemoryDelivery;
use super::queue::{Queue, Take};
use super::{MemoryTransport, Shared};
use crate::transport::{Delivery, DeliveryStream, Subscriber, SubscriptionSpec, TransportError};

/// One stream's view of a queue.
struct Consumer {
    shared: Arc<Shared>,
    queue: Arc<Queue>,
    /// Unsettled deliveries this stream may hold.
    prefetch: Arc<Semaphore>,
}

impl Consumer {
    async fn next(&self) -> Option<Box<dyn Delivery>> {
        let slot = tokio::select! {
            slot = self.prefetch.clone().acquire_owned() => slot.ok()?,
            () = self.shared.closed.cancelled() => return None,
        };
        loop {
            let notified = self.queue.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.shared.closed.is_cancelled() {
                return None;
            }
            let due = match self.queue.take() {
                Take::Message(message) => {
                    return Some(Box::new(MemoryDelivery::new(
                        self.queue.clone(),
                        message,
                        slot,
                    )));
                }
                Take::Wait(due) => due,
            };
            let sleep = async {
                match due {
                    Some(due) => tokio::time::sleep_until(due).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = notified => {}
                () = sleep => {}
                () = self.shared.closed.cancelled() => return None,
            }
        }
    }
}

#[async_trait]
impl Subscriber for MemoryTransport {
    async fn subscribe(&self, spec: &SubscriptionSpec) -> Result<DeliveryStream, TransportError> {
        if self.shared.closed.is_cancelled() {
            return Err(TransportError::Closed);
        }
        let queue = self.shared.declare(&spec.name, &spec.patterns);
        let consumer = Consumer {
            shared: self.shared.clone(),
            queue,
            prefetch: Arc::new(Semaphore::new(spec.prefetch.max(1))),
        };
        Ok(futures::stream::unfold(consumer, |consumer| async move {
            let delivery = consumer.next().await?;
            Some((Ok(delivery), consumer))
        })
        .boxed())
    }
}
