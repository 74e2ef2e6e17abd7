//! One received SQS message, and how it is settled.
//!
//! - ack: the message is deleted; deletes of one subscription are batched, ten to a
//!   `DeleteMessageBatch` call, several calls in flight ([`Deletes`]).
//! - retry: the message's visibility timeout becomes the delay (at most 12 hours, SQS's
//!   limit), so SQS hands it out again when it is due. SQS messages cannot be changed, so
//!   the error of the failed attempt is not carried to the next one; the attempt number
//!   (SQS's receive count) and the time of the first failure (its first receive) are.
//! - dead letter: sent to the subscription's dead-letter queue with the failure's details,
//!   then deleted, but only while the message's lease has held since it was received
//!   ([`Lease`]).
//! - dropped unsettled: made visible again at once, while its lease holds.
//!
//! While a delivery is held, [`keep_leases`] extends its visibility timeout once a third of
//! the lease has gone by, so that a long handler does not see its message handed to another
//! consumer. A delivery whose lease may have run out is not retried, dead-lettered or
//! released: the message is left to its next delivery.

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
    /// The leases of the messages held, by receipt handle.
    pub(crate) held: Arc<Mutex<Leases>>,
}

/// The leases of one subscription stream's held messages, by receipt handle: one per
/// receive, so that a message this stream receives again, its lease lost meanwhile, has a
/// lease of its own beside the stale delivery's.
pub(crate) type Leases = HashMap<String, Lease>;

/// The lease SQS grants: the configured one in whole seconds, as the receives, the queue's
/// visibility timeout and the extensions ask for it.
pub(crate) fn granted(inner: &Inner) -> Duration {
    Duration::from_secs(inner.config.lease.as_secs().min(MAX_VISIBILITY))
}

/// What this consumer knows of a held message's lease (its visibility timeout).
///
/// SQS does not say when a lease runs out: once it has, the message can go to another
/// consumer (or to this stream again), and the receipt handle this delivery holds may still
/// change and delete it (moto's always do, and SQS's may). So the lease is tracked here, from
/// the times requests were sent. A delivery whose lease may have run out, even for a moment,
/// is not dead-lettered, retried or released: whoever received the message meanwhile settles
/// it, and would dead-letter it a second time.
#[derive(Debug)]
pub(crate) struct Lease {
    /// When the last extension was tried (or the message received), for the schedule.
    renewed: Instant,
    /// The lease holds at least until then.
    until: Instant,
    /// Whether it may have run out before an extension took effect.
    lapsed: bool,
}

impl Lease {
    /// The lease of a message whose receive was asked at `asked` and answered at `answered`.
    ///
    /// The receive took effect somewhere in between, when SQS handed the message over. A
    /// long poll can wait longer than the lease, and messages are handed over as they come:
    /// the lease is taken to start a quarter lease before the answer, or at the request if
    /// that was later.
    fn new(asked: Instant, answered: Instant, lease: Duration) -> Self {
        let start = asked.max(answered.checked_sub(lease / 4).unwrap_or(asked));
        Self {
            renewed: start,
            until: start + lease,
            lapsed: false,
        }
    }

    /// An extension to `lease`, sent at `sent`, came back as done at `now`.
    fn extended(&mut self, sent: Instant, now: Instant, lease: Duration) {
        // The extension took effect somewhere between `sent` and `now`: if the lease ran out
        // before `now`, another consumer may have received the message in between.
        self.lapsed |= now >= self.until;
        self.until = self.until.max(sent + lease);
        self.renewed = sent;
    }

    /// Whether the lease has surely held from the receive until `now`.
    fn has_held(&self, now: Instant) -> bool {
        !self.lapsed && now < self.until
    }

    /// Whether it is worth extending at `now`: it may still hold. One that only may have
    /// lapsed is extended still, so that a slow answer does not cost a long handler its
    /// message; one surely run out is not, for its receipt handle could hide the message
    /// from the consumer that has it now.
    fn extendable(&self, now: Instant) -> bool {
        now < self.until
    }
}

impl Subscription {
    fn hold(&self, receipt: &str, asked: Instant, answered: Instant) {
        let lease = Lease::new(asked, answered, granted(&self.inner));
        self.held
            .lock()
            .expect("never poisoned")
            .insert(receipt.to_owned(), lease);
    }

    /// Stops keeping the lease of `receipt`; returns whether it had surely held until now.
    fn release(&self, receipt: &str) -> bool {
        let lease = self.held.lock().expect("never poisoned").remove(receipt);
        lease.is_some_and(|lease| lease.has_held(Instant::now()))
    }

    /// Whether the lease of `receipt` has surely held since the message was received.
    fn has_held(&self, receipt: &str) -> bool {
        self.held
            .lock()
            .expect("never poisoned")
            .get(receipt)
            .is_some_and(|lease| lease.has_held(Instant::now()))
    }

    /// Extends the lease of `receipt` (message `id`) to a whole lease, and checks that it has
    /// surely held since the message was received: fails with [`Error::LeaseLost`] when it
    /// may have run out, even for a moment.
    async fn renew(&self, id: &str, receipt: &str) -> Result<(), Error> {
        let lost = || Error::LeaseLost {
            message_id: id.to_owned(),
        };
        // Not asked of SQS once lost: the receipt handle may still work, and would take the
        // message from the consumer that has it now.
        if !self.has_held(receipt) {
            return Err(lost());
        }
        let lease = granted(&self.inner);
        let sent = Instant::now();
        self.set_visibility(receipt, lease).await?;
        let now = Instant::now();
        let mut held = self.held.lock().expect("never poisoned");
        if let Some(kept) = held.get_mut(receipt) {
            kept.extended(sent, now, lease);
            if kept.has_held(now) {
                return Ok(());
            }
        }
        Err(lost())
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

/// Keeps the leases of held messages: every sixth of the lease, extends to a whole lease
/// those last extended (or received) a third of a lease ago or longer, as long as they may
/// still hold, and records which extensions came back ([`Lease::extended`]). Ends when the
/// stream and its deliveries are gone.
pub(crate) async fn keep_leases(inner: Arc<Inner>, url: String, held: Weak<Mutex<Leases>>) {
    let lease = granted(&inner);
    let every = lease / 3;
    let seconds = i32::try_from(lease.as_secs()).expect("at most 12 hours");
    let mut tick = tokio::time::interval(every / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(leases) = held.upgrade() else { return };
        let now = Instant::now();
        let due: Vec<String> = leases
            .lock()
            .expect("never poisoned")
            .iter()
            .filter(|(_, kept)| kept.extendable(now) && now.duration_since(kept.renewed) >= every)
            .map(|(receipt, _)| receipt.clone())
            .collect();
        drop(leases);
        for chunk in due.chunks(BATCH) {
            let Some(leases) = held.upgrade() else { return };
            // Checked again as each chunk goes: the ones before may have taken a while.
            let sent = Instant::now();
            let chunk: Vec<&String> = {
                let leases = leases.lock().expect("never poisoned");
                chunk
                    .iter()
                    .filter(|receipt| leases.get(*receipt).is_some_and(|k| k.extendable(sent)))
                    .collect()
            };
            drop(leases);
            if chunk.is_empty() {
                continue;
            }
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, receipt)| {
                    aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(*receipt)
                        .visibility_timeout(seconds)
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
            // Those not extended are tried again at the next tick.
            let done: Vec<&str> = match &extended {
                Ok(out) => {
                    if !out.failed().is_empty() {
                        tracing::debug!(failed = out.failed().len(), "leases not extended");
                    }
                    out.successful()
                        .iter()
                        .filter_map(|entry| entry.id().parse::<usize>().ok())
                        .filter_map(|i| chunk.get(i))
                        .map(|receipt| receipt.as_str())
                        .collect()
                }
                Err(error) => {
                    tracing::debug!(error = %Error::from_sdk(error, "extending leases"), "leases not extended");
                    Vec::new()
                }
            };
            let Some(leases) = held.upgrade() else { return };
            let now = Instant::now();
            let mut leases = leases.lock().expect("never poisoned");
            for receipt in done {
                if let Some(kept) = leases.get_mut(receipt) {
                    kept.extended(sent, now, lease);
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
    /// `asked` and `answered` are when the receive was sent and answered: the lease started
    /// in between ([`Lease::new`]).
    pub(crate) fn new(
        message: &aws_sdk_sqs::types::Message,
        incoming: Incoming,
        subscription: Arc<Subscription>,
        permit: OwnedSemaphorePermit,
        (asked, answered): (Instant, Instant),
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
        subscription.hold(&receipt, asked, answered);
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
        self.subscription.release(&self.receipt);
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
        // Where the lease may have run out, the message may be back on the queue or with
        // another consumer: changing its visibility would take it from that one.
        if !sub.has_held(&self.receipt) {
            return Err(Error::LeaseLost {
                message_id: self.message_id.clone(),
            }
            .into());
        }
        sub.set_visibility(&self.receipt, after).await?;
        self.settle();
        Ok(())
    }

    async fn dead_letter(mut self: Box<Self>, letter: DeadLetter) -> Result<(), TransportError> {
        let sub = self.subscription.clone();
        let inner = &sub.inner;
        // A whole lease for sending and deleting, once the lease is known to have held so
        // far: no other consumer can have received the message and be dead-lettering it
        // too. Should sending and deleting outlast the lease (and lease keeping fail all
        // that time), it could still happen.
        sub.renew(&self.message_id, &self.receipt).await?;
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
        if !sub.release(&self.receipt) {
            // Its lease may have run out: it may be another consumer's now, not this one's
            // to release. It comes back once its lease is over.
            return;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(8);

    fn at(start: Instant, seconds: u64) -> Instant {
        start + Duration::from_secs(seconds)
    }

    #[test]
    fn a_lease_extended_before_it_ran_out_holds_a_whole_lease_from_the_request() {
        let start = Instant::now();
        let mut lease = Lease::new(start, start, LEASE);
        assert!(lease.has_held(at(start, 7)));
        assert!(!lease.has_held(at(start, 8)), "not extended: it runs out");
        lease.extended(at(start, 3), at(start, 4), LEASE);
        assert!(lease.has_held(at(start, 10)));
        assert!(!lease.has_held(at(start, 11)));
    }

    #[test]
    fn an_extension_that_came_back_after_the_lease_ran_out_leaves_it_lost_for_good() {
        let start = Instant::now();
        let mut lease = Lease::new(start, start, LEASE);
        // Sent in time, but answered after the lease: it may have lapsed in between.
        lease.extended(at(start, 7), at(start, 8), LEASE);
        assert!(!lease.has_held(at(start, 9)));
        lease.extended(at(start, 9), at(start, 9), LEASE);
        assert!(
            !lease.has_held(at(start, 10)),
            "a later extension does not mend it"
        );
    }

    #[test]
    fn a_lease_that_may_have_lapsed_is_still_extended_while_it_may_hold() {
        let start = Instant::now();
        let mut lease = Lease::new(start, start, LEASE);
        lease.extended(at(start, 7), at(start, 8), LEASE);
        assert!(
            lease.extendable(at(start, 14)),
            "a long handler keeps its message"
        );
        assert!(
            !lease.extendable(at(start, 15)),
            "surely run out: left alone"
        );
    }

    #[test]
    fn a_long_poll_does_not_lose_the_lease_of_what_it_received_late() {
        let start = Instant::now();
        // Asked at 0, answered at 20 (a poll longer than the lease).
        let lease = Lease::new(start, at(start, 20), LEASE);
        assert!(lease.has_held(at(start, 25)));
        assert!(
            !lease.has_held(at(start, 26)),
            "from a quarter lease before the answer"
        );
        // Answered at once: from the request.
        let lease = Lease::new(start, at(start, 1), LEASE);
        assert!(!lease.has_held(at(start, 8)));
    }
}
