//! Publishing: to the SNS topic, or onto the EventBridge bus, in batches within the APIs'
//! limits.
//!
//! Both APIs answer a batch entry by entry. Entries that failed on AWS's side (throttling,
//! an internal error) are sent again, up to [`ATTEMPTS`] times with a growing pause; what
//! still fails is reported as a transient error, so that a failover publisher keeps the
//! events in its local store. Entries AWS refused as invalid fail the call at once.

use std::time::Duration;

use async_trait::async_trait;
use tidings_core::envelope::Envelope;
use tidings_core::transport::{Publisher, TransportError};

use crate::message::{MAX_SIZE, Outgoing};
use crate::{AwsTransport, Error, Fanout, Inner};

/// Most entries of one `PublishBatch` or `PutEvents` call.
const BATCH: usize = 10;

/// Times a failed entry is sent before the call fails.
const ATTEMPTS: u32 = 4;

#[async_trait]
impl Publisher for AwsTransport {
    /// Publishes the events in order, ten to a call. `Ok` means SNS (or EventBridge) has
    /// accepted every one of them.
    async fn publish_batch(&self, envelopes: &[Envelope]) -> Result<(), TransportError> {
        let messages = envelopes
            .iter()
            .map(Outgoing::of)
            .collect::<Result<Vec<_>, _>>()?;
        self.inner.send(messages).await
    }

    /// Stops publishing and consuming. Messages received and not yet deleted come back to
    /// the queue when their visibility timeout runs out.
    async fn close(&self) -> Result<(), TransportError> {
        self.inner.closed.cancel();
        Ok(())
    }
}

/// One entry that did not go through.
struct Failure {
    /// Its index in the batch.
    index: usize,
    /// Whether the entry itself is at fault (sending it again cannot help).
    refused: bool,
    reason: String,
}

impl Inner {
    /// Publishes bytes as they are under `topic`.
    pub(crate) async fn publish_raw(
        &self,
        topic: &str,
        bytes: &[u8],
    ) -> Result<(), TransportError> {
        self.send(vec![Outgoing::raw(topic, bytes)]).await
    }

    /// Sends `messages` through the fanout, in order, in batches.
    pub(crate) async fn send(&self, messages: Vec<Outgoing>) -> Result<(), TransportError> {
        if self.closed.is_cancelled() {
            return Err(TransportError::Closed);
        }
        for message in &messages {
            message.check_size()?;
        }
        for batch in batches(&messages) {
            self.send_batch(batch).await?;
        }
        Ok(())
    }

    /// Sends one batch, again and again for the entries that failed on AWS's side.
    async fn send_batch(&self, batch: &[Outgoing]) -> Result<(), TransportError> {
        let mut pending: Vec<&Outgoing> = batch.iter().collect();
        let mut pause = Duration::from_millis(100);
        for attempt in 1..=ATTEMPTS {
            let failures = match self.config.fanout {
                Fanout::Sns => self.publish_sns(&pending).await?,
                Fanout::EventBridge => self.put_events(&pending).await?,
            };
            if failures.is_empty() {
                return Ok(());
            }
            if let Some(refused) = failures.iter().find(|f| f.refused) {
                return Err(TransportError::Refused(format!(
                    "AWS refused the event of topic `{}`: {}",
                    pending[refused.index].topic, refused.reason
                )));
            }
            if attempt == ATTEMPTS {
                let reasons: Vec<&str> = failures.iter().map(|f| f.reason.as_str()).collect();
                return Err(Error::Unreachable {
                    operation: "publishing".to_owned(),
                    reason: format!(
                        "{} of {} entries failed {ATTEMPTS} times: {}",
                        failures.len(),
                        batch.len(),
                        reasons.join("; ")
                    ),
                }
                .into());
            }
            tracing::debug!(
                failed = failures.len(),
                attempt,
                "entries failed on AWS's side; sending them again"
            );
            pending = failures.iter().map(|f| pending[f.index]).collect();
            tokio::time::sleep(pause).await;
            pause *= 3;
        }
        unreachable!("the last attempt returns")
    }

    /// `PublishBatch` to the topic.
    async fn publish_sns(&self, batch: &[&Outgoing]) -> Result<Vec<Failure>, TransportError> {
        let topic_arn = self.topic_arn.as_deref().expect("SNS fanout has a topic");
        let mut request = self.sns.publish_batch().topic_arn(topic_arn);
        for (index, message) in batch.iter().enumerate() {
            let mut entry = aws_sdk_sns::types::PublishBatchRequestEntry::builder()
                .id(index.to_string())
                .message(&message.body)
                .set_message_attributes(Some(message.sns_attributes()));
            if self.config.fifo {
                entry = entry
                    .message_group_id(&message.group)
                    .message_deduplication_id(&message.dedup);
            }
            request = request.publish_batch_request_entries(
                entry
                    .build()
                    .map_err(|e| TransportError::Refused(e.to_string()))?,
            );
        }
        let out = request
            .send()
            .await
            .map_err(|e| Error::from_sdk(&e, "publishing to SNS"))?;
        Ok(out
            .failed()
            .iter()
            .filter_map(|failed| {
                Some(Failure {
                    index: failed.id().parse().ok()?,
                    refused: failed.sender_fault(),
                    reason: format!(
                        "{}: {}",
                        failed.code(),
                        failed.message().unwrap_or_default()
                    ),
                })
            })
            .collect())
    }

    /// `PutEvents` on the bus.
    async fn put_events(&self, batch: &[&Outgoing]) -> Result<Vec<Failure>, TransportError> {
        let mut request = self.events.put_events();
        for message in batch {
            if message.base64 || !message.body.trim_start().starts_with('{') {
                return Err(TransportError::Refused(
                    "EventBridge carries JSON objects only".to_owned(),
                ));
            }
            let source = self
                .config
                .source
                .as_deref()
                .or(message.publisher.as_deref())
                .unwrap_or("tidings");
            request = request.entries(
                aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .event_bus_name(&self.config.event_bus)
                    .source(source)
                    .detail_type(&message.topic)
                    .detail(&message.body)
                    .build(),
            );
        }
        let out = request
            .send()
            .await
            .map_err(|e| Error::from_sdk(&e, "putting events on EventBridge"))?;
        if out.failed_entry_count() == 0 {
            return Ok(Vec::new());
        }
        Ok(out
            .entries()
            .iter()
            .enumerate()
            .filter_map(|(index, entry)| {
                let code = entry.error_code()?;
                Some(Failure {
                    index,
                    refused: !matches!(
                        code,
                        "InternalFailure" | "ThrottlingException" | "ServiceUnavailable"
                    ),
                    reason: format!("{code}: {}", entry.error_message().unwrap_or_default()),
                })
            })
            .collect())
    }
}

/// `messages` cut into batches of at most [`BATCH`] entries and [`MAX_SIZE`] bytes, in order.
fn batches(messages: &[Outgoing]) -> Vec<&[Outgoing]> {
    let mut all = Vec::new();
    let mut start = 0;
    let mut size = 0;
    for (i, message) in messages.iter().enumerate() {
        let this = message.size();
        if i > start && (i - start == BATCH || size + this > MAX_SIZE) {
            all.push(&messages[start..i]);
            start = i;
            size = 0;
        }
        size += this;
    }
    if start < messages.len() {
        all.push(&messages[start..]);
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_keep_to_ten_entries_and_256_kib_in_order() {
        let small: Vec<Outgoing> = (0..25)
            .map(|i| Outgoing::raw(&format!("t.{i}"), b"{}"))
            .collect();
        let sizes: Vec<usize> = batches(&small).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [10, 10, 5]);
        assert_eq!(batches(&small)[2][0].topic, "t.20");

        let big = vec![0x41u8; 100_000];
        let large: Vec<Outgoing> = (0..5).map(|_| Outgoing::raw("t", &big)).collect();
        let sizes: Vec<usize> = batches(&large).iter().map(|b| b.len()).collect();
        assert_eq!(
            sizes,
            [2, 2, 1],
            "two of 100 kB fit in 256 KiB, three do not"
        );
        assert!(batches(&[]).is_empty());
    }
}
