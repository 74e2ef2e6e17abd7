//! What the NATS benchmarks measure: tidings and raw async-nats moving the same 5,000 order
//! events of about 500 bytes through one JetStream stream (file storage).
//!
//! - raw publish: every publish sent before the acknowledgements are awaited, with
//!   `Nats-Msg-Id` set as tidings sets it, bodies encoded beforehand (not timed).
//! - tidings publish: `publish_batch` of the 5,000 envelopes, encoding included.
//! - raw consume: a durable pull consumer, batches of 256, every message acked (explicit
//!   acks, as tidings needs them), no decoding.
//! - tidings stream: the transport's delivery stream, prefetch 256, every event decoded,
//!   acks awaited concurrently.
//! - tidings bus: a `Bus` subscription with a no-op handler, prefetch 256, 64 handlers at
//!   once.
//!
//! Raw and tidings use subjects of their own, so that neither's consumer holds the other's
//! messages; consumption is timed from the first delivery to the last ack, the stream being
//! filled beforehand, untimed.

#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt;
use tidings::Bus;
use tidings::codec::{Codec, StructuredJson};
use tidings::envelope::Envelope;
use tidings::topic::Pattern;
use tidings::transport::{Publisher, Subscriber, SubscriptionSpec};
use tidings_nats::{NatsConfig, NatsTransport};

pub const EVENTS: u64 = 5_000;
const RAW_SUBJECT: &str = "tidings.bench.raw.order.created";
const TOPIC: &str = "bench.tidings.order.created";
const SUBSCRIPTION: &str = "tidings-bench";

fn url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| NatsConfig::DEFAULT_URL.to_owned())
}

fn events() -> Vec<Envelope> {
    (0..EVENTS)
        .map(|seq| tidings_testkit::sample::order(seq, TOPIC))
        .collect()
}

/// Both clients, and what they consume from.
pub struct Rig {
    js: jetstream::Context,
    raw_consumer: jetstream::consumer::Consumer<pull::Config>,
    transport: NatsTransport,
    bus: Bus,
}

impl Rig {
    pub async fn new() -> Self {
        let transport = NatsTransport::connect(NatsConfig::new(url()))
            .await
            .expect("NATS");
        drop(
            transport
                .subscribe(&SubscriptionSpec::new(
                    SUBSCRIPTION,
                    [Pattern::parse(TOPIC).expect("pattern")],
                ))
                .await
                .expect("declare"),
        );
        let client = async_nats::connect(url()).await.expect("NATS");
        let js = jetstream::new(client);
        let stream = js.get_stream("TIDINGS").await.expect("stream");
        let raw_consumer = stream
            .create_consumer(pull::Config {
                durable_name: Some("tidings-bench-raw".to_owned()),
                filter_subject: RAW_SUBJECT.to_owned(),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                deliver_policy: jetstream::consumer::DeliverPolicy::New,
                max_ack_pending: 10_000,
                ..Default::default()
            })
            .await
            .expect("raw consumer");
        let bus = Bus::builder(transport.clone())
            .source("bench")
            .build()
            .expect("bus");
        let rig = Self {
            js,
            raw_consumer,
            transport,
            bus,
        };
        rig.purge().await;
        rig
    }

    async fn purge(&self) {
        let stream = self.js.get_stream("TIDINGS").await.expect("stream");
        for subject in [RAW_SUBJECT.to_owned(), format!("tidings.{TOPIC}")] {
            stream.purge().filter(subject).await.expect("purge");
        }
    }

    /// Raw async-nats publishing: everything sent, then every acknowledgement awaited.
    async fn send_raw(&self, subject: &str, events: &[Envelope]) {
        let bodies: Vec<(HeaderMap, bytes::Bytes)> = events
            .iter()
            .map(|e| {
                let mut headers = HeaderMap::new();
                headers.insert(NATS_MESSAGE_ID, format!("{}:{}", e.source, e.id).as_str());
                (headers, StructuredJson.encode(e).expect("encode").into())
            })
            .collect();
        let mut acks = Vec::with_capacity(bodies.len());
        for (headers, body) in bodies {
            acks.push(
                self.js
                    .publish_with_headers(subject.to_owned(), headers, body)
                    .await
                    .expect("published"),
            );
        }
        for ack in acks {
            ack.await.expect("acknowledged");
        }
    }

    pub async fn raw_publish(&self) -> Duration {
        let events = events();
        let start = Instant::now();
        self.send_raw(RAW_SUBJECT, &events).await;
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
        self.send_raw(RAW_SUBJECT, &events()).await;
        let mut messages = self
            .raw_consumer
            .stream()
            .max_messages_per_batch(256)
            .messages()
            .await
            .expect("pull");
        let mut first = None;
        for _ in 0..EVENTS {
            let message = messages
                .next()
                .await
                .expect("a message")
                .expect("delivered");
            first.get_or_insert_with(Instant::now);
            message.ack().await.expect("ack");
        }
        self.js.client().flush().await.expect("flush");
        first.expect("messages").elapsed()
    }

    pub async fn tidings_stream(&self) -> Duration {
        self.send_raw(&format!("tidings.{TOPIC}"), &events()).await;
        let spec = SubscriptionSpec::new(SUBSCRIPTION, [Pattern::parse(TOPIC).expect("pattern")])
            .with_prefetch(256);
        tidings_testkit::bench::drain_stream(&self.transport, &spec, EVENTS).await
    }

    pub async fn tidings_bus(&self) -> Duration {
        self.send_raw(&format!("tidings.{TOPIC}"), &events()).await;
        tidings_testkit::bench::handle_through_bus(&self.bus, SUBSCRIPTION, TOPIC, EVENTS).await
    }

    pub async fn shutdown(self) {
        self.bus.shutdown().await.expect("shutdown");
    }
}
