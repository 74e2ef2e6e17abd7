use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use tidings_core::DomainEvent;
use tidings_core::envelope::Envelope;
use tidings_core::retry::RetryPolicy;
use tidings_core::topic::{Matcher, Pattern};
use tidings_core::transport::SubscriptionSpec;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower::util::BoxCloneSyncService;

use crate::middleware::{
    CatchPanicLayer, CorrelationLayer, DeadLetterLayer, DedupeLayer, Handling, RetryLayer,
    TimeoutLayer, TracingLayer,
};
use crate::registry::{Registration, Role};
use crate::route::{Raw, Route, Typed};
use crate::worker::{Routed, Worker};
use crate::{Bus, Disposition, Error, Event, Handler, Result};

/// Builds a subscription: a durable name, one or more routes (typed or by pattern), and how
/// its deliveries are handled.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # use std::sync::Arc;
/// # use std::time::Duration;
/// use tidings::{Bus, DomainEvent, Event, envelope::Envelope, retry::RetryPolicy};
///
/// #[derive(Serialize, Deserialize, DomainEvent)]
/// #[event(name = "order.paid")]
/// struct OrderPaid { order_id: String }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> tidings::Result<()> {
/// let bus = Bus::builder(tidings::memory::MemoryTransport::new()).build()?;
/// let handle = bus
///     .subscription("notification")
///     .on::<OrderPaid, _>(|event: Event<OrderPaid>| async move { Ok(()) })
///     .on_pattern("customer.#", |envelope: Arc<Envelope>| async move { Ok(()) })
///     .retry(RetryPolicy::exponential(Duration::from_millis(200)).with_max_attempts(3))
///     .concurrency(4)
///     .start()
///     .await?;
/// handle.stop().await;
/// # Ok(())
/// # }
/// ```
#[must_use = "a subscription does nothing until started"]
pub struct SubscriptionBuilder {
    bus: Bus,
    name: String,
    routes: Vec<Route>,
    registrations: Vec<Registration>,
    error: Option<Error>,
    retry: RetryPolicy,
    timeout: Duration,
    concurrency: usize,
    prefetch: Option<usize>,
    dedupe: bool,
}

impl SubscriptionBuilder {
    pub(crate) fn new(bus: Bus, name: String) -> Self {
        let defaults = bus.defaults();
        Self {
            bus,
            name,
            routes: Vec::new(),
            registrations: Vec::new(),
            error: None,
            retry: defaults.retry,
            timeout: defaults.timeout,
            concurrency: defaults.concurrency,
            prefetch: None,
            dedupe: true,
        }
    }

    /// Handles events of type `T`, decoded.
    pub fn on<T, H>(mut self, handler: H) -> Self
    where
        T: DomainEvent,
        H: Handler<Event<T>>,
    {
        match Pattern::exact(T::NAME) {
            Ok(pattern) => {
                self.registrations.push(Registration::of::<T>());
                let typed = Typed::<T, H>::new(handler);
                let reader = typed.reader();
                let mut route = self.route(T::NAME, pattern, typed);
                route.reader = reader;
                self.routes.push(route);
            }
            Err(e) => {
                self.error.get_or_insert(e.into());
            }
        }
        self
    }

    /// Handles every event whose topic matches `pattern`, as a raw envelope.
    pub fn on_pattern<H>(mut self, pattern: &str, handler: H) -> Self
    where
        H: Handler<Arc<Envelope>>,
    {
        match Pattern::parse(pattern) {
            Ok(parsed) => {
                self.routes
                    .push(self.route(pattern, parsed, Raw::new(handler)));
            }
            Err(e) => {
                self.error.get_or_insert(e.into());
            }
        }
        self
    }

    /// Sets the retry policy (default: the bus's).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Sets how long one handling may take (default: the bus's).
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = limit;
        self
    }

    /// Sets how many deliveries are handled at once (default: the bus's).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Sets how many unsettled deliveries the transport may hand over at once (default: twice
    /// the concurrency).
    pub fn prefetch(mut self, n: usize) -> Self {
        self.prefetch = Some(n.max(1));
        self
    }

    /// Turns de-duplication through the bus's inbox on or off (default on when the bus has an
    /// inbox).
    pub fn dedupe(mut self, yes: bool) -> Self {
        self.dedupe = yes;
        self
    }

    fn route<S>(&self, name: &str, pattern: Pattern, service: S) -> Route
    where
        S: tower::Service<Handling, Response = Disposition, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        Route {
            name: name.into(),
            pattern,
            service: BoxCloneSyncService::new(service),
            reader: None,
        }
    }

    /// Registers the event types, declares the subscription on the transport and starts
    /// handling.
    pub async fn start(self) -> Result<SubscriptionHandle> {
        if let Some(error) = self.error {
            return Err(error);
        }
        if self.routes.is_empty() {
            return Err(Error::NoHandler(self.name));
        }
        for registration in &self.registrations {
            self.bus.register_as(*registration, Role::Consumed)?;
        }
        let inbox = self.bus.inbox().filter(|_| self.dedupe);
        let mut matcher = Matcher::new();
        let mut patterns = Vec::new();
        for route in self.routes {
            let stack = ServiceBuilder::new()
                .layer(DeadLetterLayer)
                .layer(TracingLayer)
                .layer(RetryLayer::new(self.retry))
                .option_layer(inbox.clone().map(DedupeLayer::new))
                .layer(CorrelationLayer)
                .layer(TimeoutLayer::new(self.timeout))
                .layer(CatchPanicLayer)
                .service(route.service);
            if !patterns.contains(&route.pattern) {
                patterns.push(route.pattern.clone());
            }
            matcher.insert(
                route.pattern,
                Routed {
                    handler: route.name,
                    stack: BoxCloneSyncService::new(stack),
                    reader: route.reader,
                },
            );
        }
        let spec = SubscriptionSpec::new(&self.name, patterns)
            .with_prefetch(self.prefetch.unwrap_or(self.concurrency * 2));
        let worker = Worker {
            name: self.name.as_str().into(),
            routes: matcher,
            concurrency: self.concurrency,
        };
        self.bus.start_worker(spec, worker).await
    }
}

/// A running subscription.
#[derive(Debug)]
pub struct SubscriptionHandle {
    pub(crate) name: String,
    pub(crate) stop: CancellationToken,
    pub(crate) done: watch::Receiver<bool>,
}

impl SubscriptionHandle {
    /// The subscription's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stops taking new deliveries, lets in-flight handlers finish (within the bus's shutdown
    /// timeout), settles them and returns.
    pub async fn stop(mut self) {
        self.stop.cancel();
        let _ = self.done.wait_for(|done| *done).await;
    }

    /// Whether the subscription's worker has ended.
    pub fn is_finished(&self) -> bool {
        *self.done.borrow()
    }
}
