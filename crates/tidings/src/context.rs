//! The event being handled, visible to code running inside its handler, so that events
//! published from there carry `causationid` (the handled event's id) and keep its
//! `correlationid` and tenant.

use std::sync::Arc;

use tidings_core::envelope::Envelope;

tokio::task_local! {
    static CURRENT: HandlingContext;
}

/// What an event published while handling another inherits from it: the handled event
/// itself, shared, read when something is published (most handlings publish nothing, and
/// copying its id, correlation id, tenant and trace context for each cost four allocations).
#[derive(Debug, Clone)]
pub struct HandlingContext {
    event: Arc<Envelope>,
}

impl HandlingContext {
    /// The context of handling `envelope`.
    ///
    /// ```
    /// use tidings::HandlingContext;
    /// use tidings::envelope::Envelope;
    ///
    /// let paid = Envelope::new("billing", "order.paid").with_correlation_id("checkout-7");
    /// let context = HandlingContext::of(paid.clone());
    /// assert_eq!(context.event_id(), paid.id);
    /// assert_eq!(context.correlation_id(), "checkout-7");
    /// ```
    pub fn of(envelope: impl Into<Arc<Envelope>>) -> Self {
        Self {
            event: envelope.into(),
        }
    }

    /// Id of the event being handled: the causation id of what it causes.
    pub fn event_id(&self) -> &str {
        &self.event.id
    }

    /// The flow's correlation id (the handled event's own id if it had none).
    pub fn correlation_id(&self) -> &str {
        self.event.correlation_id()
    }

    /// The handled event's tenant.
    pub fn tenant_id(&self) -> Option<&str> {
        self.event.extensions.tenantid.as_deref()
    }

    /// The handled event's trace context.
    pub fn traceparent(&self) -> Option<&str> {
        self.event.extensions.traceparent.as_deref()
    }

    /// The context of the handler running on this task, if any.
    pub fn current() -> Option<Self> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// Runs `future` with this context as the current one.
    pub async fn scope<F: std::future::Future>(self, future: F) -> F::Output {
        CURRENT.scope(self, future).await
    }

    /// Fills in what `envelope` does not say itself: causation, correlation, tenant, trace.
    pub fn apply(&self, envelope: &mut Envelope) {
        let ext = &mut envelope.extensions;
        ext.causationid
            .get_or_insert_with(|| self.event_id().to_owned());
        ext.correlationid
            .get_or_insert_with(|| self.correlation_id().to_owned());
        if ext.tenantid.is_none() {
            ext.tenantid = self.tenant_id().map(str::to_owned);
        }
        if ext.traceparent.is_none() {
            ext.traceparent = self.traceparent().map(str::to_owned);
        }
    }
}

/// Two contexts are equal when what they hand down is: the event's id, correlation id,
/// tenant and trace context.
impl PartialEq for HandlingContext {
    fn eq(&self, other: &Self) -> bool {
        (
            self.event_id(),
            self.correlation_id(),
            self.tenant_id(),
            self.traceparent(),
        ) == (
            other.event_id(),
            other.correlation_id(),
            other.tenant_id(),
            other.traceparent(),
        )
    }
}

impl Eq for HandlingContext {}
