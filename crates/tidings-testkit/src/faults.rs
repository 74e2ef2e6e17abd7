//! Fault scenarios every broker transport runs: events stream through a bus while the
//! broker (or a node, or a connection) fails, and the test counts what arrived.

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tidings::envelope::Envelope;
use tidings::inbox::Inbox;
use tidings::transport::{Transport, TransportError};
use tidings::{Bus, Observer, Settlement};

use crate::{Namespace, Probe};

/// What a fault scenario counted.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Events published.
    pub events: u64,
    /// Events handled when the fault struck.
    pub handled_at_fault: usize,
    /// Whether the publisher was still publishing when the fault struck.
    pub still_publishing: bool,
    /// Batches published again after a transient failure.
    pub publish_retries: u64,
    /// Deliveries the bus acked (handled, or skipped as duplicates by the inbox).
    pub deliveries: u64,
    /// Handler calls.
    pub handled: usize,
    /// Distinct events handled.
    pub distinct: usize,
    /// Time from the fault until every event was handled.
    pub recovered_in: Duration,
}

impl Outcome {
    /// Asserts the promise: every event handled, exactly once after the inbox, and the fault
    /// landed while events were still being published.
    ///
    /// # Panics
    ///
    /// When it does not hold.
    pub fn assert_nothing_lost(&self) {
        assert!(
            self.still_publishing,
            "the fault landed while events were being published"
        );
        assert_eq!(self.distinct as u64, self.events, "nothing lost: {self}");
        assert_eq!(
            self.handled as u64, self.events,
            "every duplicate was removed by the inbox: {self}"
        );
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} events, fault after {} handled, {} publish batches retried, {} deliveries \
             acked, {} handled ({} distinct), {} duplicates removed by the inbox, all handled \
             {:.1?} after the fault",
            self.events,
            self.handled_at_fault,
            self.publish_retries,
            self.deliveries,
            self.handled,
            self.distinct,
            self.deliveries.saturating_sub(self.handled as u64),
            self.recovered_in
        )
    }
}

#[derive(Default, Clone)]
struct Acked(Arc<AtomicU64>);

impl Observer for Acked {
    fn on_settled(&self, _: &str, _: Option<&Envelope>, settlement: &Settlement, _: Duration) {
        if matches!(settlement, Settlement::Ack) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn seq_of(e: &Envelope) -> u64 {
    e.data_as::<serde_json::Value>().expect("json")["seq"]
        .as_u64()
        .expect("seq")
}

/// Streams `events` events through a bus on `transport` (de-duplicated by `inbox`),
/// published at about 1,000 a second in batches of 100 (a batch that fails transiently is
/// published again whole), and runs `fault` once a third of them were handled. Returns when
/// every event was handled, or three minutes after the fault.
///
/// # Panics
///
/// When a publish fails for good, the bus cannot start, or a step hangs (the fault and the
/// rest of the publishing have three minutes each, the shutdown one).
pub async fn stream_through_fault<F, Fut>(
    transport: Arc<dyn Transport>,
    inbox: impl Inbox,
    events: u64,
    fault: F,
) -> Outcome
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    let ns = Namespace::new();
    let acked = Acked::default();
    let bus = Bus::builder_shared(transport.clone())
        .source(ns.as_str())
        .inbox(inbox)
        .observer(acked.clone())
        .build()
        .expect("bus");
    let handled: Arc<Probe<u64>> = Probe::new();
    let seen = handled.clone();
    let subscribing = bus
        .subscription(ns.subscription("billing"))
        .on_pattern(&ns.topic("order.*"), move |e: Arc<Envelope>| {
            let seen = seen.clone();
            async move {
                seen.push(seq_of(&e));
                Ok(())
            }
        })
        .concurrency(16)
        .prefetch(128)
        .start();
    crate::within(Duration::from_secs(60), "subscribing", subscribing)
        .await
        .expect("subscribe");

    let batches: Vec<Vec<Envelope>> = (0..events)
        .collect::<Vec<_>>()
        .chunks(100)
        .map(|chunk| {
            chunk
                .iter()
                .map(|seq| {
                    Envelope::new(ns.as_str(), ns.topic("order.paid"))
                        .with_subject(format!("order-{}", seq % 50))
                        .with_json_data(&serde_json::json!({ "seq": seq }))
                        .expect("json")
                })
                .collect()
        })
        .collect();
    let publisher = transport.clone();
    // Paced, so that the fault lands while events are still being published.
    let publishing = tokio::spawn(async move {
        let mut retries = 0u64;
        let mut pace = tokio::time::interval(Duration::from_millis(100));
        for batch in batches {
            pace.tick().await;
            // Published again whole after a failure part-way: what arrives twice has the
            // same ids, for the inbox to remove.
            while let Err(error) = publisher.publish_batch(&batch).await {
                assert!(
                    error.is_transient() || matches!(error, TransportError::NotFound(_)),
                    "publish failed for good: {error}"
                );
                retries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        retries
    });

    handled
        .wait_for(events as usize / 3, Duration::from_secs(120))
        .await;
    let handled_at_fault = handled.len();
    let still_publishing = !publishing.is_finished();
    let fault_at = Instant::now();
    crate::within(Duration::from_secs(180), "the fault", fault()).await;
    let publish_retries = crate::within(
        Duration::from_secs(180),
        "publishing after the fault",
        publishing,
    )
    .await
    .expect("publisher");
    let deadline = Instant::now() + Duration::from_secs(180);
    let distinct = loop {
        let distinct: BTreeSet<u64> = handled.items().into_iter().collect();
        if distinct.len() as u64 >= events || Instant::now() > deadline {
            break distinct.len();
        }
        handled
            .wait_for(handled.len() + 1, Duration::from_millis(200))
            .await;
    };
    let recovered_in = fault_at.elapsed();
    // Let late redeliveries arrive, so that a duplicate the inbox missed would show.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let outcome = Outcome {
        events,
        handled_at_fault,
        still_publishing,
        publish_retries,
        deliveries: acked.0.load(Ordering::Relaxed),
        handled: handled.len(),
        distinct,
        recovered_in,
    };
    crate::within(
        Duration::from_secs(60),
        "the bus's shutdown",
        bus.shutdown(),
    )
    .await
    .expect("shutdown");
    outcome
}
