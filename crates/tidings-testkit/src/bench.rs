//! Side-by-side throughput measurements: tidings and a raw client, round by round.
//!
//! On a shared machine a broker's throughput swings from one run to the next; measuring the
//! raw client's samples first and tidings' afterwards would compare different weather. Here
//! each round runs both on the same number of events, alternating which goes first, and the
//! summary gives the median throughputs and the median and quartiles of the per-round ratio
//! tidings/raw.

use std::future::Future;
use std::time::Duration;

/// Throughputs of one case over all rounds.
#[derive(Debug, Clone, Default)]
pub struct Paired {
    /// Raw client, events per second, one per round.
    pub raw: Vec<f64>,
    /// tidings, events per second, one per round.
    pub tidings: Vec<f64>,
}

/// First quartile, median and third quartile of `values`.
pub fn quartiles(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    (at(0.25), at(0.5), at(0.75))
}

impl Paired {
    /// Runs `rounds` rounds of `raw` and `tidings`, each moving `events` events and returning
    /// the time it took, alternating which goes first.
    pub async fn measure<R, RF, T, TF>(
        rounds: usize,
        events: u64,
        mut raw: R,
        mut tidings: T,
    ) -> Self
    where
        R: FnMut() -> RF,
        RF: Future<Output = Duration>,
        T: FnMut() -> TF,
        TF: Future<Output = Duration>,
    {
        let rate = |spent: Duration| events as f64 / spent.as_secs_f64();
        let mut out = Self::default();
        for round in 0..rounds {
            let (r, t) = if round % 2 == 0 {
                let r = raw().await;
                (r, tidings().await)
            } else {
                let t = tidings().await;
                (raw().await, t)
            };
            out.raw.push(rate(r));
            out.tidings.push(rate(t));
        }
        out
    }

    /// Per-round ratios tidings/raw.
    pub fn ratios(&self) -> Vec<f64> {
        self.raw
            .iter()
            .zip(&self.tidings)
            .map(|(r, t)| t / r)
            .collect()
    }

    /// One line of the summary table: case, median raw/s, median tidings/s, median ratio and
    /// its quartiles.
    pub fn row(&self, case: &str) -> String {
        let (q1, ratio, q3) = quartiles(&self.ratios());
        format!(
            "{:<22} {:>12.0} {:>12.0} {:>6.1}% ({:.1}–{:.1})",
            case,
            quartiles(&self.raw).1,
            quartiles(&self.tidings).1,
            ratio * 100.0,
            q1 * 100.0,
            q3 * 100.0
        )
    }

    /// The table's header line.
    pub fn header() -> String {
        format!(
            "{:<22} {:>12} {:>12} {:>16}",
            "case", "raw/s", "tidings/s", "ratio (q1–q3)"
        )
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quartiles_of_a_few_values() {
        assert_eq!(quartiles(&[3.0, 1.0, 2.0, 5.0, 4.0]), (2.0, 3.0, 4.0));
        assert_eq!(quartiles(&[]), (0.0, 0.0, 0.0));
    }

    #[tokio::test]
    async fn rounds_alternate_and_ratios_pair_up() {
        let order = std::sync::Mutex::new(Vec::new());
        let paired = Paired::measure(
            4,
            100,
            || async {
                order.lock().unwrap().push('r');
                Duration::from_millis(100)
            },
            || async {
                order.lock().unwrap().push('t');
                Duration::from_millis(50)
            },
        )
        .await;
        assert_eq!(
            order.into_inner().unwrap(),
            ['r', 't', 't', 'r', 'r', 't', 't', 'r']
        );
        assert_eq!(paired.ratios(), [2.0; 4]);
        assert!(paired.row("publish").contains("200.0%"));
    }
}
