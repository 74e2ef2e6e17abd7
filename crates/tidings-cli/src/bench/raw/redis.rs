//! Redis Streams with the raw redis client: `XADD` of a batch in one pipeline, a consumer
//! group read with `XREADGROUP COUNT 256`, and each batch acknowledged and removed with one
//! `XACK` and one `XDEL`.

use std::ops::Range;
use std::sync::Arc;

use anyhow::Context as _;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamId, StreamReadReply};

use super::cloudevent;
use crate::bench::event::{Orders, TOPIC};
use crate::bench::side::{Consumer, PREFETCH, Side};
use crate::bench::tally::Tally;

const STREAM: &str = "tidings-bench-raw";
const GROUP: &str = "tidings-bench-raw";

/// Raw redis on connections of its own (one to write, one to block reading).
pub(crate) struct Redis {
    writer: MultiplexedConnection,
    client: redis::Client,
}

impl Redis {
    /// Connects; `fresh` drops what an interrupted run left in the stream.
    pub(crate) async fn connect(url: &str, fresh: bool) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let mut writer = client
            .get_multiplexed_async_connection()
            .await
            .context("raw redis: connecting")?;
        if fresh {
            let _: () = redis::cmd("DEL")
                .arg(STREAM)
                .query_async(&mut writer)
                .await?;
            let _: () = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(STREAM)
                .arg(GROUP)
                .arg("$")
                .arg("MKSTREAM")
                .query_async(&mut writer)
                .await?;
        }
        Ok(Self { writer, client })
    }
}

#[async_trait::async_trait]
impl Side for Redis {
    async fn publish(&self, orders: &Orders, range: Range<usize>) -> anyhow::Result<()> {
        let mut pipe = redis::pipe();
        for order in &orders.events[range] {
            let body = cloudevent::encode(order).body;
            pipe.cmd("XADD")
                .arg(STREAM)
                .arg("*")
                .arg("topic")
                .arg(TOPIC)
                .arg("content_type")
                .arg("application/cloudevents+json")
                .arg("body")
                .arg(body)
                .ignore();
        }
        let _: () = pipe.query_async(&mut self.writer.clone()).await?;
        Ok(())
    }

    async fn consume(&self, tally: Arc<Tally>) -> anyhow::Result<Consumer> {
        let mut reader = self.client.get_multiplexed_async_connection().await?;
        let mut writer = self.writer.clone();
        Ok(Consumer::spawn(async move {
            while !tally.is_complete() {
                let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(GROUP)
                    .arg("bench")
                    .arg("COUNT")
                    .arg(PREFETCH)
                    .arg("BLOCK")
                    .arg(1000)
                    .arg("STREAMS")
                    .arg(STREAM)
                    .arg(">")
                    .query_async(&mut reader)
                    .await?;
                let entries: Vec<StreamId> = reply
                    .map(|r| r.keys)
                    .unwrap_or_default()
                    .into_iter()
                    .flat_map(|k| k.ids)
                    .collect();
                if entries.is_empty() {
                    continue;
                }
                let mut ids = Vec::with_capacity(entries.len());
                for entry in entries {
                    let body: Vec<u8> = entry.get("body").context("an entry without a body")?;
                    cloudevent::decode(&body)?;
                    tally.hit();
                    ids.push(entry.id);
                }
                let _: () = redis::pipe()
                    .cmd("XACK")
                    .arg(STREAM)
                    .arg(GROUP)
                    .arg(&ids)
                    .ignore()
                    .cmd("XDEL")
                    .arg(STREAM)
                    .arg(&ids)
                    .ignore()
                    .query_async(&mut writer)
                    .await?;
            }
            Ok(())
        }))
    }
}
