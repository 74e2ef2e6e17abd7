//! The bottom of the stack: adapters from [`Handling`] to a user's handler.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::FutureExt;
use tidings_core::DomainEvent;
use tidings_core::envelope::Envelope;
use tidings_core::topic::Pattern;
use tower::Service;
use tower::util::BoxCloneSyncService;

use crate::middleware::{Handling, HandlingFuture};
use crate::{Disposition, Event, Handler, classify};

/// The handler side of a subscription: which topics go to which handler service.
pub(crate) struct Route {
    pub(crate) name: Arc<str>,
    pub(crate) pattern: Pattern,
    pub(crate) service: BoxCloneSyncService<Handling, Disposition, Infallible>,
}

/// Decodes the data into `T`, upcast from the version it was written in, and calls a typed
/// handler. Data that does not fit `T` is a schema violation, and a version `T` cannot read
/// (newer, or older with no upcaster) an unsupported version: both are dead-lettered at once,
/// with the path of the offending field or the versions.
pub(crate) struct Typed<T, H> {
    handler: H,
    _event: PhantomData<fn() -> T>,
}

impl<T, H: Clone> Clone for Typed<T, H> {
    fn clone(&self) -> Self {
        Self {
            handler: self.handler.clone(),
            _event: PhantomData,
        }
    }
}

impl<T, H> Typed<T, H> {
    pub(crate) fn new(handler: H) -> Self {
        Self {
            handler,
            _event: PhantomData,
        }
    }
}

impl<T: DomainEvent, H: Handler<Event<T>>> Service<Handling> for Typed<T, H> {
    type Response = Disposition;
    type Error = Infallible;
    type Future = HandlingFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Handling) -> HandlingFuture {
        match tidings_core::event::decode::<T>(&req.envelope) {
            Ok(data) => self
                .handler
                .call(Event::new(data, req.envelope))
                .map(|result| Ok(classify::result(result)))
                .boxed(),
            Err(error) => Box::pin(std::future::ready(Ok(classify::undecodable_data(&error)))),
        }
    }
}

/// Calls a handler of raw envelopes.
#[derive(Clone)]
pub(crate) struct Raw<H> {
    handler: H,
}

impl<H> Raw<H> {
    pub(crate) fn new(handler: H) -> Self {
        Self { handler }
    }
}

impl<H: Handler<Arc<Envelope>>> Service<Handling> for Raw<H> {
    type Response = Disposition;
    type Error = Infallible;
    type Future = HandlingFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Handling) -> HandlingFuture {
        self.handler
            .call(req.envelope)
            .map(|result| Ok(classify::result(result)))
            .boxed()
    }
}
