//! The dead-letter stream: one subject per subscription, read without a consumer.
//!
//! JetStream keeps no dead letters of its own (after `MaxDeliver` a message just stays in its
//! stream and an advisory goes out), so tidings writes them: the original headers and
//! payload, untouched, plus a `Tidings-Dead-Letter` header with the failure's details as
//! JSON. Letters are read by sequence with direct gets (`allow_direct`), replayed by
//! publishing them again and deleting them by sequence, purged by subject.

use async_nats::HeaderMap;
use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::{DirectGetErrorKind, Stream};
use async_trait::async_trait;
use chrono::Utc;
use futures::StreamExt;
use tidings_core::dead_letter::{DeadLetter, Details, Original, Page, ReasonKind, ReplayTarget};
use tidings_core::transport::{DeadLetters, TransportError};

use crate::delivery::without;
use crate::subject::token;
use crate::{Inner, NatsTransport, binding};

/// The dead letter a stored message is, with its sequence in the stream.
fn letter(subscription: &str, message: &StreamMessage) -> (DeadLetter, Details) {
    let headers = Some(&message.headers);
    let details: Details = message
        .headers
        .get(binding::DEAD_LETTER)
        .and_then(|v| Details::from_json(v.as_str()))
        .unwrap_or_else(|| Details {
            id: format!("seq-{}", message.sequence),
            subscription: subscription.to_owned(),
            handler: None,
            reason_kind: ReasonKind::Rejected.as_str().to_owned(),
            reason: "written to the dead-letter stream without tidings' details".to_owned(),
            attempts: 1,
            first_failure_ms: Utc::now().timestamp_millis(),
            last_failure_ms: Utc::now().timestamp_millis(),
            topic: String::new(),
        });
    let original = match binding::decode(headers, &message.payload) {
        Ok(envelope) => Original::Envelope(Box::new(envelope)),
        Err(_) => Original::Undecodable {
            body: message.payload.clone(),
            content_type: binding::content_type(headers),
        },
    };
    let letter = details.clone().into_letter(original);
    (letter, details)
}

impl Inner {
    /// The dead-letter subject of `subscription`.
    pub(crate) fn dead_letter_subject(&self, subscription: &str) -> String {
        format!("{}.{}", self.config.dead_letter_prefix, token(subscription))
    }

    async fn dead_letter_stream(&self) -> Result<Stream<()>, TransportError> {
        let name = &self.config.dead_letter_stream;
        self.js.get_stream_no_info(name).await.map_err(|e| {
            self.error(&format!("opening stream `{name}`"), e, false)
                .into()
        })
    }

    /// Calls `visit` with the dead letters of `subscription`, oldest first, until it says
    /// stop (returns `false`).
    async fn each_letter(
        &self,
        subscription: &str,
        mut visit: impl FnMut(StreamMessage) -> bool,
    ) -> Result<(), TransportError> {
        let stream = self.dead_letter_stream().await?;
        let subject = self.dead_letter_subject(subscription);
        let mut next = 1;
        loop {
            match stream
                .direct_get_next_for_subject(subject.clone(), Some(next))
                .await
            {
                Ok(message) => {
                    next = message.sequence + 1;
                    if !visit(message) {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => return Ok(()),
                Err(e) => {
                    let transient = matches!(
                        e.kind(),
                        DirectGetErrorKind::TimedOut | DirectGetErrorKind::Request
                    );
                    return Err(self.error("reading dead letters", e, transient).into());
                }
            }
        }
    }

    async fn find(
        &self,
        subscription: &str,
        id: &str,
    ) -> Result<Option<(DeadLetter, Details, StreamMessage)>, TransportError> {
        let mut found = None;
        self.each_letter(subscription, |message| {
            let (letter, details) = letter(subscription, &message);
            if letter.id == id {
                found = Some((letter, details, message));
                return false;
            }
            true
        })
        .await?;
        Ok(found)
    }
}

#[async_trait]
impl DeadLetters for NatsTransport {
    async fn list(
        &self,
        subscription: &str,
        page: Page,
    ) -> Result<Vec<DeadLetter>, TransportError> {
        let mut letters = Vec::new();
        let mut seen = 0;
        self.inner
            .each_letter(subscription, |message| {
                seen += 1;
                if seen > page.offset {
                    letters.push(letter(subscription, &message).0);
                }
                letters.len() < page.limit
            })
            .await?;
        Ok(letters)
    }

    async fn count(&self, subscription: &str) -> Result<u64, TransportError> {
        let inner = &self.inner;
        let stream = inner.dead_letter_stream().await?;
        let subject = inner.dead_letter_subject(subscription);
        let mut subjects = stream
            .info_with_subjects(&subject)
            .await
            .map_err(|e| TransportError::from(inner.error("counting dead letters", e, true)))?;
        let mut count = 0;
        while let Some(entry) = subjects.next().await {
            let (name, n) = entry
                .map_err(|e| TransportError::from(inner.error("counting dead letters", e, true)))?;
            if name == subject {
                count += n as u64;
            }
        }
        Ok(count)
    }

    async fn get(
        &self,
        subscription: &str,
        id: &str,
    ) -> Result<Option<DeadLetter>, TransportError> {
        Ok(self
            .inner
            .find(subscription, id)
            .await?
            .map(|(letter, _, _)| letter))
    }

    async fn replay(
        &self,
        subscription: &str,
        id: &str,
        target: ReplayTarget,
    ) -> Result<(), TransportError> {
        let inner = &self.inner;
        let Some((letter, details, message)) = inner.find(subscription, id).await? else {
            return Err(TransportError::NotFound(format!(
                "dead letter `{id}` of `{subscription}`"
            )));
        };
        let mut headers: HeaderMap = without(
            Some(&message.headers),
            &[
                NATS_MESSAGE_ID.as_ref(),
                binding::DEAD_LETTER,
                binding::TARGET,
            ],
        );
        // A new id: the original is still in the server's duplicate window, maybe.
        headers.insert(NATS_MESSAGE_ID, format!("replay:{}", letter.id).as_str());
        let subject = match target {
            ReplayTarget::Topic(topic) => inner.subjects.subject(&topic),
            _ => {
                headers.insert(binding::TARGET, subscription);
                inner.subjects.subject(&details.topic)
            }
        };
        let ack = inner
            .js
            .publish_with_headers(subject, headers, message.payload.clone())
            .await
            .map_err(|e| inner.publish_error(&e))?;
        ack.await.map_err(|e| inner.publish_error(&e))?;
        inner
            .dead_letter_stream()
            .await?
            .delete_message(message.sequence)
            .await
            .map_err(|e| {
                TransportError::from(inner.error("removing the replayed dead letter", e, true))
            })?;
        Ok(())
    }

    async fn purge(&self, subscription: &str) -> Result<u64, TransportError> {
        let inner = &self.inner;
        let purged = inner
            .dead_letter_stream()
            .await?
            .purge()
            .filter(inner.dead_letter_subject(subscription))
            .await
            .map_err(|e| TransportError::from(inner.error("purging dead letters", e, true)))?;
        Ok(purged.purged)
    }
}
