/// What a transport promises, so that callers (and the conformance suite) know what to rely on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// One consumer of a subscription sees its events in publish order (retries aside).
    pub ordering: bool,
    /// Streams of one subscription compete for its events.
    pub consumer_groups: bool,
    /// Events survive the process (and the broker) restarting.
    pub persistence: bool,
    /// Delayed redelivery is done by the broker, not by a timer in this process.
    pub native_delay: bool,
}

impl Capabilities {
    /// Nothing promised beyond at-least-once delivery.
    pub const fn none() -> Self {
        Self {
            ordering: false,
            consumer_groups: false,
            persistence: false,
            native_delay: false,
        }
    }

    /// Sets `ordering`.
    pub const fn with_ordering(mut self, yes: bool) -> Self {
        self.ordering = yes;
        self
    }

    /// Sets `consumer_groups`.
    pub const fn with_consumer_groups(mut self, yes: bool) -> Self {
        self.consumer_groups = yes;
        self
    }

    /// Sets `persistence`.
    pub const fn with_persistence(mut self, yes: bool) -> Self {
        self.persistence = yes;
        self
    }

    /// Sets `native_delay`.
    pub const fn with_native_delay(mut self, yes: bool) -> Self {
        self.native_delay = yes;
        self
    }
}
