//! tidings' side: a [`Bus`] on the transport a URL names, publishing typed orders in batches
//! and handling them with a typed handler, as an application does (encoding, routing,
//! decoding, schema validation, de-duplication through the inbox, coalesced acks included).

use std::ops::Range;
use std::sync::Arc;

use anyhow::Context as _;
use async_trait::async_trait;
use tidings::topic::Pattern;
use tidings::transport::{SubscriptionSpec, Transport};
use tidings::{Bus, Event};

use super::event::{OrderCreated, Orders, TOPIC};
use super::raw::postgres::Vacuum;
use super::side::{CONCURRENCY, Consumer, PREFETCH, Side};
use super::tally::Tally;

/// The benchmark's subscription.
const SUBSCRIPTION: &str = "tidings-bench";

/// tidings on one transport.
pub(crate) struct TidingsSide {
    bus: Bus,
    /// Autovacuum's work, where the transport is PostgreSQL (see [`Side::tidy`]).
    vacuum: Option<Vacuum>,
}

impl TidingsSide {
    /// A bus on `transport`, with the benchmark's subscription declared; `fresh` declares it
    /// afresh, dropping whatever an interrupted run left in it.
    pub(crate) async fn new(transport: Arc<dyn Transport>, fresh: bool) -> anyhow::Result<Self> {
        if fresh {
            transport
                .remove_subscription(SUBSCRIPTION)
                .await
                .context("removing the benchmark's subscription of an earlier run")?;
        }
        drop(
            transport
                .subscribe(&SubscriptionSpec::new(
                    SUBSCRIPTION,
                    [Pattern::exact(TOPIC).expect("a topic")],
                ))
                .await
                .context("declaring the benchmark's subscription")?,
        );
        let bus = Bus::builder_shared(transport).source("bench").build()?;
        Ok(Self { bus, vacuum: None })
    }

    /// Vacuums the transport's queue table when the bench tidies, before the first case.
    pub(crate) fn with_vacuum(mut self, vacuum: Vacuum) -> Self {
        self.vacuum = Some(vacuum);
        self
    }
}

#[async_trait]
impl Side for TidingsSide {
    async fn publish(&self, orders: &Orders, range: Range<usize>) -> anyhow::Result<()> {
        Ok(self.bus.publish_batch(&orders.events[range]).await?)
    }

    async fn consume(&self, tally: Arc<Tally>) -> anyhow::Result<Consumer> {
        let counter = tally.clone();
        let running = self
            .bus
            .subscription(SUBSCRIPTION)
            .on::<OrderCreated, _>(move |_order: Event<OrderCreated>| {
                counter.hit();
                async { Ok(()) }
            })
            .concurrency(CONCURRENCY)
            .prefetch(PREFETCH.into())
            .start()
            .await?;
        Ok(Consumer::spawn(async move {
            tally.wait().await;
            running.stop().await;
            Ok(())
        }))
    }

    async fn tidy(&self) -> anyhow::Result<()> {
        match &self.vacuum {
            Some(vacuum) => vacuum.run().await,
            None => Ok(()),
        }
    }
}
