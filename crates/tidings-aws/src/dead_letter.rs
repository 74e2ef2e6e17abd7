//! A subscription's dead-letter queue: list, inspect, replay, purge.
//!
//! Its messages come from two places: tidings, which sends a message there with the
//! failure's details (the `details` attribute) when a handler gives up on it, and SQS's
//! redrive policy, which moves a message there unchanged after
//! [`AwsConfig::delivery_limit`](crate::AwsConfig::delivery_limit) receives. The second kind
//! is listed with reason `retries_exhausted`, its SQS message id as its id.
//!
//! SQS has no way to read a queue without receiving from it: listing receives every
//! message (each becomes invisible for [`BROWSE_VISIBILITY`]), then makes them all
//! visible again. Lists of one process are serialized; two processes listing the same
//! queue at once each see part of it. Listing is for operators, not for hot paths: it
//! reads at most [`BROWSE_LIMIT`] messages.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName as Name};
use chrono::Utc;
use tidings_core::dead_letter::{
    DeadLetter, Details, Original, Page, Reason, ReasonKind, ReplayTarget,
};
use tidings_core::transport::{DeadLetters, TransportError};

use crate::delivery::{decode, system_time};
use crate::message::{Incoming, Outgoing};
use crate::{AwsTransport, Error, Inner};

/// How long a listed message stays invisible if the lister dies before releasing it.
pub(crate) const BROWSE_VISIBILITY: Duration = Duration::from_secs(30);

/// Most messages one listing reads.
pub(crate) const BROWSE_LIMIT: usize = 10_000;

/// One dead-letter message, as received while browsing.
struct Received {
    letter: DeadLetter,
    incoming: Incoming,
    receipt: String,
    sent_ms: i64,
}

fn read(subscription: &str, inner: &Inner, message: &Message) -> Option<Received> {
    let receipt = message.receipt_handle()?.to_owned();
    let incoming = Incoming::read(message);
    let original = match decode(&incoming.body) {
        Ok(envelope) => Original::Envelope(Box::new(envelope)),
        Err(undecodable) => Original::Undecodable {
            body: undecodable.body,
            content_type: None,
        },
    };
    let sent = system_time(message, Name::SentTimestamp).unwrap_or_else(Utc::now);
    let letter = match incoming.details.as_deref().and_then(Details::from_json) {
        Some(details) => details.into_letter(original),
        None => {
            let first =
                system_time(message, Name::ApproximateFirstReceiveTimestamp).unwrap_or(sent);
            let mut letter = DeadLetter::new(
                subscription,
                original,
                Reason::new(
                    ReasonKind::RetriesExhausted,
                    format!(
                        "moved by SQS's redrive policy after {} receives",
                        inner.config.delivery_limit
                    ),
                ),
            )
            .with_attempts(inner.config.delivery_limit, Some(first));
            letter.id = message.message_id().unwrap_or_default().to_owned();
            letter.last_failure_at = sent;
            letter
        }
    };
    Some(Received {
        letter,
        incoming,
        receipt,
        sent_ms: sent.timestamp_millis(),
    })
}

impl Inner {
    /// The dead-letter queue's URL, or `None` when the subscription has none.
    async fn dlq_url(&self, subscription: &str) -> Result<Option<String>, Error> {
        let (_, dlq) = self.queue_names(subscription)?;
        self.queue_url(&dlq).await
    }

    /// Receives every message of the dead-letter queue at `url` (up to [`BROWSE_LIMIT`]),
    /// oldest first. They stay invisible until released.
    async fn browse(&self, subscription: &str, url: &str) -> Result<Vec<Received>, Error> {
        let mut all = Vec::new();
        while all.len() < BROWSE_LIMIT {
            let out = self
                .sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                // Long polling asks every SQS server: an empty answer means empty.
                .wait_time_seconds(1)
                .visibility_timeout(i32::try_from(BROWSE_VISIBILITY.as_secs()).expect("fits"))
                .message_system_attribute_names(Name::All)
                .message_attribute_names("All")
                .send()
                .await
                .map_err(|e| Error::from_sdk(&e, "reading dead letters"))?;
            if out.messages().is_empty() {
                break;
            }
            all.extend(
                out.messages()
                    .iter()
                    .filter_map(|m| read(subscription, self, m)),
            );
        }
        all.sort_by_key(|r| r.sent_ms);
        Ok(all)
    }

    /// Makes browsed messages visible again.
    async fn release(&self, url: &str, received: &[Received]) {
        for chunk in received.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(&r.receipt)
                        .visibility_timeout(0)
                        .build()
                        .expect("id and receipt are set")
                })
                .collect();
            if let Err(error) = self
                .sqs
                .change_message_visibility_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                tracing::debug!(
                    error = %Error::from_sdk(&error, "releasing dead letters"),
                    "listed dead letters come back after {BROWSE_VISIBILITY:?}"
                );
            }
        }
    }

    /// Browses and releases at once; the letters, oldest first.
    async fn letters(&self, subscription: &str) -> Result<Vec<Received>, TransportError> {
        let Some(url) = self.dlq_url(subscription).await? else {
            return Ok(Vec::new());
        };
        let _one_at_a_time = self.browsing.lock().await;
        let all = self.browse(subscription, &url).await?;
        self.release(&url, &all).await;
        Ok(all)
    }

    async fn delete(&self, url: &str, receipt: &str) -> Result<(), TransportError> {
        self.sqs
            .delete_message()
            .queue_url(url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| Error::from_sdk(&e, "deleting a dead letter"))?;
        Ok(())
    }
}

#[async_trait]
impl DeadLetters for AwsTransport {
    async fn list(
        &self,
        subscription: &str,
        page: Page,
    ) -> Result<Vec<DeadLetter>, TransportError> {
        Ok(self
            .inner
            .letters(subscription)
            .await?
            .into_iter()
            .skip(page.offset)
            .take(page.limit)
            .map(|r| r.letter)
            .collect())
    }

    /// SQS's count: approximate on AWS (exact within a minute or so of the last change),
    /// counting messages in flight and delayed too.
    async fn count(&self, subscription: &str) -> Result<u64, TransportError> {
        let inner = &self.inner;
        let Some(url) = inner.dlq_url(subscription).await? else {
            return Ok(0);
        };
        Ok(inner
            .approximate_messages(&url, "counting dead letters")
            .await?)
    }

    async fn get(
        &self,
        subscription: &str,
        id: &str,
    ) -> Result<Option<DeadLetter>, TransportError> {
        Ok(self
            .inner
            .letters(subscription)
            .await?
            .into_iter()
            .find(|r| r.letter.id == id)
            .map(|r| r.letter))
    }

    /// Sends the letter's message to the subscription's queue (or publishes it under a
    /// topic), then deletes it from the dead-letter queue. The message is kept invisible to
    /// other listers in between.
    async fn replay(
        &self,
        subscription: &str,
        id: &str,
        target: ReplayTarget,
    ) -> Result<(), TransportError> {
        let inner = &self.inner;
        let not_found =
            || TransportError::NotFound(format!("dead letter `{id}` of `{subscription}`"));
        let Some(dlq_url) = inner.dlq_url(subscription).await? else {
            return Err(not_found());
        };
        let _one_at_a_time = inner.browsing.lock().await;
        let mut all = inner.browse(subscription, &dlq_url).await?;
        let found = all.iter().position(|r| r.letter.id == id);
        let found = found.map(|i| all.swap_remove(i));
        inner.release(&dlq_url, &all).await;
        let Some(found) = found else {
            return Err(not_found());
        };
        let topic = found
            .incoming
            .topic
            .clone()
            .or_else(|| found.letter.envelope().map(|e| e.topic().to_owned()))
            .unwrap_or_default();
        let group = found
            .letter
            .envelope()
            .and_then(|e| e.extensions.partitionkey.clone().or(e.subject.clone()))
            .unwrap_or_else(|| topic.clone());
        match target {
            ReplayTarget::Topic(to) => {
                let message = Outgoing::resend(
                    &to,
                    &found.incoming.sent_form(),
                    found.incoming.base64,
                    &group,
                    &found.letter.id,
                );
                inner.send(vec![message]).await?;
            }
            _ => {
                let Some(queue) = inner.existing(subscription).await? else {
                    return Err(not_found());
                };
                let message = Outgoing::resend(
                    &topic,
                    &found.incoming.sent_form(),
                    found.incoming.base64,
                    &group,
                    &found.letter.id,
                );
                let mut send = inner
                    .sqs
                    .send_message()
                    .queue_url(&queue.url)
                    .message_body(&message.body)
                    .set_message_attributes(Some(message.sqs_attributes()));
                if inner.config.fifo {
                    send = send
                        .message_group_id(&message.group)
                        .message_deduplication_id(&message.dedup);
                }
                send.send()
                    .await
                    .map_err(|e| Error::from_sdk(&e, "replaying a dead letter"))?;
            }
        }
        inner.delete(&dlq_url, &found.receipt).await
    }

    /// Receives and deletes every message: the count is exact. (SQS's `PurgeQueue` would
    /// not say how many, and refuses a second purge within a minute.)
    async fn purge(&self, subscription: &str) -> Result<u64, TransportError> {
        let inner = &self.inner;
        let Some(url) = inner.dlq_url(subscription).await? else {
            return Ok(0);
        };
        let _one_at_a_time = inner.browsing.lock().await;
        let mut purged = 0u64;
        loop {
            let out = inner
                .sqs
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .visibility_timeout(i32::try_from(BROWSE_VISIBILITY.as_secs()).expect("fits"))
                .send()
                .await
                .map_err(|e| Error::from_sdk(&e, "reading dead letters"))?;
            if out.messages().is_empty() {
                return Ok(purged);
            }
            let entries = out
                .messages()
                .iter()
                .enumerate()
                .filter_map(|(i, m)| {
                    aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(m.receipt_handle()?)
                        .build()
                        .ok()
                })
                .collect::<Vec<_>>();
            let asked = entries.len();
            let deleted = inner
                .sqs
                .delete_message_batch()
                .queue_url(&url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| Error::from_sdk(&e, "purging dead letters"))?;
            purged += u64::try_from(asked - deleted.failed().len()).expect("fits");
        }
    }
}
