//! Event contracts on disk: the JSON Schemas of a bus's event types, a compatibility check
//! against a committed snapshot, and an AsyncAPI 3.0 document of what a service sends and
//! receives.
//!
//! A [`Catalog`] is a set of event types, each a name, a version and the JSON Schema of its
//! data. It comes from a running bus ([`Catalog::of`]) or from a directory
//! ([`Catalog::read`]), and [`Catalog::write`] lays one out as other teams and tools read it:
//!
//! ```text
//! schemas/
//!   asyncapi.json                 the service's channels, operations and messages
//!   order.placed/v1.schema.json   JSON Schema (draft 2020-12) of order.placed, version 1
//!   order.placed/v2.schema.json
//!   payment.failed/v1.schema.json
//! ```
//!
//! Commit that directory, and check each change against it in CI, in a test:
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use tidings::schema::Catalog;
//! use tidings::{Bus, DomainEvent};
//!
//! #[derive(Serialize, Deserialize, DomainEvent)]
//! #[event(name = "order.placed", version = 1)]
//! struct OrderPlaced {
//!     order_id: String,
//!     total_cents: u64,
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let bus = Bus::builder(tidings::memory::MemoryTransport::new())
//!     .source("checkout")
//!     .build()?;
//! bus.register::<OrderPlaced>()?;
//!
//! # let dir = std::env::temp_dir().join(format!("tidings-schema-doc-{}", std::process::id()));
//! # let snapshot = dir.join("snapshot");
//! # Catalog::of(&bus).write(&snapshot)?;
//! // `snapshot` is the committed directory.
//! let report = Catalog::of(&bus).compare_with(&Catalog::read(&snapshot)?);
//! assert!(!report.is_breaking(), "{report}");
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```
//!
//! or with the command line, on directories the application wrote:
//! `tidings schema check --against schemas/ target/schemas/`.

#[cfg(feature = "validate")]
pub(crate) mod assertions;
mod asyncapi;
mod catalog;
mod compat;

pub use catalog::{Catalog, EventSchema, SchemaError};
pub use compat::{Change, ChangeKind, Report};
/// The version a `dataversion` names (its major number: `2`, `v2`, `2.1` are version 2).
pub use tidings_core::event::major_version;
