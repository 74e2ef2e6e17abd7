use std::convert::Infallible;
use std::task::{Context, Poll};

use tower::{Layer, Service};

use super::{Handling, HandlingFuture};
use crate::{Disposition, HandlingContext};

/// Makes the handled event the [`HandlingContext`] of its handler, so that events the handler
/// publishes carry its id as `causationid` and keep its `correlationid` and tenant.
#[derive(Debug, Clone, Copy, Default)]
pub struct CorrelationLayer;

impl<S> Layer<S> for CorrelationLayer {
    type Service = Correlation<S>;

    fn layer(&self, inner: S) -> Correlation<S> {
        Correlation { inner }
    }
}

/// The service of [`CorrelationLayer`].
#[derive(Debug, Clone)]
pub struct Correlation<S> {
    inner: S,
}

impl<S> Service<Handling> for Correlation<S>
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
        let context = HandlingContext::of(req.envelope.clone());
        let handled = self.inner.call(req);
        Box::pin(context.scope(handled))
    }
}
