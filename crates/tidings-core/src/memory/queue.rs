//! One subscription's queue: ready messages in order, delayed ones by due time.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

use crate::dead_letter::DeadLetter;
use crate::envelope::Envelope;
use crate::transport::{FailureHistory, TransportError};

/// A message as the queue keeps it between deliveries.
#[derive(Debug)]
pub(super) struct Message {
    /// The topic it was published under.
    pub(super) topic: Arc<str>,
    pub(super) envelope: Arc<Envelope>,
    /// Deliveries made so far.
    pub(super) deliveries: u32,
    pub(super) failures: FailureHistory,
}

impl Message {
    pub(super) fn fresh(topic: Arc<str>, envelope: Arc<Envelope>) -> Self {
        Self {
            topic,
            envelope,
            deliveries: 0,
            failures: FailureHistory::default(),
        }
    }
}

#[derive(Debug)]
pub(super) struct Queue {
    name: String,
    /// Room left before publishers wait: one permit per message held, released on ack or
    /// dead-lettering.
    capacity: Semaphore,
    state: Mutex<State>,
    pub(super) notify: Notify,
    pub(super) dead: Mutex<Vec<DeadLetter>>,
    in_flight: AtomicUsize,
}

#[derive(Debug, Default)]
struct State {
    ready: VecDeque<Message>,
    delayed: BinaryHeap<Reverse<Delayed>>,
    seq: u64,
}

#[derive(Debug)]
struct Delayed {
    due: Instant,
    seq: u64,
    message: Message,
}

impl PartialEq for Delayed {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Delayed {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

/// What a consumer gets when it asks for a message.
pub(super) enum Take {
    Message(Message),
    /// Nothing ready; wait for a notification, or until the next delayed message is due.
    Wait(Option<Instant>),
}

impl Queue {
    pub(super) fn new(name: &str, capacity: usize) -> Self {
        Self {
            name: name.to_owned(),
            capacity: Semaphore::new(capacity),
            state: Mutex::default(),
            notify: Notify::new(),
            dead: Mutex::default(),
            in_flight: AtomicUsize::new(0),
        }
    }

    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// Waits for room for one more message.
    pub(super) async fn reserve(&self) -> Result<(), TransportError> {
        let permit = self
            .capacity
            .acquire()
            .await
            .map_err(|_| TransportError::Closed)?;
        permit.forget();
        Ok(())
    }

    /// Takes room for `n` more messages if there is that much now.
    pub(super) fn try_reserve(&self, n: usize) -> bool {
        let Ok(n) = u32::try_from(n) else {
            return false;
        };
        match self.capacity.try_acquire_many(n) {
            Ok(permits) => {
                permits.forget();
                true
            }
            Err(_) => false,
        }
    }

    /// A message left the queue for good (acked or dead-lettered).
    pub(super) fn release(&self) {
        self.capacity.add_permits(1);
    }

    pub(super) fn close(&self) {
        self.capacity.close();
        self.notify.notify_waiters();
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("queue lock")
    }

    /// Appends messages that already hold a reservation each, waking consumers once.
    pub(super) fn push_all(&self, messages: impl IntoIterator<Item = Message>) {
        self.state().ready.extend(messages);
        self.notify.notify_waiters();
    }

    /// Puts back a message whose delivery was dropped unsettled, at the head.
    pub(super) fn requeue(&self, message: Message) {
        self.in_flight.fetch_sub(1, AtomicOrdering::Relaxed);
        self.state().ready.push_front(message);
        self.notify.notify_waiters();
    }

    /// Makes a message visible again after `after`.
    pub(super) fn schedule(&self, message: Message, after: Duration) {
        self.in_flight.fetch_sub(1, AtomicOrdering::Relaxed);
        {
            let mut state = self.state();
            if after.is_zero() {
                state.ready.push_back(message);
            } else {
                state.seq += 1;
                let seq = state.seq;
                state.delayed.push(Reverse(Delayed {
                    due: Instant::now() + after,
                    seq,
                    message,
                }));
            }
        }
        self.notify.notify_waiters();
    }

    /// A settled message leaves the in-flight count.
    pub(super) fn settled(&self) {
        self.in_flight.fetch_sub(1, AtomicOrdering::Relaxed);
    }

    /// The next ready message, after moving due delayed ones to the ready list.
    pub(super) fn take(&self) -> Take {
        let now = Instant::now();
        let mut state = self.state();
        while state.delayed.peek().is_some_and(|Reverse(d)| d.due <= now) {
            let Reverse(due) = state.delayed.pop().expect("peeked");
            state.ready.push_back(due.message);
        }
        match state.ready.pop_front() {
            Some(mut message) => {
                message.deliveries += 1;
                self.in_flight.fetch_add(1, AtomicOrdering::Relaxed);
                Take::Message(message)
            }
            None => Take::Wait(state.delayed.peek().map(|Reverse(d)| d.due)),
        }
    }

    pub(super) fn depth(&self) -> usize {
        let state = self.state();
        state.ready.len() + state.delayed.len()
    }

    pub(super) fn in_flight(&self) -> usize {
        self.in_flight.load(AtomicOrdering::Relaxed)
    }
}
