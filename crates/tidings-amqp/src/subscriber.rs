//! Consuming a subscription's queue, across reconnections.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::Consumer;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use tidings_core::transport::{
    Delivery, DeliveryStream, Subscriber, SubscriptionSpec, TransportError,
};

use crate::AmqpTransport;
use crate::acks::Acks;
use crate::connection::Link;
use crate::delivery::{AmqpDelivery, Subscription};
use crate::error::{Error, Result};
use crate::topology::{self, Declaration, QueueNames, QueueSettings};

type Item = Result<Box<dyn Delivery>, TransportError>;

#[async_trait]
impl Subscriber for AmqpTransport {
    /// Declares the subscription's queues and bindings, then consumes with manual acks and
    /// the subscription's prefetch. The stream survives broker restarts: a consumer that
    /// loses its connection reconnects with backoff, declares again and resumes; what it
    /// held unacked is redelivered by the broker.
    async fn subscribe(&self, spec: &SubscriptionSpec) -> Result<DeliveryStream, TransportError> {
        let inner = &self.inner;
        if inner.connector.closed.is_cancelled() {
            return Err(TransportError::Closed);
        }
        let settings = QueueSettings {
            expires: spec.idle_expiry,
            ..QueueSettings::default()
        };
        let declarations =
            topology::subscription(&inner.config, &spec.name, &spec.patterns, &settings);
        // Declared before returning, so that configuration errors surface here and every
        // event published from now on is kept for the subscription.
        let patience = inner.config.publish_timeout;
        match tokio::time::timeout(
            patience,
            topology::declare_all(&inner.connector, &declarations),
        )
        .await
        {
            Ok(result) => result?,
            Err(_) => return Err(TransportError::Timeout(patience)),
        }
        let prefetch = inner
            .config
            .prefetch
            .unwrap_or_else(|| u16::try_from(spec.prefetch).unwrap_or(u16::MAX))
            .max(1);
        let subscription = Arc::new(Subscription {
            inner: inner.clone(),
            names: QueueNames::new(&inner.config, &spec.name),
        });
        if let Some(expires) = settings.expires.or(inner.config.queue_expires) {
            // Nothing consumes the dead-letter queue, so `x-expires` would remove it while
            // the subscription is in use: declaring it again keeps it.
            let dead_letters = declarations
                .iter()
                .filter(|d| {
                    matches!(d, Declaration::Queue { name, .. } if *name == subscription.names.dead_letters)
                })
                .cloned()
                .collect();
            tokio::spawn(keep_declared(
                Arc::downgrade(&subscription),
                dead_letters,
                expires / 3,
            ));
        }
        let consuming = Consuming {
            subscription,
            declarations,
            prefetch,
            current: None,
            failures: 0,
            declared: true,
        };
        // The stream polls lapin's consumer itself: no task and no channel between the
        // broker's deliveries and the caller.
        Ok(
            futures::stream::unfold(consuming, |mut consuming| async move {
                let item = consuming.next().await?;
                Some((item, consuming))
            })
            .boxed(),
        )
    }
}

/// Declares `declarations` again every `every` while the subscription's stream lives: an
/// unused queue with `x-expires` survives as long as it is declared again in time.
async fn keep_declared(
    subscription: std::sync::Weak<Subscription>,
    declarations: Vec<Declaration>,
    every: std::time::Duration,
) {
    loop {
        tokio::time::sleep(every.max(std::time::Duration::from_millis(100))).await;
        let Some(subscription) = subscription.upgrade() else {
            return;
        };
        let connector = &subscription.inner.connector;
        if connector.closed.is_cancelled() {
            return;
        }
        let patience = subscription.inner.config.publish_timeout;
        let declared =
            tokio::time::timeout(patience, topology::declare_all(connector, &declarations)).await;
        if !matches!(declared, Ok(Ok(()))) {
            // The broker is away: the stream declares everything again when it reconnects.
            tracing::debug!(queue = %subscription.names.dead_letters, "could not declare the dead-letter queue again");
        }
    }
}

/// The state of one delivery stream: the consumer it reads, and how to get another.
///
/// Dropping it stops intake (lapin cancels a consumer it drops). Deliveries handed out stay
/// ackable: their channel closes, returning what is unacked, once the last of them is
/// settled or dropped.
struct Consuming {
    subscription: Arc<Subscription>,
    declarations: Vec<Declaration>,
    prefetch: u16,
    /// The consumer, its channel's acks and its connection; `None` after the channel broke.
    current: Option<(Consumer, Arc<Acks>, Link)>,
    failures: u32,
    /// Whether the subscription is declared on the broker as far as this stream knows.
    declared: bool,
}

impl Consuming {
    /// The next delivery; `None` once the transport is closed. Reconnects, with backoff,
    /// while the broker is away.
    async fn next(&mut self) -> Option<Item> {
        let connector = self.subscription.inner.connector.clone();
        loop {
            if connector.closed.is_cancelled() {
                return None;
            }
            let Some((consumer, acks, link)) = &mut self.current else {
                if self.failures > 0 {
                    let pause = self
                        .subscription
                        .inner
                        .config
                        .reconnect
                        .jittered(self.failures, &mut fastrand::Rng::new());
                    tokio::select! {
                        () = connector.closed.cancelled() => return None,
                        () = tokio::time::sleep(pause) => {}
                    }
                }
                match open(
                    &self.subscription,
                    &self.declarations,
                    self.prefetch,
                    self.declared,
                )
                .await
                {
                    Ok(opened) => {
                        if self.failures > 0 {
                            tracing::info!(queue = %self.subscription.names.queue, "consuming again");
                        }
                        self.failures = 0;
                        self.current = Some(opened);
                    }
                    Err(Error::Closed) => return None,
                    Err(error) => {
                        self.failures += 1;
                        self.declared = false;
                        if error.is_transient() {
                            tracing::debug!(queue = %self.subscription.names.queue, %error, "cannot consume yet");
                        } else {
                            tracing::warn!(queue = %self.subscription.names.queue, %error, "cannot consume");
                            return Some(Err(error.into()));
                        }
                    }
                }
                continue;
            };
            let next = tokio::select! {
                biased;
                () = connector.closed.cancelled() => return None,
                () = link.gone.cancelled() => {
                    tracing::warn!(
                        queue = %self.subscription.names.queue,
                        "the consumer's connection was given up; consuming again"
                    );
                    self.current = None;
                    self.declared = false;
                    self.failures += 1;
                    continue;
                }
                next = consumer.next() => next,
            };
            match next {
                Some(Ok(raw)) => {
                    acks.track(raw.delivery_tag);
                    let delivery = AmqpDelivery::new(raw, acks.clone(), self.subscription.clone());
                    return Some(Ok(Box::new(delivery)));
                }
                Some(Err(error)) => {
                    tracing::warn!(
                        queue = %self.subscription.names.queue,
                        %error,
                        "consumer lost its channel; reconnecting"
                    );
                }
                None if connector.closed.is_cancelled() => return None,
                None => {
                    tracing::warn!(
                        queue = %self.subscription.names.queue,
                        "the broker cancelled the consumer; consuming again"
                    );
                }
            }
            // Declared again on the next channel: a broker that lost the queue gets it back.
            self.current = None;
            self.declared = false;
            self.failures += 1;
        }
    }
}

/// A consumer on a fresh channel (declaring the subscription again after a reconnection:
/// a broker that lost it gets it back).
async fn open(
    subscription: &Subscription,
    declarations: &[Declaration],
    prefetch: u16,
    declared: bool,
) -> Result<(Consumer, Arc<Acks>, Link)> {
    let connector = &subscription.inner.connector;
    let conn = connector.connection(None).await?;
    // A connection that answers nothing (half-open after a network fault, before heartbeats
    // notice) would stall the stream for good: the setup has the publish timeout, and a
    // connection that misses it is replaced.
    let patience = subscription.inner.config.publish_timeout;
    let setup = async {
        let channel = conn
            .create_channel()
            .await
            .map_err(|e| connector.error(&e, "opening a channel"))?;
        if !declared {
            for declaration in declarations {
                declaration.apply(&channel, connector, false).await?;
            }
        }
        channel
            .basic_qos(prefetch, BasicQosOptions { global: false })
            .await
            .map_err(|e| connector.error(&e, "setting the prefetch"))?;
        let queue = &subscription.names.queue;
        let consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| connector.error(&e, &format!("consuming from queue `{queue}`")))?;
        Ok((consumer, Acks::new(channel, connector.url().to_owned())))
    };
    let opened = tokio::time::timeout(patience, setup).await;
    match opened {
        Ok(opened) => opened.map(|(consumer, acks)| (consumer, acks, conn)),
        Err(_) => {
            connector.discard(&conn);
            Err(Error::Timeout(patience))
        }
    }
}
