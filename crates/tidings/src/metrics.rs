//! An [`Observer`](crate::Observer) that records through the [`metrics`] facade, for whatever
//! recorder the application installs (`tidings serve` renders Prometheus text at
//! `/metrics`).
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `tidings_published_total` | counter | |
//! | `tidings_delivered_total` | counter | `subscription` |
//! | `tidings_in_flight` | gauge | `subscription` |
//! | `tidings_settled_total` | counter | `subscription`, `outcome` (`acked`, `retried`, `dead_lettered`) |
//! | `tidings_handler_duration_seconds` | histogram | `subscription`, `outcome` |
//!
//! Labels never carry event types or ids: their number stays that of the subscriptions.
//!
//! ```
//! use tidings::memory::MemoryTransport;
//! use tidings::metrics::Metrics;
//! use tidings::Bus;
//!
//! let bus = Bus::builder(MemoryTransport::new())
//!     .observer(Metrics::new())
//!     .build()
//!     .unwrap();
//! # drop(bus);
//! ```

use std::time::Duration;

use tidings_core::envelope::Envelope;

use crate::{Observer, Settlement};

/// Records publishes and settlements; see the [module docs](self).
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct Metrics;

impl Metrics {
    /// The observer. Describes its metrics to the installed recorder.
    pub fn new() -> Self {
        metrics::describe_counter!(
            "tidings_published_total",
            "Events published and confirmed by the transport."
        );
        metrics::describe_counter!(
            "tidings_delivered_total",
            "Deliveries taken from the transport, by subscription."
        );
        metrics::describe_gauge!(
            "tidings_in_flight",
            "Deliveries being handled now, by subscription."
        );
        metrics::describe_counter!(
            "tidings_settled_total",
            "Deliveries handled and settled, by subscription and outcome."
        );
        metrics::describe_histogram!(
            "tidings_handler_duration_seconds",
            metrics::Unit::Seconds,
            "Time from receiving a delivery to settling it, by subscription and outcome."
        );
        Self
    }
}

impl Observer for Metrics {
    fn on_published(&self, _envelope: &Envelope) {
        metrics::counter!("tidings_published_total").increment(1);
    }

    fn on_received(&self, subscription: &str, _envelope: Option<&Envelope>) {
        let labels = [("subscription", subscription.to_owned())];
        metrics::counter!("tidings_delivered_total", &labels).increment(1);
        metrics::gauge!("tidings_in_flight", &labels).increment(1.0);
    }

    fn on_settled(
        &self,
        subscription: &str,
        _envelope: Option<&Envelope>,
        settlement: &Settlement,
        elapsed: Duration,
    ) {
        metrics::gauge!("tidings_in_flight", "subscription" => subscription.to_owned())
            .decrement(1.0);
        let outcome = match settlement {
            Settlement::Ack => "acked",
            Settlement::Retry { .. } => "retried",
            Settlement::DeadLetter(_) => "dead_lettered",
        };
        let labels = [
            ("subscription", subscription.to_owned()),
            ("outcome", outcome.to_owned()),
        ];
        metrics::counter!("tidings_settled_total", &labels).increment(1);
        metrics::histogram!("tidings_handler_duration_seconds", &labels)
            .record(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settlements_are_counted_and_timed_by_subscription_and_outcome() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let observer = Metrics::new();
            observer.on_published(&Envelope::new("oms", "order.created"));
            let ms = Duration::from_millis(20);
            observer.on_settled("billing", None, &Settlement::Ack, ms);
            observer.on_settled("billing", None, &Settlement::Ack, ms);
            let retry = Settlement::Retry {
                after: Duration::from_secs(1),
                error: "gateway down".to_owned(),
            };
            observer.on_settled("billing", None, &retry, ms);
        });
        let text = handle.render();
        assert!(text.contains("tidings_published_total 1"), "{text}");
        assert!(
            text.contains(r#"tidings_settled_total{subscription="billing",outcome="acked"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"tidings_settled_total{subscription="billing",outcome="retried"} 1"#),
            "{text}"
        );
        assert!(text.contains("tidings_handler_duration_seconds"), "{text}");
    }

    #[test]
    fn in_flight_rises_on_receipt_and_falls_on_settlement() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let observer = Metrics::new();
            for _ in 0..3 {
                observer.on_received("billing", None);
            }
            observer.on_settled("billing", None, &Settlement::Ack, Duration::ZERO);
        });
        let text = handle.render();
        assert!(
            text.contains(r#"tidings_delivered_total{subscription="billing"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"tidings_in_flight{subscription="billing"} 2"#),
            "{text}"
        );
    }
}
