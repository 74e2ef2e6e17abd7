//! Webhook subscriptions: a subscription whose handler is an HTTP endpoint, for services
//! that do not link tidings.
//!
//! Each event matching the subscription's patterns is POSTed to the endpoint in the
//! CloudEvents HTTP binding, structured mode (`Content-Type: application/cloudevents+json`),
//! signed as [Standard Webhooks](https://www.standardwebhooks.com/) sign:
//!
//! - `webhook-id`: the event's id (the same on every attempt, for the receiver's
//!   de-duplication);
//! - `webhook-timestamp`: seconds since the epoch when this attempt was sent;
//! - `webhook-signature`: `v1,` and the base64 HMAC-SHA256, keyed with the subscription's
//!   secret, of `{webhook-id}.{webhook-timestamp}.{body}`.
//!
//! A receiver checks the signature and refuses timestamps more than a few minutes away from
//! its clock, so that a captured request cannot be replayed later. The Standard Webhooks
//! libraries (Python's `standardwebhooks`, say) do both. A secret written `whsec_<base64>`,
//! as those libraries make them, is keyed with the decoded bytes; any other secret with its
//! UTF-8 bytes.
//!
//! The answer settles the delivery: `2xx` acks it; `429` (after its `Retry-After`), `408`,
//! `5xx`, a time-out or a refused connection retry it with the subscription's backoff; any
//! other answer dead-letters it with the status and the start of the body, as does running
//! out of attempts. At most `concurrency` requests are in flight per subscription.
//!
//! With `[serve] schemas` set, an event that breaks its schema ([`super::contracts`]) is
//! dead-lettered as a schema violation (or an unsupported version) with the JSON pointer of
//! the offending value, and never reaches the endpoint.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use sha2::Sha256;
use tidings::codec::{Codec, STRUCTURED_CONTENT_TYPE, StructuredJson};
use tidings::envelope::Envelope;
use tidings::retry::RetryPolicy;
use tidings::{Bus, HandlerError};

use super::contracts::Contracts;
use crate::config::WebhookSection;

/// The most a `Retry-After` may delay a retry.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// How much of an endpoint's refusal is kept in the dead letter.
const REASON_BODY: usize = 200;

/// One webhook subscription: where it delivers and how it signs.
pub(crate) struct Webhook {
    name: String,
    url: reqwest::Url,
    key: Vec<u8>,
    tenant: Option<String>,
    timeout: Duration,
    client: reqwest::Client,
    /// The schemas events are held to before delivery, when `[serve] schemas` is set.
    contracts: Option<Arc<Contracts>>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

/// The settings of a webhook subscription, resolved.
pub(crate) struct Plan {
    pub(crate) webhook: Arc<Webhook>,
    patterns: Vec<String>,
    concurrency: usize,
    retry: RetryPolicy,
}

impl Plan {
    /// Checks `section` (URL, secret, patterns) into a plan; errors name the webhook.
    pub(crate) fn from_config(
        section: &WebhookSection,
        client: reqwest::Client,
        contracts: Option<Arc<Contracts>>,
    ) -> anyhow::Result<Self> {
        let what = format!("webhook `{}`", section.name);
        let url = reqwest::Url::parse(&section.url)
            .with_context(|| format!("{what}: url `{}`", section.url))?;
        anyhow::ensure!(
            matches!(url.scheme(), "http" | "https"),
            "{what}: url `{url}` is not http:// or https://"
        );
        anyhow::ensure!(!section.patterns.is_empty(), "{what}: `patterns` is empty");
        for pattern in &section.patterns {
            tidings::topic::Pattern::parse(pattern)
                .with_context(|| format!("{what}: pattern `{pattern}`"))?;
        }
        let key = signing_key(section.secret()?.expose()).with_context(|| what.clone())?;
        let attempts = section.max_attempts.unwrap_or(5).max(1);
        let retry = RetryPolicy::exponential(section.backoff.unwrap_or(Duration::from_secs(1)))
            .with_max_attempts(attempts)
            .with_max_delay(Duration::from_secs(600));
        Ok(Self {
            webhook: Arc::new(Webhook {
                name: section.name.clone(),
                url,
                key,
                tenant: section.tenant.clone(),
                timeout: section.timeout.unwrap_or(Duration::from_secs(10)),
                client,
                contracts,
            }),
            patterns: section.patterns.clone(),
            concurrency: section.concurrency.unwrap_or(8).max(1),
            retry,
        })
    }

    /// Starts the subscription on `bus`.
    pub(crate) async fn start(&self, bus: &Bus) -> anyhow::Result<tidings::SubscriptionHandle> {
        let mut subscription = bus
            .subscription(self.webhook.name.clone())
            .retry(self.retry)
            .concurrency(self.concurrency)
            .prefetch(self.concurrency * 2)
            // The request has its own time-out; this one only catches a stuck handler.
            .timeout(self.webhook.timeout + Duration::from_secs(5));
        for pattern in &self.patterns {
            let webhook = self.webhook.clone();
            subscription = subscription.on_pattern(pattern, move |event: Arc<Envelope>| {
                let webhook = webhook.clone();
                async move { webhook.deliver(&event).await }
            });
        }
        subscription
            .start()
            .await
            .with_context(|| format!("starting webhook `{}`", self.webhook.name))
    }

    /// The subscription's name.
    pub(crate) fn name(&self) -> &str {
        &self.webhook.name
    }

    /// The endpoint.
    pub(crate) fn url(&self) -> &str {
        self.webhook.url.as_str()
    }

    /// The subscription as the API shows it.
    pub(crate) fn info(&self) -> super::gateway::WebhookInfo {
        super::gateway::WebhookInfo {
            name: self.webhook.name.clone(),
            url: self.webhook.url.to_string(),
            patterns: self.patterns.clone(),
        }
    }
}

/// The HMAC key of `secret`: the decoded bytes of a `whsec_<base64>` secret, else its bytes.
fn signing_key(secret: &str) -> anyhow::Result<Vec<u8>> {
    match secret.strip_prefix("whsec_") {
        Some(encoded) => {
            let key = base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(encoded.trim_end_matches('='))
                .context("the secret starts with `whsec_` but the rest is not base64")?;
            anyhow::ensure!(!key.is_empty(), "the secret is empty");
            Ok(key)
        }
        None => {
            anyhow::ensure!(!secret.is_empty(), "the secret is empty");
            Ok(secret.as_bytes().to_vec())
        }
    }
}

/// The `webhook-signature` value for one request.
fn signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

impl Webhook {
    /// POSTs `event` and turns the answer into the delivery's settlement.
    async fn deliver(&self, event: &Envelope) -> Result<(), HandlerError> {
        if let Some(tenant) = &self.tenant
            && event.extensions.tenantid.as_deref() != Some(tenant.as_str())
        {
            // Another tenant's event: not for this endpoint.
            return Ok(());
        }
        if let Some(contracts) = &self.contracts {
            // An event from a producer that skipped the gateway's check: never delivered.
            contracts.check(event).map_err(|violation| {
                HandlerError::reject_with(violation.reason_kind(), violation)
            })?;
        }
        let body = StructuredJson.encode(event).map_err(HandlerError::reject)?;
        let timestamp = chrono::Utc::now().timestamp();
        let answer = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, STRUCTURED_CONTENT_TYPE)
            .header("webhook-id", &event.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                signature(&self.key, &event.id, timestamp, &body),
            )
            .timeout(self.timeout)
            .body(body)
            .send()
            .await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(error) if error.is_timeout() => {
                return Err(HandlerError::retry(format!(
                    "{} did not answer within {:?}",
                    self.url, self.timeout
                )));
            }
            Err(error) => {
                return Err(HandlerError::retry(format!(
                    "{}: {}",
                    self.url,
                    error_chain(&error)
                )));
            }
        };
        let status = answer.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = answer
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|secs| Duration::from_secs(secs).min(MAX_RETRY_AFTER));
        let text = answer.text().await.unwrap_or_default();
        let mut excerpt: String = text.chars().take(REASON_BODY).collect();
        if excerpt.len() < text.len() {
            excerpt.push('…');
        }
        let reason = format!("{} answered {status}: {}", self.url, excerpt.trim());
        Err(match status {
            StatusCode::TOO_MANY_REQUESTS => match retry_after {
                Some(delay) => HandlerError::retry_after(delay, reason),
                None => HandlerError::retry(reason),
            },
            StatusCode::REQUEST_TIMEOUT => HandlerError::retry(reason),
            status if status.is_server_error() => HandlerError::retry(reason),
            _ => HandlerError::reject(reason),
        })
    }
}

/// An error with its causes, one line ("error sending request: connection refused").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_standard_webhooks_one() {
        // The example of the Standard Webhooks specification's test vectors: secret
        // `whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw`, id `msg_p5jXN8AQM9LWM0D4loKWxJek`,
        // timestamp 1614265330, body `{"test": 2432232314}`.
        let key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signed = signature(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signed, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn a_plain_secret_is_keyed_with_its_bytes_and_an_empty_one_is_refused() {
        assert_eq!(signing_key("s3cret").unwrap(), b"s3cret");
        assert!(signing_key("").is_err());
        assert!(signing_key("whsec_").is_err());
        assert!(signing_key("whsec_not base64!").is_err());
    }
}
