//! In-process wake-ups: a consumer waiting on an empty subscription is woken as soon as a
//! commit of this process makes something ready in it. Other processes are noticed by polling.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

#[derive(Debug, Default)]
pub(crate) struct Signals {
    subscriptions: Mutex<HashMap<Arc<str>, Arc<Notify>>>,
    outbox: Notify,
}

impl Signals {
    /// The signal of `subscription`.
    pub(crate) fn subscription(&self, subscription: &str) -> Arc<Notify> {
        let mut map = self.subscriptions.lock().expect("signals lock");
        if let Some(notify) = map.get(subscription) {
            return notify.clone();
        }
        let notify = Arc::new(Notify::new());
        map.insert(subscription.into(), notify.clone());
        notify
    }

    pub(crate) fn wake(&self, subscription: &str) {
        let notify = self
            .subscriptions
            .lock()
            .expect("signals lock")
            .get(subscription)
            .cloned();
        if let Some(notify) = notify {
            notify.notify_waiters();
        }
    }

    /// Wakes everything, so that waiting consumers notice the store closing.
    pub(crate) fn wake_all(&self) {
        for notify in self.subscriptions.lock().expect("signals lock").values() {
            notify.notify_waiters();
        }
        self.outbox.notify_waiters();
    }

    pub(crate) fn outbox(&self) -> &Notify {
        &self.outbox
    }

    pub(crate) fn wake_outbox(&self) {
        self.outbox.notify_waiters();
    }
}
