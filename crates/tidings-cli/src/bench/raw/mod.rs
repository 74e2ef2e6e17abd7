//! The raw clients' sides: what a team writes by hand with the broker's own client library,
//! the best way that library allows, moving the same CloudEvents JSON that tidings sends.
//!
//! Each does the same durable work tidings does (persistent messages and publisher confirms,
//! explicit acknowledgements, a consumer prefetch of [`PREFETCH`](super::side::PREFETCH)),
//! and the least an application does with an event: it encodes each order as it publishes it
//! and decodes each one it receives ([`cloudevent`]). Nothing more: the ratio tidings/raw
//! charges tidings for its envelope, routing, schema validation, de-duplication, retries,
//! tracing and dispatch to typed handlers.

pub(crate) mod amqp;
pub(crate) mod channel;
pub(crate) mod cloudevent;
pub(crate) mod nats;
pub(crate) mod postgres;
pub(crate) mod redis;
pub(crate) mod sqlite;

use std::sync::Arc;

use anyhow::Context as _;
use tidings::broker_url::BrokerUrl;
use tidings::memory::{MemoryConfig, MemoryTransport};
use tidings::transport::Transport;

use super::side::{Pair, Side};
use super::tidings_side::TidingsSide;

/// The raw side and tidings' for the transport `url` names: `memory://`, `sqlite://[DIR]`
/// (a fresh temporary directory when none is named), `postgres://`, `amqp://`, `nats://` or
/// `redis://`. `fresh` drops what an interrupted run left on the broker.
pub(crate) async fn pair(url: &str, fresh: bool) -> anyhow::Result<Pair> {
    let scheme = url.split_once("://").map_or(url, |(scheme, _)| scheme);
    let redacted = BrokerUrl::new(url).redacted();
    let mut reopen = url.to_owned();
    let (transport, raw_client, raw, tidings): (_, _, Arc<dyn Side>, Arc<dyn Transport>) =
        match scheme {
            "memory" => (
                "memory",
                "tokio mpsc",
                Arc::new(channel::Channel::new()),
                // A round is published before it is consumed: the queue holds it all, as the
                // raw side's unbounded channel does.
                Arc::new(MemoryTransport::with_config(
                    MemoryConfig::default().with_queue_capacity(1 << 24),
                )),
            ),
            "sqlite" => {
                let files = sqlite::Files::new(url.trim_start_matches("sqlite://"))?;
                reopen = format!("sqlite://{}", files.dir().display());
                let store = files.tidings();
                let transport = tidings::sqlite::SqliteTransport::open(
                    tidings::sqlite::SqliteConfig::new(&store),
                )
                .await
                .with_context(|| format!("opening the store at {}", store.display()))?;
                let raw = sqlite::Sqlite::open(files, fresh).await?;
                (
                    "sqlite",
                    "sqlx (SQLite)",
                    Arc::new(raw),
                    Arc::new(transport),
                )
            }
            "postgres" | "postgresql" => {
                let raw = postgres::Postgres::connect(url, fresh).await?;
                let transport =
                    tidings::postgres::PgTransport::connect(tidings::postgres::PgConfig::new(url))
                        .await?;
                (
                    "postgres",
                    "sqlx (PostgreSQL)",
                    Arc::new(raw),
                    Arc::new(transport),
                )
            }
            "amqp" | "amqps" => {
                let raw = amqp::Amqp::connect(url, fresh).await?;
                let config = tidings::amqp::AmqpConfig::from_env()
                    .context("the RABBITMQ_* environment variables")?
                    .with_url(url);
                let transport = tidings::amqp::AmqpTransport::connect(config).await?;
                ("amqp", "lapin", Arc::new(raw), Arc::new(transport))
            }
            "nats" | "tls" => {
                let raw = nats::Nats::connect(url, fresh).await?;
                let transport =
                    tidings::nats::NatsTransport::connect(tidings::nats::NatsConfig::new(url))
                        .await?;
                (
                    "nats",
                    "async-nats (JetStream)",
                    Arc::new(raw),
                    Arc::new(transport),
                )
            }
            "redis" | "rediss" => {
                let raw = redis::Redis::connect(url, fresh).await?;
                let transport =
                    tidings::redis::RedisTransport::connect(tidings::redis::RedisConfig::new(url))
                        .await?;
                (
                    "redis",
                    "redis-rs (Streams)",
                    Arc::new(raw),
                    Arc::new(transport),
                )
            }
            _ => anyhow::bail!(
                "`{redacted}`: not a transport `tidings bench` measures (memory://, sqlite://, \
                 postgres://, amqp://, nats://, redis://)"
            ),
        };
    let mut tidings = TidingsSide::new(tidings, fresh).await?;
    if transport == "postgres" {
        tidings = tidings.with_vacuum(postgres::Vacuum::new(url));
    }
    Ok(Pair {
        transport,
        url: redacted,
        reopen,
        raw_client,
        raw,
        tidings: Arc::new(tidings),
    })
}
