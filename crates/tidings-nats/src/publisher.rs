//! Publishing with server acknowledgements, pipelined.

use std::time::Duration;

use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_trait::async_trait;
use tidings_core::envelope::Envelope;
use tidings_core::transport::{Publisher, TransportError};

use crate::{Inner, NatsTransport, binding};

impl Inner {
    /// What a failed publish means to the caller.
    pub(crate) fn publish_error(&self, error: &PublishError) -> TransportError {
        match error.kind() {
            PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe => {
                self.error("publishing", error, true).into()
            }
            PublishErrorKind::MaxPayloadExceeded => TransportError::TooLarge {
                size: 0,
                limit: self.client.server_info().max_payload,
            },
            PublishErrorKind::StreamNotFound => {
                TransportError::NotFound(format!("a stream capturing `{}.>`", self.config.prefix))
            }
            _ => self.error("publishing", error, false).into(),
        }
    }

    /// Publishes every message, then awaits every acknowledgement.
    async fn publish_all(&self, envelopes: &[Envelope]) -> Result<(), TransportError> {
        let limit = self.client.server_info().max_payload;
        let encoded = envelopes
            .iter()
            .map(|envelope| {
                let out = binding::encode(envelope, self.config.content_mode)?;
                // Headers count against the server's limit: `NATS/1.0\r\n`, a line each.
                let headers: usize = out
                    .headers
                    .iter()
                    .map(|(name, values)| {
                        values
                            .iter()
                            .map(|v| AsRef::<str>::as_ref(name).len() + v.as_str().len() + 4)
                            .sum::<usize>()
                    })
                    .sum::<usize>()
                    + 12;
                let size = out.payload.len() + headers;
                if limit > 0 && size > limit {
                    return Err(TransportError::TooLarge { size, limit });
                }
                Ok((self.subjects.subject(envelope.topic()), out))
            })
            .collect::<Result<Vec<_>, TransportError>>()?;
        let mut acks = Vec::with_capacity(encoded.len());
        for (subject, out) in encoded {
            acks.push(
                self.js
                    .publish_with_headers(subject, out.headers, out.payload)
                    .await
                    .map_err(|e| self.publish_error(&e))?,
            );
        }
        for ack in acks {
            ack.await.map_err(|e| self.publish_error(&e))?;
        }
        Ok(())
    }
}

#[async_trait]
impl Publisher for NatsTransport {
    /// Publishes with server acknowledgements. Publishing again after an error is safe
    /// within the duplicate window: the server drops what it already has (`Nats-Msg-Id`).
    async fn publish_batch(&self, envelopes: &[Envelope]) -> Result<(), TransportError> {
        let inner = &self.inner;
        if inner.closed.is_cancelled() {
            return Err(TransportError::Closed);
        }
        match inner.publish_all(envelopes).await {
            // The stream is gone (a server that lost its store): make it again, once.
            Err(TransportError::NotFound(_)) => {
                inner.ensure_streams().await?;
                inner.publish_all(envelopes).await
            }
            other => other,
        }
    }

    /// Stops publishing and consuming; acks already sent are flushed to the server.
    async fn close(&self) -> Result<(), TransportError> {
        self.inner.closed.cancel();
        // Bounded: while the server is away, a flush would wait for the reconnection.
        match tokio::time::timeout(Duration::from_secs(5), self.inner.client.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::debug!(%error, "flush on close"),
            Err(_) => {
                tracing::warn!("acks not flushed within 5 s of closing; they are redelivered")
            }
        }
        Ok(())
    }
}
