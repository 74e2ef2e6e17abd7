//! The measurements the RabbitMQ criterion benchmark makes: tidings and raw lapin moving the same
//! 5,000 order events of about 500 bytes, persistent, through one quorum queue.
//!
//! - raw publish: the best raw pattern, one confirm channel, every publish written before the
//!   confirmations are awaited (a window as wide as the batch, as `publish_batch` does),
//!   bodies encoded beforehand (not timed).
//! - tidings publish: `publish_batch` of the 5,000 envelopes, encoding included.
//! - raw consume: prefetch 256, no decoding, `basic.ack(multiple)` every 64 deliveries.
//! - tidings stream: the transport's delivery stream, prefetch 256, every event decoded,
//!   acks awaited concurrently so that they coalesce.
//! - tidings bus: a `Bus` subscription with a no-op handler, prefetch 256, 64 handlers at
//!   once: decoding, routing, middleware, de-duplication and coalesced acks included.
//!
//! Consumption is timed from the first delivery to the last, so that neither side pays for
//! declaring and subscribing; the queue is filled beforehand, untimed.

#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tidings::Bus;
use tidings::codec::{Codec, StructuredJson};
use tidings::envelope::Envelope;
use tidings::topic::Pattern;
use tidings::transport::{Publisher, Subscriber, SubscriptionSpec};
use tidings_amqp::{AmqpConfig, AmqpTransport};

pub const EVENTS: u64 = 5_000;
/// Unconfirmed publishes raw lapin allows itself.
const WINDOW: usize = EVENTS as usize;
const TOPIC: &str = "bench.order.created";
const EXCHANGE: &str = "tidings.events";
const QUEUE: &str = "tidings-bench";

fn url() -> String {
    std::env::var("RABBITMQ_URL").unwrap_or_else(|_| AmqpConfig::DEFAULT_URL.to_owned())
}

/// `EVENTS` distinct events (the bus's inbox would skip repeated ids).
fn events() -> Vec<Envelope> {
    (0..EVENTS)
        .map(|seq| tidings_testkit::sample::order(seq, TOPIC))
        .collect()
}

/// The events as tidings encodes them, for raw lapin to send.
fn bodies() -> Vec<Vec<u8>> {
    events()
        .iter()
        .map(|e| StructuredJson.encode(e).expect("encode"))
        .collect()
}

/// Both clients, connected to the broker, and the queue they share.
pub struct Rig {
    channel: Channel,
    consuming: Connection,
    properties: BasicProperties,
    transport: AmqpTransport,
    bus: Bus,
    _publishing: Connection,
}

impl Rig {
    pub async fn new() -> Self {
        let transport = AmqpTransport::connect(AmqpConfig::new(url()))
            .await
            .expect("RabbitMQ");
        drop(
            transport
                .subscribe(&SubscriptionSpec::new(
                    QUEUE,
                    [Pattern::parse(TOPIC).expect("pattern")],
                ))
                .await
                .expect("declare"),
        );
        let publishing = Connection::connect(&url(), ConnectionProperties::default())
            .await
            .expect("RabbitMQ");
        let channel = publishing.create_channel().await.expect("channel");
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirms");
        let consuming = Connection::connect(&url(), ConnectionProperties::default())
            .await
            .expect("RabbitMQ");
        let bus = Bus::builder(transport.clone())
            .source("bench")
            .build()
            .expect("bus");
        let rig = Self {
            channel,
            consuming,
            properties: BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/cloudevents+json".into()),
            transport,
            bus,
            _publishing: publishing,
        };
        rig.purge().await;
        rig
    }

    async fn purge(&self) {
        self.channel
            .queue_purge(QUEUE.into(), QueuePurgeOptions::default())
            .await
            .expect("purge");
    }

    /// Raw lapin's best publishing: confirmations awaited behind a window of unconfirmed
    /// publishes as wide as the batch.
    async fn send_raw(&self, bodies: &[Vec<u8>]) {
        let mut window: VecDeque<lapin::PublisherConfirm> = VecDeque::with_capacity(WINDOW);
        for body in bodies {
            if window.len() == WINDOW {
                window
                    .pop_front()
                    .expect("non-empty")
                    .await
                    .expect("confirmed");
            }
            window.push_back(
                self.channel
                    .basic_publish(
                        EXCHANGE.into(),
                        TOPIC.into(),
                        BasicPublishOptions {
                            mandatory: true,
                            ..BasicPublishOptions::default()
                        },
                        body,
                        self.properties.clone(),
                    )
                    .await
                    .expect("published"),
            );
        }
        for confirm in window {
            confirm.await.expect("confirmed");
        }
    }

    pub async fn raw_publish(&self) -> Duration {
        let bodies = bodies();
        let start = Instant::now();
        self.send_raw(&bodies).await;
        let spent = start.elapsed();
        self.purge().await;
        spent
    }

    pub async fn tidings_publish(&self) -> Duration {
        let events = events();
        let start = Instant::now();
        self.transport
            .publish_batch(&events)
            .await
            .expect("published");
        let spent = start.elapsed();
        self.purge().await;
        spent
    }

    pub async fn raw_consume(&self) -> Duration {
        self.send_raw(&bodies()).await;
        let channel = self.consuming.create_channel().await.expect("channel");
        channel
            .basic_qos(256, BasicQosOptions { global: false })
            .await
            .expect("qos");
        let mut consumer = channel
            .basic_consume(
                QUEUE.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume");
        let (mut last, mut first) = (0, None);
        for i in 1..=EVENTS {
            let delivery = consumer
                .next()
                .await
                .expect("a delivery")
                .expect("delivered");
            first.get_or_insert_with(Instant::now);
            last = delivery.delivery_tag;
            if i % 64 == 0 {
                channel
                    .basic_ack(last, BasicAckOptions { multiple: true })
                    .await
                    .expect("ack");
            }
        }
        channel
            .basic_ack(last, BasicAckOptions { multiple: true })
            .await
            .expect("ack");
        let spent = first.expect("deliveries").elapsed();
        let _ = channel.close(200, "done".into()).await;
        spent
    }

    pub async fn tidings_stream(&self) -> Duration {
        self.send_raw(&bodies()).await;
        let spec = SubscriptionSpec::new(QUEUE, [Pattern::parse(TOPIC).expect("pattern")])
            .with_prefetch(256);
        tidings_testkit::bench::drain_stream(&self.transport, &spec, EVENTS).await
    }

    pub async fn tidings_bus(&self) -> Duration {
        self.send_raw(&bodies()).await;
        tidings_testkit::bench::handle_through_bus(&self.bus, QUEUE, TOPIC, EVENTS).await
    }

    pub async fn shutdown(self) {
        self.bus.shutdown().await.expect("shutdown");
    }
}
