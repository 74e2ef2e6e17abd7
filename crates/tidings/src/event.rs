use std::ops::Deref;
use std::sync::Arc;

use tidings_core::envelope::Envelope;

/// A typed event as a handler receives it: the decoded data plus its envelope.
///
/// Derefs to the data, so `event.order_id` reads a field of the event.
#[derive(Debug, Clone)]
pub struct Event<T> {
    data: T,
    envelope: Arc<Envelope>,
}

impl<T> Event<T> {
    pub(crate) fn new(data: T, envelope: Arc<Envelope>) -> Self {
        Self { data, envelope }
    }

    /// The envelope it arrived in: id, source, time, subject, tenant, correlation...
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// The data.
    pub fn data(&self) -> &T {
        &self.data
    }

    /// The data, by value.
    pub fn into_data(self) -> T {
        self.data
    }
}

impl<T> Deref for Event<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.data
    }
}
