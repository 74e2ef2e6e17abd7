use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use tidings_core::inbox::{Inbox, InboxKey};
use tower::{Layer, Service};

use super::{Handling, HandlingFuture, take_ready};
use crate::Disposition;

/// De-duplicates by (subscription, source, id): an event the inbox has recorded is acked
/// without running the handler; a handled one is recorded.
///
/// Two copies delivered at the same moment to two workers can both run; the inbox removes
/// the duplicates that at-least-once delivery produces over time (redeliveries, resends after
/// a lost confirm), which is what it is for.
#[derive(Clone)]
pub struct DedupeLayer {
    inbox: Arc<dyn Inbox>,
}

impl DedupeLayer {
    /// A layer recording in `inbox`.
    pub fn new(inbox: Arc<dyn Inbox>) -> Self {
        Self { inbox }
    }
}

impl std::fmt::Debug for DedupeLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DedupeLayer").finish_non_exhaustive()
    }
}

impl<S> Layer<S> for DedupeLayer {
    type Service = Dedupe<S>;

    fn layer(&self, inner: S) -> Dedupe<S> {
        Dedupe {
            inner,
            inbox: self.inbox.clone(),
        }
    }
}

/// The service of [`DedupeLayer`].
#[derive(Clone)]
pub struct Dedupe<S> {
    inner: S,
    inbox: Arc<dyn Inbox>,
}

impl<S> Service<Handling> for Dedupe<S>
where
    S: Service<Handling, Response = Disposition, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Disposition;
    type Error = Infallible;
    type Future = HandlingFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Handling) -> HandlingFuture {
        let mut inner = take_ready(&mut self.inner);
        let inbox = self.inbox.clone();
        Box::pin(async move {
            // Kept past the call that takes `req`, for the key and the warning.
            let (subscription, envelope) = (req.subscription.clone(), req.envelope.clone());
            let key = InboxKey::new(&subscription, &envelope.source, &envelope.id);
            match inbox.contains(key).await {
                Ok(true) => {
                    tracing::debug!(subscription = %key.subscription, id = %key.id, "duplicate skipped");
                    return Ok(Disposition::Ack);
                }
                Ok(false) => {}
                Err(e) => {
                    return Ok(Disposition::Retry {
                        after: None,
                        error: e.to_string(),
                    });
                }
            }
            let disposition = inner.call(req).await?;
            if disposition == Disposition::Ack
                && let Err(e) = inbox.insert(key).await
            {
                // Handled but not recorded: redelivery may run it again, which
                // at-least-once allows; acking now would lose nothing either, but the
                // next duplicate would slip through, so say so.
                tracing::warn!(error = %e, id = %envelope.id, "handled event not recorded in the inbox");
            }
            Ok(disposition)
        })
    }
}
