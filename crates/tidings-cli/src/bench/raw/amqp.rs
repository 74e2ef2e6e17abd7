//! RabbitMQ with raw lapin: a durable quorum queue bound to a topic exchange of its own,
//! persistent messages published on a confirm channel with every publish of a batch written
//! before its confirms are awaited, and a consumer with prefetch 256 acknowledging with
//! `multiple` every 64 deliveries.

use std::ops::Range;
use std::sync::Arc;

use anyhow::Context as _;
use futures::StreamExt as _;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

use super::cloudevent;
use crate::bench::event::Orders;
use crate::bench::side::{Consumer, PREFETCH, Side};
use crate::bench::tally::Tally;

const EXCHANGE: &str = "tidings-bench-raw";
const QUEUE: &str = "tidings-bench-raw";
const ROUTING_KEY: &str = "bench.order.created";
/// Deliveries acknowledged at once.
const ACK_EVERY: u64 = 64;

/// Raw lapin on its own connections.
pub(crate) struct Amqp {
    channel: Channel,
    consuming: Connection,
    properties: BasicProperties,
    _publishing: Connection,
}

impl Amqp {
    /// Connects; `fresh` drops what an interrupted run left in the queue.
    pub(crate) async fn connect(url: &str, fresh: bool) -> anyhow::Result<Self> {
        let publishing = Connection::connect(url, ConnectionProperties::default())
            .await
            .context("raw lapin: connecting")?;
        let channel = publishing.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        if fresh {
            channel
                .queue_delete(QUEUE.into(), QueueDeleteOptions::default())
                .await?;
        }
        channel
            .exchange_declare(
                EXCHANGE.into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        channel
            .queue_declare(
                QUEUE.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                arguments,
            )
            .await?;
        channel
            .queue_bind(
                QUEUE.into(),
                EXCHANGE.into(),
                "bench.order.*".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let consuming = Connection::connect(url, ConnectionProperties::default()).await?;
        Ok(Self {
            channel,
            consuming,
            properties: BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/cloudevents+json".into()),
            _publishing: publishing,
        })
    }
}

#[async_trait::async_trait]
impl Side for Amqp {
    async fn publish(&self, orders: &Orders, range: Range<usize>) -> anyhow::Result<()> {
        let mut confirms = Vec::with_capacity(range.len());
        for order in &orders.events[range] {
            let body = cloudevent::encode(order).body;
            confirms.push(
                self.channel
                    .basic_publish(
                        EXCHANGE.into(),
                        ROUTING_KEY.into(),
                        BasicPublishOptions {
                            mandatory: true,
                            ..BasicPublishOptions::default()
                        },
                        &body,
                        self.properties.clone(),
                    )
                    .await?,
            );
        }
        for confirm in confirms {
            let confirmation = confirm.await?;
            anyhow::ensure!(confirmation.is_ack(), "RabbitMQ refused a publish");
        }
        Ok(())
    }

    async fn consume(&self, tally: Arc<Tally>) -> anyhow::Result<Consumer> {
        let channel = self.consuming.create_channel().await?;
        channel
            .basic_qos(PREFETCH, BasicQosOptions { global: false })
            .await?;
        let mut deliveries = channel
            .basic_consume(
                QUEUE.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(Consumer::spawn(async move {
            let mut unacked = 0;
            while !tally.is_complete() {
                let delivery = deliveries
                    .next()
                    .await
                    .context("the consumer was cancelled")??;
                cloudevent::decode(&delivery.data)?;
                tally.hit();
                unacked += 1;
                if unacked == ACK_EVERY || tally.is_complete() {
                    channel
                        .basic_ack(delivery.delivery_tag, BasicAckOptions { multiple: true })
                        .await?;
                    unacked = 0;
                }
            }
            channel.close(200, "done".into()).await?;
            Ok(())
        }))
    }
}
