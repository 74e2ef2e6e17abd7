//! The transport a URL names, for the commands that take `--url`. An `amqp://` URL is tuned
//! by the `RABBITMQ_*` variables ([`tidings::amqp::AmqpConfig::from_env`]); an `aws://` URL
//! (with the `aws` feature) by the AWS environment and its own settings
//! ([`tidings::aws::AwsConfig::from_url`]).

use std::sync::Arc;

use anyhow::Context as _;
use tidings::transport::Transport;

/// The transport `url` names, connected.
pub(crate) async fn open(url: &str) -> anyhow::Result<Arc<dyn Transport>> {
    let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
    let redacted = tidings::broker_url::BrokerUrl::new(url).redacted();
    let transport: Arc<dyn Transport> = match scheme {
        "sqlite" => {
            let path = url.trim_start_matches("sqlite://");
            Arc::new(
                tidings::sqlite::SqliteTransport::open(tidings::sqlite::SqliteConfig::new(path))
                    .await
                    .with_context(|| format!("opening the store at {path}"))?,
            )
        }
        // The transports' connection errors name the URL (redacted) themselves.
        "amqp" | "amqps" => {
            // The variables RabbitMQ users already set (`RABBITMQ_PREFETCH`,
            // `RABBITMQ_DLQ_TTL`, ...) tune the transport of any amqp:// URL.
            let config = tidings::amqp::AmqpConfig::from_env()
                .context("the RABBITMQ_* environment variables")?
                .with_url(url);
            Arc::new(tidings::amqp::AmqpTransport::connect(config).await?)
        }
        "nats" | "tls" => Arc::new(
            tidings::nats::NatsTransport::connect(tidings::nats::NatsConfig::new(url)).await?,
        ),
        "redis" | "rediss" => Arc::new(
            tidings::redis::RedisTransport::connect(tidings::redis::RedisConfig::new(url)).await?,
        ),
        "postgres" | "postgresql" => Arc::new(
            tidings::postgres::PgTransport::connect(tidings::postgres::PgConfig::new(url)).await?,
        ),
        "aws" => aws(url).await?,
        _ => anyhow::bail!(
            "`{redacted}`: not a transport this tidings serves (sqlite://, postgres://, \
             amqp://, amqps://, nats://, tls://, redis://, rediss://, aws://)"
        ),
    };
    Ok(transport)
}

/// AWS (SNS or EventBridge, SQS) as the URL and the AWS environment configure it.
#[cfg(feature = "aws")]
async fn aws(url: &str) -> anyhow::Result<Arc<dyn Transport>> {
    let config = tidings::aws::AwsConfig::from_url(url)?;
    let transport = tidings::aws::AwsTransport::connect(config)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    Ok(Arc::new(transport))
}

/// Without the `aws` feature: says how to get it.
#[cfg(not(feature = "aws"))]
async fn aws(url: &str) -> anyhow::Result<Arc<dyn Transport>> {
    anyhow::bail!(
        "`{url}` is AWS, and this tidings was built without it: build with `--features aws`"
    )
}
