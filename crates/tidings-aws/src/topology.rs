//! Topology as code on AWS: a TOML file of the topic (or bus) and the service
//! subscriptions, planned against AWS and applied idempotently.
//!
//! Applying creates what is missing and sets what differs: the topic or bus, each
//! subscription's queue (visibility timeout, redrive policy), its dead-letter queue, its
//! SNS subscription (filter policy, raw delivery) or EventBridge rule (event pattern,
//! target), and its queue policy. Planning reads the same and changes nothing.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::Value;
use tidings_core::topic::Pattern;

use crate::subscriber::{DLQ_RETENTION, queue_policy, redrive_policy};
use crate::{AwsConfig, AwsTransport, Error, Fanout, Inner, Result, filter};

/// A topology file for AWS.
///
/// ```
/// use tidings_aws::{Fanout, Topology};
///
/// let topology = Topology::from_toml(r##"
///     fanout = "sns"
///     topic = "shop-events"
///     queue_prefix = "shop-"
///     delivery_limit = 5
///     lease = "60s"
///
///     [[subscription]]
///     name = "notification"
///     patterns = ["order.*", "customer.created", "payment.*"]
///
///     [[subscription]]
///     name = "analytics"
///     patterns = ["#"]
///     delivery_limit = 2
/// "##).unwrap();
/// assert_eq!(topology.subscriptions.len(), 2);
/// assert_eq!(topology.fanout, Some(Fanout::Sns));
/// ```
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Topology {
    /// `sns` or `eventbridge`, instead of the configuration's.
    #[serde(default, with = "fanout")]
    pub fanout: Option<Fanout>,
    /// The SNS topic's name.
    pub topic: Option<String>,
    /// The EventBridge bus's name.
    pub event_bus: Option<String>,
    /// FIFO topic and queues.
    pub fifo: Option<bool>,
    /// Prefix of the queues' names.
    pub queue_prefix: Option<String>,
    /// Receives before SQS moves a message to the dead-letter queue.
    pub delivery_limit: Option<u32>,
    /// The queues' visibility timeout (`"30s"`).
    #[serde(default, with = "human_duration")]
    pub lease: Option<Duration>,
    /// Service subscriptions: a service and the topics it consumes.
    #[serde(default, rename = "subscription")]
    pub subscriptions: Vec<ServiceSubscription>,
}

/// A service and what it consumes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ServiceSubscription {
    /// The durable subscription name (the service).
    pub name: String,
    /// The topic patterns it consumes.
    pub patterns: Vec<String>,
    /// Its own delivery limit, instead of the topology's.
    pub delivery_limit: Option<u32>,
}

mod fanout {
    use serde::{Deserialize, Deserializer};

    use crate::Fanout;

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Fanout>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| match text.as_str() {
                "sns" => Ok(Fanout::Sns),
                "eventbridge" => Ok(Fanout::EventBridge),
                other => Err(serde::de::Error::custom(format!(
                    "fanout `{other}`: expected `sns` or `eventbridge`"
                ))),
            })
            .transpose()
    }
}

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

impl Topology {
    /// Parses a topology file's text; checks every pattern.
    pub fn from_toml(text: &str) -> Result<Self> {
        let topology: Self =
            toml::from_str(text).map_err(|e| Error::Config(format!("topology file: {e}")))?;
        for subscription in &topology.subscriptions {
            for pattern in &subscription.patterns {
                Pattern::parse(pattern).map_err(|e| {
                    Error::Config(format!("subscription `{}`: {e}", subscription.name))
                })?;
            }
        }
        Ok(topology)
    }

    /// Reads and parses a topology file.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("reading {}: {e}", path.display())))?;
        Self::from_toml(&text)
    }

    /// `config` with what the file sets.
    pub fn configure(&self, mut config: AwsConfig) -> AwsConfig {
        if let Some(fanout) = self.fanout {
            config = config.fanout(fanout);
        }
        if let Some(topic) = &self.topic {
            config = config.topic(topic);
        }
        if let Some(bus) = &self.event_bus {
            config = config.event_bus(bus);
        }
        if let Some(fifo) = self.fifo {
            config = config.fifo(fifo);
        }
        if let Some(prefix) = &self.queue_prefix {
            config = config.queue_prefix(prefix);
        }
        if let Some(limit) = self.delivery_limit {
            config = config.delivery_limit(limit);
        }
        if let Some(lease) = self.lease {
            config = config.lease(lease);
        }
        config
    }

    fn patterns(subscription: &ServiceSubscription) -> Vec<Pattern> {
        subscription
            .patterns
            .iter()
            .map(|p| Pattern::parse(p).expect("checked when parsed"))
            .collect()
    }
}

/// What a resource is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Resource {
    /// The SNS topic.
    Topic(String),
    /// The EventBridge bus.
    Bus(String),
    /// A subscription's dead-letter queue.
    DeadLetterQueue(String),
    /// A subscription's queue: visibility timeout, redrive policy.
    Queue(String),
    /// A queue's subscription to the topic: filter policy, raw delivery.
    TopicSubscription(String),
    /// The rule that sends events of the bus to a queue.
    Rule(String),
    /// A queue's policy: who may send to it.
    QueuePolicy(String),
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::Topic(name) => write!(f, "SNS topic {name}"),
            Resource::Bus(name) => write!(f, "event bus {name}"),
            Resource::DeadLetterQueue(name) => write!(f, "dead-letter queue {name}"),
            Resource::Queue(name) => write!(f, "queue {name}"),
            Resource::TopicSubscription(queue) => write!(f, "topic subscription of {queue}"),
            Resource::Rule(name) => write!(f, "rule {name}"),
            Resource::QueuePolicy(queue) => write!(f, "queue policy of {queue}"),
        }
    }
}

/// What applying does (plan) or did (apply) to a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// It does not exist: it will be, or was, created.
    Create,
    /// It exists with other settings (named): they will be, or were, set.
    Update(String),
    /// It exists as the file wants it.
    Unchanged,
}

/// One resource and its change.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Step {
    /// The resource.
    pub resource: Resource,
    /// What happens to it.
    pub change: Change,
}

/// The changes a topology makes on AWS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Plan {
    /// One step per resource, in the order they are made.
    pub steps: Vec<Step>,
}

impl Plan {
    /// Whether applying changes nothing.
    pub fn is_unchanged(&self) -> bool {
        self.steps.iter().all(|s| s.change == Change::Unchanged)
    }

    fn push(&mut self, resource: Resource, change: Change) {
        self.steps.push(Step { resource, change });
    }

    fn count(&self, f: impl Fn(&Change) -> bool) -> usize {
        self.steps.iter().filter(|s| f(&s.change)).count()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for step in &self.steps {
            match &step.change {
                Change::Create => writeln!(f, "+ create   {}", step.resource)?,
                Change::Unchanged => writeln!(f, "  ok       {}", step.resource)?,
                Change::Update(what) => writeln!(f, "~ update   {}: {what}", step.resource)?,
            }
        }
        write!(
            f,
            "{} to create, {} to update, {} unchanged",
            self.count(|c| *c == Change::Create),
            self.count(|c| matches!(c, Change::Update(_))),
            self.count(|c| *c == Change::Unchanged),
        )
    }
}

impl AwsTransport {
    /// What applying `topology` would change, changing nothing. `config` is completed by
    /// the file ([`Topology::configure`]).
    pub async fn plan(config: AwsConfig, topology: &Topology) -> Result<Plan> {
        let inner = Inner::clients(topology.configure(config)).await?;
        inner.plan(topology).await
    }

    /// Makes AWS hold what `topology` describes (idempotent); what it changed. `config` is
    /// completed by the file ([`Topology::configure`]).
    pub async fn apply(config: AwsConfig, topology: &Topology) -> Result<Plan> {
        let inner = Inner::clients(topology.configure(config)).await?;
        let plan = inner.plan(topology).await?;
        let transport = Self::connect(inner.config.clone()).await?;
        for subscription in &topology.subscriptions {
            let limit = subscription
                .delivery_limit
                .unwrap_or(transport.inner.config.delivery_limit);
            transport
                .inner
                .declare(&subscription.name, &Topology::patterns(subscription), limit)
                .await?;
        }
        Ok(plan)
    }
}

/// JSON text as a value, `Null` when it is not JSON (so that it differs from any wanted).
fn json(text: Option<&str>) -> Value {
    text.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null)
}

/// A redrive policy with its count as a number (SQS answers with either).
fn normalized_redrive(mut policy: Value) -> Value {
    if let Some(count) = policy.get("maxReceiveCount").cloned() {
        let count = count
            .as_str()
            .and_then(|s| s.parse::<u64>().ok())
            .or(count.as_u64());
        policy["maxReceiveCount"] = count.map_or(Value::Null, Value::from);
    }
    policy
}

impl Inner {
    /// The topic's ARN when it exists.
    async fn find_topic(&self) -> Result<Option<String>> {
        let suffix = format!(":{}", self.topic_name());
        let mut next = None;
        loop {
            let out = self
                .sns
                .list_topics()
                .set_next_token(next)
                .send()
                .await
                .map_err(|e| Error::from_sdk(&e, "listing topics"))?;
            if let Some(arn) = out
                .topics()
                .iter()
                .filter_map(|t| t.topic_arn())
                .find(|arn| arn.ends_with(&suffix))
            {
                return Ok(Some(arn.to_owned()));
            }
            next = out.next_token().map(str::to_owned);
            if next.is_none() {
                return Ok(None);
            }
        }
    }

    async fn bus_exists(&self) -> Result<bool> {
        if self.config.event_bus == "default" {
            return Ok(true);
        }
        match self
            .events
            .describe_event_bus()
            .name(&self.config.event_bus)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => match Error::from_sdk(&e, "reading the event bus") {
                Error::Missing { .. } => Ok(false),
                other => Err(other),
            },
        }
    }

    async fn attributes(&self, url: &str) -> Result<HashMap<QueueAttributeName, String>> {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .map_err(|e| Error::from_sdk(&e, "reading a queue's attributes"))?;
        Ok(out.attributes().cloned().unwrap_or_default())
    }

    /// What applying `topology` changes.
    async fn plan(&self, topology: &Topology) -> Result<Plan> {
        let mut plan = Plan::default();
        let source = match self.config.fanout {
            Fanout::Sns => {
                let arn = self.find_topic().await?;
                let change = if arn.is_some() {
                    Change::Unchanged
                } else {
                    Change::Create
                };
                plan.push(Resource::Topic(self.topic_name()), change);
                arn
            }
            Fanout::EventBridge => {
                let change = if self.bus_exists().await? {
                    Change::Unchanged
                } else {
                    Change::Create
                };
                plan.push(Resource::Bus(self.config.event_bus.clone()), change);
                None
            }
        };
        for subscription in &topology.subscriptions {
            self.plan_subscription(&mut plan, subscription, source.as_deref())
                .await?;
        }
        Ok(plan)
    }

    async fn plan_subscription(
        &self,
        plan: &mut Plan,
        subscription: &ServiceSubscription,
        topic_arn: Option<&str>,
    ) -> Result<()> {
        let (name, dlq_name) = self.queue_names(&subscription.name)?;
        let patterns = Topology::patterns(subscription);
        let limit = subscription
            .delivery_limit
            .unwrap_or(self.config.delivery_limit);

        let dlq = match self.queue_url(&dlq_name).await? {
            None => {
                plan.push(Resource::DeadLetterQueue(dlq_name.clone()), Change::Create);
                None
            }
            Some(url) => {
                let attributes = self.attributes(&url).await?;
                let retention = attributes.get(&QueueAttributeName::MessageRetentionPeriod);
                let change = if retention.map(String::as_str) == Some(DLQ_RETENTION) {
                    Change::Unchanged
                } else {
                    Change::Update(format!(
                        "retention {}s → {DLQ_RETENTION}s",
                        retention.map_or("?", String::as_str)
                    ))
                };
                plan.push(Resource::DeadLetterQueue(dlq_name.clone()), change);
                attributes.get(&QueueAttributeName::QueueArn).cloned()
            }
        };

        let Some(url) = self.queue_url(&name).await? else {
            // A new queue: everything after it is new.
            plan.push(Resource::Queue(name.clone()), Change::Create);
            let link = match self.config.fanout {
                Fanout::Sns => Resource::TopicSubscription(name.clone()),
                Fanout::EventBridge => Resource::Rule(name.clone()),
            };
            plan.push(link, Change::Create);
            plan.push(Resource::QueuePolicy(name), Change::Create);
            return Ok(());
        };
        let attributes = self.attributes(&url).await?;
        let queue_arn = attributes
            .get(&QueueAttributeName::QueueArn)
            .cloned()
            .unwrap_or_default();
        let mut differences = Vec::new();
        let lease = self.config.lease.as_secs().to_string();
        let visibility = attributes.get(&QueueAttributeName::VisibilityTimeout);
        if visibility != Some(&lease) {
            differences.push(format!(
                "visibility timeout {}s → {lease}s",
                visibility.map_or("?", String::as_str)
            ));
        }
        let redrive = normalized_redrive(json(
            attributes
                .get(&QueueAttributeName::RedrivePolicy)
                .map(String::as_str),
        ));
        let wanted = dlq
            .as_deref()
            .map(|arn| normalized_redrive(redrive_policy(arn, limit)));
        if Some(&redrive) != wanted.as_ref() {
            differences.push(format!(
                "redrive after {} receives → {limit}",
                redrive
                    .get("maxReceiveCount")
                    .map_or("none".to_owned(), Value::to_string)
            ));
        }
        plan.push(
            Resource::Queue(name.clone()),
            if differences.is_empty() {
                Change::Unchanged
            } else {
                Change::Update(differences.join(", "))
            },
        );

        let source_arn = match self.config.fanout {
            Fanout::Sns => {
                let change = match topic_arn {
                    Some(topic_arn) => self.link_change(topic_arn, &queue_arn, &patterns).await?,
                    None => Change::Create,
                };
                plan.push(Resource::TopicSubscription(name.clone()), change);
                topic_arn.map(str::to_owned)
            }
            Fanout::EventBridge => {
                let (change, rule_arn) = self.rule_change(&name, &queue_arn, &patterns).await?;
                plan.push(Resource::Rule(name.clone()), change);
                rule_arn
            }
        };
        let policy = json(
            attributes
                .get(&QueueAttributeName::Policy)
                .map(String::as_str),
        );
        let change = match source_arn {
            Some(source)
                if policy == queue_policy(self.config.fanout.service(), &queue_arn, &source) =>
            {
                Change::Unchanged
            }
            _ if policy.is_null() => Change::Create,
            _ => Change::Update("who may send".to_owned()),
        };
        plan.push(Resource::QueuePolicy(name), change);
        Ok(())
    }

    /// How the queue's subscription to the topic compares with what `patterns` want.
    async fn link_change(
        &self,
        topic_arn: &str,
        queue_arn: &str,
        patterns: &[Pattern],
    ) -> Result<Change> {
        let mut next = None;
        loop {
            let out = self
                .sns
                .list_subscriptions_by_topic()
                .topic_arn(topic_arn)
                .set_next_token(next)
                .send()
                .await
                .map_err(|e| Error::from_sdk(&e, "listing the topic's subscriptions"))?;
            if let Some(arn) = out
                .subscriptions()
                .iter()
                .find(|s| s.protocol() == Some("sqs") && s.endpoint() == Some(queue_arn))
                .and_then(|s| s.subscription_arn())
            {
                let attributes = self
                    .sns
                    .get_subscription_attributes()
                    .subscription_arn(arn)
                    .send()
                    .await
                    .map_err(|e| Error::from_sdk(&e, "reading a subscription"))?;
                let attributes = attributes.attributes().cloned().unwrap_or_default();
                let mut differences = Vec::new();
                let filter = attributes
                    .get("FilterPolicy")
                    .map(String::as_str)
                    .filter(|f| !f.is_empty())
                    .unwrap_or("{}");
                let wanted = filter::sns_policy(patterns).unwrap_or_else(|| "{}".to_owned());
                if json(Some(filter)) != json(Some(&wanted)) {
                    differences.push(format!("filter policy {filter} → {wanted}"));
                }
                if attributes.get("RawMessageDelivery").map(String::as_str) != Some("true") {
                    differences.push("raw message delivery on".to_owned());
                }
                return Ok(if differences.is_empty() {
                    Change::Unchanged
                } else {
                    Change::Update(differences.join(", "))
                });
            }
            next = out.next_token().map(str::to_owned);
            if next.is_none() {
                return Ok(Change::Create);
            }
        }
    }

    /// How the queue's rule compares with what `patterns` want; the rule's ARN.
    async fn rule_change(
        &self,
        name: &str,
        queue_arn: &str,
        patterns: &[Pattern],
    ) -> Result<(Change, Option<String>)> {
        let rule = match self
            .events
            .describe_rule()
            .name(name)
            .event_bus_name(&self.config.event_bus)
            .send()
            .await
        {
            Ok(rule) => rule,
            Err(e) => {
                return match Error::from_sdk(&e, "reading a rule") {
                    Error::Missing { .. } => Ok((Change::Create, None)),
                    other => Err(other),
                };
            }
        };
        let mut differences = Vec::new();
        let wanted = filter::event_pattern(patterns);
        if json(rule.event_pattern()) != json(Some(&wanted)) {
            differences.push(format!(
                "event pattern {} → {wanted}",
                rule.event_pattern().unwrap_or("none")
            ));
        }
        let targets = self
            .events
            .list_targets_by_rule()
            .rule(name)
            .event_bus_name(&self.config.event_bus)
            .send()
            .await
            .map_err(|e| Error::from_sdk(&e, "reading a rule's targets"))?;
        if !targets.targets().iter().any(|t| t.arn() == queue_arn) {
            differences.push("target the queue".to_owned());
        }
        let change = if differences.is_empty() {
            Change::Unchanged
        } else {
            Change::Update(differences.join(", "))
        };
        Ok((change, rule.arn().map(str::to_owned)))
    }
}
