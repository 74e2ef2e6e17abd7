use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::task::{Context, Poll};

use futures::FutureExt;
use tower::{Layer, Service};

use super::{Handling, HandlingFuture};
use crate::{Disposition, classify};

/// Catches a panicking handler (while building its future or while running it) and turns the
/// panic into a transient failure, so one bad input cannot take the worker down.
#[derive(Debug, Clone, Copy, Default)]
pub struct CatchPanicLayer;

impl<S> Layer<S> for CatchPanicLayer {
    type Service = CatchPanic<S>;

    fn layer(&self, inner: S) -> CatchPanic<S> {
        CatchPanic { inner }
    }
}

/// The service of [`CatchPanicLayer`].
#[derive(Debug, Clone)]
pub struct CatchPanic<S> {
    inner: S,
}

impl<S> Service<Handling> for CatchPanic<S>
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
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(req))) {
            Ok(handled) => Box::pin(async move {
                match AssertUnwindSafe(handled).catch_unwind().await {
                    Ok(result) => result,
                    Err(payload) => Ok(classify::panic(payload)),
                }
            }),
            Err(payload) => Box::pin(std::future::ready(Ok(classify::panic(payload)))),
        }
    }
}
