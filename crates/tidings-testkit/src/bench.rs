//! The consuming halves of the RabbitMQ criterion benchmark, written once for any transport.
//! Paired, round-by-round comparisons with the raw clients are `tidings bench`'s.

use std::time::Duration;

/// Handles `events` events of `pattern` through `bus` under `subscription` (concurrency
/// 64, prefetch 256, handlers that only count), and returns the time from the first
/// handled to the last: the consume half of a paired benchmark, the same for every
/// transport. The events must be waiting, or arrive, on the transport.
pub async fn handle_through_bus(
    bus: &tidings::Bus,
    subscription: &str,
    pattern: &str,
    events: u64,
) -> Duration {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    let handled = Arc::new(AtomicU64::new(0));
    let done = Arc::new(tokio::sync::Notify::new());
    let first = Arc::new(std::sync::OnceLock::new());
    let (counter, finished, started) = (handled.clone(), done.clone(), first.clone());
    let running = bus
        .subscription(subscription)
        .on_pattern(pattern, move |_e: Arc<tidings::envelope::Envelope>| {
            started.get_or_init(std::time::Instant::now);
            let (counter, finished) = (counter.clone(), finished.clone());
            async move {
                // Wake the timing loop once, at the end: a wake per event would measure the
                // benchmark's own cross-thread hops.
                if counter.fetch_add(1, Ordering::Relaxed) + 1 == events {
                    finished.notify_one();
                }
                Ok(())
            }
        })
        .concurrency(64)
        .prefetch(256)
        .start()
        .await
        .expect("subscribe");
    done.notified().await;
    let spent = first.get().expect("handled").elapsed();
    running.stop().await;
    spent
}

/// Receives `events` deliveries of `spec` straight from `transport`'s stream (no bus),
/// checking each decodes and acking them concurrently, and returns the time from the first
/// delivery to the last ack: the transport's own consume path, the same for every transport.
/// The events must be waiting, or arrive, on the transport.
pub async fn drain_stream(
    transport: &dyn tidings::transport::Transport,
    spec: &tidings::transport::SubscriptionSpec,
    events: u64,
) -> Duration {
    use futures::StreamExt as _;

    let mut stream = transport.subscribe(spec).await.expect("subscribe");
    let mut acks = futures::stream::FuturesUnordered::new();
    let (mut first, mut received) = (None, 0);
    while received < events {
        tokio::select! {
            Some(d) = stream.next() => {
                first.get_or_insert_with(std::time::Instant::now);
                received += 1;
                let d = d.expect("delivered");
                assert!(d.envelope().is_ok(), "decoded");
                acks.push(d.ack());
            }
            Some(done) = acks.next(), if !acks.is_empty() => done.expect("ack"),
        }
    }
    while let Some(done) = acks.next().await {
        done.expect("ack");
    }
    first.expect("deliveries").elapsed()
}
