//! Subscriptions: a queue each, fed by the topic or the bus, read by long polling.
//!
//! Declaring a subscription (idempotent, also what `tidings topology apply` does):
//!
//! 1. its dead-letter queue, `<queue>-dlq`, keeping messages 14 days;
//! 2. its queue, with the lease as visibility timeout and a redrive policy that moves a
//!    message to the dead-letter queue after [`AwsConfig::delivery_limit`] receives;
//! 3. its link: a subscription to the SNS topic with raw message delivery and the filter
//!    policy of its patterns, or a rule on the bus with their event pattern and the queue as
//!    target;
//! 4. the queue policy that lets that topic (or rule), and nothing else, send to the queue.
//!
//! An existing queue gets the attributes again and an existing link the filter again, so
//! that a changed lease, limit or set of patterns takes effect.
//!
//! [`AwsConfig::delivery_limit`]: crate::AwsConfig::delivery_limit

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use futures::StreamExt;
use serde_json::json;
use tidings_core::topic::Pattern;
use tidings_core::transport::{
    Delivery, DeliveryStream, Subscriber, SubscriptionSpec, TransportError,
};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::delivery::{AwsDelivery, Deletes, Subscription, granted, keep_leases};
use crate::message::Incoming;
use crate::{AwsTransport, Error, Fanout, Inner, filter};

type Item = Result<Box<dyn Delivery>, TransportError>;

/// Longest queue name SQS takes.
const MAX_QUEUE_NAME: usize = 80;

/// Longest rule name EventBridge takes.
const MAX_RULE_NAME: usize = 64;

/// How long a dead letter is kept: 14 days, SQS's longest.
pub(crate) const DLQ_RETENTION: &str = "1209600";

/// How long creating a queue waits out SQS's refusal of a name deleted in the last minute.
const RECREATE_WAIT: Duration = Duration::from_secs(70);

/// The pause between two tries of that.
const RECREATE_PAUSE: Duration = Duration::from_secs(5);

/// The id of the queue among its rule's targets (EventBridge).
const RULE_TARGET: &str = "tidings-queue";

/// Most messages one receive returns.
const RECEIVE_MAX: usize = 10;

/// A subscription's queues.
#[derive(Debug, Clone)]
pub(crate) struct Queue {
    pub(crate) url: String,
    pub(crate) dlq_url: String,
}

#[async_trait]
impl Subscriber for AwsTransport {
    /// Declares the subscription (see the module docs) and receives from its queue.
    async fn subscribe(&self, spec: &SubscriptionSpec) -> Result<DeliveryStream, TransportError> {
        let inner = self.inner.clone();
        if inner.closed.is_cancelled() {
            return Err(TransportError::Closed);
        }
        let queue = inner
            .declare(&spec.name, &spec.patterns, inner.config.delivery_limit)
            .await?;
        let held = Arc::new(Mutex::new(HashMap::new()));
        tokio::spawn(keep_leases(
            inner.clone(),
            queue.url.clone(),
            Arc::downgrade(&held),
        ));
        let consuming = Consuming {
            subscription: Arc::new(Subscription {
                deletes: Deletes::new(inner.clone(), queue.url.clone()),
                inner,
                name: spec.name.clone(),
                queue,
                held,
            }),
            patterns: spec.patterns.clone(),
            permits: Arc::new(Semaphore::new(spec.prefetch.max(1))),
            buffer: VecDeque::new(),
            failures: 0,
        };
        Ok(
            futures::stream::unfold(consuming, |mut consuming| async move {
                let item = consuming.next().await?;
                Some((item, consuming))
            })
            .boxed(),
        )
    }
}

impl Inner {
    /// The names of a subscription's queue and dead-letter queue.
    pub(crate) fn queue_names(&self, subscription: &str) -> Result<(String, String), Error> {
        let base = self.config.queue_name(subscription);
        let suffix = if self.config.fifo { ".fifo" } else { "" };
        let (queue, dlq) = (format!("{base}{suffix}"), format!("{base}-dlq{suffix}"));
        if dlq.len() > MAX_QUEUE_NAME {
            return Err(Error::Config(format!(
                "the queue name `{dlq}` of subscription `{subscription}` is longer than SQS's \
                 {MAX_QUEUE_NAME} characters: shorten the subscription's name or the queue prefix"
            )));
        }
        Ok((queue, dlq))
    }

    /// The URL of queue `name`, or `None` when there is no such queue.
    pub(crate) async fn queue_url(&self, name: &str) -> Result<Option<String>, Error> {
        match self.sqs.get_queue_url().queue_name(name).send().await {
            Ok(out) => Ok(out.queue_url().map(str::to_owned)),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_queue_does_not_exist()) =>
            {
                Ok(None)
            }
            Err(e) => Err(Error::from_sdk(&e, "looking up a queue")),
        }
    }

    /// SQS's approximate count of the messages in queue `url`: waiting, in flight, and
    /// delayed (exact within a minute or so of the last change).
    pub(crate) async fn approximate_messages(&self, url: &str, what: &str) -> Result<u64, Error> {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|e| Error::from_sdk(&e, what))?;
        Ok(out
            .attributes()
            .map(|a| a.values().filter_map(|v| v.parse::<u64>().ok()).sum())
            .unwrap_or(0))
    }

    /// The queues of an existing subscription, or `None`.
    pub(crate) async fn existing(&self, subscription: &str) -> Result<Option<Queue>, Error> {
        let (name, dlq) = self.queue_names(subscription)?;
        let (Some(url), Some(dlq_url)) =
            (self.queue_url(&name).await?, self.queue_url(&dlq).await?)
        else {
            return Ok(None);
        };
        Ok(Some(Queue { url, dlq_url }))
    }

    /// Creates queue `name` with `attributes`, or sets them on it when it exists; its URL.
    async fn ensure_queue(
        &self,
        name: &str,
        attributes: Vec<(QueueAttributeName, String)>,
    ) -> Result<String, Error> {
        if let Some(url) = self.queue_url(name).await? {
            let settable: HashMap<_, _> = attributes
                .into_iter()
                .filter(|(k, _)| {
                    !matches!(
                        k,
                        QueueAttributeName::FifoQueue
                            | QueueAttributeName::ContentBasedDeduplication
                    )
                })
                .collect();
            self.sqs
                .set_queue_attributes()
                .queue_url(&url)
                .set_attributes(Some(settable))
                .send()
                .await
                .map_err(|e| Error::from_sdk(&e, "setting a queue's attributes"))?;
            return Ok(url);
        }
        let attributes: HashMap<_, _> = attributes.into_iter().collect();
        let mut waited = Duration::ZERO;
        let out = loop {
            let created = self
                .sqs
                .create_queue()
                .queue_name(name)
                .set_attributes(Some(attributes.clone()))
                .send()
                .await;
            match created {
                Err(e)
                    if waited < RECREATE_WAIT
                        && e.as_service_error()
                            .is_some_and(|s| s.is_queue_deleted_recently()) =>
                {
                    // SQS refuses a queue of a name deleted in the last 60 s (a removed
                    // subscription subscribed again): wait it out rather than fail.
                    if waited.is_zero() {
                        tracing::info!(
                            queue = name,
                            "SQS deleted this queue less than a minute ago and refuses it \
                             until then: waiting"
                        );
                    }
                    tokio::time::sleep(RECREATE_PAUSE).await;
                    waited += RECREATE_PAUSE;
                }
                created => break created.map_err(|e| Error::from_sdk(&e, "creating a queue"))?,
            }
        };
        out.queue_url()
            .map(str::to_owned)
            .ok_or_else(|| Error::Config("SQS returned no queue URL".to_owned()))
    }

    /// The ARN of the queue at `url`.
    pub(crate) async fn queue_arn(&self, url: &str) -> Result<String, Error> {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| Error::from_sdk(&e, "reading a queue's ARN"))?;
        out.attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .cloned()
            .ok_or_else(|| Error::Config("SQS returned no queue ARN".to_owned()))
    }

    /// Declares a subscription: its queues, its link to the topic or bus, its queue policy
    /// (see the module docs). Idempotent.
    pub(crate) async fn declare(
        &self,
        subscription: &str,
        patterns: &[Pattern],
        delivery_limit: u32,
    ) -> Result<Queue, Error> {
        let (name, dlq_name) = self.queue_names(subscription)?;
        let fifo = |mut attributes: Vec<(QueueAttributeName, String)>| {
            if self.config.fifo {
                attributes.push((QueueAttributeName::FifoQueue, "true".to_owned()));
                attributes.push((
                    QueueAttributeName::ContentBasedDeduplication,
                    "false".to_owned(),
                ));
            }
            attributes
        };
        let dlq_url = self
            .ensure_queue(
                &dlq_name,
                fifo(vec![(
                    QueueAttributeName::MessageRetentionPeriod,
                    DLQ_RETENTION.to_owned(),
                )]),
            )
            .await?;
        let dlq_arn = self.queue_arn(&dlq_url).await?;
        let redrive = redrive_policy(&dlq_arn, delivery_limit);
        let url = self
            .ensure_queue(
                &name,
                fifo(vec![
                    (
                        QueueAttributeName::VisibilityTimeout,
                        self.config.lease.as_secs().to_string(),
                    ),
                    (QueueAttributeName::RedrivePolicy, redrive.to_string()),
                ]),
            )
            .await?;
        let arn = self.queue_arn(&url).await?;
        let source_arn = match self.config.fanout {
            Fanout::Sns => self.link_topic(&arn, patterns).await?,
            Fanout::EventBridge => self.link_bus(&name, &arn, patterns).await?,
        };
        let service = self.config.fanout.service();
        let policy = queue_policy(service, &arn, &source_arn);
        self.sqs
            .set_queue_attributes()
            .queue_url(&url)
            .attributes(QueueAttributeName::Policy, policy.to_string())
            .send()
            .await
            .map_err(|e| Error::from_sdk(&e, "setting a queue's policy"))?;
        Ok(Queue { url, dlq_url })
    }

    /// Subscribes the queue `queue_arn` to the topic with the patterns' filter policy, or
    /// sets the policy of its existing subscription. The topic's ARN.
    async fn link_topic(&self, queue_arn: &str, patterns: &[Pattern]) -> Result<String, Error> {
        let topic_arn = self.topic_arn.clone().expect("SNS fanout has a topic");
        // AWS takes `{}` as "no filter policy".
        let policy = filter::sns_policy(patterns).unwrap_or_else(|| "{}".to_owned());
        if let Some(subscription_arn) = self.topic_subscription(&topic_arn, queue_arn).await? {
            for (name, value) in [("RawMessageDelivery", "true"), ("FilterPolicy", &policy)] {
                self.sns
                    .set_subscription_attributes()
                    .subscription_arn(&subscription_arn)
                    .attribute_name(name)
                    .attribute_value(value)
                    .send()
                    .await
                    .map_err(|e| Error::from_sdk(&e, "setting a subscription's filter"))?;
            }
            return Ok(topic_arn);
        }
        self.sns
            .subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(queue_arn)
            .attributes("RawMessageDelivery", "true")
            .attributes("FilterPolicy", policy)
            .return_subscription_arn(true)
            .send()
            .await
            .map_err(|e| Error::from_sdk(&e, "subscribing a queue to the topic"))?;
        Ok(topic_arn)
    }

    /// The ARN of the topic's subscription that delivers to the queue `queue_arn`, if any.
    async fn topic_subscription(
        &self,
        topic_arn: &str,
        queue_arn: &str,
    ) -> Result<Option<String>, Error> {
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
            let found = out
                .subscriptions()
                .iter()
                .find(|s| s.protocol() == Some("sqs") && s.endpoint() == Some(queue_arn))
                .and_then(|s| s.subscription_arn())
                // A subscription still pending confirmation has no ARN yet.
                .filter(|arn| arn.starts_with("arn:"));
            if let Some(arn) = found {
                return Ok(Some(arn.to_owned()));
            }
            next = out.next_token().map(str::to_owned);
            if next.is_none() {
                return Ok(None);
            }
        }
    }

    /// Removes a subscription: first its link (the topic's subscription, or the rule and
    /// its target), so that nothing more is sent to it, then its queue and dead-letter
    /// queue with what they hold. What does not exist is skipped.
    pub(crate) async fn remove(&self, subscription: &str) -> Result<(), Error> {
        let (name, dlq) = self.queue_names(subscription)?;
        let url = self.queue_url(&name).await?;
        match self.config.fanout {
            Fanout::Sns => {
                if let (Some(url), Some(topic_arn)) = (&url, &self.topic_arn) {
                    let queue_arn = self.queue_arn(url).await?;
                    if let Some(arn) = self.topic_subscription(topic_arn, &queue_arn).await? {
                        self.sns
                            .unsubscribe()
                            .subscription_arn(arn)
                            .send()
                            .await
                            .map_err(|e| Error::from_sdk(&e, "unsubscribing a queue"))
                            .map(drop)
                            .or_else(skip_missing)?;
                    }
                }
            }
            Fanout::EventBridge => {
                let bus = &self.config.event_bus;
                self.events
                    .remove_targets()
                    .rule(&name)
                    .event_bus_name(bus)
                    .ids(RULE_TARGET)
                    .send()
                    .await
                    .map_err(|e| Error::from_sdk(&e, "removing the rule's target"))
                    .map(drop)
                    .or_else(skip_missing)?;
                self.events
                    .delete_rule()
                    .name(&name)
                    .event_bus_name(bus)
                    .send()
                    .await
                    .map_err(|e| Error::from_sdk(&e, "deleting the rule"))
                    .map(drop)
                    .or_else(skip_missing)?;
            }
        }
        for url in [url, self.queue_url(&dlq).await?].into_iter().flatten() {
            self.sqs
                .delete_queue()
                .queue_url(url)
                .send()
                .await
                .map_err(|e| Error::from_sdk(&e, "deleting a queue"))
                .map(drop)
                .or_else(skip_missing)?;
        }
        Ok(())
    }

    /// Puts the rule `name` on the bus with the patterns' event pattern and the queue as
    /// its target. The rule's ARN.
    async fn link_bus(
        &self,
        name: &str,
        queue_arn: &str,
        patterns: &[Pattern],
    ) -> Result<String, Error> {
        if name.len() > MAX_RULE_NAME {
            return Err(Error::Config(format!(
                "the rule name `{name}` is longer than EventBridge's {MAX_RULE_NAME} characters: \
                 shorten the subscription's name or the queue prefix"
            )));
        }
        let bus = &self.config.event_bus;
        let rule = self
            .events
            .put_rule()
            .name(name)
            .event_bus_name(bus)
            .event_pattern(filter::event_pattern(patterns))
            .state(aws_sdk_eventbridge::types::RuleState::Enabled)
            .description("tidings: a subscription's queue")
            .send()
            .await
            .map_err(|e| Error::from_sdk(&e, "putting a rule on the bus"))?;
        let target = aws_sdk_eventbridge::types::Target::builder()
            .id(RULE_TARGET)
            .arn(queue_arn)
            .build()
            .map_err(|e| Error::Config(e.to_string()))?;
        let out = self
            .events
            .put_targets()
            .rule(name)
            .event_bus_name(bus)
            .targets(target)
            .send()
            .await
            .map_err(|e| Error::from_sdk(&e, "targeting the queue from the rule"))?;
        if out.failed_entry_count() > 0 {
            let reason = out
                .failed_entries()
                .iter()
                .map(|f| {
                    format!(
                        "{}: {}",
                        f.error_code().unwrap_or_default(),
                        f.error_message().unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            return Err(Error::Refused {
                operation: "targeting the queue from the rule".to_owned(),
                reason,
            });
        }
        rule.rule_arn()
            .map(str::to_owned)
            .ok_or_else(|| Error::Config("EventBridge returned no rule ARN".to_owned()))
    }
}

/// `Ok` for what was already gone.
fn skip_missing<T: Default>(error: Error) -> Result<T, Error> {
    if error.is_missing() {
        Ok(T::default())
    } else {
        Err(error)
    }
}

/// The redrive policy of a subscription's queue.
pub(crate) fn redrive_policy(dlq_arn: &str, delivery_limit: u32) -> serde_json::Value {
    json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": delivery_limit.to_string(),
    })
}

/// The policy of a subscription's queue: `service` may send to it from `source_arn` only.
pub(crate) fn queue_policy(service: &str, queue_arn: &str, source_arn: &str) -> serde_json::Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "tidings-fanout",
            "Effect": "Allow",
            "Principal": { "Service": service },
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": { "ArnEquals": { "aws:SourceArn": source_arn } },
        }],
    })
}

/// The state of one delivery stream. Dropping it stops receiving; deliveries handed out
/// release their messages when dropped unsettled, while their leases hold.
struct Consuming {
    subscription: Arc<Subscription>,
    patterns: Vec<Pattern>,
    /// Deliveries this stream may hold unsettled.
    permits: Arc<Semaphore>,
    buffer: VecDeque<Box<dyn Delivery>>,
    failures: u32,
}

impl Consuming {
    async fn next(&mut self) -> Option<Item> {
        let inner = self.subscription.inner.clone();
        loop {
            if let Some(delivery) = self.buffer.pop_front() {
                return Some(Ok(delivery));
            }
            if inner.closed.is_cancelled() {
                return None;
            }
            let received = tokio::select! {
                () = inner.closed.cancelled() => return None,
                received = self.receive() => received,
            };
            match received {
                Ok(()) => self.failures = 0,
                Err(Error::Closed) => return None,
                Err(error) if error.is_transient() || error.is_missing() => {
                    self.failures += 1;
                    tracing::debug!(%error, subscription = %self.subscription.name, "cannot receive yet");
                    let pause = Duration::from_millis(100 * u64::from(self.failures.min(30)));
                    tokio::select! {
                        () = inner.closed.cancelled() => return None,
                        () = tokio::time::sleep(pause) => {}
                    }
                    if error.is_missing() {
                        self.redeclare().await;
                    }
                }
                Err(error) => return Some(Err(error.into())),
            }
        }
    }

    /// Receives what the permits allow into the buffer.
    async fn receive(&mut self) -> Result<(), Error> {
        let sub = self.subscription.clone();
        let inner = &sub.inner;
        // Room for at least one delivery, then as many more as are free.
        let mut permits = vec![
            self.permits
                .clone()
                .acquire_owned()
                .await
                .expect("never closed"),
        ];
        while permits.len() < RECEIVE_MAX {
            match self.permits.clone().try_acquire_owned() {
                Ok(permit) => permits.push(permit),
                Err(_) => break,
            }
        }
        let asked = Instant::now();
        let out = inner
            .sqs
            .receive_message()
            .queue_url(&sub.queue.url)
            .max_number_of_messages(i32::try_from(permits.len()).expect("at most 10"))
            // The lease this consumer keeps, whatever the queue's default says now (another
            // process may have declared it with another lease).
            .visibility_timeout(i32::try_from(granted(inner).as_secs()).expect("at most 12 hours"))
            .wait_time_seconds(i32::try_from(inner.config.wait.as_secs()).expect("at most 20"))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(
                MessageSystemAttributeName::ApproximateFirstReceiveTimestamp,
            )
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| Error::from_sdk(&e, "receiving"))?;
        let answered = Instant::now();
        for message in out.messages() {
            // At most as many messages as permits were asked for.
            let Some(permit) = permits.pop() else { break };
            let incoming = Incoming::read(message);
            let Some(delivery) =
                AwsDelivery::new(message, incoming, sub.clone(), permit, (asked, answered))
            else {
                continue;
            };
            let topic = delivery.topic();
            if !topic.is_empty() && !self.patterns.iter().any(|p| p.matches(topic)) {
                // What the service could not filter: not for this subscription.
                tokio::spawn(async move {
                    if let Err(error) = Box::new(delivery).ack().await {
                        tracing::debug!(%error, "an event of no interest was not deleted");
                    }
                });
                continue;
            }
            self.buffer.push_back(Box::new(delivery));
        }
        Ok(())
    }

    /// Declares the subscription again (its queue was deleted under it).
    async fn redeclare(&self) {
        let sub = &self.subscription;
        match sub
            .inner
            .declare(&sub.name, &self.patterns, sub.inner.config.delivery_limit)
            .await
        {
            Ok(queue) if queue.url != sub.queue.url => tracing::warn!(
                subscription = %sub.name,
                "the queue was created again under a new URL; this stream keeps receiving from the old one"
            ),
            Ok(_) => tracing::info!(subscription = %sub.name, "declared the deleted queue again"),
            Err(error) => tracing::debug!(%error, "cannot declare the queue again yet"),
        }
    }
}
