//! The measurements: each one run on the raw side and on tidings' by the same code.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::event::Orders;
use super::side::Side;
use super::tally::Tally;

/// Publishes `orders` in batches of `batch`, one batch after another.
pub(crate) async fn publish(side: &dyn Side, orders: &Orders, batch: usize) -> anyhow::Result<()> {
    let mut start = 0;
    while start < orders.len() {
        let end = (start + batch).min(orders.len());
        side.publish(orders, start..end).await?;
        start = end;
    }
    Ok(())
}

/// How long consuming `count` waiting events took, from the first handled to the last.
pub(crate) async fn consume(
    side: &dyn Side,
    count: u64,
    idle: Duration,
) -> anyhow::Result<Duration> {
    let tally = Arc::new(Tally::new(count));
    let consumer = side.consume(tally.clone()).await?;
    progressing(&tally, idle).await?;
    consumer.finish().await?;
    Ok(tally.span())
}

/// How long it took from the first publish of `orders` (in batches of `batch`) to the last
/// of them handled, with a consumer running throughout.
pub(crate) async fn end_to_end(
    side: &dyn Side,
    orders: &Orders,
    batch: usize,
    idle: Duration,
) -> anyhow::Result<Duration> {
    let count = orders.len() as u64;
    let tally = Arc::new(Tally::new(count));
    let consumer = side.consume(tally.clone()).await?;
    let start = Instant::now();
    publish(side, orders, batch).await?;
    progressing(&tally, idle).await?;
    let spent = tally.finished_at().expect("complete") - start;
    consumer.finish().await?;
    Ok(spent)
}

/// Publish-to-handled latencies of `orders` offered at `rate` per second, with a consumer
/// running throughout. Every millisecond the events then due are published as one batch,
/// without waiting for earlier batches' confirms. Queues are first in, first out, so the
/// k-th event handled is the k-th sent: its latency is the time between the two.
pub(crate) async fn latencies(
    side: Arc<dyn Side>,
    orders: Arc<Orders>,
    rate: f64,
    idle: Duration,
) -> anyhow::Result<Vec<Duration>> {
    let count = orders.len();
    let origin = Instant::now();
    let tally = Arc::new(Tally::stamped(count as u64, origin));
    let consumer = side.consume(tally.clone()).await?;
    let mut sent = vec![0u64; count];
    let mut publishes = tokio::task::JoinSet::new();
    let mut ticks = tokio::time::interval(Duration::from_millis(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let start = Instant::now();
    let mut next = 0;
    while next < count {
        ticks.tick().await;
        let due = ((start.elapsed().as_secs_f64() * rate) as usize).min(count);
        if due <= next {
            continue;
        }
        let at = origin.elapsed().as_nanos() as u64;
        sent[next..due].fill(at);
        let (side, orders, range) = (side.clone(), orders.clone(), next..due);
        publishes.spawn(async move { side.publish(&orders, range).await });
        next = due;
        while let Some(done) = publishes.try_join_next() {
            done??;
        }
    }
    while let Some(done) = publishes.join_next().await {
        done??;
    }
    progressing(&tally, idle).await?;
    consumer.finish().await?;
    Ok(tally
        .stamps()
        .iter()
        .zip(&sent)
        .map(|(handled, sent)| Duration::from_nanos(handled.saturating_sub(*sent)))
        .collect())
}

/// Waits for `tally` to complete, giving up when `idle` passes with no event handled.
async fn progressing(tally: &Tally, idle: Duration) -> anyhow::Result<()> {
    let mut handled = tally.handled();
    while tokio::time::timeout(idle, tally.wait()).await.is_err() {
        let now = tally.handled();
        anyhow::ensure!(
            now > handled,
            "the consumer stalled: nothing handled for {idle:?}, {now} events in all"
        );
        handled = now;
    }
    Ok(())
}
