//! What the Redis benchmarks measure: tidings and the raw redis client moving the same
//! 5,000 order events of about 500 bytes through a subscription's stream.
//!
//! - raw publish: `XADD` of the pre-encoded bodies, pipelined 500 to a round trip (not
//!   atomic), into the one stream a consumer reads.
//! - tidings publish: `publish_batch` of the 5,000 envelopes: encoding, routing by pattern,
//!   and the version-checked script that adds them, 500 to a call.
//! - raw consume: `XREADGROUP COUNT 256`, then one `XACK` and one `XDEL` of the whole batch,
//!   no decoding.
//! - tidings stream: the transport's delivery stream, prefetch 256, every event decoded,
//!   acks awaited concurrently (batched into `XACK`+`XDEL` rounds).
//! - tidings bus: a `Bus` subscription with a no-op handler, prefetch 256, 64 handlers at
//!   once.
//!
//! Consumption is timed from the first delivery to the last ack, the stream being filled
//! beforehand, untimed.

#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::streams::StreamReadReply;
use tidings::Bus;
use tidings::codec::{Codec, StructuredJson};
use tidings::envelope::Envelope;
use tidings::topic::Pattern;
use tidings::transport::{Publisher, Subscriber, SubscriptionSpec};
use tidings_redis::{RedisConfig, RedisTransport};

pub const EVENTS: u64 = 5_000;
const TOPIC: &str = "bench.order.created";
const SUBSCRIPTION: &str = "tidings-bench";
const PREFIX: &str = "tidings-bench";
const RAW_STREAM: &str = "tidings-bench-raw";
const GROUP: &str = "bench";

fn url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| RedisConfig::DEFAULT_URL.to_owned())
}

fn events() -> Vec<Envelope> {
    (0..EVENTS)
        .map(|seq| tidings_testkit::sample::order(seq, TOPIC))
        .collect()
}

/// Both clients, and what they consume from.
pub struct Rig {
    raw: MultiplexedConnection,
    reader: MultiplexedConnection,
    transport: RedisTransport,
    bus: Bus,
}

impl Rig {
    pub async fn new() -> Self {
        let transport = RedisTransport::connect(RedisConfig::new(url()).prefix(PREFIX))
            .await
            .expect("Redis");
        drop(
            transport
                .subscribe(&SubscriptionSpec::new(
                    SUBSCRIPTION,
                    [Pattern::parse(TOPIC).expect("pattern")],
                ))
                .await
                .expect("declare"),
        );
        let client = redis::Client::open(url()).expect("url");
        let mut raw = client
            .get_multiplexed_async_connection()
            .await
            .expect("Redis");
        let _: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(RAW_STREAM)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut raw)
            .await;
        let reader = client
            .get_multiplexed_async_connection_with_config(
                &redis::AsyncConnectionConfig::new()
                    .set_response_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .expect("Redis");
        let bus = Bus::builder(transport.clone())
            .source("bench")
            .build()
            .expect("bus");
        let mut rig = Self {
            raw,
            reader,
            transport,
            bus,
        };
        rig.empty().await;
        rig
    }

    /// Empties both streams (their groups stay).
    async fn empty(&mut self) {
        for stream in [
            RAW_STREAM.to_owned(),
            format!("{{{PREFIX}}}:stream:{SUBSCRIPTION}"),
        ] {
            let _: () = redis::cmd("XTRIM")
                .arg(&stream)
                .arg("MAXLEN")
                .arg(0)
                .query_async(&mut self.raw)
                .await
                .expect("trim");
        }
    }

    /// Raw XADD of pre-encoded bodies, 500 to a pipeline.
    async fn send_raw(&mut self, stream: &str, events: &[Envelope]) {
        let bodies: Vec<(String, Vec<u8>)> = events
            .iter()
            .map(|e| (e.ty.clone(), StructuredJson.encode(e).expect("encode")))
            .collect();
        for chunk in bodies.chunks(500) {
            let mut pipe = redis::pipe();
            for (topic, body) in chunk {
                pipe.cmd("XADD")
                    .arg(stream)
                    .arg("*")
                    .arg("topic")
                    .arg(topic)
                    .arg("content_type")
                    .arg("application/cloudevents+json")
                    .arg("body")
                    .arg(&body[..])
                    .ignore();
            }
            let _: () = pipe.query_async(&mut self.raw).await.expect("xadd");
        }
    }

    pub async fn raw_publish(&mut self) -> Duration {
        let events = events();
        let start = Instant::now();
        self.send_raw(RAW_STREAM, &events).await;
        let spent = start.elapsed();
        self.empty().await;
        spent
    }

    pub async fn tidings_publish(&mut self) -> Duration {
        let events = events();
        let start = Instant::now();
        self.transport
            .publish_batch(&events)
            .await
            .expect("published");
        let spent = start.elapsed();
        self.empty().await;
        spent
    }

    pub async fn raw_consume(&mut self) -> Duration {
        self.send_raw(RAW_STREAM, &events()).await;
        let mut first = None;
        let mut done = 0;
        while done < EVENTS {
            let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg("raw")
                .arg("COUNT")
                .arg(256)
                .arg("BLOCK")
                .arg(1000)
                .arg("STREAMS")
                .arg(RAW_STREAM)
                .arg(">")
                .query_async(&mut self.reader)
                .await
                .expect("read");
            first.get_or_insert_with(Instant::now);
            let ids: Vec<String> = reply
                .map(|r| r.keys)
                .unwrap_or_default()
                .into_iter()
                .flat_map(|k| k.ids.into_iter().map(|id| id.id))
                .collect();
            if ids.is_empty() {
                continue;
            }
            done += ids.len() as u64;
            let _: () = redis::pipe()
                .cmd("XACK")
                .arg(RAW_STREAM)
                .arg(GROUP)
                .arg(&ids)
                .ignore()
                .cmd("XDEL")
                .arg(RAW_STREAM)
                .arg(&ids)
                .ignore()
                .query_async(&mut self.raw)
                .await
                .expect("ack");
        }
        first.expect("entries").elapsed()
    }

    pub async fn tidings_stream(&mut self) -> Duration {
        self.transport.publish_batch(&events()).await.expect("fill");
        let spec = SubscriptionSpec::new(SUBSCRIPTION, [Pattern::parse(TOPIC).expect("pattern")])
            .with_prefetch(256);
        tidings_testkit::bench::drain_stream(&self.transport, &spec, EVENTS).await
    }

    pub async fn tidings_bus(&mut self) -> Duration {
        self.transport.publish_batch(&events()).await.expect("fill");
        tidings_testkit::bench::handle_through_bus(&self.bus, SUBSCRIPTION, TOPIC, EVENTS).await
    }

    pub async fn shutdown(self) {
        self.bus.shutdown().await.expect("shutdown");
    }
}
