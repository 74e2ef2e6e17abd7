//! Typed domain events.

use crate::envelope::Category;

/// A typed domain event: a serde struct with a name (its CloudEvents `type` and topic) and a
/// schema version.
///
/// Usually implemented with `#[derive(DomainEvent)]` (re-exported by the `tidings` crate); by
/// hand it reads:
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use tidings_core::DomainEvent;
///
/// #[derive(Serialize, Deserialize)]
/// struct OrderCreated {
///     order_id: String,
///     total: f64,
/// }
///
/// impl DomainEvent for OrderCreated {
///     const NAME: &'static str = "order.created";
///     const VERSION: u32 = 1;
///     fn subject(&self) -> Option<String> {
///         Some(self.order_id.clone())
///     }
/// }
///
/// let event = OrderCreated { order_id: "o-1".into(), total: 10.0 };
/// assert_eq!(event.subject().as_deref(), Some("o-1"));
/// ```
pub trait DomainEvent:
    serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static
{
    /// The event type, also the topic it is published under, e.g. `order.created`.
    const NAME: &'static str;
    /// The schema version of the payload, written to the `dataversion` extension.
    const VERSION: u32;
    /// What kind of event this is, written to the `category` extension.
    const CATEGORY: Option<Category> = None;

    /// The aggregate this event is about, written to `subject` (and used as partition key).
    fn subject(&self) -> Option<String> {
        None
    }
}
