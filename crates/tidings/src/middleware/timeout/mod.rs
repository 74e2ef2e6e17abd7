use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Duration;

use tower::{Layer, Service};

use super::{Handling, HandlingFuture};
use crate::{Disposition, classify};

/// Bounds how long a handler may run; past the limit the handler is dropped and the delivery
/// fails transiently.
#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    limit: Duration,
}

impl TimeoutLayer {
    /// A layer with the given limit.
    pub fn new(limit: Duration) -> Self {
        Self { limit }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout {
            inner,
            limit: self.limit,
        }
    }
}

/// The service of [`TimeoutLayer`].
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    limit: Duration,
}

impl<S> Service<Handling> for Timeout<S>
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
        let limit = self.limit;
        let handled = self.inner.call(req);
        Box::pin(async move {
            match tokio::time::timeout(limit, handled).await {
                Ok(result) => result,
                Err(_) => Ok(classify::timeout(limit)),
            }
        })
    }
}
