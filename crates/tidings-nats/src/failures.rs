//! The failure history of messages being retried.
//!
//! A retry is a `nak` with a delay: the server redelivers the same message, which cannot
//! carry new headers. When its first delivery failed, and with which error the last one did,
//! is kept instead in a stream of its own, one subject per (consumer, stream sequence), one
//! message per subject (`max_messages_per_subject = 1`): a small key-value store that works
//! on servers older than the KV API this client expects. Records expire after a week, and are
//! deleted when the message is settled for good.

use async_nats::jetstream::stream::DirectGetErrorKind;
use chrono::{DateTime, Utc};
use tidings_core::transport::{FailureHistory, TransportError};

use crate::Inner;
use crate::config::NatsConfig;

/// The subjects of the failures' stream.
pub(crate) fn subjects(config: &NatsConfig) -> String {
    format!("{}-failures.>", config.prefix)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    first_failure_ms: i64,
    last_error: String,
}

impl Inner {
    fn failure_subject(&self, consumer: &str, sequence: u64) -> String {
        format!("{}-failures.{consumer}.{sequence}", self.config.prefix)
    }

    /// What message `sequence` of `consumer` went through; empty when nothing is known
    /// (it never failed, or the record could not be read: history is best effort, the
    /// delivery itself is not held back for it).
    pub(crate) async fn failure_history(&self, consumer: &str, sequence: u64) -> FailureHistory {
        let Ok(stream) = self
            .js
            .get_stream_no_info(&self.config.failures_stream)
            .await
        else {
            return FailureHistory::default();
        };
        match stream
            .direct_get_last_for_subject(self.failure_subject(consumer, sequence))
            .await
        {
            Ok(message) => match serde_json::from_slice::<Record>(&message.payload) {
                Ok(record) => FailureHistory {
                    first_failure_at: DateTime::from_timestamp_millis(record.first_failure_ms),
                    last_error: Some(record.last_error),
                },
                Err(_) => FailureHistory::default(),
            },
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => FailureHistory::default(),
            Err(error) => {
                tracing::debug!(%error, consumer, sequence, "failure history unavailable");
                FailureHistory::default()
            }
        }
    }

    /// Records that message `sequence` of `consumer` failed with `error`, first at `first`.
    pub(crate) async fn record_failure(
        &self,
        consumer: &str,
        sequence: u64,
        first: DateTime<Utc>,
        error: &str,
    ) -> Result<(), TransportError> {
        let record = Record {
            first_failure_ms: first.timestamp_millis(),
            last_error: error.to_owned(),
        };
        let payload = serde_json::to_vec(&record).expect("a record serializes");
        let ack = self
            .js
            .publish(self.failure_subject(consumer, sequence), payload.into())
            .await
            .map_err(|e| self.publish_error(&e))?;
        ack.await.map_err(|e| self.publish_error(&e))?;
        Ok(())
    }

    /// Forgets the history of message `sequence` of `consumer` (best effort: a left-over
    /// record expires by itself).
    pub(crate) async fn forget_failures(&self, consumer: &str, sequence: u64) {
        let Ok(stream) = self
            .js
            .get_stream_no_info(&self.config.failures_stream)
            .await
        else {
            return;
        };
        if let Err(error) = stream
            .purge()
            .filter(self.failure_subject(consumer, sequence))
            .await
        {
            tracing::debug!(%error, consumer, sequence, "failure history not purged");
        }
    }
}
