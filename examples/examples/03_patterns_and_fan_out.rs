//! Pattern subscriptions: every subscription gets its own copy (fan-out), `*` matches one
//! word, `#` any number.
//!
//! `cargo run -p tidings-examples --example 03_patterns_and_fan_out`

use std::sync::Arc;

use tidings::Bus;
use tidings::envelope::Envelope;
use tidings::memory::MemoryTransport;

#[tokio::main]
async fn main() -> tidings::Result<()> {
    let bus = Bus::builder(MemoryTransport::new())
        .source("catalog-service")
        .build()?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(32);

    for (service, pattern) in [
        ("notification", "order.*"),
        ("inventory", "product.stock.*"),
        ("search", "product.#"),
        ("analytics", "#"),
    ] {
        let tx = tx.clone();
        bus.subscribe_pattern(service, pattern, move |e: Arc<Envelope>| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(format!("{service:<12} <- {}", e.ty)).await;
                Ok(())
            }
        })
        .await?;
    }
    drop(tx);

    let topics = [
        "order.created",
        "product.updated",
        "product.stock.low",
        "customer.created",
    ];
    for topic in topics {
        bus.publish_envelope(Envelope::new("catalog-service", topic))
            .await?;
    }
    // order.created: notification, analytics; product.updated: search, analytics;
    // product.stock.low: inventory, search, analytics; customer.created: analytics.
    let mut lines = Vec::new();
    while lines.len() < 8 {
        lines.push(rx.recv().await.expect("deliveries"));
    }
    lines.sort();
    for line in lines {
        println!("{line}");
    }
    bus.shutdown().await
}
