//! Counting what a consumer handled, and when: the one instrument every side reports to, so
//! that tidings and the raw clients are timed by the same clock in the same places.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// Events handled so far out of a target, the instants of the first and the last, and (for
/// latency runs) the instant each was handled.
#[derive(Debug)]
pub(crate) struct Tally {
    target: u64,
    handled: AtomicU64,
    first: OnceLock<Instant>,
    last: OnceLock<Instant>,
    origin: Instant,
    /// Nanoseconds after `origin` at which the k-th event was handled.
    stamps: Option<Box<[AtomicU64]>>,
    complete: AtomicBool,
    /// Turns true once, on the last event; any number of tasks wait on it.
    done: watch::Sender<bool>,
}

impl Tally {
    /// A tally of `target` events.
    pub(crate) fn new(target: u64) -> Self {
        Self::build(target, None)
    }

    /// A tally that also stamps each event's handling, against `origin`.
    pub(crate) fn stamped(target: u64, origin: Instant) -> Self {
        let stamps = (0..target).map(|_| AtomicU64::new(0)).collect();
        Self {
            origin,
            ..Self::build(target, Some(stamps))
        }
    }

    fn build(target: u64, stamps: Option<Box<[AtomicU64]>>) -> Self {
        Self {
            target,
            handled: AtomicU64::new(0),
            first: OnceLock::new(),
            last: OnceLock::new(),
            origin: Instant::now(),
            stamps,
            complete: AtomicBool::new(target == 0),
            done: watch::Sender::new(target == 0),
        }
    }

    /// Records one event handled. Wakes the waiter once, on the last: a wake per event
    /// would measure the benchmark's own cross-thread hops.
    pub(crate) fn hit(&self) {
        let k = self.handled.fetch_add(1, Ordering::Relaxed);
        if k == 0 {
            let _ = self.first.set(Instant::now());
        }
        if let Some(stamp) = self.stamps.as_ref().and_then(|s| s.get(k as usize)) {
            stamp.store(self.origin.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
        if k + 1 == self.target {
            let _ = self.last.set(Instant::now());
            self.complete.store(true, Ordering::Release);
            self.done.send_replace(true);
        }
    }

    /// Whether the target was reached.
    pub(crate) fn is_complete(&self) -> bool {
        self.complete.load(Ordering::Acquire)
    }

    /// Events handled so far.
    pub(crate) fn handled(&self) -> u64 {
        self.handled.load(Ordering::Relaxed)
    }

    /// Returns once the target is reached.
    pub(crate) async fn wait(&self) {
        let _ = self.done.subscribe().wait_for(|done| *done).await;
    }

    /// When the last event was handled (`None` before).
    pub(crate) fn finished_at(&self) -> Option<Instant> {
        self.last.get().copied()
    }

    /// From the first event handled to the last.
    pub(crate) fn span(&self) -> Duration {
        match (self.first.get(), self.last.get()) {
            (Some(first), Some(last)) => *last - *first,
            _ => Duration::ZERO,
        }
    }

    /// The instant the k-th event was handled, as nanoseconds after the origin.
    pub(crate) fn stamps(&self) -> Vec<u64> {
        self.stamps
            .iter()
            .flat_map(|s| s.iter().map(|a| a.load(Ordering::Relaxed)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_tally_completes_on_its_target_and_ignores_extra_hits_for_stamps() {
        let tally = Tally::stamped(3, Instant::now());
        for _ in 0..4 {
            tally.hit();
        }
        tally.wait().await;
        assert!(tally.is_complete());
        assert_eq!(tally.handled(), 4);
        assert_eq!(tally.stamps().len(), 3);
        assert!(tally.stamps().windows(2).all(|w| w[0] <= w[1]));
    }
}
