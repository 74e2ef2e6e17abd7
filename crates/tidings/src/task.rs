//! Outcome events: a piece of work whose end is announced as an event, for the services that
//! today run "a task with a success and a failure callback event" by hand.
//!
//! [`Bus::task`] names the work (`user.registration`); [`Task::run`] runs it and publishes
//! `<name>.succeeded` with the work's output as data, or `<name>.failed` with a
//! [`TaskFailed`]. Both carry the cause's id as `causationid` and its correlation id and
//! tenant: the event being handled when the task runs inside a handler, or the event given to
//! [`Task::caused_by`].

use std::fmt;
use std::future::Future;

use serde::{Deserialize, Serialize};
use tidings_core::envelope::Envelope;

use crate::context::HandlingContext;
use crate::{Bus, Error, Result};

/// The data of a `<name>.failed` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TaskFailed {
    /// The task's name: `user.registration`.
    pub task: String,
    /// The error, with its causes where its `{:#}` form gives them (anyhow's does).
    pub error: String,
}

/// A named piece of work whose outcome is published. Made by [`Bus::task`].
#[must_use = "a task does nothing until it is run"]
pub struct Task<'a> {
    bus: &'a Bus,
    name: String,
    subject: Option<String>,
    cause: Option<HandlingContext>,
}

impl fmt::Debug for Task<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("name", &self.name)
            .field("subject", &self.subject)
            .field("cause", &self.cause.as_ref().map(HandlingContext::event_id))
            .finish()
    }
}

impl Bus {
    /// A task named `name`, whose outcome this bus publishes as `<name>.succeeded` or
    /// `<name>.failed`.
    ///
    /// ```
    /// use serde::Serialize;
    /// use tidings::Bus;
    ///
    /// #[derive(Serialize)]
    /// struct Registered {
    ///     user_id: String,
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let bus = Bus::builder(tidings::memory::MemoryTransport::new()).build()?;
    /// // Publishes `user.registration.succeeded` with `{"user_id":"u-1"}`, or
    /// // `user.registration.failed` with the error.
    /// let registered = bus
    ///     .task("user.registration")
    ///     .subject("u-1")
    ///     .run(async { Ok::<_, std::io::Error>(Registered { user_id: "u-1".into() }) })
    ///     .await?;
    /// assert_eq!(registered?.user_id, "u-1");
    /// # Ok(())
    /// # }
    /// ```
    pub fn task(&self, name: impl Into<String>) -> Task<'_> {
        Task {
            bus: self,
            name: name.into(),
            subject: None,
            cause: None,
        }
    }
}

impl Task<'_> {
    /// The aggregate the work is about: the outcome's `subject`.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// The event that asked for the work, when the task does not run inside that event's
    /// handler: its id becomes the outcome's `causationid`, and its correlation id and
    /// tenant carry over.
    pub fn caused_by(mut self, cause: &Envelope) -> Self {
        self.cause = Some(HandlingContext::of(cause.clone()));
        self
    }

    /// Runs `work`, publishes its outcome, and returns the work's own result. The outer
    /// `Err` is a failure to publish the outcome (or to encode the output); the work has run
    /// by then.
    pub async fn run<T, E, F>(self, work: F) -> Result<std::result::Result<T, E>>
    where
        F: Future<Output = std::result::Result<T, E>>,
        T: Serialize,
        E: fmt::Display,
    {
        let outcome = work.await;
        let source = self.bus.source().to_owned();
        let encoded = match &outcome {
            Ok(output) => {
                Envelope::new(source, format!("{}.succeeded", self.name)).with_json_data(output)
            }
            Err(error) => {
                Envelope::new(source, format!("{}.failed", self.name)).with_json_data(&TaskFailed {
                    task: self.name.clone(),
                    error: format!("{error:#}"),
                })
            }
        };
        let mut envelope = encoded.map_err(|source| Error::Serialize {
            ty: "a task's outcome",
            source,
        })?;
        if let Some(subject) = &self.subject {
            envelope.extensions.partitionkey = Some(subject.clone());
            envelope.subject = Some(subject.clone());
        }
        if let Some(cause) = &self.cause {
            cause.apply(&mut envelope);
        }
        self.bus.publish_envelope(envelope).await?;
        Ok(outcome)
    }
}
