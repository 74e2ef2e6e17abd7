use std::convert::Infallible;
use std::task::{Context, Poll};

use tower::{Layer, Service};
use tracing::Instrument;

use super::{Handling, HandlingFuture};
use crate::Disposition;

/// One `tidings.handle` span per handling, carrying the subscription, handler, event type and
/// id, attempt, W3C `traceparent` and its trace id ([`crate::trace`]) and, once known, the
/// disposition.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingLayer;

impl<S> Layer<S> for TracingLayer {
    type Service = Traced<S>;

    fn layer(&self, inner: S) -> Traced<S> {
        Traced { inner }
    }
}

/// The service of [`TracingLayer`].
#[derive(Debug, Clone)]
pub struct Traced<S> {
    inner: S,
}

impl<S> Service<Handling> for Traced<S>
where
    S: Service<Handling, Response = Disposition, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Disposition;
    type Error = Infallible;
    type Future = HandlingFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Handling) -> HandlingFuture {
        let span = tracing::info_span!(
            "tidings.handle",
            subscription = %req.subscription,
            handler = %req.handler,
            event.r#type = %req.envelope.ty,
            event.id = %req.envelope.id,
            event.source = %req.envelope.source,
            attempt = req.attempt,
            traceparent = req.envelope.extensions.traceparent.as_deref(),
            trace_id = req
                .envelope
                .extensions
                .traceparent
                .as_deref()
                .and_then(crate::trace::TraceParent::parse)
                .map(|t| t.trace_id()),
            disposition = tracing::field::Empty,
        );
        crate::trace::adopt(&span, req.envelope.extensions.traceparent.as_deref());
        let handled = self.inner.call(req);
        let record = span.clone();
        Box::pin(
            async move {
                let disposition = handled.await?;
                record.record("disposition", disposition.label());
                match &disposition {
                    Disposition::Retry { error, after } => {
                        tracing::warn!(%error, ?after, "handling failed, will retry");
                    }
                    Disposition::Reject(reason) => {
                        tracing::warn!(%reason, "handling failed for good, dead-lettering");
                    }
                    Disposition::Ack => tracing::debug!("handled"),
                }
                Ok(disposition)
            }
            .instrument(span),
        )
    }
}
