//! Middleware around handlers, as tower [`Layer`](tower::Layer)s.
//!
//! Every delivery runs through one stack, outermost first:
//!
//! | layer | job |
//! |---|---|
//! | [`DeadLetterLayer`] | turns the final [`Disposition`] into a [`Settlement`](crate::Settlement), building the dead-letter record (envelope, error, attempts, first and last failure, handler, subscription) |
//! | [`TracingLayer`] | one span per handling, with the event's identity and trace context |
//! | [`RetryLayer`] | transient failures: redeliver after exponential backoff with full jitter, until the policy's last attempt |
//! | [`DedupeLayer`] | skip events the inbox has seen (by subscription, source, id); record handled ones |
//! | [`CorrelationLayer`] | events published by the handler carry `causationid` and keep `correlationid` |
//! | [`TimeoutLayer`] | a handler running too long is a transient failure |
//! | [`CatchPanicLayer`] | a panicking handler is a transient failure, not a dead worker |
//!
//! The layers speak `Service<Handling, Response = Disposition, Error = Infallible>`, so they
//! compose with any other tower layer of that shape.

mod catch_panic;
mod correlation;
mod dead_letter;
mod dedupe;
mod retry;
mod timeout;
mod tracing;

pub use catch_panic::{CatchPanic, CatchPanicLayer};
pub use correlation::{Correlation, CorrelationLayer};
pub use dead_letter::{DeadLetterLayer, DeadLettering};
pub use dedupe::{Dedupe, DedupeLayer};
pub use retry::{Retry, RetryLayer};
pub use timeout::{Timeout, TimeoutLayer};
pub use tracing::{Traced, TracingLayer};

use std::any::Any;
use std::convert::Infallible;
use std::sync::Arc;

use futures::future::BoxFuture;
use tidings_core::envelope::Envelope;
use tidings_core::transport::FailureHistory;

use crate::Disposition;

/// One delivery on its way through the middleware to a handler.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Handling {
    /// The event.
    pub envelope: Arc<Envelope>,
    /// Which delivery this is, from 1.
    pub attempt: u32,
    /// Earlier failures.
    pub failures: FailureHistory,
    /// The subscription.
    pub subscription: Arc<str>,
    /// The handler (route) chosen for it.
    pub handler: Arc<str>,
    /// The data, read with the envelope in one pass by the handler's route.
    pub(crate) read_ahead: ReadAhead,
}

/// A typed handler's data, read from the body in the same pass as its envelope, before the
/// middleware runs ([`Received::read_with_data`](tidings_core::transport::Received::read_with_data)).
///
/// It is for the one call that reaches the handler: a clone of the [`Handling`] does not
/// carry it, and reads the data from the envelope again.
#[derive(Default)]
pub(crate) struct ReadAhead(Option<Box<dyn Any + Send + Sync>>);

impl ReadAhead {
    /// Data read ahead, if any.
    pub(crate) fn of<T: Send + Sync + 'static>(data: Option<T>) -> Self {
        Self(data.map(|data| Box::new(data) as Box<dyn Any + Send + Sync>))
    }

    /// The data read ahead, if it is a `T`; it is gone afterwards.
    pub(crate) fn take<T: 'static>(&mut self) -> Option<T> {
        self.0.take()?.downcast::<T>().ok().map(|data| *data)
    }
}

impl Clone for ReadAhead {
    fn clone(&self) -> Self {
        Self(None)
    }
}

impl std::fmt::Debug for ReadAhead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "ReadAhead(..)"
        } else {
            "ReadAhead(None)"
        })
    }
}

impl Handling {
    /// A first delivery of `envelope` to `handler` of `subscription`.
    pub fn new(
        envelope: Arc<Envelope>,
        subscription: impl Into<Arc<str>>,
        handler: impl Into<Arc<str>>,
    ) -> Self {
        Self {
            envelope,
            attempt: 1,
            failures: FailureHistory::default(),
            subscription: subscription.into(),
            handler: handler.into(),
            read_ahead: ReadAhead::default(),
        }
    }

    /// Sets the attempt number and failure history.
    pub fn with_attempt(mut self, attempt: u32, failures: FailureHistory) -> Self {
        self.attempt = attempt;
        self.failures = failures;
        self
    }
}

/// The future every layer returns.
pub type HandlingFuture = BoxFuture<'static, Result<Disposition, Infallible>>;

/// Takes the service that `poll_ready` prepared and leaves a clone in its place, so the
/// ready one can move into a `'static` future (tower's usual pattern).
pub(crate) fn take_ready<S: Clone>(slot: &mut S) -> S {
    let clone = slot.clone();
    std::mem::replace(slot, clone)
}
