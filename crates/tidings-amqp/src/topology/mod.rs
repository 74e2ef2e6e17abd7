//! What tidings declares on the broker, as data: exchanges, queues and bindings.
//!
//! A subscription `notification` to `order.*` becomes:
//!
//! | declaration | name | settings |
//! |---|---|---|
//! | topic exchange | `tidings.events` (or the pattern's domain exchange) | durable |
//! | direct exchange | `tidings.dead-letter` | durable |
//! | queue | `notification` | quorum, dead-letters to `tidings.dead-letter` with key `notification`, at-least-once, `x-delivery-limit` |
//! | queue | `notification.dlq` | classic, durable, optional `x-message-ttl` |
//! | binding | `notification.dlq` ← `tidings.dead-letter` | key `notification` |
//! | binding | `notification` ← `tidings.events` | key `order.*` |
//!
//! Delayed retries add, on demand, `notification.retry.<ms>` queues whose messages expire
//! after `<ms>` and dead-letter back to `notification` through the default exchange.
//!
//! The runtime and `tidings topology plan|apply` make the same declarations from the same
//! code, so a topology file and a running service never disagree about a queue's arguments.

mod file;

pub use file::{
    BindingSpec, Change, ExchangeSpec, Plan, QueueSpec, ServiceSubscription, Step, Topology,
};
pub(crate) use file::{apply, plan};

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, ExchangeKind};
use tidings_core::topic::Pattern;

use crate::config::{AmqpConfig, QueueType};
use crate::connection::Connector;
use crate::error::{Error, Result};

/// A queue or exchange argument.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum Argument {
    /// A string, e.g. `x-queue-type = "quorum"`.
    Text(String),
    /// An integer, e.g. `x-message-ttl = 86400000`.
    Integer(i64),
    /// A boolean, e.g. `x-single-active-consumer = true`.
    Flag(bool),
}

impl Argument {
    fn to_amqp(&self) -> AMQPValue {
        match self {
            Argument::Text(s) => AMQPValue::LongString(s.as_str().into()),
            Argument::Integer(i) => AMQPValue::LongLongInt(*i),
            Argument::Flag(b) => AMQPValue::Boolean(*b),
        }
    }
}

impl fmt::Display for Argument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Argument::Text(s) => write!(f, "{s:?}"),
            Argument::Integer(i) => write!(f, "{i}"),
            Argument::Flag(b) => write!(f, "{b}"),
        }
    }
}

/// One thing declared on the broker. Every declaration is durable and idempotent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Declaration {
    /// An exchange.
    Exchange {
        /// Its name.
        name: String,
        /// `topic`, `direct`, `fanout` or `headers`.
        kind: String,
    },
    /// A durable queue.
    Queue {
        /// Its name.
        name: String,
        /// Its `x-` arguments.
        arguments: BTreeMap<String, Argument>,
    },
    /// A binding of a queue to an exchange.
    Binding {
        /// The queue.
        queue: String,
        /// The exchange.
        exchange: String,
        /// The binding key (a topic pattern on topic exchanges).
        key: String,
    },
}

impl fmt::Display for Declaration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Declaration::Exchange { name, kind } => write!(f, "exchange `{name}` ({kind})"),
            Declaration::Queue { name, arguments } => {
                write!(f, "queue `{name}`")?;
                if !arguments.is_empty() {
                    let args: Vec<String> =
                        arguments.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    write!(f, " [{}]", args.join(", "))?;
                }
                Ok(())
            }
            Declaration::Binding {
                queue,
                exchange,
                key,
            } => write!(f, "binding `{queue}` <- `{exchange}` key `{key}`"),
        }
    }
}

fn exchange_kind(kind: &str) -> ExchangeKind {
    match kind {
        "topic" => ExchangeKind::Topic,
        "direct" => ExchangeKind::Direct,
        "fanout" => ExchangeKind::Fanout,
        "headers" => ExchangeKind::Headers,
        other => ExchangeKind::Custom(other.to_owned()),
    }
}

fn short(name: &str, what: &str) -> Result<ShortString> {
    ShortString::try_new(name).map_err(|_| Error::Config {
        reason: format!("{what} `{name}` is longer than the 255 bytes AMQP allows"),
    })
}

impl Declaration {
    /// What the broker calls it in errors: `queue `x``.
    pub(crate) fn subject(&self) -> String {
        match self {
            Declaration::Exchange { name, .. } => format!("exchange `{name}`"),
            Declaration::Queue { name, .. } => format!("queue `{name}`"),
            Declaration::Binding { queue, key, .. } => {
                format!("binding of queue `{queue}` with key `{key}`")
            }
        }
    }

    /// Declares it on `channel`. A refusal (406 for other arguments) closes the channel.
    pub(crate) async fn apply(
        &self,
        channel: &Channel,
        connector: &Connector,
        passive: bool,
    ) -> Result<()> {
        let operation = format!("declaring {}", self.subject());
        let failed = |e: lapin::Error| connector.error(&e, &operation);
        match self {
            Declaration::Exchange { name, kind } => channel
                .exchange_declare(
                    short(name, "exchange name")?,
                    exchange_kind(kind),
                    ExchangeDeclareOptions {
                        passive,
                        durable: true,
                        ..ExchangeDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(failed),
            Declaration::Queue { name, arguments } => {
                let mut table = FieldTable::default();
                for (key, value) in arguments {
                    table.insert(short(key, "argument name")?, value.to_amqp());
                }
                channel
                    .queue_declare(
                        short(name, "queue name")?,
                        QueueDeclareOptions {
                            passive,
                            durable: true,
                            ..QueueDeclareOptions::default()
                        },
                        table,
                    )
                    .await
                    .map(drop)
                    .map_err(failed)
            }
            Declaration::Binding {
                queue,
                exchange,
                key,
            } => channel
                .queue_bind(
                    short(queue, "queue name")?,
                    short(exchange, "exchange name")?,
                    short(key, "binding key")?,
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(failed),
        }
    }
}

/// Declares `declarations` in order on one channel, closed afterwards.
pub(crate) async fn declare_all(connector: &Connector, declarations: &[Declaration]) -> Result<()> {
    let conn = connector.connection(None).await?;
    let channel = conn
        .create_channel()
        .await
        .map_err(|e| connector.error(&e, "opening a channel"))?;
    for declaration in declarations {
        declaration.apply(&channel, connector, false).await?;
    }
    let _ = channel.close(200, "declared".into()).await;
    Ok(())
}

/// The names of one subscription's queues.
#[derive(Debug, Clone)]
pub(crate) struct QueueNames {
    /// The work queue.
    pub(crate) queue: String,
    /// Its dead-letter queue.
    pub(crate) dead_letters: String,
}

impl QueueNames {
    pub(crate) fn new(config: &AmqpConfig, subscription: &str) -> Self {
        let queue = config.queue_name(subscription);
        Self {
            dead_letters: format!("{queue}.dlq"),
            queue,
        }
    }

    /// The retry queue whose messages wait `delay_ms` before going back to the work queue.
    pub(crate) fn retry(&self, delay_ms: u64) -> String {
        format!("{}.retry.{delay_ms}", self.queue)
    }
}

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Settings one subscription may set apart from the transport's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct QueueSettings {
    /// `quorum` or `classic`.
    pub(crate) queue_type: Option<QueueType>,
    /// `x-delivery-limit` (quorum queues).
    pub(crate) delivery_limit: Option<u32>,
    /// `x-message-ttl` of the work queue: events not consumed within it are dead-lettered.
    pub(crate) message_ttl: Option<Duration>,
    /// `x-message-ttl` of the dead-letter queue.
    pub(crate) dead_letter_ttl: Option<Duration>,
    /// `x-expires` of both queues (a temporary subscription).
    pub(crate) expires: Option<Duration>,
}

/// Everything subscription `name` to `patterns` needs on the broker, in declaration order.
pub(crate) fn subscription(
    config: &AmqpConfig,
    name: &str,
    patterns: &[Pattern],
    settings: &QueueSettings,
) -> Vec<Declaration> {
    let names = QueueNames::new(config, name);
    let queue_type = settings.queue_type.unwrap_or(config.queue_type);
    let dlx = config.dead_letter_exchange.clone();
    let mut out = Vec::new();
    let mut exchanges: Vec<&str> = Vec::new();
    for pattern in patterns {
        for exchange in exchanges_for(config, pattern) {
            if !exchanges.contains(&exchange) {
                exchanges.push(exchange);
            }
        }
    }
    for exchange in &exchanges {
        out.push(Declaration::Exchange {
            name: (*exchange).to_owned(),
            kind: "topic".to_owned(),
        });
    }
    out.push(Declaration::Exchange {
        name: dlx.clone(),
        kind: "direct".to_owned(),
    });

    let mut dlq = BTreeMap::new();
    dlq.insert(
        "x-queue-type".to_owned(),
        Argument::Text(config.dead_letter_queue_type.as_str().to_owned()),
    );
    if let Some(ttl) = settings.dead_letter_ttl.or(config.dead_letter_ttl) {
        dlq.insert("x-message-ttl".to_owned(), Argument::Integer(ms(ttl)));
    }
    if let Some(expires) = settings.expires.or(config.queue_expires) {
        dlq.insert("x-expires".to_owned(), Argument::Integer(ms(expires)));
    }
    out.push(Declaration::Queue {
        name: names.dead_letters.clone(),
        arguments: dlq,
    });
    out.push(Declaration::Binding {
        queue: names.dead_letters.clone(),
        exchange: dlx.clone(),
        key: names.queue.clone(),
    });

    let mut work = dead_lettering(queue_type, &dlx, &names.queue);
    if queue_type == QueueType::Quorum
        && let Some(limit) = settings.delivery_limit.or(config.delivery_limit)
    {
        work.insert(
            "x-delivery-limit".to_owned(),
            Argument::Integer(i64::from(limit)),
        );
    }
    if let Some(ttl) = settings.message_ttl {
        work.insert("x-message-ttl".to_owned(), Argument::Integer(ms(ttl)));
    }
    if let Some(expires) = settings.expires.or(config.queue_expires) {
        work.insert("x-expires".to_owned(), Argument::Integer(ms(expires)));
    }
    out.push(Declaration::Queue {
        name: names.queue.clone(),
        arguments: work,
    });
    for pattern in patterns {
        for exchange in exchanges_for(config, pattern) {
            out.push(Declaration::Binding {
                queue: names.queue.clone(),
                exchange: exchange.to_owned(),
                key: pattern.as_str().to_owned(),
            });
        }
    }
    out
}

/// Arguments that send a queue's dead letters to `exchange` with `key`, at-least-once on
/// quorum queues (which needs `reject-publish` overflow; RabbitMQ's default, at-most-once,
/// can lose the message between the two queues).
fn dead_lettering(queue_type: QueueType, exchange: &str, key: &str) -> BTreeMap<String, Argument> {
    let mut args = BTreeMap::new();
    args.insert(
        "x-queue-type".to_owned(),
        Argument::Text(queue_type.as_str().to_owned()),
    );
    args.insert(
        "x-dead-letter-exchange".to_owned(),
        Argument::Text(exchange.to_owned()),
    );
    args.insert(
        "x-dead-letter-routing-key".to_owned(),
        Argument::Text(key.to_owned()),
    );
    if queue_type == QueueType::Quorum {
        args.insert(
            "x-dead-letter-strategy".to_owned(),
            Argument::Text("at-least-once".to_owned()),
        );
        args.insert(
            "x-overflow".to_owned(),
            Argument::Text("reject-publish".to_owned()),
        );
    }
    args
}

/// How long an unused retry queue lives: long enough that a message put in it, even just
/// before the queue would expire, is moved back before the queue goes.
pub(crate) fn retry_queue_expiry(delay_ms: u64) -> Duration {
    Duration::from_millis(delay_ms.saturating_mul(2)) + Duration::from_secs(600)
}

/// The retry queue of `names` for `delay_ms`: messages expire into the work queue.
pub(crate) fn retry_queue(config: &AmqpConfig, names: &QueueNames, delay_ms: u64) -> Declaration {
    // The default exchange ("") routes by queue name.
    let mut args = dead_lettering(config.queue_type, "", &names.queue);
    args.insert(
        "x-message-ttl".to_owned(),
        Argument::Integer(i64::try_from(delay_ms).unwrap_or(i64::MAX)),
    );
    args.insert(
        "x-expires".to_owned(),
        Argument::Integer(ms(retry_queue_expiry(delay_ms))),
    );
    Declaration::Queue {
        name: names.retry(delay_ms),
        arguments: args,
    }
}

/// The exchanges a pattern must be bound to: the one its first word maps to, or all of
/// them when its first word is a wildcard.
pub(crate) fn exchanges_for<'a>(config: &'a AmqpConfig, pattern: &Pattern) -> Vec<&'a str> {
    let first = pattern.as_str().split('.').next().unwrap_or_default();
    if first == "*" || first == "#" {
        config.exchanges.all()
    } else {
        vec![config.exchanges.for_topic(first)]
    }
}

/// Retry delays are rounded to one of four steps per doubling (about ±9 %), so that a
/// subscription needs a few dozen delay queues at most, not one per random delay.
pub(crate) fn delay_bucket(delay: Duration) -> u64 {
    let ms = delay.as_secs_f64() * 1000.0;
    if ms < 1.0 {
        return 0;
    }
    let step = (ms.log2() * 4.0).round();
    // Capped far below u64::MAX (about 31 years), so the cast cannot saturate.
    (2f64.powf(step / 4.0)).round().min(1e12) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Exchanges;

    #[test]
    fn retry_delays_fall_in_a_few_buckets_close_to_the_asked_delay() {
        assert_eq!(delay_bucket(Duration::ZERO), 0);
        assert_eq!(delay_bucket(Duration::from_micros(300)), 0);
        for ms in [1u64, 7, 20, 100, 999, 5_000, 60_000, 3_600_000] {
            let asked = Duration::from_millis(ms);
            let got = delay_bucket(asked) as f64;
            let ratio = got / ms as f64;
            assert!((0.9..=1.1).contains(&ratio), "{ms} ms -> {got} ms");
        }
        let buckets: std::collections::BTreeSet<u64> = (1..=3_600_000u64)
            .step_by(997)
            .map(|ms| delay_bucket(Duration::from_millis(ms)))
            .collect();
        assert!(buckets.len() <= 4 * 22, "{} buckets", buckets.len());
    }

    #[test]
    fn a_subscription_declares_its_queue_dead_letter_queue_and_bindings() {
        let config =
            AmqpConfig::default().exchanges(Exchanges::shared("events").domain("order", "orders"));
        let patterns = [
            Pattern::parse("order.*").unwrap(),
            Pattern::parse("#.created").unwrap(),
        ];
        let decl = subscription(
            &config,
            "notification",
            &patterns,
            &QueueSettings::default(),
        );
        let text: Vec<String> = decl.iter().map(ToString::to_string).collect();
        assert!(text.contains(&"binding `notification` <- `orders` key `order.*`".to_owned()));
        assert!(text.contains(&"binding `notification` <- `events` key `#.created`".to_owned()));
        assert!(text.contains(&"binding `notification` <- `orders` key `#.created`".to_owned()));
        assert!(text.contains(
            &"binding `notification.dlq` <- `tidings.dead-letter` key `notification`".to_owned()
        ));
        let Some(Declaration::Queue { arguments, .. }) = decl
            .iter()
            .find(|d| matches!(d, Declaration::Queue { name, .. } if name == "notification"))
        else {
            panic!("work queue declared: {text:?}");
        };
        assert_eq!(arguments["x-queue-type"], Argument::Text("quorum".into()));
        assert_eq!(
            arguments["x-dead-letter-strategy"],
            Argument::Text("at-least-once".into())
        );
        assert_eq!(arguments["x-delivery-limit"], Argument::Integer(20));
    }
}
