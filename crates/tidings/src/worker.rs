//! The loop that pulls deliveries of one subscription and runs them through its handlers.

use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tidings_core::dead_letter::{DeadLetter, Original, Reason, ReasonKind};
use tidings_core::topic::Matcher;
use tidings_core::transport::{Delivery, DeliveryStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

use crate::middleware::{Handling, ReadAhead};
use crate::route::Reader;
use crate::{Observer, Settlement};

pub(crate) type Stack = BoxCloneSyncService<Handling, Settlement, Infallible>;

pub(crate) struct Worker {
    pub(crate) name: Arc<str>,
    pub(crate) routes: Matcher<Routed>,
    pub(crate) concurrency: usize,
}

/// A route as the worker runs it: its handler's name, the middleware stack around it, and
/// what reads its data with the envelope.
pub(crate) struct Routed {
    pub(crate) handler: Arc<str>,
    pub(crate) stack: Stack,
    pub(crate) reader: Option<Reader>,
}

impl Worker {
    /// Runs until `stop` is cancelled or the stream ends; then stops intake, drops what was
    /// prefetched but not started (the transport redelivers it), and waits up to `drain` for
    /// in-flight handlers to finish and settle. Returns how many were still running.
    pub(crate) async fn run(
        self,
        mut stream: DeliveryStream,
        stop: CancellationToken,
        observer: Arc<dyn Observer>,
        drain: Duration,
    ) -> usize {
        let this = Arc::new(self);
        let slots = Arc::new(Semaphore::new(this.concurrency));
        let mut running = JoinSet::new();
        loop {
            while running.try_join_next().is_some() {}
            let slot = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                slot = slots.clone().acquire_owned() => slot.expect("never closed"),
            };
            let next = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                next = stream.next() => next,
            };
            match next {
                None => break,
                Some(Ok(delivery)) => {
                    let this = this.clone();
                    let observer = observer.clone();
                    running.spawn(async move {
                        this.handle(delivery, observer.as_ref(), slot).await;
                    });
                }
                Some(Err(error)) => {
                    // Transports reconnect on their own; a stream error is reported and the
                    // loop goes on after a pause so a broken stream cannot spin.
                    tracing::warn!(subscription = %this.name, %error, "delivery stream error");
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                }
            }
        }
        drop(stream);
        let drained = tokio::time::timeout(drain, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        match drained {
            Ok(()) => 0,
            Err(_) => {
                let left = running.len();
                tracing::warn!(
                    subscription = %this.name,
                    left,
                    "shutdown deadline passed; unsettled deliveries will be redelivered"
                );
                running.abort_all();
                left
            }
        }
    }

    /// Handles one delivery in a handler `slot`, which is given back once the handler is
    /// done, before the settlement: an acknowledgement on its way to the broker holds a
    /// delivery (the transport's prefetch bounds those) but not a handler, so that settling
    /// overlaps the next handling and the transports can coalesce acknowledgements.
    async fn handle(
        &self,
        delivery: Box<dyn Delivery>,
        observer: &dyn Observer,
        slot: OwnedSemaphorePermit,
    ) {
        let started = Instant::now();
        // The route is found by topic alone, so that its reader can read the envelope and
        // the handler's data in one pass before anything else asks for the envelope.
        let route = self.routes.matches(delivery.topic()).next().map(|(_, r)| r);
        let read_ahead = match (route.and_then(|r| r.reader), delivery.received()) {
            // A type whose deserializing panics fails as its handler would: not read ahead
            // here, outside the middleware, but again inside it, where the panic is caught
            // and retried like any transient failure.
            (Some(read), Some(received)) => {
                std::panic::catch_unwind(AssertUnwindSafe(|| read(received))).unwrap_or_default()
            }
            _ => ReadAhead::default(),
        };
        observer.on_received(&self.name, delivery.envelope().ok().map(|e| &**e));
        let envelope = match delivery.envelope() {
            Ok(envelope) => envelope.clone(),
            Err(undecodable) => {
                let letter = DeadLetter::new(
                    self.name.to_string(),
                    Original::Undecodable {
                        body: undecodable.body.clone(),
                        content_type: undecodable.content_type.clone(),
                    },
                    Reason::new(ReasonKind::Undecodable, undecodable.error.to_string()),
                )
                .with_attempts(delivery.attempt(), delivery.failures().first_failure_at);
                let settlement = Settlement::DeadLetter(Box::new(letter));
                drop(slot);
                self.settle(delivery, &settlement).await;
                observer.on_settled(&self.name, None, &settlement, started.elapsed());
                return;
            }
        };
        let Some(Routed { handler, stack, .. }) = route else {
            let reason = Reason::new(
                ReasonKind::UnknownType,
                format!(
                    "no handler of `{}` takes topic `{}` (type `{}`)",
                    self.name,
                    delivery.topic(),
                    envelope.ty
                ),
            );
            let letter = DeadLetter::new(
                self.name.to_string(),
                Original::Envelope(Box::new((*envelope).clone())),
                reason,
            )
            .with_attempts(delivery.attempt(), delivery.failures().first_failure_at);
            let settlement = Settlement::DeadLetter(Box::new(letter));
            drop(slot);
            self.settle(delivery, &settlement).await;
            observer.on_settled(&self.name, Some(&envelope), &settlement, started.elapsed());
            return;
        };
        let mut handling = Handling::new(envelope.clone(), self.name.clone(), handler.clone())
            .with_attempt(delivery.attempt(), delivery.failures().clone());
        handling.read_ahead = read_ahead;
        let Ok(settlement) = stack.clone().oneshot(handling).await;
        drop(slot);
        self.settle(delivery, &settlement).await;
        observer.on_settled(&self.name, Some(&envelope), &settlement, started.elapsed());
    }

    async fn settle(&self, delivery: Box<dyn Delivery>, settlement: &Settlement) {
        let result = match settlement {
            Settlement::Ack => delivery.ack().await,
            Settlement::Retry { after, error } => delivery.retry(*after, error).await,
            Settlement::DeadLetter(letter) => delivery.dead_letter((**letter).clone()).await,
        };
        if let Err(error) = result {
            // The delivery stays unsettled on the broker and comes back; at-least-once holds.
            tracing::warn!(subscription = %self.name, %error, "could not settle a delivery");
        }
    }
}
