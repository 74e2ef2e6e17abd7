//! Live numbers for the dashboard: what this server published, and per subscription what it
//! took, has in flight and settled how, with the last failure.
//!
//! Counted by an [`Observer`] on the server's bus; the dashboard polls `GET /v1/stats` and
//! turns successive totals into rates. Prometheus gets the same flow from
//! [`tidings::metrics`]; this is the small JSON view of it that a page can read.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tidings::envelope::Envelope;
use tidings::{Observer, Settlement};

/// The counts, shared between the bus (which records) and the API (which reads).
#[derive(Debug, Clone)]
pub(crate) struct Stats(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    started: Instant,
    published: AtomicU64,
    subscriptions: Mutex<BTreeMap<String, Counts>>,
}

/// One subscription's counts.
#[derive(Debug, Default, Clone, Serialize)]
pub(crate) struct Counts {
    pub(crate) delivered: u64,
    pub(crate) in_flight: u64,
    pub(crate) acked: u64,
    pub(crate) retried: u64,
    pub(crate) dead_lettered: u64,
    /// When the last retry or dead letter happened, and why.
    pub(crate) last_failure: Option<Failure>,
}

/// A failure, as the dashboard shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Failure {
    pub(crate) at: DateTime<Utc>,
    pub(crate) error: String,
}

impl Stats {
    pub(crate) fn new() -> Self {
        Self(Arc::new(Inner {
            started: Instant::now(),
            published: AtomicU64::new(0),
            subscriptions: Mutex::new(BTreeMap::new()),
        }))
    }

    /// Events published through this server's bus.
    pub(crate) fn published(&self) -> u64 {
        self.0.published.load(Ordering::Relaxed)
    }

    /// How long the server has run.
    pub(crate) fn uptime(&self) -> Duration {
        self.0.started.elapsed()
    }

    /// The counts of `subscription` (zero when it has seen nothing yet).
    pub(crate) fn of(&self, subscription: &str) -> Counts {
        self.lock().get(subscription).cloned().unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Counts>> {
        self.0.subscriptions.lock().expect("stats lock")
    }
}

impl Observer for Stats {
    fn on_published(&self, _envelope: &Envelope) {
        self.0.published.fetch_add(1, Ordering::Relaxed);
    }

    fn on_received(&self, subscription: &str, _envelope: Option<&Envelope>) {
        let mut all = self.lock();
        let counts = all.entry(subscription.to_owned()).or_default();
        counts.delivered += 1;
        counts.in_flight += 1;
    }

    fn on_settled(
        &self,
        subscription: &str,
        _envelope: Option<&Envelope>,
        settlement: &Settlement,
        _elapsed: Duration,
    ) {
        let mut all = self.lock();
        let counts = all.entry(subscription.to_owned()).or_default();
        counts.in_flight = counts.in_flight.saturating_sub(1);
        let failure = |error: &str| {
            Some(Failure {
                at: Utc::now(),
                error: error.to_owned(),
            })
        };
        match settlement {
            Settlement::Ack => counts.acked += 1,
            Settlement::Retry { error, .. } => {
                counts.retried += 1;
                counts.last_failure = failure(error);
            }
            Settlement::DeadLetter(letter) => {
                counts.dead_lettered += 1;
                counts.last_failure = failure(&letter.reason.message);
            }
            // A settlement a later tidings adds: counted as taken, nothing more.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscription_counts_what_it_took_holds_and_settled() {
        let stats = Stats::new();
        stats.on_published(&Envelope::new("oms", "order.created"));
        for _ in 0..3 {
            stats.on_received("notify", None);
        }
        stats.on_settled("notify", None, &Settlement::Ack, Duration::ZERO);
        let retry = Settlement::Retry {
            after: Duration::from_secs(1),
            error: "503 Service Unavailable".to_owned(),
        };
        stats.on_settled("notify", None, &retry, Duration::ZERO);
        let counts = stats.of("notify");
        assert_eq!(stats.published(), 1);
        assert_eq!(
            (
                counts.delivered,
                counts.in_flight,
                counts.acked,
                counts.retried
            ),
            (3, 1, 1, 1)
        );
        assert_eq!(
            counts.last_failure.unwrap().error,
            "503 Service Unavailable"
        );
        assert_eq!(stats.of("unknown").delivered, 0);
    }
}
