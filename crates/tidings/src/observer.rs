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
