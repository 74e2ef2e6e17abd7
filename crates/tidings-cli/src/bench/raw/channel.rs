//! In memory: a tokio channel carrying the decoded orders themselves, the floor under any
//! in-process bus (tidings, on its memory transport, serializes each order into an envelope,
//! routes it, and decodes and validates it for the handler).

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{Mutex, mpsc};

use crate::bench::event::{OrderCreated, Orders};
use crate::bench::side::{Consumer, Side};
use crate::bench::tally::Tally;

/// An unbounded channel, as the memory transport's queues are.
pub(crate) struct Channel {
    sender: mpsc::UnboundedSender<OrderCreated>,
    receiver: Arc<Mutex<mpsc::UnboundedReceiver<OrderCreated>>>,
}

impl Channel {
    pub(crate) fn new() -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        Self {
            sender,
            receiver: Arc::new(Mutex::new(receiver)),
        }
    }
}

#[async_trait]
impl Side for Channel {
    async fn publish(&self, orders: &Orders, range: Range<usize>) -> anyhow::Result<()> {
        for order in &orders.events[range] {
            self.sender.send(order.clone())?;
        }
        Ok(())
    }

    async fn consume(&self, tally: Arc<Tally>) -> anyhow::Result<Consumer> {
        let receiver = self.receiver.clone().lock_owned().await;
        Ok(Consumer::spawn(async move {
            let mut receiver = receiver;
            while !tally.is_complete() {
                let order = receiver
                    .recv()
                    .await
                    .ok_or_else(|| anyhow::anyhow!("the channel closed"))?;
                std::hint::black_box(&order);
                tally.hit();
            }
            Ok(())
        }))
    }
}
