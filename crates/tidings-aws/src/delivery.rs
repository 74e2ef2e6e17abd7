//! One received SQS message, and how it is settled.
//!
//! - ack: the message is deleted; deletes of one subscription are batched, ten to a
//!   `DeleteMessageBatch` call, several calls in flight ([`Deletes`]).
//! - retry: the message's visibility timeout becomes the delay (at most 12 hours, SQS's
//!   limit), so SQS hands it out again when it is due. SQS messages cannot be changed, so
//!   the error of the failed attempt is not carried to the next one; the attempt number
//!   (SQS's receive count) and the time of the first failure (its first receive) are.
//! - dead letter: sent to the subscription's dead-letter queue with the failure's details,
//!   then deleted.
//! - dropped unsettled: made visible again at once.
//!
//! While a delivery is held, [`keep_leases`] extends its visibility timeout every third of
//! the lease, so that a long handler does not see its message handed to another consumer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use tidings_core::codec::decode_json;
use tidings_core::dead_letter::{DeadLetter, Details};
use tidings_core::envelope::Envelope;
use tidings_core::transport::{Delivery, FailureHistory, TransportError, Undecodable};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tokio::time::Instant;

use crate::message::{Incoming, attribute, sqs_attribute};
use crate::subscriber::Queue;
use crate::{Error, Inner};

/// Most entries of one SQS batch call.
const BATCH: usize = 10;

/// Longest visibility timeout SQS allows: 12 hours.
const MAX_VISIBILITY: u64 = 12 * 3600;

/// What the deliveries of one subscription stream share.
pub(crate) struct Subscription {
    pub(crate) inner: Arc<Inner>,
    pub(crate) name: String,
    pub(crate) queue: Queue,
    pub(crate) deletes: Deletes,
    /// Receipt handles of the messages held, by message id, and when their visibility was
    /// last extended.
    pub(crate) held: Arc<Mutex<HashMap<String, (String, Instant)>>>,
}

impl Subscription {
    fn hold(&self, id: &str, receipt: &str) {
        self.held
            .lock()
            .expect("never poisoned")
            .insert(id.to_owned(), (receipt.to_owned(), Instant::now()));
    }

    fn release(&self, id: &str) {
        self.held.lock().expect("never poisoned").remove(id);
    }

    /// Sets a message's visibility timeout.
    pub(crate) async fn set_visibility(&self, receipt: &str, after: Duration) -> Result<(), Error> {
        let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        self.inner
            .sqs
            .change_message_visibility()
            .queue_url(&self.queue.url)
            .receipt_handle(receipt)
            .visibility_timeout(i32::try_from(seconds.min(MAX_VISIBILITY)).expect("fits"))
            .send()
            .await
            .map_err(|e| Error::from_sdk(&e, "changing a message's visibility"))?;
        Ok(())
    }
}

type Reply = oneshot::Sender<Result<(), String>>;

/// Batched deletes of one queue's messages.
#[derive(Debug, Clone)]
pub(crate) struct Deletes {
    queue: mpsc::UnboundedSender<(String, Reply)>,
}

impl Deletes {
    /// Deletes from the queue at `url`, sent by a task that lives as long as this does.
    pub(crate) fn new(inner: Arc<Inner>, url: String) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(delete_rounds(inner, url, rx));
        Self { queue }
    }

    /// Deletes the message of `receipt`; returns once SQS has.
    pub(crate) async fn delete(&self, receipt: String) -> Result<(), TransportError> {
        let failed = |reason: String| {
            TransportError::from(Error::Unreachable {
                operation: "deleting a handled message".to_owned(),
                reason,
            })
        };
        let (reply, done) = oneshot::channel();
        self.queue
            .send((receipt, reply))
            .map_err(|_| failed("the subscription is closed".to_owned()))?;
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(failed(reason)),
            Err(_) => Err(failed("the subscription is closed".to_owned())),
        }
    }
}

/// Most `DeleteMessageBatch` calls in flight at once.
const DELETES_IN_FLIGHT: usize = 8;

async fn delete_rounds(
    inner: Arc<Inner>,
    url: String,
    mut rx: mpsc::UnboundedReceiver<(String, Reply)>,
) {
    while let Some(first) = rx.recv().await {
        // Let the handlers that are ready settle first: then one call covers many.
        tokio::task::yield_now().await;
        let mut waiting = vec![first];
        while waiting.len() < BATCH * DELETES_IN_FLIGHT {
            match rx.try_recv() {
                Ok(next) => waiting.push(next),
                Err(_) => break,
            }
        }
        let mut rounds = Vec::new();
        while !waiting.is_empty() {
            let rest = waiting.split_off(waiting.len().min(BATCH));
            rounds.push(std::mem::replace(&mut waiting, rest));
        }
        futures::stream::iter(rounds)
            .for_each_concurrent(DELETES_IN_FLIGHT, |round| delete_round(&inner, &url, round))
            .await;
    }
}

/// One `DeleteMessageBatch`, answering each waiting caller.
async fn delete_round(inner: &Inner, url: &str, round: Vec<(String, Reply)>) {
    let entries = round
        .iter()
        .enumerate()
        .map(|(i, (receipt, _))| {
            aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(receipt)
                .build()
                .expect("id and receipt are set")
        })
        .collect();
    let result = inner
        .sqs
        .delete_message_batch()
        .queue_url(url)
        .set_entries(Some(entries))
        .send()
        .await;
    match result {
        Ok(out) => {
            let failed: HashMap<usize, String> = out
                .failed()
                .iter()
                .filter_map(|f| {
                    let reason = format!("{}: {}", f.code(), f.message().unwrap_or_default());
                    Some((f.id().parse().ok()?, reason))
                })
                .collect();
            for (i, (_, reply)) in round.into_iter().enumerate() {
                let _ = reply.send(failed.get(&i).map_or(Ok(()), |r| Err(r.clone())));
            }
        }
        Err(error) => {
            let reason = Error::from_sdk(&error, "deleting handled messages").to_string();
            for (_, reply) in round {
                let _ = reply.send(Err(reason.clone()));
            }
        }
    }
}

/// Keeps the leases of held messages: every `every`, extends to a whole lease the
/// visibility of those extended that long ago. Ends when the stream and its deliveries are
/// gone.
pub(crate) async fn keep_leases(
    inner: Arc<Inner>,
    url: String,
    held: Weak<Mutex<HashMap<String, (String, Instant)>>>,
    every: Duration,
) {
    let lease = i32::try_from(inner.config.lease.as_secs().min(MAX_VISIBILITY)).expect("fits");
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(held) = held.upgrade() else { return };
        let due: Vec<String> = {
            let mut held = held.lock().expect("never poisoned");
            let now = Instant::now();
            held.values_mut()
                .filter(|(_, since)| now.duration_since(*since) >= every)
                .map(|(receipt, since)| {
                    *since = now;
                    receipt.clone()
                })
                .collect()
        };
        drop(held);
        for chunk in due.chunks(BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, receipt)| {
                    aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .visibility_timeout(lease)
                        .build()
                        .expect("id and receipt are set")
                })
                .collect();
            let extended = inner
                .sqs
                .change_message_visibility_batch()
                .queue_url(&url)
                .set_entries(Some(entries))
                .send()
                .await;
            match extended {
                Ok(out) if !out.failed().is_empty() => {
                    tracing::debug!(failed = out.failed().len(), "leases not extended");
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(error = %Error::from_sdk(&error, "extending leases"), "leases not extended");
                }
            }
        }
    }
}

/// A received SQS message.
pub(crate) struct AwsDelivery {
    message_id: String,
    receipt: String,
    envelope: Result<Arc<Envelope>, Undecodable>,
    topic: String,
    incoming: Incoming,
    attempt: u32,
    failures: FailureHistory,
    subscription: Arc<Subscription>,
    settled: bool,
    _permit: OwnedSemaphorePermit,
}

impl std::fmt::Debug for AwsDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsDelivery")
            .field("subscription", &self.subscription.name)
            .field("message_id", &self.message_id)
            .field("topic", &self.topic)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

/// A system attribute of a received message.
pub(crate) fn system_attribute(
    message: &aws_sdk_sqs::types::Message,
    name: aws_sdk_sqs::types::MessageSystemAttributeName,
) -> Option<&str> {
    message
        .attributes()
        .and_then(|a| a.get(&name))
        .map(String::as_str)
}

/// A system attribute that is a time in epoch milliseconds.
pub(crate) fn system_time(
    message: &aws_sdk_sqs::types::Message,
    name: aws_sdk_sqs::types::MessageSystemAttributeName,
) -> Option<DateTime<Utc>> {
    system_attribute(message, name)?
        .parse()
        .ok()
        .and_then(DateTime::from_timestamp_millis)
}

/// The event a body holds, or why it holds none.
pub(crate) fn decode(body: &Bytes) -> Result<Envelope, Undecodable> {
    decode_json(body).map_err(|error| Undecodable {
        error,
        body: body.clone(),
        content_type: None,
    })
}

impl AwsDelivery {
    /// A received message; `None` when it has no receipt handle (nothing can settle it).
    pub(crate) fn new(
        message: &aws_sdk_sqs::types::Message,
        incoming: Incoming,
        subscription: Arc<Subscription>,
        permit: OwnedSemaphorePermit,
    ) -> Option<Self> {
        use aws_sdk_sqs::types::MessageSystemAttributeName as Name;
        let receipt = message.receipt_handle()?.to_owned();
        let message_id = message.message_id().unwrap_or_default().to_owned();
        let envelope = decode(&incoming.body).map(Arc::new);
        let topic = match (&incoming.topic, &envelope) {
            (Some(topic), _) => topic.clone(),
            (None, Ok(envelope)) => envelope.topic().to_owned(),
            (None, Err(_)) => String::new(),
        };
        let attempt = system_attribute(message, Name::ApproximateReceiveCount)
            .and_then(|n| n.parse().ok())
            .unwrap_or(1u32)
            .max(1);
        let failures = FailureHistory {
            first_failure_at: (attempt > 1)
                .then(|| system_time(message, Name::ApproximateFirstReceiveTimestamp))
                .flatten(),
            last_error: None,
        };
        subscription.hold(&message_id, &receipt);
        Some(Self {
            message_id,
            receipt,
            envelope,
            topic,
            incoming,
            attempt,
            failures,
            subscription,
            settled: false,
            _permit: permit,
        })
    }

    /// Marks it settled.
    fn settle(&mut self) {
        self.settled = true;
        self.subscription.release(&self.message_id);
    }
}

#[async_trait]
impl Delivery for AwsDelivery {
    fn envelope(&self) -> Result<&Arc<Envelope>, &Undecodable> {
        self.envelope.as_ref()
    }

    fn topic(&self) -> &str {
        &self.topic
    }

    fn attempt(&self) -> u32 {
        self.attempt
    }

    fn failures(&self) -> &FailureHistory {
        &self.failures
    }

    async fn ack(mut self: Box<Self>) -> Result<(), TransportError> {
        let sub = self.subscription.clone();
        sub.deletes.delete(self.receipt.clone()).await?;
        self.settle();
        Ok(())
    }

    async fn retry(
        mut self: Box<Self>,
        after: Duration,
        error: &str,
    ) -> Result<(), TransportError> {
        let sub = self.subscription.clone();
        tracing::debug!(
            subscription = %sub.name,
            message_id = %self.message_id,
            %error,
            "retrying after {after:?}"
        );
        sub.set_visibility(&self.receipt, after).await?;
        self.settle();
        Ok(())
    }

    async fn dead_letter(mut self: Box<Self>, letter: DeadLetter) -> Result<(), TransportError> {
        let sub = self.subscription.clone();
        let inner = &sub.inner;
        let mut send = inner
            .sqs
            .send_message()
            .queue_url(&sub.queue.dlq_url)
            .message_body(self.incoming.sent_form())
            .message_attributes(attribute::EVENT_NAME, sqs_attribute("String", &self.topic))
            .message_attributes(
                attribute::DETAILS,
                sqs_attribute("String", Details::of(&letter, &self.topic).to_json()),
            );
        if self.incoming.base64 {
            send = send
                .message_attributes(attribute::BODY_ENCODING, sqs_attribute("String", "base64"));
        }
        if inner.config.fifo {
            send = send
                .message_group_id(&sub.name)
                .message_deduplication_id(&letter.id);
        }
        send.send()
            .await
            .map_err(|e| TransportError::from(Error::from_sdk(&e, "dead-lettering")))?;
        sub.deletes.delete(self.receipt.clone()).await?;
        self.settle();
        Ok(())
    }
}

impl Drop for AwsDelivery {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let sub = self.subscription.clone();
        sub.release(&self.message_id);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let receipt = self.receipt.clone();
        runtime.spawn(async move {
            if let Err(error) = sub.set_visibility(&receipt, Duration::ZERO).await {
                tracing::debug!(%error, "a dropped delivery was not released; it comes back after the lease");
            }
        });
    }
}
