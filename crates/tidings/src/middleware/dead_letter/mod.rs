use std::convert::Infallible;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tidings_core::dead_letter::{DeadLetter, Original, Reason};
use tower::{Layer, Service};

use super::Handling;
use crate::{Disposition, Settlement};

/// The outermost layer: turns the final [`Disposition`] into what the transport is told. A
/// rejection becomes a dead letter carrying the original envelope untouched, the error, the
/// attempt count, the first and last failure times, the handler and the subscription.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeadLetterLayer;

impl<S> Layer<S> for DeadLetterLayer {
    type Service = DeadLettering<S>;

    fn layer(&self, inner: S) -> DeadLettering<S> {
        DeadLettering { inner }
    }
}

/// The service of [`DeadLetterLayer`].
#[derive(Debug, Clone)]
pub struct DeadLettering<S> {
    inner: S,
}

/// The dead-letter record of `req` failing for `reason` now.
pub(crate) fn record(req: &Handling, reason: Reason) -> DeadLetter {
    DeadLetter::new(
        req.subscription.to_string(),
        Original::Envelope(Box::new((*req.envelope).clone())),
        reason,
    )
    .with_handler(req.handler.to_string())
    .with_attempts(req.attempt, req.failures.first_failure_at)
}

impl<S> Service<Handling> for DeadLettering<S>
where
    S: Service<Handling, Response = Disposition, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Settlement;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Settlement, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Handling) -> Self::Future {
        // The clone is kept for the record; `req` goes on with the data read ahead, which
        // a clone does not carry.
        let kept = req.clone();
        let handled = self.inner.call(req);
        let req = kept;
        Box::pin(async move {
            Ok(match handled.await? {
                Disposition::Ack => Settlement::Ack,
                Disposition::Retry { after, error } => Settlement::Retry {
                    after: after.unwrap_or_default(),
                    error,
                },
                Disposition::Reject(reason) => {
                    Settlement::DeadLetter(Box::new(record(&req, reason)))
                }
            })
        })
    }
}
