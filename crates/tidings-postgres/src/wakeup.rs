//! Waking idle consumers: publishes send `NOTIFY tidings_queue, '<subscription>'` in their
//! transaction, and one `LISTEN`ing connection per transport wakes the consumers of that
//! subscription. Postgres delivers a notification when, and only if, its transaction commits,
//! to every process listening, so consumers in other processes wake as fast as local ones.
//! While the listener is disconnected, consumers fall back to polling.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The channel publishes notify, with the subscription as the payload.
pub const QUEUE_CHANNEL: &str = "tidings_queue";

#[derive(Debug, Default)]
pub(crate) struct Wakeups {
    subscriptions: Mutex<HashMap<Arc<str>, Arc<Notify>>>,
}

impl Wakeups {
    /// The signal of `subscription`.
    pub(crate) fn subscription(&self, subscription: &str) -> Arc<Notify> {
        self.subscriptions
            .lock()
            .expect("wakeups lock")
            .entry(subscription.into())
            .or_default()
            .clone()
    }

    pub(crate) fn wake(&self, subscription: &str) {
        let notify = self
            .subscriptions
            .lock()
            .expect("wakeups lock")
            .get(subscription)
            .cloned();
        if let Some(notify) = notify {
            notify.notify_waiters();
        }
    }

    /// Wakes every consumer: the transport is closing, or notifications may have been missed.
    pub(crate) fn wake_all(&self) {
        for notify in self.subscriptions.lock().expect("wakeups lock").values() {
            notify.notify_waiters();
        }
    }
}

/// Listens on [`QUEUE_CHANNEL`] until `closed`, reconnecting after a lost connection.
pub(crate) async fn listen(pool: PgPool, wakeups: Arc<Wakeups>, closed: CancellationToken) {
    let mut pause = Duration::from_millis(100);
    while !closed.is_cancelled() {
        let connected = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(QUEUE_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = tokio::select! {
            connected = connected => match connected {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::debug!(%error, "queue listener cannot connect; consumers poll");
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = closed.cancelled() => return,
                    }
                    pause = (pause * 2).min(Duration::from_secs(5));
                    continue;
                }
            },
            () = closed.cancelled() => return,
        };
        pause = Duration::from_millis(100);
        // Whatever was published while no one listened is found by this round of claims.
        wakeups.wake_all();
        loop {
            let received = tokio::select! {
                received = listener.try_recv() => received,
                () = closed.cancelled() => return,
            };
            match received {
                Ok(Some(notification)) => wakeups.wake(notification.payload()),
                // The connection dropped, and notifications with it: reconnect, then wake all.
                Ok(None) => break,
                Err(error) => {
                    tracing::debug!(%error, "queue listener failed; reconnecting");
                    break;
                }
            }
        }
    }
}
