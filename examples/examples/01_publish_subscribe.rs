//! Define a typed event, subscribe a handler, publish, shut down gracefully.
//!
//! `cargo run -p tidings-examples --example 01_publish_subscribe`

use serde::{Deserialize, Serialize};
use tidings::memory::MemoryTransport;
use tidings::{Bus, DomainEvent, Event};

#[derive(Debug, Serialize, Deserialize, DomainEvent)]
#[event(name = "order.created", version = 1)]
struct OrderCreated {
    #[event(subject)]
    order_id: String,
    total: f64,
    currency: String,
}

#[tokio::main]
async fn main() -> tidings::Result<()> {
    let bus = Bus::builder(MemoryTransport::new())
        .source("oms-service")
        .build()?;
    let (done, mut handled) = tokio::sync::mpsc::channel(8);

    bus.subscribe::<OrderCreated, _>("notification", move |event: Event<OrderCreated>| {
        let done = done.clone();
        async move {
            println!(
                "notification: order {} for {} {} (event {})",
                event.order_id,
                event.total,
                event.currency,
                event.envelope().id
            );
            let _ = done.send(()).await;
            Ok(())
        }
    })
    .await?;

    bus.publish(&OrderCreated {
        order_id: "order_xyz".into(),
        total: 1000.0,
        currency: "UAH".into(),
    })
    .await?;

    handled.recv().await;
    bus.shutdown().await
}
