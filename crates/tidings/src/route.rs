//! The bottom of the stack: adapters from [`Handling`] to a user's handler.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::FutureExt;
use tidings_core::DomainEvent;
use tidings_core::envelope::Envelope;
use tidings_core::topic::Pattern;
use tidings_core::transport::Received;
use tower::Service;
use tower::util::BoxCloneSyncService;

use crate::middleware::{Handling, HandlingFuture, ReadAhead};
use crate::{Disposition, Event, Handler, classify};

/// The handler side of a subscription: which topics go to which handler service.
pub(crate) struct Route {
    pub(crate) name: Arc<str>,
    pub(crate) pattern: Pattern,
    pub(crate) service: BoxCloneSyncService<Handling, Disposition, Infallible>,
    /// Reads a delivery's envelope and the handler's data in one pass, for a typed handler
    /// that can take the data as deserializing reads it.
    pub(crate) reader: Option<Reader>,
}

/// Reads the envelope and a typed handler's data from a body in one pass.
pub(crate) type Reader = fn(&Received) -> ReadAhead;

/// The data of a `T`'s route read with the envelope, when it is of `T`'s version.
fn read_ahead<T: DomainEvent>(received: &Received) -> ReadAhead {
    ReadAhead::of(received.read_with_data::<T>(tidings_core::event::is_current::<T>))
}

/// Decodes the data into `T`, upcast from the version it was written in, and calls a typed
/// handler. Data that does not fit `T` is a schema violation, and a version `T` cannot read
/// (newer, or older with no upcaster) an unsupported version: both are dead-lettered at once,
/// with the path of the offending field or the versions.
///
/// With the `validate` feature (a default), the upcast data is also held to `T`'s JSON Schema
/// ([`DomainEvent::data_schema`]) before it is deserialized, so that what serde alone lets
/// through (a `#[schemars(range(min = 1))]`, a `length`, a `pattern`) is dead-lettered too,
/// with the JSON pointer of the offending value. When the schema asserts nothing serde does
/// not check too (types, required fields, enums, integer widths: see
/// [`beyond_serde`](crate::schema::assertions::beyond_serde)), the data is deserialized
/// straight from its text, and the schema is run only on data that does not fit, for the
/// same pointer in the same words.
pub(crate) struct Typed<T, H> {
    handler: H,
    #[cfg(feature = "validate")]
    schema: Option<Arc<Schema>>,
    _event: PhantomData<fn() -> T>,
}

/// A type's compiled JSON Schema.
#[cfg(feature = "validate")]
struct Schema {
    validator: jsonschema::Validator,
    /// Whether it asserts something deserializing does not check.
    beyond_serde: bool,
}

impl<T, H: Clone> Clone for Typed<T, H> {
    fn clone(&self) -> Self {
        Self {
            handler: self.handler.clone(),
            #[cfg(feature = "validate")]
            schema: self.schema.clone(),
            _event: PhantomData,
        }
    }
}

impl<T: DomainEvent, H> Typed<T, H> {
    pub(crate) fn new(handler: H) -> Self {
        Self {
            handler,
            #[cfg(feature = "validate")]
            schema: schema::<T>(),
            _event: PhantomData,
        }
    }

    /// What reads the data with the envelope, in one pass, for this handler: only where
    /// deserializing checks all the data is held to (no schema beyond serde's checks), since
    /// a value read ahead goes to the handler without passing through [`Typed::data`].
    pub(crate) fn reader(&self) -> Option<Reader> {
        #[cfg(feature = "validate")]
        if self
            .schema
            .as_ref()
            .is_some_and(|schema| schema.beyond_serde)
        {
            return None;
        }
        Some(read_ahead::<T>)
    }

    /// The data of `envelope` as a `T`, held to `T`'s schema when there is one.
    fn data(&self, envelope: &Envelope) -> Result<T, Disposition> {
        #[cfg(feature = "validate")]
        if let Some(schema) = &self.schema {
            // Parsing the data into a `Value` for the validator, then into `T`, costs twice
            // what deserializing it does; when the schema adds nothing to that, only data
            // that does not fit pays for it, to be told where in the schema's words.
            if !schema.beyond_serde
                && let Ok(event) = tidings_core::event::decode::<T>(envelope)
            {
                return Ok(event);
            }
            return validated::<T>(&schema.validator, envelope);
        }
        tidings_core::event::decode::<T>(envelope).map_err(|e| classify::undecodable_data(&e))
    }
}

/// The data of `envelope` upcast to `T`'s version, held to `validator`, then read as a `T`.
#[cfg(feature = "validate")]
fn validated<T: DomainEvent>(
    validator: &jsonschema::Validator,
    envelope: &Envelope,
) -> Result<T, Disposition> {
    let data =
        tidings_core::event::upcast::<T>(envelope).map_err(|e| classify::undecodable_data(&e))?;
    // `is_valid` stops at the first failure without building errors; only invalid data pays
    // for finding what is wrong with it.
    if !validator.is_valid(&data)
        && let Some(error) = validator.iter_errors(&data).next()
    {
        return Err(classify::schema_violation(format!(
            "event data does not match the schema of {} v{} at `{}`: {error}",
            T::NAME,
            T::VERSION,
            error.instance_path()
        )));
    }
    // Moved out of the value, strings and all. Only data that does not fit is upcast again,
    // to find the path of the field at fault.
    match T::deserialize(data) {
        Ok(event) => Ok(event),
        Err(_) => tidings_core::event::upcast::<T>(envelope)
            .and_then(tidings_core::event::from_value::<T>)
            .map_err(|e| classify::undecodable_data(&e)),
    }
}

/// `T`'s schema, compiled once per route; none for a type without one. A schema the validator
/// cannot compile is a bug in a hand-written `data_schema`: warned about, and the data is
/// then held to serde alone.
#[cfg(feature = "validate")]
fn schema<T: DomainEvent>() -> Option<Arc<Schema>> {
    let schema = T::data_schema()?;
    let validator = match jsonschema::validator_for(schema.as_value()) {
        Ok(validator) => validator,
        Err(error) => {
            tracing::warn!(event = T::NAME, %error, "the event's JSON Schema does not compile; its data is checked by deserializing alone");
            return None;
        }
    };
    let beyond = crate::schema::assertions::beyond_serde(schema.as_value());
    tracing::debug!(
        event = T::NAME,
        beyond_serde = beyond.as_deref().unwrap_or("nothing"),
        "the data is validated before it is deserialized only when its schema asserts more than deserializing checks"
    );
    Some(Arc::new(Schema {
        validator,
        beyond_serde: beyond.is_some(),
    }))
}

impl<T: DomainEvent, H: Handler<Event<T>>> Service<Handling> for Typed<T, H> {
    type Response = Disposition;
    type Error = Infallible;
    type Future = HandlingFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Handling) -> HandlingFuture {
        let data = match req.read_ahead.take::<T>() {
            Some(data) => Ok(data),
            None => self.data(&req.envelope),
        };
        match data {
            Ok(data) => self
                .handler
                .call(Event::new(data, req.envelope))
                .map(|result| Ok(classify::result(result)))
                .boxed(),
            Err(disposition) => Box::pin(std::future::ready(Ok(disposition))),
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
