//! The keys tidings uses, all under one hash tag.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{p}:bindings` | hash | subscription → its patterns (JSON) |
//! | `{p}:bindings:version` | string | bumped on every change of the bindings |
//! | `{p}:stream:<sub>` | stream | the subscription's events; consumer group `tidings` |
//! | `{p}:delayed:<sub>` | sorted set | retries waiting, scored by when they are due |
//! | `{p}:retry:<sub>:<id>` | hash | one waiting retry's entry |
//! | `{p}:dlq:<sub>` | stream | the subscription's dead letters |

/// The consumer group of every subscription's stream.
pub(crate) const GROUP: &str = "tidings";

/// Field names of stream entries.
pub(crate) mod field {
    /// The topic the event was published under.
    pub(crate) const TOPIC: &str = "topic";
    /// The body's media type.
    pub(crate) const CONTENT_TYPE: &str = "content_type";
    /// The encoded event, untouched.
    pub(crate) const BODY: &str = "body";
    /// Which delivery the next one is, when it is not the first.
    pub(crate) const ATTEMPT: &str = "attempt";
    /// When the first delivery failed, Unix milliseconds.
    pub(crate) const FIRST_FAILURE: &str = "first_failure";
    /// The error of the last failed delivery.
    pub(crate) const LAST_ERROR: &str = "last_error";
    /// A dead letter's details (JSON).
    pub(crate) const DETAILS: &str = "details";
}

/// The keys of one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    tag: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            tag: format!("{{{prefix}}}"),
        }
    }

    pub(crate) fn bindings(&self) -> String {
        format!("{}:bindings", self.tag)
    }

    pub(crate) fn version(&self) -> String {
        format!("{}:bindings:version", self.tag)
    }

    pub(crate) fn stream(&self, subscription: &str) -> String {
        format!("{}:stream:{subscription}", self.tag)
    }

    pub(crate) fn delayed(&self, subscription: &str) -> String {
        format!("{}:delayed:{subscription}", self.tag)
    }

    /// The prefix of the keys of `subscription`'s waiting retries.
    pub(crate) fn retries(&self, subscription: &str) -> String {
        format!("{}:retry:{subscription}:", self.tag)
    }

    pub(crate) fn dead_letters(&self, subscription: &str) -> String {
        format!("{}:dlq:{subscription}", self.tag)
    }
}
