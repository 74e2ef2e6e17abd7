//! Coalesced acknowledgements of one consumer channel.
//!
//! An awaited `basic.ack` per message caps consumption at a few thousand messages a second
//! on one channel: each ack is a trip through the client's I/O loop. Acks are cheap to
//! combine, though: `multiple` acknowledges every delivery up to a tag. So settled deliveries
//! are marked here, and one flusher task sends, for the contiguous prefix of settled tags, a
//! single `basic.ack(multiple)`; deliveries settled out of order wait a little (`LINGER`) for
//! the prefix to reach them and are then acknowledged one by one, so that a slow handler
//! never holds back the acks of the fast ones behind it. A delivery dropped unsettled is
//! returned to the queue at once (`basic.nack(requeue)`).
//!
//! Requeues are sent before acks in each round, so that a `multiple` ack never covers a tag
//! that was meant to go back.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use lapin::Channel;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use crate::error::Error;

/// How long a delivery settled out of order waits for the ones before it.
const LINGER: Duration = Duration::from_millis(2);

type Reply = oneshot::Sender<Result<(), String>>;

enum Slot {
    /// Handed out, not settled.
    Outstanding,
    /// Settled; waiting for its ack to be sent.
    Done { since: Instant, reply: Reply },
}

#[derive(Default)]
struct State {
    pending: BTreeMap<u64, Slot>,
    requeue: Vec<u64>,
    /// Why the channel can no longer acknowledge anything.
    broken: Option<String>,
}

/// The acknowledgements of one channel.
pub(crate) struct Acks {
    channel: Channel,
    url: String,
    state: Mutex<State>,
    wake: Arc<Notify>,
}

/// What one round sends.
struct Round {
    requeue: Vec<u64>,
    prefix: Option<u64>,
    singles: Vec<u64>,
    replies: Vec<Reply>,
    next_deadline: Option<Instant>,
}

impl Acks {
    /// Acknowledgements for deliveries of `channel`, flushed by a task that lives as long as
    /// this does.
    pub(crate) fn new(channel: Channel, url: String) -> Arc<Self> {
        let wake = Arc::new(Notify::new());
        let acks = Arc::new(Self {
            channel,
            url,
            state: Mutex::new(State::default()),
            wake: wake.clone(),
        });
        tokio::spawn(flusher(Arc::downgrade(&acks), wake));
        acks
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("ack state is never poisoned")
    }

    /// Records a delivery handed out.
    pub(crate) fn track(&self, tag: u64) {
        self.state().pending.insert(tag, Slot::Outstanding);
    }

    /// Acknowledges `tag`; returns once the ack covering it was sent.
    pub(crate) async fn ack(&self, tag: u64) -> Result<(), Error> {
        let (reply, done) = oneshot::channel();
        {
            let mut state = self.state();
            if let Some(reason) = &state.broken {
                return Err(self.unreachable(reason.clone()));
            }
            state.pending.insert(
                tag,
                Slot::Done {
                    since: Instant::now(),
                    reply,
                },
            );
        }
        self.wake.notify_one();
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(self.unreachable(reason)),
            Err(_) => Err(self.unreachable("the consumer channel closed".to_owned())),
        }
    }

    /// Returns `tag` to the queue (a delivery dropped unsettled).
    pub(crate) fn requeue(&self, tag: u64) {
        let mut state = self.state();
        if state.pending.remove(&tag).is_some() && state.broken.is_none() {
            state.requeue.push(tag);
            drop(state);
            self.wake.notify_one();
        }
    }

    fn unreachable(&self, reason: String) -> Error {
        Error::Unreachable {
            url: self.url.clone(),
            reason: format!("acknowledging: {reason}"),
        }
    }

    fn take_round(&self) -> Round {
        take_round(&mut self.state(), Instant::now())
    }

    async fn send(&self, round: &Round) -> Result<(), lapin::Error> {
        for tag in &round.requeue {
            self.channel
                .basic_nack(
                    *tag,
                    BasicNackOptions {
                        multiple: false,
                        requeue: true,
                    },
                )
                .await?;
        }
        if let Some(tag) = round.prefix {
            self.channel
                .basic_ack(tag, BasicAckOptions { multiple: true })
                .await?;
        }
        for tag in &round.singles {
            self.channel
                .basic_ack(*tag, BasicAckOptions { multiple: false })
                .await?;
        }
        Ok(())
    }

    /// Fails every waiting ack: the channel is gone, and the broker redelivers its messages.
    fn break_down(&self, reason: &str) {
        let mut state = self.state();
        state.broken = Some(reason.to_owned());
        state.requeue.clear();
        for (_, slot) in std::mem::take(&mut state.pending) {
            if let Slot::Done { reply, .. } = slot {
                let _ = reply.send(Err(reason.to_owned()));
            }
        }
    }
}

/// Takes what can be sent now: every requeue, the settled prefix, and the stragglers that
/// lingered long enough; says when the others will have.
fn take_round(state: &mut State, now: Instant) -> Round {
    let mut round = Round {
        requeue: std::mem::take(&mut state.requeue),
        prefix: None,
        singles: Vec::new(),
        replies: Vec::new(),
        next_deadline: None,
    };
    while let Some(entry) = state.pending.first_entry() {
        if !matches!(entry.get(), Slot::Done { .. }) {
            break;
        }
        let tag = *entry.key();
        if let Slot::Done { reply, .. } = entry.remove() {
            round.replies.push(reply);
        }
        round.prefix = Some(tag);
    }
    let mut stragglers = Vec::new();
    for (tag, slot) in &state.pending {
        if let Slot::Done { since, .. } = slot {
            let due = *since + LINGER;
            if due <= now {
                stragglers.push(*tag);
            } else {
                round.next_deadline = Some(round.next_deadline.map_or(due, |d| d.min(due)));
            }
        }
    }
    for tag in stragglers {
        if let Some(Slot::Done { reply, .. }) = state.pending.remove(&tag) {
            round.replies.push(reply);
            round.singles.push(tag);
        }
    }
    round
}

impl Drop for Acks {
    fn drop(&mut self) {
        self.wake.notify_one();
    }
}

async fn flusher(acks: Weak<Acks>, wake: Arc<Notify>) {
    let mut deadline: Option<Instant> = None;
    loop {
        match deadline {
            Some(at) => {
                tokio::select! {
                    () = wake.notified() => {}
                    () = tokio::time::sleep_until(at) => {}
                }
            }
            None => wake.notified().await,
        }
        // Let the handlers that are ready to run settle first: under load one round then
        // covers many deliveries; idle, this returns at once.
        tokio::task::yield_now().await;
        let Some(acks) = acks.upgrade() else { return };
        let round = acks.take_round();
        deadline = round.next_deadline;
        if round.requeue.is_empty() && round.prefix.is_none() && round.singles.is_empty() {
            continue;
        }
        let result = acks.send(&round).await;
        let outcome = result.as_ref().map(drop).map_err(ToString::to_string);
        for reply in round.replies {
            let _ = reply.send(outcome.clone());
        }
        if let Err(error) = result {
            tracing::debug!(%error, "consumer channel broke; its deliveries will be redelivered");
            acks.break_down(&error.to_string());
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_with(slots: &[(u64, Option<Duration>)]) -> (State, Instant) {
        let now = Instant::now();
        let mut state = State::default();
        for (tag, settled_ago) in slots {
            let slot = match settled_ago {
                Some(ago) => Slot::Done {
                    since: now - *ago,
                    reply: oneshot::channel().0,
                },
                None => Slot::Outstanding,
            };
            state.pending.insert(*tag, slot);
        }
        (state, now)
    }

    #[tokio::test]
    async fn the_settled_prefix_is_one_ack_and_lingering_stragglers_are_acked_alone() {
        let (mut state, now) = state_with(&[
            (1, Some(Duration::ZERO)),
            (2, Some(Duration::ZERO)),
            (3, None),
            (4, Some(LINGER)),
            (5, Some(Duration::ZERO)),
            (6, None),
        ]);
        state.requeue.push(9);
        let round = take_round(&mut state, now);
        assert_eq!(round.requeue, [9], "requeues go first");
        assert_eq!(round.prefix, Some(2), "one multiple-ack for 1 and 2");
        assert_eq!(round.singles, [4], "4 waited long enough for 3");
        assert_eq!(round.replies.len(), 3);
        assert_eq!(round.next_deadline, Some(now + LINGER), "5 is due later");
        assert_eq!(state.pending.keys().copied().collect::<Vec<_>>(), [3, 5, 6]);
    }

    #[tokio::test]
    async fn nothing_settled_sends_nothing() {
        let (mut state, now) = state_with(&[(1, None), (2, None)]);
        let round = take_round(&mut state, now);
        assert!(round.prefix.is_none() && round.singles.is_empty() && round.requeue.is_empty());
        assert!(round.next_deadline.is_none());
    }
}
