//! The event being handled, visible to code running inside its handler, so that events
//! published from there carry `causationid` (the handled event's id) and keep its
//! `correlationid` and tenant.

use tidings_core::envelope::Envelope;

tokio::task_local! {
    static CURRENT: HandlingContext;
}

/// What an event published while handling another inherits from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlingContext {
    /// Id of the event being handled: the causation id of what it causes.
    pub event_id: String,
    /// The flow's correlation id (the handled event's own id if it had none).
    pub correlation_id: String,
    /// The handled event's tenant.
    pub tenant_id: Option<String>,
    /// The handled event's trace context.
    pub traceparent: Option<String>,
}

impl HandlingContext {
    /// The context of handling `envelope`.
    pub fn of(envelope: &Envelope) -> Self {
        Self {
            event_id: envelope.id.clone(),
            correlation_id: envelope.correlation_id().to_owned(),
            tenant_id: envelope.extensions.tenantid.clone(),
            traceparent: envelope.extensions.traceparent.clone(),
        }
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
        ext.causationid.get_or_insert_with(|| self.event_id.clone());
        ext.correlationid
            .get_or_insert_with(|| self.correlation_id.clone());
        if ext.tenantid.is_none() {
            ext.tenantid.clone_from(&self.tenant_id);
        }
        if ext.traceparent.is_none() {
            ext.traceparent.clone_from(&self.traceparent);
        }
    }
}
