//! The tidings contract.
//!
//! Everything in tidings depends on this crate and on nothing else of tidings: the
//! CloudEvents [`Envelope`](envelope::Envelope), typed [`DomainEvent`]s, topic
//! [patterns](topic::Pattern), [codecs](codec), the [transport traits](transport) every broker
//! adapter implements, handler [outcomes](outcome), the [retry policy](retry), the
//! [inbox](inbox) and the [in-memory transport](memory) that is the reference implementation.
//!
//! Applications use the `tidings` crate, which re-exports what they need from here; adapter
//! crates depend on this one only.
//!
//! | module | what it holds |
//! |---|---|
//! | [`envelope`] | CloudEvents 1.0 envelope, extensions, data |
//! | [`broker_url`] | broker URLs that never print their password |
//! | [`codec`] | structured JSON and legacy flat codecs, typed decoding errors |
//! | [`event`] | the [`DomainEvent`] trait |
//! | [`topic`] | [`Pattern`](topic::Pattern) and the trie [`Matcher`](topic::Matcher) |
//! | [`naming`] | naming conventions checked at registration |
//! | [`outcome`] | [`HandlerError`](outcome::HandlerError): retry or reject |
//! | [`retry`] | exponential backoff with full jitter |
//! | [`dead_letter`] | dead-letter records and replay targets |
//! | [`inbox`] | de-duplication by (subscription, source, id) |
//! | [`outbox`] | the transactional outbox contract that relays drain |
//! | [`transport`] | `Publisher`, `Subscriber`, `Delivery`, `DeadLetters`, `Transport` |
//! | [`memory`] | the in-memory transport |

pub mod broker_url;
pub mod codec;
pub mod dead_letter;
pub mod envelope;
pub mod event;
pub mod inbox;
pub mod memory;
pub mod naming;
pub mod outbox;
pub mod outcome;
pub mod retry;
pub mod topic;
pub mod transport;

pub use event::{DomainEvent, UpcastError, Upcaster, VersionError};
/// The JSON Schema generator behind [`DomainEvent::data_schema`], for schemas by hand and for
/// the code `#[derive(DomainEvent)]` writes.
pub use schemars;
