//! Settings of an [`AwsTransport`](crate::AwsTransport).

use std::fmt;
use std::time::Duration;

/// How published events reach the subscriptions' queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Fanout {
    /// An SNS topic; each subscription's queue subscribes to it with a filter policy on the
    /// event's message attributes, raw message delivery on. The default.
    #[default]
    Sns,
    /// An EventBridge bus; each subscription's queue is the target of a rule on it.
    EventBridge,
}

impl Fanout {
    /// The AWS service that sends to the queues.
    pub(crate) fn service(self) -> &'static str {
        match self {
            Fanout::Sns => "sns.amazonaws.com",
            Fanout::EventBridge => "events.amazonaws.com",
        }
    }
}

/// Static credentials, when the default chain (environment, profile, instance role) is not
/// wanted. The secret never appears in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticCredentials {
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: String,
}

impl fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"***")
            .finish()
    }
}

/// Settings of an [`AwsTransport`](crate::AwsTransport).
///
/// Region, endpoint and credentials come from the usual AWS environment (`AWS_REGION`,
/// `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, profiles, instance roles) unless set here.
///
/// ```
/// use std::time::Duration;
/// use tidings_aws::{AwsConfig, Fanout};
///
/// let config = AwsConfig::new()
///     .fanout(Fanout::Sns)
///     .topic("users")
///     .queue_prefix("shop-")
///     .lease(Duration::from_secs(60))
///     .credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG");
/// assert!(!format!("{config:?}").contains("wJalrXUtnFEMI"));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AwsConfig {
    pub(crate) region: Option<String>,
    pub(crate) endpoint: Option<String>,
    pub(crate) credentials: Option<StaticCredentials>,
    pub(crate) fanout: Fanout,
    pub(crate) topic: String,
    pub(crate) event_bus: String,
    pub(crate) source: Option<String>,
    pub(crate) fifo: bool,
    pub(crate) queue_prefix: String,
    pub(crate) lease: Duration,
    pub(crate) wait: Duration,
    pub(crate) delivery_limit: u32,
    pub(crate) timeout: Duration,
}

impl AwsConfig {
    /// The defaults: SNS topic `tidings-events`, queues `tidings-<subscription>`, a 30 s
    /// lease, a delivery limit of 20.
    pub fn new() -> Self {
        Self {
            region: None,
            endpoint: None,
            credentials: None,
            fanout: Fanout::Sns,
            topic: "tidings-events".to_owned(),
            event_bus: "tidings-events".to_owned(),
            source: None,
            fifo: false,
            queue_prefix: "tidings-".to_owned(),
            lease: Duration::from_secs(30),
            wait: Duration::from_secs(2),
            delivery_limit: 20,
            timeout: Duration::from_secs(10),
        }
    }

    /// The region, instead of `AWS_REGION` or the profile's.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// The endpoint (a local emulator), instead of `AWS_ENDPOINT_URL` or AWS itself.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// Static credentials, instead of the default chain.
    pub fn credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret: impl Into<String>,
    ) -> Self {
        self.credentials = Some(StaticCredentials {
            access_key_id: access_key_id.into(),
            secret_access_key: secret.into(),
        });
        self
    }

    /// How events reach the queues (default [`Fanout::Sns`]).
    pub fn fanout(mut self, fanout: Fanout) -> Self {
        self.fanout = fanout;
        self
    }

    /// The SNS topic's name (default `tidings-events`).
    pub fn topic(mut self, name: impl Into<String>) -> Self {
        self.topic = name.into();
        self
    }

    /// The EventBridge bus's name (default `tidings-events`).
    pub fn event_bus(mut self, name: impl Into<String>) -> Self {
        self.event_bus = name.into();
        self
    }

    /// The `source` of every entry put on the bus, instead of each event's own `source`
    /// (EventBridge only): for rules that match one source per publishing service.
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// FIFO topic and queues (SNS only): per-subject order, message group from the event's
    /// `partitionkey` (else its subject), de-duplication by event id.
    pub fn fifo(mut self, yes: bool) -> Self {
        self.fifo = yes;
        self
    }

    /// Prefix of the queues' names (default `tidings-`).
    pub fn queue_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.queue_prefix = prefix.into();
        self
    }

    /// How long a received message stays invisible to other consumers (the visibility
    /// timeout, default 30 s). A live consumer extends it every third of this.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.clamp(Duration::from_secs(1), Duration::from_secs(12 * 3600));
        self
    }

    /// How long a receive waits for messages (long polling, default 2 s, at most 20 s).
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait.min(Duration::from_secs(20));
        self
    }

    /// Receives after which SQS moves a message to the dead-letter queue by itself (its
    /// redrive policy): the guard against a message that takes its consumers down. Default 20.
    pub fn delivery_limit(mut self, limit: u32) -> Self {
        self.delivery_limit = limit.clamp(1, 1000);
        self
    }

    /// How long one call may take before it fails with a transient error (default 10 s;
    /// long polls get their wait on top).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The queue of `subscription`: the prefix and the name, with what SQS does not allow in
    /// a name (anything but letters, digits, `-` and `_`) written `_XX`.
    pub(crate) fn queue_name(&self, subscription: &str) -> String {
        let mut name = self.queue_prefix.clone();
        for c in subscription.chars() {
            if c.is_ascii_alphanumeric() || c == '-' {
                name.push(c);
            } else {
                let mut buf = [0u8; 4];
                for byte in c.encode_utf8(&mut buf).bytes() {
                    name.push_str(&format!("_{byte:02X}"));
                }
            }
        }
        name
    }
}

impl Default for AwsConfig {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_keep_subscriptions_apart_within_what_sqs_allows() {
        let config = AwsConfig::new();
        assert_eq!(config.queue_name("notification"), "tidings-notification");
        assert_eq!(config.queue_name("svc.orders"), "tidings-svc_2Eorders");
        assert_ne!(config.queue_name("a_2E"), config.queue_name("a."));
    }
}
