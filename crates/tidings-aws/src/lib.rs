//! AWS for tidings: SNS topics fanned out to SQS queues, or EventBridge rules to SQS queues;
//! dead-letter queues; topology.
//!
//! [`AwsTransport`] implements the tidings transport contract on AWS:
//!
//! - **Publishing**: to an SNS topic ([`Fanout::Sns`], the default) with the event's routing
//!   as message attributes (`eventName`, `publisherName`, `entityName`, `tenantId`, and
//!   `depth`, the topic's word count), or to an EventBridge bus ([`Fanout::EventBridge`]) with
//!   the event's type as `detail-type` and the CloudEvent as `detail`. Batches respect each
//!   API's limits (10 entries, 256 KiB); entries AWS failed are tried again, then reported
//!   as a transient error, which the failover publisher of `tidings-sqlite` catches. FIFO
//!   topics and queues: the message group is the event's `partitionkey` (else its subject),
//!   the de-duplication id its id.
//! - **Subscribing**: one SQS queue per subscription, subscribed to the topic with raw
//!   message delivery and a filter policy derived from its patterns (or the target of a rule
//!   on the bus with an event pattern derived from them); what the services cannot express
//!   is filtered exactly on the consumer ([`filter`](crate) rules in the crate docs of
//!   `filter.rs`). Long polling; the visibility timeout is the lease, extended while a
//!   handler runs; a message is deleted when handled; a retry is a change of its visibility.
//!   Removing a subscription (`Transport::remove_subscription`, what `tidings tail` does
//!   when it stops) deletes its link, then its queues.
//! - **Dead letters**: a queue per subscription (`<queue>-dlq`), fed by tidings with the
//!   failure's details and by SQS's redrive policy after [`AwsConfig::delivery_limit`]
//!   receives; listed, replayed and purged through
//!   [`DeadLetters`](tidings_core::transport::DeadLetters).
//!
//! - **Topology**: [`Topology`] files, planned and applied idempotently
//!   ([`AwsTransport::plan`], [`AwsTransport::apply`], `tidings topology apply --url aws://`).
//!
//! The SDK crates are built only for this crate (or the facade's `aws` feature): a plain
//! `cargo build` of the workspace leaves them out.
//!
//! # Delivery on SQS
//!
//! At least once. A handler's failure makes its message visible again after the retry
//! delay (a visibility change); the attempt number is SQS's receive count, so it survives
//! a crashed consumer. SQS cannot change a message, so the previous attempt's error does
//! not travel with it ([`FailureHistory::last_error`] is `None`); the dead letter carries
//! the last one. Standard queues may reorder and, rarely, deliver twice: the inbox removes
//! the duplicates; FIFO queues keep each message group's order.
//!
//! [`FailureHistory::last_error`]: tidings_core::transport::FailureHistory::last_error
//!
//! # Tested against moto
//!
//! The tests run against a local [moto](https://github.com/getmoto/moto) server
//! (`moto[server]`, pinned in `.ci/requirements.txt`): the conformance suite three times
//! (SNS, SNS FIFO, EventBridge), SNS filter policies and the client filter, lease extension,
//! SQS's redrive, FIFO de-duplication, batch limits, EventBridge rules, topology files and
//! the failover publisher through a network cut. Where moto differs from AWS:
//!
//! - **Policies and credentials are not enforced.** Any key is accepted, and a queue
//!   without the policy that lets the topic or rule send to it still receives; on AWS it
//!   would not. `declare` (and `topology apply`) set that policy; the topology tests check
//!   it is there, not that AWS would honour it.
//! - **EventBridge writes the detail again** with a space after each `,` and `:` (AWS also
//!   re-serializes it). Reading removes that whitespace, so `data` reads back as the
//!   compact JSON that was published; numbers written in another form (`1e3`) may come
//!   back as the service writes them.
//! - **Counts are exact** on moto; on AWS `ApproximateNumberOfMessages` (behind
//!   `DeadLetters::count`) lags by up to a minute. Listing and purging dead letters receive
//!   the messages, and are exact on both.
//! - **No throughput limits**: AWS throttles (FIFO: 300 calls per second per group without
//!   high-throughput mode; `PutEvents`: per-region quotas), which surfaces as failed batch
//!   entries that are sent again, then as a transient error. moto never throttles, so the
//!   retry of failed entries is not exercised by the tests.
//! - **A deleted queue's name is free at once.** AWS refuses it for 60 s; creating the
//!   queue then waits that out, which the tests (on moto) do not exercise.
//! - **Nothing survives a restart** of moto, so the conformance case that restarts the
//!   broker is not applicable; the failover test cuts the network instead.
//!
//! ```no_run
//! use futures::StreamExt;
//! use tidings_aws::{AwsConfig, AwsTransport};
//! use tidings_core::envelope::Envelope;
//! use tidings_core::topic::Pattern;
//! use tidings_core::transport::{Publisher, Subscriber, SubscriptionSpec};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let transport = AwsTransport::connect(AwsConfig::new()).await?;
//! let spec = SubscriptionSpec::new("notification", [Pattern::parse("order.*")?]);
//! let mut deliveries = transport.subscribe(&spec).await?;
//!
//! transport.publish(&Envelope::new("oms", "order.created")).await?;
//! let delivery = deliveries.next().await.unwrap()?;
//! delivery.ack().await?;
//! # Ok(())
//! # }
//! ```

mod config;
mod dead_letter;
mod delivery;
mod error;
mod filter;
mod message;
mod publisher;
mod subscriber;
mod topology;

pub use config::{AwsConfig, Fanout, StaticCredentials};
pub use error::{Error, Result};
pub use topology::{Change, Plan, Resource, ServiceSubscription, Step, Topology};

use std::sync::Arc;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use tidings_core::transport::{Capabilities, Transport, TransportError};
use tokio_util::sync::CancellationToken;

/// The AWS transport. Clones share the clients.
#[derive(Clone, Debug)]
pub struct AwsTransport {
    inner: Arc<Inner>,
}

/// What clones share.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: AwsConfig,
    pub(crate) sqs: aws_sdk_sqs::Client,
    pub(crate) sns: aws_sdk_sns::Client,
    pub(crate) events: aws_sdk_eventbridge::Client,
    /// The SNS topic's ARN ([`Fanout::Sns`]).
    pub(crate) topic_arn: Option<String>,
    pub(crate) closed: CancellationToken,
    /// Serializes this process's reads of dead-letter queues (see `dead_letter.rs`).
    pub(crate) browsing: tokio::sync::Mutex<()>,
}

impl AwsTransport {
    /// Builds the clients and creates the topic (or bus) if needed. Fails when AWS refuses,
    /// or cannot be reached.
    pub async fn connect(config: AwsConfig) -> Result<Self> {
        let mut inner = Inner::clients(config).await?;
        match inner.config.fanout {
            Fanout::Sns => inner.topic_arn = Some(inner.ensure_topic().await?),
            Fanout::EventBridge => inner.ensure_bus().await?,
        }
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &AwsConfig {
        &self.inner.config
    }

    /// The SQS client, for what tidings does not do.
    pub fn sqs(&self) -> &aws_sdk_sqs::Client {
        &self.inner.sqs
    }

    /// The SNS client, for what tidings does not do.
    pub fn sns(&self) -> &aws_sdk_sns::Client {
        &self.inner.sns
    }

    /// The EventBridge client, for what tidings does not do.
    pub fn eventbridge(&self) -> &aws_sdk_eventbridge::Client {
        &self.inner.events
    }

    /// The SNS topic's ARN (with [`Fanout::Sns`]).
    pub fn topic_arn(&self) -> Option<&str> {
        self.inner.topic_arn.as_deref()
    }

    /// The URLs of the queue and dead-letter queue of `subscription`, or `None` when it
    /// has not been declared.
    pub async fn queue_urls(&self, subscription: &str) -> Result<Option<(String, String)>> {
        Ok(self
            .inner
            .existing(subscription)
            .await?
            .map(|q| (q.url, q.dlq_url)))
    }

    /// Publishes `bytes` as they are under `topic`: for tools, tests and producers that are
    /// not tidings. Nothing checks that they are an event.
    pub async fn publish_bytes(
        &self,
        topic: &str,
        bytes: &[u8],
    ) -> std::result::Result<(), tidings_core::transport::TransportError> {
        self.inner.publish_raw(topic, bytes).await
    }
}

impl Inner {
    /// The clients, creating nothing.
    pub(crate) async fn clients(config: AwsConfig) -> Result<Self> {
        if config.fifo && config.fanout == Fanout::EventBridge {
            return Err(Error::Config(
                "FIFO needs the SNS fanout: EventBridge buses have no order".to_owned(),
            ));
        }
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(std::time::Duration::from_secs(3))
                    .operation_attempt_timeout(config.timeout + config.wait)
                    .build(),
            );
        if let Some(region) = &config.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(endpoint) = &config.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(credentials) = &config.credentials {
            loader = loader.credentials_provider(aws_sdk_sqs::config::Credentials::new(
                credentials.access_key_id.clone(),
                credentials.secret_access_key.clone(),
                None,
                None,
                "tidings",
            ));
        }
        let sdk = loader.load().await;
        if sdk.region().is_none() {
            return Err(Error::Config(
                "no region: set AWS_REGION or AwsConfig::region".to_owned(),
            ));
        }
        Ok(Inner {
            sqs: aws_sdk_sqs::Client::new(&sdk),
            sns: aws_sdk_sns::Client::new(&sdk),
            events: aws_sdk_eventbridge::Client::new(&sdk),
            topic_arn: None,
            config,
            closed: CancellationToken::new(),
            browsing: tokio::sync::Mutex::new(()),
        })
    }

    /// The topic's name.
    pub(crate) fn topic_name(&self) -> String {
        if self.config.fifo {
            format!("{}.fifo", self.config.topic)
        } else {
            self.config.topic.clone()
        }
    }

    /// The topic's ARN, creating it if needed (idempotent).
    async fn ensure_topic(&self) -> Result<String> {
        let mut create = self.sns.create_topic().name(self.topic_name());
        if self.config.fifo {
            create = create
                .attributes("FifoTopic", "true")
                .attributes("ContentBasedDeduplication", "false");
        }
        let out = create
            .send()
            .await
            .map_err(|e| Error::from_sdk(&e, "creating the SNS topic"))?;
        out.topic_arn()
            .map(str::to_owned)
            .ok_or_else(|| Error::Config("SNS returned no topic ARN".to_owned()))
    }

    /// Creates the bus if needed (the default bus always exists).
    async fn ensure_bus(&self) -> Result<()> {
        if self.config.event_bus == "default" {
            return Ok(());
        }
        match self
            .events
            .create_event_bus()
            .name(&self.config.event_bus)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_already_exists_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(Error::from_sdk(&e, "creating the event bus")),
        }
    }
}

#[async_trait::async_trait]
impl Transport for AwsTransport {
    fn name(&self) -> &'static str {
        "aws"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            // Only FIFO queues keep order; standard ones may reorder.
            .with_ordering(self.inner.config.fifo)
            .with_consumer_groups(true)
            .with_persistence(true)
            .with_native_delay(true)
    }

    /// SQS's approximate count of the subscription's queue: events waiting, in flight and
    /// delayed for a retry. SQS tells no ages (CloudWatch's `ApproximateAgeOfOldestMessage`
    /// does). A subscription whose patterns start with a wildcard receives every event and
    /// filters on the consumer, so its count includes events it will drop. `None` for a
    /// subscription not declared.
    async fn backlog(
        &self,
        subscription: &str,
    ) -> std::result::Result<Option<tidings_core::transport::Backlog>, TransportError> {
        let inner = &self.inner;
        let (name, _) = inner.queue_names(subscription)?;
        let Some(url) = inner.queue_url(&name).await? else {
            return Ok(None);
        };
        let depth = inner
            .approximate_messages(&url, "counting the backlog")
            .await?;
        Ok(Some(tidings_core::transport::Backlog::new(depth, None)))
    }

    /// Removes the subscription's link (its SNS subscription, or its EventBridge rule), then
    /// its queue and dead-letter queue. SQS refuses a queue of the same name for 60 s after
    /// deleting one: subscribing again under the name within that minute waits it out.
    async fn remove_subscription(&self, name: &str) -> std::result::Result<(), TransportError> {
        Ok(self.inner.remove(name).await?)
    }

    /// Ready until closed. AWS's APIs are HTTP requests with no connection to lose; an
    /// unreachable AWS shows in the calls themselves (transient errors).
    async fn ready(&self) -> std::result::Result<(), tidings_core::transport::TransportError> {
        if self.inner.closed.is_cancelled() {
            return Err(tidings_core::transport::TransportError::Closed);
        }
        Ok(())
    }
}
