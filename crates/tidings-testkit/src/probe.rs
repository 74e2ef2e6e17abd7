use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tidings::transport::{Delivery, DeliveryStream};
use tokio::sync::Notify;

/// Collects what handlers saw, and lets a test wait until enough arrived.
#[derive(Debug)]
pub struct Probe<T> {
    items: Mutex<Vec<T>>,
    changed: Notify,
}

impl<T: Clone> Probe<T> {
    /// An empty probe, shared.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            items: Mutex::new(Vec::new()),
            changed: Notify::new(),
        })
    }

    /// Records one item.
    pub fn push(&self, item: T) {
        self.items.lock().expect("probe lock").push(item);
        self.changed.notify_waiters();
    }

    /// Everything recorded so far.
    pub fn items(&self) -> Vec<T> {
        self.items.lock().expect("probe lock").clone()
    }

    /// How many items were recorded.
    pub fn len(&self) -> usize {
        self.items.lock().expect("probe lock").len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until `done` holds for the items recorded, or `limit` passed; returns what is
    /// there. For counts that duplicates must not satisfy, e.g. distinct ids under
    /// at-least-once delivery.
    pub async fn wait_until(&self, limit: Duration, done: impl Fn(&[T]) -> bool) -> Vec<T> {
        let _ = tokio::time::timeout(limit, async {
            loop {
                let notified = self.changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if done(&self.items.lock().expect("probe lock")) {
                    return;
                }
                notified.await;
            }
        })
        .await;
        self.items()
    }

    /// Waits until at least `n` items arrived, or `limit` passed; returns what is there.
    pub async fn wait_for(&self, n: usize, limit: Duration) -> Vec<T> {
        let _ = tokio::time::timeout(limit, async {
            loop {
                let notified = self.changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.len() >= n {
                    return;
                }
                notified.await;
            }
        })
        .await;
        self.items()
    }
}

/// The next delivery of `stream`, or `None` after `limit`. Panics on a stream error.
pub async fn recv(stream: &mut DeliveryStream, limit: Duration) -> Option<Box<dyn Delivery>> {
    match tokio::time::timeout(limit, stream.next()).await {
        Ok(Some(Ok(delivery))) => Some(delivery),
        Ok(Some(Err(e))) => panic!("delivery stream failed: {e}"),
        Ok(None) | Err(_) => None,
    }
}

/// Asserts that `stream` delivers nothing within `limit`.
pub async fn recv_none(stream: &mut DeliveryStream, limit: Duration) {
    if let Some(delivery) = recv(stream, limit).await {
        panic!("expected no delivery, got {delivery:?}");
    }
}

/// Runs `work`, failing the test when it takes longer than `limit`.
///
/// A test that waits on a broker can hang if the broker, or the code under test, never
/// answers. Without a bound that hang stops the whole test run; with one it fails, naming
/// `what` it was waiting for.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
///
/// let answer = tidings_testkit::within(Duration::from_secs(5), "the answer", async { 42 }).await;
/// assert_eq!(answer, 42);
/// # }
/// ```
///
/// # Panics
///
/// When `limit` passes first.
pub async fn within<F: std::future::Future>(limit: Duration, what: &str, work: F) -> F::Output {
    match tokio::time::timeout(limit, work).await {
        Ok(output) => output,
        Err(_) => panic!("{what} did not finish within {limit:?}"),
    }
}
