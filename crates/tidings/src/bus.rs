use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tidings_core::DomainEvent;
use tidings_core::envelope::{Data, Envelope};
use tidings_core::inbox::{Inbox, MemoryInbox};
use tidings_core::naming::NamingConvention;
use tidings_core::retry::RetryPolicy;
use tidings_core::transport::{SubscriptionSpec, Transport};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::registry::{EventType, Registration, Registry, Role};
use crate::worker::Worker;
use crate::{
    DeadLetterQueue, Error, Event, Handler, HandlingContext, Observer, Result, SubscriptionBuilder,
    SubscriptionHandle,
};

/// The event bus: publishes events and runs subscriptions on one transport.
///
/// Cheap to clone; clones share everything. See the [crate docs](crate) for an example.
#[derive(Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

/// How long [`Bus::shutdown`] waits for the transport to close.
const TRANSPORT_CLOSE_LIMIT: Duration = Duration::from_secs(10);

struct Inner {
    transport: Arc<dyn Transport>,
    source: String,
    registry: Registry,
    defaults: Defaults,
    inbox: Option<Arc<dyn Inbox>>,
    observer: Arc<dyn Observer>,
    shutdown: CancellationToken,
    workers: TaskTracker,
    running: Mutex<HashSet<String>>,
    /// Handlers abandoned at a shutdown deadline.
    abandoned: AtomicUsize,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Defaults {
    pub(crate) retry: RetryPolicy,
    pub(crate) timeout: Duration,
    pub(crate) concurrency: usize,
    pub(crate) drain: Duration,
}

/// Configures a [`Bus`].
#[must_use]
pub struct BusBuilder {
    transport: Arc<dyn Transport>,
    source: String,
    naming: Option<String>,
    defaults: Defaults,
    inbox: Option<Arc<dyn Inbox>>,
    observer: Arc<dyn Observer>,
}

impl BusBuilder {
    /// Sets the `source` of published events (default `tidings`): the service's name.
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    /// Requires event names to follow a convention such as
    /// `[company].[service].[version].event.[resource].[action]`; types that break it are
    /// refused when registered (subscribed or first published).
    pub fn naming_convention(mut self, template: impl Into<String>) -> Self {
        self.naming = Some(template.into());
        self
    }

    /// Default retry policy of subscriptions.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.defaults.retry = policy;
        self
    }

    /// Default limit on one handling (30 s unless set).
    pub fn handler_timeout(mut self, limit: Duration) -> Self {
        self.defaults.timeout = limit;
        self
    }

    /// Default number of deliveries a subscription handles at once (16 unless set).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.defaults.concurrency = n.max(1);
        self
    }

    /// How long shutdown waits for in-flight handlers (30 s unless set).
    pub fn shutdown_timeout(mut self, limit: Duration) -> Self {
        self.defaults.drain = limit;
        self
    }

    /// The inbox subscriptions de-duplicate with. Default: an in-memory window of the last
    /// 100,000 events per bus.
    pub fn inbox(mut self, inbox: impl Inbox) -> Self {
        self.inbox = Some(Arc::new(inbox));
        self
    }

    /// No de-duplication at all.
    pub fn without_inbox(mut self) -> Self {
        self.inbox = None;
        self
    }

    /// Hooks called as events flow.
    pub fn observer(mut self, observer: impl Observer) -> Self {
        self.observer = Arc::new(observer);
        self
    }

    /// Builds the bus. Fails if the naming convention does not parse.
    pub fn build(self) -> Result<Bus> {
        let convention = self
            .naming
            .as_deref()
            .map(NamingConvention::parse)
            .transpose()?;
        Ok(Bus {
            inner: Arc::new(Inner {
                transport: self.transport,
                source: self.source,
                registry: Registry::new(convention),
                defaults: self.defaults,
                inbox: self.inbox,
                observer: self.observer,
                shutdown: CancellationToken::new(),
                workers: TaskTracker::new(),
                running: Mutex::default(),
                abandoned: AtomicUsize::new(0),
            }),
        })
    }
}

impl Bus {
    /// Starts configuring a bus on `transport`.
    pub fn builder(transport: impl Transport) -> BusBuilder {
        Self::builder_shared(Arc::new(transport))
    }

    /// Starts configuring a bus on a transport shared with other code.
    pub fn builder_shared(transport: Arc<dyn Transport>) -> BusBuilder {
        BusBuilder {
            transport,
            source: "tidings".to_owned(),
            naming: None,
            defaults: Defaults {
                retry: RetryPolicy::default(),
                timeout: Duration::from_secs(30),
                concurrency: 16,
                drain: Duration::from_secs(30),
            },
            inbox: Some(Arc::new(MemoryInbox::default())),
            observer: Arc::new(()),
        }
    }

    /// The transport.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.inner.transport
    }

    /// The `source` of events this bus publishes.
    pub fn source(&self) -> &str {
        &self.inner.source
    }

    pub(crate) fn defaults(&self) -> Defaults {
        self.inner.defaults
    }

    pub(crate) fn inbox(&self) -> Option<Arc<dyn Inbox>> {
        self.inner.inbox.clone()
    }

    /// Registers an event type: checks its name against the naming convention. Subscribing
    /// and publishing register types on their own; call this to fail early at start-up.
    pub fn register<T: DomainEvent>(&self) -> Result<()> {
        self.register_as(Registration::of::<T>(), Role::Declared)
    }

    pub(crate) fn register_as(&self, registration: Registration, role: Role) -> Result<()> {
        Ok(self.inner.registry.register(registration, role)?)
    }

    /// The event types this bus knows so far, sorted by name and version: each with its
    /// JSON Schema, and whether the bus published it or handles it.
    ///
    /// ```
    /// use serde::{Deserialize, Serialize};
    /// use tidings::{Bus, DomainEvent};
    ///
    /// #[derive(Serialize, Deserialize, DomainEvent)]
    /// #[event(name = "order.created", version = 2)]
    /// struct OrderCreated {
    ///     order_id: String,
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> tidings::Result<()> {
    /// let bus = Bus::builder(tidings::memory::MemoryTransport::new()).build()?;
    /// bus.publish(&OrderCreated { order_id: "o-1".into() }).await?;
    /// let types = bus.event_types();
    /// assert_eq!((types[0].name, types[0].version), ("order.created", 2));
    /// assert!(types[0].published && !types[0].consumed);
    /// let schema = types[0].schema.as_ref().unwrap().as_value();
    /// assert_eq!(schema["required"][0], "order_id");
    /// # Ok(())
    /// # }
    /// ```
    pub fn event_types(&self) -> Vec<EventType> {
        self.inner.registry.types()
    }

    /// The envelope `event` would be published in: a fresh id, the bus's source, the type's
    /// name, version, category and subject, and, inside a handler, the causation and
    /// correlation of the event being handled.
    pub fn envelope<T: DomainEvent>(&self, event: &T) -> Result<Envelope> {
        self.register_as(Registration::of::<T>(), Role::Published)?;
        self.envelope_of_registered(event)
    }

    /// [`Bus::envelope`] of a type registered already.
    fn envelope_of_registered<T: DomainEvent>(&self, event: &T) -> Result<Envelope> {
        let data = Data::json(event).map_err(|source| Error::Serialize {
            ty: T::NAME,
            source,
        })?;
        let mut envelope = Envelope::new(self.inner.source.clone(), T::NAME)
            .with_data(data)
            .with_data_version(T::VERSION.to_string());
        envelope.datacontenttype = Some("application/json".to_owned());
        envelope.extensions.category = T::CATEGORY;
        if let Some(subject) = event.subject() {
            envelope.extensions.partitionkey = Some(subject.clone());
            envelope.subject = Some(subject);
        }
        Ok(envelope)
    }

    /// Publishes a typed event; returns once the transport confirmed it.
    pub async fn publish<T: DomainEvent>(&self, event: &T) -> Result<()> {
        let envelope = self.envelope(event)?;
        self.send(vec![envelope]).await
    }

    /// Publishes typed events as one batch, with confirms pipelined where the transport can.
    pub async fn publish_batch<T: DomainEvent>(&self, events: &[T]) -> Result<()> {
        if !events.is_empty() {
            self.register_as(Registration::of::<T>(), Role::Published)?;
        }
        let envelopes = events
            .iter()
            .map(|e| self.envelope_of_registered(e))
            .collect::<Result<Vec<_>>>()?;
        self.send(envelopes).await
    }

    /// Publishes a raw envelope (from another language, a gateway, a replay). Inside a
    /// handler, missing causation and correlation are filled in.
    pub async fn publish_envelope(&self, envelope: Envelope) -> Result<()> {
        self.publish_envelopes(vec![envelope]).await
    }

    /// Publishes raw envelopes as one batch. Their types are checked against the naming
    /// convention, as typed events are when registered.
    pub async fn publish_envelopes(&self, envelopes: Vec<Envelope>) -> Result<()> {
        for envelope in &envelopes {
            self.inner.registry.check(&envelope.ty)?;
        }
        self.send(envelopes).await
    }

    /// Fills in the handling context and publishes; names were checked by the caller.
    async fn send(&self, mut envelopes: Vec<Envelope>) -> Result<()> {
        if self.inner.shutdown.is_cancelled() {
            return Err(Error::Closed);
        }
        let context = HandlingContext::current();
        let inherited = context.as_ref().and_then(HandlingContext::traceparent);
        let span = tracing::info_span!(
            "tidings.publish",
            count = envelopes.len(),
            event.r#type = envelopes.first().map(|e| e.ty.as_str()),
            trace_id = tracing::field::Empty,
        );
        if context.is_none() {
            // Outside a handler, a trace the first event names is the publishing's parent.
            crate::trace::adopt(
                &span,
                envelopes
                    .first()
                    .and_then(|e| e.extensions.traceparent.as_deref()),
            );
        }
        let span_trace = crate::trace::of_span(&span);
        for envelope in &mut envelopes {
            let own = envelope.extensions.traceparent.take();
            if let Some(context) = &context {
                context.apply(envelope);
            }
            let traceparent = crate::trace::for_publish(own.as_deref(), span_trace, inherited);
            envelope.extensions.traceparent = Some(traceparent.header());
        }
        if let Some(first) = envelopes
            .first()
            .and_then(|e| e.extensions.traceparent.as_deref())
            .and_then(crate::trace::TraceParent::parse)
        {
            span.record("trace_id", first.trace_id());
        }
        self.inner
            .transport
            .publish_batch(&envelopes)
            .instrument(span)
            .await?;
        for envelope in &envelopes {
            self.inner.observer.on_published(envelope);
        }
        Ok(())
    }

    /// Starts building a subscription named `name`.
    pub fn subscription(&self, name: impl Into<String>) -> SubscriptionBuilder {
        SubscriptionBuilder::new(self.clone(), name.into())
    }

    /// Subscribes `handler` to events of type `T` under the durable name `name`.
    pub async fn subscribe<T, H>(
        &self,
        name: impl Into<String>,
        handler: H,
    ) -> Result<SubscriptionHandle>
    where
        T: DomainEvent,
        H: Handler<Event<T>>,
    {
        self.subscription(name).on::<T, H>(handler).start().await
    }

    /// Subscribes `handler` to every event whose topic matches `pattern` (e.g. `order.*`).
    pub async fn subscribe_pattern<H>(
        &self,
        name: impl Into<String>,
        pattern: &str,
        handler: H,
    ) -> Result<SubscriptionHandle>
    where
        H: Handler<Arc<Envelope>>,
    {
        self.subscription(name)
            .on_pattern(pattern, handler)
            .start()
            .await
    }

    /// The transport's dead-letter queues.
    pub fn dead_letters(&self) -> DeadLetterQueue {
        DeadLetterQueue::new(self.inner.transport.clone())
    }

    pub(crate) async fn start_worker(
        &self,
        spec: SubscriptionSpec,
        worker: Worker,
    ) -> Result<SubscriptionHandle> {
        if self.inner.shutdown.is_cancelled() {
            return Err(Error::Closed);
        }
        if !self
            .inner
            .running
            .lock()
            .expect("running lock")
            .insert(spec.name.clone())
        {
            return Err(Error::SubscriptionExists(spec.name));
        }
        let stream = match self.inner.transport.subscribe(&spec).await {
            Ok(stream) => stream,
            Err(e) => {
                self.forget(&spec.name);
                return Err(e.into());
            }
        };
        let stop = self.inner.shutdown.child_token();
        let (done_tx, done) = watch::channel(false);
        let bus = self.clone();
        let name = spec.name.clone();
        let token = stop.clone();
        self.inner.workers.spawn(async move {
            let left = worker
                .run(
                    stream,
                    token,
                    bus.inner.observer.clone(),
                    bus.inner.defaults.drain,
                )
                .await;
            bus.inner.abandoned.fetch_add(left, Ordering::Relaxed);
            bus.forget(&name);
            let _ = done_tx.send(true);
        });
        Ok(SubscriptionHandle {
            name: spec.name,
            stop,
            done,
        })
    }

    fn forget(&self, name: &str) {
        self.inner
            .running
            .lock()
            .expect("running lock")
            .remove(name);
    }

    /// Graceful shutdown: every subscription stops taking deliveries, in-flight handlers
    /// finish (within the shutdown timeout) and settle, then the transport closes. Publishing
    /// afterwards fails with [`Error::Closed`].
    ///
    /// Fails with [`Error::ShutdownTimeout`] when handlers were still running at the deadline;
    /// their deliveries were not settled and will be redelivered. The transport gets 10 s to
    /// close; one that does not answer by then is left, with a warning.
    pub async fn shutdown(&self) -> Result<()> {
        let started = Instant::now();
        self.inner.shutdown.cancel();
        self.inner.workers.close();
        self.inner.workers.wait().await;
        // A broker that stopped answering must not hold the shutdown for ever: what the
        // handlers settled is already sent, and what is left unacked comes back.
        match tokio::time::timeout(TRANSPORT_CLOSE_LIMIT, self.inner.transport.close()).await {
            Ok(closed) => closed?,
            Err(_) => tracing::warn!(
                transport = self.inner.transport.name(),
                limit = ?TRANSPORT_CLOSE_LIMIT,
                "the transport did not close in time; leaving it"
            ),
        }
        tracing::debug!(elapsed = ?started.elapsed(), "bus shut down");
        match self.inner.abandoned.load(Ordering::Relaxed) {
            0 => Ok(()),
            left => Err(Error::ShutdownTimeout(left)),
        }
    }
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("transport", &self.inner.transport.name())
            .field("source", &self.inner.source)
            .finish_non_exhaustive()
    }
}
