use std::time::Duration;

use tidings_core::envelope::Envelope;

use crate::Settlement;

/// Hooks called as events flow, for metrics, dashboards and logs. Every method has a no-op
/// default; `()` observes nothing.
pub trait Observer: Send + Sync + 'static {
    /// An event was published and confirmed.
    fn on_published(&self, envelope: &Envelope) {
        let _ = envelope;
    }

    /// A delivery was taken from the transport and is about to be handled; it is in flight
    /// until [`on_settled`](Self::on_settled) is called for it.
    fn on_received(&self, subscription: &str, envelope: Option<&Envelope>) {
        let _ = (subscription, envelope);
    }

    /// A delivery was handled and settled (the transport was told; `settlement` says what).
    fn on_settled(
        &self,
        subscription: &str,
        envelope: Option<&Envelope>,
        settlement: &Settlement,
        elapsed: Duration,
    ) {
        let _ = (subscription, envelope, settlement, elapsed);
    }
}

impl Observer for () {}

/// Two observers, both told everything, in order: `.observer((Metrics::new(), mine))`.
impl<A: Observer, B: Observer> Observer for (A, B) {
    fn on_published(&self, envelope: &Envelope) {
        self.0.on_published(envelope);
        self.1.on_published(envelope);
    }

    fn on_received(&self, subscription: &str, envelope: Option<&Envelope>) {
        self.0.on_received(subscription, envelope);
        self.1.on_received(subscription, envelope);
    }

    fn on_settled(
        &self,
        subscription: &str,
        envelope: Option<&Envelope>,
        settlement: &Settlement,
        elapsed: Duration,
    ) {
        self.0
            .on_settled(subscription, envelope, settlement, elapsed);
        self.1
            .on_settled(subscription, envelope, settlement, elapsed);
    }
}
