/// Settings of a [`MemoryTransport`](super::MemoryTransport).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryConfig {
    /// Messages one subscription holds at most (ready, delayed and in flight); publishers wait
    /// for room beyond that. Default 10,000.
    pub queue_capacity: usize,
    /// Fail publishes that no subscription is bound to with
    /// [`TransportError::Unroutable`](crate::transport::TransportError::Unroutable) instead of
    /// dropping them. Default `false`, as on a topic exchange without `mandatory`.
    pub require_route: bool,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 10_000,
            require_route: false,
        }
    }
}

impl MemoryConfig {
    /// Sets the per-subscription capacity (at least 1).
    pub fn with_queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.max(1);
        self
    }

    /// Sets whether unroutable publishes fail.
    pub fn with_require_route(mut self, yes: bool) -> Self {
        self.require_route = yes;
        self
    }
}
