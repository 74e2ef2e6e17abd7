//! Topology as code: a TOML file of exchanges, queues, bindings and service subscriptions,
//! planned against the broker and applied idempotently.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use tidings_core::topic::Pattern;

use super::{Argument, Declaration, QueueSettings, subscription};
use crate::config::{AmqpConfig, Exchanges, QueueType};
use crate::connection::Connector;
use crate::error::{Error, Result};

/// A topology file.
///
/// ```
/// use tidings_amqp::Topology;
///
/// let topology = Topology::from_toml(r#"
///     dead_letter_exchange = "deadletter"
///
///     [exchanges]
///     default = "events"
///     domains = { order = "orders", product = "products", payment = "payments" }
///
///     [[subscription]]
///     name = "notification"
///     patterns = ["order.*", "customer.created", "payment.*"]
///
///     [[subscription]]
///     name = "search"
///     patterns = ["product.#"]
///     dead_letter_ttl = "24h"
///
///     [[exchange]]
///     name = "analytics"
///     kind = "fanout"
///
///     [[queue]]
///     name = "order.processing"
///     arguments = { "x-message-ttl" = 86400000 }
///
///     [[binding]]
///     queue = "order.processing"
///     exchange = "orders"
///     key = "order.created"
/// "#).unwrap();
/// assert_eq!(topology.subscriptions.len(), 2);
/// ```
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Topology {
    /// The topic exchanges events are published to (default: one, `tidings.events`).
    pub exchanges: Option<Exchanges>,
    /// The direct exchange dead letters go through (default `tidings.dead-letter`).
    pub dead_letter_exchange: Option<String>,
    /// The subscriptions' queue type (default quorum).
    pub queue_type: Option<QueueType>,
    /// Prefix of the subscriptions' queue names.
    pub queue_prefix: Option<String>,
    /// Service subscriptions: a service and the topics it consumes.
    #[serde(default, rename = "subscription")]
    pub subscriptions: Vec<ServiceSubscription>,
    /// Exchanges besides the topic exchanges (a fanout for analytics, say).
    #[serde(default, rename = "exchange")]
    pub extra_exchanges: Vec<ExchangeSpec>,
    /// Queues that are not subscriptions (read by consumers outside tidings).
    #[serde(default, rename = "queue")]
    pub queues: Vec<QueueSpec>,
    /// Bindings of those queues.
    #[serde(default, rename = "binding")]
    pub bindings: Vec<BindingSpec>,
}

/// A service and what it consumes: `notification` consumes `order.*` and `payment.*`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ServiceSubscription {
    /// The durable subscription name (the service).
    pub name: String,
    /// The topic patterns it consumes.
    pub patterns: Vec<String>,
    /// `quorum` or `classic`, instead of the topology's.
    pub queue_type: Option<QueueType>,
    /// `x-delivery-limit` of its quorum queue, instead of the transport's.
    pub delivery_limit: Option<u32>,
    /// Events not consumed within this (`"24h"`) are dead-lettered (`x-message-ttl`).
    #[serde(default, with = "human_duration")]
    pub message_ttl: Option<Duration>,
    /// Its dead letters expire after this (`"7d"`).
    #[serde(default, with = "human_duration")]
    pub dead_letter_ttl: Option<Duration>,
}

impl ServiceSubscription {
    fn settings(&self) -> QueueSettings {
        QueueSettings {
            queue_type: self.queue_type,
            delivery_limit: self.delivery_limit,
            message_ttl: self.message_ttl,
            dead_letter_ttl: self.dead_letter_ttl,
            expires: None,
        }
    }
}

/// `Option<Duration>` written as `"24h"`, `"500ms"`.
mod human_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| humantime::parse_duration(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// An exchange.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ExchangeSpec {
    /// Its name.
    pub name: String,
    /// `topic`, `direct`, `fanout` or `headers`.
    pub kind: String,
}

/// A durable queue with arguments.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct QueueSpec {
    /// Its name.
    pub name: String,
    /// `x-` arguments: `x-queue-type`, `x-message-ttl`, `x-dead-letter-exchange`, ...
    #[serde(default)]
    pub arguments: BTreeMap<String, Argument>,
}

/// A binding of a queue to an exchange.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BindingSpec {
    /// The queue.
    pub queue: String,
    /// The exchange.
    pub exchange: String,
    /// The binding key.
    pub key: String,
}

impl Topology {
    /// Parses a topology file's text. Errors name the line and the key at fault.
    pub fn from_toml(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| Error::Topology(e.to_string()))
    }

    /// Reads a topology file.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Topology(format!("cannot read `{}`: {e}", path.display())))?;
        Self::from_toml(&text).map_err(|e| match e {
            Error::Topology(reason) => Error::Topology(format!("`{}`: {reason}", path.display())),
            other => other,
        })
    }

    /// `config` with the file's exchanges, dead-letter exchange, queue type and prefix, so
    /// that a service started with the file publishes and consumes where it declared.
    pub fn configure(&self, mut config: AmqpConfig) -> AmqpConfig {
        if let Some(exchanges) = &self.exchanges {
            config.exchanges = exchanges.clone();
        }
        if let Some(dlx) = &self.dead_letter_exchange {
            config.dead_letter_exchange = dlx.clone();
        }
        if let Some(queue_type) = self.queue_type {
            config.queue_type = queue_type;
        }
        if let Some(prefix) = &self.queue_prefix {
            config.queue_prefix = prefix.clone();
        }
        config
    }

    /// Every declaration, in an order the broker accepts (exchanges before what binds to
    /// them), each once.
    pub fn declarations(&self, config: &AmqpConfig) -> Result<Vec<Declaration>> {
        let config = self.configure(config.clone());
        let mut out = Vec::new();
        for exchange in config.exchanges.all() {
            out.push(Declaration::Exchange {
                name: exchange.to_owned(),
                kind: "topic".to_owned(),
            });
        }
        for exchange in &self.extra_exchanges {
            out.push(Declaration::Exchange {
                name: exchange.name.clone(),
                kind: exchange.kind.clone(),
            });
        }
        for queue in &self.queues {
            out.push(Declaration::Queue {
                name: queue.name.clone(),
                arguments: queue.arguments.clone(),
            });
        }
        for service in &self.subscriptions {
            let patterns = service
                .patterns
                .iter()
                .map(|p| {
                    Pattern::parse(p).map_err(|e| {
                        Error::Topology(format!("subscription `{}`: {e}", service.name))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            out.extend(subscription(
                &config,
                &service.name,
                &patterns,
                &service.settings(),
            ));
        }
        for binding in &self.bindings {
            out.push(Declaration::Binding {
                queue: binding.queue.clone(),
                exchange: binding.exchange.clone(),
                key: binding.key.clone(),
            });
        }
        let mut unique = Vec::with_capacity(out.len());
        for declaration in out {
            if !unique.contains(&declaration) {
                unique.push(declaration);
            }
        }
        Ok(unique)
    }
}

/// What a declaration does (plan) or did (apply) on the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// It does not exist: it will be, or was, created.
    Create,
    /// It exists with the same settings: nothing to do.
    Unchanged,
    /// A binding of a queue that exists: bound if it was not. AMQP cannot list bindings, so
    /// the plan cannot tell which; applying is idempotent either way.
    Ensure,
    /// It exists with other settings; the broker's reason names the argument that differs.
    /// Applying leaves it as it is.
    Conflict(String),
}

/// One declaration and its change.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Step {
    /// What is declared.
    pub declaration: Declaration,
    /// What happens to it.
    pub change: Change,
}

/// The changes a topology makes on a broker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Plan {
    /// One step per declaration, in order.
    pub steps: Vec<Step>,
}

impl Plan {
    /// Steps that conflict with what the broker has.
    pub fn conflicts(&self) -> impl Iterator<Item = &Step> {
        self.steps
            .iter()
            .filter(|s| matches!(s.change, Change::Conflict(_)))
    }

    /// Whether applying changes nothing.
    pub fn is_unchanged(&self) -> bool {
        self.steps
            .iter()
            .all(|s| matches!(s.change, Change::Unchanged | Change::Ensure))
    }

    fn count(&self, f: impl Fn(&Change) -> bool) -> usize {
        self.steps.iter().filter(|s| f(&s.change)).count()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for step in &self.steps {
            match &step.change {
                Change::Create => writeln!(f, "+ create   {}", step.declaration)?,
                Change::Unchanged => writeln!(f, "  ok       {}", step.declaration)?,
                Change::Ensure => writeln!(f, "~ ensure   {}", step.declaration)?,
                Change::Conflict(reason) => {
                    writeln!(f, "! conflict {}\n           {reason}", step.declaration)?;
                }
            }
        }
        write!(
            f,
            "{} to create, {} unchanged, {} bindings ensured, {} conflicts",
            self.count(|c| *c == Change::Create),
            self.count(|c| *c == Change::Unchanged),
            self.count(|c| *c == Change::Ensure),
            self.count(|c| matches!(c, Change::Conflict(_))),
        )
    }
}

/// How `declaration` compares with what the broker has.
async fn inspect(connector: &Connector, declaration: &Declaration) -> Result<Change> {
    if matches!(declaration, Declaration::Binding { .. }) {
        return Ok(Change::Ensure);
    }
    let conn = connector.connection(None).await?;
    // A refused declaration closes its channel: each check gets its own.
    let channel = || async {
        conn.create_channel()
            .await
            .map_err(|e| connector.error(&e, "opening a channel"))
    };
    let passive = channel().await?;
    match declaration.apply(&passive, connector, true).await {
        Ok(()) => {}
        Err(Error::NotFound(_)) => return Ok(Change::Create),
        Err(other) => return Err(other),
    }
    let _ = passive.close(200, "inspected".into()).await;
    // It exists: declaring it again with the same settings is a no-op, with other ones a
    // refusal that changes nothing.
    let active = channel().await?;
    match declaration.apply(&active, connector, false).await {
        Ok(()) => {
            let _ = active.close(200, "inspected".into()).await;
            Ok(Change::Unchanged)
        }
        Err(Error::Conflict { reason, .. }) => Ok(Change::Conflict(reason)),
        Err(other) => Err(other),
    }
}

/// What applying `declarations` would change, without changing anything.
pub(crate) async fn plan(connector: &Connector, declarations: Vec<Declaration>) -> Result<Plan> {
    let mut steps: Vec<Step> = Vec::with_capacity(declarations.len());
    for declaration in declarations {
        let mut change = inspect(connector, &declaration).await?;
        if let Declaration::Binding { queue, .. } = &declaration {
            let queue_is_new = steps.iter().any(|s| {
                matches!(&s.declaration, Declaration::Queue { name, .. } if name == queue)
                    && s.change == Change::Create
            });
            if queue_is_new {
                change = Change::Create;
            }
        }
        steps.push(Step {
            declaration,
            change,
        });
    }
    Ok(Plan { steps })
}

/// Declares what is missing, leaves what conflicts as it is (reported in the result).
pub(crate) async fn apply(connector: &Connector, declarations: Vec<Declaration>) -> Result<Plan> {
    let planned = plan(connector, declarations).await?;
    let conn = connector.connection(None).await?;
    let channel = conn
        .create_channel()
        .await
        .map_err(|e| connector.error(&e, "opening a channel"))?;
    for step in &planned.steps {
        if matches!(step.change, Change::Conflict(_) | Change::Unchanged) {
            continue;
        }
        step.declaration.apply(&channel, connector, false).await?;
    }
    let _ = channel.close(200, "applied".into()).await;
    Ok(planned)
}
