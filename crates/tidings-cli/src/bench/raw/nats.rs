//! NATS JetStream with raw async-nats: a file-backed stream of its own, every publish of a
//! batch sent (with `Nats-Msg-Id`, as tidings sets it for de-duplication) before the
//! acknowledgements are awaited, and a durable pull consumer taking batches of 256 with
//! explicit acks.

use std::ops::Range;
use std::sync::Arc;

use anyhow::Context as _;
use async_nats::HeaderMap;
use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::{self, consumer::pull, stream};
use futures::StreamExt as _;

use super::cloudevent;
use crate::bench::event::Orders;
use crate::bench::side::{Consumer, PREFETCH, Side};
use crate::bench::tally::Tally;

const STREAM: &str = "TIDINGS_BENCH_RAW";
const SUBJECT: &str = "tidings-bench-raw.bench.order.created";
const CONSUMER: &str = "tidings-bench-raw";

/// Raw async-nats on its own connection and stream.
pub(crate) struct Nats {
    js: jetstream::Context,
    consumer: jetstream::consumer::Consumer<pull::Config>,
}

impl Nats {
    /// Connects; `fresh` drops what an interrupted run left in the stream.
    pub(crate) async fn connect(url: &str, fresh: bool) -> anyhow::Result<Self> {
        let client = async_nats::connect(url)
            .await
            .context("raw async-nats: connecting")?;
        let js = jetstream::new(client);
        if fresh {
            let _ = js.delete_stream(STREAM).await;
        }
        let stream = js
            .get_or_create_stream(stream::Config {
                name: STREAM.to_owned(),
                subjects: vec!["tidings-bench-raw.>".to_owned()],
                storage: stream::StorageType::File,
                retention: stream::RetentionPolicy::Interest,
                allow_direct: true,
                ..Default::default()
            })
            .await?;
        let consumer = stream
            .get_or_create_consumer(
                CONSUMER,
                pull::Config {
                    durable_name: Some(CONSUMER.to_owned()),
                    filter_subject: SUBJECT.to_owned(),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    deliver_policy: jetstream::consumer::DeliverPolicy::New,
                    ..Default::default()
                },
            )
            .await?;
        Ok(Self { js, consumer })
    }
}

#[async_trait::async_trait]
impl Side for Nats {
    async fn publish(&self, orders: &Orders, range: Range<usize>) -> anyhow::Result<()> {
        let mut acks = Vec::with_capacity(range.len());
        for order in &orders.events[range] {
            let cloudevent::Encoded { id, body } = cloudevent::encode(order);
            let mut headers = HeaderMap::new();
            headers.insert(NATS_MESSAGE_ID, id.as_str());
            acks.push(
                self.js
                    .publish_with_headers(SUBJECT, headers, body.into())
                    .await?,
            );
        }
        for ack in acks {
            ack.await?;
        }
        Ok(())
    }

    async fn consume(&self, tally: Arc<Tally>) -> anyhow::Result<Consumer> {
        let mut messages = self
            .consumer
            .stream()
            .max_messages_per_batch(PREFETCH.into())
            .messages()
            .await?;
        let client = self.js.client();
        Ok(Consumer::spawn(async move {
            while !tally.is_complete() {
                let message = messages
                    .next()
                    .await
                    .context("the pull consumer ended")?
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                cloudevent::decode(&message.payload)?;
                tally.hit();
                message.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            client.flush().await?;
            Ok(())
        }))
    }
}
