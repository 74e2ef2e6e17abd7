//! The transactional outbox contract: events staged in the application's own database
//! transaction, later published by a relay.
//!
//! A store (`tidings-sqlite`, `tidings-postgres`) writes staged events into a table inside the
//! caller's transaction, so that an event exists if and only if the change that caused it was
//! committed. A [`Relay`] then [claims](OutboxStore::claim) batches, publishes them with the
//! transport's confirms, and [marks them sent](OutboxStore::mark_sent). The failover publisher
//! of `tidings-sqlite` runs the same relay over its local spool.
//!
//! # Order and concurrency
//!
//! Each staged event has an *ordering key*: its subject (the aggregate id) unless the store was
//! told otherwise. A claim only ever takes the oldest unsent events of a key, as one contiguous
//! run, and no other relay can claim later events of that key until the run is sent or its lease
//! expires. Several relays can therefore run at once: they share the keys between them, never
//! publish the same event twice in the normal case, and never reorder one key's events. A relay
//! that dies between publishing and marking leaves its lease to expire; the next relay publishes
//! those events again, and the subscribers' inbox removes the duplicates.

mod relay;

pub use relay::{Relay, RelayError, RelayHandle};

use std::time::Duration;

use async_trait::async_trait;

use crate::envelope::Envelope;
use crate::outcome::BoxError;

/// One staged event, claimed by a relay.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Staged {
    /// The row's position in the outbox; increases with staging order.
    pub position: i64,
    /// The event.
    pub envelope: Envelope,
}

impl Staged {
    /// A staged event at `position`.
    pub fn new(position: i64, envelope: Envelope) -> Self {
        Self { position, envelope }
    }
}

/// Where staged events wait for a relay.
#[async_trait]
pub trait OutboxStore: Send + Sync + 'static {
    /// Leases up to `limit` unsent events for `lease`: for each ordering key whose oldest
    /// unsent event is free, that event and the ones after it. The result is in staging order.
    async fn claim(&self, limit: usize, lease: Duration) -> Result<Vec<Staged>, OutboxError>;

    /// Marks claimed events as published.
    async fn mark_sent(&self, positions: &[i64]) -> Result<(), OutboxError>;

    /// Gives claimed events back, to be claimed again after `after`, with `error` recorded.
    async fn release(
        &self,
        positions: &[i64],
        after: Duration,
        error: &str,
    ) -> Result<(), OutboxError>;

    /// Waits until new events may have been staged, or `timeout` passes. Stores that can be
    /// told about new rows (Postgres `LISTEN`, an in-process signal) return early; the
    /// default just sleeps.
    async fn wait(&self, timeout: Duration) {
        tokio::time::sleep(timeout).await;
    }

    /// Unsent events, for monitoring.
    async fn pending(&self) -> Result<u64, OutboxError>;
}

/// The outbox table could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("outbox unavailable: {0}")]
pub struct OutboxError(#[source] pub BoxError);

impl OutboxError {
    /// Wraps any error.
    pub fn new(error: impl Into<BoxError>) -> Self {
        Self(error.into())
    }
}
