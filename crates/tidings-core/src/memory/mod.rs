//! The in-memory transport: the reference implementation of the transport contract.
//!
//! Everything the brokers do, in one process and without durability: fan-out between
//! subscriptions, competing consumers within one, bounded queues that make publishers wait
//! when full, delayed redelivery on a timer that holds no handler slot, dead-letter queues, and
//! redelivery of anything left unsettled. It runs the whole conformance suite with no
//! infrastructure, which makes it the yardstick the other transports are measured against.
//!
//! ```
//! use futures::StreamExt;
//! use tidings_core::envelope::Envelope;
//! use tidings_core::memory::MemoryTransport;
//! use tidings_core::topic::Pattern;
//! use tidings_core::transport::{Publisher, Subscriber, SubscriptionSpec};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let transport = MemoryTransport::new();
//! let spec = SubscriptionSpec::new("notification", [Pattern::parse("order.*").unwrap()]);
//! let mut deliveries = transport.subscribe(&spec).await.unwrap();
//!
//! transport.publish(&Envelope::new("oms", "order.created")).await.unwrap();
//! let delivery = deliveries.next().await.unwrap().unwrap();
//! assert_eq!(delivery.envelope().unwrap().ty, "order.created");
//! delivery.ack().await.unwrap();
//! # });
//! ```

mod config;
mod dead_letter;
mod delivery;
mod publisher;
mod queue;
mod subscriber;

pub use config::MemoryConfig;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tokio_util::sync::CancellationToken;

use crate::topic::{Matcher, Pattern};
use crate::transport::{Capabilities, Transport};
use queue::Queue;

/// An in-process transport. Clones share the same queues.
#[derive(Clone, Debug)]
pub struct MemoryTransport {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: MemoryConfig,
    closed: CancellationToken,
    routes: RwLock<Routes>,
}

/// Subscriptions and their bindings.
#[derive(Debug, Default)]
struct Routes {
    matcher: Matcher<Arc<Queue>>,
    queues: HashMap<String, Arc<Queue>>,
    bindings: std::collections::HashSet<(String, Pattern)>,
}

impl Default for MemoryTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryTransport {
    /// A transport with the default [`MemoryConfig`].
    pub fn new() -> Self {
        Self::with_config(MemoryConfig::default())
    }

    /// A transport with the given configuration.
    pub fn with_config(config: MemoryConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                config,
                closed: CancellationToken::new(),
                routes: RwLock::default(),
            }),
        }
    }

    /// Messages waiting in `subscription` (ready and delayed, not in flight).
    pub fn depth(&self, subscription: &str) -> usize {
        self.shared.queue(subscription).map_or(0, |q| q.depth())
    }

    /// Messages of `subscription` handed to consumers and not yet settled.
    pub fn in_flight(&self, subscription: &str) -> usize {
        self.shared.queue(subscription).map_or(0, |q| q.in_flight())
    }
}

impl Shared {
    fn queue(&self, name: &str) -> Option<Arc<Queue>> {
        self.routes
            .read()
            .expect("routes lock")
            .queues
            .get(name)
            .cloned()
    }

    /// Declares the queue of a subscription and binds its patterns (bindings accumulate, as
    /// on a broker).
    fn declare(&self, name: &str, patterns: &[Pattern]) -> Arc<Queue> {
        let mut routes = self.routes.write().expect("routes lock");
        let queue = routes
            .queues
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(Queue::new(name, self.config.queue_capacity)))
            .clone();
        for pattern in patterns {
            if routes.bindings.insert((name.to_owned(), pattern.clone())) {
                routes.matcher.insert(pattern.clone(), queue.clone());
            }
        }
        queue
    }

    /// The queues bound to `topic`, each once.
    fn route(&self, topic: &str) -> Vec<Arc<Queue>> {
        let routes = self.routes.read().expect("routes lock");
        let mut queues: Vec<Arc<Queue>> = Vec::new();
        for (_, queue) in routes.matcher.matches(topic) {
            if !queues.iter().any(|q| Arc::ptr_eq(q, queue)) {
                queues.push(queue.clone());
            }
        }
        queues
    }
}

#[async_trait::async_trait]
impl Transport for MemoryTransport {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with_ordering(true)
            .with_consumer_groups(true)
    }

    /// Forgets the queue (with what waits in it and its dead letters) and its bindings;
    /// streams still open on it receive nothing more.
    async fn remove_subscription(
        &self,
        name: &str,
    ) -> Result<(), crate::transport::TransportError> {
        let mut routes = self.shared.routes.write().expect("routes lock");
        let Some(queue) = routes.queues.remove(name) else {
            return Ok(());
        };
        routes
            .bindings
            .retain(|(subscription, _)| subscription != name);
        let mut matcher = Matcher::new();
        for (subscription, pattern) in &routes.bindings {
            if let Some(queue) = routes.queues.get(subscription) {
                matcher.insert(pattern.clone(), queue.clone());
            }
        }
        routes.matcher = matcher;
        queue.close();
        Ok(())
    }

    /// Ready until closed: there is nothing to lose a connection to.
    async fn ready(&self) -> Result<(), crate::transport::TransportError> {
        if self.shared.closed.is_cancelled() {
            return Err(crate::transport::TransportError::Closed);
        }
        Ok(())
    }
}
