//! tidings: a domain event bus for Rust services.
//!
//! Typed domain events in one CloudEvents envelope, published to topics and handled by
//! subscriptions that match topic patterns (`order.*`, `payment.#`), with retries and backoff,
//! dead-letter queues you can inspect and replay, de-duplication, and the same behaviour on
//! every transport.
//!
//! # Crate map
//!
//! | crate | job |
//! |---|---|
//! | `tidings` (this one) | the [`Bus`], subscriptions, middleware, re-exports of the contract |
//! | `tidings-core` | the contract: envelope, codecs, patterns, transport traits, in-memory transport |
//! | `tidings-macros` | `#[derive(DomainEvent)]` |
//! | `tidings-testkit` | the conformance suite every transport runs |
//! | `tidings-sqlite` | the embedded durable store, outbox and inbox on SQLite, failover |
//! | `tidings-postgres` | the outbox and inbox on PostgreSQL |
//! | `tidings-amqp` | RabbitMQ: exchanges, quorum queues, delayed retries, dead letters, topology |
//! | `tidings-nats` | NATS JetStream: streams, pull consumers, nak-with-delay, a dead-letter stream |
//! | `tidings-redis` | Redis Streams: a stream per subscription, consumer groups, XAUTOCLAIM |
//! | `tidings-aws` | AWS: SNS or EventBridge to SQS, leases, redrive, dead-letter queues, topology |
//! | `tidings-cli` | the `tidings` command |
//!
//! # Example
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use tidings::{Bus, DomainEvent, Event, HandlerError};
//!
//! #[derive(Debug, Serialize, Deserialize, DomainEvent)]
//! #[event(name = "order.created", version = 1)]
//! struct OrderCreated {
//!     #[event(subject)]
//!     order_id: String,
//!     total: f64,
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tidings::Error> {
//! let bus = Bus::builder(tidings::memory::MemoryTransport::new())
//!     .source("oms-service")
//!     .build()?;
//! let (tx, mut rx) = tokio::sync::mpsc::channel(1);
//! bus.subscribe::<OrderCreated, _>("notification", move |event: Event<OrderCreated>| {
//!     let tx = tx.clone();
//!     async move {
//!         tx.send(event.order_id.clone()).await.map_err(HandlerError::reject)?;
//!         Ok(())
//!     }
//! })
//! .await?;
//!
//! bus.publish(&OrderCreated { order_id: "o-1".into(), total: 1000.0 }).await?;
//! assert_eq!(rx.recv().await.as_deref(), Some("o-1"));
//! bus.shutdown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! Transports other than the in-memory one live in their own crates and are switched on here
//! by one feature each.
//!
//! | feature | adds |
//! |---|---|
//! | `sqlite` | [`sqlite`]: the embedded durable store, SQLite outbox and inbox, failover publisher |
//! | `postgres` | [`postgres`]: the outbox and inbox on PostgreSQL |
//! | `amqp` | [`amqp`]: the RabbitMQ transport and topology files |
//! | `nats` | [`nats`]: the NATS JetStream transport |
//! | `redis` | [`redis`]: the Redis Streams transport |
//! | `aws` | [`aws`]: the AWS transport (SNS, EventBridge, SQS) and topology files |
//! | `metrics` | [`metrics`]: an [`Observer`] recording through the `metrics` facade |

mod bus;
mod classify;
mod context;
mod dead_letters;
mod error;
mod event;
mod handler;
pub mod middleware;
mod observer;
mod registry;
mod route;
pub mod schema;
mod subscription;
mod task;
pub mod trace;
mod worker;

pub use bus::{Bus, BusBuilder};
pub use classify::{Disposition, Settlement};
pub use context::HandlingContext;
pub use dead_letters::{DeadLetterQueue, ReplayRate};
pub use error::{Error, Result};
pub use event::Event;
pub use handler::Handler;
pub use middleware::Handling;
pub use observer::Observer;
pub use registry::EventType;
pub use subscription::{SubscriptionBuilder, SubscriptionHandle};
pub use task::{Task, TaskFailed};

pub use tidings_core::outcome::{Failure, HandlerError};
pub use tidings_core::{
    DomainEvent, UpcastError, Upcaster, VersionError, broker_url, codec, dead_letter, envelope,
    inbox, memory, naming, outbox, outcome, retry, schemars, transport,
};
pub use tidings_macros::DomainEvent;

/// The embedded durable store: [`SqliteTransport`](sqlite::SqliteTransport), the SQLite
/// outbox and inbox, the failover publisher (feature `sqlite`).
#[cfg(feature = "sqlite")]
pub use tidings_sqlite as sqlite;

/// The outbox and inbox on PostgreSQL (feature `postgres`).
#[cfg(feature = "postgres")]
pub use tidings_postgres as postgres;

/// RabbitMQ: [`AmqpTransport`](amqp::AmqpTransport), topology files (feature `amqp`).
#[cfg(feature = "amqp")]
pub use tidings_amqp as amqp;

/// NATS JetStream: [`NatsTransport`](nats::NatsTransport) (feature `nats`).
#[cfg(feature = "nats")]
pub use tidings_nats as nats;

/// Redis Streams: [`RedisTransport`](redis::RedisTransport) (feature `redis`).
#[cfg(feature = "redis")]
pub use tidings_redis as redis;

/// AWS: [`AwsTransport`](aws::AwsTransport) on SNS or EventBridge and SQS, topology files
/// (feature `aws`).
#[cfg(feature = "aws")]
pub use tidings_aws as aws;

/// Metrics through the `metrics` facade (feature `metrics`).
#[cfg(feature = "metrics")]
pub mod metrics;

/// Topic patterns with RabbitMQ topic-exchange semantics.
pub mod topic {
    pub use tidings_core::topic::*;
}

/// The README's examples, compiled and run as doc tests so that they stay true.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
