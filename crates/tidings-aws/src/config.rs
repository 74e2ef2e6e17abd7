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
    /// timeout, default 30 s), in whole seconds. A live consumer extends it once a third of it
    /// has gone by.
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

    /// The settings an `aws://` URL names, over the defaults and the AWS environment: the
    /// CLI's `--url aws://...`.
    ///
    /// - `aws://` or `aws://sns/<topic>`: an SNS topic (default `tidings-events`);
    /// - `aws://eventbridge/<bus>`: an EventBridge bus (`default` is the account's own);
    /// - query settings: `region`, `endpoint` (a local emulator), `queue_prefix`, `fifo`
    ///   (`true`/`false`), `source`, `lease` and `wait` (`30s`, `2m`), `delivery_limit`.
    ///
    /// Credentials never go in the URL: they come from the AWS environment (or
    /// [`AwsConfig::credentials`]).
    ///
    /// ```
    /// use tidings_aws::AwsConfig;
    ///
    /// let events = AwsConfig::from_url("aws://eventbridge/orders?region=eu-west-1")?;
    /// let local = AwsConfig::from_url("aws://?endpoint=http://127.0.0.1:5000&lease=1m")?;
    /// assert!(AwsConfig::from_url("aws://sqs/orders").is_err());
    /// # Ok::<(), tidings_aws::Error>(())
    /// ```
    pub fn from_url(url: &str) -> crate::Result<Self> {
        // Shown without what could be a secret, should someone put one in.
        let shown = tidings_core::broker_url::BrokerUrl::new(url).redacted();
        let invalid = |why: String| crate::Error::Config(format!("the AWS URL `{shown}`: {why}"));
        let parsed = ::url::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
        if parsed.scheme() != "aws" {
            return Err(invalid("not an aws:// URL".to_owned()));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(invalid(
                "credentials do not go in the URL: set AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY, or use a profile or role"
                    .to_owned(),
            ));
        }
        let name = parsed.path().trim_matches('/');
        let mut config = match parsed.host_str().unwrap_or("") {
            "" | "sns" => {
                let config = Self::new().fanout(Fanout::Sns);
                if name.is_empty() {
                    config
                } else {
                    config.topic(name)
                }
            }
            "eventbridge" | "events" => {
                let config = Self::new().fanout(Fanout::EventBridge);
                if name.is_empty() {
                    config
                } else {
                    config.event_bus(name)
                }
            }
            other => {
                return Err(invalid(format!(
                    "`{other}` is not a fanout: `aws://sns/<topic>` or `aws://eventbridge/<bus>`"
                )));
            }
        };
        let duration = |key: &str, value: &str| {
            humantime::parse_duration(value).map_err(|e| invalid(format!("`{key}`: {e}")))
        };
        for (key, value) in parsed.query_pairs() {
            config =
                match &*key {
                    "region" => config.region(value),
                    "endpoint" => config.endpoint(value),
                    "queue_prefix" => config.queue_prefix(value),
                    "source" => config.source(value),
                    "fifo" => config.fifo(value.parse().map_err(|_| {
                        invalid(format!("`fifo` is `true` or `false`, not `{value}`"))
                    })?),
                    "lease" => config.lease(duration(&key, &value)?),
                    "wait" => config.wait(duration(&key, &value)?),
                    "delivery_limit" => config.delivery_limit(value.parse().map_err(|_| {
                        invalid(format!("`delivery_limit` is a number, not `{value}`"))
                    })?),
                    other => {
                        return Err(invalid(format!(
                            "unknown setting `{other}` (region, endpoint, queue_prefix, fifo, \
                         source, lease, wait, delivery_limit)"
                        )));
                    }
                };
        }
        Ok(config)
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
    fn a_url_names_the_fanout_and_its_settings() {
        let config = AwsConfig::from_url("aws://").unwrap();
        assert_eq!(config.fanout, Fanout::Sns);
        assert_eq!(config.topic, "tidings-events");
        let config = AwsConfig::from_url(
            "aws://sns/users?region=eu-west-1&endpoint=http://127.0.0.1:5000&fifo=true\
             &queue_prefix=shop-&lease=1m&wait=5s&delivery_limit=3",
        )
        .unwrap();
        assert_eq!(config.topic, "users");
        assert_eq!(config.region.as_deref(), Some("eu-west-1"));
        assert_eq!(config.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        assert!(config.fifo);
        assert_eq!(config.queue_prefix, "shop-");
        assert_eq!(config.lease, Duration::from_secs(60));
        assert_eq!(config.wait, Duration::from_secs(5));
        assert_eq!(config.delivery_limit, 3);
        let config = AwsConfig::from_url("aws://eventbridge/orders?source=billing").unwrap();
        assert_eq!(config.fanout, Fanout::EventBridge);
        assert_eq!(config.event_bus, "orders");
        assert_eq!(config.source.as_deref(), Some("billing"));
    }

    #[test]
    fn a_url_with_credentials_or_unknown_settings_is_refused_with_the_reason() {
        for (url, reason) in [
            (
                "aws://AKID:secret@sns/x",
                "credentials do not go in the URL",
            ),
            ("aws://sqs/x", "`sqs` is not a fanout"),
            ("aws://?colour=blue", "unknown setting `colour`"),
            ("aws://?fifo=yes", "`fifo` is `true` or `false`"),
            ("aws://?lease=soon", "`lease`"),
            ("amqp://localhost", "not an aws:// URL"),
        ] {
            let error = AwsConfig::from_url(url).unwrap_err().to_string();
            assert!(error.contains(reason), "{url}: {error}");
            assert!(!error.contains("secret"), "{error}");
        }
    }

    #[test]
    fn queue_names_keep_subscriptions_apart_within_what_sqs_allows() {
        let config = AwsConfig::new();
        assert_eq!(config.queue_name("notification"), "tidings-notification");
        assert_eq!(config.queue_name("svc.orders"), "tidings-svc_2Eorders");
        assert_ne!(config.queue_name("a_2E"), config.queue_name("a."));
    }
}
